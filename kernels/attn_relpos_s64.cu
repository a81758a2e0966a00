// attn_relpos_s64_d64_f16: SAM's global attention at 1024 px (S = 64: the whole 64 x 64
// grid is one square), the encoder op `attn_relpos` of attention.cu for S = 64 on grids that
// are a multiple of 64 (no padding tokens; other grids take the run-time-S variant). Same
// parameters (AttnParams), inputs and logit formula as the other attn_relpos variants (see
// the top of attention.cu); this file is its S = 64 schedule.
//
// A block is 4 warps and 128 queries, two query rows of the square; each warp owns 32
// queries (two m16 tiles) of one query row, so every K and V fragment loaded with ldmatrix
// feeds two mma instead of one: per mma the kernel reads half the shared bytes of a 16-row
// warp, which otherwise bound it (a 64-key tile costs 2 wavefronts per mma at 16 rows).
// Keys stream in tiles of 64, one key row ky each, through a two-stage cp.async ring. (8
// warps and 256 queries would copy each K/V tile for twice the queries, but give 192 blocks
// for vit_b's 12 heads: 1.45 waves of one block per SM, 37 % more on the busiest SM than
// the 384 blocks here, 2.9 waves of three.)
// * rel_w[q][kx] = <q, Rw[qx - kx + 63]> / scale does not depend on ky: it is computed once
//   (Q Rw^T on the tensor cores, scattered through shared memory into the C-fragment
//   layout) and kept in registers as the first QK^T mma's C operand.
// * rel_h[q][ky] = <q, Rh[qy - ky + 63]> / scale is one scalar per row and tile: every 4
//   tiles one mma per m16 tile and k16 step computes the next key rows' values (B = table
//   rows, read through L1), kept in shared memory ([128][4]: 8 more registers would spill);
//   it enters the softmax as max(s) + h and inside the exponent's fma.
// * Q stays in shared memory and is re-read per tile (fewer registers than holding two
//   m16 tiles of fragments; two ldmatrix per k16 step next to four for K).
// * The row sums l come from the tensor cores (P times a ones column), the sums of the
//   fp16 P that the numerator uses.
// Each value is the same float operation sequence as the 16-row schedule it replaces, so
// the output is unchanged bit for bit.
#include "attn_params.cuh"
#include "common.cuh"

namespace {

constexpr int GQ = 128;        // queries per block: two query rows
constexpr int GK = 64;         // keys per tile: one key row
constexpr int GS = 64;         // the side S
constexpr int GTHREADS = 128;  // 4 warps of 32 queries
constexpr int GMT = 2;         // m16 tiles per warp
constexpr int GSLOTS = 4;      // K (and V) copy slots per thread and tile
constexpr int GRLD = 68;       // floats per row of the rel_w scratch table (4 mod 8: the
                               // read-back is at most 2-way conflicted, once per block)
constexpr int GH = 4;          // key rows per rel_h batch (kept of an mma's 8 columns)
constexpr int GRLD1 = 72;      // floats per row of the kept m16 tile 1 rel_w table (8 mod 32:
                               // each half-warp's float2 reads hit 32 distinct banks)

// Shared memory, as attention.rs `s64_smem_bytes` computes it: two stages of [K][V] tiles
// and the Q tile, rows padded by 8 halves (an odd number of 16 B chunks: conflict-free
// ldmatrix), then rel_w of every warp's m16 tile 1 ([4 x 16][GRLD1] fp32) and the current
// rel_h batch ([GQ][GH] fp32). Before the first K/V tile lands, the stages hold the scratch
// table of the m16 tiles 0.
template <int HD>
struct G {
    static constexpr int LDS = HD + 8;
    static constexpr int CH = HD / 8;
    static constexpr int KS = HD / 16;
    static constexpr int TILE = GK * LDS;
    static_assert(GK * CH == GTHREADS * GSLOTS && CH == 8, "the copy map below is hd 64's");
    static_assert(GQ / 2 * GRLD * 4 <= 4 * TILE * 2, "the rel_w scratch fits in the stages");
};

// A whole 16 B global->shared copy from src + OFF bytes to dst + OFF bytes (immediates).
template <int OFF>
SAMRT_DEVICE void cp_async_16_at(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0+%2], [%1+%2], 16;\n" ::"r"(dst), "l"(src), "n"(OFF)
                 : "memory");
}

// The C fragment of n8 tile NT of the kept rel_w table, from this thread's row-g entry.
template <int NT>
SAMRT_DEVICE void relw1_at(float (&c)[4], const float* row_g) {
    const float2 lo = *reinterpret_cast<const float2*>(row_g + NT * 8);
    const float2 hi = *reinterpret_cast<const float2*>(row_g + 8 * GRLD1 + NT * 8);
    c[0] = lo.x;
    c[1] = lo.y;
    c[2] = hi.x;
    c[3] = hi.y;
}

// Q's A fragment of m16 tile MT, k16 step KS, from the Q tile at this lane's ldmatrix row
// (Q is re-read from shared memory wherever it is used: held in registers it would spill).
template <int HD, int MT, int KS>
SAMRT_DEVICE void q_frag(uint32_t (&f)[4], uint32_t q_lane) {
    samrt::ldmatrix_x4_at<(MT * 16 * G<HD>::LDS + KS * 16) * 2>(f[0], f[1], f[2], f[3], q_lane);
}

template <int HD>
SAMRT_DEVICE void attention_s64(const AttnParams& p) {
    using T = G<HD>;
    constexpr int LDS = T::LDS, CH = T::CH, KS = T::KS, TILE = T::TILE;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_kv = reinterpret_cast<__half*>(smem_raw);  // stage st: K at 2 st TILE, V after
    __half* s_q = s_kv + 4 * TILE;                        // [GQ][LDS]
    float* s_relw = reinterpret_cast<float*>(smem_raw);   // [GQ / 2][GRLD], before tile 0
    float* s_relw1 = reinterpret_cast<float*>(s_q + GQ * LDS);  // [GQ / 2][GRLD1]
    float* s_relh = s_relw1 + GQ / 2 * GRLD1;                     // [GQ][GH]

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int head = blockIdx.y;
    // The grid is a multiple of 64 (the launcher's selection): no token is padding.
    const AttnSquare square(p, GS);
    const int grid = p.grid;
    const int qy0 = blockIdx.x * (GQ / GS);  // the block's first query row of the square
    auto row_of = [&](int ly, int lx) { return square.row_of(ly, lx); };
    const __half* qb = p.q + head * HD;
    const __half* kb = p.k + head * HD;
    const __half* vb = p.v + head * HD;

    // ---- Q tile ----
    for (int c = tid; c < GQ * CH; c += GTHREADS) {
        const int r = c / CH, ch = c % CH;
        const long long row = row_of(qy0 + (r >> 6), r & 63);
        samrt::cp_async_16(samrt::smem_addr(s_q + r * LDS + ch * 8), qb + row * p.q_ld + ch * 8,
                           true);
    }
    samrt::cp_async_commit();

    // K/V copies. Key row ky of a square is 64 consecutive tokens, so each thread copies the
    // same chunks of every tile and only the row base moves. Copy slot i of thread t is
    // phase 4 (t / 8) + i of the tile (8 phases per group of 8 rows), 8 lanes per phase:
    // lanes take chunk pairs (a 32 B sector each) of 4 rows of one parity within the group,
    // so that with rows 9 16 B units apart every phase hits all 8 bank groups; the four
    // slots of a thread are the chunk pairs of one row, 32 B apart in both memories
    // (immediates).
    // k_ld == v_ld (the launcher passes the qkv row stride for both).
    const long long kv_step = static_cast<long long>(grid) * p.k_ld;  // halves per key row
    const int kv_v = static_cast<int>(vb - kb);  // the embed dim: v follows k in a qkv row
    const __half* kv_src;  // this thread's first chunk in the next tile's K (tiles load in
                           // order: a running pointer costs fewer registers than a base)
    uint32_t kv_soff;      // and its byte offset in a K or V tile
    {
        const int ph = GSLOTS * (tid >> 3), q = tid & 7;  // slot 0's phase
        const int rem = ph % CH;
        const int r = (ph / CH) * 8 + 2 * (q >> 1) + rem / (CH / 2);
        const int ch = 2 * (rem % (CH / 2)) + (q & 1);
        kv_src = kb + square.first * p.k_ld + r * p.k_ld + ch * 8;
        kv_soff = static_cast<uint32_t>((r * LDS + ch * 8) * 2);
    }
    auto load_kv = [&](int stage) {
        __half* dk = s_kv + 2 * stage * TILE;
        __half* dv = dk + TILE;
        {
            const __half* ks = kv_src;
            const __half* vs = ks + kv_v;
            kv_src += kv_step;
            const uint32_t ak = samrt::smem_addr(dk) + kv_soff, av = samrt::smem_addr(dv) + kv_soff;
            samrt::static_for<0, GSLOTS>([&](auto i_) {
                constexpr int i = decltype(i_)::value;
                cp_async_16_at<32 * i>(ak, ks);
                cp_async_16_at<32 * i>(av, vs);
            });
        }
    };

    // This warp's rows: 32 w + 16 mt + g (+ 8), all in query row qy; qx of m16 tile mt's
    // row g is qx0 + 16 mt + g.
    const int qy = qy0 + (warp >> 1);  // two warps per query row
    const int qx0 = (warp & 1) * 32;
    const uint32_t q_lane =
        samrt::smem_addr(s_q + (warp * 32 + (lane & 15)) * LDS + (lane >> 4) * 8);
    const float inv_scale = 1.0f / p.scale;
    // rel_h of the current batch: this thread's column pair of row g (writes), and row g
    // (reads, at column kt % GH); rows g + 8 and tile 1 at immediate offsets.
    float* relh_w = s_relh + (warp * 32 + g) * GH + 2 * t4;
    const float* relh_r = s_relh + (warp * 32 + g) * GH;

    samrt::cp_async_wait<0>();
    __syncthreads();

    // ---- rel_w: Q Rw^T over the table rows that meet a key column, scattered as
    // [row][kx] / scale into the scratch table and read back in the C-fragment layout ----
    // Tile 0's rel_w stays in registers; tile 1's is read from shared memory per key tile
    // (two m16 tiles of both would not fit in 255 registers next to O and S).
    float relw[8][4];
    const float* relw1 = s_relw1 + (warp * 16 + g) * GRLD1 + 2 * t4;
    {
        samrt::static_for<0, GMT>([&](auto mt_) {
            constexpr int mt = decltype(mt_)::value;
            uint32_t qf[KS][4];
            samrt::static_for<0, KS>([&](auto ks_) {
                constexpr int ks = decltype(ks_)::value;
                q_frag<HD, mt, ks>(qf[ks], q_lane);
            });
            // Rows qx0 + 16 mt + 0..15 meet table rows lo .. lo + 15 + 63.
            const int lo = qx0 + 16 * mt;
#pragma unroll 1
            for (int nt = lo / 8; nt <= (lo + 15 + GS - 1) / 8; ++nt) {
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                const int c = nt * 8 + g;  // table row feeding B column g
                samrt::mma_by_table_rows<KS>(acc, qf, c < 2 * GS - 1 ? p.rel_w + c * HD : nullptr,
                                             t4);
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1;
                    const int col = nt * 8 + 2 * t4 + (e & 1);
                    const int kx = lo + g + 8 * i + GS - 1 - col;
                    if (col < 2 * GS - 1 && kx >= 0 && kx < GS) {
                        const float v = acc[e] * inv_scale;
                        if constexpr (mt == 0)
                            s_relw[(warp * 16 + g + 8 * i) * GRLD + kx] = v;
                        else
                            s_relw1[(warp * 16 + g + 8 * i) * GRLD1 + kx] = v;
                    }
                }
            }
        });
        __syncwarp();  // each warp reads back only its own rows
#pragma unroll
        for (int nt = 0; nt < 8; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                relw[nt][e] =
                    s_relw[(warp * 16 + g + 8 * (e >> 1)) * GRLD + nt * 8 + 2 * t4 + (e & 1)];
    }
    __syncthreads();  // every warp is done with the scratch table: the stages are free
    load_kv(0);
    samrt::cp_async_commit();

    float o[GMT][2 * KS][4];
    float l_mma[GMT][4];  // l of row g in [mt][0], of row g + 8 in [mt][2]
    float m_run[GMT][2];
#pragma unroll
    for (int mt = 0; mt < GMT; ++mt) {
#pragma unroll
        for (int d = 0; d < 2 * KS; ++d)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[mt][d][e] = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; ++e) l_mma[mt][e] = 0.0f;
        m_run[mt][0] = m_run[mt][1] = -INFINITY;
    }
    // logit = scale * q_scale * s, in log2 units for exp2 (k and v are used as stored).
    const float sl2 = p.scale * p.q_scale * 1.4426950408889634f;
    const uint32_t ones = 0x3c003c00u;  // half2(1, 1)
    // ldmatrix lanes: K as B of QK^T (key rows, d chunks), V transposed as B of PV.
    const uint32_t k_lane =
        static_cast<uint32_t>((((lane & 7) + ((lane >> 4) << 3)) * LDS + ((lane >> 3) & 1) * 8) * 2);
    const uint32_t v_lane =
        static_cast<uint32_t>((((lane & 7) + ((lane >> 3) & 1) * 8) * LDS + (lane >> 4) * 8) * 2);
    const uint32_t kv_base = samrt::smem_addr(s_kv);

#pragma unroll 1
    for (int kt = 0; kt < GS; ++kt) {
        samrt::cp_async_wait<0>();
        __syncthreads();  // tile kt visible; everyone is done with stage (kt + 1) & 1
        if (kt + 1 < GS) load_kv((kt + 1) & 1);
        samrt::cp_async_commit();
        const uint32_t k_addr = kv_base + 2 * (kt & 1) * TILE * 2 + k_lane;
        const uint32_t v_addr = kv_base + (2 * (kt & 1) + 1) * TILE * 2 + v_lane;

        if ((kt & (GH - 1)) == 0) {
            // rel_h of key rows kt .. kt + GH - 1: B column n < GH is table row
            // qy - (kt + n) + 63 (>= qy); columns from GH on are unused (their row clamped
            // into the table).
            const __half* trow = p.rel_h + max(qy + GS - 1 - kt - g, 0) * HD;
            float relh[GMT][4] = {};
            samrt::static_for<0, KS>([&](auto ks_) {
                constexpr int ks = decltype(ks_)::value;
                const uint32_t b0 =
                    __ldg(reinterpret_cast<const unsigned int*>(trow + ks * 16 + 2 * t4));
                const uint32_t b1 =
                    __ldg(reinterpret_cast<const unsigned int*>(trow + ks * 16 + 8 + 2 * t4));
                samrt::static_for<0, GMT>([&](auto mt_) {
                    constexpr int mt = decltype(mt_)::value;
                    uint32_t a[4];
                    q_frag<HD, mt, ks>(a, q_lane);
                    samrt::mma_16816(relh[mt], a, b0, b1);
                });
            });
            if (t4 < GH / 2) {
#pragma unroll
                for (int mt = 0; mt < GMT; ++mt)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        relh_w[(mt * 16 + 8 * (e >> 1)) * GH + (e & 1)] = relh[mt][e] * inv_scale;
            }
            __syncwarp();  // each warp reads back only its own rows
        }

        // ---- s = rel_w + Q K^T (rel_w is the first mma's C operand) ----
        float s[GMT][8][4];
        samrt::static_for<0, KS>([&](auto ks_) {
            constexpr int ks = decltype(ks_)::value;
            uint32_t qf[GMT][4];
            samrt::static_for<0, GMT>([&](auto mt_) {
                constexpr int mt = decltype(mt_)::value;
                q_frag<HD, mt, ks>(qf[mt], q_lane);
            });
            samrt::static_for<0, 4>([&](auto np_) {
                constexpr int np = decltype(np_)::value;
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_at<(np * 16 * LDS + ks * 16) * 2>(b0, b1, b2, b3, k_addr);
                samrt::static_for<0, GMT>([&](auto mt_) {
                    constexpr int mt = decltype(mt_)::value;
                    if constexpr (ks == 0 && mt == 0) {
                        samrt::mma_16816_c(s[0][2 * np], qf[0], b0, b1, relw[2 * np]);
                        samrt::mma_16816_c(s[0][2 * np + 1], qf[0], b2, b3, relw[2 * np + 1]);
                    } else if constexpr (ks == 0) {
                        float c0[4], c1[4];
                        relw1_at<2 * np>(c0, relw1);
                        relw1_at<2 * np + 1>(c1, relw1);
                        samrt::mma_16816_c(s[1][2 * np], qf[1], b0, b1, c0);
                        samrt::mma_16816_c(s[1][2 * np + 1], qf[1], b2, b3, c1);
                    } else {
                        samrt::mma_16816(s[mt][2 * np], qf[mt], b0, b1);
                        samrt::mma_16816(s[mt][2 * np + 1], qf[mt], b2, b3);
                    }
                });
            });
        });

        // ---- online softmax; each row is spread over the 4 lanes of a quad ----
        const float* relh_t = relh_r + (kt & (GH - 1));
        samrt::static_for<0, GMT>([&](auto mt_) {
            constexpr int mt = decltype(mt_)::value;
            float corr[2];
            bool grew = false;
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float hb = relh_t[(mt * 16 + 8 * i) * GH];
                const float mx = samrt::quad_row_max(s[mt], i);
                // Rounding is monotone, so max(s) + h is exactly max(s + h).
                const float m_new = fmaxf(m_run[mt][i], mx + hb);
                grew |= m_new != m_run[mt][i];
                corr[i] = exp2f((m_run[mt][i] - m_new) * sl2);
                m_run[mt][i] = m_new;
                const float nb = (hb - m_new) * sl2;  // every key is real: m_new is finite
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j)
                        s[mt][nt][2 * i + j] = exp2f(fmaf(s[mt][nt][2 * i + j], sl2, nb));
            }
            // An unchanged max has corr = 1: O and l are rescaled only when a row's max grew
            // (a warp-uniform branch, taken on a handful of the 64 tiles).
            if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
                for (int i = 0; i < 2; ++i) {
#pragma unroll
                    for (int d = 0; d < 2 * KS; ++d) {
                        o[mt][d][2 * i] *= corr[i];
                        o[mt][d][2 * i + 1] *= corr[i];
                    }
                    l_mma[mt][2 * i] *= corr[i];
                    l_mma[mt][2 * i + 1] *= corr[i];
                }
            }
        });

        // ---- O += P V and l += P 1: the score C fragments re-used as fp16 A fragments ----
        samrt::static_for<0, GK / 16>([&](auto kk_) {
            constexpr int kk = decltype(kk_)::value;
            uint32_t a[GMT][4];
#pragma unroll
            for (int mt = 0; mt < GMT; ++mt) samrt::pack_p(a[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
            samrt::static_for<0, KS>([&](auto dp_) {
                constexpr int dp = decltype(dp_)::value;
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_trans_at<(kk * 16 * LDS + dp * 16) * 2>(b0, b1, b2, b3, v_addr);
#pragma unroll
                for (int mt = 0; mt < GMT; ++mt) {
                    samrt::mma_16816(o[mt][2 * dp], a[mt], b0, b1);
                    samrt::mma_16816(o[mt][2 * dp + 1], a[mt], b2, b3);
                }
            });
#pragma unroll
            for (int mt = 0; mt < GMT; ++mt) samrt::mma_16816(l_mma[mt], a[mt], ones, ones);
        });
    }
    samrt::cp_async_wait<0>();

    // ---- normalise and store ----
#pragma unroll
    for (int mt = 0; mt < GMT; ++mt)
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const long long row = row_of(qy, qx0 + 16 * mt + g + 8 * i);
            const float inv = 1.0f / l_mma[mt][2 * i];  // >= 1: the max's own term is 1
            __half* dst = p.o + head * HD + row * p.o_ld;
#pragma unroll
            for (int d = 0; d < 2 * KS; ++d)
                *reinterpret_cast<uint32_t*>(dst + d * 8 + 2 * t4) =
                    samrt::pack_half2(o[mt][d][2 * i] * inv, o[mt][d][2 * i + 1] * inv);
        }
}

}  // namespace

// One block per SM is what ptxas is held to (up to 255 registers: two m16 tiles of O and S
// per thread, and tile 0's rel_w); shared memory (74 KiB) allows three on an H100, and the
// block fits the 99 KiB of sm_86/sm_89. hd 80 (vit_h)
// keeps attention.cu's 16-row schedule: its 80-wide O in two m16 tiles spills.
extern "C" __global__ void __launch_bounds__(GTHREADS, 1)
    attn_relpos_s64_d64_f16(const AttnParams p) {
    attention_s64<64>(p);
}
