//! CUDA kernels against the f32 CPU reference, on fresh random inputs with awkward shapes.
//!
//! Inputs are rounded to fp16 before the reference sees them, so each comparison measures
//! the kernel (fp32 accumulation, fp16 output rounding), not the input quantisation. Without
//! an NVIDIA driver or GPU every GPU test prints why it skips and passes; the shape
//! validation tests at the end need no GPU.
#![cfg(feature = "cuda")]

use rayon::prelude::*;
use samrt::cpu::gemm::{linear, matmul, MatRef, Par};
use samrt::cpu::{gelu::gelu_scalar, layer_norm::layer_norm, softmax::softmax_rows};
use samrt::cuda::attention::{
    encoder_attention, plain_attention, EncoderAttnInputs, EncoderAttnShape, PlainAttnShape,
};
use samrt::cuda::gemm::{linear as gpu_linear, Epilogue, GemmShape};
use samrt::cuda::layer_norm::{layer_norm as gpu_layer_norm, LayerNormShape, LnInput};
use samrt::cuda::{cuda_available, GpuContext};
use samrt::Error;

/// The GPU, or `None` (the test skips) when there is none. With `SAMRT_REQUIRE_GPU=1`
/// (CI under vgpu, tools/gpu-run.sh) a missing GPU fails the test instead: a CUDA test that
/// silently skips there would prove nothing.
fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(g) => Some(g),
        Err(e) if require_gpu() => panic!("{test}: SAMRT_REQUIRE_GPU=1 but no usable GPU: {e}"),
        Err(e) => {
            println!("skipping {test}: no CUDA driver or GPU: {e}");
            None
        }
    }
}

fn require_gpu() -> bool {
    std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// SplitMix64 seeded from the clock: fresh inputs every run, seed printed for replay.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Self {
        let seed = std::env::var("SAMRT_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0x5eed, |d| d.as_nanos() as u64)
            });
        println!("{test}: SAMRT_TEST_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

fn f16r(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

fn round_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| f16r(x)).collect()
}

/// Asserts |got - want| <= atol + rtol*|want| everywhere; reports the worst element.
fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{what}: non-finite {g} at {i} (want {w})");
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        if excess > worst.1 || i == 0 {
            worst = (i, excess);
        }
    }
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max |err| = {max_abs:.3e}");
    let (i, excess) = worst;
    assert!(
        excess <= 0.0,
        "{what}: element {i} got {} want {} (atol {atol}, rtol {rtol})",
        got[i],
        want[i]
    );
}

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
            gpu_linear(&gpu, s, &ad, &wd, &bd, shape, e).unwrap();
            gpu.download_f16(s, &out).unwrap()
        }
        Epi::Residual => {
            let mut r = gpu.upload_f32(s, &resid).unwrap();
            gpu_linear(
                &gpu,
                s,
                &ad,
                &wd,
                &bd,
                shape,
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

fn run_encoder_attention(test: &str, shape: EncoderAttnShape) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let st = gpu.stream();
    let (d, hd, s) = (shape.dim, shape.head_dim(), shape.window);
    let tokens = shape.batch * shape.grid * shape.grid;
    // Spread wide enough that the softmax is far from uniform.
    let qkv = round_f16(&rng.vec(tokens * 3 * d, -1.5, 1.5));
    let bias = rng.vec(3 * d, -1.0, 1.0);
    let rel_h = round_f16(&rng.vec((2 * s - 1) * hd, -0.5, 0.5));
    let rel_w = round_f16(&rng.vec((2 * s - 1) * hd, -0.5, 0.5));
    let want = ref_encoder_attention(shape, &qkv, &round_f16(&bias), &rel_h, &rel_w);

    let qkv_d = gpu.upload_f16(st, &qkv).unwrap();
    let bias_d = gpu.upload_f32(st, &bias).unwrap();
    let rh_d = gpu.upload_f16(st, &rel_h).unwrap();
    let rw_d = gpu.upload_f16(st, &rel_w).unwrap();
    let mut out = gpu.zeros_f16(st, tokens * d).unwrap();
    let inputs = EncoderAttnInputs {
        qkv: &qkv_d,
        qkv_bias: &bias_d,
        rel_pos_h: &rh_d,
        rel_pos_w: &rw_d,
    };
    encoder_attention(&gpu, st, shape, &inputs, &mut out).unwrap();
    let got = gpu.download_f16(st, &out).unwrap();
    // Outputs are convex combinations of |v| <= 1.5: fp16 probabilities (2^-11 relative
    // each) and the fp16 output rounding bound the error by ~1.5e-3.
    assert_close(test, &got, &want, 2e-3, 2e-3);
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
    run_encoder_attention("encoder_attention_windowed_hd64", shape);
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
    run_encoder_attention("encoder_attention_windowed_hd80", shape);
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
    run_encoder_attention("encoder_attention_global_hd64", shape);
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
    run_encoder_attention("encoder_attention_global_hd80", shape);
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
    let r = gpu_linear(&gpu, s, &a, &w, &bias, shape, Epilogue::Bias(&mut out));
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
    for bad in [
        EncoderAttnShape { heads: 16, ..vit_b }, // head_dim 48
        EncoderAttnShape { window: 7, ..vit_b }, // no instantiation
        EncoderAttnShape {
            grid: 32,
            window: 64,
            ..vit_b
        }, // global needs 64x64
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
        "attn_relpos_s14_d64_f16",
        "attn_relpos_s14_d80_f16",
        "attn_relpos_s64_d64_f16",
        "attn_relpos_s64_d80_f16",
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
