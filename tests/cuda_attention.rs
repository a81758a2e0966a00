//! The attention kernels against their f32 CPU references, on fresh random inputs with
//! awkward shapes: the image encoder's fused attention with decomposed relative position
//! (windowed and global, every variant and scale), the decoder's plain attention, the shape
//! validation, and checks of the references themselves against direct formulas.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::*;

use rayon::prelude::*;
use samrt::cpu::ops::gemm::{matmul, MatRef, Par};
use samrt::cpu::ops::softmax::softmax_rows;
use samrt::cuda::ops::attention::{
    attn_plain, attn_relpos, AttnPlainShape, AttnRelposInputs, AttnRelposShape, AttnRelposVariant,
};
use samrt::Error;

// ---------------------------------------------------------------- encoder attention

/// The official computation (spec §2): pad to a multiple of the window, partition, per
/// window and head `softmax((q*scale) k^T + rel_h + rel_w) v`, unpartition, crop. Padded
/// tokens' q/k/v are the fp16-rounded qkv bias (what the qkv GEMM yields for a zero row).
fn ref_encoder_attention(
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

/// How the kernel's input stores qkv; the reference always sees the true values.
#[derive(Clone, Copy, Debug)]
enum QkvStorage {
    /// As computed: `q_scale` 1, the default softmax scale.
    Plain,
    /// Only q stored divided by `q_scale` (a power of two), which the kernel is given.
    ScaledQ(f32),
    /// The whole qkv output and its bias stored times `a` (the encoder graph's fp16 overflow
    /// guard): `q_scale = 1/a`, `softmax_scale = hd^-0.5 / a`, the output comes out times `a`.
    ScaledQkv(f32),
}

/// Runs the kernel on the plain inputs (checked against the CPU reference), then, for a
/// scaled `storage`, on the scaled copy: checked against the reference and against the plain
/// run. Power-of-two scales commute with every rounding in the kernel (fp16 q/k, fp32
/// accumulators, the exp2 argument `(a*s) * (sl2/a)`), so a scaled q must reproduce the plain
/// run bit for bit; a scaled output differs from `a` x plain only where `a` x out is an fp16
/// subnormal (< 2^-14), where the two roundings differ by less than 2^-24. (Inputs are chosen
/// exactly representable when stored scaled.)
fn run_encoder_attention(test: &str, shape: AttnRelposShape, storage: QkvStorage) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let st = gpu.stream();
    let (d, hd, s) = (shape.dim, shape.head_dim(), shape.window);
    println!("{test}: {shape:?} -> {}, {storage:?}", shape.kernel_name());
    let tokens = shape.batch * shape.grid * shape.grid;
    // Factors by which q and k/v get stored; inputs are made exactly scalable by them (an
    // fp16 value below 2^-12 would lose its last bit to the subnormal range when stored
    // times 1/4), so that the scaled run sees exactly the plain run's values.
    let (fq, fkv) = match storage {
        QkvStorage::Plain => (1.0, 1.0),
        QkvStorage::ScaledQ(q_scale) => (1.0 / q_scale, 1.0),
        QkvStorage::ScaledQkv(a) => (a, a),
    };
    let exact = |x: f32, f: f32| f16r(f16r(x * f) / f);
    // Spread wide enough that the softmax is far from uniform.
    let mut qkv = rng.vec(tokens * 3 * d, -1.5, 1.5);
    for (i, x) in qkv.iter_mut().enumerate() {
        *x = exact(*x, if i % (3 * d) < d { fq } else { fkv });
    }
    let bias: Vec<f32> = rng
        .vec(3 * d, -1.0, 1.0)
        .iter()
        .map(|&x| exact(x, fkv))
        .collect();
    let rel_h = round_f16(&rng.vec((2 * s - 1) * hd, -0.5, 0.5));
    let rel_w = round_f16(&rng.vec((2 * s - 1) * hd, -0.5, 0.5));
    let want = ref_encoder_attention(shape, &qkv, &round_f16(&bias), &rel_h, &rel_w);

    let rh_d = gpu.upload_f16(st, &rel_h).unwrap();
    let rw_d = gpu.upload_f16(st, &rel_w).unwrap();
    let run = |qkv: &[f32], bias: &[f32], q_scale: f32, softmax_scale: Option<f32>| {
        let qkv_d = gpu.upload_f16(st, qkv).unwrap();
        let bias_d = gpu.upload_f32(st, bias).unwrap();
        let mut out = gpu.zeros_f16(st, tokens * d).unwrap();
        let inputs = AttnRelposInputs {
            qkv: &qkv_d,
            qkv_bias: &bias_d,
            rel_pos_h: &rh_d,
            rel_pos_w: &rw_d,
            q_scale,
            softmax_scale,
        };
        attn_relpos(&gpu, st, shape, &inputs, &mut out).unwrap();
        gpu.download_f16(st, &out).unwrap()
    };
    let plain = run(&qkv, &bias, 1.0, None);
    // Outputs are convex combinations of |v| <= 1.5: fp16 probabilities (2^-11 relative
    // each) and the fp16 output rounding bound the error by ~1.5e-3.
    assert_close(test, &plain, &want, 2e-3, 2e-3);
    match storage {
        QkvStorage::Plain => {}
        QkvStorage::ScaledQ(q_scale) => {
            let stored: Vec<f32> = qkv
                .chunks_exact(3 * d)
                .flat_map(|row| {
                    let (q, kv) = row.split_at(d);
                    q.iter().map(move |x| x / q_scale).chain(kv.iter().copied())
                })
                .collect();
            let got = run(&stored, &bias, q_scale, None);
            assert_close(&format!("{test} (q / {q_scale})"), &got, &want, 2e-3, 2e-3);
            let differ = got
                .iter()
                .zip(&plain)
                .filter(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(differ.count(), 0, "{test}: scaled q is not bit-identical");
        }
        QkvStorage::ScaledQkv(a) => {
            let stored: Vec<f32> = qkv.iter().map(|x| x * a).collect();
            let bias_a: Vec<f32> = bias.iter().map(|x| x * a).collect();
            let scale = (hd as f32).powf(-0.5) / a;
            let got = run(&stored, &bias_a, 1.0 / a, Some(scale));
            let unscaled: Vec<f32> = got.iter().map(|x| x / a).collect();
            assert_close(&format!("{test} (qkv * {a})"), &unscaled, &want, 2e-3, 2e-3);
            let plain_a: Vec<f32> = plain.iter().map(|x| x * a).collect();
            assert_close(
                &format!("{test} vs plain"),
                &got,
                &plain_a,
                2.0f32.powi(-24),
                0.0,
            );
        }
    }
}

#[test]
fn encoder_attention_windowed_hd64_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 2,
        grid: 64,
        dim: 128,
        heads: 2,
        window: 14,
    };
    run_encoder_attention("encoder_attention_windowed_hd64", shape, QkvStorage::Plain);
}

#[test]
fn encoder_attention_windowed_hd80_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 1,
        grid: 64,
        dim: 160,
        heads: 2,
        window: 14,
    };
    run_encoder_attention("encoder_attention_windowed_hd80", shape, QkvStorage::Plain);
}

#[test]
fn encoder_attention_global_hd64_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 1,
        grid: 64,
        dim: 128,
        heads: 2,
        window: 64,
    };
    run_encoder_attention("encoder_attention_global_hd64", shape, QkvStorage::Plain);
}

#[test]
fn encoder_attention_global_hd80_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 1,
        grid: 64,
        dim: 160,
        heads: 2,
        window: 64,
    };
    run_encoder_attention("encoder_attention_global_hd80", shape, QkvStorage::Plain);
}

// Other image sizes: img_size 256 -> grid 16, 320 -> 20, 480 -> 30, and a tiny grid 7.

#[test]
fn encoder_attention_global_s16_hd64_q_scale_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 2,
        grid: 16,
        dim: 128,
        heads: 2,
        window: 16,
    };
    let storage = QkvStorage::ScaledQ(0.25);
    run_encoder_attention("encoder_attention_global_s16_hd64", shape, storage);
}

#[test]
fn encoder_attention_global_s20_hd80_scaled_qkv_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 1,
        grid: 20,
        dim: 160,
        heads: 2,
        window: 20,
    };
    let storage = QkvStorage::ScaledQkv(0.25);
    run_encoder_attention("encoder_attention_global_s20_hd80", shape, storage);
}

#[test]
fn encoder_attention_global_s7_hd64_matches_cpu() {
    // 49 keys: one key tile with 15 masked columns; 13-row rel tables.
    let shape = AttnRelposShape {
        batch: 2,
        grid: 7,
        dim: 64,
        heads: 1,
        window: 7,
    };
    run_encoder_attention("encoder_attention_global_s7_hd64", shape, QkvStorage::Plain);
}

#[test]
fn encoder_attention_windowed_grid16_hd64_q_scale_matches_cpu() {
    // 2x2 windows of 14 over 16 padded to 28: three of four windows hold padding.
    let shape = AttnRelposShape {
        batch: 2,
        grid: 16,
        dim: 128,
        heads: 2,
        window: 14,
    };
    let storage = QkvStorage::ScaledQ(0.25);
    run_encoder_attention("encoder_attention_windowed_grid16_hd64", shape, storage);
}

#[test]
fn encoder_attention_windowed_grid20_hd80_matches_cpu() {
    let shape = AttnRelposShape {
        batch: 2,
        grid: 20,
        dim: 80,
        heads: 1,
        window: 14,
    };
    let storage = QkvStorage::Plain;
    run_encoder_attention("encoder_attention_windowed_grid20_hd80", shape, storage);
}

#[test]
fn encoder_attention_windowed_grid30_hd64_scaled_qkv_matches_cpu() {
    // 3x3 windows over 30 padded to 42.
    let shape = AttnRelposShape {
        batch: 1,
        grid: 30,
        dim: 64,
        heads: 1,
        window: 14,
    };
    let storage = QkvStorage::ScaledQkv(0.25);
    run_encoder_attention("encoder_attention_windowed_grid30_hd64", shape, storage);
}

#[test]
fn encoder_attention_run_time_window_matches_cpu() {
    // Window 8 takes the run-time-S kernel: 8 over 20 padded to 24 (3x3 windows, 64 keys
    // each). A window larger than the grid (the s14 kernel, 14 over 5: one window, 171 of its
    // 196 tokens padding).
    for (grid, window, dim, heads) in [(20, 8, 160, 2), (5, 14, 64, 1)] {
        let shape = AttnRelposShape {
            batch: 2,
            grid,
            dim,
            heads,
            window,
        };
        let test = format!("encoder_attention_grid{grid}_window{window}");
        run_encoder_attention(&test, shape, QkvStorage::ScaledQ(0.5));
    }
}

// ---------------------------------------------------------------- plain attention

fn ref_plain_attention(shape: AttnPlainShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
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

fn run_plain_attention(test: &str, shape: AttnPlainShape) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let st = gpu.stream();
    let w = shape.heads * shape.head_dim;
    let q = round_f16(&rng.vec(shape.batch * shape.lq * w, -2.0, 2.0));
    let k = round_f16(&rng.vec(shape.batch * shape.lk * w, -2.0, 2.0));
    let v = round_f16(&rng.vec(shape.batch * shape.lk * w, -1.0, 1.0));
    let want = ref_plain_attention(shape, &q, &k, &v);
    let (qd, kd, vd) = (
        gpu.upload_f16(st, &q).unwrap(),
        gpu.upload_f16(st, &k).unwrap(),
        gpu.upload_f16(st, &v).unwrap(),
    );
    let mut out = gpu.zeros_f16(st, shape.batch * shape.lq * w).unwrap();
    attn_plain(&gpu, st, shape, &qd, &kd, &vd, &mut out).unwrap();
    let got = gpu.download_f16(st, &out).unwrap();
    // Convex combinations of |v| <= 1: fp16 probabilities and output rounding, ~1e-3.
    assert_close(test, &got, &want, 2e-3, 2e-3);
}

#[test]
fn plain_attention_hd16_token_to_image_matches_cpu() {
    let shape = AttnPlainShape {
        batch: 2,
        heads: 8,
        head_dim: 16,
        lq: 7,
        lk: 4096,
    };
    run_plain_attention("plain_attention_hd16_7x4096", shape);
}

#[test]
fn plain_attention_hd32_image_to_token_matches_cpu() {
    let shape = AttnPlainShape {
        batch: 1,
        heads: 8,
        head_dim: 32,
        lq: 4100,
        lk: 7,
    };
    run_plain_attention("plain_attention_hd32_4100x7", shape);
}

#[test]
fn plain_attention_hd64_ragged_matches_cpu() {
    let shape = AttnPlainShape {
        batch: 2,
        heads: 3,
        head_dim: 64,
        lq: 100,
        lk: 333,
    };
    run_plain_attention("plain_attention_hd64_100x333", shape);
}

#[test]
fn attention_shapes_are_validated() {
    let vit_b = AttnRelposShape {
        batch: 1,
        grid: 64,
        dim: 768,
        heads: 12,
        window: 14,
    };
    assert!(vit_b.validate().is_ok());
    assert_eq!(vit_b.kernel_name(), "attn_relpos_s14_d64_f16");
    assert_eq!(vit_b.windows_per_side(), 5);
    let vit_h_global = AttnRelposShape {
        dim: 1280,
        heads: 16,
        window: 64,
        ..vit_b
    };
    assert!(vit_h_global.validate().is_ok());
    assert_eq!(vit_h_global.kernel_name(), "attn_relpos_s64_d80_f16");
    assert_eq!(vit_h_global.variant(), AttnRelposVariant::Side64);
    // img_size 256: grid 16, global S = 16 and windows of 14 over 16 padded to 28.
    let small_global = AttnRelposShape {
        grid: 16,
        window: 16,
        ..vit_b
    };
    assert!(small_global.validate().is_ok());
    assert_eq!(small_global.variant(), AttnRelposVariant::AnySide);
    assert_eq!(small_global.kernel_name(), "attn_relpos_any_d64_f16");
    let small_windowed = AttnRelposShape { grid: 16, ..vit_b };
    assert!(small_windowed.validate().is_ok());
    assert_eq!(small_windowed.variant(), AttnRelposVariant::Side14);
    assert_eq!(small_windowed.windows_per_side(), 2);
    for ok in [1, 7, 63, 65, 256] {
        let shape = AttnRelposShape {
            grid: ok,
            window: ok,
            ..vit_b
        };
        assert!(shape.validate().is_ok(), "{shape:?}");
    }
    for bad in [
        AttnRelposShape { heads: 16, ..vit_b }, // head_dim 48
        AttnRelposShape { window: 0, ..vit_b },
        AttnRelposShape {
            grid: 257,
            window: 257,
            ..vit_b
        }, // past ENCODER_MAX_SIDE
        AttnRelposShape { grid: 0, ..vit_b },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let dec = AttnPlainShape {
        batch: 1,
        heads: 8,
        head_dim: 16,
        lq: 7,
        lk: 4096,
    };
    assert!(dec.validate().is_ok());
    assert!(matches!(
        AttnPlainShape {
            head_dim: 80,
            ..dec
        }
        .validate(),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        AttnPlainShape { lk: 0, ..dec }.validate(),
        Err(Error::Unsupported(_))
    ));
}

// ---------------------------------------------------------------- the references themselves

/// Token-by-token f64 evaluation of spec §2, written independently of the window loop in
/// `ref_encoder_attention`, so the GPU comparisons rest on a checked reference.
fn naive_encoder_attention(
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
fn encoder_reference_matches_token_by_token_formula() {
    let mut rng = Rng::new("encoder_reference");
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
        let a = ref_encoder_attention(shape, &qkv, &bias16, &rel_h, &rel_w);
        let b = naive_encoder_attention(shape, &qkv, &bias16, &rel_h, &rel_w);
        // Both are f32/f64 evaluations of the same formula: only summation order differs.
        assert_close("encoder reference", &a, &b, 1e-5, 1e-5);
    }
}

#[test]
fn plain_reference_matches_direct_loops() {
    let mut rng = Rng::new("plain_reference");
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
    let got = ref_plain_attention(shape, &q, &k, &v);
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
