//! Whole-warp collectives as pure functions of the 32 lanes' inputs: `shfl.sync`, `vote`,
//! `match`, `redux`, `ldmatrix` and the `mma.sync` tensor-core fragments.
//!
//! Fragment layouts follow the PTX ISA figures for `mma.m16n8k16` / `mma.m16n8k8` with
//! `groupID = lane >> 2` and `threadID_in_group = lane % 4`; packed f16/bf16 registers hold
//! the lower-index element in the low 16 bits.

use super::fp::{self, F16};
use super::half::{bf16_to_f32, f16_to_f32};
use super::types::Rnd;

/// `shfl.sync` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

/// Source lane of `shfl.sync.mode d|p, a, b, c` for lane `lane`, and the predicate `p`.
///
/// `c` packs the clamp value in bits 0-4 and the segment mask in bits 8-12. Following the ISA
/// pseudo-code: `maxLane = (lane & mask) | (cval & ~mask)`, `minLane = lane & mask`; `.up`
/// reads `lane - b` and is in range when that is `>= maxLane`; `.down`/`.bfly`/`.idx` read
/// `lane + b`, `lane ^ b`, `minLane | (b & ~mask)` and are in range when `<= maxLane`. Out of
/// range the lane reads its own value (returned source = `lane`) and `p` is false.
pub fn shfl_source(mode: ShflMode, lane: u32, b: u32, c: u32) -> (u32, bool) {
    let lane = (lane & 31) as i32;
    let bval = (b & 31) as i32;
    let cval = (c & 31) as i32;
    let mask = ((c >> 8) & 31) as i32;
    let max_lane = (lane & mask) | (cval & !mask);
    let min_lane = lane & mask;
    let (j, p) = match mode {
        ShflMode::Up => {
            let j = lane - bval;
            (j, j >= max_lane)
        }
        ShflMode::Down => {
            let j = lane + bval;
            (j, j <= max_lane)
        }
        ShflMode::Bfly => {
            let j = lane ^ bval;
            (j, j <= max_lane)
        }
        ShflMode::Idx => {
            let j = min_lane | (bval & !mask);
            (j, j <= max_lane)
        }
    };
    if p {
        (j as u32 & 31, true)
    } else {
        (lane as u32, false)
    }
}

/// `vote.sync` mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

/// `vote.sync.mode` over the lanes in `active` whose predicates are the bits of `preds`.
/// `.all/.any/.uni` return 0 or 1 (the predicate result); `.ballot` returns the mask of active
/// lanes whose predicate is true (inactive lanes contribute 0).
pub fn warp_vote(mode: VoteMode, active: u32, preds: u32) -> u32 {
    let t = preds & active;
    match mode {
        VoteMode::All => (t == active) as u32,
        VoteMode::Any => (t != 0) as u32,
        VoteMode::Uni => (t == 0 || t == active) as u32,
        VoteMode::Ballot => t,
    }
}

/// `match.any.sync`: for each active lane, the mask of active lanes holding the same value;
/// 0 for inactive lanes.
pub fn match_any(active: u32, vals: &[u64; 32]) -> [u32; 32] {
    let mut out = [0u32; 32];
    for i in 0..32 {
        if active >> i & 1 == 0 {
            continue;
        }
        for j in 0..32 {
            if active >> j & 1 == 1 && vals[j] == vals[i] {
                out[i] |= 1 << j;
            }
        }
    }
    out
}

/// `match.all.sync`: `(active, true)` if every active lane holds the same value, else
/// `(0, false)`.
pub fn match_all(active: u32, vals: &[u64; 32]) -> (u32, bool) {
    let mut first = None;
    for (i, v) in vals.iter().enumerate() {
        if active >> i & 1 == 1 {
            match first {
                None => first = Some(*v),
                Some(f) if f != *v => return (0, false),
                _ => {}
            }
        }
    }
    (active, true)
}

/// `redux.sync` operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduxOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
}

/// `redux.sync.op.{u32,s32,b32}` over the active lanes (`signed` selects s32 for min/max; add
/// wraps). With no active lane the operation's identity is returned.
pub fn redux(op: ReduxOp, signed: bool, active: u32, vals: &[u32; 32]) -> u32 {
    let it = (0..32).filter(|i| active >> i & 1 == 1).map(|i| vals[i]);
    match op {
        ReduxOp::Add => it.fold(0u32, |a, v| a.wrapping_add(v)),
        ReduxOp::And => it.fold(u32::MAX, |a, v| a & v),
        ReduxOp::Or => it.fold(0, |a, v| a | v),
        ReduxOp::Xor => it.fold(0, |a, v| a ^ v),
        ReduxOp::Min if signed => it.map(|v| v as i32).fold(i32::MAX, i32::min) as u32,
        ReduxOp::Max if signed => it.map(|v| v as i32).fold(i32::MIN, i32::max) as u32,
        ReduxOp::Min => it.fold(u32::MAX, u32::min),
        ReduxOp::Max => it.fold(0, u32::max),
    }
}

/// Row and column of element `i` (0..8) of the A fragment of m16n8k16 held by `lane`.
fn a_coord_k16(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    let row = g + if (i / 2) % 2 == 1 { 8 } else { 0 };
    let col = 2 * t + (i % 2) + if i >= 4 { 8 } else { 0 };
    (row, col)
}

/// Row (k) and column (n) of element `i` (0..4) of the B fragment of m16n8k16.
fn b_coord_k16(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (2 * t + (i % 2) + if i >= 2 { 8 } else { 0 }, g)
}

/// Row and column of element `i` (0..4) of the C/D fragment (m16n8, both k16 and k8).
fn c_coord(lane: usize, i: usize) -> (usize, usize) {
    let (g, t) = (lane >> 2, lane % 4);
    (g + if i >= 2 { 8 } else { 0 }, 2 * t + (i % 2))
}

fn half_of(r: u32, i: usize) -> u16 {
    (r >> (16 * (i % 2))) as u16
}

/// Rounds an f64 accumulation to f32 bits (NaN canonical).
fn to_f32(x: f64) -> f32 {
    // `as` rounds to nearest even, exactly once; NaN made canonical as the GPU does.
    if x.is_nan() {
        f32::from_bits(0x7fff_ffff)
    } else {
        x as f32
    }
}

/// Generic m16n8k16 with 16-bit inputs decoded by `dec` and an f64 accumulation.
fn mma_k16<C: Copy>(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    dec: fn(u16) -> f32,
    c_at: impl Fn(usize, usize) -> f64,
    out: impl Fn(f64) -> C,
    zero: C,
) -> [[C; 4]; 32] {
    let mut am = [[0f64; 16]; 16];
    let mut bm = [[0f64; 8]; 16];
    for lane in 0..32 {
        for i in 0..8 {
            let (r, k) = a_coord_k16(lane, i);
            am[r][k] = dec(half_of(a[lane][i / 2], i)) as f64;
        }
        for i in 0..4 {
            let (k, n) = b_coord_k16(lane, i);
            bm[k][n] = dec(half_of(b[lane][i / 2], i)) as f64;
        }
    }
    let mut d = [[zero; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        for (i, di) in dl.iter_mut().enumerate() {
            let (r, n) = c_coord(lane, i);
            let mut acc = c_at(lane, i);
            for k in 0..16 {
                acc += am[r][k] * bm[k][n];
            }
            *di = out(acc);
        }
    }
    d
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 d, a, b, c`.
///
/// A (16x16, row) fragment per lane: a0,a1 = (g, 2t..2t+1), a2,a3 = (g+8, 2t..), a4,a5 = (g,
/// 2t+8..), a6,a7 = (g+8, 2t+8..); B (16x8, col): b0,b1 = (2t..2t+1, g), b2,b3 = (2t+8.., g);
/// C/D: c0,c1 = (g, 2t..2t+1), c2,c3 = (g+8, 2t..).
///
/// Each output is `c + sum of the 16 products`, the products exact in f64 and the sum
/// accumulated in f64 then rounded once to f32. Real tensor cores align and truncate the
/// products differently (not IEEE); [`super::tc`] models that for `VGPU_NUMERICS=hardware`.
pub fn mma_m16n8k16_f32_f16(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    // The simulator's hottest instruction: the fragment tables unrolled by register (A reg
    // r: row g + 8*(r&1), cols 2t + 8*(r>>1); B reg r: rows 2t + 8r, col g), B kept
    // transposed so each output is one contiguous dot product. Same sums in the same order
    // as the generic `mma_k16` (tested equal).
    let mut am = [[0f64; 16]; 16];
    let mut bt = [[0f64; 16]; 8];
    load_f16_fragments(a, b, &mut am, &mut bt);
    // The 16x8 result as a matrix, k outermost so the inner loop over n runs on contiguous
    // f64 (vectorised); each output still sums c, then k = 0..15, in order.
    let mut acc = [[0f64; 8]; 16];
    for (lane, cl) in c.iter().enumerate() {
        let (g, t) = (lane >> 2, lane & 3);
        for (i, &ci) in cl.iter().enumerate() {
            acc[g + 8 * (i >> 1)][2 * t + (i & 1)] = ci as f64;
        }
    }
    accumulate_k16(&mut acc, &am, &bt);
    let mut d = [[0f32; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        let (g, t) = (lane >> 2, lane & 3);
        for (i, di) in dl.iter_mut().enumerate() {
            *di = to_f32(acc[g + 8 * (i >> 1)][2 * t + (i & 1)]);
        }
    }
    d
}

/// The f16 A and B fragments of an m16n8k16 as f64 matrices: A reg r of lane (g, t) holds
/// row g + 8*(r&1), cols 2t + 8*(r>>1) (low half first); B reg r holds rows 2t + 8r of col
/// g, stored transposed. fp16 -> f32 is exact, so the F16C form (8 halves per instruction,
/// where the CPU has it) equals the scalar one; a NaN may keep its payload there, which no
/// result shows (an mma's NaN output is canonical).
fn load_f16_fragments(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    am: &mut [[f64; 16]; 16],
    bt: &mut [[f64; 16]; 8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU supports F16C and AVX (checked just above).
        unsafe { load_f16_fragments_f16c(a, b, am, bt) };
        return;
    }
    for lane in 0..32 {
        let (g, t) = (lane >> 2, lane & 3);
        for (reg, &v) in a[lane].iter().enumerate() {
            let (r, k) = (g + 8 * (reg & 1), 2 * t + 8 * (reg >> 1));
            am[r][k] = f16_to_f32(v as u16) as f64;
            am[r][k + 1] = f16_to_f32((v >> 16) as u16) as f64;
        }
        for (reg, &v) in b[lane].iter().enumerate() {
            let k = 2 * t + 8 * reg;
            bt[g][k] = f16_to_f32(v as u16) as f64;
            bt[g][k + 1] = f16_to_f32((v >> 16) as u16) as f64;
        }
    }
}

/// [`load_f16_fragments`] with F16C conversions.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn load_f16_fragments_f16c(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    am: &mut [[f64; 16]; 16],
    bt: &mut [[f64; 16]; 8],
) {
    use std::arch::x86_64::{
        __m128i, _mm256_cvtph_ps, _mm256_storeu_ps, _mm_cvtph_ps, _mm_loadl_epi64, _mm_loadu_si128,
        _mm_storeu_ps,
    };
    for lane in 0..32 {
        let (g, t) = (lane >> 2, lane & 3);
        let mut fa = [0f32; 8];
        let mut fb = [0f32; 4];
        // SAFETY: a[lane] is 16 bytes and b[lane] 8 bytes (unaligned loads); fa and fb hold
        // 8 and 4 f32 (unaligned stores).
        unsafe {
            let va = _mm256_cvtph_ps(_mm_loadu_si128(a[lane].as_ptr() as *const __m128i));
            _mm256_storeu_ps(fa.as_mut_ptr(), va);
            let vb = _mm_cvtph_ps(_mm_loadl_epi64(b[lane].as_ptr() as *const __m128i));
            _mm_storeu_ps(fb.as_mut_ptr(), vb);
        }
        for reg in 0..4 {
            let (r, k) = (g + 8 * (reg & 1), 2 * t + 8 * (reg >> 1));
            am[r][k] = fa[2 * reg] as f64;
            am[r][k + 1] = fa[2 * reg + 1] as f64;
        }
        for reg in 0..2 {
            let k = 2 * t + 8 * reg;
            bt[g][k] = fb[2 * reg] as f64;
            bt[g][k + 1] = fb[2 * reg + 1] as f64;
        }
    }
}

/// `acc[m][n] += sum over k of am[m][k] * bt[n][k]`, k = 0..15 in order, each step one f64
/// add of an exact product (fp16 x fp16 has at most 22 significant bits). Because the
/// product is exact, a fused multiply-add rounds exactly as the separate multiply and add
/// do, so the FMA form below (AVX2, where the CPU has it) is bit-identical to the plain one
/// and about three times faster: this loop is most of vgpu's time in GEMM kernels.
fn accumulate_k16(acc: &mut [[f64; 8]; 16], am: &[[f64; 16]; 16], bt: &[[f64; 16]; 8]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports AVX2 and FMA (checked just above).
        unsafe { accumulate_k16_fma(acc, am, bt) };
        return;
    }
    for k in 0..16 {
        let bk: [f64; 8] = std::array::from_fn(|n| bt[n][k]);
        for (row, ar) in acc.iter_mut().zip(am) {
            let a = ar[k];
            for (o, &bv) in row.iter_mut().zip(&bk) {
                *o += a * bv;
            }
        }
    }
}

/// [`accumulate_k16`] with fused multiply-adds, vectorised over n.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_k16_fma(acc: &mut [[f64; 8]; 16], am: &[[f64; 16]; 16], bt: &[[f64; 16]; 8]) {
    for k in 0..16 {
        let bk: [f64; 8] = std::array::from_fn(|n| bt[n][k]);
        for (row, ar) in acc.iter_mut().zip(am) {
            let a = ar[k];
            for (o, &bv) in row.iter_mut().zip(&bk) {
                *o = a.mul_add(bv, *o);
            }
        }
    }
}

/// The generic path of [`mma_m16n8k16_f32_f16`], kept as the reference its unrolled form is
/// tested against.
#[cfg(test)]
fn mma_m16n8k16_f32_f16_generic(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    mma_k16(a, b, f16_to_f32, |l, i| c[l][i] as f64, to_f32, 0.0)
}

#[cfg(test)]
mod fast_mma_tests {
    use super::*;

    #[test]
    fn unrolled_f16_mma_equals_the_generic_one() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..80 {
            let mut a = [[0u32; 4]; 32];
            let mut b = [[0u32; 2]; 32];
            let mut c = [[0f32; 4]; 32];
            for l in 0..32 {
                // Finite halves (exponent < 31, subnormals and zeros included) with random
                // signs and mantissas; from round 50 on, any half (inf and NaN too), which
                // the vectorised conversion and FMA must treat as the scalar path does.
                let special = round >= 50;
                let h = move |x: u64| {
                    if special {
                        (x & 0xffff) as u32
                    } else {
                        ((x & 0x83ff) | ((x >> 16) % 30) << 10) as u32
                    }
                };
                for r in a[l].iter_mut() {
                    let x = next();
                    *r = h(x) | h(x >> 32) << 16;
                }
                for r in b[l].iter_mut() {
                    let x = next();
                    *r = h(x) | h(x >> 32) << 16;
                }
                for v in c[l].iter_mut() {
                    *v = (next() % 2001) as f32 / 7.0 - 140.0;
                }
            }
            let fast = mma_m16n8k16_f32_f16(&a, &b, &c);
            let slow = mma_m16n8k16_f32_f16_generic(&a, &b, &c);
            for l in 0..32 {
                for i in 0..4 {
                    assert_eq!(
                        fast[l][i].to_bits(),
                        slow[l][i].to_bits(),
                        "lane {l} reg {i}"
                    );
                }
            }
        }
    }
}

/// `mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32`: same layout with bf16 inputs.
pub fn mma_m16n8k16_f32_bf16(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    mma_k16(a, b, bf16_to_f32, |l, i| c[l][i] as f64, to_f32, 0.0)
}

/// `mma.sync.aligned.m16n8k16.row.col.f16.f16.f16.f16`: C and D are two f16x2 registers per
/// lane (reg 0 = (g, 2t..2t+1), reg 1 = (g+8, 2t..)); the f64 sum is rounded once to f16.
pub fn mma_m16n8k16_f16_f16(
    a: &[[u32; 4]; 32],
    b: &[[u32; 2]; 32],
    c: &[[u32; 2]; 32],
) -> [[u32; 2]; 32] {
    let c_at = |l: usize, i: usize| f16_to_f32(half_of(c[l][i / 2], i)) as f64;
    let to_h = |x: f64| fp::convert(x.to_bits(), fp::F64, F16, Rnd::Rn) as u32;
    let d = mma_k16(a, b, f16_to_f32, c_at, to_h, 0u32);
    let mut out = [[0u32; 2]; 32];
    for (o, dl) in out.iter_mut().zip(d.iter()) {
        *o = [dl[0] | (dl[1] << 16), dl[2] | (dl[3] << 16)];
    }
    out
}

/// `mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32`: A (16x8) a0,a1 = (g, 2t..2t+1),
/// a2,a3 = (g+8, 2t..); B (8x8) b0,b1 = (2t..2t+1, g); C/D as for m16n8k16.
pub fn mma_m16n8k8_f32_f16(
    a: &[[u32; 2]; 32],
    b: &[[u32; 1]; 32],
    c: &[[f32; 4]; 32],
) -> [[f32; 4]; 32] {
    let mut am = [[0f64; 8]; 16];
    let mut bm = [[0f64; 8]; 8];
    for lane in 0..32 {
        let (g, t) = (lane >> 2, lane % 4);
        for i in 0..4 {
            let row = g + if i >= 2 { 8 } else { 0 };
            am[row][2 * t + i % 2] = f16_to_f32(half_of(a[lane][i / 2], i)) as f64;
        }
        for i in 0..2 {
            bm[2 * t + i][g] = f16_to_f32(half_of(b[lane][0], i)) as f64;
        }
    }
    let mut d = [[0f32; 4]; 32];
    for (lane, dl) in d.iter_mut().enumerate() {
        for (i, di) in dl.iter_mut().enumerate() {
            let (r, n) = c_coord(lane, i);
            let mut acc = c[lane][i] as f64;
            for k in 0..8 {
                acc += am[r][k] * bm[k][n];
            }
            *di = to_f32(acc);
        }
    }
    d
}

/// `ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16 d, [addr]`.
///
/// Row `r` of matrix `j` is read from the address given by lane `8*j + r` (lanes 0-7 for
/// `.x1`, 0-15 for `.x2`, all for `.x4`); `read16(lane, addr)` returns that row's eight
/// 16-bit elements (it is where the caller checks alignment and bounds). Lane `i` receives in
/// register `j` the elements (row i/4, cols 2(i%4), 2(i%4)+1) of matrix j, packed low/high;
/// with `.trans` it receives (row 2(i%4), col i/4) and (row 2(i%4)+1, col i/4). Registers
/// `num..4` are returned as 0. `num` other than 1, 2, 4 is treated as the next valid count
/// capped at 4. Rows are read matrix by matrix, row by row, so the first failing read is the
/// lowest such (matrix, row).
pub fn ldmatrix<E>(
    num: u32,
    trans: bool,
    row_addr: &[u32; 32],
    read16: &mut dyn FnMut(u32, u32) -> Result<[u16; 8], E>,
) -> Result<[[u32; 4]; 32], E> {
    let num = match num {
        0 | 1 => 1,
        2 => 2,
        _ => 4,
    };
    let mut out = [[0u32; 4]; 32];
    for j in 0..num {
        let mut m = [[0u16; 8]; 8];
        for (r, row) in m.iter_mut().enumerate() {
            let src = 8 * j + r;
            *row = read16(src as u32, row_addr[src])?;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let (lo, hi) = if trans {
                (m[2 * (i % 4)][i / 4], m[2 * (i % 4) + 1][i / 4])
            } else {
                (m[i / 4][2 * (i % 4)], m[i / 4][2 * (i % 4) + 1])
            };
            o[j] = lo as u32 | ((hi as u32) << 16);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;

mod regs;
pub use regs::{mma_m16n8k16_f32_f16_lanes, Lanes};
