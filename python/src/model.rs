//! `Model` (a loaded SAM, shared by any number of predictors and threads) and `Embedding`
//! (one image's encoder output with its sizes). Both are immutable, so concurrent calls
//! need no locks: a predictor swaps whole embeddings, it never edits one.

use crate::convert::{array, check_shape, py_shape, slice};
use crate::to_py;
use numpy::ndarray::ArrayView4;
use numpy::{
    PyArray4, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadonlyArray3,
    PyReadonlyArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rayon::prelude::*;
use samrt::io::image::{from_rgb, resize_shape, MAX_IMAGE_SIDE};
use samrt::{ComputeDevice, ImageEmbedding, LoadOptions, Prompt, Sam};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A SAM model loaded from an official `.pth` or a samrt safetensors file.
#[pyclass(frozen, module = "samrt._samrt")]
pub struct Model {
    pub(crate) sam: Arc<Sam>,
    device: String,
    load_message: Option<String>,
}

/// `"cpu"`, `"cuda"` or `"cuda:N"`, as torch spells devices.
fn parse_device(device: &str) -> PyResult<ComputeDevice> {
    let bad = || {
        PyValueError::new_err(format!(
            "unknown device {device:?}: expected \"cpu\", \"cuda\" or \"cuda:N\""
        ))
    };
    match device {
        "cpu" => Ok(ComputeDevice::Cpu),
        "cuda" => Ok(ComputeDevice::Cuda(0)),
        d => match d.strip_prefix("cuda:") {
            Some(n) => n.parse().map(ComputeDevice::Cuda).map_err(|_| bad()),
            None => Err(bad()),
        },
    }
}

/// One image's embedding: `[1, 256, E, E]` features (E = the model's input size / 16: `[1,
/// 256, 64, 64]` for the official models) plus the sizes that map prompts and masks to the
/// image.
#[pyclass(frozen, module = "samrt._samrt")]
pub struct Embedding {
    pub(crate) inner: Arc<ImageEmbedding>,
    /// (channels, grid side) of the features.
    shape: (usize, usize),
}

#[pymethods]
impl Embedding {
    #[getter]
    fn original_size(&self) -> (usize, usize) {
        self.inner.original_size
    }

    #[getter]
    fn input_size(&self) -> (usize, usize) {
        self.inner.input_size
    }

    /// The features as a read-only `[1, C, G, G]` float32 array sharing this object's memory:
    /// no copy, and nobody can change an embedding a predictor may be decoding from.
    #[getter]
    fn features<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let (c, g) = slf.get().shape;
        let inner = slf.get().inner.clone();
        let view = ArrayView4::from_shape((1, c, g, g), &inner.features)
            .map_err(|e| PyRuntimeError::new_err(format!("embedding layout: {e}")))?;
        // SAFETY: the array's base object is `slf`, which owns an `Arc` of these features;
        // they are never mutated or reallocated (the embedding is immutable), so the memory
        // outlives the array.
        let arr = unsafe { PyArray4::borrow_from_array(&view, slf.into_any()) };
        arr.readwrite().make_nonwriteable();
        Ok(arr)
    }
}

/// Rejects image sizes beyond samrt's decode limit: the masks of one prediction are
/// `C x H x W`, so an absurd size would be an allocation failure, not an answer.
pub(crate) fn check_size(what: &str, (h, w): (usize, usize)) -> PyResult<()> {
    let max = MAX_IMAGE_SIDE as usize;
    if h == 0 || w == 0 || h > max || w > max {
        return Err(PyValueError::new_err(format!(
            "{what} {h}x{w} is outside 1..={max} pixels per side"
        )));
    }
    Ok(())
}

/// The arguments of one `predict` call, as the Python layer passes them.
type PromptArgs<'py> = (
    Option<PyReadonlyArray2<'py, f64>>,
    Option<PyReadonlyArray1<'py, i64>>,
    Option<PyReadonlyArray1<'py, f64>>,
    Option<PyReadonlyArrayDyn<'py, f32>>,
    bool,
);

/// Most points one prompt may carry: the library's limit, checked here before the points
/// are copied out of the array.
const MAX_POINTS: usize = samrt::sam::predictor::MAX_POINTS_PER_PROMPT;

/// Most bytes of masks and logits one `predict_batch` call may return (16 GiB): the whole
/// batch's output exists at once, so beyond this it could only end in an abort.
const MAX_BATCH_OUTPUT: u128 = 1 << 34;

/// `Err(ValueError)` unless `mask` is `(1, S, S)` or `(S, S)` with S the model's low-res side
/// `low` (256 for the official models), naming the shape this model expects.
fn check_mask_input(mask: &PyReadonlyArrayDyn<'_, f32>, low: usize) -> PyResult<()> {
    let shape = mask.shape();
    if shape == [1, low, low] || shape == [low, low] {
        return Ok(());
    }
    let e = low / 4;
    Err(PyValueError::new_err(format!(
        "mask_input must have shape (1, {low}, {low}) for this model (its low-res masks are \
         4x its {e}x{e} embedding), got {}",
        py_shape(shape)
    )))
}

/// The official `predict` arguments as a library [`Prompt`] for a model whose low-res masks
/// are `low` x `low`; the library validates the values (finite coordinates, labels 0/1,
/// finite mask).
fn prompt_of(args: PromptArgs<'_>, low: usize) -> PyResult<Prompt> {
    let (coords, labels, bx, mask, multimask) = args;
    let mut p = Prompt {
        multimask,
        ..Default::default()
    };
    if let Some(c) = coords {
        let labels = labels.ok_or_else(|| {
            PyValueError::new_err("point_labels must be supplied if point_coords is supplied.")
        })?;
        check_shape(&c, "point_coords", &[&[None, Some(2)]], "(N, 2)")?;
        check_shape(&labels, "point_labels", &[&[None]], "(N,)")?;
        if c.shape()[0] > MAX_POINTS {
            return Err(PyValueError::new_err(format!(
                "{} points in one prompt; the limit is {MAX_POINTS}",
                c.shape()[0]
            )));
        }
        p.points = slice(&c, "point_coords")?
            .chunks_exact(2)
            .map(|q| [q[0], q[1]])
            .collect();
        p.labels = slice(&labels, "point_labels")?
            .iter()
            .map(|&l| {
                i32::try_from(l).map_err(|_| {
                    PyValueError::new_err(format!(
                        "point label {l} is not 0 (background) or 1 (foreground)"
                    ))
                })
            })
            .collect::<PyResult<_>>()?;
    }
    if let Some(b) = bx {
        check_shape(&b, "box", &[&[Some(4)]], "(4,)")?;
        let v = slice(&b, "box")?;
        p.box_xyxy = Some([v[0], v[1], v[2], v[3]]);
    }
    if let Some(m) = mask {
        check_mask_input(&m, low)?;
        p.mask_input = Some(slice(&m, "mask_input")?.to_vec());
    }
    Ok(p)
}

/// Masks (bool, or float32 logits), IoU predictions and low-res logits of one prompt.
enum Output {
    Masks(samrt::Prediction),
    Logits(samrt::LogitsPrediction),
}

impl Output {
    /// `(masks, scores, low_res)` with the low-res logits as `[C, low, low]`.
    fn into_py(self, py: Python<'_>, low: usize) -> PyResult<Bound<'_, PyTuple>> {
        let (masks, c, scores, low_res) = match self {
            Output::Masks(p) => {
                let m = array(py, p.masks, [p.num_masks, p.height, p.width])?;
                (m.into_any(), p.num_masks, p.scores, p.low_res_logits)
            }
            Output::Logits(p) => {
                let m = array(py, p.logits, [p.num_masks, p.height, p.width])?;
                (m.into_any(), p.num_masks, p.scores, p.low_res_logits)
            }
        };
        let scores = array(py, scores, [c])?.into_any();
        let low_res = array(py, low_res, [c, low, low])?.into_any();
        PyTuple::new(py, [masks, scores, low_res])
    }
}

impl Model {
    fn run(&self, emb: &ImageEmbedding, p: &Prompt, logits: bool) -> samrt::Result<Output> {
        if logits {
            self.sam.predict_logits(emb, p).map(Output::Logits)
        } else {
            self.sam.predict(emb, p).map(Output::Masks)
        }
    }

    /// The embedding's features as `Arc`, refusing one made by a model of another embedding
    /// shape (another input size): its features would not fit this model's decoder.
    fn features_of(&self, embedding: &Embedding) -> PyResult<Arc<ImageEmbedding>> {
        let [c, g, _] = self.sam.embedding_shape();
        let (ec, eg) = embedding.shape;
        if (ec, eg) != (c, g) {
            return Err(PyValueError::new_err(format!(
                "this embedding is (1, {ec}, {eg}, {eg}) but this model takes (1, {c}, {g}, \
                 {g}) (input size {}): it was made by a model of another input size",
                self.sam.config.encoder.img_size
            )));
        }
        Ok(embedding.inner.clone())
    }

    /// Wraps an embedding for Python; with the decoder on a device, host values are copied
    /// there once here rather than on every predict.
    fn embedding(&self, mut inner: ImageEmbedding) -> PyResult<Embedding> {
        if inner.device.is_none() {
            self.sam.upload_embedding(&mut inner).map_err(to_py)?;
        }
        let [c, g, _] = self.sam.embedding_shape();
        Ok(Embedding {
            inner: Arc::new(inner),
            shape: (c, g),
        })
    }
}

#[pymethods]
impl Model {
    /// Loads `path` (the format is sniffed; the configuration inferred from the shapes) with
    /// the image encoder on `device`. A `.pth` is converted once into samrt's cache.
    /// `image_size` runs the model at another input side (a multiple of 16) than the
    /// checkpoint's own; embeddings, low-res masks and mask inputs follow it.
    #[new]
    #[pyo3(signature = (path, device = "cpu", image_size = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        device: &str,
        image_size: Option<usize>,
    ) -> PyResult<Self> {
        let dev = parse_device(device)?;
        if dev != ComputeDevice::Cpu && !cfg!(feature = "cuda") {
            return Err(PyRuntimeError::new_err(format!(
                "device={device:?}: this samrt was built without CUDA support; rebuild the \
                 package with the `cuda` feature (maturin develop --release --features cuda)"
            )));
        }
        let opts = LoadOptions {
            device: dev,
            image_size,
        };
        let (sam, load_message) = py.detach(|| Sam::load_with(&path, opts)).map_err(to_py)?;
        let device = match dev {
            ComputeDevice::Cpu => "cpu".to_string(),
            ComputeDevice::Cuda(n) => format!("cuda:{n}"),
        };
        Ok(Model {
            sam: Arc::new(sam),
            device,
            load_message,
        })
    }

    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    /// What the `.pth` cache did while loading (converted, reused), if anything.
    #[getter]
    fn load_message(&self) -> Option<&str> {
        self.load_message.as_deref()
    }

    /// `(C, E, E)`: one embedding's features (`(256, 64, 64)` for the official models).
    #[getter]
    fn embedding_shape(&self) -> (usize, usize, usize) {
        let [c, g, _] = self.sam.embedding_shape();
        (c, g, g)
    }

    /// S of the `[C, S, S]` low-res masks and the `(1, S, S)` mask inputs: 4x the embedding
    /// side (256 for the official models).
    #[getter]
    fn low_res_side(&self) -> usize {
        self.sam.low_res_side()
    }

    /// The inferred configuration: the encoder's sizes (`img_size` the input side it runs
    /// at) and the official name when the architecture is one (at any input size).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.sam.config;
        let e = &c.encoder;
        let d = PyDict::new(py);
        let name = ["vit_b", "vit_l", "vit_h"].into_iter().find(|n| {
            samrt::io::config::SamConfig::by_name(n)
                .and_then(|o| o.at_image_size(e.img_size).ok())
                .as_ref()
                == Some(c)
        });
        d.set_item("model_type", name)?;
        d.set_item("embed_dim", e.embed_dim)?;
        d.set_item("depth", e.depth)?;
        d.set_item("num_heads", e.num_heads)?;
        d.set_item("global_attn_indexes", e.global_attn_indexes.clone())?;
        d.set_item("window_size", e.window_size)?;
        d.set_item("img_size", e.img_size)?;
        d.set_item("patch_size", e.patch_size)?;
        d.set_item("out_chans", e.out_chans)?;
        d.set_item("prompt_embed_dim", c.prompt_embed_dim)?;
        Ok(d)
    }

    /// `set_image`: an HxWx3 uint8 RGB array, encoded with the GIL released.
    fn embed(&self, py: Python<'_>, image: PyReadonlyArray3<'_, u8>) -> PyResult<Embedding> {
        check_shape(&image, "image", &[&[None, None, Some(3)]], "(H, W, 3)")?;
        let (h, w) = (image.shape()[0], image.shape()[1]);
        check_size("image", (h, w))?;
        let pixels = slice(&image, "image")?;
        let emb = py
            .detach(|| {
                let img = from_rgb(w, h, pixels.to_vec())?;
                self.sam.embed(&img)
            })
            .map_err(to_py)?;
        self.embedding(emb)
    }

    /// An embedding from saved features (`[1, C, E, E]` or `[C, E, E]` float32, this model's
    /// [`Sam::embedding_shape`]) and the original image size; `input_size` defaults to the
    /// official resize of it to the model's input size.
    #[pyo3(signature = (features, original_size, input_size = None))]
    fn embedding_from_features(
        &self,
        features: PyReadonlyArrayDyn<'_, f32>,
        original_size: (usize, usize),
        input_size: Option<(usize, usize)>,
    ) -> PyResult<Embedding> {
        let [c, g, _] = self.sam.embedding_shape();
        let img_size = self.sam.config.encoder.img_size;
        check_shape(
            &features,
            "embedding",
            &[
                &[Some(1), Some(c), Some(g), Some(g)],
                &[Some(c), Some(g), Some(g)],
            ],
            &format!("(1, {c}, {g}, {g}) for this model (input size {img_size})"),
        )?;
        let data = slice(&features, "embedding")?;
        if data.iter().any(|v| !v.is_finite()) {
            return Err(PyValueError::new_err(
                "embedding contains NaN or infinite values",
            ));
        }
        check_size("original_size", original_size)?;
        let (oh, ow) = original_size;
        let input_size = input_size.unwrap_or_else(|| resize_shape(oh, ow, img_size));
        let (ih, iw) = input_size;
        if ih == 0 || iw == 0 || ih > img_size || iw > img_size {
            return Err(PyValueError::new_err(format!(
                "input_size {ih}x{iw} must be within 1..={img_size} per side (original size \
                 {oh}x{ow})"
            )));
        }
        self.embedding(ImageEmbedding {
            features: data.to_vec(),
            original_size,
            input_size,
            device: None,
        })
    }

    /// Saves `embedding` as `samrt embed` does (.safetensors or .npy + .json), with this
    /// model's fingerprint, so the CLI and Python share embedding files.
    fn save_embedding(&self, py: Python<'_>, embedding: &Embedding, path: PathBuf) -> PyResult<()> {
        let emb = self.features_of(embedding)?;
        py.detach(|| samrt::sam::embedding_file::save(&path, &self.sam, &emb))
            .map_err(to_py)
    }

    /// Reads an embedding file of `samrt embed` / `save_embedding`, refusing one made by
    /// another model.
    fn load_embedding(&self, py: Python<'_>, path: PathBuf) -> PyResult<Embedding> {
        let saved = py
            .detach(|| samrt::sam::embedding_file::load(&path))
            .map_err(to_py)?;
        saved.check_model(&self.sam).map_err(to_py)?;
        self.embedding(saved.embedding)
    }

    /// `SamPredictor.predict` on `embedding`: `(masks, iou_predictions, low_res_masks)`.
    #[pyo3(signature = (embedding, point_coords = None, point_labels = None, box_ = None,
                        mask_input = None, multimask_output = true, return_logits = false))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        embedding: &Embedding,
        point_coords: Option<PyReadonlyArray2<'py, f64>>,
        point_labels: Option<PyReadonlyArray1<'py, i64>>,
        box_: Option<PyReadonlyArray1<'py, f64>>,
        mask_input: Option<PyReadonlyArrayDyn<'py, f32>>,
        multimask_output: bool,
        return_logits: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let low = self.sam.low_res_side();
        let p = prompt_of(
            (
                point_coords,
                point_labels,
                box_,
                mask_input,
                multimask_output,
            ),
            low,
        )?;
        let emb = self.features_of(embedding)?;
        py.detach(|| self.run(&emb, &p, return_logits))
            .map_err(to_py)?
            .into_py(py, low)
    }

    /// Many prompts against one embedding in one call, each a tuple `(point_coords,
    /// point_labels, box, mask_input, multimask_output)`; a list of `predict` results.
    #[pyo3(signature = (embedding, prompts, return_logits = false))]
    fn predict_batch<'py>(
        &self,
        py: Python<'py>,
        embedding: &Embedding,
        prompts: Vec<PromptArgs<'py>>,
        return_logits: bool,
    ) -> PyResult<Vec<Bound<'py, PyTuple>>> {
        let low = self.sam.low_res_side();
        let prompts: Vec<Prompt> = prompts
            .into_iter()
            .map(|a| prompt_of(a, low))
            .collect::<PyResult<_>>()?;
        let emb = self.features_of(embedding)?;
        let (h, w) = emb.original_size;
        let per_mask =
            (h * w) as u128 * if return_logits { 4 } else { 1 } + (low * low * 4) as u128;
        let masks: u128 = prompts
            .iter()
            .map(|p| if p.multimask { 3 } else { 1 })
            .sum();
        if masks * per_mask > MAX_BATCH_OUTPUT {
            return Err(PyMemoryError::new_err(format!(
                "predict_batch would return {} GiB of masks ({masks} masks of {h}x{w}); the \
                 limit is {} GiB: split the batch",
                (masks * per_mask) >> 30,
                MAX_BATCH_OUTPUT >> 30
            )));
        }
        let outs: Vec<Output> = py
            .detach(|| {
                if return_logits {
                    prompts
                        .par_iter()
                        .map(|p| self.run(&emb, p, true))
                        .collect::<samrt::Result<_>>()
                } else {
                    let preds = self.sam.predict_batch(&emb, &prompts)?;
                    Ok(preds.into_iter().map(Output::Masks).collect())
                }
            })
            .map_err(to_py)?;
        outs.into_iter().map(|o| o.into_py(py, low)).collect()
    }

    /// Seconds per `Sam::predict` call for one foreground point, timed inside Rust over
    /// `iters` calls: the baseline the Python layer's overhead is measured against.
    fn time_predict(
        &self,
        py: Python<'_>,
        embedding: &Embedding,
        point: (f64, f64),
        iters: usize,
    ) -> PyResult<Vec<f64>> {
        if iters == 0 || iters > 10_000 {
            return Err(PyValueError::new_err("iters must be in 1..=10000"));
        }
        let p = Prompt {
            points: vec![[point.0, point.1]],
            labels: vec![1],
            multimask: true,
            ..Default::default()
        };
        let emb = self.features_of(embedding)?;
        py.detach(|| {
            (0..iters)
                .map(|_| {
                    let t = Instant::now();
                    self.sam.predict(&emb, &p)?;
                    Ok(t.elapsed().as_secs_f64())
                })
                .collect::<samrt::Result<Vec<f64>>>()
        })
        .map_err(to_py)
    }
}
