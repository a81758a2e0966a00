// Deliberately wrong kernels, one per checker, and correct ones that must pass cleanly
// (tests/checkers.rs).
#define FULL 0xffffffffu

__device__ __forceinline__ unsigned saddr(const void* p)
{
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void cp16(void* smem, const void* g)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(saddr(smem)), "l"(g));
}

// ---- memcheck -------------------------------------------------------------------------

// Launched with more threads than `in` has elements (`out` has one per thread).
extern "C" __global__ void oob_read(const float* in, float* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    out[t] = in[t];
}

extern "C" __global__ void oob_write(float* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    out[t] = (float)t;
}

extern "C" __global__ void misaligned(const char* in, float* out)
{
    out[threadIdx.x] = *(const float*)(in + 2 + 4 * threadIdx.x);
}

extern "C" __global__ void shared_oob_static(float* out, int idx)
{
    __shared__ float s[64];
    s[threadIdx.x] = 1.0f;
    __syncthreads();
    if (threadIdx.x == 5) s[idx] = 2.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void shared_oob_dynamic(float* out, int idx)
{
    extern __shared__ float dyn[];
    dyn[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = dyn[threadIdx.x == 3 ? idx : threadIdx.x];
}

extern "C" __global__ void local_oob(unsigned* out, unsigned long long off)
{
    unsigned r;
    asm volatile("ld.local.u32 %0, [%1];" : "=r"(r) : "l"(off));
    out[threadIdx.x] = r;
}

// ---- racecheck / initcheck ------------------------------------------------------------

// Warps 0 and 1 write the same words.
extern "C" __global__ void race_waw(int* out)
{
    __shared__ int s[32];
    s[threadIdx.x % 32] = threadIdx.x;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x % 32];
}

// Warp 0 writes, warp 1 reads the same words, no barrier in between.
extern "C" __global__ void race_raw(int* out)
{
    __shared__ int s[64];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    int lane = threadIdx.x % 32;
    if (threadIdx.x < 32)
        s[lane] = 100 + lane;
    else
        out[threadIdx.x] = s[lane];
}

// Warp 0 reads words that warp 1 then overwrites, no barrier in between.
extern "C" __global__ void race_war(int* out)
{
    __shared__ int s[64];
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    int lane = threadIdx.x % 32;
    if (threadIdx.x < 32)
        out[threadIdx.x] = s[32 + lane];
    else
        s[threadIdx.x] = -1;
}

extern "C" __global__ void uninit_shared(float* out)
{
    __shared__ float s[64];
    if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[63 - threadIdx.x];  // threads 0..31 read words 32..63: never written
}

// ---- cp.async waits -------------------------------------------------------------------

extern "C" __global__ void cp_no_wait(const int4* in, int4* out)
{
    __shared__ int4 s[64];
    cp16(&s[threadIdx.x], &in[threadIdx.x]);
    asm volatile("cp.async.commit_group;");
    out[threadIdx.x] = s[threadIdx.x];  // missing cp.async.wait_group 0
}

// Two groups outstanding; wait_group 1 completes only the older one.
extern "C" __global__ void cp_wait_one(const int4* in, int4* out)
{
    __shared__ int4 s0[64], s1[64];
    cp16(&s0[threadIdx.x], &in[threadIdx.x]);
    asm volatile("cp.async.commit_group;");
    cp16(&s1[threadIdx.x], &in[64 + threadIdx.x]);
    asm volatile("cp.async.commit_group;");
    asm volatile("cp.async.wait_group 1;");
    int4 a = s0[threadIdx.x];  // fine: the first group is complete
    out[threadIdx.x] = a;
    int4 b = s1[threadIdx.x];  // wrong: the newest group may still be in flight
    out[64 + threadIdx.x] = b;
}

// ---- synccheck ------------------------------------------------------------------------

extern "C" __global__ void divergent_syncthreads(int* out)
{
    __shared__ int s[64];
    s[threadIdx.x] = threadIdx.x;
    if (threadIdx.x < 16) __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

extern "C" __global__ void mma_partial_warp(float* out)
{
    unsigned lane = threadIdx.x % 32;
    float d[4] = {0, 0, 0, 0};
    unsigned a = 0x3c003c00u, b = 0x3c003c00u;  // f16 ones
    if (lane < 16) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                     "{%4, %4, %4, %4}, {%5, %5}, {%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]) : "r"(a), "r"(b));
    }
    out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
}

extern "C" __global__ void shfl_diverged(const int* in, int* out)
{
    int v = in[threadIdx.x];
    if ((threadIdx.x % 32) < 16) v = __shfl_sync(FULL, v, 0);
    out[threadIdx.x] = v;
}

// ---- correct kernels: no false positives ----------------------------------------------

extern "C" __global__ void tree_reduce(const float* in, float* out)
{
    __shared__ float s[256];
    unsigned tid = threadIdx.x;
    s[tid] = in[blockIdx.x * blockDim.x + tid];
    __syncthreads();
    for (unsigned st = blockDim.x / 2; st > 0; st >>= 1) {
        if (tid < st) s[tid] += s[tid + st];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = s[0];
}

extern "C" __global__ void cp_pipeline_ok(const int4* in, int4* out, int ntiles)
{
    __shared__ int4 buf[2][64];
    int tid = threadIdx.x;
    cp16(&buf[0][tid], &in[tid]);
    asm volatile("cp.async.commit_group;");
    for (int k = 0; k < ntiles; k++) {
        if (k + 1 < ntiles) cp16(&buf[(k + 1) & 1][tid], &in[(k + 1) * 64 + tid]);
        asm volatile("cp.async.commit_group;");
        asm volatile("cp.async.wait_group 1;");
        __syncthreads();
        out[k * 64 + tid] = buf[k & 1][63 - tid];
        __syncthreads();
    }
    asm volatile("cp.async.wait_all;");
}

// Each thread reads back its own shared write (no barrier needed), then warp-level
// exchange after __syncwarp.
extern "C" __global__ void own_write_readback(const int* in, int* out)
{
    __shared__ int s[128];
    volatile int* vs = s;
    int tid = threadIdx.x;
    vs[tid] = in[tid] * 3;
    int mine = vs[tid];
    vs[tid] = mine + 1;
    mine = vs[tid];
    __syncwarp();
    int lane = tid % 32, base = tid - lane;
    out[tid] = mine + vs[base + ((lane + 1) % 32)];
}

// Dynamic shared memory of any size, fully written then read back by the same thread.
extern "C" __global__ void dyn_big(float* out, int n)
{
    extern __shared__ float dyn[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) dyn[i] = (float)i;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += dyn[i];
    out[threadIdx.x] = s;
}
