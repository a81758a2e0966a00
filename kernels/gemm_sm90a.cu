// The Hopper (sm_90a) build of the nn.Linear GEMMs of gemm.cu: the same entry points
// (gemm_{bias,bias_gelu,bias_residual}_f16_{128x256,128x192,64x128}), parameters, epilogues,
// scales and bounds (gemm.cu's top comment), with the tensor work on wgmma.mma_async instead
// of mma.sync. The runtime loads this module after the portable ones on compute capability
// 9.0 only, so these definitions replace gemm.cu's there (SAMRT_CUDA_ARCH=sm_80 keeps the
// portable ones); conv3x3_f16_* stays portable.
//
// Why wgmma: mma.sync reaches about 63 % of H100's tensor peak (docs/kernels.md); wgmma is
// the instruction that reaches the rest, and it reads both operands straight from shared
// memory, so the ldmatrix traffic and the fragment registers of the portable loop are gone.
//
// Warpgroups: the block is WG warpgroups of 4 warps; warpgroup g computes rows 64 g .. 64 g +
// 63 of the block tile over all BN columns with one m64nBNk16 wgmma per k16 step (4 per BK =
// 64 stage), BN / 2 fp32 accumulators per thread:
//   _128x256: 2 warpgroups (256 threads), m64n256, 128 accumulators;
//   _128x192: 2 warpgroups (256 threads: 6 warps are not whole warpgroups), m64n192, 96;
//   _64x128:  1 warpgroup (128 threads), m64n128, 64.
// The launcher takes these thread counts and the shared size below from
// GemmTile::geometry (src/graph/gemm_tile.rs), its one Hopper/portable switch.
//
// Shared memory: gemm.cu's stage layout unchanged ([BM][64] of A, then [BN][64] of W, each
// row 128 B with 16 B chunk c at c ^ (row & 7)) is exactly wgmma's K-major 128-byte swizzle:
// 8-row atoms of 1024 B (the stride-byte offset), every stage and operand 1024 B aligned.
// The k16 steps inside a stage advance the descriptors' start address by 32 B, the swizzle
// being a function of the address bits. The same cp.async loaders fill it (zero-filling rows
// past M or N and k past K), so the bounds handling is gemm.cu's.
//
// Pipeline: STAGES = 4 stages, PREFETCH = 2 tiles loading ahead, and one wgmma group in
// flight: iteration kt waits for tile kt's cp.async group, fences it to the async proxy
// (cp.async writes through the generic proxy; wgmma reads through the async one, which sees
// them only after fence.proxy.async in the writing thread), takes the block barrier, issues
// tile kt + 2's loads into the stage of tile kt - 2, then tile kt's four wgmmas, and waits
// until only those are pending. The barrier is what frees the stage: every warpgroup had
// finished tile kt - 2's wgmmas (wait_group 1 in iteration kt - 1) before it. So the tensor
// cores run tile kt's wgmmas while the next iteration waits, fences and issues loads.
#include "gemm_tile.cuh"

namespace {

using namespace samrt::gemm;

constexpr int STAGES = 4;
constexpr int PREFETCH = STAGES - 2;

// WG warpgroups, each m64 x BN.
template <int WG_, int BN_>
struct WgTile {
    static constexpr int WG = WG_;
    static constexpr int THREADS = WG * 128;
    static constexpr int BM = WG * 64;
    static constexpr int BN = BN_;
    static constexpr int NI = BN / 8;  // n8 blocks of the accumulator layout
    static constexpr int A_BYTES = BM * BK * 2;
    static constexpr int STAGE_BYTES = (BM + BN) * BK * 2;
    static constexpr int ROW_STEP = THREADS / CHUNKS;
    static_assert(A_BYTES % 1024 == 0 && STAGE_BYTES % 1024 == 0,
                  "128-byte swizzle atoms must start 1024 B aligned");
};

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
template <int NI>
SAMRT_DEVICE void acc_fence(float (&d)[NI][4]) {
#pragma unroll
    for (int j = 0; j < NI; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
}

SAMRT_DEVICE void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
SAMRT_DEVICE void wgmma_commit() {
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
SAMRT_DEVICE void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

template <class T, int EPI>
SAMRT_DEVICE void gemm_wgmma(const __half* __restrict__ a, const __half* __restrict__ w,
                             const float* __restrict__ bias,
                             const float* __restrict__ row_scale, float in_scale,
                             float out_scale, void* __restrict__ out, int M, int N, int K) {
    constexpr int NI = T::NI;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t smem = samrt::smem_addr(smem_raw);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int m0 = blockIdx.y * T::BM;
    const int n0 = blockIdx.x * T::BN;
    const int ktiles = (K + BK - 1) / BK;

    const bool plain = plain_scales(row_scale, in_scale, out_scale);
    float acc[1][NI][4];
    init_acc(acc, lane, n0, plain, bias, N);

    DenseRows<T, T::BM> al{a, M, K, nullptr, 0, false};
    DenseRows<T, T::BN> wl{w, N, K, nullptr, 0, false};
    al.init(m0);
    wl.init(n0);
    // Prologue: PREFETCH tiles in flight; a group is committed even when empty so that
    // "group i holds tile i" holds and the wait count below is a constant.
#pragma unroll
    for (int s = 0; s < PREFETCH; ++s) {
        if (s < ktiles) {
            al.load(smem + s * T::STAGE_BYTES, s * BK);
            wl.load(smem + s * T::STAGE_BYTES + T::A_BYTES, s * BK);
        }
        samrt::cp_async_commit();
    }

    // Stage 0's descriptors: this warpgroup's 64 rows of A, all BN rows of W. A stage or a
    // k16 step is an offset of the start address (bits 0-13, in 16 B units), which stays
    // below 2^14 (shared addresses are below 256 KiB), so adding it never carries.
    const uint64_t da0 = desc128(smem + (warp >> 2) * 64 * BK * 2);
    const uint64_t db0 = desc128(smem + T::A_BYTES);

    int stage = 0;
    int pf_stage = PREFETCH;
    for (int kt = 0; kt < ktiles; ++kt) {
        samrt::cp_async_wait<PREFETCH - 1>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        const int pf = kt + PREFETCH;
        if (pf < ktiles) {
            const uint32_t ps = smem + pf_stage * T::STAGE_BYTES;
            al.load(ps, pf * BK);
            wl.load(ps + T::A_BYTES, pf * BK);
        }
        samrt::cp_async_commit();

        const uint64_t off = static_cast<uint64_t>(stage * T::STAGE_BYTES) >> 4;
        acc_fence(acc[0]);
        wgmma_fence();
        samrt::static_for<0, BK / 16>([&](auto kk) {
            constexpr uint64_t step = decltype(kk)::value * 32 / 16;
            wgmma_k16(acc[0], da0 + off + step, db0 + off + step);
        });
        wgmma_commit();
        wgmma_wait<1>();
        acc_fence(acc[0]);
        stage = stage == STAGES - 1 ? 0 : stage + 1;
        pf_stage = pf_stage == STAGES - 1 ? 0 : pf_stage + 1;
    }
    wgmma_wait<0>();
    acc_fence(acc[0]);
    // Drain the (empty) trailing groups so no cp.async is outstanding at exit.
    samrt::cp_async_wait<0>();

    // Warp w of warpgroup g holds rows 64 g + 16 (w % 4) .. + 15 = 16 warp ..: one m16 block.
    store_acc<EPI>(acc, lane, m0 + warp * 16, n0, m0 + T::BM <= M && n0 + T::BN <= N, plain,
                   bias, row_scale, in_scale, out_scale, out, M, N);
}

using Tile128x256 = WgTile<2, 256>;
using Tile128x192 = WgTile<2, 192>;
using Tile64x128 = WgTile<1, 128>;

}  // namespace

// gemm.cu's signatures: (a, w, bias, row_scale, in_scale, out_scale, out, M, N, K). One block
// per SM (up to 128 accumulators per thread), as there.
#define SAMRT_WGMMA_ENTRY(T, NAME, EPI, OUT)                                                 \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                             \
        NAME(const __half* __restrict__ a, const __half* __restrict__ w,                    \
             const float* __restrict__ bias, const float* __restrict__ row_scale,           \
             float in_scale, float out_scale, OUT* __restrict__ out, int M, int N, int K) { \
        gemm_wgmma<T, EPI>(a, w, bias, row_scale, in_scale, out_scale, out, M, N, K);       \
    }
#define SAMRT_WGMMA_ENTRIES(T, SUFFIX)                                                 \
    SAMRT_WGMMA_ENTRY(T, gemm_bias_f16_##SUFFIX, EPI_BIAS, __half)                     \
    SAMRT_WGMMA_ENTRY(T, gemm_bias_gelu_f16_##SUFFIX, EPI_BIAS_GELU, __half)           \
    SAMRT_WGMMA_ENTRY(T, gemm_bias_residual_f16_##SUFFIX, EPI_BIAS_RESIDUAL, float)

SAMRT_WGMMA_ENTRIES(Tile128x256, 128x256)
SAMRT_WGMMA_ENTRIES(Tile128x192, 128x192)
SAMRT_WGMMA_ENTRIES(Tile64x128, 64x128)
