// Kernels for tests/memcheck.rs: guard gaps between allocations and initcheck of global
// memory and of shared-memory atomics.

// out[t] = in[off + t]: with `off` at the end of `in`, or before its start, an overflow.
extern "C" __global__ void read_at(const float* in, long long off, float* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    out[t] = in[off + t];
}

extern "C" __global__ void write_at(float* out, long long off)
{
    out[off + threadIdx.x] = 1.0f;
}

// One 16-byte load per thread (all four floats must have been written).
extern "C" __global__ void read_v4(const float4* in, float4* out)
{
    out[threadIdx.x] = in[threadIdx.x];
}

extern "C" __global__ void fill(float* out, float v)
{
    out[blockIdx.x * blockDim.x + threadIdx.x] = v;
}

// Every thread adds 1 to *c (an atomic reads *c, so *c must have been written).
extern "C" __global__ void global_count(unsigned* c)
{
    atomicAdd(c, 1u);
}

// Counts the block's threads in a shared counter, initialised only when `init` is set.
extern "C" __global__ void shared_count(unsigned* out, int init)
{
    __shared__ unsigned count;
    if (init && threadIdx.x == 0) count = 0;
    __syncthreads();
    atomicAdd(&count, 1u);
    __syncthreads();
    if (threadIdx.x == 0) out[0] = count;
}

// The same with atomicMax, whose result is used (atom, not red).
extern "C" __global__ void shared_max(unsigned* out, int init)
{
    __shared__ unsigned m;
    if (init && threadIdx.x == 0) m = 0;
    __syncthreads();
    unsigned old = atomicMax(&m, threadIdx.x);
    out[1 + threadIdx.x] = old;
    __syncthreads();
    if (threadIdx.x == 0) out[0] = m;
}
