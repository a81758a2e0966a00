//! Per-row power-of-two scaled fp32 -> fp16 cast, the CPU twin of `kernels/cast_rows.cu`.
//!
//! Row `r` is stored as `f16(x / s)` with `s = row_scale[r] = 2^k`, the smallest power of two
//! `>= 1` with `max|x| / s <= 2^14` ([`CAST_ROWS_LIMIT`]); consumers multiply by `s` (or,
//! like LayerNorm, fold it into eps). Dividing by a power of two is exact in f32, so the
//! f16 rounding is the only error. NaN elements are ignored by the maximum (as CUDA's fmaxf
//! does) and stay NaN.

use half::f16;

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
mod tests {
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
