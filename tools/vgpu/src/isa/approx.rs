//! The `.approx` f32 functions as a real GPU may compute them, for `VGPU_NUMERICS=hardware`.
//!
//! [`super::float`] returns correctly rounded values, the best the ISA allows. Hardware units
//! (MUFU) err by up to the bound the PTX ISA states for each instruction, and a kernel's
//! tolerance must absorb that. Here each result is moved, deterministically, by a large
//! fraction of that bound:
//!
//! - a hash of the input bits (and of the instruction) picks a direction and a magnitude in
//!   [1/2, 1) of the bound, so errors are large, of both signs, and uncorrelated between
//!   inputs — as large as the ISA permits without a systematic bias that a real unit need
//!   not have;
//! - the f32 result is then stepped back toward the correctly rounded one until it lies
//!   within the bound of the exact value, so the bound is never exceeded, also after
//!   rounding (where the bound is below half an ulp, the correctly rounded value is kept);
//! - special values stay exact: NaN, infinities, zeros, subnormal inputs and results
//!   (with `.ftz` flushed as before), and every result that is exactly representable
//!   (`ex2(0) = 1`, `rcp(2) = 0.5`, `lg2(8) = 3`, `tanh(±inf) = ±1`, …), so that identities a
//!   kernel relies on, such as the maximum of a softmax row giving `ex2(0) = 1`, still hold.
//!
//! Bounds used (PTX ISA 9.0, the tighter reading where the text gives a range):
//! `ex2` relative 2^-22.5, `rcp` 1 ulp, `rsqrt` relative 2^-22.9, `sqrt.approx` relative
//! 2^-23, `sin`/`cos` absolute 2^-20.9, `lg2` absolute 2^-22.6, `tanh` relative 2^-10.987,
//! `div.approx`/`div.full` 2 ulp. The f16 and f64 approximations stay correctly rounded.

use super::fp::{self, F32, F64};
use super::types::Rnd;

/// How far a result may be from the exact value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// `|r - y| <= b·|y|`.
    Rel(f64),
    /// `|r - y| <= b`.
    Abs(f64),
    /// `|r - y| <= n` f32 ulps at `y`.
    Ulp(f64),
}

/// The bound of each instruction (see the module doc for the source).
pub mod bounds {
    use super::Bound;
    pub const EX2: Bound = Bound::Rel(1.685_873_940_435_761e-7); // 2^-22.5, rounded down
    pub const RCP: Bound = Bound::Ulp(1.0);
    pub const RSQRT: Bound = Bound::Rel(1.277_653_530_283_324_7e-7); // 2^-22.9
    pub const SQRT: Bound = Bound::Rel(1.192_092_895_507_812_4e-7); // 2^-23
    pub const SIN_COS: Bound = Bound::Abs(5.110_614_121_133_299e-7); // 2^-20.9
    pub const LG2: Bound = Bound::Abs(1.572_976_005_998_722e-7); // 2^-22.6
    pub const TANH: Bound = Bound::Rel(4.927_009_930_882_232e-4); // 2^-10.987
    pub const DIV: Bound = Bound::Ulp(2.0);
}

/// Which instruction, so that two functions of the same input err independently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Ex2 = 1,
    Lg2,
    Rcp,
    Rsqrt,
    Sqrt,
    Sin,
    Cos,
    Tanh,
    Div,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: every input bit affects every output bit.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The f32 spacing at `|y|` (normal range; the subnormal spacing below it).
fn ulp32(y: f64) -> f64 {
    let e = ((y.abs().to_bits() >> 52) as i32 - 1023).max(-126);
    2f64.powi(e - 23)
}

fn round32(y: f64, ftz: bool) -> f32 {
    let r = f32::from_bits(fp::convert(y.to_bits(), F64, F32, Rnd::Rn) as u32);
    if ftz && r.is_subnormal() {
        0.0f32.copysign(r)
    } else {
        r
    }
}

/// One f32 step from `r` toward `to`.
fn step_toward(r: f32, to: f32) -> f32 {
    if r == to {
        return r;
    }
    let b = r.to_bits();
    // Toward zero magnitude is one less in the bit image, away from it one more.
    let toward_zero = (r.abs() > to.abs()) || (r.is_sign_negative() != to.is_sign_negative());
    if r == 0.0 {
        return f32::from_bits(to.to_bits() & 0x8000_0000 | 1);
    }
    f32::from_bits(if toward_zero { b - 1 } else { b + 1 })
}

/// The result of an approximate instruction whose exact value is `y`, for input bits
/// `seed`: within `bound` of `y`, deterministic, special values exact (see module doc).
pub fn perturb(y: f64, seed: u64, f: Func, bound: Bound, ftz: bool) -> f32 {
    let cr = round32(y, ftz);
    if !y.is_finite() || cr as f64 == y || cr == 0.0 || cr.is_subnormal() || cr.is_infinite() {
        return cr;
    }
    let lim = match bound {
        Bound::Rel(b) => b * y.abs(),
        Bound::Abs(b) => b,
        Bound::Ulp(n) => n * ulp32(y),
    };
    let h = mix(seed ^ (f as u64) << 56);
    let frac = 0.5 + ((h >> 11) as f64) * 2f64.powi(-54);
    let dir = if h & 1 == 1 { 1.0 } else { -1.0 };
    let mut r = round32(y + dir * frac * lim, ftz);
    // Slightly inside the bound, so that the f64 reference's own error cannot matter.
    let ok = |r: f32| r.is_finite() && (r as f64 - y).abs() <= lim * (1.0 - 1e-6);
    while r != cr && !ok(r) {
        r = step_toward(r, cr);
    }
    if r.is_subnormal() && ftz {
        return cr;
    }
    r
}

fn in32(x: f32, ftz: bool) -> f64 {
    (if ftz && x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }) as f64
}

/// `ex2.approx{.ftz}.f32` as hardware may compute it.
pub fn ex2_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        in32(x, ftz).exp2(),
        x.to_bits() as u64,
        Func::Ex2,
        bounds::EX2,
        ftz,
    )
}
/// `lg2.approx{.ftz}.f32`.
pub fn lg2_f32(x: f32, ftz: bool) -> f32 {
    let v = in32(x, ftz);
    if v == 0.0 {
        return f32::NEG_INFINITY;
    }
    perturb(v.log2(), x.to_bits() as u64, Func::Lg2, bounds::LG2, ftz)
}
/// `rcp.approx{.ftz}.f32`.
pub fn rcp_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        1.0 / in32(x, ftz),
        x.to_bits() as u64,
        Func::Rcp,
        bounds::RCP,
        ftz,
    )
}
/// `rsqrt.approx{.ftz}.f32`.
pub fn rsqrt_f32(x: f32, ftz: bool) -> f32 {
    let v = in32(x, ftz);
    if v == 0.0 {
        return f32::INFINITY.copysign(v as f32);
    }
    perturb(
        1.0 / v.sqrt(),
        x.to_bits() as u64,
        Func::Rsqrt,
        bounds::RSQRT,
        ftz,
    )
}
/// `sqrt.approx{.ftz}.f32`.
pub fn sqrt_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        in32(x, ftz).sqrt(),
        x.to_bits() as u64,
        Func::Sqrt,
        bounds::SQRT,
        ftz,
    )
}
/// `sin.approx{.ftz}.f32`.
pub fn sin_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        in32(x, ftz).sin(),
        x.to_bits() as u64,
        Func::Sin,
        bounds::SIN_COS,
        ftz,
    )
}
/// `cos.approx{.ftz}.f32`.
pub fn cos_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        in32(x, ftz).cos(),
        x.to_bits() as u64,
        Func::Cos,
        bounds::SIN_COS,
        ftz,
    )
}
/// `tanh.approx.f32`.
pub fn tanh_f32(x: f32, ftz: bool) -> f32 {
    perturb(
        in32(x, ftz).tanh(),
        x.to_bits() as u64,
        Func::Tanh,
        bounds::TANH,
        ftz,
    )
}
/// `div.approx.f32` / `div.full.f32` (inputs already flushed by the caller if `.ftz`).
pub fn div_f32(a: f32, b: f32) -> f32 {
    let seed = (a.to_bits() as u64) << 32 | b.to_bits() as u64;
    // The quotient of two f32 is exact enough in f64 (error 2^-53 relative).
    perturb(a as f64 / b as f64, seed, Func::Div, bounds::DIV, false)
}
