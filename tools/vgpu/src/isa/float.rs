//! Floating-point arithmetic with explicit PTX rounding modifiers, min/max, and the `.approx`
//! special functions.
//!
//! The IEEE-rounded instructions (`add/sub/mul/fma/div/sqrt/rcp` with `.rn/.rz/.rm/.rp`) are
//! computed exactly and rounded once by [`super::fp`], so every mode is exact for f32, f64,
//! f16 and bf16. `.ftz` and `.sat` are separate helpers ([`ftz32`], [`sat32`]) the interpreter
//! applies to inputs and results, except for the f16 functions which take them as flags.
//!
//! The `.approx` instructions are computed in f64 and rounded to nearest, i.e. (almost)
//! correctly rounded; each function documents the bound the ISA allows, which real hardware
//! uses and which kernels must tolerate ([`super::approx`] errs by up to it, for
//! `VGPU_NUMERICS=hardware`). NaN results are the canonical NaN (`0x7fffffff`).

use super::fp::{self, Fmt, BF16, F16, F32, F64};
use super::types::Rnd;

fn b32(x: f32) -> u64 {
    x.to_bits() as u64
}
fn f32b(x: u64) -> f32 {
    f32::from_bits(x as u32)
}

/// `add.rnd.f32`.
pub fn add_f32(a: f32, b: f32, rnd: Rnd) -> f32 {
    f32b(fp::add(b32(a), b32(b), F32, rnd))
}
/// `sub.rnd.f32` (`a + (-b)`; the sign of an exact zero follows IEEE: -0 only under `.rm`).
pub fn sub_f32(a: f32, b: f32, rnd: Rnd) -> f32 {
    f32b(fp::add(b32(a), b32(-b), F32, rnd))
}
/// `mul.rnd.f32`.
pub fn mul_f32(a: f32, b: f32, rnd: Rnd) -> f32 {
    f32b(fp::mul(b32(a), b32(b), F32, rnd))
}
/// `fma.rnd.f32` / `mad.rnd.f32`: `a*b + c` with a single rounding.
pub fn fma_f32(a: f32, b: f32, c: f32, rnd: Rnd) -> f32 {
    f32b(fp::fma(b32(a), b32(b), b32(c), F32, rnd))
}
/// `div.rnd.f32` (IEEE division in any mode).
pub fn div_f32(a: f32, b: f32, rnd: Rnd) -> f32 {
    f32b(fp::div(b32(a), b32(b), F32, rnd))
}
/// `div.rn.f32`: IEEE round-to-nearest division.
pub fn div_rn_f32(a: f32, b: f32) -> f32 {
    div_f32(a, b, Rnd::Rn)
}
/// `div.full.f32`: the ISA allows 2 ulp error over the full range; the IEEE result is
/// returned (it is within that bound).
pub fn div_full_f32(a: f32, b: f32) -> f32 {
    div_rn_f32(a, b)
}
/// `div.approx.f32`: `a * (1/b)`; the ISA bounds it by 2 ulp for |b| in [2^-126, 2^126] and
/// specifies that for 2^126 < |b| < 2^128 the result is 0 (NaN if `a` is infinite), which is
/// reproduced because kernels can observe it.
pub fn div_approx_f32(a: f32, b: f32) -> f32 {
    let ab = b.abs();
    if ab > 2f32.powi(126) && ab.is_finite() {
        return if a.is_infinite() || a.is_nan() {
            f32::from_bits(0x7fff_ffff)
        } else {
            0.0
        };
    }
    mul_f32(a, rcp_f32(b, Rnd::Rn), Rnd::Rn)
}
/// `sqrt.rnd.f32` (IEEE; `sqrt(-0) = -0`, negative -> NaN).
pub fn sqrt_f32(a: f32, rnd: Rnd) -> f32 {
    f32b(fp::sqrt(b32(a), F32, rnd))
}
/// `rcp.rnd.f32`: IEEE `1/a` in any mode.
pub fn rcp_f32(a: f32, rnd: Rnd) -> f32 {
    div_f32(1.0, a, rnd)
}

/// `add.rnd.f64` (all four modes exact).
pub fn add_f64(a: f64, b: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::add(a.to_bits(), b.to_bits(), F64, rnd))
}
/// `sub.rnd.f64`.
pub fn sub_f64(a: f64, b: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::add(a.to_bits(), (-b).to_bits(), F64, rnd))
}
/// `mul.rnd.f64`.
pub fn mul_f64(a: f64, b: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::mul(a.to_bits(), b.to_bits(), F64, rnd))
}
/// `fma.rnd.f64`: single rounding of the exact `a*b + c` (106-bit product, jammed sum).
pub fn fma_f64(a: f64, b: f64, c: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::fma(a.to_bits(), b.to_bits(), c.to_bits(), F64, rnd))
}
/// `div.rnd.f64`.
pub fn div_f64(a: f64, b: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::div(a.to_bits(), b.to_bits(), F64, rnd))
}
/// `sqrt.rnd.f64`.
pub fn sqrt_f64(a: f64, rnd: Rnd) -> f64 {
    f64::from_bits(fp::sqrt(a.to_bits(), F64, rnd))
}
/// `rcp.rnd.f64`.
pub fn rcp_f64(a: f64, rnd: Rnd) -> f64 {
    div_f64(1.0, a, rnd)
}

/// `.ftz` for f32: subnormal -> zero of the same sign.
pub fn ftz32(x: f32) -> f32 {
    f32b(F32.ftz(b32(x)))
}
/// `.sat` for f32: clamp to [0.0, 1.0]; NaN (and -0.0) -> +0.0.
pub fn sat32(x: f32) -> f32 {
    f32b(F32.sat(b32(x)))
}
/// `.sat` for f64.
pub fn sat64(x: f64) -> f64 {
    f64::from_bits(F64.sat(x.to_bits()))
}

/// min/max on bit images of format `f`. Without `.NaN`: if exactly one operand is NaN the
/// other is returned, two NaNs give the canonical NaN. With `.NaN` any NaN operand gives the
/// canonical NaN. Zeros are ordered `-0.0 < +0.0` (the ISA's note for min/max: "+0.0 > -0.0"),
/// so `min(+0, -0) = -0` and `max(-0, +0) = +0` regardless of operand order.
pub fn minmax_bits(f: Fmt, a: u64, b: u64, nan_propagate: bool, is_max: bool) -> u64 {
    let (a, b) = (a & f.all_mask(), b & f.all_mask());
    let (an, bn) = (f.is_nan(a), f.is_nan(b));
    if an && bn || (nan_propagate && (an || bn)) {
        return f.canonical_nan();
    }
    if an {
        return b;
    }
    if bn {
        return a;
    }
    // Map to a totally ordered integer key (negatives reversed), in which -0 < +0.
    let key = |x: u64| -> i128 {
        let mag = (x & (f.all_mask() >> 1)) as i128;
        if f.is_neg(x) {
            -mag - 1
        } else {
            mag
        }
    };
    let a_less = key(a) < key(b);
    if a_less != is_max {
        a
    } else {
        b
    }
}

/// `min{.NaN}.f32` (see [`minmax_bits`] for NaN and signed-zero rules).
pub fn min_f32(a: f32, b: f32, nan_propagate: bool) -> f32 {
    f32b(minmax_bits(F32, b32(a), b32(b), nan_propagate, false))
}
/// `max{.NaN}.f32`.
pub fn max_f32(a: f32, b: f32, nan_propagate: bool) -> f32 {
    f32b(minmax_bits(F32, b32(a), b32(b), nan_propagate, true))
}
/// `min.f64` (PTX has no `.NaN` for f64; pass false).
pub fn min_f64(a: f64, b: f64, nan_propagate: bool) -> f64 {
    f64::from_bits(minmax_bits(
        F64,
        a.to_bits(),
        b.to_bits(),
        nan_propagate,
        false,
    ))
}
/// `max.f64`.
pub fn max_f64(a: f64, b: f64, nan_propagate: bool) -> f64 {
    f64::from_bits(minmax_bits(
        F64,
        a.to_bits(),
        b.to_bits(),
        nan_propagate,
        true,
    ))
}
/// `min{.NaN}.f16` on bits.
pub fn min_f16(a: u16, b: u16, nan_propagate: bool) -> u16 {
    minmax_bits(F16, a as u64, b as u64, nan_propagate, false) as u16
}
/// `max{.NaN}.f16` on bits.
pub fn max_f16(a: u16, b: u16, nan_propagate: bool) -> u16 {
    minmax_bits(F16, a as u64, b as u64, nan_propagate, true) as u16
}

// ---------------------------------------------------------------- approximations

/// Rounds an f64 to f32 (nearest), then flushes a subnormal result if `ftz`.
fn fin32(r: f64, ftz: bool) -> f32 {
    let x = fp::convert(r.to_bits(), F64, F32, Rnd::Rn);
    f32b(if ftz { F32.ftz(x) } else { x })
}
fn in32(x: f32, ftz: bool) -> f64 {
    (if ftz { ftz32(x) } else { x }) as f64
}

/// `ex2.approx{.ftz}.f32`: 2^x. ISA bound: 2 ulp over the full range (this is correctly
/// rounded from an f64 exp2). `ex2(-inf) = +0`, `ex2(+inf) = +inf`, NaN -> NaN.
pub fn ex2_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(in32(x, ftz).exp2(), ftz)
}
/// `lg2.approx{.ftz}.f32`: log2(x). ISA bound: absolute error about 2^-22 (relative away
/// from 1). `lg2(±0) = -inf`, `lg2(x<0) = NaN`, `lg2(+inf) = +inf`.
pub fn lg2_approx_f32(x: f32, ftz: bool) -> f32 {
    let v = in32(x, ftz);
    if v == 0.0 {
        return f32::NEG_INFINITY;
    }
    fin32(v.log2(), ftz)
}
/// `rcp.approx{.ftz}.f32`: 1/x. ISA bound: 1 ulp. `rcp(±0) = ±inf`, `rcp(±inf) = ±0`.
pub fn rcp_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(1.0 / in32(x, ftz), ftz)
}
/// `rsqrt.approx{.ftz}.f32`: 1/sqrt(x). ISA bound: relative error 2^-22.9.
/// `rsqrt(+0) = +inf`, `rsqrt(-0) = -inf`, `rsqrt(x<0) = NaN`, `rsqrt(+inf) = +0`.
pub fn rsqrt_approx_f32(x: f32, ftz: bool) -> f32 {
    let v = in32(x, ftz);
    if v == 0.0 {
        return if v.is_sign_negative() {
            f32::NEG_INFINITY
        } else {
            f32::INFINITY
        };
    }
    fin32(1.0 / v.sqrt(), ftz)
}
/// `sqrt.approx{.ftz}.f32`. ISA bound: relative error 2^-23. `sqrt(-0) = -0`, `x<0` -> NaN.
pub fn sqrt_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(in32(x, ftz).sqrt(), ftz)
}
/// `sin.approx{.ftz}.f32`. ISA bound: absolute error 2^-20.5 for |x| <= 100π (larger
/// arguments lose accuracy on hardware). `sin(±inf) = NaN`, `sin(-0) = -0`.
pub fn sin_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(in32(x, ftz).sin(), ftz)
}
/// `cos.approx{.ftz}.f32`. ISA bound: absolute error 2^-20.5 for |x| <= 100π.
/// `cos(±inf) = NaN`.
pub fn cos_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(in32(x, ftz).cos(), ftz)
}
/// `tanh.approx.f32` (PTX has no `.ftz` form; pass false). ISA bound: relative error
/// 2^-11 (about 2^-10.987). `tanh(±inf) = ±1`, `tanh(±0) = ±0`.
pub fn tanh_approx_f32(x: f32, ftz: bool) -> f32 {
    fin32(in32(x, ftz).tanh(), ftz)
}
/// `ex2.approx.f16`: ISA bound relative error 2^-9.9; subnormals supported.
pub fn ex2_approx_f16(x: u16) -> u16 {
    let v = f64::from_bits(fp::convert(x as u64, F16, F64, Rnd::Rn));
    fp::convert(v.exp2().to_bits(), F64, F16, Rnd::Rn) as u16
}
/// `ex2.approx.f16x2`: lane-wise [`ex2_approx_f16`].
pub fn ex2_approx_f16x2(x: u32) -> u32 {
    ex2_approx_f16(x as u16) as u32 | (ex2_approx_f16((x >> 16) as u16) as u32) << 16
}
/// `tanh.approx.f16`: ISA bound relative error 2^-10.7 or so; computed correctly rounded.
pub fn tanh_approx_f16(x: u16) -> u16 {
    let v = f64::from_bits(fp::convert(x as u64, F16, F64, Rnd::Rn));
    fp::convert(v.tanh().to_bits(), F64, F16, Rnd::Rn) as u16
}
/// `rcp.approx.ftz.f64`: the ISA describes a gross (roughly 20-bit) approximation with
/// subnormal inputs and results flushed to zero; this returns the correctly rounded
/// reciprocal, which is within any such bound. `rcp(±0) = ±inf` (also for flushed inputs).
pub fn rcp_approx_ftz_f64(x: f64) -> f64 {
    let v = f64::from_bits(F64.ftz(x.to_bits()));
    f64::from_bits(F64.ftz((1.0 / v).to_bits()))
}
/// `rsqrt.approx.f64`: correctly rounded-ish `1/sqrt(x)` (ISA: approximate).
pub fn rsqrt_approx_f64(x: f64) -> f64 {
    if x == 0.0 {
        return if x.is_sign_negative() {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    1.0 / x.sqrt()
}

// ---------------------------------------------------------------- f16 / bf16 arithmetic

fn post(f: Fmt, r: u64, ftz: bool, sat: bool) -> u64 {
    let r = if ftz { f.ftz(r) } else { r };
    if sat {
        f.sat(r)
    } else {
        r
    }
}
fn pre(f: Fmt, x: u16, ftz: bool) -> u64 {
    if ftz {
        f.ftz(x as u64)
    } else {
        x as u64
    }
}

/// `add.rnd{.ftz}{.sat}.f16` on bits: one rounding to f16; `ftz` flushes f16 subnormal
/// inputs and results, `sat` clamps to [0, 1] (NaN -> +0).
pub fn add_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    post(
        F16,
        fp::add(pre(F16, a, ftz), pre(F16, b, ftz), F16, rnd),
        ftz,
        sat,
    ) as u16
}
/// `sub.rnd{.ftz}{.sat}.f16`.
pub fn sub_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    add_f16(a, b ^ 0x8000, rnd, ftz, sat)
}
/// `mul.rnd{.ftz}{.sat}.f16`.
pub fn mul_f16(a: u16, b: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    post(
        F16,
        fp::mul(pre(F16, a, ftz), pre(F16, b, ftz), F16, rnd),
        ftz,
        sat,
    ) as u16
}
/// `fma.rnd{.ftz}{.sat}.f16`: single rounding of the exact `a*b + c`.
pub fn fma_f16(a: u16, b: u16, c: u16, rnd: Rnd, ftz: bool, sat: bool) -> u16 {
    let r = fp::fma(
        pre(F16, a, ftz),
        pre(F16, b, ftz),
        pre(F16, c, ftz),
        F16,
        rnd,
    );
    post(F16, r, ftz, sat) as u16
}

fn lanes2(a: u32, b: u32, op: impl Fn(u16, u16) -> u16) -> u32 {
    op(a as u16, b as u16) as u32 | (op((a >> 16) as u16, (b >> 16) as u16) as u32) << 16
}
fn lanes3(a: u32, b: u32, c: u32, op: impl Fn(u16, u16, u16) -> u16) -> u32 {
    let lo = op(a as u16, b as u16, c as u16) as u32;
    let hi = op((a >> 16) as u16, (b >> 16) as u16, (c >> 16) as u16) as u32;
    lo | hi << 16
}

/// `add.rnd{.ftz}{.sat}.f16x2`: lane-wise [`add_f16`] (element 0 in the low half).
pub fn add_f16x2(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    lanes2(a, b, |x, y| add_f16(x, y, rnd, ftz, sat))
}
/// `sub.rnd{.ftz}{.sat}.f16x2`.
pub fn sub_f16x2(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    lanes2(a, b, |x, y| sub_f16(x, y, rnd, ftz, sat))
}
/// `mul.rnd{.ftz}{.sat}.f16x2`.
pub fn mul_f16x2(a: u32, b: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    lanes2(a, b, |x, y| mul_f16(x, y, rnd, ftz, sat))
}
/// `fma.rnd{.ftz}{.sat}.f16x2`.
pub fn fma_f16x2(a: u32, b: u32, c: u32, rnd: Rnd, ftz: bool, sat: bool) -> u32 {
    lanes3(a, b, c, |x, y, z| fma_f16(x, y, z, rnd, ftz, sat))
}
/// `min/max{.NaN}.f16x2` lane-wise.
pub fn minmax_f16x2(a: u32, b: u32, nan_propagate: bool, is_max: bool) -> u32 {
    lanes2(a, b, |x, y| {
        minmax_bits(F16, x as u64, y as u64, nan_propagate, is_max) as u16
    })
}

/// `add.rnd.bf16` (bf16 arithmetic has no `.ftz`/`.sat`).
pub fn add_bf16(a: u16, b: u16, rnd: Rnd) -> u16 {
    fp::add(a as u64, b as u64, BF16, rnd) as u16
}
/// `sub.rnd.bf16`.
pub fn sub_bf16(a: u16, b: u16, rnd: Rnd) -> u16 {
    add_bf16(a, b ^ 0x8000, rnd)
}
/// `mul.rnd.bf16`.
pub fn mul_bf16(a: u16, b: u16, rnd: Rnd) -> u16 {
    fp::mul(a as u64, b as u64, BF16, rnd) as u16
}
/// `fma.rnd.bf16`.
pub fn fma_bf16(a: u16, b: u16, c: u16, rnd: Rnd) -> u16 {
    fp::fma(a as u64, b as u64, c as u64, BF16, rnd) as u16
}
/// `add.rnd.bf16x2`.
pub fn add_bf16x2(a: u32, b: u32, rnd: Rnd) -> u32 {
    lanes2(a, b, |x, y| add_bf16(x, y, rnd))
}
/// `sub.rnd.bf16x2`.
pub fn sub_bf16x2(a: u32, b: u32, rnd: Rnd) -> u32 {
    lanes2(a, b, |x, y| sub_bf16(x, y, rnd))
}
/// `mul.rnd.bf16x2`.
pub fn mul_bf16x2(a: u32, b: u32, rnd: Rnd) -> u32 {
    lanes2(a, b, |x, y| mul_bf16(x, y, rnd))
}
/// `fma.rnd.bf16x2`.
pub fn fma_bf16x2(a: u32, b: u32, c: u32, rnd: Rnd) -> u32 {
    lanes3(a, b, c, |x, y, z| fma_bf16(x, y, z, rnd))
}
/// `min/max{.NaN}.bf16x2` lane-wise.
pub fn minmax_bf16x2(a: u32, b: u32, nan_propagate: bool, is_max: bool) -> u32 {
    lanes2(a, b, |x, y| {
        minmax_bits(BF16, x as u64, y as u64, nan_propagate, is_max) as u16
    })
}

#[cfg(test)]
mod tests;
