//! The core of the mask decoder's `Attention` (transformer.py) after the q/k/v projections:
//! per head, `softmax((q @ k^T) / sqrt(c_per_head)) @ v`, heads recombined as channel
//! `h*c_per_head + c`. The division comes after the product (unlike the image encoder,
//! which scales q first), and sqrt is taken in f64 and rounded once, as Python's
//! `math.sqrt` feeding a float32 tensor op does.
//!
//! Per head this is two small matrix products through the shared gemm (strided views pick
//! the head's columns, so nothing is copied) around a softmax. One side is always the 5+N
//! prompt tokens, so the logits are laid out with the long axis contiguous: with many
//! queries (image->token) they are stored transposed `[nk, nq]` and the softmax runs
//! across rows, element-wise over queries, so every pass vectorises (a scalar softmax over
//! rows of 7 would cost more than the products). Each output element still sees its logits
//! in key order, exactly as a row softmax would.

use crate::cpu::gemm::{matmul, MatRef, Par};
use crate::cpu::softmax::{scaled_softmax_cols, scaled_softmax_rows};
use rayon::prelude::*;

/// `q` is `[nq, c]`, `k` and `v` are `[nk, c]` (row-major, already projected);
/// returns `[nq, c]`. `c` must be a multiple of `heads`.
#[allow(clippy::too_many_arguments)]
pub fn decoder_attention(
    q: &[f32],
    nq: usize,
    k: &[f32],
    v: &[f32],
    nk: usize,
    c: usize,
    heads: usize,
    par: Par,
) -> Vec<f32> {
    assert!(
        heads > 0 && c.is_multiple_of(heads),
        "heads must divide channels"
    );
    assert_eq!(q.len(), nq * c, "q size");
    assert_eq!(k.len(), nk * c, "k size");
    assert_eq!(v.len(), nk * c, "v size");
    let mut out = vec![0.0f32; nq * c];
    if nq == 0 || nk == 0 || c == 0 {
        return out;
    }
    let cph = c / heads;
    let div = (cph as f64).sqrt() as f32;
    if nq >= nk {
        // Many queries: independent query blocks, all heads per block.
        const BLOCK: usize = 512;
        let work = |(b, o): (usize, &mut [f32])| {
            let rows = o.len() / c;
            let qb = &q[b * BLOCK * c..(b * BLOCK + rows) * c];
            let mut lt = vec![0.0f32; nk * rows];
            for h in 0..heads {
                head_many_queries(qb, rows, k, v, nk, c, h * cph, cph, div, &mut lt, o);
            }
        };
        match par {
            Par::Threads => out.par_chunks_mut(BLOCK * c).enumerate().for_each(work),
            Par::Seq => out.chunks_mut(BLOCK * c).enumerate().for_each(work),
        }
    } else {
        // Many keys: one task per head, each producing its own `[nq, cph]` block.
        let work = |h: usize| {
            let mut o = vec![0.0f32; nq * cph];
            head_many_keys(q, nq, k, v, nk, c, h * cph, cph, div, &mut o);
            o
        };
        let blocks: Vec<Vec<f32>> = match par {
            Par::Threads => (0..heads).into_par_iter().map(work).collect(),
            Par::Seq => (0..heads).map(work).collect(),
        };
        for (h, b) in blocks.iter().enumerate() {
            for (o, r) in out.chunks_mut(c).zip(b.chunks(cph)) {
                o[h * cph..(h + 1) * cph].copy_from_slice(r);
            }
        }
    }
    out
}

/// One head for `rows` queries: logits stored transposed in `lt` (`[nk, rows]`), softmax
/// over keys done element-wise across queries, result into columns `off..off+cph` of `o`.
#[allow(clippy::too_many_arguments)]
fn head_many_queries(
    q: &[f32],
    rows: usize,
    k: &[f32],
    v: &[f32],
    nk: usize,
    c: usize,
    off: usize,
    cph: usize,
    div: f32,
    lt: &mut [f32],
    o: &mut [f32],
) {
    let qt = MatRef {
        data: &q[off..],
        rows: cph,
        cols: rows,
        rs: 1,
        cs: c,
    };
    matmul(
        MatRef::strided(&k[off..], nk, cph, c),
        qt,
        lt,
        rows,
        0.0,
        Par::Seq,
    );
    scaled_softmax_cols(lt, nk, rows, &vec![0.0; nk], div);
    let p = MatRef {
        data: lt,
        rows,
        cols: nk,
        rs: 1,
        cs: rows,
    };
    matmul(
        p,
        MatRef::strided(&v[off..], nk, cph, c),
        &mut o[off..],
        c,
        0.0,
        Par::Seq,
    );
}

/// One head for few queries over many keys: row-major logits `[nq, nk]`, row softmax.
#[allow(clippy::too_many_arguments)]
fn head_many_keys(
    q: &[f32],
    nq: usize,
    k: &[f32],
    v: &[f32],
    nk: usize,
    c: usize,
    off: usize,
    cph: usize,
    div: f32,
    o: &mut [f32],
) {
    let kt = MatRef {
        data: &k[off..],
        rows: cph,
        cols: nk,
        rs: 1,
        cs: c,
    };
    let mut l = vec![0.0f32; nq * nk];
    matmul(
        MatRef::strided(&q[off..], nq, cph, c),
        kt,
        &mut l,
        nk,
        0.0,
        Par::Seq,
    );
    scaled_softmax_rows(&mut l, nk, &vec![0.0; nq], div);
    matmul(
        MatRef::rows(&l, nq, nk),
        MatRef::strided(&v[off..], nk, cph, c),
        o,
        cph,
        0.0,
        Par::Seq,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 199) as f32 / 66.0) - 1.5)
            .collect()
    }

    /// f64 transcription of transformer.py Attention.forward after the projections.
    fn naive(
        q: &[f32],
        nq: usize,
        k: &[f32],
        v: &[f32],
        nk: usize,
        c: usize,
        heads: usize,
    ) -> Vec<f32> {
        let cph = c / heads;
        let mut out = vec![0.0f32; nq * c];
        for h in 0..heads {
            for i in 0..nq {
                let logits: Vec<f64> = (0..nk)
                    .map(|j| {
                        (0..cph)
                            .map(|t| q[i * c + h * cph + t] as f64 * k[j * c + h * cph + t] as f64)
                            .sum::<f64>()
                            / (cph as f64).sqrt()
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let s: f64 = e.iter().sum();
                for t in 0..cph {
                    let acc: f64 = (0..nk)
                        .map(|j| e[j] / s * v[j * c + h * cph + t] as f64)
                        .sum();
                    out[i * c + h * cph + t] = acc as f32;
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_both_regimes() {
        // Few queries over many keys (token->image) and many queries over few keys.
        for (nq, nk, c, heads) in [(7, 300, 128, 8), (300, 7, 128, 8), (6, 6, 256, 8)] {
            let q = vals(nq * c, 1);
            let k = vals(nk * c, 2);
            let v = vals(nk * c, 3);
            let want = naive(&q, nq, &k, &v, nk, c, heads);
            for par in [Par::Seq, Par::Threads] {
                let got = decoder_attention(&q, nq, &k, &v, nk, c, heads, par);
                for (g, w) in got.iter().zip(&want) {
                    // f32 logits of O(10) and softmax over up to 300 keys vs f64.
                    assert!((g - w).abs() < 2e-5, "nq {nq} nk {nk}: {g} vs {w}");
                }
            }
        }
    }
}
