//! `samrt segment`: the CLI contract of the foundation issue, kept exact for acceptance
//! tests. Masks are written as mask_K.png in the official predictor's output order.

use super::{resolve_device, CliError, Context, Device};
use clap::Args;
use samrt::predictor::{Prompt, LOW_RES};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SegmentArgs {
    /// Checkpoint: .safetensors, or an official .pth (converted once and cached).
    #[arg(long)]
    model: PathBuf,
    /// Input image (PNG, JPEG, BMP, TIFF, WebP, GIF).
    #[arg(long)]
    image: PathBuf,
    /// Point prompt X,Y[,LABEL] in original image pixels; LABEL 1 foreground (default), 0 background.
    #[arg(long = "point", value_name = "X,Y[,LABEL]", allow_hyphen_values = true)]
    points: Vec<String>,
    /// Box prompt X0,Y0,X1,Y1 in original image pixels.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", allow_hyphen_values = true)]
    box_: Option<String>,
    /// Low-res mask logits of an earlier call: float32 .npy of shape [256,256] or [1,256,256].
    #[arg(long)]
    mask_input: Option<PathBuf>,
    /// Several prompts decoded in one batched call: a JSON list of {"points": [[x,y],...],
    /// "labels": [1,...], "box": [x0,y0,x1,y1], "mask_input": "file.npy" or a 256x256 array,
    /// "multimask": bool} (all optional; mask_input paths relative to the JSON file). Each prompt's outputs go
    /// to DIR/prompt_K/.
    #[arg(long, conflicts_with_all = ["points", "box_", "mask_input"])]
    prompts: Option<PathBuf>,
    /// Return one mask instead of three.
    #[arg(long)]
    single_mask: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
}

fn parse_floats(s: &str, what: &str) -> Result<Vec<f64>, CliError> {
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| CliError::msg(format!("{what} `{s}`: `{t}` is not a number")))
        })
        .collect()
}

/// "X,Y" or "X,Y,LABEL".
pub fn parse_point(s: &str) -> Result<([f64; 2], i32), CliError> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 2 && parts.len() != 3 {
        return Err(CliError::msg(format!(
            "--point `{s}`: expected X,Y or X,Y,LABEL"
        )));
    }
    let xy = parse_floats(&parts[..2].join(","), "--point")?;
    let label = match parts.get(2) {
        None => 1,
        Some(l) => l
            .trim()
            .parse::<i32>()
            .map_err(|_| CliError::msg(format!("--point `{s}`: label `{l}` must be 0 or 1")))?,
    };
    Ok(([xy[0], xy[1]], label))
}

pub fn parse_box(s: &str) -> Result<[f64; 4], CliError> {
    let v = parse_floats(s, "--box")?;
    if v.len() != 4 {
        return Err(CliError::msg(format!("--box `{s}`: expected X0,Y0,X1,Y1")));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// An inline `mask_input`: nested JSON arrays of shape [256, 256] or [1, 256, 256] (the
/// official `mask_input` layout), numbers only, row-major.
fn inline_mask(v: &serde_json::Value) -> Result<Vec<f32>, String> {
    fn walk(
        v: &serde_json::Value,
        depth: usize,
        shape: &mut Vec<usize>,
        out: &mut Vec<f32>,
    ) -> Result<(), String> {
        match v {
            serde_json::Value::Array(items) => {
                if depth > 2 {
                    return Err("is nested deeper than [1, 256, 256]".into());
                }
                if shape.len() == depth {
                    shape.push(items.len());
                } else if shape[depth] != items.len() {
                    return Err("is ragged (rows of different lengths)".into());
                }
                items
                    .iter()
                    .try_for_each(|x| walk(x, depth + 1, shape, out))
            }
            serde_json::Value::Number(n) => {
                if depth != shape.len() {
                    return Err("mixes numbers and arrays at one level".into());
                }
                let x = n.as_f64().ok_or("holds a number out of range")? as f32;
                if !x.is_finite() {
                    return Err("holds a value that is not finite in float32".into());
                }
                out.push(x);
                Ok(())
            }
            _ => Err("must hold numbers only".into()),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out)?;
    let s = LOW_RES;
    if shape != [s, s] && shape != [1, s, s] {
        return Err(format!(
            "has shape {shape:?}, expected [{s}, {s}] or [1, {s}, {s}]"
        ));
    }
    Ok(out)
}

fn read_mask_input(path: &Path) -> Result<Vec<f32>, CliError> {
    let what = || format!("reading --mask-input {}", path.display());
    // A 256x256 float32 array is 256 KiB; refuse to read anything far larger into memory.
    let len = std::fs::metadata(path)
        .map_err(|e| samrt::Error::io(path, e))
        .context(what)?
        .len();
    if len > 1 << 22 {
        return Err(CliError::msg(format!(
            "--mask-input {}: file is {len} bytes; a [256,256] float32 .npy is about 256 KiB",
            path.display()
        )));
    }
    let arr = samrt::npy::read(path).context(what)?;
    let samrt::npy::NpyData::F32(data) = arr.data else {
        return Err(CliError::msg(format!(
            "--mask-input {}: dtype {}, expected float32 (<f4)",
            path.display(),
            arr.descr()
        )));
    };
    let shape = arr.shape;
    let ok = shape == [LOW_RES, LOW_RES] || shape == [1, LOW_RES, LOW_RES];
    if !ok {
        return Err(CliError::msg(format!(
            "--mask-input {}: shape {shape:?}, expected [256, 256] or [1, 256, 256]",
            path.display()
        )));
    }
    Ok(data)
}

/// Parses a --prompts file into library prompts (validated).
fn read_prompts(path: &Path, default_multimask: bool) -> Result<Vec<Prompt>, CliError> {
    let bad = |m: String| CliError::msg(format!("--prompts {}: {m}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len > 64 << 20 {
        return Err(bad(format!(
            "file is {len} bytes; refusing more than 64 MiB"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let list = v
        .as_array()
        .ok_or_else(|| bad("expected a JSON list of prompt objects".into()))?;
    if list.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    let nums = |x: &serde_json::Value, what: &str, k: usize| -> Result<Vec<f64>, CliError> {
        x.as_array()
            .ok_or_else(|| bad(format!("prompt {k}: `{what}` must be a list of numbers")))?
            .iter()
            .map(|n| {
                n.as_f64()
                    .ok_or_else(|| bad(format!("prompt {k}: `{what}` must be a list of numbers")))
            })
            .collect()
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(list.len());
    for (k, item) in list.iter().enumerate() {
        let obj = item
            .as_object()
            .ok_or_else(|| bad(format!("prompt {k} is not an object")))?;
        if let Some(key) = obj.keys().find(|key| {
            !["points", "labels", "box", "mask_input", "multimask"].contains(&key.as_str())
        }) {
            return Err(bad(format!("prompt {k}: unknown key `{key}`")));
        }
        let mut p = Prompt {
            multimask: default_multimask,
            ..Default::default()
        };
        if let Some(pts) = obj.get("points").filter(|x| !x.is_null()) {
            for pt in pts
                .as_array()
                .ok_or_else(|| bad(format!("prompt {k}: `points` must be a list of [x, y]")))?
            {
                let xy = nums(pt, "points", k)?;
                if xy.len() != 2 {
                    return Err(bad(format!("prompt {k}: each point must be [x, y]")));
                }
                p.points.push([xy[0], xy[1]]);
            }
        }
        match obj.get("labels").filter(|x| !x.is_null()) {
            Some(l) => {
                for x in nums(l, "labels", k)? {
                    if x.fract() != 0.0 {
                        return Err(bad(format!("prompt {k}: label {x} must be 0 or 1")));
                    }
                    p.labels.push(x as i32);
                }
            }
            // Labels default to foreground, as --point does.
            None => p.labels = vec![1; p.points.len()],
        }
        if let Some(b) = obj.get("box").filter(|x| !x.is_null()) {
            let b = nums(b, "box", k)?;
            if b.len() != 4 {
                return Err(bad(format!("prompt {k}: `box` must be [x0, y0, x1, y1]")));
            }
            p.box_xyxy = Some([b[0], b[1], b[2], b[3]]);
        }
        if let Some(m) = obj.get("mask_input").filter(|x| !x.is_null()) {
            p.mask_input = Some(match m {
                serde_json::Value::String(f) => read_mask_input(&base.join(f))?,
                serde_json::Value::Array(_) => {
                    inline_mask(m).map_err(|e| bad(format!("prompt {k}: `mask_input` {e}")))?
                }
                _ => {
                    return Err(bad(format!(
                        "prompt {k}: `mask_input` must be a .npy path or a 256x256 array of numbers"
                    )))
                }
            });
        }
        if let Some(mm) = obj.get("multimask").filter(|x| !x.is_null()) {
            p.multimask = mm
                .as_bool()
                .ok_or_else(|| bad(format!("prompt {k}: `multimask` must be true or false")))?;
        }
        p.validate()
            .context(|| format!("--prompts {}: prompt {k}", path.display()))?;
        out.push(p);
    }
    Ok(out)
}

/// Writes mask_K.png and low_res_logits.npy into `dir`; returns the JSON mask records.
fn write_prediction(
    dir: &Path,
    pred: &samrt::Prediction,
) -> Result<Vec<serde_json::Value>, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::msg(format!("creating {}: {e}", dir.display())))?;
    let mut records = Vec::new();
    for i in 0..pred.num_masks {
        let file = format!("mask_{i}.png");
        let pixels: Vec<u8> = pred
            .mask(i)
            .iter()
            .map(|&m| if m { 255 } else { 0 })
            .collect();
        let path = dir.join(&file);
        image::GrayImage::from_raw(pred.width as u32, pred.height as u32, pixels)
            .ok_or_else(|| CliError::msg("mask buffer size mismatch"))?
            .save(&path)
            .map_err(|e| CliError::msg(format!("writing {}: {e}", path.display())))?;
        let s = pred.stats(i).context(|| "measuring masks".to_string())?;
        records.push(serde_json::json!({
            "file": file,
            "score": pred.scores[i],
            "area": s.area,
            "bbox": s.bbox,
        }));
    }
    let npy = dir.join("low_res_logits.npy");
    samrt::npy::write_f32(
        &npy,
        &[pred.num_masks, LOW_RES, LOW_RES],
        &pred.low_res_logits,
    )
    .context(|| format!("writing {}", npy.display()))?;
    Ok(records)
}

pub fn run(a: SegmentArgs) -> Result<(), CliError> {
    // Validate everything cheap before loading the model.
    let prompts = match &a.prompts {
        Some(path) => read_prompts(path, !a.single_mask)?,
        None => {
            let mut prompt = Prompt {
                multimask: !a.single_mask,
                ..Default::default()
            };
            for p in &a.points {
                let (xy, l) = parse_point(p)?;
                prompt.points.push(xy);
                prompt.labels.push(l);
            }
            prompt.box_xyxy = a.box_.as_deref().map(parse_box).transpose()?;
            prompt.mask_input = a.mask_input.as_deref().map(read_mask_input).transpose()?;
            prompt
                .validate()
                .context(|| "checking prompts".to_string())?;
            vec![prompt]
        }
    };
    let device = resolve_device(a.device)?;

    let img = samrt::preprocess::load_image(&a.image)
        .context(|| format!("reading --image {}", a.image.display()))?;
    let sam = super::load_model(&a.model, device)?;
    let emb = sam
        .embed(&img)
        .context(|| "running the image encoder".to_string())?;
    if a.prompts.is_none() {
        let pred = sam
            .predict(&emb, &prompts[0])
            .context(|| "decoding masks".to_string())?;
        let records = write_prediction(&a.out, &pred)?;
        println!("{}", serde_json::json!({ "masks": records }));
        return Ok(());
    }
    let preds = sam
        .predict_batch(&emb, &prompts)
        .context(|| "decoding masks".to_string())?;
    let mut out = Vec::with_capacity(preds.len());
    for (k, pred) in preds.iter().enumerate() {
        let dir = format!("prompt_{k}");
        let records = write_prediction(&a.out.join(&dir), pred)?;
        out.push(serde_json::json!({ "dir": dir, "masks": records }));
    }
    println!("{}", serde_json::json!({ "prompts": out }));
    Ok(())
}
