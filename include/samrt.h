/*
 * samrt.h: the C ABI of samrt, Segment Anything inference in-process (libsamrt.so).
 *
 * Link with -lsamrt (and -Wl,-rpath,<dir of libsamrt.so> or LD_LIBRARY_PATH). The library is
 * built by `cargo build --release --workspace` into target/release/libsamrt.so; build the
 * samrt-capi package with `--features cuda` for the "cuda" device.
 *
 * Conventions:
 * - Functions that can fail return 0 on success and -1 on failure. samrt_last_error() then
 *   gives the message, on the calling thread. No input aborts the process: NULL pointers,
 *   non-finite coordinates, labels other than 0/1, a bad mask input, a missing file or an
 *   absent device each return -1 with a message.
 * - Handles (samrt_model, samrt_embedding) may be used by any number of threads at once.
 *   A handle that was freed, or that did not come from samrt, returns -1 rather than
 *   touching freed memory; freeing a model while another thread still predicts with it is
 *   safe (it goes when that call returns).
 * - Coordinates are in pixels of the original image, x to the right, y down.
 * - The structs below only ever gain fields at their end.
 *
 * The Rust side is capi/src/ of the samrt repository; capi/tests/header.rs fails when the two
 * drift apart.
 */
#ifndef SAMRT_H
#define SAMRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A loaded model: image encoder, prompt encoder and mask decoder. */
typedef struct samrt_model samrt_model;
/* One image's embedding; prompts are decoded against it any number of times. */
typedef struct samrt_embedding samrt_embedding;

/* A point prompt: label 1 foreground, 0 background. */
typedef struct { float x, y; int32_t label; } samrt_point;

/*
 * A prompt: any of points, a box and a mask input. mask_input is one plane of low-res
 * logits, low_res_side * low_res_side floats in the model's padded input frame: typically
 * the best plane of an earlier samrt_masks's low_res_logits. A pointer into an earlier
 * prediction's low_res_logits is checked (the start of a plane, of this model's side); a
 * buffer of the caller's own must hold the whole plane.
 * multimask nonzero asks for three masks (the official multimask_output), else one.
 */
typedef struct { const samrt_point *points; size_t n_points;
                 const float *box;        /* NULL or x0,y0,x1,y1 */
                 const float *mask_input; /* NULL or one low-res logit plane */
                 int multimask; } samrt_prompt;

/*
 * A prediction, filled by samrt_predict and released by samrt_masks_free (its arrays belong
 * to samrt; do not free() them). Masks are at the original image size, row-major; scores are
 * the predicted IoUs; low_res_logits are the decoder's logits before upscaling (side 256 for
 * the official 1024-pixel models).
 */
typedef struct { size_t n_masks; uint32_t width, height;
                 uint8_t *masks;          /* n_masks*height*width, 0 or 1 */
                 float *scores;           /* n_masks */
                 float *low_res_logits;   /* n_masks*side*side */
                 uint32_t low_res_side; } samrt_masks;

/* The library version, e.g. "0.1.0". */
const char *samrt_version(void);
/* The message of the last failed call on this thread ("" if none); valid until the next
 * failing call on this thread. */
const char *samrt_last_error(void);

/* Loads an official .pth or a samrt .safetensors file. device: "cpu", "cuda" (the CUDA
 * device 0; -1 when the library lacks the cuda feature, or there is no driver or device) or
 * "auto" (CUDA when usable, else the CPU). A .pth is converted once into samrt's cache
 * ($SAMRT_CACHE_DIR, else $XDG_CACHE_HOME/samrt, else ~/.cache/samrt). */
int  samrt_model_load(const char *path, const char *device, samrt_model **out);
/* Frees a model (NULL: nothing). */
void samrt_model_free(samrt_model *m);
/* Embeds width x height RGB pixels: width*height*3 bytes, rows top to bottom, RGB
 * interleaved. */
int  samrt_embed_rgb(const samrt_model *m, const uint8_t *rgb, uint32_t width, uint32_t height,
                     samrt_embedding **out);
/* Decodes an image file (PNG, JPEG, BMP, TIFF, WebP, GIF) and embeds it. */
int  samrt_embed_file(const samrt_model *m, const char *image_path, samrt_embedding **out);
/* Frees an embedding (NULL: nothing). */
void samrt_embedding_free(samrt_embedding *e);
/* Decodes prompt p against embedding e (made by this model) into *out. On failure *out is
 * left empty (zero counts, NULL arrays). *out is overwritten: free an earlier prediction
 * first. */
int  samrt_predict(const samrt_model *m, const samrt_embedding *e, const samrt_prompt *p,
                   samrt_masks *out);
/* Frees a prediction's arrays and zeroes *out; freeing it again does nothing. */
void samrt_masks_free(samrt_masks *out);

#ifdef __cplusplus
}
#endif

#endif /* SAMRT_H */
