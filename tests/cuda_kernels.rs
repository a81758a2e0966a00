//! CUDA kernels against the f32 CPU reference, on fresh random inputs with awkward shapes.
//!
//! Inputs are rounded to fp16 before the reference sees them, so each comparison measures
//! the kernel (fp32 accumulation, fp16 output rounding), not the input quantisation. Without
//! an NVIDIA driver or GPU every GPU test prints why it skips and passes; the shape
//! validation tests at the end need no GPU.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::*;

use rayon::prelude::*;
use samrt::cpu::conv2d::{conv2d, ConvGeom, Layout};
use samrt::cpu::gemm::{linear, matmul, MatRef, Par};
use samrt::cpu::{gelu::gelu_scalar, layer_norm::layer_norm, softmax::softmax_rows};
use samrt::cuda::attention::{
    encoder_attention, plain_attention, EncoderAttnInputs, EncoderAttnShape, EncoderAttnVariant,
    PlainAttnShape,
};
use samrt::cuda::gemm::{
    conv3x3 as gpu_conv3x3, conv3x3_weight_layout, linear as gpu_linear, Conv3x3Shape, Epilogue,
    GemmScales, GemmShape,
};
use samrt::cuda::layer_norm::{layer_norm as gpu_layer_norm, LayerNormShape, LnInput};
use samrt::cuda::{cuda_available, GpuContext};
use samrt::Error;

// ---------------------------------------------------------------- layer norm

fn run_layer_norm(test: &str, rows: usize, dim: usize, f32_input: bool, eps: f32) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    // Residual-stream-like rows: a large common offset makes a one-pass variance cancel.
    let mut x = rng.vec(rows * dim, -2.0, 2.0);
    for (r, row) in x.chunks_mut(dim).enumerate() {
        let off = (r % 7) as f32 * 3.0 - 9.0;
        row.iter_mut().for_each(|v| *v += off);
    }
    if !f32_input {
        x = round_f16(&x);
    }
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let mut want = x.clone();
    layer_norm(&mut want, dim, &gamma, &beta, eps);

    let g = gpu.upload_f32(s, &gamma).unwrap();
    let b = gpu.upload_f32(s, &beta).unwrap();
    let mut out = gpu.zeros_f16(s, rows * dim).unwrap();
    let shape = LayerNormShape { rows, dim };
    if f32_input {
        let xd = gpu.upload_f32(s, &x).unwrap();
        gpu_layer_norm(&gpu, s, LnInput::F32(&xd), &g, &b, &mut out, shape, eps).unwrap();
    } else {
        let xd = gpu.upload_f16(s, &x).unwrap();
        gpu_layer_norm(&gpu, s, LnInput::F16(&xd), &g, &b, &mut out, shape, eps).unwrap();
    }
    let got = gpu.download_f16(s, &out).unwrap();
    // fp16 output: half an ulp is 2^-11 relative; 1e-3 absolute covers values near zero
    // and the fp32 (GPU) vs f64 (CPU) statistics.
    assert_close(test, &got, &want, 1e-3, 1e-3);
}

#[test]
fn layer_norm_f32_residual_input_matches_cpu() {
    run_layer_norm("layer_norm_f32_residual_input", 4099, 768, true, 1e-6);
}

#[test]
fn layer_norm_f16_input_matches_cpu() {
    run_layer_norm("layer_norm_f16_input_d1280", 4100, 1280, false, 1e-6);
    // 264 columns: the last 256-column chunk is almost empty.
    run_layer_norm("layer_norm_f16_input_d264", 333, 264, false, 1e-5);
    run_layer_norm("layer_norm_f16_input_d2048", 65, 2048, false, 1e-5);
}

// ---------------------------------------------------------------- gemm

#[derive(Clone, Copy, Debug, PartialEq)]
enum Epi {
    Bias,
    Gelu,
    Residual,
}

fn run_gemm(test: &str, m: usize, n: usize, k: usize, epi: Epi) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    let a = round_f16(&rng.vec(m * k, -1.0, 1.0));
    let w = round_f16(&rng.vec(n * k, -1.0, 1.0));
    let bias = rng.vec(n, -2.0, 2.0);
    let resid = rng.vec(m * n, -4.0, 4.0);
    let mut want = linear(&a, m, &w, Some(&bias), n, Par::Threads);
    match epi {
        Epi::Bias => {}
        Epi::Gelu => want.iter_mut().for_each(|v| *v = gelu_scalar(*v)),
        Epi::Residual => want.iter_mut().zip(&resid).for_each(|(v, r)| *v += r),
    }

    let ad = gpu.upload_f16(s, &a).unwrap();
    let wd = gpu.upload_f16(s, &w).unwrap();
    let bd = gpu.upload_f32(s, &bias).unwrap();
    let shape = GemmShape { m, n, k };
    let got = match epi {
        Epi::Bias | Epi::Gelu => {
            let mut out = gpu.zeros_f16(s, m * n).unwrap();
            let e = if epi == Epi::Bias {
                Epilogue::Bias(&mut out)
            } else {
                Epilogue::BiasGelu(&mut out)
            };
            gpu_linear(
                &gpu,
                s,
                &ad,
                &wd,
                Some(&bd),
                shape,
                GemmScales::default(),
                e,
            )
            .unwrap();
            gpu.download_f16(s, &out).unwrap()
        }
        Epi::Residual => {
            let mut r = gpu.upload_f32(s, &resid).unwrap();
            gpu_linear(
                &gpu,
                s,
                &ad,
                &wd,
                Some(&bd),
                shape,
                GemmScales::default(),
                Epilogue::BiasResidual(&mut r),
            )
            .unwrap();
            gpu.download_f32(s, &r).unwrap()
        }
    };
    // Both sides sum exact fp16 products in fp32, in different orders: about sqrt(k) * 2^-24
    // * |terms| apart (< 1e-4 here). The fp16 outputs add 2^-11 relative rounding.
    let (atol, rtol) = match epi {
        Epi::Residual => (1e-3, 1e-5),
        _ => (1e-3, 1e-3),
    };
    assert_close(test, &got, &want, atol, rtol);
}

#[test]
fn gemm_bias_matches_cpu() {
    // M not a multiple of 128, N and K multiples of 8 but not of the 128/32 tiles.
    run_gemm("gemm_bias_4100x776x776", 4100, 776, 776, Epi::Bias);
    run_gemm("gemm_bias_tiny", 1, 2, 8, Epi::Bias);
}

#[test]
fn gemm_bias_gelu_matches_cpu() {
    run_gemm("gemm_bias_gelu_4097x3080x768", 4097, 3080, 768, Epi::Gelu);
}

#[test]
fn gemm_bias_residual_matches_cpu() {
    // N even but not a multiple of 8; K = 3080 = 96 full BK tiles + a 8-wide tail.
    run_gemm(
        "gemm_bias_residual_4099x770x3080",
        4099,
        770,
        3080,
        Epi::Residual,
    );
    run_gemm("gemm_bias_residual_130x130x40", 130, 130, 40, Epi::Residual);
}

// ---------------------------------------------------------------- encoder attention

/// The official computation (spec §2): pad to a multiple of the window, partition, per
/// window and head `softmax((q*scale) k^T + rel_h + rel_w) v`, unpartition, crop. Padded
/// tokens' q/k/v are the fp16-rounded qkv bias (what the qkv GEMM yields for a zero row).
fn ref_encoder_attention(
    shape: EncoderAttnShape,
    qkv: &[f32],
    bias16: &[f32],
    rel_h: &[f32],
    rel_w: &[f32],
) -> Vec<f32> {
    let EncoderAttnShape {
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
fn run_encoder_attention(test: &str, shape: EncoderAttnShape, storage: QkvStorage) {
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
        let inputs = EncoderAttnInputs {
            qkv: &qkv_d,
            qkv_bias: &bias_d,
            rel_pos_h: &rh_d,
            rel_pos_w: &rw_d,
            q_scale,
            softmax_scale,
        };
        encoder_attention(&gpu, st, shape, &inputs, &mut out).unwrap();
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
    let shape = EncoderAttnShape {
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
        let shape = EncoderAttnShape {
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

fn ref_plain_attention(shape: PlainAttnShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
    let PlainAttnShape {
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

fn run_plain_attention(test: &str, shape: PlainAttnShape) {
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
    plain_attention(&gpu, st, shape, &qd, &kd, &vd, &mut out).unwrap();
    let got = gpu.download_f16(st, &out).unwrap();
    // Convex combinations of |v| <= 1: fp16 probabilities and output rounding, ~1e-3.
    assert_close(test, &got, &want, 2e-3, 2e-3);
}

#[test]
fn plain_attention_hd16_token_to_image_matches_cpu() {
    let shape = PlainAttnShape {
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
    let shape = PlainAttnShape {
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
    let shape = PlainAttnShape {
        batch: 2,
        heads: 3,
        head_dim: 64,
        lq: 100,
        lk: 333,
    };
    run_plain_attention("plain_attention_hd64_100x333", shape);
}

// ---------------------------------------------------------------- launch checks

#[test]
fn launchers_reject_short_buffers() {
    let Some(gpu) = gpu_or_skip("launchers_reject_short_buffers") else {
        return;
    };
    let s = gpu.stream();
    let a = gpu.zeros_f16(s, 64 * 64).unwrap();
    let w = gpu.zeros_f16(s, 64 * 64).unwrap();
    let bias = gpu.zeros_f32(s, 64).unwrap();
    let mut out = gpu.zeros_f16(s, 64 * 63).unwrap();
    let shape = GemmShape {
        m: 64,
        n: 64,
        k: 64,
    };
    let r = gpu_linear(
        &gpu,
        s,
        &a,
        &w,
        Some(&bias),
        shape,
        GemmScales::default(),
        Epilogue::Bias(&mut out),
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "{r:?}");
}

#[test]
fn cuda_available_fails_cleanly_or_reports_a_device() {
    match cuda_available() {
        Ok(info) => {
            println!("CUDA device: {info:?}");
            assert!(!info.name.is_empty());
        }
        Err(Error::Cuda(msg)) if require_gpu() => {
            panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU: {msg}")
        }
        Err(Error::Cuda(msg)) => {
            println!("skipping device checks: {msg}");
            assert!(!msg.is_empty());
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

// ---------------------------------------------------------------- shape validation (no GPU)

#[test]
fn gemm_shapes_are_validated() {
    let ok = GemmShape {
        m: 4097,
        n: 770,
        k: 3080,
    };
    assert!(ok.validate().is_ok());
    for bad in [
        GemmShape {
            m: 4096,
            n: 768,
            k: 770,
        },
        GemmShape {
            m: 4096,
            n: 767,
            k: 768,
        },
        GemmShape {
            m: 0,
            n: 768,
            k: 768,
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn layer_norm_shapes_are_validated() {
    assert!(LayerNormShape { rows: 5, dim: 2048 }.validate().is_ok());
    for bad in [
        LayerNormShape { rows: 5, dim: 2056 },
        LayerNormShape { rows: 5, dim: 772 },
        LayerNormShape { rows: 0, dim: 768 },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn attention_shapes_are_validated() {
    let vit_b = EncoderAttnShape {
        batch: 1,
        grid: 64,
        dim: 768,
        heads: 12,
        window: 14,
    };
    assert!(vit_b.validate().is_ok());
    assert_eq!(vit_b.kernel_name(), "attn_relpos_s14_d64_f16");
    assert_eq!(vit_b.windows_per_side(), 5);
    let vit_h_global = EncoderAttnShape {
        dim: 1280,
        heads: 16,
        window: 64,
        ..vit_b
    };
    assert!(vit_h_global.validate().is_ok());
    assert_eq!(vit_h_global.kernel_name(), "attn_relpos_s64_d80_f16");
    assert_eq!(vit_h_global.variant(), EncoderAttnVariant::Side64);
    // img_size 256: grid 16, global S = 16 and windows of 14 over 16 padded to 28.
    let small_global = EncoderAttnShape {
        grid: 16,
        window: 16,
        ..vit_b
    };
    assert!(small_global.validate().is_ok());
    assert_eq!(small_global.variant(), EncoderAttnVariant::AnySide);
    assert_eq!(small_global.kernel_name(), "attn_relpos_any_d64_f16");
    let small_windowed = EncoderAttnShape { grid: 16, ..vit_b };
    assert!(small_windowed.validate().is_ok());
    assert_eq!(small_windowed.variant(), EncoderAttnVariant::Side14);
    assert_eq!(small_windowed.windows_per_side(), 2);
    for ok in [1, 7, 63, 65, 256] {
        let shape = EncoderAttnShape {
            grid: ok,
            window: ok,
            ..vit_b
        };
        assert!(shape.validate().is_ok(), "{shape:?}");
    }
    for bad in [
        EncoderAttnShape { heads: 16, ..vit_b }, // head_dim 48
        EncoderAttnShape { window: 0, ..vit_b },
        EncoderAttnShape {
            grid: 257,
            window: 257,
            ..vit_b
        }, // past ENCODER_MAX_SIDE
        EncoderAttnShape { grid: 0, ..vit_b },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let dec = PlainAttnShape {
        batch: 1,
        heads: 8,
        head_dim: 16,
        lq: 7,
        lk: 4096,
    };
    assert!(dec.validate().is_ok());
    assert!(matches!(
        PlainAttnShape {
            head_dim: 80,
            ..dec
        }
        .validate(),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        PlainAttnShape { lk: 0, ..dec }.validate(),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn embedded_ptx_lists_every_launcher_kernel() {
    let names: Vec<&str> = samrt::cuda::embedded_kernels()
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    for k in [
        "layer_norm_f16",
        "layer_norm_f32_f16",
        "gemm_bias_f16",
        "gemm_bias_gelu_f16",
        "gemm_bias_residual_f16",
        "conv3x3_f16",
        "attn_relpos_s14_d64_f16",
        "attn_relpos_s14_d80_f16",
        "attn_relpos_s64_d64_f16",
        "attn_relpos_s64_d80_f16",
        "attn_relpos_any_d64_f16",
        "attn_relpos_any_d80_f16",
        "attn_plain_d16_f16",
        "attn_plain_d32_f16",
        "attn_plain_d64_f16",
        "bilinear_w_f32",
        "bilinear_h_f32",
        "bilinear_channels_last_f32",
        "mask_threshold_pack",
        "prompt_sparse_f32",
        "mask_stability_counts",
        "nms_mask_f32",
        "mask_downscaling_f32",
    ] {
        assert!(names.contains(&k), "{k} missing from {names:?}");
    }
}

// ---------------------------------------------------------------- mask post-processing

#[test]
fn postprocess_masks_bit_identical_to_cpu() {
    let Some(gpu) = gpu_or_skip("postprocess_masks_bit_identical_to_cpu") else {
        return;
    };
    let mut rng = Rng::new("postprocess_masks_bit_identical_to_cpu");
    let stream = gpu.stream().clone();
    // (masks, input size, original size): the 1500x2250 photo; a portrait crop; a tiny
    // original (channels-last kernel in stage 2: out_h + out_w <= 128); 3 masks with one
    // torch thread (channels-last in both stages); one mask of an odd size.
    type Size = (usize, usize);
    let cases: [(usize, Size, Size, usize); 5] = [
        (3, (683, 1024), (1500, 2250), 2),
        (2, (1024, 768), (1200, 900), 2),
        (3, (731, 1024), (50, 70), 2),
        (3, (683, 1024), (300, 450), 1),
        (1, (1024, 1023), (997, 995), 2),
    ];
    for (m, input, orig, threads) in cases {
        // Logits around 0 with a large range, so thresholds cut through the masks.
        let low = rng.vec(m * 65536, -20.0, 20.0);
        let want =
            samrt::postprocess::postprocess_masks_with(&low, m, input, orig, threads).unwrap();
        let dev = gpu.upload_f32(&stream, &low).unwrap();
        let out = samrt::cuda::postprocess::postprocess_masks(
            &gpu, &stream, &dev, m, input, orig, threads,
        )
        .unwrap();
        let got = gpu.download_f32(&stream, &out).unwrap();
        assert_eq!(got.len(), want.len());
        let ndiff = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        // Every rounding is explicit on both sides: bit-identical, not merely close.
        assert_eq!(
            ndiff, 0,
            "{m} masks {input:?} -> {orig:?}: {ndiff} values differ"
        );
        let packed =
            samrt::cuda::postprocess::threshold_pack(&gpu, &stream, &out, m, orig).unwrap();
        let plane = orig.0 * orig.1;
        for offset in [1.0f32, 0.05] {
            let stab =
                samrt::cuda::postprocess::stability_scores(&gpu, &stream, &out, m, plane, offset)
                    .unwrap();
            for k in 0..m {
                let want = samrt::amg::geometry::stability_score(
                    &want[k * plane..(k + 1) * plane],
                    offset,
                );
                assert_eq!(stab[k].to_bits(), want.to_bits(), "mask {k} stability");
            }
        }
        for k in 0..m {
            let mask = samrt::postprocess::threshold(&want[k * plane..(k + 1) * plane]);
            assert_eq!(packed.mask(k), mask, "mask {k} bits");
            let stats = samrt::postprocess::mask_stats(&mask, orig.0, orig.1).unwrap();
            assert_eq!(packed.stats[k], stats, "mask {k} area / box");
        }
    }
    // An all-negative mask: empty box, zero area.
    let low = vec![-1.0f32; 65536];
    let dev = gpu.upload_f32(&stream, &low).unwrap();
    let out = samrt::cuda::postprocess::postprocess_masks(
        &gpu,
        &stream,
        &dev,
        1,
        (683, 1024),
        (100, 150),
        2,
    )
    .unwrap();
    let packed =
        samrt::cuda::postprocess::threshold_pack(&gpu, &stream, &out, 1, (100, 150)).unwrap();
    assert_eq!(packed.stats[0], samrt::postprocess::MaskStats::default());
}

#[test]
fn postprocess_shapes_are_validated() {
    let Some(gpu) = gpu_or_skip("postprocess_shapes_are_validated") else {
        return;
    };
    let stream = gpu.stream().clone();
    let dev = gpu.upload_f32(&stream, &vec![0.5f32; 65536]).unwrap();
    let pp = |m, input, orig| {
        samrt::cuda::postprocess::postprocess_masks(&gpu, &stream, &dev, m, input, orig, 2)
    };
    assert!(pp(0, (683, 1024), (10, 10)).is_err());
    assert!(pp(1, (1025, 1024), (10, 10)).is_err());
    assert!(pp(1, (683, 1024), (0, 10)).is_err());
    // Two masks need two planes.
    assert!(pp(2, (683, 1024), (10, 10)).is_err());
}

// ---------------------------------------------------------------- mask downscaling

#[test]
fn mask_downscaling_matches_cpu() {
    let Some(gpu) = gpu_or_skip("mask_downscaling_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new("mask_downscaling_matches_cpu");
    let cfg = samrt::config::SamConfig::by_name("vit_b").unwrap();
    let w = samrt::mask_decoder::random_decoder_weights(&cfg, rng.next());
    let pe = samrt::prompt_encoder::PromptEncoder::load(&w, &cfg).unwrap();
    let stream = gpu.stream().clone();
    let (m, g, dim) = (3, pe.grid(), pe.embed_dim());
    // Low-res logits as the decoder emits them (range about +-20), three different masks.
    let masks = rng.vec(m * 16 * g * g, -20.0, 20.0);
    let packed = gpu
        .upload_f32(&stream, &pe.mask_downscaling_packed())
        .unwrap();
    let dev = gpu.upload_f32(&stream, &masks).unwrap();
    let out =
        samrt::cuda::mask_downscaling::mask_downscaling(&gpu, &stream, &dev, m, &packed, g, dim)
            .unwrap();
    let got = gpu.download_f32(&stream, &out).unwrap();
    let plane = 16 * g * g;
    let mut worst = 0f32;
    for k in 0..m {
        let want = pe.embed_mask(&masks[k * plane..(k + 1) * plane]).unwrap();
        for (a, b) in got[k * dim * g * g..(k + 1) * dim * g * g]
            .iter()
            .zip(&want)
        {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    // f32 sums of at most 16 terms in another order, CUDA erff (2 ulp) vs the CPU erf
    // (1 ulp), LayerNorm over 4 and 16 channels: a few 1e-6 relative.
    println!("mask_downscaling: max rel. diff {worst:e}");
    assert!(worst <= 2e-5, "max rel. diff {worst}");
    let short = gpu.upload_f32(&stream, &[0.5f32; 10]).unwrap();
    assert!(samrt::cuda::mask_downscaling::mask_downscaling(
        &gpu, &stream, &dev, m, &short, g, dim
    )
    .is_err());
}

// ---------------------------------------------------------------- box NMS

#[test]
fn nms_matches_cpu() {
    let Some(gpu) = gpu_or_skip("nms_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new("nms_matches_cpu");
    let stream = gpu.stream().clone();
    // Integer boxes (as AMG's mask boxes) clustered so many overlap, float boxes, repeated
    // scores (ties keep input order), across tile boundaries (1, 63, 64, 65, 1000, 3000).
    for n in [1usize, 63, 64, 65, 1000, 3000] {
        for integer in [true, false] {
            let boxes: Vec<[f32; 4]> = (0..n)
                .map(|_| {
                    let (cx, cy) = (rng.uniform(0.0, 300.0), rng.uniform(0.0, 200.0));
                    let (w, h) = (rng.uniform(1.0, 120.0), rng.uniform(1.0, 90.0));
                    let b = [cx, cy, cx + w, cy + h];
                    if integer {
                        b.map(f32::floor)
                    } else {
                        b
                    }
                })
                .collect();
            let scores: Vec<f32> = (0..n)
                .map(|_| (rng.uniform(0.0, 1.0) * 20.0).floor() / 20.0)
                .collect();
            for thresh in [0.7, 0.3, 0.0, 1.0] {
                let want = samrt::amg::geometry::nms(&boxes, &scores, thresh);
                let got = samrt::cuda::nms::nms(&gpu, &stream, &boxes, &scores, thresh).unwrap();
                assert_eq!(got, want, "n {n} integer {integer} thresh {thresh}");
            }
        }
    }
    assert!(samrt::cuda::nms::nms(&gpu, &stream, &[], &[], 0.7)
        .unwrap()
        .is_empty());
    assert!(samrt::cuda::nms::nms(&gpu, &stream, &[[0.0; 4]], &[], 0.7).is_err());
}

// ---------------------------------------------------------------- prompt encoder

#[test]
fn prompt_sparse_embeddings_match_cpu() {
    use samrt::cuda::prompt_encoder::{pad_prompts, prompt_tokens, sparse_embeddings};
    let Some(gpu) = gpu_or_skip("prompt_sparse_embeddings_match_cpu") else {
        return;
    };
    let mut rng = Rng::new("prompt_sparse_embeddings_match_cpu");
    let cfg = samrt::config::SamConfig::by_name("vit_b").unwrap();
    let w = samrt::mask_decoder::random_decoder_weights(&cfg, rng.next());
    let pe = samrt::prompt_encoder::PromptEncoder::load(&w, &cfg).unwrap();
    let stream = gpu.stream().clone();
    // 37 prompts: 0-4 points with labels -1/0/1, with and without a box, coordinates
    // anywhere in (and a little outside) the 1024 frame.
    let mut cpu = Vec::new();
    let mut toks = Vec::new();
    for p in 0..37 {
        let n = p % 5;
        let pts: Vec<[f32; 2]> = (0..n)
            .map(|_| [rng.uniform(-10.0, 1030.0), rng.uniform(-10.0, 1030.0)])
            .collect();
        let labels: Vec<i32> = (0..n).map(|_| (rng.next() % 3) as i32 - 1).collect();
        let bx = (p % 3 == 0 || n == 0).then(|| {
            let (x0, y0) = (rng.uniform(0.0, 900.0), rng.uniform(0.0, 900.0));
            [
                x0,
                y0,
                x0 + rng.uniform(1.0, 120.0),
                y0 + rng.uniform(1.0, 120.0),
            ]
        });
        cpu.push(pe.encode_sparse(&pts, &labels, bx).unwrap());
        toks.push(prompt_tokens(&pts, &labels, bx).unwrap());
    }
    let (gauss, table, size) = pe.sparse_tables();
    let (coords, kinds, t) = pad_prompts(&toks);
    let g = gpu.upload_f32(&stream, &gauss).unwrap();
    let tb = gpu.upload_f32(&stream, &table).unwrap();
    let c = gpu.upload_f32(&stream, &coords).unwrap();
    let out = sparse_embeddings(&gpu, &stream, &g, &tb, &c, &kinds, size).unwrap();
    let got = gpu.download_f32(&stream, &out).unwrap();
    let dim = 256;
    let mut worst = 0f32;
    for (p, (sparse, n)) in cpu.iter().enumerate() {
        assert_eq!(*n, toks[p].len());
        for k in 0..t {
            let row = &got[(p * t + k) * dim..(p * t + k + 1) * dim];
            let want = if k < *n {
                &sparse[k * dim..(k + 1) * dim]
            } else {
                &table[..dim] // padding: not-a-point
            };
            for (a, b) in row.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    // Identical argument t (explicitly rounded steps); CUDA sincosf is within 2 ulp and the
    // CPU sin/cos within 1 ulp of values in [-1, 1], then one rounded add.
    println!(
        "prompt_sparse: max |gpu - cpu| {worst:e} over {} tokens",
        kinds.len()
    );
    assert!(worst <= 1e-6, "max diff {worst}");
}

// ---------------------------------------------------------------- the references themselves

/// Token-by-token f64 evaluation of spec §2, written independently of the window loop in
/// `ref_encoder_attention`, so the GPU comparisons rest on a checked reference.
fn naive_encoder_attention(
    shape: EncoderAttnShape,
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
        let shape = EncoderAttnShape {
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
    let shape = PlainAttnShape {
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

// ---------------------------------------------------------------- gemm scales / conv3x3
//
// Every epilogue computes y = acc * in_scale * row_scale[m] + bias[n] and stores
// f16(out_scale * y), f16(out_scale * gelu(y)) or residual += y. The references apply the
// same formula in f32 to the CPU product of the same fp16-rounded inputs. Comparisons are
// per row in accumulator units: both sides are divided by the row's factor
// out_scale * in_scale * row_scale[m] (powers of two here, so the division is exact), and
// then one tolerance fits every row:
// * atol 1e-3: the fp32 sums of K <= 2304 fp16 products differ only in order, about
//   sqrt(K) * 2^-24 * sum|terms| < 1e-4 for these inputs;
// * rtol 1e-3 for fp16 outputs: one rounding to fp16 is at most 2^-11 = 4.9e-4 relative
//   (the 2x margin covers erff against libm's erf and the fp32 rounding of the factors);
// * rtol 1e-5 for the fp32 residual: only fp32 rounding of resid + y remains.

/// Which epilogue, and the scales and optional inputs to exercise.
#[derive(Clone, Copy, Debug)]
struct ScaleCase {
    epi: Epi,
    bias: bool,
    row_scale: bool,
    in_scale: f32,
    out_scale: f32,
    /// Inputs in [0.5, 1) instead of [-1, 1): every product positive, so |acc| ~ 0.56 K
    /// (the overflow tests).
    positive: bool,
}

impl ScaleCase {
    fn new(epi: Epi) -> Self {
        ScaleCase {
            epi,
            bias: true,
            row_scale: true,
            in_scale: 1.0,
            out_scale: 1.0,
            positive: false,
        }
    }
}

/// Row scales 2^e with e drawn from `lo..=hi`.
fn pow2_rows(rng: &mut Rng, rows: usize, lo: i32, hi: i32) -> Vec<f32> {
    (0..rows)
        .map(|_| 2f32.powi(lo + (rng.next() % (hi - lo + 1) as u64) as i32))
        .collect()
}

/// `acc` ([m][n], the unscaled product) through the epilogue of `c`; also returns each
/// row's factor out_scale * in_scale * row_scale (in_scale * row_scale for the residual).
fn ref_epilogue(
    c: ScaleCase,
    acc: &[f32],
    n: usize,
    bias: &[f32],
    rs: &[f32],
    resid: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let f_in: Vec<f32> = rs.iter().map(|&r| c.in_scale * r).collect();
    let mut want = Vec::with_capacity(acc.len());
    for (i, &v) in acc.iter().enumerate() {
        let y = v * c.in_scale * rs[i / n] + if c.bias { bias[i % n] } else { 0.0 };
        want.push(match c.epi {
            Epi::Bias => c.out_scale * y,
            Epi::Gelu => c.out_scale * gelu_scalar(y),
            Epi::Residual => resid[i] + y,
        });
    }
    let factor = match c.epi {
        Epi::Residual => f_in,
        _ => f_in.iter().map(|&f| f * c.out_scale).collect(),
    };
    (want, factor)
}

/// assert_close on both sides divided by each row's factor (see the banner).
fn assert_close_rows(
    what: &str,
    got: &[f32],
    want: &[f32],
    n: usize,
    factor: &[f32],
    c: ScaleCase,
) {
    let norm = |v: &[f32]| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, &x)| x / factor[i / n])
            .collect()
    };
    let rtol = if matches!(c.epi, Epi::Residual) {
        1e-5
    } else {
        1e-3
    };
    assert_close(what, &norm(got), &norm(want), 1e-3, rtol);
}

/// Uploads the bias / row scales when `c` asks for them, runs `launch`, downloads the
/// output (`resid.len()` elements, the size of every epilogue's output).
fn run_epilogue<L>(
    gpu: &GpuContext,
    c: ScaleCase,
    bias: &[f32],
    rs: &[f32],
    resid: &[f32],
    launch: L,
) -> Vec<f32>
where
    L: FnOnce(Option<&dyn cudarc::driver::DevicePtr<f32>>, GemmScales<'_>, Epilogue<'_>),
{
    let s = gpu.stream();
    let bd = gpu.upload_f32(s, bias).unwrap();
    let rd = gpu.upload_f32(s, rs).unwrap();
    let scales = GemmScales {
        row_scale: c.row_scale.then_some(&rd as _),
        in_scale: c.in_scale,
        out_scale: c.out_scale,
    };
    let bias = c.bias.then_some(&bd as _);
    match c.epi {
        Epi::Bias | Epi::Gelu => {
            let mut out = gpu.zeros_f16(s, resid.len()).unwrap();
            let e = if matches!(c.epi, Epi::Bias) {
                Epilogue::Bias(&mut out)
            } else {
                Epilogue::BiasGelu(&mut out)
            };
            launch(bias, scales, e);
            gpu.download_f16(s, &out).unwrap()
        }
        Epi::Residual => {
            let mut r = gpu.upload_f32(s, resid).unwrap();
            launch(bias, scales, Epilogue::BiasResidual(&mut r));
            gpu.download_f32(s, &r).unwrap()
        }
    }
}

/// Random inputs for `c`: (a or x, w, bias, row scales (ones without `c.row_scale`),
/// residual).
fn scale_inputs(
    rng: &mut Rng,
    c: ScaleCase,
    rows: usize,
    n: usize,
    a_len: usize,
    w_len: usize,
) -> [Vec<f32>; 5] {
    let (lo, hi) = if c.positive { (0.5, 1.0) } else { (-1.0, 1.0) };
    let a = round_f16(&rng.vec(a_len, lo, hi));
    let w = round_f16(&rng.vec(w_len, lo, hi));
    let bias = rng.vec(n, -2.0, 2.0);
    let rs = if !c.row_scale {
        vec![1.0; rows]
    } else if c.positive {
        pow2_rows(rng, rows, 0, 1)
    } else {
        pow2_rows(rng, rows, -3, 4)
    };
    let resid = rng.vec(rows * n, -4.0, 4.0);
    [a, w, bias, rs, resid]
}

/// Returns the reference (for the overflow test's extra checks).
fn run_gemm_scaled(test: &str, m: usize, n: usize, k: usize, c: ScaleCase) -> Vec<f32> {
    let Some(gpu) = gpu_or_skip(test) else {
        return Vec::new();
    };
    let mut rng = Rng::new(test);
    println!("{test}: {c:?}");
    let s = gpu.stream();
    let [a, w, bias, rs, resid] = scale_inputs(&mut rng, c, m, n, m * k, n * k);
    let acc = linear(&a, m, &w, None, n, Par::Threads);
    let (want, factor) = ref_epilogue(c, &acc, n, &bias, &rs, &resid);
    let ad = gpu.upload_f16(s, &a).unwrap();
    let wd = gpu.upload_f16(s, &w).unwrap();
    let shape = GemmShape { m, n, k };
    let got = run_epilogue(&gpu, c, &bias, &rs, &resid, |b, sc, e| {
        gpu_linear(&gpu, s, &ad, &wd, b, shape, sc, e).unwrap()
    });
    assert_close_rows(test, &got, &want, n, &factor, c);
    want
}

#[test]
fn gemm_scales_on_every_epilogue_match_cpu() {
    // 2 x 2 tiles, the second of each ragged; K = 200 = 6 BK tiles + an 8-wide tail.
    let (m, n, k) = (200, 138, 200);
    let base = |epi| ScaleCase::new(epi);
    let cases = [
        (
            "bias_nobias_rows",
            ScaleCase {
                bias: false,
                in_scale: 0.75,
                out_scale: 0.25,
                ..base(Epi::Bias)
            },
        ),
        (
            "bias_rows",
            ScaleCase {
                in_scale: 0.5,
                out_scale: 2.0,
                ..base(Epi::Bias)
            },
        ),
        (
            "gelu_rows",
            ScaleCase {
                in_scale: 0.25,
                out_scale: 0.125,
                ..base(Epi::Gelu)
            },
        ),
        (
            "gelu_nobias_norows",
            ScaleCase {
                bias: false,
                row_scale: false,
                in_scale: 1.5,
                out_scale: 0.5,
                ..base(Epi::Gelu)
            },
        ),
        (
            "residual_rows",
            ScaleCase {
                in_scale: 0.5,
                ..base(Epi::Residual)
            },
        ),
        (
            "residual_nobias_norows",
            ScaleCase {
                bias: false,
                row_scale: false,
                in_scale: 3.0,
                ..base(Epi::Residual)
            },
        ),
    ];
    for (name, c) in cases {
        run_gemm_scaled(&format!("gemm_scales_{name}_{m}x{n}x{k}"), m, n, k, c);
    }
}

/// Values that overflow fp16 (|y| up to ~6e5 > 65504) stay finite with out_scale 2^-4.
#[test]
fn gemm_out_scale_prevents_fp16_overflow() {
    let (m, n, k) = (136, 130, 136);
    for epi in [Epi::Bias, Epi::Gelu, Epi::Residual] {
        let c = ScaleCase {
            in_scale: 2048.0,
            out_scale: if matches!(epi, Epi::Residual) {
                1.0
            } else {
                1.0 / 16.0
            },
            positive: true,
            ..ScaleCase::new(epi)
        };
        let want = run_gemm_scaled(&format!("gemm_overflow_{epi:?}_{m}x{n}x{k}"), m, n, k, c);
        // The point of the test: most outputs would be inf in fp16 without out_scale.
        let over = want
            .iter()
            .filter(|&&v| (v / c.out_scale).abs() > 65504.0)
            .count();
        assert!(
            want.is_empty() || over > want.len() / 2,
            "{epi:?}: only {over} large values"
        );
    }
}

/// nn.Conv2d(cin, cout, 3, padding=1) per image on the CPU (src/cpu/conv2d.rs), no bias.
fn ref_conv3x3(x: &[f32], w_official: &[f32], sh: Conv3x3Shape) -> Vec<f32> {
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

fn run_conv3x3(test: &str, sh: Conv3x3Shape, c: ScaleCase) -> Vec<f32> {
    let Some(gpu) = gpu_or_skip(test) else {
        return Vec::new();
    };
    let mut rng = Rng::new(test);
    println!("{test}: {sh:?} {c:?}");
    let s = gpu.stream();
    let m = sh.batch * sh.h * sh.w;
    let [x, w_official, bias, rs, resid] =
        scale_inputs(&mut rng, c, m, sh.cout, m * sh.cin, sh.cout * sh.cin * 9);
    let acc = ref_conv3x3(&x, &w_official, sh);
    let (want, factor) = ref_epilogue(c, &acc, sh.cout, &bias, &rs, &resid);
    let xd = gpu.upload_f16(s, &x).unwrap();
    let wd = gpu
        .upload_f16(s, &conv3x3_weight_layout(&w_official, sh.cout, sh.cin))
        .unwrap();
    let got = run_epilogue(&gpu, c, &bias, &rs, &resid, |b, sc, e| match e {
        Epilogue::Bias(out) => gpu_conv3x3(&gpu, s, &xd, &wd, b, sh, sc, out).unwrap(),
        _ => unreachable!("conv3x3 has the fp16 bias epilogue only"),
    });
    assert_close_rows(test, &got, &want, sh.cout, &factor, c);
    want
}

#[test]
fn conv3x3_matches_cpu_conv2d() {
    let sh = |batch, h, w, cin, cout| Conv3x3Shape {
        batch,
        h,
        w,
        cin,
        cout,
    };
    let plain = ScaleCase {
        row_scale: false,
        ..ScaleCase::new(Epi::Bias)
    };
    let scaled = ScaleCase {
        bias: false,
        in_scale: 0.5,
        out_scale: 0.25,
        ..ScaleCase::new(Epi::Bias)
    };
    for (shape, c) in [
        (sh(2, 5, 5, 16, 16), plain),
        (sh(2, 5, 5, 32, 32), scaled),
        (sh(2, 7, 9, 16, 16), scaled),
        (sh(2, 7, 9, 32, 32), plain),
        // Cout over one 128-wide tile and not a multiple of it; M = 162 over two M tiles,
        // with an image boundary inside the first.
        (sh(2, 9, 9, 32, 136), scaled),
        // Cin 8: four taps per BK stage; Cin 24: taps straddle stages.
        (sh(2, 7, 9, 8, 18), scaled),
        (sh(2, 5, 7, 24, 40), plain),
        // The neck's channel count on a small map: K = 2304, 72 stages.
        (sh(1, 6, 8, 256, 256), scaled),
    ] {
        let Conv3x3Shape {
            batch,
            h,
            w,
            cin,
            cout,
        } = shape;
        run_conv3x3(&format!("conv3x3_b{batch}_{h}x{w}_{cin}to{cout}"), shape, c);
    }
}

#[test]
fn conv3x3_out_scale_prevents_fp16_overflow() {
    let shape = Conv3x3Shape {
        batch: 2,
        h: 7,
        w: 9,
        cin: 16,
        cout: 32,
    };
    // K = 144: acc ~ 81 (up to 144), times 2048 * row_scale (1 or 2): |y| up to ~6e5.
    let c = ScaleCase {
        in_scale: 2048.0,
        out_scale: 1.0 / 16.0,
        positive: true,
        ..ScaleCase::new(Epi::Bias)
    };
    let want = run_conv3x3("conv3x3_overflow_b2_7x9_16to32", shape, c);
    let over = want
        .iter()
        .filter(|&&v| (v / c.out_scale).abs() > 65504.0)
        .count();
    assert!(
        want.is_empty() || over > want.len() / 4,
        "only {over} large values"
    );
}

#[test]
fn gemm_scales_and_conv3x3_launch_checks() {
    // Host-side validation, no GPU needed.
    let neck = Conv3x3Shape {
        batch: 1,
        h: 64,
        w: 64,
        cin: 256,
        cout: 256,
    };
    assert!(neck.validate().is_ok());
    assert_eq!(
        neck.gemm().unwrap(),
        GemmShape {
            m: 4096,
            n: 256,
            k: 2304
        }
    );
    assert!(matches!(
        Conv3x3Shape { cin: 20, ..neck }.validate(),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        Conv3x3Shape { cout: 255, ..neck }.validate(),
        Err(Error::Unsupported(_))
    ));

    let Some(gpu) = gpu_or_skip("gemm_scales_and_conv3x3_launch_checks") else {
        return;
    };
    let s = gpu.stream();
    let (m, n, k) = (64, 64, 64);
    let shape = GemmShape { m, n, k };
    let a = gpu.zeros_f16(s, m * k).unwrap();
    let w = gpu.zeros_f16(s, n * k).unwrap();
    let short_rows = gpu.zeros_f32(s, m - 1).unwrap();
    let rows = gpu.zeros_f32(s, m).unwrap();
    let mut out = gpu.zeros_f16(s, m * n).unwrap();
    let mut res = gpu.zeros_f32(s, m * n).unwrap();
    let short = GemmScales {
        row_scale: Some(&short_rows),
        ..GemmScales::default()
    };
    let r = gpu_linear(
        &gpu,
        s,
        &a,
        &w,
        None,
        shape,
        short,
        Epilogue::Bias(&mut out),
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "short row_scale: {r:?}");
    let residual_scaled = GemmScales {
        out_scale: 0.5,
        ..GemmScales::default()
    };
    let r = gpu_linear(
        &gpu,
        s,
        &a,
        &w,
        None,
        shape,
        residual_scaled,
        Epilogue::BiasResidual(&mut res),
    );
    assert!(
        matches!(r, Err(Error::Unsupported(_))),
        "residual out_scale: {r:?}"
    );
    let zero = GemmScales {
        in_scale: 0.0,
        row_scale: Some(&rows),
        ..GemmScales::default()
    };
    let r = gpu_linear(&gpu, s, &a, &w, None, shape, zero, Epilogue::Bias(&mut out));
    assert!(matches!(r, Err(Error::Unsupported(_))), "in_scale 0: {r:?}");
    // conv3x3: Cin not a multiple of 8, and a short input.
    let csh = Conv3x3Shape {
        batch: 1,
        h: 4,
        w: 4,
        cin: 12,
        cout: 8,
    };
    let x = gpu.zeros_f16(s, 16 * 16).unwrap();
    let cw = gpu.zeros_f16(s, 8 * 9 * 16).unwrap();
    let mut cout = gpu.zeros_f16(s, 16 * 8).unwrap();
    let r = gpu_conv3x3(
        &gpu,
        s,
        &x,
        &cw,
        None,
        csh,
        GemmScales::default(),
        &mut cout,
    );
    assert!(matches!(r, Err(Error::Unsupported(_))), "cin 12: {r:?}");
    let r = gpu_conv3x3(
        &gpu,
        s,
        &x,
        &cw,
        None,
        Conv3x3Shape {
            cin: 16,
            h: 5,
            ..csh
        },
        GemmScales::default(),
        &mut cout,
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "short input: {r:?}");
}
