// Floating-point arithmetic, approximations and conversions (tests/kernels_float.rs).
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cstdint>

#define NF 24
extern "C" __global__ void float_arith(const float* A, const float* B, const float* C, float* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = A[i], b = B[i], c = C[i];
    float* o = out + i * NF;
    o[0] = __fmaf_rn(a, b, c);
    o[1] = __fadd_rn(__fmul_rn(a, b), c);  // two roundings, never contracted
    o[2] = __fadd_rn(a, b);
    o[3] = __fadd_rz(a, b);
    o[4] = __fadd_ru(a, b);
    o[5] = __fadd_rd(a, b);
    o[6] = __fmul_rn(a, b);
    o[7] = __fmul_rz(a, b);
    o[8] = __fmul_ru(a, b);
    o[9] = __fmul_rd(a, b);
    o[10] = __fsub_rn(a, b);
    o[11] = __fdiv_rn(a, b);
    o[12] = __fdiv_rz(a, b);
    o[13] = __fdiv_ru(a, b);
    o[14] = __fdiv_rd(a, b);
    o[15] = __frcp_rn(b);
    o[16] = __fsqrt_rn(fabsf(a));
    o[17] = __fsqrt_rz(fabsf(a));
    o[18] = __fmaf_rz(a, b, c);
    o[19] = __fmaf_ru(a, b, c);
    o[20] = __fmaf_rd(a, b, c);
    o[21] = fabsf(a) * -1.0f + b;  // neg/abs folded into an fma
    o[22] = fminf(a, b);
    o[23] = fmaxf(a, c);
}

// Approximate functions, bounded by their documented error.
extern "C" __global__ void approx(const float* X, float* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = X[i], r;
    asm("ex2.approx.f32 %0, %1;" : "=f"(r) : "f"(x));
    out[i * 6 + 0] = r;
    out[i * 6 + 1] = __expf(x);
    out[i * 6 + 2] = __logf(fabsf(x));
    out[i * 6 + 3] = rsqrtf(fabsf(x));
    out[i * 6 + 4] = __sinf(x);
    asm("lg2.approx.f32 %0, %1;" : "=f"(r) : "f"(fabsf(x)));
    out[i * 6 + 5] = r;
}

// NaN handling of min/max: min/max return the other operand, .NaN propagates.
extern "C" __global__ void minmax_nan(const float* A, const float* B, float* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float a = A[i], b = B[i], r;
    out[i * 4 + 0] = fminf(a, b);
    out[i * 4 + 1] = fmaxf(a, b);
    asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    out[i * 4 + 2] = r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    out[i * 4 + 3] = r;
}

// Conversions. 32-bit results into o32, 64-bit results into o64.
#define NC32 40
#define NC64 10
extern "C" __global__ void conversions(const float* F, const double* D, const int* I, const long long* L,
                                       const unsigned short* H, unsigned* o32, unsigned long long* o64, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float f = F[i];
    double d = D[i];
    int v = I[i];
    long long l = L[i];
    unsigned* o = o32 + i * NC32;
    unsigned long long* p = o64 + i * NC64;
    o[0] = __float2int_rn(f);
    o[1] = __float2int_rz(f);
    o[2] = __float2int_ru(f);
    o[3] = __float2int_rd(f);
    o[4] = __float2uint_rn(f);
    o[5] = __float2uint_rz(f);
    o[6] = __float2uint_ru(f);
    o[7] = __float2uint_rd(f);
    o[8] = __float_as_uint(__int2float_rn(v));
    o[9] = __float_as_uint(__int2float_rz(v));
    o[10] = __float_as_uint(__int2float_ru(v));
    o[11] = __float_as_uint(__int2float_rd(v));
    o[12] = __float_as_uint(__uint2float_rn((unsigned)v));
    o[13] = __float_as_uint(__uint2float_rz((unsigned)v));
    o[14] = __float_as_uint(__uint2float_ru((unsigned)v));
    o[15] = __float_as_uint(__uint2float_rd((unsigned)v));
    o[16] = __half_as_ushort(__float2half_rn(f));
    o[17] = __half_as_ushort(__float2half_rz(f));
    o[18] = __half_as_ushort(__float2half_ru(f));
    o[19] = __half_as_ushort(__float2half_rd(f));
    o[20] = __float_as_uint(__half2float(__ushort_as_half(H[i])));
    __half2 h2 = __floats2half2_rn(f, (float)v);
    o[21] = *reinterpret_cast<unsigned*>(&h2);
    __half2 g2 = __float22half2_rn(make_float2((float)v, f));
    o[22] = *reinterpret_cast<unsigned*>(&g2);
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(f), "f"((float)v));
    o[23] = r;
    o[24] = __float_as_uint(__double2float_rn(d));
    o[25] = __float_as_uint(__double2float_rz(d));
    o[26] = __float_as_uint(__double2float_ru(d));
    o[27] = __float_as_uint(__double2float_rd(d));
    o[28] = __double2int_rn(d);
    o[29] = __double2int_rz(d);
    o[30] = __float_as_uint(__ll2float_rn(l));
    o[31] = __float_as_uint(__ll2float_rz(l));
    o[32] = __float_as_uint(__ll2float_ru(l));
    o[33] = __float_as_uint(__ll2float_rd(l));
    o[34] = __float_as_uint(rintf(f));
    o[35] = __float_as_uint(truncf(f));
    o[36] = __float_as_uint(ceilf(f));
    o[37] = __float_as_uint(floorf(f));
    o[38] = __float_as_uint(__saturatef(f));
    o[39] = __bfloat16_as_ushort(__float2bfloat16_rn(f));
    p[0] = __float2ll_rn(f);
    p[1] = __float2ll_rz(f);
    p[2] = __float2ll_ru(f);
    p[3] = __float2ll_rd(f);
    p[4] = __float2ull_rz(f);
    p[5] = __double_as_longlong((double)f);
    p[6] = __double_as_longlong(__ll2double_rn(l));
    p[7] = __double_as_longlong(__ll2double_rz(l));
    p[8] = __double_as_longlong(__int2double_rn(v));
    p[9] = __double_as_longlong(d * (double)f + 1.0);  // f64 fma
}

// Standard (libdevice) math functions: long instruction sequences of their own, with the
// CUDA guide's ulp bounds; plus correctly rounded f32/f64 division and square root.
#define NM 12
extern "C" __global__ void __launch_bounds__(128) math_lib(const float* X, const float* Y, float* out,
                                                           double* out64, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = __ldg(&X[i]), y = __ldg(&Y[i]);
    float* o = out + i * NM;
    o[0] = expf(x);
    o[1] = exp2f(x);
    o[2] = logf(fabsf(x));
    o[3] = erff(x);
    o[4] = tanhf(x);
    o[5] = sinf(x * y);
    o[6] = cosf(x * y);
    o[7] = powf(fabsf(x), y);
    o[8] = sqrtf(fabsf(x));
    o[9] = x / y;
    o[10] = 1.0f / y;
    o[11] = atan2f(x, y);
    double dx = x, dy = y;
    out64[i * 3 + 0] = (dx * 1.1) / dy;
    out64[i * 3 + 1] = sqrt(fabs(dx * 3.3));
    out64[i * 3 + 2] = exp(dx);
}
