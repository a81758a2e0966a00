//! Exact (erf) GELU for large maps, as nn.GELU() computes it: `0.5*x*(1 + erf(x/sqrt 2))`
//! in f32. `gelu.rs` calls libm's f64 erf per element, which is accurate but too slow for
//! the decoder's 3M activations per prompt; this uses the branch-free erf of
//! [`crate::cpu::vec_math`] so the loop vectorises (with AVX2 / AVX-512 when the CPU has
//! them; no FMA contraction, so every path gives the same bits).

use crate::cpu::vec_math::erf_fast;
use rayon::prelude::*;

#[inline(always)]
pub fn gelu_fast_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_fast(x * std::f32::consts::FRAC_1_SQRT_2))
}

#[inline(always)]
fn gelu_slice(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = gelu_fast_scalar(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn gelu_slice_avx512(x: &mut [f32]) {
    gelu_slice(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gelu_slice_avx2(x: &mut [f32]) {
    gelu_slice(x)
}

/// GELU in place on one thread, using the widest vectors available.
pub fn gelu_fast_seq(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { gelu_slice_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { gelu_slice_avx2(x) };
        }
    }
    gelu_slice(x)
}

/// GELU in place; fans out over rayon in large chunks.
pub fn gelu_fast(x: &mut [f32]) {
    x.par_chunks_mut(1 << 16).for_each(gelu_fast_seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gelu::gelu_scalar;

    #[test]
    fn gelu_matches_libm_reference() {
        let mut x: Vec<f32> = (-80_000..80_000).map(|i| i as f32 * 1e-4).collect();
        let want: Vec<f32> = x.iter().map(|&v| gelu_scalar(v)).collect();
        let mut portable = x.clone();
        gelu_fast(&mut x);
        gelu_slice(&mut portable);
        assert_eq!(x, portable, "SIMD and portable paths differ");
        for (i, (g, w)) in x.iter().zip(&want).enumerate() {
            // Both compute 0.5*x*(1+erf) in f32; erf differs by <= 2 ulp of a value <= 1,
            // scaled by 0.5*|x| <= 4.
            assert!(
                (g - w).abs() <= 5e-7,
                "x = {}: {g} vs {w}",
                i as f32 * 1e-4 - 8.0
            );
        }
    }
}
