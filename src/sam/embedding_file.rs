//! Saved image embeddings: SAM's "encode once, prompt many times" across processes. The
//! encoder is ~99 % of a click's cost, so a labelling tool or a service embeds each image
//! once, stores the result, and later decodes prompts against it in milliseconds.
//!
//! Two layouts, chosen by extension:
//! - `.safetensors`: one F32 tensor `image_embeddings` `[1, C, S, S]` (the official
//!   `SamPredictor.features`), with the sizes and the model fingerprint in `__metadata__`;
//! - `.npy`: the same float32 array, with a `.json` file of the same stem beside it holding
//!   the sizes and fingerprint (a .npy header cannot carry extra keys).
//!
//! A saved embedding only makes sense to the model that made it, so loading checks the
//! fingerprint ([`crate::io::checkpoint::fingerprint`]) and the shape against the decoding model.

use crate::error::{Error, Result};
use crate::io::checkpoint::{Checkpoint, DType};
use crate::io::image::{resize_shape, MAX_IMAGE_SIDE};
use crate::sam::predictor::{ImageEmbedding, Sam};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `format` value in the metadata; files without it are not embeddings.
pub const FORMAT: &str = "samrt-image-embedding";
/// Tensor name: the official predictor's attribute.
pub const TENSOR: &str = "image_embeddings";
const VERSION: &str = "1";

/// An embedding read back from disk, with the identity of the model that made it.
pub struct SavedEmbedding {
    pub embedding: ImageEmbedding,
    /// [C, S, S] as stored.
    pub shape: [usize; 3],
    pub fingerprint: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Safetensors,
    Npy,
}

fn layout(path: &Path) -> Result<Layout> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "safetensors" => Ok(Layout::Safetensors),
        Some(e) if e == "npy" => Ok(Layout::Npy),
        _ => Err(Error::Embedding(format!(
            "{}: an embedding file must end in .safetensors or .npy",
            path.display()
        ))),
    }
}

/// The `.json` beside a `.npy` embedding.
pub fn sidecar_path(npy: &Path) -> PathBuf {
    npy.with_extension("json")
}

fn pair(v: (usize, usize)) -> String {
    format!("[{}, {}]", v.0, v.1)
}

/// Saves `emb` made by `sam` (which must have been loaded from a file, for its fingerprint).
/// The write is atomic: a temporary file renamed into place.
pub fn save(path: &Path, sam: &Sam, emb: &ImageEmbedding) -> Result<()> {
    let layout = layout(path)?;
    let fingerprint = sam.fingerprint().ok_or_else(|| {
        Error::Unsupported("the model has no fingerprint (it was not loaded from a file)".into())
    })?;
    let [c, s, _] = sam.embedding_shape();
    if emb.features.len() != c * s * s {
        return Err(Error::Unsupported(format!(
            "embedding has {} values, the model makes {c} x {s} x {s}",
            emb.features.len()
        )));
    }
    let data: Vec<u8> = emb.features.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = [1, c, s, s];
    let meta = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("model_fingerprint", fingerprint.to_string()),
        ("original_size", pair(emb.original_size)),
        ("input_size", pair(emb.input_size)),
    ];
    match layout {
        Layout::Safetensors => {
            let meta: BTreeMap<&str, &str> = meta.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut header = serde_json::json!({
                "__metadata__": meta,
                TENSOR: {"dtype": "F32", "shape": shape, "data_offsets": [0, data.len()]},
            })
            .to_string();
            while !header.len().is_multiple_of(8) {
                header.push(' ');
            }
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(&data);
            crate::io::fs::write_atomic(path, &bytes)
        }
        Layout::Npy => {
            let mut json = serde_json::Map::new();
            for (k, v) in &meta {
                let value = match *k {
                    "original_size" | "input_size" => {
                        serde_json::from_str(v).map_err(|e| Error::Unsupported(e.to_string()))?
                    }
                    _ => serde_json::Value::String(v.clone()),
                };
                json.insert(k.to_string(), value);
            }
            let side = sidecar_path(path);
            let text = serde_json::to_string_pretty(&json)
                .map_err(|e| Error::Unsupported(e.to_string()))?;
            // The array first, then the sidecar: a reader never finds metadata describing a
            // missing or older array.
            crate::io::npy::write_f32(path, &shape, &emb.features)?;
            crate::io::fs::write_atomic(&side, format!("{text}\n").as_bytes())
        }
    }
}

fn bad(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::Embedding(format!("{}: {m}", path.display()))
}

/// Parses "[h, w]" (metadata) into a size, checking it is a plausible image size.
fn parse_size(path: &Path, key: &str, v: &serde_json::Value) -> Result<(usize, usize)> {
    let side = |x: &serde_json::Value| {
        x.as_u64()
            .filter(|&n| n >= 1 && n <= MAX_IMAGE_SIDE as u64)
            .map(|n| n as usize)
    };
    match v.as_array().map(Vec::as_slice) {
        Some([h, w]) => match (side(h), side(w)) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(bad(
                path,
                format!("`{key}` sides must be 1..={MAX_IMAGE_SIDE}"),
            )),
        },
        _ => Err(bad(path, format!("`{key}` must be [height, width]"))),
    }
}

/// Reads an embedding saved by [`save`], checking its structure and values (but not yet
/// the model: see [`SavedEmbedding::check_model`]).
pub fn load(path: &Path) -> Result<SavedEmbedding> {
    let (meta, shape, features): (
        serde_json::Map<String, serde_json::Value>,
        Vec<usize>,
        Vec<f32>,
    ) = match layout(path)? {
        Layout::Safetensors => {
            let ck = Checkpoint::open(path)?;
            let meta =
                ck.metadata()
                    .iter()
                    .map(|(k, v)| {
                        let value = match k.as_str() {
                            "original_size" | "input_size" => serde_json::from_str(v)
                                .unwrap_or(serde_json::Value::String(v.clone())),
                            _ => serde_json::Value::String(v.clone()),
                        };
                        (k.clone(), value)
                    })
                    .collect();
            if ck.metadata().get("format").map(String::as_str) != Some(FORMAT) {
                return Err(bad(path, format!("metadata `format` is not `{FORMAT}`")));
            }
            if ck.dtype(TENSOR) != Some(DType::F32) || ck.len() != 1 {
                return Err(bad(path, format!("expected one F32 tensor `{TENSOR}`")));
            }
            let shape = ck.tensors()[0].2.to_vec();
            let data = crate::io::weights::WeightSource::f32(&ck, TENSOR, &shape)?;
            (meta, shape, data)
        }
        Layout::Npy => {
            let side = sidecar_path(path);
            let text = std::fs::read_to_string(&side).map_err(|e| Error::io(&side, e))?;
            let meta = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .ok_or_else(|| bad(&side, "expected a JSON object"))?;
            let arr = crate::io::npy::read(path)?;
            if arr.descr() != "<f4" {
                return Err(bad(
                    path,
                    format!("dtype {}, expected float32", arr.descr()),
                ));
            }
            let data = arr.to_f32();
            (meta, arr.shape, data)
        }
    };
    let text = |k: &str| meta.get(k).and_then(|v| v.as_str());
    if text("format") != Some(FORMAT) {
        return Err(bad(path, format!("metadata `format` is not `{FORMAT}`")));
    }
    if text("version") != Some(VERSION) {
        return Err(bad(
            path,
            format!("unsupported version (this samrt reads {VERSION})"),
        ));
    }
    let fingerprint = text("model_fingerprint")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| bad(path, "no `model_fingerprint`"))?
        .to_string();
    let get = |k: &str| meta.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let original_size = parse_size(path, "original_size", &get("original_size"))?;
    let input_size = parse_size(path, "input_size", &get("input_size"))?;
    let shape: [usize; 3] = match shape.as_slice() {
        [1, c, s, t] if s == t => [*c, *s, *t],
        _ => return Err(bad(path, format!("shape {shape:?}, expected [1, C, S, S]"))),
    };
    if let Some(i) = features.iter().position(|v| !v.is_finite()) {
        return Err(bad(
            path,
            format!("value {} at index {i} is not finite", features[i]),
        ));
    }
    Ok(SavedEmbedding {
        embedding: ImageEmbedding {
            features,
            original_size,
            input_size,
            device: None,
        },
        shape,
        fingerprint,
    })
}

impl SavedEmbedding {
    /// Refuses an embedding made by another model (or one whose sizes the model could not
    /// have produced), so masks are never decoded from a foreign embedding.
    pub fn check_model(&self, sam: &Sam) -> Result<()> {
        if let Some(f) = sam.fingerprint() {
            if f != self.fingerprint {
                return Err(Error::Embedding(format!(
                    "it was made by another model (fingerprint {}, this model {f})",
                    self.fingerprint
                )));
            }
        }
        if self.shape != sam.embedding_shape() {
            let p = sam.config.encoder.patch_size;
            let hint = if self.shape[0] == sam.embedding_shape()[0] {
                format!(
                    " (it was made at input size {}, the model runs at {}: load the model at \
                     the embedding's size, e.g. --image-size {})",
                    self.shape[1] * p,
                    sam.config.encoder.img_size,
                    self.shape[1] * p
                )
            } else {
                String::new()
            };
            return Err(Error::Embedding(format!(
                "shape {:?}, this model uses {:?}{hint}",
                self.shape,
                sam.embedding_shape()
            )));
        }
        let (h, w) = self.embedding.original_size;
        let want = resize_shape(h, w, sam.config.encoder.img_size);
        if self.embedding.input_size != want {
            return Err(Error::Embedding(format!(
                "input_size {:?} does not follow from original_size {:?} (expected {want:?})",
                self.embedding.input_size, self.embedding.original_size
            )));
        }
        Ok(())
    }
}
