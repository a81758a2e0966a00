//! LayerNorm over the last axis, as PyTorch computes it: biased variance, eps inside the
//! square root. The encoder uses eps 1e-6, the decoder transformer 1e-5 (spec traps).

use crate::cpu::ops::vmath::simd_dispatch;
use crate::error::Result;
use crate::io::weights::WeightSource;
use rayon::prelude::*;

/// `nn.LayerNorm(dim, eps)` with its weights: the one LayerNorm of the CPU model (encoder
/// blocks and neck with eps 1e-6, decoder transformer with 1e-5).
pub struct LayerNorm {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub eps: f32,
}

impl LayerNorm {
    /// `{prefix}.weight` and `{prefix}.bias`, each `[dim]`.
    pub fn load(src: &dyn WeightSource, prefix: &str, dim: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            w: src.f32(&format!("{prefix}.weight"), &[dim])?,
            b: src.f32(&format!("{prefix}.bias"), &[dim])?,
            eps,
        })
    }

    /// Every row of `x` in place, rows fanned out over rayon.
    pub fn forward(&self, x: &mut [f32]) {
        layer_norm(x, self.w.len(), &self.w, &self.b, self.eps);
    }

    /// `y = LayerNorm(x)` row by row on the calling thread (for callers already inside a
    /// parallel loop); `y` may be longer than `x`.
    pub fn forward_seq_into(&self, x: &[f32], y: &mut [f32]) {
        let y = &mut y[..x.len()];
        y.copy_from_slice(x);
        y.chunks_exact_mut(self.w.len())
            .for_each(|r| layer_norm_row(r, &self.w, &self.b, self.eps));
    }
}

/// Normalises each row of `x` ([rows, dim]) in place.
pub fn layer_norm(x: &mut [f32], dim: usize, weight: &[f32], bias: &[f32], eps: f32) {
    assert_eq!(weight.len(), dim);
    assert_eq!(bias.len(), dim);
    x.par_chunks_mut(dim.max(1) * 64).for_each(|chunk| {
        for row in chunk.chunks_mut(dim) {
            layer_norm_row(row, weight, bias, eps);
        }
    });
}

/// One row. Two passes (mean, then variance of the centred values) with 16 f32 partial
/// sums, like PyTorch's vectorised row moments: f32 throughout, so it vectorises, yet the
/// centred second pass keeps it accurate for rows with a large mean.
pub fn layer_norm_row(row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    simd_dispatch!((row: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) -> () {
        let n = row.len() as f32;
        let mean = lane_sum(row, |v| v) / n;
        let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    })
}

/// Sum of `f(x)` over `x` in 16 independent lanes, then the lanes pairwise.
#[inline(always)]
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0]
}

/// LayerNorm2d on a channel-first map [C, HW]: normalises over C at every pixel.
pub fn layer_norm_2d(x: &mut [f32], channels: usize, weight: &[f32], bias: &[f32], eps: f32) {
    let hw = x.len() / channels;
    let mut t = transpose(x, channels, hw);
    layer_norm(&mut t, channels, weight, bias, eps);
    x.copy_from_slice(&transpose(&t, hw, channels));
}

/// Row-major [r, c] -> [c, r].
pub fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    assert_eq!(x.len(), r * c);
    let mut out = vec![0.0f32; r * c];
    const B: usize = 32;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    out[j * r + i] = x[i * c + j];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_rows() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 14.0];
        layer_norm(&mut x, 4, &[1.0; 4], &[0.0; 4], 1e-6);
        let r0: f32 = x[..4].iter().sum();
        assert!(r0.abs() < 1e-5);
        assert!((x[0] + 1.3416407).abs() < 1e-5);
        assert!((x[7] - 1.7320508).abs() < 1e-4);
    }

    #[test]
    fn layer_norm_2d_is_per_pixel() {
        let mut x: Vec<f32> = (0..12).map(|i| (i * i) as f32 * 0.1).collect(); // [3, 4]
        let mut want = transpose(&x, 3, 4);
        layer_norm(&mut want, 3, &[2.0; 3], &[0.5; 3], 1e-6);
        layer_norm_2d(&mut x, 3, &[2.0; 3], &[0.5; 3], 1e-6);
        assert_eq!(x, transpose(&want, 4, 3));
    }
}
