//! Exact binary floating-point core shared by `half`, `cvt` and `float`.
//!
//! Every operation here first produces the *exact* result as an integer significand times a
//! power of two (`mant * 2^exp`), then rounds it once with [`round_pack`] into the destination
//! format. That is what makes the directed modes (`.rz/.rm/.rp`) and the narrow formats (f16,
//! bf16) correct without double rounding: the host FPU only rounds to nearest, and rounding an
//! f64 intermediate again would be wrong in rare ties.
//!
//! Where an exact result does not fit (quotients, square roots, additions of far-apart
//! operands) the discarded part is *jammed* into the least significant bit (a sticky bit). The
//! significands are kept at >= 60 bits, far more than the 54 bits any destination needs, so
//! the sticky bit never sits next to the rounding position.
//!
//! NaN conventions: f32 results use the canonical NaN `0x7fffffff`, f16/bf16 use `0x7fff` as
//! NVIDIA GPUs produce. For f64 a NaN operand is propagated (quieted) and a NaN created by an
//! invalid operation is `0x7fffffffffffffff`, chosen for symmetry with f32.

use super::types::Rnd;

/// A binary interchange format: exponent bits and explicit fraction bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmt {
    pub eb: u32,
    pub mb: u32,
}

pub const F16: Fmt = Fmt { eb: 5, mb: 10 };
pub const BF16: Fmt = Fmt { eb: 8, mb: 7 };
pub const F32: Fmt = Fmt { eb: 8, mb: 23 };
pub const F64: Fmt = Fmt { eb: 11, mb: 52 };

impl Fmt {
    fn bias(self) -> i32 {
        (1 << (self.eb - 1)) - 1
    }
    fn sign_bit(self) -> u64 {
        1u64 << (self.eb + self.mb)
    }
    fn exp_all(self) -> u64 {
        (1u64 << self.eb) - 1
    }
    /// Positive infinity.
    pub fn inf(self) -> u64 {
        self.exp_all() << self.mb
    }
    /// Largest finite magnitude.
    pub fn max_finite(self) -> u64 {
        self.inf() - 1
    }
    /// The NaN this format produces for an invalid operation (see module doc).
    pub fn canonical_nan(self) -> u64 {
        if self == F64 {
            0x7fff_ffff_ffff_ffff
        } else {
            (self.inf() | (self.inf() - 1)) & !self.sign_bit() & self.all_mask()
        }
    }
    /// Mask of all bits of the format.
    pub fn all_mask(self) -> u64 {
        let n = 1 + self.eb + self.mb;
        if n == 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }
    /// The value 1.0.
    pub fn one(self) -> u64 {
        (self.bias() as u64) << self.mb
    }
    pub fn is_nan(self, x: u64) -> bool {
        (x & !self.sign_bit() & self.all_mask()) > self.inf()
    }
    pub fn is_neg(self, x: u64) -> bool {
        x & self.sign_bit() != 0
    }
    /// True for nonzero values with a zero exponent field.
    pub fn is_subnormal(self, x: u64) -> bool {
        let mag = x & !self.sign_bit() & self.all_mask();
        mag != 0 && mag < (1u64 << self.mb)
    }
    /// Replaces subnormals by zero of the same sign (the `.ftz` behaviour).
    pub fn ftz(self, x: u64) -> u64 {
        if self.is_subnormal(x) {
            x & self.sign_bit()
        } else {
            x
        }
    }
    /// Clamps to [+0.0, 1.0]; NaN and -0.0 become +0.0 (the `.sat` behaviour).
    pub fn sat(self, x: u64) -> u64 {
        if self.is_nan(x) || self.is_neg(x) {
            0
        } else if (x & self.all_mask()) > self.one() {
            self.one()
        } else {
            x
        }
    }
    /// Negation (sign flip); NaN stays NaN.
    pub fn neg(self, x: u64) -> u64 {
        (x ^ self.sign_bit()) & self.all_mask()
    }
}

/// A decoded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    Nan,
    Inf(bool),
    Zero(bool),
    /// `(-1)^neg * mant * 2^exp`, `mant != 0`.
    Fin {
        neg: bool,
        mant: u128,
        exp: i32,
    },
}

/// Splits `x` (low bits in format `f`) into its exact value.
pub fn decode(x: u64, f: Fmt) -> Val {
    let neg = f.is_neg(x);
    let e = ((x >> f.mb) & f.exp_all()) as i32;
    let frac = x & ((1u64 << f.mb) - 1);
    if e == f.exp_all() as i32 {
        return if frac == 0 { Val::Inf(neg) } else { Val::Nan };
    }
    if e == 0 {
        if frac == 0 {
            return Val::Zero(neg);
        }
        return Val::Fin {
            neg,
            mant: frac as u128,
            exp: 1 - f.bias() - f.mb as i32,
        };
    }
    Val::Fin {
        neg,
        mant: (frac | (1u64 << f.mb)) as u128,
        exp: e - f.bias() - f.mb as i32,
    }
}

/// Signed zero / infinity bit patterns.
pub fn zero(neg: bool, f: Fmt) -> u64 {
    if neg {
        f.sign_bit()
    } else {
        0
    }
}
pub fn inf(neg: bool, f: Fmt) -> u64 {
    zero(neg, f) | f.inf()
}

/// Rounds the exact value `(-1)^neg * mant * 2^exp` once into format `f` with mode `rnd`,
/// handling subnormal results and overflow (to infinity, or to the largest finite value for
/// the modes that round toward it: `.rz` always, `.rm` for positive, `.rp` for negative).
pub fn round_pack(neg: bool, mant: u128, exp: i32, f: Fmt, rnd: Rnd) -> u64 {
    let sign = zero(neg, f);
    if mant == 0 {
        return sign;
    }
    let bias = f.bias();
    let emin = 1 - bias;
    let mb = f.mb as i32;
    let nbits = 128 - mant.leading_zeros() as i32;
    let e = exp.saturating_add(nbits - 1);
    // Exponent of the result's least significant bit.
    let mut q = e.max(emin) - mb;
    let (mut m, half, rest) = if exp >= q {
        // Exact: the shift is at most mb, so the value stays below 2^(mb+1).
        (mant << (exp - q) as u32, false, false)
    } else {
        let s = (q as i64 - exp as i64) as u64;
        if s > 128 {
            (0u128, false, true)
        } else if s == 128 {
            (0u128, mant >> 127 == 1, mant & (u128::MAX >> 1) != 0)
        } else {
            let s = s as u32;
            let rest_mask = (1u128 << (s - 1)) - 1;
            (mant >> s, (mant >> (s - 1)) & 1 == 1, mant & rest_mask != 0)
        }
    };
    let inexact = half || rest;
    let up = match rnd {
        Rnd::Rn => half && (rest || m & 1 == 1),
        Rnd::Rna => half,
        Rnd::Rz => false,
        Rnd::Rp => !neg && inexact,
        Rnd::Rm => neg && inexact,
    };
    if up {
        m += 1;
    }
    if m >> (f.mb + 1) != 0 {
        m >>= 1;
        q += 1;
    }
    let ef = if m >> f.mb != 0 {
        q as i64 + mb as i64 + bias as i64
    } else {
        0
    };
    if ef >= f.exp_all() as i64 {
        let to_inf = match rnd {
            Rnd::Rn | Rnd::Rna => true,
            Rnd::Rz => false,
            Rnd::Rp => !neg,
            Rnd::Rm => neg,
        };
        return sign | if to_inf { f.inf() } else { f.max_finite() };
    }
    sign | ((ef as u64) << f.mb) | ((m as u64) & ((1u64 << f.mb) - 1))
}

/// Shifts `m` right by `d`, OR-ing everything shifted out into bit 0 (sticky jamming).
fn shr_jam(m: u128, d: u64) -> u128 {
    if d == 0 {
        m
    } else if d >= 127 {
        (m != 0) as u128
    } else {
        (m >> d) | ((m & ((1u128 << d) - 1) != 0) as u128)
    }
}

/// Exact-or-jammed sum of two nonzero finite values whose significands are below 2^126.
/// Returns `None` for an exact zero (whose sign depends on the rounding mode).
fn add_fin(a: (bool, u128, i32), b: (bool, u128, i32)) -> Option<(bool, u128, i32)> {
    // Normalise both so the top bit is bit 125: room for the carry and no overflow.
    let norm = |(n, m, e): (bool, u128, i32)| {
        let sh = m.leading_zeros() as i32 - 2;
        (n, m << sh, e - sh)
    };
    let (mut x, mut y) = (norm(a), norm(b));
    if y.2 > x.2 {
        std::mem::swap(&mut x, &mut y);
    }
    let d = (x.2 as i64 - y.2 as i64) as u64;
    let ym = shr_jam(y.1, d);
    if x.0 == y.0 {
        return Some((x.0, x.1 + ym, x.2));
    }
    match x.1.cmp(&ym) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some((x.0, x.1 - ym, x.2)),
        std::cmp::Ordering::Less => Some((y.0, ym - x.1, x.2)),
    }
}

fn nan_of(f: Fmt, ops: &[u64]) -> u64 {
    if f == F64 {
        for &o in ops {
            if f.is_nan(o) {
                return o | (1u64 << 51);
            }
        }
    }
    f.canonical_nan()
}

/// `a + b` rounded once.
pub fn add(a: u64, b: u64, f: Fmt, rnd: Rnd) -> u64 {
    match (decode(a, f), decode(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(f, &[a, b]),
        (Val::Inf(x), Val::Inf(y)) if x != y => f.canonical_nan(),
        (Val::Inf(x), _) | (_, Val::Inf(x)) => inf(x, f),
        (Val::Zero(x), Val::Zero(y)) => zero(if x == y { x } else { rnd == Rnd::Rm }, f),
        (Val::Zero(_), Val::Fin { .. }) => b & f.all_mask(),
        (Val::Fin { .. }, Val::Zero(_)) => a & f.all_mask(),
        (
            Val::Fin {
                neg: n1,
                mant: m1,
                exp: e1,
            },
            Val::Fin {
                neg: n2,
                mant: m2,
                exp: e2,
            },
        ) => match add_fin((n1, m1, e1), (n2, m2, e2)) {
            None => zero(rnd == Rnd::Rm, f),
            Some((n, m, e)) => round_pack(n, m, e, f, rnd),
        },
    }
}

/// `a * b` rounded once.
pub fn mul(a: u64, b: u64, f: Fmt, rnd: Rnd) -> u64 {
    match (decode(a, f), decode(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(f, &[a, b]),
        (Val::Inf(_), Val::Zero(_)) | (Val::Zero(_), Val::Inf(_)) => f.canonical_nan(),
        (Val::Inf(x), Val::Inf(y)) => inf(x != y, f),
        (Val::Zero(x), Val::Zero(y)) => zero(x != y, f),
        (Val::Inf(x), Val::Fin { neg, .. }) | (Val::Fin { neg, .. }, Val::Inf(x)) => {
            inf(x != neg, f)
        }
        (Val::Zero(x), Val::Fin { neg, .. }) | (Val::Fin { neg, .. }, Val::Zero(x)) => {
            zero(x != neg, f)
        }
        (
            Val::Fin {
                neg: n1,
                mant: m1,
                exp: e1,
            },
            Val::Fin {
                neg: n2,
                mant: m2,
                exp: e2,
            },
        ) => round_pack(n1 != n2, m1 * m2, e1 + e2, f, rnd),
    }
}

/// `a * b + c` with a single rounding (IEEE fusedMultiplyAdd).
pub fn fma(a: u64, b: u64, c: u64, f: Fmt, rnd: Rnd) -> u64 {
    let (da, db, dc) = (decode(a, f), decode(b, f), decode(c, f));
    if matches!(da, Val::Nan) || matches!(db, Val::Nan) || matches!(dc, Val::Nan) {
        return nan_of(f, &[a, b, c]);
    }
    let pneg = f.is_neg(a) != f.is_neg(b);
    let pinf = matches!(da, Val::Inf(_)) || matches!(db, Val::Inf(_));
    let pzero = matches!(da, Val::Zero(_)) || matches!(db, Val::Zero(_));
    if pinf && pzero {
        return f.canonical_nan();
    }
    if pinf {
        return match dc {
            Val::Inf(cn) if cn != pneg => f.canonical_nan(),
            _ => inf(pneg, f),
        };
    }
    if let Val::Inf(cn) = dc {
        return inf(cn, f);
    }
    if pzero {
        return match dc {
            Val::Zero(cn) => zero(if cn == pneg { cn } else { rnd == Rnd::Rm }, f),
            _ => c & f.all_mask(),
        };
    }
    let (
        Val::Fin {
            mant: m1, exp: e1, ..
        },
        Val::Fin {
            mant: m2, exp: e2, ..
        },
    ) = (da, db)
    else {
        return f.canonical_nan();
    };
    let p = (pneg, m1 * m2, e1 + e2);
    match dc {
        Val::Fin { neg, mant, exp } => match add_fin(p, (neg, mant, exp)) {
            None => zero(rnd == Rnd::Rm, f),
            Some((n, m, e)) => round_pack(n, m, e, f, rnd),
        },
        _ => round_pack(p.0, p.1, p.2, f, rnd),
    }
}

/// `a / b` rounded once (IEEE division).
pub fn div(a: u64, b: u64, f: Fmt, rnd: Rnd) -> u64 {
    let neg = f.is_neg(a) != f.is_neg(b);
    match (decode(a, f), decode(b, f)) {
        (Val::Nan, _) | (_, Val::Nan) => nan_of(f, &[a, b]),
        (Val::Inf(_), Val::Inf(_)) | (Val::Zero(_), Val::Zero(_)) => f.canonical_nan(),
        (Val::Inf(_), _) | (_, Val::Zero(_)) => inf(neg, f),
        (_, Val::Inf(_)) | (Val::Zero(_), _) => zero(neg, f),
        (
            Val::Fin {
                mant: m1, exp: e1, ..
            },
            Val::Fin {
                mant: m2, exp: e2, ..
            },
        ) => {
            // Dividend at bit 124, divisor below 2^54: the quotient has >= 70 bits.
            let sh = m1.leading_zeros() as i32 - 3;
            let num = m1 << sh;
            let (q, r) = (num / m2, num % m2);
            let q = (q << 1) | (r != 0) as u128;
            round_pack(neg, q, e1 - e2 - sh - 1, f, rnd)
        }
    }
}

/// Integer square root (floor) of a u128 below 2^124.
fn isqrt(x: u128) -> u128 {
    let mut s = (x as f64).sqrt() as u128;
    // Two Newton steps from a 52-bit-accurate guess, then exact fix-up.
    for _ in 0..2 {
        if s > 0 {
            s = (s + x / s) / 2;
        }
    }
    while s * s > x {
        s -= 1;
    }
    while (s + 1) * (s + 1) <= x {
        s += 1;
    }
    s
}

/// `sqrt(a)` rounded once; `sqrt(-0) = -0`, negative inputs give NaN.
pub fn sqrt(a: u64, f: Fmt, rnd: Rnd) -> u64 {
    match decode(a, f) {
        Val::Nan => nan_of(f, &[a]),
        Val::Zero(n) => zero(n, f),
        Val::Inf(false) => f.inf(),
        Val::Inf(true) | Val::Fin { neg: true, .. } => f.canonical_nan(),
        Val::Fin { mant, exp, .. } => {
            let bits = 128 - mant.leading_zeros() as i32;
            let mut k = 120 - bits;
            if (exp - k) % 2 != 0 {
                k += 1;
            }
            let x = mant << k;
            let s = isqrt(x);
            let s = (s << 1) | (s * s != x) as u128;
            round_pack(false, s, (exp - k) / 2 - 1, f, rnd)
        }
    }
}

/// Converts between formats with one rounding (widening is exact).
pub fn convert(x: u64, from: Fmt, to: Fmt, rnd: Rnd) -> u64 {
    match decode(x, from) {
        Val::Nan => {
            if to == F64 && from != F64 {
                // Widening into f64 keeps sign and payload (quieted), like the hardware's
                // F2F.F64 does; narrowing produces the canonical NaN of the target.
                let sign = (from.is_neg(x) as u64) << 63;
                let payload = (x & ((1u64 << from.mb) - 1)) << (52 - from.mb);
                sign | F64.inf() | payload | (1u64 << 51)
            } else if to == from && to == F64 {
                x | (1u64 << 51)
            } else {
                to.canonical_nan()
            }
        }
        Val::Inf(n) => inf(n, to),
        Val::Zero(n) => zero(n, to),
        Val::Fin { neg, mant, exp } => round_pack(neg, mant, exp, to, rnd),
    }
}

/// Rounds a signed 128-bit integer into format `f`.
pub fn from_int(v: i128, f: Fmt, rnd: Rnd) -> u64 {
    round_pack(v < 0, v.unsigned_abs(), 0, f, rnd)
}
