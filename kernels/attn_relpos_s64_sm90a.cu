// attn_relpos_s64_d64_f16 for sm_90a: the same op as attn_relpos_s64.cu (SAM's global
// attention at S = 64, head dim 64, grids a multiple of 64; logit formula at the top of
// attention.cu) with the products on Hopper's warpgroup MMA. The runtime loads this module
// after the portable one on compute capability 9.0, so this entry point replaces it there;
// launch geometry and shared memory are the portable kernel's (one warpgroup, 128 queries =
// two query rows, 75776 bytes), so the launcher is the same on every device.
//
// Why wgmma: the portable kernel is bound by shared-memory wavefronts (every mma.sync
// operand goes through ldmatrix into registers, per warp). wgmma reads K and V straight
// from shared memory through descriptors, each 128-byte row once per warpgroup, so the
// per-tile shared traffic is the tiles' size. Q is the A operand from registers (its
// fragments loaded once, 32 registers that fit next to O and S): re-reading it from shared
// memory for every key tile would cost as many wavefronts as K.
// * Q, K and V tiles use the 128-byte swizzle (a 64-half row is exactly one swizzle row):
//   cp.async writes and the tensor-core reads are both conflict-free, and the same layout
//   serves K as a K-major B (QK^T) and V as an MN-major B (transposed, PV).
// * Each query row of the block is one m64 tile (each warp owns 16 queries of both). Per key
//   tile, S of both m64 tiles is issued as two commit groups; the softmax of tile 0 runs
//   while tile 1's QK^T is in flight, and tile 1's while tile 0's PV is (FA3's
//   intra-warpgroup overlap, here between the two query rows instead of two key tiles, which
//   would need a second 32-register S).
// * rel_w[q][kx] = <q, Rw[qx - kx + 63]> / scale does not depend on ky: computed once (Q Rw^T
//   on the tensor cores, scattered through shared memory into the accumulator layout) and
//   used as the initial accumulator of each tile's QK^T: tile 0's from registers, tile 1's
//   from shared memory (both in registers next to O and S would not fit 255 registers).
// * rel_h[q][ky] = <q, Rh[qy - ky + 63]> / scale: the table rows of 8 consecutive key rows
//   and both query rows are 16 consecutive rows of Rh (descending in ky), so one m64n16
//   wgmma per query row and k16 step every 8 key tiles gives them; the 16 rows ride in the
//   K/V ring with the tile that starts the batch. The values go through shared memory
//   ([8][132] fp32) and enter the softmax as max(s) + h and inside the exponent's fma, as in
//   the portable kernel.
// * The row sums l come from the tensor cores (P times a ones matrix, m64n8), the sums of the
//   fp16 P that the numerator uses.
// Each value is meant to be the portable kernel's float operation sequence (the k16 steps of
// a wgmma chain accumulate in the order of its mma.sync chain); the tests compare both with
// the CPU reference, not with each other.
#include "attn_params.cuh"
#include "attn_sm90a.cuh"

namespace {

constexpr int HD = 64;         // head dim: a row of Q, K or V is 128 bytes, one swizzle row
constexpr int GQ = 128;        // queries per block: two query rows, one m64 tile each
constexpr int GK = 64;         // keys per tile: one key row
constexpr int GS = 64;         // the side S
constexpr int GTHREADS = 128;  // one warpgroup
constexpr int TILE_B = GK * HD * 2;  // bytes of a K or V tile (and of a Q query row)
constexpr int RH_BATCH = 8;    // key rows per rel_h batch
constexpr int RH_LD = GQ + 4;   // floats per key row of the rel_h batch (4 mod 32: the
                               // scatter's 4 key rows per query hit distinct banks)
constexpr int RH_ROWS = 16;    // table rows per batch: 8 key rows for each of 2 query rows
constexpr int GRLD = 72;       // floats per row of the rel_w tables (8 mod 32: each
                               // half-warp's float2 reads hit 32 distinct banks)

// Shared memory, from a 1024-aligned base (the 128-byte swizzle repeats every 1024 bytes and
// the descriptors address whole atoms): Q (2 x 8 KiB), two stages of K and V (4 x 8 KiB), the
// rel_h batch's 16 table rows (2 KiB), then the kept rel_w of query row 1 ([64][GRLD] fp32),
// the current rel_h batch ([8 key rows][128 + 4 queries] fp32) and a 256-byte ones matrix.
// Before the first K/V tile, stage 0 holds the Rw table and stage 1 + the Rh rows the rel_w
// scratch of row 0.
constexpr int OFF_Q = 0;
constexpr int OFF_KV = OFF_Q + 2 * TILE_B;
constexpr int OFF_RH = OFF_KV + 4 * TILE_B;
constexpr int OFF_RELW1 = OFF_RH + RH_ROWS * HD * 2;
constexpr int OFF_RELH = OFF_RELW1 + GS * GRLD * 4;
constexpr int OFF_ONES = OFF_RELH + RH_BATCH * RH_LD * 4;
constexpr int SMEM_USED = OFF_ONES + 256;
// attention.rs `s64_smem_bytes`, which the launcher requests for either module.
constexpr int SMEM_LAUNCH = (4 * 64 + 128) * 72 * 2 + 64 * 72 * 4 + 128 * 4 * 4;
static_assert(SMEM_USED + 1024 - 16 <= SMEM_LAUNCH, "fits the portable kernel's request");
static_assert(OFF_KV + TILE_B * 2 + GS * GRLD * 4 <= OFF_RELW1, "row 0's scratch fits");

// D[64x64] += A[64x64] * B over 4 k16 steps, A and B (K-major) from shared memory:
// descriptors da and db advance 32 bytes per step.
SAMRT_DEVICE void wgmma_n64_ss_k64(float (&d)[32], uint64_t da, uint64_t db) {
    asm volatile(SAMRT_WG_PRED(40) SAMRT_WG_SS64(32, 36) SAMRT_WG_SS64(33, 37)
                     SAMRT_WG_SS64(34, 38) SAMRT_WG_SS64(35, 39) "}\n"
                 : SAMRT_D32(d)
                 : "l"(da), "l"(da + 2), "l"(da + 4), "l"(da + 6), "l"(db), "l"(db + 2),
                   "l"(db + 4), "l"(db + 6), "n"(1));
}
// D[64x64] += A[64x64] * B over 4 k16 steps, A from registers (q, 4 per step), B K-major
// from shared memory (descriptors db, one per step: 32 bytes apart).
SAMRT_DEVICE void wgmma_n64_rs_k64(float (&d)[32], const uint32_t (&q)[4][4],
                                   const uint64_t (&db)[4]) {
    asm volatile(SAMRT_WG_PRED(52) SAMRT_WG_RS64(32, 33, 34, 35, 48)
                     SAMRT_WG_RS64(36, 37, 38, 39, 49) SAMRT_WG_RS64(40, 41, 42, 43, 50)
                         SAMRT_WG_RS64(44, 45, 46, 47, 51) "}\n"
                 : SAMRT_D32(d)
                 : "r"(q[0][0]), "r"(q[0][1]), "r"(q[0][2]), "r"(q[0][3]), "r"(q[1][0]),
                   "r"(q[1][1]), "r"(q[1][2]), "r"(q[1][3]), "r"(q[2][0]), "r"(q[2][1]),
                   "r"(q[2][2]), "r"(q[2][3]), "r"(q[3][0]), "r"(q[3][1]), "r"(q[3][2]),
                   "r"(q[3][3]), "l"(db[0]), "l"(db[1]), "l"(db[2]), "l"(db[3]), "n"(1));
}
// D[64x16] += A[64x64] * B over 4 k16 steps (rel_h): A from registers (q, the Q fragments
// the QK^T chains use), B K-major from shared memory (descriptor db, 32 bytes per step).
#define SAMRT_WG_RS16(a0, a1, a2, a3, db)                                              \
    "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7}, " \
    "{%" #a0 ", %" #a1 ", %" #a2 ", %" #a3 "}, %" #db ", p, 1, 1, 0;\n"
SAMRT_DEVICE void wgmma_n16_rs_k64(float (&d)[8], const uint32_t (&q)[4][4], uint64_t db) {
    asm volatile(SAMRT_WG_PRED(28) SAMRT_WG_RS16(8, 9, 10, 11, 24)
                     SAMRT_WG_RS16(12, 13, 14, 15, 25) SAMRT_WG_RS16(16, 17, 18, 19, 26)
                         SAMRT_WG_RS16(20, 21, 22, 23, 27) "}\n"
                 : SAMRT_D8(d)
                 : "r"(q[0][0]), "r"(q[0][1]), "r"(q[0][2]), "r"(q[0][3]), "r"(q[1][0]),
                   "r"(q[1][1]), "r"(q[1][2]), "r"(q[1][3]), "r"(q[2][0]), "r"(q[2][1]),
                   "r"(q[2][2]), "r"(q[2][3]), "r"(q[3][0]), "r"(q[3][1]), "r"(q[3][2]),
                   "r"(q[3][3]), "l"(db), "l"(db + 2), "l"(db + 4), "l"(db + 6), "n"(1));
}
// O[64x64] += P[64x64] V and l[64x8] += P 1 over 4 k16 steps: P from registers (a, 4 per
// step), V MN-major (transposed) from shared memory (descriptors dv, one per step: 16 rows =
// 2048 bytes apart), the ones matrix (dl) the same for every step.
#define SAMRT_WG_PV(a0, a1, a2, a3, dv)                                                   \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " SAMRT_L32 ", {%" #a0 ", %" #a1 \
    ", %" #a2 ", %" #a3 "}, %" #dv ", p, 1, 1, 1;\n"                                       \
    "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%32, %33, %34, %35}, {%" #a0     \
    ", %" #a1 ", %" #a2 ", %" #a3 "}, %56, p, 1, 1, 0;\n"
SAMRT_DEVICE void wgmma_pv_k64(float (&o)[32], float (&l)[4], const uint32_t (&a)[4][4],
                               const uint64_t (&dv)[4], uint64_t dl) {
    asm volatile(SAMRT_WG_PRED(57) SAMRT_WG_PV(36, 37, 38, 39, 52)
                     SAMRT_WG_PV(40, 41, 42, 43, 53) SAMRT_WG_PV(44, 45, 46, 47, 54)
                         SAMRT_WG_PV(48, 49, 50, 51, 55) "}\n"
                 : SAMRT_D32(o), "+f"(l[0]), "+f"(l[1]), "+f"(l[2]), "+f"(l[3])
                 : "r"(a[0][0]), "r"(a[0][1]), "r"(a[0][2]), "r"(a[0][3]), "r"(a[1][0]),
                   "r"(a[1][1]), "r"(a[1][2]), "r"(a[1][3]), "r"(a[2][0]), "r"(a[2][1]),
                   "r"(a[2][2]), "r"(a[2][3]), "r"(a[3][0]), "r"(a[3][1]), "r"(a[3][2]),
                   "r"(a[3][3]), "l"(dv[0]), "l"(dv[1]), "l"(dv[2]), "l"(dv[3]), "l"(dl),
                   "n"(1));
}

// O += P V and l += P 1 for one m64 tile (P in s, fp32), issued and committed as one group.
SAMRT_DEVICE void issue_pv(float (&o)[32], float (&l)[4], uint32_t (&a)[4][4], const float (&s)[32],
                           const uint64_t (&v_desc)[4], uint64_t ones) {
    pack_p(a, s);
    pin(o);
    pin(l);
    wg_fence();
    wgmma_pv_k64(o, l, a, v_desc, ones);
    wg_commit();
}

SAMRT_DEVICE void attention_s64_sm90(const AttnParams& p) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t raw = samrt::smem_addr(smem_raw);
    const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
    unsigned char* smem = smem_raw + pad;
    const uint32_t base = raw + pad;
    float* s_relw1 = reinterpret_cast<float*>(smem + OFF_RELW1);  // [GS][GRLD]
    float* s_relh = reinterpret_cast<float*>(smem + OFF_RELH);    // [RH_BATCH][RH_LD]
    float* s_relw0 = reinterpret_cast<float*>(smem + OFF_KV + 2 * TILE_B);  // scratch

    const AttnSquare square(p, GS);  // no token is padding (the grid is a multiple of 64)
    auto row_of = [&](int ly, int lx) { return square.row_of(ly, lx); };
    const int qy0 = blockIdx.x * (GQ / GS);  // the block's first query row of the square
    const int head = blockIdx.y;
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int g = (tid & 31) >> 2;
    const int t4 = tid & 3;
    const __half* qb = p.q + head * HD;
    const __half* kb = p.k + head * HD;
    const __half* vb = p.v + head * HD;
    const float inv_scale = 1.0f / p.scale;
    // The Q tile's descriptor; every other swizzled operand is a fixed offset from it.
    const uint64_t q_desc = desc_sw128(base + OFF_Q);

    // ---- Q (both query rows), the Rw table (row 127 zero) and the ones matrix ----
#pragma unroll
    for (int i = 0; i < GQ * 8 / GTHREADS; ++i) {
        const int c = tid + i * GTHREADS, r = c >> 3, ch = c & 7;
        const long long row = row_of(qy0 + (r >> 6), r & 63);
        samrt::cp_async_16(base + OFF_Q + sw128(r, ch), qb + row * p.q_ld + ch * 8, true);
        const bool in_table = r < 2 * GS - 1;
        samrt::cp_async_16(base + OFF_KV + sw128(r, ch), p.rel_w + (in_table ? r : 0) * HD + ch * 8,
                           in_table);
    }
    samrt::cp_async_commit();
    if (tid < 64) reinterpret_cast<uint32_t*>(smem + OFF_ONES)[tid] = 0x3c003c00u;  // half2(1, 1)

    // K/V copies: each thread copies chunks (t & 1) + 2 i (i < 4) of one key (a key row is
    // 64 consecutive tokens), so the two threads of a key fill one 32-byte sector per copy
    // and the source offsets are immediates. In the 128-byte swizzle chunk c of row r lands
    // at chunk c ^ (r mod 8), so chunk (t & 1) + 2 i lands at the address of chunk t & 1 with
    // bits 5-6 xor-ed by i: one xor per copy. A quarter warp's 8 copies (one shared
    // wavefront) cover keys 2j + b (j < 4) of 8, whose chunk pairs land in 4 distinct slots.
    const int kv_key = 16 * warp + 2 * ((tid >> 1) & 3) + ((tid >> 3) & 1) + 8 * ((tid >> 4) & 1);
    const long long kv_step = static_cast<long long>(p.grid) * p.k_ld;  // halves per key row
    const __half* kv_src = kb + row_of(0, kv_key) * p.k_ld + (tid & 1) * 8;
    const int kv_v = static_cast<int>(vb - kb);  // v follows k in a qkv row (k_ld == v_ld)
    const uint32_t kv_dst = base + OFF_KV + sw128(kv_key, tid & 1);
    // The Rh rows of a batch: one chunk per thread.
    const uint32_t rh_dst = base + OFF_RH + sw128(tid >> 3, tid & 7);
    const int rh_row0 = qy0 + GS - RH_BATCH + (tid >> 3);
    const __half* rh_src = p.rel_h + (tid & 7) * 8;
    // Loads key row kt into stage S (a compile-time constant: the loop below runs two tiles
    // per iteration, so stage offsets are immediates).
    auto load_kv = [&](auto stage, int kt) {
        constexpr int S = decltype(stage)::value;
        const __half* v_src = kv_src + kv_v;
        auto copy = [&](auto chunk) {
            constexpr int I = decltype(chunk)::value;
            const uint32_t d = kv_dst ^ (I << 5);
            samrt::cp_async_16_at<2 * S * TILE_B, 32 * I>(d, kv_src);
            samrt::cp_async_16_at<(2 * S + 1) * TILE_B, 32 * I>(d, v_src);
        };
        copy(Index<0>{});
        copy(Index<1>{});
        copy(Index<2>{});
        copy(Index<3>{});
        kv_src += kv_step;
        if (S == 0 && kt % RH_BATCH == 0) {
            // Rh rows qy0 + 56 - kt .. + 15: column n of the batch's product is key row
            // kt + 7 - n of query row 0 and kt + 8 - n of query row 1. Rows past the table
            // (never used) are zero.
            const int trow = rh_row0 - kt;
            samrt::cp_async_16(rh_dst, rh_src + (trow < 2 * GS - 1 ? trow : 0) * HD,
                               trow < 2 * GS - 1);
        }
    };

    samrt::cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();

    // ---- rel_w: Q Rw^T for both query rows, scattered as [qx][kx] / scale ----
    // Accumulator i of this thread is row 16 warp + g + 8 ((i / 2) % 2), column
    // 8 (i / 4) + 2 t4 + i % 2 (the m16n8 C layout per 8 columns).
    const int r0 = warp * 16 + g;  // this thread's row g of each m64 tile (qx)
    // Q as register A fragments of both m64 tiles (read once: the QK^T chains then read only
    // K from shared memory). Register e of step ks: row g + 8 (e & 1), k 16 ks + 8 (e >> 1)
    // + 2 t4.
    uint32_t qf0[4][4], qf1[4][4];
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const uint32_t off =
                (r0 + 8 * (e & 1)) * 128 + (((2 * ks + (e >> 1)) ^ g) << 4) + 4 * t4;
            qf0[ks][e] = *reinterpret_cast<const uint32_t*>(smem + OFF_Q + off);
            qf1[ks][e] = *reinterpret_cast<const uint32_t*>(smem + OFF_Q + TILE_B + off);
        }
    float relw0[32];
    {
#pragma unroll 1
        for (int t = 0; t < 2; ++t) {
#pragma unroll 1
            for (int h = 0; h < 2; ++h) {
                float acc[32];
#pragma unroll
                for (int i = 0; i < 32; ++i) acc[i] = 0.0f;
                pin(acc);
                wg_fence();
                wgmma_n64_ss_k64(acc, q_desc + t * TILE_B / 16,
                                 q_desc + (OFF_KV + h * TILE_B) / 16);
                wg_commit();
                wg_wait<0>();
                pin(acc);
                float* dst = t == 0 ? s_relw0 : s_relw1;
#pragma unroll
                for (int i = 0; i < 32; ++i) {
                    const int qx = r0 + 8 * ((i >> 1) & 1);
                    const int j = 64 * h + 8 * (i >> 2) + 2 * t4 + (i & 1);
                    const int kx = qx + GS - 1 - j;
                    if (kx >= 0 && kx < GS) dst[qx * GRLD + kx] = acc[i] * inv_scale;
                }
            }
        }
        __syncwarp();  // each warp reads back only its own rows
#pragma unroll
        for (int i = 0; i < 32; ++i)
            relw0[i] = s_relw0[(r0 + 8 * ((i >> 1) & 1)) * GRLD + 8 * (i >> 2) + 2 * t4 + (i & 1)];
    }
    __syncthreads();  // every warp is done with the scratch: the stages are free
    load_kv(Index<0>{}, 0);
    samrt::cp_async_commit();

    float o0[32], o1[32], l0[4], l1[4], m0[2], m1[2];
#pragma unroll
    for (int i = 0; i < 32; ++i) o0[i] = o1[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) l0[i] = l1[i] = 0.0f;
    m0[0] = m0[1] = m1[0] = m1[1] = -INFINITY;
    // logit = scale * q_scale * s, in log2 units for exp2 (k and v are used as stored).
    const float sl2 = p.scale * p.q_scale * 1.4426950408889634f;
    const uint64_t ones = desc_plain(base + OFF_ONES);
    // This thread's first rel_w value of query row 1 (a shared address: see lds_f2).
    const uint32_t relw1 = opaque(base + OFF_RELW1 + 4 * (r0 * GRLD + 2 * t4));
    // Query r0's rel_h of key row 0 in the batch (query row 0; + 64 floats: query row 1).
    const uint32_t relh_r = opaque(base + OFF_RELH + 4 * r0);

    // rel_h scatter: accumulator i of this thread is column n = 8 (i / 4) + 2 t4 + i % 2 of
    // row r0 + 8 ((i / 2) % 2); from one base per thread every target is an immediate offset.
    float* const relh_w = s_relh + (RH_BATCH - 1 - 2 * t4) * RH_LD + r0;
    const bool t4_zero = t4 == 0;

    // One key tile in stage S (tiles alternate stages, so the loop runs two per iteration).
    auto tile = [&](auto stage, int kt) {
        constexpr int S = decltype(stage)::value;
        samrt::cp_async_wait<0>();
        fence_proxy_async();  // this thread's copies, before the async proxy reads them
        __syncthreads();      // tile kt visible; every wgmma on the other stage is done
        if (S == 0 || kt + 1 < GS) load_kv(Index<1 - S>{}, kt + 1);
        samrt::cp_async_commit();
        // The k16 steps' descriptors, each once per tile for both query rows: K advances 32
        // bytes per step (K-major), V 16 rows (2048 bytes, MN-major).
        uint64_t k_desc[4], v_desc[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            k_desc[i] = q_desc + (OFF_KV + 2 * S * TILE_B) / 16 + 2 * i;
            v_desc[i] = q_desc + (OFF_KV + (2 * S + 1) * TILE_B) / 16 + 128 * i;
        }

        if (S == 0 && kt % RH_BATCH == 0) {
            float rh0[8], rh1[8];
#pragma unroll
            for (int i = 0; i < 8; ++i) rh0[i] = rh1[i] = 0.0f;
            pin(rh0);
            pin(rh1);
            wg_fence();
            wgmma_n16_rs_k64(rh0, qf0, q_desc + OFF_RH / 16);
            wgmma_n16_rs_k64(rh1, qf1, q_desc + OFF_RH / 16);
            wg_commit();
            wg_wait<0>();
            pin(rh0);
            pin(rh1);
            // Column n: key row kt + 7 - n of query row 0 (n < 8: i < 4), kt + 8 - n of
            // query row 1 (1 <= n <= 8: i < 4 except n = 0, or n = 8 at t4 = 0).
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const int row = 8 * ((i >> 1) & 1);
                if (i < 4) {
                    relh_w[row - (i & 1) * RH_LD] = rh0[i] * inv_scale;
                    if (!t4_zero || (i & 1))
                        relh_w[row + (1 - (i & 1)) * RH_LD + GS] = rh1[i] * inv_scale;
                } else if ((i & 1) == 0) {
                    if (t4_zero) relh_w[row - (RH_BATCH - 1) * RH_LD + GS] = rh1[i] * inv_scale;
                }
            }
            __syncwarp();  // each warp reads back only its own rows
        }

        // ---- S = rel_w + Q K^T for both query rows, one commit group each ----
        float s0[32], s1[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) s0[i] = relw0[i];
        auto relw1_cols = [&](auto col8) {
            constexpr int J = decltype(col8)::value;
            const float2 lo = lds_f2<32 * J>(relw1);
            const float2 hi = lds_f2<32 * J + 32 * GRLD>(relw1);
            s1[4 * J + 0] = lo.x;
            s1[4 * J + 1] = lo.y;
            s1[4 * J + 2] = hi.x;
            s1[4 * J + 3] = hi.y;
        };
        relw1_cols(Index<0>{});
        relw1_cols(Index<1>{});
        relw1_cols(Index<2>{});
        relw1_cols(Index<3>{});
        relw1_cols(Index<4>{});
        relw1_cols(Index<5>{});
        relw1_cols(Index<6>{});
        relw1_cols(Index<7>{});
        pin(s0);
        pin(s1);
        wg_fence();
        wgmma_n64_rs_k64(s0, qf0, k_desc);
        wg_commit();
        wgmma_n64_rs_k64(s1, qf1, k_desc);
        wg_commit();

        // ---- query row 0: softmax while row 1's QK^T runs, then its PV ----
        // rel_h of this tile's key row for rows g and g + 8 of both query rows.
        const uint32_t relh_t = relh_r + (kt - S) % RH_BATCH * RH_LD * 4;
        const float h0[2] = {lds_f1<S * RH_LD * 4>(relh_t), lds_f1<(S * RH_LD + 8) * 4>(relh_t)};
        const float h1[2] = {lds_f1<(S * RH_LD + GS) * 4>(relh_t),
                             lds_f1<(S * RH_LD + GS + 8) * 4>(relh_t)};
        uint32_t a0[4][4], a1[4][4];
        wg_wait<1>();
        pin(s0);
        softmax_tile(s0, o0, l0, m0, h0, sl2);
        issue_pv(o0, l0, a0, s0, v_desc, ones);

        // ---- query row 1, while row 0's PV runs ----
        wg_wait<1>();
        pin(s1);
        softmax_tile(s1, o1, l1, m1, h1, sl2);
        issue_pv(o1, l1, a1, s1, v_desc, ones);
        wg_wait<0>();
        pin(o0);
        pin(o1);
        pin(l0);
        pin(l1);
    };
#pragma unroll 1
    for (int kt = 0; kt < GS; kt += 2) {
        tile(Index<0>{}, kt);
        tile(Index<1>{}, kt + 1);
    }
    samrt::cp_async_wait<0>();

    // ---- normalise and store ----
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        store_o_row(p.o + head * HD + row_of(qy0, r0 + 8 * i) * p.o_ld, o0, l0, i, t4);
        store_o_row(p.o + head * HD + row_of(qy0 + 1, r0 + 8 * i) * p.o_ld, o1, l1, i, t4);
    }
}

}  // namespace

// One block per SM, as the portable kernel (up to 255 registers: O and S of both query rows
// and row 0's rel_w).
extern "C" __global__ void __launch_bounds__(GTHREADS, 1)
    attn_relpos_s64_d64_f16(const AttnParams p) {
    attention_s64_sm90(p);
}
