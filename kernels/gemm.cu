// Tensor-core GEMM for nn.Linear: C[M, N] = A[M, K] @ W[N, K]^T (+ epilogue), fp16 operands,
// fp32 accumulation, mma.sync.m16n8k16 (any sm_80+). The same main loop
// also runs a 3x3 convolution as an implicit GEMM (conv3x3_f16_*, below). On compute
// capability 9.0 the gemm_* entries are replaced by their wgmma build (gemm_sm90a.cu); the
// tile loader, GELU and epilogue both use are in gemm_tile.cuh.
//
// Tiling (docs/kernels.md, "GEMM", says why): BK = 64, a 3-stage cp.async ring in shared
// memory, one barrier per stage (four k16 steps), fragments from ldmatrix. Three block
// tiles, each entry point suffixed with its tile; the host picks one per layer shape
// (GemmTile::select in src/graph/gemm_tile.rs) so that the grid fills the 132 SMs of an H100:
//   _128x256: 8 warps as 2 (M) x 4 (N), 64x64 per warp (4 m16 x 8 n8 mma tiles, 128 fp32
//             accumulators per thread), 144 KiB shared;
//   _128x192: 6 warps as 2 x 3, 64x64 per warp, 120 KiB shared;
//   _64x128:  8 warps as 2 x 4, 32x32 per warp, 72 KiB shared (narrow N, the neck: 8 warps
//             so that its 128 blocks issue at twice the rate of 4).
// A 64x64 warp tile reads 8 ldmatrix.x4 (32 wavefronts) per 32 mma, 1.0 per mma where a 64x32
// tile read 1.5 (6 per 16): a third less shared traffic per FLOP. Both A and W are K-contiguous, which is exactly the row.col
// operand order of mma.sync, so no transposition is needed anywhere. The tile does not
// change any output's summation order (every thread sums its k16 steps in k order), so all
// variants give bit-identical results.
//
// Shared layout: each stage holds a [BM][64] fp16 tile for A, then a [BN][64] one for W. A
// row is 128 B = eight 16 B chunks; chunk c of row r is stored at chunk c ^ (r & 7). ldmatrix
// reads eight consecutive rows at one logical chunk, and eight consecutive threads copy the
// eight chunks of one row: with the swizzle both land in eight distinct 16 B bank groups, so
// neither ldmatrix nor the cp.async writes conflict.
//
// Bounds: M and N arbitrary (rows outside are zero-filled on load and skipped on store);
// K must be a multiple of 8 (a 16 B chunk is entirely inside or outside K) and N even (the
// epilogue stores column pairs). Pointers must be 16 B aligned (A, W), the output 4 B
// (fp16) or 8 B (fp32) aligned, bias 8 B and row_scale 4 B. The launcher enforces all of this.
//
// Scales (fp16 overflow safety). Every kernel takes (bias, row_scale, in_scale, out_scale)
// and computes, in fp32,
//     y[m][n] = acc[m][n] * in_scale * (row_scale ? row_scale[m] : 1) + (bias ? bias[n] : 0)
// so that an A row stored divided by row_scale[m] (or a whole A stored divided by in_scale)
// to fit in fp16 is undone before the bias. bias == nullptr (nn.Conv2d(bias=False)) means 0.
// The null test of row_scale happens once per thread before the store loop (row factors
// kept in registers), so the per-element cost is one FMA whether or not it is given.
// Epilogues (one instantiation each, so no runtime branch in the store loop):
//   gemm_bias_f16_*          out_f16 = f16(out_scale * y)
//   gemm_bias_gelu_f16_*     out_f16 = f16(out_scale * gelu(y))  (erf to 1.5e-7, gelu_as)
//   gemm_bias_residual_f16_* resid_f32[m][n] += y   (in place; fp32 cannot overflow here,
//                                                    so out_scale is ignored; the launcher
//                                                    insists on out_scale == 1)
// out_scale lets a consumer receive y pre-divided (e.g. by 2^4) when |y| may exceed 65504.
//
// Implicit-GEMM 3x3 convolution (conv3x3_f16_*): nn.Conv2d(Cin, Cout, 3, padding=1), stride
// 1, on an NHWC fp16 input [B][H][W][Cin] to an NHWC fp16 output [B][H][W][Cout] (= [M][N]
// with M = B*H*W, N = Cout, K = 9*Cin). Row m is the output pixel (b, y, x) and column
// k = (ky*3 + kx)*Cin + c of A is in[b][y+ky-1][x+kx-1][c]: the A-tile loader gathers those
// 16 B pieces (Cin % 8 == 0, so a piece never straddles two taps) straight from the input,
// zero-filling (cp.async src-size 0) taps that fall outside the image; there is no im2col
// buffer. The weight must therefore be [Cout][ky][kx][Cin] (K-contiguous per output channel);
// the host permutes PyTorch's [Cout][Cin][3][3] once at upload (conv3x3_weight_layout in
// src/cpu/ops/gemm.rs). Scales, bias and out_scale behave exactly as in gemm_bias_f16_*.
#include "gemm_tile.cuh"

namespace {

using namespace samrt::gemm;

constexpr int STAGES = 3;

// Block tile: WM x WN warps, each MI m16 x NI n8 mma tiles (a (16 MI) x (8 NI) warp tile).
template <int WM_, int WN_, int MI_, int NI_>
struct Tile {
    static constexpr int WM = WM_, WN = WN_, MI = MI_, NI = NI_;
    static constexpr int THREADS = WM * WN * 32;
    static constexpr int BM = WM * MI * 16;
    static constexpr int BN = WN * NI * 8;
    static constexpr int A_BYTES = BM * BK * 2;
    static constexpr int STAGE_BYTES = (BM + BN) * BK * 2;
    // Rows one pass of the block's threads copies (8 threads per row, one 16 B chunk each).
    static constexpr int ROW_STEP = THREADS / CHUNKS;
    static constexpr int A_SLOTS = (BM + ROW_STEP - 1) / ROW_STEP;
    static constexpr int W_SLOTS = (BN + ROW_STEP - 1) / ROW_STEP;
    static_assert(NI % 2 == 0, "B fragments come in n16 pairs");
    static_assert(A_SLOTS <= 32 && W_SLOTS <= 32, "row masks are 32-bit");
};

// A loader that gathers the implicit im2col matrix of a 3x3, pad 1, stride 1 convolution
// from an NHWC input. Stages must be loaded in k order (they are: 0, 1, 2, ...), because the
// thread's position (tap, c, off) is advanced by BK after every load instead of being
// re-derived with divisions. Per slot and stage this costs a bit test, an address FMA and the
// cp.async, like the dense loader.
template <class T>
struct Conv3x3A {
    const __half* x;
    int M, H, W, Cin;
    unsigned inside[T::A_SLOTS];  // bit t: tap t of the slot's output pixel is inside the
                                  // image (0 past M or the tile, so that row loads nothing)
    int tap;                      // ky * 3 + kx of this thread's chunk in the next stage
    int c;                        // its channel within the tap
    int off;  // its input offset from the output pixel's: ((ky-1)*W + kx-1)*Cin + c
    int m0;

    SAMRT_DEVICE void init(int m0_) {
        m0 = m0_;
        const int hw = H * W;
#pragma unroll
        for (int i = 0; i < T::A_SLOTS; ++i) {
            const int row = threadIdx.x / CHUNKS + i * T::ROW_STEP;
            const int m = m0 + row;
            const int p = m % hw;
            const int y = p / W;
            const int xx = p - y * W;
            unsigned bits = 0;
#pragma unroll
            for (int ky = 0; ky < 3; ++ky)
#pragma unroll
                for (int kx = 0; kx < 3; ++kx) {
                    const unsigned iy = static_cast<unsigned>(y + ky - 1);
                    const unsigned ix = static_cast<unsigned>(xx + kx - 1);
                    if (iy < static_cast<unsigned>(H) && ix < static_cast<unsigned>(W))
                        bits |= 1u << (ky * 3 + kx);
                }
            inside[i] = (m < M && row < T::BM) ? bits : 0u;
        }
        const int k = (threadIdx.x % CHUNKS) * 8;
        tap = k / Cin;
        c = k - tap * Cin;
        off = ((tap / 3 - 1) * W + (tap % 3 - 1)) * Cin + c;
    }

    // Stage tile at dst0 + OFF (dst0: this thread's first slot, swz(r, chunk), in stage 0);
    // slot i is i * ROW_STEP rows further, which keeps the swizzle phase: an immediate.
    template <int OFF>
    SAMRT_DEVICE void load_at(uint32_t dst0, int) {
        samrt::static_for<0, T::A_SLOTS>([&](auto ii) {
            constexpr int i = decltype(ii)::value;
            const int row = threadIdx.x / CHUNKS + i * T::ROW_STEP;
            if (i == T::A_SLOTS - 1 && T::BM % T::ROW_STEP != 0 && row >= T::BM) return;
            // tap < 9 + BK / Cin <= 17 here, and bits 9.. are clear, so taps past K read
            // nothing.
            const bool v = (inside[i] >> tap) & 1u;
            // Same image, so the neighbour pixel is (m + (ky-1)*W + kx-1) in the flat index;
            // when v holds, m*Cin + off is in [0, M*Cin), which the launcher bounds to i32.
            // Unsigned arithmetic keeps the discarded (v false) sums defined.
            const unsigned e = static_cast<unsigned>(m0 + row) * static_cast<unsigned>(Cin) +
                               static_cast<unsigned>(off);
            const __half* p = v ? x + e : x;
            samrt::cp_async_16_to<OFF + i * T::ROW_STEP * BK * 2>(dst0, p, v);
        });
        // Next stage: k += BK. Moving to the next tap in the same kernel row leaves `off`
        // unchanged (the pixel to the right is the next Cin elements); moving down a kernel
        // row (tap 2 -> 3, 5 -> 6) skips the W - 3 pixels in between.
        c += BK;
        off += BK;
        while (c >= Cin) {
            c -= Cin;
            ++tap;
            if (tap == 3 || tap == 6) off += (W - 3) * Cin;
        }
    }
};

template <class T, int EPI, class ALoader>
SAMRT_DEVICE void gemm_tile(ALoader al, const __half* __restrict__ w,
                            const float* __restrict__ bias, const float* __restrict__ row_scale,
                            float in_scale, float out_scale, void* __restrict__ out, int M,
                            int N, int K) {
    constexpr int MI = T::MI, NI = T::NI;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    const uint32_t smem = samrt::smem_addr(smem_raw);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int wm = warp / T::WN;
    const int wn = warp % T::WN;
    const int m0 = blockIdx.y * T::BM;
    const int n0 = blockIdx.x * T::BN;
    const int ktiles = (K + BK - 1) / BK;

    // The accumulators are first written by tile 0's first k16 step, whose mma takes their
    // start values (acc_start, read there so that they hold no registers through the loop)
    // as its C operand: no separate initialisation (K > 0).
    const bool plain = plain_scales(row_scale, in_scale, out_scale);
    float acc[MI][NI][4];

    DenseRows<T, T::BN> wl{w, N, K, nullptr, 0, false};
    al.init(m0);
    wl.init(n0);
    // This thread's first copy slot in stage 0, per operand; a stage is an immediate offset.
    const uint32_t a_dst = smem + swz(threadIdx.x / CHUNKS, threadIdx.x % CHUNKS);
    const uint32_t w_dst = a_dst + T::A_BYTES;
    // Prologue: STAGES - 1 tiles in flight. A group is committed even when empty so that
    // "group i holds tile i" stays true and the wait count below is a constant.
    samrt::static_for<0, STAGES - 1>([&](auto s_) {
        constexpr int S = decltype(s_)::value;
        if (S < ktiles) {
            al.template load_at<S * T::STAGE_BYTES>(a_dst, S * BK);
            wl.template load_at<S * T::STAGE_BYTES>(w_dst, S * BK);
        }
        samrt::cp_async_commit();
    });

    // ldmatrix row addresses in stage 0, one per k16 step. A: matrices 0..3 = (rows 0-7,
    // k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3, so lane l
    // reads row l % 16 at chunk 2 kk + l / 16. W: matrices (n 0-7, k 0-7), (n 0-7, k 8-15),
    // (n 8-15, k 0-7), (n 8-15, k 8-15) = b0, b1 of an n8 tile, then of the next. Every warp
    // row base is a multiple of 8, so the swizzle term row & 7 is lane & 7: the per-kk chunk
    // offsets are fixed per lane, and the stage, per-mi and per-nj steps are immediates of
    // the ldmatrix.
    const uint32_t a_lane = smem + static_cast<uint32_t>((wm * MI * 16 + (lane & 15)) * (BK * 2));
    const uint32_t w_lane = smem + static_cast<uint32_t>(
        T::A_BYTES + (wn * NI * 8 + (lane & 7) + ((lane >> 4) << 3)) * (BK * 2));
    uint32_t a_kk[BK / 16], w_kk[BK / 16];
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {
        a_kk[kk] = a_lane + static_cast<uint32_t>(((kk * 2 + (lane >> 4)) ^ (lane & 7)) << 4);
        w_kk[kk] = w_lane + static_cast<uint32_t>(((kk * 2 + ((lane >> 3) & 1)) ^ (lane & 7)) << 4);
    }

    // Tile kt (in stage ST = kt % STAGES, a constant: the loop below is unrolled over the
    // stages, so no stage address is computed at run time).
    auto step = [&](auto st_, int kt) {
        constexpr int ST = decltype(st_)::value;
        constexpr int PF = (ST + STAGES - 1) % STAGES;  // the stage tile kt + STAGES - 1 takes
        // Tile kt has landed for this thread; the one barrier per stage makes it visible to
        // all and also guarantees every warp has finished reading stage PF (tile kt - 1),
        // which the prefetch below overwrites.
        samrt::cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int pf = kt + STAGES - 1;
        if (pf < ktiles) {
            al.template load_at<PF * T::STAGE_BYTES>(a_dst, pf * BK);
            wl.template load_at<PF * T::STAGE_BYTES>(w_dst, pf * BK);
        }
        samrt::cp_async_commit();

#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t af[MI][4];
            uint32_t bf[NI][2];
            samrt::static_for<0, MI>([&](auto mi) {
                constexpr int i = decltype(mi)::value;
                samrt::ldmatrix_x4_at<ST * T::STAGE_BYTES + i * 16 * BK * 2>(
                    af[i][0], af[i][1], af[i][2], af[i][3], a_kk[kk]);
            });
            samrt::static_for<0, NI / 2>([&](auto nj) {
                constexpr int j = decltype(nj)::value;
                samrt::ldmatrix_x4_at<ST * T::STAGE_BYTES + j * 16 * BK * 2>(
                    bf[2 * j][0], bf[2 * j][1], bf[2 * j + 1][0], bf[2 * j + 1][1], w_kk[kk]);
            });
            if (kk == 0 && kt == 0) {
                float2 start[NI];
                acc_start(start, lane, n0 + wn * NI * 8, plain, bias, N);
#pragma unroll
                for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                    for (int ni = 0; ni < NI; ++ni) {
                        const float c[4] = {start[ni].x, start[ni].y, start[ni].x, start[ni].y};
                        samrt::mma_16816_c(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1], c);
                    }
            } else {
#pragma unroll
                for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                    for (int ni = 0; ni < NI; ++ni)
                        samrt::mma_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
            }
        }
    };
    for (int kt = 0; kt < ktiles; kt += STAGES) {
        samrt::static_for<0, STAGES>([&](auto st) {
            if (kt + decltype(st)::value < ktiles) step(st, kt + decltype(st)::value);
        });
    }
    // Drain the (empty) trailing groups so no cp.async is outstanding at exit.
    samrt::cp_async_wait<0>();

    store_acc<EPI>(acc, lane, m0 + wm * MI * 16, n0 + wn * NI * 8,
                   m0 + T::BM <= M && n0 + T::BN <= N, plain, bias, row_scale, in_scale,
                   out_scale, out, M, N);
}

// The variants (src/graph/gemm_tile.rs `GemmTile` picks one per layer shape): 64x64 warp tiles
// where the grid allows, 32x32 for the narrow 64x128 tile.
using Tile128x256 = Tile<2, 4, 4, 8>;
using Tile128x192 = Tile<2, 3, 4, 8>;
using Tile64x128 = Tile<2, 4, 2, 4>;

}  // namespace

// (bias, row_scale, in_scale, out_scale), shared by every entry point; see the top comment.
#define SAMRT_GEMM_SCALES                                                               \
    const float *__restrict__ bias, const float *__restrict__ row_scale, float in_scale, \
        float out_scale

// One block per SM is what the register file allows with 64x64 warp tiles (128 fp32
// accumulators per thread), so no minimum-blocks hint that would cap registers.
#define SAMRT_GEMM_ENTRIES(T, SUFFIX)                                                         \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                               \
        gemm_bias_f16_##SUFFIX(const __half* __restrict__ a, const __half* __restrict__ w,    \
                               SAMRT_GEMM_SCALES, __half* __restrict__ out, int M, int N,     \
                               int K) {                                                       \
        gemm_tile<T, EPI_BIAS>(DenseRows<T, T::BM>{a, M, K, nullptr, 0, false}, w, bias, row_scale, in_scale, \
                               out_scale, out, M, N, K);                                      \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                               \
        gemm_bias_gelu_f16_##SUFFIX(const __half* __restrict__ a,                             \
                                    const __half* __restrict__ w, SAMRT_GEMM_SCALES,          \
                                    __half* __restrict__ out, int M, int N, int K) {          \
        gemm_tile<T, EPI_BIAS_GELU>(DenseRows<T, T::BM>{a, M, K, nullptr, 0, false}, w, bias, row_scale,      \
                                    in_scale, out_scale, out, M, N, K);                       \
    }                                                                                         \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                               \
        gemm_bias_residual_f16_##SUFFIX(const __half* __restrict__ a,                         \
                                        const __half* __restrict__ w, SAMRT_GEMM_SCALES,      \
                                        float* __restrict__ residual, int M, int N, int K) {  \
        gemm_tile<T, EPI_BIAS_RESIDUAL>(DenseRows<T, T::BM>{a, M, K, nullptr, 0, false}, w, bias, row_scale,  \
                                        in_scale, out_scale, residual, M, N, K);              \
    }                                                                                         \
    /* in [batch][H][W][Cin], w [Cout][3][3][Cin], out [batch][H][W][Cout]; Cin % 8 == 0, */ \
    /* Cout even. */                                                                          \
    extern "C" __global__ void __launch_bounds__(T::THREADS, 1)                               \
        conv3x3_f16_##SUFFIX(const __half* __restrict__ in, const __half* __restrict__ w,     \
                             SAMRT_GEMM_SCALES, __half* __restrict__ out, int batch, int H,   \
                             int W, int Cin, int Cout) {                                      \
        const int M = batch * H * W;                                                          \
        gemm_tile<T, EPI_BIAS>(Conv3x3A<T>{in, M, H, W, Cin, {}, 0, 0, 0, 0}, w, bias,       \
                               row_scale, in_scale, out_scale, out, M, Cout, 9 * Cin);        \
    }

SAMRT_GEMM_ENTRIES(Tile128x256, 128x256)
SAMRT_GEMM_ENTRIES(Tile128x192, 128x192)
SAMRT_GEMM_ENTRIES(Tile64x128, 64x128)
