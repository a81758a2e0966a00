// Helpers of the sm_90a encoder attentions (attn_relpos_s64_sm90a.cu at head dim 64,
// attn_relpos_s64_d80_sm90a.cu at 80): wgmma descriptors, the fence / commit / wait around
// the asynchronous products, asm operand lists, the swizzled shared layouts and the online
// softmax of one m64 tile of scores. Only sm_90a modules include this.
#pragma once

#include "common.cuh"

namespace {

// Matrix descriptor of a K-major or MN-major operand in 128-byte-swizzled rows: 8-row groups
// 1024 bytes apart (SBO); LBO (next atom along MN) is never used at N = 64. The start
// address (>> 4) is the low field, so a descriptor plus n / 16 addresses n bytes further
// (shared addresses stay below 2^18: no carry out of the field).
SAMRT_DEVICE uint64_t desc_sw128(uint32_t addr) {
    return static_cast<uint64_t>((addr & 0x3ffff) >> 4) | (1ull << 16) | (64ull << 32) |
           (1ull << 62);
}
// The ones matrix: no swizzle, core matrices of 8 rows x 16 bytes, K halves 128 bytes apart.
SAMRT_DEVICE uint64_t desc_plain(uint32_t addr) {
    return static_cast<uint64_t>((addr & 0x3ffff) >> 4) | (8ull << 16) | (16ull << 32);
}

// The same in 32-byte-swizzled rows (8-row groups 256 bytes apart): an operand 16 halves wide,
// K-major (one k16 step) or MN-major (N = 16).
SAMRT_DEVICE uint64_t desc_sw32(uint32_t addr) {
    return static_cast<uint64_t>((addr & 0x3ffff) >> 4) | (1ull << 16) | (16ull << 32) |
           (3ull << 62);
}

SAMRT_DEVICE void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
SAMRT_DEVICE void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
SAMRT_DEVICE void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Keeps the compiler from moving accesses of wgmma registers across the fence/wait asm.
template <int N>
SAMRT_DEVICE void pin(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
// The same for the A fragments of a wgmma (packed P): their conversions must stay before the
// wgmma.fence that precedes the wgmma reading them.
SAMRT_DEVICE void pin_a(uint32_t (&a)[4][4]) {
#pragma unroll
    for (int k = 0; k < 4; ++k)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[k][e])::"memory");
}
SAMRT_DEVICE void fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

#define SAMRT_D8(d) "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), \
    "+f"(d[6]), "+f"(d[7])
#define SAMRT_D32(d) SAMRT_D8(d), SAMRT_D8((d + 8)), SAMRT_D8((d + 16)), SAMRT_D8((d + 24))
#define SAMRT_L32 \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, " \
    "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
// Each chain of k16 steps is one asm statement: one scale-d predicate (always 1: every
// accumulator starts initialised) for the chain.
#define SAMRT_WG_PRED(n) "{\n.reg .pred p;\nsetp.ne.b32 p, %" #n ", 0;\n"
// One k16 step of shape SHAPE, accumulators D, both operands from descriptors %da, %db.
#define SAMRT_WG_SS(SHAPE, D, da, db)                                                  \
    "wgmma.mma_async.sync.aligned." SHAPE ".f32.f16.f16 " D ", %" #da ", %" #db \
    ", p, 1, 1, 0, 0;\n"
#define SAMRT_WG_SS64(da, db) SAMRT_WG_SS("m64n64k16", SAMRT_L32, da, db)

// One k16 step n64 with A from registers (a0-a3) and B K-major from descriptor %db.
#define SAMRT_WG_RS64(a0, a1, a2, a3, db)                                                 \
    "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " SAMRT_L32 ", {%" #a0 ", %" #a1 \
    ", %" #a2 ", %" #a3 "}, %" #db ", p, 1, 1, 0;\n"

// Byte offset of (row, 16-byte chunk) in 128-byte-swizzled rows (the pattern of 1024-aligned
// atoms: chunk c of row r lands at chunk c ^ (r mod 8)).
SAMRT_DEVICE uint32_t sw128(int row, int chunk) {
    return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// Byte offset of (row, 16-byte chunk) in 32-byte-swizzled rows (256-aligned atoms: chunk c of
// row r lands at chunk c ^ ((r / 4) mod 2)).
SAMRT_DEVICE uint32_t sw32(int row, int chunk) {
    return static_cast<uint32_t>(row * 32 + ((chunk ^ ((row >> 2) & 1)) << 4));
}

// A row's running max is moved only when the tile's max exceeds it by more than this (log2
// units), as FlashAttention-4 does: P = exp2(s - max) is then at most 2^8, well inside fp16
// (P feeds the PV wgmma) and fp32 (l, O), and the rescale of O and l (head dim / 2 + 4
// multiplies per thread and m64 tile) runs on a few tiles instead of most (a warp rescales when any of its 16 rows grew,
// ~60 % of tiles with the exact max). O / l is invariant under the choice of max, so only
// roundings change, at the same relative size.
constexpr float RESCALE_LOG2 = 8.0f;

// An int as a type (a K/V stage, a chunk index), so that code specialised on it sees its
// offsets as constants.
template <int N>
struct Index {
    static constexpr int value = N;
};

// v through an asm mov, which the compiler cannot recompute: a loop-invariant address made
// from the thread index then stays in its register instead of being rebuilt in every tile.
SAMRT_DEVICE uint32_t opaque(uint32_t v) {
    uint32_t r;
    asm volatile("mov.b32 %0, %1;\n" : "=r"(r) : "r"(v));
    return r;
}

// One float from shared address addr + OFF bytes (see lds_f2).
template <int OFF>
SAMRT_DEVICE float lds_f1(uint32_t addr) {
    float v;
    asm volatile("ld.shared.f32 %0, [%1+%2];\n" : "=f"(v) : "r"(addr), "n"(OFF) : "memory");
    return v;
}

// Two floats from shared address addr + OFF bytes (an immediate of the instruction: the
// base register stays live across the loop instead of being recomputed per tile).
template <int OFF>
SAMRT_DEVICE float2 lds_f2(uint32_t addr) {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2+%3];\n"
                 : "=f"(v.x), "=f"(v.y)
                 : "r"(addr), "n"(OFF)
                 : "memory");
    return v;
}

// Softmax of one m64 tile's S (this thread's rows g and g + 8 of its warp's 16), rescaling
// O (NO accumulators: head dim / 2) and l when a row's kept max moved; P left in s.
template <int NO>
SAMRT_DEVICE void softmax_tile(float (&s)[32], float (&o)[NO], float (&l)[4], float (&m)[2],
                               const float (&relh)[2], float sl2) {
    float corr[2];
    bool grew = false;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
        const float hb = relh[i];
        float mx = s[2 * i];
#pragma unroll
        for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[4 * j + 2 * i], s[4 * j + 2 * i + 1]));
        // The quad's max through f32 shuffles with immediate masks (samrt::quad_max's
        // intrinsic adds a b32 round trip and a mask register).
        mx = fmaxf(mx, samrt::shfl_xor_f32<1>(mx));
        mx = fmaxf(mx, samrt::shfl_xor_f32<2>(mx));
        // Rounding is monotone, so max(s) + h is exactly max(s + h).
        const float m_new = fmaxf(m[i], mx + hb);
        // The first tile always moves it (from -inf: the difference is +inf).
        const float m_keep = (m_new - m[i]) * sl2 > RESCALE_LOG2 ? m_new : m[i];
        grew |= m_keep != m[i];
        corr[i] = exp2f((m[i] - m_keep) * sl2);  // 1 when kept
        m[i] = m_keep;
        const float nb = (hb - m_keep) * sl2;  // every key is real: m_keep is finite
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 2; ++e)
                s[4 * j + 2 * i + e] = exp2f(fmaf(s[4 * j + 2 * i + e], sl2, nb));
    }
    // A kept max has corr = 1: O and l are rescaled only when a row's max moved.
    if (__any_sync(0xffffffffu, grew)) {
#pragma unroll
        for (int j = 0; j < NO / 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) o[4 * j + e] *= corr[e >> 1];
#pragma unroll
        for (int e = 0; e < 4; ++e) l[e] *= corr[e >> 1];
    }
}

// P (a tile's 64 scores of this thread's rows, fp32) as the A fragments of the PV wgmma's
// four k16 steps (f16x2, the accumulator layout is the A layout).
SAMRT_DEVICE void pack_p(uint32_t (&a)[4][4], const float (&s)[32]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        a[kk][0] = samrt::pack_half2(s[8 * kk + 0], s[8 * kk + 1]);
        a[kk][1] = samrt::pack_half2(s[8 * kk + 2], s[8 * kk + 3]);
        a[kk][2] = samrt::pack_half2(s[8 * kk + 4], s[8 * kk + 5]);
        a[kk][3] = samrt::pack_half2(s[8 * kk + 6], s[8 * kk + 7]);
    }
    pin_a(a);
}

// O / l of this thread's row g + 8 i of one m64 tile (NO = head dim / 2 accumulators) as fp16
// to dst, the head's first column of that token's output row.
template <int NO>
SAMRT_DEVICE void store_o_row(__half* dst, const float (&o)[NO], const float (&l)[4], int i,
                              int t4) {
    const float inv = 1.0f / l[2 * i];  // >= 1: the max term is >= 1
#pragma unroll
    for (int j = 0; j < NO / 4; ++j)
        *reinterpret_cast<uint32_t*>(dst + j * 8 + 2 * t4) =
            samrt::pack_half2(o[4 * j + 2 * i] * inv, o[4 * j + 2 * i + 1] * inv);
}

}  // namespace
