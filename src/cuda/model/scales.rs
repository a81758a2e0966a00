//! The CUDA encoder's fp16 storage numerics, and its weights prepared for upload.
//!
//! Numerics: the residual stream is fp32; every fp16 tensor that could exceed the fp16 range
//! on some checkpoint is stored scaled by a power of two chosen at load time from a bound on
//! its magnitude (so real checkpoints, whose bounds are far below 65504, run unscaled and
//! lose nothing), and the consumer multiplies the scale back: the qkv output (undone in the
//! attention's q scale and softmax scale, and in the proj GEMM), the MLP hidden activation
//! (undone in lin2), the neck convolutions (undone in their LayerNorm2d's eps, since LayerNorm
//! is scale-invariant apart from eps). The residual stream itself is cast to fp16 for the neck
//! with an exact per-row power-of-two scale.

use crate::cpu::model::image_encoder::{load_pos_embed, load_rel_pos};
use crate::io::config::EncoderConfig;
use crate::io::weights::WeightSource;
use crate::Result;

use crate::graph::weights::HostTensor;
use half::f16;

/// LayerNorm eps of the blocks and of the neck's LayerNorm2d (official: 1e-6 both).
pub const EPS: f32 = 1e-6;
/// Largest magnitude a scaled fp16 tensor may reach by its bound (half the fp16 range).
const F16_LIMIT: f64 = 32768.0;

/// Power-of-two storage scales chosen from the weights (1.0 on real checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderScales {
    /// Per block: the qkv output scale and the MLP hidden scale.
    pub qkv: Vec<f32>,
    pub mlp: Vec<f32>,
    pub neck0: f32,
    pub neck2: f32,
}

/// Largest power of two <= 1 that keeps `bound * scale <= F16_LIMIT`.
fn pow2_scale(bound: f64) -> f32 {
    let mut s = 1.0f64;
    while bound * s > F16_LIMIT && s > 1e-30 {
        s *= 0.5;
    }
    s as f32
}

/// Bound on |LayerNorm output| per input channel: a normalised value is at most sqrt(dim)
/// in magnitude, then the affine map.
fn ln_bound(gamma: &[f32], beta: &[f32]) -> Vec<f64> {
    let r = (gamma.len() as f64).sqrt();
    gamma
        .iter()
        .zip(beta)
        .map(|(&g, &b)| g.abs() as f64 * r + b.abs() as f64)
        .collect()
}

/// max over output rows of sum_i |W[j][i]| * xbound[i] + |b[j]|.
fn linear_bound(w: &[f32], bias: Option<&[f32]>, n: usize, xbound: &[f64]) -> f64 {
    let k = xbound.len();
    (0..n)
        .map(|j| {
            let row = &w[j * k..(j + 1) * k];
            row.iter()
                .zip(xbound)
                .map(|(&a, &x)| a.abs() as f64 * x)
                .sum::<f64>()
                + bias.map_or(0.0, |b| b[j].abs() as f64)
        })
        .fold(0.0, f64::max)
}

/// Everything the encoder needs on the device, converted on the host, plus the scales.
pub fn prepare_weights(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
) -> Result<(Vec<HostTensor>, EncoderScales)> {
    let (d, g, p, m, oc) = (
        cfg.embed_dim,
        cfg.grid(),
        cfg.patch_size,
        cfg.mlp_dim,
        cfg.out_chans,
    );
    let pre = "image_encoder";
    let mut t = Vec::new();
    let pw = w.f32(&format!("{pre}.patch_embed.proj.weight"), &[d, 3, p, p])?;
    t.push(HostTensor::f16(
        format!("{pre}.patch_embed.proj.weight"),
        &pw,
    )?);
    let pb = w.f32(&format!("{pre}.patch_embed.proj.bias"), &[d])?;
    t.push(HostTensor::f32(format!("{pre}.patch_embed.proj.bias"), &pb));
    let pos = load_pos_embed(w, cfg)?;
    t.push(HostTensor::f16(format!("{pre}.pos_embed"), &pos)?);
    let mut scales = EncoderScales {
        qkv: Vec::new(),
        mlp: Vec::new(),
        neck0: 1.0,
        neck2: 1.0,
    };
    for i in 0..cfg.depth {
        let b = format!("{pre}.blocks.{i}");
        let side = if cfg.global_attn_indexes.contains(&i) {
            g
        } else {
            cfg.window_size
        };
        let n1w = w.f32(&format!("{b}.norm1.weight"), &[d])?;
        let n1b = w.f32(&format!("{b}.norm1.bias"), &[d])?;
        let qw = w.f32(&format!("{b}.attn.qkv.weight"), &[3 * d, d])?;
        let qb = w.f32(&format!("{b}.attn.qkv.bias"), &[3 * d])?;
        let aq = pow2_scale(linear_bound(&qw, Some(&qb), 3 * d, &ln_bound(&n1w, &n1b)));
        let qbs: Vec<f32> = qb.iter().map(|&x| x * aq).collect();
        let n2w = w.f32(&format!("{b}.norm2.weight"), &[d])?;
        let n2b = w.f32(&format!("{b}.norm2.bias"), &[d])?;
        let l1w = w.f32(&format!("{b}.mlp.lin1.weight"), &[m, d])?;
        let l1b = w.f32(&format!("{b}.mlp.lin1.bias"), &[m])?;
        // GELU(y) <= max(y, 0) <= |y|.
        let am = pow2_scale(linear_bound(&l1w, Some(&l1b), m, &ln_bound(&n2w, &n2b)));
        scales.qkv.push(aq);
        scales.mlp.push(am);
        t.push(HostTensor::f32(format!("{b}.norm1.weight"), &n1w));
        t.push(HostTensor::f32(format!("{b}.norm1.bias"), &n1b));
        t.push(HostTensor::f16(format!("{b}.attn.qkv.weight"), &qw)?);
        t.push(HostTensor::f32(format!("{b}.attn.qkv.bias"), &qb));
        t.push(HostTensor::f32(format!("{b}.attn.qkv.bias.scaled"), &qbs));
        for name in ["rel_pos_h", "rel_pos_w"] {
            let r = load_rel_pos(w, &format!("{b}.attn.{name}"), side, cfg.head_dim)?;
            t.push(HostTensor::f16(format!("{b}.attn.{name}"), &r)?);
        }
        t.push(HostTensor::f16(
            format!("{b}.attn.proj.weight"),
            &w.f32(&format!("{b}.attn.proj.weight"), &[d, d])?,
        )?);
        t.push(HostTensor::f32(
            format!("{b}.attn.proj.bias"),
            &w.f32(&format!("{b}.attn.proj.bias"), &[d])?,
        ));
        t.push(HostTensor::f32(format!("{b}.norm2.weight"), &n2w));
        t.push(HostTensor::f32(format!("{b}.norm2.bias"), &n2b));
        t.push(HostTensor::f16(format!("{b}.mlp.lin1.weight"), &l1w)?);
        t.push(HostTensor::f32(format!("{b}.mlp.lin1.bias"), &l1b));
        t.push(HostTensor::f16(
            format!("{b}.mlp.lin2.weight"),
            &w.f32(&format!("{b}.mlp.lin2.weight"), &[d, m])?,
        )?);
        t.push(HostTensor::f32(
            format!("{b}.mlp.lin2.bias"),
            &w.f32(&format!("{b}.mlp.lin2.bias"), &[d])?,
        ));
    }
    // Neck. conv1x1 reads the residual cast to fp16 rows with |x| <= 2^14.
    let n0 = w.f32(&format!("{pre}.neck.0.weight"), &[oc, d, 1, 1])?;
    scales.neck0 = pow2_scale(linear_bound(&n0, None, oc, &vec![16384.0; d]));
    t.push(HostTensor::f16(format!("{pre}.neck.0.weight"), &n0)?);
    let n1w = w.f32(&format!("{pre}.neck.1.weight"), &[oc])?;
    let n1b = w.f32(&format!("{pre}.neck.1.bias"), &[oc])?;
    let n2 = w.f32(&format!("{pre}.neck.2.weight"), &[oc, oc, 3, 3])?;
    // Per output channel the 3x3 window sees each input channel 9 times.
    let xb: Vec<f64> = ln_bound(&n1w, &n1b).iter().flat_map(|&x| [x; 9]).collect();
    let n2_kmajor = crate::cpu::ops::gemm::conv3x3_weight_layout(&n2, oc, oc);
    scales.neck2 = pow2_scale(linear_bound(&n2_kmajor, None, oc, &reorder_bound(&xb, oc)));
    t.push(HostTensor::f32(format!("{pre}.neck.1.weight"), &n1w));
    t.push(HostTensor::f32(format!("{pre}.neck.1.bias"), &n1b));
    t.push(HostTensor::f16(format!("{pre}.neck.2.weight"), &n2_kmajor)?);
    t.push(HostTensor::f32(
        format!("{pre}.neck.3.weight"),
        &w.f32(&format!("{pre}.neck.3.weight"), &[oc])?,
    ));
    t.push(HostTensor::f32(
        format!("{pre}.neck.3.bias"),
        &w.f32(&format!("{pre}.neck.3.bias"), &[oc])?,
    ));
    Ok((t, scales))
}

/// The bound vector in the conv weight's [ky][kx][cin] order (it is the same for every
/// tap, so only the length and channel period matter).
fn reorder_bound(xb_c9: &[f64], cin: usize) -> Vec<f64> {
    (0..9 * cin).map(|k| xb_c9[(k % cin) * 9]).collect()
}

// The residual stream's cast for the neck: the reference of `cast_rows` (`kernels/cast_rows.cu`).
// The f32 CPU model stores nothing in fp16, so it lives here with the other fp16 numerics.
//
// Row `r` is stored as `f16(x / s)` with `s = row_scale[r] = 2^k`, the smallest power of two
// `>= 1` with `max|x| / s <= 2^14` ([`CAST_ROWS_LIMIT`]); consumers multiply by `s` (or,
// like LayerNorm, fold it into eps). Dividing by a power of two is exact in f32, so the
// f16 rounding is the only error. NaN elements are ignored by the maximum (as CUDA's fmaxf
// does) and stay NaN.

/// Largest magnitude a scaled row may hold: 2^14, a factor 4 below fp16's 65504.
pub const CAST_ROWS_LIMIT: f32 = 16384.0;

/// `k` of the row scale `2^k` for a row whose largest magnitude is `max_abs` (>= 0): the
/// smallest `k >= 0` with `max_abs <= 2^(14 + k)`, read off the f32 bits as the kernel does.
pub fn row_scale_exponent(max_abs: f32) -> i32 {
    let bits = max_abs.abs().to_bits();
    let e = (bits >> 23) as i32;
    let n = e - 127 + i32::from(bits & 0x7f_ffff != 0);
    (n - 14).max(0)
}

/// `2^k` for [`row_scale_exponent`].
pub fn row_scale(max_abs: f32) -> f32 {
    f32::from_bits(((127 + row_scale_exponent(max_abs)) as u32) << 23)
}

/// Casts each row of `x` (`[rows, dim]`): fp16 values and the per-row scales.
pub fn cast_rows(x: &[f32], dim: usize) -> (Vec<f16>, Vec<f32>) {
    assert!(dim > 0 && x.len().is_multiple_of(dim));
    let mut out = Vec::with_capacity(x.len());
    let mut scales = Vec::with_capacity(x.len() / dim);
    for row in x.chunks_exact(dim) {
        let m = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let k = row_scale_exponent(m);
        let inv = f32::from_bits(((127 - k) as u32) << 23);
        scales.push(row_scale(m));
        out.extend(row.iter().map(|&v| f16::from_f32(v * inv)));
    }
    (out, scales)
}

#[cfg(test)]
mod cast_rows_tests {
    use super::*;

    /// The definition, by search.
    fn naive_scale(m: f32) -> f32 {
        let mut s = 1.0f32;
        while m / s > CAST_ROWS_LIMIT {
            s *= 2.0;
        }
        s
    }

    #[test]
    fn scale_is_the_smallest_power_of_two() {
        let mut cases = vec![0.0, 1e-40, 1.0, 16383.0, 16384.0, 16385.0, 32768.0, 32769.0];
        cases.extend([1e6, 3.4e38, f32::MAX, 65504.0, 65505.0, 1.5e9]);
        for m in cases {
            assert_eq!(row_scale(m), naive_scale(m), "max |x| = {m}");
            assert!(m / row_scale(m) <= CAST_ROWS_LIMIT);
        }
        assert_eq!(row_scale(f32::INFINITY), 2f32.powi(114));
    }

    #[test]
    fn rows_fit_and_scale_back() {
        let x = [1.0e6f32, -3.0, 0.5, 2.0e5, 1.0, -2.0, 3.0, 4.0];
        let (h, s) = cast_rows(&x, 4);
        assert_eq!(s, vec![64.0, 1.0]);
        // 1e6 / 64 = 15625, which fp16 (spacing 8 in [8192, 16384)) rounds to 15624.
        assert_eq!(h[0].to_f32(), 15624.0);
        assert!(h.iter().all(|v| v.to_f32().abs() <= CAST_ROWS_LIMIT));
        assert_eq!(h[5].to_f32(), -2.0);
    }
}
