//! `samrt segment`: the CLI contract of the foundation issue, kept exact for acceptance
//! tests. Masks are written as mask_K.png in the official predictor's output order.
//! With `--embedding` the image encoder is skipped: only the decoder is loaded, and the
//! saved embedding is checked against the model's fingerprint.

use super::common::{resolve_device, CliError, Context, Device};
use super::prompts::{
    check_mask_sides, parse_box, parse_mask_spec, parse_point, read_prompts, PromptSpec,
};
use clap::Args;
use samrt::sam::predictor::Prompt;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SegmentArgs {
    /// Checkpoint: .safetensors, or an official .pth (converted once and cached).
    #[arg(long)]
    model: PathBuf,
    /// Input image (PNG, JPEG, BMP, TIFF, WebP, GIF). Optional with --embedding (then only
    /// its size is checked against the embedding's).
    #[arg(long, required_unless_present = "embedding")]
    image: Option<PathBuf>,
    /// A saved image embedding (`samrt embed`, .safetensors or .npy): decode without running
    /// the image encoder. It must come from the same model.
    #[arg(long, value_name = "FILE")]
    embedding: Option<PathBuf>,
    /// Point prompt X,Y[,LABEL] in original image pixels; LABEL 1 foreground (default), 0 background.
    #[arg(long = "point", value_name = "X,Y[,LABEL]", allow_hyphen_values = true)]
    points: Vec<String>,
    /// Box prompt X0,Y0,X1,Y1 in original image pixels.
    #[arg(long = "box", value_name = "X0,Y0,X1,Y1", allow_hyphen_values = true)]
    box_: Option<String>,
    /// Low-res mask logits of an earlier call (float32 or float64 .npy): [S,S], [1,S,S], or
    /// a [C,S,S] stack such as low_res_logits.npy, where `:K` picks mask K and the default is
    /// the best-scoring mask by the iou_predictions.npy beside it. S is 4x the model's
    /// embedding side: 256 for the official models, 64 for a model built for 256 px.
    #[arg(long, value_name = "FILE.npy[:K]")]
    mask_input: Option<String>,
    /// Several prompts decoded against one embedding: a JSON list of {"points": [[x,y],...],
    /// "labels": [1,...], "box": [x0,y0,x1,y1], "mask_input": "file.npy[:K]" or an SxS
    /// array, "multimask": bool} (all optional; mask_input paths relative to the JSON file).
    /// Decoded in bounded chunks; each prompt's outputs go to DIR/prompt_K/.
    #[arg(long, conflicts_with_all = ["points", "box_", "mask_input"])]
    prompts: Option<PathBuf>,
    /// Return one mask instead of three.
    #[arg(long)]
    single_mask: bool,
    /// Where the image encoder and the mask decoder run (with --embedding: the decoder).
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Run the model at this input size in pixels (a multiple of 16) instead of its
    /// checkpoint's own (1024 for the official models): the embedding is size/16 per side and
    /// low-res masks 4x that. Global attention's rel-pos tables are resized linearly as the
    /// official code does, pos_embed bicubically (README: "Input sizes"). With --embedding:
    /// the size the embedding was made at.
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
}

/// Writes mask_K.png, low_res_logits.npy and iou_predictions.npy (the scores, so a later
/// `--mask-input low_res_logits.npy` can pick the best mask) into `dir`; returns the JSON
/// mask records. `side` is the model's low-res side (the logits are `[C, side, side]`).
fn write_prediction(
    dir: &Path,
    pred: &samrt::Prediction,
    side: usize,
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
    samrt::io::npy::write_f32(&npy, &[pred.num_masks, side, side], &pred.low_res_logits)
        .context(|| format!("writing {}", npy.display()))?;
    let scores = dir.join(super::prompts::SCORES_FILE);
    samrt::io::npy::write_f32(&scores, &[pred.num_masks], &pred.scores)
        .context(|| format!("writing {}", scores.display()))?;
    Ok(records)
}

/// The single prompt of --point/--box/--mask-input.
fn flag_prompt(a: &SegmentArgs) -> Result<PromptSpec, CliError> {
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
    let mask = a
        .mask_input
        .as_deref()
        .map(|m| parse_mask_spec(m, Path::new("")))
        .transpose()?;
    let mut spec = PromptSpec {
        prompt,
        mask,
        mask_side: None,
    };
    let (loaded, side) = spec.load_sized(None)?;
    loaded
        .validate()
        .context(|| "checking prompts".to_string())?;
    spec.mask_side = side;
    Ok(spec)
}

/// The model and the image embedding: from --embedding (decoder only), else by running the
/// image encoder on --image.
fn model_and_embedding(a: &SegmentArgs) -> Result<(samrt::Sam, samrt::ImageEmbedding), CliError> {
    if let Some(path) = &a.embedding {
        let saved = samrt::sam::embedding_file::load(path)
            .context(|| format!("reading --embedding {}", path.display()))?;
        if let Some(img) = &a.image {
            let (w, h) = image::ImageReader::open(img)
                .and_then(|r| r.with_guessed_format())
                .map_err(|e| CliError::msg(format!("reading --image {}: {e}", img.display())))?
                .into_dimensions()
                .map_err(|e| CliError::msg(format!("reading --image {}: {e}", img.display())))?;
            if (h as usize, w as usize) != saved.embedding.original_size {
                return Err(CliError::msg(format!(
                    "--image {} is {w}x{h} but --embedding {} was made from a {}x{} image",
                    img.display(),
                    path.display(),
                    saved.embedding.original_size.1,
                    saved.embedding.original_size.0
                )));
            }
        }
        let device = resolve_device(a.device)?;
        let opts = samrt::LoadOptions {
            device,
            image_size: a.image_size,
        };
        let (sam, msg) = samrt::Sam::load_decoder_with(&a.model, opts)
            .context(|| format!("loading --model {}", a.model.display()))?;
        if let Some(m) = msg {
            eprintln!("samrt: {m}");
        }
        if device != samrt::ComputeDevice::Cpu {
            eprintln!("samrt: mask decoder on {}", sam.decoder_description());
        }
        saved.check_model(&sam).context(|| {
            format!(
                "--embedding {} with --model {}",
                path.display(),
                a.model.display()
            )
        })?;
        // Copied to the device decoder once, not per prompt chunk (nothing on the CPU).
        let mut emb = saved.embedding;
        sam.upload_embedding(&mut emb)
            .context(|| "copying the embedding to the device".to_string())?;
        return Ok((sam, emb));
    }
    let image = a
        .image
        .as_ref()
        .expect("clap requires --image without --embedding");
    let device = resolve_device(a.device)?;
    let img = samrt::io::image::load_image(image)
        .context(|| format!("reading --image {}", image.display()))?;
    let sam = super::common::load_model(&a.model, device, a.image_size)?;
    let emb = sam
        .embed(&img)
        .context(|| "running the image encoder".to_string())?;
    Ok((sam, emb))
}

/// Prompts decoded per call: enough to keep every core busy, few enough that the per-prompt
/// buffers (the 4 MB dense prompt embedding, masks at the original size) stay near 256 MB
/// however many prompts the file holds.
fn chunk_len(emb: &samrt::ImageEmbedding, low_res_side: usize) -> usize {
    let (h, w) = emb.original_size;
    let per_prompt = emb.features.len() * 4 + 3 * h * w + 3 * low_res_side.pow(2) * 4 * 2;
    ((256usize << 20) / per_prompt).clamp(1, 64)
}

pub fn run(a: SegmentArgs) -> Result<(), CliError> {
    // Validate everything cheap before loading the model.
    let specs = match &a.prompts {
        Some(path) => Some(read_prompts(path, !a.single_mask)?),
        None => None,
    };
    let single = match specs {
        None => Some(flag_prompt(&a)?),
        Some(_) => None,
    };
    let (sam, emb) = model_and_embedding(&a)?;
    let side = sam.low_res_side();
    let sides: Vec<Option<usize>> = match (&single, &specs) {
        (Some(s), _) => vec![s.mask_side],
        (None, Some(v)) => v.iter().map(|s| s.mask_side).collect(),
        (None, None) => Vec::new(),
    };
    let what = match &a.prompts {
        Some(p) => format!("--prompts {}", p.display()),
        None => "--mask-input".to_string(),
    };
    check_mask_sides(&sides, side, &what)?;
    if let Some(spec) = single {
        let pred = sam
            .predict(&emb, &spec.load(Some(side))?)
            .context(|| "decoding masks".to_string())?;
        let records = write_prediction(&a.out, &pred, side)?;
        println!("{}", serde_json::json!({ "masks": records }));
        return Ok(());
    }
    let specs = specs.unwrap_or_default();
    // Streamed: each chunk's outputs are written and its records printed before the next
    // chunk is decoded, so memory does not grow with the number of prompts.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |e: std::io::Error| CliError::msg(format!("writing stdout: {e}"));
    write!(out, "{{\"prompts\":[").map_err(io)?;
    let chunk = chunk_len(&emb, side);
    for (c, group) in specs.chunks(chunk).enumerate() {
        let prompts: Vec<Prompt> = group
            .iter()
            .map(|s| s.load(Some(side)))
            .collect::<Result<_, _>>()?;
        let preds = sam
            .predict_batch(&emb, &prompts)
            .context(|| "decoding masks".to_string())?;
        drop(prompts);
        for (i, pred) in preds.iter().enumerate() {
            let k = c * chunk + i;
            let dir = format!("prompt_{k}");
            let records = write_prediction(&a.out.join(&dir), pred, side)?;
            let rec = serde_json::json!({ "dir": dir, "masks": records });
            write!(out, "{}{rec}", if k == 0 { "" } else { "," }).map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    writeln!(out, "]}}").map_err(io)?;
    Ok(())
}
