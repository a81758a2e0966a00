// Tensor-core GEMM for nn.Linear: C[M, N] = A[M, K] @ W[N, K]^T (+ epilogue), fp16 operands,
// fp32 accumulation, mma.sync.m16n8k16 (sm_80+, runs unchanged on sm_90). The same main loop
// also runs a 3x3 convolution as an implicit GEMM (conv3x3_f16, below).
//
// Tiling: 128x128 block tile, BK = 32, 8 warps as 2 (M) x 4 (N), 64x32 per warp
// (4 m16 x 4 n8 mma tiles, 64 fp32 accumulators per thread). Operands stream through a
// 4-stage cp.async ring in shared memory (16 KiB per stage); fragments come from ldmatrix.
// Both A and W are K-contiguous, which is exactly the row.col operand order of mma.sync, so
// no transposition is needed anywhere.
//
// Shared layout: each stage holds a [128][32] fp16 tile for A and one for W. A row is 64 B =
// four 16 B chunks; chunk c of row r is stored at chunk c ^ ((r >> 1) & 3). ldmatrix reads
// eight consecutive rows at one logical chunk; with the swizzle those eight 16 B pieces land
// in eight distinct 16 B bank groups of a 128 B line, so neither ldmatrix nor the cp.async
// writes conflict.
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
// The null test of row_scale happens once per thread before the store loop (8 row factors
// kept in registers), so the per-element cost is one FMA whether or not it is given.
// Epilogues (one instantiation each, so no runtime branch in the store loop):
//   gemm_bias_f16          out_f16 = f16(out_scale * y)
//   gemm_bias_gelu_f16     out_f16 = f16(out_scale * gelu_erf(y))
//   gemm_bias_residual_f16 resid_f32[m][n] += y   (in place; fp32 cannot overflow here, so
//                                                  out_scale is ignored; the launcher
//                                                  insists on out_scale == 1)
// out_scale lets a consumer receive y pre-divided (e.g. by 2^4) when |y| may exceed 65504.
//
// Implicit-GEMM 3x3 convolution (conv3x3_f16): nn.Conv2d(Cin, Cout, 3, padding=1), stride 1,
// on an NHWC fp16 input [B][H][W][Cin] to an NHWC fp16 output [B][H][W][Cout] (= [M][N] with
// M = B*H*W, N = Cout, K = 9*Cin). Row m is the output pixel (b, y, x) and column
// k = (ky*3 + kx)*Cin + c of A is in[b][y+ky-1][x+kx-1][c]: the A-tile loader gathers those
// 16 B pieces (Cin % 8 == 0, so a piece never straddles two taps) straight from the input,
// zero-filling (cp.async src-size 0) taps that fall outside the image; there is no im2col
// buffer. The weight must therefore be [Cout][ky][kx][Cin] (K-contiguous per output channel);
// the host permutes PyTorch's [Cout][Cin][3][3] once at upload (conv3x3_weight_layout in
// src/cuda/ops/gemm.rs). Scales, bias and out_scale behave exactly as in gemm_bias_f16.
#include "common.cuh"

namespace {

constexpr int BM = 128;
constexpr int BN = 128;
constexpr int BK = 32;
constexpr int STAGES = 4;
constexpr int THREADS = 256;
constexpr int TILE_HALVES = BM * BK;  // BM == BN, so A and W tiles have the same size
constexpr int STAGE_HALVES = 2 * TILE_HALVES;
// 16 B chunks per tile that each thread copies. Chunk slot i of thread t is row
// (t >> 2) + i * ROW_STEP, chunk t & 3 (the same slots in every stage).
constexpr int SLOTS = (BM * BK / 8) / THREADS;
constexpr int ROW_STEP = THREADS / (BK / 8);

enum Epilogue { EPI_BIAS = 0, EPI_BIAS_GELU = 1, EPI_BIAS_RESIDUAL = 2 };

// Offset in halves of (row, 16 B chunk) inside a swizzled [128][32] tile.
SAMRT_DEVICE int swz(int row, int chunk) { return row * BK + ((chunk ^ ((row >> 1) & 3)) << 3); }

// A loader of a dense row-major [M][K] matrix.
struct DenseA {
    const __half* a;
    int M, K;

    SAMRT_DEVICE void init(int) {}

    SAMRT_DEVICE void load(uint32_t sa, int m0, int k0) {
        const int chunk = threadIdx.x & 3;
        const int k = k0 + chunk * 8;
#pragma unroll
        for (int i = 0; i < SLOTS; ++i) {
            const int row = (threadIdx.x >> 2) + i * ROW_STEP;
            const bool v = k < K && (m0 + row) < M;
            const __half* p = v ? a + static_cast<size_t>(m0 + row) * K + k : a;
            samrt::cp_async_16(sa + swz(row, chunk) * 2, p, v);
        }
    }
};

// A loader that gathers the implicit im2col matrix of a 3x3, pad 1, stride 1 convolution
// from an NHWC input. Stages must be loaded in k order (they are: 0, 1, 2, ...), because the
// thread's position (tap, c, off) is advanced by BK after every load instead of being
// re-derived with divisions. Per slot and stage this costs a bit test, an address FMA and the
// cp.async, like the dense loader.
struct Conv3x3A {
    const __half* x;
    int M, H, W, Cin;
    unsigned inside[SLOTS];  // bit t: tap t of the slot's output pixel is inside the image
                             // (0 past M, so that row loads nothing)
    int tap;                 // ky * 3 + kx of this thread's chunk in the next stage; >= 9 past K
    int c;                   // its channel within the tap
    int off;                 // its input offset from the output pixel's: ((ky-1)*W + kx-1)*Cin + c

    SAMRT_DEVICE void init(int m0) {
        const int hw = H * W;
#pragma unroll
        for (int i = 0; i < SLOTS; ++i) {
            const int m = m0 + (threadIdx.x >> 2) + i * ROW_STEP;
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
            inside[i] = m < M ? bits : 0u;
        }
        const int k = (threadIdx.x & 3) * 8;
        tap = k / Cin;
        c = k - tap * Cin;
        off = ((tap / 3 - 1) * W + (tap % 3 - 1)) * Cin + c;
    }

    SAMRT_DEVICE void load(uint32_t sa, int m0, int) {
        const int chunk = threadIdx.x & 3;
#pragma unroll
        for (int i = 0; i < SLOTS; ++i) {
            const int row = (threadIdx.x >> 2) + i * ROW_STEP;
            // tap < 9 + BK / Cin <= 13 here, and bits 9.. are clear, so taps past K read
            // nothing.
            const bool v = (inside[i] >> tap) & 1u;
            // Same image, so the neighbour pixel is (m + (ky-1)*W + kx-1) in the flat index;
            // when v holds, m*Cin + off is in [0, M*Cin), which the launcher bounds to i32.
            // Unsigned arithmetic keeps the discarded (v false) sums defined.
            const unsigned e = static_cast<unsigned>(m0 + row) * static_cast<unsigned>(Cin) +
                               static_cast<unsigned>(off);
            const __half* p = v ? x + e : x;
            samrt::cp_async_16(sa + swz(row, chunk) * 2, p, v);
        }
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

template <class ALoader>
SAMRT_DEVICE void load_stage(__half* stage, ALoader& al, const __half* __restrict__ w, int m0,
                             int n0, int k0, int N, int K) {
    al.load(samrt::smem_addr(stage), m0, k0);
    const uint32_t sw = samrt::smem_addr(stage + TILE_HALVES);
    const int chunk = threadIdx.x & 3;
    const int k = k0 + chunk * 8;
#pragma unroll
    for (int i = 0; i < SLOTS; ++i) {
        const int row = (threadIdx.x >> 2) + i * ROW_STEP;
        const bool v = k < K && (n0 + row) < N;
        const __half* p = v ? w + static_cast<size_t>(n0 + row) * K + k : w;
        samrt::cp_async_16(sw + swz(row, chunk) * 2, p, v);
    }
}

template <int EPI, class ALoader>
SAMRT_DEVICE void gemm_tile(ALoader al, const __half* __restrict__ w,
                            const float* __restrict__ bias, const float* __restrict__ row_scale,
                            float in_scale, float out_scale, void* __restrict__ out, int M,
                            int N, int K) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    __half* smem = reinterpret_cast<__half*>(smem_raw);

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int wm = warp >> 2;  // 0..1: 64-row half of the block tile
    const int wn = warp & 3;   // 0..3: 32-column quarter
    const int m0 = blockIdx.y * BM;
    const int n0 = blockIdx.x * BN;
    const int ktiles = (K + BK - 1) / BK;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    al.init(m0);
    // Prologue: STAGES - 1 tiles in flight. A group is committed even when empty so that
    // "group i holds tile i" stays true and the wait count below is a constant.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(smem + s * STAGE_HALVES, al, w, m0, n0, s * BK, N, K);
        samrt::cp_async_commit();
    }

    for (int kt = 0; kt < ktiles; ++kt) {
        // Tile kt has landed for this thread; the barrier makes it visible to all and also
        // guarantees every warp has finished reading stage (kt - 1) % STAGES, which the
        // prefetch below overwrites.
        samrt::cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int pf = kt + STAGES - 1;
        if (pf < ktiles)
            load_stage(smem + (pf % STAGES) * STAGE_HALVES, al, w, m0, n0, pf * BK, N, K);
        samrt::cp_async_commit();

        const __half* sa = smem + (kt % STAGES) * STAGE_HALVES;
        const __half* sw = sa + TILE_HALVES;
        const uint32_t sa_addr = samrt::smem_addr(sa);
        const uint32_t sw_addr = samrt::smem_addr(sw);
#pragma unroll
        for (int kk = 0; kk < BK / 16; ++kk) {
            uint32_t af[4][4];
#pragma unroll
            for (int mi = 0; mi < 4; ++mi) {
                // Matrices 0..3 = (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15),
                // (rows 8-15, k 8-15): exactly a0..a3.
                const int row = wm * 64 + mi * 16 + (lane & 15);
                const int chunk = kk * 2 + (lane >> 4);
                samrt::ldmatrix_x4(af[mi][0], af[mi][1], af[mi][2], af[mi][3],
                                   sa_addr + swz(row, chunk) * 2);
            }
            uint32_t bf[4][2];
#pragma unroll
            for (int nj = 0; nj < 2; ++nj) {
                // Matrices = (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15):
                // b0, b1 of n-tile 2nj, then b0, b1 of n-tile 2nj + 1.
                const int row = wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3);
                const int chunk = kk * 2 + ((lane >> 3) & 1);
                samrt::ldmatrix_x4(bf[2 * nj][0], bf[2 * nj][1], bf[2 * nj + 1][0],
                                   bf[2 * nj + 1][1], sw_addr + swz(row, chunk) * 2);
            }
#pragma unroll
            for (int mi = 0; mi < 4; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
                    samrt::mma_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
        }
    }
    // Drain the (empty) trailing groups so no cp.async is outstanding at exit.
    samrt::cp_async_wait<0>();

    const int g = lane >> 2;
    const int t = lane & 3;
    // in_scale * row_scale[row] for the 8 rows this thread stores: one uniform branch here,
    // a plain FMA per element below.
    float rs[4][2];
    if (row_scale != nullptr) {
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * 64 + mi * 16 + g + h * 8;
                rs[mi][h] = row < M ? in_scale * row_scale[row] : 0.0f;
            }
    } else {
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) rs[mi][h] = in_scale;
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
        const int col = n0 + wn * 32 + ni * 8 + 2 * t;
        if (col >= N) continue;  // N is even, so col < N implies col + 1 < N
        const float2 b = bias != nullptr ? *reinterpret_cast<const float2*>(bias + col)
                                         : make_float2(0.0f, 0.0f);
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * 64 + mi * 16 + g + h * 8;
                if (row >= M) continue;
                float v0 = fmaf(acc[mi][ni][2 * h], rs[mi][h], b.x);
                float v1 = fmaf(acc[mi][ni][2 * h + 1], rs[mi][h], b.y);
                const size_t off = static_cast<size_t>(row) * N + col;
                if constexpr (EPI == EPI_BIAS_RESIDUAL) {
                    float2* p = reinterpret_cast<float2*>(static_cast<float*>(out) + off);
                    float2 r = *p;
                    r.x += v0;
                    r.y += v1;
                    *p = r;
                } else {
                    if constexpr (EPI == EPI_BIAS_GELU) {
                        v0 = samrt::gelu_erf(v0);
                        v1 = samrt::gelu_erf(v1);
                    }
                    *reinterpret_cast<uint32_t*>(static_cast<__half*>(out) + off) =
                        samrt::pack_half2(v0 * out_scale, v1 * out_scale);
                }
            }
        }
    }
}

}  // namespace

// Two blocks per SM: 64 KiB shared memory and <= 128 registers per thread each.
#define SAMRT_GEMM_BOUNDS __launch_bounds__(THREADS, 2)

// (bias, row_scale, in_scale, out_scale), shared by every entry point; see the top comment.
#define SAMRT_GEMM_SCALES                                                               \
    const float *__restrict__ bias, const float *__restrict__ row_scale, float in_scale, \
        float out_scale

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_f16(const __half* __restrict__ a,
                                                           const __half* __restrict__ w,
                                                           SAMRT_GEMM_SCALES,
                                                           __half* __restrict__ out, int M,
                                                           int N, int K) {
    gemm_tile<EPI_BIAS>(DenseA{a, M, K}, w, bias, row_scale, in_scale, out_scale, out, M, N, K);
}

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_gelu_f16(const __half* __restrict__ a,
                                                                const __half* __restrict__ w,
                                                                SAMRT_GEMM_SCALES,
                                                                __half* __restrict__ out, int M,
                                                                int N, int K) {
    gemm_tile<EPI_BIAS_GELU>(DenseA{a, M, K}, w, bias, row_scale, in_scale, out_scale, out, M,
                             N, K);
}

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_residual_f16(
    const __half* __restrict__ a, const __half* __restrict__ w, SAMRT_GEMM_SCALES,
    float* __restrict__ residual, int M, int N, int K) {
    gemm_tile<EPI_BIAS_RESIDUAL>(DenseA{a, M, K}, w, bias, row_scale, in_scale, out_scale,
                                 residual, M, N, K);
}

// in [batch][H][W][Cin], w [Cout][3][3][Cin], out [batch][H][W][Cout]; Cin % 8 == 0, Cout even.
extern "C" __global__ void SAMRT_GEMM_BOUNDS conv3x3_f16(const __half* __restrict__ in,
                                                         const __half* __restrict__ w,
                                                         SAMRT_GEMM_SCALES,
                                                         __half* __restrict__ out, int batch,
                                                         int H, int W, int Cin, int Cout) {
    const int M = batch * H * W;
    gemm_tile<EPI_BIAS>(Conv3x3A{in, M, H, W, Cin, {}, 0, 0, 0}, w, bias, row_scale, in_scale,
                        out_scale, out, M, Cout, 9 * Cin);
}
