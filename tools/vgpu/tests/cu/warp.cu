// Warp shuffles and votes, divergence and reconvergence, block barriers, 2D/3D indices
// (tests/kernels_warp.rs).
#define FULL 0xffffffffu

// Every shfl.sync mode with its predicate output; b per lane, c uniform (cu for .up).
#define SH(mode, k, cc)                                                                      \
    asm volatile("{.reg .pred q; shfl.sync." #mode ".b32 %0|q, %2, %3, %4, 0xffffffff;"      \
                 " selp.u32 %1, 1, 0, q;}"                                                   \
                 : "=r"(r), "=r"(p) : "r"(v), "r"(b), "r"(cc));                              \
    out[t * 8 + 2 * k] = r;                                                                  \
    out[t * 8 + 2 * k + 1] = p;
extern "C" __global__ void shfl_modes(const int* in, const int* B, int* out, unsigned cu, unsigned c)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[t], b = B[t], r;
    unsigned p;
    SH(up, 0, cu)
    SH(down, 1, c)
    SH(bfly, 2, c)
    SH(idx, 3, c)
}

// The CUDA intrinsics with a width (segments) and out-of-range source lanes.
extern "C" __global__ void shfl_cuda(const int* in, int* out, int width, int delta, int src)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = in[t];
    out[t * 5 + 0] = __shfl_sync(FULL, v, src + lane * 3, width);
    out[t * 5 + 1] = __shfl_up_sync(FULL, v, delta, width);
    out[t * 5 + 2] = __shfl_down_sync(FULL, v, delta, width);
    out[t * 5 + 3] = __shfl_xor_sync(FULL, v, delta, width);
    float f = __int_as_float(v & 0x3fffffff);
    out[t * 5 + 4] = __float_as_int(__shfl_down_sync(FULL, f * 0.5f, 1));
}

// Votes; the block may end in a partial warp, whose missing lanes are not in any mask.
extern "C" __global__ void votes(const int* in, unsigned* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = in[t];
    unsigned full = __activemask();
    unsigned* o = out + t * 7;
    o[0] = __ballot_sync(full, v > 0);
    o[1] = __all_sync(full, v > -1000000);
    o[2] = __any_sync(full, v > 1000000);
    o[3] = __all_sync(full, v > 0);
    o[4] = full;
    if (lane % 3 == 0) {
        unsigned am = __activemask();
        o[5] = am;
        o[6] = __ballot_sync(am, v & 1);
    } else {
        o[5] = __activemask();
        o[6] = 12345;
    }
}

// Nested divergence, lane-dependent loops, then warp-wide operations after reconvergence.
extern "C" __global__ void diverge(const int* in, int* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    unsigned v = in[t];
    unsigned acc;
    if (lane & 1) {
        if (lane & 2)
            acc = v * 3;
        else
            acc = v + 7;
    } else {
        if (lane < 16)
            acc = v - 1;
        else
            acc = v ^ 0x55;
    }
    for (int k = 0; k < lane; k++)
        acc = acc * 31u + k;
    int k = 0;
    while (true) {
        if (((v >> k) & 1) || k > 20) break;
        k++;
    }
    acc += k;
    __syncwarp();
    out[t * 3 + 0] = acc;
    out[t * 3 + 1] = __shfl_xor_sync(FULL, acc, 1);
    out[t * 3 + 2] = __ballot_sync(FULL, acc & 1);
}

// Half the warp returns early; the rest reduce among themselves.
extern "C" __global__ void early_exit(const int* in, int* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x & 31;
    int v = in[t];
    out[t] = -1;
    if (lane >= 16) return;
    int r = v;
    for (int o = 8; o > 0; o >>= 1)
        r += __shfl_down_sync(0xffffu, r, o, 16);
    __syncwarp(0xffffu);
    out[t] = r;
}

// Shared-memory tree reduction over any block size (no false race: a barrier per level).
extern "C" __global__ void block_reduce(const int* in, int* out)
{
    __shared__ int s[1024];
    unsigned tid = threadIdx.x;
    s[tid] = in[blockIdx.x * blockDim.x + tid];
    __syncthreads();
    for (unsigned st = 1; st < blockDim.x; st *= 2) {
        if (tid % (2 * st) == 0 && tid + st < blockDim.x) s[tid] += s[tid + st];
        __syncthreads();
    }
    if (tid == 0) out[blockIdx.x] = s[0];
    // every thread also reads the total after the barrier
    out[gridDim.x + blockIdx.x * blockDim.x + tid] = s[0] - (int)tid;
}

// Warp-shuffle + shared reduction, one result per block (used with a large grid).
extern "C" __global__ void many_blocks(const int* in, int* out)
{
    __shared__ int partial[32];
    int tid = threadIdx.x;
    int v = in[blockIdx.x * blockDim.x + tid];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL, v, o);
    if ((tid & 31) == 0) partial[tid >> 5] = v;
    __syncthreads();
    if (tid < 32) {
        int w = tid < (int)(blockDim.x >> 5) ? partial[tid] : 0;
        for (int o = 16; o > 0; o >>= 1) w += __shfl_xor_sync(FULL, w, o);
        if (tid == 0) out[blockIdx.x] = w * 2 + (int)blockIdx.x;
    }
}

// Every special register of a 3D launch.
extern "C" __global__ void indices3d(unsigned* out)
{
    unsigned bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
    unsigned block = (bz * gridDim.y + by) * gridDim.x + bx;
    unsigned nthr = blockDim.x * blockDim.y * blockDim.z;
    unsigned tl = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    unsigned* o = out + (block * nthr + tl) * 4;
    o[0] = threadIdx.x | threadIdx.y << 8 | threadIdx.z << 16;
    o[1] = bx | by << 8 | bz << 16;
    o[2] = blockDim.x | blockDim.y << 8 | blockDim.z << 16;
    o[3] = gridDim.x | gridDim.y << 8 | gridDim.z << 16;
}

// Threads past the end return before a barrier; the rest synchronise and share data.
extern "C" __global__ void exit_then_barrier(const int* in, int* out, int n)
{
    __shared__ int s[128];
    int tid = threadIdx.x;
    if (tid >= n) return;
    s[tid] = in[tid] * 2;
    __syncthreads();
    out[tid] = s[n - 1 - tid] + tid;
}

// Two named barriers with thread counts: warps 0-1 on barrier 1, warps 2-3 on barrier 2.
extern "C" __global__ void named_barriers(const int* in, int* out)
{
    __shared__ int s[128];
    int tid = threadIdx.x;
    s[tid] = in[tid] + 1;
    if (tid < 64)
        asm volatile("bar.sync 1, 64;" ::: "memory");
    else
        asm volatile("bar.sync 2, 64;" ::: "memory");
    out[tid] = s[tid ^ 32];  // the other warp of the same pair
}
