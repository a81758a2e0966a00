//! Arrays across the boundary: results move into numpy without a copy (numpy takes over the
//! Rust allocation), and inputs are read in place when C-contiguous.

use numpy::ndarray::Dim;
use numpy::{Element, PyArray, PyArray1, PyArrayMethods, PyReadonlyArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// A Rust vector as a numpy array of `shape`, owning the vector's memory (no copy).
pub fn array<'py, T: Element, const N: usize>(
    py: Python<'py>,
    data: Vec<T>,
    shape: [usize; N],
) -> PyResult<Bound<'py, PyArray<T, Dim<[usize; N]>>>>
where
    [usize; N]: numpy::ndarray::IntoDimension<Dim = Dim<[usize; N]>>,
{
    PyArray1::from_vec(py, data).reshape(shape)
}

/// The elements of a C-contiguous array, in place; `what` names the argument in the error.
pub fn slice<'a, T: Element, D: numpy::ndarray::Dimension>(
    a: &'a PyReadonlyArray<'_, T, D>,
    what: &str,
) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a C-contiguous array (np.ascontiguousarray makes one)"
        ))
    })
}

/// A shape as Python prints it: `(1, 64, 64)`, `(4,)`, `()`.
pub fn py_shape(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        dims => {
            let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// `Err(ValueError)` unless the array's shape is one of `allowed` (`None` = any length).
pub fn check_shape<T: Element, D: numpy::ndarray::Dimension>(
    a: &PyReadonlyArray<'_, T, D>,
    what: &str,
    allowed: &[&[Option<usize>]],
    expected: &str,
) -> PyResult<()> {
    let shape = a.shape();
    let ok = allowed.iter().any(|want| {
        want.len() == shape.len()
            && want
                .iter()
                .zip(shape)
                .all(|(w, &s)| w.is_none_or(|w| w == s))
    });
    if ok {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{what} must have shape {expected}, got {}",
            py_shape(shape)
        )))
    }
}
