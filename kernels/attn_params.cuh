// The parameter block of every attention entry point (attention.cu, attn_relpos_s64.cu).
#pragma once
#include <cuda_fp16.h>

// Mirrored field for field by `AttnParams` in src/cuda/ops/attention.rs (#[repr(C)]).
struct AttnParams {
    const __half* q;
    const __half* k;
    const __half* v;
    __half* o;
    const float* k_bias;  // relpos only: bias of the k part of qkv, indexed h*HD + c
    const float* v_bias;  // relpos only: bias of the v part
    const __half* rel_h;  // relpos only: [2S-1, HD]
    const __half* rel_w;  // relpos only: [2S-1, HD]
    long long q_batch;    // plain only: batch strides in elements
    long long k_batch;
    long long v_batch;
    long long o_batch;
    int q_ld;  // row strides in elements
    int k_ld;
    int v_ld;
    int o_ld;
    int lq;    // plain only: sequence lengths
    int lk;
    int grid;  // relpos only: tokens per image side
    int windows_per_side;  // relpos only: ceil(grid / S)
    int side;              // relpos only: S, the side of the attended square (window or grid)
    float scale;           // softmax scale of <q_scale*q, k> (head_dim^-0.5 unscaled)
    float q_scale;         // true q = q_scale * stored q (dot product and rel-pos terms)
    int pad_;
};

// The image and window of an encoder attention block: blockIdx.z = (b * wps + wy) * wps + wx
// with wps = windows_per_side (the launchers' grid z).
struct AttnWindow {
    int b, wy, wx;
    __device__ __forceinline__ explicit AttnWindow(const AttnParams& p) {
        const int wps = p.windows_per_side;
        const int win = blockIdx.z % (wps * wps);
        b = blockIdx.z / (wps * wps);
        wy = win / wps;
        wx = win % wps;
    }
};

// Token rows of an S x S square that lies wholly inside the grid (the S = 64 kernels: the
// grid is a multiple of 64, so no token of a square is padding).
struct AttnSquare {
    long long first;  // token row of square position (0, 0)
    int grid;
    __device__ __forceinline__ AttnSquare(const AttnParams& p, int side) : grid(p.grid) {
        const AttnWindow w(p);
        first = (static_cast<long long>(w.b) * grid + w.wy * side) * grid + w.wx * side;
    }
    // The token row of square position (ly, lx).
    __device__ __forceinline__ long long row_of(int ly, int lx) const {
        return first + static_cast<long long>(ly) * grid + lx;
    }
};
