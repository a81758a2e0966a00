//! Exact (erf) GELU, as nn.GELU() with approximate="none". tanh variants would drift from
//! the official model.

use crate::cpu::ops::vmath::{self, simd_dispatch};
use rayon::prelude::*;

/// GELU in place, vectorised (AVX-512 / AVX2 when present) and fanned out over rayon.
pub fn gelu(x: &mut [f32]) {
    x.par_chunks_mut(1 << 16).for_each(gelu_seq);
}

/// GELU in place on the calling thread (for callers already inside a parallel loop).
pub fn gelu_seq(x: &mut [f32]) {
    simd_dispatch!((x: &mut [f32]) -> () {
        for v in x.iter_mut() {
            *v = gelu_scalar(*v);
        }
    })
}

/// One value, evaluated as PyTorch's vectorised kernel does: `x/2 * (1 + erf(x/√2))`. The
/// slices go through this same function, so results agree bit for bit.
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + vmath::erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf via libm's f64 erf (a port of FreeBSD msun): the accuracy reference the fast
/// polynomial is tested against.
pub fn erf_f64(x: f64) -> f64 {
    libm::erf(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_known_values() {
        // Reference values of erf from tables (Abramowitz & Stegun 7.1).
        for (x, want) in [
            (0.1, 0.112_462_916_018_284_9),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (5.0, 0.999_999_999_998_462_5),
        ] {
            assert!((erf_f64(x) - want).abs() < 1e-14, "erf({x})");
            assert!((erf_f64(-x) + want).abs() < 1e-14);
        }
    }

    #[test]
    fn slice_matches_scalar_and_correctly_rounded_erf() {
        let scalar_inputs = || -> Vec<f32> {
            (0..100_000)
                .map(|i| (i as f32 - 50_000.0) * 2.3e-4)
                .collect()
        };
        let mut x = scalar_inputs();
        // torch's formula in f32, with erf rounded correctly from f64.
        let want: Vec<f32> = x
            .iter()
            .map(|&v| {
                0.5 * v * (1.0 + erf_f64((v * std::f32::consts::FRAC_1_SQRT_2) as f64) as f32)
            })
            .collect();
        let scalar: Vec<f32> = x.iter().map(|&v| gelu_scalar(v)).collect();
        gelu(&mut x);
        assert_eq!(x, scalar);
        for ((g, w), v) in x.iter().zip(&want).zip(&scalar_inputs()) {
            // erf is within 2 ulp of its value (<= 1), see vmath; `1 + erf` cancels for x < 0,
            // so the error bound is a few ulps of 1 times |x|/2, plus rounding of the result.
            let tol = 0.5 * v.abs() * 4.0 * f32::EPSILON + 4.0 * f32::EPSILON * w.abs();
            assert!((g - w).abs() <= tol, "x={v}: {g} vs {w}");
        }
    }

    #[test]
    fn gelu_values() {
        assert!((gelu_scalar(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu_scalar(-1.0) + 0.158_655_26).abs() < 1e-6);
        assert_eq!(gelu_scalar(0.0), 0.0);
    }

    #[test]
    fn gelu_matches_f64_reference() {
        for x in (0..=100_000).map(|i| -10.0 + 20.0 * i as f32 / 100_000.0) {
            let want = 0.5 * x as f64 * (1.0 + libm::erf(x as f64 / 2f64.sqrt()));
            // The f32 formula cancels in 1+erf for x << 0, like torch's; compare absolutely.
            assert!(
                (gelu_scalar(x) as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{x}"
            );
        }
    }
}
