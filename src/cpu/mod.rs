//! f32 CPU reference backend. Each op lives in its own file under the name its CUDA twin
//! uses.
pub mod attention;
pub mod cast_rows;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod decoder_attention;
pub mod folded_attention;
pub mod gelu;
pub mod gemm;
pub mod layer_norm;
pub mod output_upscaling;
pub mod patch_embed;
pub mod preprocess_patchify;
pub mod residual_init;
pub mod softmax;
pub mod strided_conv2d;
pub mod vmath;
