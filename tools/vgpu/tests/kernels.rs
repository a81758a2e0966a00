//! End-to-end tests of the simulator: CUDA C++ kernels compiled to PTX by nvcc at test time,
//! run on `cuda::sim`, checked against host values computed from the PTX ISA definitions.
//! One test binary (one nvcc compile per .cu file per run); the instruction families live in
//! the modules below.
// Index loops mirror the kernels' thread indexing, and `!(a <= b)` spells out the
// unordered comparisons under test (true on NaN), which partial_cmp would hide.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

mod common;

#[path = "kernels/float.rs"]
mod float;
#[path = "kernels/int.rs"]
mod int;
#[path = "kernels/mem.rs"]
mod mem;
#[path = "kernels/mma.rs"]
mod mma;
#[path = "kernels/tma.rs"]
mod tma;
#[path = "kernels/warp.rs"]
mod warp;
#[path = "kernels/wgmma.rs"]
mod wgmma;
