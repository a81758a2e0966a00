//! Where the image encoder and the mask decoder run. A [`Sam`](crate::Sam) holds one
//! [`EncoderBackend`] and, on a device, one [`DecoderBackend`], chosen when it is loaded;
//! this file is the one place where the `cuda` feature decides what a device means, so
//! neither `Sam` nor the CLI has feature branches. On the CPU the prompt encoder and mask
//! decoder are `Sam`'s own f32 modules.

use crate::cpu::model::image_encoder::ImageEncoder;
use crate::cpu::ops::preprocess_patchify::{preprocess_patchify, resize_longest_side};
use std::sync::Arc;

use crate::cuda::model::mask_decoder::{DecodedMasks, DevicePrompt, PostFrame, PredictedMasks};
use crate::cuda::profile::report::KernelProfile;
use crate::error::{Error, Result};
use crate::graph::schedule::NodeTime;
use crate::io::config::{EncoderConfig, SamConfig};
use crate::io::image::rgb::RgbImage;
use crate::io::weights::WeightSource;

/// Where the image encoder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    /// A CUDA device by ordinal (needs the `cuda` feature and the NVIDIA driver).
    Cuda(usize),
}

/// Whether this build has the CUDA backend (the `cuda` feature).
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// One image's embedding `[out_chans, grid, grid]` and its resized (h, w) before padding.
pub type Embedded = (Vec<f32>, (usize, usize));

/// An image embedding held in the memory of the device that made it (the CUDA encoder's,
/// or [`crate::Sam::upload_embedding`]'s), so that decoding prompts against it moves no
/// embedding between host and device. Cheap to clone (shared); freed with its last clone.
#[derive(Clone)]
pub struct DeviceEmbedding(Arc<dyn std::any::Any + Send + Sync>);

impl DeviceEmbedding {
    /// Wraps a backend's device buffer.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn new<T: std::any::Any + Send + Sync>(inner: T) -> DeviceEmbedding {
        DeviceEmbedding(Arc::new(inner))
    }

    /// The backend's device buffer, when it is of type `T`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn get<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for DeviceEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceEmbedding")
    }
}

/// The embedding a device decode reads: its host values `[dim, grid, grid]`, and the
/// same values in device memory when there are any. The device copy is used when it is
/// the decoder's device context's own; else the host values are copied for the call.
#[derive(Clone, Copy, Debug)]
pub struct DecoderEmbedding<'a> {
    pub host: &'a [f32],
    pub device: Option<&'a DeviceEmbedding>,
}

/// One image's embedding as an encoder backend returns it: host values and resized size,
/// and (on a device) the same values kept in device memory.
pub type EmbeddedResident = (Embedded, Option<DeviceEmbedding>);

/// What a device backend reports about its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSummary {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    /// e.g. 13000 for a CUDA 13.0 driver.
    pub driver_version: i32,
}

/// An image encoder on some device.
pub trait EncoderBackend: Send + Sync {
    /// Where it runs, in words ("CPU", "CUDA device 0 (NVIDIA H100)").
    fn description(&self) -> String;
    /// Most images one [`EncoderBackend::embed`] call takes.
    fn max_batch(&self) -> usize;
    /// Embeds up to [`EncoderBackend::max_batch`] images (resize, normalise, pad, encode).
    fn embed(&self, images: &[&RgbImage]) -> Result<Vec<Embedded>>;
    /// [`EncoderBackend::embed`], keeping each embedding in device memory too where the
    /// encoder runs on a device (the CPU keeps none).
    fn embed_resident(&self, images: &[&RgbImage]) -> Result<Vec<EmbeddedResident>> {
        Ok(self.embed(images)?.into_iter().map(|e| (e, None)).collect())
    }
    /// The f32 encoder, when this backend is the CPU (its blocks are driven directly by
    /// tests and benchmarks).
    fn cpu_encoder(&self) -> Option<&ImageEncoder> {
        None
    }
    /// The device, for a device backend.
    fn device(&self) -> Option<DeviceSummary> {
        None
    }
    /// Device time of whole encodes of `batch` copies of `img` (after one warm-up), ms.
    fn time_runs(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<Vec<f64>> {
        let _ = (img, batch, iters);
        Err(not_a_device(&self.description()))
    }
    /// Device time of each kernel of one encode of `batch` images, in schedule order.
    fn time_kernels(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<Vec<NodeTime>> {
        let _ = (img, batch, iters);
        Err(not_a_device(&self.description()))
    }
    /// Planned device memory for `batch` images: (weight bytes, arena bytes).
    fn planned_bytes(&self, batch: usize) -> Option<(usize, usize)> {
        let _ = batch;
        None
    }
    /// Every kernel of one encode of `batch` copies of `img` with its time (CUDA events,
    /// median of `iters`; on vgpu the H100 model over its counters), counters and floor.
    fn profile_kernels(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<KernelProfile> {
        let _ = (img, batch, iters);
        Err(not_a_device(&self.description()))
    }
}

/// The prompt encoder and mask decoder on a device.
pub trait DecoderBackend: Send + Sync {
    /// Where it runs, in words ("CUDA device 0 (NVIDIA H100)").
    fn description(&self) -> String;
    /// Every mask token's output for each prompt against `embedding` (`[dim, grid, grid]`).
    fn decode(&self, embedding: &[f32], prompts: &[DevicePrompt]) -> Result<Vec<DecodedMasks>>;
    /// `embedding` (`[dim, grid, grid]`) copied to the device once, for any number of
    /// decodes.
    fn upload(&self, embedding: &[f32]) -> Result<DeviceEmbedding>;
    /// The CUDA decoder behind this backend, for device pipelines that take each batch's
    /// outputs where they were decoded (the automatic mask generator).
    #[cfg(feature = "cuda")]
    fn cuda_decoder(&self) -> Option<&crate::cuda::model::mask_decoder_exec::CudaDecoder> {
        None
    }
    /// Decodes `prompts` and post-processes each one's requested masks (per `multimask`)
    /// on the device: requested low-res logits, scores and masks at `post.orig_size`.
    fn predict(
        &self,
        embedding: DecoderEmbedding<'_>,
        prompts: &[DevicePrompt],
        multimask: &[bool],
        post: PostFrame,
    ) -> Result<Vec<PredictedMasks>>;
    /// Wall time (ms) of decoding `prompts` against `embedding` held on the device, the
    /// outputs left there, per iteration after a warm-up.
    fn time_decode(
        &self,
        embedding: &[f32],
        prompts: &[DevicePrompt],
        iters: usize,
    ) -> Result<Vec<f64>>;
    /// Every kernel of one decoder run of `prompts` (one shape, one bucket) with its time,
    /// counters and floor, as [`EncoderBackend::profile_kernels`].
    fn profile_kernels(
        &self,
        embedding: &[f32],
        prompts: &[DevicePrompt],
        iters: usize,
    ) -> Result<KernelProfile>;
}

fn not_a_device(what: &str) -> Error {
    Error::Unsupported(format!("device timing of an encoder on the {what}"))
}

/// The f32 CPU encoder, image by image.
pub struct CpuBackend(pub ImageEncoder);

impl EncoderBackend for CpuBackend {
    fn description(&self) -> String {
        "CPU".into()
    }

    /// One: images are encoded (and checked by `Sam`) one after the other, as `embed` does.
    fn max_batch(&self) -> usize {
        1
    }

    /// Resize, then normalisation, padding and the patch matrix in one pass
    /// (`preprocess_patchify`, the same values as `preprocess` + `patchify_chw`, bit for bit).
    fn embed(&self, images: &[&RgbImage]) -> Result<Vec<Embedded>> {
        let geom = self.0.patch_geom();
        images
            .iter()
            .map(|img| {
                let r = resize_longest_side(img, geom.img_size)?;
                let patches = preprocess_patchify(&r.data, r.height, r.width, geom)?;
                Ok((self.0.forward_patches(&patches)?, (r.height, r.width)))
            })
            .collect()
    }

    fn cpu_encoder(&self) -> Option<&ImageEncoder> {
        Some(&self.0)
    }
}

/// The image encoder on `device`, built from `w`. For CUDA its fp16 weights are copied to
/// the device once; no CPU encoder is built.
pub fn open(
    device: ComputeDevice,
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
) -> Result<Box<dyn EncoderBackend>> {
    match device {
        ComputeDevice::Cpu => Ok(Box::new(CpuBackend(ImageEncoder::load(w, cfg)?))),
        ComputeDevice::Cuda(ordinal) => cuda::open(ordinal, w, cfg),
    }
}

/// A model's backends: the image encoder (None when not asked for) and the device decoder
/// (None on the CPU).
pub type Backends = (
    Option<Box<dyn EncoderBackend>>,
    Option<Box<dyn DecoderBackend>>,
);

/// The image encoder (when `with_encoder`) and the device decoder on `device`, sharing one
/// device context; on the CPU the decoder is None (`Sam` decodes with its own modules).
pub fn open_model(
    device: ComputeDevice,
    w: &dyn WeightSource,
    cfg: &SamConfig,
    with_encoder: bool,
) -> Result<Backends> {
    match device {
        ComputeDevice::Cpu => {
            let enc = with_encoder
                .then(|| open(device, w, &cfg.encoder))
                .transpose()?;
            Ok((enc, None))
        }
        ComputeDevice::Cuda(ordinal) => cuda::open_model(ordinal, w, cfg, with_encoder),
    }
}

/// Most images one CUDA encoder run takes.
pub const CUDA_MAX_BATCH: usize = crate::cuda::model::encoder::MAX_BATCH;

/// The CUDA encoder's schedule and arena plan for `batch` images. Host-only: it needs no
/// device and builds without the `cuda` feature (`samrt info --graph`).
pub fn plan_cuda_encoder(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
    batch: usize,
) -> Result<crate::cuda::model::encoder::EncoderPlan> {
    crate::cuda::model::encoder::plan_encoder(w, cfg, batch)
}

/// CUDA device 0 when the driver and a usable device are present; a clear error otherwise
/// (no feature, no driver, no device).
pub fn probe_cuda() -> Result<ComputeDevice> {
    cuda::probe()
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;

    use super::EncoderBackend;
    use super::{
        Backends, ComputeDevice, DecoderBackend, DecoderEmbedding, DeviceEmbedding, DeviceSummary,
        Embedded, EmbeddedResident,
    };
    use crate::cuda::model::encoder::MAX_BATCH;
    use crate::cuda::model::encoder_exec::CudaEncoder;
    use crate::cuda::model::mask_decoder::{DecodedMasks, DevicePrompt, PostFrame, PredictedMasks};
    use crate::cuda::model::mask_decoder_exec::{CudaDecoder, EmbeddingInput};
    use crate::cuda::profile::report::KernelProfile;
    use crate::cuda::runtime::context::{cuda_available, GpuContext};
    use crate::cuda::runtime::resident::Resident;
    use crate::graph::schedule::NodeTime;
    use crate::io::config::EncoderConfig;
    use crate::io::config::SamConfig;
    use crate::io::image::rgb::RgbImage;
    use crate::io::weights::WeightSource;
    use crate::Result;

    pub fn open(
        ordinal: usize,
        w: &dyn WeightSource,
        cfg: &EncoderConfig,
    ) -> Result<Box<dyn EncoderBackend>> {
        let gpu = Arc::new(GpuContext::with_device(ordinal)?);
        Ok(Box::new(CudaEncoder::new(gpu, w, cfg)?))
    }

    pub fn probe() -> Result<ComputeDevice> {
        Ok(ComputeDevice::Cuda(cuda_available()?.ordinal))
    }

    pub fn open_model(
        ordinal: usize,
        w: &dyn WeightSource,
        cfg: &SamConfig,
        with_encoder: bool,
    ) -> Result<Backends> {
        let gpu = Arc::new(GpuContext::with_device(ordinal)?);
        let enc: Option<Box<dyn EncoderBackend>> = match with_encoder {
            true => Some(Box::new(CudaEncoder::new(
                Arc::clone(&gpu),
                w,
                &cfg.encoder,
            )?)),
            false => None,
        };
        let dec = CudaDecoder::new(gpu, w, cfg)?;
        Ok((enc, Some(Box::new(dec))))
    }

    fn describe(gpu: &GpuContext) -> String {
        let i = gpu.info();
        format!("CUDA device {} ({})", i.ordinal, i.name)
    }

    impl DecoderBackend for CudaDecoder {
        fn description(&self) -> String {
            describe(self.gpu())
        }

        fn decode(&self, embedding: &[f32], prompts: &[DevicePrompt]) -> Result<Vec<DecodedMasks>> {
            CudaDecoder::decode(self, embedding, prompts)
        }

        fn upload(&self, embedding: &[f32]) -> Result<DeviceEmbedding> {
            Ok(DeviceEmbedding::new(CudaDecoder::upload(self, embedding)?))
        }

        fn cuda_decoder(&self) -> Option<&CudaDecoder> {
            Some(self)
        }

        fn predict(
            &self,
            embedding: DecoderEmbedding<'_>,
            prompts: &[DevicePrompt],
            multimask: &[bool],
            post: PostFrame,
        ) -> Result<Vec<PredictedMasks>> {
            let own = embedding
                .device
                .and_then(|d| d.get::<Resident>())
                .filter(|r| r.check_context(self.gpu()).is_ok());
            let input = match own {
                Some(r) => EmbeddingInput::Device(r),
                None => EmbeddingInput::Host(embedding.host),
            };
            CudaDecoder::predict(self, input, prompts, multimask, post)
        }

        fn time_decode(
            &self,
            embedding: &[f32],
            prompts: &[DevicePrompt],
            iters: usize,
        ) -> Result<Vec<f64>> {
            let r = CudaDecoder::upload(self, embedding)?;
            CudaDecoder::time_decode(self, &r, prompts, iters)
        }

        fn profile_kernels(
            &self,
            embedding: &[f32],
            prompts: &[DevicePrompt],
            iters: usize,
        ) -> Result<KernelProfile> {
            CudaDecoder::profile(self, embedding, prompts, iters)
        }
    }

    impl EncoderBackend for CudaEncoder {
        fn description(&self) -> String {
            describe(self.gpu())
        }

        fn max_batch(&self) -> usize {
            MAX_BATCH
        }

        fn embed(&self, images: &[&RgbImage]) -> Result<Vec<Embedded>> {
            self.embed_batch(images)
        }

        fn embed_resident(&self, images: &[&RgbImage]) -> Result<Vec<EmbeddedResident>> {
            Ok(self
                .embed_batch_resident(images)?
                .into_iter()
                .map(|(e, r)| (e, Some(DeviceEmbedding::new(r))))
                .collect())
        }

        fn device(&self) -> Option<DeviceSummary> {
            let i = self.gpu().info();
            Some(DeviceSummary {
                ordinal: i.ordinal,
                name: i.name.clone(),
                compute_capability: i.compute_capability,
                multiprocessors: i.multiprocessors,
                driver_version: i.driver_version,
            })
        }

        fn time_runs(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<Vec<f64>> {
            self.time_replays(img, batch, iters)
        }

        fn time_kernels(
            &self,
            img: &RgbImage,
            batch: usize,
            iters: usize,
        ) -> Result<Vec<NodeTime>> {
            self.time_nodes(img, batch, iters)
        }

        fn planned_bytes(&self, batch: usize) -> Option<(usize, usize)> {
            Some(CudaEncoder::planned_bytes(self, batch))
        }

        fn profile_kernels(
            &self,
            img: &RgbImage,
            batch: usize,
            iters: usize,
        ) -> Result<KernelProfile> {
            self.profile(img, batch, iters)
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::{Backends, ComputeDevice, EncoderBackend};
    use crate::io::config::{EncoderConfig, SamConfig};
    use crate::io::weights::WeightSource;
    use crate::{Error, Result};

    fn unbuilt() -> Error {
        Error::Unsupported("this samrt was built without the `cuda` feature".into())
    }

    pub fn open(
        _: usize,
        _: &dyn WeightSource,
        _: &EncoderConfig,
    ) -> Result<Box<dyn EncoderBackend>> {
        Err(unbuilt())
    }

    pub fn probe() -> Result<ComputeDevice> {
        Err(unbuilt())
    }

    pub fn open_model(_: usize, _: &dyn WeightSource, _: &SamConfig, _: bool) -> Result<Backends> {
        Err(unbuilt())
    }
}
