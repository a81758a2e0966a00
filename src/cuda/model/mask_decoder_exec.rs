//! The prompt encoder and mask decoder on a device: the schedule of [`super::mask_decoder`]
//! bound to the generic executor, one shape key per (batch, tokens per prompt, mask input).
//! What is the decoder's own: grouping prompts into batches, packing their tokens and mask
//! inputs into the schedule's input buffers, and reading every mask token's output back.

use std::sync::Arc;

use super::decoder_weights::prepare_weights;
use super::mask_decoder::{
    build_graph, plan_batches, DecodedMasks, DecoderDims, DecoderKey, DevicePrompt,
};
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::cuda::runtime::executor::Executor;
use crate::cuda::runtime::weights::DeviceWeights;
use crate::graph::ops::Op;
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;
use crate::{Error, Result};

/// The mask decoder on one device.
pub struct CudaDecoder {
    exec: Executor<Op>,
    dims: DecoderDims,
}

impl CudaDecoder {
    /// Uploads the prompt encoder's and mask decoder's weights (one allocation); schedules
    /// are bound on first use of each shape.
    pub fn new(gpu: Arc<GpuContext>, w: &dyn WeightSource, cfg: &SamConfig) -> Result<Self> {
        let dims = DecoderDims::new(cfg)?;
        let tensors = prepare_weights(w, cfg)?;
        let weights = DeviceWeights::upload(&gpu, &tensors)?;
        let d = dims.clone();
        let build = Box::new(move |key: usize| Ok(build_graph(&d, DecoderKey::unpack(key)).0));
        Ok(CudaDecoder {
            exec: Executor::new("mask decoder", gpu, weights, build),
            dims,
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

    /// Decodes `prompts` against `embedding` (`[dim, grid, grid]`), every mask token's
    /// output per prompt, in the order given. A prompt's result does not depend on the
    /// others decoded with it.
    pub fn decode(&self, embedding: &[f32], prompts: &[DevicePrompt]) -> Result<Vec<DecodedMasks>> {
        let (dim, hw, s) = (self.dims.dim, self.dims.hw(), self.dims.low_res());
        if embedding.len() != dim * hw {
            return Err(Error::Shape {
                name: "image embedding".into(),
                expected: vec![dim, self.dims.grid, self.dims.grid],
                got: vec![embedding.len()],
            });
        }
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
        let mut out: Vec<Option<DecodedMasks>> = vec![None; prompts.len()];
        for (key, idx) in plan_batches(prompts) {
            let members: Vec<&DevicePrompt> = idx.iter().map(|&i| &prompts[i]).collect();
            let res = self.run(embedding, key, &members)?;
            for (i, r) in idx.into_iter().zip(res) {
                out[i] = Some(r);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One batch; slots past the prompts repeat the first one (their outputs are dropped).
    fn run(
        &self,
        embedding: &[f32],
        key: DecoderKey,
        prompts: &[&DevicePrompt],
    ) -> Result<Vec<DecodedMasks>> {
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
        let (nm, s) = (self.dims.masks, self.dims.low_res());
        let (low_res, iou) = self.exec.with(key.pack(), |ex, st| {
            let io = build_graph(&self.dims, key).1;
            let stream = ex.gpu().stream();
            let mut e = ex.view::<f32>(st, io.embedding)?;
            guarded("copying the embedding to the device", || {
                stream.memcpy_htod(embedding, &mut e)
            })?;
            if !kinds.is_empty() {
                let mut c = ex.view::<f32>(st, io.coords)?;
                guarded("copying prompts to the device", || {
                    stream.memcpy_htod(&coords, &mut c)
                })?;
                let mut k = ex.view::<i32>(st, io.kinds)?;
                guarded("copying prompts to the device", || {
                    stream.memcpy_htod(&kinds, &mut k)
                })?;
            }
            if let Some(mb) = io.masks {
                let mut m = ex.view::<f32>(st, mb)?;
                guarded("copying mask inputs to the device", || {
                    stream.memcpy_htod(&masks, &mut m)
                })?;
            }
            ex.run(st)?;
            let mut low_res = vec![0f32; key.batch * nm * s * s];
            let mut iou = vec![0f32; key.batch * nm];
            let l = ex.view::<f32>(st, io.low_res)?;
            guarded("copying masks to the host", || {
                stream.memcpy_dtoh(&l, &mut low_res)
            })?;
            let i = ex.view::<f32>(st, io.iou)?;
            guarded("copying scores to the host", || {
                stream.memcpy_dtoh(&i, &mut iou)
            })?;
            ex.gpu().synchronize(stream)?;
            Ok((low_res, iou))
        })?;
        Ok(prompts
            .iter()
            .enumerate()
            .map(|(b, _)| DecodedMasks {
                low_res: low_res[b * nm * s * s..(b + 1) * nm * s * s].to_vec(),
                iou: iou[b * nm..(b + 1) * nm].to_vec(),
            })
            .collect())
    }
}
