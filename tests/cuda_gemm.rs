//! The tensor-core GEMM (bias, GELU and fp32-residual epilogues, their fp16-overflow scales)
//! and the 3x3 convolution as an implicit GEMM, against f32 CPU references on fresh random
//! inputs with ragged shapes.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::*;

use samrt::cpu::ops::conv2d::{conv2d, ConvGeom, Layout};
use samrt::cpu::ops::gelu::gelu_scalar;
use samrt::cpu::ops::gemm::conv3x3_weight_layout;
use samrt::cpu::ops::gemm::{linear, Par};
use samrt::cuda::ops::gemm::{
    conv3x3 as gpu_conv3x3, gemm as gpu_gemm, Conv3x3Shape, Epilogue, GemmScales, GemmShape,
};
use samrt::cuda::GpuContext;
use samrt::Error;

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
            gpu_gemm(
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
            gpu_gemm(
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
        gpu_gemm(&gpu, s, &ad, &wd, b, shape, sc, e).unwrap()
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
    let r = gpu_gemm(
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
    let r = gpu_gemm(
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
    let r = gpu_gemm(&gpu, s, &a, &w, None, shape, zero, Epilogue::Bias(&mut out));
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
