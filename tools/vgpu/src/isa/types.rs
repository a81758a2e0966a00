//! Operand types, rounding modifiers and comparison operators of PTX instructions.
//!
//! These are the vocabulary the other `isa` modules are parameterised by. Parsing accepts the
//! PTX spelling with or without the leading dot (`".s32"` or `"s32"`), so the interpreter can
//! hand over tokens as its parser produced them.

/// A PTX fundamental (or packed) type as it appears in an instruction's type suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    Bf16,
    Bf16x2,
    F32,
    F64,
    Pred,
}

impl Ty {
    /// Parses a PTX type suffix (`.u32`, `f16x2`, `.pred`, ...); `None` for anything else.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<Ty> {
        let s = s.strip_prefix('.').unwrap_or(s);
        Some(match s {
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::Bf16,
            "bf16x2" => Ty::Bf16x2,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            "pred" => Ty::Pred,
            _ => return None,
        })
    }

    /// Width of the type in bits (packed types count both halves; `.pred` is 1).
    pub fn bits(self) -> u32 {
        match self {
            Ty::Pred => 1,
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::Bf16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F16x2 | Ty::Bf16x2 | Ty::F32 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
        }
    }

    /// True for the signed *integer* types `.s8`..`.s64` (the ones that sign-extend and compare
    /// as two's complement). Floats are not counted: they never need sign extension.
    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    /// True for every floating-point type, scalar or packed.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2 | Ty::F32 | Ty::F64
        )
    }

    /// True for the bit-size, unsigned and signed integer types (`.b*`, `.u*`, `.s*`).
    pub fn is_int(self) -> bool {
        matches!(
            self,
            Ty::B8
                | Ty::B16
                | Ty::B32
                | Ty::B64
                | Ty::U8
                | Ty::U16
                | Ty::U32
                | Ty::U64
                | Ty::S8
                | Ty::S16
                | Ty::S32
                | Ty::S64
        )
    }

    /// Mask of the low `bits()` bits of a u64 register image.
    pub fn mask(self) -> u64 {
        match self.bits() {
            64 => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }
}

/// Floating-point rounding modifier: `.rn` (nearest even), `.rz`, `.rm` (toward -inf), `.rp`
/// (toward +inf) and `.rna` (nearest, ties away from zero; used by cvt to tf32 and friends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rnd {
    Rn,
    Rz,
    Rm,
    Rp,
    /// round to nearest, ties away
    Rna,
}

impl Rnd {
    /// Parses `.rn`, `.rz`, `.rm`, `.rp`, `.rna` (dot optional).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<Rnd> {
        Some(match s.strip_prefix('.').unwrap_or(s) {
            "rn" => Rnd::Rn,
            "rz" => Rnd::Rz,
            "rm" => Rnd::Rm,
            "rp" => Rnd::Rp,
            "rna" => Rnd::Rna,
            _ => return None,
        })
    }
}

/// Integer rounding modifier of cvt (float to int, or float to an integral float):
/// `.rni` nearest even, `.rzi` toward zero, `.rmi` toward -inf, `.rpi` toward +inf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IRnd {
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

impl IRnd {
    /// Parses `.rni`, `.rzi`, `.rmi`, `.rpi` (dot optional).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<IRnd> {
        Some(match s.strip_prefix('.').unwrap_or(s) {
            "rni" => IRnd::Rni,
            "rzi" => IRnd::Rzi,
            "rmi" => IRnd::Rmi,
            "rpi" => IRnd::Rpi,
            _ => return None,
        })
    }
}

/// Comparison operator of `setp`/`set`/`slct`. `Lo/Ls/Hi/Hs` are the unsigned integer
/// comparisons; the `*u` forms and `Num`/`Nan` are the floating-point unordered/NaN tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

impl CmpOp {
    /// Parses a comparison suffix such as `.lt` or `geu` (dot optional).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Option<CmpOp> {
        Some(match s.strip_prefix('.').unwrap_or(s) {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "lt" => CmpOp::Lt,
            "le" => CmpOp::Le,
            "gt" => CmpOp::Gt,
            "ge" => CmpOp::Ge,
            "lo" => CmpOp::Lo,
            "ls" => CmpOp::Ls,
            "hi" => CmpOp::Hi,
            "hs" => CmpOp::Hs,
            "equ" => CmpOp::Equ,
            "neu" => CmpOp::Neu,
            "ltu" => CmpOp::Ltu,
            "leu" => CmpOp::Leu,
            "gtu" => CmpOp::Gtu,
            "geu" => CmpOp::Geu,
            "num" => CmpOp::Num,
            "nan" => CmpOp::Nan,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_props() {
        assert_eq!(Ty::from_str(".s32"), Some(Ty::S32));
        assert_eq!(Ty::from_str("f16x2"), Some(Ty::F16x2));
        assert_eq!(Ty::from_str(".bf16x2"), Some(Ty::Bf16x2));
        assert_eq!(Ty::from_str(".pred"), Some(Ty::Pred));
        assert_eq!(Ty::from_str(".s33"), None);
        assert_eq!(Ty::F16x2.bits(), 32);
        assert_eq!(Ty::Bf16.bits(), 16);
        assert_eq!(Ty::Pred.bits(), 1);
        assert_eq!(Ty::S8.mask(), 0xff);
        assert_eq!(Ty::U64.mask(), u64::MAX);
        assert!(Ty::S16.is_signed() && !Ty::U16.is_signed() && !Ty::F32.is_signed());
        assert!(Ty::B32.is_int() && !Ty::F32.is_int() && !Ty::Pred.is_int());
        assert!(Ty::Bf16x2.is_float() && !Ty::U8.is_float());
        assert_eq!(CmpOp::from_str(".geu"), Some(CmpOp::Geu));
        assert_eq!(CmpOp::from_str("hs"), Some(CmpOp::Hs));
        assert_eq!(CmpOp::from_str("nan"), Some(CmpOp::Nan));
        assert_eq!(CmpOp::from_str("gtx"), None);
        assert_eq!(Rnd::from_str(".rna"), Some(Rnd::Rna));
        assert_eq!(IRnd::from_str("rpi"), Some(IRnd::Rpi));
    }
}
