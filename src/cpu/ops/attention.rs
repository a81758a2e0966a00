//! The attention kernel family's CPU side (`kernels/attention.cu`): `attn_relpos`, the
//! image encoder's attention, and `attn_plain`, the mask decoder's.
//!
//! `attn_relpos` ([`AttnRelpos`]): image-encoder self-attention with decomposed relative
//! position (spec §2), windowed or global, from the fused `qkv` projection of the unpadded
//! token map.
//!
//! Why it is shaped this way:
//! - Windowed blocks pad 64 -> 70 after norm1, so a padded token's q/k/v is exactly the qkv
//!   bias. We never run the QKV GEMM on padding; its keys/values are filled from the bias,
//!   and queries of padding tokens (whose outputs the official code crops) are skipped.
//! - Global blocks are processed per (head, block of query rows): the 4096x4096 logits are
//!   never materialised per head, only a `rows x 4096` slab that stays in cache.
//! - Softmax normalisation is applied to the `rows x head_dim` output instead of the
//!   `rows x keys` probabilities (same maths, one pass fewer over the big slab).
//!
//! Arithmetic follows the official order: `(q * scale) @ k^T`, then `+ rel_h`, then
//! `+ rel_w`, with the rel-pos dots taken from the unscaled q.

use crate::cpu::ops::gemm::{matmul, MatRef, Par};
use crate::cpu::ops::layer_norm::transpose;
use crate::cpu::ops::softmax::{scaled_softmax_cols, scaled_softmax_rows};
use crate::cpu::ops::vmath::{exp, simd_dispatch};
use crate::error::{Error, Result};
use rayon::prelude::*;

/// Query rows per task in global attention: a `64 x 4096` logits slab is 1 MiB, inside L2.
const GLOBAL_ROWS: usize = 64;

/// One attention layer's geometry and relative-position tables.
#[derive(Clone, Copy)]
pub struct AttnRelpos<'a> {
    /// Side of the (unpadded, square) token map.
    pub grid: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Window side, or 0 for global attention over the whole map.
    pub window: usize,
    /// `[2*S-1, head_dim]` with S the window side (or `grid` when global).
    pub rel_pos_h: &'a [f32],
    pub rel_pos_w: &'a [f32],
}

impl AttnRelpos<'_> {
    /// Side S of the square each query attends over.
    pub fn side(&self) -> usize {
        if self.window == 0 {
            self.grid
        } else {
            self.window
        }
    }

    fn dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// `qkv`: `[grid*grid, 3*dim]` (the qkv Linear of the normed map, bias included);
    /// `qkv_bias`: `[3*dim]`, the q/k/v of zero-padded tokens; `out`: `[grid*grid, dim]`,
    /// heads concatenated as channel `h*head_dim + c` (before the output projection).
    pub fn forward(&self, qkv: &[f32], qkv_bias: &[f32], out: &mut [f32]) -> Result<()> {
        self.check(qkv, qkv_bias, out)?;
        if self.window == 0 {
            self.global(qkv, out);
        } else {
            self.windowed(qkv, qkv_bias, out);
        }
        Ok(())
    }

    fn check(&self, qkv: &[f32], qkv_bias: &[f32], out: &[f32]) -> Result<()> {
        let (n, d, s) = (self.grid * self.grid, self.dim(), self.side());
        let rel = [2 * s.max(1) - 1, self.head_dim];
        let checks: [(&str, usize, Vec<usize>); 5] = [
            ("attention qkv", qkv.len(), vec![n, 3 * d]),
            ("attention qkv bias", qkv_bias.len(), vec![3 * d]),
            ("attention output", out.len(), vec![n, d]),
            ("attention rel_pos_h", self.rel_pos_h.len(), rel.to_vec()),
            ("attention rel_pos_w", self.rel_pos_w.len(), rel.to_vec()),
        ];
        if n == 0 || d == 0 {
            return Err(Error::Config("attention over an empty map".into()));
        }
        for (name, got, want) in checks {
            if got != want.iter().product::<usize>() {
                return Err(Error::Shape {
                    name: name.into(),
                    expected: want,
                    got: vec![got],
                });
            }
        }
        Ok(())
    }

    fn windowed(&self, qkv: &[f32], bias: &[f32], out: &mut [f32]) {
        let (g, ws, hd, heads, d) = (
            self.grid,
            self.window,
            self.head_dim,
            self.heads,
            self.dim(),
        );
        let nw = g.div_ceil(ws);
        let seq = ws * ws;
        let ctx = Ctx::new(self);
        // Per (window, head) outputs, `[nq, hd]` each at a fixed stride; scattered below.
        let mut scratch = vec![0.0f32; nw * nw * heads * seq * hd];
        scratch.par_chunks_mut(seq * hd).enumerate().for_each_init(
            || (Inputs::new(seq, seq, hd), Scratch::new(seq, seq, ws, hd)),
            |(inp, sc), (task, o)| {
                let (win, h) = (task / heads, task % heads);
                let (wy, wx) = (win / nw, win % nw);
                let (ny, nx) = ((g - wy * ws).min(ws), (g - wx * ws).min(ws));
                for ly in 0..ws {
                    for lx in 0..ws {
                        let (gy, gx) = (wy * ws + ly, wx * ws + lx);
                        let row = if gy < g && gx < g {
                            &qkv[(gy * g + gx) * 3 * d..][..3 * d]
                        } else {
                            bias
                        };
                        let t = ly * ws + lx;
                        for (c, &kv) in row[d + h * hd..][..hd].iter().enumerate() {
                            inp.k[c * seq + t] = kv;
                        }
                        inp.v[t * hd..][..hd].copy_from_slice(&row[2 * d + h * hd..][..hd]);
                    }
                }
                inp.qpos.clear();
                for ly in 0..ny {
                    for lx in 0..nx {
                        let i = ly * nx + lx;
                        let t = (wy * ws + ly) * g + wx * ws + lx;
                        inp.q[i * hd..][..hd].copy_from_slice(&qkv[t * 3 * d + h * hd..][..hd]);
                        inp.qpos.push([ly, lx]);
                    }
                }
                let nq = ny * nx;
                let q = &inp.q[..nq * hd];
                attend(
                    &ctx,
                    ws,
                    q,
                    &inp.qpos,
                    &inp.k,
                    &inp.v,
                    sc,
                    &mut o[..nq * hd],
                );
            },
        );
        out.par_chunks_mut(d).enumerate().for_each(|(t, row)| {
            let (gy, gx) = (t / g, t % g);
            let (wy, wx) = (gy / ws, gx / ws);
            let nx = (g - wx * ws).min(ws);
            let i = (gy % ws) * nx + gx % ws;
            for h in 0..heads {
                let task = (wy * nw + wx) * heads + h;
                row[h * hd..][..hd].copy_from_slice(&scratch[(task * seq + i) * hd..][..hd]);
            }
        });
    }

    fn global(&self, qkv: &[f32], out: &mut [f32]) {
        let (g, hd, heads, d) = (self.grid, self.head_dim, self.heads, self.dim());
        let n = g * g;
        let ctx = Ctx::new(self);
        // Per-head K^T `[hd, n]` and V `[n, hd]`, dense, so both GEMMs of every task read a
        // row-major right-hand side.
        let mut kv = vec![0.0f32; 2 * heads * n * hd];
        kv.par_chunks_mut(n * hd).enumerate().for_each(|(j, dst)| {
            let (part, h) = (1 + j / heads, j % heads);
            for t in 0..n {
                let src = &qkv[t * 3 * d + part * d + h * hd..][..hd];
                if part == 1 {
                    src.iter()
                        .enumerate()
                        .for_each(|(c, &x)| dst[c * n + t] = x);
                } else {
                    dst[t * hd..][..hd].copy_from_slice(src);
                }
            }
        });
        let (kbuf, vbuf) = kv.split_at(heads * n * hd);
        let rows = GLOBAL_ROWS.min(n);
        // Laid out `[head][token][hd]`: task (h, c) owns one contiguous run.
        let mut scratch = vec![0.0f32; heads * n * hd];
        scratch
            .par_chunks_mut(n * hd)
            .enumerate()
            .flat_map(|(h, plane)| {
                plane
                    .par_chunks_mut(rows * hd)
                    .enumerate()
                    .map(move |(c, o)| (h, c, o))
            })
            .for_each_init(
                || (Inputs::new(rows, 0, hd), Scratch::new(rows, n, g, hd)),
                |(inp, sc), (h, c, o)| {
                    let t0 = c * rows;
                    let nq = o.len() / hd;
                    inp.qpos.clear();
                    for i in 0..nq {
                        let t = t0 + i;
                        inp.q[i * hd..][..hd].copy_from_slice(&qkv[t * 3 * d + h * hd..][..hd]);
                        inp.qpos.push([t / g, t % g]);
                    }
                    let k = &kbuf[h * n * hd..][..n * hd];
                    let v = &vbuf[h * n * hd..][..n * hd];
                    attend(&ctx, g, &inp.q[..nq * hd], &inp.qpos, k, v, sc, o);
                },
            );
        out.par_chunks_mut(d).enumerate().for_each(|(t, row)| {
            for h in 0..heads {
                row[h * hd..][..hd].copy_from_slice(&scratch[(h * n + t) * hd..][..hd]);
            }
        });
    }
}

/// The layer plus its rel-pos tables transposed to `[hd, 2S-1]` for the GEMMs.
struct Ctx {
    head_dim: usize,
    rel_h_t: Vec<f32>,
    rel_w_t: Vec<f32>,
}

impl Ctx {
    fn new(a: &AttnRelpos) -> Self {
        let nrel = 2 * a.side() - 1;
        Ctx {
            head_dim: a.head_dim,
            rel_h_t: transpose(a.rel_pos_h, nrel, a.head_dim),
            rel_w_t: transpose(a.rel_pos_w, nrel, a.head_dim),
        }
    }
}

/// Gathered per-task operands (`k`/`v` unused for global attention, which reads the
/// per-head planes directly).
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qpos: Vec<[usize; 2]>,
}

impl Inputs {
    fn new(nq: usize, nk: usize, hd: usize) -> Self {
        Inputs {
            q: vec![0.0; nq * hd],
            k: vec![0.0; nk * hd],
            v: vec![0.0; nk * hd],
            qpos: Vec::with_capacity(nq),
        }
    }
}

/// Per-task intermediates, reused across tasks on the same worker.
struct Scratch {
    qs: Vec<f32>,
    logits: Vec<f32>,
    rel_h: Vec<f32>,
    rel_w: Vec<f32>,
    sums: Vec<f32>,
    tmp: Vec<f32>,
}

impl Scratch {
    /// For up to `nq` queries against `nk` keys laid on an `s x s` grid.
    fn new(nq: usize, nk: usize, s: usize, hd: usize) -> Self {
        let nrel = 2 * s - 1;
        Scratch {
            qs: vec![0.0; nq * hd],
            logits: vec![0.0; nq * nk],
            rel_h: vec![0.0; nq * nrel],
            rel_w: vec![0.0; nq * nrel],
            sums: vec![0.0; nq],
            tmp: vec![0.0; 2 * s],
        }
    }
}

/// Attention of the queries `q` (`[nq, hd]`, unscaled, at key-grid positions `qpos`) over
/// the `s x s` keys of one head, given as `kt` (`[hd, s*s]`) and `v` (`[s*s, hd]`); writes
/// `[nq, hd]` into `o`.
#[allow(clippy::too_many_arguments)]
fn attend(
    a: &Ctx,
    s: usize,
    q: &[f32],
    qpos: &[[usize; 2]],
    kt: &[f32],
    v: &[f32],
    sc: &mut Scratch,
    o: &mut [f32],
) {
    let hd = a.head_dim;
    let (nq, nk, nrel) = (qpos.len(), s * s, 2 * s - 1);
    // Python computes `head_dim**-0.5` in double; torch rounds the scalar to f32.
    let scale = (hd as f64).powf(-0.5) as f32;
    let qs = &mut sc.qs[..nq * hd];
    qs.iter_mut().zip(q).for_each(|(d, &x)| *d = x * scale);
    let logits = &mut sc.logits[..nq * nk];
    let (rel_h, rel_w) = (&mut sc.rel_h[..nq * nrel], &mut sc.rel_w[..nq * nrel]);
    let qm = MatRef::rows(q, nq, hd);
    matmul(
        MatRef::rows(qs, nq, hd),
        MatRef::rows(kt, hd, nk),
        logits,
        nk,
        0.0,
        Par::Seq,
    );
    let th = MatRef::rows(&a.rel_h_t, hd, nrel);
    matmul(qm, th, rel_h, nrel, 0.0, Par::Seq);
    let tw = MatRef::rows(&a.rel_w_t, hd, nrel);
    matmul(qm, tw, rel_w, nrel, 0.0, Par::Seq);
    let sums = &mut sc.sums[..nq];
    bias_exp_rows(logits, s, rel_h, rel_w, qpos, sums, &mut sc.tmp);
    matmul(
        MatRef::rows(logits, nq, nk),
        MatRef::rows(v, nk, hd),
        o,
        hd,
        0.0,
        Par::Seq,
    );
    for (row, &sum) in o.chunks_exact_mut(hd).zip(sums.iter()) {
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|x| *x *= inv);
    }
}

/// For each logits row (query at `qpos[i]`, keys on an `s x s` grid): adds
/// `rel_h[i, qy-ky+s-1]` then `rel_w[i, qx-kx+s-1]`, replaces the row by `exp(l - max)` and
/// stores its sum in `sums[i]`. `tmp` holds `2*s` floats.
fn bias_exp_rows(
    logits: &mut [f32],
    s: usize,
    rel_h: &[f32],
    rel_w: &[f32],
    qpos: &[[usize; 2]],
    sums: &mut [f32],
    tmp: &mut [f32],
) {
    simd_dispatch!((
        logits: &mut [f32],
        s: usize,
        rel_h: &[f32],
        rel_w: &[f32],
        qpos: &[[usize; 2]],
        sums: &mut [f32],
        tmp: &mut [f32],
    ) -> () {
        const L: usize = 16;
        let (nk, nrel) = (s * s, 2 * s - 1);
        let (th, tw) = tmp.split_at_mut(s);
        for (i, row) in logits.chunks_exact_mut(nk).enumerate() {
            let [qy, qx] = qpos[i];
            let (rh, rw) = (&rel_h[i * nrel..][..nrel], &rel_w[i * nrel..][..nrel]);
            for j in 0..s {
                th[j] = rh[qy + s - 1 - j];
                tw[j] = rw[qx + s - 1 - j];
            }
            for (seg, &b) in row.chunks_exact_mut(s).zip(th.iter()) {
                for (l, &r) in seg.iter_mut().zip(tw.iter()) {
                    *l = (*l + b) + r;
                }
            }
            let mut mx = [f32::NEG_INFINITY; L];
            let mut blocks = row.chunks_exact(L);
            for blk in &mut blocks {
                for j in 0..L {
                    mx[j] = mx[j].max(blk[j]);
                }
            }
            let m = blocks
                .remainder()
                .iter()
                .fold(mx.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)), |a, &b| a.max(b));
            let mut acc = [0.0f32; L];
            let mut blocks = row.chunks_exact_mut(L);
            for blk in &mut blocks {
                for j in 0..L {
                    blk[j] = exp(blk[j] - m);
                    acc[j] += blk[j];
                }
            }
            let mut sum = 0.0f32;
            for x in blocks.into_remainder() {
                *x = exp(*x - m);
                sum += *x;
            }
            sums[i] = sum + acc.iter().sum::<f32>();
        }
    })
}

// `attn_plain`: the core of the mask decoder's `Attention` (transformer.py) after the q/k/v
// projections: per head, `softmax((q @ k^T) / sqrt(c_per_head)) @ v`, heads recombined as channel
// `h*c_per_head + c`. The division comes after the product (unlike the image encoder,
// which scales q first), and sqrt is taken in f64 and rounded once, as Python's
// `math.sqrt` feeding a float32 tensor op does.
//
// Per head this is two small matrix products through the shared gemm (strided views pick
// the head's columns, so nothing is copied) around a softmax. One side is always the 5+N
// prompt tokens, so the logits are laid out with the long axis contiguous: with many
// queries (image->token) they are stored transposed `[nk, nq]` and the softmax runs
// across rows, element-wise over queries, so every pass vectorises (a scalar softmax over
// rows of 7 would cost more than the products). Each output element still sees its logits
// in key order, exactly as a row softmax would.

/// `q` is `[nq, c]`, `k` and `v` are `[nk, c]` (row-major, already projected);
/// returns `[nq, c]`. `c` must be a multiple of `heads`.
#[allow(clippy::too_many_arguments)]
pub fn attn_plain(
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
mod attn_plain_tests {
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
                let got = attn_plain(&q, nq, &k, &v, nk, c, heads, par);
                for (g, w) in got.iter().zip(&want) {
                    // f32 logits of O(10) and softmax over up to 300 keys vs f64.
                    assert!((g - w).abs() < 2e-5, "nq {nq} nk {nk}: {g} vs {w}");
                }
            }
        }
    }
}
