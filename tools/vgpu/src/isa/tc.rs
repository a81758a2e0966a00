//! Tensor-core accumulation as the hardware does it, for `VGPU_NUMERICS=hardware`.
//!
//! The exact `mma` of [`super::warp`] rounds `c + Σ a·b` once. Tensor cores do not: Fasi,
//! Higham, Mikaitis and Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ Computer
//! Science 7:e330 (2021), measured on V100, T4 and A100 that
//!
//! 1. the products of fp16 (also bf16, tf32) inputs are exact;
//! 2. the products of one block and the accumulator `c` are added in one multi-term
//!    fixed-point adder: every term is aligned to the largest exponent among them, and the
//!    bits that fall below the adder's width are dropped (truncation, i.e. toward zero), with
//!    no normalisation between the terms;
//! 3. the sum is normalised once, at the end of the block, and rounded toward zero to an f32
//!    result (to nearest for an f16 result); a longer `k` chains blocks through that result;
//! 4. subnormal inputs and outputs are supported.
//!
//! The parameters — products per block, extra alignment bits beyond f32's 23 fraction bits,
//! and an alignment-exponent floor — come from the follow-up measurements of Khattak and
//! Mikaitis, "Accurate Models of NVIDIA Tensor Cores" (arXiv:2512.07004, 2025), whose
//! bit-accurate models cover A100 and H100 (MATLAB models in
//! github.com/north-numerical-computing/MATLAB-tensor-core):
//!
//! | profile | block (fp16/bf16) | extra bits | floor |
//! |---------|-------------------|------------|-------|
//! | [`AMPERE`] (A100) | 8 | 1 | −132 |
//! | [`HOPPER`] (H100) | 16 | 2 | −133 |
//!
//! The 2021 paper measured V100, T4 and A100 only; that an sm_90 `mma.sync` (not `wgmma`)
//! behaves like the H100 profile is an assumption of this model, not a measurement of ours.
//!
//! The model, for one output element: each term is `sig · 2^lsb` with an integer
//! significand. Its *unnormalised exponent* is that of its leading position as the format
//! encodes it: for a product `ea + eb` (the product of two significands in [1, 2) lies in
//! [1, 4) and is not renormalised), for `c` its own exponent (subnormals count as the format's
//! minimum exponent). `η` is the largest unnormalised exponent over the nonzero terms, raised
//! to the profile's floor; the adder's grid is `2^(η − 23 − extra)`. Each term is truncated
//! toward zero onto that grid (its magnitude, sign restored), the integers are summed
//! exactly, and the sum, times the grid, is rounded once into the output format. A block
//! whose terms are all zero gives +0. Overflow gives ±inf. Non-finite inputs are outside the
//! model; callers fall back to the exact path for them.

use super::fp::{self, Fmt, Val, BF16, F16, F32};
use super::types::Rnd;

/// Tensor-core parameters of one architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcProfile {
    pub name: &'static str,
    /// Products summed by one multi-term adder (fp16/bf16 inputs).
    pub block: usize,
    /// Alignment bits kept beyond f32's 23 fraction bits.
    pub extra_bits: u32,
    /// Lowest alignment exponent `η`.
    pub floor: i32,
}

/// A100 (Ampere), fp16/bf16 inputs.
pub const AMPERE: TcProfile = TcProfile {
    name: "A100",
    block: 8,
    extra_bits: 1,
    floor: -132,
};
/// H100 (Hopper), fp16/bf16 inputs.
pub const HOPPER: TcProfile = TcProfile {
    name: "H100",
    block: 16,
    extra_bits: 2,
    floor: -133,
};

/// An exact finite value `(-1)^neg · sig · 2^lsb` whose unnormalised exponent is `lead`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Term {
    pub neg: bool,
    pub sig: u64,
    pub lsb: i32,
    pub lead: i32,
}

/// Decodes `x` in format `f`; `None` for infinities and NaN.
pub fn term(x: u64, f: Fmt) -> Option<Term> {
    match fp::decode(x, f) {
        Val::Nan | Val::Inf(_) => None,
        Val::Zero(neg) => Some(Term {
            neg,
            ..Term::default()
        }),
        Val::Fin { neg, mant, exp } => Some(Term {
            neg,
            sig: mant as u64,
            lsb: exp,
            lead: exp + f.mb as i32,
        }),
    }
}

/// The exact product of two decoded inputs, not renormalised.
#[inline]
pub fn product(a: Term, b: Term) -> Term {
    Term {
        neg: a.neg != b.neg,
        sig: a.sig * b.sig,
        lsb: a.lsb + b.lsb,
        lead: a.lead + b.lead,
    }
}

/// One multi-term addition: `c` plus `prods`, aligned, truncated, summed, rounded once into
/// `out` with `rnd`. Returns the result's bits in `out`.
pub fn block(p: &TcProfile, c: Term, prods: &[Term], out: Fmt, rnd: Rnd) -> u64 {
    let one = Term {
        sig: 1,
        ..Term::default()
    };
    let ones = [one; 16];
    let n = prods.len().min(16);
    block_ab(p, c, &prods[..n], &ones[..n], out, rnd)
}

/// `v >> -sh` or `v << sh`: the right shift drops bits (truncation toward zero of a
/// magnitude). Left shifts are at most `extra + 2 + 23 - 10` bits and cannot overflow.
#[inline(always)]
fn shift(v: u64, sh: i32) -> u64 {
    if sh >= 0 {
        v << sh.min(63)
    } else {
        v.checked_shr((-sh) as u32).unwrap_or(0)
    }
}

/// [`block`] with the products `a[k]·b[k]` formed on the fly: the hot loop of the hardware
/// `mma` (a dozen integer operations per product, no allocation).
#[inline]
fn block_ab(p: &TcProfile, c: Term, a: &[Term], b: &[Term], out: Fmt, rnd: Rnd) -> u64 {
    const NONE: i32 = i32::MIN / 4;
    let mut eta = if c.sig != 0 { c.lead } else { NONE };
    for (x, y) in a.iter().zip(b) {
        let nz = x.sig != 0 && y.sig != 0;
        eta = eta.max(if nz { x.lead + y.lead } else { NONE });
    }
    if eta == NONE {
        return 0;
    }
    let grid = eta.max(p.floor) - (23 + p.extra_bits as i32);
    let signed = |neg: bool, m: u64| if neg { -(m as i64) } else { m as i64 };
    let mut sum = signed(c.neg, shift(c.sig, c.lsb - grid));
    for (x, y) in a.iter().zip(b) {
        let m = shift(x.sig * y.sig, x.lsb + y.lsb - grid);
        sum += signed(x.neg != y.neg, m);
    }
    if sum == 0 {
        return 0;
    }
    let (neg, mag) = (sum < 0, sum.unsigned_abs());
    let emax = (1i32 << (out.eb - 1)) - 1;
    let top = 63 - mag.leading_zeros() as i32 + grid;
    if top > emax {
        // Out of range even after truncation: the sum is at least 2^(emax+1).
        return fp::inf(neg, out);
    }
    fp::round_pack(neg, mag as u128, grid, out, rnd)
}

/// `c + Σ a[k]·b[k]` over `k` in blocks of `p.block`, each block's result the next one's `c`.
/// `None` when an input is not finite (the model does not cover it).
pub fn dot(p: &TcProfile, a: &[Term], b: &[Term], c: u64, out: Fmt, rnd: Rnd) -> Option<u64> {
    let mut acc = c;
    for (ab, bb) in a.chunks(p.block).zip(b.chunks(p.block)) {
        acc = block_ab(p, term(acc, out)?, ab, bb, out, rnd);
    }
    Some(acc)
}

/// Output format and rounding of an f32 accumulator (truncation) and an f16 one (nearest).
fn out_of(f32_acc: bool) -> (Fmt, Rnd) {
    if f32_acc {
        (F32, Rnd::Rz)
    } else {
        (F16, Rnd::Rn)
    }
}

/// One row of A or column of B, decoded into parallel arrays so that the per-output loops
/// over `k` vectorise. A zero element has `sig = 0` and `lead = ZERO_LEAD`, far below any
/// real exponent, so it never raises `η` and contributes nothing.
#[derive(Clone, Copy)]
struct Vec16 {
    sig: [u64; 16],
    lsb: [i32; 16],
    lead: [i32; 16],
    /// 0 or -1 (all ones), for a branch-free conditional negation.
    neg: [i64; 16],
}

const ZERO_LEAD: i32 = i32::MIN / 8;

impl Vec16 {
    const EMPTY: Vec16 = Vec16 {
        sig: [0; 16],
        lsb: [0; 16],
        lead: [ZERO_LEAD; 16],
        neg: [0; 16],
    };
    fn set(&mut self, k: usize, t: Term) {
        self.sig[k] = t.sig;
        self.lsb[k] = t.lsb;
        self.lead[k] = if t.sig == 0 { ZERO_LEAD } else { t.lead };
        self.neg[k] = -(t.neg as i64);
    }
}

/// Decoded `A` (16 x k) rows and `B` (k x 8) columns of one warp's fragments.
struct Operands {
    k: usize,
    a: [Vec16; 16],
    bt: [Vec16; 8],
}

/// `None` if an element is not finite.
fn operands(
    k: usize,
    f: Fmt,
    a_at: impl Fn(usize, usize) -> u16,
    b_at: impl Fn(usize, usize) -> u16,
) -> Option<Operands> {
    let mut o = Operands {
        k,
        a: [Vec16::EMPTY; 16],
        bt: [Vec16::EMPTY; 8],
    };
    for r in 0..16 {
        for kk in 0..k {
            o.a[r].set(kk, term(a_at(r, kk) as u64, f)?);
        }
    }
    for n in 0..8 {
        for kk in 0..k {
            o.bt[n].set(kk, term(b_at(kk, n) as u64, f)?);
        }
    }
    Some(o)
}

/// Products `lo..hi` of row `a` and column `b` plus `c`, as [`block`] computes them.
#[inline]
fn block_vec(p: &TcProfile, c: Term, a: &Vec16, b: &Vec16, lo: usize, hi: usize) -> (i64, i32) {
    let mut eta = if c.sig != 0 { c.lead } else { ZERO_LEAD };
    for k in lo..hi {
        eta = eta.max(a.lead[k] + b.lead[k]);
    }
    if eta < ZERO_LEAD / 2 {
        return (0, 0);
    }
    let grid = eta.max(p.floor) - (23 + p.extra_bits as i32);
    let mut sum = {
        let m = shift(c.sig, c.lsb - grid) as i64;
        if c.neg {
            -m
        } else {
            m
        }
    };
    // Products lie at most 11 bits above the grid's leading bit (bf16: 25 - 14): pre-shift
    // left by 16 so that every alignment is a right shift (truncation), branch-free.
    for k in lo..hi {
        let m = (a.sig[k] * b.sig[k]) << 16;
        let rs = (16 + grid - a.lsb[k] - b.lsb[k]).clamp(0, 63) as u32;
        let mag = (m >> rs) as i64;
        let s = a.neg[k] ^ b.neg[k];
        sum += (mag ^ s) - s;
    }
    (sum, grid)
}

/// Rounds the block sum `sum · 2^grid` into `out` (see the module doc).
fn finish(sum: i64, grid: i32, out: Fmt, rnd: Rnd) -> u64 {
    if sum == 0 {
        return 0;
    }
    let (neg, mag) = (sum < 0, sum.unsigned_abs());
    let emax = (1i32 << (out.eb - 1)) - 1;
    let top = 63 - mag.leading_zeros() as i32 + grid;
    if top > emax {
        return fp::inf(neg, out);
    }
    if out == F32 && rnd == Rnd::Rz && top >= -126 {
        // A normal f32 result truncated: the top 24 bits of the sum (the common case, and
        // what `round_pack` computes, without its 128-bit generality).
        let bits = 64 - mag.leading_zeros() as i32;
        let m = if bits > 24 {
            mag >> (bits - 24)
        } else {
            mag << (24 - bits)
        };
        let e = (top + 127) as u64;
        return (neg as u64) << 31 | e << 23 | (m & 0x7f_ffff);
    }
    fp::round_pack(neg, mag as u128, grid, out, rnd)
}

/// Row and column of accumulator element `i` (0..4) held by `lane` (m16n8, any k).
fn c_coord(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane & 3);
    (g + 8 * (i >> 1), 2 * t + (i & 1))
}

/// Computes every D element from accumulator bits `c_at(lane, i)` in the output format.
fn run(
    p: &TcProfile,
    o: &Operands,
    f32_acc: bool,
    c_at: impl Fn(usize, usize) -> u64,
) -> Option<[[u64; 4]; 32]> {
    let (out, rnd) = out_of(f32_acc);
    let mut d = [[0u64; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        for (i, di) in dl.iter_mut().enumerate() {
            let (r, n) = c_coord(lane, i);
            let mut acc = c_at(lane, i);
            let mut lo = 0;
            while lo < o.k {
                let hi = (lo + p.block).min(o.k);
                let (sum, grid) = block_vec(p, term(acc, out)?, &o.a[r], &o.bt[n], lo, hi);
                acc = finish(sum, grid, out, rnd);
                lo = hi;
            }
            *di = acc;
        }
    }
    Some(d)
}

fn half(r: u32, i: usize) -> u16 {
    (r >> (16 * (i & 1))) as u16
}

/// A element (row, k) of an m16n8k16 A fragment set.
fn a16(a: &[[u32; 4]; 32], r: usize, k: usize) -> u16 {
    // Inverse of the fragment table: lane (g, t), reg = (r >= 8) + 2 (k >= 8), half k & 1.
    let lane = 4 * (r & 7) + ((k & 7) >> 1);
    let reg = (r >> 3) + 2 * (k >> 3);
    half(a[lane][reg], k)
}
/// B element (k, n) of an m16n8k16 B fragment set.
fn b16(b: &[[u32; 2]; 32], k: usize, n: usize) -> u16 {
    let lane = 4 * n + ((k & 7) >> 1);
    half(b[lane][k >> 3], k)
}

/// Hardware-model `mma.m16n8k16` with f32 accumulator; `bf16` selects the input format.
/// `None` when an input is not finite.
pub fn mma_m16n8k16_f32(
    p: &TcProfile,
    bf16: bool,
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> Option<[[f32; 4]; 32]> {
    let f = if bf16 { BF16 } else { F16 };
    let o = operands(16, f, |r, k| a16(a, r, k), |k, n| b16(b, k, n))?;
    let d = run(p, &o, true, |l, i| c[l][i].to_bits() as u64)?;
    Some(d.map(|dl| dl.map(|x| f32::from_bits(x as u32))))
}

/// Hardware-model `mma.m16n8k16.f16.f16.f16.f16` (accumulator two f16x2 registers per lane).
pub fn mma_m16n8k16_f16(
    p: &TcProfile,
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[u32; 2]; 32],
) -> Option<[[u32; 2]; 32]> {
    let o = operands(16, F16, |r, k| a16(a, r, k), |k, n| b16(b, k, n))?;
    let d = run(p, &o, false, |l, i| half(c[l][i >> 1], i) as u64)?;
    Some(d.map(|dl| [(dl[0] | dl[1] << 16) as u32, (dl[2] | dl[3] << 16) as u32]))
}

/// Hardware-model `mma.m16n8k8.f32.f16.f16.f32`.
pub fn mma_m16n8k8_f32(
    p: &TcProfile,
    a: &[[u32; 2]; 32],
    b: &[[u32; 1]; 32],
    c: &[[f32; 4]; 32],
) -> Option<[[f32; 4]; 32]> {
    let a_at = |r: usize, k: usize| half(a[4 * (r & 7) + (k >> 1)][r >> 3], k);
    let b_at = |k: usize, n: usize| half(b[4 * n + (k >> 1)][0], k);
    let o = operands(8, F16, a_at, b_at)?;
    let d = run(p, &o, true, |l, i| c[l][i].to_bits() as u64)?;
    Some(d.map(|dl| dl.map(|x| f32::from_bits(x as u32))))
}
