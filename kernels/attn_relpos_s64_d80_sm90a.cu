// attn_relpos_s64_d80_f16 for sm_90a: SAM's global attention at S = 64 and head dim 80
// (vit_h; logit formula at the top of attention.cu) with the products on Hopper's warpgroup
// MMA. The runtime loads this module after the portable ones on compute capability 9.0, so
// this entry point replaces attention.cu's there; launch geometry and shared memory are the
// portable kernel's (one warpgroup, 64 queries = one query row, 62464 bytes), so the launcher
// is the same on every device.
//
// Why a kernel of its own: the portable hd80 kernel is bound by shared-memory wavefronts in
// the H100 model (every mma.sync operand through ldmatrix, per warp), and its head-dim-64 sm_90a sibling
// (attn_relpos_s64_sm90a.cu) does not stretch to 80: its two query rows per warpgroup need
// 16 more O and 8 more Q registers at 80, past 255. Here a block is one query row (the
// portable hd80 geometry), so O, S, Q and rel_w of one m64 tile fit with room, and three
// blocks share an SM (each block's softmax runs while another's wgmmas do).
// * A row of 80 halves (160 bytes) is wider than the widest swizzle row (128 bytes), so every
//   Q, K, V and table tile is held as two panels: dims 0-63 in 128-byte-swizzled rows, dims
//   64-79 in 32-byte-swizzled rows. QK^T is four k16 steps on panel 0 and one on panel 1
//   (both K-major); PV is an n64 wgmma on panel 0 and an n16 one on panel 1 per k16 step
//   (V in K's two-panel layout, read MN-major). The cp.async writes of both panels are conflict-free.
// * Q is the A operand from registers (5 k16 steps, 20 registers, loaded once).
// * rel_w[q][kx] = <q, Rw[qx - kx + 63]> / scale does not depend on ky: computed once (Q Rw^T,
//   scattered through shared memory into the accumulator layout) and kept in registers as
//   the initial accumulator of each tile's QK^T.
// * rel_h[q][ky] = <q, Rh[qy - ky + 63]> / scale: the block's 64 table rows qy .. qy + 63 are
//   one n64 product, computed once and kept in shared memory as [ky][qx] (Q's space once the
//   fragments are in registers); each tile reads two floats per thread. They enter the
//   softmax as max(s) + h and inside the exponent's fma, as in the head-dim-64 kernel.
// * The row sums l come from the tensor cores (P times a ones matrix, m64n8).
// The tests compare this kernel and the portable one with the CPU reference.
#include "attn_params.cuh"
#include "attn_sm90a.cuh"

namespace {

constexpr int HD = 80;         // head dim: panel 0 holds dims 0-63, panel 1 dims 64-79
constexpr int GQ = 64;         // queries per block: one query row, one m64 tile
constexpr int GK = 64;         // keys per tile: one key row
constexpr int GS = 64;         // the side S
constexpr int GTHREADS = 128;  // one warpgroup
constexpr int P0_B = GK * 128; // bytes of a 64-row panel 0 (128-byte rows)
constexpr int P1_B = GK * 32;  // bytes of a 64-row panel 1 (32-byte rows)
constexpr int RH_LD = GQ + 4;  // floats per key row of the rel_h table
constexpr int GRLD = 72;       // floats per row of the rel_w scratch (as the hd64 kernel)

// Shared memory, from a 1024-aligned base (the 128-byte swizzle repeats every 1024 bytes, the
// 32-byte one every 256): the rel_h table [64 ky][RH_LD] fp32, which until the prologue's
// products are done holds Q (panel 0, then panel 1); two K/V stages of [K p0 | V p0 | K p1 |
// V p1]; a 256-byte ones matrix. Before the first K/V tile, stage 0 holds the Rw table (128
// rows: p0 16 KiB, then p1) and after it the rel_w scratch; stage 1 holds the 64 Rh rows.
constexpr int OFF_Q0 = 0;
constexpr int OFF_Q1 = P0_B;
constexpr int OFF_RELH = 0;
constexpr int OFF_KV = 17 * 1024;
constexpr int K0 = 0, V0 = P0_B, K1 = 2 * P0_B, V1 = 2 * P0_B + P1_B;  // within a stage
constexpr int STAGE_B = 2 * P0_B + 2 * P1_B;
constexpr int TABLE_P1 = 2 * P0_B;  // panel 1 of a 128-row table within its stage
constexpr int OFF_ONES = OFF_KV + 2 * STAGE_B;
constexpr int SMEM_USED = OFF_ONES + 256;
// attention.rs `smem_bytes(80, Some((64, Side64)))`, which the launcher requests for either module.
constexpr int SMEM_LAUNCH = 4 * 64 * (HD + 8) * 2 + 64 * 68 * 4;
static_assert(SMEM_USED + 1024 - 16 <= SMEM_LAUNCH, "fits the portable kernel's request");
static_assert(GS * RH_LD * 4 <= OFF_KV && OFF_Q1 + P1_B <= OFF_KV, "rel_h and Q fit");
static_assert(GS * GRLD * 4 <= STAGE_B && 2 * P0_B + 2 * P1_B <= STAGE_B, "tables fit");
static_assert(STAGE_B % 1024 == 0 && OFF_KV % 1024 == 0, "stages keep the atoms aligned");

// S[64x64] += A[64x80] B^T over 5 k16 steps: A from registers (q, 4 per step), B K-major
// from shared memory: steps 0-3 on panel 0 (descriptors d0, 32 bytes apart), step 4 on
// panel 1 (d1).
SAMRT_DEVICE void wgmma_n64_rs_k80(float (&d)[32], const uint32_t (&q)[5][4],
                                   const uint64_t (&d0)[4], uint64_t d1) {
    asm volatile(SAMRT_WG_PRED(57) SAMRT_WG_RS64(32, 33, 34, 35, 52)
                     SAMRT_WG_RS64(36, 37, 38, 39, 53) SAMRT_WG_RS64(40, 41, 42, 43, 54)
                         SAMRT_WG_RS64(44, 45, 46, 47, 55) SAMRT_WG_RS64(48, 49, 50, 51, 56) "}\n"
                 : SAMRT_D32(d)
                 : "r"(q[0][0]), "r"(q[0][1]), "r"(q[0][2]), "r"(q[0][3]), "r"(q[1][0]),
                   "r"(q[1][1]), "r"(q[1][2]), "r"(q[1][3]), "r"(q[2][0]), "r"(q[2][1]),
                   "r"(q[2][2]), "r"(q[2][3]), "r"(q[3][0]), "r"(q[3][1]), "r"(q[3][2]),
                   "r"(q[3][3]), "r"(q[4][0]), "r"(q[4][1]), "r"(q[4][2]), "r"(q[4][3]),
                   "l"(d0[0]), "l"(d0[1]), "l"(d0[2]), "l"(d0[3]), "l"(d1), "n"(1));
}

// One k16 step of O[64x80] += P V and l[64x8] += P 1: P from registers (a0-a3), V MN-major
// (transposed) from shared memory, dims 0-63 from panel 0 (descriptor dv0), 64-79 from panel
// 1 (dv1); the ones matrix (descriptor %68) K-major.
#define SAMRT_WG_PV80(a0, a1, a2, a3, dv0, dv1)                                              \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " SAMRT_L32 ", {%" #a0 ", %" #a1    \
    ", %" #a2 ", %" #a3 "}, %" #dv0 ", p, 1, 1, 1;\n"                                         \
    "wgmma.mma_async.sync.aligned.m64n16k16.f32.f16.f16 {%32, %33, %34, %35, %36, %37, %38, " \
    "%39}, {%" #a0 ", %" #a1 ", %" #a2 ", %" #a3 "}, %" #dv1 ", p, 1, 1, 1;\n"               \
    "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%40, %41, %42, %43}, {%" #a0         \
    ", %" #a1 ", %" #a2 ", %" #a3 "}, %68, p, 1, 1, 0;\n"
// O += P V and l += P 1 over 4 k16 steps (16 keys each: V descriptors 16 rows apart).
SAMRT_DEVICE void wgmma_pv_k64_n80(float (&o)[40], float (&l)[4], const uint32_t (&a)[4][4],
                                   const uint64_t (&dv0)[4], const uint64_t (&dv1)[4],
                                   uint64_t dl) {
    asm volatile(SAMRT_WG_PRED(69) SAMRT_WG_PV80(44, 45, 46, 47, 60, 64)
                     SAMRT_WG_PV80(48, 49, 50, 51, 61, 65) SAMRT_WG_PV80(52, 53, 54, 55, 62, 66)
                         SAMRT_WG_PV80(56, 57, 58, 59, 63, 67) "}\n"
                 : SAMRT_D32(o), SAMRT_D8((o + 32)), "+f"(l[0]), "+f"(l[1]), "+f"(l[2]),
                   "+f"(l[3])
                 : "r"(a[0][0]), "r"(a[0][1]), "r"(a[0][2]), "r"(a[0][3]), "r"(a[1][0]),
                   "r"(a[1][1]), "r"(a[1][2]), "r"(a[1][3]), "r"(a[2][0]), "r"(a[2][1]),
                   "r"(a[2][2]), "r"(a[2][3]), "r"(a[3][0]), "r"(a[3][1]), "r"(a[3][2]),
                   "r"(a[3][3]), "l"(dv0[0]), "l"(dv0[1]), "l"(dv0[2]), "l"(dv0[3]),
                   "l"(dv1[0]), "l"(dv1[1]), "l"(dv1[2]), "l"(dv1[3]), "l"(dl), "n"(1));
}

// Copies `rows` rows of 80 halves (row r at src + r * ld halves; rows at or past `valid` are
// zero-filled) into the two panels at p0 / p1, spread over the block's threads.
SAMRT_DEVICE void load_rows_p01(uint32_t p0, uint32_t p1, const __half* src, long long ld,
                                int rows, int valid, int tid) {
    for (int c = tid; c < rows * 8; c += GTHREADS) {
        const int r = c >> 3, ch = c & 7;
        samrt::cp_async_16(p0 + sw128(r, ch), src + (r < valid ? r : 0) * ld + ch * 8, r < valid);
    }
    for (int c = tid; c < rows * 2; c += GTHREADS) {
        const int r = c >> 1, ch = c & 1;
        samrt::cp_async_16(p1 + sw32(r, ch), src + (r < valid ? r : 0) * ld + 64 + ch * 8,
                           r < valid);
    }
}

SAMRT_DEVICE void attention_s64_d80_sm90(const AttnParams& p) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t raw = samrt::smem_addr(smem_raw);
    const uint32_t pad = (1024u - (raw & 1023u)) & 1023u;
    unsigned char* smem = smem_raw + pad;
    const uint32_t base = raw + pad;
    float* s_relh = reinterpret_cast<float*>(smem + OFF_RELH);              // [GS][RH_LD]
    float* s_relw = reinterpret_cast<float*>(smem + OFF_KV);                // scratch
    const uint32_t st0 = base + OFF_KV, st1 = st0 + STAGE_B;

    const AttnSquare square(p, GS);  // no token is padding (the grid is a multiple of 64)
    const int qy = blockIdx.x;       // the block's query row of the square
    const int head = blockIdx.y;
    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int g = (tid & 31) >> 2;
    const int t4 = tid & 3;
    const __half* qb = p.q + head * HD;
    const __half* kb = p.k + head * HD;
    const __half* vb = p.v + head * HD;
    const float inv_scale = 1.0f / p.scale;

    // ---- Q (its 64 tokens are consecutive rows of the grid), the Rw table (row 127 zero),
    // the Rh rows qy .. qy + 63 and the ones matrix ----
    load_rows_p01(base + OFF_Q0, base + OFF_Q1, qb + square.row_of(qy, 0) * p.q_ld, p.q_ld, GQ,
                  GQ, tid);
    load_rows_p01(st0, st0 + TABLE_P1, p.rel_w, HD, 2 * GS, 2 * GS - 1, tid);
    load_rows_p01(st1, st1 + TABLE_P1, p.rel_h + qy * HD, HD, GS, GS, tid);
    samrt::cp_async_commit();
    if (tid < 64) reinterpret_cast<uint32_t*>(smem + OFF_ONES)[tid] = 0x3c003c00u;  // half2(1, 1)
    samrt::cp_async_wait<0>();
    fence_proxy_async();
    __syncthreads();

    // Q as register A fragments (read once: the QK^T chains then read only K from shared
    // memory). Register e of step ks: row g + 8 (e & 1) of this warp's 16, k 16 ks + 8 (e >> 1)
    // + 2 t4; steps 0-3 in panel 0, step 4 in panel 1.
    const int r0 = warp * 16 + g;  // this thread's row g of the m64 tile (qx)
    uint32_t qf[5][4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const int r = r0 + 8 * (e & 1);
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
            qf[ks][e] = *reinterpret_cast<const uint32_t*>(smem + OFF_Q0 + sw128(r, 2 * ks + (e >> 1)) +
                                                           4 * t4);
        qf[4][e] = *reinterpret_cast<const uint32_t*>(smem + OFF_Q1 + sw32(r, e >> 1) + 4 * t4);
    }

    // ---- rel_w (Q Rw^T, both halves of the table) and rel_h (Q Rh^T), one commit group ----
    // Accumulator i of this thread is row r0 + 8 ((i / 2) % 2), column 8 (i / 4) + 2 t4 + i % 2.
    float relw[32];
    {
        float w0[32], w1[32], h[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) w0[i] = w1[i] = h[i] = 0.0f;
        auto descs = [&](uint32_t p0, uint64_t (&d0)[4]) {
#pragma unroll
            for (int i = 0; i < 4; ++i) d0[i] = desc_sw128(p0) + 2 * i;
        };
        uint64_t dw0[4], dw1[4], dh[4];
        descs(st0, dw0);
        descs(st0 + GS * 128, dw1);
        descs(st1, dh);
        pin(w0);
        pin(w1);
        pin(h);
        wg_fence();
        wgmma_n64_rs_k80(w0, qf, dw0, desc_sw32(st0 + TABLE_P1));
        wgmma_n64_rs_k80(w1, qf, dw1, desc_sw32(st0 + TABLE_P1 + GS * 32));
        wgmma_n64_rs_k80(h, qf, dh, desc_sw32(st1 + TABLE_P1));
        wg_commit();
        wg_wait<0>();
        pin(w0);
        pin(w1);
        pin(h);
        __syncthreads();  // every product is done: Q and the tables are free
#pragma unroll
        for (int i = 0; i < 32; ++i) {
            const int qx = r0 + 8 * ((i >> 1) & 1);
            const int j = 8 * (i >> 2) + 2 * t4 + (i & 1);
            // Rw row j (w0) is kx = qx + 63 - j, row 64 + j (w1) kx = qx - 1 - j; Rh row
            // qy + j is ky = 63 - j.
            if (j >= qx) s_relw[qx * GRLD + qx + GS - 1 - j] = w0[i] * inv_scale;
            if (64 + j <= qx + GS - 1) s_relw[qx * GRLD + qx - 1 - j] = w1[i] * inv_scale;
            s_relh[(GS - 1 - j) * RH_LD + qx] = h[i] * inv_scale;
        }
        __syncwarp();  // each warp reads back only its own rows
#pragma unroll
        for (int i = 0; i < 32; ++i)
            relw[i] = s_relw[(r0 + 8 * ((i >> 1) & 1)) * GRLD + 8 * (i >> 2) + 2 * t4 + (i & 1)];
    }
    __syncthreads();  // every warp is done with the scratch: the stages are free

    // K/V copies. Panel 0: each thread copies chunks (t & 1) + 2 i (i < 4) of one key (a key
    // row is 64 consecutive tokens), as in the head-dim-64 kernel: a quarter warp's 8 copies
    // land in 8 distinct 16-byte bank groups, and one xor per copy finds the swizzled chunk.
    // Panel 1: thread t copies chunk t & 1 of key t / 2 (4 consecutive 32-byte rows per
    // quarter warp, conflict-free).
    const int kv_key = 16 * warp + 2 * ((tid >> 1) & 3) + ((tid >> 3) & 1) + 8 * ((tid >> 4) & 1);
    const long long kv_step = static_cast<long long>(p.grid) * p.k_ld;  // halves per key row
    const __half* kv_src = kb + square.row_of(0, kv_key) * p.k_ld + (tid & 1) * 8;
    const __half* kv1_src = kb + square.row_of(0, tid >> 1) * p.k_ld + 64 + (tid & 1) * 8;
    // v follows k in a qkv row (k_ld == v_ld). The offsets go through opaque(): LLVM would
    // otherwise rebuild them from the thread index in every tile.
    const int kv_v = static_cast<int>(opaque(static_cast<uint32_t>(vb - kb)));
    const uint32_t kv_dst = opaque(st0 + sw128(kv_key, tid & 1));
    const uint32_t kv1_dst = opaque(st0 + K1 + sw32(tid >> 1, tid & 1));
    // Loads the next key row (the sources advance one row per call: row kt on the call for
    // tile kt) into stage S (a compile-time constant: the loop below runs two tiles per
    // iteration, so stage offsets are immediates).
    auto load_kv = [&](auto stage) {
        constexpr int S = decltype(stage)::value;
        const __half* v_src = kv_src + kv_v;
        auto copy = [&](auto chunk) {
            constexpr int I = decltype(chunk)::value;
            const uint32_t d = kv_dst ^ (I << 5);
            samrt::cp_async_16_at<S * STAGE_B + K0, 32 * I>(d, kv_src);
            samrt::cp_async_16_at<S * STAGE_B + V0, 32 * I>(d, v_src);
        };
        copy(Index<0>{});
        copy(Index<1>{});
        copy(Index<2>{});
        copy(Index<3>{});
        samrt::cp_async_16_at<S * STAGE_B, 0>(kv1_dst, kv1_src);
        samrt::cp_async_16_at<S * STAGE_B + V1 - K1, 0>(kv1_dst, kv1_src + kv_v);
        kv_src += kv_step;
        kv1_src += kv_step;
    };
    load_kv(Index<0>{});
    samrt::cp_async_commit();

    float o[40], l[4], m[2];
#pragma unroll
    for (int i = 0; i < 40; ++i) o[i] = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) l[i] = 0.0f;
    m[0] = m[1] = -INFINITY;
    // logit = scale * q_scale * s, in log2 units for exp2 (k and v are used as stored).
    const float sl2 = p.scale * p.q_scale * 1.4426950408889634f;
    const uint64_t ones = desc_plain(base + OFF_ONES);
    // Query r0's rel_h of key row 0 (a shared address: see lds_f1).
    const uint32_t relh_r = opaque(base + OFF_RELH + 4 * r0);

    // One key tile in stage S (tiles alternate stages, so the loop runs two per iteration).
    auto tile = [&](auto stage, int kt) {
        constexpr int S = decltype(stage)::value;
        samrt::cp_async_wait<0>();
        fence_proxy_async();  // this thread's copies, before the async proxy reads them
        __syncthreads();      // tile kt visible; every wgmma on the other stage is done
        if (S == 0 || kt + 1 < GS) load_kv(Index<1 - S>{});
        samrt::cp_async_commit();
        // The k16 steps' descriptors: K advances 32 bytes per step (K-major), V 16 rows
        // (MN-major: 2048 bytes in panel 0, 512 in panel 1).
        const uint64_t stage_desc = desc_sw128(st0 + S * STAGE_B);
        uint64_t k0[4], v0[4], v1[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            k0[i] = stage_desc + (K0 / 16 + 2 * i);
            v0[i] = stage_desc + (V0 / 16 + 128 * i);
            v1[i] = desc_sw32(st0 + S * STAGE_B + V1) + 32 * i;
        }

        // ---- S = rel_w + Q K^T ----
        float s[32];
#pragma unroll
        for (int i = 0; i < 32; ++i) s[i] = relw[i];
        pin(s);
        wg_fence();
        wgmma_n64_rs_k80(s, qf, k0, desc_sw32(st0 + S * STAGE_B + K1));
        wg_commit();
        // rel_h of this tile's key row for rows g and g + 8.
        const uint32_t relh_t = relh_r + kt * RH_LD * 4;
        const float h[2] = {lds_f1<0>(relh_t), lds_f1<8 * 4>(relh_t)};
        wg_wait<0>();
        pin(s);
        softmax_tile(s, o, l, m, h, sl2);

        // ---- O += P V, l += P 1 ----
        uint32_t a[4][4];
        pack_p(a, s);
        pin(o);
        pin(l);
        wg_fence();
        wgmma_pv_k64_n80(o, l, a, v0, v1, ones);
        wg_commit();
        wg_wait<0>();
        pin(o);
        pin(l);
    };
#pragma unroll 1
    for (int kt = 0; kt < GS; kt += 2) {
        tile(Index<0>{}, kt);
        tile(Index<1>{}, kt + 1);
    }
    samrt::cp_async_wait<0>();

    // ---- normalise and store ----
#pragma unroll
    for (int i = 0; i < 2; ++i)
        store_o_row(p.o + head * HD + square.row_of(qy, r0 + 8 * i) * p.o_ld, o, l, i, t4);
}

}  // namespace

// One warpgroup per block, three blocks per SM: the launcher's shared memory allows three,
// and so do 168 registers (3 x 128 x 168 <= 65536), which ptxas reaches without spilling.
extern "C" __global__ void __launch_bounds__(GTHREADS, 3)
    attn_relpos_s64_d80_f16(const AttnParams p) {
    attention_s64_d80_sm90(p);
}
