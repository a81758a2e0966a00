//! The attention kernels against their f32 CPU references: the image encoder's fused
//! attention with decomposed relative position (windowed and global, every variant and
//! scale) and the decoder's plain attention.

use crate::common::gpu::{assert_close, f16r, round_f16, Rng};
use crate::refs::{bits_differ, ref_attn_plain, ref_attn_relpos};
use samrt::cuda::ops::attention::{
    attn_plain, attn_relpos, AttnPlainShape, AttnRelposInputs, AttnRelposShape,
};
use samrt::cuda::GpuContext;
use QkvStorage::*;

/// How the kernel's input stores qkv; the reference always sees the true values.
#[derive(Clone, Copy, Debug)]
pub enum QkvStorage {
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
pub fn run_attn_relpos(
    gpu: &GpuContext,
    rng: &mut Rng,
    test: &str,
    shape: AttnRelposShape,
    storage: QkvStorage,
) {
    let st = gpu.stream();
    let (d, hd, s) = (shape.dim, shape.head_dim(), shape.window);
    println!("{test}: {shape:?} -> {}, {storage:?}", shape.kernel_name());
    let tokens = shape.batch * shape.grid * shape.grid;
    // Factors by which q and k/v get stored; inputs are made exactly scalable by them (an
    // fp16 value below 2^-12 would lose its last bit to the subnormal range when stored
    // times 1/4), so that the scaled run sees exactly the plain run's values.
    let (fq, fkv) = match storage {
        Plain => (1.0, 1.0),
        ScaledQ(q_scale) => (1.0 / q_scale, 1.0),
        ScaledQkv(a) => (a, a),
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
    let want = ref_attn_relpos(shape, &qkv, &round_f16(&bias), &rel_h, &rel_w);

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
        attn_relpos(gpu, st, shape, &inputs, &mut out).unwrap();
        gpu.download_f16(st, &out).unwrap()
    };
    let plain = run(&qkv, &bias, 1.0, None);
    // Outputs are convex combinations of |v| <= 1.5: fp16 probabilities (2^-11 relative
    // each) and the fp16 output rounding bound the error by ~1.5e-3.
    assert_close(test, &plain, &want, 2e-3, 2e-3);
    match storage {
        Plain => {}
        ScaledQ(q_scale) => {
            let stored: Vec<f32> = qkv
                .chunks_exact(3 * d)
                .flat_map(|row| {
                    let (q, kv) = row.split_at(d);
                    q.iter().map(move |x| x / q_scale).chain(kv.iter().copied())
                })
                .collect();
            let got = run(&stored, &bias, q_scale, None);
            assert_close(&format!("{test} (q / {q_scale})"), &got, &want, 2e-3, 2e-3);
            assert_eq!(got.len(), plain.len());
            let differ = bits_differ(&got, &plain);
            assert_eq!(
                differ, 0,
                "{test}: scaled q is not bit-identical ({differ} values)"
            );
        }
        ScaledQkv(a) => {
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

pub fn run_attn_plain(gpu: &GpuContext, rng: &mut Rng, test: &str, shape: AttnPlainShape) {
    let st = gpu.stream();
    let w = shape.heads * shape.head_dim;
    let q = round_f16(&rng.vec(shape.batch * shape.lq * w, -2.0, 2.0));
    let k = round_f16(&rng.vec(shape.batch * shape.lk * w, -2.0, 2.0));
    let v = round_f16(&rng.vec(shape.batch * shape.lk * w, -1.0, 1.0));
    let want = ref_attn_plain(shape, &q, &k, &v);
    let (qd, kd, vd) = (
        gpu.upload_f16(st, &q).unwrap(),
        gpu.upload_f16(st, &k).unwrap(),
        gpu.upload_f16(st, &v).unwrap(),
    );
    let mut out = gpu.zeros_f16(st, shape.batch * shape.lq * w).unwrap();
    attn_plain(gpu, st, shape, &qd, &kd, &vd, &mut out).unwrap();
    let got = gpu.download_f16(st, &out).unwrap();
    // Convex combinations of |v| <= 1: fp16 probabilities and output rounding, ~1e-3.
    assert_close(test, &got, &want, 2e-3, 2e-3);
}
