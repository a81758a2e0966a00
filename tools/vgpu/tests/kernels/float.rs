//! End to end: floating-point arithmetic (every rounding mode), approximations within their
//! documented bounds, subnormals with and without flush-to-zero, NaN handling and
//! conversions. References are computed on the host from IEEE 754 definitions (exact sums
//! in integers, then one rounding; see tests/common), never with the simulator's code.

use crate::common::*;
use Mode::*;

const SRC: &str = include_str!("../cu/float.cu");
const SUB: &str = include_str!("../cu/subnormal.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("float", SRC, &[])
}

/// Floats are equal when their bits are, or both are NaN (NaN payloads are unspecified).
fn same(got: f32, want: f32) -> bool {
    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan())
}

fn same_h(got: u16, want: u16) -> bool {
    let nan = |h: u16| h & 0x7c00 == 0x7c00 && h & 0x3ff != 0;
    got == want || (nan(got) && nan(want))
}

/// A random finite f32 with exponent in [-e, e] (so sums and fmas stay exactly summable).
fn rand_f32(r: &mut Rng, e: u32) -> f32 {
    let exp = 127 - e + r.range(2 * e + 1);
    f32::from_bits((r.u32() & 0x8000_0000) | (exp << 23) | (r.u32() & 0x7f_ffff))
}

#[test]
fn reference_arithmetic_agrees_with_host_ieee() {
    // The host references themselves, in round-to-nearest, against the host FPU.
    let mut r = Rng::new(7);
    for _ in 0..20000 {
        let (a, b, c) = (
            rand_f32(&mut r, 40),
            rand_f32(&mut r, 40),
            rand_f32(&mut r, 40),
        );
        assert_eq!(add_f32(a, b, Rn).to_bits(), (a + b).to_bits());
        assert_eq!(mul_f32(a, b, Rn).to_bits(), (a * b).to_bits());
        assert_eq!(fma_f32(a, b, c, Rn).to_bits(), a.mul_add(b, c).to_bits());
        let d = a as f64 * 1.000_000_123 + c as f64 * 1e-9;
        assert_eq!(f64_to_f32(d, Rn).to_bits(), (d as f32).to_bits());
        let i = r.u64() as i64 >> r.range(63);
        assert_eq!(int_to(i as i128, F32, Rn) as f32, i as f32);
        assert_eq!(int_to(i as i128, F64, Rn), i as f64);
        // directed modes bracket the exact value
        let (lo, hi) = (add_f32(a, b, Rd), add_f32(a, b, Ru));
        assert!(lo as f64 <= a as f64 + b as f64 && a as f64 + b as f64 <= hi as f64);
    }
    assert_eq!(f64_to_h(65519.0, Rn), 0x7bff);
    assert_eq!(f64_to_h(65520.0, Rn), 0x7c00);
    assert_eq!(f64_to_h(65520.0, Rz), 0x7bff);
    assert_eq!(f64_to_h(1.0 + 2f64.powi(-11), Rn), 0x3c00); // tie to even
    assert_eq!(f64_to_h(1.0 + 3.0 * 2f64.powi(-11), Rn), 0x3c02);
    assert_eq!(f64_to_h(2f64.powi(-24), Rn), 0x0001);
    assert_eq!(f64_to_h(-1.0 / 3.0, Rd), 0xb556);
    assert_eq!(f64_to_h(-1.0 / 3.0, Ru), 0xb555);
    for h in 0..=0xffffu16 {
        if h & 0x7c00 != 0x7c00 {
            assert_eq!(f64_to_h(h2f(h) as f64, Rz), h, "f16 round trip of {h:#x}");
        }
    }
}

#[test]
fn arithmetic_in_every_rounding_mode() {
    let mut r = Rng::new(8);
    let one = 1.0 + 2f32.powi(-12);
    // (a, b, c): fma vs mul+add differ; exact cancellation (sign of zero per mode);
    // halfway cases.
    let mut rows: Vec<(f32, f32, f32)> = vec![
        (one, one, -(1.0 + 2f32.powi(-11))),
        (1.5, -1.5, 2.25),
        (3.0, 7.0, -21.0),
        (1.0, 2f32.powi(-24), 0.5),
        (-1.0, 2f32.powi(-24) * 3.0, 0.25),
        (16777216.0, 1.0, -3.0),
    ];
    while rows.len() < 300 {
        rows.push((
            rand_f32(&mut r, 20),
            rand_f32(&mut r, 20),
            rand_f32(&mut r, 20),
        ));
    }
    let n = rows.len();
    let d = Dev::new();
    let a: Vec<f32> = rows.iter().map(|t| t.0).collect();
    let b: Vec<f32> = rows.iter().map(|t| t.1).collect();
    let c: Vec<f32> = rows.iter().map(|t| t.2).collect();
    let (pa, pb, pc) = (d.upload(&a), d.upload(&b), d.upload(&c));
    let out = d.alloc::<f32>(n * 24);
    d.launch(
        &m(),
        "float_arith",
        (n as u32).div_ceil(128),
        128,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pc),
            Arg::Ptr(out),
            Arg::I32(n as i32),
        ],
    );
    let got = d.download::<f32>(out, n * 24);
    // The fma case computed by hand: (1+2^-12)^2 = 1 + 2^-11 + 2^-24 exactly; fma keeps the
    // 2^-24, mul rounds it away (tie to even), so mul+add gives exactly 0.
    assert_eq!(got[0], 2f32.powi(-24), "fma must round once");
    assert_eq!(got[1], 0.0, "__fmul_rn + __fadd_rn round twice");
    assert_eq!(got[24 + 2].to_bits(), 0, "1.5 + -1.5 = +0 in rn");
    assert_eq!(
        got[24 + 5].to_bits(),
        (-0.0f32).to_bits(),
        "1.5 + -1.5 = -0 in rd"
    );
    for (i, &(x, y, z)) in rows.iter().enumerate() {
        let (xd, yd) = (x as f64, y as f64);
        // Division, reciprocal and square root: the f64 result is on the same side of
        // every f32 as the exact one (the exact result is either an f32 or further than
        // 2^-46 relative from all f32s), so rounding it once more is exact.
        let q = xd / yd;
        let s = xd.abs().sqrt();
        let want = [
            fma_f32(x, y, z, Rn),
            add_f32(mul_f32(x, y, Rn), z, Rn),
            add_f32(x, y, Rn),
            add_f32(x, y, Rz),
            add_f32(x, y, Ru),
            add_f32(x, y, Rd),
            mul_f32(x, y, Rn),
            mul_f32(x, y, Rz),
            mul_f32(x, y, Ru),
            mul_f32(x, y, Rd),
            add_f32(x, -y, Rn),
            f64_to_f32(q, Rn),
            f64_to_f32(q, Rz),
            f64_to_f32(q, Ru),
            f64_to_f32(q, Rd),
            f64_to_f32(1.0 / yd, Rn),
            f64_to_f32(s, Rn),
            f64_to_f32(s, Rz),
            fma_f32(x, y, z, Rz),
            fma_f32(x, y, z, Ru),
            fma_f32(x, y, z, Rd),
            add_f32(-x.abs(), y, Rn),
            x.min(y),
            x.max(z),
        ];
        for (j, w) in want.iter().enumerate() {
            let g = got[i * 24 + j];
            assert!(
                same(g, *w),
                "op {j} a={x:e} b={y:e} c={z:e}: got {g:e} ({:#x}) want {w:e} ({:#x})",
                g.to_bits(),
                w.to_bits()
            );
        }
    }
}

#[test]
fn approximations_within_documented_bounds() {
    let mut r = Rng::new(9);
    let mut x: Vec<f32> = (0..256)
        .map(|i| -100.0 + 200.0 * i as f32 / 256.0 + r.f32(0.0, 0.7))
        .collect();
    x.extend((0..64).map(|_| r.f32(-2.0, 2.0)));
    x.extend([
        1.0,
        0.5,
        2.0,
        -1.0,
        10.0,
        -126.0 / 2.0,
        3.0,
        std::f32::consts::PI,
    ]);
    for v in x.iter_mut() {
        if v.abs() < 1e-3 {
            *v = 0.75;
        }
    }
    let n = x.len();
    let d = Dev::new();
    let px = d.upload(&x);
    let out = d.alloc::<f32>(n * 6);
    d.launch(
        &m(),
        "approx",
        (n as u32).div_ceil(64),
        64,
        0,
        &[Arg::Ptr(px), Arg::Ptr(out), Arg::I32(n as i32)],
    );
    let g = d.download::<f32>(out, n * 6);
    for (i, &v) in x.iter().enumerate() {
        let vd = v as f64;
        let a = vd.abs();
        // ex2.approx.f32: PTX ISA, max 2 ulp from the correctly rounded result.
        let w = vd.exp2() as f32;
        assert!(
            ulps(g[i * 6], w) <= 2,
            "ex2.approx({v}) = {} want {w} ({} ulp)",
            g[i * 6],
            ulps(g[i * 6], w)
        );
        // __expf: CUDA guide, max 2 + floor(|1.173 x|) ulp (the x*log2(e) rounding grows
        // with |x|); only checked where e^x is a normal f32.
        if vd.abs() < 85.0 {
            let w = vd.exp() as f32;
            let bound = 2 + (1.173 * vd.abs()).floor() as u32;
            assert!(
                ulps(g[i * 6 + 1], w) <= bound,
                "__expf({v}) = {} want {w}",
                g[i * 6 + 1]
            );
        }
        // __logf: CUDA guide, absolute error <= 2^-21.41 for x in [0.5, 2], else 3 ulp.
        let w = a.ln();
        if (0.5..=2.0).contains(&a) {
            assert!(
                (g[i * 6 + 2] as f64 - w).abs() <= 2f64.powf(-21.41),
                "__logf({a}) = {} want {w}",
                g[i * 6 + 2]
            );
        } else {
            assert!(
                ulps(g[i * 6 + 2], w as f32) <= 3,
                "__logf({a}) = {} want {w}",
                g[i * 6 + 2]
            );
        }
        // rsqrtf: CUDA guide, max 2 ulp.
        let w = (1.0 / a.sqrt()) as f32;
        assert!(
            ulps(g[i * 6 + 3], w) <= 2,
            "rsqrtf({a}) = {} want {w}",
            g[i * 6 + 3]
        );
        // __sinf: CUDA guide, absolute error <= 2^-21.41 for x in [-pi, pi].
        if vd.abs() <= std::f64::consts::PI {
            assert!(
                (g[i * 6 + 4] as f64 - vd.sin()).abs() <= 2f64.powf(-21.41),
                "__sinf({v}) = {}",
                g[i * 6 + 4]
            );
        }
        // lg2.approx.f32: PTX ISA, absolute error 2^-22.6 on the significand's log (the
        // exponent adds exactly), plus one ulp for rounding a result of up to |10| to f32.
        let w = a.log2();
        let tol = 2f64.powf(-22.6) + (w.abs().max(1.0) * 2f64.powi(-23));
        assert!(
            (g[i * 6 + 5] as f64 - w).abs() <= tol,
            "lg2.approx({a}) = {} want {w}",
            g[i * 6 + 5]
        );
    }
}

#[test]
fn min_max_with_nan() {
    let nan = f32::NAN;
    let pairs = [
        (nan, 1.0f32),
        (2.0, nan),
        (nan, nan),
        (-3.0, 4.0),
        (5.0, -6.0),
        (f32::INFINITY, nan),
        (-0.5, -0.25),
    ];
    let a: Vec<f32> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f32> = pairs.iter().map(|p| p.1).collect();
    let n = pairs.len();
    let d = Dev::new();
    let (pa, pb) = (d.upload(&a), d.upload(&b));
    let out = d.alloc::<f32>(n * 4);
    d.launch(
        &m(),
        "minmax_nan",
        1,
        32,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(out),
            Arg::I32(n as i32),
        ],
    );
    let g = d.download::<f32>(out, n * 4);
    for (i, &(x, y)) in pairs.iter().enumerate() {
        // min/max.f32: a NaN operand is ignored unless both are NaN; .NaN propagates it.
        let any_nan = x.is_nan() || y.is_nan();
        let want = [
            x.min(y),
            x.max(y),
            if any_nan { nan } else { x.min(y) },
            if any_nan { nan } else { x.max(y) },
        ];
        for j in 0..4 {
            assert!(
                same(g[i * 4 + j], want[j]),
                "op {j} of ({x}, {y}): got {} want {}",
                g[i * 4 + j],
                want[j]
            );
        }
    }
}

#[test]
fn subnormals_with_and_without_ftz() {
    let tiny = 1e-39f32; // subnormal
    let min_normal = f32::MIN_POSITIVE;
    let rows = [
        (tiny, tiny),              // subnormal + subnormal = subnormal
        (1.5e-38f32, -1.4e-38f32), // normal - normal = subnormal
        (1e-20f32, 1e-20f32),      // product underflows to a subnormal
        (tiny, min_normal),        // subnormal input to a normal result
        (3e-39f32, -1.0f32),       // max picks the subnormal
        (-2e-39f32, -5e-39f32),    // negative subnormals
    ];
    assert!(rows.iter().all(|&(a, b)| a != 0.0 && b != 0.0));
    let (a, b): (Vec<f32>, Vec<f32>) = rows.iter().copied().unzip();
    let n = rows.len();
    let ptx = compile_many(&[
        ("subnormal", SUB, &[]),
        ("subnormal_ftz", SUB, &["--ftz=true"]),
    ]);
    assert!(
        ptx[1].contains(".ftz.f32") && !ptx[0].contains("mul.ftz"),
        "--ftz=true must change the PTX"
    );
    let flush = |x: f32| {
        if x != 0.0 && x.abs() < f32::MIN_POSITIVE {
            0.0f32.copysign(x)
        } else {
            x
        }
    };
    for (k, text) in ptx.iter().enumerate() {
        let ftz = k == 1;
        let module = cuda::sim::Module::load(text).unwrap_or_else(|f| panic!("load: {f}"));
        let d = Dev::new();
        let (pa, pb) = (d.upload(&a), d.upload(&b));
        let out = d.alloc::<f32>(n * 5);
        d.launch(
            &module,
            "subnormal",
            1,
            32,
            0,
            &[
                Arg::Ptr(pa),
                Arg::Ptr(pb),
                Arg::Ptr(out),
                Arg::I32(n as i32),
            ],
        );
        let g = d.download::<f32>(out, n * 5);
        for (i, &(x, y)) in rows.iter().enumerate() {
            // .ftz: subnormal inputs and results become zero of the same sign.
            let f3 = |op: fn(f32, f32) -> f32, z: bool| {
                if z {
                    flush(op(flush(x), flush(y)))
                } else {
                    op(x, y)
                }
            };
            let want = [
                f3(|p, q| p + q, ftz),
                f3(|p, q| p * q, ftz),
                f3(|p, q| p.max(q), ftz),
                f3(|p, q| p + q, true),
                f3(|p, q| p + q, false),
            ];
            for j in 0..5 {
                assert_eq!(
                    g[i * 5 + j].to_bits(),
                    want[j].to_bits(),
                    "ftz={ftz} op {j} of ({x:e}, {y:e}): got {:e} want {:e}",
                    g[i * 5 + j],
                    want[j]
                );
            }
        }
        // The subnormal results really are subnormal without ftz (the test can fail).
        if !ftz {
            assert!(g[0] != 0.0 && g[0].abs() < f32::MIN_POSITIVE);
        }
    }
}

#[test]
fn conversions_every_rounding_mode() {
    let mut r = Rng::new(10);
    let mut f: Vec<f32> = vec![
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        0.499_999_97,
        3e9,
        -3e9,
        4.294_967e9,
        5e9,
        2_147_483_520.0,
        2147483648.0,
        -2147483648.0,
        -2_147_483_904.0,
        1e20,
        -1e20,
        9.223_372e18,
        1e-40,
        -1e-40,
        65519.99,
        65520.0,
        1e5,
        -1e5,
        6e-8,
        3e-5,
        -0.7,
        1.000_000_1,
        0.333_333_34,
        16777217.0,
    ];
    let mut v: Vec<i32> = vec![
        0,
        1,
        -1,
        16777217,
        -16777217,
        16777219,
        i32::MAX,
        i32::MIN,
        33554435,
        -33554435,
    ];
    let mut l: Vec<i64> = vec![
        0,
        -1,
        i64::MAX,
        i64::MIN,
        (1 << 53) + 1,
        -(1 << 53) - 1,
        (1 << 24) + 1,
        (1 << 54) + 3,
    ];
    let mut dd: Vec<f64> = vec![
        f64::NAN,
        1e300,
        -1e300,
        1e-50,
        -1e-50,
        2.5,
        -2.5,
        3.402_823_567_797_336_6e38,
        1.0 + 2f64.powi(-24),
        1.0 + 3.0 * 2f64.powi(-24),
        -(1.0 + 2f64.powi(-24)),
        3e9,
        -3e9,
    ];
    let mut h: Vec<u16> = vec![
        0x0001, 0x8001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x3c00, 0xc000, 0x0000, 0x8000,
    ];
    let n = 200usize;
    while f.len() < n {
        f.push(match f.len() % 3 {
            0 => r.f32(-1e3, 1e3),
            1 => r.f32(-3e9, 3e9),
            _ => rand_f32(&mut r, 40),
        });
    }
    while v.len() < n {
        v.push(r.u32() as i32 >> r.range(8));
    }
    while l.len() < n {
        l.push(r.u64() as i64 >> r.range(40));
    }
    while dd.len() < n {
        dd.push(f64::from_bits(
            (r.u64() & 0x800f_ffff_ffff_ffff) | ((1023 - 60 + r.range(120) as u64) << 52),
        ));
    }
    while h.len() < n {
        h.push(r.u32() as u16);
    }
    let d = Dev::new();
    let ptrs = [
        d.upload(&f),
        d.upload(&dd),
        d.upload(&v),
        d.upload(&l),
        d.upload(&h),
    ];
    let (o32, o64) = (d.alloc::<u32>(n * 40), d.alloc::<u64>(n * 10));
    let mut args: Vec<Arg> = ptrs.iter().map(|&p| Arg::Ptr(p)).collect();
    args.extend([Arg::Ptr(o32), Arg::Ptr(o64), Arg::I32(n as i32)]);
    d.launch(&m(), "conversions", 4, 64, 0, &args);
    let g = d.download::<u32>(o32, n * 40);
    let g64 = d.download::<u64>(o64, n * 10);
    let fb = |x: f64| (x as f32).to_bits();
    for i in 0..n {
        let (x, xd, vi, li, di, hi) = (f[i], f[i] as f64, v[i], l[i], dd[i], h[i]);
        // Float -> int: round to an integer in the mode, then clamp to the destination range;
        // NaN -> 0 (PTX: float-to-integer conversions saturate). Rust's `as` does the same.
        let rn = xd.round_ties_even();
        let fh = |m: Mode| if x.is_nan() { 0x7e00 } else { f64_to_h(xd, m) };
        let pack = |lo: u16, hi: u16| (hi as u32) << 16 | lo as u32;
        let hv = f64_to_h(vi as f32 as f64, Rn); // (float)v is exact for |v| < 2^24, else rn
        let want: [u32; 40] = [
            rn as i32 as u32,
            xd.trunc() as i32 as u32,
            xd.ceil() as i32 as u32,
            xd.floor() as i32 as u32,
            rn as u32,
            xd.trunc() as u32,
            xd.ceil() as u32,
            xd.floor() as u32,
            fb(int_to(vi as i128, F32, Rn)),
            fb(int_to(vi as i128, F32, Rz)),
            fb(int_to(vi as i128, F32, Ru)),
            fb(int_to(vi as i128, F32, Rd)),
            fb(int_to(vi as u32 as i128, F32, Rn)),
            fb(int_to(vi as u32 as i128, F32, Rz)),
            fb(int_to(vi as u32 as i128, F32, Ru)),
            fb(int_to(vi as u32 as i128, F32, Rd)),
            fh(Rn) as u32,
            fh(Rz) as u32,
            fh(Ru) as u32,
            fh(Rd) as u32,
            h2f(hi).to_bits(),
            // __floats2half2_rn(a, b): a in the LOW half (CUDA header: mov.b32 %0, {low,high})
            pack(fh(Rn), hv),
            // __float22half2_rn(make_float2(v, f)): .x low
            pack(hv, fh(Rn)),
            // cvt.rn.f16x2.f32 d, a, b: a in the UPPER half (PTX ISA)
            pack(hv, fh(Rn)),
            f64_to_f32(di, Rn).to_bits(),
            f64_to_f32(di, Rz).to_bits(),
            f64_to_f32(di, Ru).to_bits(),
            f64_to_f32(di, Rd).to_bits(),
            di.round_ties_even() as i32 as u32,
            di.trunc() as i32 as u32,
            fb(int_to(li as i128, F32, Rn)),
            fb(int_to(li as i128, F32, Rz)),
            fb(int_to(li as i128, F32, Ru)),
            fb(int_to(li as i128, F32, Rd)),
            x.round_ties_even().to_bits(),
            x.trunc().to_bits(),
            x.ceil().to_bits(),
            x.floor().to_bits(),
            if x.is_nan() {
                0
            } else {
                x.clamp(0.0, 1.0).to_bits()
            },
            if x.is_nan() {
                0x7fc0
            } else {
                f64_to_bf16(xd, Rn) as u32
            },
        ];
        for (j, w) in want.iter().enumerate() {
            let gv = g[i * 40 + j];
            let ok = match j {
                16..=19 => same_h(gv as u16, *w as u16) && gv >> 16 == 0,
                21..=23 => {
                    same_h(gv as u16, *w as u16) && same_h((gv >> 16) as u16, (*w >> 16) as u16)
                }
                20 | 24..=27 | 30..=37 => same(f32::from_bits(gv), f32::from_bits(*w)),
                // the sign of a saturated -0.0 is not specified: compare values
                38 => f32::from_bits(gv) == f32::from_bits(*w),
                39 => gv == *w || (x.is_nan() && gv & 0x7f80 == 0x7f80 && gv & 0x7f != 0),
                _ => gv == *w,
            };
            assert!(
                ok,
                "conversion {j}: f={x:e} d={di:e} v={vi} l={li} h={hi:#x}: got {gv:#x} want {w:#x}"
            );
        }
        let w64: [u64; 10] = [
            rn as i64 as u64,
            xd.trunc() as i64 as u64,
            xd.ceil() as i64 as u64,
            xd.floor() as i64 as u64,
            xd.trunc() as u64,
            xd.to_bits(),
            int_to(li as i128, F64, Rn).to_bits(),
            int_to(li as i128, F64, Rz).to_bits(),
            (vi as f64).to_bits(),
            di.mul_add(xd, 1.0).to_bits(),
        ];
        for (j, w) in w64.iter().enumerate() {
            let gv = g64[i * 10 + j];
            let ok = gv == *w
                || ((j == 5 || j == 9)
                    && f64::from_bits(gv).is_nan()
                    && f64::from_bits(*w).is_nan());
            assert!(
                ok,
                "64-bit conversion {j}: f={x:e} d={di:e} l={li}: got {gv:#x} want {w:#x}"
            );
        }
    }
}

/// erf in f64 by its Taylor series (|x| <= 3: terms peak near 3e3, so about 1e-12 relative
/// accuracy, far below an f32 ulp).
fn erf(x: f64) -> f64 {
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn ulps64(a: f64, b: f64) -> u64 {
    let key = |x: f64| {
        let i = x.to_bits() as i64;
        if i < 0 {
            i64::MIN.wrapping_sub(i) as i128
        } else {
            i as i128
        }
    };
    (key(a) - key(b)).unsigned_abs() as u64
}

#[test]
fn standard_math_functions_within_cuda_ulp_bounds() {
    let mut r = Rng::new(11);
    let n = 384usize;
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            if i % 8 == 0 {
                r.f32(-3.0, 3.0)
            } else {
                r.f32(-10.0, 10.0)
            }
        })
        .collect();
    // every fifth y is large, so that sinf/cosf of x*y also take the slow (Payne-Hanek,
    // local-memory) argument reduction above |x*y| = 105615
    let mut y: Vec<f32> = (0..n)
        .map(|i| {
            if i % 5 == 0 {
                r.f32(5e3, 3e4)
            } else {
                r.f32(-4.0, 4.0)
            }
        })
        .collect();
    x[0] = 0.5;
    y[0] = 2.0;
    for v in x.iter_mut().chain(y.iter_mut()) {
        if v.abs() < 1e-3 {
            *v = 0.25;
        }
    }
    assert!((0..n).filter(|&i| (x[i] * y[i]).abs() > 105615.0).count() > 10);
    let d = Dev::new();
    let (px, py) = (d.upload(&x), d.upload(&y));
    let (out, out64) = (d.alloc::<f32>(n * 12), d.alloc::<f64>(n * 3));
    let args = [
        Arg::Ptr(px),
        Arg::Ptr(py),
        Arg::Ptr(out),
        Arg::Ptr(out64),
        Arg::I32(n as i32),
    ];
    // __launch_bounds__(128): a larger block is refused
    let f = d
        .try_launch(&m(), "math_lib", 1, 256, 0, &args)
        .expect_err(".maxntid 128 must refuse 256 threads");
    assert_eq!(f.kind, cuda::sim::FaultKind::InvalidValue, "{f}");
    d.launch(&m(), "math_lib", (n as u32).div_ceil(128), 128, 0, &args);
    let g = d.download::<f32>(out, n * 12);
    let g64 = d.download::<f64>(out64, n * 3);
    let normal = |v: f64| v.abs() >= f32::MIN_POSITIVE as f64 && v.abs() <= f32::MAX as f64;
    for i in 0..n {
        let (a, b) = (x[i], y[i]);
        let (ad, bd) = (a as f64, b as f64);
        let p = (a * b) as f64; // the kernel's f32 product
                                // (index, exact value, max ulp per the CUDA C++ Programming Guide's table of
                                // single-precision functions; 0 = correctly rounded)
        let checks: [(usize, f64, u32); 12] = [
            (0, ad.exp(), 2),
            (1, ad.exp2(), 2),
            (2, ad.abs().ln(), 1),
            (3, if ad.abs() <= 3.0 { erf(ad) } else { f64::NAN }, 2),
            (4, ad.tanh(), 2),
            (5, p.sin(), 2),
            (6, p.cos(), 2),
            (7, ad.abs().powf(bd), 4),
            (8, ad.abs().sqrt(), 0),
            (9, ad / bd, 0),
            (10, 1.0 / bd, 0),
            (11, ad.atan2(bd), 3),
        ];
        for (j, exact, bound) in checks {
            if !normal(exact) {
                continue; // outside the normal f32 range (or not checked)
            }
            let want = exact as f32;
            let got = g[i * 12 + j];
            assert!(
                ulps(got, want) <= bound,
                "function {j} at x={a} y={b}: got {got:e} want {want:e} ({} ulp > {bound})",
                ulps(got, want)
            );
        }
        // f64: division and square root are correctly rounded; exp within 1 ulp (CUDA
        // guide) plus 1 for the host's exp.
        let q = (ad * 1.1) / bd;
        assert_eq!(g64[i * 3], q, "f64 div at x={a} y={b}");
        assert_eq!(g64[i * 3 + 1], (ad * 3.3).abs().sqrt(), "f64 sqrt at x={a}");
        assert!(
            ulps64(g64[i * 3 + 2], ad.exp()) <= 2,
            "f64 exp({a}) = {} want {}",
            g64[i * 3 + 2],
            ad.exp()
        );
    }
}
