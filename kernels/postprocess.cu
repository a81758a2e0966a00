// Mask post-processing on the GPU (src/cuda/ops/postprocess.rs): PyTorch's CPU bilinear
// F.interpolate reproduced to the last bit, then threshold, bit-packing, area and box.
//
// The CPU reference (src/cpu/ops/postprocess.rs) pins down which products PyTorch fuses into FMAs.
// Here every rounding is explicit (__fmaf_rn / __fmul_rn) so nvcc cannot contract or split
// anything differently: the GPU result equals the CPU one bit for bit. Source indices and
// weights per output row/column are computed once on the host by the same code as the CPU
// path and passed in as tables.
//
// Layouts: masks are planes [M, H, W] (row stride and plane stride given, so a crop of the
// 1024x1024 upsample is read in place). Grid: x = output columns (or 32-pixel words),
// y = output rows, z = masks. The first pass of a resize reads source plane planes[z] when
// `planes` is not null (the requested masks of a decoder batch, picked in place), else z.

#include <stdint.h>

// Generic kernel, W pass: tmp[m, y, c] = fma(row[i0[c]], l0[c], row[i1[c]] * l1[c]).
extern "C" __global__ void bilinear_w_f32(const float* __restrict__ src, int row_stride,
                                          long long plane_stride,
                                          const int* __restrict__ planes, int rows,
                                          const int* __restrict__ i0,
                                          const int* __restrict__ i1,
                                          const float* __restrict__ l0,
                                          const float* __restrict__ l1, int out_w,
                                          float* __restrict__ tmp) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y;
    const int m = blockIdx.z;
    if (c >= out_w) return;
    const long long p = planes ? planes[m] : m;
    const float* row = src + p * plane_stride + (long long)y * row_stride;
    const float a = row[i0[c]];
    const float b = row[i1[c]];
    tmp[((long long)m * rows + y) * out_w + c] = __fmaf_rn(a, l0[c], __fmul_rn(b, l1[c]));
}

// Generic kernel, H pass: out[m, r, c] = fma(tmp[i0[r], c], l0[r], tmp[i1[r], c] * l1[r]).
extern "C" __global__ void bilinear_h_f32(const float* __restrict__ tmp, int in_rows,
                                          const int* __restrict__ i0,
                                          const int* __restrict__ i1,
                                          const float* __restrict__ l0,
                                          const float* __restrict__ l1, int out_h, int w,
                                          float* __restrict__ out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y;
    const int m = blockIdx.z;
    if (c >= w) return;
    const float* t = tmp + (long long)m * in_rows * w;
    const float a = t[(long long)i0[r] * w + c];
    const float b = t[(long long)i1[r] * w + c];
    out[((long long)m * out_h + r) * w + c] = __fmaf_rn(a, l0[r], __fmul_rn(b, l1[r]));
}

// Channels-last kernel (PyTorch's choice for small outputs): weights h_i * w_j, then
// fma(x11, w11, fma(x10, w10, fma(x00, w00, x01 * w01))).
extern "C" __global__ void bilinear_channels_last_f32(
    const float* __restrict__ src, int row_stride, long long plane_stride,
    const int* __restrict__ planes, const int* __restrict__ hi0, const int* __restrict__ hi1, const float* __restrict__ hl0,
    const float* __restrict__ hl1, int out_h, const int* __restrict__ wi0,
    const int* __restrict__ wi1, const float* __restrict__ wl0, const float* __restrict__ wl1,
    int out_w, float* __restrict__ out) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y;
    const int m = blockIdx.z;
    if (c >= out_w) return;
    const float h0 = hl0[r], h1 = hl1[r], w0 = wl0[c], w1 = wl1[c];
    const float w00 = __fmul_rn(h0, w0), w01 = __fmul_rn(h0, w1);
    const float w10 = __fmul_rn(h1, w0), w11 = __fmul_rn(h1, w1);
    const long long p = planes ? planes[m] : m;
    const float* r0 = src + p * plane_stride + (long long)hi0[r] * row_stride;
    const float* r1 = src + p * plane_stride + (long long)hi1[r] * row_stride;
    float s = __fmaf_rn(r0[wi0[c]], w00, __fmul_rn(r0[wi1[c]], w01));
    s = __fmaf_rn(r1[wi0[c]], w10, s);
    out[((long long)m * out_h + r) * out_w + c] = __fmaf_rn(r1[wi1[c]], w11, s);
}

// logits > 0 (strict: NaN is false) packed LSB-first, 32 pixels per word, each row padded to
// `words` words; per mask the pixel count and the box (min x, min y, max x, max y), which
// the host initialises to (INT_MAX, INT_MAX, -1, -1). One thread per word; the whole warp
// reaches the shuffles (no early return).
extern "C" __global__ void mask_threshold_pack(const float* __restrict__ logits, int h, int w,
                                               int words, uint32_t* __restrict__ bits,
                                               unsigned long long* __restrict__ area,
                                               int* __restrict__ box) {
    const int wi = blockIdx.x * blockDim.x + threadIdx.x;
    const int r = blockIdx.y;
    const int m = blockIdx.z;
    uint32_t word = 0;
    if (wi < words) {
        const float* row = logits + ((long long)m * h + r) * w;
        const int x0 = wi * 32;
        const int n = min(32, w - x0);
        for (int k = 0; k < n; ++k) {
            if (row[x0 + k] > 0.0f) word |= 1u << k;
        }
        bits[((long long)m * h + r) * words + wi] = word;
    }
    int cnt = __popc(word);
    for (int o = 16; o > 0; o >>= 1) cnt += __shfl_down_sync(0xffffffffu, cnt, o);
    if ((threadIdx.x & 31) == 0 && cnt != 0) atomicAdd(&area[m], (unsigned long long)cnt);
    if (word != 0) {
        const int xmin = wi * 32 + __ffs(word) - 1;
        const int xmax = wi * 32 + 31 - __clz(word);
        atomicMin(&box[m * 4 + 0], xmin);
        atomicMin(&box[m * 4 + 1], r);
        atomicMax(&box[m * 4 + 2], xmax);
        atomicMax(&box[m * 4 + 3], r);
    }
}

// The automatic mask generator's stability score inputs per mask: the number of logits
// above +offset and above -offset (official calculate_stability_score with threshold 0).
// Grid: x strides over the plane, z = masks; counts[m] = {above +offset, above -offset}.
extern "C" __global__ void mask_stability_counts(const float* __restrict__ logits,
                                                 long long plane, float offset,
                                                 unsigned long long* __restrict__ counts) {
    const int m = blockIdx.z;
    const float* p = logits + m * plane;
    unsigned int hi = 0, lo = 0;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < plane;
         i += (long long)gridDim.x * blockDim.x) {
        const float v = p[i];
        hi += v > offset;
        lo += v > -offset;
    }
    for (int o = 16; o > 0; o >>= 1) {
        hi += __shfl_down_sync(0xffffffffu, hi, o);
        lo += __shfl_down_sync(0xffffffffu, lo, o);
    }
    if ((threadIdx.x & 31) == 0) {
        if (hi) atomicAdd(&counts[2 * m], (unsigned long long)hi);
        if (lo) atomicAdd(&counts[2 * m + 1], (unsigned long long)lo);
    }
}
