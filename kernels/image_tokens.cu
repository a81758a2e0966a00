// The mask decoder's image tokens (src/cuda/ops/image_tokens.rs): the channel-first image
// embedding [dim, hw] plus the dense prompt embedding (per prompt [S, dim, hw] from the mask
// path, or no_mask_embed [dim] broadcast), transposed to token-major [hw, dim] as the
// official `flatten(2).permute(0, 2, 1)`. Writes the fp32 residual stream of each of the
// `batch` prompts (the S = 1 image side copied to every prompt) and, once per image side,
// the fp16 GEMM operands: the tokens, and the tokens plus the dense positional encoding
// pe [hw, dim]. A null output is skipped: the decoder's per-image prep writes only the fp16
// operands, its decode schedules only the fp32 stream.
//
// A 32 x 32 tile goes through shared memory so that both the channel-first reads and the
// token-major writes are coalesced; block 32 x 8.
#include "common.cuh"

extern "C" __global__ void __launch_bounds__(256) image_tokens_f32(
    const float* __restrict__ emb, const float* __restrict__ dense,
    const float* __restrict__ no_mask, const float* __restrict__ pe, int sides, int batch,
    int hw, int dim, float* __restrict__ out32, __half* __restrict__ out16,
    __half* __restrict__ outpe16) {
    __shared__ float tile[32][33];
    const int s = blockIdx.z;
    const int j0 = blockIdx.x * 32, c0 = blockIdx.y * 32;
    const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
    for (int r = ty; r < 32; r += 8) {
        const int c = c0 + r, j = j0 + tx;
        if (c < dim && j < hw) {
            const float d = dense ? dense[((long long)s * dim + c) * hw + j] : no_mask[c];
            tile[r][tx] = emb[(long long)c * hw + j] + d;
        }
    }
    __syncthreads();
    for (int r = ty; r < 32; r += 8) {
        const int j = j0 + r, c = c0 + tx;
        if (c >= dim || j >= hw) continue;
        const float v = tile[tx][r];
        const long long at = (long long)j * dim + c;
        const long long plane = (long long)hw * dim;
        if (out16) out16[s * plane + at] = __float2half_rn(v);
        if (outpe16) outpe16[s * plane + at] = __float2half_rn(v + pe[at]);
        if (!out32) continue;
        if (sides == batch) {
            out32[s * plane + at] = v;
        } else {
            for (int b = 0; b < batch; ++b) out32[b * plane + at] = v;
        }
    }
}
