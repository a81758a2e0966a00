//! What every subcommand shares: `--device`, the error type that carries context, and
//! model loading with its messages.

use clap::ValueEnum;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    Auto,
    Cpu,
    Cuda,
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

/// A usable CUDA device, or why there is none (no `cuda` feature, no driver, no device).
pub fn cuda_device() -> Result<samrt::ComputeDevice, CliError> {
    if !samrt::sam::backend::CUDA_BUILT {
        return Err(CliError::msg(
            "--device cuda: this samrt was built without the `cuda` feature; rebuild with `cargo build --release --features cuda` or use --device cpu",
        ));
    }
    samrt::sam::backend::probe_cuda().context(|| "--device cuda".to_string())
}

/// Loads `--model` for `device`, printing the cache message and, for CUDA, which device.
/// `image_size` is `--image-size` (None: the checkpoint's own input size).
pub fn load_model(
    model: &std::path::Path,
    device: samrt::ComputeDevice,
    image_size: Option<usize>,
) -> Result<samrt::Sam, CliError> {
    let opts = samrt::LoadOptions { device, image_size };
    let (sam, msg) = samrt::Sam::load_with(model, opts).context(|| match image_size {
        Some(s) => format!("loading --model {} at --image-size {s}", model.display()),
        None => format!("loading --model {}", model.display()),
    })?;
    if let Some(m) = msg {
        eprintln!("samrt: {m}");
    }
    if device != samrt::ComputeDevice::Cpu {
        eprintln!("samrt: image encoder on {}", sam.device_description());
        eprintln!("samrt: mask decoder on {}", sam.decoder_description());
    }
    Ok(sam)
}
