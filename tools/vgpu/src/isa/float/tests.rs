//! Hand-computed cases for the rounded arithmetic, plus sweeps against the host (whose f32/f64
//! `+ - * / sqrt mul_add` are IEEE round-to-nearest) and against exactness checks for the
//! directed modes.

use super::*;
use Rnd::*;

fn p2(e: i32) -> f32 {
    2f32.powi(e)
}

#[test]
fn fma_single_rounding_differs_from_mul_add() {
    // a = b = 1 + 2^-12: a*b = 1 + 2^-11 + 2^-24 exactly; rounding the product drops 2^-24.
    let a = 1.0 + p2(-12);
    let c = -(1.0 + p2(-11));
    assert_eq!(fma_f32(a, a, c, Rn), p2(-24));
    assert_eq!(add_f32(mul_f32(a, a, Rn), c, Rn), 0.0);
    assert_eq!(fma_f32(a, a, c, Rz), p2(-24));
    // f64 analogue.
    let a = 1.0 + 2f64.powi(-27);
    let c = -(1.0 + 2f64.powi(-26));
    assert_eq!(fma_f64(a, a, c, Rn), 2f64.powi(-54));
    assert_eq!(add_f64(mul_f64(a, a, Rn), c, Rn), 0.0);
    // Directed fma: 1 + 2^-60 (tiny product) rounds up only under .rp.
    let t = 2f64.powi(-30);
    assert_eq!(fma_f64(t, t, 1.0, Rn), 1.0);
    assert_eq!(fma_f64(t, t, 1.0, Rp), 1.0 + f64::EPSILON);
    assert_eq!(fma_f64(-t, t, 1.0, Rz), 1.0 - f64::EPSILON / 2.0);
    assert_eq!(fma_f64(-t, t, 1.0, Rn), 1.0);
    assert_eq!(fma_f32(p2(-20), p2(-20), 1.0, Rp), 1.0 + p2(-23));
    assert_eq!(fma_f32(-p2(-20), p2(-20), -1.0, Rm), -(1.0 + p2(-23)));
}

#[test]
fn directed_add_mul_div_sqrt() {
    let s = p2(-30);
    assert_eq!(add_f32(1.0, s, Rn), 1.0);
    assert_eq!(add_f32(1.0, s, Rz), 1.0);
    assert_eq!(add_f32(1.0, s, Rm), 1.0);
    assert_eq!(add_f32(1.0, s, Rp), 1.0 + p2(-23));
    assert_eq!(add_f32(-1.0, -s, Rm), -(1.0 + p2(-23)));
    assert_eq!(add_f32(-1.0, -s, Rp), -1.0);
    assert_eq!(sub_f32(1.0, s, Rz), 1.0 - p2(-24));
    assert_eq!(sub_f32(1.0, s, Rn), 1.0);
    // Exact zero: +0 except under .rm.
    assert_eq!(add_f32(1.0, -1.0, Rn).to_bits(), 0);
    assert_eq!(add_f32(1.0, -1.0, Rm).to_bits(), 0x8000_0000);
    assert_eq!(add_f32(-0.0, -0.0, Rn).to_bits(), 0x8000_0000);
    assert_eq!(add_f32(-0.0, 0.0, Rp).to_bits(), 0);
    assert_eq!(sub_f32(0.0, 0.0, Rm).to_bits(), 0x8000_0000);
    // Products.
    let u = 1.0 + p2(-23);
    assert_eq!(mul_f32(u, u, Rn), 1.0 + p2(-22));
    assert_eq!(mul_f32(u, u, Rp), 1.0 + p2(-22) + p2(-23));
    assert_eq!(mul_f32(u, -u, Rm), -(1.0 + p2(-22) + p2(-23)));
    assert_eq!(mul_f32(u, -u, Rz), -(1.0 + p2(-22)));
    assert_eq!(mul_f32(f32::MAX, 2.0, Rn), f32::INFINITY);
    assert_eq!(mul_f32(f32::MAX, 2.0, Rz), f32::MAX);
    assert_eq!(mul_f32(f32::MAX, -2.0, Rp), f32::MIN);
    assert_eq!(mul_f32(f32::MAX, -2.0, Rm), f32::NEG_INFINITY);
    assert_eq!(mul_f32(p2(-100), p2(-100), Rp).to_bits(), 1); // underflow up
    assert_eq!(mul_f32(p2(-100), p2(-100), Rn).to_bits(), 0);
    assert_eq!(mul_f32(f32::INFINITY, 0.0, Rn).to_bits(), 0x7fff_ffff);
    // 1/3.
    assert_eq!(div_f32(1.0, 3.0, Rn).to_bits(), 0x3eaa_aaab);
    assert_eq!(div_f32(1.0, 3.0, Rz).to_bits(), 0x3eaa_aaaa);
    assert_eq!(div_f32(1.0, 3.0, Rm).to_bits(), 0x3eaa_aaaa);
    assert_eq!(div_f32(1.0, 3.0, Rp).to_bits(), 0x3eaa_aaab);
    assert_eq!(div_f32(-1.0, 3.0, Rm).to_bits(), 0xbeaa_aaab);
    assert_eq!(div_f32(1.0, 0.0, Rn), f32::INFINITY);
    assert_eq!(div_f32(-1.0, 0.0, Rn), f32::NEG_INFINITY);
    assert_eq!(div_f32(0.0, 0.0, Rn).to_bits(), 0x7fff_ffff);
    assert_eq!(rcp_f32(-0.0, Rn), f32::NEG_INFINITY);
    assert_eq!(rcp_f32(3.0, Rz).to_bits(), 0x3eaa_aaaa);
    assert_eq!(div_f64(1.0, 3.0, Rn), 1.0 / 3.0);
    assert_eq!(div_f64(1.0, 3.0, Rp), (1.0f64 / 3.0).next_up());
    assert_eq!(rcp_f64(3.0, Rz), 1.0 / 3.0); // f64 RN of 1/3 is below it
    assert_eq!(rcp_f64(3.0, Rp), (1.0f64 / 3.0).next_up());
    // sqrt(2) = 1.41421356...; f32 RN is 0x3fb504f3 (below).
    assert_eq!(sqrt_f32(2.0, Rn).to_bits(), 0x3fb5_04f3);
    assert_eq!(sqrt_f32(2.0, Rz).to_bits(), 0x3fb5_04f3);
    assert_eq!(sqrt_f32(2.0, Rp).to_bits(), 0x3fb5_04f4);
    assert_eq!(sqrt_f32(4.0, Rp), 2.0);
    assert_eq!(sqrt_f32(-0.0, Rn).to_bits(), 0x8000_0000);
    assert_eq!(sqrt_f32(-1.0, Rn).to_bits(), 0x7fff_ffff);
    assert_eq!(sqrt_f64(2.0, Rn), 2f64.sqrt());
    // The f64 RN of sqrt(2) (1.41421356237309514547) lies above sqrt(2) = 1.41421356237309504880.
    assert_eq!(sqrt_f64(2.0, Rp), 2f64.sqrt());
    assert_eq!(sqrt_f64(2.0, Rz), 2f64.sqrt().next_down());
    // f64 directed add / mul.
    assert_eq!(add_f64(1.0, 1e-30, Rp), 1.0 + f64::EPSILON);
    assert_eq!(add_f64(1.0, -1e-30, Rz), 1.0 - f64::EPSILON / 2.0);
    assert_eq!(add_f64(f64::MAX, f64::MAX, Rz), f64::MAX);
    assert_eq!(
        mul_f64(1.0 + f64::EPSILON, 1.0 + f64::EPSILON, Rm),
        1.0 + 2.0 * f64::EPSILON
    );
    assert_eq!(sub_f64(1.0, 1.0, Rm).to_bits(), (-0.0f64).to_bits());
    // div.approx quirk and div.full.
    assert_eq!(div_approx_f32(1.0, 2f32.powi(127)), 0.0);
    assert!(div_approx_f32(f32::INFINITY, 2f32.powi(127)).is_nan());
    assert_eq!(div_approx_f32(6.0, 3.0), 2.0);
    assert_eq!(div_full_f32(1.0, 3.0).to_bits(), 0x3eaa_aaab);
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        // Mostly moderate exponents, some anything-goes bit patterns.
        let r = self.next();
        if r.is_multiple_of(8) {
            f32::from_bits(r as u32 >> 1 | ((r >> 40) as u32 & 0x8000_0000))
        } else {
            let e = (r >> 32) % 40;
            let m = 1.0 + (r as u32 >> 9) as f32 * p2(-23);
            let v = m * 2f32.powi(e as i32 - 20);
            if r & (1 << 60) != 0 {
                -v
            } else {
                v
            }
        }
    }
    fn f64(&mut self) -> f64 {
        let r = self.next();
        if r.is_multiple_of(8) {
            f64::from_bits(r)
        } else {
            let m = 1.0 + (r >> 12) as f64 * 2f64.powi(-52);
            let v = m * 2f64.powi(((r >> 52) % 80) as i32 - 40);
            if r & 1 != 0 {
                -v
            } else {
                v
            }
        }
    }
}

fn same32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
fn same64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn sweep_f32_rn_matches_host_and_directed_brackets() {
    let mut g = Rng(0xdead_beef_1234_5678);
    for _ in 0..50_000 {
        let (a, b, c) = (g.f32(), g.f32(), g.f32());
        assert!(same32(add_f32(a, b, Rn), a + b), "{a:e}+{b:e}");
        assert!(same32(sub_f32(a, b, Rn), a - b));
        assert!(same32(mul_f32(a, b, Rn), a * b), "{a:e}*{b:e}");
        assert!(same32(div_f32(a, b, Rn), a / b), "{a:e}/{b:e}");
        assert!(same32(sqrt_f32(a, Rn), a.sqrt()), "sqrt {a:e}");
        assert!(
            same32(fma_f32(a, b, c, Rn), a.mul_add(b, c)),
            "fma {a:e} {b:e} {c:e}"
        );
        // Products and sums of two f32 are exact in f64 when finite: check brackets.
        for (exact, r) in [((a as f64) * (b as f64), mul_f32 as fn(f32, f32, Rnd) -> f32)] {
            if !exact.is_finite() || exact.abs() > f32::MAX as f64 {
                continue;
            }
            let (lo, hi, z) = (r(a, b, Rm) as f64, r(a, b, Rp) as f64, r(a, b, Rz) as f64);
            assert!(lo <= exact && exact <= hi, "{a:e}*{b:e}");
            assert!(
                lo == hi || (r(a, b, Rm).next_up() == r(a, b, Rp)),
                "{a:e}*{b:e}"
            );
            assert_eq!(z, if exact >= 0.0 { lo } else { hi });
        }
        let e = a as f64 + b as f64;
        if e.is_finite()
            && (a as f64 + b as f64 - a as f64) == b as f64
            && e.abs() <= f32::MAX as f64
        {
            let (lo, hi) = (add_f32(a, b, Rm) as f64, add_f32(a, b, Rp) as f64);
            assert!(lo <= e && e <= hi, "{a:e}+{b:e}");
        }
    }
}

#[test]
fn sweep_f64_rn_matches_host_and_directed_via_residual() {
    let mut g = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..50_000 {
        let (a, b, c) = (g.f64(), g.f64(), g.f64());
        let s = a + b;
        assert!(same64(add_f64(a, b, Rn), s));
        assert!(same64(mul_f64(a, b, Rn), a * b));
        assert!(same64(div_f64(a, b, Rn), a / b));
        assert!(same64(sqrt_f64(a, Rn), a.sqrt()));
        assert!(
            same64(fma_f64(a, b, c, Rn), a.mul_add(b, c)),
            "fma {a:e} {b:e} {c:e}"
        );
        // TwoSum residual decides the directed results independently.
        if s.is_finite() && s != 0.0 {
            let bb = s - a;
            let err = (a - (s - bb)) + (b - bb);
            let up = if err > 0.0 { s.next_up() } else { s };
            let dn = if err < 0.0 { s.next_down() } else { s };
            assert_eq!(add_f64(a, b, Rp), up, "{a:e}+{b:e}");
            assert_eq!(add_f64(a, b, Rm), dn, "{a:e}+{b:e}");
        }
        // Product residual via the host's exact fma (valid away from underflow).
        let p = a * b;
        if p.is_finite() && p.abs() > 1e-290 {
            let err = a.mul_add(b, -p);
            let up = if err > 0.0 { p.next_up() } else { p };
            let dn = if err < 0.0 { p.next_down() } else { p };
            assert_eq!(mul_f64(a, b, Rp), up);
            assert_eq!(mul_f64(a, b, Rm), dn);
            let q = a / b;
            if q.is_finite() && q.abs() > 1e-290 {
                let r = q.mul_add(b, -a); // q*b - a: sign tells whether q is above a/b
                let above = (r > 0.0) == (b > 0.0) && r != 0.0;
                let below = (r < 0.0) == (b > 0.0) && r != 0.0;
                assert_eq!(
                    div_f64(a, b, Rp),
                    if below { q.next_up() } else { q },
                    "{a:e}/{b:e}"
                );
                assert_eq!(
                    div_f64(a, b, Rm),
                    if above { q.next_down() } else { q },
                    "{a:e}/{b:e}"
                );
            }
        }
    }
}

#[test]
fn min_max_nan_and_zero() {
    let nan = f32::NAN;
    assert_eq!(min_f32(nan, 1.0, false), 1.0);
    assert_eq!(min_f32(1.0, nan, false), 1.0);
    assert_eq!(max_f32(nan, -1.0, false), -1.0);
    assert_eq!(min_f32(nan, nan, false).to_bits(), 0x7fff_ffff);
    assert_eq!(min_f32(nan, 1.0, true).to_bits(), 0x7fff_ffff);
    assert_eq!(max_f32(2.0, nan, true).to_bits(), 0x7fff_ffff);
    assert_eq!(min_f32(0.0, -0.0, false).to_bits(), 0x8000_0000);
    assert_eq!(min_f32(-0.0, 0.0, false).to_bits(), 0x8000_0000);
    assert_eq!(max_f32(-0.0, 0.0, false).to_bits(), 0);
    assert_eq!(max_f32(0.0, -0.0, false).to_bits(), 0);
    assert_eq!(min_f32(-3.0, 2.0, false), -3.0);
    assert_eq!(max_f32(-3.0, -2.0, false), -2.0);
    assert_eq!(max_f32(f32::NEG_INFINITY, -1e38, false), -1e38);
    assert_eq!(min_f64(f64::NAN, 5.0, false), 5.0);
    assert_eq!(max_f64(-0.0, 0.0, false).to_bits(), 0);
    assert_eq!(min_f16(0x7e00, 0x3c00, false), 0x3c00);
    assert_eq!(min_f16(0x7e00, 0x3c00, true), 0x7fff);
    assert_eq!(max_f16(0xbc00, 0x3c00, false), 0x3c00);
    assert_eq!(
        minmax_f16x2(0x3c00_bc00, 0x4000_7e00, false, false),
        0x3c00_bc00
    );
    assert_eq!(
        minmax_bf16x2(0x3f80_0000, 0x4000_8000, false, true),
        0x4000_0000
    );
}

#[test]
fn ftz_sat_helpers() {
    assert_eq!(ftz32(f32::from_bits(0x8000_0001)).to_bits(), 0x8000_0000);
    assert_eq!(ftz32(f32::from_bits(0x0080_0000)).to_bits(), 0x0080_0000);
    assert_eq!(sat32(1.5), 1.0);
    assert_eq!(sat32(-2.0).to_bits(), 0);
    assert_eq!(sat32(f32::NAN).to_bits(), 0);
    assert_eq!(sat32(0.5), 0.5);
    assert_eq!(sat64(f64::INFINITY), 1.0);
}

/// ulp distance measured in units of the f32 spacing at the reference value.
fn ulps(got: f32, want: f64) -> f64 {
    if got as f64 == want {
        return 0.0;
    }
    let w = want as f32;
    let spacing = (w.abs().next_up() - w.abs()) as f64;
    (got as f64 - want).abs() / spacing
}

#[test]
fn approximations_within_isa_bounds() {
    let mut g = Rng(99);
    for i in 0..40_000 {
        let u = (g.next() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                                                               // ex2 over [-126, 127], 2 ulp.
        let x = (u * 253.0 - 126.0) as f32;
        assert!(
            ulps(ex2_approx_f32(x, false), (x as f64).exp2()) <= 2.0,
            "ex2 {x}"
        );
        // lg2 on positive values over many binades: abs error 2^-22 near 1, else relative.
        let y = f32::from_bits(((u * 0x7f00_0000 as f64) as u32).max(0x0080_0000));
        let l = lg2_approx_f32(y, false) as f64;
        let lw = (y as f64).log2();
        assert!(
            (l - lw).abs() <= 2f64.powi(-22) * lw.abs().max(1.0),
            "lg2 {y}"
        );
        // rcp 1 ulp, rsqrt rel 2^-22.9, sqrt rel 2^-23.
        assert!(
            ulps(rcp_approx_f32(y, false), 1.0 / y as f64) <= 1.0,
            "rcp {y}"
        );
        let rs = rsqrt_approx_f32(y, false) as f64;
        let rw = 1.0 / (y as f64).sqrt();
        assert!((rs - rw).abs() <= 2f64.powi(-22) * rw, "rsqrt {y}");
        let sq = sqrt_approx_f32(y, false) as f64;
        assert!(
            (sq - (y as f64).sqrt()).abs() <= 2f64.powi(-23) * sq,
            "sqrt {y}"
        );
        // sin/cos: absolute error 2^-20.5 on [-100pi, 100pi].
        let t = ((u * 2.0 - 1.0) * 100.0 * std::f64::consts::PI) as f32;
        assert!((sin_approx_f32(t, false) as f64 - (t as f64).sin()).abs() <= 2f64.powf(-20.5));
        assert!((cos_approx_f32(t, false) as f64 - (t as f64).cos()).abs() <= 2f64.powf(-20.5));
        // tanh: relative 2^-11 on [-10, 10].
        let h = ((u * 2.0 - 1.0) * 10.0) as f32;
        let th = (h as f64).tanh();
        assert!((tanh_approx_f32(h, false) as f64 - th).abs() <= 2f64.powi(-11) * th.abs());
        // ex2.f16: relative 2^-9.9 over the f16 range.
        if i % 8 == 0 {
            let hx = crate::isa::half::f32_to_f16((u * 30.0 - 15.0) as f32, Rnd::Rn);
            let want = (crate::isa::half::f16_to_f32(hx) as f64).exp2();
            let got = crate::isa::half::f16_to_f32(ex2_approx_f16(hx)) as f64;
            assert!(
                (got - want).abs() <= 2f64.powf(-9.9) * want,
                "ex2.f16 {hx:#x}"
            );
        }
    }
}

#[test]
fn approximation_special_cases() {
    let (inf, ninf, nan) = (f32::INFINITY, f32::NEG_INFINITY, f32::NAN);
    assert_eq!(ex2_approx_f32(ninf, false).to_bits(), 0);
    assert_eq!(ex2_approx_f32(inf, false), inf);
    assert_eq!(ex2_approx_f32(nan, false).to_bits(), 0x7fff_ffff);
    assert_eq!(ex2_approx_f32(3.0, false), 8.0);
    assert_eq!(ex2_approx_f32(-0.0, false), 1.0);
    assert_eq!(ex2_approx_f32(-140.0, false).to_bits(), 0x0000_0200); // subnormal 2^-140
    assert_eq!(ex2_approx_f32(-140.0, true).to_bits(), 0); // flushed with .ftz
    assert_eq!(lg2_approx_f32(0.0, false), ninf);
    assert_eq!(lg2_approx_f32(-0.0, false), ninf);
    assert!(lg2_approx_f32(-1.0, false).is_nan());
    assert_eq!(lg2_approx_f32(inf, false), inf);
    assert_eq!(lg2_approx_f32(8.0, false), 3.0);
    assert_eq!(lg2_approx_f32(f32::from_bits(1), false), -149.0);
    assert_eq!(lg2_approx_f32(f32::from_bits(1), true), ninf);
    assert_eq!(rcp_approx_f32(0.0, false), inf);
    assert_eq!(rcp_approx_f32(-0.0, false), ninf);
    assert_eq!(rcp_approx_f32(ninf, false).to_bits(), 0x8000_0000);
    assert_eq!(rcp_approx_f32(f32::from_bits(0x8000_0001), true), ninf);
    assert_eq!(rcp_approx_f32(4.0, false), 0.25);
    assert_eq!(rsqrt_approx_f32(0.0, false), inf);
    assert_eq!(rsqrt_approx_f32(-0.0, false), ninf);
    assert!(rsqrt_approx_f32(-4.0, false).is_nan());
    assert_eq!(rsqrt_approx_f32(inf, false), 0.0);
    assert_eq!(rsqrt_approx_f32(4.0, false), 0.5);
    assert_eq!(sqrt_approx_f32(-0.0, false).to_bits(), 0x8000_0000);
    assert!(sqrt_approx_f32(-1.0, false).is_nan());
    assert!(sin_approx_f32(inf, false).is_nan());
    assert!(cos_approx_f32(ninf, false).is_nan());
    assert_eq!(sin_approx_f32(-0.0, false).to_bits(), 0x8000_0000);
    assert_eq!(cos_approx_f32(0.0, false), 1.0);
    assert_eq!(tanh_approx_f32(inf, false), 1.0);
    assert_eq!(tanh_approx_f32(ninf, false), -1.0);
    assert_eq!(tanh_approx_f32(-0.0, false).to_bits(), 0x8000_0000);
    assert_eq!(ex2_approx_f16(0x3c00), 0x4000); // 2^1 = 2
    assert_eq!(ex2_approx_f16(0xfc00), 0x0000); // 2^-inf = 0
    assert_eq!(ex2_approx_f16(0x7c00), 0x7c00);
    assert_eq!(ex2_approx_f16(0x4c00), 0x7c00); // 2^16 overflows f16
    assert_eq!(ex2_approx_f16x2(0x3c00_0000), 0x4000_3c00);
    assert_eq!(tanh_approx_f16(0x0000), 0x0000);
    assert_eq!(rcp_approx_ftz_f64(0.0), f64::INFINITY);
    assert_eq!(rcp_approx_ftz_f64(f64::from_bits(1)), f64::INFINITY);
    assert_eq!(rcp_approx_ftz_f64(4.0), 0.25);
    assert_eq!(rcp_approx_ftz_f64(1e308), 0.0); // 1e-308 is subnormal -> flushed
    assert_eq!(rsqrt_approx_f64(-0.0), f64::NEG_INFINITY);
}

#[test]
fn f16_arithmetic() {
    // 1 + 2^-11 is an f16 tie.
    assert_eq!(add_f16(0x3c00, 0x1000, Rn, false, false), 0x3c00);
    assert_eq!(add_f16(0x3c00, 0x1000, Rp, false, false), 0x3c01);
    assert_eq!(add_f16(0x3c00, 0x1000, Rz, false, false), 0x3c00);
    assert_eq!(add_f16(0x3c01, 0x1000, Rn, false, false), 0x3c02); // tie to even (up)
    assert_eq!(sub_f16(0x3c00, 0x3c00, Rn, false, false), 0x0000);
    assert_eq!(sub_f16(0x3c00, 0x3c00, Rm, false, false), 0x8000);
    assert_eq!(mul_f16(0x4000, 0x4200, Rn, false, false), 0x4600); // 2*3 = 6
    assert_eq!(mul_f16(0x7bff, 0x4000, Rn, false, false), 0x7c00);
    assert_eq!(mul_f16(0x7bff, 0x4000, Rz, false, false), 0x7bff);
    // .sat and .ftz.
    assert_eq!(add_f16(0x3c00, 0x3c00, Rn, false, true), 0x3c00);
    assert_eq!(add_f16(0xbc00, 0x3800, Rn, false, true), 0x0000);
    assert_eq!(add_f16(0x7e00, 0x3800, Rn, false, true), 0x0000);
    assert_eq!(add_f16(0x7e00, 0x3800, Rn, false, false), 0x7fff);
    assert_eq!(add_f16(0x0001, 0x0001, Rn, false, false), 0x0002);
    assert_eq!(add_f16(0x0001, 0x0001, Rn, true, false), 0x0000);
    assert_eq!(mul_f16(0x0400, 0x3800, Rn, true, false), 0x0000); // result subnormal
    assert_eq!(mul_f16(0x0400, 0x3800, Rn, false, false), 0x0200);
    // fma single rounding: (1 + 2^-6)^2 - (1 + 2^-5) = 2^-12 (lost if the product rounds).
    let a = 0x3c10; // 1 + 2^-6
    let c = 0xbc20; // -(1 + 2^-5)
    assert_eq!(fma_f16(a, a, c, Rn, false, false), 0x0c00); // 2^-12
    assert_eq!(
        add_f16(mul_f16(a, a, Rn, false, false), c, Rn, false, false),
        0x0000
    );
    // Packed: lanes are independent and element 0 is the low half.
    assert_eq!(
        add_f16x2(0x3c00_4000, 0x3c00_bc00, Rn, false, false),
        0x4000_3c00
    );
    assert_eq!(
        mul_f16x2(0x4000_4200, 0x4200_4000, Rn, false, false),
        0x4600_4600
    );
    assert_eq!(
        fma_f16x2(0x3c00_3c00, 0x4000_4200, 0x3c00_bc00, Rn, false, false),
        0x4200_4000
    );
    assert_eq!(
        sub_f16x2(0x4000_4000, 0x3c00_4000, Rn, false, false),
        0x3c00_0000
    );
    // bf16: 1 + 2^-8 tie.
    assert_eq!(add_bf16(0x3f80, 0x3b80, Rn), 0x3f80);
    assert_eq!(add_bf16(0x3f80, 0x3b80, Rp), 0x3f81);
    assert_eq!(mul_bf16(0x4000, 0x4040, Rn), 0x40c0);
    assert_eq!(fma_bf16(0x3f80, 0x3f80, 0xbf80, Rn), 0x0000);
    assert_eq!(sub_bf16(0x4000, 0x3f80, Rn), 0x3f80);
    assert_eq!(add_bf16x2(0x3f80_4000, 0x3f80_4000, Rn), 0x4000_4080);
    assert_eq!(sub_bf16x2(0x3f80_4000, 0x3f80_4000, Rn), 0x0000_0000);
    assert_eq!(mul_bf16x2(0x4000_3f80, 0x4000_4000, Rn), 0x4080_4000);
    assert_eq!(
        fma_bf16x2(0x4000_3f80, 0x4000_4000, 0x3f80_3f80, Rn),
        0x40a0_4040
    );
}
