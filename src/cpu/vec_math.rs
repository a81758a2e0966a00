//! Branch-free f32 `exp` (non-positive arguments) and `erf` that the compiler can
//! vectorise, for the decoder's GELU and softmax. PyTorch's own vectorised CPU versions are
//! not correctly rounded either; these stay within 1.5 ulp of the true values.
//!
//! erf(x) for |x| < 0.921875: x + x*Q(x^2) (Q a degree-6 fit of erf(x)/x - 1).
//! Otherwise 1 - exp(G(|x|) - x^2), G a degree-7 fit of ln(erfcx(t)) on [0.921875, 4] in
//! t' = (t - 2.4609375)/1.5390625; erf(x) rounds to +-1 beyond |x| = 4. Coefficients were
//! fitted by weighted least squares (Lawson iterations) in f64 and rounded to f32.

const SPLIT: f32 = 0.921_875;
const TMAX: f32 = 4.0;
const MID: f32 = 2.460_937_5;
const INV_HALF_WIDTH: f32 = 0.649_746_2;

const Q: [f32; 7] = [
    0.128_379_17,
    -0.376_126_35,
    0.112_837_02,
    -0.026_859_704,
    0.005_201_72,
    -0.000_814_984_4,
    8.397_933_6e-5,
];

const G: [f32; 8] = [
    -1.542_952_5,
    -0.549_621_5,
    0.135_965_05,
    -0.040_815_08,
    0.012_671_811,
    -0.003_799_748_6,
    0.000_937_585_6,
    -0.000_433_317_97,
];

/// e^v for v in [-87, 0]: v = n ln2 + r with |r| <= ln2/2 (Cody-Waite split), degree-7
/// Taylor for e^r, 2^n through the exponent bits.
#[inline(always)]
pub fn exp_nonpos(v: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding 1.5*2^23 rounds to the nearest integer n and leaves n in the low mantissa
    // bits, so 2^n is built with integer ops only (no float->int conversion, which would
    // stop the loop from vectorising).
    const ROUND: f32 = 12_582_912.0;
    // A select rather than f32::max, so that NaN stays NaN.
    let v = if v < -87.0 { -87.0 } else { v };
    let k = v * LOG2E + ROUND;
    let n = k - ROUND;
    let r = (v - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = (k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127)) << 23;
    p * f32::from_bits(scale)
}

#[inline(always)]
fn exp_slice(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = exp_nonpos(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn exp_slice_avx512(x: &mut [f32]) {
    exp_slice(x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_slice_avx2(x: &mut [f32]) {
    exp_slice(x)
}

/// `x = exp(x)` for `x <= 0`, with the widest vectors the CPU has (no FMA contraction, so
/// every path gives the same bits).
pub fn exp_nonpos_inplace(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { exp_slice_avx512(x) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { exp_slice_avx2(x) };
        }
    }
    exp_slice(x)
}

/// erf in f32, branch-free. NaN in gives +-1 (callers multiply by x, which restores NaN).
#[inline(always)]
pub fn erf_fast(a: f32) -> f32 {
    let t = a.abs().min(TMAX);
    let s = a * a;
    let mut q = Q[6];
    for &c in Q[..6].iter().rev() {
        q = q * s + c;
    }
    let small = a + a * q;
    let u = (t - MID) * INV_HALF_WIDTH;
    let mut g = G[7];
    for &c in G[..7].iter().rev() {
        g = g * u + c;
    }
    let large = (1.0 - exp_nonpos(g - t * t)).copysign(a);
    if t < SPLIT {
        small
    } else {
        large
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::gelu::erf_f64;

    fn ulp(v: f32) -> f64 {
        let a = v.abs();
        (f32::from_bits(a.to_bits() + 1) - a) as f64
    }

    #[test]
    fn erf_within_two_ulp_of_f64_erf() {
        let check = |x: f32| {
            let want = erf_f64(x as f64);
            let got = erf_fast(x) as f64;
            let e = (got - want).abs() / ulp(want as f32);
            // Fit error plus f32 evaluation rounding measured at <= 1.43 ulp; 2 is the bound.
            assert!(e <= 2.0, "erf({x}) = {got}, want {want} ({e} ulp)");
        };
        // Dense sweep over the interesting range, both split sides, and tiny/huge inputs.
        for i in -600_000..=600_000 {
            check(i as f32 * 1e-5);
        }
        for x in [
            0.921_875,
            0.921_874_9,
            3.999,
            4.0,
            4.5,
            30.0,
            1e-30,
            1e-8,
            f32::MAX,
        ] {
            check(x);
            check(-x);
        }
        assert_eq!(erf_fast(0.0), 0.0);
    }

    #[test]
    fn exp_within_two_ulp() {
        for i in 0..=870_000 {
            let v = -(i as f32) * 1e-4;
            let want = (v as f64).exp();
            let e = (exp_nonpos(v) as f64 - want).abs() / ulp(want as f32);
            // Degree-7 Taylor on |r| <= ln2/2 is exact to 2e-9; the rest is f32 rounding.
            assert!(e <= 2.0, "exp({v}): {e} ulp");
        }
        assert_eq!(exp_nonpos(0.0), 1.0);
        assert_eq!(exp_nonpos(-1000.0), exp_nonpos(-87.0));
        assert!(exp_nonpos(f32::NAN).is_nan());
        let mut x: Vec<f32> = (0..1000).map(|i| i as f32 * -0.03).collect();
        let want: Vec<f32> = x.iter().map(|&v| exp_nonpos(v)).collect();
        exp_nonpos_inplace(&mut x);
        assert_eq!(x, want, "SIMD and portable paths differ");
    }
}
