//! Tests of the warp collectives. The fragment tests build fragments from whole matrices with
//! an *inverse* mapping written independently of the one in `warp.rs` (element -> lane,
//! register, half), so a layout bug on either side shows up as a mismatch.

#![allow(clippy::needless_range_loop)] // matrix code reads clearer with indices

use super::*;
use crate::isa::half::{f32_to_bf16, f32_to_f16};

// ---------- shfl ----------

#[test]
fn shfl_full_warp() {
    use ShflMode::*;
    // .up with c = 0 (clamp 0, no segments): lanes below b keep their own value.
    assert_eq!(shfl_source(Up, 0, 1, 0), (0, false));
    assert_eq!(shfl_source(Up, 5, 1, 0), (4, true));
    assert_eq!(shfl_source(Up, 3, 4, 0), (3, false));
    assert_eq!(shfl_source(Up, 4, 4, 0), (0, true));
    // .down with c = 0x1f.
    assert_eq!(shfl_source(Down, 31, 1, 0x1f), (31, false));
    assert_eq!(shfl_source(Down, 30, 1, 0x1f), (31, true));
    assert_eq!(shfl_source(Down, 0, 16, 0x1f), (16, true));
    assert_eq!(shfl_source(Down, 16, 16, 0x1f), (16, false));
    // .bfly and .idx.
    assert_eq!(shfl_source(Bfly, 3, 16, 0x1f), (19, true));
    assert_eq!(shfl_source(Bfly, 31, 1, 0x1f), (30, true));
    for lane in 0..32 {
        assert_eq!(shfl_source(Idx, lane, 5, 0x1f), (5, true));
        assert_eq!(shfl_source(Idx, lane, 37, 0x1f), (5, true)); // only b[4:0] counts
    }
    // b = 0 is a no-op copy that is still "in range".
    assert_eq!(shfl_source(Down, 7, 0, 0x1f), (7, true));
    assert_eq!(shfl_source(Up, 7, 0, 0), (7, true));
}

#[test]
fn shfl_clamp_and_segments() {
    use ShflMode::*;
    // Clamp value 15, no segment mask: lanes above 15 are out of range for down/idx.
    assert_eq!(shfl_source(Down, 14, 2, 0x0f), (14, false));
    assert_eq!(shfl_source(Down, 13, 2, 0x0f), (15, true));
    assert_eq!(shfl_source(Idx, 3, 20, 0x0f), (3, false));
    assert_eq!(shfl_source(Idx, 3, 15, 0x0f), (15, true));
    // Width-8 segments, as CUDA builds c = ((32 - width) << 8) | 0x1f.
    let c = (24 << 8) | 0x1f;
    assert_eq!(shfl_source(Idx, 10, 3, c), (11, true)); // segment 8..15, index 3
    assert_eq!(shfl_source(Idx, 31, 7, c), (31, true));
    assert_eq!(shfl_source(Idx, 17, 12, c), (20, true)); // 12 & 7 = 4 within segment 16..23
    assert_eq!(shfl_source(Down, 14, 2, c), (14, false)); // would leave the segment
    assert_eq!(shfl_source(Down, 13, 2, c), (15, true));
    assert_eq!(shfl_source(Bfly, 9, 4, c), (13, true));
    // The ISA tests bfly only against maxLane, so crossing down is "in range".
    assert_eq!(shfl_source(Bfly, 9, 8, c), (1, true));
    // .up with segments: c = (24 << 8) | 0 (CUDA's up form uses clamp 0).
    let cu = 24 << 8;
    assert_eq!(shfl_source(Up, 9, 2, cu), (9, false));
    assert_eq!(shfl_source(Up, 10, 2, cu), (8, true));
    assert_eq!(shfl_source(Up, 8, 1, cu), (8, false));
}

// ---------- vote / match / redux ----------

#[test]
fn vote_match_redux() {
    use VoteMode::*;
    let act = 0x0000_00ff;
    assert_eq!(warp_vote(All, act, 0xffff_ffff), 1);
    assert_eq!(warp_vote(All, act, 0x0000_007f), 0);
    assert_eq!(warp_vote(All, act, 0xffff_ff00 | 0xff), 1);
    assert_eq!(warp_vote(Any, act, 0xffff_ff00), 0);
    assert_eq!(warp_vote(Any, act, 0x10), 1);
    assert_eq!(warp_vote(Uni, act, 0xffff_ff00), 1);
    assert_eq!(warp_vote(Uni, act, 0x0000_00ff), 1);
    assert_eq!(warp_vote(Uni, act, 0x0000_0001), 0);
    assert_eq!(warp_vote(Ballot, act, 0xf0f0_f0f0), 0xf0);

    let mut v = [0u64; 32];
    for (i, x) in v.iter_mut().enumerate() {
        *x = (i % 3) as u64;
    }
    let m = match_any(0xffff_ffff, &v);
    assert_eq!(m[0], 0x4924_9249);
    assert_eq!(m[1], 0x9249_2492);
    assert_eq!(m[2], 0x2492_4924);
    let m = match_any(0x0000_000f, &v);
    assert_eq!((m[0], m[1], m[3], m[4]), (0b1001, 0b0010, 0b1001, 0));
    assert_eq!(match_all(0x0000_0009, &v), (0x9, true));
    assert_eq!(match_all(0x0000_0003, &v), (0, false));

    let mut r = [0u32; 32];
    for (i, x) in r.iter_mut().enumerate() {
        *x = (i as u32).wrapping_sub(4);
    }
    assert_eq!(
        redux(ReduxOp::Add, false, 0xffff_ffff, &r),
        496u32.wrapping_sub(128)
    );
    assert_eq!(redux(ReduxOp::Min, true, 0xffff_ffff, &r), (-4i32) as u32);
    assert_eq!(redux(ReduxOp::Min, false, 0xffff_ffff, &r), 0);
    assert_eq!(redux(ReduxOp::Max, false, 0xffff_ffff, &r), 0xffff_ffff);
    assert_eq!(redux(ReduxOp::Max, true, 0x0000_00ff, &r), 3);
    assert_eq!(redux(ReduxOp::And, false, 0x0000_0060, &r), 2 & 1);
    assert_eq!(redux(ReduxOp::Or, false, 0x0000_0060, &r), 2 | 1);
    assert_eq!(redux(ReduxOp::Xor, false, 0x0000_0070, &r), 3); // 0 ^ 1 ^ 2
    assert_eq!(redux(ReduxOp::And, false, 0, &r), u32::MAX);
}

// ---------- mma ----------

/// Element -> (lane, register, half) for A (16x16): independent inverse of the ISA figure.
fn place_a(r: usize, k: usize) -> (usize, usize, usize) {
    (4 * (r % 8) + (k % 8) / 2, (r / 8) + 2 * (k / 8), k % 2)
}
fn place_b(k: usize, n: usize) -> (usize, usize, usize) {
    (4 * n + (k % 8) / 2, k / 8, k % 2)
}
fn place_c(r: usize, n: usize) -> (usize, usize) {
    (4 * (r % 8) + n / 2, 2 * (r / 8) + n % 2)
}

fn frag_a(m: &[[u16; 16]; 16]) -> [[u32; 4]; 32] {
    let mut f = [[0u32; 4]; 32];
    for (r, row) in m.iter().enumerate() {
        for (k, &v) in row.iter().enumerate() {
            let (l, reg, h) = place_a(r, k);
            f[l][reg] |= (v as u32) << (16 * h);
        }
    }
    f
}
fn frag_b(m: &[[u16; 8]; 16]) -> [[u32; 2]; 32] {
    let mut f = [[0u32; 2]; 32];
    for (k, row) in m.iter().enumerate() {
        for (n, &v) in row.iter().enumerate() {
            let (l, reg, h) = place_b(k, n);
            f[l][reg] |= (v as u32) << (16 * h);
        }
    }
    f
}
fn frag_c(m: &[[f32; 8]; 16]) -> [[f32; 4]; 32] {
    let mut f = [[0f32; 4]; 32];
    for (r, row) in m.iter().enumerate() {
        for (n, &v) in row.iter().enumerate() {
            let (l, i) = place_c(r, n);
            f[l][i] = v;
        }
    }
    f
}
fn unfrag_c(f: &[[f32; 4]; 32]) -> [[f32; 8]; 16] {
    let mut m = [[0f32; 8]; 16];
    for (r, row) in m.iter_mut().enumerate() {
        for (n, v) in row.iter_mut().enumerate() {
            let (l, i) = place_c(r, n);
            *v = f[l][i];
        }
    }
    m
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A small value exactly representable in f16 and bf16 (k/8, |k| <= 24).
    fn small(&mut self) -> f32 {
        ((self.next() % 49) as i32 - 24) as f32 / 8.0
    }
}

#[test]
fn mma_identity_a() {
    // A = identity, B(k, n) = 10k + n, C(r, n) = 0.5 => D = B + 0.5 (rows 0..16).
    let mut a = [[0u16; 16]; 16];
    for (i, row) in a.iter_mut().enumerate() {
        row[i] = 0x3c00;
    }
    let mut b = [[0u16; 8]; 16];
    for (k, row) in b.iter_mut().enumerate() {
        for (n, v) in row.iter_mut().enumerate() {
            *v = f32_to_f16((10 * k + n) as f32, Rnd::Rn);
        }
    }
    let c = frag_c(&[[0.5f32; 8]; 16]);
    let d = unfrag_c(&mma_m16n8k16_f32_f16(&frag_a(&a), &frag_b(&b), &c));
    for r in 0..16 {
        for n in 0..8 {
            assert_eq!(d[r][n], (10 * r + n) as f32 + 0.5, "D[{r}][{n}]");
        }
    }
    // Spot-check the raw fragment positions: lane 5 (g=1, t=1) c2 = D[9][2] = 92.5.
    let draw = mma_m16n8k16_f32_f16(&frag_a(&a), &frag_b(&b), &c);
    assert_eq!(draw[5][2], 92.5);
    assert_eq!(draw[5][1], 13.5);
}

#[test]
fn mma_random_against_naive() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..20 {
        let mut af = [[0f32; 16]; 16];
        let mut bf = [[0f32; 8]; 16];
        let mut cf = [[0f32; 8]; 16];
        af.iter_mut().flatten().for_each(|x| *x = rng.small());
        bf.iter_mut().flatten().for_each(|x| *x = rng.small());
        cf.iter_mut().flatten().for_each(|x| *x = rng.small() * 3.0);
        let enc = |x: f32, bf16: bool| {
            if bf16 {
                f32_to_bf16(x, Rnd::Rn)
            } else {
                f32_to_f16(x, Rnd::Rn)
            }
        };
        for use_bf16 in [false, true] {
            let mut a = [[0u16; 16]; 16];
            let mut b = [[0u16; 8]; 16];
            for r in 0..16 {
                for k in 0..16 {
                    a[r][k] = enc(af[r][k], use_bf16);
                }
            }
            for k in 0..16 {
                for n in 0..8 {
                    b[k][n] = enc(bf[k][n], use_bf16);
                }
            }
            let (fa, fb, fc) = (frag_a(&a), frag_b(&b), frag_c(&cf));
            let d = if use_bf16 {
                mma_m16n8k16_f32_bf16(&fa, &fb, &fc)
            } else {
                mma_m16n8k16_f32_f16(&fa, &fb, &fc)
            };
            let d = unfrag_c(&d);
            for r in 0..16 {
                for n in 0..8 {
                    // Values are multiples of 1/64 below 2^12: every sum is exact.
                    let want: f32 = cf[r][n] + (0..16).map(|k| af[r][k] * bf[k][n]).sum::<f32>();
                    assert_eq!(d[r][n], want, "round {round} bf16={use_bf16} D[{r}][{n}]");
                }
            }
        }
    }
}

#[test]
fn mma_single_rounding() {
    // D[0][0] = 1 + 2^-24 + 2^-24 (two tiny products) in exact arithmetic = 1 + 2^-23.
    // Sequential f32 adds would round each 2^-24 away (ties to even) and give 1.0.
    let mut a = [[0u16; 16]; 16];
    let mut b = [[0u16; 8]; 16];
    a[0][0] = 0x0400; // 2^-14
    a[0][1] = 0x0400;
    b[0][0] = 0x1400; // 2^-10 -> product 2^-24
    b[1][0] = 0x1400;
    let mut c = [[0f32; 8]; 16];
    c[0][0] = 1.0;
    let d = unfrag_c(&mma_m16n8k16_f32_f16(&frag_a(&a), &frag_b(&b), &frag_c(&c)));
    assert_eq!(d[0][0], 1.0 + 2f32.powi(-23));
    assert_eq!(d[1][0], 0.0);
    // Infinity and NaN propagate.
    a[3][0] = 0x7c00;
    b[0][5] = 0x3c00;
    let d = unfrag_c(&mma_m16n8k16_f32_f16(&frag_a(&a), &frag_b(&b), &frag_c(&c)));
    assert_eq!(d[3][5], f32::INFINITY);
    a[3][1] = 0xfc00;
    b[1][5] = 0x3c00;
    let d = unfrag_c(&mma_m16n8k16_f32_f16(&frag_a(&a), &frag_b(&b), &frag_c(&c)));
    assert_eq!(d[3][5].to_bits(), 0x7fff_ffff);
}

#[test]
fn mma_f16_accumulate() {
    let mut rng = Rng(42);
    let mut af = [[0f32; 16]; 16];
    let mut bf = [[0f32; 8]; 16];
    af.iter_mut().flatten().for_each(|x| *x = rng.small());
    bf.iter_mut().flatten().for_each(|x| *x = rng.small());
    let mut a = [[0u16; 16]; 16];
    let mut b = [[0u16; 8]; 16];
    for r in 0..16 {
        for k in 0..16 {
            a[r][k] = f32_to_f16(af[r][k], Rnd::Rn);
        }
    }
    for k in 0..16 {
        for n in 0..8 {
            b[k][n] = f32_to_f16(bf[k][n], Rnd::Rn);
        }
    }
    // C(r, n) = r - n as f16, packed: reg0 = (g, 2t | 2t+1), reg1 = (g+8, ...).
    let mut c = [[0u32; 2]; 32];
    for r in 0..16 {
        for n in 0..8 {
            let (l, i) = place_c(r, n);
            c[l][i / 2] |= (f32_to_f16(r as f32 - n as f32, Rnd::Rn) as u32) << (16 * (i % 2));
        }
    }
    let d = mma_m16n8k16_f16_f16(&frag_a(&a), &frag_b(&b), &c);
    for r in 0..16 {
        for n in 0..8 {
            let (l, i) = place_c(r, n);
            let got = (d[l][i / 2] >> (16 * (i % 2))) as u16;
            let want = (r as f32 - n as f32) + (0..16).map(|k| af[r][k] * bf[k][n]).sum::<f32>();
            assert_eq!(got, f32_to_f16(want, Rnd::Rn), "D[{r}][{n}]");
        }
    }
}

#[test]
fn mma_k8_random() {
    let mut rng = Rng(7);
    let mut af = [[0f32; 8]; 16];
    let mut bf = [[0f32; 8]; 8];
    af.iter_mut().flatten().for_each(|x| *x = rng.small());
    bf.iter_mut().flatten().for_each(|x| *x = rng.small());
    let mut a = [[0u32; 2]; 32];
    let mut b = [[0u32; 1]; 32];
    for r in 0..16 {
        for k in 0..8 {
            // Same as the k16 A layout restricted to k < 8.
            let (l, reg, h) = place_a(r, k);
            a[l][reg] |= (f32_to_f16(af[r][k], Rnd::Rn) as u32) << (16 * h);
        }
    }
    for k in 0..8 {
        for n in 0..8 {
            let (l, reg, h) = place_b(k, n);
            b[l][reg] |= (f32_to_f16(bf[k][n], Rnd::Rn) as u32) << (16 * h);
        }
    }
    let c = frag_c(&[[1.0f32; 8]; 16]);
    let d = unfrag_c(&mma_m16n8k8_f32_f16(&a, &b, &c));
    for r in 0..16 {
        for n in 0..8 {
            let want = 1.0 + (0..8).map(|k| af[r][k] * bf[k][n]).sum::<f32>();
            assert_eq!(d[r][n], want, "D[{r}][{n}]");
        }
    }
}

// ---------- ldmatrix ----------

fn elem(j: usize, r: usize, c: usize) -> u16 {
    (100 * j + 8 * r + c) as u16
}

fn run_ldmatrix(num: u32, trans: bool) -> [[u32; 4]; 32] {
    // Lane l supplies address 0x1000 + 16*l; matrix j row r lives at the address of lane 8j+r.
    let mut addrs = [0u32; 32];
    for (l, a) in addrs.iter_mut().enumerate() {
        *a = 0x1000 + 16 * l as u32;
    }
    let mut read = |lane: u32, addr: u32| -> Result<[u16; 8], String> {
        assert_eq!(addr, 0x1000 + 16 * lane);
        let (j, r) = (lane as usize / 8, lane as usize % 8);
        let mut row = [0u16; 8];
        for (c, v) in row.iter_mut().enumerate() {
            *v = elem(j, r, c);
        }
        Ok(row)
    };
    ldmatrix(num, trans, &addrs, &mut read).unwrap()
}

#[test]
fn ldmatrix_layouts() {
    for num in [1u32, 2, 4] {
        for trans in [false, true] {
            let out = run_ldmatrix(num, trans);
            // Inverse mapping: element (r, c) of matrix j -> (lane, half).
            for j in 0..4 {
                for r in 0..8 {
                    for c in 0..8 {
                        let (lane, h) = if trans {
                            (4 * c + r / 2, r % 2)
                        } else {
                            (4 * r + c / 2, c % 2)
                        };
                        let got = (out[lane][j] >> (16 * h)) as u16;
                        let want = if j < num as usize { elem(j, r, c) } else { 0 };
                        assert_eq!(got, want, "x{num} trans={trans} m{j} ({r},{c})");
                    }
                }
            }
        }
    }
    // Hand values: lane 0 without trans gets (0,0),(0,1); lane 5 gets row 1 cols 2,3.
    let out = run_ldmatrix(1, false);
    assert_eq!(out[0][0], 0x0001_0000);
    assert_eq!(out[5][0], (11 << 16) | 10);
    // With trans lane 5 gets col 1, rows 2 and 3: 17 and 25.
    let out = run_ldmatrix(1, true);
    assert_eq!(out[5][0], (25 << 16) | 17);
}

#[test]
fn ldmatrix_reads_only_needed_lanes_and_propagates_errors() {
    let addrs = [0u32; 32];
    let mut seen = Vec::new();
    let mut read = |lane: u32, _a: u32| -> Result<[u16; 8], u32> {
        seen.push(lane);
        Ok([0; 8])
    };
    ldmatrix(2, false, &addrs, &mut read).unwrap();
    assert_eq!(seen, (0..16).collect::<Vec<_>>());
    let mut read_err = |lane: u32, _a: u32| -> Result<[u16; 8], u32> {
        if lane == 9 {
            Err(lane)
        } else {
            Ok([0; 8])
        }
    };
    assert_eq!(ldmatrix(4, true, &addrs, &mut read_err), Err(9));
}
