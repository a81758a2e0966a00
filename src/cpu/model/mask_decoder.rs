//! SAM's mask decoder (official `modeling/mask_decoder.py`), f32 on CPU.
//!
//! Tokens are `[iou_token, 4 mask tokens, sparse prompt]`; the image side is the image
//! embedding plus the dense prompt embedding. After the TwoWayTransformer the image tokens
//! are upscaled 4x by two stride-2 transposed convolutions (LayerNorm2d eps 1e-6 and exact
//! GELU between, GELU after), each mask token goes through its own hypernetwork MLP to 32
//! weights, and mask m is their dot product with the upscaled features at every pixel. The
//! IoU head has no sigmoid.
//!
//! The output stage runs fused and tiled (`cpu/ops/output_upscaling.rs`): the upscaled
//! features stay in the sub-pixel blocked order [`ConvTranspose2d`] produces, and only the
//! final per-pixel dot product writes into row-major `[4, 256, 256]`.

use crate::cpu::model::two_way_transformer::{relu, PreparedImage, TwoWayTransformer};
use crate::cpu::ops::conv_transpose2d::ConvTranspose2d;
use crate::cpu::ops::gemm::Par;
use crate::cpu::ops::gemm::{Linear, WeightLayout};
use crate::cpu::ops::image_tokens::image_tokens;
use crate::cpu::ops::layer_norm::transpose;
use crate::cpu::ops::output_upscaling::OutputUpscaling;
use crate::error::{Error, Result};
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

const P: &str = "mask_decoder";
/// LayerNorm2d's eps (common.py).
const LN2D_EPS: f32 = 1e-6;

/// Decoder result for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderOutput {
    /// Mask logits `[num_masks, 256, 256]`; empty when the caller's filter
    /// ([`MaskDecoder::decode_prepared_where`]) said no mask of this prompt is wanted.
    pub low_res: Vec<f32>,
    /// Predicted IoU per mask (raw head output, no sigmoid).
    pub iou: Vec<f32>,
    pub num_masks: usize,
}

impl DecoderOutput {
    /// The official multimask slicing: masks 1.. when `multimask`, else mask 0 only.
    pub fn slice(self, multimask: bool) -> DecoderOutput {
        let range = if multimask {
            1..self.num_masks
        } else {
            0..1.min(self.num_masks)
        };
        let plane = self.low_res.len() / self.num_masks.max(1);
        DecoderOutput {
            low_res: self.low_res[range.start * plane..range.end * plane].to_vec(),
            iou: self.iou[range.clone()].to_vec(),
            num_masks: range.len(),
        }
    }
}

/// Three-layer MLP with ReLU between layers and nothing after the last.
struct Mlp(Vec<Linear>);

impl Mlp {
    fn load(w: &dyn WeightSource, prefix: &str, dims: &[usize]) -> Result<Self> {
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, d)| {
                Linear::load(
                    w,
                    &format!("{prefix}.layers.{i}"),
                    d[0],
                    d[1],
                    WeightLayout::OutIn,
                )
            })
            .collect::<Result<_>>()?;
        Ok(Mlp(layers))
    }
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut h = x.to_vec();
        for (i, l) in self.0.iter().enumerate() {
            h = l.forward(&h, 1, Par::Seq);
            if i + 1 < self.0.len() {
                relu(&mut h);
            }
        }
        h
    }
}

pub struct MaskDecoder {
    transformer: TwoWayTransformer,
    /// `[1 + num_mask_tokens, dim]`: iou token then mask tokens.
    output_tokens: Vec<f32>,
    up1: ConvTranspose2d,
    up_ln_w: Vec<f32>,
    up_ln_b: Vec<f32>,
    up2: ConvTranspose2d,
    hyper: Vec<Mlp>,
    iou_head: Mlp,
    dim: usize,
    num_mask_tokens: usize,
    /// Image embedding side (64).
    grid: usize,
}

/// One prompt after validation: tokens `[5 + n, dim]`, count, dense `[dim, hw]`.
type Prompt<'a> = (&'a [f32], usize, &'a [f32]);

impl MaskDecoder {
    pub fn load(w: &dyn WeightSource, cfg: &SamConfig) -> Result<Self> {
        let dim = cfg.prompt_embed_dim;
        let nm = cfg.num_mask_tokens;
        if dim == 0 || !dim.is_multiple_of(8) || nm == 0 {
            return Err(Error::Config(format!(
                "mask decoder needs a dim divisible by 8 and mask tokens, got {dim} and {nm}"
            )));
        }
        let t = |name: &str, shape: &[usize]| w.f32(&format!("{P}.{name}"), shape);
        let mut output_tokens = t("iou_token.weight", &[1, dim])?;
        output_tokens.extend(t("mask_tokens.weight", &[nm, dim])?);
        let (c1, c2) = (dim / 4, dim / 8);
        let up1 = ConvTranspose2d::new(
            &t("output_upscaling.0.weight", &[dim, c1, 2, 2])?,
            &t("output_upscaling.0.bias", &[c1])?,
            dim,
            c1,
            2,
        )?;
        let up2 = ConvTranspose2d::new(
            &t("output_upscaling.3.weight", &[c1, c2, 2, 2])?,
            &t("output_upscaling.3.bias", &[c2])?,
            c1,
            c2,
            2,
        )?;
        let hyper = (0..nm)
            .map(|i| {
                Mlp::load(
                    w,
                    &format!("{P}.output_hypernetworks_mlps.{i}"),
                    &[dim, dim, dim, c2],
                )
            })
            .collect::<Result<_>>()?;
        let hid = cfg.iou_head_hidden_dim;
        Ok(MaskDecoder {
            transformer: TwoWayTransformer::load(w, &format!("{P}.transformer"), cfg)?,
            output_tokens,
            up1,
            up_ln_w: t("output_upscaling.1.weight", &[c1])?,
            up_ln_b: t("output_upscaling.1.bias", &[c1])?,
            up2,
            hyper,
            iou_head: Mlp::load(w, &format!("{P}.iou_prediction_head"), &[dim, hid, hid, nm])?,
            dim,
            num_mask_tokens: nm,
            grid: cfg.encoder.grid(),
        })
    }

    fn hw(&self) -> usize {
        self.grid * self.grid
    }

    fn check_image(&self, image_embedding: &[f32], image_pe: &[f32]) -> Result<()> {
        let want = self.dim * self.hw();
        for (what, len) in [
            ("image embedding", image_embedding.len()),
            ("image PE", image_pe.len()),
        ] {
            if len != want {
                return Err(Error::Shape {
                    name: what.into(),
                    expected: vec![self.dim, self.grid, self.grid],
                    got: vec![len],
                });
            }
        }
        Ok(())
    }

    /// Checks one prompt and builds its token matrix.
    fn tokens(&self, sparse: &[f32], n_sparse: usize, dense: &[f32]) -> Result<Vec<f32>> {
        let tokens = self.tokens_only(sparse, n_sparse)?;
        self.check_dense(dense)?;
        Ok(tokens)
    }

    /// `[iou token, mask tokens, sparse prompt]` after checking the sparse size.
    fn tokens_only(&self, sparse: &[f32], n_sparse: usize) -> Result<Vec<f32>> {
        if sparse.len() != n_sparse * self.dim {
            return Err(Error::Prompt(format!(
                "sparse embedding has {} values, expected {n_sparse} x {}",
                sparse.len(),
                self.dim
            )));
        }
        let mut tokens = self.output_tokens.clone();
        tokens.extend_from_slice(sparse);
        Ok(tokens)
    }

    fn check_dense(&self, dense: &[f32]) -> Result<()> {
        if dense.len() != self.dim * self.hw() {
            return Err(Error::Prompt(format!(
                "dense embedding has {} values, expected {} x {} x {}",
                dense.len(),
                self.dim,
                self.grid,
                self.grid
            )));
        }
        Ok(())
    }

    /// Image tokens `[hw, dim]` = image embedding + dense prompt, token-major.
    fn image_tokens(&self, image_embedding: &[f32], dense: &[f32]) -> Vec<f32> {
        image_tokens(image_embedding, Some(dense), &[], (1, self.hw(), self.dim))
    }

    /// Everything after the image-side preparation, for one prompt; all mask tokens.
    fn decode(
        &self,
        prep: &PreparedImage,
        pe_t: &[f32],
        tokens: &[f32],
        par: Par,
        want_masks: &dyn Fn(&[f32]) -> bool,
    ) -> Result<DecoderOutput> {
        let nt = tokens.len() / self.dim;
        let (hs, src) = self.transformer.run(prep, pe_t, tokens, nt, par)?;
        let nm = self.num_mask_tokens;
        let iou = self.iou_head.forward(&hs[..self.dim]);
        if !want_masks(&iou) {
            // The upscaling and hypernetwork product are ~half of a prompt's work and
            // depend only on what the IoU head has already decided is unwanted.
            return Ok(DecoderOutput {
                low_res: Vec::new(),
                iou,
                num_masks: nm,
            });
        }
        let hyper: Vec<f32> = (0..nm)
            .flat_map(|m| self.hyper[m].forward(&hs[(1 + m) * self.dim..(2 + m) * self.dim]))
            .collect();
        let stage = OutputUpscaling {
            up1: &self.up1,
            ln_w: &self.up_ln_w,
            ln_b: &self.up_ln_b,
            ln_eps: LN2D_EPS,
            up2: &self.up2,
        };
        let low_res = stage.masks(&src, self.grid, &hyper, nm, par);
        Ok(DecoderOutput {
            low_res,
            iou,
            num_masks: nm,
        })
    }

    /// All 4 masks (official predict_masks), image_embedding & image_pe [256,64,64],
    /// sparse [n,256], dense [256,64,64].
    pub fn predict_masks(
        &self,
        image_embedding: &[f32],
        image_pe: &[f32],
        sparse: &[f32],
        n_sparse: usize,
        dense: &[f32],
    ) -> Result<DecoderOutput> {
        self.check_image(image_embedding, image_pe)?;
        let tokens = self.tokens(sparse, n_sparse, dense)?;
        let pe_t = transpose(image_pe, self.dim, self.hw());
        let keys = self.image_tokens(image_embedding, dense);
        let prep = self.transformer.prepare(keys, &pe_t, Par::Threads)?;
        self.decode(&prep, &pe_t, &tokens, Par::Threads, &|_| true)
    }

    /// Official forward: slices per multimask_output.
    pub fn forward(
        &self,
        image_embedding: &[f32],
        image_pe: &[f32],
        sparse: &[f32],
        n_sparse: usize,
        dense: &[f32],
        multimask_output: bool,
    ) -> Result<DecoderOutput> {
        Ok(self
            .predict_masks(image_embedding, image_pe, sparse, n_sparse, dense)?
            .slice(multimask_output))
    }

    /// The image side of a decode (image embedding + dense prompt, its layer-0
    /// projections, the transposed PE), computed once for any number of prompts that share
    /// `dense`: the automatic mask generator's whole grid, or a batch without mask inputs.
    pub fn prepare_image(
        &self,
        image_embedding: &[f32],
        image_pe: &[f32],
        dense: &[f32],
    ) -> Result<DecoderImage> {
        self.check_image(image_embedding, image_pe)?;
        let pe_t = transpose(image_pe, self.dim, self.hw());
        self.prepare_dense(image_embedding, pe_t.into(), dense)
    }

    /// [`Self::prepare_image`] for prompts without a mask input, whose dense embedding is
    /// `no_mask_embed` (`[dim]`) at every cell, with the PE already token-major (`pe_t`
    /// `[hw, dim]`, a constant of the model, so a server does not transpose 4 MB per call).
    /// The same values as `prepare_image` on the broadcast dense embedding, without
    /// building and transposing that plane.
    pub fn prepare_no_mask(
        &self,
        image_embedding: &[f32],
        pe_t: Arc<[f32]>,
        no_mask_embed: &[f32],
    ) -> Result<DecoderImage> {
        self.check_image(image_embedding, &pe_t)?;
        if no_mask_embed.len() != self.dim {
            return Err(Error::Shape {
                name: "no-mask embedding".into(),
                expected: vec![self.dim],
                got: vec![no_mask_embed.len()],
            });
        }
        let keys = image_tokens(
            image_embedding,
            None,
            no_mask_embed,
            (1, self.hw(), self.dim),
        );
        self.prepared(keys, pe_t)
    }

    /// [`Self::prepare_image`] with the PE already token-major (`pe_t` `[hw, dim]`, which
    /// [`crate::Sam`] transposes once at load): a prompt with a mask input then pays no 4 MB
    /// transpose per call.
    pub fn prepare_dense(
        &self,
        image_embedding: &[f32],
        pe_t: Arc<[f32]>,
        dense: &[f32],
    ) -> Result<DecoderImage> {
        self.check_image(image_embedding, &pe_t)?;
        self.check_dense(dense)?;
        let keys = self.image_tokens(image_embedding, dense);
        self.prepared(keys, pe_t)
    }

    /// Layer 0's image-side projections of `keys` (image tokens `[hw, dim]`).
    fn prepared(&self, keys: Vec<f32>, pe_t: Arc<[f32]>) -> Result<DecoderImage> {
        let prep = self.transformer.prepare(keys, &pe_t, Par::Threads)?;
        Ok(DecoderImage { prep, pe_t })
    }

    /// Decodes sparse prompts `(sparse [n, dim], n)` against a prepared image, in parallel
    /// over prompts. Equals one `forward` call per prompt with the prepared dense input.
    pub fn decode_prepared(
        &self,
        image: &DecoderImage,
        prompts: &[(&[f32], usize)],
        multimask_output: bool,
    ) -> Result<Vec<DecoderOutput>> {
        self.decode_prepared_where(image, prompts, multimask_output, &|_| true)
    }

    /// [`Self::decode_prepared`], computing a prompt's masks only when `want_masks` says
    /// so from its (sliced) IoU predictions; otherwise its `low_res` is empty. The automatic
    /// mask generator drops every mask at or below `pred_iou_thresh` before looking at it,
    /// so it skips the upscaling of prompts with no mask above the threshold, exactly.
    pub fn decode_prepared_where(
        &self,
        image: &DecoderImage,
        prompts: &[(&[f32], usize)],
        multimask_output: bool,
        want_masks: &(dyn Fn(&[f32]) -> bool + Sync),
    ) -> Result<Vec<DecoderOutput>> {
        let tokens: Vec<Vec<f32>> = prompts
            .iter()
            .map(|&(s, n)| self.tokens_only(s, n))
            .collect::<Result<_>>()?;
        let want = |iou: &[f32]| {
            let kept = if multimask_output {
                &iou[1.min(iou.len())..]
            } else {
                &iou[..1.min(iou.len())]
            };
            want_masks(kept)
        };
        // Fewer prompts than threads: each decode splits its rows across the threads too, so
        // a lone prompt is as fast as `forward`. Only the schedule changes, never the bits:
        // every parallel op splits independent rows or heads, and the GEMM's depth blocking
        // does not depend on its thread count (a lone prompt equals the same prompt in a
        // batch; tests/serve.rs checks it).
        let inner = if tokens.len() < rayon::current_num_threads() {
            Par::Threads
        } else {
            Par::Seq
        };
        tokens
            .par_iter()
            .map(|t| {
                let o = self.decode(&image.prep, &image.pe_t, t, inner, &want)?;
                Ok(o.slice(multimask_output))
            })
            .collect()
    }

    /// Many prompts (sparse, n_sparse, dense) against one embedding. Prompts with
    /// identical dense embeddings (all the no-mask ones, typically) share one
    /// [`Self::prepare_image`]; prompts are decoded in parallel. Equals one `forward` call
    /// per prompt.
    pub fn forward_batch(
        &self,
        image_embedding: &[f32],
        image_pe: &[f32],
        prompts: &[(Vec<f32>, usize, Vec<f32>)],
        multimask_output: bool,
    ) -> Result<Vec<DecoderOutput>> {
        self.check_image(image_embedding, image_pe)?;
        for (s, n, d) in prompts {
            self.tokens(s, *n, d)?;
        }
        let views: Vec<Prompt> = prompts
            .iter()
            .map(|(s, n, d)| (s.as_slice(), *n, d.as_slice()))
            .collect();
        let groups = group_by_dense(&views);
        let mut out: Vec<Option<DecoderOutput>> = vec![None; prompts.len()];
        let (shared, single): (Vec<_>, Vec<_>) = groups.into_iter().partition(|g| g.len() > 1);
        // Shared groups: prepare once with all threads, then decode members in parallel.
        for g in shared {
            let image = self.prepare_image(image_embedding, image_pe, views[g[0]].2)?;
            let members: Vec<(&[f32], usize)> =
                g.iter().map(|&i| (views[i].0, views[i].1)).collect();
            let res = self.decode_prepared(&image, &members, multimask_output)?;
            g.iter().zip(res).for_each(|(&i, o)| out[i] = Some(o));
        }
        // Prompts with a dense embedding of their own: one whole decode per task.
        let pe_t = transpose(image_pe, self.dim, self.hw());
        let res: Vec<(usize, DecoderOutput)> = single
            .par_iter()
            .map(|g| {
                let i = g[0];
                let tokens = self.tokens_only(views[i].0, views[i].1)?;
                let keys = self.image_tokens(image_embedding, views[i].2);
                let prep = self.transformer.prepare(keys, &pe_t, Par::Seq)?;
                let o = self.decode(&prep, &pe_t, &tokens, Par::Seq, &|_| true)?;
                Ok((i, o.slice(multimask_output)))
            })
            .collect::<Result<_>>()?;
        res.into_iter().for_each(|(i, o)| out[i] = Some(o));
        // Every index belongs to exactly one group, so every slot is filled.
        Ok(out.into_iter().flatten().collect())
    }
}

/// See [`MaskDecoder::prepare_image`].
pub struct DecoderImage {
    prep: PreparedImage,
    pe_t: Arc<[f32]>,
}

/// Groups prompt indices whose dense embeddings are bit-identical, in first-seen order.
/// A cheap hash finds candidates; a full comparison confirms them.
fn group_by_dense(prompts: &[Prompt]) -> Vec<Vec<usize>> {
    let hash = |d: &[f32]| {
        d.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ v.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
    for (i, p) in prompts.iter().enumerate() {
        let cands = by_hash.entry(hash(p.2)).or_default();
        let bits_eq =
            |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        match cands
            .iter()
            .find(|&&g| bits_eq(prompts[groups[g][0]].2, p.2))
        {
            Some(&g) => groups[g].push(i),
            None => {
                cands.push(groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups
}

pub use crate::cpu::model::random_weights::random_decoder_weights;
