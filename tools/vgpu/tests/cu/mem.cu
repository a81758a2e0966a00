// Memory: atomics, local memory, constant/global variables, dynamic + static shared,
// vector accesses, cp.async, profile counters (tests/kernels_mem.rs).
#include <cstdint>

// Global atomics, many blocks contending on the same words.
extern "C" __global__ void atomics_global(const int* in, int* ci, unsigned long long* cu64, float* cf,
                                          int* cmin, int* cmax, unsigned* cinc, int* cexch, int* exch_old,
                                          int* ccas, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int v = in[t];
    atomicAdd(ci, v);
    atomicAdd(cu64, (unsigned long long)(unsigned)v * 3ull + (1ull << 33));
    atomicAdd(cf, (float)(v & 255) * 0.125f);  // multiples of 1/8: exact sums in any order
    atomicMin(cmin, v);
    atomicMax(cmax, v);
    atomicInc(cinc, 1000u);
    exch_old[t] = atomicExch(cexch, t);
    int old = *(volatile int*)ccas, assumed;
    do {
        assumed = old;
        old = atomicCAS(ccas, assumed, assumed + 3);
    } while (old != assumed);
}

// The same on shared memory, one result per block.
extern "C" __global__ void atomics_shared(const int* in, int* out)
{
    __shared__ int s_add, s_min, s_max, s_cas;
    __shared__ unsigned s_inc;
    __shared__ float s_f;
    if (threadIdx.x == 0) {
        s_add = 0; s_min = 0x7fffffff; s_max = (int)0x80000000; s_cas = 0; s_inc = 0; s_f = 0.0f;
    }
    __syncthreads();
    int v = in[blockIdx.x * blockDim.x + threadIdx.x];
    atomicAdd(&s_add, v);
    atomicMin(&s_min, v);
    atomicMax(&s_max, v);
    atomicInc(&s_inc, 50u);
    atomicAdd(&s_f, 0.5f);
    int old = 0, assumed;  // first guess 0: no plain load racing with the CAS of others
    do {
        assumed = old;
        old = atomicCAS(&s_cas, assumed, assumed ^ (v & 0xffff));
    } while (old != assumed);
    __syncthreads();
    if (threadIdx.x == 0) {
        int* o = out + blockIdx.x * 6;
        o[0] = s_add; o[1] = s_min; o[2] = s_max; o[3] = (int)s_inc; o[4] = __float_as_int(s_f); o[5] = s_cas;
    }
}

// A per-thread array indexed dynamically: lives in the local depot.
extern "C" __global__ void local_array(const int* idx, int* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int a[48];
    for (int i = 0; i < 48; i++) a[i] = (t * i) ^ (i << 4);
    int j = idx[t] % 48, k = (idx[t] >> 8) % 48;
    a[j] += a[k] * 3;
    out[t] = a[j] - a[(j + 1) % 48] + a[k];
}

__constant__ float ctab[16] = {0.5f, 1.5f, -2.0f, 3.25f, 4.0f, -5.5f, 6.0f, 7.75f,
                               8.0f, -9.0f, 10.5f, 11.0f, 12.25f, -13.0f, 14.0f, 15.5f};
__device__ int gtab[8] = {3, 1, 4, 1, 5, 9, 2, 6};

extern "C" __global__ void tables(const int* idx, float* out, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int i = idx[t];
    out[t] = ctab[i & 15] * (float)gtab[(i >> 4) & 7];
}

// Dynamic (extern) and static shared memory in one kernel.
extern "C" __global__ void dyn_static(const float* in, float* out, int n)
{
    extern __shared__ float dyn[];
    __shared__ float stat[32];
    int tid = threadIdx.x;
    for (int i = tid; i < n; i += blockDim.x) dyn[i] = in[i] * 2.0f;
    if (tid < 32) stat[tid] = (float)tid;
    __syncthreads();
    float s = 0.0f;
    for (int i = tid; i < n; i += blockDim.x) s += dyn[n - 1 - i] + stat[i & 31];
    out[tid] = s;
}

// Vector loads and stores.
extern "C" __global__ void vectors(const float4* a, const int2* b, const uint4* c, float4* oa, int2* ob,
                                   uint4* oc, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    float4 x = a[t];
    int2 y = b[t];
    uint4 z = c[t];
    oa[t] = make_float4(x.w, x.z * 2.0f, x.y, x.x + 1.0f);
    ob[t] = make_int2(y.y, y.x - y.y);
    oc[t] = make_uint4(z.y, z.z, z.w ^ z.x, z.x);
}

__device__ __forceinline__ void cp16(void* smem, const void* g, int src_size)
{
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(g), "r"(src_size));
}

// Double-buffered cp.async pipeline: tile k+1 in flight while tile k is consumed. Thread tid
// copies src_size(tid) bytes of its 16 (the rest is zero-filled).
extern "C" __global__ void cp_async_pipeline(const int4* in, int4* out, int ntiles)
{
    __shared__ int4 buf[2][128];
    int tid = threadIdx.x;
    int src_size = (tid % 4 == 3) ? 0 : (tid % 4 == 2 ? 8 : 16);
    cp16(&buf[0][tid], &in[tid], src_size);
    asm volatile("cp.async.commit_group;");
    for (int k = 0; k < ntiles; k++) {
        if (k + 1 < ntiles) cp16(&buf[(k + 1) & 1][tid], &in[(k + 1) * 128 + tid], src_size);
        asm volatile("cp.async.commit_group;");
        if (k + 1 < ntiles)
            asm volatile("cp.async.wait_group 1;");
        else
            asm volatile("cp.async.wait_group 0;");
        __syncthreads();
        int4 v = buf[k & 1][(tid + 1) & 127];  // a neighbour's copy: needs the barrier
        out[k * 128 + tid] = make_int4(v.x + k, v.y, v.z, v.w);
        __syncthreads();
    }
}

// 4- and 8-byte cp.async.ca, completed by wait_all.
extern "C" __global__ void cp_async_small(const int* in, int* out)
{
    __shared__ int s4[64];
    __shared__ long long s8[64];
    int tid = threadIdx.x;
    unsigned a4 = (unsigned)__cvta_generic_to_shared(&s4[tid]);
    unsigned a8 = (unsigned)__cvta_generic_to_shared(&s8[tid]);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;" ::"r"(a4), "l"(in + tid));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" ::"r"(a8), "l"(in + 64 + 2 * tid));
    asm volatile("cp.async.wait_all;");
    __syncthreads();
    long long w = s8[63 - tid];
    out[tid] = s4[63 - tid] + (int)(w >> 32) * 2 + (int)w;
}

// Profile counters.
extern "C" __global__ void copy(const float* in, float* out, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t < n) out[t] = in[t];
}

extern "C" __global__ void bank(float* out, int stride)
{
    __shared__ float s[32 * 33];
    int lane = threadIdx.x;
    s[lane * stride] = (float)lane;                // one warp store
    __syncwarp();
    out[lane] = s[((lane + 1) & 31) * stride];     // one warp load, same bank pattern
}

// More atomic operations and types.
extern "C" __global__ void atomics_more(const int* in, double* cd, int* csub, int* cand, int* cor, int* cxor,
                                        unsigned* cdec, unsigned long long* cmax64, unsigned long long* ccas64,
                                        float* cexf, float* exf_old, int n)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n) return;
    int v = in[t];
    atomicAdd(cd, (double)(v & 1023) * 0.25);
    atomicSub(csub, v);
    atomicAnd(cand, v | (1 << (t % 31)));
    atomicOr(cor, v & (0x7 << (t % 29)));
    atomicXor(cxor, v);
    atomicDec(cdec, 100u);
    atomicMax(cmax64, (unsigned long long)(unsigned)v << (t % 32));
    unsigned long long old = 0, assumed;
    do {
        assumed = old;
        old = atomicCAS(ccas64, assumed, assumed + (1ull << 33) + 1);
    } while (old != assumed);
    exf_old[t] = atomicExch(cexf, (float)t);
}

// Generic pointers into shared, global and local memory chosen at run time.
extern "C" __global__ void generic_ptrs(float* g, float* out, int sel)
{
    __shared__ float s[64];
    float l[8];
    int tid = threadIdx.x;
    s[tid] = (float)tid;
    for (int i = 0; i < 8; i++) l[i] = (float)(tid * i);
    float* p = sel == 0 ? &s[tid] : (sel == 1 ? &g[tid] : &l[tid & 7]);
    *p = *p * 2.0f + 1.0f;
    out[tid] = s[tid] + l[tid & 7] + g[tid];
}

// A struct passed by value (as the project's kernels take their parameters).
struct Params {
    const float* in;
    float* out;
    int n;
    float scale;
    double bias;
    int2 off;
    char tag;
};
extern "C" __global__ void struct_param(const Params p)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= p.n) return;
    p.out[t] = p.in[t] * p.scale + (float)p.bias + (float)(p.off.x - p.off.y) + (float)p.tag;
}

// Static shared bytes of odd size before 16-byte-aligned dynamic shared memory.
extern "C" __global__ void dyn_align(const float4* in, float4* out)
{
    __shared__ char tag[5];
    extern __shared__ float4 d4[];
    int tid = threadIdx.x;
    if (tid < 5) tag[tid] = (char)(tid + 1);
    d4[tid] = in[tid];
    __syncthreads();
    float4 v = d4[blockDim.x - 1 - tid];
    out[tid] = make_float4(v.x + tag[tid % 5], v.y, v.z, v.w);
}

// Sub-word loads and stores: sign/zero extension into 32- and 64-bit registers.
extern "C" __global__ void subword(const signed char* a, const short* b, const unsigned char* c,
                                   const unsigned short* e, int* o, long long* o64, signed char* o8, short* o16)
{
    int i = threadIdx.x;
    o[i * 4 + 0] = a[i];
    o[i * 4 + 1] = b[i];
    o[i * 4 + 2] = c[i];
    o[i * 4 + 3] = e[i];
    o64[i * 2] = a[i];
    o64[i * 2 + 1] = b[i];
    o8[i] = (signed char)(a[i] * 3);
    o16[i] = (short)(b[i] + e[i]);
}

// Scoped atomics, volatile accesses, red, and the classic "last block finishes the
// reduction" pattern with __threadfence (acquire/release are in ordering.cu).
extern "C" __global__ void fence_reduce(const int* in, volatile int* partial, unsigned* count, int* result,
                                        int* scoped)
{
    __shared__ int s[128];
    __shared__ bool last;
    int tid = threadIdx.x;
    s[tid] = in[blockIdx.x * blockDim.x + tid];
    __syncthreads();
    for (int st = 64; st > 0; st >>= 1) {
        if (tid < st) s[tid] += s[tid + st];
        __syncthreads();
    }
    if (tid == 0) {
        partial[blockIdx.x] = s[0];
        __threadfence();
        unsigned ticket = atomicInc(count, gridDim.x - 1);  // wraps back to 0 for the next launch
        last = (ticket == gridDim.x - 1);
    }
    __syncthreads();
    if (last && tid == 0) {
        int total = 0;
        for (unsigned b = 0; b < gridDim.x; b++) total += partial[b];
        result[1] = *(volatile unsigned*)count + 5;
        result[0] = total;
    }
    __threadfence_block();
    atomicAdd_block(&scoped[0], 1);
    atomicAdd_system(&scoped[1], 2);
    asm volatile("red.relaxed.gpu.global.add.u32 [%0], %1;" ::"l"(scoped + 2), "r"(3u));
}

// Special registers describing the launch's shared memory and lanes.
extern "C" __global__ void special_regs(unsigned* out)
{
    unsigned dyn, lane, lt, le, eq, gt, ge;
    asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));
    asm("mov.u32 %0, %%laneid;" : "=r"(lane));
    asm("mov.u32 %0, %%lanemask_lt;" : "=r"(lt));
    asm("mov.u32 %0, %%lanemask_le;" : "=r"(le));
    asm("mov.u32 %0, %%lanemask_eq;" : "=r"(eq));
    asm("mov.u32 %0, %%lanemask_gt;" : "=r"(gt));
    asm("mov.u32 %0, %%lanemask_ge;" : "=r"(ge));
    unsigned* o = out + threadIdx.x * 7;
    o[0] = dyn; o[1] = lane; o[2] = lt; o[3] = le; o[4] = eq; o[5] = gt; o[6] = ge;
}
