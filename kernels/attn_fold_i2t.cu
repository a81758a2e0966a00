// Image->token folded attention with the residual add (src/cuda/ops/attn_fold_i2t.rs, the
// contract in src/graph/fold_ops.rs). For prompt b and image row j (b' = 0 when the image
// side is shared):
//   keys[b,j,:] += bias + sum_h sum_t p[h,t] vf[b,t,h,:],
//   p[h,:] = softmax_t(scale * (xpe[b',j,:] . kf[b,t,h,:] + cb[b,t,h])), t < tokens (<= 32).
// The image side's q projection is folded into kf and out_proj into vf, so both products
// have the image width DIM (128 or 256) as k or n and each head only `tokens` columns.
//
// Block: 4 warps, 64 image rows (16 per warp) of one prompt; grid (row tiles, prompts), so
// a prompt's arithmetic never depends on the batch. The xpe tile is copied once into shared
// memory (cp.async). Per head h the block holds kf_h and vf_h as fp16 [TP][DIM + 8]
// (TP = 16 or 32 token rows, rows past `tokens` zero): the fp32 rows of head h + 1 stream
// by cp.async into an fp32 staging area while head h computes, and are converted to fp16
// between heads (the fp16 rounding of the folded rows is this kernel's input quantisation).
// S_h = Xpe Kf_h^T (16 x TP per warp, k = DIM) on mma.sync; the scores are initialised with
// cb (padded columns -inf), the softmax over the head's tokens completes in registers (quad
// shuffles, exp2f with scale * log2 e folded in), normalised P_h becomes fp16 A fragments and
// O += P_h Vf_h (16 x DIM per warp) accumulates in fp32 across heads. Epilogue: keys += O +
// bias, fp32 read-modify-write from the accumulator fragments (each quad covers one 32-byte
// sector of a row). Rows of DIM + 8 halves (an odd number of 16-byte chunks) keep every
// ldmatrix phase conflict-free; the fp32 staging is read one float4 per lane, a warp within
// one row.
#include "common.cuh"

namespace {

constexpr int FBM = 64;  // image rows per block
constexpr int FWARPS = 4;
constexpr int FTHREADS = FWARPS * 32;

}  // namespace

// Mirrored field for field by `FoldI2tParams` in src/cuda/ops/attn_fold_i2t.rs (#[repr(C)]).
struct FoldI2tParams {
    const __half* xpe;    // [1 or batch, hw, DIM]
    const float* kf;      // [batch, tokens, heads, DIM]
    const float* cb;      // [batch, tokens, heads]
    const float* vf;      // [batch, tokens, heads, DIM]
    const float* bias;    // [DIM]
    float* keys;          // [batch, hw, DIM], updated in place
    long long xpe_batch;  // elements between prompts' image sides: 0 when shared
    int batch;
    int tokens;
    int heads;
    int hw;
    float scale;  // 1 / sqrt(head_dim)
    int pad_;
};

namespace {

template <int DIM, int TP>
SAMRT_DEVICE void fold_i2t(const FoldI2tParams& p) {
    constexpr int LDS = DIM + 8;   // halves per shared row
    constexpr int CH = DIM / 8;    // 16-byte fp16 chunks per row
    constexpr int C4 = DIM / 4;    // float4 per fp32 row
    constexpr int KS = DIM / 16;   // k16 steps of S, and d-tile pairs of O
    constexpr int NT = TP / 8;     // score n-tiles
    static_assert(C4 % 32 == 0, "a warp's float4 run stays inside one row");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_x = reinterpret_cast<__half*>(smem_raw);  // [FBM][LDS]
    __half* s_k = s_x + FBM * LDS;                       // [TP][LDS]
    __half* s_v = s_k + TP * LDS;                        // [TP][LDS]
    float* s_raw = reinterpret_cast<float*>(s_v + TP * LDS);  // [2][tokens][DIM]

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int j0 = blockIdx.x * FBM;
    const int b = blockIdx.y;
    const int tokens = p.tokens;
    const int heads = p.heads;
    const int hw = p.hw;

    // ---- xpe tile (rows past hw zero-filled; their outputs are never stored) ----
    const __half* xb = p.xpe + b * p.xpe_batch;
    for (int c = tid; c < FBM * CH; c += FTHREADS) {
        const int r = c / CH, ch = c % CH;
        const bool ok = j0 + r < hw;
        const __half* src = ok ? xb + static_cast<long long>(j0 + r) * DIM + ch * 8 : p.xpe;
        samrt::cp_async_16(samrt::smem_addr(s_x + r * LDS + ch * 8), src, ok);
    }
    samrt::cp_async_commit();

    // fp32 rows (t, h) of kf and vf into the staging area, [K rows | V rows].
    const long long row_stride = static_cast<long long>(heads) * DIM;  // between tokens
    const long long pb = static_cast<long long>(b) * tokens * row_stride;
    auto stage = [&](int h) {
        const float* kb = p.kf + pb + static_cast<long long>(h) * DIM;
        const float* vb = p.vf + pb + static_cast<long long>(h) * DIM;
        for (int c = tid; c < tokens * C4; c += FTHREADS) {
            const int t = c / C4, c4 = c % C4;
            const long long off = t * row_stride + c4 * 4;
            samrt::cp_async_16(samrt::smem_addr(s_raw + t * DIM + c4 * 4), kb + off, true);
            samrt::cp_async_16(samrt::smem_addr(s_raw + (tokens + t) * DIM + c4 * 4), vb + off,
                               true);
        }
    };
    stage(0);
    samrt::cp_async_commit();

    // Padded token rows stay zero: their logits are -inf, and P = 0 times a finite V is 0.
    for (int c = tid; c < (TP - tokens) * CH; c += FTHREADS) {
        const int r = tokens + c / CH, ch = c % CH;
        *reinterpret_cast<uint4*>(s_k + r * LDS + ch * 8) = make_uint4(0, 0, 0, 0);
        *reinterpret_cast<uint4*>(s_v + r * LDS + ch * 8) = make_uint4(0, 0, 0, 0);
    }

    float o[2 * KS][4];
#pragma unroll
    for (int i = 0; i < 2 * KS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
    const float sl2 = p.scale * 1.4426950408889634f;
    const uint32_t x_addr = samrt::smem_addr(s_x);
    const uint32_t k_addr = samrt::smem_addr(s_k);
    const uint32_t v_addr = samrt::smem_addr(s_v);
    const float* cbb = p.cb + static_cast<long long>(b) * tokens * heads;

#pragma unroll 1
    for (int h = 0; h < heads; ++h) {
        samrt::cp_async_wait<0>();
        __syncthreads();  // head h staged (and the xpe tile); everyone done with head h - 1
        for (int c = tid; c < 2 * tokens * C4; c += FTHREADS) {
            const int r = c / C4, c4 = c % C4;  // r < tokens: K row r, else V row r - tokens
            const float4 f = *reinterpret_cast<const float4*>(s_raw + r * DIM + c4 * 4);
            __half* dst = r < tokens ? s_k + r * LDS : s_v + (r - tokens) * LDS;
            *reinterpret_cast<uint2*>(dst + c4 * 4) =
                make_uint2(samrt::pack_half2(f.x, f.y), samrt::pack_half2(f.z, f.w));
        }
        __syncthreads();  // fp16 head h visible; the staging area is free
        if (h + 1 < heads) stage(h + 1);
        samrt::cp_async_commit();

        // ---- S = cb (padded columns -inf), then S += Xpe Kf_h^T ----
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int t = nt * 8 + 2 * t4 + j;
                const float c = t < tokens ? __ldg(cbb + t * heads + h) : -INFINITY;
                s[nt][j] = c;
                s[nt][2 + j] = c;
            }
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t a[4];
            {
                const int r = warp * 16 + (lane & 15);
                const int col = ks * 16 + (lane >> 4) * 8;
                samrt::ldmatrix_x4(a[0], a[1], a[2], a[3], x_addr + (r * LDS + col) * 2);
            }
#pragma unroll
            for (int np = 0; np < TP / 16; ++np)
                samrt::mma_qk_16keys(s[2 * np], s[2 * np + 1], a, k_addr, np * 16, ks * 16, LDS,
                                     lane);
        }

        // ---- softmax over the head's tokens; a row is spread over the 4 lanes of a quad ----
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            // Token 0 always exists, so mx is finite and padded columns give exp2(-inf) = 0.
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const float e = exp2f((s[nt][2 * i + j] - mx) * sl2);
                    s[nt][2 * i + j] = e;
                    sum += e;
                }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = 1.0f / sum;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                s[nt][2 * i] *= inv;
                s[nt][2 * i + 1] *= inv;
            }
        }

        // ---- O += P_h Vf_h: the score C fragments re-used as fp16 A fragments ----
#pragma unroll
        for (int kk = 0; kk < TP / 16; ++kk)
            samrt::mma_pv_16keys<KS>(o, s[2 * kk], s[2 * kk + 1], v_addr, kk * 16, LDS, lane);
    }
    samrt::cp_async_wait<0>();

    // ---- keys += O + bias ----
    float* kb = p.keys + static_cast<long long>(b) * hw * DIM;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int j = j0 + warp * 16 + g + 8 * i;
        if (j >= hw) continue;
        float* row = kb + static_cast<long long>(j) * DIM;
#pragma unroll
        for (int d = 0; d < 2 * KS; ++d) {
            const int col = d * 8 + 2 * t4;
            const float2 bi = __ldg(reinterpret_cast<const float2*>(p.bias + col));
            float2* dst = reinterpret_cast<float2*>(row + col);
            float2 k = *dst;
            k.x += o[d][2 * i] + bi.x;
            k.y += o[d][2 * i + 1] + bi.y;
            *dst = k;
        }
    }
}

template <int DIM>
SAMRT_DEVICE void fold_i2t_any(const FoldI2tParams& p) {
    if (p.tokens <= 16) fold_i2t<DIM, 16>(p);
    else fold_i2t<DIM, 32>(p);
}

}  // namespace

#define SAMRT_FOLD_I2T(DIM)                                                        \
    extern "C" __global__ void __launch_bounds__(FTHREADS, 2)                       \
        attn_fold_i2t_d##DIM##_f16(const FoldI2tParams p) {                         \
        fold_i2t_any<DIM>(p);                                                       \
    }

SAMRT_FOLD_I2T(128)
SAMRT_FOLD_I2T(256)
