//! Subcommands. Each returns `CliError`, a library error with the context the user needs.

mod auto;
mod bench;
mod segment;

use clap::{Parser, Subcommand, ValueEnum};
use std::fmt;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "samrt", version, about = "Segment Anything inference runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Subcommand)]
enum Cmd {
    /// Segment one image with point / box / mask prompts.
    Segment(segment::SegmentArgs),
    /// Convert an official PyTorch .pth checkpoint to fp16 safetensors.
    Convert {
        /// Input .pth (torch.save zip format).
        input: PathBuf,
        /// Output .safetensors.
        output: PathBuf,
    },
    /// Automatic mask generation ("segment everything") over an image or a dataset.
    Auto(auto::AutoArgs),
    /// Per-component latency on random weights (vit_b/vit_l/vit_h) or a checkpoint.
    Bench(bench::BenchArgs),
    /// Print the configuration inferred from a checkpoint (.pth or .safetensors).
    Info { file: PathBuf },
}

/// A library error plus what we were doing when it happened.
#[derive(Debug)]
pub struct CliError {
    context: String,
    source: Option<samrt::Error>,
}

impl CliError {
    pub fn msg(context: impl Into<String>) -> Self {
        CliError {
            context: context.into(),
            source: None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(e) => write!(f, "{}: {}", self.context, e),
            None => write!(f, "{}", self.context),
        }
    }
}

/// Attaches context to a library result.
pub trait Context<T> {
    fn context(self, c: impl FnOnce() -> String) -> Result<T, CliError>;
}

impl<T> Context<T> for samrt::Result<T> {
    fn context(self, c: impl FnOnce() -> String) -> Result<T, CliError> {
        self.map_err(|e| CliError {
            context: c(),
            source: Some(e),
        })
    }
}

pub fn run() -> Result<(), CliError> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Segment(a) => segment::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Auto(a) => auto::run(a),
        Cmd::Convert { input, output } => convert(&input, &output),
        Cmd::Info { file } => info(&file),
    }
}

/// Resolves `--device`. `auto` runs on the CPU until the CUDA model path lands; `cuda`
/// explains exactly what is missing (feature, driver, or the model path itself).
pub fn resolve_device(d: Device) -> Result<Device, CliError> {
    match d {
        Device::Cpu | Device::Auto => Ok(Device::Cpu),
        Device::Cuda => cuda_device(),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, CliError> {
    Err(CliError::msg(
        "--device cuda: this samrt was built without the `cuda` feature; rebuild with `cargo build --release --features cuda` or use --device cpu",
    ))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, CliError> {
    samrt::cuda::cuda_available().context(|| "--device cuda".to_string())?;
    Err(CliError::msg(
        "--device cuda: this build has the CUDA kernels but not yet the CUDA model path; use --device cpu",
    ))
}

fn convert(input: &std::path::Path, output: &std::path::Path) -> Result<(), CliError> {
    let tensors = samrt::checkpoint::pth::read_pth(input)
        .context(|| format!("reading {}", input.display()))?;
    samrt::checkpoint::safetensors::write_safetensors_f16(output, &tensors)
        .context(|| format!("writing {}", output.display()))?;
    // Validate what we wrote describes a SAM model, so a converted file is usable.
    let ck = samrt::checkpoint::safetensors::Checkpoint::open(output)
        .context(|| format!("re-opening {}", output.display()))?;
    let cfg =
        samrt::config::infer_config(&ck).context(|| format!("checking {}", output.display()))?;
    eprintln!(
        "converted {} tensors ({} parameters, embed_dim {}, depth {}) to {}",
        tensors.len(),
        samrt::config::param_count(&ck),
        cfg.encoder.embed_dim,
        cfg.encoder.depth,
        output.display()
    );
    Ok(())
}

fn info(file: &std::path::Path) -> Result<(), CliError> {
    let (ck, msg) = samrt::checkpoint::cache::open_model(file)
        .context(|| format!("opening {}", file.display()))?;
    if let Some(m) = msg {
        eprintln!("{m}");
    }
    let cfg = samrt::config::infer_config(&ck).context(|| format!("reading {}", file.display()))?;
    let e = &cfg.encoder;
    let name = match (e.embed_dim, e.depth, e.num_heads) {
        (768, 12, 12) => "vit_b",
        (1024, 24, 16) => "vit_l",
        (1280, 32, 16) => "vit_h",
        _ => "custom",
    };
    println!("model: {name}");
    println!("embed_dim: {}", e.embed_dim);
    println!("depth: {}", e.depth);
    println!("num_heads: {}", e.num_heads);
    println!("head_dim: {}", e.head_dim);
    println!("mlp_dim: {}", e.mlp_dim);
    println!("window_size: {}", e.window_size);
    println!("global_attn_indexes: {:?}", e.global_attn_indexes);
    println!("image_size: {}", e.img_size);
    println!("patch_size: {}", e.patch_size);
    println!("prompt_embed_dim: {}", cfg.prompt_embed_dim);
    println!("parameters: {}", samrt::config::param_count(&ck));
    Ok(())
}
