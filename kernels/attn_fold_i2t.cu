// Image->token folded attention with the residual add (src/cuda/ops/attn_fold_i2t.rs, the
// contract in src/graph/fold_ops.rs). For prompt b and image row j (b' = 0 when the image
// side is shared):
//   keys[b,j,:] += bias + sum_h sum_t p[h,t] vf[b,t,h,:],
//   p[h,:] = softmax_t(scale * (xpe[b',j,:] . kf[b,t,h,:] + cb[b,t,h])), t < tokens (<= 32).
// The image side's q projection is folded into kf and out_proj into vf, so both products
// have the image width DIM (128 or 256) as k or n and each head only `tokens` columns.
//
// Block: 8 warps, 64 image rows of one prompt; grid (row tiles, prompts), so a prompt's
// arithmetic never depends on the batch. A pair of warps (w, w + 4) owns 16 rows: each sums
// half of S's k range and one half of O's DIM columns, so that a batch-1 image (64 blocks)
// still runs 8 warps per SM and O takes DIM / 4 registers a thread. The xpe tile is copied
// once into shared memory (cp.async). Per head h the block holds kf_h and vf_h as fp16
// [TP][DIM + 8] (TP = 16 or 32 token rows, rows past `tokens` zero): the fp32 rows of head
// h + 1 stream by cp.async into an fp32 staging area while head h computes, and are
// converted to fp16 between heads (the fp16 rounding of the folded rows is this kernel's
// input quantisation).
// S_h = Xpe Kf_h^T (16 x 8 NT per pair, k = DIM; NT = 1, 2 or 4 n-tiles for up to 8, 16
// or 32 tokens) on mma.sync: the first warp of a pair starts from cb (padded columns
// -inf), each adds its partner's partial through shared memory (a 64-thread named
// barrier), and both complete the same softmax over the head's tokens in registers (quad
// shuffles, exp2f with scale * log2 e folded in). Normalised P_h becomes fp16 A fragments
// and O += P_h Vf_h (16 x DIM / 2 per warp) accumulates in fp32 across heads, starting from
// out_proj's bias. Epilogue: keys += O, fp32 read-modify-write from the accumulator
// fragments (each quad covers one 32-byte sector of a row). Rows of DIM + 8 halves (an odd
// number of 16-byte chunks) keep every ldmatrix phase conflict-free; the fp32 staging is
// read one float4 per lane, a warp within one row; the partial scores one float4 per lane.
#include "common.cuh"

namespace {

constexpr int FBM = 64;  // image rows per block
constexpr int FWARPS = 8;  // a pair of warps per 16 rows, one per half of DIM
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

// NT: 8-token score n-tiles (1, 2 or 4: up to 8, 16 or 32 tokens). TP: token rows of the
// fp16 kf / vf tiles, a whole number of 16-row P V k-steps.
template <int DIM, int NT>
SAMRT_DEVICE void fold_i2t(const FoldI2tParams& p) {
    constexpr int TP = NT * 8 < 16 ? 16 : NT * 8;
    constexpr int LDS = DIM + 8;   // halves per shared row
    constexpr int CH = DIM / 8;    // 16-byte fp16 chunks per row
    constexpr int C4 = DIM / 4;    // float4 per fp32 row
    constexpr int KS = DIM / 16;   // k16 steps of S (KS / 2 per warp), d-tile pairs of O
    constexpr int HD = DIM / 2;    // the O columns (and S's k range) of one warp
    static_assert(C4 % 32 == 0 && FTHREADS % C4 == 0, "a warp's float4 run stays in one row");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_x = reinterpret_cast<__half*>(smem_raw);  // [FBM][LDS]
    __half* s_k = s_x + FBM * LDS;                       // [TP][LDS]
    __half* s_v = s_k + TP * LDS;                        // [TP][LDS]
    float* s_part = reinterpret_cast<float*>(s_v + TP * LDS);  // [FWARPS][NT][32][4]
    float* s_raw = s_part + FWARPS * NT * 32 * 4;                 // [2][tokens][DIM]

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int rw = warp & 3;     // rows rw * 16 .. + 15
    const int half = warp >> 2;  // O columns and S's k range half * HD .. + HD - 1
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int j0 = blockIdx.x * FBM;
    const int b = blockIdx.y;
    const int tokens = p.tokens;
    const int heads = p.heads;
    const int hw = p.hw;

    // ---- xpe tile (rows past hw zero-filled; their outputs are never stored) ----
    {
        const int ch = tid % CH;
        const __half* xb = p.xpe + b * p.xpe_batch + ch * 8;
#pragma unroll
        for (int r = tid / CH; r < FBM; r += FTHREADS / CH) {
            const bool ok = j0 + r < hw;
            const __half* src = ok ? xb + static_cast<long long>(j0 + r) * DIM : p.xpe;
            samrt::cp_async_16(samrt::smem_addr(s_x + r * LDS + ch * 8), src, ok);
        }
    }
    samrt::cp_async_commit();

    // The warp's part of keys (16 rows x HD floats) towards L2 now, so that the epilogue's
    // read-modify-write after the heads waits on L2 rather than DRAM.
    float* kb = p.keys + static_cast<long long>(b) * hw * DIM;
    {
        constexpr int LINES = HD * 4 / 128;  // 128-byte lines per row part
        for (int i = lane; i < 16 * LINES; i += 32) {
            const int j = j0 + rw * 16 + i / LINES;
            const float* a = kb + static_cast<long long>(j) * DIM + half * HD + (i % LINES) * 32;
            if (j < hw) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(a));
        }
    }

    // Each thread copies and converts one float4 column c4 of every RPP-th token row.
    constexpr int RPP = FTHREADS / C4;
    const int c4 = tid % C4;
    const int t0 = tid / C4;
    // fp32 rows (t, h) of kf and vf into the staging area, [K rows | V rows]. Addresses
    // step by constants (the loops run per head: their index arithmetic counts).
    const long long row_stride = static_cast<long long>(heads) * DIM;  // between tokens
    const long long pb = (static_cast<long long>(b) * tokens + t0) * row_stride + c4 * 4;
    const uint32_t raw_k = samrt::smem_addr(s_raw + t0 * DIM + c4 * 4);
    const uint32_t raw_v = raw_k + tokens * DIM * 4;
    auto stage = [&](int h) {
        const float* kp = p.kf + pb + static_cast<long long>(h) * DIM;
        const float* vp = p.vf + pb + static_cast<long long>(h) * DIM;
        uint32_t dk = raw_k, dv = raw_v;
#pragma unroll 1
        for (int t = t0; t < tokens; t += RPP) {
            samrt::cp_async_16(dk, kp, true);
            samrt::cp_async_16(dv, vp, true);
            kp += RPP * row_stride;
            vp += RPP * row_stride;
            dk += RPP * DIM * 4;
            dv += RPP * DIM * 4;
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

    // O starts at out_proj's bias (the CPU's order too: bias, then the heads' sums).
    float o[KS][4];
#pragma unroll
    for (int d = 0; d < KS; ++d) {
        const float2 bi =
            __ldg(reinterpret_cast<const float2*>(p.bias + half * HD + d * 8 + 2 * t4));
        o[d][0] = o[d][2] = bi.x;
        o[d][1] = o[d][3] = bi.y;
    }
    const float sl2 = p.scale * 1.4426950408889634f;
    const uint32_t x_addr = samrt::smem_addr(s_x);
    const uint32_t k_addr = samrt::smem_addr(s_k);
    const uint32_t v_addr = samrt::smem_addr(s_v);
    const float* cbb = p.cb + static_cast<long long>(b) * tokens * heads;

#pragma unroll 1
    for (int h = 0; h < heads; ++h) {
        samrt::cp_async_wait<0>();
        __syncthreads();  // head h staged (and the xpe tile); everyone done with head h - 1
        {
            const float* src = s_raw + t0 * DIM + c4 * 4;
            __half* dst = s_k + t0 * LDS + c4 * 4;
#pragma unroll 1
            for (int t = t0; t < tokens; t += RPP) {
                const float4 kx = *reinterpret_cast<const float4*>(src);
                const float4 vx = *reinterpret_cast<const float4*>(src + tokens * DIM);
                *reinterpret_cast<uint2*>(dst) =
                    make_uint2(samrt::pack_half2(kx.x, kx.y), samrt::pack_half2(kx.z, kx.w));
                *reinterpret_cast<uint2*>(dst + TP * LDS) =
                    make_uint2(samrt::pack_half2(vx.x, vx.y), samrt::pack_half2(vx.z, vx.w));
                src += RPP * DIM;
                dst += RPP * LDS;
            }
        }
        __syncthreads();  // fp16 head h visible; the staging area is free
        if (h + 1 < heads) stage(h + 1);
        samrt::cp_async_commit();

        // ---- S = cb (padded columns -inf) + Xpe Kf_h^T: each warp of a pair sums half of
        // the k range (the first starting from cb), then adds its partner's half ----
        float s[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                const int t = nt * 8 + 2 * t4 + j;
                float c = -INFINITY;
                if (t < tokens) c = half ? 0.0f : __ldg(cbb + t * heads + h);
                s[nt][j] = c;
                s[nt][2 + j] = c;
            }
#pragma unroll
        for (int k2 = 0; k2 < KS / 2; ++k2) {
            const int ks = half * (KS / 2) + k2;
            uint32_t a[4];
            {
                const int r = rw * 16 + (lane & 15);
                const int col = ks * 16 + (lane >> 4) * 8;
                samrt::ldmatrix_x4(a[0], a[1], a[2], a[3], x_addr + (r * LDS + col) * 2);
            }
            if constexpr (NT == 1) {
                samrt::mma_qk_8keys(s[0], a, k_addr, 0, ks * 16, LDS, lane);
            } else {
#pragma unroll
                for (int np = 0; np < NT / 2; ++np)
                    samrt::mma_qk_16keys(s[2 * np], s[2 * np + 1], a, k_addr, np * 16, ks * 16,
                                         LDS, lane);
            }
        }

        // Both warps of a pair form own + partner, the same bits (fp32 addition commutes).
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
            *reinterpret_cast<float4*>(s_part + ((warp * NT + nt) * 32 + lane) * 4) =
                make_float4(s[nt][0], s[nt][1], s[nt][2], s[nt][3]);
        // Named barrier 1 + rw: the pair's 64 threads (barrier 0 is __syncthreads).
        asm volatile("bar.sync %0, 64;\n" ::"r"(1 + rw) : "memory");
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
            const float4 q =
                *reinterpret_cast<const float4*>(s_part + (((warp ^ 4) * NT + nt) * 32 + lane) * 4);
            s[nt][0] += q.x;
            s[nt][1] += q.y;
            s[nt][2] += q.z;
            s[nt][3] += q.w;
        }

        // ---- softmax over the head's tokens; a row is spread over the 4 lanes of a quad ----
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float mx = samrt::quad_row_max(s, i);
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
            sum = samrt::quad_sum(sum);
            const float inv = 1.0f / sum;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                s[nt][2 * i] *= inv;
                s[nt][2 * i + 1] *= inv;
            }
        }

        // ---- O += P_h Vf_h: the score C fragments re-used as fp16 A fragments ----
        if constexpr (NT == 1) {
            const float none[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // tokens 8-15: zero V rows
            samrt::mma_pv_16keys<KS / 2>(o, s[0], none, v_addr + half * HD * 2, 0, LDS, lane);
        } else {
#pragma unroll
            for (int kk = 0; kk < NT / 2; ++kk)
                samrt::mma_pv_16keys<KS / 2>(o, s[2 * kk], s[2 * kk + 1], v_addr + half * HD * 2,
                                             kk * 16, LDS, lane);
        }
    }
    samrt::cp_async_wait<0>();

    // ---- keys += O (bias included) ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int j = j0 + rw * 16 + g + 8 * i;
        if (j >= hw) continue;
        float* row = kb + static_cast<long long>(j) * DIM + half * HD;
#pragma unroll
        for (int d = 0; d < KS; ++d) {
            float2* dst = reinterpret_cast<float2*>(row + d * 8 + 2 * t4);
            float2 k = *dst;
            k.x += o[d][2 * i];
            k.y += o[d][2 * i + 1];
            *dst = k;
        }
    }
}

template <int DIM>
SAMRT_DEVICE void fold_i2t_any(const FoldI2tParams& p) {
    if (p.tokens <= 8) fold_i2t<DIM, 1>(p);
    else if (p.tokens <= 16) fold_i2t<DIM, 2>(p);
    else fold_i2t<DIM, 4>(p);
}

}  // namespace

#define SAMRT_FOLD_I2T(DIM)                                                        \
    extern "C" __global__ void __launch_bounds__(FTHREADS, 1)                       \
        attn_fold_i2t_d##DIM##_f16(const FoldI2tParams p) {                         \
        fold_i2t_any<DIM>(p);                                                       \
    }

SAMRT_FOLD_I2T(128)
SAMRT_FOLD_I2T(256)
