//! Integer and bit-manipulation instructions on u64 register images, plus `setp` comparisons.
//!
//! Every function takes the instruction type `ty`, reads only the low `ty.bits()` bits of its
//! operands (sign-extending signed types where the value matters) and returns the result in
//! the low bits with the upper bits zero. All arithmetic wraps at the type width, as the
//! hardware does; nothing panics (division by zero has a defined result below).

use super::half::{bf16_to_f32, f16_to_f32};
use super::types::{CmpOp, Ty};

fn mask(ty: Ty) -> u64 {
    ty.mask()
}
/// Signed or unsigned value of the operand according to `ty`.
fn val(ty: Ty, a: u64) -> i128 {
    let n = ty.bits();
    let v = a & mask(ty);
    if ty.is_signed() && n > 0 && (v >> (n - 1)) & 1 == 1 {
        v as i128 - (1i128 << n)
    } else {
        v as i128
    }
}
fn wrap(ty: Ty, v: i128) -> u64 {
    (v as u64) & mask(ty)
}
fn range(ty: Ty) -> (i128, i128) {
    let n = ty.bits();
    if ty.is_signed() {
        (-(1i128 << (n - 1)), (1i128 << (n - 1)) - 1)
    } else {
        (0, (1i128 << n) - 1)
    }
}

/// `add{.sat}.ty`: wrapping add; `.sat` (PTX: `.s32` only) clamps to the signed range.
pub fn add(ty: Ty, a: u64, b: u64, sat: bool) -> u64 {
    let v = val(ty, a) + val(ty, b);
    if sat && ty.is_signed() {
        let (lo, hi) = range(ty);
        wrap(ty, v.clamp(lo, hi))
    } else {
        wrap(ty, v)
    }
}

/// `sub{.sat}.ty`.
pub fn sub(ty: Ty, a: u64, b: u64, sat: bool) -> u64 {
    let v = val(ty, a) - val(ty, b);
    if sat && ty.is_signed() {
        let (lo, hi) = range(ty);
        wrap(ty, v.clamp(lo, hi))
    } else {
        wrap(ty, v)
    }
}

/// `add.cc` / `addc{.cc}`: `a + b + carry_in` over the unsigned width; returns the result and
/// the carry-out (CC.CF). Use `carry_in = false` for `add.cc`.
pub fn add_cc(ty: Ty, a: u64, b: u64, carry_in: bool) -> (u64, bool) {
    let s = (a & mask(ty)) as u128 + (b & mask(ty)) as u128 + carry_in as u128;
    ((s as u64) & mask(ty), s >> ty.bits() != 0)
}

/// `sub.cc` / `subc{.cc}`: `a - (b + borrow_in)`; returns the result and the borrow-out,
/// which is what PTX keeps in CC.CF for the subtract forms (`subc` computes `a - (b + CF)`).
pub fn sub_cc(ty: Ty, a: u64, b: u64, borrow_in: bool) -> (u64, bool) {
    let (a, b) = (
        (a & mask(ty)) as i128,
        (b & mask(ty)) as i128 + borrow_in as i128,
    );
    (wrap(ty, a - b), a < b)
}

/// `mul.lo.ty`: low half of the product.
pub fn mul_lo(ty: Ty, a: u64, b: u64) -> u64 {
    wrap(ty, val(ty, a).wrapping_mul(val(ty, b)))
}

/// Full product of two `ty` values (fits i128 for every width up to 64).
fn full_product(ty: Ty, a: u64, b: u64) -> i128 {
    if ty.bits() == 64 && !ty.is_signed() {
        // Unsigned 64x64 does not fit i128; callers only need it modulo 2^128.
        ((a as u128).wrapping_mul(b as u128)) as i128
    } else {
        val(ty, a) * val(ty, b)
    }
}

/// `mul.hi.ty`: high half of the double-width product (signed or unsigned by `ty`).
pub fn mul_hi(ty: Ty, a: u64, b: u64) -> u64 {
    let n = ty.bits();
    if n == 64 && !ty.is_signed() {
        return ((a as u128 * b as u128) >> 64) as u64;
    }
    wrap(ty, full_product(ty, a, b) >> n)
}

/// `mul.wide.ty` for `.s16/.u16/.s32/.u32`: the full product, `2 * bits` wide.
pub fn mul_wide(ty: Ty, a: u64, b: u64) -> u64 {
    let n = (2 * ty.bits()).min(64);
    let p = full_product(ty, a, b) as u64;
    if n == 64 {
        p
    } else {
        p & ((1u64 << n) - 1)
    }
}

/// `mad.lo.ty`: `lo(a*b) + c`.
pub fn mad_lo(ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    wrap(ty, val(ty, mul_lo(ty, a, b)).wrapping_add(val(ty, c)))
}

/// `mad.hi.ty`: `hi(a*b) + c`.
pub fn mad_hi(ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    wrap(ty, val(ty, mul_hi(ty, a, b)).wrapping_add(val(ty, c)))
}

/// `mad.hi.sat.s32`: `hi(a*b) + c` clamped to the s32 range.
pub fn mad_hi_sat_s32(a: u64, b: u64, c: u64) -> u64 {
    let v = val(Ty::S32, mul_hi(Ty::S32, a, b)) + val(Ty::S32, c);
    wrap(Ty::S32, v.clamp(i32::MIN as i128, i32::MAX as i128))
}

/// `mad.wide.ty`: full `a*b` plus the double-width `c`, wrapping at double width.
pub fn mad_wide(ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    let n = (2 * ty.bits()).min(64);
    let s = mul_wide(ty, a, b).wrapping_add(c);
    if n == 64 {
        s
    } else {
        s & ((1u64 << n) - 1)
    }
}

/// `div.ty`. Division by zero is undefined in PTX; this returns all ones (unsigned: the
/// maximum, signed: -1), as observed on NVIDIA GPUs for the unsigned case and chosen for the
/// signed one. `MIN / -1` wraps to `MIN`.
pub fn div(ty: Ty, a: u64, b: u64) -> u64 {
    let (x, y) = (val(ty, a), val(ty, b));
    if y == 0 {
        return mask(ty);
    }
    wrap(ty, x / y) // i128 cannot overflow for <= 64-bit operands
}

/// `rem.ty`: remainder with the sign of the dividend (C semantics); `x rem 0 = x`.
pub fn rem(ty: Ty, a: u64, b: u64) -> u64 {
    let (x, y) = (val(ty, a), val(ty, b));
    if y == 0 {
        return wrap(ty, x);
    }
    wrap(ty, x % y)
}

/// `abs.ty` (signed): `abs(MIN) = MIN`.
pub fn abs(ty: Ty, a: u64) -> u64 {
    wrap(ty, val(ty, a).abs())
}

/// `neg.ty`: two's complement negation.
pub fn neg(ty: Ty, a: u64) -> u64 {
    wrap(ty, -val(ty, a))
}

/// `min.ty` (signed or unsigned by `ty`).
pub fn min(ty: Ty, a: u64, b: u64) -> u64 {
    wrap(ty, val(ty, a).min(val(ty, b)))
}

/// `max.ty`.
pub fn max(ty: Ty, a: u64, b: u64) -> u64 {
    wrap(ty, val(ty, a).max(val(ty, b)))
}

/// `sad.ty`: `c + |a - b|`.
pub fn sad(ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    wrap(ty, val(ty, c) + (val(ty, a) - val(ty, b)).abs())
}

/// `shl.bN`: shift amounts >= the width give 0 (the ISA clamps the amount to the width).
pub fn shl(ty: Ty, a: u64, amt: u32) -> u64 {
    if amt >= ty.bits() {
        0
    } else {
        (a << amt) & mask(ty)
    }
}

/// `shr.ty`: logical for `.b/.u`, arithmetic for `.s`; amounts >= the width give 0 or the
/// sign fill.
pub fn shr(ty: Ty, a: u64, amt: u32) -> u64 {
    let amt = amt.min(ty.bits());
    if ty.is_signed() {
        wrap(ty, val(ty, a) >> amt.min(127))
    } else if amt >= 64 {
        0
    } else {
        (a & mask(ty)) >> amt
    }
}

/// `bfe.ty d, a, pos, len`: extracts `len` bits at `pos` (both taken `& 0xff`), zero- or
/// sign-extended. Signed: the fill bit is `a[min(pos+len-1, msb)]` (0 when `len == 0`); bits
/// beyond the msb of the source read as that fill bit.
pub fn bfe(ty: Ty, a: u64, pos: u32, len: u32) -> u64 {
    let msb = ty.bits() - 1;
    let (pos, len) = (pos & 0xff, len & 0xff);
    let bit = |i: u32| (a >> i) & 1;
    let sbit = if !ty.is_signed() || len == 0 {
        0
    } else {
        bit((pos + len - 1).min(msb))
    };
    let mut d = 0u64;
    for i in 0..=msb {
        let v = if i < len && pos + i <= msb {
            bit(pos + i)
        } else {
            sbit
        };
        d |= v << i;
    }
    d
}

/// `bfi.ty f, a, b, pos, len`: inserts the low `len` bits of `a` into `b` at `pos` (both taken
/// `& 0xff`); bits that would land above the msb are dropped.
pub fn bfi(ty: Ty, a: u64, b: u64, pos: u32, len: u32) -> u64 {
    let msb = ty.bits() - 1;
    let (pos, len) = (pos & 0xff, len & 0xff);
    let mut f = b & mask(ty);
    let mut i = 0;
    while i < len && pos + i <= msb {
        f = (f & !(1u64 << (pos + i))) | (((a >> i) & 1) << (pos + i));
        i += 1;
    }
    f
}

/// `brev.bN`: bit reversal within the width.
pub fn brev(ty: Ty, a: u64) -> u64 {
    (a & mask(ty)).reverse_bits() >> (64 - ty.bits())
}

/// `bfind{.shiftamt}.ty`: position of the most significant non-sign bit (for negative signed
/// inputs, the most significant 0); with `.shiftamt` the left shift that moves it to the msb.
/// `0xffffffff` when there is no such bit.
pub fn bfind(ty: Ty, a: u64, shiftamt: bool) -> u32 {
    let msb = ty.bits() - 1;
    let mut v = a & mask(ty);
    if ty.is_signed() && (v >> msb) & 1 == 1 {
        v = !v & mask(ty);
    }
    if v == 0 {
        return 0xffff_ffff;
    }
    let d = 63 - v.leading_zeros();
    if shiftamt {
        msb - d
    } else {
        d
    }
}

/// `clz.bN`: leading zeros within the width (N for zero).
pub fn clz(ty: Ty, a: u64) -> u32 {
    (a & mask(ty)).leading_zeros() - (64 - ty.bits())
}

/// `popc.bN`: number of set bits.
pub fn popc(ty: Ty, a: u64) -> u32 {
    (a & mask(ty)).count_ones()
}

/// `prmt` special modes; `None` in [`prmt`] is the generic nibble-selector form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PrmtMode {
    F4e,
    B4e,
    Rc8,
    Ecl,
    Ecr,
    Rc16,
}

/// `prmt.b32{.mode} d, a, b, c`: picks bytes of `{b, a}` (a = bytes 0-3, b = bytes 4-7).
/// Generic form: nibble i of `c` selects byte i of `d` (bits 0-2: source byte, bit 3: replicate
/// that byte's sign bit instead of copying it). Modes use `c[1:0]` and the ISA table:
/// f4e forward 4 extract, b4e backward, rc8 replicate byte, ecl/ecr edge clamp, rc16 replicate
/// half-word.
pub fn prmt(a: u32, b: u32, c: u32, mode: Option<PrmtMode>) -> u32 {
    let src = ((b as u64) << 32) | a as u64;
    let byte = |i: u32| ((src >> (8 * (i & 7))) & 0xff) as u32;
    let Some(mode) = mode else {
        let mut d = 0u32;
        for i in 0..4 {
            let sel = (c >> (4 * i)) & 0xf;
            let v = byte(sel & 7);
            let v = if sel & 8 != 0 {
                if v & 0x80 != 0 {
                    0xff
                } else {
                    0
                }
            } else {
                v
            };
            d |= v << (8 * i);
        }
        return d;
    };
    let s = (c & 3) as usize;
    // Source byte for d.b0, d.b1, d.b2, d.b3.
    let sel: [u32; 4] = match mode {
        PrmtMode::F4e => [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]][s],
        PrmtMode::B4e => [[0, 7, 6, 5], [1, 0, 7, 6], [2, 1, 0, 7], [3, 2, 1, 0]][s],
        PrmtMode::Rc8 => [[0; 4], [1; 4], [2; 4], [3; 4]][s],
        PrmtMode::Ecl => [[0, 1, 2, 3], [1, 1, 2, 3], [2, 2, 2, 3], [3, 3, 3, 3]][s],
        PrmtMode::Ecr => [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 2, 2], [0, 1, 2, 3]][s],
        PrmtMode::Rc16 => [[0, 1, 0, 1], [2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]][s],
    };
    sel.iter()
        .enumerate()
        .fold(0, |d, (i, &k)| d | byte(k) << (8 * i))
}

/// `shf.{l,r}.{clamp,wrap}.b32 d, a, b, c`: funnel shift of the 64-bit `{b, a}` by `c`
/// (clamped to 32, or taken mod 32); left returns the upper 32 bits, right the lower 32.
pub fn shf(a: u32, b: u32, c: u32, left: bool, clamp: bool) -> u32 {
    let n = if clamp { c.min(32) } else { c & 31 };
    let v = ((b as u64) << 32) | a as u64;
    if left {
        ((v << n) >> 32) as u32
    } else {
        (v >> n) as u32
    }
}

/// `lop3.b32 d, a, b, c, immLut`: bitwise function whose truth table is `immLut`, indexed by
/// `(a_bit << 2) | (b_bit << 1) | c_bit` (so `immLut = F(0xF0, 0xCC, 0xAA)`).
pub fn lop3(a: u32, b: u32, c: u32, immlut: u8) -> u32 {
    let mut d = 0u32;
    for i in 0..8 {
        if immlut >> i & 1 == 1 {
            let x = if i & 4 != 0 { a } else { !a };
            let y = if i & 2 != 0 { b } else { !b };
            let z = if i & 1 != 0 { c } else { !c };
            d |= x & y & z;
        }
    }
    d
}

/// `setp.op.ty` for integer types: `eq..ge` compare signed or unsigned by `ty`; `lo/ls/hi/hs`
/// are always unsigned. The float-only operators are treated as their ordered forms (`num` is
/// true, `nan` false), since integers are never NaN.
pub fn setp_int(op: CmpOp, a: u64, b: u64, ty: Ty) -> bool {
    let (x, y) = (val(ty, a), val(ty, b));
    let (ux, uy) = (a & mask(ty), b & mask(ty));
    match op {
        CmpOp::Eq | CmpOp::Equ => x == y,
        CmpOp::Ne | CmpOp::Neu => x != y,
        CmpOp::Lt | CmpOp::Ltu => x < y,
        CmpOp::Le | CmpOp::Leu => x <= y,
        CmpOp::Gt | CmpOp::Gtu => x > y,
        CmpOp::Ge | CmpOp::Geu => x >= y,
        CmpOp::Lo => ux < uy,
        CmpOp::Ls => ux <= uy,
        CmpOp::Hi => ux > uy,
        CmpOp::Hs => ux >= uy,
        CmpOp::Num => true,
        CmpOp::Nan => false,
    }
}

fn setp_float(op: CmpOp, a: f64, b: f64) -> bool {
    let unordered = a.is_nan() || b.is_nan();
    match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => !unordered && a != b,
        CmpOp::Lt | CmpOp::Lo => a < b,
        CmpOp::Le | CmpOp::Ls => a <= b,
        CmpOp::Gt | CmpOp::Hi => a > b,
        CmpOp::Ge | CmpOp::Hs => a >= b,
        CmpOp::Equ => unordered || a == b,
        CmpOp::Neu => unordered || a != b,
        CmpOp::Ltu => unordered || a < b,
        CmpOp::Leu => unordered || a <= b,
        CmpOp::Gtu => unordered || a > b,
        CmpOp::Geu => unordered || a >= b,
        CmpOp::Num => !unordered,
        CmpOp::Nan => unordered,
    }
}

/// `setp.op.f32`: ordered operators are false if either operand is NaN, the `*u` forms true;
/// `-0.0 == +0.0`. (`lo/ls/hi/hs` are not float operators; they act as `lt/le/gt/ge`.) Apply
/// [`super::float::ftz32`] to the operands for `.ftz`.
pub fn setp_f32(op: CmpOp, a: f32, b: f32) -> bool {
    setp_float(op, a as f64, b as f64)
}
/// `setp.op.f64`.
pub fn setp_f64(op: CmpOp, a: f64, b: f64) -> bool {
    setp_float(op, a, b)
}
/// `setp.op.f16` on bit images.
pub fn setp_f16(op: CmpOp, a: u16, b: u16) -> bool {
    setp_float(op, f16_to_f32(a) as f64, f16_to_f32(b) as f64)
}
/// `setp.op.bf16` on bit images.
pub fn setp_bf16(op: CmpOp, a: u16, b: u16) -> bool {
    setp_float(op, bf16_to_f32(a) as f64, bf16_to_f32(b) as f64)
}

/// `dp4a.atype.btype d, a, b, c`: `c + sum of the four byte products` (bytes signed or
/// unsigned per operand), wrapping at 32 bits.
pub fn dp4a(a: u32, a_signed: bool, b: u32, b_signed: bool, c: u32) -> u32 {
    let byte = |x: u32, i: u32, s: bool| {
        let v = (x >> (8 * i)) & 0xff;
        if s {
            v as u8 as i8 as i32
        } else {
            v as i32
        }
    };
    (0..4).fold(c, |acc, i| {
        acc.wrapping_add((byte(a, i, a_signed).wrapping_mul(byte(b, i, b_signed))) as u32)
    })
}

#[cfg(test)]
mod tests;
