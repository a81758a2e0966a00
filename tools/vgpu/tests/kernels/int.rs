//! End to end: integer arithmetic, bit operations and comparisons compiled by nvcc, run on
//! the simulator, checked against host values computed from the PTX ISA definitions.
//! Integer results are exact: every comparison is `==`.

use crate::common::*;

const SRC: &str = include_str!("../cu/int.cu");

fn m() -> std::sync::Arc<cuda::sim::Module> {
    module("int", SRC, &[])
}

/// Operand pairs: corner cases first, then random values (never all zero).
fn pairs32(n: usize, seed: u64) -> (Vec<i32>, Vec<i32>, Vec<i32>) {
    let corners: [(i32, i32); 12] = [
        (i32::MIN, 1),
        (i32::MIN, 2),
        (i32::MAX, -1),
        (-7, 2),
        (7, -2),
        (-7, -2),
        (0, 5),
        (-1, -1),
        (i32::MAX, i32::MAX),
        (i32::MIN, i32::MAX),
        (123456789, -3),
        (-1, 0x7fff_ffff),
    ];
    let mut r = Rng::new(seed);
    let (mut a, mut b, mut c) = (vec![], vec![], vec![]);
    for i in 0..n {
        let (x, mut y) = if i < corners.len() {
            corners[i]
        } else if i % 3 == 0 {
            (
                r.u32() as i32 >> r.range(31),
                (r.u32() as i32) >> r.range(31),
            )
        } else {
            (r.u32() as i32, r.u32() as i32)
        };
        if y == 0 || (x == i32::MIN && y == -1) {
            y = 3; // division by zero / overflow is unspecified in PTX: not tested
        }
        a.push(x);
        b.push(y);
        c.push(r.u32() as i32);
    }
    (a, b, c)
}

/// PTX prmt.b32 default mode: byte i of d is byte (s_i & 7) of {b, a}, sign-replicated
/// when bit 3 of the nibble is set.
fn prmt(a: u32, b: u32, sel: u32) -> u32 {
    let src = ((b as u64) << 32) | a as u64;
    let mut d = 0u32;
    for i in 0..4 {
        let s = (sel >> (4 * i)) & 0xf;
        let byte = (src >> (8 * (s & 7))) as u8;
        let v = if s & 8 != 0 {
            if byte & 0x80 != 0 {
                0xff
            } else {
                0
            }
        } else {
            byte
        };
        d |= (v as u32) << (8 * i);
    }
    d
}

#[test]
fn int32_arithmetic_and_bit_ops() {
    let n = 200usize;
    let (a, b, c) = pairs32(n, 1);
    let d = Dev::new();
    let (pa, pb, pc) = (d.upload(&a), d.upload(&b), d.upload(&c));
    let out = d.alloc::<i32>(n * 28);
    d.launch(
        &m(),
        "int32_ops",
        4,
        64,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pc),
            Arg::Ptr(out),
            Arg::I32(n as i32),
        ],
    );
    let got = d.download::<i32>(out, n * 28);
    for i in 0..n {
        let (x, y, z) = (a[i], b[i], c[i]);
        let (ux, uy, uz) = (x as u32, y as u32, z as u32);
        let fsl = |n: u32| -> u32 {
            let v = ((uy as u64) << 32) | ux as u64;
            if n == 0 {
                uy
            } else {
                (v << n >> 32) as u32
            }
        };
        let want: [i32; 28] = [
            x.wrapping_add(y),
            x.wrapping_sub(y),
            x.wrapping_mul(y),
            ((x as i64 * y as i64) >> 32) as i32,
            ((ux as u64 * uy as u64) >> 32) as i32,
            x.wrapping_mul(y).wrapping_add(z),
            x / y, // truncates toward zero, as div.s32
            x % y, // sign of the dividend, as rem.s32
            (ux / uy) as i32,
            (ux % uy) as i32,
            x.min(y),
            x.max(y),
            ux.min(uy) as i32,
            ux.max(uy) as i32,
            x & y,
            x | y,
            x ^ y,
            !x,
            x.wrapping_neg(),
            x.wrapping_abs(), // abs(INT_MIN) = INT_MIN in two's complement
            ux.count_ones() as i32,
            ux.leading_zeros() as i32,
            ux.reverse_bits() as i32,
            if x == 0 {
                0
            } else {
                ux.trailing_zeros() as i32 + 1
            },
            prmt(ux, uy, uz & 0x7777) as i32, // __byte_perm uses 3 bits per selector
            fsl(uz & 31) as i32,
            ((((uy as u64) << 32 | ux as u64) >> (uz & 31)) as u32) as i32,
            fsl(uz.min(32)) as i32,
        ];
        for (j, w) in want.iter().enumerate() {
            assert_eq!(
                got[i * 28 + j],
                *w,
                "op {j} a={x} b={y} c={z:#x} (thread {i})"
            );
        }
    }
}

#[test]
fn int64_and_wide_ops() {
    let n = 150usize;
    let mut r = Rng::new(2);
    let (a32, b32, _) = pairs32(n, 3);
    let mut a = vec![];
    let mut b = vec![];
    for i in 0..n {
        let (x, mut y): (i64, i64) = match i {
            0 => (i64::MIN, 3),
            1 => (-17, 5),
            2 => (17, -5),
            3 => (i64::MAX, i64::MAX),
            4 => (-1, -1),
            5 => (1 << 40, 123), // takes a 64-bit division path
            6 => (1000, 7),      // fits in 32 bits: nvcc's 32-bit fast path
            _ if i % 2 == 0 => (r.u64() as i64 >> r.range(63), r.u64() as i64 >> r.range(63)),
            _ => (r.u64() as i64, r.u64() as i64),
        };
        if y == 0 || (x == i64::MIN && y == -1) {
            y = 7;
        }
        a.push(x);
        b.push(y);
    }
    let d = Dev::new();
    let (pa, pb, pa32, pb32) = (d.upload(&a), d.upload(&b), d.upload(&a32), d.upload(&b32));
    let out = d.alloc::<i64>(n * 16);
    d.launch(
        &m(),
        "int64_ops",
        5,
        32,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pa32),
            Arg::Ptr(pb32),
            Arg::Ptr(out),
            Arg::I32(n as i32),
        ],
    );
    let got = d.download::<i64>(out, n * 16);
    for i in 0..n {
        let (x, y) = (a[i], b[i]);
        let (ux, uy) = (x as u64, y as u64);
        let want: [i64; 16] = [
            x.wrapping_add(y),
            x.wrapping_sub(y),
            x.wrapping_mul(y),
            ((x as i128 * y as i128) >> 64) as i64,
            ((ux as u128 * uy as u128) >> 64) as i64,
            a32[i] as i64 * b32[i] as i64,
            (a32[i] as u32 as u64 * b32[i] as u32 as u64) as i64,
            x / y,
            x % y,
            (ux / uy) as i64,
            (ux % uy) as i64,
            ux.count_ones() as i64,
            ux.leading_zeros() as i64,
            ux.reverse_bits() as i64,
            x.min(y),
            ux.max(uy) as i64,
        ];
        for (j, w) in want.iter().enumerate() {
            assert_eq!(got[i * 16 + j], *w, "op {j} a={x} b={y} (thread {i})");
        }
    }
}

#[test]
fn shifts_clamp_amounts_at_the_width() {
    let n = 128usize;
    let mut r = Rng::new(4);
    let a: Vec<u32> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                r.u32() | 0x8000_0000
            } else {
                r.u32() & 0x7fff_ffff
            }
        })
        .collect();
    // amounts 0..=63 twice, plus large ones
    let s: Vec<u32> = (0..n as u32)
        .map(|i| {
            if i < 64 {
                i
            } else if i < 120 {
                r.range(64)
            } else {
                100 + i
            }
        })
        .collect();
    let d = Dev::new();
    let (pa, ps) = (d.upload(&a), d.upload(&s));
    let (o32, o64) = (d.alloc::<u32>(n * 3), d.alloc::<u64>(n * 3));
    d.launch(
        &m(),
        "shifts",
        2,
        64,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(ps),
            Arg::Ptr(o32),
            Arg::Ptr(o64),
            Arg::I32(n as i32),
        ],
    );
    let g32 = d.download::<u32>(o32, n * 3);
    let g64 = d.download::<u64>(o64, n * 3);
    for i in 0..n {
        let (x, sh) = (a[i], s[i]);
        let x64 = ((x as u64) << 32) | (x ^ 0x5a5a_5a5a) as u64;
        // PTX: shift amounts greater than the width are clamped to the width.
        let s32 = sh.min(32);
        let s64 = sh.min(64);
        let w32 = [
            if s32 == 32 { 0 } else { x << s32 },
            if s32 == 32 { 0 } else { x >> s32 },
            ((x as i32) >> s32.min(31)) as u32,
        ];
        let w64 = [
            if s64 == 64 { 0 } else { x64 << s64 },
            if s64 == 64 { 0 } else { x64 >> s64 },
            ((x64 as i64) >> s64.min(63)) as u64,
        ];
        assert_eq!(
            &g32[i * 3..i * 3 + 3],
            &w32,
            "32-bit shifts of {x:#x} by {sh}"
        );
        assert_eq!(
            &g64[i * 3..i * 3 + 3],
            &w64,
            "64-bit shifts of {x64:#x} by {sh}"
        );
    }
}

/// bfe per the PTX ISA pseudocode (msb = width-1; pos, len taken mod 256).
fn bfe(a: u64, pos: u32, len: u32, bits: u32, signed: bool) -> u64 {
    let msb = bits - 1;
    let (pos, len) = (pos & 0xff, len & 0xff);
    let bit = |i: u32| (a >> i) & 1;
    let sbit = if !signed || len == 0 {
        0
    } else {
        bit((pos + len - 1).min(msb))
    };
    let mut d = 0u64;
    for i in 0..=msb {
        let v = if i < len && pos + i <= msb {
            bit(pos + i)
        } else {
            sbit
        };
        d |= v << i;
    }
    d
}

fn bfi(a: u32, b: u32, pos: u32, len: u32) -> u32 {
    let (pos, len) = (pos & 0xff, len & 0xff);
    let mut f = b;
    let mut i = 0;
    while i < len && pos + i <= 31 {
        f = (f & !(1 << (pos + i))) | (((a >> i) & 1) << (pos + i));
        i += 1;
    }
    f
}

/// bfind: position of the most significant non-sign bit, 0xffffffff if none.
fn bfind(a: u32, signed: bool) -> u32 {
    let v = if signed && (a as i32) < 0 { !a } else { a };
    if v == 0 {
        u32::MAX
    } else {
        31 - v.leading_zeros()
    }
}

#[test]
fn bit_field_extract_insert_find_and_prmt() {
    let n = 160usize;
    let mut r = Rng::new(5);
    let mut a = vec![];
    let mut b = vec![];
    let mut p = vec![];
    let mut l = vec![];
    for i in 0..n {
        a.push(match i {
            0 => 0,
            1 => u32::MAX,
            2 => 1,
            3 => 0x8000_0000,
            4 => 0x7fff_ffff,
            _ => r.u32() >> r.range(32),
        });
        b.push(r.u32());
        // positions/lengths straddling the end of the word, and some >= 256 (taken mod 256)
        p.push(if i < 40 {
            i as u32
        } else if i % 7 == 0 {
            256 + r.range(40)
        } else {
            r.range(40)
        });
        l.push(if i % 5 == 0 {
            0
        } else if i % 11 == 0 {
            300
        } else {
            r.range(40)
        });
    }
    let d = Dev::new();
    let (pa, pb, pp, pl) = (d.upload(&a), d.upload(&b), d.upload(&p), d.upload(&l));
    let out = d.alloc::<u32>(n * 14);
    d.launch(
        &m(),
        "bitfield",
        3,
        64,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(pb),
            Arg::Ptr(pp),
            Arg::Ptr(pl),
            Arg::Ptr(out),
            Arg::I32(n as i32),
        ],
    );
    let got = d.download::<u32>(out, n * 14);
    // lop3: bit k of the LUT is the result for (a, b, c) bits with k = a<<2 | b<<1 | c
    let lop3 = |a: u32, b: u32, c: u32, lut: u32| -> u32 {
        (0..32).fold(0, |d, i| {
            let k = ((a >> i) & 1) << 2 | ((b >> i) & 1) << 1 | ((c >> i) & 1);
            d | ((lut >> k) & 1) << i
        })
    };
    // mul24: the product of the low 24 bits (sign-extended for .s32), 48 bits wide; .lo
    // keeps bits 0..31, .hi bits 16..47.
    let s24 = |v: u32| ((v << 8) as i32 >> 8) as i64;
    for i in 0..n {
        let (x, y, ps, ln) = (a[i], b[i], p[i], l[i]);
        let c3 = ps.wrapping_mul(0x9e37_79b9);
        let x64 = ((y as u64) << 32) | x as u64;
        let e64 = bfe(x64, ps, ln, 64, false);
        let bf = bfind(x, false);
        let want = [
            bfe(x as u64, ps, ln, 32, false) as u32,
            bfe(x as u64, ps, ln, 32, true) as u32,
            bfi(x, y, ps, ln),
            bf,
            bfind(x, true),
            if bf == u32::MAX { u32::MAX } else { 31 - bf },
            (e64 ^ (e64 >> 32)) as u32,
            prmt(x, y, (x ^ y) & 0xffff),
            lop3(x, y, c3, 0x96),
            lop3(x, y, c3, 0xe8),
            lop3(x, y, c3, 0xca),
            ((x & 0xff_ffff) as u64 * (y & 0xff_ffff) as u64) as u32,
            ((s24(x) * s24(y)) >> 16) as u32,
            x.abs_diff(y).wrapping_add(ps),
        ];
        assert_eq!(lop3(x, y, c3, 0x96), x ^ y ^ c3); // the LUT convention itself
        for (j, w) in want.iter().enumerate() {
            assert_eq!(
                got[i * 14 + j],
                *w,
                "op {j} a={x:#x} b={y:#x} pos={ps} len={ln}"
            );
        }
    }
}

#[test]
fn setp_every_comparison_and_selp() {
    let n = 96usize;
    let mut r = Rng::new(6);
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        2.5,
    ];
    let (mut a, mut b, mut x, mut y, mut la, mut lb) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        // equal pairs, sign-differing pairs and random pairs
        let (p, q) = match i % 4 {
            0 => {
                let v = r.u32() as i32;
                (v, v)
            }
            1 => (-(r.range(100) as i32) - 1, r.range(100) as i32),
            _ => (r.u32() as i32, r.u32() as i32),
        };
        a.push(p);
        b.push(q);
        let (f, g) = if i < 64 {
            (specials[i % 8], specials[i / 8])
        } else {
            (
                r.f32(-4.0, 4.0),
                if i % 3 == 0 {
                    f32::NAN
                } else {
                    r.f32(-4.0, 4.0)
                },
            )
        };
        x.push(f);
        y.push(g);
        la.push(if i % 4 == 0 {
            p as i64 * 3
        } else {
            (r.u64() as i64) >> r.range(60)
        });
        lb.push(if i % 4 == 0 {
            p as i64 * 3
        } else {
            (r.u64() as i64) >> r.range(60)
        });
    }
    let d = Dev::new();
    let ptrs = [
        d.upload(&a),
        d.upload(&b),
        d.upload(&x),
        d.upload(&y),
        d.upload(&la),
        d.upload(&lb),
    ];
    let out = d.alloc::<u32>(n * 3);
    let mut args: Vec<Arg> = ptrs.iter().map(|&p| Arg::Ptr(p)).collect();
    args.extend([Arg::Ptr(out), Arg::I32(n as i32)]);
    d.launch(&m(), "compares", 2, 64, 0, &args);
    let got = d.download::<u32>(out, n * 3);
    let fbits = |f: f64, g: f64| -> u32 {
        let un = f.is_nan() || g.is_nan();
        let ord = [f == g, f != g && !un, f < g, f <= g, f > g, f >= g];
        let mut v = 0u32;
        for (k, &o) in ord.iter().enumerate() {
            v |= (o as u32) << k;
            // the unordered variant: true also when either operand is NaN
            v |= ((o || un) as u32) << (k + 6);
        }
        v | ((!un as u32) << 12) | ((un as u32) << 13)
    };
    for i in 0..n {
        let (p, q) = (a[i], b[i]);
        let (up, uq) = (p as u32, q as u32);
        let (lp, lq) = (la[i], lb[i]);
        let ints = [
            p == q,
            p != q,
            p < q,
            p <= q,
            p > q,
            p >= q,
            up < uq,
            up <= uq,
            up > uq,
            up >= uq,
            lp < lq,
            (lp as u64) < (lq as u64),
            lp >= lq,
            (lp as u64) >= (lq as u64),
        ];
        let wi = ints
            .iter()
            .enumerate()
            .fold(0u32, |v, (k, &t)| v | ((t as u32) << k));
        let (f, g) = (x[i], y[i]);
        let wf = fbits(f as f64, g as f64);
        let c1 = p & 1 != 0;
        let c2 = q & 1 != 0;
        let gtu = !(f <= g); // gtu: greater than, or unordered
        let combo = ((p < q && c1) as u32) << 24
            | ((p >= q && c1) as u32) << 25
            | ((gtu || c2) as u32) << 26
            | ((!gtu || c2) as u32) << 27;
        let extra = combo
            | ((p < q) as u32) << 20
            | ((up < uq) as u32) << 21
            | ((f < g) as u32) << 22
            | ((!(f >= g)) as u32) << 23;
        assert_eq!(
            got[i * 3],
            wi,
            "integer compares of {p}, {q} / {lp}, {lq}: {:#b} vs {wi:#b}",
            got[i * 3]
        );
        assert_eq!(
            got[i * 3 + 1],
            wf,
            "f32 compares of {f}, {g}: {:#b} vs {wf:#b}",
            got[i * 3 + 1]
        );
        assert_eq!(
            got[i * 3 + 2],
            wf | extra,
            "f64 compares + selects of {f}, {g}: {:#b} vs {:#b}",
            got[i * 3 + 2],
            wf | extra
        );
    }
}

#[test]
fn narrowing_and_widening_conversions() {
    let n = 128usize;
    let mut r = Rng::new(7);
    let mut a: Vec<i32> = vec![
        0,
        -1,
        127,
        128,
        -128,
        -129,
        255,
        256,
        32767,
        32768,
        -32768,
        -32769,
        65535,
        i32::MIN,
        i32::MAX,
    ];
    while a.len() < n {
        a.push(r.u32() as i32 >> r.range(32));
    }
    let d = Dev::new();
    let pa = d.upload(&a);
    let (out, out64) = (d.alloc::<i32>(n * 10), d.alloc::<i64>(n * 2));
    d.launch(
        &m(),
        "narrow",
        2,
        64,
        0,
        &[
            Arg::Ptr(pa),
            Arg::Ptr(out),
            Arg::Ptr(out64),
            Arg::I32(n as i32),
        ],
    );
    let g = d.download::<i32>(out, n * 10);
    let g64 = d.download::<i64>(out64, n * 2);
    for (i, &x) in a.iter().enumerate() {
        // PTX ISA 6.5.1 (note 1): chop (or saturate), then extend to the register width by
        // the destination format's signedness; float-to-int clamps to the format's range.
        let want = [
            x as i8 as i32,
            x as u8 as i32,
            x as i16 as i32,
            x as u16 as i32,
            x.clamp(-128, 127),
            x.clamp(0, 255),
            x.clamp(-32768, 32767),
            x.max(0),
            x as i8 as i32,
            ((x as f32 * 0.37) as f64).trunc().clamp(-32768.0, 32767.0) as i32,
        ];
        assert_eq!(&g[i * 10..i * 10 + 10], &want, "a={x}");
        assert_eq!(
            &g64[i * 2..i * 2 + 2],
            &[x as i64, x as u32 as i64],
            "a={x}"
        );
    }
}
