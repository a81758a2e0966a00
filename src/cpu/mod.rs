//! f32 CPU reference backend. Each op lives in its own file under the name its CUDA twin
//! uses.
pub mod gelu;
pub mod gemm;
pub mod layer_norm;
pub mod softmax;
