//! One file per op. An op that also runs on the GPU lives in the file named after its kernel
//! family (`kernels/<family>.cu`, `cuda/ops/<family>.rs`).

pub mod attention;
pub mod attn_decoder;
pub mod attn_fold_i2t;
pub mod attn_fold_t2i;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod conv_transpose2x2;
pub mod folded_attention;
pub mod gelu;
pub mod gemm;
pub mod image_tokens;
pub mod interpolate;
pub mod layer_norm;
pub mod layer_norm_pe;
pub mod nms;
pub mod output_upscaling;
pub mod postprocess;
pub mod preprocess_patchify;
pub mod prompt_encoder;
pub mod residual_init;
pub mod softmax;
pub mod strided_conv2d;
pub mod token_linear;
pub mod vmath;
