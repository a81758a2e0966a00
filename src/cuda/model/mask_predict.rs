//! `predict` on the device: each decoded batch's requested masks go through
//! `Sam.postprocess_masks` (bilinear to the padded input size, crop, bilinear to the
//! original size), are thresholded and bit-packed where they were decoded, and only the
//! packed bits, the requested low-res logits and their scores come back to the host.
//!
//! The post-processing kernels are bit-identical to the CPU path (and PyTorch), so a
//! prediction equals the CPU's post-processing of the same low-res logits. Their scratch
//! is the decoder's, grown to the largest pass and kept, so warm calls allocate nothing.

use super::mask_decoder::{requested_masks, DevicePrompt, PostFrame, PredictedMasks};
use super::mask_decoder_exec::{CudaDecoder, EmbeddingInput};
use crate::cpu::ops::postprocess::TORCH_THREADS;
use crate::cuda::ops::postprocess::{
    download_packed, postprocess_into, threshold_pack_logits, PostScratch,
};
use crate::cuda::runtime::context::guarded;
use crate::{Error, Result};

/// Scratch floats one post-processing pass may use (the cropped upsample, the generic
/// kernel's half-resized rows and the original-size logits, per mask): passes take as many
/// masks as fit, 1 to [`MAX_PASS_MASKS`].
const PASS_FLOATS: usize = 48 << 20;
/// Most masks one pass takes.
const MAX_PASS_MASKS: usize = 64;

impl CudaDecoder {
    /// Decodes `prompts` and post-processes each one's requested masks (per `multimask`) to
    /// `post.orig_size` on the device: what `SamPredictor.predict` returns, per prompt.
    pub fn predict(
        &self,
        embedding: EmbeddingInput<'_>,
        prompts: &[DevicePrompt],
        multimask: &[bool],
        post: PostFrame,
    ) -> Result<Vec<PredictedMasks>> {
        if multimask.len() != prompts.len() {
            return Err(Error::Prompt(format!(
                "{} prompts but {} multimask flags",
                prompts.len(),
                multimask.len()
            )));
        }
        let s = self.dims().low_res();
        if post.frame.low_res != s {
            return Err(Error::Shape {
                name: "post-processing frame (low-res side)".into(),
                expected: vec![s],
                got: vec![post.frame.low_res],
            });
        }
        post.frame
            .check_args(s * s, 1, post.input_size, post.orig_size)?;
        let (ih, iw) = post.input_size;
        let (oh, ow) = post.orig_size;
        let per_mask = ih * iw + ih * ow + oh * ow;
        let pass = (PASS_FLOATS / per_mask).clamp(1, MAX_PASS_MASKS);
        let mut scratch = self.post_scratch()?;
        let scratch: &mut PostScratch = &mut scratch;
        let mut out: Vec<Option<PredictedMasks>> = vec![None; prompts.len()];
        self.decode_device(embedding, prompts, |b| {
            let (nm, plane) = (b.masks, b.side * b.side);
            let n = b.indices.len();
            let mut iou = vec![0f32; n * nm];
            guarded("copying scores to the host", || {
                b.stream.memcpy_dtoh(&b.iou.prefix(n * nm), &mut iou)
            })?;
            // (prompt slot, first plane, count) per prompt, and the batch's plane list.
            let mut planes = Vec::new();
            for (k, &i) in b.indices.iter().enumerate() {
                let r = requested_masks(multimask[i], nm);
                let mut low_res = vec![0f32; r.len() * plane];
                let src = b
                    .low_res
                    .window((k * nm + r.start) * plane, r.len() * plane);
                guarded("copying masks to the host", || {
                    b.stream.memcpy_dtoh(&src, &mut low_res)
                })?;
                planes.extend(r.clone().map(|m| (k * nm + m) as i32));
                out[i] = Some(PredictedMasks {
                    low_res,
                    iou: iou[k * nm + r.start..k * nm + r.end].to_vec(),
                    masks: Vec::with_capacity(r.len() * oh * ow),
                });
            }
            // Plane p of the list belongs to the prompt of slot p's batch position.
            let owner: Vec<usize> = planes.iter().map(|&p| p as usize / nm).collect();
            for (c, chunk) in planes.chunks(pass).enumerate() {
                postprocess_into(
                    b.gpu,
                    b.stream,
                    post.frame,
                    b.low_res,
                    (chunk.len(), Some(chunk)),
                    post.input_size,
                    post.orig_size,
                    TORCH_THREADS,
                    scratch,
                )?;
                threshold_pack_logits(b.gpu, b.stream, chunk.len(), post.orig_size, scratch)?;
                let packed = download_packed(b.stream, scratch, chunk.len(), post.orig_size)?;
                for j in 0..chunk.len() {
                    let slot = owner[c * pass + j];
                    let p = out[b.indices[slot]].as_mut().expect("set above");
                    packed.unpack_into(j, &mut p.masks);
                }
            }
            Ok(())
        })?;
        Ok(out.into_iter().flatten().collect())
    }
}
