// The mask decoder's folded token->image attention (src/cuda/ops/attn_fold_t2i.rs), split
// over the image rows flash-decoding style:
//   y[b, r] = softmax_j(scale * qf[b, r] . xpe[b', j]) @ x[b', j]
// for every folded row r = (token, head) of prompt b (rows = tokens * heads, row width D =
// the image token width 128 or 256), b' = 0 for a shared image side, else b.
//
// Pass 1 (attn_fold_t2i_d{D}_f16): a block takes 64 folded rows of one prompt (rows past
// `rows` are zero queries whose state is never stored) and one chunk of `chunk_len` image
// rows. Its Q' tile is converted from fp32 to fp16 into shared memory once; the chunk's xpe
// and x rows stream through a double-buffered cp.async ring of FBN-row tiles. Two groups of
// 4 warps (a warp per 16 folded rows) split every tile: group g takes its image rows
// [16 g, 16 g + 16), so a prompt's few blocks run twice the warps, each with half the
// dependent instructions; the groups' states merge through shared memory at the end, in a
// fixed order. S = Q' Xpe^T and O += P X run on the tensor cores (mma.sync m16n8k16, fp32
// accumulators) with the softmax online in registers (FlashAttention-2). Image rows past the
// chunk's end are zero-filled and get a -inf logit. The chunk's unnormalised state goes to
// `partial` [batch, rows, chunks, D + 2] fp32 as (m, l, acc[0..D)): m the reference max in
// log2 units of the scaled logit (scale * log2(e) folded into one FFMA before exp2), l the
// sum of the weights exp2(logit - m) exactly as rounded to fp16 for the PV product (so that
// numerator and denominator weigh the same p), acc the D accumulators. m is the chunk's
// running max raised lazily (only when a tile's max passes it by MAX_SLACK = 8), so weights
// stay <= 256 and most tiles skip rescaling O (the FlashAttention-3 trick); m <= the true max
// keeps the largest weight >= 1.
//
// Pass 2 (attn_fold_t2i_combine_d{D}_f32): a block per (prompt, folded row) merges the
// row's chunks in chunk order against their largest max; the order depends only on the chunk
// count (a function of hw), never on the batch, and no atomics are involved, so a prompt's
// output is bit-identical in any batch.
//
// Shared rows are padded by 8 halves (D + 8 halves = an odd number of 16-byte chunks), which
// keeps every ldmatrix phase (8 rows, one chunk) and the cp.async stores bank-conflict free.
#include "common.cuh"

// Mirrored field for field by `FoldT2iParams` in src/cuda/ops/attn_fold_t2i.rs.
struct FoldT2iParams {
    const float* qf;      // [batch, rows, D] fp32
    const __half* xpe;    // [1 or batch, hw, D] fp16
    const __half* x;      // [1 or batch, hw, D] fp16
    float* partial;       // [batch, rows, chunks, D + 2] fp32
    float* y;             // combine: [batch, rows, D] fp32
    long long image_batch;  // elements between prompts' image sides (0: shared)
    int batch;
    int rows;
    int hw;
    int chunks;
    int chunk_len;  // ceil(hw / chunks)
    float sl2;      // scale * log2(e)
};

namespace {

constexpr int FBM = 64;  // folded rows per block
constexpr int FBN = 32;  // image rows per streamed tile
constexpr int FGROUP = 16;  // of which each warp group takes one half
// Two groups of 4 warps (16 folded rows each) split every tile's image rows: twice the
// warps per prompt, each with half the dependent instructions per chunk.
constexpr int FWARPS = 8;
// Tiles in the cp.async ring: FSTAGES - 1 in flight while one is computed. Two suffice: a
// warp's work on its half of a tile (~480 instructions) outlasts a tile's load; a third
// stage would only add 33 KiB of shared memory at D = 256.
constexpr int FSTAGES = 2;
constexpr int FTHREADS = FWARPS * 32;
constexpr int CTHREADS = 128;  // combine
// log2 units a tile's max may exceed the running reference max before it is raised.
constexpr float MAX_SLACK = 8.0f;

template <int D>
struct FoldTile {
    static constexpr int LDS = D + 8;  // halves per shared row
    static constexpr int CH = D / 8;   // 16-byte chunks per row
    static constexpr int TILE = FBN * LDS;
    static constexpr int KS = D / 16;  // k16 steps of Q' Xpe^T, d-tile pairs of P X
    static constexpr int NT = FGROUP / 8;  // score n-tiles per group tile
    static constexpr int LDO = D + 8;  // floats per row of group 1's O, staged for the merge
    // Dynamic shared memory, as the launcher computes it (`smem_bytes`): the Q' tile, then
    // FSTAGES xpe and FSTAGES x tiles, fp16.
    static constexpr int SMEM = (FBM * LDS + 2 * FSTAGES * TILE) * 2;
    static_assert(SMEM <= 160 * 1024, "a block must fit an sm_80 SM's shared memory");
    static_assert(FBM * LDO * 4 <= 2 * FSTAGES * TILE * 2, "the merge reuses the ring");
    static_assert(FBM * 2 * 4 <= FBM * LDS * 2, "and the Q' tile for (m, l)");
};

template <int D>
SAMRT_DEVICE void fold_t2i(const FoldT2iParams& p) {
    using T = FoldTile<D>;
    constexpr int LDS = T::LDS, CH = T::CH, KS = T::KS, NT = T::NT;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_q = reinterpret_cast<__half*>(smem_raw);
    __half* s_k = s_q + FBM * LDS;           // xpe, FSTAGES tiles
    __half* s_v = s_k + FSTAGES * T::TILE;   // x, FSTAGES tiles

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int grp = warp >> 2;  // warp group: image rows [grp * 16, grp * 16 + 16) of a tile
    const int wq = warp & 3;    // folded rows [wq * 16, wq * 16 + 16) of the block
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int r0 = blockIdx.x * FBM;
    const int chunk = blockIdx.y;
    const int b = blockIdx.z;
    const int begin = chunk * p.chunk_len;
    const int end = min(begin + p.chunk_len, p.hw);
    const __half* kb = p.xpe + b * p.image_batch;
    const __half* vb = p.x + b * p.image_batch;

    // Each thread copies one fixed 16-byte column chunk `ch` of rows r_ld, r_ld + RSTEP, ...
    // of a tile; only the tile's base moves.
    constexpr int RSTEP = FTHREADS / CH;
    const int ch = tid % CH, r_ld = tid / CH;
    const long long src0 = static_cast<long long>(begin + r_ld) * D + ch * 8;
    const uint32_t dk0 = samrt::smem_addr(s_k + r_ld * LDS + ch * 8);
    const uint32_t dv0 = samrt::smem_addr(s_v + r_ld * LDS + ch * 8);
    auto load_tile = [&](int tile, int stage) {
        const int rem = end - begin - tile * FBN - r_ld;  // rows of this thread still inside
        const __half* k = kb + src0 + static_cast<long long>(tile) * FBN * D;
        const __half* v = vb + src0 + static_cast<long long>(tile) * FBN * D;
        const uint32_t so = stage * T::TILE * 2;
#pragma unroll
        for (int i = 0; i < FBN / RSTEP; ++i) {
            const bool ok = i * RSTEP < rem;
            const uint32_t d = so + i * RSTEP * LDS * 2;
            samrt::cp_async_16(dk0 + d, ok ? k + i * RSTEP * D : kb, ok);
            samrt::cp_async_16(dv0 + d, ok ? v + i * RSTEP * D : vb, ok);
        }
    };
    // Prologue: tiles 0 .. FSTAGES - 2 in flight (a group per tile, empty past the chunk).
#pragma unroll
    for (int t = 0; t < FSTAGES - 1; ++t) {
        if (t * FBN < end - begin) load_tile(t, t);
        samrt::cp_async_commit();
    }

    // ---- Q' tile, fp32 -> fp16 (rounded to nearest), rows past `rows` zero ----
    {
        constexpr int C4 = D / 4, QSTEP = FTHREADS / C4;
        const int c4 = tid % C4, rq = tid / C4;
        const float* qb = p.qf + (static_cast<long long>(b) * p.rows + r0 + rq) * D + c4 * 4;
        const int qrem = p.rows - r0 - rq;
#pragma unroll 4
        for (int i = 0; i < FBM / QSTEP; ++i) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (i * QSTEP < qrem) v = *reinterpret_cast<const float4*>(qb + i * QSTEP * D);
            uint2 h;
            h.x = samrt::pack_half2(v.x, v.y);
            h.y = samrt::pack_half2(v.z, v.w);
            *reinterpret_cast<uint2*>(s_q + (rq + i * QSTEP) * LDS + c4 * 4) = h;
        }
    }

    const int r_lo = wq * 16 + g;  // block-local rows of this thread's fragments
    // Each lane's ldmatrix row address within a tile; the loops below add constants.
    // xpe, for the B operand of S: (rows 0-7, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 0-7),
    // (rows 8-15, k 8-15) of each 16-row, 16-column block.
    const uint32_t k_lane = samrt::smem_addr(
        s_k + (grp * FGROUP + (lane & 7) + ((lane >> 4) << 3)) * LDS + ((lane >> 3) & 1) * 8);
    // x, transposed for the B operand of P X: (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys
    // 0-7, d 8-15), (keys 8-15, d 8-15): b0, b1 of d-tile 2dp, then of 2dp + 1.
    const uint32_t v_lane = samrt::smem_addr(
        s_v + (grp * FGROUP + (lane & 7) + ((lane >> 3) & 1) * 8) * LDS + (lane >> 4) * 8);
    const uint32_t q_addr = samrt::smem_addr(s_q + (wq * 16 + (lane & 15)) * LDS + (lane >> 4) * 8);

    // At D = 128 this warp's Q' fragments stay in registers (32 a thread); at D = 256 they
    // are re-read from shared memory for every tile (O already takes 128 registers a
    // thread; keeping half of Q' too took 240 and modelled 2 % faster).
    constexpr int QREG = D <= 128 ? KS : 0;
    uint32_t qreg[QREG > 0 ? QREG : 1][4];
    bool q_loaded = false;
    float o[2 * KS][4];
#pragma unroll
    for (int i = 0; i < 2 * KS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY};  // log2 units
    float l_run[2] = {0.0f, 0.0f};            // this thread's columns only, summed at the end

    const int ntiles = (end - begin + FBN - 1) / FBN;
    int stage = 0, ld_stage = FSTAGES - 1;  // stages of tile kt and of tile kt + FSTAGES - 1
    for (int kt = 0; kt < ntiles; ++kt) {
        samrt::cp_async_wait<FSTAGES - 2>();  // tile kt's group (and all before) landed
        // Tile kt (and Q') visible to every warp; every warp is done with tile kt - 1, whose
        // stage the load below refills.
        __syncthreads();
        const int ahead = kt + FSTAGES - 1;
        if (ahead < ntiles) load_tile(ahead, ld_stage);
        samrt::cp_async_commit();
        ld_stage = ld_stage == FSTAGES - 1 ? 0 : ld_stage + 1;
        const uint32_t k_addr = k_lane + stage * T::TILE * 2;
        const uint32_t v_addr = v_lane + stage * T::TILE * 2;
        stage = stage == FSTAGES - 1 ? 0 : stage + 1;
        // Image rows of the chunk left from this group's half of the tile: none past the
        // chunk's end (the last tile's second half, or a chunk of at most 16 rows).
        const int left = end - begin - kt * FBN - grp * FGROUP;
        if (left <= 0) continue;  // warp-uniform; the barrier above is the loop's only one

        if (!q_loaded) {  // after the loop's first barrier: the Q' tile is in place
#pragma unroll
            for (int ks = 0; ks < QREG; ++ks)
                samrt::ldmatrix_x4(qreg[ks][0], qreg[ks][1], qreg[ks][2], qreg[ks][3],
                                   q_addr + ks * 32);
            q_loaded = true;
        }
        // ---- s = (0 or -inf past the chunk) + Q' Xpe^T ----
        float s[NT][4];
        const int rem = left - 2 * t4;  // image rows left from column 2 t4
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int j = 0; j < 2; ++j) {
                s[nt][j] = nt * 8 + j < rem ? 0.0f : -INFINITY;
                s[nt][2 + j] = s[nt][j];
            }
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            uint32_t a[4];
            if (ks < QREG) {
#pragma unroll
                for (int e = 0; e < 4; ++e) a[e] = qreg[ks < QREG ? ks : 0][e];
            } else {
                samrt::ldmatrix_x4(a[0], a[1], a[2], a[3], q_addr + ks * 32);
            }
#pragma unroll
            for (int np = 0; np < NT / 2; ++np) {
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4(b0, b1, b2, b3, k_addr + (np * 16 * LDS + ks * 16) * 2);
                samrt::mma_16816(s[2 * np], a, b0, b1);
                samrt::mma_16816(s[2 * np + 1], a, b2, b3);
            }
        }

        // ---- online softmax in log2 units; a row is spread over the 4 lanes of a quad ----
        uint32_t ph[NT][2];  // P as fp16 pairs: (row g, cols 2t4..), (row g + 8, cols 2t4..)
        float corr[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const float mx = samrt::quad_row_max(s, i);
            // Every group tile computed holds an image row of the chunk: mx is finite. The
            // reference max is raised only past MAX_SLACK: weights stay <= 2^MAX_SLACK (fp16
            // holds them), and corr is exactly 1 on most tiles after the first.
            const float mt = mx * p.sl2;
            const float m_new = mt > m_run[i] + MAX_SLACK ? mt : m_run[i];
            corr[i] = exp2f(m_run[i] - m_new);  // 0 on the first tile, 1 if the max held
            m_run[i] = m_new;
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
                const float e0 = exp2f(fmaf(s[nt][2 * i], p.sl2, -m_new));
                const float e1 = exp2f(fmaf(s[nt][2 * i + 1], p.sl2, -m_new));
                const __half2 h = __floats2half2_rn(e0, e1);
                const float2 f = __half22float2(h);
                sum += f.x + f.y;
                ph[nt][i] = *reinterpret_cast<const uint32_t*>(&h);
            }
            l_run[i] = l_run[i] * corr[i] + sum;
        }
        // Rescaling by exactly 1 changes no bit: the warp skips it when no row's reference
        // max moved.
        if (__any_sync(0xffffffffu, corr[0] != 1.0f || corr[1] != 1.0f)) {
#pragma unroll
            for (int d = 0; d < 2 * KS; ++d) {
                o[d][0] *= corr[0];
                o[d][1] *= corr[0];
                o[d][2] *= corr[1];
                o[d][3] *= corr[1];
            }
        }

        // ---- O += P X: the score C-fragments re-used as fp16 A-fragments ----
#pragma unroll
        for (int kk = 0; kk < FGROUP / 16; ++kk) {
            const uint32_t a[4] = {ph[2 * kk][0], ph[2 * kk][1], ph[2 * kk + 1][0],
                                   ph[2 * kk + 1][1]};
#pragma unroll
            for (int dp = 0; dp < KS; ++dp) {
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_trans(b0, b1, b2, b3, v_addr + (kk * 16 * LDS + dp * 16) * 2);
                samrt::mma_16816(o[2 * dp], a, b0, b1);
                samrt::mma_16816(o[2 * dp + 1], a, b2, b3);
            }
        }
    }
    samrt::cp_async_wait<0>();

    // ---- merge the groups: group 1 stages (m, l, O) in the ring, group 0 merges ----
    float l_sum[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float l = l_run[i];
        l = samrt::quad_sum(l);
        l_sum[i] = l;
    }
    __syncthreads();  // every warp is done with the ring and the Q' tile
    float* s_o = reinterpret_cast<float*>(s_k);  // [FBM][LDO]: group 1's O
    float* s_ml = reinterpret_cast<float*>(s_q); // [FBM][2]: group 1's (m, l)
    if (grp == 1) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int r = r_lo + 8 * i;
            if (t4 == 0) {
                s_ml[2 * r] = m_run[i];
                s_ml[2 * r + 1] = l_sum[i];
            }
#pragma unroll
            for (int d = 0; d < 2 * KS; ++d)
                *reinterpret_cast<float2*>(s_o + r * T::LDO + d * 8 + 2 * t4) =
                    make_float2(o[d][2 * i], o[d][2 * i + 1]);
        }
    }
    __syncthreads();
    if (grp == 1) return;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const int rl = r_lo + 8 * i;
        const int r = r0 + rl;
        if (r >= p.rows) continue;
        // Group 0 always saw the chunk's first image row: its m is finite; group 1's is
        // -inf when its halves held none (then its weight is 0).
        const float m1 = s_ml[2 * rl];
        const float m = fmaxf(m_run[i], m1);
        const float a0 = exp2f(m_run[i] - m), a1 = exp2f(m1 - m);
        float* dst = p.partial +
                     ((static_cast<long long>(b) * p.rows + r) * p.chunks + chunk) * (D + 2);
        if (t4 == 0) {
            dst[0] = m;
            dst[1] = l_sum[i] * a0 + s_ml[2 * rl + 1] * a1;
        }
#pragma unroll
        for (int d = 0; d < 2 * KS; ++d) {
            const float2 o1 = *reinterpret_cast<const float2*>(s_o + rl * T::LDO + d * 8 + 2 * t4);
            dst[2 + d * 8 + 2 * t4] = o[d][2 * i] * a0 + o1.x * a1;
            dst[2 + d * 8 + 2 * t4 + 1] = o[d][2 * i + 1] * a0 + o1.y * a1;
        }
    }
}

// Pass 2: block w of the grid is folded row w of [batch * rows]; thread k holds columns k,
// k + CTHREADS, ... (a block per row, so that one prompt's few rows still spread over many
// SMs). Every thread reads all the row's chunk maxima (at most FOLD_MAX_CHUNKS; the same
// addresses across the block) itself, then sums the chunks in chunk order.
template <int D>
SAMRT_DEVICE void fold_t2i_combine(const FoldT2iParams& p) {
    constexpr int PER = D / CTHREADS;
    static_assert(PER * CTHREADS == D, "a whole number of columns per thread");
    const long long w = blockIdx.x;
    const int tid = threadIdx.x;
    const float* part = p.partial + w * p.chunks * (D + 2);
    float mx = -INFINITY;
    for (int c = 0; c < p.chunks; ++c) mx = fmaxf(mx, part[c * (D + 2)]);
    float l = 0.0f, acc[PER];
#pragma unroll
    for (int k = 0; k < PER; ++k) acc[k] = 0.0f;
    for (int c = 0; c < p.chunks; ++c) {
        const float* st = part + c * (D + 2);
        const float e = exp2f(st[0] - mx);
        l = fmaf(st[1], e, l);
#pragma unroll
        for (int k = 0; k < PER; ++k) acc[k] = fmaf(st[2 + tid + CTHREADS * k], e, acc[k]);
    }
    const float inv = 1.0f / l;
    float* y = p.y + w * D;
#pragma unroll
    for (int k = 0; k < PER; ++k) y[tid + CTHREADS * k] = acc[k] * inv;
}

}  // namespace

// Shared memory: 99 KiB a block at D = 256, 51 KiB at D = 128.
#define SAMRT_FOLD_T2I(D)                                                                   \
    extern "C" __global__ void __launch_bounds__(FTHREADS, 1) attn_fold_t2i_d##D##_f16(         \
        const FoldT2iParams p) {                                                            \
        fold_t2i<D>(p);                                                                     \
    }                                                                                       \
    extern "C" __global__ void __launch_bounds__(CTHREADS) attn_fold_t2i_combine_d##D##_f32( \
        const FoldT2iParams p) {                                                            \
        fold_t2i_combine<D>(p);                                                             \
    }

SAMRT_FOLD_T2I(128)
SAMRT_FOLD_T2I(256)
