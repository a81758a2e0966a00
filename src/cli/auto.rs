//! `samrt auto`: the official automatic mask generator over one image or a dataset, with
//! `scripts/amg.py`'s output layout and flag names. Dataset runs are resumable (finished
//! outputs are skipped; outputs appear atomically), guarded by a record of the parameters
//! that made them, and shardable (`--shard I/N`).

mod job;

use super::common::{resolve_device, CliError, Context, Device};
use clap::{Args, ValueEnum};
use job::{count, dest_for, Params, PARAMS_FILE};
use samrt::amg::generator::{AmgConfig, Progress};
use samrt::amg::output::{write_outputs, OutputMode};
use samrt::amg::AutoGenerator;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum Mode {
    BinaryMask,
    UncompressedRle,
    CocoRle,
}

/// amg.py's `--model-type` names; `default` is vit_h, as in `sam_model_registry`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[clap(rename_all = "snake_case")]
pub enum ModelType {
    Default,
    VitH,
    VitL,
    VitB,
}

impl ModelType {
    fn arch(self) -> &'static str {
        match self {
            ModelType::Default | ModelType::VitH => "vit_h",
            ModelType::VitL => "vit_l",
            ModelType::VitB => "vit_b",
        }
    }
}

const AMG: &str = "AMG settings";

#[derive(Args)]
#[command(
    after_help = "A directory or list runs as a resumable job: images whose outputs \
    exist are skipped when the parameters recorded in <out>/samrt_auto_params.json match; \
    other parameters are refused unless --force is given. Images that fail are listed in \
    <out>/failures.txt (feed it back with --image) while the rest go on, and the exit status \
    is then 1. Progress goes to stderr; stdout stays empty. amg.py's flag names are \
    accepted: --input, --output, --checkpoint, --model-type, --convert-to-rle."
)]
pub struct AutoArgs {
    /// SAM checkpoint: an official .pth (converted to fp16 safetensors once and cached) or
    /// a .safetensors file. The model size is read from its tensor shapes.
    #[arg(long, visible_alias = "checkpoint", value_name = "FILE")]
    model: PathBuf,
    /// Check that the checkpoint is this model size (amg.py's flag): default (= vit_h),
    /// vit_h, vit_l or vit_b. Optional, since samrt infers the size from the checkpoint.
    #[arg(long, value_enum, value_name = "TYPE")]
    model_type: Option<ModelType>,
    /// One image, a directory of images (its files ending in .png, .jpg, .jpeg, .bmp, .tif,
    /// .tiff, .webp or .gif, sorted by name), or a .txt list with one image path a line
    /// (relative to the list; blank lines and # comments skipped).
    #[arg(long, visible_alias = "input", value_name = "PATH")]
    image: PathBuf,
    /// Directory for the results: per image a folder <stem>/ with one PNG per mask and
    /// metadata.csv (binary_mask), or <stem>.json (the RLE modes). It also holds
    /// samrt_auto_params.json and, after failures, failures.txt.
    #[arg(long, visible_alias = "output", value_name = "DIR")]
    out: PathBuf,
    /// Where the model runs: auto (CUDA when a usable GPU exists, else the CPU), cpu or
    /// cuda. On CUDA the image encoder, the mask decoder and everything per mask run there
    /// (post-processing, stability, packing, box NMS); RLE and small-region removal stay on
    /// the CPU.
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// Run the model at this input size in pixels (a multiple of 16) instead of its
    /// checkpoint's own (1024 for the official models): the embedding is size/16 per side and
    /// low-res masks 4x that. Global attention's rel-pos tables are resized linearly as the
    /// official code does, pos_embed bicubically (README: "Input sizes").
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
    /// How masks are saved: binary_mask (PNGs), uncompressed_rle or coco_rle (a JSON list
    /// of records per image, as amg.py writes). [default: binary_mask]
    #[arg(long, value_enum, value_name = "MODE")]
    output_mode: Option<Mode>,
    /// Save COCO RLE JSON instead of PNGs: amg.py's name for --output-mode coco_rle.
    #[arg(long)]
    convert_to_rle: bool,
    /// Process only images I, I+N, I+2N, ... of the sorted list (0 <= I < N), so that N
    /// processes can split one dataset and share --out. A shard with no images does nothing.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Regenerate every image even where an output exists, replacing the outputs and the
    /// recorded parameters; required to continue in an --out made with other parameters.
    #[arg(long)]
    force: bool,
    /// Side of the grid of single-point prompts laid over the image (and over each crop,
    /// divided per layer by --crop-n-points-downscale-factor).
    #[arg(long, default_value_t = 32, help_heading = AMG)]
    points_per_side: usize,
    /// Point prompts the mask decoder handles in one batch: more is faster but needs
    /// more memory.
    #[arg(long, default_value_t = 64, help_heading = AMG)]
    points_per_batch: usize,
    /// Keep only masks whose predicted IoU (the model's own quality estimate) is above
    /// this; 0 keeps all.
    #[arg(long, default_value_t = 0.88, allow_hyphen_values = true, help_heading = AMG)]
    pred_iou_thresh: f64,
    /// Keep only masks whose stability score (how little the mask changes when its logit
    /// cutoff moves by --stability-score-offset) is at least this; 0 keeps all.
    #[arg(long, default_value_t = 0.95, allow_hyphen_values = true, help_heading = AMG)]
    stability_score_thresh: f64,
    /// How far the logit cutoff is moved up and down to measure stability; a larger
    /// offset is a stricter test.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true, help_heading = AMG)]
    stability_score_offset: f64,
    /// Box IoU above which the lower-scoring of two masks from one crop is dropped as a
    /// duplicate.
    #[arg(long, default_value_t = 0.7, allow_hyphen_values = true, help_heading = AMG)]
    box_nms_thresh: f64,
    /// Also generate on crops of the image, for more masks of small things: layer i cuts
    /// it into 2^i x 2^i overlapping crops. 0 uses the whole image only.
    #[arg(long, default_value_t = 0, help_heading = AMG)]
    crop_n_layers: usize,
    /// Box IoU above which the same object found in different crops is kept only once
    /// (the one from the smaller crop survives).
    #[arg(long, default_value_t = 0.7, allow_hyphen_values = true, help_heading = AMG)]
    crop_nms_thresh: f64,
    /// How much neighbouring crops overlap, as a fraction of the image side in the first
    /// crop layer (less in later layers); must be in [0, 1). The default is 512/1500.
    #[arg(long, default_value_t = 512.0 / 1500.0, allow_hyphen_values = true, help_heading = AMG)]
    crop_overlap_ratio: f64,
    /// Crop layer i samples points_per_side / factor^i points per side.
    #[arg(long, default_value_t = 1, help_heading = AMG)]
    crop_n_points_downscale_factor: usize,
    /// Fill holes and remove islands smaller than this many pixels in every mask, then
    /// drop the duplicates that creates; 0 skips this post-processing.
    #[arg(long, default_value_t = 0, help_heading = AMG)]
    min_mask_region_area: usize,
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

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The least time between two progress lines within one image: long images show they are
/// alive, and a dataset of small images gets one such line each, not dozens.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// `--model-type` only checks: the configuration always comes from the tensor shapes. A
/// checkpoint of no official size (a custom or test model) cannot contradict the flag, so
/// it runs with a note instead of an error.
fn check_model_type(model: &Path, want: ModelType) -> Result<(), CliError> {
    let flag = match want {
        ModelType::Default => "--model-type default (vit_h)".to_string(),
        t => format!("--model-type {}", t.arch()),
    };
    let (ck, msg) = samrt::io::checkpoint::cache::open_model(model)
        .context(|| format!("checking {flag} against the checkpoint"))?;
    if let Some(m) = msg {
        eprintln!("samrt: {m}");
    }
    let cfg = samrt::io::config::infer_config(&ck)
        .context(|| format!("checking {flag} against {}", model.display()))?;
    let e = &cfg.encoder;
    let shape = format!(
        "embed_dim {}, depth {}, {}",
        e.embed_dim,
        e.depth,
        count(e.num_heads, "head")
    );
    let found = ["vit_b", "vit_l", "vit_h"].into_iter().find(|n| {
        samrt::io::config::SamConfig::by_name(n).is_some_and(|c| c.encoder == cfg.encoder)
    });
    match found {
        Some(n) if n == want.arch() => Ok(()),
        Some(n) => Err(CliError::msg(format!(
            "{flag}: {} is a {n} checkpoint ({shape}); pass --model-type {n}, or leave the \
             flag out (samrt reads the model size from the checkpoint)",
            model.display()
        ))),
        None => {
            eprintln!(
                "samrt: {flag}: {} is not an official model size ({shape}); it runs with the \
                 configuration its tensors describe",
                model.display()
            );
            Ok(())
        }
    }
}

/// The one image's progress lines: the first always, later ones at most every
/// [`PROGRESS_EVERY`].
fn progress_printer(image: &Path) -> impl FnMut(Progress) + '_ {
    let mut last: Option<Instant> = None;
    move |p: Progress| {
        if last.is_some_and(|t| t.elapsed() < PROGRESS_EVERY) {
            return;
        }
        last = Some(Instant::now());
        eprintln!(
            "samrt: {}: crop {}/{}, points batch {}/{}",
            image.display(),
            p.crop,
            p.crops,
            p.batches_done,
            p.batches
        );
    }
}

/// One failed image's line; library errors about the image usually name it already.
fn failure_line(k: usize, total: usize, image: &Path, e: &samrt::Error) -> String {
    let msg = e.to_string();
    let shown = image.display().to_string();
    if msg.contains(&shown) {
        format!("samrt: [{k}/{total}] error: {msg}")
    } else {
        format!("samrt: [{k}/{total}] {shown}: error: {msg}")
    }
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
    let mode = match (a.output_mode, a.convert_to_rle) {
        (None | Some(Mode::CocoRle), true) => OutputMode::CocoRle,
        (Some(m), true) => {
            return Err(CliError::msg(format!(
                "--convert-to-rle means --output-mode coco_rle, which contradicts --output-mode {}",
                job::mode_name(mode_of(m))
            )))
        }
        (m, false) => mode_of(m.unwrap_or(Mode::BinaryMask)),
    };
    let device = resolve_device(a.device)?;

    let all = job::targets(&a.image)?;
    let n_all = all.len();
    let mine: Vec<PathBuf> = match shard {
        Some((i, n)) => all.into_iter().skip(i).step_by(n).collect(),
        None => all,
    };
    if mine.is_empty() {
        // More shards than images: the other shards cover everything, so this is no error.
        eprintln!(
            "samrt: --shard {}: no images fall in this shard (the input has {}); nothing to do",
            a.shard.as_deref().unwrap_or_default(),
            count(n_all, "image")
        );
        return Ok(());
    }
    let failures_name = job::failures_name(shard);
    // Two images with one stem, or an image named like our bookkeeping files, would
    // overwrite each other's outputs; refuse up front.
    let mut seen = std::collections::HashMap::new();
    for p in &mine {
        let d = dest_for(&a.out, p, mode);
        let name = d.file_name().unwrap_or_default();
        if name == PARAMS_FILE || *name == *failures_name {
            return Err(CliError::msg(format!(
                "{}: its output would be {}, which samrt keeps for its own records; rename the image",
                p.display(),
                d.display()
            )));
        }
        if let Some(prev) = seen.insert(d.clone(), p.clone()) {
            return Err(CliError::msg(format!(
                "{} and {} would both write {}",
                prev.display(),
                p.display(),
                d.display()
            )));
        }
    }

    let params = Params::new(&cfg, mode, &a.model, a.image_size)?;
    if let Some(t) = a.model_type {
        check_model_type(&a.model, t)?;
    }
    let done = mine
        .iter()
        .filter(|p| dest_for(&a.out, p, mode).exists())
        .count();
    let mut record = true;
    if !a.force {
        match job::read_recorded(&a.out)? {
            Some(rec) => {
                let diffs = params.differences(&rec);
                if diffs.is_empty() {
                    record = false;
                } else if job::has_outputs(&a.out) {
                    return Err(CliError::msg(format!(
                        "--out {} holds outputs made with other parameters (recorded in {PARAMS_FILE}): {}; \
                         use --force to regenerate every image with the new ones, or another --out",
                        a.out.display(),
                        diffs.join("; ")
                    )));
                }
            }
            None if done > 0 => {
                return Err(CliError::msg(format!(
                    "--out {} already has outputs for {} but no {PARAMS_FILE} saying which \
                     parameters made them; use --force to regenerate them, or another --out",
                    a.out.display(),
                    count(done, "image")
                )));
            }
            None => {}
        }
    }
    let todo: Vec<PathBuf> = if a.force {
        mine.clone()
    } else {
        mine.iter()
            .filter(|p| !dest_for(&a.out, p, mode).exists())
            .cloned()
            .collect()
    };
    let skipped = mine.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "samrt: skipping {} with existing outputs",
            count(skipped, "image")
        );
    }
    if todo.is_empty() {
        // Failed images have no output, so with nothing left to do nothing is failing.
        return job::write_failures(&a.out, &failures_name, &[]);
    }
    std::fs::create_dir_all(&a.out)
        .map_err(|e| CliError::msg(format!("creating --out {}: {e}", a.out.display())))?;
    let sam = super::common::load_model(&a.model, device, a.image_size)?;
    let generator = AutoGenerator::open(&sam, &a.model, device)
        .context(|| "opening the mask decoder for automatic masks".to_string())?;
    if device != samrt::ComputeDevice::Cpu {
        eprintln!(
            "samrt: automatic masks: mask decoder on {} for the point batches, with \
             post-processing, stability, packing and box NMS there; RLE and small-region \
             removal on the CPU",
            generator.description()
        );
    }
    if a.force {
        // Old outputs go before the new record is written: an interrupted forced run then
        // resumes without mixing outputs of the old parameters into the new ones.
        for p in &mine {
            job::remove_output(&dest_for(&a.out, p, mode))?;
        }
    }
    if record {
        params.write(&a.out)?;
    }

    let start = Instant::now();
    let mut failed: Vec<PathBuf> = Vec::new();
    let total = todo.len();
    for (k, p) in todo.iter().enumerate() {
        let res = (|| -> samrt::Result<usize> {
            let img = samrt::io::image::load_image(p)?;
            let recs = generator.generate(&img, &cfg, &mut progress_printer(p))?;
            write_outputs(&dest_for(&a.out, p, mode), &recs, mode)?;
            Ok(recs.len())
        })();
        let done = k + 1;
        match res {
            Ok(n) => {
                let el = start.elapsed().as_secs_f64();
                let rate = done as f64 / el.max(1e-9);
                eprintln!(
                    "samrt: [{done}/{total}] {}: {} | {rate:.3} img/s | elapsed {} | ETA {}",
                    p.display(),
                    count(n, "mask"),
                    fmt_secs(el),
                    fmt_secs((total - done) as f64 / rate)
                );
            }
            Err(e) => {
                eprintln!("{}", failure_line(done, total, p, &e));
                failed.push(p.clone());
            }
        }
    }
    job::write_failures(&a.out, &failures_name, &failed)?;
    if !failed.is_empty() {
        let list = a.out.join(&failures_name);
        let noun = if total == 1 { "image" } else { "images" };
        let them = if failed.len() == 1 { "it" } else { "them" };
        return Err(CliError::msg(format!(
            "{} of {total} {noun} failed; retry {them} with --image {}",
            failed.len(),
            list.display()
        )));
    }
    Ok(())
}

fn mode_of(m: Mode) -> OutputMode {
    match m {
        Mode::BinaryMask => OutputMode::BinaryMask,
        Mode::UncompressedRle => OutputMode::UncompressedRle,
        Mode::CocoRle => OutputMode::CocoRle,
    }
}
