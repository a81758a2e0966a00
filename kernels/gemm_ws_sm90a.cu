// The warp-specialised, persistent Hopper build of the nn.Linear GEMMs: on compute
// capability 9.0 these gemm_{bias,bias_gelu,bias_residual}_f16_{128x256,128x192,64x128}
// replace gemm.cu's entries of the same names (as gemm_sm90a.cu's did before; the runtime
// loads sm_90a modules last), with gemm.cu's epilogues, scales and results. gemm_sm90a.cu's
// cp.async build, bit-identical, stays as the fallback (its entries suffixed _cp) where a
// tensor map cannot describe the operands; GemmBuild::select (src/graph/gemm_tile.rs)
// decides. Parameters: two tensor maps (A [M][K] and W [N][K], fp16,
// 128-byte swizzle, boxes of [64 k][BM rows] and [64 k][BN rows], encoded by the host per
// launch) in place of the a and w pointers, then gemm.cu's (bias, row_scale, in_scale,
// out_scale, out, M, N, K).
//
// Why: in gemm_sm90a.cu every thread issues cp.async copies, fences them to the async proxy
// and meets the others at a block barrier once per 64-wide k stage; that costs issue slots
// and shared-memory wavefronts the tensor cores wait on, and every block pays its pipeline
// ramp and epilogue with the tensor cores idle. Here one thread moves each stage with two
// TMA copies (no per-thread address arithmetic, bounds handling in the copy engine), the
// warps that issue wgmma never meet a block barrier, and a block that keeps its SM for
// several tiles loads the next tile's first stages while it stores the last one's outputs.
//
// Block: warpgroup 0 is the producer (only its thread 0 works; setmaxnreg.dec hands its
// registers to the consumers), warpgroups 1..WG the consumers, laid out as gemm_sm90a.cu's
// warpgroups (consumer warpgroup c computes rows 64 c .. 64 c + 63 of the tile over all BN
// columns, one m64nBNk16 wgmma per k16 step):
//   _128x256: 2 consumer warpgroups (384 threads), 128 accumulators per thread;
//   _128x192: 2 consumer warpgroups (384 threads), 96;
//   _64x128:  1 consumer warpgroup (256 threads), 64 (255 registers are available to
//                every thread at 256 threads, so no setmaxnreg there).
// The M pair, _128x192_m2 (GemmBuild::Sm90aWsPair): a block step covers two vertically
// adjacent 128x192 tiles, consumer warpgroup c computing all 128 rows of tile c (two m64
// blocks, two wgmmas per k16 step on the same W descriptor, 192 accumulators per thread).
// The A box is 256 rows and the W box is loaded once for both tiles: W's re-reads from
// global memory halve, which is what a GEMM whose operands overflow the L2 is bound by
// (vit_h's MLP lin2; GemmTile::pair_wins decides). Each accumulator still takes its k16
// steps in k order, so the bits are those of the single-tile steps.
//
// Shared memory: STAGES stages laid out exactly as gemm_sm90a.cu's ([BM][64] of A, then
// [BN][64] of W, each row 128 B with 16 B chunk c at c ^ (row & 7)): the TMA copy's
// 128-byte swizzle writes that layout from a 1024 B aligned destination, and it is wgmma's
// K-major 128-byte swizzle. Then full[STAGES] and empty[STAGES], 8-byte mbarriers.
//
// Pipeline: a ring of STAGES stages that both sides walk in the same order (stage s, phase
// bit flipping at each wrap) over every k stage of every tile of the block.
// - The producer waits for empty[s] (a fresh barrier's previous phase counts as complete,
//   so the first lap does not wait), announces the stage's bytes on full[s] (expect_tx) and
//   issues the A and W boxes at (k0, m0) and (k0, n0), which complete on full[s]. Rows past
//   M or N and k past K are zero-filled by the copy, so the tails need no code, and the box
//   always carries its full byte count.
// - A consumer warpgroup waits for full[s], issues the stage's four wgmmas as one group,
//   then waits until only that group is pending: the previous stage's wgmmas have finished
//   reading, and each of its warps arrives on that stage's empty barrier (count: the
//   consumer warps). After the last stage of a tile it drains, frees the stage and runs the
//   epilogue (gemm_tile.cuh's store_acc) from registers while the producer is already
//   filling the freed stages with the next tile.
// TMA writes and wgmma reads are both async-proxy accesses ordered by the mbarriers, so
// no proxy fence is needed (unlike cp.async, a generic-proxy write).
//
// Persistence: the host launches min(tiles, SMs)-ish blocks (GemmTile::persistent_blocks:
// every block gets tiles_per_block = ceil(tiles / SMs) tiles, or one fewer) of one block
// per SM; block b takes tiles b, b + grid, b + 2 grid, ..., tile t being (M tile t / tiles_n,
// N tile t % tiles_n): the order in which the non-persistent grid's blocks start. Each tile's
// accumulators start from zero and sum its k16 steps in k order, exactly as gemm_sm90a.cu,
// so neither the schedule nor the batch size changes any output bit. (In the code below a
// tile is a block step of T::BM rows: the 256-row pair for _m2.)
#include <cuda.h>

#include "wgmma.cuh"

namespace {

using namespace samrt::gemm;

constexpr int STAGES = 4;
// Register counts after setmaxnreg for the 384-thread blocks: ptxas gives the kernel
// 65536 / 384 = 168 per thread; the producer warpgroup gives back 128 of its 168 and the
// two consumer warpgroups take 64 each (128 x 40 + 256 x 232 = 384 x 168).
constexpr int PRODUCER_REGS = 40;
constexpr int CONSUMER_REGS = 232;

// WG consumer warpgroups, each MB x m64 rows by BN, and one producer warpgroup.
template <int WG_, int BN_, int MB_ = 1>
struct WsTile {
    static constexpr int WG = WG_;
    static constexpr int MB = MB_;
    static constexpr int THREADS = (WG + 1) * 128;
    static constexpr int BM = WG * MB * 64;
    static constexpr int BN = BN_;
    static constexpr int NI = BN / 8;  // n8 blocks of the accumulator layout
    static constexpr int A_BYTES = BM * BK * 2;
    static constexpr int STAGE_BYTES = (BM + BN) * BK * 2;
    static constexpr int BARRIERS = STAGES * STAGE_BYTES;  // offset of full[0]
    static_assert(A_BYTES % 1024 == 0 && STAGE_BYTES % 1024 == 0,
                  "128-byte swizzle atoms must start 1024 B aligned");
    static_assert(BM <= 256 && BN <= 256, "a TMA box has at most 256 rows");
    static_assert(BARRIERS + 2 * STAGES * 8 <= 227 * 1024, "H100's shared memory per block");
};

SAMRT_DEVICE void mbar_init(uint32_t bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}

// Blocks until the phase of parity `parity` of the barrier has completed (try_wait in a
// loop: each try may suspend the thread for a while).
SAMRT_DEVICE void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred p;\nWAIT_%=:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
        "@!p bra WAIT_%=;\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}

SAMRT_DEVICE void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

// This thread's arrival plus `bytes` of transactions that the stage's copies will complete.
SAMRT_DEVICE void mbar_arrive_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar),
                 "r"(bytes)
                 : "memory");
}

// The box of `map` at (k, row) into shared `dst`, completing its bytes on `bar`.
SAMRT_DEVICE void tma_load_2d(uint32_t dst, const CUtensorMap* map, int k, int row,
                              uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(dst),
        "l"(map), "r"(k), "r"(row), "r"(bar)
        : "memory");
}

// A position in the stage ring: the stage and the parity of its current phase.
struct Ring {
    int stage = 0;
    uint32_t phase = 0;
    SAMRT_DEVICE void next() {
        if (++stage == STAGES) {
            stage = 0;
            phase ^= 1;
        }
    }
};

template <class T, int EPI>
SAMRT_DEVICE void gemm_ws(const CUtensorMap* ma, const CUtensorMap* mw,
                          const float* __restrict__ bias, const float* __restrict__ row_scale,
                          float in_scale, float out_scale, void* __restrict__ out, int M, int N,
                          int K) {
    constexpr int NI = T::NI;
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const uint32_t smem = samrt::smem_addr(smem_raw);
    const uint32_t full0 = smem + T::BARRIERS;
    const uint32_t empty0 = full0 + STAGES * 8;
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; ++s) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, T::WG * 4);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    // The only block barrier: the mbarriers are initialised before anyone uses them.
    __syncthreads();

    const int tiles_n = (N + T::BN - 1) / T::BN;
    const int tiles = tiles_n * ((M + T::BM - 1) / T::BM);
    const int ktiles = (K + BK - 1) / BK;

    if (threadIdx.x < 128) {
        if constexpr (T::WG > 1) {
            asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(PRODUCER_REGS));
        }
        if (threadIdx.x != 0) return;
        Ring r;
        for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
            const int m0 = tile / tiles_n * T::BM;
            const int n0 = tile % tiles_n * T::BN;
            for (int kt = 0; kt < ktiles; ++kt) {
                const uint32_t full = full0 + 8 * r.stage;
                const uint32_t dst = smem + r.stage * T::STAGE_BYTES;
                mbar_wait(empty0 + 8 * r.stage, r.phase ^ 1);
                mbar_arrive_tx(full, T::STAGE_BYTES);
                tma_load_2d(dst, ma, kt * BK, m0, full);
                tma_load_2d(dst + T::A_BYTES, mw, kt * BK, n0, full);
                r.next();
            }
        }
        return;
    }

    if constexpr (T::WG > 1) {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(CONSUMER_REGS));
    }
    const int lane = threadIdx.x & 31;
    const int cw = (threadIdx.x >> 5) - 4;  // consumer warp
    // Consumer warpgroup cw / 4 owns rows 64 (MB (cw / 4) + mb) .. + 63 for each m64 block
    // mb, and warp cw % 4 rows 16 (cw % 4) .. + 15 of each. Stage 0's descriptors: those
    // blocks of A, all BN rows of W.
    uint64_t da0[T::MB];
#pragma unroll
    for (int mb = 0; mb < T::MB; ++mb) {
        da0[mb] = desc128(smem + ((cw >> 2) * T::MB + mb) * 64 * BK * 2);
    }
    const uint64_t db0 = desc128(smem + T::A_BYTES);
    const bool plain = plain_scales(row_scale, in_scale, out_scale);
    Ring r;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int m0 = tile / tiles_n * T::BM;
        const int n0 = tile % tiles_n * T::BN;
        float acc[T::MB][NI][4];
        init_acc(acc, lane, n0, plain, bias, N);
        int held = -1;  // the stage whose wgmmas may still be reading it
        for (int kt = 0; kt < ktiles; ++kt) {
            mbar_wait(full0 + 8 * r.stage, r.phase);
            wgmma_stage(acc, da0, db0, r.stage * T::STAGE_BYTES);
            wgmma_wait<1>();
            acc_fence(acc);
            if (held >= 0 && lane == 0) mbar_arrive(empty0 + 8 * held);
            held = r.stage;
            r.next();
        }
        wgmma_wait<0>();
        acc_fence(acc);
        if (lane == 0) mbar_arrive(empty0 + 8 * held);
        const bool inside = m0 + T::BM <= M && n0 + T::BN <= N;
#pragma unroll
        for (int mb = 0; mb < T::MB; ++mb) {
            const int wrow = m0 + ((cw >> 2) * T::MB + mb) * 64 + (cw & 3) * 16;
            store_acc<EPI>(reinterpret_cast<const float(&)[1][NI][4]>(acc[mb]), lane, wrow, n0,
                           inside, plain, bias, row_scale, in_scale, out_scale, out, M, N);
        }
    }
}

using Tile128x256 = WsTile<2, 256>;
using Tile128x192 = WsTile<2, 192>;
using Tile64x128 = WsTile<1, 128>;
// 128x192's M pair: each consumer warpgroup computes a whole 128x192 tile (192 accumulators
// per thread), the two sharing every stage's W box.
using Tile128x192M2 = WsTile<2, 192, 2>;

}  // namespace

// One block per SM (persistent; up to 128 accumulators per consumer thread).
#define SAMRT_WS_ENTRY(T, NAME, EPI, OUT)                                                    \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                             \
        NAME(const __grid_constant__ CUtensorMap ma, const __grid_constant__ CUtensorMap mw,  \
             SAMRT_GEMM_EPI_PARAMS(OUT)) {                                                  \
        gemm_ws<T, EPI>(&ma, &mw, bias, row_scale, in_scale, out_scale, out, M, N, K);      \
    }
SAMRT_GEMM_ENTRIES(SAMRT_WS_ENTRY, )
SAMRT_GEMM_TILE_ENTRIES(SAMRT_WS_ENTRY, Tile128x192M2, 128x192, _m2)
