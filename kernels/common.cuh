// Shared device helpers for the samrt kernels: cp.async, ldmatrix and mma.sync wrappers.
// Every kernel stores fp16 and accumulates in fp32. Inline PTX is used instead of the CUDA
// intrinsics headers so that the exact instructions (and their operand layouts, which the
// index arithmetic in each kernel depends on) are visible in one place.
#pragma once

#include <cuda_fp16.h>
#include <stdint.h>

#define SAMRT_DEVICE __device__ __forceinline__

namespace samrt {

SAMRT_DEVICE uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy that bypasses L1. When `valid` is false no global byte is read
// and the 16 destination bytes are zero-filled (src-size 0), which is how every kernel pads
// ragged tiles: zeros keep the tensor-core products finite.
SAMRT_DEVICE void cp_async_16(uint32_t dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes)
                 : "memory");
}

// cp_async_16 to dst + OFF bytes (the offset an immediate of the instruction).
template <int OFF>
SAMRT_DEVICE void cp_async_16_to(uint32_t dst, const void* src, bool valid) {
    const int src_bytes = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0+%3], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "r"(src_bytes), "n"(OFF)
                 : "memory");
}

// A whole 16-byte cp.async with both offsets immediates of the instruction, so that a loop
// over a tile's chunks needs no address arithmetic per copy.
template <int DST_OFF, int SRC_OFF>
SAMRT_DEVICE void cp_async_16_at(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0+%2], [%1+%3], 16;\n" ::"r"(dst), "l"(src),
                 "n"(DST_OFF), "n"(SRC_OFF)
                 : "memory");
}

SAMRT_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int N>
SAMRT_DEVICE void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// Four 8x8 b16 matrices; lane l supplies the row address of matrix l / 8.
SAMRT_DEVICE void ldmatrix_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                              uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}

// ldmatrix_x4 / ldmatrix_x4_trans at addr + OFF bytes, the offset an immediate of the
// instruction rather than an add before it.
#define SAMRT_LDMATRIX_X4_AT(NAME, OP)                                                     \
    template <int OFF>                                                                     \
    SAMRT_DEVICE void NAME(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,         \
                           uint32_t addr) {                                                \
        asm volatile(OP " {%0, %1, %2, %3}, [%4+%5];\n"                                   \
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)                              \
                     : "r"(addr), "n"(OFF)                                                 \
                     : "memory");                                                          \
    }
SAMRT_LDMATRIX_X4_AT(ldmatrix_x4_at, "ldmatrix.sync.aligned.m8n8.x4.shared.b16")
SAMRT_LDMATRIX_X4_AT(ldmatrix_x4_trans_at, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16")
#undef SAMRT_LDMATRIX_X4_AT

// Calls f(Int<I>{}) for I = B..E-1: a loop whose index is a constant expression (for
// immediates such as ldmatrix_x4_at's offset).
template <int I>
struct Int {
    static constexpr int value = I;
};
template <int B, int E, class F>
SAMRT_DEVICE void static_for(F&& f) {
    if constexpr (B < E) {
        f(Int<B>{});
        static_for<B + 1, E>(f);
    }
}

// Two 8x8 b16 matrices; lanes 0-15 supply the row addresses (of matrix lane / 8).
SAMRT_DEVICE void ldmatrix_x2(uint32_t& r0, uint32_t& r1, uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
                 : "=r"(r0), "=r"(r1)
                 : "r"(addr)
                 : "memory");
}

SAMRT_DEVICE void ldmatrix_x4_trans(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                    uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr)
                 : "memory");
}

// D = A * B + D for one m16n8k16 tile, fp16 inputs, fp32 accumulators.
// Fragment layout (g = lane / 4, t = lane % 4):
//   a0 (row g, k 2t..2t+1)  a1 (row g+8, k 2t..)  a2 (row g, k 2t+8..)  a3 (row g+8, k 2t+8..)
//   b0 (k 2t..2t+1, col g)  b1 (k 2t+8.., col g)
//   d0,d1 (row g, col 2t..2t+1)  d2,d3 (row g+8, col 2t..2t+1)
SAMRT_DEVICE void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// D = A * B + C for one m16n8k16 tile with C in separate registers (a loop-invariant
// initial value, e.g. a bias held in registers, costs no copies).
SAMRT_DEVICE void mma_16816_c(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                              const float (&c)[4]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n"
        : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(c[0]), "f"(c[1]),
          "f"(c[2]), "f"(c[3]));
}

// Two floats to a packed half2, `lo` in the low 16 bits (the lower k / column index).
SAMRT_DEVICE uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&h);
}

// Attention building blocks on one warp's 16 query rows (fragments as in mma_16816), over
// row-major fp16 tiles in shared memory with `lds` halves per row.
// s0, s1 (keys row0..+7, row0+8..+15) += the 16 x 16 query fragment `a` times those keys'
// columns col0..col0 + 15.
SAMRT_DEVICE void mma_qk_16keys(float (&s0)[4], float (&s1)[4], const uint32_t (&a)[4],
                                uint32_t k_addr, int row0, int col0, int lds, int lane) {
    // (keys 0-7, c 0-7), (keys 0-7, c 8-15), (keys 8-15, c 0-7), (keys 8-15, c 8-15)
    const int r = row0 + (lane & 7) + ((lane >> 4) << 3);
    const int col = col0 + ((lane >> 3) & 1) * 8;
    uint32_t b0, b1, b2, b3;
    ldmatrix_x4(b0, b1, b2, b3, k_addr + (r * lds + col) * 2);
    mma_16816(s0, a, b0, b1);
    mma_16816(s1, a, b2, b3);
}

// s0 (keys row0..row0 + 7) += `a` times those keys' columns col0..col0 + 15.
SAMRT_DEVICE void mma_qk_8keys(float (&s0)[4], const uint32_t (&a)[4], uint32_t k_addr, int row0,
                               int col0, int lds, int lane) {
    // (keys 0-7, c 0-7), (keys 0-7, c 8-15)
    const int r = row0 + (lane & 7);
    const int col = col0 + ((lane >> 3) & 1) * 8;
    uint32_t b0, b1;
    ldmatrix_x2(b0, b1, k_addr + (r * lds + col) * 2);
    mma_16816(s0, a, b0, b1);
}

// O (16 x 16 DP) += P V over the 16 keys row0..row0 + 15: the probability C fragments p0
// (keys 0-7) and p1 (keys 8-15) re-used as fp16 A fragments.
template <int DP>
SAMRT_DEVICE void mma_pv_16keys_a(float (&o)[2 * DP][4], const uint32_t (&a)[4], uint32_t v_addr,
                                  int row0, int lds, int lane) {
#pragma unroll
    for (int dp = 0; dp < DP; ++dp) {
        // Transposed loads of (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15),
        // (keys 8-15, d 8-15): b0, b1 of d-tile 2dp, then of 2dp + 1.
        const int r = row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
        const int col = dp * 16 + (lane >> 4) * 8;
        uint32_t b0, b1, b2, b3;
        ldmatrix_x4_trans(b0, b1, b2, b3, v_addr + (r * lds + col) * 2);
        mma_16816(o[2 * dp], a, b0, b1);
        mma_16816(o[2 * dp + 1], a, b2, b3);
    }
}

// acc (16 x 8) += a warp's 16 query rows (A fragments qf, KS k16 steps) times table rows as
// the B columns: this lane's column g is `row` (16 KS halves, read through L1), or zeros
// where `row` is null (columns past the table). The decomposed rel-pos products.
template <int KS>
SAMRT_DEVICE void mma_by_table_rows(float (&acc)[4], const uint32_t (&qf)[KS][4],
                                    const __half* row, int t4) {
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        const uint32_t b0 =
            row ? __ldg(reinterpret_cast<const unsigned int*>(row + ks * 16 + 2 * t4)) : 0u;
        const uint32_t b1 =
            row ? __ldg(reinterpret_cast<const unsigned int*>(row + ks * 16 + 8 + 2 * t4)) : 0u;
        mma_16816(acc, qf[ks], b0, b1);
    }
}

// The probability C fragments p0 (keys 0-7) and p1 (keys 8-15) as one fp16 A fragment.
SAMRT_DEVICE void pack_p(uint32_t (&a)[4], const float (&p0)[4], const float (&p1)[4]) {
    a[0] = pack_half2(p0[0], p0[1]);
    a[1] = pack_half2(p0[2], p0[3]);
    a[2] = pack_half2(p1[0], p1[1]);
    a[3] = pack_half2(p1[2], p1[3]);
}

// mma_pv_16keys_a on the probabilities as computed (fp32 C fragments).
template <int DP>
SAMRT_DEVICE void mma_pv_16keys(float (&o)[2 * DP][4], const float (&p0)[4],
                                const float (&p1)[4], uint32_t v_addr, int row0, int lds,
                                int lane) {
    uint32_t a[4];
    pack_p(a, p0, p1);
    mma_pv_16keys_a<DP>(o, a, v_addr, row0, lds, lane);
}

// The max and the sum over a 4-lane quad: the lanes that hold one row of an mma
// accumulator tile (m16n8: lanes 4g..4g+3 hold rows g and g + 8).
SAMRT_DEVICE float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

SAMRT_DEVICE float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// The max of accumulator row half i (0: row g, 1: row g + 8) of NT n8 tiles over its quad.
template <int NT>
SAMRT_DEVICE float quad_row_max(const float (&s)[NT][4], int i) {
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * i], s[nt][2 * i + 1]));
    return quad_max(mx);
}

// __shfl_xor_sync on a float whose register stays an f32 register: through the intrinsic,
// NVVM may retype a whole chain of float accumulators to b32 and put a mov on either side
// of every FMA (free after ptxas, but counted by vgpu and its model).
SAMRT_DEVICE float shfl_xor_f32(float v, int lane_mask) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=f"(r) : "f"(v), "r"(lane_mask));
    return r;
}

// The same with the lane mask an immediate (a register mask costs a mov, counted by vgpu).
template <int LANE_MASK>
SAMRT_DEVICE float shfl_xor_f32(float v) {
    float r;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;\n"
                 : "=f"(r)
                 : "f"(v), "n"(LANE_MASK));
    return r;
}

SAMRT_DEVICE float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as nn.GELU() with approximate="none".
SAMRT_DEVICE float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

}  // namespace samrt
