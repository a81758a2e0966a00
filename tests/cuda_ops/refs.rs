//! CPU references of the CUDA ops, in f32 (f64 for the exact LayerNorm), and checks of the
//! attention references against direct formulas. The other
//! ops' references are library code (src/cpu/ops/, `cuda::model::scales::cast_rows`,
//! `amg::geometry`, the CPU prompt encoder), called from the runners directly.

use rayon::prelude::*;
use samrt::cpu::ops::conv2d::{conv2d, ConvGeom, Layout};
use samrt::cpu::ops::gelu::gelu_scalar;
use samrt::cpu::ops::gemm::{matmul, MatRef, Par};
use samrt::cpu::ops::softmax::softmax_rows;
use samrt::cuda::ops::attention::{AttnPlainShape, AttnRelposShape};
use samrt::cuda::ops::gemm::Conv3x3Shape;

use crate::common::gpu::{assert_close, round_f16, Rng};

// ---------------------------------------------------------------- gemm epilogues / conv3x3

/// The GEMM epilogue (`gemm_bias_f16`, `gemm_bias_gelu_f16`, `gemm_bias_residual_f16`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epi {
    Bias,
    Gelu,
    Residual,
}

/// `acc` ([m][n], the unscaled product) through the epilogue: `y = acc * in_scale * rs[m] +
/// bias[n]` (bias 0 without one), stored as `out_scale * y`, `out_scale * gelu(y)` or
/// `resid + y`. Also returns each row's factor `out_scale * in_scale * rs[m]` (`in_scale *
/// rs[m]` for the residual).
#[allow(clippy::too_many_arguments)]
pub fn ref_epilogue(
    epi: Epi,
    acc: &[f32],
    n: usize,
    bias: Option<&[f32]>,
    in_scale: f32,
    rs: &[f32],
    out_scale: f32,
    resid: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let f_in: Vec<f32> = rs.iter().map(|&r| in_scale * r).collect();
    let mut want = Vec::with_capacity(acc.len());
    for (i, &v) in acc.iter().enumerate() {
        let y = v * in_scale * rs[i / n] + bias.map_or(0.0, |b| b[i % n]);
        want.push(match epi {
            Epi::Bias => out_scale * y,
            Epi::Gelu => out_scale * gelu_scalar(y),
            Epi::Residual => resid[i] + y,
        });
    }
    let factor = match epi {
        Epi::Residual => f_in,
        _ => f_in.iter().map(|&f| f * out_scale).collect(),
    };
    (want, factor)
}

/// nn.Conv2d(cin, cout, 3, padding=1) per image on the CPU (src/cpu/ops/conv2d.rs), no bias.
pub fn ref_conv3x3(x: &[f32], w_official: &[f32], sh: Conv3x3Shape) -> Vec<f32> {
    let Conv3x3Shape {
        batch,
        h,
        w,
        cin,
        cout,
    } = sh;
    let geom = ConvGeom {
        kernel: 3,
        stride: 1,
        pad: 1,
    };
    let mut y = Vec::with_capacity(batch * h * w * cout);
    for img in x.chunks(h * w * cin).take(batch) {
        let (o, oh, ow) =
            conv2d(img, Layout::hwc(cin, h, w), w_official, cout, geom, None).unwrap();
        assert_eq!((oh, ow), (h, w));
        y.extend(o);
    }
    y
}

// ---------------------------------------------------------------- attention

/// The official computation (spec §2): pad to a multiple of the window, partition, per
/// window and head `softmax((q*scale) k^T + rel_h + rel_w) v`, unpartition, crop. Padded
/// tokens' q/k/v are the fp16-rounded qkv bias (what the qkv GEMM yields for a zero row).
pub fn ref_attn_relpos(
    shape: AttnRelposShape,
    qkv: &[f32],
    bias16: &[f32],
    rel_h: &[f32],
    rel_w: &[f32],
) -> Vec<f32> {
    let AttnRelposShape {
        batch,
        grid,
        dim,
        heads,
        window: s,
    } = shape;
    let hd = dim / heads;
    let wps = grid.div_ceil(s);
    let l = s * s;
    let scale = (hd as f32).powf(-0.5);
    let token = |b: usize, wy: usize, wx: usize, n: usize| {
        let (y, x) = (wy * s + n / s, wx * s + n % s);
        (y < grid && x < grid).then(|| (b * grid + y) * grid + x)
    };
    let jobs: Vec<(usize, usize, usize, usize)> = (0..batch)
        .flat_map(|b| {
            (0..wps * wps).flat_map(move |w| (0..heads).map(move |h| (b, w / wps, w % wps, h)))
        })
        .collect();
    let results: Vec<Vec<f32>> = jobs
        .par_iter()
        .map(|&(b, wy, wx, h)| {
            let gather = |part: usize| -> Vec<f32> {
                let mut m = vec![0.0f32; l * hd];
                for n in 0..l {
                    let src = match token(b, wy, wx, n) {
                        Some(t) => &qkv[t * 3 * dim + part * dim + h * hd..][..hd],
                        None => &bias16[part * dim + h * hd..][..hd],
                    };
                    m[n * hd..][..hd].copy_from_slice(src);
                }
                m
            };
            let (q, k, v) = (gather(0), gather(1), gather(2));
            let qs: Vec<f32> = q.iter().map(|x| x * scale).collect();
            let mut att = vec![0.0f32; l * l];
            matmul(
                MatRef::rows(&qs, l, hd),
                MatRef::transposed(&k, hd, l),
                &mut att,
                l,
                0.0,
                Par::Seq,
            );
            for n in 0..l {
                let (qy, qx) = (n / s, n % s);
                let qn = &q[n * hd..][..hd];
                let dot = |t: &[f32], r: usize| -> f32 {
                    t[r * hd..][..hd].iter().zip(qn).map(|(a, b)| a * b).sum()
                };
                let rh: Vec<f32> = (0..s).map(|ky| dot(rel_h, qy + s - 1 - ky)).collect();
                let rw: Vec<f32> = (0..s).map(|kx| dot(rel_w, qx + s - 1 - kx)).collect();
                for m in 0..l {
                    att[n * l + m] += rh[m / s] + rw[m % s];
                }
            }
            softmax_rows(&mut att, l);
            let mut o = vec![0.0f32; l * hd];
            matmul(
                MatRef::rows(&att, l, l),
                MatRef::rows(&v, l, hd),
                &mut o,
                hd,
                0.0,
                Par::Seq,
            );
            o
        })
        .collect();
    let mut out = vec![0.0f32; batch * grid * grid * dim];
    for (&(b, wy, wx, h), o) in jobs.iter().zip(&results) {
        for n in 0..l {
            if let Some(t) = token(b, wy, wx, n) {
                out[t * dim + h * hd..][..hd].copy_from_slice(&o[n * hd..][..hd]);
            }
        }
    }
    out
}

/// The decoder's attention per batch and head: `softmax(q k^T / sqrt(hd)) v`.
pub fn ref_attn_plain(shape: AttnPlainShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let AttnPlainShape {
        batch,
        heads,
        head_dim: hd,
        lq,
        lk,
    } = shape;
    let w = heads * hd;
    let mut out = vec![0.0f32; batch * lq * w];
    for b in 0..batch {
        for h in 0..heads {
            let qv = MatRef::strided(&q[b * lq * w + h * hd..], lq, hd, w);
            let kt = MatRef {
                data: &k[b * lk * w + h * hd..],
                rows: hd,
                cols: lk,
                rs: 1,
                cs: w,
            };
            let mut att = vec![0.0f32; lq * lk];
            matmul(qv, kt, &mut att, lk, 0.0, Par::Threads);
            // The decoder divides after the product (spec §4).
            let div = (hd as f32).sqrt();
            att.iter_mut().for_each(|x| *x /= div);
            softmax_rows(&mut att, lk);
            let vv = MatRef::strided(&v[b * lk * w + h * hd..], lk, hd, w);
            matmul(
                MatRef::rows(&att, lq, lk),
                vv,
                &mut out[b * lq * w + h * hd..],
                w,
                0.0,
                Par::Threads,
            );
        }
    }
    out
}

// ---------------------------------------------------------------- layer norm

/// Two-pass LayerNorm of each row in f64 (the exact value the kernels approximate).
pub fn ln_f64(x: &[f64], dim: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(dim) {
        let mean = row.iter().sum::<f64>() / dim as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
        let inv = 1.0 / (var + eps).sqrt();
        out.extend(
            row.iter()
                .enumerate()
                .map(|(c, v)| (v - mean) * inv * gamma[c] as f64 + beta[c] as f64),
        );
    }
    out
}

pub fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

// ---------------------------------------------------------------- the references themselves

/// Token-by-token f64 evaluation of spec §2, written independently of the window loop in
/// `ref_attn_relpos`, so the GPU comparisons rest on a checked reference.
fn naive_attn_relpos(
    shape: AttnRelposShape,
    qkv: &[f32],
    bias16: &[f32],
    rel_h: &[f32],
    rel_w: &[f32],
) -> Vec<f32> {
    let (g, d, s) = (shape.grid, shape.dim, shape.window);
    let hd = shape.head_dim();
    let scale = (hd as f64).powf(-0.5);
    let vec_at = |b: usize, y: usize, x: usize, part: usize, h: usize| -> Vec<f64> {
        let src = if y < g && x < g {
            &qkv[((b * g + y) * g + x) * 3 * d + part * d + h * hd..][..hd]
        } else {
            &bias16[part * d + h * hd..][..hd]
        };
        src.iter().map(|&v| v as f64).collect()
    };
    let dot = |a: &[f64], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * *y as f64).sum::<f64>();
    let mut out = vec![0.0f32; shape.batch * g * g * d];
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            for y in 0..g {
                for x in 0..g {
                    let q = vec_at(b, y, x, 0, h);
                    let (wy, wx, iy, ix) = (y / s, x / s, y % s, x % s);
                    let mut logits = Vec::with_capacity(s * s);
                    let mut values = Vec::with_capacity(s * s);
                    for ky in 0..s {
                        for kx in 0..s {
                            let (gy, gx) = (wy * s + ky, wx * s + kx);
                            let k = vec_at(b, gy, gx, 1, h);
                            let qk: f64 = q.iter().zip(&k).map(|(a, c)| a * c).sum();
                            let rh = dot(&q, &rel_h[(iy + s - 1 - ky) * hd..][..hd]);
                            let rw = dot(&q, &rel_w[(ix + s - 1 - kx) * hd..][..hd]);
                            logits.push(scale * qk + rh + rw);
                            values.push(vec_at(b, gy, gx, 2, h));
                        }
                    }
                    let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..hd {
                        let o: f64 = e.iter().zip(&values).map(|(p, v)| p * v[c]).sum();
                        out[((b * g + y) * g + x) * d + h * hd + c] = (o / z) as f32;
                    }
                }
            }
        }
    }
    out
}

#[test]
fn attn_relpos_reference_matches_token_by_token_formula() {
    let mut rng = Rng::new("attn_relpos_reference");
    // grid 20 with window 14: 2x2 windows, 8 rows and columns of padding.
    for (grid, window) in [(20, 14), (8, 8)] {
        let shape = AttnRelposShape {
            batch: 2,
            grid,
            dim: 32,
            heads: 2,
            window,
        };
        let (d, hd) = (shape.dim, shape.head_dim());
        let tokens = shape.batch * grid * grid;
        let qkv = round_f16(&rng.vec(tokens * 3 * d, -1.5, 1.5));
        let bias16 = round_f16(&rng.vec(3 * d, -1.0, 1.0));
        let rel_h = round_f16(&rng.vec((2 * window - 1) * hd, -0.5, 0.5));
        let rel_w = round_f16(&rng.vec((2 * window - 1) * hd, -0.5, 0.5));
        let a = ref_attn_relpos(shape, &qkv, &bias16, &rel_h, &rel_w);
        let b = naive_attn_relpos(shape, &qkv, &bias16, &rel_h, &rel_w);
        // Both are f32/f64 evaluations of the same formula: only summation order differs.
        assert_close("attn_relpos reference", &a, &b, 1e-5, 1e-5);
    }
}

#[test]
fn attn_plain_reference_matches_direct_loops() {
    let mut rng = Rng::new("attn_plain_reference");
    let shape = AttnPlainShape {
        batch: 2,
        heads: 3,
        head_dim: 16,
        lq: 5,
        lk: 9,
    };
    let w = shape.width();
    let q = rng.vec(shape.batch * shape.lq * w, -2.0, 2.0);
    let k = rng.vec(shape.batch * shape.lk * w, -2.0, 2.0);
    let v = rng.vec(shape.batch * shape.lk * w, -1.0, 1.0);
    let got = ref_attn_plain(shape, &q, &k, &v);
    let hd = shape.head_dim;
    for b in 0..shape.batch {
        for h in 0..shape.heads {
            for i in 0..shape.lq {
                let row = |t: &[f32], l: usize, j: usize| -> Vec<f64> {
                    t[(b * l + j) * w + h * hd..][..hd]
                        .iter()
                        .map(|&x| x as f64)
                        .collect()
                };
                let qi = row(&q, shape.lq, i);
                let logits: Vec<f64> = (0..shape.lk)
                    .map(|j| {
                        let kj = row(&k, shape.lk, j);
                        qi.iter().zip(&kj).map(|(a, c)| a * c).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|l| (l - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..hd {
                    let o: f64 = (0..shape.lk)
                        .map(|j| e[j] * row(&v, shape.lk, j)[c])
                        .sum::<f64>()
                        / z;
                    let g = got[(b * shape.lq + i) * w + h * hd + c];
                    // f32 reference vs f64 loops: a few f32 ulps of values below 1.
                    assert!(
                        (g as f64 - o).abs() < 1e-5,
                        "b{b} h{h} i{i} c{c}: {g} vs {o}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- shared by the op runners

/// N(0, std^2) by Box-Muller.
pub fn normal(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u = 1.0 - rng.uniform(0.0, 1.0); // (0, 1]
            let v = rng.uniform(0.0, std::f32::consts::TAU);
            std * (-2.0 * u.ln()).sqrt() * v.cos()
        })
        .collect()
}

/// Whether `a` and `b` hold the same bits.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && bits_differ(a, b) == 0
}

/// How many positions of `a` and `b` hold different bits (for a failure message that says
/// how far from bit-identical a result is; lengths are compared separately).
pub fn bits_differ(a: &[f32], b: &[f32]) -> usize {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.to_bits() != y.to_bits())
        .count()
}

/// Each of `batch` prompts run alone (`alone(i)`: its `per` outputs) gives the bits it got
/// in the batch (`got`, prompt-major).
pub fn assert_each_prompt_alone(
    op: &str,
    batch: usize,
    got: &[f32],
    per: usize,
    alone: impl Fn(usize) -> Vec<f32>,
) {
    for i in 0..batch {
        assert!(
            same_bits(&alone(i), &got[i * per..(i + 1) * per]),
            "{op}: prompt {i} alone differs from the batch of {batch}"
        );
    }
}
