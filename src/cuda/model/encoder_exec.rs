//! The image encoder on a device: its schedule ([`super::encoder`]) bound to the generic
//! executor (`crate::cuda::runtime::executor`), one shape key per batch size. What is the
//! encoder's own: resizing images exactly as the CPU path does and packing them into the
//! schedule's input buffers, and reading the embeddings back.

use std::sync::Arc;

use super::encoder::{build_graph, EncoderIo, MAX_BATCH};
use super::scales::{prepare_weights, EncoderScales};
use super::schedule_profile::profile_bound;
use crate::cpu::ops::preprocess_patchify::PatchGeom;
use crate::cuda::ops::preprocess_patchify::pack_images;
use crate::cuda::profile::report::KernelProfile;
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::cuda::runtime::executor::{Bound, Executor};
use crate::cuda::runtime::resident::Resident;
use crate::cuda::runtime::weights::DeviceWeights;
use crate::graph::ops::Op;
use crate::graph::schedule::NodeTime;
use crate::io::config::EncoderConfig;
use crate::io::image::resize::{resize_bilinear_pillow, resize_shape};
use crate::io::image::rgb::RgbImage;
use crate::io::weights::WeightSource;
use crate::{Error, Result};

/// The image encoder on one device: weights shared (Arc) by every context made from it.
pub struct CudaEncoder {
    exec: Executor<Op>,
    cfg: EncoderConfig,
    scales: EncoderScales,
}

/// What one call produced per image: the `[out_chans, grid, grid]` embedding and the resized
/// (h, w) before padding.
pub type EncodedImage = (Vec<f32>, (usize, usize));

impl CudaEncoder {
    /// Uploads the encoder weights (one allocation) and prepares nothing else: arenas and
    /// graphs are made on first use of each batch size.
    pub fn new(gpu: Arc<GpuContext>, w: &dyn WeightSource, cfg: &EncoderConfig) -> Result<Self> {
        let (tensors, scales) = prepare_weights(w, cfg)?;
        // The schedule's weights agree with what is uploaded, checked before any upload.
        build_graph(cfg, &scales, 1).0.weights.check(&tensors)?;
        let weights = DeviceWeights::upload(&gpu, &tensors)?;
        Ok(Self::with_weights(gpu, weights, cfg.clone(), scales))
    }

    /// Another inference context on the same device weights (its own arenas and graphs).
    pub fn with_weights(
        gpu: Arc<GpuContext>,
        weights: Arc<DeviceWeights>,
        cfg: EncoderConfig,
        scales: EncoderScales,
    ) -> Self {
        let (c, s) = (cfg.clone(), scales.clone());
        let build = Box::new(move |batch: usize| Ok(build_graph(&c, &s, batch).0));
        CudaEncoder {
            exec: Executor::new("encoder", gpu, weights, build),
            cfg,
            scales,
        }
    }

    /// A new context sharing this one's device weights (in the same arena mode).
    pub fn new_context(&self) -> Self {
        Self::with_weights(
            Arc::clone(self.exec.gpu()),
            Arc::clone(self.exec.weights()),
            self.cfg.clone(),
            self.scales.clone(),
        )
        .checked_arena(self.exec.is_checked_arena())
    }

    /// The executor's checked-arena mode (each activation buffer its own allocation, so a
    /// memory checker sees an overflow from one into the next), whatever the environment
    /// says; before the first run.
    pub fn checked_arena(mut self, on: bool) -> Self {
        self.exec = self.exec.checked_arena(on);
        self
    }

    pub fn gpu(&self) -> &Arc<GpuContext> {
        self.exec.gpu()
    }

    pub fn weights(&self) -> &Arc<DeviceWeights> {
        self.exec.weights()
    }

    pub fn scales(&self) -> &EncoderScales {
        &self.scales
    }

    fn io(&self, batch: usize) -> EncoderIo {
        build_graph(&self.cfg, &self.scales, batch).1
    }

    /// (weight bytes, arena bytes) for `batch`, from the plan alone.
    pub fn planned_bytes(&self, batch: usize) -> (usize, usize) {
        let (g, _) = build_graph(&self.cfg, &self.scales, batch);
        (
            self.weights().bytes(),
            crate::graph::planner::plan(&g).arena_bytes,
        )
    }

    /// Resizes each image exactly as Pillow does (the CPU path's resize) and packs them into
    /// the schedule's input layout: (resized images, pixels, sizes).
    fn pack(&self, images: &[&RgbImage]) -> Result<(Vec<RgbImage>, Vec<u8>, Vec<i32>)> {
        let batch = images.len();
        if batch == 0 || batch > MAX_BATCH {
            return Err(Error::Unsupported(format!(
                "CUDA encoder batch of {batch} images (1..={MAX_BATCH})"
            )));
        }
        let target = self.cfg.img_size;
        let mut resized = Vec::with_capacity(batch);
        for img in images {
            img.check()?;
            let (h, w) = resize_shape(img.height, img.width, target);
            resized.push(resize_bilinear_pillow(img, w, h));
        }
        let geom = PatchGeom {
            img_size: target,
            patch: self.cfg.patch_size,
        };
        let views: Vec<(&[u8], usize, usize)> = resized
            .iter()
            .map(|r| (r.data.as_slice(), r.height, r.width))
            .collect();
        let (pixels, sizes) = pack_images(geom, &views)?;
        Ok((resized, pixels, sizes))
    }

    /// Copies packed inputs into a bound schedule's input buffers.
    fn upload(
        ex: &Executor<Op>,
        st: &Bound<Op>,
        io: &EncoderIo,
        pixels: &[u8],
        sizes: &[i32],
    ) -> Result<()> {
        let stream = ex.gpu().stream();
        let mut px = ex.view::<u8>(st, io.image)?;
        guarded("copying images to the device", || {
            stream.memcpy_htod(pixels, &mut px)
        })?;
        let mut sz = ex.view::<i32>(st, io.sizes)?;
        guarded("copying image sizes to the device", || {
            stream.memcpy_htod(sizes, &mut sz)
        })
    }

    /// Resizes each image exactly as Pillow does (the CPU path's resize), runs the encoder
    /// on the device for the whole batch, and returns each embedding.
    pub fn embed_batch(&self, images: &[&RgbImage]) -> Result<Vec<EncodedImage>> {
        Ok(self
            .embed_impl(images, false)?
            .into_iter()
            .map(|e| e.0)
            .collect())
    }

    /// [`CudaEncoder::embed_batch`], each embedding also copied on the device into memory
    /// of its own (no host round trip) for the decoder to read.
    pub fn embed_batch_resident(
        &self,
        images: &[&RgbImage],
    ) -> Result<Vec<(EncodedImage, Resident)>> {
        let out = self.embed_impl(images, true)?;
        Ok(out
            .into_iter()
            .filter_map(|(e, r)| r.map(|r| (e, r)))
            .collect())
    }

    fn embed_impl(
        &self,
        images: &[&RgbImage],
        keep: bool,
    ) -> Result<Vec<(EncodedImage, Option<Resident>)>> {
        let batch = images.len();
        let (resized, pixels, sizes) = self.pack(images)?;
        let io = self.io(batch);
        let (host, resident) = self.exec.with(batch, |ex, st| {
            Self::upload(ex, st, &io, &pixels, &sizes)?;
            ex.run(st)?;
            let stream = ex.gpu().stream();
            let emb = ex.view::<f32>(st, io.embedding)?;
            let per = st.graph().get(io.embedding).len / batch;
            let resident = (0..batch)
                .map(|b| {
                    keep.then(|| Resident::copy_of(ex.gpu(), &emb.window(b * per, per)))
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()?;
            let mut host = vec![0f32; per * batch];
            guarded("copying the embedding to the host", || {
                stream.memcpy_dtoh(&emb, &mut host)
            })?;
            ex.gpu().synchronize(stream)?;
            Ok((host, resident))
        })?;
        let per = host.len() / batch;
        Ok(host
            .chunks(per)
            .zip(&resized)
            .zip(resident)
            .map(|((e, r), d)| ((e.to_vec(), (r.height, r.width)), d))
            .collect())
    }

    /// Device time of the encoder for `batch` copies of `img`, measured with CUDA events
    /// around each replay of the captured graph (one warm-up run first): one value per
    /// iteration, in ms. Host resize and copies are not included.
    pub fn time_replays(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<Vec<f64>> {
        let imgs: Vec<&RgbImage> = vec![img; batch];
        self.embed_batch(&imgs)?;
        self.exec.with(batch, |ex, st| ex.time_runs(st, iters))
    }

    /// Device time of each node for `batch`, run eagerly (no graph) with an event pair
    /// around every launch.
    pub fn time_nodes(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<Vec<NodeTime>> {
        let imgs: Vec<&RgbImage> = vec![img; batch];
        self.embed_batch(&imgs)?;
        self.exec.with(batch, |ex, st| ex.time_nodes(st, iters))
    }

    /// Every kernel of one encode of `batch` copies of `img`, with its time and floor
    /// (`schedule_profile::profile_bound`).
    pub fn profile(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<KernelProfile> {
        let imgs: Vec<&RgbImage> = vec![img; batch];
        let (_, pixels, sizes) = self.pack(&imgs)?;
        let io = self.io(batch);
        self.exec.with(batch, |ex, st| {
            Self::upload(ex, st, &io, &pixels, &sizes)?;
            profile_bound(ex, st, iters)
        })
    }
}
