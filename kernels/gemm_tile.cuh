// Pieces shared by the portable GEMM (gemm.cu, mma.sync) and the Hopper one (gemm_sm90a.cu,
// wgmma): the 128 B-swizzled shared tile layout and its cp.async row loader, GELU, and the
// epilogue that applies the scales and stores a warp's accumulators. gemm.cu's top comment
// describes the layout, bounds and scale semantics both kernels share.
#pragma once

#include "common.cuh"

namespace samrt::gemm {

constexpr int BK = 64;      // fp16 per tile row: 128 B = 8 chunks of 16 B
constexpr int CHUNKS = BK / 8;

enum Epilogue { EPI_BIAS = 0, EPI_BIAS_GELU = 1, EPI_BIAS_RESIDUAL = 2 };

// GELU, 0.5 x (1 + erf(x / sqrt 2)), with erf from Abramowitz & Stegun 7.1.26:
// erf(z) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-z^2), t = 1 / (1 + p z), z >= 0, absolute
// error <= 1.5e-7 (absolute, so gelu's error is <= |x| 7.5e-8: below the fp16 rounding of
// the stored output, 2^-11 relative, wherever that output is not tiny), at about half the instructions of erff, which dominated the epilogue. With
// q = (1 - erf(|x| / sqrt 2)) / 2, gelu(x) = x (1 - q) for x >= 0 and x q below, i.e.
// max(x, 0) - |x| q.
SAMRT_DEVICE float gelu_as(float x) {
    const float ax = fabsf(x);
    const float t = __frcp_rn(fmaf(0.3275911f * 0.70710678118654752f, ax, 1.0f));
    // The A&S coefficients halved (q carries the 1/2) and negated: the Horner steps give
    // exactly -poly (round to nearest is symmetric), so qn = -q and the last fma needs no
    // negation of |x| (an instruction per element).
    float poly = fmaf(-0.5307027145f, t, 0.7265760135f);
    poly = fmaf(poly, t, -0.7107068705f);
    poly = fmaf(poly, t, 0.142248368f);
    poly = fmaf(poly, t, -0.127414796f);
    // exp(-x^2 / 2) = 2^(-x^2 log2(e) / 2).
    const float qn = poly * t * exp2f(ax * ax * -0.72134752044448170f);
    return fmaf(ax, qn, fmaxf(x, 0.0f));
}

// Byte offset of (row, 16 B chunk) inside a swizzled [rows][64] fp16 tile.
SAMRT_DEVICE uint32_t swz(int row, int chunk) {
    return static_cast<uint32_t>(row * (BK * 2) + ((chunk ^ (row & 7)) << 4));
}

// A whole 16 B global->shared copy to dst + OFF bytes (the offset an immediate): the fast
// path of a tile whose rows and k range are all inside the matrix.
template <int OFF>
SAMRT_DEVICE void cp_async_16_full(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0+%2], [%1], 16;\n" ::"r"(dst), "l"(src), "n"(OFF)
                 : "memory");
}

// Copies `ROWS` rows of the [rows][K] matrix at row0 (this thread's chunk of its first row,
// k = 0) for stage k0 to the swizzled tile whose first slot, for this thread, is at dst + OFF
// (dst = tile + swz(r, chunk)). Thread t copies chunk t % 8 of rows t / 8 + i * ROW_STEP;
// ROW_STEP is a multiple of 8, so the swizzle term row & 7 is the thread's own and slot i's
// destination is an immediate past the first. When every row and k is inside (`inside`,
// block-uniform) that is an add and a cp.async per slot; otherwise each slot tests its row
// bit in `ok` and k, and zero-fills what is outside.
template <int ROWS, int ROW_STEP, int OFF>
SAMRT_DEVICE void load_rows_at(uint32_t dst, const __half* base, const __half* row0, unsigned ok,
                               int K, int k0, bool inside) {
    constexpr int SLOTS = (ROWS + ROW_STEP - 1) / ROW_STEP;
    const int chunk = threadIdx.x % CHUNKS;
    const int r = threadIdx.x / CHUNKS;
    const size_t step = static_cast<size_t>(ROW_STEP) * K;
    const __half* p = row0 + k0;
    // Only the last slot can hold rows past the tile (ROWS % ROW_STEP != 0).
    const bool last = ROWS % ROW_STEP == 0 || r + (SLOTS - 1) * ROW_STEP < ROWS;
    if (inside) {
        samrt::static_for<0, SLOTS>([&](auto ii) {
            constexpr int i = decltype(ii)::value;
            if (i < SLOTS - 1 || last) cp_async_16_full<OFF + i * ROW_STEP * BK * 2>(dst, p);
            p += step;
        });
        return;
    }
    const bool kin = k0 + chunk * 8 < K;
    samrt::static_for<0, SLOTS>([&](auto ii) {
        constexpr int i = decltype(ii)::value;
        if (i < SLOTS - 1 || last) {
            const bool v = kin && ((ok >> i) & 1u);
            samrt::cp_async_16_to<OFF + i * ROW_STEP * BK * 2>(dst, v ? p : base, v);
        }
        p += step;
    });
}

// load_rows_at for a tile address known only at run time.
template <int ROWS, int ROW_STEP>
SAMRT_DEVICE void load_rows(uint32_t tile, const __half* base, const __half* row0, unsigned ok,
                            int K, int k0, bool inside) {
    const uint32_t dst = tile + swz(threadIdx.x / CHUNKS, threadIdx.x % CHUNKS);
    load_rows_at<ROWS, ROW_STEP, 0>(dst, base, row0, ok, K, k0, inside);
}

// A loader of ROWS rows of a dense row-major [rows][K] matrix (A with ROWS = BM, or the
// weight with ROWS = BN): thread t copies chunk t % 8 of rows t / 8 + i * ROW_STEP, where
// T::ROW_STEP = threads / 8 is the rows one pass of the block's threads copies. Row
// validity is fixed per slot (a bit mask); the per-stage k test only matters in the last,
// ragged stage.
template <class T, int ROWS>
struct DenseRows {
    const __half* a;
    int rows, K;
    const __half* row0;  // this thread's chunk in its first row, at k = 0
    unsigned ok;         // bit i: slot i's row is inside `rows` (and inside the tile)
    bool all;            // every row of the block's tile is inside `rows`

    SAMRT_DEVICE void init(int r0) {
        const int r = threadIdx.x / CHUNKS;
        ok = 0;
        all = r0 + ROWS <= rows;
#pragma unroll
        for (int i = 0; i < (ROWS + T::ROW_STEP - 1) / T::ROW_STEP; ++i) {
            const int row = r + i * T::ROW_STEP;
            if (row < ROWS && r0 + row < rows) ok |= 1u << i;
        }
        row0 = a + static_cast<size_t>(r0 + r) * K + (threadIdx.x % CHUNKS) * 8;
    }

    SAMRT_DEVICE void load(uint32_t s, int k0) {
        load_rows<ROWS, T::ROW_STEP>(s, a, row0, ok, K, k0, all && k0 + BK <= K);
    }

    // The tile at dst0 + OFF, dst0 = this thread's first slot in stage 0 (swz(r, chunk) past
    // the operand's stage-0 tile): a main loop unrolled over the stages passes each stage's
    // offset as an immediate.
    template <int OFF>
    SAMRT_DEVICE void load_at(uint32_t dst0, int k0) {
        load_rows_at<ROWS, T::ROW_STEP, OFF>(dst0, a, row0, ok, K, k0, all && k0 + BK <= K);
    }
};

// The plain case, which every layer of a real checkpoint takes (no row scale, in_scale ==
// out_scale == 1; block-uniform): the accumulators start at the bias, so the epilogue
// neither reads the bias nor scales, two instructions per element fewer where a GELU
// costs 14 (the MLP's first GEMM is issue-bound). y = bias + sum rather than sum + bias:
// a different fp32 rounding of the same value, and the same one for every tile and batch.
SAMRT_DEVICE bool plain_scales(const float* row_scale, float in_scale, float out_scale) {
    return row_scale == nullptr && in_scale == 1.0f && out_scale == 1.0f;
}

// What the accumulators of n8 block ni start from, per column pair (the layout of store_acc
// below): 0, or their columns' bias when `plain` (columns at or past N, never stored, get 0).
// The load is one predicated instruction, not a branch: where the compiler branched, the
// accumulators' first values came from several blocks, and ptxas then serialised every
// wgmma of the Hopper GEMMs (its warning C7515, "non wgmma instructions defining
// accumulator registers"), each waiting for the one before; tools/check-ptxas.sh fails on it.
template <int NI>
SAMRT_DEVICE void acc_start(float2 (&c)[NI], int lane, int wcol, bool plain,
                            const float* __restrict__ bias, int N) {
    const float* bias_t = bias + wcol + 2 * (lane & 3);
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const bool load = plain && bias != nullptr && wcol + ni * 8 + 2 * (lane & 3) < N;
        float2 v = make_float2(0.0f, 0.0f);
        asm volatile(
            "{\n.reg .pred q;\nsetp.ne.b32 q, %2, 0;\n@q ld.global.v2.f32 {%0, %1}, [%3];\n}\n"
            : "+f"(v.x), "+f"(v.y)
            : "r"(static_cast<int>(load)), "l"(bias_t + ni * 8));
        c[ni] = v;
    }
}

// Sets a warp's accumulators to acc_start's values.
template <int MI, int NI>
SAMRT_DEVICE void init_acc(float (&acc)[MI][NI][4], int lane, int wcol, bool plain,
                           const float* __restrict__ bias, int N) {
    float2 c[NI];
    acc_start(c, lane, wcol, plain, bias, N);
#pragma unroll
    for (int ni = 0; ni < NI; ++ni)
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            acc[mi][ni][0] = acc[mi][ni][2] = c[ni].x;
            acc[mi][ni][1] = acc[mi][ni][3] = c[ni].y;
        }
}

// Applies the epilogue to, and stores, one warp's accumulators in the mma.sync C-fragment
// layout (which wgmma's m64nN accumulators share, per warp and n8 block): MI m16 row blocks
// from row `wrow`, NI n8 column blocks from column `wcol`, g = lane / 4 holding rows g and
// g + 8 of each, columns 2 (lane % 4) and the next. `inside` (block-uniform): every row and
// column of the block's tile is inside the matrix, so nothing needs a bounds test.
// `plain`: the accumulators already hold the bias and there is nothing to scale (init_acc).
template <int EPI, int MI, int NI>
SAMRT_DEVICE void store_acc(const float (&acc)[MI][NI][4], int lane, int wrow, int wcol,
                            bool inside, bool plain, const float* __restrict__ bias,
                            const float* __restrict__ row_scale, float in_scale,
                            float out_scale, void* __restrict__ out, int M, int N) {
    const int g = lane >> 2;
    const int t = lane & 3;
    // in_scale * row_scale[row] for the 2 MI rows this thread stores: one uniform branch
    // here, a plain FMA per element below.
    float rs[MI][2];
    if (row_scale != nullptr) {
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = wrow + mi * 16 + g + h * 8;
                rs[mi][h] = row < M ? in_scale * row_scale[row] : 0.0f;
            }
    } else {
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int h = 0; h < 2; ++h) rs[mi][h] = in_scale;
    }
    // Stores the thread's outputs; CHECKED tests rows against M and columns against N (N is
    // even, so col < N implies col + 1 < N). A block wholly inside the matrix takes the
    // unchecked instance, where each column pair is an immediate offset from its row. The
    // bias pair is re-read per row (an L1 hit): holding all NI pairs in registers spills the
    // GELU instances.
    const float* bias_t = bias + wcol + 2 * t;
    auto store = [&](auto checked, auto is_plain) {
        constexpr bool CHECKED = decltype(checked)::value != 0;
        constexpr bool PLAIN = decltype(is_plain)::value != 0;
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                const int row = wrow + mi * 16 + g + h * 8;
                if (CHECKED && row >= M) continue;
                const size_t base = static_cast<size_t>(row) * N + wcol + 2 * t;
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) {
                    if (CHECKED && wcol + ni * 8 + 2 * t >= N) continue;
                    float v0 = acc[mi][ni][2 * h];
                    float v1 = acc[mi][ni][2 * h + 1];
                    if constexpr (!PLAIN) {
                        const float2 b =
                            bias != nullptr ? *reinterpret_cast<const float2*>(bias_t + ni * 8)
                                            : make_float2(0.0f, 0.0f);
                        v0 = fmaf(v0, rs[mi][h], b.x);
                        v1 = fmaf(v1, rs[mi][h], b.y);
                    }
                    const size_t off = base + ni * 8;
                    if constexpr (EPI == EPI_BIAS_RESIDUAL) {
                        float2* p = reinterpret_cast<float2*>(static_cast<float*>(out) + off);
                        float2 r = *p;
                        r.x += v0;
                        r.y += v1;
                        *p = r;
                    } else {
                        if constexpr (EPI == EPI_BIAS_GELU) {
                            v0 = gelu_as(v0);
                            v1 = gelu_as(v1);
                        }
                        if constexpr (!PLAIN) {
                            v0 *= out_scale;
                            v1 *= out_scale;
                        }
                        *reinterpret_cast<uint32_t*>(static_cast<__half*>(out) + off) =
                            samrt::pack_half2(v0, v1);
                    }
                }
            }
        }
    };
    if (plain) {
        if (inside)
            store(samrt::Int<0>{}, samrt::Int<1>{});
        else
            store(samrt::Int<1>{}, samrt::Int<1>{});
    } else if (inside) {
        store(samrt::Int<0>{}, samrt::Int<0>{});
    } else {
        store(samrt::Int<1>{}, samrt::Int<0>{});
    }
}

}  // namespace samrt::gemm
