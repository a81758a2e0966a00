/*
 * segment: one point prompt on one image through libsamrt, then the best mask refined by
 * feeding its low-res logits back as the mask input (the official interactive loop).
 *
 *   segment MODEL IMAGE DEVICE X Y [BEST_MASK.pgm]
 *
 * DEVICE is "cpu", "cuda" or "auto". Prints one line per mask: its score (the predicted
 * IoU), its area in pixels and the FNV-1a-64 hash of its 0/1 bytes; optionally writes the
 * best mask as a binary PGM. Build (see README.md, "C ABI"):
 *
 *   cc -std=c11 -Iinclude examples/c/segment.c -Ltarget/release -lsamrt \
 *      -Wl,-rpath,"$PWD/target/release" -o segment
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "samrt.h"

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

static size_t area(const uint8_t *p, size_t n) {
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        a += p[i];
    }
    return a;
}

static void print_masks(const char *what, const samrt_masks *m) {
    size_t plane = (size_t)m->width * m->height;
    for (size_t i = 0; i < m->n_masks; i++) {
        const uint8_t *mask = m->masks + i * plane;
        printf("%s %zu: score %.9g area %zu fnv1a64 %016" PRIx64 "\n", what, i, m->scores[i],
               area(mask, plane), fnv1a64(mask, plane));
    }
}

static int write_pgm(const char *path, const uint8_t *mask, uint32_t w, uint32_t h) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    fprintf(f, "P5\n%u %u\n255\n", w, h);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        fputc(mask[i] ? 255 : 0, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL IMAGE DEVICE X Y [BEST_MASK.pgm]\n", argv[0]);
        return 2;
    }
    samrt_model *model = NULL;
    samrt_embedding *emb = NULL;
    samrt_masks masks = {0}, refined = {0};
    int rc = 1;

    printf("samrt %s\n", samrt_version());
    if (samrt_model_load(argv[1], argv[3], &model) != 0 ||
        samrt_embed_file(model, argv[2], &emb) != 0) {
        goto fail;
    }
    samrt_point point = {(float)atof(argv[4]), (float)atof(argv[5]), 1};
    samrt_prompt prompt = {&point, 1, NULL, NULL, 1};
    if (samrt_predict(model, emb, &prompt, &masks) != 0) {
        goto fail;
    }
    printf("image %ux%u, %zu masks, low-res side %u\n", masks.width, masks.height,
           masks.n_masks, masks.low_res_side);
    print_masks("mask", &masks);

    size_t best = 0;
    for (size_t i = 1; i < masks.n_masks; i++) {
        if (masks.scores[i] > masks.scores[best]) {
            best = i;
        }
    }
    size_t side = masks.low_res_side;
    samrt_prompt again = {&point, 1, NULL, masks.low_res_logits + best * side * side, 0};
    if (samrt_predict(model, emb, &again, &refined) != 0) {
        goto fail;
    }
    print_masks("refined", &refined);

    if (argc == 7) {
        size_t plane = (size_t)masks.width * masks.height;
        if (write_pgm(argv[6], masks.masks + best * plane, masks.width, masks.height) != 0) {
            perror(argv[6]);
            goto done;
        }
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "segment: %s\n", samrt_last_error());
done:
    samrt_masks_free(&refined);
    samrt_masks_free(&masks);
    samrt_embedding_free(emb);
    samrt_model_free(model);
    return rc;
}
