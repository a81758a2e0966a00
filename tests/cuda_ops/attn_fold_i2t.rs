//! Runner of the image->token folded attention (`attn_fold_i2t`) against its CPU reference
//! (f64 sums), on fresh random inputs shaped like a trained decoder's: image rows ~ N(0, 1),
//! folded key rows scaled so that the logits have a spread of ~2 (peaked and flat token
//! distributions both occur), cb shifting them by up to 1, keys non-zero before the call
//! (the residual add).

use cudarc::driver::CudaSlice;
use samrt::cpu::ops::attn_fold_i2t as cpu;
use samrt::cuda::ops::attn_fold_i2t::attn_fold_i2t;
use samrt::cuda::GpuContext;
use samrt::graph::fold_ops::AttnFoldShape;

use super::common::gpu::{assert_within, round_f16, Rng};
use super::refs::{assert_each_prompt_alone, normal};

/// A table row: `batch` prompts of `tokens` tokens, `heads` heads, `hw` image rows of width
/// `dim`; head_dim 16 (the decoder's 128 / 8, scale 1/4).
pub fn case(
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
        head_dim: 16,
        image_shared,
    }
}

struct Inputs {
    xpe: Vec<f32>,
    kf: Vec<f32>,
    cb: Vec<f32>,
    vf: Vec<f32>,
    bias: Vec<f32>,
    keys: Vec<f32>,
}

fn up32(gpu: &GpuContext, v: &[f32]) -> CudaSlice<f32> {
    gpu.upload_f32(gpu.stream(), v).unwrap()
}

/// One launch on `x`, returning the updated keys.
fn launch(gpu: &GpuContext, shape: AttnFoldShape, x: &Inputs) -> Vec<f32> {
    let s = gpu.stream();
    let xpe = gpu.upload_f16(s, &x.xpe).unwrap();
    let (kf, cb, vf, bias) = (
        up32(gpu, &x.kf),
        up32(gpu, &x.cb),
        up32(gpu, &x.vf),
        up32(gpu, &x.bias),
    );
    let mut keys = up32(gpu, &x.keys);
    attn_fold_i2t(gpu, s, shape, &xpe, &kf, &cb, &vf, &bias, &mut keys).unwrap();
    gpu.download_f32(s, &keys).unwrap()
}

pub fn run_attn_fold_i2t(gpu: &GpuContext, rng: &mut Rng, shape: AttnFoldShape) {
    let (b, t, h, hw, d) = (shape.batch, shape.tokens, shape.heads, shape.hw, shape.dim);
    let scale = shape.scale();
    let sides = if shape.image_shared { 1 } else { b };
    // logit = scale * (xpe . kf + cb): xpe . kf has std sqrt(d) * std(kf).
    let kstd = 2.0 / (scale * (d as f32).sqrt());
    let x = Inputs {
        xpe: round_f16(&normal(rng, sides * hw * d, 1.0)),
        kf: normal(rng, b * t * h * d, kstd),
        cb: rng.vec(b * t * h, -1.0 / scale, 1.0 / scale),
        vf: rng.vec(b * t * h * d, -1.0, 1.0),
        bias: rng.vec(d, -0.5, 0.5),
        keys: rng.vec(b * hw * d, -2.0, 2.0),
    };
    let got = launch(gpu, shape, &x);

    // The kernel rounds kf and vf to fp16 (round to nearest) when it stages them: that is
    // its input quantisation, so the reference gets the rounded rows.
    let (kf16, vf16) = (round_f16(&x.kf), round_f16(&x.vf));
    let dims = ((b, t, h), (hw, d));
    let mut want = x.keys.clone();
    cpu::attn_fold_i2t(
        &mut want,
        &x.xpe,
        &kf16,
        &x.cb,
        &vf16,
        &x.bias,
        dims.0,
        dims.1,
        scale,
        shape.image_shared,
    );
    // a[j, c] = sum_h sum_t p[h, t] |vf[t, h, c]|: the reference on |vf|, zero keys and bias.
    let mut a = vec![0.0f32; want.len()];
    let vabs: Vec<f32> = vf16.iter().map(|v| v.abs()).collect();
    let zero_bias = vec![0.0f32; d];
    cpu::attn_fold_i2t(
        &mut a,
        &x.xpe,
        &kf16,
        &x.cb,
        &vabs,
        &zero_bias,
        dims.0,
        dims.1,
        scale,
        shape.image_shared,
    );
    // Each probability goes to fp16 for the P V mma: |dp| <= 2^-11 p (2^-25 absolute in the
    // subnormal range, at most 32 tokens x heads of them), so the output moves by at most
    // 2^-11 a. The rest is fp32: logits of |s| ~ 10 accumulated over dim (a tensor core may
    // truncate its fp32 sums: ~1e-5 on s, a relative 4e-6 on p), O summed over heads x
    // tokens and added to |keys| <= ~8: 3e-5 covers them with a wide margin.
    let tol: Vec<f32> = a
        .iter()
        .map(|&a| a / 2048.0 + (t * h) as f32 * 2f32.powi(-25) + 3e-5)
        .collect();
    assert_within("attn_fold_i2t", &got, &want, &tol);
    let used = (got.iter().zip(&want).zip(&tol))
        .map(|((g, w), t)| (g - w).abs() / t)
        .fold(0.0f32, f32::max);
    println!("attn_fold_i2t: largest |err| / tolerance = {used:.3}");

    if b > 1 {
        // Each prompt alone (its own image side, or the shared one) gives the same bits.
        let per = |v: &[f32], n: usize, i: usize| v[i * n..(i + 1) * n].to_vec();
        let one = AttnFoldShape { batch: 1, ..shape };
        let alone = |i: usize| {
            let xi = Inputs {
                xpe: if shape.image_shared {
                    x.xpe.clone()
                } else {
                    per(&x.xpe, hw * d, i)
                },
                kf: per(&x.kf, t * h * d, i),
                cb: per(&x.cb, t * h, i),
                vf: per(&x.vf, t * h * d, i),
                bias: x.bias.clone(),
                keys: per(&x.keys, hw * d, i),
            };
            launch(gpu, one, &xi)
        };
        assert_each_prompt_alone("attn_fold_i2t", b, &got, hw * d, alone);
    }
}

/// What the launcher rejects with an error before any launch: shapes the kernel does not
/// take, each buffer one element short, and a misaligned kf (cp.async reads 16 bytes).
#[test]
fn attn_fold_i2t_rejects_bad_shapes_and_buffers() {
    use samrt::Error;
    let test = "attn_fold_i2t_rejects_bad_shapes_and_buffers";
    let Some(gpu) = super::common::gpu::gpu_or_skip(test) else {
        return;
    };
    let s = gpu.stream();
    let shape = case(2, 7, 8, 100, 256, false);
    let rows = shape.batch * shape.rows();
    let xpe = gpu.zeros_f16(s, shape.image_len()).unwrap();
    let kf = gpu.zeros_f32(s, shape.folded_len() + 1).unwrap();
    let vf = gpu.zeros_f32(s, shape.folded_len()).unwrap();
    let cb = gpu.zeros_f32(s, rows).unwrap();
    let bias = gpu.zeros_f32(s, shape.dim).unwrap();
    let mut keys = gpu
        .zeros_f32(s, shape.batch * shape.hw * shape.dim)
        .unwrap();
    attn_fold_i2t(&gpu, s, shape, &xpe, &kf, &cb, &vf, &bias, &mut keys).unwrap();
    for bad in [
        AttnFoldShape {
            tokens: 33,
            ..shape
        },
        AttnFoldShape { dim: 192, ..shape },
        AttnFoldShape { batch: 0, ..shape },
        AttnFoldShape {
            head_dim: 0,
            ..shape
        },
    ] {
        let r = attn_fold_i2t(&gpu, s, bad, &xpe, &kf, &cb, &vf, &bias, &mut keys);
        assert!(matches!(r, Err(Error::Unsupported(_))), "{bad:?}: {r:?}");
    }
    let short = |r: samrt::Result<()>, what: &str| match r {
        Err(Error::Cuda(m)) => assert!(m.contains(what), "{what}: {m}"),
        other => panic!("{what}: {other:?}"),
    };
    let (x1, c1, v1, b1) = (
        xpe.slice(1..),
        cb.slice(1..),
        vf.slice(1..),
        bias.slice(1..),
    );
    let k1 = kf.slice(2..);
    short(
        attn_fold_i2t(&gpu, s, shape, &x1, &kf, &cb, &vf, &bias, &mut keys),
        "xpe",
    );
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &k1, &cb, &vf, &bias, &mut keys),
        "kf",
    );
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &kf, &c1, &vf, &bias, &mut keys),
        "cb",
    );
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &kf, &cb, &v1, &bias, &mut keys),
        "vf",
    );
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &kf, &cb, &vf, &b1, &mut keys),
        "bias",
    );
    let mut keys1 = keys.slice_mut(1..);
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &kf, &cb, &vf, &bias, &mut keys1),
        "keys",
    );
    // One element in: long enough, 4 bytes off the 16-byte alignment.
    let kf_off = kf.slice(1..);
    short(
        attn_fold_i2t(&gpu, s, shape, &xpe, &kf_off, &cb, &vf, &bias, &mut keys),
        "aligned",
    );
}
