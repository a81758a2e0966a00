// nn.Linear on the mask decoder's prompt tokens, in fp32 (src/cuda/ops/token_linear.rs):
//     out[m][n] (+)= act(sum_k (a[m][k] + a2[m][k]) * w[n][k] + bias[n])
// with a2 (the query PE) optional, act ReLU or none, and `accumulate` adding into out (the
// decoder's residual adds). Rows are few (prompts x tokens, or one row per prompt for the
// heads), so the tensor-core GEMM's 128-row tiles would idle and its fp16 operands would
// round the residual stream; here every operand stays fp32.
//
// One launch runs up to TL_MAX_JOBS linears of one shape (blockIdx.z picks the job): an
// attention's q/k/v projections read the same rows; the IoU head and the hypernetwork MLPs
// (one per mask token) share their layer shapes. Fewer launches matter more than anything
// else at one prompt, where each linear is a few microseconds of work.
//
// Few rows, many columns: a warp owns one output column of a TL_ROWS-row tile, and its
// lanes split K (lane l takes k = l, l + 32, ...: one weight load reads 128 consecutive
// bytes of the row). The A tile (a + a2) is staged in shared memory TL_KC columns at a time
// and read by every warp. Shuffles sum the lanes' partials (a reduce-scatter that leaves
// each row's sum in four lanes). Each output's summation order depends only on K, never on
// the row count, so a prompt's result is the same in any batch. The bias is added last, as
// nn.Linear's addmm does.
#include "common.cuh"

#define TL_MAX_JOBS 8

struct TokenLinearJob {
    const float* a;
    const float* a2;
    const float* w;
    const float* bias;
    float* out;
};

// The LayerNorm of the input rows (optional): the decoder's post-norms (norm1..3 and the
// final one) run here, on the rows each block stages, instead of in a launch of their own.
struct TokenLinearNorm {
    const float* gamma;  // null: no LayerNorm
    const float* beta;
    float* out;  // the normalised rows (job 0's, row stride lda), written by blocks x = 0; or null
    float eps;
    int pad_;
};

struct TokenLinearParams {
    TokenLinearJob job[TL_MAX_JOBS];
    TokenLinearNorm norm;
    long long lda;
    long long ldo;
    int m;
    int n;
    int k;
    int relu;
    int accumulate;
    int pad_;
};

namespace {
constexpr int TL_ROWS = 8;
constexpr int TL_WARPS = 8;
constexpr int TL_KC = TL_WARPS * 32;
static_assert(TL_ROWS == 8, "the lane reduction scatters 8 rows over lane bits 4..2");
}  // namespace

// LayerNorm of the staged rows in place, as layer_norm_pe_f32 computes it (a warp per
// row: lane sums over columns lane, lane + 32, ..., then the butterfly; mean, then the
// variance of the centred values), so the normalised rows are bit-identical to that kernel's.
// Blocks with blockIdx.x == 0 of job 0 store them; then the PE is added for the product.
SAMRT_DEVICE void normalise_rows(const TokenLinearParams& p, float (*as)[TL_KC], int rows,
                                 int m0, const float* a2row) {
    __shared__ float stats[TL_ROWS][2];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (warp < rows) {
        const float* xr = as[warp];
        float sum = 0.0f;
        for (int c = lane; c < p.k; c += 32) sum += xr[c];
        const float mean = samrt::warp_sum(sum) / p.k;
        float sq = 0.0f;
        for (int c = lane; c < p.k; c += 32) {
            const float d = xr[c] - mean;
            sq = fmaf(d, d, sq);
        }
        const float var = samrt::warp_sum(sq) / p.k;
        if (lane == 0) {
            stats[warp][0] = mean;
            stats[warp][1] = 1.0f / sqrtf(var + p.norm.eps);
        }
    }
    __syncthreads();
    const int c = threadIdx.x;
    if (c >= p.k) return;
    const bool store = p.norm.out && blockIdx.x == 0 && blockIdx.z == 0;
    const float g = p.norm.gamma[c], b = p.norm.beta[c];
    for (int r = 0; r < rows; ++r) {
        const float y = (as[r][c] - stats[r][0]) * stats[r][1] * g + b;
        if (store) p.norm.out[(m0 + r) * p.lda + c] = y;
        as[r][c] = a2row ? y + a2row[r * p.lda] : y;
    }
}

extern "C" __global__ void __launch_bounds__(TL_WARPS * 32)
    token_linear_f32(const TokenLinearParams p) {
    __shared__ float as[TL_ROWS][TL_KC];
    const TokenLinearJob& j = p.job[blockIdx.z];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int m0 = blockIdx.y * TL_ROWS;
    const int n = blockIdx.x * TL_WARPS + warp;
    // A column past N reads row 0 and is never stored.
    const float* wrow = j.w + (long long)(n < p.n ? n : 0) * p.k;
    float acc[TL_ROWS];
#pragma unroll
    for (int r = 0; r < TL_ROWS; ++r) acc[r] = 0.0f;
    // Thread t stages column t of the tile's rows (TL_KC == the block's threads); rows past
    // M and columns past K stage zeros.
    const int rows = min(TL_ROWS, p.m - m0);
    const float* arow = j.a + m0 * p.lda + threadIdx.x;
    const float* a2row = j.a2 ? j.a2 + m0 * p.lda + threadIdx.x : nullptr;
    const bool norm = p.norm.gamma != nullptr;  // the launcher ensures K <= TL_KC then
    for (int k0 = 0; k0 < p.k; k0 += TL_KC) {
        const int kn = min(TL_KC, p.k - k0);
        const bool col = threadIdx.x < kn;
#pragma unroll
        for (int r = 0; r < TL_ROWS; ++r) {
            float v = 0.0f;
            if (col && r < rows) {
                const long long at = r * p.lda + k0;
                v = arow[at];
                if (a2row && !norm) v = v + a2row[at];
            }
            as[r][threadIdx.x] = v;
        }
        __syncthreads();
        if (norm) {
            normalise_rows(p, as, rows, m0, a2row);
            __syncthreads();
        }
        const float* w = wrow + k0;
        for (int c = lane; c < kn; c += 32) {
            const float wv = w[c];
#pragma unroll
            for (int r = 0; r < TL_ROWS; ++r) acc[r] = fmaf(as[r][c], wv, acc[r]);
        }
        __syncthreads();
    }
    // Reduce-scatter over the lanes: at offset 16, 8, 4 a lane keeps the half of its rows
    // that its lane bit selects and adds its partner's partial of the same rows; then a
    // butterfly over lane bits 1..0. Row (lane >> 2) & 7 ends in lanes 4r..4r+3, equal.
#pragma unroll
    for (int half = TL_ROWS / 2, off = 16; half > 0; half /= 2, off /= 2) {
        const bool hi = lane & off;
#pragma unroll
        for (int i = 0; i < half; ++i) {
            const float keep = hi ? acc[half + i] : acc[i];
            const float send = hi ? acc[i] : acc[half + i];
            acc[i] = keep + __shfl_xor_sync(0xffffffffu, send, off);
        }
    }
    float sum = acc[0];
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    const int m = m0 + ((lane >> 2) & 7);
    if ((lane & 3) != 0 || m >= p.m || n >= p.n) return;
    float y = sum + (j.bias ? j.bias[n] : 0.0f);
    if (p.relu && y < 0.0f) y = 0.0f;
    float* o = j.out + m * p.ldo + n;
    *o = p.accumulate ? *o + y : y;
}
