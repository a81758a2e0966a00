//! The `samrt._samrt` extension: the Rust side of the `samrt` Python package.
//!
//! The Python layer (python/samrt/) gives the official `segment_anything` signatures and
//! coerces arguments to the exact dtypes and shapes this module takes, so every function here
//! receives typed, contiguous arrays, checks them again (it is callable directly), and runs
//! the computation with the GIL released. Every error is a Python exception: ValueError for
//! bad input, OSError for files, RuntimeError for what the runtime cannot do.

mod amg;
mod convert;
mod model;

use pyo3::exceptions::PyValueError;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError};
use pyo3::prelude::*;
use std::path::PathBuf;

/// samrt's one error type as the Python exception a caller of the official API expects.
pub(crate) fn to_py(e: samrt::Error) -> PyErr {
    use samrt::Error as E;
    let msg = e.to_string();
    match &e {
        E::Io { source, .. } => match source.kind() {
            std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
            std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
            _ => PyOSError::new_err(msg),
        },
        E::Zip(_)
        | E::Pickle(_)
        | E::Checkpoint(_)
        | E::MissingTensor(_)
        | E::Shape { .. }
        | E::Config(_)
        | E::Image(_)
        | E::Prompt(_)
        | E::Npy(_)
        | E::Embedding(_)
        | E::NonFinite(_) => PyValueError::new_err(msg),
        E::Cuda(_) | E::Unsupported(_) => PyRuntimeError::new_err(msg),
    }
}

/// Reads an image file as `np.array(Image.open(path).convert("RGB"))` does: HxWx3 uint8,
/// the same pixels as Pillow (grayscale replicated, alpha dropped).
#[pyfunction]
fn load_image<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, numpy::PyArray3<u8>>> {
    let img = py
        .detach(|| samrt::io::image::load_image(&path))
        .map_err(to_py)?;
    convert::array(py, img.data, [img.height, img.width, 3])
}

#[pymodule]
fn _samrt(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_class::<model::Embedding>()?;
    m.add_function(wrap_pyfunction!(load_image, m)?)?;
    m.add_function(wrap_pyfunction!(amg::generate, m)?)?;
    m.add("CUDA_BUILT", cfg!(feature = "cuda"))?;
    m.add(
        "MAX_PROMPTS_PER_IMAGE",
        samrt::amg::generator::MAX_PROMPTS_PER_IMAGE,
    )?;
    Ok(())
}
