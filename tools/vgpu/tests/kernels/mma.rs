//! End to end: ldmatrix (x1/x2/x4, .trans) against the PTX ISA fragment layout, one
//! mma.sync m16n8k16 with hand-built fragments against a host f64 product, and a tiled
//! cp.async + ldmatrix + mma GEMM on awkward sizes.

use crate::common::*;

const SRC: &str = include_str!("../cu/mma.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("mma", SRC, &[])
}

fn h(v: f32) -> u16 {
    f64_to_h(v as f64, Mode::Rn)
}

#[test]
fn ldmatrix_fragments_and_transpose() {
    // element (matrix j, row r, col c) = j*64 + r*8 + c, exact in f16
    let stored: Vec<u16> = (0..256).map(|i| h(i as f32)).collect();
    let d = Dev::new();
    let pin = d.upload(&stored);
    let out = d.alloc::<u32>(32 * 14);
    d.launch(
        &m(),
        "ldmatrix_test",
        1,
        32,
        0,
        &[Arg::Ptr(pin), Arg::Ptr(out)],
    );
    let g = d.download::<u32>(out, 32 * 14);
    // Row i of loaded matrix j is the row whose address lane 8j+i supplied: stored row
    // perm(i) = (3i+1) % 8.
    let el = |j: usize, r: usize, c: usize| stored[j * 64 + ((3 * r + 1) % 8) * 8 + c] as u32;
    // PTX ISA: lane i holds (row i/4, cols 2(i%4), 2(i%4)+1) of each matrix, the lower
    // column in the low half; with .trans it holds (rows 2(i%4), 2(i%4)+1, col i/4).
    let frag = |j: usize, i: usize| el(j, i / 4, 2 * (i % 4)) | el(j, i / 4, 2 * (i % 4) + 1) << 16;
    let frag_t =
        |j: usize, i: usize| el(j, 2 * (i % 4), i / 4) | el(j, 2 * (i % 4) + 1, i / 4) << 16;
    for i in 0..32 {
        let want = [
            frag(0, i),
            frag(0, i),
            frag(1, i),
            frag(0, i),
            frag(1, i),
            frag(2, i),
            frag(3, i),
            frag_t(0, i),
            frag_t(0, i),
            frag_t(1, i),
            frag_t(0, i),
            frag_t(1, i),
            frag_t(2, i),
            frag_t(3, i),
        ];
        assert_eq!(&g[i * 14..i * 14 + 14], &want, "lane {i}");
    }
}

/// Tolerance of an f32 accumulation of k exact products (f16*f16 is exact in f32) onto c:
/// at most k+1 roundings (or truncations, as tensor cores do) of partial sums bounded by
/// |c| + sum|a b|, each off by at most 2^-23 relative.
fn tol(k: usize, abs_sum: f64) -> f64 {
    (k as f64 + 1.0) * 2f64.powi(-23) * abs_sum
}

fn run_mma_single(ptx_flags: &[&str], warps: usize) -> cuda::sim::Profile {
    let module = module("mma", SRC, ptx_flags);
    let mut r = Rng::new(31 + warps as u64);
    let a: Vec<u16> = (0..256 * warps).map(|_| r.f16_bits()).collect();
    let b: Vec<u16> = (0..128 * warps).map(|_| r.f16_bits()).collect();
    let c: Vec<f32> = (0..128 * warps).map(|_| r.f32(-4.0, 4.0)).collect();
    let d = Dev::new();
    let (pa, pb, pc) = (d.upload(&a), d.upload(&b), d.upload(&c));
    let pd = d.alloc::<f32>(128 * warps);
    let prof = d.launch(
        &module,
        "mma_single",
        1,
        32 * warps as u32,
        0,
        &[Arg::Ptr(pa), Arg::Ptr(pb), Arg::Ptr(pc), Arg::Ptr(pd)],
    );
    let got = d.download::<f32>(pd, 128 * warps);
    for w in 0..warps {
        for i in 0..16 {
            for j in 0..8 {
                let mut exact = c[w * 128 + i * 8 + j] as f64;
                let mut abs = exact.abs();
                for k in 0..16 {
                    let p =
                        h2f(a[w * 256 + i * 16 + k]) as f64 * h2f(b[w * 128 + k * 8 + j]) as f64;
                    exact += p;
                    abs += p.abs();
                }
                let g = got[w * 128 + i * 8 + j] as f64;
                assert!(
                    (g - exact).abs() <= tol(16, abs),
                    "{ptx_flags:?} warp {w} D[{i}][{j}] = {g}, want {exact}"
                );
            }
        }
    }
    prof
}

#[test]
fn mma_m16n8k16_against_host_product() {
    run_mma_single(&[], 1);
    run_mma_single(&["-arch=sm_90a"], 1);
}

#[test]
fn profile_counts_one_mma_per_warp() {
    let p = run_mma_single(&[], 3);
    assert_eq!(p.mma, 3, "{p:?}");
    assert_eq!(p.mma_flops, 3 * 2 * 16 * 8 * 16, "{p:?}");
    assert_eq!(p.wgmma_flops, 0, "none by wgmma: {p:?}");
}

#[test]
fn tiled_gemm_on_awkward_sizes() {
    let (mm, nn, kk) = (70usize, 40usize, 48usize);
    let mut r = Rng::new(33);
    let a: Vec<u16> = (0..mm * kk).map(|_| r.f16_bits()).collect();
    let b: Vec<u16> = (0..kk * nn).map(|_| r.f16_bits()).collect();
    let d = Dev::new();
    let (pa, pb) = (d.upload(&a), d.upload(&b));
    // a guard band after C must stay untouched
    let guard = 64;
    let pc = d.upload(&vec![f32::from_bits(0x7fc0_dead); mm * nn + guard]);
    let grid = ((nn as u32).div_ceil(64), (mm as u32).div_ceil(64));
    let prof = d.launch(
        &m(),
        "gemm",
        grid,
        128,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pc),
            Arg::I32(mm as i32),
            Arg::I32(nn as i32),
            Arg::I32(kk as i32),
        ],
    );
    let got = d.download::<f32>(pc, mm * nn + guard);
    for i in 0..mm {
        for j in 0..nn {
            let (mut exact, mut abs) = (0f64, 0f64);
            for k in 0..kk {
                let p = h2f(a[i * kk + k]) as f64 * h2f(b[k * nn + j]) as f64;
                exact += p;
                abs += p.abs();
            }
            let g = got[i * nn + j] as f64;
            assert!(
                (g - exact).abs() <= tol(kk, abs),
                "C[{i}][{j}] = {g}, want {exact}"
            );
        }
    }
    assert!(
        got[mm * nn..].iter().all(|x| x.to_bits() == 0x7fc0_dead),
        "write past C"
    );
    // 2 blocks x 4 warps x 3 k-tiles x 8 n-tiles
    assert_eq!(prof.mma, 2 * 4 * 3 * 8, "{prof:?}");
}

/// Exact bf16 -> f32.
fn bf2f(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// A random normal bf16 with magnitude in [2^-2, 2^3).
fn bf16_bits(r: &mut Rng) -> u16 {
    let sign = (r.u32() & 1) as u16;
    let exp = 125 + r.range(5) as u16;
    (sign << 15) | (exp << 7) | (r.u32() & 0x7f) as u16
}

/// Runs a one-warp mma kernel with K-deep inputs and checks D = C + A B.
fn check_mma_form(kernel: &str, k: usize, bf16: bool, f16acc: bool) {
    let mut r = Rng::new(40 + k as u64);
    let gen = |r: &mut Rng| if bf16 { bf16_bits(r) } else { r.f16_bits() };
    let a: Vec<u16> = (0..16 * k).map(|_| gen(&mut r)).collect();
    let b: Vec<u16> = (0..k * 8).map(|_| gen(&mut r)).collect();
    let cf: Vec<f32> = (0..128).map(|_| r.f32(-4.0, 4.0)).collect();
    let ch: Vec<u16> = cf.iter().map(|&x| h(x)).collect();
    let val = |x: u16| if bf16 { bf2f(x) } else { h2f(x) } as f64;
    let d = Dev::new();
    let (pa, pb) = (d.upload(&a), d.upload(&b));
    let pc = if f16acc { d.upload(&ch) } else { d.upload(&cf) };
    let pd = if f16acc {
        d.alloc::<u16>(128)
    } else {
        d.alloc::<f32>(128)
    };
    let p = d.launch(
        &m(),
        kernel,
        1,
        32,
        0,
        &[Arg::Ptr(pa), Arg::Ptr(pb), Arg::Ptr(pc), Arg::Ptr(pd)],
    );
    assert_eq!(p.mma_flops, 2 * 16 * 8 * k as u64, "{kernel}: {p:?}");
    let got: Vec<f64> = if f16acc {
        d.download::<u16>(pd, 128)
            .iter()
            .map(|&x| h2f(x) as f64)
            .collect()
    } else {
        d.download::<f32>(pd, 128)
            .iter()
            .map(|&x| x as f64)
            .collect()
    };
    for i in 0..16 {
        for j in 0..8 {
            let c = if f16acc {
                h2f(ch[i * 8 + j]) as f64
            } else {
                cf[i * 8 + j] as f64
            };
            let (mut exact, mut abs) = (c, c.abs());
            for kk in 0..k {
                let p = val(a[i * k + kk]) * val(b[kk * 8 + j]);
                exact += p;
                abs += p.abs();
            }
            // f16 accumulators: k+1 roundings of 2^-11 relative each (the hardware's internal
            // precision is unspecified; a layout error is off by O(1), far beyond this).
            let tol = if f16acc {
                (k as f64 + 1.0) * 2f64.powi(-11) * abs
            } else {
                tol(k, abs)
            };
            assert!(
                (got[i * 8 + j] - exact).abs() <= tol,
                "{kernel} D[{i}][{j}] = {}, want {exact}",
                got[i * 8 + j]
            );
        }
    }
}

#[test]
fn mma_bf16_f16_accumulate_and_k8_forms() {
    check_mma_form("mma_bf16", 16, true, false);
    check_mma_form("mma_f16acc", 16, false, true);
    check_mma_form("mma_k8", 8, false, false);
}
