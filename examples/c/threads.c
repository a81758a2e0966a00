/*
 * threads: 8 threads share one model and one embedding, each predicting the same prompt
 * several times, and each also embeds the image itself and predicts on that embedding (so
 * embedding runs on all threads at once); every prediction must equal the main thread's
 * byte for byte (masks, scores, low-res logits). Each thread also makes a call that fails with its own message, and after
 * all threads have failed, checks that samrt_last_error() still gives its own message: the
 * last error is per thread.
 *
 *   threads MODEL IMAGE DEVICE X Y [ROUNDS]
 *
 * ROUNDS (default 3) predictions per thread on the shared embedding, then one on its own;
 * fewer keeps a run on a simulated GPU short.
 * Exit status 0 when all agree. Build with -pthread (see capi/tests/c_abi.rs).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samrt.h"

#define THREADS 8

static samrt_model *model;
static samrt_embedding *emb;
static samrt_prompt prompt;
static samrt_masks want;
static pthread_barrier_t all_failed;
static const char *image;
static int rounds = 3;

static int same(const samrt_masks *a, const samrt_masks *b) {
    size_t plane = (size_t)a->width * a->height;
    size_t low = (size_t)a->low_res_side * a->low_res_side;
    return a->n_masks == b->n_masks && a->width == b->width && a->height == b->height &&
           a->low_res_side == b->low_res_side &&
           memcmp(a->masks, b->masks, a->n_masks * plane) == 0 &&
           memcmp(a->scores, b->scores, a->n_masks * sizeof(float)) == 0 &&
           memcmp(a->low_res_logits, b->low_res_logits, a->n_masks * low * sizeof(float)) == 0;
}

/* One prediction on `e` compared with the main thread's; 1 when it fails or differs. */
static size_t check(int id, const char *what, const samrt_embedding *e) {
    samrt_masks got = {0};
    size_t bad = 0;
    if (samrt_predict(model, e, &prompt, &got) != 0) {
        fprintf(stderr, "thread %d, %s: %s\n", id, what, samrt_last_error());
        bad = 1;
    } else if (!same(&got, &want)) {
        fprintf(stderr, "thread %d, %s: the prediction differs\n", id, what);
        bad = 1;
    }
    samrt_masks_free(&got);
    return bad;
}

static void *worker(void *arg) {
    int id = (int)(size_t)arg;
    size_t bad = 0;
    for (int r = 0; r < rounds; r++) {
        bad += check(id, "shared embedding", emb);
    }
    samrt_embedding *own = NULL;
    if (samrt_embed_file(model, image, &own) != 0) {
        fprintf(stderr, "thread %d: %s\n", id, samrt_last_error());
        bad++;
    } else {
        bad += check(id, "own embedding", own);
    }
    samrt_embedding_free(own);
    /* A label no other thread uses: the message names it. */
    samrt_point p = {1.0f, 1.0f, 100 + id};
    samrt_prompt wrong = {&p, 1, NULL, NULL, 0};
    samrt_masks none = {0};
    if (samrt_predict(model, emb, &wrong, &none) != -1) {
        fprintf(stderr, "thread %d: label %d was accepted\n", id, 100 + id);
        bad++;
    }
    pthread_barrier_wait(&all_failed);
    char label[32];
    snprintf(label, sizeof label, "label %d", 100 + id);
    if (strstr(samrt_last_error(), label) == NULL) {
        fprintf(stderr, "thread %d: last error is not its own: %s\n", id, samrt_last_error());
        bad++;
    }
    return (void *)bad;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s MODEL IMAGE DEVICE X Y [ROUNDS]\n", argv[0]);
        return 2;
    }
    if (argc == 7) {
        rounds = atoi(argv[6]);
    }
    image = argv[2];
    if (samrt_model_load(argv[1], argv[3], &model) != 0 ||
        samrt_embed_file(model, argv[2], &emb) != 0) {
        fprintf(stderr, "threads: %s\n", samrt_last_error());
        return 1;
    }
    static samrt_point point;
    point.x = (float)atof(argv[4]);
    point.y = (float)atof(argv[5]);
    point.label = 1;
    prompt.points = &point;
    prompt.n_points = 1;
    prompt.multimask = 1;
    if (samrt_predict(model, emb, &prompt, &want) != 0) {
        fprintf(stderr, "threads: %s\n", samrt_last_error());
        return 1;
    }
    pthread_barrier_init(&all_failed, NULL, THREADS);
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++) {
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) {
            fprintf(stderr, "threads: pthread_create failed\n");
            return 1;
        }
    }
    size_t bad = 0;
    for (size_t i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (size_t)r;
    }
    pthread_barrier_destroy(&all_failed);
    printf("%d threads x %d predictions: %zu differ or failed\n", THREADS, rounds + 1, bad);
    samrt_masks_free(&want);
    samrt_embedding_free(emb);
    samrt_model_free(model);
    return bad == 0 ? 0 : 1;
}
