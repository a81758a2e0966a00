//! `SamAutomaticMaskGenerator.generate`: the library's generator, its records turned into
//! the official list of dicts (same keys, order and Python types).

use crate::convert::{array, check_shape, slice};
use crate::model::{check_size, Model};
use crate::to_py;
use numpy::{PyReadonlyArray2, PyReadonlyArray3, PyUntypedArrayMethods};
use pyo3::exceptions::{PyMemoryError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;
use samrt::amg::generator::AmgConfig;
use samrt::amg::AutoGenerator;
use samrt::amg::MaskRecord;
use samrt::io::image::from_rgb;

/// Most bytes of `binary_mask` segmentations one call may return (16 GiB): all records
/// exist at once, and a failed allocation would abort the interpreter.
const MAX_BINARY_MASKS: u128 = 1 << 34;

/// The official `output_mode` values.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Binary,
    Rle,
    Coco,
}

fn mode_of(s: &str) -> PyResult<Mode> {
    match s {
        "binary_mask" => Ok(Mode::Binary),
        "uncompressed_rle" => Ok(Mode::Rle),
        "coco_rle" => Ok(Mode::Coco),
        _ => Err(PyValueError::new_err(format!(
            "Unknown output_mode {s}: expected binary_mask, uncompressed_rle or coco_rle."
        ))),
    }
}

fn count(name: &str, v: i64, min: i64) -> PyResult<usize> {
    if v < min {
        return Err(PyValueError::new_err(format!(
            "{name} must be at least {min}, got {v}"
        )));
    }
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} {v} is too large")))
}

/// One record as the official dict: `segmentation, area, bbox, predicted_iou,
/// point_coords, stability_score, crop_box`, in that order. `mask` is the decoded
/// segmentation in binary_mask mode.
fn record<'py>(
    py: Python<'py>,
    r: &MaskRecord,
    mask: Option<Vec<bool>>,
    mode: Mode,
) -> PyResult<Bound<'py, PyDict>> {
    let rle = &r.segmentation;
    let seg = match (mode, mask) {
        (Mode::Binary, Some(m)) => array(py, m, [rle.h, rle.w])?.into_any(),
        (Mode::Coco, _) => {
            let d = PyDict::new(py);
            d.set_item("size", [rle.h, rle.w])?;
            d.set_item("counts", rle.coco_string())?;
            d.into_any()
        }
        _ => {
            let d = PyDict::new(py);
            d.set_item("size", [rle.h, rle.w])?;
            d.set_item("counts", PyList::new(py, &rle.counts)?)?;
            d.into_any()
        }
    };
    let d = PyDict::new(py);
    d.set_item("segmentation", seg)?;
    d.set_item("area", r.area)?;
    d.set_item("bbox", r.bbox.to_vec())?;
    d.set_item("predicted_iou", r.predicted_iou as f64)?;
    d.set_item("point_coords", [r.point_coords.to_vec()])?;
    d.set_item("stability_score", r.stability_score as f64)?;
    d.set_item("crop_box", r.crop_box.to_vec())?;
    Ok(d)
}

/// The automatic mask generator on an HxWx3 uint8 image with explicit point grids (the
/// Python class builds them from `points_per_side` as the official one does): grid `i` is an
/// (N, 2) float64 array of (x, y) in [0, 1], used in crop layer `i`. Every other official
/// argument is explicit here; the Python class supplies the defaults.
#[pyfunction]
#[pyo3(signature = (model, image, point_grids, points_per_batch, pred_iou_thresh,
                    stability_score_thresh, stability_score_offset, box_nms_thresh,
                    crop_n_layers, crop_nms_thresh, crop_overlap_ratio, min_mask_region_area,
                    output_mode))]
#[allow(clippy::too_many_arguments)]
pub fn generate<'py>(
    py: Python<'py>,
    model: &Model,
    image: PyReadonlyArray3<'py, u8>,
    point_grids: Vec<PyReadonlyArray2<'py, f64>>,
    points_per_batch: i64,
    pred_iou_thresh: f64,
    stability_score_thresh: f64,
    stability_score_offset: f64,
    box_nms_thresh: f64,
    crop_n_layers: i64,
    crop_nms_thresh: f64,
    crop_overlap_ratio: f64,
    min_mask_region_area: i64,
    output_mode: &str,
) -> PyResult<Bound<'py, PyList>> {
    let mode = mode_of(output_mode)?;
    let grids: Vec<Vec<[f64; 2]>> = point_grids
        .iter()
        .map(|g| {
            check_shape(g, "point_grids[i]", &[&[None, Some(2)]], "(N, 2)")?;
            Ok(slice(g, "point_grids[i]")?
                .chunks_exact(2)
                .map(|q| [q[0], q[1]])
                .collect())
        })
        .collect::<PyResult<_>>()?;
    let cfg = AmgConfig {
        points_per_batch: count("points_per_batch", points_per_batch, 1)?,
        pred_iou_thresh,
        stability_score_thresh,
        stability_score_offset,
        box_nms_thresh,
        crop_n_layers: count("crop_n_layers", crop_n_layers, 0)?,
        crop_nms_thresh,
        crop_overlap_ratio,
        // The official removal runs only for a positive area.
        min_mask_region_area: count("min_mask_region_area", min_mask_region_area.max(0), 0)?,
        // Unused with explicit grids.
        ..AmgConfig::default()
    };
    check_shape(&image, "image", &[&[None, None, Some(3)]], "(H, W, 3)")?;
    let (h, w) = (image.shape()[0], image.shape()[1]);
    check_size("image", (h, w))?;
    let pixels = slice(&image, "image")?;
    let sam = &*model.sam;
    let recs = py
        .detach(|| {
            let img = from_rgb(w, h, pixels.to_vec())?;
            // Where the model's decoder runs: its CUDA decoder when loaded with
            // device="cuda", as `samrt auto --device cuda`.
            AutoGenerator::on_model(sam).generate_with_point_grids(&img, &cfg, &grids)
        })
        .map_err(to_py)?;
    let bytes = recs.len() as u128 * (h * w) as u128;
    if mode == Mode::Binary && bytes > MAX_BINARY_MASKS {
        return Err(PyMemoryError::new_err(format!(
            "{} binary masks of {h}x{w} need {} GiB; the limit is {} GiB: use \
             output_mode=\"uncompressed_rle\" or \"coco_rle\"",
            recs.len(),
            bytes >> 30,
            MAX_BINARY_MASKS >> 30
        )));
    }
    let out = py
        .detach(|| -> samrt::Result<Vec<(MaskRecord, Option<Vec<bool>>)>> {
            recs.into_par_iter()
                .map(|r| {
                    let m = match mode {
                        Mode::Binary => Some(r.segmentation.to_mask()?),
                        _ => None,
                    };
                    Ok((r, m))
                })
                .collect()
        })
        .map_err(to_py)?;
    let list = PyList::empty(py);
    for (r, m) in out {
        list.append(record(py, &r, m, mode)?)?;
    }
    Ok(list)
}
