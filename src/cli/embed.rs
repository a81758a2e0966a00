//! `samrt embed`: run the image encoder once and save the embedding, so later `segment
//! --embedding` calls decode prompts without re-encoding (SAM's "encode once, prompt many
//! times", across processes).

use super::common::{resolve_device, CliError, Context, Device};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct EmbedArgs {
    /// Checkpoint: .safetensors, or an official .pth (converted once and cached).
    #[arg(long)]
    model: PathBuf,
    /// Input image (PNG, JPEG, BMP, TIFF, WebP, GIF).
    #[arg(long)]
    image: PathBuf,
    /// Output file: .safetensors (sizes and model fingerprint in its metadata) or .npy (with
    /// a .json of the same stem beside it holding them).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Run the model at this input size in pixels (a multiple of 16) instead of its
    /// checkpoint's own (1024 for the official models): the embedding is size/16 per side and
    /// low-res masks 4x that. Global attention's rel-pos tables are resized linearly as the
    /// official code does, pos_embed bicubically (README: "Input sizes").
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
}

pub fn run(a: EmbedArgs) -> Result<(), CliError> {
    let ext = a
        .out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("safetensors" | "npy")) {
        return Err(CliError::msg(format!(
            "--out {}: the embedding file must end in .safetensors or .npy",
            a.out.display()
        )));
    }
    let device = resolve_device(a.device)?;
    let img = samrt::io::image::load_image(&a.image)
        .context(|| format!("reading --image {}", a.image.display()))?;
    let sam = super::common::load_model(&a.model, device, a.image_size)?;
    let emb = sam
        .embed(&img)
        .context(|| "running the image encoder".to_string())?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::msg(format!("creating {}: {e}", dir.display())))?;
    }
    samrt::sam::embedding_file::save(&a.out, &sam, &emb)
        .context(|| format!("writing --out {}", a.out.display()))?;
    let [c, s, _] = sam.embedding_shape();
    println!(
        "{}",
        serde_json::json!({
            "embedding": a.out,
            "shape": [1, c, s, s],
            "original_size": [emb.original_size.0, emb.original_size.1],
            "input_size": [emb.input_size.0, emb.input_size.1],
            "model_fingerprint": sam.fingerprint(),
        })
    );
    Ok(())
}
