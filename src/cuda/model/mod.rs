//! SAM's modules as schedules of named CUDA ops, and the fp16 storage numerics they need.
//! Host-only apart from `encoder_exec`, `mask_decoder_exec`, `mask_predict` and
//! `schedule_profile`, which bind the schedules to a device.

pub mod decoder_dims;
pub mod decoder_fold;
pub mod decoder_image;
pub mod decoder_prompts;
pub mod decoder_weights;
pub mod encoder;
#[cfg(feature = "cuda")]
pub mod encoder_exec;
pub mod mask_decoder;
#[cfg(feature = "cuda")]
pub mod mask_decoder_exec;
#[cfg(feature = "cuda")]
pub mod mask_predict;
pub mod scales;
#[cfg(feature = "cuda")]
pub mod schedule_profile;
mod token_groups;
