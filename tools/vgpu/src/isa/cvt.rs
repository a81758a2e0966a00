//! The `cvt` instruction: every int/float source/destination pair, plus the packing forms
//! `cvt.rn{.relu}{.satfinite}.{f16x2,bf16x2}.f32`.
//!
//! Result convention: the destination value's bits are in the low `dst.bits()` bits and the
//! upper bits are zero, whatever the signedness (so `cvt.s8.s32` of -1 returns `0xff`). The
//! interpreter sign-extends when it writes a signed sub-word value into a wider register.

use super::fp::{self, Fmt, Val, BF16, F16, F32, F64};
use super::types::{IRnd, Rnd, Ty};

/// The binary format of a scalar float type.
pub fn fmt_of(ty: Ty) -> Option<Fmt> {
    match ty {
        Ty::F16 => Some(F16),
        Ty::Bf16 => Some(BF16),
        Ty::F32 => Some(F32),
        Ty::F64 => Some(F64),
        _ => None,
    }
}

/// Reads the low `ty.bits()` bits of `bits` as an integer of type `ty` (sign-extending signed
/// types, zero-extending unsigned and bit types).
pub fn read_int(ty: Ty, bits: u64) -> i128 {
    let n = ty.bits();
    let v = bits & ty.mask();
    if ty.is_signed() && n < 64 && (v >> (n - 1)) & 1 == 1 {
        (v | !ty.mask()) as i64 as i128
    } else if ty.is_signed() && n == 64 {
        v as i64 as i128
    } else {
        v as i128
    }
}

/// Smallest and largest value of integer type `ty`.
pub fn int_range(ty: Ty) -> (i128, i128) {
    let n = ty.bits();
    if ty.is_signed() {
        (-(1i128 << (n - 1)), (1i128 << (n - 1)) - 1)
    } else {
        (0, (1i128 << n) - 1)
    }
}

/// Rounds an f64 to an integral f64 with a PTX integer rounding mode.
pub fn round_integral(x: f64, r: IRnd) -> f64 {
    match r {
        IRnd::Rni => x.round_ties_even(),
        IRnd::Rzi => x.trunc(),
        IRnd::Rmi => x.floor(),
        IRnd::Rpi => x.ceil(),
    }
}

/// `cvt{.frnd|.irnd}{.ftz}{.sat}.dst.src d, a` on the bit image `bits`.
///
/// - int -> int: the source is sign- or zero-extended according to *its* type, then truncated
///   to the destination width; with `sat` it is first clamped to the destination range.
/// - float -> int: rounded with `irnd` (PTX requires one; `None` is taken as `.rzi`, C's
///   truncation), then clamped to the destination range — cvt saturates float-to-int
///   conversions by default on sm_20+ — and NaN converts to 0.
/// - int -> float: rounded once with `frnd` (`None` = `.rn`).
/// - float -> float: widening is exact; narrowing rounds with `frnd` (`None` = `.rn`); with
///   `irnd` the value is first rounded to an integral value (e.g. `cvt.rni.f32.f32`).
/// - `ftz` flushes f32 subnormal inputs and f32 subnormal results to zero (sign kept); it has
///   no effect on other formats, as in the ISA.
/// - `sat` on a float destination clamps to [0.0, 1.0], NaN becoming +0.0.
///
/// Packed types (`.f16x2`, `.bf16x2`) are not scalar conversions: see [`cvt_pack_f16x2`]; if
/// either side is packed the bits are just moved.
pub fn cvt(
    dst: Ty,
    src: Ty,
    frnd: Option<Rnd>,
    irnd: Option<IRnd>,
    ftz: bool,
    sat: bool,
    bits: u64,
) -> u64 {
    if matches!(src, Ty::F16x2 | Ty::Bf16x2) || matches!(dst, Ty::F16x2 | Ty::Bf16x2) {
        return bits & dst.mask();
    }
    let frnd_or_rn = frnd.unwrap_or(Rnd::Rn);
    match (fmt_of(src), fmt_of(dst)) {
        (None, None) => {
            let mut v = read_int(src, bits);
            if sat {
                let (lo, hi) = int_range(dst);
                v = v.clamp(lo, hi);
            }
            (v as u64) & dst.mask()
        }
        (Some(sf), None) => {
            let mut x = bits & sf.all_mask();
            if ftz && sf == F32 {
                x = F32.ftz(x);
            }
            let v = f64::from_bits(fp::convert(x, sf, F64, Rnd::Rn));
            if v.is_nan() {
                return 0;
            }
            let r = round_integral(v, irnd.unwrap_or(IRnd::Rzi));
            let (lo, hi) = int_range(dst);
            // `as i128` saturates at the i128 range, which contains every destination range.
            ((r as i128).clamp(lo, hi) as u64) & dst.mask()
        }
        (None, Some(df)) => {
            let r = fp::from_int(read_int(src, bits), df, frnd_or_rn);
            if sat {
                df.sat(r)
            } else {
                r
            }
        }
        (Some(sf), Some(df)) => {
            let mut x = bits & sf.all_mask();
            if ftz && sf == F32 {
                x = F32.ftz(x);
            }
            let mut r = match (irnd, fp::decode(x, sf)) {
                (Some(ir), Val::Fin { .. }) => {
                    let v = f64::from_bits(fp::convert(x, sf, F64, Rnd::Rn));
                    // Integral values of the source format are exact in f64 and in the source
                    // format itself, so only the final conversion can round.
                    fp::convert(round_integral(v, ir).to_bits(), F64, df, frnd_or_rn)
                }
                _ => fp::convert(x, sf, df, frnd_or_rn),
            };
            if ftz && df == F32 {
                r = F32.ftz(r);
            }
            if sat {
                r = df.sat(r);
            }
            r
        }
    }
}

/// `.relu` on a scalar float result of type `ty`: negative values (and -0.0) become +0.0, NaN
/// becomes the canonical NaN of the type.
pub fn relu(ty: Ty, bits: u64) -> u64 {
    let Some(f) = fmt_of(ty) else {
        return bits & ty.mask();
    };
    let x = bits & f.all_mask();
    if f.is_nan(x) {
        f.canonical_nan()
    } else if f.is_neg(x) {
        0
    } else {
        x
    }
}

/// `.satfinite`: infinities become the largest finite value of the same sign; NaN becomes the
/// canonical NaN.
pub fn satfinite(f: Fmt, x: u64) -> u64 {
    let x = x & f.all_mask();
    if f.is_nan(x) {
        f.canonical_nan()
    } else if (x & (f.all_mask() >> 1)) == f.inf() {
        (x & !(f.all_mask() >> 1)) | f.max_finite()
    } else {
        x
    }
}

fn pack2(f: Fmt, a: f32, b: f32, rnd: Rnd, relu_: bool, satf: bool) -> u32 {
    let one = |x: f32| {
        // fp16 round-to-nearest (every attention P tile and GEMM epilogue) has a fast path.
        let mut r = if f == F16 && rnd == Rnd::Rn {
            super::half::f32_to_f16(x, Rnd::Rn) as u64
        } else {
            fp::convert(x.to_bits() as u64, F32, f, rnd)
        };
        if satf {
            r = satfinite(f, r);
        }
        if relu_ {
            r = if f.is_nan(r) {
                f.canonical_nan()
            } else if f.is_neg(r) {
                0
            } else {
                r
            };
        }
        r as u32
    };
    (one(a) << 16) | one(b)
}

/// `cvt.rnd{.relu}{.satfinite}.f16x2.f32 d, a, b`: **`a` goes to the upper half**, `b` to the
/// lower half (ISA: "d = {cvt(a), cvt(b)}"). `sat` means `.satfinite` (±inf -> ±65504, NaN
/// -> NaN), `relu` clamps negative results to +0 (NaN stays NaN).
pub fn cvt_pack_f16x2(a: f32, b: f32, rnd: Rnd, relu: bool, sat: bool) -> u32 {
    pack2(F16, a, b, rnd, relu, sat)
}

/// `cvt.rnd{.relu}{.satfinite}.bf16x2.f32 d, a, b`: same layout as [`cvt_pack_f16x2`].
pub fn cvt_pack_bf16x2(a: f32, b: f32, rnd: Rnd, relu: bool, sat: bool) -> u32 {
    pack2(BF16, a, b, rnd, relu, sat)
}

/// `cvt.rna{.satfinite}.tf32.f32`: rounds to 10 fraction bits, returned as an f32 bit pattern
/// whose low 13 bits are zero.
pub fn cvt_tf32(x: f32, rnd: Rnd) -> u32 {
    const TF32: Fmt = Fmt { eb: 8, mb: 10 };
    (fp::convert(x.to_bits() as u64, F32, TF32, rnd) as u32) << 13
        | if x.is_nan() { 0x1fff } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::{cvt, cvt_pack_bf16x2, cvt_pack_f16x2, cvt_tf32, relu, IRnd, Rnd, Ty};
    use IRnd::*;
    use Rnd::*;
    use Ty::*;

    fn c(dst: Ty, src: Ty, fr: Option<Rnd>, ir: Option<IRnd>, bits: u64) -> u64 {
        cvt(dst, src, fr, ir, false, false, bits)
    }
    fn f(x: f32) -> u64 {
        x.to_bits() as u64
    }

    #[test]
    fn int_to_int() {
        assert_eq!(c(S32, S8, None, None, 0x80), 0xffff_ff80); // sign-extend -128
        assert_eq!(c(U32, U8, None, None, 0x80), 0x80); // zero-extend
        assert_eq!(c(S64, S32, None, None, 0xffff_ffff), u64::MAX);
        assert_eq!(c(U64, S32, None, None, 0xffff_fffe), 0xffff_ffff_ffff_fffe);
        assert_eq!(c(S8, S32, None, None, 0x1234_5681), 0x81); // truncate, upper bits zero
        assert_eq!(c(U16, U64, None, None, 0xdead_beef_cafe), 0xcafe);
        // Upper garbage in the source register is ignored.
        assert_eq!(c(S32, S16, None, None, 0xffff_0000_7fff), 0x7fff);
        // .sat clamps to the destination range.
        let s = |d, sr, b| cvt(d, sr, None, None, false, true, b);
        assert_eq!(s(S8, S32, 300), 127);
        assert_eq!(s(S8, S32, (-300i32) as u32 as u64), 0x80);
        assert_eq!(s(U8, S32, (-5i32) as u32 as u64), 0);
        assert_eq!(s(U8, S32, 255), 255);
        assert_eq!(s(U32, S64, u64::MAX), 0); // -1 -> 0
        assert_eq!(s(S32, U32, 0xffff_ffff), 0x7fff_ffff);
        assert_eq!(s(U64, S64, 1 << 63), 0);
        assert_eq!(s(S64, U64, u64::MAX), i64::MAX as u64);
    }

    #[test]
    fn float_to_int_rounding_modes() {
        let cases: [(f32, [i64; 4]); 7] = [
            // value, [rni, rzi, rmi, rpi]
            (2.5, [2, 2, 2, 3]),
            (3.5, [4, 3, 3, 4]),
            (-2.5, [-2, -2, -3, -2]),
            (-0.5, [0, 0, -1, 0]),
            (1.7, [2, 1, 1, 2]),
            (-1.2, [-1, -1, -2, -1]),
            (1e-40, [0, 0, 0, 1]), // subnormal
        ];
        for (v, exp) in cases {
            for (r, e) in [Rni, Rzi, Rmi, Rpi].into_iter().zip(exp) {
                assert_eq!(
                    c(S32, F32, None, Some(r), f(v)),
                    e as i32 as u32 as u64,
                    "{v} {r:?}"
                );
                let d = c(S64, F64, None, Some(r), (v as f64).to_bits());
                assert_eq!(d, e as u64, "{v} {r:?}");
            }
        }
        // .ftz flushes the subnormal before rounding up.
        assert_eq!(cvt(S32, F32, None, Some(Rpi), true, false, f(1e-40)), 0);
        assert_eq!(cvt(S32, F32, None, Some(Rmi), true, false, f(-1e-40)), 0);
        assert_eq!(
            cvt(S32, F32, None, Some(Rmi), false, false, f(-1e-40)),
            0xffff_ffff
        );
    }

    #[test]
    fn float_to_int_saturation_and_nan() {
        assert_eq!(c(S32, F32, None, Some(Rzi), f(3e9)), 0x7fff_ffff);
        assert_eq!(c(S32, F32, None, Some(Rzi), f(-3e9)), 0x8000_0000);
        assert_eq!(c(U32, F32, None, Some(Rzi), f(-1.0)), 0);
        assert_eq!(c(U32, F32, None, Some(Rzi), f(5e9)), 0xffff_ffff);
        assert_eq!(c(U8, F32, None, Some(Rni), f(300.0)), 0xff);
        assert_eq!(c(S8, F32, None, Some(Rni), f(-300.0)), 0x80);
        assert_eq!(c(S16, F32, None, Some(Rni), f(-2.0)), 0xfffe);
        assert_eq!(c(S32, F32, None, Some(Rni), f(f32::INFINITY)), 0x7fff_ffff);
        assert_eq!(
            c(S32, F32, None, Some(Rni), f(f32::NEG_INFINITY)),
            0x8000_0000
        );
        assert_eq!(c(S32, F32, None, Some(Rni), f(f32::NAN)), 0);
        assert_eq!(c(U64, F64, None, Some(Rni), f64::NAN.to_bits()), 0);
        assert_eq!(
            c(S64, F64, None, Some(Rzi), 1e30f64.to_bits()),
            i64::MAX as u64
        );
        assert_eq!(c(U64, F64, None, Some(Rzi), 1e30f64.to_bits()), u64::MAX);
        assert_eq!(c(S32, F16, None, Some(Rni), 0xc500), (-5i32) as u32 as u64);
        assert_eq!(c(U16, F16, None, Some(Rni), 0x7c00), 0xffff);
        assert_eq!(c(S32, Bf16, None, Some(Rzi), 0x4049), 3);
        // Default rounding when none given is truncation.
        assert_eq!(c(S32, F32, None, None, f(-2.9)), (-2i32) as u32 as u64);
    }

    #[test]
    fn int_to_float_rounding_modes() {
        // 2^24 + 1 is the first integer f32 cannot hold: between 2^24 and 2^24 + 2.
        let v = (1u64 << 24) + 1;
        assert_eq!(c(F32, U32, Some(Rn), None, v), f(16777216.0)); // tie -> even
        assert_eq!(c(F32, U32, Some(Rz), None, v), f(16777216.0));
        assert_eq!(c(F32, U32, Some(Rm), None, v), f(16777216.0));
        assert_eq!(c(F32, U32, Some(Rp), None, v), f(16777218.0));
        assert_eq!(c(F32, U32, Some(Rna), None, v), f(16777218.0));
        let nv = (-((1i64 << 24) + 1)) as u64;
        assert_eq!(c(F32, S64, Some(Rm), None, nv), f(-16777218.0));
        assert_eq!(c(F32, S64, Some(Rp), None, nv), f(-16777216.0));
        assert_eq!(c(F32, S32, Some(Rn), None, (-7i32) as u32 as u64), f(-7.0));
        assert_eq!(c(F32, S8, Some(Rn), None, 0xff), f(-1.0));
        assert_eq!(
            c(F64, U64, Some(Rn), None, u64::MAX),
            18446744073709551616f64.to_bits()
        );
        assert_eq!(
            c(F64, U64, Some(Rz), None, u64::MAX),
            18446744073709549568f64.to_bits()
        );
        assert_eq!(c(F16, U32, Some(Rn), None, 70000), 0x7c00);
        assert_eq!(c(F16, U32, Some(Rz), None, 70000), 0x7bff);
        assert_eq!(c(F16, S32, Some(Rn), None, 2049), 0x6800); // 2048, tie to even
        assert_eq!(c(F16, S32, Some(Rp), None, 2049), 0x6801); // 2050
        assert_eq!(c(Bf16, S32, Some(Rn), None, 257), 0x4380); // 256
                                                               // .sat on a float destination.
        assert_eq!(cvt(F32, S32, Some(Rn), None, false, true, 5), f(1.0));
        assert_eq!(
            cvt(F32, S32, Some(Rn), None, false, true, (-5i32) as u32 as u64),
            0
        );
    }

    #[test]
    fn float_to_float() {
        // Narrowing f64 -> f32 in each mode.
        let x = 0.1f64.to_bits();
        assert_eq!(c(F32, F64, Some(Rn), None, x), 0x3dcc_cccd);
        assert_eq!(c(F32, F64, Some(Rz), None, x), 0x3dcc_cccc);
        assert_eq!(c(F32, F64, Some(Rm), None, x), 0x3dcc_cccc);
        assert_eq!(c(F32, F64, Some(Rp), None, x), 0x3dcc_cccd);
        // Widening is exact.
        assert_eq!(c(F64, F32, None, None, f(0.1)), (0.1f32 as f64).to_bits());
        assert_eq!(c(F32, F16, None, None, 0x3555), f(0.333_251_95));
        assert_eq!(c(F32, Bf16, None, None, 0xbf80), f(-1.0));
        // f16 narrowing.
        assert_eq!(c(F16, F32, Some(Rn), None, f(1.0 + 2f32.powi(-11))), 0x3c00);
        assert_eq!(c(F16, F32, Some(Rp), None, f(1.0 + 2f32.powi(-11))), 0x3c01);
        assert_eq!(c(F16, F32, Some(Rz), None, f(1e6)), 0x7bff);
        // Round to integral in float.
        assert_eq!(c(F32, F32, None, Some(Rni), f(2.5)), f(2.0));
        assert_eq!(c(F32, F32, None, Some(Rpi), f(2.1)), f(3.0));
        assert_eq!(c(F32, F32, None, Some(Rmi), f(-2.1)), f(-3.0));
        assert_eq!(c(F32, F32, None, Some(Rzi), f(-2.9)), f(-2.0));
        assert_eq!(c(F32, F32, None, Some(Rni), f(-0.4)), f(-0.0));
        assert_eq!(
            c(F64, F64, None, Some(Rni), 3.5f64.to_bits()),
            4.0f64.to_bits()
        );
        assert_eq!(c(F16, F16, None, Some(Rzi), 0x3e00), 0x3c00); // 1.5 -> 1
        assert_eq!(
            c(F32, F32, None, Some(Rni), f(f32::INFINITY)),
            f(f32::INFINITY)
        );
        // NaN handling.
        assert_eq!(c(F32, F64, Some(Rn), None, f64::NAN.to_bits()), 0x7fff_ffff);
        assert_eq!(c(F16, F32, Some(Rn), None, 0x7fc0_0001), 0x7fff);
        assert_eq!(c(F32, F32, None, Some(Rni), 0xffc0_0000), 0x7fff_ffff);
        assert_eq!(c(F64, F32, None, None, 0x7fff_ffff), 0x7fff_ffff_e000_0000);
    }

    #[test]
    fn ftz_and_sat() {
        let sub = 0x8000_0005u64; // negative f32 subnormal
        assert_eq!(cvt(F32, F32, None, None, true, false, sub), 0x8000_0000);
        assert_eq!(cvt(F32, F32, None, None, false, false, sub), sub);
        assert_eq!(
            cvt(F64, F32, None, None, true, false, sub),
            (-0.0f64).to_bits()
        );
        // f64 -> f32 result subnormal: flushed with ftz, kept without.
        let tiny = 1e-40f64.to_bits();
        assert_eq!(cvt(F32, F64, Some(Rn), None, true, false, tiny), 0);
        assert_ne!(cvt(F32, F64, Some(Rn), None, false, false, tiny), 0);
        // .ftz does not touch f64 subnormals.
        let dsub = 5u64;
        assert_eq!(cvt(F64, F64, None, Some(Rzi), true, false, dsub), 0);
        assert_eq!(cvt(F64, F64, None, None, true, false, dsub), 5);
        // .sat on float results.
        let s = |d, sr, b| cvt(d, sr, Some(Rn), None, false, true, b);
        assert_eq!(s(F32, F32, f(1.5)), f(1.0));
        assert_eq!(s(F32, F32, f(-0.0)), 0);
        assert_eq!(s(F32, F32, f(0.25)), f(0.25));
        assert_eq!(s(F32, F32, f(f32::NAN)), 0);
        assert_eq!(s(F16, F32, f(7.0)), 0x3c00);
        assert_eq!(s(F32, F64, f64::NEG_INFINITY.to_bits()), 0);
    }

    #[test]
    fn pack_order_relu_satfinite() {
        // a = 1.0 goes high, b = 2.0 goes low.
        assert_eq!(cvt_pack_f16x2(1.0, 2.0, Rn, false, false), 0x3c00_4000);
        assert_eq!(cvt_pack_bf16x2(1.0, 2.0, Rn, false, false), 0x3f80_4000);
        assert_eq!(cvt_pack_f16x2(-1.0, 0.5, Rn, true, false), 0x0000_3800);
        assert_eq!(cvt_pack_f16x2(f32::NAN, -0.0, Rn, true, false), 0x7fff_0000);
        assert_eq!(cvt_pack_f16x2(1e6, -1e6, Rn, false, false), 0x7c00_fc00);
        assert_eq!(cvt_pack_f16x2(1e6, -1e6, Rn, false, true), 0x7bff_fbff);
        assert_eq!(
            cvt_pack_f16x2(f32::INFINITY, f32::NAN, Rn, false, true),
            0x7bff_7fff
        );
        assert_eq!(
            cvt_pack_bf16x2(f32::INFINITY, -3.0, Rn, true, true),
            0x7f7f_0000
        );
        let t = 1.0 + 2f32.powi(-11);
        assert_eq!(cvt_pack_f16x2(t, t, Rz, false, false), 0x3c00_3c00);
        assert_eq!(cvt_pack_f16x2(t, -t, Rp, false, false), 0x3c01_bc00);
    }

    #[test]
    fn tf32() {
        assert_eq!(cvt_tf32(1.0, Rna), 0x3f80_0000);
        // 1 + 2^-11 is the tf32 tie: .rna rounds away.
        assert_eq!(cvt_tf32(1.0 + 2f32.powi(-11), Rna), 0x3f80_2000);
        assert_eq!(cvt_tf32(1.0 + 2f32.powi(-11), Rn), 0x3f80_0000);
        assert_eq!(cvt_tf32(f32::NAN, Rna), 0x7fff_ffff);
    }

    #[test]
    fn relu_scalar() {
        assert_eq!(relu(F32, f(-3.0)), 0);
        assert_eq!(relu(F32, f(3.0)), f(3.0));
        assert_eq!(relu(F16, 0xfe00), 0x7fff);
        assert_eq!(relu(Bf16, 0x8000), 0);
    }
}
