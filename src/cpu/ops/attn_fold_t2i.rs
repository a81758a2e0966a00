//! The CPU side of `attn_fold_t2i` (`kernels/attn_fold_t2i.cu`): the decoder's folded
//! token->image attention, `y[b, r] = softmax_j(scale * qf[b, r] . xpe[b', j]) @ x[b', j]`
//! for every folded row `r = (token, head)`, as one plain softmax over the image rows in f64
//! (the device splits the rows into chunks and merges them; this is the value it
//! approximates).

/// `qf` `[batch, tokens, heads, dim]`, `xpe` and `x` `[1 or batch, hw, dim]` (1 when
/// `image_shared`); returns `y` `[batch, tokens, heads, dim]`.
pub fn attn_fold_t2i(
    qf: &[f32],
    xpe: &[f32],
    x: &[f32],
    (batch, tokens, heads): (usize, usize, usize),
    (hw, dim): (usize, usize),
    scale: f32,
    image_shared: bool,
) -> Vec<f32> {
    let rows = tokens * heads;
    let sides = if image_shared { 1 } else { batch };
    assert_eq!(qf.len(), batch * rows * dim, "qf size");
    assert_eq!(xpe.len(), sides * hw * dim, "xpe size");
    assert_eq!(x.len(), sides * hw * dim, "x size");
    let mut y = vec![0.0f32; batch * rows * dim];
    let mut logits = vec![0.0f64; hw];
    let mut acc = vec![0.0f64; dim];
    for b in 0..batch {
        let side = if image_shared { 0 } else { b } * hw * dim;
        let (kb, vb) = (&xpe[side..side + hw * dim], &x[side..side + hw * dim]);
        for r in 0..rows {
            let q = &qf[(b * rows + r) * dim..(b * rows + r + 1) * dim];
            for (l, k) in logits.iter_mut().zip(kb.chunks_exact(dim)) {
                let dot: f64 = q.iter().zip(k).map(|(&a, &c)| a as f64 * c as f64).sum();
                *l = scale as f64 * dot;
            }
            let m = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            acc.iter_mut().for_each(|a| *a = 0.0);
            let mut sum = 0.0f64;
            for (&l, v) in logits.iter().zip(vb.chunks_exact(dim)) {
                let e = (l - m).exp();
                sum += e;
                for (a, &c) in acc.iter_mut().zip(v) {
                    *a += e * c as f64;
                }
            }
            let out = &mut y[(b * rows + r) * dim..(b * rows + r + 1) * dim];
            for (o, a) in out.iter_mut().zip(&acc) {
                *o = (a / sum) as f32;
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_against_the_formula_and_a_shared_side() {
        // Two image rows: p = softmax(scale * [q.k0, q.k1]) = softmax([0.5, -0.5]).
        let (q, k, v) = (
            [1.0f32, 0.0],
            [1.0f32, 2.0, -1.0, 3.0],
            [2.0f32, 0.0, -4.0, 1.0],
        );
        let y = attn_fold_t2i(&q, &k, &v, (1, 1, 1), (2, 2), 0.5, false);
        let p0 = 1.0 / (1.0 + (-1.0f64).exp());
        let want = [p0 * 2.0 + (1.0 - p0) * -4.0, 1.0 - p0];
        for (g, w) in y.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        // Two prompts sharing the side: the second row of qf sees the same keys.
        let q2 = [1.0f32, 0.0, 0.0, 1.0];
        let y2 = attn_fold_t2i(&q2, &k, &v, (2, 1, 1), (2, 2), 0.5, true);
        assert_eq!(&y2[..2], &y[..]);
        let y3 = attn_fold_t2i(&q2[2..], &k, &v, (1, 1, 1), (2, 2), 0.5, false);
        assert_eq!(&y2[2..], &y3[..]);
    }
}
