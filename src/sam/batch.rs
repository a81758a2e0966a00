//! Decoding prompts from many callers together without changing any caller's answer: the
//! server's dynamic batching. Here the path a prompt takes depends on the prompt alone (no
//! mask input: the shared prepared image; a mask input: its own whole decode), so a batched
//! answer is bit for bit the lone one, as `Sam::predict` gives it. [`Sam::predict_batch`]
//! comes here when no prompt has a mask input; with mask inputs it groups prompts by their
//! dense embedding, so which preparation a prompt shares depends on its company.
//! (The device decoder's batches have that property already; they go through it.)

use crate::error::Result;
use crate::sam::predictor::{ImageEmbedding, Prediction, Prompt, Sam};
use rayon::prelude::*;

impl Sam {
    /// Decodes `prompts` against one embedding; result `i` depends on `prompts[i]` only.
    /// Prompts without a mask input (all of them share the no-mask dense embedding) go
    /// through one prepared image, however many there are, one included; a prompt with a
    /// mask input gets [`Sam::predict`]'s whole decode.
    pub fn predict_independent(
        &self,
        emb: &ImageEmbedding,
        prompts: &[Prompt],
    ) -> Result<Vec<Prediction>> {
        if self.decodes_on_device() {
            // The device decoder pads every batch to a fixed bucket and its kernels do not
            // look across prompts, so its batch already has this property.
            return self.predict_batch(emb, prompts);
        }
        // Every prompt (its mask input included) is checked here, before any decode; a
        // prompt with a mask input is encoded whole by its own decode below.
        let encoded: Vec<_> = prompts
            .iter()
            .map(|p| self.encode_sparse_prompt(emb, p))
            .collect::<Result<_>>()?;
        let mut outs: Vec<Option<_>> = (0..prompts.len()).map(|_| None).collect();
        let shared: Vec<usize> = (0..prompts.len())
            .filter(|&i| prompts[i].mask_input.is_none())
            .collect();
        if !shared.is_empty() {
            let image = self.prepare_points(&emb.features)?;
            for multimask in [true, false] {
                let idx: Vec<usize> = shared
                    .iter()
                    .copied()
                    .filter(|&i| prompts[i].multimask == multimask)
                    .collect();
                if idx.is_empty() {
                    continue;
                }
                let members: Vec<(&[f32], usize)> = idx
                    .iter()
                    .map(|&i| (encoded[i].0.as_slice(), encoded[i].1))
                    .collect();
                let res = self
                    .mask_decoder()
                    .decode_prepared(&image, &members, multimask)?;
                idx.into_iter()
                    .zip(res)
                    .for_each(|(i, o)| outs[i] = Some(o));
            }
        }
        let own: Vec<usize> = (0..prompts.len())
            .filter(|&i| prompts[i].mask_input.is_some())
            .collect();
        let res: Vec<_> = own
            .par_iter()
            .map(|&i| self.decode_one(emb, &prompts[i]))
            .collect::<Result<_>>()?;
        own.into_iter()
            .zip(res)
            .for_each(|(i, o)| outs[i] = Some(o));
        outs.into_par_iter()
            .map(|o| self.finish(emb, o.expect("every prompt is decoded once")))
            .collect()
    }
}
