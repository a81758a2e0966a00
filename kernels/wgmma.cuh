// wgmma helpers shared by the Hopper GEMMs (gemm_sm90a.cu, cp.async-fed, and
// gemm_ws_sm90a.cu, TMA-fed and warp-specialised): the K-major 128-byte-swizzle operand
// descriptor, one m64nNk16 wgmma per k16 step for N = 128, 192 or 256, and the fence,
// commit and wait around them. Only sm_90a modules include this (wgmma is sm_90a-only).
#pragma once

#include "gemm_tile.cuh"

namespace samrt::gemm {

// Descriptor of a K-major operand in 128-byte swizzle atoms at shared address `addr`: start
// >> 4 in bits 0-13, the leading offset (unused for K-major swizzled operands) 1, the stride
// between 8-row atoms 1024 >> 4 at bit 32, swizzle mode 1 (128 B) at bit 62.
SAMRT_DEVICE uint64_t desc128(uint32_t addr) {
    return static_cast<uint64_t>((addr >> 4) & 0x3fff) | (1ull << 16) | (64ull << 32) |
           (1ull << 62);
}

// The accumulator operands, n8 block j's four registers in the C-fragment order.
#define SAMRT_ACC4(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define SAMRT_ACC32(j)                                                                    \
    SAMRT_ACC4(j), SAMRT_ACC4(j + 1), SAMRT_ACC4(j + 2), SAMRT_ACC4(j + 3),              \
        SAMRT_ACC4(j + 4), SAMRT_ACC4(j + 5), SAMRT_ACC4(j + 6), SAMRT_ACC4(j + 7)
#define SAMRT_R0 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
#define SAMRT_R1 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
#define SAMRT_R2 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
#define SAMRT_R3 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define SAMRT_R4 "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
#define SAMRT_R5 "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define SAMRT_R6                                                                            \
    "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, " \
    "%111, "
#define SAMRT_R7                                                                             \
    "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, " \
    "%126, %127"
// d (m64 x N, fp32) += A (m64 x k16) * B (k16 x N), both K-major fp16 through descriptors;
// scale-d is 1 (accumulate), the A and B scales 1, neither transposed. DA, DB, SD: the
// operand numbers after the N / 2 accumulators.
#define SAMRT_WGMMA(N, REGS, DA, DB, SD, ...)                                                 \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " SD ", 0;\n"                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32.f16.f16 {" REGS "}, " DA ", " \
                 DB ", p, 1, 1, 0, 0;\n}\n"                                                   \
                 : __VA_ARGS__                                                                \
                 : "l"(da), "l"(db), "r"(1))

template <int NI>
SAMRT_DEVICE void wgmma_k16(float (&d)[NI][4], uint64_t da, uint64_t db) {
    if constexpr (NI == 16) {
        SAMRT_WGMMA(128, SAMRT_R0 SAMRT_R1 ", " SAMRT_R2 SAMRT_R3, "%64", "%65", "%66",
                    SAMRT_ACC32(0), SAMRT_ACC32(8));
    } else if constexpr (NI == 24) {
        SAMRT_WGMMA(192, SAMRT_R0 SAMRT_R1 ", " SAMRT_R2 SAMRT_R3 ", " SAMRT_R4 SAMRT_R5, "%96",
                    "%97", "%98", SAMRT_ACC32(0), SAMRT_ACC32(8), SAMRT_ACC32(16));
    } else {
        static_assert(NI == 32, "m64n128, n192 or n256");
        SAMRT_WGMMA(256,
                    SAMRT_R0 SAMRT_R1 ", " SAMRT_R2 SAMRT_R3 ", " SAMRT_R4 SAMRT_R5
                                                          ", " SAMRT_R6 SAMRT_R7,
                    "%128", "%129", "%130", SAMRT_ACC32(0), SAMRT_ACC32(8), SAMRT_ACC32(16),
                    SAMRT_ACC32(24));
    }
}

// Pins the accumulators at this point of the program (no instruction): nvcc must not move
// their initialisation or any copy of them across the wgmma fence, issue or wait, where the
// tensor cores own them.
template <int MB, int NI>
SAMRT_DEVICE void acc_fence(float (&d)[MB][NI][4]) {
#pragma unroll
    for (int mb = 0; mb < MB; ++mb)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[mb][j][e])::"memory");
}

SAMRT_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
SAMRT_DEVICE void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
SAMRT_DEVICE void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// The four k16 steps of one BK = 64 stage into `acc`, MB m64 row blocks of it: the
// descriptors da0[mb] (this warpgroup's 64-row blocks of A) and db0 (the BN rows of W) of
// stage 0, advanced by the stage's byte offset `stage_bytes` and 32 B per k16 step. A stage
// or step offset is added to the start address (bits 0-13, in 16 B units), which stays
// below 2^14 (shared addresses are below 256 KiB), so the addition never carries into the
// other fields. Issues a fence first and commits the stage's MB x 4 wgmmas as one group;
// the caller waits for it. Each block's accumulators take their k16 steps in k order.
template <int MB, int NI>
SAMRT_DEVICE void wgmma_stage(float (&acc)[MB][NI][4], const uint64_t (&da0)[MB],
                              uint64_t db0, uint32_t stage_bytes) {
    const uint64_t off = static_cast<uint64_t>(stage_bytes) >> 4;
    acc_fence(acc);
    wgmma_fence();
    samrt::static_for<0, BK / 16>([&](auto kk) {
        constexpr uint64_t step = decltype(kk)::value * 32 / 16;
#pragma unroll
        for (int mb = 0; mb < MB; ++mb) wgmma_k16(acc[mb], da0[mb] + off + step, db0 + off + step);
    });
    wgmma_commit();
}

}  // namespace samrt::gemm

// The epilogue parameters every GEMM entry point ends with (gemm.cu's), OUT the output type.
#define SAMRT_GEMM_EPI_PARAMS(OUT)                                                       \
    const float *__restrict__ bias, const float *__restrict__ row_scale, float in_scale, \
        float out_scale, OUT *__restrict__ out, int M, int N, int K
// The nine entry points of a Hopper GEMM build: ENTRY(T, NAME, EPI, OUT) per epilogue for
// the tile types Tile128x256, Tile128x192 and Tile64x128, each name suffixed by TAIL.
#define SAMRT_GEMM_TILE_ENTRIES(ENTRY, T, SUFFIX, TAIL)                       \
    ENTRY(T, gemm_bias_f16_##SUFFIX##TAIL, EPI_BIAS, __half)                  \
    ENTRY(T, gemm_bias_gelu_f16_##SUFFIX##TAIL, EPI_BIAS_GELU, __half)        \
    ENTRY(T, gemm_bias_residual_f16_##SUFFIX##TAIL, EPI_BIAS_RESIDUAL, float)
#define SAMRT_GEMM_ENTRIES(ENTRY, TAIL)                           \
    SAMRT_GEMM_TILE_ENTRIES(ENTRY, Tile128x256, 128x256, TAIL)    \
    SAMRT_GEMM_TILE_ENTRIES(ENTRY, Tile128x192, 128x192, TAIL)    \
    SAMRT_GEMM_TILE_ENTRIES(ENTRY, Tile64x128, 64x128, TAIL)
