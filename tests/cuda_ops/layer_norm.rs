//! LayerNorm (fp16 or fp32 input, scaled inputs, fp32 channel-first output) and the per-row
//! scaled fp16 cast that feeds it, against the CPU LayerNorm or an f64 two-pass one.

use crate::common::gpu::{assert_close, assert_within, f16r, round_f16, Rng};
use crate::download_bits;
use crate::refs::{ln_f64, to_f32};
use cudarc::driver::CudaSlice;
use samrt::cpu::ops::layer_norm::layer_norm;
use samrt::cuda::model::scales::{cast_rows as cpu_cast_rows, CAST_ROWS_LIMIT};
use samrt::cuda::ops::cast_rows::{cast_rows, CastRowsShape};
use samrt::cuda::ops::layer_norm::{
    layer_norm as gpu_layer_norm, layer_norm_ex, LayerNormShape, LnInput, LnOutput, LnScale,
};
use samrt::cuda::GpuContext;

pub fn run_layer_norm(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    rows: usize,
    dim: usize,
    f32_input: bool,
    eps: f32,
) {
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
        gpu_layer_norm(gpu, s, LnInput::F32(&xd), &g, &b, &mut out, shape, eps).unwrap();
    } else {
        let xd = gpu.upload_f16(s, &x).unwrap();
        gpu_layer_norm(gpu, s, LnInput::F16(&xd), &g, &b, &mut out, shape, eps).unwrap();
    }
    let got = gpu.download_f16(s, &out).unwrap();
    // fp16 output: half an ulp is 2^-11 relative; 1e-3 absolute covers values near zero
    // and the fp32 (GPU) vs f64 (CPU) statistics.
    assert_close(test, &got, &want, 1e-3, 1e-3);
}

/// Residual-stream-like rows of five kinds: ~1e6 with a spread of 1e5 (scale 64 or 128),
/// +-3e6 (scale 256), tiny values whose variance is ~eps (scale 1, eps matters), moderate
/// values with an offset (scale 1), and values straddling 2^14 (scale 1 or 2); plus rows
/// whose maximum sits exactly on a scale boundary.
fn stream_rows(rng: &mut Rng, rows: usize, dim: usize) -> Vec<f32> {
    let mut x = vec![0f32; rows * dim];
    for (r, row) in x.chunks_mut(dim).enumerate() {
        let (lo, hi) = match r % 5 {
            0 => (9.0e5, 1.1e6),
            1 => (-3.0e6, 3.0e6),
            2 => (3.0e-3, 7.0e-3),
            3 => (7.0, 11.0),
            _ => (-16000.0, 16400.0),
        };
        row.iter_mut().for_each(|v| *v = rng.uniform(lo, hi));
        let i = rng.below(dim);
        match r % 11 {
            7 => row[i] = CAST_ROWS_LIMIT, // exactly 2^14: scale 1
            8 => row[i] = -f32::from_bits(CAST_ROWS_LIMIT.to_bits() + 1), // just above: 2
            9 => row[i] = 65504.0 * 64.0,  // scale 256
            _ => {}
        }
    }
    x
}

/// cast_rows must equal its CPU twin bit for bit (values and scales), and LayerNorm of the
/// cast rows with their row scales must equal LayerNorm of the fp32 rows up to the fp16
/// rounding of the input.
pub fn run_cast_then_layer_norm(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    rows: usize,
    dim: usize,
    f32_ln_check: bool,
) {
    let s = gpu.stream();
    let eps = 1e-6f32;
    let x = stream_rows(rng, rows, dim);
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let (want_h, want_s) = cpu_cast_rows(&x, dim);

    let dx = gpu.upload_f32(s, &x).unwrap();
    let mut xh = gpu.zeros_f16(s, rows * dim).unwrap();
    let mut rs = gpu.upload_f32(s, &vec![f32::NAN; rows]).unwrap();
    let shape = CastRowsShape { rows, dim };
    cast_rows(gpu, s, &dx, &mut xh, &mut rs, shape).unwrap();
    let got_h = download_bits(gpu, &xh);
    let got_s = gpu.download_f32(s, &rs).unwrap();
    assert_eq!(got_s, want_s, "{test}: row scales");
    let bad = (0..rows * dim)
        .filter(|&i| got_h[i] != want_h[i].to_bits())
        .count();
    assert_eq!(bad, 0, "{test}: {bad} cast values differ from the CPU twin");
    assert!(got_s.contains(&1.0) && got_s.contains(&2.0) && got_s.contains(&256.0));
    println!(
        "{test}: cast bit-identical, scales {:?}",
        &got_s[..5.min(rows)]
    );

    let g = gpu.upload_f32(s, &gamma).unwrap();
    let b = gpu.upload_f32(s, &beta).unwrap();
    let mut out = gpu.zeros_f16(s, rows * dim).unwrap();
    let scale = LnScale {
        row_scale: Some(&rs),
        in_scale: 1.0,
    };
    let ln_shape = LayerNormShape { rows, dim };
    let ln = |input: LnInput<'_>, out: &mut CudaSlice<u16>| {
        let output = LnOutput::F16(out);
        layer_norm_ex(gpu, s, input, scale, &g, &b, output, ln_shape, eps).unwrap();
    };
    ln(LnInput::F16(&xh), &mut out);
    let got = gpu.download_f16(s, &out).unwrap();

    // (a) Against LN of the dequantised rows f16(x / s) * s, in f64: only the kernel's own
    // error remains, the fp16 output rounding (2^-11 relative) and fp32 statistics.
    let deq: Vec<f64> = want_h
        .iter()
        .enumerate()
        .map(|(i, h)| h.to_f64() * want_s[i / dim] as f64)
        .collect();
    let want_deq = to_f32(&ln_f64(&deq, dim, &gamma, &beta, eps as f64));
    assert_close(
        &format!("{test} vs LN(dequantised)"),
        &got,
        &want_deq,
        1e-3,
        1e-3,
    );

    // (b) Against LN of the true fp32 rows, in f64. With e the row's largest input rounding
    // error |x - deq| and sigma = sqrt(var + eps), a perturbation of at most e moves the
    // mean and sigma by at most e each, so y moves by at most (2 + |y|) e / (sigma - e);
    // times |gamma|, plus the kernel's own tolerance from (a).
    let xt: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let want_true = ln_f64(&xt, dim, &gamma, &beta, eps as f64);
    let mut tol = Vec::with_capacity(rows * dim);
    for r in 0..rows {
        let row = &xt[r * dim..(r + 1) * dim];
        let mean = row.iter().sum::<f64>() / dim as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
        let sigma = (var + eps as f64).sqrt();
        let e = (0..dim)
            .map(|c| (row[c] - deq[r * dim + c]).abs())
            .fold(0.0, f64::max);
        for c in 0..dim {
            let y = (row[c] - mean) / sigma;
            let input = gamma[c] as f64 * (2.0 + y.abs()) * e / (sigma - e);
            let w = want_true[r * dim + c];
            tol.push((input + 1e-3 + 1e-3 * w.abs()) as f32);
        }
    }
    assert_within(
        &format!("{test} vs LN(x) in f64"),
        &got,
        &to_f32(&want_true),
        &tol,
    );

    if f32_ln_check {
        // The fp32 input path with the same row scales: x_stored = x / s exactly in f32.
        let stored: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v / want_s[i / dim])
            .collect();
        let ds = gpu.upload_f32(s, &stored).unwrap();
        ln(LnInput::F32(&ds), &mut out);
        let got32 = gpu.download_f16(s, &out).unwrap();
        assert_close(
            &format!("{test} f32 input vs LN(x) in f64"),
            &got32,
            &to_f32(&want_true),
            1e-3,
            1e-3,
        );
    }
}

/// A scalar `in_scale` (and per-row scales on top) with rows whose true variance is
/// comparable to eps, so eps / s^2 is what decides the result.
pub fn run_layer_norm_in_scale(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    in_scale: f32,
    per_row: bool,
) {
    let s = gpu.stream();
    let (rows, dim, eps) = (45, 136, 1e-6f32);
    let mut stored = rng.vec(rows * dim, -2.0, 2.0);
    for (r, row) in stored.chunks_mut(dim).enumerate() {
        let off = (r % 5) as f32 - 2.0;
        row.iter_mut().for_each(|v| *v = f16r(*v + off));
    }
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let row_scale: Vec<f32> = (0..rows).map(|r| 2f32.powi(r as i32 % 5 - 2)).collect();
    let xs = gpu.upload_f16(s, &stored).unwrap();
    let g = gpu.upload_f32(s, &gamma).unwrap();
    let b = gpu.upload_f32(s, &beta).unwrap();
    let rs = gpu.upload_f32(s, &row_scale).unwrap();
    let mut out = gpu.zeros_f16(s, rows * dim).unwrap();
    let shape = LayerNormShape { rows, dim };
    let scale = LnScale {
        row_scale: per_row.then_some(&rs as _),
        in_scale,
    };
    let output = LnOutput::F16(&mut out);
    layer_norm_ex(gpu, s, LnInput::F16(&xs), scale, &g, &b, output, shape, eps).unwrap();
    let got = gpu.download_f16(s, &out).unwrap();
    let xt: Vec<f64> = stored
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let rs = if per_row { row_scale[i / dim] } else { 1.0 };
            v as f64 * in_scale as f64 * rs as f64
        })
        .collect();
    let want = to_f32(&ln_f64(&xt, dim, &gamma, &beta, eps as f64));
    // The case must exercise eps: without it the result moves by far more than the
    // tolerance.
    let no_eps = to_f32(&ln_f64(&xt, dim, &gamma, &beta, 0.0));
    let eps_effect = want
        .iter()
        .zip(&no_eps)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if in_scale < 0.01 {
        assert!(
            eps_effect > 0.05,
            "{test}: eps barely matters ({eps_effect})"
        );
    }
    // fp16 output (2^-11 relative) and fp32 statistics.
    assert_close(
        &format!("{test} in_scale {in_scale} per_row {per_row} (eps effect {eps_effect:.2e})"),
        &got,
        &want,
        1e-3,
        1e-3,
    );
}

/// LayerNorm with fp32 channel-first output ([batch][dim][tokens]).
pub fn run_layer_norm_cf(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    batch: usize,
    tokens: usize,
    dim: usize,
    scaled: bool,
) {
    let s = gpu.stream();
    let rows = batch * tokens;
    let eps = 1e-6f32;
    let mut x = rng.vec(rows * dim, -2.0, 2.0);
    for (r, row) in x.chunks_mut(dim).enumerate() {
        let off = (r % 7) as f32 - 3.0;
        row.iter_mut().for_each(|v| *v = f16r(*v + off));
    }
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let row_scale: Vec<f32> = (0..rows).map(|r| 2f32.powi((r % 9) as i32 - 4)).collect();
    let in_scale = if scaled { 2f32.powi(-6) } else { 1.0 };

    let xd = gpu.upload_f16(s, &x).unwrap();
    let g = gpu.upload_f32(s, &gamma).unwrap();
    let b = gpu.upload_f32(s, &beta).unwrap();
    let rs = gpu.upload_f32(s, &row_scale).unwrap();
    let mut out = gpu.upload_f32(s, &vec![f32::NAN; rows * dim]).unwrap();
    let scale = LnScale {
        row_scale: scaled.then_some(&rs as _),
        in_scale,
    };
    let output = LnOutput::F32ChannelFirst {
        out: &mut out,
        tokens,
    };
    let shape = LayerNormShape { rows, dim };
    layer_norm_ex(gpu, s, LnInput::F16(&xd), scale, &g, &b, output, shape, eps).unwrap();
    let got = gpu.download_f32(s, &out).unwrap();

    let xt: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = if scaled {
                row_scale[i / dim] * in_scale
            } else {
                1.0
            };
            v as f64 * k as f64
        })
        .collect();
    let token_major = ln_f64(&xt, dim, &gamma, &beta, eps as f64);
    let mut want = vec![0f32; rows * dim];
    for bi in 0..batch {
        for t in 0..tokens {
            for c in 0..dim {
                want[(bi * dim + c) * tokens + t] = token_major[(bi * tokens + t) * dim + c] as f32;
            }
        }
    }
    // fp32 output: the error is the fp32 statistics'. The sums of dim values (offsets up to
    // 3, spread 2) carry ~sqrt(dim) * 2^-24 * 5 ~ 5e-6 relative rounding, divided by sigma
    // ~1.15 and times gamma <= 1.5, plus the f32 rounding of y itself: 2e-5 absolute and
    // 2e-5 relative leave a few times that.
    assert_close(test, &got, &want, 2e-5, 2e-5);
}
