// The mask decoder's output upscaling around two tensor-core GEMMs
// (src/cuda/ops/conv_transpose2x2.rs). ConvTranspose2d(k=2, s=2) never overlaps its output
// patches, so each is one GEMM [pixels, cin] @ [cin, 4*cout] (the `gemm` op, weight laid out
// as [(dy*2 + dx)*cout + o][cin]); these kernels do the 2x2 pixel scatter on the GEMM's
// sub-pixel-blocked output, fused with what follows it:
//
// conv_transpose2x2_ln_gelu_f16: the first upscaling's scatter + LayerNorm2d + GELU. u is
//   the GEMM output [batch*g*g, 4*C] fp16; out the NHWC map [batch, 2g, 2g, C] fp16, which
//   is the A operand of the second upscaling's GEMM. One warp per output pixel; LayerNorm2d
//   is the official two-pass form (biased variance, eps inside the sqrt), GELU exact.
// conv_transpose2x2_masks_f32: the second upscaling's scatter fused with the hypernetwork
//   mask product. u is the second GEMM's output with GELU applied [batch*G*G, 4*C] fp16 (G =
//   2g); hyper [batch, masks, C] fp32; out the low-res logits [batch, masks, 2G, 2G] fp32.
//   One thread per output pixel, the prompt's hypernetwork weights in shared memory.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(128) conv_transpose2x2_ln_gelu_f16(
    const __half* __restrict__ u, const float* __restrict__ gamma,
    const float* __restrict__ beta, int batch, int g, int C, float eps,
    __half* __restrict__ out) {
    const int side = 2 * g;
    const long long pix = (long long)blockIdx.x * 4 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (pix >= (long long)batch * side * side) return;
    const int b = (int)(pix / (side * side));
    const int yx = (int)(pix % (side * side));
    const int Y = yx / side, X = yx % side;
    const long long row = (long long)b * g * g + (Y / 2) * g + X / 2;
    const __half* src = u + row * 4 * C + ((Y % 2) * 2 + X % 2) * C;
    float sum = 0.0f;
    for (int c = lane; c < C; c += 32) sum += __half2float(src[c]);
    const float mean = samrt::warp_sum(sum) / C;
    float sq = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float d = __half2float(src[c]) - mean;
        sq = fmaf(d, d, sq);
    }
    const float var = samrt::warp_sum(sq) / C;
    const float inv = 1.0f / sqrtf(var + eps);
    __half* dst = out + pix * C;
    for (int c = lane; c < C; c += 32) {
        const float y = (__half2float(src[c]) - mean) * inv * gamma[c] + beta[c];
        dst[c] = __float2half_rn(samrt::gelu_erf(y));
    }
}

extern "C" __global__ void __launch_bounds__(256) conv_transpose2x2_masks_f32(
    const __half* __restrict__ u, const float* __restrict__ hyper, int G, int C, int masks,
    float* __restrict__ out) {
    extern __shared__ float hs[];  // [masks][C] of this prompt
    const int b = blockIdx.y;
    for (int i = threadIdx.x; i < masks * C; i += blockDim.x) hs[i] = hyper[b * masks * C + i];
    __syncthreads();
    const int side = 2 * G;
    const int yx = blockIdx.x * blockDim.x + threadIdx.x;
    if (yx >= side * side) return;
    const int Y = yx / side, X = yx % side;
    const long long row = (long long)b * G * G + (Y / 2) * G + X / 2;
    const __half* src = u + row * 4 * C + ((Y % 2) * 2 + X % 2) * C;
    for (int m = 0; m < masks; ++m) {
        float acc = 0.0f;
        for (int c = 0; c < C; ++c) acc = fmaf(hs[m * C + c], __half2float(src[c]), acc);
        out[((long long)b * masks + m) * side * side + yx] = acc;
    }
}
