//! The prompt encoder and mask decoder on a device: the schedule of [`super::mask_decoder`]
//! bound to the generic executor, one shape key per (batch, tokens per prompt, mask input).
//! What is the decoder's own: the embedding slot every schedule reads, grouping prompts into
//! batches, packing their tokens and mask inputs into the schedule's input buffers, and
//! handing each batch's outputs on, on the device ([`CudaDecoder::decode_device`]) or
//! copied to the host ([`CudaDecoder::decode`]).
//!
//! Residency: the schedules' embedding is one external buffer, the slot, bound once, so a
//! bucket's CUDA graph is captured once and replayed for every image. A device-resident
//! embedding ([`Resident`]) is copied into the slot on the device when it is not already
//! the one there (by identity), so decoding many prompts, in one call or many, against one
//! resident embedding moves nothing between host and device but prompts and results.

use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};

use super::decoder_image::{build_image_graph, IMAGE_PREP_KEY};
use super::decoder_weights::prepare_weights;
use super::mask_decoder::{
    build_graph, plan_batches, DecodedMasks, DecoderDims, DecoderIo, DecoderKey, DevicePrompt,
    Layer0Side,
};
use super::schedule_profile::profile_bound;
use crate::cuda::ops::postprocess::PostScratch;
use crate::cuda::profile::report::KernelProfile;
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::cuda::runtime::executor::{Bound, Executor};
use crate::cuda::runtime::resident::Resident;
use crate::cuda::runtime::view::DevView;
use crate::cuda::runtime::weights::DeviceWeights;
use crate::graph::buffer::BufId;
use crate::graph::ops::Op;
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;
use crate::{Error, Result};

/// The embedding a decode reads.
#[derive(Clone, Copy)]
pub enum EmbeddingInput<'a> {
    /// Host values, copied into the slot once per call.
    Host(&'a [f32]),
    /// Device values of this decoder's context, copied into the slot on the device unless
    /// the slot holds them already.
    Device(&'a Resident),
}

/// One batch's outputs, still on the device: what [`CudaDecoder::decode_device`] hands its
/// callback. Slot `b < indices.len()` of the batch is prompt `indices[b]`; slots past it are
/// padding (they repeat the batch's first prompt) and must be ignored.
pub struct DecodedBatch<'a> {
    pub indices: &'a [usize],
    /// Padded batch size (the bucket).
    pub batch: usize,
    /// Mask tokens per prompt (4 for the official models: the single-mask output, then the
    /// three multimask ones).
    pub masks: usize,
    /// Side S of the low-res logits.
    pub side: usize,
    /// fp32 `[batch, masks, S, S]` low-res logits.
    pub low_res: &'a DevView<f32>,
    /// fp32 `[batch, masks]` IoU predictions.
    pub iou: &'a DevView<f32>,
    pub gpu: &'a GpuContext,
    /// The stream the decoder ran on; work enqueued on it is ordered before the next batch
    /// overwrites these buffers.
    pub stream: &'a Arc<CudaStream>,
}

/// The embedding slot: bound as every schedule's external embedding buffer, with what the
/// per-image prep derives from it (layer 0's image side, read by every schedule without
/// mask inputs).
struct Slot {
    buf: CudaSlice<f32>,
    /// fp16 `[3, hw, dim / 2]`: [`Layer0Side::buffers`] in order.
    layer0: CudaSlice<u16>,
    /// The [`Resident::id`] whose values the slot holds (None: host values, or nothing).
    holds: Option<u64>,
}

impl Slot {
    /// Binds the slot's buffers as `st`'s externals: the embedding, and layer 0's side when
    /// the schedule reads it.
    ///
    /// # Safety
    /// `st` must only run while the slot is locked (its buffers are the decoder's, alive
    /// as long as every state, and written only under that lock).
    unsafe fn bind(
        &self,
        ex: &Executor<Op>,
        st: &mut Bound<Op>,
        embedding: BufId,
        layer0: Option<Layer0Side>,
    ) -> Result<()> {
        let stream = ex.gpu().stream();
        let (p, _g) = self.buf.device_ptr(stream);
        ex.bind_external(st, embedding, p, self.buf.len())?;
        if let Some(l) = layer0 {
            let (base, _g) = self.layer0.device_ptr(stream);
            let each = self.layer0.len() / 3;
            for (k, b) in l.buffers().into_iter().enumerate() {
                ex.bind_external(st, b, base + (2 * k * each) as u64, each)?;
            }
        }
        Ok(())
    }
}

/// The mask decoder on one device.
pub struct CudaDecoder {
    exec: Executor<Op>,
    dims: DecoderDims,
    /// Also serialises decodes: the slot's contents must not change under a running call.
    slot: Mutex<Slot>,
    /// `predict`'s post-processing buffers (locked before the slot).
    post: Mutex<PostScratch>,
}

impl CudaDecoder {
    /// Uploads the prompt encoder's and mask decoder's weights (one allocation) and
    /// allocates the embedding slot; schedules are bound on first use of each shape.
    pub fn new(gpu: Arc<GpuContext>, w: &dyn WeightSource, cfg: &SamConfig) -> Result<Self> {
        let dims = DecoderDims::new(cfg)?;
        let tensors = prepare_weights(w, cfg)?;
        let weights = DeviceWeights::upload(&gpu, &tensors)?;
        let buf = gpu.alloc_zeros::<f32>(
            gpu.stream(),
            dims.dim * dims.hw(),
            "allocating the decoder's embedding slot",
        )?;
        let layer0 = gpu.alloc_zeros::<u16>(
            gpu.stream(),
            3 * dims.hw() * (dims.dim / 2),
            "allocating the decoder's layer-0 image side",
        )?;
        let d = dims.clone();
        let build = Box::new(move |key: usize| {
            Ok(match key {
                IMAGE_PREP_KEY => build_image_graph(&d).0,
                _ => build_graph(&d, DecoderKey::unpack(key)).0,
            })
        });
        Ok(CudaDecoder {
            exec: Executor::new("mask decoder", gpu, weights, build),
            dims,
            slot: Mutex::new(Slot {
                buf,
                layer0,
                holds: None,
            }),
            post: Mutex::new(PostScratch::default()),
        })
    }

    /// The executor's checked-arena mode (see `Executor::checked_arena`); before any run.
    pub fn checked_arena(mut self, on: bool) -> Self {
        self.exec = self.exec.checked_arena(on);
        self
    }

    pub fn gpu(&self) -> &Arc<GpuContext> {
        self.exec.gpu()
    }

    pub fn dims(&self) -> &DecoderDims {
        &self.dims
    }

    /// `predict`'s post-processing scratch, locked.
    pub(crate) fn post_scratch(&self) -> Result<MutexGuard<'_, PostScratch>> {
        self.post.lock().map_err(|_| {
            Error::Cuda("CUDA post-processing scratch poisoned by an earlier panic".into())
        })
    }

    /// `embedding` (`[dim, grid, grid]`) copied to this decoder's device once, for any
    /// number of decodes.
    pub fn upload(&self, embedding: &[f32]) -> Result<Resident> {
        self.check_embedding_len(embedding.len())?;
        Resident::upload(self.gpu(), embedding)
    }

    fn check_embedding_len(&self, len: usize) -> Result<()> {
        let (dim, hw) = (self.dims.dim, self.dims.hw());
        if len != dim * hw {
            return Err(Error::Shape {
                name: "image embedding".into(),
                expected: vec![dim, self.dims.grid, self.dims.grid],
                got: vec![len],
            });
        }
        Ok(())
    }

    fn check_prompts(&self, prompts: &[DevicePrompt]) -> Result<()> {
        let s = self.dims.low_res();
        for p in prompts {
            if let Some(m) = p.mask.filter(|m| m.len() != s * s) {
                return Err(Error::Prompt(format!(
                    "mask input has {} values, expected {s}x{s}",
                    m.len()
                )));
            }
            if let Some(k) = p.tokens.iter().find(|t| !(0..5).contains(&t.1)) {
                return Err(Error::Prompt(format!("token kind {} is not in 0..5", k.1)));
            }
        }
        Ok(())
    }

    /// Locks the slot with `embedding` in it.
    fn fill_slot(&self, embedding: EmbeddingInput<'_>) -> Result<MutexGuard<'_, Slot>> {
        let mut slot = self
            .slot
            .lock()
            .map_err(|_| Error::Cuda("CUDA decoder slot poisoned by an earlier panic".into()))?;
        let stream = self.gpu().stream();
        match embedding {
            EmbeddingInput::Host(h) => {
                self.check_embedding_len(h.len())?;
                slot.holds = None;
                guarded("copying the embedding to the device", || {
                    stream.memcpy_htod(h, &mut slot.buf)
                })?;
                self.prep(&slot)?;
            }
            EmbeddingInput::Device(r) => {
                self.check_embedding_len(r.len())?;
                r.check_context(self.gpu())?;
                if slot.holds != Some(r.id()) {
                    slot.holds = None;
                    guarded("copying the embedding on the device", || {
                        stream.memcpy_dtod(r.slice(), &mut slot.buf)
                    })?;
                    self.prep(&slot)?;
                    slot.holds = Some(r.id());
                }
            }
        }
        Ok(slot)
    }

    /// The per-image prep on the slot's new embedding: layer 0's image side, once per
    /// image instead of once per decode (`mask_decoder::build_image_graph`).
    fn prep(&self, slot: &Slot) -> Result<()> {
        self.exec.with(IMAGE_PREP_KEY, |ex, st| {
            let io = build_image_graph(&self.dims).1;
            // SAFETY: called under the slot lock, which every run of a state holds.
            unsafe { slot.bind(ex, st, io.embedding, Some(io.layer0))? };
            ex.run(st)
        })
    }

    /// Decodes `prompts` against `embedding` (`[dim, grid, grid]`), every mask token's
    /// output per prompt, in the order given, copied to the host. A prompt's result does
    /// not depend on the others decoded with it.
    pub fn decode(&self, embedding: &[f32], prompts: &[DevicePrompt]) -> Result<Vec<DecodedMasks>> {
        self.decode_from(EmbeddingInput::Host(embedding), prompts)
    }

    /// [`CudaDecoder::decode`] from an embedding on the host or the device.
    pub fn decode_from(
        &self,
        embedding: EmbeddingInput<'_>,
        prompts: &[DevicePrompt],
    ) -> Result<Vec<DecodedMasks>> {
        let mut out: Vec<Option<DecodedMasks>> = vec![None; prompts.len()];
        self.decode_device(embedding, prompts, |b| {
            let (nm, s) = (b.masks, b.side);
            let n = b.indices.len();
            let mut low_res = vec![0f32; n * nm * s * s];
            let mut iou = vec![0f32; n * nm];
            // Only the batch's real prompts come back, not its padding.
            let l = b.low_res.prefix(n * nm * s * s);
            guarded("copying masks to the host", || {
                b.stream.memcpy_dtoh(&l, &mut low_res)
            })?;
            let i = b.iou.prefix(n * nm);
            guarded("copying scores to the host", || {
                b.stream.memcpy_dtoh(&i, &mut iou)
            })?;
            b.gpu.synchronize(b.stream)?;
            for (k, &i) in b.indices.iter().enumerate() {
                out[i] = Some(DecodedMasks {
                    low_res: low_res[k * nm * s * s..(k + 1) * nm * s * s].to_vec(),
                    iou: iou[k * nm..(k + 1) * nm].to_vec(),
                });
            }
            Ok(())
        })?;
        Ok(out.into_iter().flatten().collect())
    }

    /// Decodes `prompts` against `embedding` and hands each batch's outputs to `each`
    /// while they are on the device, with the prompt indices they belong to; nothing is
    /// copied to the host. Batches follow [`plan_batches`]: prompts of one shape (token
    /// count, mask input or not) in buckets of 1, 2, 4, ..., [`super::mask_decoder::MAX_DECODE_BATCH`],
    /// each bucket a CUDA graph captured once. The buffers are valid only during the call
    /// of `each`; work it enqueues on `stream` runs before the next batch overwrites them,
    /// and copies to the host must complete (synchronise) before it returns. Decodes on one
    /// decoder are serialised, so `each` must not decode on this decoder itself (it would
    /// wait for the lock it runs under); an error from `each` stops the call and is
    /// returned.
    pub fn decode_device(
        &self,
        embedding: EmbeddingInput<'_>,
        prompts: &[DevicePrompt],
        mut each: impl FnMut(&DecodedBatch<'_>) -> Result<()>,
    ) -> Result<()> {
        self.check_prompts(prompts)?;
        let slot = self.fill_slot(embedding)?;
        for (key, idx) in plan_batches(prompts) {
            let members: Vec<&DevicePrompt> = idx.iter().map(|&i| &prompts[i]).collect();
            let (coords, kinds, masks) = pack(key, &members);
            self.exec.with(key.pack(), |ex, st| {
                let io = build_graph(&self.dims, key).1;
                // SAFETY: the slot is locked for the whole call; its buffers are the
                // decoder's (they outlive every state) and written only under that lock.
                unsafe { slot.bind(ex, st, io.embedding, io.layer0)? };
                upload(ex, st, &io, &coords, &kinds, &masks)?;
                ex.run(st)?;
                let low_res = ex.view::<f32>(st, io.low_res)?;
                let iou = ex.view::<f32>(st, io.iou)?;
                each(&DecodedBatch {
                    indices: &idx,
                    batch: key.batch,
                    masks: self.dims.masks,
                    side: self.dims.low_res(),
                    low_res: &low_res,
                    iou: &iou,
                    gpu: ex.gpu(),
                    stream: ex.gpu().stream(),
                })
            })?;
        }
        drop(slot);
        Ok(())
    }

    /// Runs `f` on the bound schedule of `key` with the slot bound and locked (timing and
    /// profiling drive the schedule node by node).
    pub(crate) fn with_schedule<R>(
        &self,
        embedding: EmbeddingInput<'_>,
        prompts: &[DevicePrompt],
        f: impl FnOnce(&Executor<Op>, &mut Bound<Op>) -> Result<R>,
    ) -> Result<R> {
        self.check_prompts(prompts)?;
        let plan = plan_batches(prompts);
        let [(key, idx)] = plan.as_slice() else {
            return Err(Error::Unsupported(
                "timing a decoder run needs prompts of one shape, at most one batch".into(),
            ));
        };
        let slot = self.fill_slot(embedding)?;
        let members: Vec<&DevicePrompt> = idx.iter().map(|&i| &prompts[i]).collect();
        let (coords, kinds, masks) = pack(*key, &members);
        let r = self.exec.with(key.pack(), |ex, st| {
            let io = build_graph(&self.dims, *key).1;
            // SAFETY: as in `decode_device`.
            unsafe { slot.bind(ex, st, io.embedding, io.layer0)? };
            upload(ex, st, &io, &coords, &kinds, &masks)?;
            f(ex, st)
        });
        drop(slot);
        r
    }
}

impl CudaDecoder {
    /// Wall time of whole [`CudaDecoder::decode_device`] calls on `embedding` (one warm-up
    /// first), the outputs left on the device and the stream synchronised: ms per call.
    /// Host work (packing prompts, copying them in) is included.
    pub fn time_decode(
        &self,
        embedding: &Resident,
        prompts: &[DevicePrompt],
        iters: usize,
    ) -> Result<Vec<f64>> {
        let run = || {
            self.decode_device(EmbeddingInput::Device(embedding), prompts, |_| Ok(()))?;
            self.gpu().synchronize(self.gpu().stream())
        };
        run()?;
        (0..iters.max(1))
            .map(|_| {
                let t = std::time::Instant::now();
                run()?;
                Ok(t.elapsed().as_secs_f64() * 1e3)
            })
            .collect()
    }

    /// Every kernel of one decoder run of `prompts` (one shape, at most one bucket) with
    /// its time and floor (`schedule_profile::profile_bound`).
    pub fn profile(
        &self,
        embedding: &[f32],
        prompts: &[DevicePrompt],
        iters: usize,
    ) -> Result<KernelProfile> {
        self.with_schedule(EmbeddingInput::Host(embedding), prompts, |ex, st| {
            profile_bound(ex, st, iters)
        })
    }
}

/// The batch's token coordinates, kinds and mask inputs in the schedule's layout; slots past
/// the prompts repeat the first one (their outputs are dropped).
fn pack(key: DecoderKey, prompts: &[&DevicePrompt]) -> (Vec<f32>, Vec<i32>, Vec<f32>) {
    let slot = |b: usize| prompts.get(b).unwrap_or(&prompts[0]);
    let mut coords = Vec::with_capacity(key.batch * key.sparse * 2);
    let mut kinds = Vec::with_capacity(key.batch * key.sparse);
    let mut masks = Vec::new();
    for b in 0..key.batch {
        for (xy, kind) in &slot(b).tokens {
            coords.extend_from_slice(xy);
            kinds.push(*kind);
        }
        if let Some(m) = slot(b).mask {
            masks.extend_from_slice(m);
        }
    }
    (coords, kinds, masks)
}

/// Copies a packed batch into the schedule's input buffers.
fn upload(
    ex: &Executor<Op>,
    st: &Bound<Op>,
    io: &DecoderIo,
    coords: &[f32],
    kinds: &[i32],
    masks: &[f32],
) -> Result<()> {
    let stream = ex.gpu().stream();
    if !kinds.is_empty() {
        let mut c = ex.view::<f32>(st, io.coords)?;
        guarded("copying prompts to the device", || {
            stream.memcpy_htod(coords, &mut c)
        })?;
        let mut k = ex.view::<i32>(st, io.kinds)?;
        guarded("copying prompts to the device", || {
            stream.memcpy_htod(kinds, &mut k)
        })?;
    }
    if let Some(mb) = io.masks {
        let mut m = ex.view::<f32>(st, mb)?;
        guarded("copying mask inputs to the device", || {
            stream.memcpy_htod(masks, &mut m)
        })?;
    }
    Ok(())
}
