//! `samrt profile`: every kernel of one image encode on the device, one row per kernel entry
//! point (launches summed) with its time, FLOPs, bytes, achieved rate, share of the roofline
//! and bound, then the total and the floor. On a GPU the times are CUDA events; on vgpu
//! they are the H100 model's, from vgpu's counters (docs/kernels.md, "The H100 model").

use super::bench::{load_on, synthetic_image};
use super::common::{cuda_device, CliError, Device};
use clap::{Args, ValueEnum};
use samrt::cuda::profile::report::TimeSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// The image encoder.
    Encoder,
    /// The mask decoder (not on the device yet: an error).
    Decoder,
    /// Whatever runs on the device: today the image encoder.
    All,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// Only `cuda` (a GPU, or vgpu for modelled H100 times); `cpu` has no kernels to profile.
    #[arg(long, value_enum, default_value = "cuda")]
    device: Device,
    /// vit_b, vit_l, vit_h (random weights: the counters do not depend on the values) or a
    /// checkpoint file.
    #[arg(long)]
    model: String,
    /// Input size in pixels (a multiple of 16). Default: the model's own.
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
    /// Images per encode.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    #[arg(long, value_enum, default_value = "all")]
    component: Component,
    /// Timed runs per node on a GPU (the median is reported); vgpu runs each node once,
    /// its counters being exact.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Bounds that keep a profile finite: the largest CUDA graph batch, and iterations as bench.
const MAX_ITERS: usize = 100_000;

pub fn run(a: ProfileArgs) -> Result<(), CliError> {
    if a.device == Device::Cpu {
        return Err(CliError::msg(
            "--device cpu: samrt profile times CUDA kernels and the CPU path has none; use \
             --device cuda (a GPU, or vgpu for the modelled H100 times)",
        ));
    }
    if a.component == Component::Decoder {
        return Err(CliError::msg(
            "--component decoder: the mask decoder's kernels are not profiled yet (profile \
             covers the image encoder); use --component encoder",
        ));
    }
    let max_batch = samrt::sam::backend::CUDA_MAX_BATCH;
    if a.batch == 0 || a.batch > max_batch {
        return Err(CliError::msg(format!(
            "--batch {}: between 1 and {max_batch}",
            a.batch
        )));
    }
    if a.iters == 0 || a.iters > MAX_ITERS {
        return Err(CliError::msg(format!(
            "--iters {}: between 1 and {MAX_ITERS}",
            a.iters
        )));
    }
    if !samrt::sam::backend::CUDA_BUILT {
        return Err(CliError::msg(
            "--device cuda: this samrt was built without the `cuda` feature, and profile \
             times CUDA kernels; rebuild with `cargo build --release --features cuda`",
        ));
    }
    let device = cuda_device()?;
    if a.component == Component::All {
        eprintln!(
            "samrt: --component all: profiling the image encoder; the mask decoder's kernels \
             are not profiled yet"
        );
    }
    let (sam, model) = load_on(&a.model, device, a.image_size)?;
    let img_size = sam.config.encoder.img_size;
    let img = synthetic_image()?;
    let lib = |e: samrt::Error| CliError::msg(format!("profiling the image encoder: {e}"));
    let enc = sam.encoder_backend().map_err(lib)?;
    let p = enc.profile_kernels(&img, a.batch, a.iters).map_err(lib)?;
    if a.json {
        println!("{}", p.to_json());
        return Ok(());
    }
    let source = match p.time_source {
        TimeSource::CudaEvents => format!(
            "CUDA events, median of {} eager runs per node; FLOPs and bytes nominal",
            a.iters
        ),
        TimeSource::Model => {
            "modelled H100 SXM time from vgpu's counters (docs/kernels.md, \"The H100 model\")"
                .to_string()
        }
    };
    println!(
        "samrt profile: {model} image encoder at {img_size} px, batch {}, on {}\ntime: {source}",
        a.batch, p.device
    );
    print!("{}", p.table());
    Ok(())
}
