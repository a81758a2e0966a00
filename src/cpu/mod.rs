//! The f32 CPU backend: the oracle every other path is judged against, and a fast fallback.
//! [`model`] mirrors the official modules; [`ops`] holds one file per op, named as its CUDA
//! twin (`kernels/<op>.cu`, `cuda/ops/<op>.rs`) where it has one.

pub mod model;
pub mod ops;

/// `samrt::cpu::<op>` paths of earlier releases.
#[doc(hidden)]
pub use ops::*;
