//! `samrt profile`: every kernel of one image encode, or of one mask decoder run of
//! single-point prompts, on the device, one row per kernel entry point (launches summed)
//! with its time, FLOPs, bytes, achieved rate, share of the roofline and bound, then the
//! total and the floor. On a GPU the times are CUDA events; on vgpu
//! they are the H100 model's, from vgpu's counters (docs/kernels.md, "The H100 model").

use super::bench::{decoder_inputs, load_on, synthetic_image};
use super::common::{cuda_device, CliError, Device};
use clap::{Args, ValueEnum};
use samrt::cuda::profile::report::TimeSource;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Component {
    /// The image encoder.
    Encoder,
    /// The prompt encoder and mask decoder: one run of `--prompts` single-point prompts.
    Decoder,
    /// The image encoder, then the decoder (with --json: one object holding both).
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
    /// Single-point prompts per decoder run (1 to 64, one CUDA graph bucket; more
    /// prompts run as repeats of the 64 bucket, so its profile is theirs per 64).
    #[arg(long, default_value_t = 1)]
    prompts: usize,
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
    let max_prompts = samrt::cuda::model::mask_decoder::MAX_DECODE_BATCH;
    if a.prompts == 0 || a.prompts > max_prompts {
        return Err(CliError::msg(format!(
            "--prompts {}: between 1 and {max_prompts} (one decoder run; larger calls \
             repeat the {max_prompts} bucket)",
            a.prompts
        )));
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
    let (sam, model) = load_on(&a.model, device, a.image_size)?;
    let img_size = sam.config.encoder.img_size;
    let img = synthetic_image()?;
    let enc_profile = || {
        let lib = |e: samrt::Error| CliError::msg(format!("profiling the image encoder: {e}"));
        let enc = sam.encoder_backend().map_err(lib)?;
        enc.profile_kernels(&img, a.batch, a.iters).map_err(lib)
    };
    let dec_profile = || {
        let lib = |e: samrt::Error| CliError::msg(format!("profiling the mask decoder: {e}"));
        let dec = sam
            .decoder_backend()
            .ok_or_else(|| CliError::msg("the mask decoder is not on the device"))?;
        let (features, prompts) = decoder_inputs(&sam, a.prompts);
        let views: Vec<_> = prompts.iter().map(|p| p.as_view()).collect();
        dec.profile_kernels(&features, &views, a.iters).map_err(lib)
    };
    match a.component {
        Component::Encoder => {
            let p = enc_profile()?;
            print_profile(&a, &p, || {
                format!("{model} image encoder at {img_size} px, batch {}", a.batch)
            });
        }
        Component::Decoder => {
            let p = dec_profile()?;
            print_profile(&a, &p, || decoder_title(&model, img_size, a.prompts));
        }
        Component::All => {
            let (e, d) = (enc_profile()?, dec_profile()?);
            if a.json {
                let j = serde_json::json!({"encoder": e.to_json(), "decoder": d.to_json()});
                println!("{j}");
                return Ok(());
            }
            print_profile(&a, &e, || {
                format!("{model} image encoder at {img_size} px, batch {}", a.batch)
            });
            println!();
            print_profile(&a, &d, || decoder_title(&model, img_size, a.prompts));
        }
    }
    Ok(())
}

fn decoder_title(model: &str, img_size: usize, prompts: usize) -> String {
    format!(
        "{model} prompt encoder + mask decoder at {img_size} px, {prompts} single-point \
         prompt(s) (bucket {})",
        prompts.next_power_of_two()
    )
}

fn print_profile(
    a: &ProfileArgs,
    p: &samrt::cuda::profile::report::KernelProfile,
    title: impl Fn() -> String,
) {
    if a.json {
        println!("{}", p.to_json());
        return;
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
        "samrt profile: {}, on {}\ntime: {source}",
        title(),
        p.device
    );
    print!("{}", p.table());
}
