//! Scalar semantics of the arithmetic, logic, compare and convert instructions, per lane.
//! Round-to-nearest f32/f64 arithmetic uses the host FPU (IEEE, subnormals kept), with NaN
//! results made canonical as the GPU does; every other rounding mode, the narrow formats
//! and the conversions go through the exact soft-float core in [`crate::isa`].

use super::exec::{BlockState, Warp};
use super::program::*;
use crate::isa::fp::{self, Fmt};
use crate::isa::int;
use crate::isa::{self, CmpOp, Rnd, Ty};
use crate::numerics::approx_hardware;

/// Value of a source operand for `lane`.
#[inline]
pub fn src(w: &Warp, b: &BlockState, s: &Src, lane: usize) -> u64 {
    match *s {
        Src::Reg(r) => w.r(r, lane),
        Src::NotReg(r) => (w.r(r, lane) & 1) ^ 1,
        Src::Imm(v) => v,
        Src::Special(sp) => special(w, b, sp, lane),
    }
}

fn special(w: &Warp, b: &BlockState, sp: Special, lane: usize) -> u64 {
    let tid = b.tid_of(w.id, lane);
    let t3 = b.tid3(tid);
    let lane32 = lane as u32;
    (match sp {
        Special::Tid(d) => t3[d as usize],
        Special::Ntid(d) => b.block_dim[d as usize],
        Special::Ctaid(d) => b.ctaid[d as usize],
        Special::Nctaid(d) => b.grid_dim[d as usize],
        Special::LaneId => lane32,
        Special::WarpId => w.id,
        Special::NWarpId => 64,
        Special::SmId => 0,
        Special::LaneMaskEq => 1u32 << lane32,
        Special::LaneMaskLt => (1u32 << lane32) - 1,
        Special::LaneMaskLe => ((1u64 << (lane32 + 1)) - 1) as u32,
        Special::LaneMaskGt => !(((1u64 << (lane32 + 1)) - 1) as u32),
        Special::LaneMaskGe => !((1u32 << lane32) - 1),
        Special::Clock => w.seq,
        Special::Clock64 | Special::GlobalTimer => return w.seq as u64,
        Special::DynSmemSize => b.dynamic_shared,
        Special::TotalSmemSize => b.shared.len() as u32,
    }) as u64
}

/// The 16-bit format of `.f16`/`.bf16` and their `x2` forms, and how many halves it has.
fn half_fmt(ty: Ty) -> (Fmt, usize) {
    let f = if matches!(ty, Ty::F16 | Ty::F16x2) {
        fp::F16
    } else {
        fp::BF16
    };
    (
        f,
        if matches!(ty, Ty::F16x2 | Ty::Bf16x2) {
            2
        } else {
            1
        },
    )
}

/// An f32 result as a register image, NaN made canonical as the GPU does.
#[inline]
pub fn canon32(x: f32) -> u64 {
    if x.is_nan() {
        0x7fff_ffff
    } else {
        x.to_bits() as u64
    }
}

#[inline]
fn canon64(x: f64) -> u64 {
    if x.is_nan() {
        0x7fff_ffff_ffff_ffff
    } else {
        x.to_bits()
    }
}

#[inline]
pub fn f32_of(v: u64) -> f32 {
    f32::from_bits(v as u32)
}

#[inline]
fn f64_of(v: u64) -> f64 {
    f64::from_bits(v)
}

fn fmt_of(ty: Ty) -> Option<Fmt> {
    isa::cvt::fmt_of(ty)
}

/// Sign-extends the low `bits` of `v`.
#[inline]
pub fn sext(v: u64, bits: u32) -> i64 {
    if bits >= 64 {
        v as i64
    } else {
        ((v << (64 - bits)) as i64) >> (64 - bits)
    }
}

#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

fn bits_of(ty: Ty) -> u32 {
    super::decode::ty_bits(ty)
}

/// f32 modifiers applied around a round-to-nearest host operation.
#[inline]
fn f32_post(x: f32, m: &FMods) -> u64 {
    let mut x = x;
    if m.ftz && x.is_subnormal() {
        x = if x.is_sign_negative() { -0.0 } else { 0.0 };
    }
    if m.sat {
        x = if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    }
    canon32(x)
}

#[inline]
fn f32_in(v: u64, m: &FMods) -> f32 {
    let x = f32_of(v);
    if m.ftz && x.is_subnormal() {
        if x.is_sign_negative() {
            -0.0
        } else {
            0.0
        }
    } else {
        x
    }
}

/// Floating-point binary operation in format `f` with rounding `r` via the exact core.
fn soft(op: BinOp, a: u64, b: u64, f: Fmt, r: Rnd) -> Option<u64> {
    Some(match op {
        BinOp::Add => fp::add(a, b, f, r),
        BinOp::Sub => fp::add(a, f.neg(b), f, r),
        BinOp::MulLo => fp::mul(a, b, f, r),
        BinOp::Div => fp::div(a, b, f, r),
        _ => return None,
    })
}

pub fn bin(op: BinOp, ty: Ty, m: &FMods, a: u64, b: u64) -> Result<u64, String> {
    match ty {
        Ty::F32 => {
            let rnd = m.rnd.unwrap_or(Rnd::Rn);
            let (x, y) = (f32_in(a, m), f32_in(b, m));
            let r = match op {
                BinOp::Min => isa::float::min_f32(x, y, m.nan),
                BinOp::Max => isa::float::max_f32(x, y, m.nan),
                BinOp::CopySign => y.copysign(x),
                BinOp::Div if m.approx => {
                    // div.approx.f32 / div.full.f32: 2 ulp; the IEEE quotient is within,
                    // and under VGPU_NUMERICS=hardware a quotient up to 2 ulp off.
                    if approx_hardware() {
                        isa::approx::div_f32(x, y)
                    } else {
                        x / y
                    }
                }
                _ if rnd == Rnd::Rn => match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::MulLo => x * y,
                    BinOp::Div => x / y,
                    _ => return Err(format!("{op:?} is not defined for f32")),
                },
                _ => {
                    let v = soft(op, x.to_bits() as u64, y.to_bits() as u64, fp::F32, rnd)
                        .ok_or_else(|| format!("{op:?} is not defined for f32"))?;
                    f32_of(v)
                }
            };
            Ok(f32_post(r, m))
        }
        Ty::F64 => {
            let rnd = m.rnd.unwrap_or(Rnd::Rn);
            let (x, y) = (f64_of(a), f64_of(b));
            Ok(match op {
                BinOp::Min => isa::float::min_f64(x, y, m.nan).to_bits(),
                BinOp::Max => isa::float::max_f64(x, y, m.nan).to_bits(),
                BinOp::CopySign => y.copysign(x).to_bits(),
                _ if rnd == Rnd::Rn => canon64(match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::MulLo => x * y,
                    BinOp::Div => x / y,
                    _ => return Err(format!("{op:?} is not defined for f64")),
                }),
                _ => soft(op, a, b, fp::F64, rnd)
                    .ok_or_else(|| format!("{op:?} is not defined for f64"))?,
            })
        }
        Ty::F16 | Ty::Bf16 | Ty::F16x2 | Ty::Bf16x2 => {
            let (f, lanes) = half_fmt(ty);
            let mut out = 0u64;
            for h in 0..lanes {
                let x = (a >> (16 * h)) & 0xffff;
                let y = (b >> (16 * h)) & 0xffff;
                let r = match op {
                    BinOp::Min | BinOp::Max => {
                        let (fx, fy) = (
                            fp::convert(x, f, fp::F32, Rnd::Rn),
                            fp::convert(y, f, fp::F32, Rnd::Rn),
                        );
                        let pick = if op == BinOp::Min {
                            isa::float::min_f32(f32_of(fx), f32_of(fy), m.nan)
                        } else {
                            isa::float::max_f32(f32_of(fx), f32_of(fy), m.nan)
                        };
                        if pick.is_nan() {
                            0x7fff
                        } else {
                            fp::convert(pick.to_bits() as u64, fp::F32, f, Rnd::Rn)
                        }
                    }
                    _ => soft(op, x, y, f, m.rnd.unwrap_or(Rnd::Rn))
                        .ok_or_else(|| format!("{op:?} is not defined for {ty:?}"))?,
                };
                let r = if m.ftz { f.ftz(r) } else { r };
                let r = if m.sat { f.sat(r) } else { r };
                out |= (r & 0xffff) << (16 * h);
            }
            Ok(out)
        }
        Ty::Pred => Err(format!("{op:?} on .pred")),
        _ => Ok(int_bin(op, ty, m, a, b)),
    }
}

fn int_bin(op: BinOp, ty: Ty, m: &FMods, a: u64, b: u64) -> u64 {
    match op {
        BinOp::Add => int::add(ty, a, b, m.sat),
        BinOp::Sub => int::sub(ty, a, b, m.sat),
        BinOp::MulLo => int::mul_lo(ty, a, b),
        BinOp::MulHi => int::mul_hi(ty, a, b),
        BinOp::MulWide => int::mul_wide(ty, a, b),
        BinOp::Mul24Lo => mul24(ty, a, b) as u64 & ty.mask(),
        BinOp::Mul24Hi => (mul24(ty, a, b) >> 16) as u64 & ty.mask(),
        BinOp::Div => int::div(ty, a, b),
        BinOp::Rem => int::rem(ty, a, b),
        BinOp::Min => int::min(ty, a, b),
        BinOp::Max => int::max(ty, a, b),
        BinOp::And => a & b & ty.mask(),
        BinOp::Or => (a | b) & ty.mask(),
        BinOp::Xor => (a ^ b) & ty.mask(),
        BinOp::Shl => int::shl(ty, a, b as u32),
        BinOp::Shr => int::shr(ty, a, b as u32),
        BinOp::CopySign => b & ty.mask(),
    }
}

/// Full product of the low 24 bits of `a` and `b` (sign-extended for signed `ty`), as
/// `mul24`/`mad24` form it before taking the low or high part.
fn mul24(ty: Ty, a: u64, b: u64) -> i128 {
    if ty.is_signed() {
        sext(a, 24) as i128 * sext(b, 24) as i128
    } else {
        (a & 0xff_ffff) as i128 * (b & 0xff_ffff) as i128
    }
}

pub fn un(op: UnOp, ty: Ty, m: &FMods, a: u64) -> Result<u64, String> {
    use crate::isa::float as fl;
    let mk = ty.mask();
    Ok(match (op, ty) {
        (UnOp::Mov, _) => a & mk,
        (UnOp::Not, Ty::Pred) => (a & 1) ^ 1,
        (UnOp::Not, _) => !a & mk,
        (UnOp::Cnot, _) => u64::from(a & mk == 0),
        (UnOp::Neg, Ty::F32) => canon_neg32(f32_in(a, m)),
        (UnOp::Abs, Ty::F32) => {
            let x = f32_in(a, m);
            if x.is_nan() {
                0x7fff_ffff
            } else {
                x.abs().to_bits() as u64
            }
        }
        (UnOp::Neg, Ty::F64) => a ^ (1 << 63),
        (UnOp::Abs, Ty::F64) => a & !(1 << 63),
        (UnOp::Neg, Ty::F16 | Ty::Bf16) => a ^ 0x8000,
        (UnOp::Abs, Ty::F16 | Ty::Bf16) => a & 0x7fff,
        (UnOp::Neg, Ty::F16x2 | Ty::Bf16x2) => a ^ 0x8000_8000,
        (UnOp::Abs, Ty::F16x2 | Ty::Bf16x2) => a & 0x7fff_7fff,
        (UnOp::Neg, _) => int::neg(ty, a),
        // PTX defines integer `abs` for `.s*` only; any other integer type reads as signed.
        (UnOp::Abs, _) => int::abs(signed_of(ty), a),
        (UnOp::Popc, _) => int::popc(ty, a) as u64,
        (UnOp::Clz, _) => int::clz(ty, a) as u64,
        (UnOp::Brev, _) => int::brev(ty, a),
        (UnOp::Bfind | UnOp::BfindShift, _) => int::bfind(ty, a, op == UnOp::BfindShift) as u64,
        (
            UnOp::Ex2
            | UnOp::Lg2
            | UnOp::RcpApprox
            | UnOp::Rsqrt
            | UnOp::SqrtApprox
            | UnOp::Sin
            | UnOp::Cos
            | UnOp::Tanh,
            Ty::F32,
        ) => f32_post(approx_f32(op, f32_in(a, m), m.ftz), m),
        (UnOp::Rcp, Ty::F32) => {
            let r = m.rnd.unwrap_or(Rnd::Rn);
            f32_post(
                f32_of(fp::div(
                    1f32.to_bits() as u64,
                    f32_in(a, m).to_bits() as u64,
                    fp::F32,
                    r,
                )),
                m,
            )
        }
        (UnOp::Sqrt, Ty::F32) => {
            let r = m.rnd.unwrap_or(Rnd::Rn);
            f32_post(
                f32_of(fp::sqrt(f32_in(a, m).to_bits() as u64, fp::F32, r)),
                m,
            )
        }
        (UnOp::Rcp, Ty::F64) => fp::div(1f64.to_bits(), a, fp::F64, m.rnd.unwrap_or(Rnd::Rn)),
        (UnOp::RcpApprox, Ty::F64) => fl::rcp_approx_ftz_f64(f64_of(a)).to_bits(),
        (UnOp::Sqrt, Ty::F64) => fp::sqrt(a, fp::F64, m.rnd.unwrap_or(Rnd::Rn)),
        (UnOp::Ex2, Ty::F16) => fl::ex2_approx_f16(a as u16) as u64,
        _ => return Err(format!("{op:?} is not supported for .{ty:?}")),
    })
}

/// An f32 `.approx` function: correctly rounded, or under `VGPU_NUMERICS=hardware` off by up
/// to the ISA's bound ([`isa::approx`]).
fn approx_f32(op: UnOp, x: f32, ftz: bool) -> f32 {
    use isa::approx as hw;
    use isa::float as fl;
    let f: fn(f32, bool) -> f32 = match (op, approx_hardware()) {
        (UnOp::Ex2, false) => fl::ex2_approx_f32,
        (UnOp::Ex2, true) => hw::ex2_f32,
        (UnOp::Lg2, false) => fl::lg2_approx_f32,
        (UnOp::Lg2, true) => hw::lg2_f32,
        (UnOp::RcpApprox, false) => fl::rcp_approx_f32,
        (UnOp::RcpApprox, true) => hw::rcp_f32,
        (UnOp::Rsqrt, false) => fl::rsqrt_approx_f32,
        (UnOp::Rsqrt, true) => hw::rsqrt_f32,
        (UnOp::SqrtApprox, false) => fl::sqrt_approx_f32,
        (UnOp::SqrtApprox, true) => hw::sqrt_f32,
        (UnOp::Sin, false) => fl::sin_approx_f32,
        (UnOp::Sin, true) => hw::sin_f32,
        (UnOp::Cos, false) => fl::cos_approx_f32,
        (UnOp::Cos, true) => hw::cos_f32,
        (UnOp::Tanh, false) => fl::tanh_approx_f32,
        (UnOp::Tanh, true) => hw::tanh_f32,
        _ => unreachable!("approx_f32 is called for the .approx functions only"),
    };
    f(x, ftz)
}

/// The signed integer type of `ty`'s width (`ty` itself when it is not an integer type).
fn signed_of(ty: Ty) -> Ty {
    match ty {
        Ty::B8 | Ty::U8 => Ty::S8,
        Ty::B16 | Ty::U16 => Ty::S16,
        Ty::B32 | Ty::U32 => Ty::S32,
        Ty::B64 | Ty::U64 => Ty::S64,
        t => t,
    }
}

#[inline]
fn canon_neg32(x: f32) -> u64 {
    if x.is_nan() {
        0x7fff_ffff
    } else {
        (-x).to_bits() as u64
    }
}

pub fn ter(op: TerOp, ty: Ty, m: &FMods, a: u64, b: u64, c: u64) -> Result<u64, String> {
    let mk = ty.mask();
    Ok(match op {
        TerOp::Fma => match ty {
            Ty::F32 => {
                let rnd = m.rnd.unwrap_or(Rnd::Rn);
                let (x, y, z) = (f32_in(a, m), f32_in(b, m), f32_in(c, m));
                let r = if rnd == Rnd::Rn {
                    x.mul_add(y, z)
                } else {
                    f32_of(fp::fma(
                        x.to_bits() as u64,
                        y.to_bits() as u64,
                        z.to_bits() as u64,
                        fp::F32,
                        rnd,
                    ))
                };
                f32_post(r, m)
            }
            Ty::F64 => {
                let rnd = m.rnd.unwrap_or(Rnd::Rn);
                if rnd == Rnd::Rn {
                    canon64(f64_of(a).mul_add(f64_of(b), f64_of(c)))
                } else {
                    fp::fma(a, b, c, fp::F64, rnd)
                }
            }
            Ty::F16 | Ty::Bf16 | Ty::F16x2 | Ty::Bf16x2 => {
                let (f, lanes) = half_fmt(ty);
                let mut out = 0;
                for h in 0..lanes {
                    let s = 16 * h;
                    let r = fp::fma(
                        (a >> s) & 0xffff,
                        (b >> s) & 0xffff,
                        (c >> s) & 0xffff,
                        f,
                        m.rnd.unwrap_or(Rnd::Rn),
                    );
                    let r = if m.ftz { f.ftz(r) } else { r };
                    let r = if m.sat { f.sat(r) } else { r };
                    out |= (r & 0xffff) << s;
                }
                out
            }
            _ => return Err(format!("fma on .{ty:?}")),
        },
        TerOp::MadLo => int::mad_lo(ty, a, b, c),
        // `mad.hi.sat.s32` is not saturated here (`int::mad_hi_sat_s32` is not wired in).
        TerOp::MadHi => int::mad_hi(ty, a, b, c),
        TerOp::MadWide => int::mad_wide(ty, a, b, c),
        TerOp::Mad24Lo => (mul24(ty, a, b) as u64).wrapping_add(c) & mk,
        TerOp::Selp => {
            if c & 1 != 0 {
                a & mk
            } else {
                b & mk
            }
        }
        TerOp::Bfe => int::bfe(ty, a, b as u32, c as u32),
        TerOp::Prmt(mode) => int::prmt(a as u32, b as u32, c as u32, prmt_mode(mode)) as u64,
        TerOp::ShfL { clamp } => int::shf(a as u32, b as u32, c as u32, true, clamp) as u64,
        TerOp::ShfR { clamp } => int::shf(a as u32, b as u32, c as u32, false, clamp) as u64,
        TerOp::Lop3(lut) => int::lop3(a as u32, b as u32, c as u32, lut) as u64,
        TerOp::Sad => int::sad(ty, a, b, c),
    })
}

fn prmt_mode(mode: u8) -> Option<int::PrmtMode> {
    use int::PrmtMode as P;
    Some(match mode {
        1 => P::F4e,
        2 => P::B4e,
        3 => P::Rc8,
        4 => P::Ecl,
        5 => P::Ecr,
        6 => P::Rc16,
        _ => return None,
    })
}

pub fn bfi(ty: Ty, a: u64, b: u64, pos: u64, len: u64) -> u64 {
    int::bfi(ty, a, b, pos as u32, len as u32)
}

pub fn setp(cmp: CmpOp, ty: Ty, ftz: bool, a: u64, b: u64) -> Result<bool, String> {
    Ok(match ty {
        Ty::F32 => {
            let m = FMods {
                ftz,
                ..Default::default()
            };
            int::setp_f32(cmp, f32_in(a, &m), f32_in(b, &m))
        }
        Ty::F64 => int::setp_f64(cmp, f64_of(a), f64_of(b)),
        Ty::F16 => int::setp_f16(cmp, a as u16, b as u16),
        Ty::Pred => match cmp {
            CmpOp::Eq => a & 1 == b & 1,
            CmpOp::Ne => a & 1 != b & 1,
            _ => return Err(format!("setp.{cmp:?}.pred")),
        },
        _ if ty.is_float() => return Err(format!("setp on .{ty:?}")),
        _ => int::setp_int(cmp, a, b, ty),
    })
}

pub fn cvt(
    dty: Ty,
    sty: Ty,
    frnd: Option<Rnd>,
    irnd: Option<isa::IRnd>,
    ftz: bool,
    sat: bool,
    a: u64,
) -> u64 {
    // Hot, exact cases on the host FPU.
    match (dty, sty, frnd, irnd, ftz, sat) {
        (Ty::F32, Ty::F16, _, None, false, false) => {
            return isa::half::f16_to_f32(a as u16).to_bits() as u64
        }
        (Ty::F64, Ty::F32, _, None, false, false) => return (f32_of(a) as f64).to_bits(),
        (Ty::F16, Ty::F32, Some(Rnd::Rn), None, false, false) => {
            return isa::half::f32_to_f16(f32_of(a), Rnd::Rn) as u64
        }
        (Ty::F32, Ty::S32, Some(Rnd::Rn), None, false, false) => {
            return (sext(a, 32) as i32 as f32).to_bits() as u64
        }
        (Ty::F32, Ty::U32, Some(Rnd::Rn), None, false, false) => {
            return ((a as u32) as f32).to_bits() as u64
        }
        _ => {}
    }
    if fmt_of(dty).is_none() && fmt_of(sty).is_none() {
        // Integer to integer: the ISA defines the result by the source's signedness.
        let sbits = bits_of(sty);
        let dbits = bits_of(dty);
        let v: i128 = if sty.is_signed() {
            sext(a, sbits) as i128
        } else {
            (a & mask(sbits)) as i128
        };
        let v = if sat {
            let (lo, hi) = isa::cvt::int_range(dty);
            v.clamp(lo, hi)
        } else {
            v
        };
        return widen(dty, (v as u64) & mask(dbits));
    }
    widen(dty, isa::cvt::cvt(dty, sty, frnd, irnd, ftz, sat, a))
}

/// The ISA chops a cvt result to the destination format, then extends it to the register
/// width by that format's signedness: signed results are sign-extended (registers hold 64
/// bits here; consumers read the low bits they need).
fn widen(dty: Ty, v: u64) -> u64 {
    if dty.is_signed() {
        sext(v, bits_of(dty)) as u64
    } else {
        v
    }
}
