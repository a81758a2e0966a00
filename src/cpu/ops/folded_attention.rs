//! The mask decoder's cross attentions (transformer.py `Attention`, q/k/v/out projections
//! included) with the image-side projections folded into the few prompt tokens.
//!
//! One side of a decoder cross attention is always the 5+N prompt tokens, the other the
//! 4096 image tokens. Projecting the image side costs `hw * dim * c` multiply-adds per
//! projection, yet every use of a projected image token is a dot product with a projected
//! prompt token. Both are linear, so the products can be reassociated onto the token side:
//!
//! - token->image: `logit[t, j] = q_h[t] . (Wk_h x_j + bk_h) = (q_h[t] Wk_h) . x_j +
//!   q_h[t] . bk_h`, and `sum_j p[t, j] (Wv_h x_j + bv_h) = Wv_h (sum_j p[t, j] x_j) + bv_h`
//!   because each softmax row sums to one;
//! - image->token: `logit[j, t] = (Wq_h x_j + bq_h) . k_h[t] = x_j . (Wq_h^T k_h[t]) +
//!   bq_h . k_h[t]`, and `out_proj(sum_t p[j, t] v_h[t]) = sum_t p[j, t] (Wo_h v_h[t]) + bo`.
//!
//! Each image-side product then has `heads * tokens` (8 * 7 = 56) rows instead of `c` = 128
//! or `dim` = 256 columns: the per-prompt decoder work drops from about 1.34 to 0.83 GMAC
//! for vit_b. The result equals the official forward up to f32 reassociation (the sums run
//! in another order), the same kind of difference a different GEMM blocking makes; the
//! tests bound it against the unfolded computation.

use crate::cpu::ops::gemm::{linear, matmul, MatRef, Par};
use crate::cpu::ops::softmax::{scaled_softmax_cols, scaled_softmax_rows};

/// One `Attention`'s weights in nn.Linear layout (`w` is `[out, in]`).
#[derive(Clone, Copy)]
pub struct AttnWeights<'a> {
    pub wq: &'a [f32],
    pub bq: &'a [f32],
    pub wk: &'a [f32],
    pub bk: &'a [f32],
    pub wv: &'a [f32],
    pub bv: &'a [f32],
    pub wo: &'a [f32],
    pub bo: &'a [f32],
    /// Token width (embedding_dim).
    pub dim: usize,
    /// Projected width (internal_dim), a multiple of `heads`.
    pub c: usize,
    pub heads: usize,
}

impl AttnWeights<'_> {
    fn head_dim(&self) -> usize {
        self.c / self.heads
    }

    /// `sqrt(c_per_head)` in f64 rounded once, as the official `math.sqrt`.
    fn div(&self) -> f32 {
        (self.head_dim() as f64).sqrt() as f32
    }

    fn check(&self) {
        let (dim, c) = (self.dim, self.c);
        assert!(self.heads > 0 && c.is_multiple_of(self.heads), "heads");
        for (w, b, out, inp) in [
            (self.wq, self.bq, c, dim),
            (self.wk, self.bk, c, dim),
            (self.wv, self.bv, c, dim),
            (self.wo, self.bo, dim, c),
        ] {
            assert_eq!(w.len(), out * inp, "weight size");
            assert_eq!(b.len(), out, "bias size");
        }
    }

    /// `[heads * n, dim]`: row `(h, t)` is `p_h[t] W_h` where `p` is `[n, c]` and `W_h`
    /// are rows `h*d..(h+1)*d` of an `[c, dim]` weight; `bias[(h, t)] = p_h[t] . b_h`.
    fn fold_rows(&self, p: &[f32], n: usize, w: &[f32], b: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (dim, c, d) = (self.dim, self.c, self.head_dim());
        let mut out = vec![0.0f32; self.heads * n * dim];
        let mut bias = vec![0.0f32; self.heads * n];
        for h in 0..self.heads {
            matmul(
                MatRef::strided(&p[h * d..], n, d, c),
                MatRef::rows(&w[h * d * dim..(h + 1) * d * dim], d, dim),
                &mut out[h * n * dim..],
                dim,
                0.0,
                Par::Seq,
            );
            for t in 0..n {
                let ph = &p[t * c + h * d..t * c + (h + 1) * d];
                bias[h * n + t] = ph
                    .iter()
                    .zip(&b[h * d..(h + 1) * d])
                    .map(|(x, y)| x * y)
                    .sum();
            }
        }
        (out, bias)
    }
}

/// Prompt tokens attend to the image: `q` `[nt, dim]` (tokens, PE added), `xk` `[hw, dim]`
/// (image tokens, PE added), `xv` `[hw, dim]`. Returns the out_proj output `[nt, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn tokens_to_image(
    w: &AttnWeights,
    q: &[f32],
    nt: usize,
    xk: &[f32],
    xv: &[f32],
    hw: usize,
    par: Par,
) -> Vec<f32> {
    w.check();
    let (dim, c, d) = (w.dim, w.c, w.head_dim());
    assert_eq!(q.len(), nt * dim, "q size");
    assert_eq!(xk.len(), hw * dim, "k size");
    assert_eq!(xv.len(), hw * dim, "v size");
    let r = w.heads * nt;
    let qp = linear(q, nt, w.wq, Some(w.bq), c, Par::Seq);
    let (qf, bias) = w.fold_rows(&qp, nt, w.wk, w.bk);
    let mut l = vec![0.0f32; r * hw];
    if hw > 0 {
        matmul(
            MatRef::rows(&qf, r, dim),
            MatRef::transposed(xk, dim, hw),
            &mut l,
            hw,
            0.0,
            par,
        );
        scaled_softmax_rows(&mut l, hw, &bias, w.div());
    }
    // y[(h, t)] = sum_j p[t, j] x_j, then the value projection of head h on it.
    let mut y = vec![0.0f32; r * dim];
    matmul(
        MatRef::rows(&l, r, hw),
        MatRef::rows(xv, hw, dim),
        &mut y,
        dim,
        0.0,
        par,
    );
    let mut a = vec![0.0f32; nt * c];
    for h in 0..w.heads {
        matmul(
            MatRef::rows(&y[h * nt * dim..(h + 1) * nt * dim], nt, dim),
            MatRef::transposed(&w.wv[h * d * dim..(h + 1) * d * dim], dim, d),
            &mut a[h * d..],
            c,
            0.0,
            Par::Seq,
        );
    }
    for row in a.chunks_mut(c) {
        row.iter_mut().zip(w.bv).for_each(|(x, b)| *x += b);
    }
    linear(&a, nt, w.wo, Some(w.bo), dim, Par::Seq)
}

/// The image-side queries of an image->token attention.
#[derive(Clone, Copy)]
pub enum ImageQueries<'a> {
    /// Image tokens with PE added, `[hw, dim]`: the q projection is folded.
    Tokens(&'a [f32]),
    /// Already projected by q_proj, `[hw, c]` (shared by many prompts).
    Projected(&'a [f32]),
}

/// The image attends to the prompt tokens: `k` `[nt, dim]` (tokens, PE added), `v`
/// `[nt, dim]`. Adds the out_proj output to `out` `[hw, dim]` (the decoder's residual
/// stream, so no 4 MB temporary per call): `out + bo + P V'` rather than the official
/// `out + (P V' + bo)`, an f32 reassociation.
#[allow(clippy::too_many_arguments)]
pub fn image_to_tokens(
    w: &AttnWeights,
    q: ImageQueries,
    hw: usize,
    k: &[f32],
    v: &[f32],
    nt: usize,
    out: &mut [f32],
    par: Par,
) {
    w.check();
    let (dim, c, d) = (w.dim, w.c, w.head_dim());
    assert_eq!(k.len(), nt * dim, "k size");
    assert_eq!(v.len(), nt * dim, "v size");
    let r = w.heads * nt;
    let kp = linear(k, nt, w.wk, Some(w.bk), c, Par::Seq);
    let vp = linear(v, nt, w.wv, Some(w.bv), c, Par::Seq);
    assert_eq!(out.len(), hw * dim, "out size");
    for row in out.chunks_mut(dim.max(1)) {
        row.iter_mut().zip(w.bo).for_each(|(o, b)| *o += b);
    }
    if hw == 0 {
        return;
    }
    // Logits stored transposed, `[(h, t), hw]`, so the softmax over each head's nt tokens
    // runs element-wise along the long axis.
    let mut lt = vec![0.0f32; r * hw];
    let bias = match q {
        ImageQueries::Tokens(x) => {
            assert_eq!(x.len(), hw * dim, "q size");
            let (kf, bias) = w.fold_rows(&kp, nt, w.wq, w.bq);
            matmul(
                MatRef::rows(&kf, r, dim),
                MatRef::transposed(x, dim, hw),
                &mut lt,
                hw,
                0.0,
                par,
            );
            bias
        }
        ImageQueries::Projected(qp) => {
            assert_eq!(qp.len(), hw * c, "projected q size");
            for h in 0..w.heads {
                let qt = MatRef {
                    data: &qp[h * d..],
                    rows: d,
                    cols: hw,
                    rs: 1,
                    cs: c,
                };
                matmul(
                    MatRef::strided(&kp[h * d..], nt, d, c),
                    qt,
                    &mut lt[h * nt * hw..],
                    hw,
                    0.0,
                    par,
                );
            }
            vec![0.0f32; r]
        }
    };
    for (block, b) in lt.chunks_mut(nt * hw).zip(bias.chunks(nt)) {
        scaled_softmax_cols(block, nt, hw, b, w.div());
    }
    // vf[(h, t)] = out_proj's head-h columns applied to v_h[t].
    let mut vf = vec![0.0f32; r * dim];
    for h in 0..w.heads {
        let wo_h = MatRef {
            data: &w.wo[h * d..],
            rows: d,
            cols: dim,
            rs: 1,
            cs: c,
        };
        matmul(
            MatRef::strided(&vp[h * d..], nt, d, c),
            wo_h,
            &mut vf[h * nt * dim..],
            dim,
            0.0,
            Par::Seq,
        );
    }
    let pt = MatRef {
        data: &lt,
        rows: hw,
        cols: r,
        rs: 1,
        cs: hw,
    };
    matmul(pt, MatRef::rows(&vf, r, dim), out, dim, 1.0, par);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ops::attention::attn_plain;
    use crate::io::weights::Rng;

    fn rand(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.uniform_pm1() * scale).collect()
    }

    struct Owned {
        w: Vec<Vec<f32>>,
        dim: usize,
        c: usize,
        heads: usize,
    }

    impl Owned {
        fn new(rng: &mut Rng, dim: usize, c: usize, heads: usize) -> Self {
            let s = 1.0 / (dim as f32).sqrt();
            let w = vec![
                rand(rng, c * dim, s),
                rand(rng, c, 0.1),
                rand(rng, c * dim, s),
                rand(rng, c, 0.1),
                rand(rng, c * dim, s),
                rand(rng, c, 0.1),
                rand(rng, dim * c, 1.0 / (c as f32).sqrt()),
                rand(rng, dim, 0.1),
            ];
            Owned { w, dim, c, heads }
        }
        fn view(&self) -> AttnWeights<'_> {
            let w = &self.w;
            AttnWeights {
                wq: &w[0],
                bq: &w[1],
                wk: &w[2],
                bk: &w[3],
                wv: &w[4],
                bv: &w[5],
                wo: &w[6],
                bo: &w[7],
                dim: self.dim,
                c: self.c,
                heads: self.heads,
            }
        }
        /// The official order: project, attend, out_proj.
        fn unfolded(&self, q: &[f32], nq: usize, k: &[f32], v: &[f32], nk: usize) -> Vec<f32> {
            let w = self.view();
            let qp = linear(q, nq, w.wq, Some(w.bq), w.c, Par::Seq);
            let kp = linear(k, nk, w.wk, Some(w.bk), w.c, Par::Seq);
            let vp = linear(v, nk, w.wv, Some(w.bv), w.c, Par::Seq);
            let a = attn_plain(&qp, nq, &kp, &vp, nk, w.c, w.heads, Par::Seq);
            linear(&a, nq, w.wo, Some(w.bo), w.dim, Par::Seq)
        }
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    // Shapes: the vit_b decoder (256 -> 128, 8 heads, d 16) with 7 and 6 tokens, an odd
    // image side, and head dims 32 and 64.
    const SHAPES: [(usize, usize, usize, usize, usize); 4] = [
        (256, 128, 8, 7, 4096),
        (256, 128, 8, 6, 999),
        (64, 64, 2, 5, 130),
        (128, 64, 1, 3, 257),
    ];

    #[test]
    fn tokens_to_image_matches_unfolded() {
        let mut rng = Rng::new(11);
        for (dim, c, heads, nt, hw) in SHAPES {
            let a = Owned::new(&mut rng, dim, c, heads);
            // Image tokens of O(1) like the LayerNorm'd decoder keys; PE of O(1).
            let q = rand(&mut rng, nt * dim, 1.5);
            let xv = rand(&mut rng, hw * dim, 1.5);
            let xk: Vec<f32> = xv.iter().map(|v| v + rng.uniform_pm1()).collect();
            let want = a.unfolded(&q, nt, &xk, &xv, hw);
            for par in [Par::Seq, Par::Threads] {
                let got = tokens_to_image(&a.view(), &q, nt, &xk, &xv, hw, par);
                // Outputs are O(1); f32 reassociation over 256-long dot products and a
                // softmax over up to 4096 keys stays within a few 1e-6.
                let d = max_diff(&got, &want);
                assert!(d < 2e-5, "{dim}/{c}/{heads} nt {nt} hw {hw}: {d}");
            }
        }
    }

    #[test]
    fn image_to_tokens_matches_unfolded() {
        let mut rng = Rng::new(12);
        for (dim, c, heads, nt, hw) in SHAPES {
            let a = Owned::new(&mut rng, dim, c, heads);
            let x = rand(&mut rng, hw * dim, 1.5);
            let v = rand(&mut rng, nt * dim, 1.5);
            let k: Vec<f32> = v.iter().map(|t| t + rng.uniform_pm1()).collect();
            let want = a.unfolded(&x, hw, &k, &v, nt);
            let w = a.view();
            let qp = linear(&x, hw, w.wq, Some(w.bq), c, Par::Seq);
            for par in [Par::Seq, Par::Threads] {
                for q in [ImageQueries::Tokens(&x), ImageQueries::Projected(&qp)] {
                    let mut got = vec![0.0f32; hw * dim];
                    image_to_tokens(&w, q, hw, &k, &v, nt, &mut got, par);
                    let d = max_diff(&got, &want);
                    assert!(d < 2e-5, "{dim}/{c}/{heads} nt {nt} hw {hw}: {d}");
                }
            }
        }
    }
}
