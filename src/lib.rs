//! samrt: Segment Anything inference with an exact f32 CPU backend.
pub mod amg;
pub mod automatic_mask_generator;
pub mod checkpoint;
pub mod config;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod embedding_file;
pub mod error;
pub mod fs;
pub mod graph;
pub mod image_encoder;
pub mod jpeg;
pub mod mask_decoder;
pub mod npy;
pub mod postprocess;
pub mod predictor;
pub mod preprocess;
pub mod prompt_encoder;
pub mod two_way_transformer;
pub mod weights;

pub use error::{Error, Result};
pub use predictor::{ComputeDevice, ImageEmbedding, LogitsPrediction, Prediction, Prompt, Sam};
