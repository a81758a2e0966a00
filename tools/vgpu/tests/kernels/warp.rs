//! End to end: warp shuffles (every mode, segments, out-of-range lanes, the predicate
//! output), votes, divergence and reconvergence, block barriers with full and partial warps,
//! 3D indices, and a large grid for the parallel block scheduler. All results are exact.

use crate::common::*;

const SRC: &str = include_str!("../cu/warp.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("warp", SRC, &[])
}

#[derive(Clone, Copy)]
enum Mode {
    Up,
    Down,
    Bfly,
    Idx,
}

/// shfl.sync per the PTX ISA pseudocode: bval = b[4:0], cval = c[4:0], segmask = c[12:8];
/// a lane whose computed source is out of its segment/clamp keeps its own value and p=0.
fn shfl(mode: Mode, vals: &[i32], b: &[i32], c: u32) -> Vec<(i32, bool)> {
    (0..32)
        .map(|lane: i32| {
            let bval = b[lane as usize] & 31;
            let cval = (c & 31) as i32;
            let seg = ((c >> 8) & 31) as i32;
            let max_lane = (lane & seg) | (cval & !seg);
            let min_lane = lane & seg;
            let (j, p) = match mode {
                Mode::Up => (lane - bval, lane - bval >= max_lane),
                Mode::Down => (lane + bval, lane + bval <= max_lane),
                Mode::Bfly => (lane ^ bval, (lane ^ bval) <= max_lane),
                Mode::Idx => {
                    let j = min_lane | (bval & !seg);
                    (j, j <= max_lane)
                }
            };
            (vals[if p { j } else { lane } as usize], p)
        })
        .collect()
}

fn inputs(n: usize, seed: u64) -> Vec<i32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.u32() >> 1) as i32 - (1 << 30)).collect()
}

#[test]
fn shfl_sync_every_mode_with_predicate() {
    let n = 64; // two warps: each shuffles among its own lanes
    let v = inputs(n, 11);
    let mut r = Rng::new(12);
    // source lanes / offsets, including values >= 32 (only b[4:0] counts)
    let b: Vec<i32> = (0..n)
        .map(|i| if i < 40 { i as i32 } else { r.range(70) as i32 })
        .collect();
    let d = Dev::new();
    let (pv, pb) = (d.upload(&v), d.upload(&b));
    let out = d.alloc::<i32>(n * 8);
    let mut cs: Vec<(u32, u32)> = [32u32, 16, 8, 4, 2, 1]
        .iter()
        .map(|w| ((32 - w) << 8, ((32 - w) << 8) | 0x1f))
        .collect();
    cs.push((0x0f, 0x0f)); // clamp at lane 15, no segments
    cs.push((0x1807, 0x1807)); // segments of 8, clamp 7
    cs.push((0x1f, 0x0a));
    for &(cu, c) in &cs {
        d.launch(
            &m(),
            "shfl_modes",
            1,
            n as u32,
            0,
            &[
                Arg::Ptr(pv),
                Arg::Ptr(pb),
                Arg::Ptr(out),
                Arg::U32(cu),
                Arg::U32(c),
            ],
        );
        let g = d.download::<i32>(out, n * 8);
        for w in 0..2 {
            let vals = &v[w * 32..w * 32 + 32];
            let bs = &b[w * 32..w * 32 + 32];
            for (k, (mode, cc)) in [
                (Mode::Up, cu),
                (Mode::Down, c),
                (Mode::Bfly, c),
                (Mode::Idx, c),
            ]
            .into_iter()
            .enumerate()
            {
                let want = shfl(mode, vals, bs, cc);
                for lane in 0..32 {
                    let t = w * 32 + lane;
                    let got = (g[t * 8 + 2 * k], g[t * 8 + 2 * k + 1] != 0);
                    assert_eq!(
                        got, want[lane],
                        "mode {k} c={cc:#x} warp {w} lane {lane} b={}",
                        bs[lane]
                    );
                }
            }
        }
    }
}

#[test]
fn shfl_intrinsics_with_width_and_out_of_range_lanes() {
    let n = 96;
    let v = inputs(n, 13);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<i32>(n * 5);
    for &(width, delta, src) in &[
        (32, 1, 0),
        (16, 3, 7),
        (8, 5, 35),
        (4, 1, 2),
        (2, 1, 1),
        (8, 8, 9),
        (32, 17, 31),
    ] {
        d.launch(
            &m(),
            "shfl_cuda",
            1,
            n as u32,
            0,
            &[
                Arg::Ptr(pv),
                Arg::Ptr(out),
                Arg::I32(width),
                Arg::I32(delta),
                Arg::I32(src),
            ],
        );
        let g = d.download::<i32>(out, n * 5);
        // c as the CUDA headers build it
        let seg = ((32 - width) as u32) << 8;
        for w in 0..n / 32 {
            let vals = &v[w * 32..w * 32 + 32];
            let srcs: Vec<i32> = (0..32).map(|l| src + l * 3).collect();
            let deltas = vec![delta; 32];
            let idx = shfl(Mode::Idx, vals, &srcs, seg | 0x1f);
            let up = shfl(Mode::Up, vals, &deltas, seg);
            let down = shfl(Mode::Down, vals, &deltas, seg | 0x1f);
            let xor = shfl(Mode::Bfly, vals, &deltas, seg | 0x1f);
            let halves: Vec<i32> = vals
                .iter()
                .map(|&x| (f32::from_bits(x as u32 & 0x3fff_ffff) * 0.5).to_bits() as i32)
                .collect();
            let fdown = shfl(Mode::Down, &halves, &[1; 32], 0x1f);
            for lane in 0..32 {
                let t = w * 32 + lane;
                let want = [
                    idx[lane].0,
                    up[lane].0,
                    down[lane].0,
                    xor[lane].0,
                    fdown[lane].0,
                ];
                assert_eq!(
                    &g[t * 5..t * 5 + 5],
                    &want,
                    "width {width} delta {delta} src {src} warp {w} lane {lane}"
                );
            }
            // the test distinguishes segments: some lane got a value from another lane
            assert!(width <= delta || (0..32).any(|l| down[l].0 != vals[l]));
        }
    }
}

#[test]
fn votes_and_activemask_with_a_partial_warp() {
    let bs = 80u32; // warps of 32, 32 and 16 live lanes
    let n = 2 * bs as usize;
    let mut v: Vec<i32> = inputs(n, 14).iter().map(|x| x % 1000).collect();
    v[7] = 2_000_000; // any(v > 1e6) only in warp 0 of block 0
    v[32 + 5] = -2_000_000; // all(v > -1e6) fails only in warp 1 of block 0
    for x in &mut v[64..80] {
        *x = x.abs() + 1; // warp 2 of block 0: all positive
    }
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<u32>(n * 7);
    d.launch(&m(), "votes", 2, bs, 0, &[Arg::Ptr(pv), Arg::Ptr(out)]);
    let g = d.download::<u32>(out, n * 7);
    for blk in 0..2 {
        for w in 0..3 {
            let live = if w == 2 { 16 } else { 32 };
            let base = blk * bs as usize + w * 32;
            let lanes = || (0..live).map(|l| (l, v[base + l]));
            let mask = |f: &dyn Fn(usize, i32) -> bool| {
                lanes()
                    .filter(|&(l, x)| f(l, x))
                    .fold(0u32, |m, (l, _)| m | 1 << l)
            };
            let full = mask(&|_, _| true);
            let ballot = mask(&|_, x| x > 0);
            let all1 = lanes().all(|(_, x)| x > -1_000_000) as u32;
            let any = lanes().any(|(_, x)| x > 1_000_000) as u32;
            let all2 = lanes().all(|(_, x)| x > 0) as u32;
            let m3 = mask(&|l, _| l % 3 == 0);
            let odd3 = mask(&|l, x| l % 3 == 0 && x & 1 != 0);
            for l in 0..live {
                let t = base + l;
                let want = [
                    ballot,
                    all1,
                    any,
                    all2,
                    full,
                    if l % 3 == 0 { m3 } else { full & !m3 },
                    if l % 3 == 0 { odd3 } else { 12345 },
                ];
                assert_eq!(&g[t * 7..t * 7 + 7], &want, "block {blk} warp {w} lane {l}");
            }
        }
    }
    // the data makes every vote take both values somewhere
    assert!(g.chunks(7).any(|c| c[2] == 1) && g.chunks(7).any(|c| c[2] == 0));
    assert!(g.chunks(7).any(|c| c[1] == 0) && g.chunks(7).any(|c| c[3] == 1));
}

#[test]
fn divergence_then_reconvergence() {
    let n = 128;
    let v = inputs(n, 15);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<u32>(n * 3);
    d.launch(&m(), "diverge", 2, 64, 0, &[Arg::Ptr(pv), Arg::Ptr(out)]);
    let g = d.download::<u32>(out, n * 3);
    let acc: Vec<u32> = (0..n)
        .map(|t| {
            let lane = (t % 32) as u32;
            let x = v[t] as u32;
            let mut a = match (lane & 1 != 0, lane & 2 != 0, lane < 16) {
                (true, true, _) => x.wrapping_mul(3),
                (true, false, _) => x.wrapping_add(7),
                (false, _, true) => x.wrapping_sub(1),
                (false, _, false) => x ^ 0x55,
            };
            for k in 0..lane {
                a = a.wrapping_mul(31).wrapping_add(k);
            }
            let mut k = 0;
            while (x >> k) & 1 == 0 && k <= 20 {
                k += 1;
            }
            a.wrapping_add(k)
        })
        .collect();
    for t in 0..n {
        let w = t / 32 * 32;
        let ballot = (0..32).fold(0u32, |m, l| m | (acc[w + l] & 1) << l);
        assert_eq!(
            &g[t * 3..t * 3 + 3],
            &[acc[t], acc[t ^ 1], ballot],
            "thread {t}"
        );
    }
}

#[test]
fn early_return_of_half_the_warp() {
    let n = 64;
    let v = inputs(n, 16);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<i32>(n);
    d.launch(&m(), "early_exit", 1, 64, 0, &[Arg::Ptr(pv), Arg::Ptr(out)]);
    let g = d.download::<i32>(out, n);
    for w in 0..2 {
        // shfl.down with width 16 among lanes 0..15, round by round
        let mut r: Vec<i32> = v[w * 32..w * 32 + 16].to_vec();
        for o in [8, 4, 2, 1] {
            r = (0..16)
                .map(|l| r[l].wrapping_add(if l + o < 16 { r[l + o] } else { r[l] }))
                .collect();
        }
        for l in 0..32 {
            let want = if l < 16 { r[l] } else { -1 };
            assert_eq!(g[w * 32 + l], want, "warp {w} lane {l}");
        }
    }
}

#[test]
fn syncthreads_reduction_over_block_sizes() {
    let grid = 3u32;
    for bs in [64u32, 96, 100, 256, 1024] {
        let n = (grid * bs) as usize;
        let v = inputs(n, 17 + bs as u64);
        let d = Dev::new();
        let pv = d.upload(&v);
        let out = d.alloc::<i32>(grid as usize + n);
        d.launch(
            &m(),
            "block_reduce",
            grid,
            bs,
            0,
            &[Arg::Ptr(pv), Arg::Ptr(out)],
        );
        let g = d.download::<i32>(out, grid as usize + n);
        for b in 0..grid as usize {
            let s = v[b * bs as usize..(b + 1) * bs as usize]
                .iter()
                .fold(0i32, |a, &x| a.wrapping_add(x));
            assert_eq!(g[b], s, "block size {bs} block {b}");
            for t in 0..bs as usize {
                assert_eq!(
                    g[grid as usize + b * bs as usize + t],
                    s.wrapping_sub(t as i32),
                    "block size {bs} block {b} thread {t}"
                );
            }
        }
    }
}

#[test]
fn two_thousand_blocks() {
    let (grid, bs) = (2000u32, 64u32);
    let n = (grid * bs) as usize;
    let v = inputs(n, 18);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<i32>(grid as usize);
    d.launch(
        &m(),
        "many_blocks",
        grid,
        bs,
        0,
        &[Arg::Ptr(pv), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, grid as usize);
    for b in 0..grid as usize {
        let s = v[b * 64..b * 64 + 64]
            .iter()
            .fold(0i32, |a, &x| a.wrapping_add(x));
        assert_eq!(g[b], s.wrapping_mul(2).wrapping_add(b as i32), "block {b}");
    }
}

#[test]
fn three_dimensional_blocks_and_grids() {
    for (grid, block) in [
        ([3u32, 2, 2], [4u32, 3, 2]),
        ([2, 1, 3], [8, 4, 4]),
        ([1, 5, 1], [1, 1, 64]),
    ] {
        let nb: u32 = grid.iter().product();
        let nt: u32 = block.iter().product();
        let n = (nb * nt) as usize;
        let d = Dev::new();
        let out = d.alloc::<u32>(n * 4);
        d.launch(&m(), "indices3d", grid, block, 0, &[Arg::Ptr(out)]);
        let g = d.download::<u32>(out, n * 4);
        let p = |v: [u32; 3]| v[0] | v[1] << 8 | v[2] << 16;
        for bz in 0..grid[2] {
            for by in 0..grid[1] {
                for bx in 0..grid[0] {
                    for tz in 0..block[2] {
                        for ty in 0..block[1] {
                            for tx in 0..block[0] {
                                let b = (bz * grid[1] + by) * grid[0] + bx;
                                let t = (tz * block[1] + ty) * block[0] + tx;
                                let i = ((b * nt + t) * 4) as usize;
                                assert_eq!(
                                    &g[i..i + 4],
                                    &[p([tx, ty, tz]), p([bx, by, bz]), p(block), p(grid)],
                                    "grid {grid:?} block {block:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn threads_exit_before_a_barrier() {
    // 100 of 128 threads stay: warp 3 keeps lanes 0..3 only
    let n = 100usize;
    let v = inputs(128, 19);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.upload(&vec![-7i32; 128]);
    d.launch(
        &m(),
        "exit_then_barrier",
        1,
        128,
        0,
        &[Arg::Ptr(pv), Arg::Ptr(out), Arg::I32(n as i32)],
    );
    let g = d.download::<i32>(out, 128);
    for t in 0..128 {
        let want = if t < n {
            v[n - 1 - t].wrapping_mul(2).wrapping_add(t as i32)
        } else {
            -7
        };
        assert_eq!(g[t], want, "thread {t}");
    }
}

#[test]
fn named_barriers_with_thread_counts() {
    let v = inputs(128, 20);
    let d = Dev::new();
    let pv = d.upload(&v);
    let out = d.alloc::<i32>(128);
    d.launch(
        &m(),
        "named_barriers",
        1,
        128,
        0,
        &[Arg::Ptr(pv), Arg::Ptr(out)],
    );
    let g = d.download::<i32>(out, 128);
    for t in 0..128 {
        assert_eq!(g[t], v[t ^ 32].wrapping_add(1), "thread {t}");
    }
}
