//! Runs the encoder schedule (`super::encoder`) on one stream over one planned arena, and
//! replays it as a CUDA graph: captured once per batch size, replayed after that, with no
//! device allocation in steady state.
//!
//! Inputs change between calls as *data* in fixed buffers (pixels and image sizes are copied
//! into the arena before each replay), never as kernel arguments, so one capture serves
//! every image of that batch size.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaGraph, CudaSlice, DevicePtr};

use super::attention::{encoder_attention, EncoderAttnInputs, EncoderAttnShape};
use super::cast_rows::{cast_rows, CastRowsShape};
use super::encoder::{
    build_graph, prepare_weights, EncOp, EncoderIo, EncoderScales, Epi, LnOut, EPS,
};
use super::gemm::{conv3x3, linear, Conv3x3Shape, Epilogue, GemmScales, GemmShape};
use super::layer_norm::{layer_norm_ex, LayerNormShape, LnInput, LnOutput, LnScale};
use super::preprocess_patchify::{pack_images, preprocess_patchify, PatchGeom};
use super::residual_init::{residual_init, ResidualInitShape};
use super::view::DevView;
use super::weights::DeviceWeights;
use super::{guarded, GpuContext};
use crate::config::EncoderConfig;
use crate::graph::planner::{plan, Plan};
use crate::graph::{BufId, Graph};
use crate::preprocess::{resize_bilinear_pillow, resize_shape, RgbImage};
use crate::weights::WeightSource;
use crate::{Error, Result};

/// Largest batch one call may run (arena and capture per batch size).
pub const MAX_BATCH: usize = 64;

/// The schedule, its plan and its arena for one batch size.
struct BatchState {
    graph: Graph<EncOp>,
    io: EncoderIo,
    plan: Plan,
    /// Keeps the arena allocated; `base` points into it.
    _arena: CudaSlice<u8>,
    base: u64,
    exec: Option<CapturedGraph>,
}

/// An instantiated CUDA graph that may move between threads.
struct CapturedGraph(CudaGraph);

// SAFETY: driver-API handles are not tied to the creating thread; cudarc binds the context
// before each launch, and the graph is only touched under the encoder's mutex, one thread at
// a time.
unsafe impl Send for CapturedGraph {}

/// The image encoder on one device: weights shared (Arc) by every context made from it.
pub struct CudaEncoder {
    gpu: Arc<GpuContext>,
    weights: Arc<DeviceWeights>,
    cfg: EncoderConfig,
    scales: EncoderScales,
    states: Mutex<HashMap<usize, BatchState>>,
    use_graphs: bool,
}

/// What one call produced per image: the `[out_chans, grid, grid]` embedding and the resized
/// (h, w) before padding.
pub type EncodedImage = (Vec<f32>, (usize, usize));

impl CudaEncoder {
    /// Uploads the encoder weights (one allocation) and prepares nothing else: arenas and
    /// graphs are made on first use of each batch size.
    pub fn new(gpu: Arc<GpuContext>, w: &dyn WeightSource, cfg: &EncoderConfig) -> Result<Self> {
        let (tensors, scales) = prepare_weights(w, cfg)?;
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
        let use_graphs = std::env::var("SAMRT_CUDA_GRAPHS").map_or(true, |v| v != "0");
        CudaEncoder {
            gpu,
            weights,
            cfg,
            scales,
            states: Mutex::new(HashMap::new()),
            use_graphs,
        }
    }

    /// A new context sharing this one's device weights.
    pub fn new_context(&self) -> Self {
        Self::with_weights(
            Arc::clone(&self.gpu),
            Arc::clone(&self.weights),
            self.cfg.clone(),
            self.scales.clone(),
        )
    }

    pub fn gpu(&self) -> &Arc<GpuContext> {
        &self.gpu
    }

    pub fn weights(&self) -> &Arc<DeviceWeights> {
        &self.weights
    }

    pub fn scales(&self) -> &EncoderScales {
        &self.scales
    }

    /// (weight bytes, arena bytes) for `batch`, from the plan alone.
    pub fn planned_bytes(&self, batch: usize) -> (usize, usize) {
        let (g, _) = build_graph(&self.cfg, &self.scales, batch);
        (self.weights.bytes(), plan(&g).arena_bytes)
    }

    /// Resizes each image exactly as Pillow does (the CPU path's resize), runs the encoder
    /// on the device for the whole batch, and returns each embedding.
    pub fn embed_batch(&self, images: &[&RgbImage]) -> Result<Vec<EncodedImage>> {
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

        let mut states = self
            .states
            .lock()
            .map_err(|_| Error::Cuda("CUDA encoder state poisoned by an earlier panic".into()))?;
        let st = match states.entry(batch) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(self.make_state(batch)?),
        };
        let stream = self.gpu.stream();
        let mut px = self.view::<u8>(st, st.io.image);
        guarded("copying images to the device", || {
            stream.memcpy_htod(&pixels, &mut px)
        })?;
        let mut sz = self.view::<i32>(st, st.io.sizes);
        guarded("copying image sizes to the device", || {
            stream.memcpy_htod(&sizes, &mut sz)
        })?;
        self.run(st)?;
        let emb = self.view::<f32>(st, st.io.embedding);
        let mut host = vec![0f32; st.graph.get(st.io.embedding).len];
        guarded("copying the embedding to the host", || {
            stream.memcpy_dtoh(&emb, &mut host)
        })?;
        self.gpu.synchronize(stream)?;
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
        let mut states = self
            .states
            .lock()
            .map_err(|_| Error::Cuda("CUDA encoder state poisoned by an earlier panic".into()))?;
        let st = states.get_mut(&batch).expect("embed_batch made the state");
        self.time_with_events(iters, || self.run(st))
    }

    /// Device time of each node for `batch`, run eagerly (no graph) with an event pair
    /// around every launch: (op name, label, median ms over `iters`).
    pub fn time_nodes(
        &self,
        img: &RgbImage,
        batch: usize,
        iters: usize,
    ) -> Result<Vec<(&'static str, String, f64)>> {
        let imgs: Vec<&RgbImage> = vec![img; batch];
        self.embed_batch(&imgs)?;
        let states = self
            .states
            .lock()
            .map_err(|_| Error::Cuda("CUDA encoder state poisoned by an earlier panic".into()))?;
        let st = states.get(&batch).expect("embed_batch made the state");
        let mut out = Vec::new();
        for (k, node) in st.graph.nodes.iter().enumerate() {
            let mut t = self.time_with_events(iters, || self.run_node(st, k))?;
            t.sort_by(f64::total_cmp);
            out.push((node.op_name, node.label.clone(), t[t.len() / 2]));
        }
        Ok(out)
    }

    fn time_with_events(
        &self,
        iters: usize,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<Vec<f64>> {
        let ctx = self.gpu.context();
        let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = guarded("creating a CUDA event", || ctx.new_event(flags))?;
        let end = guarded("creating a CUDA event", || ctx.new_event(flags))?;
        let stream = self.gpu.stream();
        let mut times = Vec::with_capacity(iters);
        for _ in 0..iters.max(1) {
            guarded("recording a CUDA event", || start.record(stream))?;
            f()?;
            guarded("recording a CUDA event", || end.record(stream))?;
            guarded("waiting for a CUDA event", || end.synchronize())?;
            times.push(guarded("reading CUDA event times", || start.elapsed_ms(&end))? as f64);
        }
        Ok(times)
    }

    fn make_state(&self, batch: usize) -> Result<BatchState> {
        let (graph, io) = build_graph(&self.cfg, &self.scales, batch);
        let plan = plan(&graph);
        let stream = self.gpu.stream();
        // SAFETY: u8 has no invalid bit patterns; every buffer is written before it is read
        // (the schedule's first node for each buffer writes it), inputs by the caller.
        let arena = guarded("allocating the encoder arena", || unsafe {
            stream.alloc::<u8>(plan.arena_bytes.max(256))
        })?;
        let base = {
            let (p, _g) = arena.device_ptr(stream);
            p
        };
        Ok(BatchState {
            graph,
            io,
            plan,
            _arena: arena,
            base,
            exec: None,
        })
    }

    fn view<T>(&self, st: &BatchState, b: BufId) -> DevView<T> {
        let buf = st.graph.get(b);
        // SAFETY: the plan placed the buffer inside the arena, which lives in `st`; the
        // views never outlive the call that runs or captures the schedule.
        unsafe {
            DevView::new(
                st.base + st.plan.offsets[b.0] as u64,
                buf.len,
                self.gpu.stream(),
            )
        }
    }

    /// Runs the schedule: replays its CUDA graph, capturing it on first use.
    fn run(&self, st: &mut BatchState) -> Result<()> {
        if !self.use_graphs {
            return self.run_nodes(st);
        }
        if st.exec.is_none() {
            let stream = self.gpu.stream();
            guarded("beginning CUDA graph capture", || {
                stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            })?;
            let r = self.run_nodes(st);
            let g = guarded("ending CUDA graph capture", || {
                stream.end_capture(CUgraphInstantiate_flags(0))
            });
            r?;
            let graph =
                g?.ok_or_else(|| Error::Cuda("CUDA graph capture produced no graph".into()))?;
            st.exec = Some(CapturedGraph(graph));
        }
        let exec = st.exec.as_ref().expect("captured above");
        guarded("launching the encoder CUDA graph", || exec.0.launch())
    }

    /// Launches every node in order on the stream.
    fn run_nodes(&self, st: &BatchState) -> Result<()> {
        (0..st.graph.nodes.len()).try_for_each(|k| self.run_node(st, k))
    }

    /// Launches node `k` on the stream.
    fn run_node(&self, st: &BatchState, k: usize) -> Result<()> {
        let gpu = &*self.gpu;
        let s = gpu.stream();
        let w = &self.weights;
        let batch = st.graph.get(st.io.image).len / (self.cfg.img_size * self.cfg.img_size * 3);
        {
            let node = &st.graph.nodes[k];
            let r = node.reads.as_slice();
            let wr = node.writes.as_slice();
            let ctx = |e: Error| Error::Cuda(format!("{} ({}): {e}", node.label, node.op_name));
            match &node.op {
                EncOp::Patchify { img_size, patch } => {
                    let geom = PatchGeom {
                        img_size: *img_size,
                        patch: *patch,
                    };
                    preprocess_patchify(
                        gpu,
                        s,
                        &self.view::<u8>(st, r[0]),
                        &self.view::<i32>(st, r[1]),
                        batch,
                        geom,
                        &mut self.view::<u16>(st, wr[0]),
                    )
                }
                EncOp::ResidualInit { name, tokens, dim } => residual_init(
                    gpu,
                    s,
                    &w.f16(gpu, name)?,
                    &mut self.view::<f32>(st, wr[0]),
                    ResidualInitShape {
                        batch,
                        tokens: *tokens,
                        dim: *dim,
                    },
                ),
                EncOp::Linear {
                    weight,
                    bias,
                    m,
                    n,
                    k,
                    epi,
                    in_scale,
                    out_scale,
                    row_scale,
                } => {
                    let a = self.view::<u16>(st, r[0]);
                    let wt = w.f16(gpu, weight)?;
                    let b = bias.as_ref().map(|b| w.f32(gpu, b)).transpose()?;
                    let rs = row_scale.then(|| self.view::<f32>(st, r[1]));
                    let scales = GemmScales {
                        row_scale: rs.as_ref().map(|v| v as &dyn DevicePtr<f32>),
                        in_scale: *in_scale,
                        out_scale: *out_scale,
                    };
                    let shape = GemmShape {
                        m: *m,
                        n: *n,
                        k: *k,
                    };
                    let bias = b.as_ref().map(|v| v as &dyn DevicePtr<f32>);
                    // The epilogue's output view must outlive the call: keep both kinds.
                    let (mut out16, mut out32) =
                        (self.view::<u16>(st, wr[0]), self.view::<f32>(st, wr[0]));
                    let epilogue = match epi {
                        Epi::Bias => Epilogue::Bias(&mut out16),
                        Epi::BiasGelu => Epilogue::BiasGelu(&mut out16),
                        Epi::BiasResidual => Epilogue::BiasResidual(&mut out32),
                    };
                    linear(gpu, s, &a, &wt, bias, shape, scales, epilogue)
                }
                EncOp::LayerNorm {
                    gamma,
                    beta,
                    rows,
                    dim,
                    f32_input,
                    in_scale,
                    row_scale,
                    out,
                } => {
                    let (xf, xh) = (self.view::<f32>(st, r[0]), self.view::<u16>(st, r[0]));
                    let x = if *f32_input {
                        LnInput::F32(&xf)
                    } else {
                        LnInput::F16(&xh)
                    };
                    let rs = row_scale.then(|| self.view::<f32>(st, r[1]));
                    let scale = LnScale {
                        row_scale: rs.as_ref().map(|v| v as &dyn DevicePtr<f32>),
                        in_scale: *in_scale,
                    };
                    let (g, b) = (w.f32(gpu, gamma)?, w.f32(gpu, beta)?);
                    let shape = LayerNormShape {
                        rows: *rows,
                        dim: *dim,
                    };
                    let (mut out16, mut out32) =
                        (self.view::<u16>(st, wr[0]), self.view::<f32>(st, wr[0]));
                    let output = match out {
                        LnOut::F16 => LnOutput::F16(&mut out16),
                        LnOut::F32ChannelFirst { tokens } => LnOutput::F32ChannelFirst {
                            out: &mut out32,
                            tokens: *tokens,
                        },
                    };
                    layer_norm_ex(gpu, s, x, scale, &g, &b, output, shape, EPS)
                }
                EncOp::Attention {
                    block,
                    grid,
                    window,
                    heads,
                    dim,
                    q_scale,
                    softmax_scale,
                    qkv_bias,
                } => {
                    let pre = format!("image_encoder.blocks.{block}.attn");
                    let qkv = self.view::<u16>(st, r[0]);
                    let bias = w.f32(gpu, qkv_bias)?;
                    let rh = w.f16(gpu, &format!("{pre}.rel_pos_h"))?;
                    let rw = w.f16(gpu, &format!("{pre}.rel_pos_w"))?;
                    let inputs = EncoderAttnInputs {
                        qkv: &qkv,
                        qkv_bias: &bias,
                        rel_pos_h: &rh,
                        rel_pos_w: &rw,
                        q_scale: *q_scale,
                        softmax_scale: Some(*softmax_scale),
                    };
                    let shape = EncoderAttnShape {
                        batch,
                        grid: *grid,
                        dim: *dim,
                        heads: *heads,
                        window: *window,
                    };
                    encoder_attention(gpu, s, shape, &inputs, &mut self.view::<u16>(st, wr[0]))
                }
                EncOp::CastRows { rows, dim } => cast_rows(
                    gpu,
                    s,
                    &self.view::<f32>(st, r[0]),
                    &mut self.view::<u16>(st, wr[0]),
                    &mut self.view::<f32>(st, wr[1]),
                    CastRowsShape {
                        rows: *rows,
                        dim: *dim,
                    },
                ),
                EncOp::Conv3x3 {
                    weight,
                    batch,
                    h,
                    w: wd,
                    cin,
                    cout,
                    out_scale,
                } => conv3x3(
                    gpu,
                    s,
                    &self.view::<u16>(st, r[0]),
                    &w.f16(gpu, weight)?,
                    None,
                    Conv3x3Shape {
                        batch: *batch,
                        h: *h,
                        w: *wd,
                        cin: *cin,
                        cout: *cout,
                    },
                    GemmScales {
                        row_scale: None,
                        in_scale: 1.0,
                        out_scale: *out_scale,
                    },
                    &mut self.view::<u16>(st, wr[0]),
                ),
            }
            .map_err(ctx)?;
        }
        Ok(())
    }
}
