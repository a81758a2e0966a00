//! The official automatic mask generator (`SamAutomaticMaskGenerator`, "segment everything")
//! and its building blocks from `segment_anything/utils/amg.py`, each reproducing the
//! official arithmetic so that `generate` keeps and orders masks as it does.
//!
//! [`generator`] drives the algorithm over a [`source::MaskSource`] (the SAM model, or
//! synthetic masks in the tests); [`geometry`], [`regions`] and [`rle`] are amg.py's helpers;
//! [`output`] writes `scripts/amg.py`'s files from [`record::MaskRecord`]s. With the `cuda`
//! feature, [`device`] runs the decoder and everything per mask on a CUDA device.

#[cfg(feature = "cuda")]
pub mod device;
pub mod engine;
pub mod generator;
pub mod geometry;
pub mod output;
pub mod record;
pub mod regions;
pub mod rle;
pub mod source;

pub use engine::AutoGenerator;
pub use generator::{generate, generate_with, generate_with_progress, AmgConfig, Progress};
pub use record::MaskRecord;
pub use source::MaskSource;
