//! samrt: Segment Anything inference with an exact f32 CPU backend.
pub mod config;
pub mod cpu;
pub mod error;
pub mod weights;

pub use error::{Error, Result};
