//! Runner of the folded token->image attention (`attn_fold_t2i` + its combine) against
//! `cpu::ops::attn_fold_t2i`, with an elementwise error bound derived from the kernel's
//! roundings, a batch-of-prompts vs one-prompt bit-identity check, and the launchers'
//! buffer checks.

use cudarc::driver::CudaSlice;
use samrt::cpu::ops::attn_fold_t2i::attn_fold_t2i as cpu_fold_t2i;
use samrt::cuda::ops::attn_fold_t2i::{attn_fold_t2i, attn_fold_t2i_combine, AttnFoldShape};
use samrt::cuda::GpuContext;
use samrt::Error;

use super::common::gpu::{assert_close, assert_within, gpu_or_skip, round_f16, Rng};
use super::refs::{assert_each_prompt_alone, normal};

/// A row's shape: `heads` of the unfolded attention over an internal width of 128 (SAM's
/// decoder: 8 heads of 16), so `scale = 1 / sqrt(128 / heads)`.
pub fn fold(
    batch: usize,
    tokens: usize,
    heads: usize,
    hw: usize,
    dim: usize,
    image_shared: bool,
) -> AttnFoldShape {
    AttnFoldShape {
        batch,
        tokens,
        heads,
        hw,
        dim,
        head_dim: 128 / heads,
        image_shared,
    }
}

/// Both passes through a scratch of NaNs (a chunk state pass 1 failed to write poisons its
/// row), the fp32 output downloaded.
fn run_gpu(gpu: &GpuContext, shape: AttnFoldShape, qf: &[f32], xpe: &[f32], x: &[f32]) -> Vec<f32> {
    let s = gpu.stream();
    let dq = gpu.upload_f32(s, qf).unwrap();
    let (dk, dv): (CudaSlice<u16>, CudaSlice<u16>) = (
        gpu.upload_f16(s, xpe).unwrap(),
        gpu.upload_f16(s, x).unwrap(),
    );
    let mut part = gpu
        .upload_f32(s, &vec![f32::NAN; shape.partial_len()])
        .unwrap();
    let mut y = gpu.zeros_f32(s, shape.folded_len()).unwrap();
    attn_fold_t2i(gpu, s, shape, &dq, &dk, &dv, &mut part).unwrap();
    attn_fold_t2i_combine(gpu, s, shape, &part, &mut y).unwrap();
    gpu.download_f32(s, &y).unwrap()
}

/// The kernel's error bound per output element, from the same inputs the reference sees
/// (`qf` rounded to fp16 as the kernel stages it), all in f64. Per folded row:
/// - the logits come from fp16 products summed in fp32 on the tensor cores: off by at most
///   `dim * 2^-22 * scale * sum_i |q_i xpe_ji|` (`delta`; 2^-22 allows the H100's
///   truncating accumulation), so two weights' ratio is off by at most `2 delta`;
/// - each weight is rounded to fp16 for P X (2^-12 relative) and the exp2 / FFMA of the
///   exponent add ~2^-18: weights off by a relative `eps <= 2 delta + 2^-11`. The kernel's
///   sum l adds up the same rounded weights, so y is a weighted mean with perturbed
///   weights: `|dy_c| <= eps / (1 - eps) * sum_j p_j |x_jc - y_c|`;
/// - weights (relative to the chunk's reference max, which never exceeds the true max, so
///   the largest weight is >= 1) below fp16's normal range, 2^-14, round absolutely by
///   2^-25, at most 256 per chunk against a chunk sum >= 1: `2^-17 max_j |x_jc - y_c|`;
/// - the fp32 accumulation of O and l (<= 256 terms per chunk on the tensor cores, then
///   <= 16 chunks) is within ~2^-14 of the absolute sums: `2^-13 sum_j p_j |x_jc|`.
///
/// The sum of the terms times 1.25 (second-order terms) is the tolerance. Also returns this
/// f64 y, which cross-checks the CPU reference.
fn bound(shape: AttnFoldShape, q16: &[f32], xpe: &[f32], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (rows, hw, dim) = (shape.rows(), shape.hw, shape.dim);
    let scale = shape.scale() as f64;
    let mut tol = vec![0.0f32; shape.folded_len()];
    let mut y_out = vec![0.0f32; shape.folded_len()];
    for b in 0..shape.batch {
        let side = if shape.image_shared { 0 } else { b * hw * dim };
        let row = |j: usize, m: &[f32]| -> Vec<f64> {
            m[side + j * dim..side + (j + 1) * dim]
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        let (keys, vals): (Vec<Vec<f64>>, Vec<Vec<f64>>) =
            (0..hw).map(|j| (row(j, xpe), row(j, x))).unzip();
        for r in 0..rows {
            let at = (b * rows + r) * dim;
            let q: Vec<f64> = q16[at..at + dim].iter().map(|&v| v as f64).collect();
            let (mut logit, mut mag) = (vec![0.0f64; hw], 0.0f64);
            for (j, k) in keys.iter().enumerate() {
                logit[j] = scale * q.iter().zip(k).map(|(a, c)| a * c).sum::<f64>();
                mag = mag.max(scale * q.iter().zip(k).map(|(a, c)| (a * c).abs()).sum::<f64>());
            }
            let m = logit.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let p: Vec<f64> = logit.iter().map(|l| (l - m).exp()).collect();
            let z: f64 = p.iter().sum();
            let delta = dim as f64 * 2f64.powi(-22) * mag;
            let eps = 2.0 * delta + 2f64.powi(-11);
            for c in 0..dim {
                let y = p.iter().zip(&vals).map(|(w, v)| w * v[c]).sum::<f64>() / z;
                let (mut spread, mut abs, mut far) = (0.0f64, 0.0f64, 0.0f64);
                for (w, v) in p.iter().zip(&vals) {
                    spread += w * (v[c] - y).abs();
                    abs += w * v[c].abs();
                    far = far.max((v[c] - y).abs());
                }
                let t = eps / (1.0 - eps) * spread / z
                    + 2f64.powi(-17) * far
                    + 2f64.powi(-13) * abs / z;
                tol[at + c] = (1.25 * t) as f32;
                y_out[at + c] = y as f32;
            }
        }
    }
    (tol, y_out)
}

pub fn run_attn_fold_t2i(gpu: &GpuContext, rng: &mut Rng, shape: AttnFoldShape) {
    let (rows, dim) = (shape.rows(), shape.dim);
    let sides = if shape.image_shared { 1 } else { shape.batch };
    // Image rows ~ N(0, 1) (xpe and x independent, so swapping them cannot pass); folded
    // rows ~ N(0, sigma) with sigma giving logits of std 1-3 after `scale`, as trained
    // models' are: scale * sigma * sqrt(dim) = 1..3.
    let xpe = round_f16(&normal(rng, sides * shape.hw * dim, 1.0));
    let x = round_f16(&normal(rng, sides * shape.hw * dim, 1.0));
    let mut qf = normal(rng, shape.folded_len(), 1.0);
    for row in qf.chunks_exact_mut(dim) {
        let sigma = rng.uniform(1.0, 3.0) / (shape.scale() * (dim as f32).sqrt());
        row.iter_mut().for_each(|v| *v *= sigma);
    }
    let got = run_gpu(gpu, shape, &qf, &xpe, &x);
    // The kernel stages Q' in fp16 (round to nearest): the reference sees that rounding.
    let q16 = round_f16(&qf);
    let tk = (shape.batch, shape.tokens, shape.heads);
    let want = cpu_fold_t2i(
        &q16,
        &xpe,
        &x,
        tk,
        (shape.hw, dim),
        shape.scale(),
        shape.image_shared,
    );
    let (tol, direct) = bound(shape, &q16, &xpe, &x);
    // Both f64 sums rounded once to f32: within an ulp or two.
    assert_close("attn_fold_t2i reference", &want, &direct, 1e-7, 1e-6);
    let worst = got
        .iter()
        .zip(&want)
        .zip(&tol)
        .map(|((g, w), t)| (g - w).abs() / t)
        .fold(0.0f32, f32::max);
    println!("attn_fold_t2i: max |err| / bound = {worst:.3}");
    assert_within("attn_fold_t2i", &got, &want, &tol);

    // Each prompt alone (batch 1, its own or the shared image side) gives the same bits.
    if shape.batch > 1 {
        let one = AttnFoldShape { batch: 1, ..shape };
        let img = shape.hw * dim;
        let alone = |b: usize| {
            let side = if shape.image_shared { 0 } else { b * img };
            let q = &qf[b * rows * dim..(b + 1) * rows * dim];
            run_gpu(gpu, one, q, &xpe[side..side + img], &x[side..side + img])
        };
        assert_each_prompt_alone("attn_fold_t2i", shape.batch, &got, rows * dim, alone);
    }
}

#[test]
fn attn_fold_t2i_rejects_bad_buffers_and_shapes() {
    let Some(gpu) = gpu_or_skip("attn_fold_t2i_rejects_bad_buffers_and_shapes") else {
        return;
    };
    let s = gpu.stream();
    let shape = fold(2, 3, 4, 37, 128, false);
    let q = gpu.zeros_f32(s, shape.folded_len()).unwrap();
    let img = gpu.zeros_f16(s, shape.image_len()).unwrap();
    let short_img = gpu.zeros_f16(s, shape.image_len() - 8).unwrap();
    let mut part = gpu.zeros_f32(s, shape.partial_len()).unwrap();
    let mut short_part = gpu.zeros_f32(s, shape.partial_len() - 1).unwrap();
    let mut y = gpu.zeros_f32(s, shape.folded_len()).unwrap();
    let mut short_y = gpu.zeros_f32(s, shape.folded_len() - 1).unwrap();
    let cuda_err = |r: samrt::Result<()>| assert!(matches!(r, Err(Error::Cuda(_))), "{r:?}");
    cuda_err(attn_fold_t2i(
        &gpu, s, shape, &q, &short_img, &img, &mut part,
    ));
    cuda_err(attn_fold_t2i(
        &gpu, s, shape, &q, &img, &short_img, &mut part,
    ));
    cuda_err(attn_fold_t2i(
        &gpu,
        s,
        shape,
        &q,
        &img,
        &img,
        &mut short_part,
    ));
    cuda_err(attn_fold_t2i_combine(&gpu, s, shape, &part, &mut short_y));
    let unsupported = |r: samrt::Result<()>| {
        assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    };
    let wide = AttnFoldShape { dim: 64, ..shape };
    unsupported(attn_fold_t2i(&gpu, s, wide, &q, &img, &img, &mut part));
    unsupported(attn_fold_t2i_combine(&gpu, s, wide, &part, &mut y));
    // A shared image side needs only one: the short batch-2 buffers serve a shared shape.
    let shared = AttnFoldShape {
        image_shared: true,
        ..shape
    };
    attn_fold_t2i(&gpu, s, shared, &q, &short_img, &short_img, &mut part).unwrap();
    attn_fold_t2i_combine(&gpu, s, shared, &part, &mut y).unwrap();
}
