//! The dataset side of `samrt auto`: which images a run covers, where their outputs go,
//! the parameter record that makes resuming safe, and the failure list.

use crate::cli::common::{CliError, Context};
use samrt::amg::generator::AmgConfig;
use samrt::amg::output::OutputMode;
use serde_json::{json, Map, Value};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Written next to the outputs; resuming compares against it.
pub const PARAMS_FILE: &str = "samrt_auto_params.json";

const IMAGE_EXTS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"];

pub use samrt::error::count;

/// The images a `--image` argument names, in processing order. A directory or list that
/// names none is an error: a dataset job that silently does nothing usually means a wrong
/// path or an unsupported extension, and the caller would only notice much later.
pub fn targets(input: &Path) -> Result<Vec<PathBuf>, CliError> {
    let meta = std::fs::metadata(input)
        .map_err(|e| CliError::msg(format!("--image {}: {e}", input.display())))?;
    if meta.is_dir() {
        let rd = std::fs::read_dir(input)
            .map_err(|e| CliError::msg(format!("listing --image {}: {e}", input.display())))?;
        let mut v: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        if v.is_empty() {
            return Err(CliError::msg(format!(
                "--image {}: the directory has no images (looked for files ending in .{})",
                input.display(),
                IMAGE_EXTS.join(", .")
            )));
        }
        v.sort();
        return Ok(v);
    }
    let is_list = input
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
    if is_list {
        let text = std::fs::read_to_string(input)
            .map_err(|e| CliError::msg(format!("reading --image {}: {e}", input.display())))?;
        // Relative entries are relative to the list, so a list (failures.txt included)
        // works from any working directory.
        let base = input.parent().unwrap_or(Path::new("."));
        let v: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let p = PathBuf::from(l);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            })
            .collect();
        if v.is_empty() {
            return Err(CliError::msg(format!(
                "--image {}: the list names no images (it has only blank lines and # comments)",
                input.display()
            )));
        }
        return Ok(v);
    }
    Ok(vec![input.to_path_buf()])
}

/// Where one image's outputs go: `<out>/<stem>/` or `<out>/<stem>.json`, as amg.py does.
pub fn dest_for(out: &Path, image: &Path, mode: OutputMode) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    match mode {
        OutputMode::BinaryMask => out.join(stem),
        _ => out.join(format!("{stem}.json")),
    }
}

pub fn mode_name(mode: OutputMode) -> &'static str {
    match mode {
        OutputMode::BinaryMask => "binary_mask",
        OutputMode::UncompressedRle => "uncompressed_rle",
        OutputMode::CocoRle => "coco_rle",
    }
}

/// The failure list of this run: one per shard, so that shards sharing `--out` do not
/// overwrite each other's.
pub fn failures_name(shard: Option<(usize, usize)>) -> String {
    match shard {
        None => "failures.txt".into(),
        Some((i, n)) => format!("failures-shard-{i}-of-{n}.txt"),
    }
}

fn count_bytes(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => count(n as usize, "byte"),
        None => v.to_string(),
    }
}

/// Bytes hashed at each end of the checkpoint for its fingerprint.
const FINGERPRINT_SPAN: u64 = 1 << 20;

/// Size plus an FNV-1a hash of the first and last MiB: different weights (a fine-tune, a
/// different model) change both ends of a checkpoint, and hashing all of a 2.5 GB file on
/// every resume would cost seconds. A copy or move of the same file matches.
fn model_identity(model: &Path) -> Result<(PathBuf, Value), CliError> {
    let err = |e: std::io::Error| CliError::msg(format!("--model {}: {e}", model.display()));
    let path = std::fs::canonicalize(model).map_err(err)?;
    let mut f = std::fs::File::open(&path).map_err(err)?;
    let size = f.metadata().map_err(err)?.len();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut hash = |bytes: &[u8]| {
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    let mut buf = Vec::new();
    (&mut f)
        .take(FINGERPRINT_SPAN)
        .read_to_end(&mut buf)
        .map_err(err)?;
    hash(&buf);
    let tail = size
        .saturating_sub(FINGERPRINT_SPAN)
        .max(FINGERPRINT_SPAN.min(size));
    buf.clear();
    f.seek(SeekFrom::Start(tail)).map_err(err)?;
    f.read_to_end(&mut buf).map_err(err)?;
    hash(&buf);
    let id = json!({"size": size, "fingerprint": format!("{h:016x}")});
    Ok((path, id))
}

/// Everything that changes what a run writes: every generator option, the output mode
/// and the model's identity. The device is left out on purpose (CPU and CUDA shards of one
/// job agree to float tolerance), and so are `--shard` and `--force`.
pub struct Params {
    pub compared: Map<String, Value>,
    model_path: PathBuf,
}

impl Params {
    /// `image_size` (`--image-size`) is recorded only when given, so records made before
    /// the option existed still match runs without it.
    pub fn new(
        cfg: &AmgConfig,
        mode: OutputMode,
        model: &Path,
        image_size: Option<usize>,
    ) -> Result<Params, CliError> {
        let AmgConfig {
            points_per_side,
            points_per_batch,
            pred_iou_thresh,
            stability_score_thresh,
            stability_score_offset,
            box_nms_thresh,
            crop_n_layers,
            crop_nms_thresh,
            crop_overlap_ratio,
            crop_n_points_downscale_factor,
            min_mask_region_area,
        } = cfg.clone();
        let (model_path, model_id) = model_identity(model)?;
        let v = json!({
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "stability_score_offset": stability_score_offset,
            "box_nms_thresh": box_nms_thresh,
            "crop_n_layers": crop_n_layers,
            "crop_nms_thresh": crop_nms_thresh,
            "crop_overlap_ratio": crop_overlap_ratio,
            "crop_n_points_downscale_factor": crop_n_points_downscale_factor,
            "min_mask_region_area": min_mask_region_area,
            "output_mode": mode_name(mode),
            "model": model_id,
        });
        let Value::Object(mut compared) = v else {
            unreachable!("json! of an object literal")
        };
        if let Some(s) = image_size {
            compared.insert("image_size".into(), json!(s));
        }
        Ok(Params {
            compared,
            model_path,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "samrt_auto_params": 1,
            "samrt_version": env!("CARGO_PKG_VERSION"),
            "model_path": self.model_path.to_string_lossy(),
            "parameters": self.compared,
        })
    }

    /// The recorded parameters that differ from these, one `name: recorded X, now Y` each.
    pub fn differences(&self, recorded: &Value) -> Vec<String> {
        let rec = recorded.get("parameters").and_then(Value::as_object);
        let show = |v: Option<&Value>| match v {
            None => "(none)".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let mut diffs = Vec::new();
        for (k, now) in &self.compared {
            let old = rec.and_then(|r| r.get(k));
            if old == Some(now) {
                continue;
            }
            if k == "model" {
                let size = |v: Option<&Value>| {
                    v.and_then(|m| m.get("size"))
                        .map_or("unknown size".to_string(), count_bytes)
                };
                let now_path = self.model_path.to_string_lossy();
                let old_path = recorded.get("model_path").and_then(Value::as_str);
                diffs.push(match old_path {
                    Some(p) if p != now_path => format!(
                        "model: recorded {p} ({}), now {now_path} ({})",
                        size(old),
                        size(Some(now))
                    ),
                    _ => format!(
                        "model: {now_path} is not the file recorded ({}, now {})",
                        size(old),
                        size(Some(now))
                    ),
                });
            } else {
                diffs.push(format!(
                    "{k}: recorded {}, now {}",
                    show(old),
                    show(Some(now))
                ));
            }
        }
        diffs
    }

    /// Writes the record atomically, so concurrent shards never read half a file.
    pub fn write(&self, out: &Path) -> Result<(), CliError> {
        let dest = out.join(PARAMS_FILE);
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default() + "\n";
        samrt::io::fs::write_atomic(&dest, text.as_bytes())
            .context(|| format!("writing {}", dest.display()))
    }
}

/// Reads the record in `out`, if there is one.
pub fn read_recorded(out: &Path) -> Result<Option<Value>, CliError> {
    let p = out.join(PARAMS_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CliError::msg(format!("reading {}: {e}", p.display()))),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::msg(format!(
            "{} is not a parameter record samrt can read ({e}); use --force to regenerate \
             every image and record the parameters anew",
            p.display()
        ))
    })
}

/// Whether `out` holds anything besides samrt's own bookkeeping (the parameter record,
/// failure lists, temporary files): outputs of any image, this shard's or another's.
pub fn has_outputs(out: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(out) else {
        return false;
    };
    rd.filter_map(|e| e.ok()).any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        !(n == PARAMS_FILE
            || n.starts_with('.')
            || (n.starts_with("failures") && n.ends_with(".txt")))
    })
}

/// Removes an existing output (a JSON file or a binary-mask folder).
pub fn remove_output(dest: &Path) -> Result<(), CliError> {
    let r = if dest.is_dir() {
        std::fs::remove_dir_all(dest)
    } else {
        std::fs::remove_file(dest)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::msg(format!(
            "removing the old output {}: {e}",
            dest.display()
        ))),
    }
}

/// Writes this run's failure list as absolute paths (which `--image` reads back from any
/// working directory), or removes a stale one when nothing failed.
pub fn write_failures(out: &Path, name: &str, failed: &[PathBuf]) -> Result<(), CliError> {
    let dest = out.join(name);
    if failed.is_empty() {
        return match std::fs::remove_file(&dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CliError::msg(format!(
                "removing the stale {}: {e}",
                dest.display()
            ))),
        };
    }
    let mut text = String::new();
    for p in failed {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        text.push_str(&abs.to_string_lossy());
        text.push('\n');
    }
    std::fs::write(&dest, text)
        .map_err(|e| CliError::msg(format!("writing {}: {e}", dest.display())))
}
