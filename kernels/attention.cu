// Flash-style multi-head attention (online softmax, fp32 statistics, fp16 tensor cores).
//
// Two families share one body:
//
// * attn_relpos_{s14,s64,any}_d{HD}_f16 -- the SAM image-encoder attention (spec section 2).
//   Reads the packed qkv GEMM output [B*G*G, 3*D] (G tokens per side, any G) and writes
//   [B*G*G, D] with heads recombined as channel h*HD + c, ready for the proj GEMM. Every
//   block attends within one S x S square of the grid padded up to a multiple of S: S = the
//   window (14) for windowed blocks, S = G for global ones (one square, no padding). The
//   zero padding and the window partition are folded into the token indexing, so no padded
//   copy of the activations exists. A padded token's q/k/v would be Linear(0) = bias, so its
//   K and V rows are synthesised from the qkv bias and its output is simply not stored.
//   S is a template constant in the s14 / s64 variants and the kernel argument `side` in
//   the `any` variant (1 <= S <= 1625 for the multiply-high division; shared memory is the
//   real limit, see `smem_bytes` in attention.rs).
//   q as stored is the true q divided by q_scale (the qkv GEMM output may be stored scaled
//   by a power of two); k and v are used as stored. The decomposed relative-position bias
//   is computed in-kernel from the unscaled q (qt = q_scale * q):
//     logit = scale*<qt,k> + <qt, rel_pos_h[qy-ky+S-1]> + <qt, rel_pos_w[qx-kx+S-1]>
//           = (scale*q_scale) * (<q,k> + (<q,rel_h> + <q,rel_w>) / scale).
//   Per query tile, Q @ rel_pos_{h,w}^T ([64 x (2S-1)]) runs on the tensor cores and is
//   scattered into rel_h[q][ky] / rel_w[q][kx] tables in shared memory, pre-divided by scale
//   so that the score accumulator can be *initialised* with the bias and the QK^T mma adds
//   on top; q_scale then only enters the softmax's exponent scale, so it costs nothing and
//   q_scale = 1 reproduces the unscaled kernel bit for bit.
//   For S == 64 a 64-key tile is exactly one key row ky (= tile index) with kx = column, so
//   the rel_w part of the initial value is tile-invariant and lives in registers.
//
// * attn_plain_d{HD}_f16 -- plain softmax(q k^T * scale) v for the mask decoder (HD 16/32,
//   any Lq, Lk), reading separate q, k, v with row and batch strides.
//
// attn_relpos_s14 is its own kernel (`attention_win14`, two blocks per window and head;
// see there). Every other block: 4 warps, 64 queries (16 per warp), keys streamed in tiles
// of 64 through a double-buffered cp.async ring. Rows are padded by 8 halves (HD + 8
// halves = an odd number of 16 B chunks), which makes every ldmatrix phase (8 rows, one
// chunk) bank-conflict free for HD = 16, 32, 64 and 80. Keys past the sequence end are
// zero-filled and get a -inf bias.
#include "common.cuh"

namespace {

constexpr int ABM = 64;  // queries per block
constexpr int ABN = 64;  // keys per tile
constexpr int AWARPS = 4;
constexpr int ATHREADS = AWARPS * 32;

}  // namespace

#include "attn_params.cuh"

namespace {

template <int HD>
struct Tile {
    static constexpr int LDS = HD + 8;  // halves per shared row
    static constexpr int CH = HD / 8;   // 16 B chunks per row
    static constexpr int TILE = ABN * LDS;
    // Dynamic shared memory, as computed by the launcher (attention.rs, `smem_bytes`): two
    // stages of [K][V] (fp16), then for relpos rel_h and (S != 64) rel_w (fp32, [ABM][LDR],
    // LDR = Side::ld()). Stage 1 is free until the main loop's first barrier, so it first
    // holds the Q tile (read once into registers) and then, at S = 64, the rel_w scratch
    // table (read once into registers): 36-45 KiB per block instead of 80-89, four blocks
    // (16 warps) per SM at hd 64.
    static_assert(ABM == ABN, "the Q tile takes one K tile's place");
    static_assert((4 * TILE * 2) % 16 == 0, "rel tables must stay aligned");
};

// The side S of the attended square: the template constant SC, or (SC == 0) the kernel
// argument. Runtime division is a multiply-high by m = ceil(2^32 / S): with
// e = m*S - 2^32 < S, floor(n*m / 2^32) = floor(n / S) whenever n*e < 2^32, which holds for
// every n < S*S (the only dividends here) while S <= 1625. S = 1 wraps m to 0 and only ever
// divides n = 0.
template <int SC>
struct Side {
    int s_;
    unsigned m_;

    SAMRT_DEVICE explicit Side(int side) {
        if constexpr (SC > 0) {
            s_ = SC;
            m_ = 0;
        } else {
            s_ = side;
            m_ = 0xffffffffu / static_cast<unsigned>(side) + 1u;
        }
    }
    SAMRT_DEVICE int s() const {
        if constexpr (SC > 0) return SC;
        else return s_;
    }
    // Row stride of the rel tables: S rounded up to 4 mod 8. A warp's score-init read
    // touches 8 rows (lane groups g) x 2 (rel_h) or 4 (rel_w, columns 2 apart) words; with
    // row offsets 4g mod 32 apart, rel_h is conflict-free and rel_w at most 2-way for every S
    // (a stride of S is up to 8-way: S = 64 puts all 8 rows in one bank). Must match
    // `rel_ld` in attention.rs.
    SAMRT_DEVICE int ld() const { return ((s() + 3) & ~7) + 4; }
    SAMRT_DEVICE int div(int n) const {
        if constexpr (SC > 0) return static_cast<int>(static_cast<unsigned>(n) / SC);
        else return static_cast<int>(__umulhi(static_cast<unsigned>(n), m_));
    }
};

// Where token n of the current sequence lives: row index (of the unpadded token map, or of
// the sequence) or -1 for a padded / out-of-range token.
template <int SC, bool RELPOS>
struct TokenMap {
    Side<SC> side;
    int b, wy, wx, len, grid;

    SAMRT_DEVICE long long row(int n) const {
        if (n >= len) return -1;
        if constexpr (RELPOS) {
            const int s = side.s();
            const int ly = side.div(n);
            const int y = wy * s + ly;
            const int x = wx * s + (n - ly * s);
            if (y >= grid || x >= grid) return -1;
            return (static_cast<long long>(b) * grid + y) * grid + x;
        } else {
            return n;
        }
    }
};

template <int NT>
SAMRT_DEVICE void scale_row(float (&o)[NT][4], int i, float c) {
#pragma unroll
    for (int d = 0; d < NT; ++d) {
        o[d][2 * i] *= c;
        o[d][2 * i + 1] *= c;
    }
}

template <int HD, int SC, bool RELPOS>
SAMRT_DEVICE void attention(const AttnParams& p) {
    using T = Tile<HD>;
    constexpr int LDS = T::LDS;
    constexpr int CH = T::CH;
    constexpr int KS = HD / 16;  // k16 steps of QK^T, and d-tile pairs of PV
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_k = reinterpret_cast<__half*>(smem_raw);  // stage st at s_k + 2 * st * TILE
    __half* s_v = s_k + T::TILE;                         // stage st at s_v + 2 * st * TILE
    __half* s_q = s_k + 2 * T::TILE;                     // stage 1 until the main loop
    const Side<SC> side(RELPOS ? p.side : 1);
    const int S = side.s();
    const int LDR = side.ld();
    // S == 64 (a key tile is one key row, ROWS below) keeps rel_w in registers: its table is
    // scratch in stage 1 (after Q is read).
    constexpr bool ROWS = RELPOS && SC == ABN;
    static_assert(!ROWS || ABM * (((SC + 3) & ~7) + 4) * 4 <= 2 * T::TILE * 2,
                  "the rel_w scratch table fits in stage 1");
    float* s_relh = reinterpret_cast<float*>(s_k + 4 * T::TILE);  // [ABM][LDR]
    float* s_relw = ROWS ? reinterpret_cast<float*>(s_q) : s_relh + ABM * LDR;

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int q0 = blockIdx.x * ABM;
    const int head = blockIdx.y;

    TokenMap<SC, RELPOS> map{side};
    map.grid = p.grid;
    int lk;
    const __half *qb, *kb, *vb;
    __half* ob;
    if constexpr (RELPOS) {
        const AttnWindow w(p);
        map.b = w.b;
        map.wy = w.wy;
        map.wx = w.wx;
        map.len = S * S;
        lk = S * S;
        qb = p.q + head * HD;
        kb = p.k + head * HD;
        vb = p.v + head * HD;
        ob = p.o + head * HD;
    } else {
        map.b = blockIdx.z;
        map.wy = map.wx = 0;
        map.len = p.lq;
        lk = p.lk;
        qb = p.q + blockIdx.z * p.q_batch + head * HD;
        kb = p.k + blockIdx.z * p.k_batch + head * HD;
        vb = p.v + blockIdx.z * p.v_batch + head * HD;
        ob = p.o + blockIdx.z * p.o_batch + head * HD;
    }
    TokenMap<SC, RELPOS> kmap = map;
    kmap.len = lk;

    // ---- Q tile (padded / missing queries are zero; their outputs are never stored) ----
    for (int c = tid; c < ABM * CH; c += ATHREADS) {
        const int r = c / CH, ch = c % CH;
        const long long row = map.row(q0 + r);
        const __half* src = row >= 0 ? qb + row * p.q_ld + ch * 8 : p.q;
        samrt::cp_async_16(samrt::smem_addr(s_q + r * LDS + ch * 8), src, row >= 0);
    }
    samrt::cp_async_commit();

    // S == 64 with the window inside the grid (always so for global attention): key tile kt
    // is key row wy*64 + kt, 64 consecutive tokens, so each thread copies the same chunks of
    // every tile and only the row base moves. Offsets are computed once here; a tile then
    // costs one address add per chunk instead of the per-chunk token map. k_ld == v_ld (the
    // launcher passes the qkv row stride for both).
    constexpr int NKV = ROWS ? ABN * CH / ATHREADS : 1;  // chunks per thread: 4 (hd 64), 5 (hd 80)
    static_assert(!ROWS || (ABN * CH) % ATHREADS == 0, "whole chunks per thread");
    bool rows_whole = false;
    long long kv_step = 0, kv_v = 0;  // bytes: key row to key row, k to v
    const char* kv_row0 = nullptr;    // tile 0's first key row
    uint32_t kv_goff[NKV];            // bytes from it to each copy's chunk (32 bits: fewer
    uint32_t kv_soff[NKV];            // registers, which at S = 64 sets the occupancy)
    if constexpr (ROWS) {
        rows_whole = (map.wy + 1) * ABN <= p.grid && (map.wx + 1) * ABN <= p.grid;
        kv_row0 = reinterpret_cast<const char*>(
            kb + (static_cast<long long>(map.b * p.grid + map.wy * ABN) * p.grid + map.wx * ABN) *
                     p.k_ld);
        kv_step = static_cast<long long>(p.grid) * p.k_ld * 2;
        kv_v = (vb - kb) * 2;
        // Copy c of a tile: 8 lanes (one shared-memory phase) take chunk pairs (a 32 B
        // sector each) of 4 rows of one parity within a group of 8 rows. Rows are 9 (hd 64)
        // or 11 (hd 80) 16 B units apart, odd, so rows 0, 2, 4, 6 (or 1, 3, 5, 7) start in 4
        // distinct even units mod 8 and the 8 chunks hit all 8 bank groups; copying 32
        // consecutive chunks instead puts a row boundary inside a phase (hd 80: 0.48
        // conflicts per shared request).
#pragma unroll
        for (int i = 0; i < NKV; ++i) {
            const int c = tid + i * ATHREADS;
            const int ph = c >> 3, q = c & 7;  // phase of the tile; CH phases per 8 rows
            const int rem = ph % CH;
            const int r = (ph / CH) * 8 + 2 * (q >> 1) + rem / (CH / 2);
            const int ch = 2 * (rem % (CH / 2)) + (q & 1);
            kv_goff[i] = static_cast<uint32_t>((r * p.k_ld + ch * 8) * 2);
            kv_soff[i] = (r * LDS + ch * 8) * 2;
        }
    }

    auto load_kv = [&](int tile, int stage) {
        __half* dk = s_k + 2 * stage * T::TILE;
        __half* dv = s_v + 2 * stage * T::TILE;
        if constexpr (ROWS) {
            if (rows_whole) {
                const char* base = kv_row0 + tile * kv_step;
                const uint32_t ak = samrt::smem_addr(dk), av = samrt::smem_addr(dv);
#pragma unroll
                for (int i = 0; i < NKV; ++i) {
                    const char* g = base + kv_goff[i];
                    samrt::cp_async_16(ak + kv_soff[i], g, true);
                    samrt::cp_async_16(av + kv_soff[i], g + kv_v, true);
                }
                return;
            }
        }
        for (int c = tid; c < ABN * CH; c += ATHREADS) {
            const int r = c / CH, ch = c % CH;
            const int n = tile * ABN + r;
            const long long row = kmap.row(n);
            if (RELPOS && row < 0 && n < lk) {
                // Padding token inside the window: k and v are the qkv bias (in fp16, as the
                // GEMM would have stored Linear(0)).
                uint4 kk, vv;
                uint32_t* kp = reinterpret_cast<uint32_t*>(&kk);
                uint32_t* vp = reinterpret_cast<uint32_t*>(&vv);
                const int f = head * HD + ch * 8;
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    kp[e] = samrt::pack_half2(p.k_bias[f + 2 * e], p.k_bias[f + 2 * e + 1]);
                    vp[e] = samrt::pack_half2(p.v_bias[f + 2 * e], p.v_bias[f + 2 * e + 1]);
                }
                *reinterpret_cast<uint4*>(dk + r * LDS + ch * 8) = kk;
                *reinterpret_cast<uint4*>(dv + r * LDS + ch * 8) = vv;
            } else {
                const bool ok = row >= 0;
                samrt::cp_async_16(samrt::smem_addr(dk + r * LDS + ch * 8),
                                   ok ? kb + row * p.k_ld + ch * 8 : p.k, ok);
                samrt::cp_async_16(samrt::smem_addr(dv + r * LDS + ch * 8),
                                   ok ? vb + row * p.v_ld + ch * 8 : p.v, ok);
            }
        }
    };
    load_kv(0, 0);
    samrt::cp_async_commit();

    samrt::cp_async_wait<1>();  // Q has landed (K/V tile 0 may still be in flight)
    __syncthreads();

    uint32_t qf[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        const int r = warp * 16 + (lane & 15);
        const int col = ks * 16 + (lane >> 4) * 8;
        samrt::ldmatrix_x4(qf[ks][0], qf[ks][1], qf[ks][2], qf[ks][3],
                           samrt::smem_addr(s_q + r * LDS + col));
    }
    // Every warp has its Q fragments: stage 1 is free for the rel_w scratch table (S == 64)
    // and, after the main loop's first barrier, for K/V tile 1.
    if constexpr (ROWS) __syncthreads();

    // Rows of this thread's accumulator fragments (block-local).
    const int r_lo = warp * 16 + g;
    const int r_hi = r_lo + 8;
    const float inv_scale = 1.0f / p.scale;

    float relw_reg[RELPOS && SC == ABN ? 8 : 1][4];
    if constexpr (RELPOS) {
        // ---- Decomposed rel-pos tables for this warp's 16 query rows ----
        int qy[2], qx[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            const int n = q0 + (i ? r_hi : r_lo);
            const bool in = n < S * S;  // rows past the window are zero queries: any coords
            qy[i] = in ? side.div(n) : 0;
            qx[i] = in ? n - qy[i] * S : 0;
        }
        const int NT = (2 * S - 1 + 7) / 8;
#pragma unroll
        for (int tab = 0; tab < 2; ++tab) {
            const __half* table = tab ? p.rel_w : p.rel_h;
            float* dst = tab ? s_relw : s_relh;
            int nt0 = 0, nt1 = NT;
            if constexpr (ROWS) {
                // A block's 64 queries are one query row of the window (qy = q0 / 64), a
                // warp's 16 have qx = 16 * warp + 0..15: only table rows qy..qy + 63 (rel_h)
                // and 16 * warp..16 * warp + 78 (rel_w) land in a key's column.
                const int lo = tab ? 16 * warp : q0 / ABN;
                nt0 = lo / 8;
                nt1 = (lo + (tab ? 15 : 0) + ABN - 1) / 8 + 1;
            }
#pragma unroll 1
            for (int nt = nt0; nt < nt1; ++nt) {
                float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                const int c = nt * 8 + g;  // table row feeding B column g
                const bool cv = c < 2 * S - 1;
                samrt::mma_by_table_rows<KS>(acc, qf, cv ? table + c * HD : nullptr, t4);
                // acc[e] = <q_row, table[col]>; table row col = coord - key + S - 1.
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int i = e >> 1;
                    const int col = nt * 8 + 2 * t4 + (e & 1);
                    const int key = (tab ? qx[i] : qy[i]) + S - 1 - col;
                    if (col < 2 * S - 1 && key >= 0 && key < S)
                        dst[(i ? r_hi : r_lo) * LDR + key] = acc[e] * inv_scale;
                }
            }
        }
        __syncwarp();  // each warp reads back only its own rows
        if constexpr (SC == ABN) {
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    relw_reg[nt][e] =
                        s_relw[((e >> 1) ? r_hi : r_lo) * LDR + nt * 8 + 2 * t4 + (e & 1)];
        }
    }

    float o[2 * KS][4];
#pragma unroll
    for (int i = 0; i < 2 * KS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY};
    float l_run[2] = {0.0f, 0.0f};
    float l_mma[1][4] = {{0.0f, 0.0f, 0.0f, 0.0f}};  // S == 64: l of row g in [0], g + 8 in [2]
    // logit = scale * q_scale * s, in log2 units for exp2 (k and v are used as stored).
    const float sl2 = p.scale * p.q_scale * 1.4426950408889634f;

    const int ktiles = (lk + ABN - 1) / ABN;
    for (int kt = 0; kt < ktiles; ++kt) {
        samrt::cp_async_wait<0>();
        __syncthreads();  // tile kt visible; everyone is done with stage (kt + 1) & 1
        if (kt + 1 < ktiles) load_kv(kt + 1, (kt + 1) & 1);
        samrt::cp_async_commit();
        const uint32_t k_addr = samrt::smem_addr(s_k + 2 * (kt & 1) * T::TILE);
        const uint32_t v_addr = samrt::smem_addr(s_v + 2 * (kt & 1) * T::TILE);

        // ---- s = bias / scale (or 0 / -inf), then s += Q K^T ----
        float s[8][4];
        if constexpr (ROWS) {
            // s = rel_w + Q K^T (rel_w is the first mma's C operand); the tile's rel_h, one
            // scalar per row, is added in the softmax (max(s) + h, and inside the exponent's
            // fma), which saves an add per score and a subtract per exponent.
            // ldmatrix as in mma_qk_16keys, the (key, column) offsets as immediates.
            const int kr = (lane & 7) + ((lane >> 4) << 3);
            const uint32_t kl = k_addr + (kr * LDS + ((lane >> 3) & 1) * 8) * 2;
            samrt::static_for<0, KS>([&](auto ks_) {
                constexpr int ks = decltype(ks_)::value;
                samrt::static_for<0, 4>([&](auto np_) {
                    constexpr int np = decltype(np_)::value;
                    uint32_t b0, b1, b2, b3;
                    samrt::ldmatrix_x4_at<(np * 16 * LDS + ks * 16) * 2>(b0, b1, b2, b3, kl);
                    if constexpr (ks == 0) {
                        samrt::mma_16816_c(s[2 * np], qf[0], b0, b1, relw_reg[2 * np]);
                        samrt::mma_16816_c(s[2 * np + 1], qf[0], b2, b3, relw_reg[2 * np + 1]);
                    } else {
                        samrt::mma_16816(s[2 * np], qf[ks], b0, b1);
                        samrt::mma_16816(s[2 * np + 1], qf[ks], b2, b3);
                    }
                });
            });
        } else {
#pragma unroll
            for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    const int n = kt * ABN + nt * 8 + 2 * t4 + j;
                    if (n >= lk) {
                        s[nt][j] = -INFINITY;
                        s[nt][2 + j] = -INFINITY;
                    } else if constexpr (RELPOS) {
                        const int ky = side.div(n), kx = n - ky * S;
                        s[nt][j] = s_relh[r_lo * LDR + ky] + s_relw[r_lo * LDR + kx];
                        s[nt][2 + j] = s_relh[r_hi * LDR + ky] + s_relw[r_hi * LDR + kx];
                    } else {
                        s[nt][j] = 0.0f;
                        s[nt][2 + j] = 0.0f;
                    }
                }
        }
        if constexpr (!ROWS) {
#pragma unroll
            for (int ks = 0; ks < KS; ++ks)
#pragma unroll
                for (int np = 0; np < 4; ++np)
                    samrt::mma_qk_16keys(s[2 * np], s[2 * np + 1], qf[ks], k_addr, np * 16,
                                         ks * 16, LDS, lane);
        }

        // ---- online softmax; each row is spread over the 4 lanes of a quad ----
        if constexpr (ROWS) {
            const float hb[2] = {s_relh[r_lo * LDR + kt], s_relh[r_hi * LDR + kt]};
            float corr[2];
            bool grew = false;
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float mx = samrt::quad_row_max(s, i);
                // Rounding is monotone, so max(s) + h is exactly max(s + h).
                const float m_new = fmaxf(m_run[i], mx + hb[i]);
                grew |= m_new != m_run[i];
                corr[i] = exp2f((m_run[i] - m_new) * sl2);
                m_run[i] = m_new;
                const float nb = (hb[i] - m_new) * sl2;  // every key is real: m_new is finite
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j)
                        s[nt][2 * i + j] = exp2f(fmaf(s[nt][2 * i + j], sl2, nb));
            }
            // An unchanged max has corr = 1: O and l are rescaled only when a row's max grew
            // (a warp-uniform branch, taken on a handful of the 64 tiles).
            if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
                for (int i = 0; i < 2; ++i) {
                    scale_row(o, i, corr[i]);
                    scale_row(l_mma, i, corr[i]);
                }
            }
            // O += P V, and l += P 1 on the tensor cores (the row sums of the fp16 P that
            // the numerator uses, over the whole quad: no shuffles at the end).
            // V fragments as in mma_pv_16keys, the (key, d) offsets as immediates.
            const uint32_t ones = 0x3c003c00u;  // half2(1, 1)
            const int vr = (lane & 7) + ((lane >> 3) & 1) * 8;
            const uint32_t vl = v_addr + (vr * LDS + (lane >> 4) * 8) * 2;
            samrt::static_for<0, ABN / 16>([&](auto kk_) {
                constexpr int kk = decltype(kk_)::value;
                uint32_t a[4];
                samrt::pack_p(a, s[2 * kk], s[2 * kk + 1]);
                samrt::static_for<0, KS>([&](auto dp_) {
                    constexpr int dp = decltype(dp_)::value;
                    uint32_t b0, b1, b2, b3;
                    samrt::ldmatrix_x4_trans_at<(kk * 16 * LDS + dp * 16) * 2>(b0, b1, b2, b3,
                                                                                vl);
                    samrt::mma_16816(o[2 * dp], a, b0, b1);
                    samrt::mma_16816(o[2 * dp + 1], a, b2, b3);
                });
                samrt::mma_16816(l_mma[0], a, ones, ones);
            });
        } else {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                const float mx = samrt::quad_row_max(s, i);
                const float m_new = fmaxf(m_run[i], mx);
                // A row with no finite logit yet keeps m = -inf; subtracting 0 keeps exp2 at 0.
                const float m_use = m_new == -INFINITY ? 0.0f : m_new;
                const float corr = exp2f((m_run[i] - m_use) * sl2);
                m_run[i] = m_new;
                float sum = 0.0f;
#pragma unroll
                for (int nt = 0; nt < 8; ++nt)
#pragma unroll
                    for (int j = 0; j < 2; ++j) {
                        const float e = exp2f((s[nt][2 * i + j] - m_use) * sl2);
                        s[nt][2 * i + j] = e;
                        sum += e;
                    }
                l_run[i] = l_run[i] * corr + sum;
                scale_row(o, i, corr);
            }
        }

        // ---- O += P V: the score C-fragments are re-used as fp16 A-fragments ----
        if constexpr (!ROWS) {
#pragma unroll
            for (int kk = 0; kk < ABN / 16; ++kk)
                samrt::mma_pv_16keys<KS>(o, s[2 * kk], s[2 * kk + 1], v_addr, kk * 16, LDS,
                                         lane);
        }
    }
    samrt::cp_async_wait<0>();

    // ---- normalise and store ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        float l = l_run[i];
        if constexpr (ROWS) {
            l = l_mma[0][2 * i];
        } else {
            l = samrt::quad_sum(l);
        }
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const long long row = map.row(q0 + (i ? r_hi : r_lo));
        if (row < 0) continue;
        __half* dst = ob + row * p.o_ld;
#pragma unroll
        for (int d = 0; d < 2 * KS; ++d)
            *reinterpret_cast<uint32_t*>(dst + d * 8 + 2 * t4) =
                samrt::pack_half2(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
    }
}

// ---- attn_relpos_s14: SAM's 14 x 14 windows, two blocks per (window, head) ----
//
// A block holds a window's 196 keys and half its queries (two blocks per (window, head):
// finer waves than one of 14 warps, and two blocks per SM), so K and V are read from global
// memory twice per (window, head) and the softmax makes one pass over them. Warp w of block
// x owns query column qx = 7x + w (its 16 rows are qy = 0..15, 14 and 15 zero padding); key
// slots are key rows
// of 16 (kx = 0..13 real, 14 and 15 masked), so one 16-key tile is one key row ky. Then
// * rel_w[q][kx] = <q, Rw[qx - kx + 13]> has the same table row for all of a warp's rows:
//   it is one mma per 8 keys with a reversed slice of the table as B (ldmatrix takes a row
//   address per lane), lands in the C-fragment layout and stays in registers, as the first
//   QK^T mma's C operand, with -inf for the masked slots;
// * rel_h[q][ky] = <q, Rh[qy - ky + 13]> is one scalar per row and tile: Q Rh^T is written
//   once per warp to shared memory and read back (2 loads per tile) into the softmax, as in
//   the S = 64 variant (max(s) + h, and inside the exponent's fma).
// The rel-pos tables are staged once per block with cp.async; a padded token's K and V rows
// (Linear(0) = the qkv bias) are copied from one fp16 bias row staged in shared memory.
constexpr int WS = 14;                  // window side
constexpr int WSLOT = 16;               // key slots per key row
constexpr int WKEYS = WS * WSLOT;       // 224
constexpr int WWARPS = 7;               // one warp per query column, 7 columns per block
constexpr int WSPLIT = WS / WWARPS;     // blocks per (window, head): WIN14_SPLIT in attention.rs
static_assert(WSPLIT * WWARPS == WS, "each block owns whole query columns");
constexpr int WTHREADS = WWARPS * 32;   // 224
constexpr int WTROWS = 32;              // staged table rows: 2 * 14 - 1 = 27, the rest zero
constexpr int WLDT = 40;                // floats per row of a warp's Q Rh^T (8 mod 32)
constexpr int WCT = 2;                  // key rows per online-softmax step
constexpr int WKEYS_FIRST = 8;          // key rows in the first K/V commit group
static_assert(WKEYS_FIRST % WCT == 0, "the second group starts at a step");

// Copy c of a region of rows (groups of 8) with CH 16-byte chunks each: 8 lanes (one shared
// phase) take chunk pairs of 4 rows of one parity within a group of 8 (see the S = 64
// loader), so that every phase hits all 8 bank groups at hd 64 and 80.
template <int CH>
SAMRT_DEVICE void group8_chunk(int c, int& r, int& ch) {
    const int ph = c >> 3, q = c & 7;
    const int rem = ph % CH;
    r = (ph / CH) * 8 + 2 * (q >> 1) + rem / (CH / 2);
    ch = 2 * (rem % (CH / 2)) + (q & 1);
}

template <int HD>
SAMRT_DEVICE void attention_win14(const AttnParams& p) {
    constexpr int LDS = HD + 8;
    constexpr int CH = HD / 8;
    constexpr int KS = HD / 16;
    static_assert((WKEYS * CH) % WTHREADS == 0, "whole K/V chunks per thread");
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* s_k = reinterpret_cast<__half*>(smem_raw);  // [WKEYS][LDS]
    __half* s_v = s_k + WKEYS * LDS;                      // [WKEYS][LDS]
    __half* s_rh = s_v + WKEYS * LDS;                     // [WTROWS][LDS]
    __half* s_rw = s_rh + WTROWS * LDS;                   // [WTROWS][LDS]
    __half* s_bias = s_rw + WTROWS * LDS;                 // k then v bias, [2][HD]
    float* s_th = reinterpret_cast<float*>(s_bias + 2 * HD);  // [WWARPS][16][WLDT]

    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    const int qx = blockIdx.x * WWARPS + warp;  // this warp's query column
    const int g = lane >> 2;
    const int t4 = lane & 3;
    const int head = blockIdx.y;
    const AttnWindow window(p);
    const int b = window.b;
    const int y0 = window.wy * WS, x0 = window.wx * WS;
    const int grid = p.grid;
    const __half* kb = p.k + head * HD;
    const long long kv_v = p.v - p.k;  // k_ld == v_ld: the qkv row stride
    // The token of window position (ly, lx), or -1 past the grid (tokens fit in an int:
    // the launcher checks).
    auto token = [&](int ly, int lx) -> int {
        const int y = y0 + ly, x = x0 + lx;
        if (y >= grid || x >= grid) return -1;
        return (b * grid + y) * grid + x;
    };

    // ---- rel-pos tables (rows past 2S - 1 zero) ----
    for (int c = tid; c < 2 * WTROWS * CH; c += WTHREADS) {
        const int tab = c / (WTROWS * CH);
        int r, ch;
        group8_chunk<CH>(c % (WTROWS * CH), r, ch);
        const __half* t = tab ? p.rel_w : p.rel_h;
        const bool ok = r < 2 * WS - 1;
        samrt::cp_async_16(samrt::smem_addr((tab ? s_rw : s_rh) + r * LDS + ch * 8),
                           ok ? t + r * HD + ch * 8 : t, ok);
    }
    // ---- K and V, once per window: slot ky * 16 + kx, in groups of 8 slots (half a key
    // row), group q by warp q % WWARPS. Every lane issues the same cp.async (masked slots
    // and padding tokens zero-filled), so that each 8-lane phase keeps the conflict-free
    // pattern of group8_chunk; a lane's slot-in-group and chunk are the same for every
    // group, so a group costs a row-base computation and the copies. Two commit groups:
    // key rows 0..7 (with the tables), then 8..13, so that a window inside the grid starts
    // on the first half while the second is in flight.
    {
        constexpr int PER_GROUP = 8 * CH;                   // chunks of 8 slots
        constexpr int LANE_ITERS = (PER_GROUP + 31) / 32;  // 2 (hd 64) or 3 (hd 80)
        int sl[LANE_ITERS], ch[LANE_ITERS];
        uint32_t soff[LANE_ITERS];
#pragma unroll
        for (int h = 0; h < LANE_ITERS; ++h) {
            group8_chunk<CH>(lane + 32 * h, sl[h], ch[h]);
            soff[h] = (sl[h] * LDS + ch[h] * 8) * 2;
        }
        const uint32_t ak = samrt::smem_addr(s_k), av = samrt::smem_addr(s_v);
        constexpr int GROUPS = WKEYS / 8;  // 28
#pragma unroll
        for (int i = 0; i < (GROUPS + WWARPS - 1) / WWARPS; ++i) {
            const int q = warp + i * WWARPS;  // warp-uniform
            if (q >= GROUPS) break;
            if (i > 0 && q >= 2 * WKEYS_FIRST && q - WWARPS < 2 * WKEYS_FIRST)
                samrt::cp_async_commit();
            const int ky = q >> 1, kx0 = (q & 1) * 8;
            const int y = y0 + ky;
            const __half* rowk =
                kb + (static_cast<long long>(b * grid + min(y, grid - 1)) * grid + x0) * p.k_ld;
#pragma unroll
            for (int h = 0; h < LANE_ITERS; ++h) {
                if (PER_GROUP % 32 != 0 && h == LANE_ITERS - 1 && lane + 32 * h >= PER_GROUP)
                    break;
                const int kx = kx0 + sl[h];
                const bool ok = y < grid && kx < WS && x0 + kx < grid;
                const __half* src = ok ? rowk + kx * p.k_ld + ch[h] * 8 : kb;
                const uint32_t off = q * 8 * LDS * 2 + soff[h];
                samrt::cp_async_16(ak + off, src, ok);
                samrt::cp_async_16(av + off, src + kv_v, ok);
            }
        }
    }
    // ---- a window past the grid: its padding tokens' K and V rows are the qkv bias ----
    const bool padded = y0 + WS > grid || x0 + WS > grid;
    if (padded) {
        for (int i = tid; i < HD; i += WTHREADS) {
            const float* bias = i < HD / 2 ? p.k_bias : p.v_bias;
            const int f = head * HD + 2 * (i % (HD / 2));
            reinterpret_cast<uint32_t*>(s_bias)[i] = samrt::pack_half2(bias[f], bias[f + 1]);
        }
    }
    samrt::cp_async_commit();

    // ---- this warp's queries, straight into A fragments: rows qy = g, g + 8, qx = warp ----
    uint32_t qf[KS][4];
    int qrow[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) qrow[i] = g + 8 * i < WS ? token(g + 8 * i, qx) : -1;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const __half* src =
            p.q + head * HD + (qrow[i] >= 0 ? static_cast<long long>(qrow[i]) * p.q_ld : 0) +
            2 * t4;
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            const unsigned int* s32 = reinterpret_cast<const unsigned int*>(src + ks * 16);
            qf[ks][i] = qrow[i] >= 0 ? __ldg(s32) : 0u;
            qf[ks][2 + i] = qrow[i] >= 0 ? __ldg(s32 + 4) : 0u;
        }
    }
    // The padding fix-up below rewrites slots of any key row: a padded window waits for all.
    if (padded) samrt::cp_async_wait<0>();
    else samrt::cp_async_wait<1>();
    __syncthreads();
    if (padded) {
        // Blocks of 8 aligned key slots that hold padding tokens: both blocks of the key
        // rows ly >= ny, the blocks reaching past column nx of the others. An 8-lane phase
        // takes one chunk of one block's 8 slots (8 bank groups, the rows being an odd
        // number of 16 B units apart) and every lane writes: the bias for a padding token
        // (or a masked slot, where it is harmless), else the value already there.
        const int ny = min(WS, grid - y0), nx = min(WS, grid - x0);
        const int full = (WS - ny) * 2, per_row = nx >= 8 ? 1 : 2;
        const int blocks = full + ny * per_row;
        for (int c = tid; c < blocks * CH * 8; c += WTHREADS) {
            const int bi = c / (CH * 8), ch = (c / 8) % CH, sl = c % 8;
            const int ly = bi < full ? ny + bi / 2 : (bi - full) / per_row;
            const int lx = 8 * (bi < full ? bi % 2 : 2 - per_row + (bi - full) % per_row) + sl;
            const bool pad = ly >= ny || lx >= nx;
            const int off = (ly * WSLOT + lx) * LDS + ch * 8;
            const uint4 kk = *reinterpret_cast<const uint4*>(s_k + off);
            const uint4 vv = *reinterpret_cast<const uint4*>(s_v + off);
            const uint4 kb16 = *reinterpret_cast<const uint4*>(s_bias + ch * 8);
            const uint4 vb16 = *reinterpret_cast<const uint4*>(s_bias + HD + ch * 8);
            *reinterpret_cast<uint4*>(s_k + off) = pad ? kb16 : kk;
            *reinterpret_cast<uint4*>(s_v + off) = pad ? vb16 : vv;
        }
        __syncthreads();
    }

    const float inv_scale = 1.0f / p.scale;
    // Lane's row (key) of the x4 ldmatrix: matrices (0-7, c 0-7), (0-7, c 8-15), (8-15, ..).
    const int kr = (lane & 7) + ((lane >> 4) << 3);
    const int kc = ((lane >> 3) & 1) * 8;

    // ---- rel_w in registers: B column kx = table row 13 + qx - kx (masked slots: -inf) ----
    float relw[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    {
        // kx = 14, 15 read rows 31, 30 (zero) at qx = 0, whatever the result: it is masked.
        const uint32_t a =
            samrt::smem_addr(s_rw) + ((((WS - 1 + qx - kr) & (WTROWS - 1)) * LDS) + kc) * 2;
        samrt::static_for<0, KS>([&](auto ks_) {
            constexpr int ks = decltype(ks_)::value;
            uint32_t b0, b1, b2, b3;
            samrt::ldmatrix_x4_at<ks * 16 * 2>(b0, b1, b2, b3, a);
            samrt::mma_16816(relw[0], qf[ks], b0, b1);
            samrt::mma_16816(relw[1], qf[ks], b2, b3);
        });
#pragma unroll
        for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                relw[nt][e] = nt == 1 && t4 == 3 ? -INFINITY : relw[nt][e] * inv_scale;
    }
    // ---- Q Rh^T ([16 rows][32 table rows], / scale) into this warp's shared rows ----
    float* th = s_th + warp * 16 * WLDT;
    {
        float acc[4][4];
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[nt][e] = 0.0f;
        const uint32_t a = samrt::smem_addr(s_rh) + (kr * LDS + kc) * 2;
        samrt::static_for<0, 2>([&](auto np_) {
            constexpr int np = decltype(np_)::value;
            samrt::static_for<0, KS>([&](auto ks_) {
                constexpr int ks = decltype(ks_)::value;
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_at<(np * 16 * LDS + ks * 16) * 2>(b0, b1, b2, b3, a);
                samrt::mma_16816(acc[2 * np], qf[ks], b0, b1);
                samrt::mma_16816(acc[2 * np + 1], qf[ks], b2, b3);
            });
        });
        // float2 stores: 16 lanes (one phase) cover rows g..g+3 x 8 columns, rows 8 mod 32
        // banks apart: conflict-free.
#pragma unroll
        for (int nt = 0; nt < 4; ++nt)
#pragma unroll
            for (int i = 0; i < 2; ++i)
                asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(samrt::smem_addr(
                                 th + (g + 8 * i) * WLDT + nt * 8 + 2 * t4)),
                             "f"(acc[nt][2 * i] * inv_scale), "f"(acc[nt][2 * i + 1] * inv_scale)
                             : "memory");
    }
    __syncwarp();
    // rel_h of row m and key row ky: th[m][m + 13 - ky]; a quad reads one word, the 8 rows
    // of a load are 41 words apart: 8 distinct banks.
    const float* hrow = th + g * (WLDT + 1) + WS - 1;  // row g + 8: 8 * (WLDT + 1) further

    float o[2 * KS][4];
#pragma unroll
    for (int i = 0; i < 2 * KS; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][e] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY};
    float l_mma[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // l of row g in [0], g + 8 in [2]
    const float sl2 = p.scale * p.q_scale * 1.4426950408889634f;
    const uint32_t kl = samrt::smem_addr(s_k) + (kr * LDS + kc) * 2;
    const int vr = (lane & 7) + ((lane >> 3) & 1) * 8;
    const uint32_t vl = samrt::smem_addr(s_v) + (vr * LDS + (lane >> 4) * 8) * 2;
    const uint32_t ones = 0x3c003c00u;  // half2(1, 1)

    samrt::static_for<0, WS / WCT>([&](auto step_) {
        constexpr int ky0 = decltype(step_)::value * WCT;
        if constexpr (ky0 == WKEYS_FIRST) {
            if (!padded) {  // key rows 8..13 (block-uniform)
                samrt::cp_async_wait<0>();
                __syncthreads();
            }
        }
        // ---- s = rel_w + Q K^T over WCT key rows ----
        float s[2 * WCT][4];
        float hb[WCT][2];
        samrt::static_for<0, WCT>([&](auto t_) {
            constexpr int t = decltype(t_)::value;
            constexpr int ky = ky0 + t;
            samrt::static_for<0, KS>([&](auto ks_) {
                constexpr int ks = decltype(ks_)::value;
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_at<(ky * WSLOT * LDS + ks * 16) * 2>(b0, b1, b2, b3, kl);
                if constexpr (ks == 0) {
                    samrt::mma_16816_c(s[2 * t], qf[0], b0, b1, relw[0]);
                    samrt::mma_16816_c(s[2 * t + 1], qf[0], b2, b3, relw[1]);
                } else {
                    samrt::mma_16816(s[2 * t], qf[ks], b0, b1);
                    samrt::mma_16816(s[2 * t + 1], qf[ks], b2, b3);
                }
            });
            hb[t][0] = hrow[-ky];
            hb[t][1] = hrow[8 * (WLDT + 1) - ky];
        });
        // ---- online softmax (each key row's rel_h enters through its max and exponent) ----
        float corr[2];
        bool grew = false;
#pragma unroll
        for (int i = 0; i < 2; ++i) {
            float mx = -INFINITY;
#pragma unroll
            for (int t = 0; t < WCT; ++t) {
                const float a = fmaxf(fmaxf(s[2 * t][2 * i], s[2 * t][2 * i + 1]),
                                      fmaxf(s[2 * t + 1][2 * i], s[2 * t + 1][2 * i + 1]));
                // Rounding is monotone, so max(s) + h is exactly max(s + h).
                mx = fmaxf(mx, a + hb[t][i]);
            }
            mx = samrt::quad_max(mx);
            const float m_new = fmaxf(m_run[i], mx);  // finite: 14 real keys per key row
            grew |= m_new != m_run[i];
            corr[i] = exp2f((m_run[i] - m_new) * sl2);
            m_run[i] = m_new;
#pragma unroll
            for (int t = 0; t < WCT; ++t) {
                const float nb = (hb[t][i] - m_new) * sl2;
#pragma unroll
                for (int n = 0; n < 2; ++n)
#pragma unroll
                    for (int j = 0; j < 2; ++j)
                        s[2 * t + n][2 * i + j] = exp2f(fmaf(s[2 * t + n][2 * i + j], sl2, nb));
            }
        }
        // O and l are rescaled only when some row's max grew (else the factor is exactly 1).
        if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
            for (int i = 0; i < 2; ++i) {
                scale_row(o, i, corr[i]);
                l_mma[2 * i] *= corr[i];
                l_mma[2 * i + 1] *= corr[i];
            }
        }
        // ---- O += P V, l += P 1 ----
        samrt::static_for<0, WCT>([&](auto t_) {
            constexpr int t = decltype(t_)::value;
            constexpr int ky = ky0 + t;
            uint32_t a[4];
            samrt::pack_p(a, s[2 * t], s[2 * t + 1]);
            samrt::static_for<0, KS>([&](auto dp_) {
                constexpr int dp = decltype(dp_)::value;
                uint32_t b0, b1, b2, b3;
                samrt::ldmatrix_x4_trans_at<(ky * WSLOT * LDS + dp * 16) * 2>(b0, b1, b2, b3,
                                                                               vl);
                samrt::mma_16816(o[2 * dp], a, b0, b1);
                samrt::mma_16816(o[2 * dp + 1], a, b2, b3);
            });
            samrt::mma_16816(l_mma, a, ones, ones);
        });
    });

    // ---- normalise and store (rows 14, 15 and tokens past the grid are not stored) ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        if (qrow[i] < 0) continue;
        const float l = l_mma[2 * i];
        const float inv = 1.0f / l;  // l >= 1: the row max's own term is exp2(0) = 1
        __half* dst = p.o + head * HD + static_cast<long long>(qrow[i]) * p.o_ld;
#pragma unroll
        for (int d = 0; d < 2 * KS; ++d)
            *reinterpret_cast<uint32_t*>(dst + d * 8 + 2 * t4) =
                samrt::pack_half2(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
    }
}

}  // namespace

// Two blocks per SM is the register target ptxas is held to. Naming a bound also stops
// ptxas from trading a few registers for spills, which it does at (ATHREADS) alone. S = 64
// here is hd 80 only (hd 64 has its own kernel, attn_relpos_s64.cu); its 61 KiB of shared
// memory allow three blocks per SM, registers (~190) two. S = 0: the side is the kernel
// argument `side` (the `any` variants).
#define SAMRT_ATTN(NAME, HD, S, RELPOS)                                                    \
    extern "C" __global__ void __launch_bounds__(ATHREADS, 2) NAME(const AttnParams p) { \
        attention<HD, S, RELPOS>(p);                                                       \
    }

// Two blocks of 7 warps per (window, head), two blocks per SM (~128 registers each).
#define SAMRT_ATTN_WIN14(NAME, HD)                                                           \
    extern "C" __global__ void __launch_bounds__(WTHREADS, 2) NAME(const AttnParams p) { \
        attention_win14<HD>(p);                                                              \
    }
SAMRT_ATTN_WIN14(attn_relpos_s14_d64_f16, 64)
SAMRT_ATTN_WIN14(attn_relpos_s14_d80_f16, 80)
SAMRT_ATTN(attn_relpos_s64_d80_f16, 80, 64, true)
SAMRT_ATTN(attn_relpos_any_d64_f16, 64, 0, true)
SAMRT_ATTN(attn_relpos_any_d80_f16, 80, 0, true)
SAMRT_ATTN(attn_plain_d16_f16, 16, 1, false)
SAMRT_ATTN(attn_plain_d32_f16, 32, 1, false)
SAMRT_ATTN(attn_plain_d64_f16, 64, 1, false)
