//! Checkpoint files: the official PyTorch `.pth` (torch.save zip + pickle), read by our own
//! zip and pickle readers, and the fp16 safetensors file samrt converts it into once and then
//! memory-maps.
//!
//! Every reader treats its input as hostile: offsets and sizes are checked against the file
//! before anything is sliced or allocated, so a corrupt file yields an `Error`, never a panic.

pub mod cache;
pub mod fingerprint;
pub mod pickle;
pub mod pth;
pub mod safetensors;
pub mod tensor;
pub mod zip;

pub use cache::{cache_dir, cache_path, detect_format, load_model, open_model, Format};
pub use fingerprint::fingerprint;
pub use pth::{read_pth, read_pth_bytes};
pub use safetensors::{write_safetensors_f16, Checkpoint};

pub use crate::io::weights::TensorF16;
pub use tensor::{checked_numel, DType};
