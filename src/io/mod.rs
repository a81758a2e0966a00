//! Everything that crosses the process boundary: checkpoints (`.pth`, safetensors, the
//! cache), the weight access the model modules use, the configuration inferred from shapes,
//! images, `.npy` files and atomic writes.

pub mod checkpoint;
pub mod config;
pub mod fs;
pub mod image;
pub mod npy;
pub mod weights;
