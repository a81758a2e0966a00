//! `samrt segment`: the CLI contract of the foundation issue, kept exact for acceptance
//! tests. Masks are written as mask_K.png in the official predictor's output order.

use super::{resolve_device, CliError, Context, Device};
use clap::Args;
use samrt::predictor::{Prompt, Sam, LOW_RES};
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

pub fn run(a: SegmentArgs) -> Result<(), CliError> {
    // Validate everything cheap before loading the model.
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
    resolve_device(a.device)?;

    let img = samrt::preprocess::load_image(&a.image)
        .context(|| format!("reading --image {}", a.image.display()))?;
    let (sam, msg) =
        Sam::load(&a.model).context(|| format!("loading --model {}", a.model.display()))?;
    if let Some(m) = msg {
        eprintln!("samrt: {m}");
    }
    let emb = sam
        .embed(&img)
        .context(|| "running the image encoder".to_string())?;
    let pred = sam
        .predict(&emb, &prompt)
        .context(|| "decoding masks".to_string())?;

    std::fs::create_dir_all(&a.out)
        .map_err(|e| CliError::msg(format!("creating --out {}: {e}", a.out.display())))?;
    let mut records = Vec::new();
    for i in 0..pred.num_masks {
        let file = format!("mask_{i}.png");
        let pixels: Vec<u8> = pred
            .mask(i)
            .iter()
            .map(|&m| if m { 255 } else { 0 })
            .collect();
        let path = a.out.join(&file);
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
    let npy = a.out.join("low_res_logits.npy");
    samrt::npy::write_f32(
        &npy,
        &[pred.num_masks, LOW_RES, LOW_RES],
        &pred.low_res_logits,
    )
    .context(|| format!("writing {}", npy.display()))?;
    println!("{}", serde_json::json!({ "masks": records }));
    Ok(())
}
