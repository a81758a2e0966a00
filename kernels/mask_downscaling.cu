// The prompt encoder's mask path on the GPU (src/cuda/ops/mask_downscaling.rs): the official
// mask_downscaling stack, Conv2d(1->4, k2 s2) + LayerNorm2d + GELU + Conv2d(4->16, k2 s2) +
// LayerNorm2d + GELU + Conv2d(16->dim, 1x1), from [256, 256] mask logits to [dim, 64, 64].
//
// Every output pixel depends only on its own 4x4 input patch, so one thread computes one
// output pixel end to end in registers: 4 conv-1 pixels of 4 channels, their LayerNorms and
// GELUs, the 16-channel conv 2 with its LayerNorm and GELU, then the dim outputs of the 1x1
// conv, written channel-major (adjacent threads write adjacent pixels). LayerNorm2d is the
// official form: biased variance, (x - mean) / sqrt(var + eps). GELU is exact (erf).
//
// Weights arrive packed in one buffer (see MaskDownscalingWeights::packed on the host):
// conv1 w[4][1][2][2], b[4], ln1 w[4], b[4], conv2 w[16][4][2][2], b[16], ln2 w[16], b[16],
// conv3 w[dim][16], b[dim].

#define C1 4
#define C2 16

__device__ __forceinline__ float gelu_erf(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

template <int C>
__device__ __forceinline__ void layer_norm_ch(float* v, const float* w, const float* b,
                                              float eps) {
    float mean = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) mean += v[c];
    mean /= C;
    float var = 0.0f;
#pragma unroll
    for (int c = 0; c < C; ++c) var += (v[c] - mean) * (v[c] - mean);
    var /= C;
    const float inv = 1.0f / sqrtf(var + eps);
#pragma unroll
    for (int c = 0; c < C; ++c) v[c] = w[c] * ((v[c] - mean) * inv) + b[c];
}

extern "C" __global__ void mask_downscaling_f32(const float* __restrict__ masks,  // [M, 4g, 4g]
                                                const float* __restrict__ p,      // packed
                                                int g, int dim, float eps,
                                                float* __restrict__ out) {         // [M, dim, g, g]
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int m = blockIdx.y;
    if (pix >= g * g) return;
    const int oy = pix / g, ox = pix % g;
    const int side = 4 * g;
    const float* in = masks + (long long)m * side * side;
    const float* w1 = p;
    const float* b1 = w1 + C1 * 4;
    const float* n1w = b1 + C1;
    const float* n1b = n1w + C1;
    const float* w2 = n1b + C1;
    const float* b2 = w2 + C2 * C1 * 4;
    const float* n2w = b2 + C2;
    const float* n2b = n2w + C2;
    const float* w3 = n2b + C2;
    const float* b3 = w3 + dim * C2;
    // Conv 1 + LN + GELU at the 2x2 conv-1 pixels under this output pixel.
    float h1[4][C1];
#pragma unroll
    for (int s = 0; s < 4; ++s) {
        const int y1 = 2 * oy + s / 2, x1 = 2 * ox + s % 2;
#pragma unroll
        for (int c = 0; c < C1; ++c) {
            float acc = b1[c];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                acc += w1[c * 4 + k] * in[(2 * y1 + k / 2) * side + 2 * x1 + k % 2];
            }
            h1[s][c] = acc;
        }
        layer_norm_ch<C1>(h1[s], n1w, n1b, eps);
#pragma unroll
        for (int c = 0; c < C1; ++c) h1[s][c] = gelu_erf(h1[s][c]);
    }
    // Conv 2 (4 -> 16, the 2x2 conv-1 pixels are its kernel window) + LN + GELU.
    float h2[C2];
#pragma unroll
    for (int o = 0; o < C2; ++o) {
        float acc = b2[o];
#pragma unroll
        for (int c = 0; c < C1; ++c) {
#pragma unroll
            for (int s = 0; s < 4; ++s) acc += w2[(o * C1 + c) * 4 + s] * h1[s][c];
        }
        h2[o] = acc;
    }
    layer_norm_ch<C2>(h2, n2w, n2b, eps);
#pragma unroll
    for (int o = 0; o < C2; ++o) h2[o] = gelu_erf(h2[o]);
    // 1x1 conv to dim channels.
    float* dst = out + (long long)m * dim * g * g + pix;
    for (int k = 0; k < dim; ++k) {
        float acc = 0.0f;
#pragma unroll
        for (int c = 0; c < C2; ++c) acc += w3[k * C2 + c] * h2[c];
        dst[(long long)k * g * g] = acc + b3[k];
    }
}
