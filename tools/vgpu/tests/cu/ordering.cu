// Memory-ordering forms that libcu++ (cuda::atomic_ref) and hand-written code emit:
// ld.acquire, st.release, ld.relaxed, atom with .relaxed/.acq_rel/.acquire and scopes,
// fence.sc / fence.acq_rel (tests/kernels/mem.rs). Separate from mem.cu so that a loader
// gap here cannot hide the other memory tests.
#include <cuda/atomic>

extern "C" __global__ void ordering(int* p, unsigned* c, int* out)
{
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    cuda::atomic_ref<int, cuda::thread_scope_device> a(p[0]);
    a.fetch_add(1, cuda::memory_order_relaxed);
    int y = a.fetch_add(2, cuda::memory_order_acq_rel);
    cuda::atomic_ref<int, cuda::thread_scope_block> b(p[1 + blockIdx.x]);
    b.fetch_max(y, cuda::memory_order_seq_cst);
    asm volatile("fence.acq_rel.gpu;");
    if (t == 0) {
        unsigned r;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(r) : "l"(c));
        asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(c + 1), "r"(r + 5));
        asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(r) : "l"(c + 2));
        out[0] = (int)r;
        cuda::atomic_ref<unsigned, cuda::thread_scope_system> s(c[3]);
        s.store(s.load() + 7);  // seq_cst load and store
    }
}
