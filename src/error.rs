//! The library's one error type. Every fallible path returns it; the CLI adds context.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// An OS-level failure on a named file.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A zip container that is truncated, corrupt or uses a feature we do not read.
    Zip(String),
    /// A pickle stream outside the subset torch.save writes, or malformed.
    Pickle(String),
    /// A checkpoint whose structure is wrong: bad header, offsets out of range, bad dtype.
    Checkpoint(String),
    /// A tensor the model needs is absent.
    MissingTensor(String),
    /// A tensor is present with the wrong shape.
    Shape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// The tensor shapes do not describe a SAM model we can run.
    Config(String),
    /// An image that cannot be decoded or is out of the supported range.
    Image(String),
    /// A prompt that is invalid (NaN coordinates, bad labels, wrong mask shape).
    Prompt(String),
    /// A .npy file that is malformed or of the wrong dtype/shape.
    Npy(String),
    /// A saved image embedding that is malformed or belongs to another model.
    Embedding(String),
    /// The CUDA backend is unavailable or failed.
    Cuda(String),
    /// A request the library does not support.
    Unsupported(String),
    /// NaN or infinity where every value must be finite: in a checkpoint's tensor, or in the
    /// model's output. Finite weights far outside a trained model's range overflow f32 inside
    /// the model, and NaN scores would otherwise print as `null` next to empty masks.
    NonFinite(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// "1 tensor", "2 tensors": counts in messages read as English.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {}", path.display(), source),
            Error::Zip(m) => write!(f, "invalid zip container: {m}"),
            Error::Pickle(m) => write!(f, "invalid pickle stream: {m}"),
            Error::Checkpoint(m) => write!(f, "invalid checkpoint: {m}"),
            Error::MissingTensor(n) => write!(f, "checkpoint is missing tensor `{n}`"),
            Error::Shape {
                name,
                expected,
                got,
            } => write!(
                f,
                "tensor `{name}` has shape {got:?}, expected {expected:?}"
            ),
            Error::Config(m) => write!(f, "unsupported model configuration: {m}"),
            Error::Image(m) => write!(f, "invalid image: {m}"),
            Error::Prompt(m) => write!(f, "invalid prompt: {m}"),
            Error::Npy(m) => write!(f, "invalid .npy file: {m}"),
            Error::Embedding(m) => write!(f, "invalid image embedding: {m}"),
            Error::Cuda(m) => write!(f, "CUDA: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::NonFinite(m) => write!(f, "non-finite values: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
