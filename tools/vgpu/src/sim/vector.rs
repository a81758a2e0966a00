//! Whole-warp forms of the hottest ALU instructions: each operand is fetched once as 32
//! lanes (one dispatch on the operand kind, not one per lane), the operation runs over
//! the arrays with its closure inlined (so the loop vectorises), and only the executing
//! lanes are written back. These forms are pure and total (wrapping integers, IEEE floats),
//! so computing the lanes that do not execute is harmless. Each computes exactly what the
//! general dispatch in `alu` computes for its form (`fast_paths_match_alu` checks it); they
//! repeat `isa::int` on purpose, because this is the interpreter's hot loop.

use super::alu::{self, canon32, f32_of, src};
use super::exec::{BlockState, Warp, FULL};
use super::program::*;
use crate::isa::{self, CmpOp, Rnd, Ty};

/// One register or operand over the 32 lanes of a warp.
pub type V = [u64; 32];
pub type Un1 = fn(&V, &mut V);
pub type Bin2 = fn(&V, &V, &mut V);
pub type Ter3 = fn(&V, &V, &V, &mut V);

/// The operand `s` in all 32 lanes: the register itself, or its value built in `tmp`.
#[inline(always)]
pub fn operand<'a>(w: &'a Warp, b: &BlockState, s: &Src, tmp: &'a mut V) -> &'a V {
    match *s {
        Src::Reg(r) => {
            let base = r as usize * 32;
            w.regs[base..base + 32]
                .try_into()
                .expect("a register is 32 lanes")
        }
        Src::Imm(v) => {
            *tmp = [v; 32];
            tmp
        }
        _ => {
            for (l, t) in tmp.iter_mut().enumerate() {
                *t = src(w, b, s, l);
            }
            tmp
        }
    }
}

/// Runs a one-operand form over the warp and writes the lanes of `exec` of `d`.
#[inline(always)]
pub fn run1(w: &mut Warp, b: &BlockState, exec: u32, d: u32, a: &Src, f: Un1) {
    let mut ta = [0; 32];
    let mut out = [0; 32];
    f(operand(w, b, a, &mut ta), &mut out);
    scatter(w, d, exec, &out);
}

/// [`run1`] for two operands.
#[inline(always)]
pub fn run2(w: &mut Warp, b: &BlockState, exec: u32, d: u32, a: &Src, bb: &Src, f: Bin2) {
    let (mut ta, mut tb) = ([0; 32], [0; 32]);
    let mut out = [0; 32];
    f(
        operand(w, b, a, &mut ta),
        operand(w, b, bb, &mut tb),
        &mut out,
    );
    scatter(w, d, exec, &out);
}

/// [`run1`] for three operands.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn run3(w: &mut Warp, b: &BlockState, exec: u32, d: u32, a: &Src, bb: &Src, c: &Src, f: Ter3) {
    let (mut ta, mut tb, mut tc) = ([0; 32], [0; 32], [0; 32]);
    let mut out = [0; 32];
    f(
        operand(w, b, a, &mut ta),
        operand(w, b, bb, &mut tb),
        operand(w, b, c, &mut tc),
        &mut out,
    );
    scatter(w, d, exec, &out);
}

/// Writes the lanes of `exec` of register `d`.
#[inline]
pub fn scatter(w: &mut Warp, d: u32, exec: u32, v: &V) {
    let base = d as usize * 32;
    let out: &mut V = (&mut w.regs[base..base + 32])
        .try_into()
        .expect("a register is 32 lanes");
    if exec == FULL {
        *out = *v;
    } else {
        let mut m = exec;
        while m != 0 {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            out[l] = v[l];
        }
    }
}

/// The lanes of `m` whose predicate register `p` holds `!neg`.
#[inline]
pub fn guard(w: &Warp, p: u32, neg: bool, m: u32) -> u32 {
    let base = p as usize * 32;
    let regs: &V = w.regs[base..base + 32]
        .try_into()
        .expect("a register is 32 lanes");
    let mut e = 0u32;
    for (l, r) in regs.iter().enumerate() {
        e |= ((r & 1) as u32) << l;
    }
    if neg {
        e = !e;
    }
    e & m
}

#[inline(always)]
fn map1(f: impl Fn(u64) -> u64, a: &V, out: &mut V) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = f(x);
    }
}

#[inline(always)]
fn map2(f: impl Fn(u64, u64) -> u64, a: &V, b: &V, out: &mut V) {
    for l in 0..32 {
        out[l] = f(a[l], b[l]);
    }
}

#[inline(always)]
fn map3(f: impl Fn(u64, u64, u64) -> u64, a: &V, b: &V, c: &V, out: &mut V) {
    for l in 0..32 {
        out[l] = f(a[l], b[l], c[l]);
    }
}

/// A non-generic function over 32 lanes made from a closure, one per form.
macro_rules! v1 {
    ($f:expr) => {{
        fn k(a: &V, out: &mut V) {
            map1($f, a, out)
        }
        k as Un1
    }};
}
macro_rules! v2 {
    ($f:expr) => {{
        fn k(a: &V, b: &V, out: &mut V) {
            map2($f, a, b, out)
        }
        k as Bin2
    }};
}
macro_rules! v3 {
    ($f:expr) => {{
        fn k(a: &V, b: &V, c: &V, out: &mut V) {
            map3($f, a, b, c, out)
        }
        k as Ter3
    }};
}

/// `shl.b32`/`shl.b64`/`shr.u32` on a `BITS`-wide value: amounts >= the width give 0.
#[inline(always)]
fn shift<const LEFT: bool, const BITS: u32>(a: u64, b: u64) -> u64 {
    let s = b as u32;
    if s >= BITS {
        0
    } else if LEFT {
        (a << s) & alu::mask(BITS)
    } else {
        (a & alu::mask(BITS)) >> s
    }
}

#[inline(always)]
fn f32_neg(a: u64) -> u64 {
    let x = f32_of(a);
    if x.is_nan() {
        0x7fff_ffff
    } else {
        (-x).to_bits() as u64
    }
}

#[inline(always)]
fn f32_abs(a: u64) -> u64 {
    let x = f32_of(a);
    if x.is_nan() {
        0x7fff_ffff
    } else {
        x.abs().to_bits() as u64
    }
}

fn no_float_mods(m: &FMods) -> bool {
    !m.sat && !m.ftz && !m.approx && !m.nan && m.rnd.is_none_or(|r| r == Rnd::Rn)
}

/// `mov`, `neg` and `abs` of 32/64-bit values.
pub fn fast_un(op: UnOp, ty: Ty, m: &FMods) -> Option<Un1> {
    if !no_float_mods(m) {
        return None;
    }
    use Ty::*;
    Some(match (op, ty) {
        (UnOp::Mov, B32 | U32 | S32 | F32) => v1!(|a| a & 0xffff_ffff),
        (UnOp::Mov, B64 | U64 | S64 | F64) => v1!(|a| a),
        (UnOp::Neg, F32) => v1!(f32_neg),
        (UnOp::Abs, F32) => v1!(f32_abs),
        (UnOp::Neg, S32) => v1!(|a| (a as u32).wrapping_neg() as u64),
        (UnOp::Neg, S64) => v1!(|a: u64| a.wrapping_neg()),
        (UnOp::Not, B32 | U32 | S32) => v1!(|a| !a & 0xffff_ffff),
        _ => return None,
    })
}

/// 32/64-bit integer arithmetic and logic, round-to-nearest f32.
pub fn fast_bin(op: BinOp, ty: Ty, m: &FMods) -> Option<Bin2> {
    if !no_float_mods(m) {
        return None;
    }
    use Ty::*;
    Some(match (op, ty) {
        (BinOp::Add, U32 | S32 | B32) => v2!(|a, b| (a as u32).wrapping_add(b as u32) as u64),
        (BinOp::Sub, U32 | S32 | B32) => v2!(|a, b| (a as u32).wrapping_sub(b as u32) as u64),
        (BinOp::MulLo, U32 | S32 | B32) => v2!(|a, b| (a as u32).wrapping_mul(b as u32) as u64),
        (BinOp::Add, U64 | S64 | B64) => v2!(|a: u64, b| a.wrapping_add(b)),
        (BinOp::Sub, U64 | S64 | B64) => v2!(|a: u64, b| a.wrapping_sub(b)),
        (BinOp::MulLo, U64 | S64 | B64) => v2!(|a: u64, b| a.wrapping_mul(b)),
        (BinOp::And, B32 | U32 | S32) => v2!(|a, b| a & b & 0xffff_ffff),
        (BinOp::Or, B32 | U32 | S32) => v2!(|a, b| (a | b) & 0xffff_ffff),
        (BinOp::Xor, B32 | U32 | S32) => v2!(|a, b| (a ^ b) & 0xffff_ffff),
        (BinOp::And, B64 | U64 | S64) => v2!(|a, b| a & b),
        (BinOp::Or, B64 | U64 | S64) => v2!(|a, b| a | b),
        (BinOp::Xor, B64 | U64 | S64) => v2!(|a, b| a ^ b),
        (BinOp::Shl, B32 | U32 | S32) => v2!(shift::<true, 32>),
        (BinOp::Shl, B64 | U64 | S64) => v2!(shift::<true, 64>),
        (BinOp::Shr, B32 | U32) => v2!(shift::<false, 32>),
        (BinOp::Shr, S32) => v2!(|a, b| (((a as u32 as i32) >> (b as u32).min(31)) as u32) as u64),
        (BinOp::MulWide, S32) => {
            v2!(|a, b| (a as u32 as i32 as i64).wrapping_mul(b as u32 as i32 as i64) as u64)
        }
        (BinOp::MulWide, U32) => v2!(|a, b| (a as u32 as u64).wrapping_mul(b as u32 as u64)),
        (BinOp::Add, F32) => v2!(|a, b| canon32(f32_of(a) + f32_of(b))),
        (BinOp::Sub, F32) => v2!(|a, b| canon32(f32_of(a) - f32_of(b))),
        (BinOp::MulLo, F32) => v2!(|a, b| canon32(f32_of(a) * f32_of(b))),
        _ => return None,
    })
}

/// Round-to-nearest f32 fma, 32-bit mad.lo and selp.
pub fn fast_ter(op: TerOp, ty: Ty, m: &FMods) -> Option<Ter3> {
    if m.sat || m.ftz || !m.rnd.is_none_or(|r| r == Rnd::Rn) {
        return None;
    }
    use Ty::*;
    Some(match (op, ty) {
        (TerOp::Fma, F32) => fma_f32(),
        (TerOp::MadLo, U32 | S32) => {
            v3!(|a, b, c| (a as u32).wrapping_mul(b as u32).wrapping_add(c as u32) as u64)
        }
        (TerOp::Selp, B32 | U32 | S32 | F32) => v3!(|a, b, c| {
            if c & 1 != 0 {
                a & 0xffff_ffff
            } else {
                b & 0xffff_ffff
            }
        }),
        (TerOp::Selp, B64 | U64 | S64 | F64) => v3!(|a, b, c| if c & 1 != 0 { a } else { b }),
        _ => return None,
    })
}

#[inline(always)]
fn fma32(a: u64, b: u64, c: u64) -> u64 {
    canon32(f32_of(a).mul_add(f32_of(b), f32_of(c)))
}

/// `fma.rn.f32`: with the CPU's FMA instruction where it has one (the same correctly rounded
/// result; without it `mul_add` is a software routine).
fn fma_f32() -> Ter3 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "fma")]
        fn hw(a: &V, b: &V, c: &V, out: &mut V) {
            map3(fma32, a, b, c, out)
        }
        fn k(a: &V, b: &V, c: &V, out: &mut V) {
            // SAFETY: chosen only where the CPU has FMA (checked above).
            unsafe { hw(a, b, c, out) }
        }
        return k;
    }
    v3!(fma32)
}

/// `setp` without a combining predicate on integers and f32 (no ftz): the lanes whose
/// comparison holds, as a mask.
pub fn fast_setp(cmp: CmpOp, ty: Ty, ftz: bool, a: &V, b: &V) -> Option<u32> {
    use Ty::*;
    #[inline(always)]
    fn bits(a: &V, b: &V, f: impl Fn(u64, u64) -> bool) -> u32 {
        let mut m = 0u32;
        for l in 0..32 {
            m |= (f(a[l], b[l]) as u32) << l;
        }
        m
    }
    /// Signed and unsigned orders of one width, for the comparisons PTX names.
    #[inline(always)]
    fn int<S: Ord, U: Ord>(
        cmp: CmpOp,
        a: &V,
        b: &V,
        s: impl Fn(u64) -> S + Copy,
        u: impl Fn(u64) -> U + Copy,
        signed: bool,
    ) -> u32 {
        use std::cmp::Ordering::*;
        let ord = move |x: u64, y: u64| {
            if signed {
                s(x).cmp(&s(y))
            } else {
                u(x).cmp(&u(y))
            }
        };
        let uns = move |x: u64, y: u64| u(x).cmp(&u(y));
        match cmp {
            CmpOp::Eq | CmpOp::Equ => bits(a, b, |x, y| ord(x, y) == Equal),
            CmpOp::Ne | CmpOp::Neu => bits(a, b, |x, y| ord(x, y) != Equal),
            CmpOp::Lt | CmpOp::Ltu => bits(a, b, |x, y| ord(x, y) == Less),
            CmpOp::Le | CmpOp::Leu => bits(a, b, |x, y| ord(x, y) != Greater),
            CmpOp::Gt | CmpOp::Gtu => bits(a, b, |x, y| ord(x, y) == Greater),
            CmpOp::Ge | CmpOp::Geu => bits(a, b, |x, y| ord(x, y) != Less),
            CmpOp::Lo => bits(a, b, |x, y| uns(x, y) == Less),
            CmpOp::Ls => bits(a, b, |x, y| uns(x, y) != Greater),
            CmpOp::Hi => bits(a, b, |x, y| uns(x, y) == Greater),
            CmpOp::Hs => bits(a, b, |x, y| uns(x, y) != Less),
            CmpOp::Num => u32::MAX,
            CmpOp::Nan => 0,
        }
    }
    Some(match ty {
        F32 if !ftz => bits(a, b, |x, y| isa::int::setp_f32(cmp, f32_of(x), f32_of(y))),
        S32 => int(cmp, a, b, |x| x as u32 as i32, |x| x as u32, true),
        U32 | B32 => int(cmp, a, b, |x| x as u32 as i32, |x| x as u32, false),
        S64 => int(cmp, a, b, |x| x as i64, |x| x, true),
        U64 | B64 => int(cmp, a, b, |x| x as i64, |x| x, false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<u64> {
        let mut vals = vec![0, 1, 31, 32, 33, 63, 64, 0x8000_0000, u64::MAX, 0x7f80_0001];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..24 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            vals.extend([
                x,
                x & 0xffff_ffff,
                x & 0x7f,
                0x8000_0000 | (x & 0x7fff_ffff),
            ]);
        }
        vals
    }

    /// The values as rows of 32 lanes, with `b` and `c` rotated so lanes pair them up.
    fn rows(vals: &[u64], rot: usize) -> Vec<V> {
        (0..vals.len())
            .step_by(7)
            .map(|s| std::array::from_fn(|l| vals[(s + l * (rot + 1)) % vals.len()]))
            .collect()
    }

    const TYS: [Ty; 8] = [
        Ty::B32,
        Ty::U32,
        Ty::S32,
        Ty::B64,
        Ty::U64,
        Ty::S64,
        Ty::F32,
        Ty::F64,
    ];

    /// Every fast path computes, in every lane, what the general `alu` dispatch computes.
    #[test]
    fn fast_paths_match_alu() {
        let vals = values();
        let m = FMods::default();
        let (ra, rb, rc) = (rows(&vals, 0), rows(&vals, 1), rows(&vals, 2));
        let uns = [UnOp::Mov, UnOp::Neg, UnOp::Abs, UnOp::Not];
        let bins = [
            BinOp::Add,
            BinOp::Sub,
            BinOp::MulLo,
            BinOp::MulWide,
            BinOp::And,
            BinOp::Or,
            BinOp::Xor,
            BinOp::Shl,
            BinOp::Shr,
        ];
        let ters = [TerOp::Fma, TerOp::MadLo, TerOp::Selp];
        let cmps = [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Lt,
            CmpOp::Le,
            CmpOp::Gt,
            CmpOp::Ge,
            CmpOp::Lo,
            CmpOp::Hs,
            CmpOp::Ltu,
            CmpOp::Geu,
            CmpOp::Nan,
        ];
        let mut checked = 0;
        for ty in TYS {
            for (a, (b, c)) in ra.iter().zip(rb.iter().zip(&rc)) {
                for op in uns {
                    if let Some(f) = fast_un(op, ty, &m) {
                        let mut r = [0; 32];
                        f(a, &mut r);
                        for l in 0..32 {
                            let want = alu::un(op, ty, &m, a[l]).unwrap();
                            assert_eq!(r[l], want, "{op:?}.{ty:?} {:#x}", a[l]);
                        }
                        checked += 1;
                    }
                }
                for op in bins {
                    if let Some(f) = fast_bin(op, ty, &m) {
                        let mut r = [0; 32];
                        f(a, b, &mut r);
                        for l in 0..32 {
                            let want = alu::bin(op, ty, &m, a[l], b[l]).unwrap();
                            assert_eq!(r[l], want, "{op:?}.{ty:?} {:#x} {:#x}", a[l], b[l]);
                        }
                        checked += 1;
                    }
                }
                for op in ters {
                    if let Some(f) = fast_ter(op, ty, &m) {
                        let mut r = [0; 32];
                        f(a, b, c, &mut r);
                        for l in 0..32 {
                            let want = alu::ter(op, ty, &m, a[l], b[l], c[l]).unwrap();
                            assert_eq!(r[l], want, "{op:?}.{ty:?} {:#x} {:#x}", a[l], b[l]);
                        }
                        checked += 1;
                    }
                }
                for cmp in cmps {
                    if let Some(bits) = fast_setp(cmp, ty, false, a, b) {
                        for l in 0..32 {
                            let want = alu::setp(cmp, ty, false, a[l], b[l]).unwrap();
                            assert_eq!(bits >> l & 1 != 0, want, "setp.{cmp:?}.{ty:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000, "only {checked} forms checked");
    }

    #[test]
    fn guard_and_scatter_follow_the_masks() {
        let mut w = Warp::new(0, FULL, 4);
        let v: V = std::array::from_fn(|l| l as u64 * 3);
        scatter(&mut w, 1, FULL, &v);
        scatter(&mut w, 2, 0x0000_ff0f, &v);
        for l in 0..32 {
            assert_eq!(w.r(1, l), l as u64 * 3);
            let want = if 0x0000_ff0fu32 >> l & 1 != 0 {
                l as u64 * 3
            } else {
                0
            };
            assert_eq!(w.r(2, l), want);
        }
        // Predicate register 3: lanes with odd index set.
        let p: V = std::array::from_fn(|l| (l & 1) as u64 | 2);
        scatter(&mut w, 3, FULL, &p);
        assert_eq!(guard(&w, 3, false, FULL), 0xaaaa_aaaa);
        assert_eq!(guard(&w, 3, true, FULL), 0x5555_5555);
        assert_eq!(guard(&w, 3, false, 0x0000_00f0), 0x0000_00a0);
    }
}
