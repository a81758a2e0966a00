//! Reference of the device's image->token folded attention (`kernels/attn_fold_i2t.cu`) on
//! the folded token rows themselves (`graph::fold_ops` describes them; the fold from the
//! attention weights is `folded_attention::image_to_tokens`'s). Sums in f64, so that a
//! comparison measures the kernel's fp16 operands and fp32 accumulation.

/// For every prompt `b` and image row `j`:
/// `keys[b, j] += bias + sum_h sum_t p[h, t] vf[b, t, h]` with
/// `p[h, :] = softmax_t(scale * (xpe[b', j] . kf[b, t, h] + cb[b, t, h]))` over the prompt's
/// `tokens`, `b' = 0` when `image_shared`. Layouts: `xpe` `[1 or batch, hw, dim]`, `kf` and
/// `vf` `[batch, tokens, heads, dim]`, `cb` `[batch, tokens, heads]`, `bias` `[dim]`,
/// `keys` `[batch, hw, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attn_fold_i2t(
    keys: &mut [f32],
    xpe: &[f32],
    kf: &[f32],
    cb: &[f32],
    vf: &[f32],
    bias: &[f32],
    (batch, tokens, heads): (usize, usize, usize),
    (hw, dim): (usize, usize),
    scale: f32,
    image_shared: bool,
) {
    let rows = tokens * heads;
    let sides = if image_shared { 1 } else { batch };
    assert_eq!(keys.len(), batch * hw * dim, "keys size");
    assert_eq!(xpe.len(), sides * hw * dim, "xpe size");
    assert_eq!(kf.len(), batch * rows * dim, "kf size");
    assert_eq!(vf.len(), batch * rows * dim, "vf size");
    assert_eq!(cb.len(), batch * rows, "cb size");
    assert_eq!(bias.len(), dim, "bias size");
    let at = |b: usize, t: usize, h: usize| ((b * tokens + t) * heads + h) * dim;
    let mut logits = vec![0.0f64; tokens];
    let mut acc = vec![0.0f64; dim];
    for b in 0..batch {
        let side = if image_shared { 0 } else { b };
        for j in 0..hw {
            let x = &xpe[(side * hw + j) * dim..(side * hw + j + 1) * dim];
            acc.iter_mut().zip(bias).for_each(|(a, &c)| *a = c as f64);
            for h in 0..heads {
                for (t, l) in logits.iter_mut().enumerate() {
                    let dot: f64 = x
                        .iter()
                        .zip(&kf[at(b, t, h)..][..dim])
                        .map(|(&a, &k)| a as f64 * k as f64)
                        .sum();
                    *l = scale as f64 * (dot + cb[(b * tokens + t) * heads + h] as f64);
                }
                let mx = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                logits.iter_mut().for_each(|l| *l = (*l - mx).exp());
                let sum: f64 = logits.iter().sum();
                for (t, &e) in logits.iter().enumerate() {
                    let p = e / sum;
                    acc.iter_mut()
                        .zip(&vf[at(b, t, h)..][..dim])
                        .for_each(|(a, &v)| *a += p * v as f64);
                }
            }
            let out = &mut keys[(b * hw + j) * dim..(b * hw + j + 1) * dim];
            out.iter_mut()
                .zip(&acc)
                .for_each(|(o, &a)| *o = (*o as f64 + a) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::folded_attention::{image_to_tokens, AttnWeights, ImageQueries};
    use crate::cpu::ops::gemm::{linear, Par};
    use crate::io::weights::Rng;

    fn rand(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.uniform_pm1() * scale).collect()
    }

    /// The reference on rows folded from attention weights equals the CPU's folded
    /// image->token attention (which the folded_attention tests bound against the official
    /// unfolded order), for 2 prompts each with its own image side.
    #[test]
    fn matches_the_cpu_fold_of_the_attention_weights() {
        let (dim, c, heads, nt, hw, batch) = (24, 16, 4, 5, 11, 2);
        let d = c / heads;
        let mut rng = Rng::new(7);
        let s = 1.0 / (dim as f32).sqrt();
        let (wq, bq) = (rand(&mut rng, c * dim, s), rand(&mut rng, c, 0.1));
        let (wk, bk) = (rand(&mut rng, c * dim, s), rand(&mut rng, c, 0.1));
        let (wv, bv) = (rand(&mut rng, c * dim, s), rand(&mut rng, c, 0.1));
        let (wo, bo) = (rand(&mut rng, dim * c, 0.25), rand(&mut rng, dim, 0.1));
        let w = AttnWeights {
            wq: &wq,
            bq: &bq,
            wk: &wk,
            bk: &bk,
            wv: &wv,
            bv: &bv,
            wo: &wo,
            bo: &bo,
            dim,
            c,
            heads,
        };
        let x = rand(&mut rng, batch * hw * dim, 1.5);
        let k = rand(&mut rng, batch * nt * dim, 1.0);
        let v = rand(&mut rng, batch * nt * dim, 1.0);
        let keys0 = rand(&mut rng, batch * hw * dim, 1.0);
        let mut want = keys0.clone();
        let (mut kf, mut cb, mut vf) = (vec![], vec![], vec![]);
        for b in 0..batch {
            let (kb, vb) = (
                &k[b * nt * dim..][..nt * dim],
                &v[b * nt * dim..][..nt * dim],
            );
            let xb = &x[b * hw * dim..][..hw * dim];
            let out = &mut want[b * hw * dim..][..hw * dim];
            image_to_tokens(&w, ImageQueries::Tokens(xb), hw, kb, vb, nt, out, Par::Seq);
            let kp = linear(kb, nt, &wk, Some(&bk), c, Par::Seq);
            let vp = linear(vb, nt, &wv, Some(&bv), c, Par::Seq);
            // kf[t, h] = Wq_h^T kp_h[t], cb = bq_h . kp_h[t], vf[t, h] = Wo_h vp_h[t].
            for t in 0..nt {
                for h in 0..heads {
                    let kh = &kp[t * c + h * d..][..d];
                    let vh = &vp[t * c + h * d..][..d];
                    for col in 0..dim {
                        kf.push((0..d).map(|e| kh[e] * wq[(h * d + e) * dim + col]).sum());
                        vf.push((0..d).map(|e| vh[e] * wo[col * c + h * d + e]).sum());
                    }
                    cb.push((0..d).map(|e| kh[e] * bq[h * d + e]).sum());
                }
            }
        }
        let mut got = keys0;
        let scale = 1.0 / (d as f32).sqrt();
        let shape = ((batch, nt, heads), (hw, dim));
        attn_fold_i2t(
            &mut got, &x, &kf, &cb, &vf, &bo, shape.0, shape.1, scale, false,
        );
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        // Both in f32 or better, summed in other orders, on outputs of magnitude ~1-3.
        assert!(err < 2e-5, "max |err| {err}");
    }

    #[test]
    fn a_shared_image_side_serves_every_prompt() {
        let (batch, tokens, heads, hw, dim) = (3, 2, 2, 5, 8);
        let mut rng = Rng::new(11);
        let xpe = rand(&mut rng, hw * dim, 1.0);
        let kf = rand(&mut rng, batch * tokens * heads * dim, 1.0);
        let cb = rand(&mut rng, batch * tokens * heads, 1.0);
        let vf = rand(&mut rng, batch * tokens * heads * dim, 1.0);
        let bias = rand(&mut rng, dim, 1.0);
        let keys = rand(&mut rng, batch * hw * dim, 1.0);
        let mut shared = keys.clone();
        let dims = ((batch, tokens, heads), (hw, dim));
        attn_fold_i2t(
            &mut shared,
            &xpe,
            &kf,
            &cb,
            &vf,
            &bias,
            dims.0,
            dims.1,
            0.5,
            true,
        );
        let copies: Vec<f32> = (0..batch).flat_map(|_| xpe.iter().copied()).collect();
        let mut dense = keys.clone();
        attn_fold_i2t(
            &mut dense, &copies, &kf, &cb, &vf, &bias, dims.0, dims.1, 0.5, false,
        );
        assert_eq!(shared, dense);
        // Every prompt's rows moved: a prompt the loop skipped would keep its inputs.
        for (s, k) in shared.chunks(hw * dim).zip(keys.chunks(hw * dim)) {
            assert!(s.iter().zip(k).all(|(a, b)| a != b));
        }
    }
}
