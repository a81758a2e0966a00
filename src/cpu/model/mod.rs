//! SAM's modules in f32, named after the official ones (`ImageEncoderViT`,
//! `PromptEncoder`, `TwoWayTransformer`, `MaskDecoder`) so that weights and fixtures map
//! one to one. Each computes through the ops of [`crate::cpu::ops`].

pub mod image_encoder;
pub mod mask_decoder;
pub mod prompt_encoder;
pub mod random_weights;
pub mod two_way_transformer;
