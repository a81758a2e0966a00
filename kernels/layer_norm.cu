// Row-wise LayerNorm: y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta, biased
// variance, fp32 statistics, fp32 gamma/beta.
//
// One warp owns one row at a time (LN_ROWS_PER_WARP rows in turn; gamma and beta are staged
// in shared memory once per block of 8 rows). The row is held in registers (up to
// LN_MAX_CHUNKS chunks of 8 per lane, so D <= 2048) and normalised with the exact two-pass formula: the mean first, then
// the mean of squared deviations, matching PyTorch's result closer than a one-pass
// sum/sum-of-squares, which cancels badly when |mean| >> std (the residual stream late in the
// encoder). Requirements (checked by the launcher): D % 8 == 0, 16-byte aligned rows.
//
// Variants: layer_norm_f16 reads fp16 x, layer_norm_f32_f16 the fp32 residual stream, both
// writing fp16 token-major [rows, D] (the operand of the next GEMM); layer_norm_f16_f32_cf
// reads fp16 token-major [B*T, C] and writes fp32 channel-first [B, C, T] (the neck's final
// LayerNorm2d, which produces the image embedding [B, 256, G, G]).
//
// Scaled inputs. Every variant takes `row_scale` (nullable, [rows]) and `in_scale`: the true
// input row is x_true = x_stored * s with s = in_scale * row_scale[row] (row_scale null: 1),
// as cast_rows_f16 stores rows that exceed fp16's range. For s > 0, with m and v the mean and
// biased variance of x_stored, x_true has mean s*m and variance s^2*v, so
//   (x_true - s m) / sqrt(s^2 v + eps) = s (x - m) / (s sqrt(v + eps / s^2))
//                                      = (x - m) / sqrt(v + eps / s^2):
// LayerNorm is scale-invariant except for eps, and computing on x_stored with
// eps_eff = eps / s^2 gives the true result. eps_eff is formed as (eps / s) / s, exact for
// power-of-two s and underflowing gracefully (never inf / inf) for huge s; s = 1 leaves eps
// bit-identical to the unscaled kernel. s must be positive (negative s would flip the sign).
#include "common.cuh"

namespace {

constexpr int LN_WARPS = 4;          // warps per block
constexpr int LN_ROWS_PER_WARP = 2;  // token-major variants: 8 rows per block, so that an
                                     // image's 4096 rows keep 16 warps per SM issuing
constexpr int LN_MAX_CHUNKS = 8;  // 8 chunks * 8 elements * 32 lanes = 2048 columns
constexpr int CF_TOKENS = 32;     // tokens per block of the channel-first variant
constexpr int CF_WARPS = 16;      // its warps: two rows each, so that its 128 blocks (one
                                  // 4096-token image) keep 16 warps per SM issuing
constexpr int CF_COLS = 256;      // columns staged per pass of the channel-first variant

SAMRT_DEVICE void load8(const __half* p, float (&v)[8]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __half22float2(h[i]);
        v[2 * i] = f.x;
        v[2 * i + 1] = f.y;
    }
}

SAMRT_DEVICE void load8(const float* p, float (&v)[8]) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

// eps for the stored row: eps / s^2 with s = in_scale * row_scale[row] (see the header).
SAMRT_DEVICE float scaled_eps(float eps, const float* row_scale, float in_scale, size_t row) {
    const float s = row_scale != nullptr ? in_scale * row_scale[row] : in_scale;
    return eps / s / s;
}

// Loads one row into v (lane owns columns (c * 32 + lane) * 8 .. + 8 of chunk c) and returns
// its mean and 1 / sqrt(var + eps), two-pass, fp32.
template <typename TIn>
SAMRT_DEVICE void row_moments(const TIn* xr, int dim, int lane, float eps,
                              float (&v)[LN_MAX_CHUNKS][8], float& mean, float& rstd) {
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < LN_MAX_CHUNKS; ++c) {
        const int col = (c * 32 + lane) * 8;
        if (col < dim) {
            load8(xr + col, v[c]);
#pragma unroll
            for (int i = 0; i < 8; ++i) sum += v[c][i];
        }
    }
    mean = samrt::warp_sum(sum) / static_cast<float>(dim);

    float sq = 0.0f;
#pragma unroll
    for (int c = 0; c < LN_MAX_CHUNKS; ++c) {
        const int col = (c * 32 + lane) * 8;
        if (col < dim) {
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const float d = v[c][i] - mean;
                sq += d * d;
            }
        }
    }
    const float var = samrt::warp_sum(sq) / static_cast<float>(dim);
    rstd = 1.0f / sqrtf(var + eps);
}

// Where column `col` (a multiple of 4) of gamma / beta sits in shared memory: lane l of chunk
// c reads columns (c * 32 + l) * 8 .. + 8 as two float4 halves, stored half-major
// ([c][half][lane][4]), so that each half is one contiguous 512 B read by the warp.
SAMRT_DEVICE int gb_slot(int col) {
    const int c = col >> 8, lane = (col >> 3) & 31, half = (col >> 2) & 1;
    return ((c * 2 + half) * 32 + lane) * 4;
}

SAMRT_DEVICE void load8_gb(const float* s, int col, float (&v)[8]) {
    const float4 a = *reinterpret_cast<const float4*>(s + gb_slot(col));
    const float4 b = *reinterpret_cast<const float4*>(s + gb_slot(col + 4));
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
    v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

// One row: its moments, then y = (x - mean) * rstd * gamma + beta in fp16.
template <typename TIn>
SAMRT_DEVICE void layer_norm_row(const TIn* __restrict__ x, const float* s_gamma,
                                 const float* s_beta, __half* __restrict__ y, int row, int dim,
                                 int lane, float eps) {
    const TIn* xr = x + static_cast<size_t>(row) * dim;
    __half* yr = y + static_cast<size_t>(row) * dim;

    float v[LN_MAX_CHUNKS][8];
    float mean, rstd;
    row_moments(xr, dim, lane, eps, v, mean, rstd);

#pragma unroll
    for (int c = 0; c < LN_MAX_CHUNKS; ++c) {
        const int col = (c * 32 + lane) * 8;
        if (col < dim) {
            float g[8], b[8];
            load8_gb(s_gamma, col, g);
            load8_gb(s_beta, col, b);
            uint4 out;
            uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float y0 = (v[c][2 * i] - mean) * rstd * g[2 * i] + b[2 * i];
                const float y1 = (v[c][2 * i + 1] - mean) * rstd * g[2 * i + 1] + b[2 * i + 1];
                o[i] = samrt::pack_half2(y0, y1);
            }
            *reinterpret_cast<uint4*>(yr + col) = out;
        }
    }
}

template <typename TIn>
SAMRT_DEVICE void layer_norm_rows(const TIn* __restrict__ x, const float* __restrict__ gamma,
                                  const float* __restrict__ beta, __half* __restrict__ y,
                                  int rows, int dim, float eps,
                                  const float* __restrict__ row_scale, float in_scale) {
    // gamma and beta once per block into shared memory: read per row from global memory
    // they moved 2x (fp32 rows) or 4x (fp16 rows) the row's own bytes (L2 serves them, but they are traffic).
    __shared__ __align__(16) float s_gamma[LN_MAX_CHUNKS * 32 * 8];
    __shared__ __align__(16) float s_beta[LN_MAX_CHUNKS * 32 * 8];
    for (int col = threadIdx.x * 4; col < dim; col += LN_WARPS * 32 * 4) {
        const int at = gb_slot(col);
        *reinterpret_cast<float4*>(s_gamma + at) = *reinterpret_cast<const float4*>(gamma + col);
        *reinterpret_cast<float4*>(s_beta + at) = *reinterpret_cast<const float4*>(beta + col);
    }
    __syncthreads();
    const int lane = threadIdx.x & 31;
    for (int i = 0; i < LN_ROWS_PER_WARP; ++i) {
        // Consecutive warps take consecutive rows.
        const int row = (blockIdx.x * LN_ROWS_PER_WARP + i) * LN_WARPS + (threadIdx.x >> 5);
        if (row >= rows) return;  // whole warp leaves together: no shuffle below is split
        layer_norm_row(x, s_gamma, s_beta, y, row, dim, lane,
                       scaled_eps(eps, row_scale, in_scale, row));
    }
}

}  // namespace

extern "C" __global__ void __launch_bounds__(LN_WARPS * 32)
    layer_norm_f16(const __half* __restrict__ x, const float* __restrict__ gamma,
                   const float* __restrict__ beta, __half* __restrict__ y, int rows, int dim,
                   float eps, const float* __restrict__ row_scale, float in_scale) {
    layer_norm_rows(x, gamma, beta, y, rows, dim, eps, row_scale, in_scale);
}

extern "C" __global__ void __launch_bounds__(LN_WARPS * 32)
    layer_norm_f32_f16(const float* __restrict__ x, const float* __restrict__ gamma,
                       const float* __restrict__ beta, __half* __restrict__ y, int rows, int dim,
                       float eps, const float* __restrict__ row_scale, float in_scale) {
    layer_norm_rows(x, gamma, beta, y, rows, dim, eps, row_scale, in_scale);
}

// fp16 token-major [batch * tokens, dim] in, fp32 channel-first [batch, dim, tokens] out.
// A block owns CF_TOKENS consecutive tokens of one image (grid (ceil(T / 32), batch)).
// Phase 1: each of the CF_WARPS warps computes the statistics of 2 of those rows exactly as
// the token-major kernels do and parks them in shared memory. Phase 2, per 256-column slice: each warp normalises its
// rows' slice (lane owns columns slice + i * 32 + lane, so the shared-memory tile
// [256][33] is written without bank conflicts) and, after a barrier, the block writes the
// tile out one channel at a time, 32 consecutive tokens (128 bytes) per warp store. The
// second read of x hits L1/L2 (the block's 32 rows are 16 KB at dim 256).
extern "C" __global__ void __launch_bounds__(CF_WARPS * 32)
    layer_norm_f16_f32_cf(const __half* __restrict__ x, const float* __restrict__ gamma,
                          const float* __restrict__ beta, float* __restrict__ y, int tokens,
                          int dim, float eps, const float* __restrict__ row_scale,
                          float in_scale) {
    __shared__ float tile[CF_COLS][CF_TOKENS + 1];
    __shared__ float s_mean[CF_TOKENS];
    __shared__ float s_rstd[CF_TOKENS];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int img = blockIdx.y;
    const int t0 = blockIdx.x * CF_TOKENS;
    const int ntok = min(CF_TOKENS, tokens - t0);
    const size_t row0 = static_cast<size_t>(img) * tokens + t0;

    for (int r = warp; r < ntok; r += CF_WARPS) {
        float v[LN_MAX_CHUNKS][8];
        float mean, rstd;
        const size_t row = row0 + r;
        row_moments(x + row * dim, dim, lane, scaled_eps(eps, row_scale, in_scale, row), v,
                    mean, rstd);
        if (lane == 0) {
            s_mean[r] = mean;
            s_rstd[r] = rstd;
        }
    }
    __syncthreads();

    float* yimg = y + static_cast<size_t>(img) * dim * tokens + t0;
    for (int c0 = 0; c0 < dim; c0 += CF_COLS) {
        float g[CF_COLS / 32], b[CF_COLS / 32];
#pragma unroll
        for (int i = 0; i < CF_COLS / 32; ++i) {
            const int col = c0 + i * 32 + lane;
            g[i] = col < dim ? gamma[col] : 0.0f;
            b[i] = col < dim ? beta[col] : 0.0f;
        }
        for (int r = warp; r < ntok; r += CF_WARPS) {
            const __half* xr = x + (row0 + r) * dim;
            const float mean = s_mean[r], rstd = s_rstd[r];
#pragma unroll
            for (int i = 0; i < CF_COLS / 32; ++i) {
                const int col = c0 + i * 32 + lane;
                if (col < dim) {
                    const float v = __half2float(xr[col]);
                    tile[i * 32 + lane][r] = (v - mean) * rstd * g[i] + b[i];
                }
            }
        }
        __syncthreads();
        const int ncols = min(CF_COLS, dim - c0);
        for (int cc = warp; cc < ncols; cc += CF_WARPS) {
            if (lane < ntok) yimg[static_cast<size_t>(c0 + cc) * tokens + lane] = tile[cc][lane];
        }
        __syncthreads();
    }
}
