// The mask decoder's attentions in fp32 arithmetic (src/cuda/ops/attn_decoder.rs):
// out = softmax(q k^T / sqrt(d)) v per head, q `[batch, lq, heads*d]`, k and v `[batch, lk,
// heads*d]` with row strides (ld) and batch strides in elements. A batch stride of 0 shares
// one image side between all prompts (layer 0's image keys, values and queries).
//
// One group of LANES threads owns one (prompt, query, head) and keeps its query, an online
// softmax state (running max, sum) and its d accumulators in registers:
//   self (tokens -> tokens, fp32 in/out), LANES 1: a few keys per query;
//   t2i  (tokens -> image: q fp32, k/v fp16 from the image-side GEMMs, fp32 out), LANES 32:
//        a warp splits the 4096 image keys, then merges the lanes' states by shuffles;
//   i2t  (image -> tokens: q fp16, k/v fp32, fp16 out for the out_proj GEMM), LANES 1.
// Logits and probabilities use expf (not __expf) so that the softmax matches the CPU's to
// f32 rounding; a state with no keys yet (max -inf) contributes nothing to a merge.
#include "common.cuh"

struct AttnDecParams {
    const void* q;
    const void* k;
    const void* v;
    void* o;
    long long q_batch;
    long long k_batch;
    long long v_batch;
    long long o_batch;
    int q_ld;
    int k_ld;
    int v_ld;
    int o_ld;
    int batch;
    int lq;
    int lk;
    int heads;
    float scale;
    int pad_;
};

namespace {

SAMRT_DEVICE float ld(const float* p) { return *p; }
SAMRT_DEVICE float ld(const __half* p) { return __half2float(*p); }
SAMRT_DEVICE void st(float* p, float v) { *p = v; }
SAMRT_DEVICE void st(__half* p, float v) { *p = __float2half_rn(v); }

// exp(m - mn) for merging softmax states; 0 for a state that saw no key.
SAMRT_DEVICE float rescale(float m, float mn) { return m == -INFINITY ? 0.0f : expf(m - mn); }

template <int D, int LANES, class TQ, class TKV, class TO>
SAMRT_DEVICE void attn_dec(const AttnDecParams& p) {
    constexpr int GROUPS = 128 / LANES;
    const long long g = (long long)blockIdx.x * GROUPS + threadIdx.x / LANES;
    const int lane = threadIdx.x % LANES;
    const long long total = (long long)p.batch * p.lq * p.heads;
    if (g >= total) return;  // whole groups leave together (GROUPS divides 128)
    const int h = (int)(g % p.heads);
    const int i = (int)((g / p.heads) % p.lq);
    const int b = (int)(g / ((long long)p.heads * p.lq));
    const TQ* q = static_cast<const TQ*>(p.q) + b * p.q_batch + (long long)i * p.q_ld + h * D;
    const TKV* kb = static_cast<const TKV*>(p.k) + b * p.k_batch + h * D;
    const TKV* vb = static_cast<const TKV*>(p.v) + b * p.v_batch + h * D;
    float qr[D], acc[D];
#pragma unroll
    for (int c = 0; c < D; ++c) {
        qr[c] = ld(q + c);
        acc[c] = 0.0f;
    }
    float m = -INFINITY, s = 0.0f;
    for (int j = lane; j < p.lk; j += LANES) {
        const TKV* kr = kb + (long long)j * p.k_ld;
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < D; ++c) dot = fmaf(qr[c], ld(kr + c), dot);
        const float logit = dot * p.scale;
        const float mn = fmaxf(m, logit);
        const float corr = rescale(m, mn);
        const float e = expf(logit - mn);
        s = s * corr + e;
        const TKV* vr = vb + (long long)j * p.v_ld;
#pragma unroll
        for (int c = 0; c < D; ++c) acc[c] = fmaf(e, ld(vr + c), acc[c] * corr);
        m = mn;
    }
    if (LANES > 1) {
#pragma unroll
        for (int off = LANES / 2; off > 0; off >>= 1) {
            const float mo = __shfl_xor_sync(0xffffffffu, m, off);
            const float so = __shfl_xor_sync(0xffffffffu, s, off);
            const float mn = fmaxf(m, mo);
            const float a = rescale(m, mn), bo = rescale(mo, mn);
            s = s * a + so * bo;
#pragma unroll
            for (int c = 0; c < D; ++c) {
                const float ao = __shfl_xor_sync(0xffffffffu, acc[c], off);
                acc[c] = acc[c] * a + ao * bo;
            }
            m = mn;
        }
    }
    if (lane != 0) return;
    TO* o = static_cast<TO*>(p.o) + b * p.o_batch + (long long)i * p.o_ld + h * D;
    const float inv = 1.0f / s;
#pragma unroll
    for (int c = 0; c < D; ++c) st(o + c, acc[c] * inv);
}

}  // namespace

#define SAMRT_ATTN_DEC(name, D, LANES, TQ, TKV, TO) \
    extern "C" __global__ void __launch_bounds__(128) name(const AttnDecParams p) { \
        attn_dec<D, LANES, TQ, TKV, TO>(p); \
    }

SAMRT_ATTN_DEC(attn_decoder_self_d16_f32, 16, 1, float, float, float)
SAMRT_ATTN_DEC(attn_decoder_self_d32_f32, 32, 1, float, float, float)
SAMRT_ATTN_DEC(attn_decoder_self_d64_f32, 64, 1, float, float, float)
SAMRT_ATTN_DEC(attn_decoder_t2i_d16_f32, 16, 32, float, __half, float)
SAMRT_ATTN_DEC(attn_decoder_t2i_d32_f32, 32, 32, float, __half, float)
SAMRT_ATTN_DEC(attn_decoder_t2i_d64_f32, 64, 32, float, __half, float)
SAMRT_ATTN_DEC(attn_decoder_i2t_d16_f16, 16, 1, __half, float, __half)
SAMRT_ATTN_DEC(attn_decoder_i2t_d32_f16, 32, 1, __half, float, __half)
SAMRT_ATTN_DEC(attn_decoder_i2t_d64_f16, 64, 1, __half, float, __half)
