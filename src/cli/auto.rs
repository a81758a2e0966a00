//! `samrt auto`: the official automatic mask generator over one image or a dataset, with
//! `scripts/amg.py`'s output layout. Dataset runs are resumable (finished outputs are
//! skipped; outputs appear atomically) and shardable (`--shard I/N`).

use super::{resolve_device, CliError, Context, Device};
use clap::{Args, ValueEnum};
use samrt::amg::output::{write_outputs, OutputMode};
use samrt::automatic_mask_generator::{generate, AmgConfig};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Mode {
    BinaryMask,
    UncompressedRle,
    CocoRle,
}

#[derive(Args)]
pub struct AutoArgs {
    /// Checkpoint: .safetensors, or an official .pth (converted once and cached).
    #[arg(long)]
    model: PathBuf,
    /// An image, a directory of images (sorted by name), or a .txt list (one path a line).
    #[arg(long)]
    image: PathBuf,
    /// Output directory: <stem>.json per image (RLE modes) or <stem>/ (binary_mask).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    #[arg(long, default_value_t = 32)]
    points_per_side: usize,
    #[arg(long, default_value_t = 64)]
    points_per_batch: usize,
    #[arg(long, default_value_t = 0.88, allow_hyphen_values = true)]
    pred_iou_thresh: f64,
    #[arg(long, default_value_t = 0.95, allow_hyphen_values = true)]
    stability_score_thresh: f64,
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    stability_score_offset: f64,
    #[arg(long, default_value_t = 0.7, allow_hyphen_values = true)]
    box_nms_thresh: f64,
    #[arg(long, default_value_t = 0)]
    crop_n_layers: usize,
    #[arg(long, default_value_t = 0.7, allow_hyphen_values = true)]
    crop_nms_thresh: f64,
    /// Default 512/1500, the official value.
    #[arg(long, default_value_t = 512.0 / 1500.0, allow_hyphen_values = true)]
    crop_overlap_ratio: f64,
    #[arg(long, default_value_t = 1)]
    crop_n_points_downscale_factor: usize,
    #[arg(long, default_value_t = 0)]
    min_mask_region_area: usize,
    #[arg(long, value_enum, default_value = "binary_mask")]
    output_mode: Mode,
    /// Process only images I, I+N, I+2N, ... of the sorted list (0 <= I < N).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

pub fn parse_shard(s: &str) -> Result<(usize, usize), CliError> {
    let err = || {
        CliError::msg(format!(
            "--shard `{s}`: expected I/N with 0 <= I < N, e.g. 0/4"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let i: usize = i.trim().parse().map_err(|_| err())?;
    let n: usize = n.trim().parse().map_err(|_| err())?;
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

const IMAGE_EXTS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"];

/// The images a `--image` argument names, in processing order.
fn targets(input: &Path) -> Result<Vec<PathBuf>, CliError> {
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
        let base = input.parent().unwrap_or(Path::new("."));
        return Ok(text
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
            .collect());
    }
    Ok(vec![input.to_path_buf()])
}

fn dest_for(out: &Path, image: &Path, mode: OutputMode) -> PathBuf {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    match mode {
        OutputMode::BinaryMask => out.join(stem),
        _ => out.join(format!("{stem}.json")),
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

pub fn run(a: AutoArgs) -> Result<(), CliError> {
    let cfg = AmgConfig {
        points_per_side: a.points_per_side,
        points_per_batch: a.points_per_batch,
        pred_iou_thresh: a.pred_iou_thresh,
        stability_score_thresh: a.stability_score_thresh,
        stability_score_offset: a.stability_score_offset,
        box_nms_thresh: a.box_nms_thresh,
        crop_n_layers: a.crop_n_layers,
        crop_nms_thresh: a.crop_nms_thresh,
        crop_overlap_ratio: a.crop_overlap_ratio,
        crop_n_points_downscale_factor: a.crop_n_points_downscale_factor,
        min_mask_region_area: a.min_mask_region_area,
    };
    cfg.validate().context(|| "checking options".to_string())?;
    let shard = a.shard.as_deref().map(parse_shard).transpose()?;
    let mode = match a.output_mode {
        Mode::BinaryMask => OutputMode::BinaryMask,
        Mode::UncompressedRle => OutputMode::UncompressedRle,
        Mode::CocoRle => OutputMode::CocoRle,
    };
    let device = resolve_device(a.device)?;

    let all = targets(&a.image)?;
    let mine: Vec<PathBuf> = match shard {
        Some((i, n)) => all.into_iter().skip(i).step_by(n).collect(),
        None => all,
    };
    // Duplicate stems would overwrite each other's outputs; refuse up front.
    let mut seen = std::collections::HashMap::new();
    for p in &mine {
        let d = dest_for(&a.out, p, mode);
        if let Some(prev) = seen.insert(d.clone(), p.clone()) {
            return Err(CliError::msg(format!(
                "{} and {} would both write {}",
                prev.display(),
                p.display(),
                d.display()
            )));
        }
    }
    let todo: Vec<PathBuf> = mine
        .iter()
        .filter(|p| !dest_for(&a.out, p, mode).exists())
        .cloned()
        .collect();
    let skipped = mine.len() - todo.len();
    if skipped > 0 {
        eprintln!("samrt: skipping {skipped} image(s) with existing outputs");
    }
    if todo.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| CliError::msg(format!("creating --out {}: {e}", a.out.display())))?;
    let sam = super::load_model(&a.model, device)?;

    let start = Instant::now();
    let mut failed = 0usize;
    let total = todo.len();
    for (k, p) in todo.iter().enumerate() {
        let res = (|| -> samrt::Result<usize> {
            let img = samrt::preprocess::load_image(p)?;
            let recs = generate(&sam, &img, &cfg)?;
            write_outputs(&dest_for(&a.out, p, mode), &recs, mode)?;
            Ok(recs.len())
        })();
        match res {
            Ok(n) => {
                let done = k + 1;
                let el = start.elapsed().as_secs_f64();
                let rate = done as f64 / el.max(1e-9);
                eprintln!(
                    "[{done}/{total}] {} : {n} masks | {rate:.3} img/s | elapsed {} | ETA {}",
                    p.display(),
                    fmt_secs(el),
                    fmt_secs((total - done) as f64 / rate)
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("[{}/{total}] {}: error: {e}", k + 1, p.display());
            }
        }
    }
    if failed > 0 {
        return Err(CliError::msg(format!(
            "{failed} of {total} image(s) failed"
        )));
    }
    Ok(())
}
