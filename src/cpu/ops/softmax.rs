//! Softmax, max-subtracted as torch does.

use crate::cpu::ops::vmath::{exp, simd_dispatch};

/// Softmax over each row of length `n`, in place.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_mut(n) {
        softmax_row(row);
    }
}

#[inline]
pub fn softmax_row(row: &mut [f32]) {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut s = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let inv = 1.0 / s;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Attention logits to probabilities: `x = (x + bias[r]) / div` on row `r`, then softmax
/// along each row of length `n` (few long rows: the token->image case). `bias` has one
/// value per row. Compiled for the widest SIMD the CPU has.
pub fn scaled_softmax_rows(x: &mut [f32], n: usize, bias: &[f32], div: f32) {
    assert_eq!(x.len(), n * bias.len(), "one bias per row");
    simd_dispatch!((x: &mut [f32], n: usize, bias: &[f32], div: f32) -> () {
        for (row, &b) in x.chunks_mut(n.max(1)).zip(bias) {
            row.iter_mut().for_each(|v| *v = (*v + b) / div);
            let m = lanes_fold(row, f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|v| *v = exp(*v - m));
            let inv = 1.0 / lanes_fold(row, 0.0, |a, b| a + b);
            row.iter_mut().for_each(|v| *v = flush_subnormal(*v * inv));
        }
    })
}

/// As [`scaled_softmax_rows`] but down each column of a row-major `[rows, cols]` block (few
/// rows, many columns: the image->token case, logits stored transposed). Every pass runs
/// along the contiguous axis, and each column still sees its values in row order, as a
/// row softmax of the transpose would.
pub fn scaled_softmax_cols(x: &mut [f32], rows: usize, cols: usize, bias: &[f32], div: f32) {
    assert_eq!(x.len(), rows * cols, "block size");
    assert_eq!(bias.len(), rows, "one bias per row");
    if rows == 0 || cols == 0 {
        return;
    }
    let (mut max_buf, mut sum_buf) = (vec![f32::NEG_INFINITY; cols], vec![0.0f32; cols]);
    let (m, s) = (&mut max_buf[..], &mut sum_buf[..]);
    simd_dispatch!((x: &mut [f32], cols: usize, bias: &[f32], div: f32, m: &mut [f32], s: &mut [f32]) -> () {
        for (r, &b) in x.chunks_mut(cols).zip(bias) {
            for (v, mx) in r.iter_mut().zip(m.iter_mut()) {
                *v = (*v + b) / div;
                *mx = mx.max(*v);
            }
        }
        for r in x.chunks_mut(cols) {
            for ((v, &mx), sum) in r.iter_mut().zip(m.iter()).zip(s.iter_mut()) {
                *v = exp(*v - mx);
                *sum += *v;
            }
        }
        s.iter_mut().for_each(|v| *v = 1.0 / *v);
        for r in x.chunks_mut(cols) {
            r.iter_mut()
                .zip(s.iter())
                .for_each(|(v, &inv)| *v = flush_subnormal(*v * inv));
        }
    })
}

/// Reduces a row with 16 independent accumulators (one SIMD register) so the loop
/// vectorises; a sequential fold would be one dependent scalar op per element.
#[inline(always)]
fn lanes_fold(row: &[f32], init: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = f(*a, v);
        }
    }
    let tail = chunks.remainder().iter().fold(init, |a, &v| f(a, v));
    acc.iter().fold(tail, |a, &v| f(a, v))
}

/// Probabilities below the smallest normal f32 become 0. They change no sum by more than
/// 1.2e-38, but fed to a matrix product they cost a microcode assist per multiply on x86:
/// with peaked attention, a 4096-key product ran 9x slower.
#[inline(always)]
fn flush_subnormal(p: f32) -> f32 {
    // Written so NaN passes through.
    if p < f32::MIN_POSITIVE {
        0.0
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_sum_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1.0, 0.0, 1000.0];
        super::softmax_rows(&mut x, 3);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((x[5] - 1.0).abs() < 1e-6);
        assert!((x[2] - 0.665_240_9).abs() < 1e-6);
    }

    #[test]
    fn scaled_rows_and_columns_match_the_scalar_rows() {
        let x: Vec<f32> = (0..3 * 37)
            .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 9.0)
            .collect();
        let mut want = x.clone();
        super::softmax_rows(&mut want, 37);
        // Logits before `(x + bias) / div` with bias 0.5 per row and div 2 (exact inverse).
        let pre: Vec<f32> = x.iter().map(|v| v * 2.0 - 0.5).collect();
        let mut rows = pre.clone();
        super::scaled_softmax_rows(&mut rows, 37, &[0.5; 3], 2.0);
        // Transpose to [37, 3] and softmax down the columns.
        let mut t: Vec<f32> = (0..37 * 3).map(|i| pre[(i % 3) * 37 + i / 3]).collect();
        super::scaled_softmax_cols(&mut t, 37, 3, &[0.5; 37], 2.0);
        for i in 0..3 * 37 {
            // The vectorised exp is within 2 ulp of libm's.
            assert!((rows[i] - want[i]).abs() <= 1e-6 * want[i].max(1e-3), "{i}");
            let tc = t[(i % 37) * 3 + i / 37];
            assert!((tc - want[i]).abs() <= 1e-6 * want[i].max(1e-3), "{i}");
        }
    }
}

#[cfg(test)]
mod flush_tests {
    #[test]
    fn tiny_probabilities_flush_to_zero_and_nan_survives() {
        // One logit 100 above the rest: the others get e^-100 ~ 3.7e-44, a subnormal.
        let mut x = vec![0.0f32, 100.0, 0.0, 0.0];
        super::scaled_softmax_rows(&mut x, 4, &[0.0], 1.0);
        assert_eq!(x, vec![0.0, 1.0, 0.0, 0.0]);
        let mut y = vec![f32::NAN, 1.0];
        super::scaled_softmax_cols(&mut y, 2, 1, &[0.0, 0.0], 1.0);
        assert!(y.iter().all(|v| v.is_nan()));
    }
}
