// Tensor cores: ldmatrix, mma.sync m16n8k16 and a tiled cp.async + ldmatrix + mma GEMM
// (tests/kernels_mma.rs).
#include <cuda_fp16.h>

__device__ __forceinline__ unsigned smem_addr(const void* p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}

// Four 8x8 b16 matrices; lane l supplies row perm(l % 8) of matrix l / 8, perm(r) = (3r+1)%8,
// so the loaded matrix j has row i = stored row perm(i).
extern "C" __global__ void ldmatrix_test(const unsigned short* in, unsigned* out)
{
    __shared__ __align__(16) unsigned short sm[4 * 64];
    int lane = threadIdx.x;
    for (int i = lane; i < 256; i += 32) sm[i] = in[i];
    __syncwarp();
    unsigned addr = smem_addr(&sm[(lane / 8) * 64 + ((3 * (lane % 8) + 1) % 8) * 8]);
    unsigned r0, r1, r2, r3;
    unsigned* o = out + lane * 14;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];" : "=r"(r0) : "r"(addr));
    o[0] = r0;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
    o[1] = r0; o[2] = r1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
    o[3] = r0; o[4] = r1; o[5] = r2; o[6] = r3;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];" : "=r"(r0) : "r"(addr));
    o[7] = r0;
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
    o[8] = r0; o[9] = r1;
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
    o[10] = r0; o[11] = r1; o[12] = r2; o[13] = r3;
}

__device__ __forceinline__ void mma16816(float* d, const unsigned* a, unsigned b0, unsigned b1, const float* c)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
}

__device__ __forceinline__ unsigned pack(unsigned short lo, unsigned short hi)
{
    return (unsigned)lo | ((unsigned)hi << 16);
}

// One m16n8k16 per warp, fragments built by hand from the PTX ISA layout. Warp w uses
// A + 256w (16x16 row-major), B + 128w (16x8, [k][n]), C/D + 128w (16x8 row-major).
extern "C" __global__ void mma_single(const unsigned short* A, const unsigned short* B, const float* C, float* D)
{
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    A += 256 * w; B += 128 * w; C += 128 * w; D += 128 * w;
    int g = lane >> 2, t = lane & 3;
    unsigned a[4] = {pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]),
                     pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                     pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]),
                     pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
    unsigned b0 = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    unsigned b1 = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    float d[4];
    mma16816(d, a, b0, b1, c);
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

__device__ __forceinline__ void cp16(void* smem, const void* g, int src_size)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem)), "l"(g), "r"(src_size));
}

#define BM 64
#define BN 64
#define BK 16
// C[M x N] (f32) = A[M x K] (row-major f16) * B[K x N] (row-major f16); N and K multiples
// of 8 and 16. 128 threads; warp w owns rows 16w..16w+15 of the block tile, all 64 columns.
extern "C" __global__ void gemm(const __half* A, const __half* B, float* C, int M, int N, int K)
{
    __shared__ __align__(128) __half sA[2][BM * BK];
    __shared__ __align__(128) __half sB[2][BK * BN];
    int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    float acc[8][4];
    for (int j = 0; j < 8; j++)
        for (int e = 0; e < 4; e++) acc[j][e] = 0.0f;
    int ktiles = K / BK;
    auto load = [&](int kt, int buf) {
        int r = tid / 2, ch = tid % 2;
        int gr = m0 + r;
        cp16(&sA[buf][r * BK + ch * 8], A + (size_t)min(gr, M - 1) * K + kt * BK + ch * 8, gr < M ? 16 : 0);
        int kr = tid / 8, nc = tid % 8;
        int gn = n0 + nc * 8;
        cp16(&sB[buf][kr * BN + nc * 8], B + (size_t)(kt * BK + kr) * N + min(gn, N - 8), gn < N ? 16 : 0);
    };
    load(0, 0);
    asm volatile("cp.async.commit_group;");
    for (int kt = 0; kt < ktiles; kt++) {
        if (kt + 1 < ktiles) load(kt + 1, (kt + 1) & 1);
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group 1;");
        __syncthreads();
        int buf = kt & 1;
        unsigned a[4];
        int arow = warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8, acol = (lane / 16) * 8;
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
                     : "r"(smem_addr(&sA[buf][arow * BK + acol])));
        for (int j = 0; j < 8; j += 2) {
            unsigned b[4];
            int krow = (lane % 8) + ((lane / 8) % 2) * 8, ncol = (j + lane / 16) * 8;
            asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                         : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                         : "r"(smem_addr(&sB[buf][krow * BN + ncol])));
            mma16816(acc[j], a, b[0], b[1], acc[j]);
            mma16816(acc[j + 1], a, b[2], b[3], acc[j + 1]);
        }
        __syncthreads();
    }
    int g = lane / 4, t = lane % 4;
    for (int j = 0; j < 8; j++) {
        int col = n0 + j * 8 + 2 * t, row = m0 + warp * 16 + g;
        if (col < N) {
            if (row < M) { C[row * N + col] = acc[j][0]; C[row * N + col + 1] = acc[j][1]; }
            if (row + 8 < M) { C[(row + 8) * N + col] = acc[j][2]; C[(row + 8) * N + col + 1] = acc[j][3]; }
        }
    }
}

// The other mma.sync forms: bf16 inputs, f16 accumulators, and the k=8 shape. Same data
// layout as mma_single (A 16xK row-major, B Kx8 [k][n], C/D 16x8), one warp.
extern "C" __global__ void mma_bf16(const unsigned short* A, const unsigned short* B, const float* C, float* D)
{
    int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    unsigned a[4] = {pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]),
                     pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                     pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]),
                     pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
    unsigned b0 = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    unsigned b1 = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    float d[4];
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%10, %11, %12, %13};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1),
                   "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// f16 accumulators: c0/d0 pack (g, 2t..2t+1), c1/d1 pack (g+8, 2t..2t+1). C, D are f16.
extern "C" __global__ void mma_f16acc(const unsigned short* A, const unsigned short* B, const unsigned short* C,
                                      unsigned short* D)
{
    int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    unsigned a[4] = {pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]),
                     pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                     pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]),
                     pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
    unsigned b0 = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    unsigned b1 = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
    unsigned c0 = pack(C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1]);
    unsigned c1 = pack(C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]);
    unsigned d0, d1;
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16 {%0, %1}, {%2, %3, %4, %5}, {%6, %7}, {%8, %9};"
                 : "=r"(d0), "=r"(d1)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(c0), "r"(c1));
    D[g * 8 + 2 * t] = (unsigned short)d0;
    D[g * 8 + 2 * t + 1] = (unsigned short)(d0 >> 16);
    D[(g + 8) * 8 + 2 * t] = (unsigned short)d1;
    D[(g + 8) * 8 + 2 * t + 1] = (unsigned short)(d1 >> 16);
}

// m16n8k8: A 16x8 (a0,a1: (g, 2t..); a2,a3: (g+8, 2t..)), B 8x8 (b0,b1: (k=2t.., n=g)).
extern "C" __global__ void mma_k8(const unsigned short* A, const unsigned short* B, const float* C, float* D)
{
    int lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
    unsigned a0 = pack(A[g * 8 + 2 * t], A[g * 8 + 2 * t + 1]);
    unsigned a1 = pack(A[(g + 8) * 8 + 2 * t], A[(g + 8) * 8 + 2 * t + 1]);
    unsigned b0 = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
    float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
    float d[4];
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5}, {%6}, "
                 "{%7, %8, %9, %10};"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a0), "r"(a1), "r"(b0), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
    D[g * 8 + 2 * t] = d[0];
    D[g * 8 + 2 * t + 1] = d[1];
    D[(g + 8) * 8 + 2 * t] = d[2];
    D[(g + 8) * 8 + 2 * t + 1] = d[3];
}
