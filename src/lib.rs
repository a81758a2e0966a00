//! samrt: Segment Anything inference with an exact f32 CPU backend and hand-written CUDA
//! kernels.
//!
//! The tree tells the design: [`sam`] is the API, [`io`] reads and writes files, [`amg`] is
//! the automatic mask generator, [`cpu`] and [`cuda`] are the two backends (each a `model`
//! over its `ops`), and [`graph`] is the host side of a scheduled graph of named ops over one
//! planned arena. Imports run one way: amg -> sam -> cuda -> cpu -> io -> error, with graph
//! under cuda and sam (`tools/check_layout.py` fails on any import circle, between files or
//! between these folders, and on an import up to a parent module or from ops up to a model).
pub mod amg;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod graph;
pub mod io;
pub mod sam;

pub use error::{Error, Result};
pub use sam::predictor::{
    ComputeDevice, ImageEmbedding, LoadOptions, LogitsPrediction, Prediction, Prompt, Sam,
};

/// `samrt::preprocess`, the image entry points of earlier releases (README, Python package).
pub mod preprocess {
    pub use crate::cpu::ops::preprocess_patchify::{preprocess, PIXEL_MEAN, PIXEL_STD};
    pub use crate::io::image::*;
}
/// `samrt::predictor`, as in earlier releases.
pub use sam::predictor;
/// `samrt::automatic_mask_generator`, as in earlier releases.
pub mod automatic_mask_generator {
    pub use crate::amg::generator::*;
    pub use crate::amg::record::MaskRecord;
    pub use crate::amg::source::{MaskSource, SamCrop};
}

/// Module paths of earlier releases, kept so that code written against them still builds.
#[doc(hidden)]
pub use {
    cpu::model::{image_encoder, mask_decoder, prompt_encoder, two_way_transformer},
    cpu::ops::postprocess,
    io::image::jpeg,
    io::{checkpoint, config, fs, npy, weights},
    sam::embedding_file,
};
