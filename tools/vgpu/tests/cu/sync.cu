// Barriers, synchronisation and scheduling (tests/sync.rs): kernels that break the rules of
// aligned barriers or hide races behind named barriers, and correct kernels that need
// named barriers, bar.arrive/bar.red, flags handed between warps, fair interleaving and
// reconvergence after out-of-line cold blocks.
#define FULL 0xffffffffu

// ---- synccheck ------------------------------------------------------------------------

// Warp 1 leaves before the barrier that warp 0 waits at.
extern "C" __global__ void skip_barrier(float* out)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t / 32 == 1) {
        out[t] = 0.0f;
        return;
    }
    s[t] = (float)t;
    __syncthreads();
    out[t] = s[t ^ 1];
}

// The two warps wait at two different __syncthreads.
extern "C" __global__ void two_sites(float* out)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 32) {
        s[t] = 1.0f;
        __syncthreads();
        out[t] = s[t + 32];
    } else {
        s[t] = 2.0f;
        __syncthreads();
        out[t] = s[t - 32];
    }
}

// The same with non-aligned barrier.sync, which may be reached at different sites.
extern "C" __global__ void two_sites_unaligned(float* out)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 32) {
        s[t] = 1.0f;
        asm volatile("barrier.sync 0;" ::: "memory");
        out[t] = s[t + 32];
    } else {
        s[t] = 2.0f;
        asm volatile("barrier.sync 0;" ::: "memory");
        out[t] = s[t - 32];
    }
}

// nvcc's early return: the lanes past `n` exit, the others meet at the barrier.
extern "C" __global__ void early_return_in_warp(const float* in, float* out, int n)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t >= n) return;
    s[t] = in[t];
    __syncthreads();
    out[t] = s[(t + 1) % n];
}

// ---- named barriers -------------------------------------------------------------------

// Warps 0 and 1 meet at barrier 1; warp 2 (if `third_reads`) reads warp 0's data without
// meeting anyone.
extern "C" __global__ void named_barrier(float* out, int third_reads)
{
    __shared__ float s[32];
    int t = threadIdx.x, w = t / 32, l = t % 32;
    if (w == 0) s[l] = (float)(l * 3);
    if (w < 2) asm volatile("bar.sync 1, 64;" ::: "memory");
    if (w == 1 || (w == 2 && third_reads)) out[t] = s[31 - l];
}

// Producer warps 0 and 1 fill a buffer and arrive; consumer warps 2 and 3 wait and read.
extern "C" __global__ void arrive_then_sync(float* out)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    if (t < 64) {
        s[t] = (float)(t * t);
        asm volatile("bar.arrive 2, 128;" ::: "memory");
    } else {
        asm volatile("bar.sync 2, 128;" ::: "memory");
        out[t - 64] = s[127 - t];
    }
}

// __syncthreads_count / _and / _or: bar.red.popc / .and / .or.
extern "C" __global__ void barrier_reductions(const int* in, int* out)
{
    int t = threadIdx.x;
    int v = in[t];
    int c = __syncthreads_count(v > 0);
    int a = __syncthreads_and(v > -5);
    int o = __syncthreads_or(v > 100);
    out[3 * t] = c;
    out[3 * t + 1] = a;
    out[3 * t + 2] = o;
}

// ---- strong accesses and fair interleaving ---------------------------------------------

// Warp 1 writes data and raises a volatile shared flag; warp 0 spins on it, then reads.
extern "C" __global__ void volatile_flag(float* out)
{
    __shared__ float data[32];
    __shared__ volatile int flag;
    int t = threadIdx.x, l = t % 32;
    if (t == 0) flag = 0;
    __syncthreads();
    if (t >= 32) {
        data[l] = (float)(l + 100);
        __threadfence_block();
        if (l == 0) flag = 1;
    } else {
        while (flag == 0) {
        }
        __threadfence_block();
        out[l] = data[31 - l];
    }
}

// The same hand-over with st.release / ld.acquire.
extern "C" __global__ void release_acquire_flag(float* out)
{
    __shared__ float data[32];
    __shared__ int flag;
    int t = threadIdx.x, l = t % 32;
    unsigned f = (unsigned)__cvta_generic_to_shared(&flag);
    if (t == 0) flag = 0;
    __syncthreads();
    if (t >= 32) {
        data[l] = (float)(l + 200);
        __syncwarp();
        if (l == 0) asm volatile("st.release.cta.shared.u32 [%0], %1;" ::"r"(f), "r"(1) : "memory");
    } else {
        unsigned v = 0;
        while (v == 0) asm volatile("ld.acquire.cta.shared.u32 %0, [%1];" : "=r"(v) : "r"(f) : "memory");
        out[l] = data[31 - l];
    }
}

// Through a shared atomic, and a global volatile flag spun on by another warp.
extern "C" __global__ void atomic_and_global_flags(float* out, volatile int* gflag)
{
    __shared__ float data[32];
    __shared__ int flag;
    int t = threadIdx.x, l = t % 32;
    if (t == 0) flag = 0;
    __syncthreads();
    if (t >= 32) {
        data[l] = (float)(l + 300);
        __syncwarp();
        if (l == 0) atomicExch(&flag, 1);
        while (*gflag == 0) {
        }
        out[t] = 1.0f;
    } else {
        while (atomicAdd(&flag, 0) == 0) {
        }
        out[l] = data[31 - l];
        if (l == 0) *gflag = 1;
    }
}

// Volatile accesses alone are not races, but a plain read of data handed over without a
// flag is.
extern "C" __global__ void plain_handover(float* out)
{
    __shared__ float data[32];
    int t = threadIdx.x, l = t % 32;
    if (t >= 32) data[l] = (float)l;
    else {
        for (volatile int i = 0; i < 3000; ++i) {
        }
        out[l] = data[l];
    }
}

// All lanes of one instruction store one value to one word (`same`), or different ones.
extern "C" __global__ void one_word_store(int* out, int same)
{
    __shared__ int s;
    int t = threadIdx.x;
    s = same ? 7 : t;
    __syncthreads();
    out[t] = s;
}

// ---- reconvergence --------------------------------------------------------------------

// A cold path nvcc places after `ret` and jumps back from, before warp collectives.
extern "C" __global__ void cold_block(const float* in, float* out, int n)
{
    __shared__ float s[64];
    int t = threadIdx.x;
    float v = in[t];
    if (__builtin_expect(v < 0.0f, 0)) {
        for (int i = 0; i < n; ++i) v = v * 0.5f + in[(t + i) % 64];
        out[64 + t] = v;
    }
    v += __shfl_xor_sync(FULL, v, 1);
    unsigned b = __ballot_sync(FULL, v > 1.0f);
    // A . B with every element 1.0 (k = 16), plus C = v in the first accumulator.
    float d0, d1, d2, d3;
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%4,%4,%4}, {%4,%4}, {%5,%6,%6,%6};"
                 : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)
                 : "r"(0x3C003C00u), "f"(v), "f"(0.0f));
    out[128 + t] = d0 + 0.0f * (d1 + d2 + d3);
    s[t] = v;
    __syncthreads();
    out[t] = s[t ^ 32] + (float)__popc(b);
}

// Never ends (the watchdog test).
extern "C" __global__ void spin_forever(volatile int* flag)
{
    while (*flag == 0) {
    }
}
