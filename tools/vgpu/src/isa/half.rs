//! f16 / bf16 / f32 format conversions with every PTX rounding mode.
//!
//! The crate has no dependencies (no `half`), and the GPU's behaviour differs from a plain
//! `as` cast in ways kernels observe: directed rounding (`cvt.rz.f16.f32`), ties away
//! (`.rna`), overflow to the largest finite value under `.rz`, and NaN results being the
//! canonical `0x7fff` rather than the input's payload. All conversions go through
//! [`super::fp::round_pack`], which rounds the exact input once (no double rounding, also for
//! f64 -> f16).

use super::fp::{self, BF16, F16, F32, F64};
use super::types::Rnd;

/// f32 -> f16 with one rounding in mode `rnd`; subnormal results are produced (no flushing
/// here: `.ftz` is the caller's business), NaN -> `0x7fff`.
pub fn f32_to_f16(x: f32, rnd: Rnd) -> u16 {
    if rnd == Rnd::Rn {
        return f32_to_f16_rn(x);
    }
    fp::convert(x.to_bits() as u64, F32, F16, rnd) as u16
}

/// Round-to-nearest-even f32 -> f16 by bit arithmetic (every fp16 store of every kernel goes
/// through it); equal to the exact core's result (tested on all exponents and random
/// mantissas, ties and subnormals included).
fn f32_to_f16_rn(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return if man != 0 { 0x7fff } else { sign | 0x7c00 };
    }
    let e = exp - 112;
    if e >= 31 {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        r += 1;
    }
    sign | r as u16
}

/// f16 -> f32, exact (every f16 is an f32). NaN -> canonical f32 NaN `0x7fffffff`.
pub fn f16_to_f32(h: u16) -> f32 {
    // Hot (every mma operand, every fp16 load): direct bit arithmetic, equal to the exact
    // core's result (tested against it for all 65536 inputs).
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let man = h & 0x3ff;
    match exp {
        0x1f if man != 0 => f32::from_bits(0x7fff_ffff),
        0x1f => f32::from_bits(sign | 0x7f80_0000),
        0 => {
            let v = man as f32 * (1.0 / 16_777_216.0);
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
}

/// f64 -> f16 rounded directly from the f64 value (going through f32 would round twice).
pub fn f64_to_f16(x: f64, rnd: Rnd) -> u16 {
    fp::convert(x.to_bits(), F64, F16, rnd) as u16
}

/// f32 -> bf16 with one rounding in mode `rnd`; NaN -> `0x7fff`.
pub fn f32_to_bf16(x: f32, rnd: Rnd) -> u16 {
    fp::convert(x.to_bits() as u64, F32, BF16, rnd) as u16
}

/// bf16 -> f32, exact (bf16 is the top half of an f32). NaN -> canonical f32 NaN.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(fp::convert(h as u64, BF16, F32, Rnd::Rn) as u32)
}

/// f64 -> f32 with one rounding in mode `rnd` (the host `as` cast only does `.rn`).
pub fn f64_to_f32(x: f64, rnd: Rnd) -> f32 {
    f32::from_bits(fp::convert(x.to_bits(), F64, F32, rnd) as u32)
}

/// f64 -> bf16 with one rounding.
pub fn f64_to_bf16(x: f64, rnd: Rnd) -> u16 {
    fp::convert(x.to_bits(), F64, BF16, rnd) as u16
}

/// f16 -> f64 (exact).
pub fn f16_to_f64(h: u16) -> f64 {
    f64::from_bits(fp::convert(h as u64, F16, F64, Rnd::Rn))
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;

    #[test]
    fn f32_to_f16_rn_fast_path_equals_exact_core() {
        let mut st = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        };
        for exp in 0..=255u32 {
            for k in 0..4000u32 {
                let man = match k {
                    0 => 0,
                    1 => 0x7f_ffff,
                    2 => 0x1000,
                    3 => 0x3000,
                    _ => (next() as u32) & 0x7f_ffff,
                };
                for sign in [0u32, 1] {
                    let bits = sign << 31 | exp << 23 | man;
                    let exact = fp::convert(bits as u64, F32, F16, Rnd::Rn) as u16;
                    assert_eq!(f32_to_f16_rn(f32::from_bits(bits)), exact, "{bits:#010x}");
                }
            }
        }
    }

    #[test]
    fn f16_to_f32_fast_path_equals_exact_core_for_every_input() {
        for h in 0..=u16::MAX {
            let exact = fp::convert(h as u64, F16, F32, Rnd::Rn) as u32;
            assert_eq!(f16_to_f32(h).to_bits(), exact, "h = {h:#06x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Rnd::*;

    const ALL: [Rnd; 5] = [Rn, Rz, Rm, Rp, Rna];

    #[test]
    fn exact_values_all_modes() {
        for r in ALL {
            assert_eq!(f32_to_f16(1.0, r), 0x3c00);
            assert_eq!(f32_to_f16(-2.0, r), 0xc000);
            assert_eq!(f32_to_f16(65504.0, r), 0x7bff);
            assert_eq!(f32_to_f16(0.0, r), 0x0000);
            assert_eq!(f32_to_f16(-0.0, r), 0x8000);
            assert_eq!(f32_to_f16(f32::INFINITY, r), 0x7c00);
            assert_eq!(f32_to_f16(f32::NEG_INFINITY, r), 0xfc00);
            assert_eq!(f32_to_f16(f32::NAN, r), 0x7fff);
            assert_eq!(f32_to_f16(-f32::NAN, r), 0x7fff);
            // 2^-24: the smallest f16 subnormal, exact.
            assert_eq!(f32_to_f16(5.960_464_5e-8, r), 0x0001);
        }
    }

    #[test]
    fn ties_and_directed() {
        // 1 + 2^-11 is exactly halfway between 1.0 (0x3c00) and 1+2^-10 (0x3c01).
        let t = 1.0 + 2f32.powi(-11);
        assert_eq!(f32_to_f16(t, Rn), 0x3c00); // ties to even
        assert_eq!(f32_to_f16(t, Rna), 0x3c01); // ties away
        assert_eq!(f32_to_f16(t, Rz), 0x3c00);
        assert_eq!(f32_to_f16(t, Rm), 0x3c00);
        assert_eq!(f32_to_f16(t, Rp), 0x3c01);
        // 1 + 3*2^-11 is halfway between 0x3c01 and 0x3c02: even is 0x3c02.
        let t2 = 1.0 + 3.0 * 2f32.powi(-11);
        assert_eq!(f32_to_f16(t2, Rn), 0x3c02);
        assert_eq!(f32_to_f16(t2, Rna), 0x3c02);
        assert_eq!(f32_to_f16(t2, Rz), 0x3c01);
        // Negative tie: -(1 + 2^-11).
        assert_eq!(f32_to_f16(-t, Rn), 0xbc00);
        assert_eq!(f32_to_f16(-t, Rna), 0xbc01);
        assert_eq!(f32_to_f16(-t, Rm), 0xbc01);
        assert_eq!(f32_to_f16(-t, Rp), 0xbc00);
        assert_eq!(f32_to_f16(-t, Rz), 0xbc00);
        // Slightly above the tie: every nearest mode goes up.
        let a = 1.0 + 2f32.powi(-11) + 2f32.powi(-20);
        assert_eq!(f32_to_f16(a, Rn), 0x3c01);
        assert_eq!(f32_to_f16(a, Rz), 0x3c00);
        // 0.1f32 = 0x3dcccccd -> f16 nearest 0x2e66, above it 0x2e67.
        assert_eq!(f32_to_f16(0.1, Rn), 0x2e66);
        assert_eq!(f32_to_f16(0.1, Rz), 0x2e66);
        assert_eq!(f32_to_f16(0.1, Rp), 0x2e67);
        assert_eq!(f32_to_f16(-0.1, Rm), 0xae67);
    }

    #[test]
    fn overflow_per_mode() {
        // 65520 is the midpoint between 65504 (max) and 65536 (=inf after rounding).
        assert_eq!(f32_to_f16(65520.0, Rn), 0x7c00);
        assert_eq!(f32_to_f16(65519.0, Rn), 0x7bff);
        assert_eq!(f32_to_f16(65520.0, Rz), 0x7bff);
        assert_eq!(f32_to_f16(1e10, Rz), 0x7bff);
        assert_eq!(f32_to_f16(1e10, Rm), 0x7bff);
        assert_eq!(f32_to_f16(1e10, Rp), 0x7c00);
        assert_eq!(f32_to_f16(1e10, Rna), 0x7c00);
        assert_eq!(f32_to_f16(-1e10, Rp), 0xfbff);
        assert_eq!(f32_to_f16(-1e10, Rm), 0xfc00);
        assert_eq!(f32_to_f16(-1e10, Rz), 0xfbff);
        assert_eq!(f32_to_f16(65504.5, Rp), 0x7c00);
    }

    #[test]
    fn subnormals() {
        // 3 * 2^-25 = 1.5 * 2^-24: halfway between subnormals 1 and 2 -> even (2).
        let x = 3.0 * 2f32.powi(-25);
        assert_eq!(f32_to_f16(x, Rn), 0x0002);
        assert_eq!(f32_to_f16(x, Rz), 0x0001);
        assert_eq!(f32_to_f16(x, Rna), 0x0002);
        // 2^-25 is halfway between 0 and the smallest subnormal: even is 0.
        let h = 2f32.powi(-25);
        assert_eq!(f32_to_f16(h, Rn), 0x0000);
        assert_eq!(f32_to_f16(h, Rna), 0x0001);
        assert_eq!(f32_to_f16(-h, Rn), 0x8000);
        assert_eq!(f32_to_f16(1e-30, Rp), 0x0001);
        assert_eq!(f32_to_f16(1e-30, Rn), 0x0000);
        assert_eq!(f32_to_f16(-1e-30, Rm), 0x8001);
        assert_eq!(f32_to_f16(f32::from_bits(1), Rp), 0x0001);
        // Largest subnormal rounds up into the smallest normal.
        let below = 2f32.powi(-14) - 2f32.powi(-26);
        assert_eq!(f32_to_f16(below, Rn), 0x0400);
        assert_eq!(f32_to_f16(below, Rz), 0x03ff);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8400), -(2f32.powi(-14)));
    }

    #[test]
    fn f16_to_f32_specials() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc500), -5.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
        assert_eq!(f16_to_f32(0x7e00).to_bits(), 0x7fff_ffff);
        assert_eq!(f16_to_f64(0x3555), 0.333251953125);
    }

    #[test]
    fn f64_to_f16_no_double_rounding() {
        // x = 1 + 2^-11 + 2^-40: just above the f16 tie. Via f32 it would first round to the
        // tie 1 + 2^-11 and then to even (1.0); directly it must round up.
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(f32_to_f16(x as f32, Rn), 0x3c00);
        assert_eq!(f64_to_f16(x, Rn), 0x3c01);
        assert_eq!(f64_to_f16(x, Rz), 0x3c00);
        assert_eq!(f64_to_f16(-x, Rm), 0xbc01);
        assert_eq!(f64_to_f16(f64::NAN, Rn), 0x7fff);
        assert_eq!(f64_to_f16(1e300, Rz), 0x7bff);
        assert_eq!(f64_to_f16(1e-300, Rp), 0x0001);
    }

    #[test]
    fn bf16() {
        assert_eq!(f32_to_bf16(1.0, Rn), 0x3f80);
        // 1 + 2^-8 is the tie between 0x3f80 and 0x3f81.
        let t = 1.0 + 2f32.powi(-8);
        assert_eq!(f32_to_bf16(t, Rn), 0x3f80);
        assert_eq!(f32_to_bf16(t, Rna), 0x3f81);
        assert_eq!(f32_to_bf16(t, Rp), 0x3f81);
        assert_eq!(f32_to_bf16(-t, Rm), 0xbf81);
        assert_eq!(f32_to_bf16(f32::MAX, Rn), 0x7f80);
        assert_eq!(f32_to_bf16(f32::MAX, Rz), 0x7f7f);
        assert_eq!(f32_to_bf16(f32::NAN, Rn), 0x7fff);
        assert_eq!(f32_to_bf16(f32::from_bits(1), Rp), 0x0001);
        assert_eq!(bf16_to_f32(0x4049).to_bits(), 0x4049_0000);
        assert_eq!(bf16_to_f32(0xff80), f32::NEG_INFINITY);
        assert_eq!(f64_to_bf16(3.0, Rn), 0x4040);
    }

    #[test]
    fn f64_to_f32_directed() {
        let x = 0.1f64; // not representable in f32
        let lo = f32::from_bits(0x3dcc_cccc);
        let hi = f32::from_bits(0x3dcc_cccd);
        assert_eq!(f64_to_f32(x, Rn), hi);
        assert_eq!(f64_to_f32(x, Rz), lo);
        assert_eq!(f64_to_f32(x, Rm), lo);
        assert_eq!(f64_to_f32(x, Rp), hi);
        assert_eq!(f64_to_f32(-x, Rm), -hi);
        assert_eq!(f64_to_f32(-x, Rz), -lo);
        assert_eq!(f64_to_f32(1e300, Rz), f32::MAX);
        assert_eq!(f64_to_f32(1e300, Rn), f32::INFINITY);
        assert_eq!(f64_to_f32(-1e300, Rp), f32::MIN);
        assert_eq!(f64_to_f32(1e-300, Rp).to_bits(), 1);
        assert_eq!(f64_to_f32(1e-300, Rn).to_bits(), 0);
        assert_eq!(f64_to_f32(f64::NAN, Rn).to_bits(), 0x7fff_ffff);
        // Exhaustive agreement of .rn with the host cast over a sweep of f64 values.
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = f64::from_bits(s);
            if v.is_nan() {
                continue;
            }
            assert_eq!(f64_to_f32(v, Rn).to_bits(), (v as f32).to_bits(), "{v:e}");
            let (d, u) = (f64_to_f32(v, Rm) as f64, f64_to_f32(v, Rp) as f64);
            assert!(d <= v && v <= u, "{v:e}");
        }
    }

    #[test]
    fn f16_round_trip_all_values() {
        // Every non-NaN f16 survives f16 -> f32 -> f16 in every mode (exact values).
        for h in 0..=u16::MAX {
            if (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 {
                continue;
            }
            for r in ALL {
                assert_eq!(f32_to_f16(f16_to_f32(h), r), h);
            }
        }
    }
}
