// The cp.async-fed Hopper (sm_90a) build of the nn.Linear GEMMs of gemm.cu: entry points
// gemm_{bias,bias_gelu,bias_residual}_f16_{128x256,128x192,64x128}_cp with gemm.cu's
// parameters, epilogues, scales and bounds (gemm.cu's top comment), the tensor work on
// wgmma.mma_async instead of mma.sync. The runtime loads it on compute capability 9.0 only
// (SAMRT_CUDA_ARCH=sm_80 keeps the portable kernels); there the TMA-fed, warp-specialised
// gemm_ws_sm90a.cu replaces gemm.cu's entries, and the launcher runs these (same bits) only
// where a tensor map cannot describe the operands. conv3x3_f16_* stays portable.
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
#include "wgmma.cuh"

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

    // Stage 0's descriptors: this warpgroup's 64 rows of A, all BN rows of W (wgmma_stage
    // adds the stage's offset).
    const uint64_t da0[1] = {desc128(smem + (warp >> 2) * 64 * BK * 2)};
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

        wgmma_stage(acc, da0, db0, stage * T::STAGE_BYTES);
        wgmma_wait<1>();
        acc_fence(acc);
        stage = stage == STAGES - 1 ? 0 : stage + 1;
        pf_stage = pf_stage == STAGES - 1 ? 0 : pf_stage + 1;
    }
    wgmma_wait<0>();
    acc_fence(acc);
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
#define SAMRT_WGMMA_ENTRY(T, NAME, EPI, OUT)                                           \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                       \
        NAME(const __half* __restrict__ a, const __half* __restrict__ w,              \
             SAMRT_GEMM_EPI_PARAMS(OUT)) {                                            \
        gemm_wgmma<T, EPI>(a, w, bias, row_scale, in_scale, out_scale, out, M, N, K); \
    }
SAMRT_GEMM_ENTRIES(SAMRT_WGMMA_ENTRY, _cp)
