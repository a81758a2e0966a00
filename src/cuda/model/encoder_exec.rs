//! The image encoder on a device: its schedule ([`super::encoder`]) bound to the generic
//! executor (`crate::cuda::runtime::executor`), one shape key per batch size. What is the
//! encoder's own: resizing images exactly as the CPU path does and packing them into the
//! schedule's input buffers, and reading the embeddings back.

use std::sync::Arc;

use super::encoder::{build_graph, EncoderIo, MAX_BATCH};
use super::scales::{prepare_weights, EncoderScales};
use crate::cpu::ops::preprocess_patchify::PatchGeom;
use crate::cuda::ops::preprocess_patchify::pack_images;
use crate::cuda::profile::report::{KernelProfile, TimeSource};
use crate::cuda::profile::vgpu::{is_vgpu, Recording};
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::cuda::runtime::executor::{Bound, Executor};
use crate::cuda::runtime::weights::DeviceWeights;
use crate::graph::cost::node_cost;
use crate::graph::ops::{Op, OpDesc};
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
        let batch = images.len();
        let (resized, pixels, sizes) = self.pack(images)?;
        let io = self.io(batch);
        let host = self.exec.with(batch, |ex, st| {
            Self::upload(ex, st, &io, &pixels, &sizes)?;
            ex.run(st)?;
            let stream = ex.gpu().stream();
            let emb = ex.view::<f32>(st, io.embedding)?;
            let mut host = vec![0f32; st.graph().get(io.embedding).len];
            guarded("copying the embedding to the host", || {
                stream.memcpy_dtoh(&emb, &mut host)
            })?;
            ex.gpu().synchronize(stream)?;
            Ok(host)
        })?;
        let per = host.len() / batch;
        Ok(host
            .chunks(per)
            .zip(&resized)
            .map(|(e, r)| (e.to_vec(), (r.height, r.width)))
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

    /// Every kernel of one encode of `batch` copies of `img`, with its time and floor. On
    /// vgpu the nodes run once each, eagerly, while vgpu records their counters, and the
    /// H100 model times them; on a GPU each node's time is the median of `iters` eager
    /// runs between CUDA events, its FLOPs and bytes the graph's nominal ones.
    pub fn profile(&self, img: &RgbImage, batch: usize, iters: usize) -> Result<KernelProfile> {
        let info = self.gpu().info();
        if !is_vgpu(&info.name) {
            let times = self.time_nodes(img, batch, iters)?;
            let mut p = KernelProfile::new(info.name.clone(), TimeSource::CudaEvents);
            self.exec.with(batch, |_, st| {
                let g = st.graph();
                for (node, t) in g.nodes.iter().zip(&times) {
                    let c = node_cost(g, node);
                    p.add_measured(&t.entry_point, t.op, t.median_ms * 1e-3, c);
                }
                Ok(())
            })?;
            return Ok(p);
        }
        let imgs: Vec<&RgbImage> = vec![img; batch];
        let (_, pixels, sizes) = self.pack(&imgs)?;
        let io = self.io(batch);
        let mut p = KernelProfile::new(info.name.clone(), TimeSource::Model);
        self.exec.with(batch, |ex, st| {
            Self::upload(ex, st, &io, &pixels, &sizes)?;
            ex.gpu().synchronize(ex.gpu().stream())?;
            let mut rec = Recording::start()?;
            let g = st.graph();
            ex.run_each_node(st, |k| {
                let node = &g.nodes[k];
                let launches = rec.take()?;
                if launches.is_empty() {
                    return Err(Error::Cuda(format!(
                        "{} ({}): vgpu recorded no launch in {}; is this vgpu older than \
                         its VGPU_PROFILE_FILE support?",
                        node.label,
                        node.op.entry_point(),
                        rec.path().display()
                    )));
                }
                let c = node_cost(g, node);
                for l in launches {
                    p.add_modelled(&l.kernel, node.op.name(), &l.launch, c);
                }
                Ok(())
            })
        })?;
        Ok(p)
    }
}
