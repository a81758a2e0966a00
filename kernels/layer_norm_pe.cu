// LayerNorm of fp32 rows in place, for the mask decoder's post-norm residual streams
// (src/cuda/ops/layer_norm_pe.rs): x[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta,
// and, when asked, the fp16 operands the next image-side GEMMs read: out16 = f16(x[r]) and
// outpe16 = f16(x[r] + pe[r % pe_rows]) (the image tokens with their positional encoding,
// for the k projection of token->image and the q projection of image->token).
//
// One warp per row; two passes over the row (mean, then the variance of the centred
// values) as the CPU's layer_norm_row and PyTorch compute it, so rows with a large mean keep
// their precision.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(128) layer_norm_pe_f32(
    float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
    const float* __restrict__ pe, int pe_rows, __half* __restrict__ out16,
    __half* __restrict__ outpe16, int rows, int dim, float eps) {
    const long long row = (long long)blockIdx.x * 4 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;
    float* xr = x + row * dim;
    float sum = 0.0f;
    for (int c = lane; c < dim; c += 32) sum += xr[c];
    const float mean = samrt::warp_sum(sum) / dim;
    float sq = 0.0f;
    for (int c = lane; c < dim; c += 32) {
        const float d = xr[c] - mean;
        sq = fmaf(d, d, sq);
    }
    const float var = samrt::warp_sum(sq) / dim;
    const float inv = 1.0f / sqrtf(var + eps);
    const float* per = pe ? pe + (row % pe_rows) * dim : nullptr;
    for (int c = lane; c < dim; c += 32) {
        const float y = (xr[c] - mean) * inv * gamma[c] + beta[c];
        xr[c] = y;
        if (out16) out16[row * dim + c] = __float2half_rn(y);
        if (outpe16) outpe16[row * dim + c] = __float2half_rn(y + per[c]);
    }
}
