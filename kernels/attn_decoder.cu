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
//   i2t  (image -> tokens: q fp16, k/v fp32, fp16 out for the out_proj GEMM), LANES 1;
//   t2i_split (as t2i, split over the keys, flash-decoding style): `chunks` key chunks of
//        ceil(lk / chunks) keys each, one warp per (prompt, query, head, chunk), writes the
//        chunk's unnormalised state (max, sum, d accumulators) to fp32 scratch; then
//        combine merges a group's chunks in chunk order and writes the fp32 output. The
//        chunk count depends on lk only (never on the batch), so a prompt's result is the
//        same in any batch.
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
    int chunks;  // t2i_split and combine: key chunks per (prompt, query, head); else 1
};

namespace {

SAMRT_DEVICE float ld(const float* p) { return *p; }
SAMRT_DEVICE float ld(const __half* p) { return __half2float(*p); }
SAMRT_DEVICE void st(float* p, float v) { *p = v; }
SAMRT_DEVICE void st(__half* p, float v) { *p = __float2half_rn(v); }

// exp(m - mn) for merging softmax states; 0 for a state that saw no key.
SAMRT_DEVICE float rescale(float m, float mn) { return m == -INFINITY ? 0.0f : expf(m - mn); }

// Row r's D values as floats: fp16 rows in 16-byte loads (8 halves each; the launchers
// check the fp16 k/v buffers' alignment, and D, heads*D and the batch strides keep every
// row start 16-byte aligned), fp32 rows element by element.
template <int D>
SAMRT_DEVICE void ld_row(const float* r, float (&x)[D]) {
#pragma unroll
    for (int c = 0; c < D; ++c) x[c] = r[c];
}
template <int D>
SAMRT_DEVICE void ld_row(const __half* r, float (&x)[D]) {
#pragma unroll
    for (int c8 = 0; c8 < D; c8 += 8) {
        const uint4 u = *reinterpret_cast<const uint4*>(r + c8);
        const unsigned w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            // One unpack for both halves (cuda_fp16's __half22float2 unpacks twice).
            asm("{.reg .f16 lo, hi;\n"
                " mov.b32 {lo, hi}, %2;\n"
                " cvt.f32.f16 %0, lo;\n"
                " cvt.f32.f16 %1, hi;}\n"
                : "=f"(x[c8 + 2 * t]), "=f"(x[c8 + 2 * t + 1])
                : "r"(w[t]));
        }
    }
}

// Online softmax of q over keys [begin, end) (stride LANES from begin + lane) into
// (m, s, acc), then the LANES lanes' states merged by shuffles (every lane ends with it).
template <int D, int LANES, class TKV>
SAMRT_DEVICE void attn_dec_keys(const float (&qr)[D], const TKV* kb, const TKV* vb,
                                const AttnDecParams& p, int begin, int end, int lane,
                                float& m, float& s, float (&acc)[D]) {
#pragma unroll
    for (int c = 0; c < D; ++c) acc[c] = 0.0f;
    m = -INFINITY;
    s = 0.0f;
    for (int j = begin + lane; j < end; j += LANES) {
        float row[D];
        ld_row<D>(kb + (long long)j * p.k_ld, row);
        float dot = 0.0f;
#pragma unroll
        for (int c = 0; c < D; ++c) dot = fmaf(qr[c], row[c], dot);
        const float logit = dot * p.scale;
        const float mn = fmaxf(m, logit);
        const float corr = rescale(m, mn);
        const float e = expf(logit - mn);
        s = s * corr + e;
        ld_row<D>(vb + (long long)j * p.v_ld, row);
#pragma unroll
        for (int c = 0; c < D; ++c) acc[c] = fmaf(e, row[c], acc[c] * corr);
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
}

// Group g of `per` (prompt, query, head) items: its prompt b, query i and head h.
struct Item {
    int b, i, h;
};
SAMRT_DEVICE Item item(const AttnDecParams& p, long long g) {
    return Item{(int)(g / ((long long)p.heads * p.lq)), (int)((g / p.heads) % p.lq),
                (int)(g % p.heads)};
}

template <int D, class TQ>
SAMRT_DEVICE void load_q(const AttnDecParams& p, Item t, float (&qr)[D]) {
    const TQ* q = static_cast<const TQ*>(p.q) + t.b * p.q_batch + (long long)t.i * p.q_ld + t.h * D;
#pragma unroll
    for (int c = 0; c < D; ++c) qr[c] = ld(q + c);
}

template <int D, int LANES, class TQ, class TKV, class TO>
SAMRT_DEVICE void attn_dec(const AttnDecParams& p) {
    constexpr int GROUPS = 128 / LANES;
    const long long g = (long long)blockIdx.x * GROUPS + threadIdx.x / LANES;
    const int lane = threadIdx.x % LANES;
    const long long total = (long long)p.batch * p.lq * p.heads;
    if (g >= total) return;  // whole groups leave together (GROUPS divides 128)
    const Item t = item(p, g);
    const TKV* kb = static_cast<const TKV*>(p.k) + t.b * p.k_batch + t.h * D;
    const TKV* vb = static_cast<const TKV*>(p.v) + t.b * p.v_batch + t.h * D;
    float qr[D], acc[D], m, s;
    load_q<D, TQ>(p, t, qr);
    attn_dec_keys<D, LANES, TKV>(qr, kb, vb, p, 0, p.lk, lane, m, s, acc);
    if (lane != 0) return;
    TO* o = static_cast<TO*>(p.o) + t.b * p.o_batch + (long long)t.i * p.o_ld + t.h * D;
    const float inv = 1.0f / s;
#pragma unroll
    for (int c = 0; c < D; ++c) st(o + c, acc[c] * inv);
}

// Pass 1 of t2i_split: warp w is chunk w % chunks of group w / chunks; its state goes to
// p.o as fp32 [group][chunk][m, s, acc[0..D)].
template <int D>
SAMRT_DEVICE void attn_dec_split(const AttnDecParams& p) {
    const long long w = (long long)blockIdx.x * 4 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    const long long total = (long long)p.batch * p.lq * p.heads * p.chunks;
    if (w >= total) return;  // whole warps leave together
    const long long g = w / p.chunks;
    const int chunk = (int)(w % p.chunks);
    const int len = (p.lk + p.chunks - 1) / p.chunks;
    const int begin = min(chunk * len, p.lk), end = min(begin + len, p.lk);
    const Item t = item(p, g);
    const __half* kb = static_cast<const __half*>(p.k) + t.b * p.k_batch + t.h * D;
    const __half* vb = static_cast<const __half*>(p.v) + t.b * p.v_batch + t.h * D;
    float qr[D], acc[D], m, s;
    load_q<D, float>(p, t, qr);
    attn_dec_keys<D, 32, __half>(qr, kb, vb, p, begin, end, lane, m, s, acc);
    if (lane != 0) return;
    float* o = static_cast<float*>(p.o) + w * (D + 2);
    o[0] = m;
    o[1] = s;
#pragma unroll
    for (int c = 0; c < D; ++c) o[2 + c] = acc[c];
}

// Pass 2 of t2i_split: a warp per group, lane k holding chunks k, k + 32, ... (merged in
// that order against the group's exact max), then a fixed butterfly sums the lanes; every
// step's order is fixed by the chunk count alone. p.q is the scratch pass 1 wrote.
template <int D>
SAMRT_DEVICE void attn_dec_combine(const AttnDecParams& p) {
    const long long g = (long long)blockIdx.x * 4 + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (g >= (long long)p.batch * p.lq * p.heads) return;  // whole warps leave together
    const float* part = static_cast<const float*>(p.q) + g * p.chunks * (D + 2);
    float m = -INFINITY;
    for (int k = lane; k < p.chunks; k += 32) m = fmaxf(m, part[k * (D + 2)]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, off));
    float s = 0.0f, acc[D];
#pragma unroll
    for (int c = 0; c < D; ++c) acc[c] = 0.0f;
    for (int k = lane; k < p.chunks; k += 32) {
        const float* st_k = part + k * (D + 2);
        const float e = rescale(st_k[0], m);
        s = fmaf(st_k[1], e, s);
#pragma unroll
        for (int c = 0; c < D; ++c) acc[c] = fmaf(st_k[2 + c], e, acc[c]);
    }
    s = samrt::warp_sum(s);
#pragma unroll
    for (int c = 0; c < D; ++c) acc[c] = samrt::warp_sum(acc[c]);
    if (lane != 0) return;
    const Item t = item(p, g);
    float* o = static_cast<float*>(p.o) + t.b * p.o_batch + (long long)t.i * p.o_ld + t.h * D;
    const float inv = 1.0f / s;
#pragma unroll
    for (int c = 0; c < D; ++c) o[c] = acc[c] * inv;
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

#define SAMRT_ATTN_DEC_SPLIT(D) \
    extern "C" __global__ void __launch_bounds__(128) attn_decoder_t2i_split_d##D##_f32( \
        const AttnDecParams p) { \
        attn_dec_split<D>(p); \
    } \
    extern "C" __global__ void __launch_bounds__(128) attn_decoder_combine_d##D##_f32( \
        const AttnDecParams p) { \
        attn_dec_combine<D>(p); \
    }

SAMRT_ATTN_DEC_SPLIT(16)
SAMRT_ATTN_DEC_SPLIT(32)
SAMRT_ATTN_DEC_SPLIT(64)
