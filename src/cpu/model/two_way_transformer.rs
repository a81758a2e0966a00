//! The mask decoder's TwoWayTransformer (official `modeling/transformer.py`), f32 on CPU.
//!
//! Everything is token-major: image tokens `[hw, dim]` (the official
//! `flatten(2).permute(0, 2, 1)`), prompt tokens `[t, dim]`. Traps kept from the official
//! code: layer 0's self-attention replaces the queries (no residual, no PE); LayerNorms use
//! eps 1e-5; cross attentions project to `dim / 2`; the original prompt tokens are the
//! query PE in every layer; image->token attention uses the updated queries but the keys
//! from before the update.
//!
//! Layer 0's image-side projections (`k_proj(K + KP)` and `v_proj(K)` of token->image,
//! `q_proj(K + KP)` of image->token) depend only on the image tokens and their PE, never on
//! the prompt, so they are split out into [`PreparedImage`] and shared by every prompt with
//! the same dense embedding. Later layers' and the final attention's image-side
//! projections are folded into the prompt tokens (`cpu/ops/folded_attention.rs`), which cuts
//! the per-prompt work from about 1.34 to 0.83 GMAC for vit_b at f32-reassociation cost.

use crate::cpu::ops::attention::attn_plain;
use crate::cpu::ops::folded_attention::{
    image_to_tokens, tokens_to_image, AttnWeights, ImageQueries,
};
use crate::cpu::ops::gemm::{Linear, Par, WeightLayout};
use crate::cpu::ops::layer_norm::LayerNorm;
use crate::error::{Error, Result};
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;

/// nn.LayerNorm's default eps, used by every norm in the decoder transformer.
const DECODER_LN_EPS: f32 = 1e-5;
/// Official `attention_downsample_rate` for the three cross attentions.
const CROSS_DOWNSAMPLE: usize = 2;

/// Official `Attention`: q/k/v projections to `internal`, multi-head attention, out_proj.
pub(crate) struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    internal: usize,
    heads: usize,
}

impl Attention {
    fn load(
        w: &dyn WeightSource,
        prefix: &str,
        dim: usize,
        internal: usize,
        heads: usize,
    ) -> Result<Self> {
        if heads == 0 || !internal.is_multiple_of(heads) {
            return Err(Error::Config(format!(
                "{prefix}: {heads} heads do not divide {internal} channels"
            )));
        }
        Ok(Attention {
            q: Linear::load(
                w,
                &format!("{prefix}.q_proj"),
                dim,
                internal,
                WeightLayout::OutIn,
            )?,
            k: Linear::load(
                w,
                &format!("{prefix}.k_proj"),
                dim,
                internal,
                WeightLayout::OutIn,
            )?,
            v: Linear::load(
                w,
                &format!("{prefix}.v_proj"),
                dim,
                internal,
                WeightLayout::OutIn,
            )?,
            o: Linear::load(
                w,
                &format!("{prefix}.out_proj"),
                internal,
                dim,
                WeightLayout::OutIn,
            )?,
            internal,
            heads,
        })
    }

    /// Attention on already-projected q `[nq, internal]`, k/v `[nk, internal]`, then out_proj.
    fn attend(
        &self,
        qp: &[f32],
        nq: usize,
        kp: &[f32],
        vp: &[f32],
        nk: usize,
        par: Par,
    ) -> Vec<f32> {
        let a = attn_plain(qp, nq, kp, vp, nk, self.internal, self.heads, par);
        self.o.forward(&a, nq, par)
    }

    /// The weights as the folded cross attentions take them.
    fn weights(&self) -> AttnWeights<'_> {
        AttnWeights {
            wq: &self.q.w,
            bq: &self.q.b,
            wk: &self.k.w,
            bk: &self.k.b,
            wv: &self.v.w,
            bv: &self.v.b,
            wo: &self.o.w,
            bo: &self.o.b,
            dim: self.o.out,
            c: self.internal,
            heads: self.heads,
        }
    }

    /// The official forward: `q` `[nq, dim]`, `k`, `v` `[nk, dim]` -> `[nq, dim]`.
    pub(crate) fn forward(
        &self,
        q: &[f32],
        nq: usize,
        k: &[f32],
        v: &[f32],
        nk: usize,
        par: Par,
    ) -> Vec<f32> {
        let qp = self.q.forward(q, nq, par);
        let kp = self.k.forward(k, nk, par);
        let vp = self.v.forward(v, nk, par);
        self.attend(&qp, nq, &kp, &vp, nk, par)
    }
}

struct Block {
    self_attn: Attention,
    norm1: LayerNorm,
    t2i: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNorm,
    norm4: LayerNorm,
    i2t: Attention,
    skip_first_layer_pe: bool,
}

/// Projections of the image tokens one layer needs: token->image k and v, image->token q.
struct ImageProjections {
    t2i_k: Vec<f32>,
    t2i_v: Vec<f32>,
    i2t_q: Vec<f32>,
}

/// Image tokens (image embedding + dense prompt) with layer 0's image-side projections.
pub struct PreparedImage {
    keys: Vec<f32>,
    hw: usize,
    proj0: Option<ImageProjections>,
}

pub struct TwoWayTransformer {
    layers: Vec<Block>,
    final_attn: Attention,
    norm_final: LayerNorm,
    dim: usize,
}

/// ReLU that keeps NaN, as torch's does (f32::max would turn it into 0).
pub(crate) fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| {
        if *v < 0.0 {
            *v = 0.0
        }
    });
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

impl TwoWayTransformer {
    /// `prefix` is `mask_decoder.transformer`.
    pub fn load(w: &dyn WeightSource, prefix: &str, cfg: &SamConfig) -> Result<Self> {
        let dim = cfg.prompt_embed_dim;
        let heads = cfg.transformer_heads;
        let cross = dim / CROSS_DOWNSAMPLE;
        let layers = (0..cfg.transformer_depth)
            .map(|i| {
                let p = format!("{prefix}.layers.{i}");
                Ok(Block {
                    self_attn: Attention::load(w, &format!("{p}.self_attn"), dim, dim, heads)?,
                    norm1: LayerNorm::load(w, &format!("{p}.norm1"), dim, DECODER_LN_EPS)?,
                    t2i: Attention::load(
                        w,
                        &format!("{p}.cross_attn_token_to_image"),
                        dim,
                        cross,
                        heads,
                    )?,
                    norm2: LayerNorm::load(w, &format!("{p}.norm2"), dim, DECODER_LN_EPS)?,
                    lin1: Linear::load(
                        w,
                        &format!("{p}.mlp.lin1"),
                        dim,
                        cfg.transformer_mlp_dim,
                        WeightLayout::OutIn,
                    )?,
                    lin2: Linear::load(
                        w,
                        &format!("{p}.mlp.lin2"),
                        cfg.transformer_mlp_dim,
                        dim,
                        WeightLayout::OutIn,
                    )?,
                    norm3: LayerNorm::load(w, &format!("{p}.norm3"), dim, DECODER_LN_EPS)?,
                    norm4: LayerNorm::load(w, &format!("{p}.norm4"), dim, DECODER_LN_EPS)?,
                    i2t: Attention::load(
                        w,
                        &format!("{p}.cross_attn_image_to_token"),
                        dim,
                        cross,
                        heads,
                    )?,
                    skip_first_layer_pe: i == 0,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TwoWayTransformer {
            layers,
            final_attn: Attention::load(
                w,
                &format!("{prefix}.final_attn_token_to_image"),
                dim,
                cross,
                heads,
            )?,
            norm_final: LayerNorm::load(
                w,
                &format!("{prefix}.norm_final_attn"),
                dim,
                DECODER_LN_EPS,
            )?,
            dim,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    fn image_projections(
        &self,
        layer: &Block,
        keys: &[f32],
        key_pe: &[f32],
        hw: usize,
        par: Par,
    ) -> ImageProjections {
        let kpe = add(keys, key_pe);
        ImageProjections {
            t2i_k: layer.t2i.k.forward(&kpe, hw, par),
            t2i_v: layer.t2i.v.forward(keys, hw, par),
            i2t_q: layer.i2t.q.forward(&kpe, hw, par),
        }
    }

    /// Image-side work shared by all prompts with these image tokens. `keys` and `key_pe`
    /// are `[hw, dim]`.
    pub fn prepare(&self, keys: Vec<f32>, key_pe: &[f32], par: Par) -> Result<PreparedImage> {
        if keys.len() != key_pe.len() || !keys.len().is_multiple_of(self.dim) {
            return Err(Error::Shape {
                name: "image tokens / image PE".into(),
                expected: vec![keys.len() / self.dim, self.dim],
                got: vec![keys.len(), key_pe.len()],
            });
        }
        let hw = keys.len() / self.dim;
        let proj0 = self
            .layers
            .first()
            .map(|l| self.image_projections(l, &keys, key_pe, hw, par));
        Ok(PreparedImage { keys, hw, proj0 })
    }

    /// Runs the transformer for one prompt: `tokens` `[nt, dim]` (also the query PE).
    /// Returns (queries `[nt, dim]`, image tokens `[hw, dim]`).
    pub fn run(
        &self,
        prep: &PreparedImage,
        key_pe: &[f32],
        tokens: &[f32],
        nt: usize,
        par: Par,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (dim, hw) = (self.dim, prep.hw);
        if tokens.len() != nt * dim || key_pe.len() != hw * dim {
            return Err(Error::Shape {
                name: "prompt tokens / image PE".into(),
                expected: vec![nt * dim, hw * dim],
                got: vec![tokens.len(), key_pe.len()],
            });
        }
        let mut queries = tokens.to_vec();
        let mut keys = prep.keys.clone();
        // Image tokens + PE, rewritten in place before each folded attention.
        let mut kpe = vec![0.0f32; keys.len()];
        let add_into = |dst: &mut [f32], a: &[f32], b: &[f32]| {
            dst.iter_mut()
                .zip(a.iter().zip(b))
                .for_each(|(d, (x, y))| *d = x + y)
        };
        for (i, layer) in self.layers.iter().enumerate() {
            // Layer 0's image-side projections are shared; later layers fold theirs into
            // the prompt tokens (cpu/ops/folded_attention.rs).
            let shared = if i == 0 { prep.proj0.as_ref() } else { None };
            // 1. Self attention.
            if layer.skip_first_layer_pe {
                queries = layer
                    .self_attn
                    .forward(&queries, nt, &queries, &queries, nt, par);
            } else {
                let q = add(&queries, tokens);
                let a = layer.self_attn.forward(&q, nt, &q, &queries, nt, par);
                add_assign(&mut queries, &a);
            }
            layer.norm1.forward(&mut queries);
            // 2. Tokens attend to the image.
            let q = add(&queries, tokens);
            if shared.is_none() {
                add_into(&mut kpe, &keys, key_pe);
            }
            let a = match shared {
                Some(p) => {
                    let qp = layer.t2i.q.forward(&q, nt, par);
                    layer.t2i.attend(&qp, nt, &p.t2i_k, &p.t2i_v, hw, par)
                }
                None => tokens_to_image(&layer.t2i.weights(), &q, nt, &kpe, &keys, hw, par),
            };
            add_assign(&mut queries, &a);
            layer.norm2.forward(&mut queries);
            // 3. MLP (ReLU).
            let mut h = layer.lin1.forward(&queries, nt, par);
            relu(&mut h);
            let m = layer.lin2.forward(&h, nt, par);
            add_assign(&mut queries, &m);
            layer.norm3.forward(&mut queries);
            // 4. Image attends to the tokens (old keys, new queries).
            let q = add(&queries, tokens);
            let image_q = match shared {
                Some(p) => ImageQueries::Projected(&p.i2t_q),
                None => ImageQueries::Tokens(&kpe),
            };
            let w = layer.i2t.weights();
            image_to_tokens(&w, image_q, hw, &q, &queries, nt, &mut keys, par);
            layer.norm4.forward(&mut keys);
        }
        let q = add(&queries, tokens);
        add_into(&mut kpe, &keys, key_pe);
        let a = tokens_to_image(&self.final_attn.weights(), &q, nt, &kpe, &keys, hw, par);
        add_assign(&mut queries, &a);
        self.norm_final.forward(&mut queries);
        Ok((queries, keys))
    }

    /// The official forward on token-major inputs.
    pub fn forward(
        &self,
        keys: Vec<f32>,
        key_pe: &[f32],
        tokens: &[f32],
        nt: usize,
        par: Par,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let prep = self.prepare(keys, key_pe, par)?;
        self.run(&prep, key_pe, tokens, nt, par)
    }
}
