//! The automatic mask generator on the device a model was loaded for: the CPU generator, or
//! [`super::device::DeviceAmg`] on CUDA. The one place where the `cuda` feature decides what
//! `auto --device cuda` means, so the CLI has no feature branches.

use std::path::Path;

use crate::amg::generator::{generate_with_progress, AmgConfig, Progress};
use crate::amg::record::MaskRecord;
use crate::error::Result;
use crate::io::image::rgb::RgbImage;
use crate::sam::backend::ComputeDevice;
use crate::sam::predictor::Sam;

/// `SamAutomaticMaskGenerator` on some device.
pub enum AutoGenerator<'a> {
    Cpu(&'a Sam),
    /// Boxed: the device generator holds the decoder's executor state, the CPU one a pointer.
    #[cfg(feature = "cuda")]
    Cuda(Box<super::device::DeviceAmg<'a>>),
}

impl<'a> AutoGenerator<'a> {
    /// The generator for `sam` (loaded from `model`) on `device`: on CUDA it uses `sam`'s
    /// device decoder when that is on the same device, or builds one from `model`.
    pub fn open(sam: &'a Sam, model: &Path, device: ComputeDevice) -> Result<Self> {
        match device {
            ComputeDevice::Cpu => Ok(AutoGenerator::Cpu(sam)),
            ComputeDevice::Cuda(ordinal) => cuda(sam, model, ordinal),
        }
    }

    /// The generator where `sam`'s own mask decoder runs: on its CUDA decoder when it has
    /// one (nothing is loaded again), else on the CPU. For long-lived callers (the server)
    /// that keep one model.
    pub fn on_model(sam: &'a Sam) -> Self {
        #[cfg(feature = "cuda")]
        {
            let ordinal = sam
                .decoder_backend()
                .and_then(|b| b.cuda_decoder())
                .map(|d| d.gpu().info().ordinal);
            if let Some(amg) = ordinal.and_then(|o| super::device::DeviceAmg::sharing(sam, o)) {
                return AutoGenerator::Cuda(Box::new(amg));
            }
        }
        AutoGenerator::Cpu(sam)
    }

    /// Where the decoder and the per-mask work run, in words.
    pub fn description(&self) -> String {
        match self {
            AutoGenerator::Cpu(_) => "CPU".into(),
            #[cfg(feature = "cuda")]
            AutoGenerator::Cuda(d) => d.description(),
        }
    }

    /// [`super::generator::generate_with_point_grids`] (the official `point_grids`) on this device.
    pub fn generate_with_point_grids(
        &self,
        img: &RgbImage,
        cfg: &AmgConfig,
        grids: &[Vec<[f64; 2]>],
    ) -> Result<Vec<MaskRecord>> {
        match self {
            AutoGenerator::Cpu(sam) => {
                super::generator::generate_with_point_grids(*sam, img, cfg, grids)
            }
            #[cfg(feature = "cuda")]
            AutoGenerator::Cuda(d) => {
                super::generator::run_pipeline_on_grids(&**d, img, cfg, grids)
            }
        }
    }

    pub fn generate(
        &self,
        img: &RgbImage,
        cfg: &AmgConfig,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<MaskRecord>> {
        match self {
            AutoGenerator::Cpu(sam) => generate_with_progress(*sam, img, cfg, progress),
            #[cfg(feature = "cuda")]
            AutoGenerator::Cuda(d) => d.generate(img, cfg, progress),
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda<'a>(sam: &'a Sam, model: &Path, ordinal: usize) -> Result<AutoGenerator<'a>> {
    use super::device::DeviceAmg;
    let amg = match DeviceAmg::sharing(sam, ordinal) {
        Some(amg) => amg,
        None => {
            let (ck, _) = crate::io::checkpoint::cache::open_model(model)?;
            DeviceAmg::new(sam, &ck, ordinal)?
        }
    };
    Ok(AutoGenerator::Cuda(Box::new(amg)))
}

#[cfg(not(feature = "cuda"))]
fn cuda<'a>(_: &'a Sam, _: &Path, _: usize) -> Result<AutoGenerator<'a>> {
    Err(crate::error::Error::Unsupported(
        "this samrt was built without the `cuda` feature".into(),
    ))
}
