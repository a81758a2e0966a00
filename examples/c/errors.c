/*
 * errors: every kind of bad input the C ABI promises to survive returns -1 with a message
 * that names the problem, and leaves its output empty. Run by capi/tests/c_abi.rs.
 *
 *   errors MODEL OTHER_MODEL IMAGE
 *
 * OTHER_MODEL has another low-res side than MODEL (the test writes a small one), for the
 * mask-input and embedding mismatches. Prints "ok: <case>: <message>" per case; the exit
 * status is the number of cases that did not fail as they should.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "samrt.h"

static int failures;

/* rc must be -1 and the last error must contain `want`. */
static void expect(const char *name, int rc, const char *want) {
    const char *msg = samrt_last_error();
    if (rc == -1 && msg != NULL && strstr(msg, want) != NULL) {
        printf("ok: %s: %s\n", name, msg);
    } else {
        printf("FAILED: %s: rc %d, message \"%s\", expected one containing \"%s\"\n", name, rc,
               msg ? msg : "(NULL)", want);
        failures++;
    }
}

static void expect_empty(const char *name, const samrt_masks *m) {
    if (m->n_masks != 0 || m->masks != NULL || m->scores != NULL || m->low_res_logits != NULL) {
        printf("FAILED: %s: the output was not left empty\n", name);
        failures++;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL OTHER_MODEL IMAGE\n", argv[0]);
        return 2;
    }
    const char *path = argv[1], *other_path = argv[2], *image = argv[3];
    samrt_model *m = NULL, *other = NULL, *dummy = (samrt_model *)&failures;
    samrt_embedding *e = NULL, *other_e = NULL;

    if (strcmp(samrt_last_error(), "") != 0) {
        printf("FAILED: last error before any call is \"%s\"\n", samrt_last_error());
        failures++;
    }
    expect("load: NULL path", samrt_model_load(NULL, "cpu", &m), "path is NULL");
    expect("load: NULL device", samrt_model_load(path, NULL, &m), "device is NULL");
    expect("load: NULL out", samrt_model_load(path, "cpu", NULL), "out is NULL");
    expect("load: unknown device", samrt_model_load(path, "tpu", &m), "unknown device \"tpu\"");
    expect("load: missing file", samrt_model_load("/nonexistent/sam.pth", "cpu", &dummy),
           "/nonexistent/sam.pth");
    if (dummy != NULL) {
        printf("FAILED: a failed load left *out set\n");
        failures++;
    }
    if (samrt_model_load(path, "cpu", &m) != 0 || samrt_model_load(other_path, "cpu", &other) != 0) {
        printf("FAILED: load: %s\n", samrt_last_error());
        return 100;
    }

    uint8_t rgb[4 * 3 * 3] = {0};
    expect("embed_rgb: NULL model", samrt_embed_rgb(NULL, rgb, 4, 3, &e), "model is NULL");
    expect("embed_rgb: NULL pixels", samrt_embed_rgb(m, NULL, 4, 3, &e), "rgb is NULL");
    expect("embed_rgb: zero width", samrt_embed_rgb(m, rgb, 0, 3, &e), "0x3");
    expect("embed_rgb: NULL out", samrt_embed_rgb(m, rgb, 4, 3, NULL), "out is NULL");
    expect("embed_file: missing file", samrt_embed_file(m, "/nonexistent/cat.png", &e),
           "/nonexistent/cat.png");
    expect("embed_file: NULL path", samrt_embed_file(m, NULL, &e), "image_path is NULL");
    expect("embed_file: not a model", samrt_embed_file((samrt_model *)rgb, image, &e),
           "not a live samrt_model");
    if (samrt_embed_file(m, image, &e) != 0 || samrt_embed_file(other, image, &other_e) != 0) {
        printf("FAILED: embed: %s\n", samrt_last_error());
        return 100;
    }

    samrt_point pt = {100.0f, 80.0f, 1};
    samrt_prompt good = {&pt, 1, NULL, NULL, 1};
    samrt_masks out = {0}, low = {0};
    expect("predict: NULL model", samrt_predict(NULL, e, &good, &out), "model is NULL");
    expect("predict: NULL embedding", samrt_predict(m, NULL, &good, &out), "embedding is NULL");
    expect("predict: NULL prompt", samrt_predict(m, e, NULL, &out), "prompt is NULL");
    expect("predict: NULL out", samrt_predict(m, e, &good, NULL), "out is NULL");

    samrt_prompt p = good;
    p.points = NULL;
    expect("predict: NULL points", samrt_predict(m, e, &p, &out), "points is NULL");
    samrt_point nan_pt = {NAN, 80.0f, 1};
    p = good;
    p.points = &nan_pt;
    expect("predict: NaN x", samrt_predict(m, e, &p, &out), "not finite");
    samrt_point label_pt = {100.0f, 80.0f, 2};
    p.points = &label_pt;
    expect("predict: label 2", samrt_predict(m, e, &p, &out), "label 2");
    label_pt.label = -1;
    expect("predict: label -1", samrt_predict(m, e, &p, &out), "label -1");
    float inf_box[4] = {0.0f, 0.0f, INFINITY, 10.0f};
    p = good;
    p.box = inf_box;
    expect("predict: infinite box", samrt_predict(m, e, &p, &out), "not finite");
    p = good;
    p.n_points = 1000000;
    expect("predict: too many points", samrt_predict(m, e, &p, &out), "at most");
    expect("predict: embedding of another model", samrt_predict(m, other_e, &good, &out),
           "another model");
    expect_empty("predict: failures", &out);

    /* Mask inputs: another model's low-res plane, and a pointer into the middle of a plane. */
    if (samrt_predict(other, other_e, &good, &low) != 0 || samrt_predict(m, e, &good, &out) != 0) {
        printf("FAILED: predict: %s\n", samrt_last_error());
        return 100;
    }
    samrt_masks again = {0};
    p = good;
    p.mask_input = low.low_res_logits;
    char side[64];
    snprintf(side, sizeof side, "%ux%u low-res plane", low.low_res_side, low.low_res_side);
    expect("predict: mask input of another side", samrt_predict(m, e, &p, &again), side);
    p.mask_input = out.low_res_logits + 1;
    expect("predict: mask input off a plane", samrt_predict(m, e, &p, &again),
           "not at the start");
    p.mask_input = out.low_res_logits + (size_t)out.low_res_side * out.low_res_side;
    if (samrt_predict(m, e, &p, &again) != 0) {
        printf("FAILED: predict with the second plane as mask input: %s\n", samrt_last_error());
        failures++;
    }
    samrt_masks_free(&again);
    expect_empty("predict: masks_free", &again);

    /* Frees: twice, a copy of freed masks, a freed handle. */
    samrt_masks copy = out;
    samrt_masks_free(&out);
    samrt_masks_free(&out);
    samrt_masks_free(&copy);
    expect("masks_free: a freed copy", -1, "freed already");
    samrt_masks_free(NULL);
    samrt_embedding_free(other_e);
    samrt_masks none = {0};
    expect("predict: freed embedding", samrt_predict(other, other_e, &good, &none),
           "not a live samrt_embedding");
    samrt_embedding_free(other_e);
    expect("embedding_free: twice", -1, "freed already");
    samrt_model_free(other);
    expect("embed_file: freed model", samrt_embed_file(other, image, &other_e),
           "not a live samrt_model");
    samrt_model_free(NULL);
    samrt_embedding_free(NULL);

    samrt_masks_free(&low);
    samrt_embedding_free(e);
    samrt_model_free(m);
    printf("%d failures\n", failures);
    return failures;
}
