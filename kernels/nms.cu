// Box non-maximum suppression for the automatic mask generator (src/cuda/ops/nms.rs), the
// torchvision batched_nms the official generator calls, as a suppression bit matrix.
//
// Boxes arrive sorted by descending score. Block (row tile, column tile) of 64x64: thread r
// compares box i = 64*row_tile + r with the column tile's boxes (staged in shared memory) and
// sets bit c of word mask[i][col_tile] when j = 64*col_tile + c comes after i and
// IoU(i, j) > thresh. The host then walks the boxes in order once, keeping a box unless an
// earlier kept box has its bit set: the same greedy result as the CPU loop. IoU uses the CPU
// reference's operations, each rounded explicitly (no FMA contraction), min/max as Rust's
// f32::min/max (fminf/fmaxf), and the comparison in double as `ovr as f64 > thresh`.

#include <stdint.h>

#define NMS_TILE 64

__device__ __forceinline__ float box_area(float4 b) {
    return __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
}

extern "C" __global__ void nms_mask_f32(const float4* __restrict__ boxes, int n, double thresh,
                                        unsigned long long* __restrict__ mask) {
    const int row_tile = blockIdx.y, col_tile = blockIdx.x;
    if (col_tile < row_tile) return;  // only j > i matters
    __shared__ float4 cols[NMS_TILE];
    __shared__ float col_area[NMS_TILE];
    const int words = (n + NMS_TILE - 1) / NMS_TILE;
    const int cj = col_tile * NMS_TILE + threadIdx.x;
    if (cj < n) {
        cols[threadIdx.x] = boxes[cj];
        col_area[threadIdx.x] = box_area(boxes[cj]);
    }
    __syncthreads();
    const int i = row_tile * NMS_TILE + threadIdx.x;
    if (i >= n) return;
    const float4 bi = boxes[i];
    const float ai = box_area(bi);
    const int ncols = min(NMS_TILE, n - col_tile * NMS_TILE);
    const int start = (col_tile == row_tile) ? threadIdx.x + 1 : 0;
    unsigned long long bits = 0;
    for (int c = start; c < ncols; ++c) {
        const float4 bj = cols[c];
        const float w = fmaxf(__fsub_rn(fminf(bi.z, bj.z), fmaxf(bi.x, bj.x)), 0.0f);
        const float h = fmaxf(__fsub_rn(fminf(bi.w, bj.w), fmaxf(bi.y, bj.y)), 0.0f);
        const float inter = __fmul_rn(w, h);
        const float ovr = __fdiv_rn(inter, __fsub_rn(__fadd_rn(ai, col_area[c]), inter));
        if ((double)ovr > thresh) bits |= 1ull << c;
    }
    mask[(long long)i * words + col_tile] = bits;
}
