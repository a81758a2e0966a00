// Image preprocessing fused with the patch embedding's im2col (src/cuda/ops/preprocess_patchify.rs):
// the Pillow-resized uint8 HWC images in, the fp16 patch matrix that the patch-embedding GEMM
// reads as its A operand out.
//
// out[p][c * P*P + ky * P + kx] for patch p = py * G + px (G = img_size / P) is pixel
// (y, x) = (py * P + ky, px * P + kx), channel c, normalised as the CPU path does it,
// `(float(pixel) - mean[c]) / std[c]` with both steps rounded to fp32 (explicit __fsub_rn /
// __fdiv_rn, so no compiler flag can contract or approximate them), then rounded to fp16.
// A pixel has only 256 values per channel, so each block first tabulates the 768 results in
// shared memory (3 KB) and the pixel loop is a table lookup.
// Pixels outside the h x w image are the official padding: zero, added after normalisation.
// The column order (c, ky, kx) is the official Conv2d weight [D, 3, P, P] flattened, so
// out @ weight.view(D, 3*P*P)^T is the convolution.
//
// One launch covers the batch (grid.y = image). Image b occupies the fixed slot of
// img_size^2 * 3 bytes at byte b * img_size^2 * 3 of `img`, rows packed at pitch 3w, and its
// size comes from the device array sizes[b] = (h, w), so a captured CUDA graph replays for
// any image size without re-capture. The host cannot check device-side sizes, so the kernel
// clamps both to [0, img_size]: a malformed size gives a wrong (but in-bounds) result, never
// a read outside the image's slot (h * w * 3 <= img_size^2 * 3).
//
#include "common.cuh"

namespace {
constexpr int PATCHIFY_THREADS = 256;
}

extern "C" __global__ void __launch_bounds__(PATCHIFY_THREADS)
    preprocess_patchify_f16(const uint8_t* __restrict__ img,  // [B][img_size^2 * 3] uint8 slots
                            const int* __restrict__ sizes,    // [B][2] = (h, w)
                            int img_size, int patch, float mean0, float mean1, float mean2,
                            float std0, float std1, float std2,
                            __half* __restrict__ out) {  // [B][G*G, 3*P*P] fp16
    // The normalised value of each of the 256 possible bytes per channel, computed once per
    // block (3 divisions per thread; the division's slow-path call then never sits inside
    // the pixel loop, where its saved registers spilled).
    __shared__ float lut[3][256];
    for (int k = threadIdx.x; k < 3 * 256; k += PATCHIFY_THREADS) {
        const int c = k >> 8;
        const float mean = c == 0 ? mean0 : (c == 1 ? mean1 : mean2);
        const float stdv = c == 0 ? std0 : (c == 1 ? std1 : std2);
        lut[c][k & 255] = __fdiv_rn(__fsub_rn(static_cast<float>(k & 255), mean), stdv);
    }
    __syncthreads();

    const int chunks = patch >> 3;  // 8-column chunks per patch row
    const int grid = img_size / patch;
    const int items = grid * grid * patch * chunks;
    const int i = blockIdx.x * PATCHIFY_THREADS + threadIdx.x;
    if (i >= items) return;
    const int b = blockIdx.y;
    const int h = min(max(sizes[2 * b], 0), img_size);
    const int w = min(max(sizes[2 * b + 1], 0), img_size);
    img += static_cast<size_t>(b) * img_size * img_size * 3;
    out += static_cast<size_t>(b) * img_size * img_size * 3;  // G^2 * 3 P^2 = 3 img_size^2
    const int chunk = i % chunks;
    const int ky = (i / chunks) % patch;
    const int p = i / (chunks * patch);
    const int y = (p / grid) * patch + ky;
    const int x0 = (p % grid) * patch + chunk * 8;

    float v[3][8];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const int x = x0 + j;
        if (y < h && x < w) {
            const uint8_t* px = img + (static_cast<size_t>(y) * w + x) * 3;
#pragma unroll
            for (int c = 0; c < 3; ++c) v[c][j] = lut[c][px[c]];
        } else {
#pragma unroll
            for (int c = 0; c < 3; ++c) v[c][j] = 0.0f;  // padding, after normalisation
        }
    }

    __half* o = out + static_cast<size_t>(p) * 3 * patch * patch + ky * patch + chunk * 8;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        uint4 packed;
        uint32_t* w32 = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
        for (int k = 0; k < 4; ++k) w32[k] = samrt::pack_half2(v[c][2 * k], v[c][2 * k + 1]);
        *reinterpret_cast<uint4*>(o + static_cast<size_t>(c) * patch * patch) = packed;
    }
}
