//! SAM's modules as schedules of named CUDA ops, and the fp16 storage numerics they need.
//! Host-only apart from `encoder_exec`, which binds the encoder schedule to a device.

pub mod encoder;
#[cfg(feature = "cuda")]
pub mod encoder_exec;
pub mod scales;
