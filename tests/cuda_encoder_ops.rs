//! The image encoder's glue kernels against their CPU twins, on fresh random inputs with
//! awkward shapes: preprocessing fused with the patch im2col, residual-stream
//! initialisation, the per-row scaled fp16 cast and the LayerNorm extensions (scaled
//! inputs, fp32 channel-first output).
//!
//! Without an NVIDIA driver or GPU every GPU test prints why it skips and passes
//! (`SAMRT_REQUIRE_GPU=1` makes it fail instead); the validation tests at the end need no
//! GPU. `SAMRT_TEST_SEED` replays a run.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::{f16r, gpu_or_skip, Rng};

use half::f16;
use samrt::cpu::ops::preprocess_patchify::preprocess;
use samrt::cpu::ops::preprocess_patchify::{patchify_chw, preprocess_patchify as cpu_patchify};
use samrt::cpu::ops::residual_init::residual_init as cpu_residual_init;
use samrt::cuda::model::scales::{cast_rows as cpu_cast_rows, CAST_ROWS_LIMIT};
use samrt::cuda::ops::cast_rows::{cast_rows, CastRowsShape};
use samrt::cuda::ops::layer_norm::{layer_norm_ex, LayerNormShape, LnInput, LnOutput, LnScale};
use samrt::cuda::ops::preprocess_patchify::{
    pack_images, preprocess_patchify, slot_bytes, validate as validate_patchify, PatchGeom,
};
use samrt::cuda::ops::residual_init::{residual_init, ResidualInitShape};
use samrt::cuda::GpuContext;
use samrt::io::image::{from_rgb, resize_bilinear_pillow, resize_shape, RgbImage};
use samrt::Error;

/// Asserts |got - want| <= atol + rtol*|want| everywhere; reports the worst element.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    let tol: Vec<f32> = want.iter().map(|w| atol + rtol * w.abs()).collect();
    assert_within(what, got, want, &tol);
}

/// Asserts |got - want| <= tol elementwise; reports the worst element and the max error.
fn assert_within(what: &str, got: &[f32], want: &[f32], tol: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(tol.len(), want.len(), "{what}: tolerance length");
    let mut worst = (0usize, f32::NEG_INFINITY);
    let mut max_abs = 0.0f32;
    for (i, ((&g, &w), &t)) in got.iter().zip(want).zip(tol).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite {g} at {i} (want {w})");
        let err = (g - w).abs();
        max_abs = max_abs.max(err);
        if err - t > worst.1 {
            worst = (i, err - t);
        }
    }
    println!("{what}: max |err| = {max_abs:.3e}");
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} got {} want {} (tolerance {})",
        got[i],
        want[i],
        tol[i]
    );
}

fn download_bits(gpu: &GpuContext, dev: &cudarc::driver::CudaSlice<u16>) -> Vec<u16> {
    gpu.stream().clone_dtoh(dev).unwrap()
}

// ---------------------------------------------------------------- preprocess + patchify

fn random_image(rng: &mut Rng, w: usize, h: usize) -> RgbImage {
    // Smooth gradients plus noise, so the resize sees structure as well as extremes.
    let (gx, gy) = (rng.uniform(-2.0, 2.0), rng.uniform(-2.0, 2.0));
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let base = 128.0 + gx * x as f32 * (c + 1) as f32 * 0.3 + gy * y as f32 * 0.4;
                let v = base + rng.uniform(-90.0, 90.0);
                data.push(v.clamp(0.0, 255.0) as u8);
            }
        }
    }
    from_rgb(w, h, data).unwrap()
}

/// Originals (w, h) -> resized to long side `img_size` (Pillow-exact), packed into their
/// slots; the GPU patch matrix must equal the CPU one bit for bit after the fp16 rounding
/// (same f32 operations, both round to nearest even), and the CPU one must equal im2col of
/// the official-order `preprocess` output bit for bit.
fn run_patchify(test: &str, geom: PatchGeom, originals: &[(usize, usize)]) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    let mut resized = Vec::new();
    let mut want = Vec::new();
    for &(w, h) in originals {
        let orig = random_image(&mut rng, w, h);
        let (nh, nw) = resize_shape(h, w, geom.img_size);
        let r = resize_bilinear_pillow(&orig, nw, nh);
        let fused = cpu_patchify(&r.data, nh, nw, geom).unwrap();
        let (chw, input_size) = preprocess(&orig, geom.img_size).unwrap();
        assert_eq!(input_size, (nh, nw));
        let official = patchify_chw(&chw, 3, geom).unwrap();
        assert!(
            fused
                .iter()
                .zip(&official)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{test}: CPU fused preprocess differs from preprocess + im2col ({w}x{h})"
        );
        println!("{test}: {w}x{h} -> {nw}x{nh}");
        want.extend(fused.iter().map(|&v| f16::from_f32(v).to_bits()));
        resized.push(r);
    }
    let images: Vec<(&[u8], usize, usize)> = resized
        .iter()
        .map(|r| (r.data.as_slice(), r.height, r.width))
        .collect();
    let (mut pixels, sizes) = pack_images(geom, &images).unwrap();
    // Garbage in the unused part of every slot: the kernel must not read it.
    let slot = slot_bytes(geom);
    for (b, r) in resized.iter().enumerate() {
        let used = r.data.len();
        pixels[b * slot + used..(b + 1) * slot]
            .iter_mut()
            .for_each(|p| *p = rng.next() as u8);
    }
    let dev_pixels = s.clone_htod(&pixels).unwrap();
    let dev_sizes = s.clone_htod(&sizes).unwrap();
    let batch = images.len();
    let mut out = gpu.zeros_f16(s, want.len()).unwrap();
    preprocess_patchify(&gpu, s, &dev_pixels, &dev_sizes, batch, geom, &mut out).unwrap();
    let got = download_bits(&gpu, &out);
    let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
    let (rows, cols) = (geom.rows(), geom.cols());
    assert!(
        bad.is_empty(),
        "{test}: {} of {} values differ; first at image {} patch {} col {}: got {:#06x} want {:#06x}",
        bad.len(),
        want.len(),
        bad[0] / (rows * cols),
        bad[0] / cols % rows,
        bad[0] % cols,
        got[bad[0]],
        want[bad[0]]
    );
    println!("{test}: {} fp16 values bit-identical", want.len());
}

#[test]
fn preprocess_patchify_matches_cpu_at_256() {
    // 640x427 -> 256x171 (landscape), 300x517 -> 149x256 (portrait, ragged last patch
    // column), 256x256 (no resize), 37x1000 -> 9x256 (narrower than one patch).
    let geom = PatchGeom {
        img_size: 256,
        patch: 16,
    };
    run_patchify(
        "preprocess_patchify_256",
        geom,
        &[(640, 427), (300, 517), (256, 256), (37, 1000)],
    );
}

#[test]
fn preprocess_patchify_other_patch_sizes() {
    // Patch 8 on a 5x5 grid and patch 32 on a 3x3 grid (4 chunks per patch row).
    let p8 = PatchGeom {
        img_size: 40,
        patch: 8,
    };
    run_patchify(
        "preprocess_patchify_p8",
        p8,
        &[(60, 40), (13, 40), (40, 40)],
    );
    let p32 = PatchGeom {
        img_size: 96,
        patch: 32,
    };
    run_patchify("preprocess_patchify_p32", p32, &[(50, 100), (97, 31)]);
}

#[test]
fn preprocess_patchify_matches_cpu_at_1024() {
    let geom = PatchGeom {
        img_size: 1024,
        patch: 16,
    };
    run_patchify("preprocess_patchify_1024", geom, &[(1500, 1001)]);
}

// ---------------------------------------------------------------- residual init

fn run_residual_init(test: &str, shape: ResidualInitShape) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    let n = shape.tokens * shape.dim;
    let pos: Vec<f32> = rng.vec(n, -3.0, 3.0).into_iter().map(f16r).collect();
    let want = cpu_residual_init(&pos, shape.batch);
    let dev_pos = gpu.upload_f16(s, &pos).unwrap();
    // Garbage first: the kernel must overwrite every element.
    let mut res = gpu.upload_f32(s, &vec![f32::NAN; want.len()]).unwrap();
    residual_init(&gpu, s, &dev_pos, &mut res, shape).unwrap();
    let got = gpu.download_f32(s, &res).unwrap();
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "{test}: residual stream differs from the widened position embedding"
    );
    println!("{test}: {} values bit-identical", want.len());
}

#[test]
fn residual_init_matches_cpu() {
    // 7x7 grid, D = 40 (1,960 values: a partial last block), batch 3; then 16x16 x 768.
    run_residual_init(
        "residual_init_7x7_d40",
        ResidualInitShape {
            batch: 3,
            tokens: 49,
            dim: 40,
        },
    );
    run_residual_init(
        "residual_init_16x16_d768",
        ResidualInitShape {
            batch: 2,
            tokens: 256,
            dim: 768,
        },
    );
}

// ---------------------------------------------------------------- cast_rows + scaled LN

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

/// Two-pass LayerNorm of each row in f64 (the exact value the kernels approximate).
fn ln_f64(x: &[f64], dim: usize, gamma: &[f32], beta: &[f32], eps: f64) -> Vec<f64> {
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

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// cast_rows must equal its CPU twin bit for bit (values and scales), and LayerNorm of the
/// cast rows with their row scales must equal LayerNorm of the fp32 rows up to the fp16
/// rounding of the input.
fn run_cast_then_layer_norm(test: &str, rows: usize, dim: usize, f32_ln_check: bool) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    let eps = 1e-6f32;
    let x = stream_rows(&mut rng, rows, dim);
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let (want_h, want_s) = cpu_cast_rows(&x, dim);

    let dx = gpu.upload_f32(s, &x).unwrap();
    let mut xh = gpu.zeros_f16(s, rows * dim).unwrap();
    let mut rs = gpu.upload_f32(s, &vec![f32::NAN; rows]).unwrap();
    let shape = CastRowsShape { rows, dim };
    cast_rows(&gpu, s, &dx, &mut xh, &mut rs, shape).unwrap();
    let got_h = download_bits(&gpu, &xh);
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
    layer_norm_ex(
        &gpu,
        s,
        LnInput::F16(&xh),
        scale,
        &g,
        &b,
        LnOutput::F16(&mut out),
        ln_shape,
        eps,
    )
    .unwrap();
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
        layer_norm_ex(
            &gpu,
            s,
            LnInput::F32(&ds),
            scale,
            &g,
            &b,
            LnOutput::F16(&mut out),
            ln_shape,
            eps,
        )
        .unwrap();
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

#[test]
fn cast_rows_then_layer_norm_matches_f64() {
    // 264 columns: the last 256-column chunk of a warp's loop holds 8 values.
    run_cast_then_layer_norm("cast_rows_ln_d264", 77, 264, true);
    run_cast_then_layer_norm("cast_rows_ln_d768", 23, 768, false);
}

/// A scalar `in_scale` (and per-row scales on top) with rows whose true variance is
/// comparable to eps, so eps / s^2 is what decides the result.
#[test]
fn layer_norm_in_scale_folds_into_eps() {
    let test = "layer_norm_in_scale";
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
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
    // 2^-10: true std ~1e-3, variance ~1.3e-6 against eps 1e-6. 0.37: not a power of two.
    for (in_scale, per_row) in [
        (2f32.powi(-10), false),
        (0.37, false),
        (2f32.powi(-9), true),
    ] {
        let scale = LnScale {
            row_scale: per_row.then_some(&rs as _),
            in_scale,
        };
        layer_norm_ex(
            &gpu,
            s,
            LnInput::F16(&xs),
            scale,
            &g,
            &b,
            LnOutput::F16(&mut out),
            shape,
            eps,
        )
        .unwrap();
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
}

// ---------------------------------------------------------------- channel-first LN

fn run_layer_norm_cf(test: &str, batch: usize, tokens: usize, dim: usize, scaled: bool) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
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
    layer_norm_ex(
        &gpu,
        s,
        LnInput::F16(&xd),
        scale,
        &g,
        &b,
        LnOutput::F32ChannelFirst {
            out: &mut out,
            tokens,
        },
        LayerNormShape { rows, dim },
        eps,
    )
    .unwrap();
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

#[test]
fn layer_norm_channel_first_matches_f64() {
    // 7x7 tokens: one full and one 17-token block per image; 264 channels: two column
    // slices, the second 8 wide.
    run_layer_norm_cf("layer_norm_cf_b2_t49_c264", 2, 49, 264, false);
    run_layer_norm_cf("layer_norm_cf_b3_t64_c256_scaled", 3, 64, 256, true);
    run_layer_norm_cf("layer_norm_cf_b1_t20_c1288", 1, 20, 1288, false);
}

// ---------------------------------------------------------------- launcher checks (GPU)

#[test]
fn launchers_reject_bad_buffers() {
    let test = "launchers_reject_bad_buffers";
    let Some(gpu) = gpu_or_skip(test) else { return };
    let s = gpu.stream();
    let geom = PatchGeom {
        img_size: 32,
        patch: 16,
    };
    let slot = slot_bytes(geom);
    let pixels = s.clone_htod(&vec![7u8; 2 * slot]).unwrap();
    // Malformed device-side sizes are clamped to [0, img_size]: no read outside the slot
    // (vgpu would fault), padding (zero) for h = 0.
    let sizes = s.clone_htod(&[-5i32, 1 << 30, 1 << 30, 20]).unwrap();
    let mut out = gpu.zeros_f16(s, 2 * geom.len() + 8).unwrap();
    preprocess_patchify(&gpu, s, &pixels, &sizes, 2, geom, &mut out).unwrap();
    let got = gpu.download_f16(s, &out).unwrap();
    assert!(got[..geom.len()].iter().all(|&v| v == 0.0));
    let seven = f16r((7.0 - 123.675) / 58.395);
    assert_eq!(got[geom.len()], seven);
    // Pixel buffer one byte short, sizes short, output too short for three images, output
    // view 8 bytes in (misaligned).
    let short = s.clone_htod(&vec![7u8; 2 * slot - 1]).unwrap();
    for r in [
        preprocess_patchify(&gpu, s, &short, &sizes, 2, geom, &mut out),
        preprocess_patchify(&gpu, s, &pixels, &sizes.slice(1..), 2, geom, &mut out),
        preprocess_patchify(&gpu, s, &pixels, &sizes, 3, geom, &mut out),
    ] {
        assert!(matches!(r, Err(Error::Cuda(_))));
    }
    let mut view = out.slice_mut(4..);
    assert!(matches!(
        preprocess_patchify(&gpu, s, &pixels, &sizes, 2, geom, &mut view),
        Err(Error::Cuda(_))
    ));

    let pos = gpu.zeros_f16(s, 64).unwrap();
    let mut res = gpu.zeros_f32(s, 128).unwrap();
    let ri = ResidualInitShape {
        batch: 2,
        tokens: 8,
        dim: 8,
    };
    assert!(residual_init(&gpu, s, &pos, &mut res, ri).is_ok());
    assert!(matches!(
        residual_init(
            &gpu,
            s,
            &pos,
            &mut res,
            ResidualInitShape { batch: 3, ..ri }
        ),
        Err(Error::Cuda(_))
    ));
    let mut res_view = res.slice_mut(2..);
    assert!(matches!(
        residual_init(
            &gpu,
            s,
            &pos,
            &mut res_view,
            ResidualInitShape { batch: 1, ..ri }
        ),
        Err(Error::Cuda(_))
    ));

    let x = gpu.zeros_f32(s, 64).unwrap();
    let mut xh = gpu.zeros_f16(s, 64).unwrap();
    let mut rs = gpu.zeros_f32(s, 3).unwrap();
    let cr = CastRowsShape { rows: 4, dim: 16 };
    assert!(matches!(
        cast_rows(&gpu, s, &x, &mut xh, &mut rs, cr),
        Err(Error::Cuda(_))
    ));

    let gamma = gpu.zeros_f32(s, 16).unwrap();
    let mut y32 = gpu.zeros_f32(s, 64).unwrap();
    let ln = LayerNormShape { rows: 4, dim: 16 };
    // 4 rows are not whole images of 3 tokens; fp32 input has no channel-first variant;
    // row_scale shorter than the rows.
    for (tokens, f32_in) in [(3, false), (2, true)] {
        let input = if f32_in {
            LnInput::F32(&x)
        } else {
            LnInput::F16(&xh)
        };
        let r = layer_norm_ex(
            &gpu,
            s,
            input,
            LnScale::NONE,
            &gamma,
            &gamma,
            LnOutput::F32ChannelFirst {
                out: &mut y32,
                tokens,
            },
            ln,
            1e-6,
        );
        assert!(matches!(r, Err(Error::Unsupported(_))), "tokens {tokens}");
    }
    let short = LnScale {
        row_scale: Some(&rs),
        in_scale: 1.0,
    };
    let r = layer_norm_ex(
        &gpu,
        s,
        LnInput::F16(&xh),
        short,
        &gamma,
        &gamma,
        LnOutput::F32ChannelFirst {
            out: &mut y32,
            tokens: 2,
        },
        ln,
        1e-6,
    );
    assert!(matches!(r, Err(Error::Cuda(_))));
    gpu.synchronize(s).unwrap();
}

// ---------------------------------------------------------------- validation (no GPU)

#[test]
fn encoder_op_shapes_are_validated() {
    let geom = PatchGeom {
        img_size: 1024,
        patch: 16,
    };
    assert!(validate_patchify(geom, 1).is_ok());
    assert!(matches!(
        validate_patchify(geom, 0),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        validate_patchify(geom, 65_536),
        Err(Error::Unsupported(_))
    ));
    for bad in [
        PatchGeom {
            img_size: 1024,
            patch: 12,
        },
        PatchGeom {
            img_size: 1000,
            patch: 16,
        },
        PatchGeom {
            img_size: 32768,
            patch: 16,
        },
    ] {
        assert!(
            matches!(validate_patchify(bad, 1), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let small = PatchGeom {
        img_size: 32,
        patch: 16,
    };
    let rgb = vec![0u8; 32 * 20 * 3];
    let (pixels, sizes) = pack_images(small, &[(&rgb, 20, 32), (&rgb, 32, 20)]).unwrap();
    assert_eq!(pixels.len(), 2 * slot_bytes(small));
    assert_eq!(sizes, vec![20, 32, 32, 20]);
    for (h, w) in [(20, 31), (33, 20), (0, 32)] {
        let r = pack_images(small, &[(&rgb, h, w)]);
        assert!(matches!(r, Err(Error::Image(_))), "{h}x{w}");
    }
    assert!(matches!(
        pack_images(small, &[(&rgb[1..], 20, 32)]),
        Err(Error::Image(_))
    ));

    assert!(CastRowsShape { rows: 3, dim: 8 }.validate().is_ok());
    for bad in [
        CastRowsShape { rows: 0, dim: 8 },
        CastRowsShape { rows: 3, dim: 12 },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    let ri = ResidualInitShape {
        batch: 1,
        tokens: 4096,
        dim: 768,
    };
    assert!(ri.validate().is_ok());
    for bad in [
        ResidualInitShape { batch: 0, ..ri },
        ResidualInitShape {
            tokens: 5,
            dim: 3,
            ..ri
        },
        ResidualInitShape {
            batch: usize::MAX,
            ..ri
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
    assert!(LnScale::NONE.validate(1e-6).is_ok());
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY, 1e-30] {
        let sc = LnScale {
            row_scale: None,
            in_scale: s,
        };
        assert!(
            matches!(sc.validate(1e-6), Err(Error::Unsupported(_))),
            "{s}"
        );
    }
}
