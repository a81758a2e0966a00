// wgmma.mma_async m64nNk16 (sm_90a) with every shared-memory layout (tests/kernels/wgmma.rs).
// The kernels know no layout: the host sends each element's shared-memory byte offset, the
// descriptors (start relative to a 1024-aligned base), the accumulators and A fragments as
// raw per-thread registers, and reads the accumulators back raw; every layout table lives
// in the test. flags: 1 fence.proxy.async before the barrier, 16 after it instead; 2
// wgmma.fence; 4 store an accumulator before wgmma.wait_group; 8 scale-d; 32 warp 3 skips
// the wgmma; 64 a second wgmma with descriptors advanced by (dka, dkb) and A registers from
// the second half of `areg`; 2048 commit the first wgmma as a group of its own; 4096 store
// an accumulator after wgmma.wait_group 1; 8192 store an A register before the waits;
// bits 8..10 the immediate mode (see MMA_s / MMA_r).
typedef unsigned long long u64;

// Accumulator register lists (each N extends the previous) and operand numbers per N.
#define L8 "%0, %1, %2, %3"
#define DOPS8(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
#define D8 "{" L8 "}"
#define AFTER8_S "%4, %5, p"
#define SETP8_S "setp.ne.b32 p, %6, 0;\n"
#define AFTER8_R "{%4, %5, %6, %7}, %8, p"
#define SETP8_R "setp.ne.b32 p, %9, 0;\n"
#define L16 L8 ", " "%4, %5, %6, %7"
#define DOPS16(d) DOPS8(d), \
    "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7])
#define D16 "{" L16 "}"
#define AFTER16_S "%8, %9, p"
#define SETP16_S "setp.ne.b32 p, %10, 0;\n"
#define AFTER16_R "{%8, %9, %10, %11}, %12, p"
#define SETP16_R "setp.ne.b32 p, %13, 0;\n"
#define L64 L16 ", " "%8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23" ", " "%24, %25, %26, %27, %28, %29, %30, %31"
#define DOPS64(d) DOPS16(d), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define D64 "{" L64 "}"
#define AFTER64_S "%32, %33, p"
#define SETP64_S "setp.ne.b32 p, %34, 0;\n"
#define AFTER64_R "{%32, %33, %34, %35}, %36, p"
#define SETP64_R "setp.ne.b32 p, %37, 0;\n"
#define L128 L64 ", " "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47" ", " "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
#define DOPS128(d) DOPS64(d), \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define D128 "{" L128 "}"
#define AFTER128_S "%64, %65, p"
#define SETP128_S "setp.ne.b32 p, %66, 0;\n"
#define AFTER128_R "{%64, %65, %66, %67}, %68, p"
#define SETP128_R "setp.ne.b32 p, %69, 0;\n"
#define L192 L128 ", " "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79" ", " "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
#define DOPS192(d) DOPS128(d), \
    "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), \
    "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), \
    "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), \
    "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
#define D192 "{" L192 "}"
#define AFTER192_S "%96, %97, p"
#define SETP192_S "setp.ne.b32 p, %98, 0;\n"
#define AFTER192_R "{%96, %97, %98, %99}, %100, p"
#define SETP192_R "setp.ne.b32 p, %101, 0;\n"
#define L256 L192 ", " "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111" ", " "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
#define DOPS256(d) DOPS192(d), \
    "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), \
    "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), \
    "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), \
    "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
#define D256 "{" L256 "}"
#define AFTER256_S "%128, %129, p"
#define SETP256_S "setp.ne.b32 p, %130, 0;\n"
#define AFTER256_R "{%128, %129, %130, %131}, %132, p"
#define SETP256_R "setp.ne.b32 p, %133, 0;\n"

#define WG_S(N, T, SA, SB, TA, TB)                                                             \
    asm volatile("{\n.reg .pred p;\n" SETP##N##_S "wgmma.mma_async.sync.aligned.m64n" #N      \
                 "k16.f32." T "." T " " D##N ", " AFTER##N##_S ", " #SA ", " #SB ", " #TA ", " #TB \
                 ";\n}\n"                                                                      \
                 : DOPS##N(d)                                                                  \
                 : "l"(da), "l"(db), "r"(sd))
#define WG_R(N, T, SA, SB, TB)                                                                 \
    asm volatile("{\n.reg .pred p;\n" SETP##N##_R "wgmma.mma_async.sync.aligned.m64n" #N      \
                 "k16.f32." T "." T " " D##N ", " AFTER##N##_R ", " #SA ", " #SB ", " #TB ";\n}\n" \
                 : DOPS##N(d)                                                                  \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(sd))

// mode: bit 0 imm-trans-a, bit 1 imm-trans-b; 4: imm-scale-a -1 (trans-a), 5: imm-scale-b -1
// (trans-b). A in registers has no trans-a.
#define MMA_s(N, TN)                                                                           \
    __device__ __forceinline__ void mma_s_##TN##_##N(float* d, const unsigned* a, u64 da,     \
                                                     u64 db, int sd, int mode)                 \
    {                                                                                          \
        switch (mode) {                                                                        \
        case 0: WG_S(N, #TN, 1, 1, 0, 0); break;                                               \
        case 1: WG_S(N, #TN, 1, 1, 1, 0); break;                                               \
        case 2: WG_S(N, #TN, 1, 1, 0, 1); break;                                               \
        case 3: WG_S(N, #TN, 1, 1, 1, 1); break;                                               \
        case 4: WG_S(N, #TN, -1, 1, 1, 0); break;                                              \
        default: WG_S(N, #TN, 1, -1, 0, 1); break;                                             \
        }                                                                                      \
    }
#define MMA_r(N, TN)                                                                           \
    __device__ __forceinline__ void mma_r_##TN##_##N(float* d, const unsigned* a, u64 da,     \
                                                     u64 db, int sd, int mode)                 \
    {                                                                                          \
        switch (mode) {                                                                        \
        case 0: case 1: WG_R(N, #TN, 1, 1, 0); break;                                          \
        case 2: case 3: WG_R(N, #TN, 1, 1, 1); break;                                          \
        case 4: WG_R(N, #TN, -1, 1, 0); break;                                                 \
        default: WG_R(N, #TN, 1, -1, 1); break;                                                \
        }                                                                                      \
    }

typedef void (*Mma)(float*, const unsigned*, u64, u64, int, int);

template <int N, Mma MMA>
__device__ void run(const unsigned short* A, const unsigned* offA, int nA, const unsigned short* B,
                    const unsigned* offB, int nB, u64 da, u64 db, u64 dka, u64 dkb,
                    const unsigned* areg, const float* C, float* D, int flags)
{
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    unsigned raw = (unsigned)__cvta_generic_to_shared(smem_raw);
    unsigned char* smem = smem_raw + (((raw + 1023) & ~1023u) - raw);
    unsigned base = (unsigned)__cvta_generic_to_shared(smem);
    int tid = threadIdx.x;
    for (int i = tid; i < nA; i += blockDim.x) *(unsigned short*)(smem + offA[i]) = A[i];
    for (int i = tid; i < nB; i += blockDim.x) *(unsigned short*)(smem + offB[i]) = B[i];
    if (flags & 1) asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    __syncthreads();
    if (flags & 16) asm volatile("fence.proxy.async;" ::: "memory");
    da += base >> 4;
    db += base >> 4;
    float d[N / 2];
    for (int i = 0; i < N / 2; i++) d[i] = C[tid * (N / 2) + i];
    unsigned a[4], a2[4];
    for (int r = 0; r < 4; r++) {
        a[r] = areg[tid * 4 + r];
        a2[r] = areg[(blockDim.x + tid) * 4 + r];
    }
    int mode = (flags >> 8) & 7;
    if (flags & 2) asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
    if (!((flags & 32) && tid >= 96)) {
        MMA(d, a, da, db, (flags >> 3) & 1, mode);
        if (flags & 2048) asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        if (flags & 64) MMA(d, a2, da + dka, db + dkb, 1, mode);
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        if (flags & 4) D[tid * (N / 2)] = d[0];
        if (flags & 8192) ((unsigned*)D)[tid * (N / 2) + 1] = a[0];
        asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
        if (flags & 4096) D[tid * (N / 2)] = d[0];
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
    }
    for (int i = 0; i < N / 2; i++) asm volatile("" : "+f"(d[i])::"memory");
    for (int i = 0; i < N / 2; i++) D[tid * (N / 2) + i] = d[i];
}

#define KERNEL(N, TN, S)                                                                       \
    MMA_##S(N, TN)                                                                             \
    extern "C" __global__ void wg_##TN##_n##N##_##S(                                           \
        const unsigned short* A, const unsigned* offA, int nA, const unsigned short* B,        \
        const unsigned* offB, int nB, u64 da, u64 db, u64 dka, u64 dkb, const unsigned* areg,  \
        const float* C, float* D, int flags)                                                   \
    {                                                                                          \
        run<N, mma_##S##_##TN##_##N>(A, offA, nA, B, offB, nB, da, db, dka, dkb, areg, C, D,   \
                                     flags);                                                   \
    }
#define KERNELS(N) KERNEL(N, f16, s) KERNEL(N, bf16, s) KERNEL(N, f16, r) KERNEL(N, bf16, r)

KERNELS(8)
KERNELS(16)
KERNELS(64)
KERNELS(128)
KERNELS(192)
KERNELS(256)
