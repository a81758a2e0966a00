//! Subcommands. Each returns `CliError`, a library error with the context the user needs.

mod auto;
mod bench;
mod embed;
mod prompts;
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
    /// Run the image encoder once and save the embedding for `segment --embedding`.
    Embed(embed::EmbedArgs),
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
    Info {
        file: PathBuf,
        /// With `cuda`: also print the encoder's planned device memory (weights + arena),
        /// computed from the schedule without running anything.
        #[arg(long, value_enum, default_value = "cpu")]
        device: Device,
        /// Batch size for the device memory plan.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
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
            Some(e) => write!(
                f,
                "{}: {}",
                self.context,
                without_repeated_path(&self.context, &e.to_string())
            ),
            None => write!(f, "{}", self.context),
        }
    }
}

/// Library errors name the file they concern, and so does the CLI's context ("reading
/// --image x.png: x.png: No such file"); drop the library's copy so each path appears once.
fn without_repeated_path(context: &str, msg: &str) -> String {
    for word in context.split_whitespace() {
        let word = word.trim_end_matches([':', ',']);
        if word.starts_with('-') || word.len() < 2 {
            continue;
        }
        let needle = format!("{word}: ");
        if let Some(at) = msg.find(&needle) {
            return format!("{}{}", &msg[..at], &msg[at + needle.len()..]);
        }
    }
    msg.to_string()
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

/// Parses the arguments. Help and version go to stdout with exit 0; a usage error is
/// printed with the same `samrt:` prefix as every other message, and exits 2 as clap does.
fn parse_args() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprint!("samrt: error: {text}");
            std::process::exit(2);
        }
    }
}

pub fn run() -> Result<(), CliError> {
    let cli = parse_args();
    match cli.cmd {
        Cmd::Segment(a) => segment::run(a),
        Cmd::Embed(a) => embed::run(a),
        Cmd::Bench(a) => bench::run(a),
        Cmd::Auto(a) => auto::run(a),
        Cmd::Convert { input, output } => convert(&input, &output),
        Cmd::Info {
            file,
            device,
            batch,
        } => info(&file, device, batch),
    }
}

/// Resolves `--device` to where the image encoder runs. `auto` picks CUDA device 0 when a
/// usable one exists and says on stderr which it chose; `cuda` explains exactly what is
/// missing (feature, driver, device).
pub fn resolve_device(d: Device) -> Result<samrt::ComputeDevice, CliError> {
    match d {
        Device::Cpu => Ok(samrt::ComputeDevice::Cpu),
        Device::Cuda => cuda_device(),
        Device::Auto => Ok(match cuda_device() {
            Ok(dev) => dev,
            Err(e) => {
                eprintln!("samrt: --device auto: using the CPU ({e})");
                samrt::ComputeDevice::Cpu
            }
        }),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<samrt::ComputeDevice, CliError> {
    Err(CliError::msg(
        "--device cuda: this samrt was built without the `cuda` feature; rebuild with `cargo build --release --features cuda` or use --device cpu",
    ))
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<samrt::ComputeDevice, CliError> {
    let info = samrt::cuda::cuda_available().context(|| "--device cuda".to_string())?;
    Ok(samrt::ComputeDevice::Cuda(info.ordinal))
}

/// Loads `--model` for `device`, printing the cache message and, for CUDA, which device.
pub fn load_model(
    model: &std::path::Path,
    device: samrt::ComputeDevice,
) -> Result<samrt::Sam, CliError> {
    let (sam, msg) = samrt::Sam::load_on(model, device)
        .context(|| format!("loading --model {}", model.display()))?;
    if let Some(m) = msg {
        eprintln!("samrt: {m}");
    }
    if device != samrt::ComputeDevice::Cpu {
        eprintln!("samrt: image encoder on {}", sam.device_description());
    }
    Ok(sam)
}

/// Whether `a` and `b` name the same existing file, through symlinks or hard links.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    }
}

fn convert(input: &std::path::Path, output: &std::path::Path) -> Result<(), CliError> {
    let format = samrt::checkpoint::detect_format(input)
        .context(|| format!("reading {}", input.display()))?;
    if format == samrt::checkpoint::Format::Safetensors {
        return Err(CliError::msg(format!(
            "convert: {} is already a safetensors file; pass it to --model as it is \
             (convert reads official PyTorch .pth checkpoints)",
            input.display()
        )));
    }
    if same_file(input, output) {
        return Err(CliError::msg(format!(
            "convert: the output {} is the input file itself (directly or through a link); \
             writing it would destroy the checkpoint",
            output.display()
        )));
    }
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
        "samrt: converted {} tensors ({} parameters, embed_dim {}, depth {}) to {}",
        tensors.len(),
        samrt::config::param_count(&ck),
        cfg.encoder.embed_dim,
        cfg.encoder.depth,
        output.display()
    );
    Ok(())
}

/// The weights of `file` without side effects: a `.pth` is read through its conversion
/// cache when one exists, else parsed in memory (`info` never writes the cache).
fn open_readonly(
    file: &std::path::Path,
) -> Result<Box<dyn samrt::weights::WeightSource>, CliError> {
    use samrt::checkpoint::{cache_path, detect_format, read_pth, Checkpoint, Format};
    let ctx = || format!("reading {}", file.display());
    if detect_format(file).context(ctx)? == Format::Safetensors {
        return Ok(Box::new(Checkpoint::open(file).context(ctx)?));
    }
    if let Ok(ck) = cache_path(file).and_then(|c| Checkpoint::open(&c)) {
        return Ok(Box::new(ck));
    }
    let tensors = read_pth(file).context(ctx)?;
    Ok(Box::new(samrt::weights::F16Weights::new(tensors)))
}

fn info(file: &std::path::Path, device: Device, batch: usize) -> Result<(), CliError> {
    let ck = open_readonly(file)?;
    let ck = ck.as_ref();
    let cfg = samrt::config::infer_config(ck).context(|| format!("reading {}", file.display()))?;
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
    println!("parameters: {}", samrt::config::param_count(ck));
    if device != Device::Cpu {
        device_plan(ck, &cfg, batch)?;
    }
    Ok(())
}

#[cfg(feature = "cuda")]
fn device_plan(
    ck: &dyn samrt::weights::WeightSource,
    cfg: &samrt::config::SamConfig,
    batch: usize,
) -> Result<(), CliError> {
    let max = samrt::cuda::encoder_exec::MAX_BATCH;
    if batch == 0 || batch > max {
        return Err(CliError::msg(format!("--batch {batch}: must be 1..={max}")));
    }
    let (w, arena) = samrt::cuda::encoder::memory_plan(ck, &cfg.encoder, batch)
        .context(|| "planning the CUDA encoder".to_string())?;
    let mb = |b: usize| b as f64 / 1e6;
    println!("cuda_encoder_batch: {batch}");
    println!("cuda_weights_mb: {:.1}", mb(w));
    println!("cuda_arena_mb: {:.1}", mb(arena));
    println!("cuda_peak_mb: {:.1}", mb(w + arena));
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn device_plan(
    _ck: &dyn samrt::weights::WeightSource,
    _cfg: &samrt::config::SamConfig,
    _batch: usize,
) -> Result<(), CliError> {
    cuda_device().map(|_| ())
}
