// Hopper asynchronous copies and transaction barriers, written with the PTX the CUDA
// headers would emit (inline asm, so the instruction forms under test are explicit).
#include <cuda.h>

__device__ __forceinline__ unsigned smem(const void *p) {
    return (unsigned)__cvta_generic_to_shared(p);
}
__device__ __forceinline__ void bar_init(unsigned b, unsigned n) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(b), "r"(n));
}
__device__ __forceinline__ void fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
__device__ __forceinline__ void arrive_tx(unsigned b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(b), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void arrive(unsigned b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(b) : "memory");
}
// Thread 0 initialises the barrier for `n` arrivals; the block waits until it has.
__device__ __forceinline__ unsigned block_barrier(unsigned long long *bar, unsigned n) {
    unsigned b = smem(bar);
    if (threadIdx.x == 0) {
        bar_init(b, n);
        fence_init();
    }
    __syncthreads();
    return b;
}
// nvcc's shape of a blocking wait: try_wait in a loop.
__device__ __forceinline__ void wait_parity(unsigned b, unsigned parity) {
    asm volatile("{\n.reg .pred p;\nWAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@!p bra WAIT_%=;\n}" ::"r"(b),
                 "r"(parity)
                 : "memory");
}
__device__ __forceinline__ void tma_2d(unsigned dst, const CUtensorMap *m, int c0, int c1,
                                       unsigned b) {
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];" ::"r"(dst),
                 "l"(m), "r"(c0), "r"(c1), "r"(b)
                 : "memory");
}
__device__ __forceinline__ void tma_3d(unsigned dst, const CUtensorMap *m, int c0, int c1,
                                       int c2, unsigned b) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4}], [%5];" ::"r"(dst),
                 "l"(m), "r"(c0), "r"(c1), "r"(c2), "r"(b)
                 : "memory");
}

__device__ __forceinline__ void tma_1d(unsigned dst, const CUtensorMap *m, int c0, unsigned b) {
    asm volatile("cp.async.bulk.tensor.1d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2}], [%3];" ::"r"(dst),
                 "l"(m), "r"(c0), "r"(b)
                 : "memory");
}
// The CUTLASS spelling: no `.tile`, with an L2 cache-policy operand.
__device__ __forceinline__ void tma_5d(unsigned dst, const CUtensorMap *m, const int *c,
                                       unsigned b) {
    asm volatile("cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 ".L2::cache_hint [%0], [%1, {%2, %3, %4, %5, %6}], [%7], %8;" ::"r"(dst),
                 "l"(m), "r"(c[0]), "r"(c[1]), "r"(c[2]), "r"(c[3]), "r"(c[4]), "r"(b),
                 "l"(0x1000000000000000ull)
                 : "memory");
}

// One box of a rank-1, 2, 3 or 5 map at c[0..rank] into a 1024-aligned buffer; the first
// `bytes` bytes of the buffer are copied out as they lie in shared memory.
extern "C" __global__ void tma_load(const __grid_constant__ CUtensorMap tm, unsigned char *out,
                                    int rank, int c0, int c1, int c2, int c3, int c4,
                                    unsigned bytes) {
    __shared__ alignas(1024) unsigned char buf[16384];
    __shared__ alignas(8) unsigned long long full;
    unsigned b = block_barrier(&full, 1);
    if (threadIdx.x == 0) {
        arrive_tx(b, bytes);
        int c[5] = {c0, c1, c2, c3, c4};
        if (rank == 1)
            tma_1d(smem(buf), &tm, c0, b);
        else if (rank == 2)
            tma_2d(smem(buf), &tm, c0, c1, b);
        else if (rank == 3)
            tma_3d(smem(buf), &tm, c0, c1, c2, b);
        else
            tma_5d(smem(buf), &tm, c, b);
    }
    wait_parity(b, 0);
    for (unsigned i = threadIdx.x; i < bytes / 4; i += blockDim.x)
        ((unsigned *)out)[i] = ((const unsigned *)buf)[i];
}

// A three-stage ring: warp 0 (one elected thread) loads tile t of 8 rows x 32 floats into
// stage t % 3 and the two consumer warps write it back doubled. `full[s]` completes when the
// tile has landed (one arrival plus its bytes), `empty[s]` when both consumer warps are done
// with it (64 arrivals); both are waited on by parity. With `careless` the producer does not
// wait for `empty`, overwriting stages the consumers may not have read (wrong).
extern "C" __global__ void tma_ring(const __grid_constant__ CUtensorMap tm, float *out,
                                    int ntiles, int careless) {
    __shared__ alignas(1024) float tile[3][256];
    __shared__ alignas(8) unsigned long long full[3], empty[3];
    if (threadIdx.x == 0) {
        for (int s = 0; s < 3; s++) {
            bar_init(smem(&full[s]), 1);
            bar_init(smem(&empty[s]), 64);
        }
        fence_init();
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        if (threadIdx.x == 0) {
            for (int t = 0; t < ntiles; t++) {
                int s = t % 3;
                unsigned ph = (t / 3) & 1;
                if (!careless)
                    wait_parity(smem(&empty[s]), ph ^ 1);
                arrive_tx(smem(&full[s]), sizeof(tile[0]));
                tma_2d(smem(tile[s]), &tm, 0, 8 * t, smem(&full[s]));
            }
        }
    } else {
        unsigned c = threadIdx.x - 32;
        for (int t = 0; t < ntiles; t++) {
            int s = t % 3;
            wait_parity(smem(&full[s]), (t / 3) & 1);
            for (unsigned i = c; i < 256; i += 64)
                out[t * 256 + i] = 2.0f * tile[s][i];
            arrive(smem(&empty[s]));
        }
    }
}

// Token waits: 64 threads arrive on a barrier of count 64, keep the state token and spin on
// test_wait with it; then parity 0 (the completed phase) tests complete, parity 1 does not.
extern "C" __global__ void token_wait(unsigned *out) {
    __shared__ alignas(8) unsigned long long bar;
    unsigned b = block_barrier(&bar, 64);
    unsigned long long st;
    asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 %0, [%1];" : "=l"(st) : "r"(b)
                 : "memory");
    unsigned done = 0, spins = 0;
    while (!done) {
        asm volatile("{\n.reg .pred p;\nmbarrier.test_wait.shared::cta.b64 p, [%1], %2;\n"
                     "selp.u32 %0, 1, 0, p;\n}"
                     : "=r"(done)
                     : "r"(b), "l"(st)
                     : "memory");
        spins++;
    }
    unsigned p0, p1;
    asm volatile("{\n.reg .pred p;\nmbarrier.test_wait.parity.acquire.cta.shared::cta.b64 p, "
                 "[%1], 0;\nselp.u32 %0, 1, 0, p;\n}"
                 : "=r"(p0)
                 : "r"(b));
    asm volatile("{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], 1, "
                 "1000;\nselp.u32 %0, 1, 0, p;\n}"
                 : "=r"(p1)
                 : "r"(b));
    out[threadIdx.x] = p0 | (p1 << 1) | ((spins > 0) << 2);
    __syncthreads();
    if (threadIdx.x == 0)
        asm volatile("mbarrier.inval.shared::cta.b64 [%0];" ::"r"(b));
}

// Non-tensor bulk copy of n floats (n * 4 a multiple of 16) completing on an mbarrier.
extern "C" __global__ void bulk_copy(const float *in, float *out, unsigned n) {
    __shared__ alignas(128) float buf[1024];
    __shared__ alignas(8) unsigned long long bar;
    unsigned b = smem(&bar);
    if (threadIdx.x == 0) {
        bar_init(b, 1);
        fence_init();
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                     " [%0], [%1], %2, [%3];" ::"r"(smem(buf)),
                     "l"(in), "r"(n * 4), "r"(b)
                     : "memory");
        arrive_tx(b, n * 4);
    }
    __syncthreads();
    wait_parity(b, 0);
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x)
        out[i] = buf[i];
}

__device__ __forceinline__ unsigned test_parity(unsigned b, unsigned ph) {
    unsigned r;
    asm volatile("{\n.reg .pred p;\nmbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n}"
                 : "=r"(r)
                 : "r"(b), "r"(ph)
                 : "memory");
    return r;
}

// Transaction bytes without copies (expect_tx, complete_tx) and arrive_drop, one warp:
// out[0..2] the parity-0 test before and after the last 32 bytes complete; out[2..4] the
// parity-0 and parity-1 tests after the second phase of a count-2 barrier that one thread
// left with arrive_drop.
extern "C" __global__ void tx_ops(unsigned *out) {
    __shared__ alignas(8) unsigned long long bar, drop;
    unsigned b = smem(&bar), d = smem(&drop);
    if (threadIdx.x == 0) {
        bar_init(b, 1);
        bar_init(d, 2);
        asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], 64;" ::"r"(b));
        asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], 32;" ::"r"(b));
        arrive(b);
        out[0] = test_parity(b, 0);
        asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], 32;" ::"r"(b));
        out[1] = test_parity(b, 0);
    }
    __syncwarp();
    if (threadIdx.x == 0)
        asm volatile("mbarrier.arrive_drop.shared::cta.b64 _, [%0];" ::"r"(d) : "memory");
    else if (threadIdx.x == 1)
        arrive(d);
    __syncwarp();
    if (threadIdx.x == 1) {
        arrive(d);
        out[2] = test_parity(d, 0);
        out[3] = test_parity(d, 1);
    }
}

// ---- deliberately wrong ----------------------------------------------------------------

// One 2D box with `bytes` announced by expect_tx: a mismatch with the box either way is
// wrong; with `wait_first` 0 the destination is read before the mbarrier wait.
extern "C" __global__ void one_box(const __grid_constant__ CUtensorMap tm, float *out,
                                   unsigned bytes, int wait_first) {
    __shared__ alignas(1024) float buf[256];
    __shared__ alignas(8) unsigned long long bar;
    unsigned b = block_barrier(&bar, 1);
    if (threadIdx.x == 0) {
        arrive_tx(b, bytes);
        tma_2d(smem(buf), &tm, 0, 0, b);
    }
    __syncthreads();
    if (wait_first)
        wait_parity(b, 0);
    out[threadIdx.x] = buf[threadIdx.x];
    wait_parity(b, 0);
}

// A barrier of count 2 that only one thread arrives on: the wait can never complete.
extern "C" __global__ void never_completes(unsigned *out) {
    __shared__ alignas(8) unsigned long long bar;
    unsigned b = block_barrier(&bar, 2);
    if (threadIdx.x == 0)
        arrive(b);
    wait_parity(b, 0);
    out[threadIdx.x] = 1;
}

// Arrives on a barrier nobody initialised.
extern "C" __global__ void uninit_arrive(unsigned *out) {
    __shared__ alignas(8) unsigned long long bar;
    arrive(smem(&bar));
    out[threadIdx.x] = 1;
}

// Two arrivals at once on a barrier expecting one.
extern "C" __global__ void arrive_overflow(unsigned *out) {
    __shared__ alignas(8) unsigned long long bar;
    unsigned b = smem(&bar);
    if (threadIdx.x == 0) {
        bar_init(b, 1);
        asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0], 2;" ::"r"(b) : "memory");
    }
    out[threadIdx.x] = 1;
}

// Producer/consumer warpgroups rebalancing registers, as a warp-specialised GEMM does; with
// `split` the first warpgroup is split across the two branches (wrong).
extern "C" __global__ void __launch_bounds__(256, 1) maxnreg(unsigned *out, unsigned split) {
    if (threadIdx.x < 128 - split) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;");
        out[threadIdx.x] = 40;
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;");
        out[threadIdx.x] = 232;
    }
}

// wgmma descriptor of a K-major operand in 128-byte swizzle atoms (8 rows of 128 bytes,
// 1024 apart): start >> 4 in bits 0-13, the unused LBO as 1, SBO 1024 >> 4 at bit 32, mode
// 1 (128B) at bit 62.
__device__ __forceinline__ unsigned long long desc128(unsigned addr) {
    return (unsigned long long)((addr >> 4) & 0x3fff) | (1ull << 16) | (64ull << 32) |
           (1ull << 62);
}

// D (64 x 32, f32) = A (64 x 64 f16, K-major) * B (64 x 32, stored as 32 rows of 64 K) with
// both operands loaded by TMA in 128B swizzle and read by four chained m64n32k16 wgmmas,
// the descriptors advancing 32 bytes along the swizzled rows. The loads are async-proxy
// writes, so no fence.proxy.async is needed. `touch` 1: each thread of the first 64
// rewrites two bytes of A through the generic proxy after the wait, then a barrier with no
// proxy fence (wrong); 2: the same with fence.proxy.async before the barrier. D is stored
// row-major from the ISA's fragment layout.
extern "C" __global__ void tma_wgmma(const __grid_constant__ CUtensorMap ma,
                                     const __grid_constant__ CUtensorMap mb, float *out,
                                     int a_row, int b_k, int touch) {
    __shared__ alignas(1024) unsigned char sa[64 * 128];
    __shared__ alignas(1024) unsigned char sb[32 * 128];
    __shared__ alignas(8) unsigned long long full;
    unsigned b = block_barrier(&full, 1);
    if (threadIdx.x == 0) {
        arrive_tx(b, sizeof sa + sizeof sb);
        tma_2d(smem(sa), &ma, 0, a_row, b);
        tma_2d(smem(sb), &mb, b_k, 0, b);
    }
    wait_parity(b, 0);
    if (touch) {
        if (threadIdx.x < 64) {
            volatile unsigned short *p = (volatile unsigned short *)(sa + threadIdx.x * 128);
            *p = *p;
        }
        if (touch == 2)
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        __syncthreads();
    }
    float d[16];
    // The accumulators are pinned on both sides of the wgmmas (CUTLASS's
    // warpgroup_fence_operand), or nvcc may initialise them after wgmma.fence.
    for (int i = 0; i < 16; i++) d[i] = 0.0f;
    for (int i = 0; i < 16; i++) asm volatile("" : "+f"(d[i])::"memory");
    unsigned long long da = desc128(smem(sa)), db = desc128(smem(sb));
    asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
    for (int k = 0; k < 4; k++) {
        asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
                     "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 "
                     "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
                     "%16, %17, p, 1, 1, 0, 0;\n}\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),
                       "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]),
                       "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
                     : "l"(da + 2 * k), "l"(db + 2 * k), "r"(k));
    }
    asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
    asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    for (int i = 0; i < 16; i++) asm volatile("" : "+f"(d[i])::"memory");
    // Warp w holds rows 16w..16w+15; per 8-column block, lane (g, t) = (lane / 4, lane % 4)
    // holds rows g and g + 8, columns 2t and 2t + 1.
    unsigned w = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (int i = 0; i < 16; i++) {
        unsigned row = 16 * w + lane / 4 + 8 * ((i % 4) / 2);
        unsigned col = 8 * (i / 4) + 2 * (lane % 4) + i % 2;
        out[row * 32 + col] = d[i];
    }
}
