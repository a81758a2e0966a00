// Integer arithmetic, bit operations and comparisons (tests/kernels_int.rs).
// Each thread reads one operand pair and writes a fixed number of results.
#include <cstdint>

#define N32 28
extern "C" __global__ void int32_ops(const int* A, const int* B, const int* C, int* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int a = A[i], b = B[i], c = C[i];
    unsigned ua = a, ub = b;
    int* o = out + i * N32;
    o[0] = a + b;
    o[1] = a - b;
    o[2] = a * b;
    o[3] = __mulhi(a, b);
    o[4] = (int)__umulhi(ua, ub);
    o[5] = a * b + c;  // mad.lo
    o[6] = a / b;      // host guarantees b != 0 and no INT_MIN / -1
    o[7] = a % b;
    o[8] = (int)(ua / ub);
    o[9] = (int)(ua % ub);
    o[10] = min(a, b);
    o[11] = max(a, b);
    o[12] = (int)min(ua, ub);
    o[13] = (int)max(ua, ub);
    o[14] = a & b;
    o[15] = a | b;
    o[16] = a ^ b;
    o[17] = ~a;
    o[18] = -a;
    o[19] = abs(a);
    o[20] = __popc(ua);
    o[21] = __clz(a);
    o[22] = (int)__brev(ua);
    o[23] = __ffs(a);
    o[24] = (int)__byte_perm(ua, ub, (unsigned)c);
    o[25] = (int)__funnelshift_l(ua, ub, (unsigned)c);
    o[26] = (int)__funnelshift_r(ua, ub, (unsigned)c);
    o[27] = (int)__funnelshift_lc(ua, ub, (unsigned)c);
}

// Wide and 64-bit operations.
#define N64 16
extern "C" __global__ void int64_ops(const long long* A, const long long* B, const int* A32,
                                     const int* B32, long long* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    long long a = A[i], b = B[i];
    unsigned long long ua = a, ub = b;
    int a32 = A32[i], b32 = B32[i];
    long long* o = out + i * N64;
    o[0] = a + b;
    o[1] = a - b;
    o[2] = a * b;
    o[3] = __mul64hi(a, b);
    o[4] = (long long)__umul64hi(ua, ub);
    o[5] = (long long)a32 * b32;                     // mul.wide.s32
    o[6] = (long long)((unsigned long long)(unsigned)a32 * (unsigned)b32);  // mul.wide.u32
    o[7] = a / b;
    o[8] = a % b;
    o[9] = (long long)(ua / ub);
    o[10] = (long long)(ua % ub);
    o[11] = __popcll(ua);
    o[12] = __clzll(a);
    o[13] = (long long)__brevll(ua);
    o[14] = min(a, b);
    o[15] = (long long)max(ua, ub);
}

// Shifts by amounts 0..63 through inline asm (C++ makes shifts >= width undefined; PTX
// clamps them to the width).
#define NSH 6
extern "C" __global__ void shifts(const unsigned* A, const unsigned* S, unsigned* out,
                                  unsigned long long* out64, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned a = A[i], s = S[i];
    unsigned long long a64 = ((unsigned long long)a << 32) | (a ^ 0x5a5a5a5au);
    unsigned r;
    unsigned long long r64;
    asm("shl.b32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(s));
    out[i * 3 + 0] = r;
    asm("shr.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(s));
    out[i * 3 + 1] = r;
    asm("shr.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(s));
    out[i * 3 + 2] = r;
    asm("shl.b64 %0, %1, %2;" : "=l"(r64) : "l"(a64), "r"(s));
    out64[i * 3 + 0] = r64;
    asm("shr.u64 %0, %1, %2;" : "=l"(r64) : "l"(a64), "r"(s));
    out64[i * 3 + 1] = r64;
    asm("shr.s64 %0, %1, %2;" : "=l"(r64) : "l"(a64), "r"(s));
    out64[i * 3 + 2] = r64;
}

// Bit-field extract/insert and bfind through inline asm.
#define NBF 14
extern "C" __global__ void bitfield(const unsigned* A, const unsigned* B, const unsigned* P,
                                    const unsigned* L, unsigned* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned a = A[i], b = B[i], p = P[i], l = L[i], r;
    unsigned* o = out + i * NBF;
    asm("bfe.u32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(p), "r"(l));
    o[0] = r;
    asm("bfe.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(p), "r"(l));
    o[1] = r;
    asm("bfi.b32 %0, %1, %2, %3, %4;" : "=r"(r) : "r"(a), "r"(b), "r"(p), "r"(l));
    o[2] = r;
    asm("bfind.u32 %0, %1;" : "=r"(r) : "r"(a));
    o[3] = r;
    asm("bfind.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[4] = r;
    asm("bfind.shiftamt.u32 %0, %1;" : "=r"(r) : "r"(a));
    o[5] = r;
    unsigned long long r64;
    asm("bfe.u64 %0, %1, %2, %3;" : "=l"(r64) : "l"(((unsigned long long)b << 32) | a), "r"(p), "r"(l));
    o[6] = (unsigned)(r64 ^ (r64 >> 32));
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(a ^ b));  // sign-replicate bits live
    o[7] = r;
    asm("lop3.b32 %0, %1, %2, %3, 0x96;" : "=r"(r) : "r"(a), "r"(b), "r"(p * 0x9e3779b9u));
    o[8] = r;
    asm("lop3.b32 %0, %1, %2, %3, 0xe8;" : "=r"(r) : "r"(a), "r"(b), "r"(p * 0x9e3779b9u));
    o[9] = r;
    asm("lop3.b32 %0, %1, %2, %3, 0xca;" : "=r"(r) : "r"(a), "r"(b), "r"(p * 0x9e3779b9u));
    o[10] = r;
    asm("mul24.lo.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    o[11] = r;
    asm("mul24.hi.s32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(b));
    o[12] = r;
    o[13] = __usad(a, b, p);
}

// Narrowing and widening integer conversions, with and without saturation.
extern "C" __global__ void narrow(const int* A, int* out, long long* out64, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int a = A[i], r;
    int* o = out + i * 10;
    o[0] = (int)(signed char)a;
    o[1] = (int)(unsigned char)a;
    o[2] = (int)(short)a;
    o[3] = (int)(unsigned short)a;
    asm("cvt.sat.s8.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[4] = r;
    asm("cvt.sat.u8.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[5] = r;
    asm("cvt.sat.s16.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[6] = r;
    asm("cvt.sat.u32.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[7] = r;
    asm("cvt.s8.s32 %0, %1;" : "=r"(r) : "r"(a));
    o[8] = r;
    asm("cvt.rzi.s16.f32 %0, %1;" : "=r"(r) : "f"((float)a * 0.37f));
    o[9] = r;
    out64[i * 2] = (long long)a;
    out64[i * 2 + 1] = (long long)(unsigned long long)(unsigned)a;
}

// Every setp comparison, each result turned into a bit with selp.
#define CMP(k, ty, cmp, cons, X, Y)                                                          \
    {                                                                                        \
        unsigned r;                                                                          \
        asm("{.reg .pred p; setp." #cmp "." #ty " p, %1, %2; selp.u32 %0, 1, 0, p;}"       \
            : "=r"(r) : cons(X), cons(Y));                                                   \
        bits |= r << (k);                                                                    \
    }
extern "C" __global__ void compares(const int* A, const int* B, const float* FA, const float* FB,
                                    const long long* LA, const long long* LB, unsigned* out, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int a = A[i], b = B[i];
    float x = FA[i], y = FB[i];
    long long la = LA[i], lb = LB[i];
    double dx = x, dy = y;
    unsigned bits = 0;
    CMP(0, s32, eq, "r", a, b) CMP(1, s32, ne, "r", a, b) CMP(2, s32, lt, "r", a, b)
    CMP(3, s32, le, "r", a, b) CMP(4, s32, gt, "r", a, b) CMP(5, s32, ge, "r", a, b)
    CMP(6, u32, lo, "r", a, b) CMP(7, u32, ls, "r", a, b) CMP(8, u32, hi, "r", a, b)
    CMP(9, u32, hs, "r", a, b) CMP(10, s64, lt, "l", la, lb) CMP(11, u64, lo, "l", la, lb)
    CMP(12, s64, ge, "l", la, lb) CMP(13, u64, hs, "l", la, lb)
    out[i * 3] = bits;
    bits = 0;
    CMP(0, f32, eq, "f", x, y) CMP(1, f32, ne, "f", x, y) CMP(2, f32, lt, "f", x, y)
    CMP(3, f32, le, "f", x, y) CMP(4, f32, gt, "f", x, y) CMP(5, f32, ge, "f", x, y)
    CMP(6, f32, equ, "f", x, y) CMP(7, f32, neu, "f", x, y) CMP(8, f32, ltu, "f", x, y)
    CMP(9, f32, leu, "f", x, y) CMP(10, f32, gtu, "f", x, y) CMP(11, f32, geu, "f", x, y)
    CMP(12, f32, num, "f", x, y) CMP(13, f32, nan, "f", x, y)
    out[i * 3 + 1] = bits;
    bits = 0;
    CMP(0, f64, eq, "d", dx, dy) CMP(1, f64, ne, "d", dx, dy) CMP(2, f64, lt, "d", dx, dy)
    CMP(3, f64, le, "d", dx, dy) CMP(4, f64, gt, "d", dx, dy) CMP(5, f64, ge, "d", dx, dy)
    CMP(6, f64, equ, "d", dx, dy) CMP(7, f64, neu, "d", dx, dy) CMP(8, f64, ltu, "d", dx, dy)
    CMP(9, f64, leu, "d", dx, dy) CMP(10, f64, gtu, "d", dx, dy) CMP(11, f64, geu, "d", dx, dy)
    CMP(12, f64, num, "d", dx, dy) CMP(13, f64, nan, "d", dx, dy)
    // setp with a predicate combination: p = (a < b) op c, q = !(a < b) op c
    {
        unsigned r1, r2, r3, r4;
        asm("{.reg .pred c, p, q; setp.ne.u32 c, %4, 0;"
            " setp.lt.and.s32 p|q, %2, %3, c; selp.u32 %0, 1, 0, p; selp.u32 %1, 1, 0, q;}"
            : "=r"(r1), "=r"(r2) : "r"(a), "r"(b), "r"(a & 1));
        asm("{.reg .pred c, p, q; setp.ne.u32 c, %4, 0;"
            " setp.gtu.or.f32 p|q, %2, %3, c; selp.u32 %0, 1, 0, p; selp.u32 %1, 1, 0, q;}"
            : "=r"(r3), "=r"(r4) : "f"(x), "f"(y), "r"(b & 1));
        bits |= r1 << 24 | r2 << 25 | r3 << 26 | r4 << 27;
    }
    // Compiler-generated selects on C++ comparisons (selp / predicated moves).
    bits |= (a < b ? 1u : 0u) << 20;
    bits |= ((unsigned)a < (unsigned)b ? 1u : 0u) << 21;
    bits |= (x < y ? 1u : 0u) << 22;
    bits |= (!(x >= y) ? 1u : 0u) << 23;
    out[i * 3 + 2] = bits;
}
