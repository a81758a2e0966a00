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
// Few rows, many columns: a warp owns TL_COLS output columns of a TL_ROWS-row tile, and its
// lanes split K. Where K is a multiple of 4 and the weight 16 B aligned (every decoder
// weight), lane l takes k = 4l..4l+3, 4l+128..4l+131, ...: one float4 load per column and
// one float4 shared read per row feed 4 x TL_COLS FMAs, and a warp's weight load reads 512
// consecutive bytes. Otherwise lane l takes k = l, l + 32, .... The A tile (a + a2) is
// staged in shared memory TL_KC columns at a time and read by every warp. Shuffles sum the
// lanes' partials (a reduce-scatter that leaves each output in one lane at 4 columns per
// warp, in four at 1). Each output's
// summation order depends only on K and the weight's alignment, never on the row count, so
// a prompt's result is the same in any batch. The bias is added last, as nn.Linear's addmm
// does.
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
// float4s of the A tile each thread stages.
constexpr int TL_STAGE4 = TL_ROWS * TL_KC / 4 / (TL_WARPS * 32);
static_assert(TL_STAGE4 * TL_WARPS * 32 * 4 == TL_ROWS * TL_KC, "whole float4s per thread");

SAMRT_DEVICE bool aligned16(const float* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }
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

// TL_COLS output columns per warp: each A value read from shared memory feeds TL_COLS FMAs.
template <int TL_COLS>
SAMRT_DEVICE void token_linear_body(const TokenLinearParams& p) {
    // Outputs per warp, and lanes that hold each one after the reduce-scatter.
    constexpr int NV = TL_ROWS * TL_COLS, SPREAD = 32 / NV;
    static_assert(NV * SPREAD == 32, "whole lanes per output");
    __shared__ __align__(16) float as[TL_ROWS][TL_KC];
    const TokenLinearJob& j = p.job[blockIdx.z];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int m0 = blockIdx.y * TL_ROWS;
    // The warp's TL_COLS output columns; a column past N reads row 0 and is never stored.
    const int n0 = (blockIdx.x * TL_WARPS + warp) * TL_COLS;
    const float* wrow[TL_COLS];
#pragma unroll
    for (int q = 0; q < TL_COLS; ++q)
        wrow[q] = j.w + (long long)(n0 + q < p.n ? n0 + q : 0) * p.k;
    float acc[TL_ROWS * TL_COLS];  // [row][column]
#pragma unroll
    for (int i = 0; i < TL_ROWS * TL_COLS; ++i) acc[i] = 0.0f;
    // Scalar staging: thread t stages column t of the tile's rows (TL_KC == the block's threads); rows past
    // M and columns past K stage zeros.
    const int rows = min(TL_ROWS, p.m - m0);
    const float* arow = j.a + m0 * p.lda + threadIdx.x;
    const float* a2row = j.a2 ? j.a2 + m0 * p.lda + threadIdx.x : nullptr;
    const bool norm = p.norm.gamma != nullptr;  // the launcher ensures K <= TL_KC then
    // Whole 16 B weight pieces: a lane reads 4 consecutive k per load (a quarter of the
    // instructions per FMA of the scalar loop). The same for every launch of a weight, so
    // a prompt's result still does not depend on its batch.
    const bool vec4 = (p.k & 3) == 0 && aligned16(j.w);
    // Rows in whole 16 B pieces too (every decoder launch): a thread stages two float4s.
    const bool a4 = vec4 && (p.lda & 3) == 0 && aligned16(j.a) && (!j.a2 || aligned16(j.a2));
    for (int k0 = 0; k0 < p.k; k0 += TL_KC) {
        const int kn = min(TL_KC, p.k - k0);
        if (a4) {
#pragma unroll
            for (int i = 0; i < TL_STAGE4; ++i) {
                const int at4 = threadIdx.x + i * TL_WARPS * 32;
                const int r = at4 / (TL_KC / 4), c = at4 % (TL_KC / 4) * 4;
                float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                if (r < rows && c < kn) {
                    const long long at = (long long)(m0 + r) * p.lda + k0 + c;
                    v = *reinterpret_cast<const float4*>(j.a + at);
                    if (j.a2 && !norm) {
                        const float4 e = *reinterpret_cast<const float4*>(j.a2 + at);
                        v = make_float4(v.x + e.x, v.y + e.y, v.z + e.z, v.w + e.w);
                    }
                }
                *reinterpret_cast<float4*>(&as[r][c]) = v;
            }
        } else {
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
        }
        __syncthreads();
        if (norm) {
            normalise_rows(p, as, rows, m0, a2row);
            __syncthreads();
        }
        if (vec4) {
            for (int c = 4 * lane; c < kn; c += 128) {
                float4 wv[TL_COLS];
#pragma unroll
                for (int q = 0; q < TL_COLS; ++q)
                    wv[q] = *reinterpret_cast<const float4*>(wrow[q] + k0 + c);
#pragma unroll
                for (int r = 0; r < TL_ROWS; ++r) {
                    const float4 av = *reinterpret_cast<const float4*>(&as[r][c]);
#pragma unroll
                    for (int q = 0; q < TL_COLS; ++q) {
                        float& a = acc[r * TL_COLS + q];
                        a = fmaf(av.x, wv[q].x, a);
                        a = fmaf(av.y, wv[q].y, a);
                        a = fmaf(av.z, wv[q].z, a);
                        a = fmaf(av.w, wv[q].w, a);
                    }
                }
            }
        } else {
            for (int c = lane; c < kn; c += 32) {
                float wv[TL_COLS];
#pragma unroll
                for (int q = 0; q < TL_COLS; ++q) wv[q] = wrow[q][k0 + c];
#pragma unroll
                for (int r = 0; r < TL_ROWS; ++r) {
                    const float av = as[r][c];
#pragma unroll
                    for (int q = 0; q < TL_COLS; ++q)
                        acc[r * TL_COLS + q] = fmaf(av, wv[q], acc[r * TL_COLS + q]);
                }
            }
        }
        __syncthreads();
    }
    // Reduce-scatter over the lanes: at offset 16, 8, ... down to SPREAD a lane keeps the
    // half of its partials that its lane bit selects and adds its partner's partial of the
    // same outputs; then a butterfly over the lower lane bits. Lane l ends with output
    // l / SPREAD = (row, column) = (l / SPREAD / TL_COLS, l / SPREAD % TL_COLS), summed over
    // the lanes in a tree over lane bits 4..0: the same tree for any TL_COLS, so both
    // variants give the same bits.
    samrt::static_for<0, 5>([&](auto level) {
        constexpr int off = 16 >> decltype(level)::value;
        if constexpr (off >= SPREAD) {
            constexpr int half = off / SPREAD;
            const bool hi = lane & off;
#pragma unroll
            for (int i = 0; i < half; ++i) {
                const float keep = hi ? acc[half + i] : acc[i];
                const float send = hi ? acc[i] : acc[half + i];
                acc[i] = keep + samrt::shfl_xor_f32(send, off);
            }
        } else {
            acc[0] += samrt::shfl_xor_f32(acc[0], off);
        }
    });
    const int at = lane / SPREAD;
    const int m = m0 + at / TL_COLS, n = n0 + at % TL_COLS;
    if (lane % SPREAD != 0 || m >= p.m || n >= p.n) return;
    float y = acc[0] + (j.bias ? j.bias[n] : 0.0f);
    if (p.relu && y < 0.0f) y = 0.0f;
    float* o = j.out + m * p.ldo + n;
    *o = p.accumulate ? *o + y : y;
}

// One output column per warp (more blocks: few rows) and four (fewer instructions per FMA:
// many rows); src/graph/decoder_ops.rs `TokenLinearVariant::select` picks one per launch.
extern "C" __global__ void __launch_bounds__(TL_WARPS * 32)
    token_linear_c1_f32(const TokenLinearParams p) {
    token_linear_body<1>(p);
}

extern "C" __global__ void __launch_bounds__(TL_WARPS * 32)
    token_linear_c4_f32(const TokenLinearParams p) {
    token_linear_body<4>(p);
}
