//! `VGPU_NUMERICS=hardware`: tensor-core accumulation and `.approx` errors as a real GPU
//! makes them. This binary runs with the variable set (see [`hw`]); every other test binary
//! runs in the default `exact` mode, and their bit-exact expectations (correctly rounded
//! approximations, mma summed exactly and rounded once) are what "exact is unchanged" means.
//!
//! The tensor-core reference below is written independently of `isa::tc`, from the model's
//! description (Fasi et al. 2021; parameters of Khattak and Mikaitis 2025): f64 arithmetic,
//! power-of-two scaling and `trunc`, rounded with the harness's own IEEE rounding.
#![allow(clippy::needless_range_loop)]

mod common;
use common::*;

use cuda::isa::approx::{self, Bound};
use cuda::isa::tc::{self, TcProfile, AMPERE, HOPPER};
use cuda::isa::{float as fl, warp as iw};
use cuda::numerics::{self, Numerics};

/// Puts this process in hardware mode before anything reads the variable.
fn hw() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("VGPU_NUMERICS", "hardware"));
    assert_eq!(numerics::numerics(), Numerics::Hardware(HOPPER));
}

const MMA: &str = include_str!("cu/mma.cu");

// ---- the reference model ---------------------------------------------------------------

/// floor(log2 |x|), not below `emin` (the format's minimum exponent; subnormals sit there).
fn uexp(x: f64, emin: i32) -> i32 {
    let (_, m, e) = decompose(x);
    (e + 127 - m.leading_zeros() as i32).max(emin)
}

/// The accumulator formats of the reference: f32 (truncated) or f16 (to nearest).
#[derive(Clone, Copy, PartialEq)]
enum Acc {
    F32,
    F16,
}

/// `c + Σ a·b` by the tensor-core model, `a`/`b` values of a format with minimum exponent
/// `in_emin`.
fn model(p: &TcProfile, c: f64, a: &[f64], b: &[f64], in_emin: i32, acc: Acc) -> f64 {
    let c_emin = if acc == Acc::F32 { -126 } else { -14 };
    let mut c = c;
    for (ab, bb) in a.chunks(p.block).zip(b.chunks(p.block)) {
        let mut terms = vec![(c, uexp_or(c, c_emin))];
        for k in 0..ab.len() {
            let v = ab[k] * bb[k]; // exact: at most 2 x 11 significant bits
            let e = if v == 0.0 {
                None
            } else {
                Some(uexp(ab[k], in_emin) + uexp(bb[k], in_emin))
            };
            terms.push((v, e));
        }
        let Some(eta) = terms.iter().filter_map(|t| t.1).max() else {
            c = 0.0;
            continue;
        };
        let q = 2f64.powi(eta.max(p.floor) - 23 - p.extra_bits as i32);
        let sum: f64 = terms.iter().map(|t| (t.0 / q).trunc()).sum();
        let v = sum * q;
        c = match acc {
            Acc::F32 if v.abs() >= 2f64.powi(128) => v.signum() * f64::INFINITY,
            Acc::F32 => f64_to_f32(v, Mode::Rz) as f64,
            Acc::F16 => h2f(f64_to_h(v, Mode::Rn)) as f64,
        };
    }
    c
}

fn uexp_or(x: f64, emin: i32) -> Option<i32> {
    (x != 0.0).then(|| uexp(x, emin))
}

fn bf2f(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// A random f16 of wide range: normals of exponent field 1..=24, some subnormals and zeros.
fn f16_wide(r: &mut Rng) -> u16 {
    let sign = (r.u32() & 1) as u16;
    let man = (r.u32() & 0x3ff) as u16;
    match r.range(20) {
        0 => sign << 15,
        1 => (sign << 15) | man,
        _ => (sign << 15) | ((1 + r.range(24)) as u16) << 10 | man,
    }
}

/// A random f32 accumulator from 2^-30 to 2^12, sometimes zero or subnormal.
fn f32_wide(r: &mut Rng) -> f32 {
    let m = r.f32(1.0, 2.0) * if r.u32() & 1 == 1 { -1.0 } else { 1.0 };
    match r.range(16) {
        0 => 0.0,
        1 => m * 2f32.powi(-135),
        _ => m * 2f32.powi(r.range(43) as i32 - 30),
    }
}

/// One warp of a 16x16 (or 16x8) A, 16x8 B, 16x8 C layout kernel from mma.cu.
fn run<C: Copy + Default, D: Copy + Default>(
    kernel: &str,
    a: &[u16],
    b: &[u16],
    c: &[C],
) -> Vec<D> {
    let d = Dev::new();
    let (pa, pb, pc) = (d.upload(a), d.upload(b), d.upload(c));
    let pd = d.alloc::<D>(128);
    let m = module("mma", MMA, &[]);
    d.launch(
        &m,
        kernel,
        1,
        32,
        0,
        &[Arg::Ptr(pa), Arg::Ptr(pb), Arg::Ptr(pc), Arg::Ptr(pd)],
    );
    d.download::<D>(pd, 128)
}

// ---- mode ------------------------------------------------------------------------------

#[test]
fn mode_parses_and_names_itself() {
    assert_eq!(Numerics::parse(None), Ok(Numerics::Exact));
    assert_eq!(Numerics::parse(Some("exact")), Ok(Numerics::Exact));
    assert_eq!(
        Numerics::parse(Some("hardware")),
        Ok(Numerics::Hardware(HOPPER))
    );
    assert_eq!(
        Numerics::parse(Some("hardware-a100")),
        Ok(Numerics::Hardware(AMPERE))
    );
    let e = Numerics::parse(Some("hw")).unwrap_err();
    assert!(e.starts_with("vgpu: VGPU_NUMERICS=\"hw\""), "{e}");
    hw();
    let name = cuda::sim::limits::device_name();
    assert!(name.contains("numerics: hardware (H100"), "{name}");
}

// ---- mma -------------------------------------------------------------------------------

/// C = ±1 and sixteen products 2^-13 · 2^-13: the exact sum ±(1 + 2^-22) is an f32, but the
/// tensor core aligns the products to C's exponent, where 2^-26 lies below its grid
/// (2^-25 on Hopper, 2^-24 on Ampere), and drops them: the result is truncated to ±1.
#[test]
fn hardware_mma_truncates_small_products_against_a_large_accumulator() {
    hw();
    let small = f16_encode(2f64.powi(-13));
    let a = vec![small; 256];
    let b = vec![small; 128];
    let c: Vec<f32> = (0..128)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let got: Vec<f32> = run("mma_single", &a, &b, &c);
    let exact = 1.0 + 2f64.powi(-22);
    for i in 0..128 {
        assert_eq!(got[i], c[i], "D[{i}]: the products must be truncated away");
        assert_ne!(got[i] as f64, c[i] as f64 * exact);
    }
    // The exact path (the default mode) keeps them: still one rounding of the exact sum.
    let frag_a = [[small as u32 | (small as u32) << 16; 4]; 32];
    let frag_b = [[small as u32 | (small as u32) << 16; 2]; 32];
    let frag_c = [[1.0f32; 4]; 32];
    let e = iw::mma_m16n8k16_f32_f16(&frag_a, &frag_b, &frag_c);
    assert_eq!(e[0][0] as f64, exact);
    let h = tc::mma_m16n8k16_f32(&AMPERE, false, &frag_a, &frag_b, &frag_c).unwrap();
    assert_eq!(h[0][0], 1.0);
    // A product exactly on Hopper's grid (2^-12 · 2^-13 = 2^-25) survives the alignment.
    let at_grid = f16_encode(2f64.powi(-12));
    let fa = [[at_grid as u32 | (at_grid as u32) << 16; 4]; 32];
    let h = tc::mma_m16n8k16_f32(&HOPPER, false, &fa, &frag_b, &frag_c).unwrap();
    assert_eq!(h[0][0] as f64, 1.0 + 2f64.powi(-21));
}

#[test]
fn hardware_mma_f16_inputs_match_the_reference_model() {
    hw();
    let mut r = Rng::new(7001);
    let mut differs = 0;
    for _ in 0..6 {
        let a: Vec<u16> = (0..256).map(|_| f16_wide(&mut r)).collect();
        let b: Vec<u16> = (0..128).map(|_| f16_wide(&mut r)).collect();
        let c: Vec<f32> = (0..128).map(|_| f32_wide(&mut r)).collect();
        let got: Vec<f32> = run("mma_single", &a, &b, &c);
        for i in 0..16 {
            for j in 0..8 {
                let av: Vec<f64> = (0..16).map(|k| h2f(a[i * 16 + k]) as f64).collect();
                let bv: Vec<f64> = (0..16).map(|k| h2f(b[k * 8 + j]) as f64).collect();
                let want = model(&HOPPER, c[i * 8 + j] as f64, &av, &bv, -14, Acc::F32);
                let g = got[i * 8 + j];
                assert_eq!(g as f64, want, "D[{i}][{j}]");
                let exact: f64 = c[i * 8 + j] as f64 + (0..16).map(|k| av[k] * bv[k]).sum::<f64>();
                differs += (g != exact as f32) as usize;
            }
        }
    }
    assert!(
        differs > 20,
        "only {differs} of 768 outputs differ from the exact sum"
    );
}

#[test]
fn hardware_mma_bf16_f16acc_and_k8_match_the_reference_model() {
    hw();
    let mut r = Rng::new(7002);
    // bf16: exponents across a wide range, including products far below C.
    let bf = |r: &mut Rng| {
        let s = (r.u32() & 1) as u16;
        (s << 15) | ((100 + r.range(50)) as u16) << 7 | (r.u32() & 0x7f) as u16
    };
    let a: Vec<u16> = (0..256).map(|_| bf(&mut r)).collect();
    let b: Vec<u16> = (0..128).map(|_| bf(&mut r)).collect();
    let c: Vec<f32> = (0..128).map(|_| f32_wide(&mut r)).collect();
    let got: Vec<f32> = run("mma_bf16", &a, &b, &c);
    for i in 0..16 {
        for j in 0..8 {
            let av: Vec<f64> = (0..16).map(|k| bf2f(a[i * 16 + k]) as f64).collect();
            let bv: Vec<f64> = (0..16).map(|k| bf2f(b[k * 8 + j]) as f64).collect();
            let want = model(&HOPPER, c[i * 8 + j] as f64, &av, &bv, -126, Acc::F32);
            assert_eq!(got[i * 8 + j] as f64, want, "bf16 D[{i}][{j}]");
        }
    }
    // f16 accumulator: moderate magnitudes so that nothing overflows f16.
    let a: Vec<u16> = (0..256).map(|_| r.f16_bits()).collect();
    let b: Vec<u16> = (0..128).map(|_| r.f16_bits()).collect();
    let c: Vec<u16> = (0..128).map(|_| r.f16_bits()).collect();
    let got: Vec<u16> = run("mma_f16acc", &a, &b, &c);
    for i in 0..16 {
        for j in 0..8 {
            let av: Vec<f64> = (0..16).map(|k| h2f(a[i * 16 + k]) as f64).collect();
            let bv: Vec<f64> = (0..16).map(|k| h2f(b[k * 8 + j]) as f64).collect();
            let want = model(&HOPPER, h2f(c[i * 8 + j]) as f64, &av, &bv, -14, Acc::F16);
            assert_eq!(h2f(got[i * 8 + j]) as f64, want, "f16acc D[{i}][{j}]");
        }
    }
    // k8
    let a: Vec<u16> = (0..128).map(|_| f16_wide(&mut r)).collect();
    let b: Vec<u16> = (0..64).map(|_| f16_wide(&mut r)).collect();
    let c: Vec<f32> = (0..128).map(|_| f32_wide(&mut r)).collect();
    let got: Vec<f32> = run("mma_k8", &a, &b, &c);
    for i in 0..16 {
        for j in 0..8 {
            let av: Vec<f64> = (0..8).map(|k| h2f(a[i * 8 + k]) as f64).collect();
            let bv: Vec<f64> = (0..8).map(|k| h2f(b[k * 8 + j]) as f64).collect();
            let want = model(&HOPPER, c[i * 8 + j] as f64, &av, &bv, -14, Acc::F32);
            assert_eq!(got[i * 8 + j] as f64, want, "k8 D[{i}][{j}]");
        }
    }
}

/// The A100 profile (blocks of 8 chained through a truncated f32) as a pure function.
/// wgmma m64n8k16 (A and B K-major, no swizzle: 8x16-byte core matrices, K halves 1 KB
/// apart) under the hardware model: the same per-output dot product as mma.sync.
#[test]
fn hardware_wgmma_matches_the_reference_model() {
    hw();
    let mut r = Rng::new(7003);
    let a: Vec<u16> = (0..64 * 16).map(|_| f16_wide(&mut r)).collect(); // [m][k]
    let b: Vec<u16> = (0..16 * 8).map(|_| f16_wide(&mut r)).collect(); // [n][k]
    let c: Vec<f32> = (0..64 * 8).map(|_| f32_wide(&mut r)).collect(); // [m][n]
    let off = |base: u32, mn: u32, k: u32| {
        base + (mn / 8) * 128 + (k / 8) * 1024 + (mn % 8) * 16 + (k % 8) * 2
    };
    let (a_off, b_off): (Vec<u32>, Vec<u32>) = (
        (0..64 * 16).map(|i| off(0, i / 16, i % 16)).collect(),
        (0..8 * 16).map(|i| off(2048, i / 16, i % 16)).collect(),
    );
    let desc = |start: u64| (start >> 4) | (1024 >> 4) << 16 | (128 >> 4) << 32;
    // D fragment (PTX ISA, m64nNk16): thread t, register i: row 16 (t / 32) + (t % 32) / 4
    // + 8 ((i % 4) / 2), column 8 (i / 4) + 2 (t % 4) + i % 2.
    let at = |t: u32, i: u32| {
        (
            16 * (t / 32) + (t % 32) / 4 + 8 * ((i % 4) / 2),
            2 * (t % 4) + i % 2,
        )
    };
    let craw: Vec<f32> = (0..512)
        .map(|x| {
            let (m, n) = at(x / 4, x % 4);
            c[(m * 8 + n) as usize]
        })
        .collect();
    let d = Dev::new();
    let pd = d.alloc::<f32>(512);
    let m = module("wgmma", include_str!("cu/wgmma.cu"), &["-arch=sm_90a"]);
    let args = [
        Arg::Ptr(d.upload(&a)),
        Arg::Ptr(d.upload(&a_off)),
        Arg::I32(1024),
        Arg::Ptr(d.upload(&b)),
        Arg::Ptr(d.upload(&b_off)),
        Arg::I32(128),
        Arg::U64(desc(0)),
        Arg::U64(desc(2048)),
        Arg::U64(0),
        Arg::U64(0),
        Arg::Ptr(d.upload(&vec![0u32; 1024])),
        Arg::Ptr(d.upload(&craw)),
        Arg::Ptr(pd),
        Arg::I32(1 | 2 | 8),
    ];
    d.launch(&m, "wg_f16_n8_s", 1, 128, 8192, &args);
    let got = d.download::<f32>(pd, 512);
    let mut differs = 0;
    for x in 0..512u32 {
        let (i, j) = at(x / 4, x % 4);
        let av: Vec<f64> = (0..16)
            .map(|k| h2f(a[(i * 16 + k) as usize]) as f64)
            .collect();
        let bv: Vec<f64> = (0..16)
            .map(|k| h2f(b[(j * 16 + k) as usize]) as f64)
            .collect();
        let cv = c[(i * 8 + j) as usize] as f64;
        let want = model(&HOPPER, cv, &av, &bv, -14, Acc::F32);
        let g = got[x as usize];
        assert_eq!(g as f64, want, "D[{i}][{j}]");
        let exact: f64 = cv + (0..16).map(|k| av[k] * bv[k]).sum::<f64>();
        differs += (g != exact as f32) as usize;
    }
    assert!(
        differs > 20,
        "only {differs} of 512 outputs differ from the exact sum"
    );
}

#[test]
fn ampere_profile_matches_the_reference_model() {
    let mut r = Rng::new(7003);
    for _ in 0..20 {
        let mut fa = [[0u32; 4]; 32];
        let mut fb = [[0u32; 2]; 32];
        let mut fc = [[0f32; 4]; 32];
        for l in 0..32 {
            for x in fa[l].iter_mut() {
                *x = f16_wide(&mut r) as u32 | (f16_wide(&mut r) as u32) << 16;
            }
            for x in fb[l].iter_mut() {
                *x = f16_wide(&mut r) as u32 | (f16_wide(&mut r) as u32) << 16;
            }
            for x in fc[l].iter_mut() {
                *x = f32_wide(&mut r);
            }
        }
        let got = tc::mma_m16n8k16_f32(&AMPERE, false, &fa, &fb, &fc).unwrap();
        // Rebuild the matrices from the PTX ISA fragment layout.
        let mut am = [[0f64; 16]; 16];
        let mut bm = [[0f64; 8]; 16];
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            for reg in 0..4 {
                let row = g + 8 * (reg % 2);
                let col = 2 * t + 8 * (reg / 2);
                am[row][col] = h2f(fa[l][reg] as u16) as f64;
                am[row][col + 1] = h2f((fa[l][reg] >> 16) as u16) as f64;
            }
            for reg in 0..2 {
                bm[2 * t + 8 * reg][g] = h2f(fb[l][reg] as u16) as f64;
                bm[2 * t + 8 * reg + 1][g] = h2f((fb[l][reg] >> 16) as u16) as f64;
            }
        }
        for l in 0..32 {
            let (g, t) = (l / 4, l % 4);
            for i in 0..4 {
                let (row, col) = (g + 8 * (i / 2), 2 * t + i % 2);
                let bv: Vec<f64> = (0..16).map(|k| bm[k][col]).collect();
                let want = model(&AMPERE, fc[l][i] as f64, &am[row], &bv, -14, Acc::F32);
                assert_eq!(got[l][i] as f64, want, "lane {l} reg {i}");
            }
        }
    }
}

#[test]
fn non_finite_inputs_leave_the_model() {
    let inf = 0x7c00u32;
    let fa = [[inf | 0x3c00 << 16; 4]; 32];
    let fb = [[0x3c00 | 0x3c00 << 16; 2]; 32];
    assert!(tc::mma_m16n8k16_f32(&HOPPER, false, &fa, &fb, &[[0.0; 4]; 32]).is_none());
    let ones = [[0x3c00 | 0x3c00 << 16; 4]; 32];
    assert!(tc::mma_m16n8k16_f32(&HOPPER, false, &ones, &fb, &[[f32::NAN; 4]; 32]).is_none());
    // All-zero terms give +0.
    let z = tc::mma_m16n8k16_f32(&HOPPER, false, &[[0; 4]; 32], &fb, &[[-0.0; 4]; 32]).unwrap();
    assert_eq!(z[0][0].to_bits(), 0);
}

// ---- .approx ---------------------------------------------------------------------------

fn within(r: f32, y: f64, b: Bound) -> bool {
    let e = (r as f64 - y).abs();
    match b {
        Bound::Rel(x) => e <= x * y.abs(),
        Bound::Abs(x) => e <= x,
        Bound::Ulp(n) => {
            let w = (y as f32).abs();
            e <= n * (w.next_up() - w) as f64
        }
    }
}

type Case = (
    &'static str,
    fn(f32, bool) -> f32,
    fn(f32, bool) -> f32,
    fn(f64) -> f64,
    Bound,
);

#[test]
fn approximations_err_within_their_isa_bounds_and_differ_from_correct_rounding() {
    use approx::bounds as b;
    let cases: [Case; 8] = [
        (
            "ex2",
            approx::ex2_f32,
            fl::ex2_approx_f32,
            f64::exp2,
            b::EX2,
        ),
        (
            "lg2",
            approx::lg2_f32,
            fl::lg2_approx_f32,
            f64::log2,
            b::LG2,
        ),
        (
            "rcp",
            approx::rcp_f32,
            fl::rcp_approx_f32,
            |x| 1.0 / x,
            b::RCP,
        ),
        (
            "rsqrt",
            approx::rsqrt_f32,
            fl::rsqrt_approx_f32,
            |x| 1.0 / x.sqrt(),
            b::RSQRT,
        ),
        (
            "sqrt",
            approx::sqrt_f32,
            fl::sqrt_approx_f32,
            f64::sqrt,
            b::SQRT,
        ),
        (
            "sin",
            approx::sin_f32,
            fl::sin_approx_f32,
            f64::sin,
            b::SIN_COS,
        ),
        (
            "cos",
            approx::cos_f32,
            fl::cos_approx_f32,
            f64::cos,
            b::SIN_COS,
        ),
        (
            "tanh",
            approx::tanh_f32,
            fl::tanh_approx_f32,
            f64::tanh,
            b::TANH,
        ),
    ];
    let mut r = Rng::new(7004);
    for (name, hwf, exact, f, bound) in cases {
        let (mut differ, mut big) = (0, 0);
        for i in 0..20_000 {
            let x = match name {
                "ex2" => r.f32(-126.0, 127.0),
                "sin" | "cos" => r.f32(-100.0, 100.0) * std::f32::consts::PI,
                "tanh" => r.f32(-10.0, 10.0),
                "lg2" => r.f32(0.5, 2.0) * 2f32.powi(r.range(8) as i32 - 4),
                _ => r.f32(1.0, 2.0) * 2f32.powi(r.range(200) as i32 - 100),
            };
            let ftz = i % 2 == 1;
            let y = f(x as f64);
            let got = hwf(x, ftz);
            let cr = exact(x, ftz);
            if cr.is_subnormal() || cr == 0.0 {
                assert_eq!(
                    got.to_bits(),
                    cr.to_bits(),
                    "{name}({x}) subnormal/zero result"
                );
                continue;
            }
            // Where the bound is below half an ulp (lg2 of large arguments), the correctly
            // rounded value is the closest there is.
            assert!(
                within(got, y, bound) || got == cr,
                "{name}({x:e}) = {got:e}, exact {y:e}, bound {bound:?}"
            );
            assert_eq!(got, hwf(x, ftz), "{name} is deterministic");
            differ += (got != cr) as usize;
            // An error of at least a quarter of the bound exercises tolerances.
            let half = match bound {
                Bound::Rel(x) => (got as f64 - y).abs() >= x * y.abs() / 4.0,
                Bound::Abs(x) => (got as f64 - y).abs() >= x / 4.0,
                Bound::Ulp(_) => got != cr,
            };
            big += half as usize;
        }
        assert!(
            differ > 5_000,
            "{name}: only {differ} results differ from correct rounding"
        );
        assert!(
            big > 1_000,
            "{name}: only {big} results err by a quarter of the bound"
        );
    }
    // div.approx / div.full: 2 ulp.
    let mut differ = 0;
    for _ in 0..20_000 {
        let (a, d) = (
            r.f32(-8.0, 8.0),
            r.f32(0.25, 4.0) * 2f32.powi(r.range(60) as i32 - 30),
        );
        let y = a as f64 / d as f64;
        let got = approx::div_f32(a, d);
        assert!(
            within(got, y, approx::bounds::DIV),
            "{a}/{d} = {got}, exact {y}"
        );
        differ += (got != a / d) as usize;
    }
    assert!(differ > 5_000, "div: {differ}");
}

#[test]
fn approximations_keep_special_values() {
    let inf = f32::INFINITY;
    for ftz in [false, true] {
        assert_eq!(approx::ex2_f32(-inf, ftz).to_bits(), 0);
        assert_eq!(approx::ex2_f32(inf, ftz), inf);
        assert!(approx::ex2_f32(f32::NAN, ftz).is_nan());
        assert_eq!(approx::ex2_f32(0.0, ftz), 1.0);
        assert_eq!(approx::ex2_f32(-0.0, ftz), 1.0);
        assert_eq!(approx::ex2_f32(5.0, ftz), 32.0);
        assert_eq!(approx::lg2_f32(0.0, ftz), -inf);
        assert_eq!(approx::lg2_f32(-0.0, ftz), -inf);
        assert!(approx::lg2_f32(-1.0, ftz).is_nan());
        assert_eq!(approx::lg2_f32(inf, ftz), inf);
        assert_eq!(approx::lg2_f32(8.0, ftz), 3.0);
        assert_eq!(approx::rcp_f32(0.0, ftz), inf);
        assert_eq!(approx::rcp_f32(-0.0, ftz), -inf);
        assert_eq!(approx::rcp_f32(-inf, ftz).to_bits(), 0x8000_0000);
        assert_eq!(approx::rcp_f32(4.0, ftz), 0.25);
        assert_eq!(approx::rsqrt_f32(0.0, ftz), inf);
        assert_eq!(approx::rsqrt_f32(-0.0, ftz), -inf);
        assert!(approx::rsqrt_f32(-2.0, ftz).is_nan());
        assert_eq!(approx::rsqrt_f32(inf, ftz), 0.0);
        assert_eq!(approx::sqrt_f32(-0.0, ftz).to_bits(), 0x8000_0000);
        assert!(approx::sqrt_f32(-1.0, ftz).is_nan());
        assert!(approx::sin_f32(inf, ftz).is_nan());
        assert_eq!(approx::sin_f32(-0.0, ftz).to_bits(), 0x8000_0000);
        assert!(approx::cos_f32(-inf, ftz).is_nan());
        assert_eq!(approx::tanh_f32(inf, ftz), 1.0);
        assert_eq!(approx::tanh_f32(-inf, ftz), -1.0);
        assert_eq!(approx::tanh_f32(-0.0, ftz).to_bits(), 0x8000_0000);
    }
    // Subnormal results stay as the exact path gives them (flushed under .ftz).
    assert_eq!(approx::ex2_f32(-140.0, false).to_bits(), 0x0000_0200);
    assert_eq!(approx::ex2_f32(-140.0, true).to_bits(), 0);
    // Subnormal inputs are flushed under .ftz exactly as before.
    let sub = f32::from_bits(1);
    assert_eq!(approx::rcp_f32(sub, true), inf);
}

/// End to end: the `approx` kernel of float.cu in hardware mode returns the hardware-mode
/// functions' values, not the correctly rounded ones.
#[test]
fn approx_kernel_runs_the_hardware_functions() {
    hw();
    let src = include_str!("cu/float.cu");
    let m = module("float", src, &[]);
    let n = 2048;
    let mut r = Rng::new(7005);
    let x: Vec<f32> = (0..n).map(|_| r.f32(-20.0, 20.0)).collect();
    let d = Dev::new();
    let px = d.upload(&x);
    let po = d.alloc::<f32>(n * 6);
    d.launch(
        &m,
        "approx",
        (n / 128) as u32,
        128,
        0,
        &[Arg::Ptr(px), Arg::Ptr(po), Arg::I32(n as i32)],
    );
    let o = d.download::<f32>(po, n * 6);
    let mut differ = 0;
    for i in 0..n {
        assert_eq!(
            o[i * 6].to_bits(),
            approx::ex2_f32(x[i], false).to_bits(),
            "ex2({})",
            x[i]
        );
        let l = approx::lg2_f32(x[i].abs(), false);
        assert_eq!(o[i * 6 + 5].to_bits(), l.to_bits(), "lg2({})", x[i]);
        differ += (o[i * 6] != fl::ex2_approx_f32(x[i], false)) as usize;
    }
    assert!(
        differ > n / 4,
        "ex2 differs from correct rounding in only {differ} of {n}"
    );
}
