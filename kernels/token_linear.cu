// nn.Linear on the mask decoder's prompt tokens, in fp32 (src/cuda/ops/token_linear.rs):
//     out[m][n] (+)= act(sum_k (a[m][k] + a2[m][k]) * w[n][k] + bias[n])
// with a2 (the query PE) optional, act ReLU or none, and `accumulate` adding into out (the
// decoder's residual adds). Rows are few (prompts x tokens, or one row per prompt for the
// heads), so the tensor-core GEMM's 128-row tiles would idle and its fp16 operands would
// round the residual stream; here every operand stays fp32.
//
// Tiling: a block computes 16 rows x 64 columns; 256 threads as 16 x 16, thread (ty, tx)
// owns row ty and columns tx + 16 j (j < 4), so a warp's stores hit 16 consecutive floats.
// K streams through shared memory 32 at a time (A [16][33], W [64][33]; the +1 pad keeps the
// column reads of W conflict-free). Accumulation runs in k order with fmaf; the bias is added
// last, as nn.Linear's addmm does.
//
// Rows are strided: row m of a starts at a + m * lda (the IoU and hypernetwork heads read one
// token row per prompt); out row m at out + m * ldo.

namespace {
constexpr int TL_BM = 16;
constexpr int TL_BN = 64;
constexpr int TL_BK = 32;
}  // namespace

extern "C" __global__ void __launch_bounds__(256) token_linear_f32(
    const float* __restrict__ a, const float* __restrict__ a2, long long lda,
    const float* __restrict__ w, const float* __restrict__ bias, float* __restrict__ out,
    long long ldo, int M, int N, int K, int relu, int accumulate) {
    __shared__ float as[TL_BM][TL_BK + 1];
    __shared__ float ws[TL_BN][TL_BK + 1];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * TL_BM, n0 = blockIdx.x * TL_BN;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < K; k0 += TL_BK) {
        for (int i = threadIdx.x; i < TL_BM * TL_BK; i += 256) {
            const int r = i / TL_BK, c = i % TL_BK;
            const int m = m0 + r, k = k0 + c;
            float v = 0.0f;
            if (m < M && k < K) {
                v = a[m * lda + k];
                if (a2) v = v + a2[m * lda + k];
            }
            as[r][c] = v;
        }
        for (int i = threadIdx.x; i < TL_BN * TL_BK; i += 256) {
            const int r = i / TL_BK, c = i % TL_BK;
            const int n = n0 + r, k = k0 + c;
            ws[r][c] = (n < N && k < K) ? w[(long long)n * K + k] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < TL_BK; ++k) {
            const float x = as[ty][k];
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[j] = fmaf(x, ws[tx + 16 * j][k], acc[j]);
        }
        __syncthreads();
    }
    const int m = m0 + ty;
    if (m >= M) return;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int n = n0 + tx + 16 * j;
        if (n >= N) continue;
        float y = acc[j] + (bias ? bias[n] : 0.0f);
        if (relu && y < 0.0f) y = 0.0f;
        float* o = out + m * ldo + n;
        *o = accumulate ? *o + y : y;
    }
}
