//! The decoder schedule's weights on the host: the official tensors in the dtype each op
//! reads them in, and the derived ones (output tokens, the prompt encoder's tables, the
//! token-major dense PE, the upscaling GEMM layouts); and the plan `samrt info --graph`
//! prints.

use crate::cpu::model::prompt_encoder::PromptEncoder;
use crate::cpu::ops::conv_transpose2x2::gemm_layout;
use crate::cpu::ops::layer_norm::transpose;
use crate::cuda::model::decoder_fold::fold_tensor;
use crate::cuda::model::decoder_image::build_image_graph;
use crate::cuda::model::encoder::EncoderPlan;
use crate::cuda::model::mask_decoder::{
    build_graph, DecoderDims, DecoderKey, DENSE_PE, GAUSS, MASK_PACKED, NO_MASK, OUTPUT_TOKENS, P,
    SPARSE_TABLE,
};
use crate::error::{Error, Result};
use crate::graph::buffer::DType;
use crate::graph::fold_ops::FOLD_I2T_MAX_TOKENS;
use crate::graph::weights::{HostTensor, WeightRef};
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;

/// Every tensor the decoder schedules read, converted for the device: the official tensors
/// in the dtype the schedule reads them in, and the derived ones (output tokens, the
/// prompt encoder's tables, the token-major dense PE, the upscaling GEMM layouts).
pub fn prepare_weights(w: &dyn WeightSource, cfg: &SamConfig) -> Result<Vec<HostTensor>> {
    let d = DecoderDims::new(cfg)?;
    let pe = PromptEncoder::load(w, cfg)?;
    let entries = read_by_any_schedule(&d);
    let (dim, hw) = (d.dim, d.hw());
    let (gauss, table, _) = pe.sparse_tables();
    let official = |name: &str| -> Result<Vec<f32>> {
        let shape = w
            .shape(name)
            .ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        w.f32(name, &shape)
    };
    let upscaling = |i: usize, cin: usize, cout: usize| -> Result<(Vec<f32>, Vec<f32>)> {
        let wt = official(&format!("{P}.output_upscaling.{i}.weight"))?;
        let bs = official(&format!("{P}.output_upscaling.{i}.bias"))?;
        Ok(gemm_layout(&wt, &bs, cin, cout))
    };
    let (up0, up3) = (upscaling(0, dim, dim / 4)?, upscaling(3, dim / 4, dim / 8)?);
    // The folded tensors of one attention (2 x heads + 4 of them) all derive from its four
    // projections: read each official tensor once.
    let read = std::cell::RefCell::new(std::collections::HashMap::<String, Vec<f32>>::new());
    let projection = |name: &str| -> Result<Vec<f32>> {
        if let Some(v) = read.borrow().get(name) {
            return Ok(v.clone());
        }
        let v = official(name)?;
        read.borrow_mut().insert(name.to_string(), v.clone());
        Ok(v)
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        let values = match e.name.as_str() {
            OUTPUT_TOKENS => {
                let mut v = official(&format!("{P}.iou_token.weight"))?;
                v.extend(official(&format!("{P}.mask_tokens.weight"))?);
                v
            }
            GAUSS => gauss.clone(),
            SPARSE_TABLE => table.clone(),
            NO_MASK => official(NO_MASK)?,
            MASK_PACKED => pe.mask_downscaling_packed(),
            DENSE_PE => transpose(&pe.dense_pe(), dim, hw),
            n if n == format!("{P}.output_upscaling.0.gemm.weight") => up0.0.clone(),
            n if n == format!("{P}.output_upscaling.0.gemm.bias") => up0.1.clone(),
            n if n == format!("{P}.output_upscaling.3.gemm.weight") => up3.0.clone(),
            n if n == format!("{P}.output_upscaling.3.gemm.bias") => up3.1.clone(),
            n => match fold_tensor(n, (dim, d.heads), &projection) {
                Some(derived) => derived?,
                None => projection(n)?,
            },
        };
        if values.len() != e.len {
            return Err(Error::Shape {
                name: e.name.clone(),
                expected: vec![e.len],
                got: vec![values.len()],
            });
        }
        out.push(match e.dtype {
            DType::F16 => HostTensor::f16(e.name.clone(), &values)?,
            _ => HostTensor::f32(e.name.clone(), &values),
        });
    }
    Ok(out)
}

/// Every weight some decoder schedule reads, once each: with mask inputs (layer 0 per
/// prompt) and without (layer 0 from the per-image prep), each at the fewest tokens (which
/// fold wherever any prompt does: `AttnFoldShape::pays` only loses with more tokens) and at
/// more tokens than image->token folds (which run unfolded), and the per-image prep itself.
fn read_by_any_schedule(d: &DecoderDims) -> Vec<WeightRef> {
    let key = |sparse, mask_input| DecoderKey {
        batch: 1,
        sparse,
        mask_input,
    };
    let wide = FOLD_I2T_MAX_TOKENS + 1 - d.prefix().min(FOLD_I2T_MAX_TOKENS);
    let keys = [
        key(0, true),
        key(1, false),
        key(wide, false),
        key(wide, true),
    ];
    let mut graphs: Vec<_> = keys
        .into_iter()
        .map(|k| build_graph(d, k).0.weights)
        .collect();
    graphs.push(build_image_graph(d).0.weights);
    let mut entries: Vec<WeightRef> = Vec::new();
    for e in graphs.into_iter().flat_map(|w| w.entries) {
        if !entries.iter().any(|x| x.name == e.name) {
            entries.push(e);
        }
    }
    entries
}

/// The decoder's schedule for `key` with its plan and weight bytes (host-only: `samrt info
/// --graph`).
pub fn plan_decoder(w: &dyn WeightSource, cfg: &SamConfig, key: DecoderKey) -> Result<EncoderPlan> {
    let d = DecoderDims::new(cfg)?;
    let tensors = prepare_weights(w, cfg)?;
    EncoderPlan::new(build_graph(&d, key).0, &tensors)
}

/// The decoder's per-image prep schedule (layer 0's image side, run when the embedding
/// slot takes a new image) with its plan and weight bytes (host-only: `samrt info --graph`).
pub fn plan_decoder_image(w: &dyn WeightSource, cfg: &SamConfig) -> Result<EncoderPlan> {
    let d = DecoderDims::new(cfg)?;
    let tensors = prepare_weights(w, cfg)?;
    EncoderPlan::new(build_image_graph(&d).0, &tensors)
}

/// Host-side tests of the decoder schedule: keys, batching, the weights it reads.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::model::mask_decoder::random_decoder_weights;
    use crate::cuda::model::mask_decoder::{plan_batches, DevicePrompt};
    use crate::graph::ops::{Op, OpDesc};

    fn vit_b() -> SamConfig {
        SamConfig::by_name("vit_b").unwrap()
    }

    #[test]
    fn keys_round_trip() {
        for batch in [1, 2, 16, 64] {
            for sparse in [0, 1, 2, 18, 1026] {
                for mask_input in [false, true] {
                    let k = DecoderKey {
                        batch,
                        sparse,
                        mask_input,
                    };
                    assert_eq!(DecoderKey::unpack(k.pack()), k);
                }
            }
        }
    }

    #[test]
    fn prompts_are_grouped_by_shape_and_bucketed() {
        let pt = ([1.0, 2.0], 2);
        let mask = vec![0.0f32; 16];
        let p = |n: usize, m: bool| DevicePrompt {
            tokens: vec![pt; n],
            mask: m.then_some(mask.as_slice()),
        };
        let mut prompts = vec![p(2, false), p(3, false), p(2, true)];
        prompts.extend((0..69).map(|_| p(2, false)));
        let plan = plan_batches(&prompts);
        let keys: Vec<(usize, usize, bool, usize)> = plan
            .iter()
            .map(|(k, idx)| (k.batch, k.sparse, k.mask_input, idx.len()))
            .collect();
        // 70 two-token prompts: 64, then 6 (in the bucket of 8); the others alone.
        assert_eq!(
            keys,
            vec![
                (64, 2, false, 64),
                (8, 2, false, 6),
                (1, 3, false, 1),
                (1, 2, true, 1)
            ]
        );
        let mut seen: Vec<usize> = plan.iter().flat_map(|(_, i)| i.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..prompts.len()).collect::<Vec<_>>());
    }

    #[test]
    fn schedule_reads_exactly_the_prepared_weights() {
        let cfg = vit_b();
        let w = random_decoder_weights(&cfg, 7);
        let tensors = prepare_weights(&w, &cfg).unwrap();
        let d = DecoderDims::new(&cfg).unwrap();
        for mask_input in [false, true] {
            let key = DecoderKey {
                batch: 2,
                sparse: 3,
                mask_input,
            };
            let (g, io) = build_graph(&d, key);
            g.weights.check(&tensors).unwrap();
            assert_eq!(io.masks.is_some(), mask_input);
            // With mask inputs layer 0's image side is every prompt's own; without, it comes
            // from the per-image prep (computed once for every prompt and decode).
            let kproj = |g: &crate::graph::schedule::Graph<Op>| {
                g.nodes
                    .iter()
                    .find(|n| {
                        n.label
                            .ends_with("layers.0.cross_attn_token_to_image.k_proj")
                    })
                    .map(|n| match &n.op {
                        Op::Gemm(gm) => gm.m,
                        _ => panic!("k_proj is a gemm"),
                    })
            };
            assert_eq!(io.layer0.is_some(), !mask_input);
            // The per-prompt image sides fold (no image-side projection GEMM): layer 0's
            // with mask inputs, layer 1's and the final attention always.
            let folded = |g: &crate::graph::schedule::Graph<Op>, attn: &str| {
                let node = g.nodes.iter().find(|n| n.label.ends_with(attn));
                node.map(|n| matches!(n.op, Op::AttnFoldT2i(_) | Op::AttnFoldI2t(_)))
            };
            for attn in [
                "layers.1.cross_attn_token_to_image",
                "layers.1.cross_attn_image_to_token",
                "final_attn_token_to_image",
            ] {
                assert_eq!(folded(&g, attn), Some(true), "{attn}");
            }
            let l0 = folded(&g, "layers.0.cross_attn_token_to_image");
            assert_eq!(l0, Some(mask_input));
            assert!(!g.nodes.iter().any(|n| n
                .label
                .ends_with("layers.1.cross_attn_image_to_token.out_proj")));
            if mask_input {
                assert_eq!(kproj(&g), None);
            } else {
                assert_eq!(kproj(&g), None);
                let (prep, pio) = build_image_graph(&d);
                prep.weights.check(&tensors).unwrap();
                assert_eq!(kproj(&prep), Some(d.hw()));
                assert_eq!(pio.layer0.buffers().len(), 3);
            }
            assert_eq!(g.get(io.low_res).len, 2 * 4 * 256 * 256);
            // More tokens than image->token folds: it runs unfolded, on the same weights,
            // and so does token->image (folding that many tokens is more work).
            let wide = DecoderKey {
                sparse: FOLD_I2T_MAX_TOKENS,
                ..key
            };
            let (gw, _) = build_graph(&d, wide);
            gw.weights.check(&tensors).unwrap();
            let i2t = folded(&gw, "layers.1.cross_attn_image_to_token");
            assert_eq!(i2t, Some(false));
            assert_eq!(folded(&gw, "final_attn_token_to_image"), Some(false));
            // The fewest tokens, and every width in between, read prepared weights too.
            for sparse in [0, 1, 2, 9, 12, 13, 20] {
                let k = DecoderKey { sparse, ..key };
                build_graph(&d, k).0.weights.check(&tensors).unwrap();
            }
            assert!(g.nodes.iter().all(|n| !n.op.entry_point().is_empty()));
        }
    }

    /// At every input size, whether few, some or no prompts fold (192 px: 5 tokens fold, 7
    /// do not; 128 px: none), every schedule's weights are prepared.
    #[test]
    fn every_schedule_at_every_size_reads_prepared_weights() {
        for size in [128, 192, 256, 1024] {
            let cfg = vit_b().at_image_size(size).unwrap();
            let w = random_decoder_weights(&cfg, 3);
            let tensors = prepare_weights(&w, &cfg).unwrap();
            let d = DecoderDims::new(&cfg).unwrap();
            for sparse in [0, 1, 2, 3, 9, 13, 20, 40] {
                for mask_input in [false, true] {
                    let k = DecoderKey {
                        batch: 1,
                        sparse,
                        mask_input,
                    };
                    let g = build_graph(&d, k).0;
                    g.weights.check(&tensors).unwrap_or_else(|e| {
                        panic!("{size} px, {sparse} sparse, mask {mask_input}: {e}")
                    });
                }
            }
        }
    }

    #[test]
    fn unsupported_decoders_are_refused() {
        let mut cfg = vit_b();
        cfg.transformer_heads = 16; // 128-wide cross attention: head dim 8
        assert!(matches!(DecoderDims::new(&cfg), Err(Error::Unsupported(_))));
        let mut cfg = vit_b();
        cfg.transformer_depth = 0;
        assert!(DecoderDims::new(&cfg).is_err());
    }
}
