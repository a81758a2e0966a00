// Tensor-core GEMM for nn.Linear: C[M, N] = A[M, K] @ W[N, K]^T (+ epilogue), fp16 operands,
// fp32 accumulation, mma.sync.m16n8k16 (sm_80+, runs unchanged on sm_90).
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
// epilogue stores column pairs). Pointers must be 16 B aligned (A, W), and the output 4 B
// (fp16) or 8 B (fp32) aligned. The launcher enforces all of this.
//
// Epilogues (one instantiation each, so no runtime branch in the store loop):
//   gemm_bias_f16          out_f16 = acc + bias
//   gemm_bias_gelu_f16     out_f16 = gelu_erf(acc + bias)
//   gemm_bias_residual_f16 resid_f32 += acc + bias      (in place on the fp32 residual)
#include "common.cuh"

namespace {

constexpr int BM = 128;
constexpr int BN = 128;
constexpr int BK = 32;
constexpr int STAGES = 4;
constexpr int THREADS = 256;
constexpr int TILE_HALVES = BM * BK;  // BM == BN, so A and W tiles have the same size
constexpr int STAGE_HALVES = 2 * TILE_HALVES;

enum Epilogue { EPI_BIAS = 0, EPI_BIAS_GELU = 1, EPI_BIAS_RESIDUAL = 2 };

// Offset in halves of (row, 16 B chunk) inside a swizzled [128][32] tile.
SAMRT_DEVICE int swz(int row, int chunk) { return row * BK + ((chunk ^ ((row >> 1) & 3)) << 3); }

SAMRT_DEVICE void load_stage(__half* stage, const __half* __restrict__ a,
                             const __half* __restrict__ w, int m0, int n0, int k0, int M,
                             int N, int K) {
    const uint32_t sa = samrt::smem_addr(stage);
    const uint32_t sw = samrt::smem_addr(stage + TILE_HALVES);
#pragma unroll
    for (int i = 0; i < (BM * BK / 8) / THREADS; ++i) {
        const int c = threadIdx.x + i * THREADS;
        const int row = c >> 2;
        const int chunk = c & 3;
        const int k = k0 + chunk * 8;
        const bool kin = k < K;
        const bool va = kin && (m0 + row) < M;
        const bool vw = kin && (n0 + row) < N;
        const __half* pa = va ? a + static_cast<size_t>(m0 + row) * K + k : a;
        const __half* pw = vw ? w + static_cast<size_t>(n0 + row) * K + k : w;
        samrt::cp_async_16(sa + swz(row, chunk) * 2, pa, va);
        samrt::cp_async_16(sw + swz(row, chunk) * 2, pw, vw);
    }
}

template <int EPI>
SAMRT_DEVICE void gemm_tile(const __half* __restrict__ a, const __half* __restrict__ w,
                            const float* __restrict__ bias, void* __restrict__ out, int M, int N,
                            int K) {
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

    // Prologue: STAGES - 1 tiles in flight. A group is committed even when empty so that
    // "group i holds tile i" stays true and the wait count below is a constant.
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(smem + s * STAGE_HALVES, a, w, m0, n0, s * BK, M, N, K);
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
            load_stage(smem + (pf % STAGES) * STAGE_HALVES, a, w, m0, n0, pf * BK, M, N, K);
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
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
        const int col = n0 + wn * 32 + ni * 8 + 2 * t;
        if (col >= N) continue;  // N is even, so col < N implies col + 1 < N
        const float b0 = bias[col];
        const float b1 = bias[col + 1];
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = m0 + wm * 64 + mi * 16 + g + h * 8;
                if (row >= M) continue;
                float v0 = acc[mi][ni][2 * h] + b0;
                float v1 = acc[mi][ni][2 * h + 1] + b1;
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
                        samrt::pack_half2(v0, v1);
                }
            }
        }
    }
}

}  // namespace

// Two blocks per SM: 64 KiB shared memory and <= 128 registers per thread each.
#define SAMRT_GEMM_BOUNDS __launch_bounds__(THREADS, 2)

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_f16(const __half* __restrict__ a,
                                                           const __half* __restrict__ w,
                                                           const float* __restrict__ bias,
                                                           __half* __restrict__ out, int M,
                                                           int N, int K) {
    gemm_tile<EPI_BIAS>(a, w, bias, out, M, N, K);
}

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_gelu_f16(const __half* __restrict__ a,
                                                                const __half* __restrict__ w,
                                                                const float* __restrict__ bias,
                                                                __half* __restrict__ out, int M,
                                                                int N, int K) {
    gemm_tile<EPI_BIAS_GELU>(a, w, bias, out, M, N, K);
}

extern "C" __global__ void SAMRT_GEMM_BOUNDS gemm_bias_residual_f16(
    const __half* __restrict__ a, const __half* __restrict__ w, const float* __restrict__ bias,
    float* __restrict__ residual, int M, int N, int K) {
    gemm_tile<EPI_BIAS_RESIDUAL>(a, w, bias, residual, M, N, K);
}
