// Sparse prompt embeddings on the GPU (src/cuda/ops/prompt_encoder.rs): the official
// PromptEncoder._embed_points / _embed_boxes for a batch of tokens at once.
//
// Each token has coordinates in the 1024 input frame and a kind: 0 not-a-point (label -1,
// also the padding that lets prompts with different point counts share one batch), 1
// negative point, 2 positive point, 3 / 4 box corner 0 / 1. Its embedding is
// [sin(t), cos(t)] + table[kind] with t = 2*pi * ((2u-1)*g0 + (2v-1)*g1), u = (x+0.5)/size,
// except not-a-point, whose positional part is zeroed (the official
// `point_embedding[labels == -1] = 0.0`). Products and sums are rounded one at a time
// (no contraction), as the CPU reference and PyTorch compute them.

namespace {

// Token `tok`'s embedding, features k and feats + k, into the row o.
__device__ __forceinline__ void embed_token(const float* coords, int kind, const float* gauss,
                                            const float* table, int feats, float size,
                                            float two_pi, int k, float* o) {
    const int dim = 2 * feats;
    const float* e = table + kind * dim;
    if (kind == 0) {
        o[k] = e[k];
        o[feats + k] = e[feats + k];
        return;
    }
    const float u = __fdiv_rn(__fadd_rn(coords[0], 0.5f), size);
    const float v = __fdiv_rn(__fadd_rn(coords[1], 0.5f), size);
    const float a = __fsub_rn(__fmul_rn(2.0f, u), 1.0f);
    const float b = __fsub_rn(__fmul_rn(2.0f, v), 1.0f);
    const float t = __fmul_rn(two_pi, __fadd_rn(__fmul_rn(a, gauss[k]), __fmul_rn(b, gauss[feats + k])));
    float s, c;
    sincosf(t, &s, &c);
    o[k] = __fadd_rn(s, e[k]);
    o[feats + k] = __fadd_rn(c, e[feats + k]);
}

}  // namespace

extern "C" __global__ void prompt_sparse_f32(const float* __restrict__ coords,  // [n, 2]
                                             const int* __restrict__ kinds,     // [n]
                                             const float* __restrict__ gauss,   // [2, feats]
                                             const float* __restrict__ table,   // [5, 2*feats]
                                             int n, int feats, float size, float two_pi,
                                             float* __restrict__ out) {         // [n, 2*feats]
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int tok = blockIdx.y;
    if (k >= feats || tok >= n) return;
    embed_token(coords + 2 * tok, kinds[tok], gauss, table, feats, size, two_pi, k,
                out + (long long)tok * 2 * feats);
}

// The decoder's whole token matrix for a batch of prompts: per prompt the `prefix` output
// tokens (IoU token, mask tokens) then its n sparse tokens, [batch, prefix + n, 2*feats].
extern "C" __global__ void decoder_tokens_f32(const float* __restrict__ coords,  // [batch*n, 2]
                                             const int* __restrict__ kinds,     // [batch*n]
                                             const float* __restrict__ gauss,
                                             const float* __restrict__ table,
                                             const float* __restrict__ prefix,  // [P, 2*feats]
                                             int n, int P, int feats, float size,
                                             float two_pi, float* __restrict__ out) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y;  // prompt * (P + n) + token
    if (k >= feats) return;
    const int t = row % (P + n), b = row / (P + n);
    float* o = out + (long long)row * 2 * feats;
    if (t < P) {
        o[k] = prefix[t * 2 * feats + k];
        o[feats + k] = prefix[t * 2 * feats + feats + k];
        return;
    }
    const int tok = b * n + (t - P);
    embed_token(coords + 2 * tok, kinds[tok], gauss, table, feats, size, two_pi, k, o);
}
