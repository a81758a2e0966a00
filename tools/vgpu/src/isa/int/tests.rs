//! Hand-computed cases from the ISA's pseudo-code and tables.

use super::*;
use CmpOp::*;
use Ty::*;

const M1_32: u64 = 0xffff_ffff; // -1 as s32

#[test]
fn add_sub_sat_carry() {
    assert_eq!(add(S32, 0x7fff_ffff, 1, false), 0x8000_0000);
    assert_eq!(add(S32, 0x7fff_ffff, 1, true), 0x7fff_ffff);
    assert_eq!(add(S32, 0x8000_0000, M1_32, true), 0x8000_0000);
    assert_eq!(sub(S32, 0x8000_0000, 1, true), 0x8000_0000);
    assert_eq!(sub(S32, 0x7fff_fffe, M1_32, true), 0x7fff_ffff);
    assert_eq!(add(U16, 0xffff, 2, false), 1);
    assert_eq!(sub(U32, 0, 1, false), 0xffff_ffff);
    assert_eq!(add(U64, u64::MAX, 1, false), 0);
    // Upper garbage is ignored and the result has zero upper bits.
    assert_eq!(add(S16, 0xdead_0001, 0xbeef_ffff, false), 0);
    assert_eq!(add_cc(U32, 0xffff_ffff, 1, false), (0, true));
    assert_eq!(add_cc(U32, 0xffff_fffe, 1, true), (0, true));
    assert_eq!(add_cc(U32, 5, 6, true), (12, false));
    assert_eq!(add_cc(U64, u64::MAX, u64::MAX, true), (u64::MAX, true));
    assert_eq!(sub_cc(U32, 0, 1, false), (0xffff_ffff, true));
    assert_eq!(sub_cc(U32, 5, 5, true), (0xffff_ffff, true));
    assert_eq!(sub_cc(U32, 5, 4, true), (0, false));
    // 64-bit add via two 32-bit halves: 0x1_ffff_ffff + 1.
    let (lo, c) = add_cc(U32, 0xffff_ffff, 1, false);
    let (hi, _) = add_cc(U32, 1, 0, c);
    assert_eq!((hi, lo), (2, 0));
}

#[test]
fn multiply_family() {
    assert_eq!(mul_lo(S32, M1_32, 3), 0xffff_fffd);
    assert_eq!(mul_hi(S32, M1_32, 3), M1_32); // -3 >> 32 = -1
    assert_eq!(mul_hi(U32, M1_32, 3), 2);
    assert_eq!(mul_hi(U64, u64::MAX, u64::MAX), u64::MAX - 1);
    assert_eq!(mul_hi(S64, u64::MAX, u64::MAX), 0); // (-1)*(-1) = 1
    assert_eq!(mul_hi(S64, 1 << 62, 4), 1);
    assert_eq!(mul_lo(U64, u64::MAX, u64::MAX), 1);
    assert_eq!(mul_wide(S32, M1_32, 2), (-2i64) as u64);
    assert_eq!(mul_wide(U32, M1_32, 2), 0x1_ffff_fffe);
    assert_eq!(mul_wide(S16, 0xffff, 0xffff), 1);
    assert_eq!(mul_wide(U16, 0xffff, 0xffff), 0xfffe_0001);
    assert_eq!(mad_lo(S32, 3, 4, M1_32), 11);
    assert_eq!(mad_hi(U32, 0x8000_0000, 4, 1), 3);
    assert_eq!(mad_wide(U32, M1_32, M1_32, 1), 0xffff_fffe_0000_0002);
    assert_eq!(mad_wide(S32, M1_32, 1, 0), u64::MAX);
    assert_eq!(
        mad_hi_sat_s32(0x7fff_ffff, 0x7fff_ffff, 0x7fff_ffff),
        0x7fff_ffff
    );
}

#[test]
fn division() {
    assert_eq!(div(S32, (-7i32) as u32 as u64, 2), (-3i32) as u32 as u64);
    assert_eq!(rem(S32, (-7i32) as u32 as u64, 2), M1_32);
    assert_eq!(rem(S32, 7, (-2i32) as u32 as u64), 1);
    assert_eq!(div(U32, 7, 2), 3);
    assert_eq!(div(U32, 7, 0), 0xffff_ffff);
    assert_eq!(div(S32, 7, 0), M1_32);
    assert_eq!(div(U64, 7, 0), u64::MAX);
    assert_eq!(rem(U32, 7, 0), 7);
    assert_eq!(rem(S16, 0xfff9, 0), 0xfff9);
    assert_eq!(div(S32, 0x8000_0000, M1_32), 0x8000_0000); // wraps
    assert_eq!(rem(S32, 0x8000_0000, M1_32), 0);
    assert_eq!(div(S64, 1 << 63, u64::MAX), 1 << 63);
}

#[test]
fn abs_neg_min_max_sad() {
    assert_eq!(abs(S32, (-5i32) as u32 as u64), 5);
    assert_eq!(abs(S32, 0x8000_0000), 0x8000_0000);
    assert_eq!(abs(S16, 0x8000), 0x8000);
    assert_eq!(neg(S32, 5), 0xffff_fffb);
    assert_eq!(neg(S64, 1 << 63), 1 << 63);
    assert_eq!(min(S32, M1_32, 1), M1_32);
    assert_eq!(min(U32, M1_32, 1), 1);
    assert_eq!(max(S32, M1_32, 1), 1);
    assert_eq!(max(U32, M1_32, 1), M1_32);
    assert_eq!(max(S64, u64::MAX, 0), 0);
    assert_eq!(sad(U32, 3, 10, 100), 107);
    assert_eq!(sad(S32, M1_32, 1, 0), 2);
    assert_eq!(sad(U32, M1_32, 1, 0), 0xffff_fffe);
}

#[test]
fn shifts() {
    assert_eq!(shl(B32, 1, 31), 0x8000_0000);
    assert_eq!(shl(B32, 1, 32), 0);
    assert_eq!(shl(B32, 1, 1000), 0);
    assert_eq!(shl(B16, 0x8001, 1), 0x0002);
    assert_eq!(shl(B64, 1, 63), 1 << 63);
    assert_eq!(shl(B64, 1, 64), 0);
    assert_eq!(shr(U32, 0x8000_0000, 31), 1);
    assert_eq!(shr(U32, 0x8000_0000, 32), 0);
    assert_eq!(shr(S32, 0x8000_0000, 31), M1_32);
    assert_eq!(shr(S32, 0x8000_0000, 40), M1_32);
    assert_eq!(shr(S32, 0x4000_0000, 40), 0);
    assert_eq!(shr(S64, 1 << 63, u32::MAX), u64::MAX);
    assert_eq!(shr(U64, u64::MAX, 64), 0);
    assert_eq!(shr(S16, 0x8000, 4), 0xf800);
}

#[test]
fn bfe_cases() {
    assert_eq!(bfe(U32, 0x1234_5678, 8, 8), 0x56);
    assert_eq!(bfe(U32, 0x1234_5678, 28, 8), 0x1); // runs past the msb: zero fill
    assert_eq!(bfe(S32, 0x0000_f000, 12, 4), 0xffff_ffff); // field 0xf sign-extends
    assert_eq!(bfe(S32, 0x0000_7000, 12, 4), 0x7);
    assert_eq!(bfe(S32, 0x8000_0000, 28, 8), 0xffff_fff8); // sign bit a[31]
    assert_eq!(bfe(S32, 0x8000_0000, 40, 4), 0xffff_ffff); // start past msb: a[msb] fills
    assert_eq!(bfe(U32, 0x8000_0000, 40, 4), 0);
    assert_eq!(bfe(S32, 0xffff_ffff, 0, 0), 0); // len 0 -> 0
    assert_eq!(bfe(U32, 0xabcd, 0x104, 0x108), 0xbc); // pos/len taken & 0xff
    assert_eq!(bfe(U64, 0xdead_beef_0000_0000, 32, 32), 0xdead_beef);
    assert_eq!(
        bfe(S64, 0xdead_beef_0000_0000, 32, 32),
        0xffff_ffff_dead_beef
    );
}

#[test]
fn bfi_brev_bfind_clz_popc() {
    assert_eq!(bfi(B32, 0xab, 0x1234_5678, 8, 8), 0x1234_ab78);
    assert_eq!(bfi(B32, 0xff, 0, 28, 8), 0xf000_0000); // clipped at the msb
    assert_eq!(bfi(B32, 0xff, 0x55, 32, 8), 0x55); // start past msb: b unchanged
    assert_eq!(bfi(B32, 0xff, 0x55, 4, 0), 0x55); // len 0: b
    assert_eq!(bfi(B64, 0xffff, 0, 56, 16), 0xff00_0000_0000_0000);
    assert_eq!(brev(B32, 1), 0x8000_0000);
    assert_eq!(brev(B32, 0x0000_00f1), 0x8f00_0000);
    assert_eq!(brev(B64, 3), 0xc000_0000_0000_0000);
    assert_eq!(bfind(U32, 0x0001_0000, false), 16);
    assert_eq!(bfind(U32, 0x0001_0000, true), 15);
    assert_eq!(bfind(U32, 0, false), 0xffff_ffff);
    assert_eq!(bfind(U32, 0, true), 0xffff_ffff);
    assert_eq!(bfind(S32, M1_32, false), 0xffff_ffff); // -1: no non-sign bit
    assert_eq!(bfind(S32, 0xffff_fff0, false), 3); // most significant 0 of a negative
    assert_eq!(bfind(S32, 0x8000_0000, false), 30);
    assert_eq!(bfind(S32, 5, true), 29);
    assert_eq!(bfind(U64, 1 << 40, true), 23);
    assert_eq!(bfind(S64, 1 << 63, false), 62);
    assert_eq!(clz(B32, 0), 32);
    assert_eq!(clz(B32, 1), 31);
    assert_eq!(clz(B32, 0xdead_0000_8000_0000), 0);
    assert_eq!(clz(B64, 1), 63);
    assert_eq!(clz(B64, 0), 64);
    assert_eq!(popc(B32, 0xdead_0000_f0f0_f0f0), 16);
    assert_eq!(popc(B64, u64::MAX), 64);
}

#[test]
fn prmt_all_modes() {
    let (a, b) = (0x3322_1100u32, 0x7766_5544u32); // byte i holds 0x11 * i
    let pick = |s: [u32; 4]| {
        s.iter()
            .enumerate()
            .fold(0u32, |d, (i, &k)| d | (0x11 * k) << (8 * i))
    };
    // Generic: 0x3210 is identity on a; 0x7654 gives b; 0x0123 reverses a.
    assert_eq!(prmt(a, b, 0x3210, None), a);
    assert_eq!(prmt(a, b, 0x7654, None), b);
    assert_eq!(prmt(a, b, 0x0123, None), 0x0011_2233);
    assert_eq!(prmt(a, b, 0x5140, None), pick([0, 4, 1, 5]));
    // Sign replication (bit 3 of a selector): byte 0x80 -> 0xff, byte 0x7f -> 0x00.
    assert_eq!(prmt(0x0000_7f80, 0, 0x9898, None), 0x00ff_00ff);
    // d.b0 = sign(byte 0) = 0xff, d.b1 = byte 1 = 0x7f, d.b2 = d.b3 = byte 0 = 0x80.
    assert_eq!(prmt(0x0000_7f80, 0, 0x0018, None), 0x8080_7fff);
    use PrmtMode::*;
    let table: [(PrmtMode, [[u32; 4]; 4]); 6] = [
        // Rows: c[1:0] = 0..3; entries are d.b3, d.b2, d.b1, d.b0 as in the ISA table.
        (
            F4e,
            [[3, 2, 1, 0], [4, 3, 2, 1], [5, 4, 3, 2], [6, 5, 4, 3]],
        ),
        (
            B4e,
            [[5, 6, 7, 0], [6, 7, 0, 1], [7, 0, 1, 2], [0, 1, 2, 3]],
        ),
        (
            Rc8,
            [[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]],
        ),
        (
            Ecl,
            [[3, 2, 1, 0], [3, 2, 1, 1], [3, 2, 2, 2], [3, 3, 3, 3]],
        ),
        (
            Ecr,
            [[0, 0, 0, 0], [1, 1, 1, 0], [2, 2, 1, 0], [3, 2, 1, 0]],
        ),
        (
            Rc16,
            [[1, 0, 1, 0], [3, 2, 3, 2], [1, 0, 1, 0], [3, 2, 3, 2]],
        ),
    ];
    for (mode, rows) in table {
        for (s, row) in rows.iter().enumerate() {
            let want = pick([row[3], row[2], row[1], row[0]]);
            // Only c[1:0] matters in the special modes.
            assert_eq!(
                prmt(a, b, s as u32 | 0xfff0, Some(mode)),
                want,
                "{mode:?} {s}"
            );
        }
    }
}

#[test]
fn shf_lop3() {
    let (a, b) = (0x89ab_cdefu32, 0x0123_4567u32);
    assert_eq!(shf(a, b, 8, true, false), 0x2345_6789);
    assert_eq!(shf(a, b, 8, false, false), 0x6789_abcd);
    assert_eq!(shf(a, b, 0, true, false), b);
    assert_eq!(shf(a, b, 0, false, false), a);
    assert_eq!(shf(a, b, 40, true, false), 0x2345_6789); // wrap: 40 & 31 = 8
    assert_eq!(shf(a, b, 40, true, true), a); // clamp: 32 -> lower word shifted up
    assert_eq!(shf(a, b, 40, false, true), b);
    assert_eq!(shf(a, b, 32, false, false), a); // wrap: 0
    let (x, y, z) = (0xf0f0_1234u32, 0xcccc_5678u32, 0xaaaa_9abcu32);
    assert_eq!(lop3(x, y, z, 0xf0), x);
    assert_eq!(lop3(x, y, z, 0xcc), y);
    assert_eq!(lop3(x, y, z, 0xaa), z);
    assert_eq!(lop3(x, y, z, 0x96), x ^ y ^ z);
    assert_eq!(lop3(x, y, z, 0x80), x & y & z);
    assert_eq!(lop3(x, y, z, 0xfe), x | y | z);
    assert_eq!(lop3(x, y, z, 0xe8), (x & y) | (x & z) | (y & z));
    assert_eq!(lop3(x, y, z, 0xf0 & !0xcc), x & !y);
    assert_eq!(lop3(x, y, z, 0x00), 0);
    assert_eq!(lop3(x, y, z, 0xff), u32::MAX);
}

#[test]
fn setp_cases() {
    assert!(setp_int(Lt, M1_32, 0, S32));
    assert!(!setp_int(Lt, M1_32, 0, U32));
    assert!(setp_int(Hi, M1_32, 0, S32)); // .hi is always unsigned
    assert!(setp_int(Lo, 0, M1_32, S32));
    assert!(setp_int(Ls, 5, 5, U32) && setp_int(Hs, 5, 5, U32));
    assert!(setp_int(Eq, 0x1_0000_0005, 5, U32)); // upper garbage ignored
    assert!(setp_int(Ge, 0x8000, 0x7fff, U16) && !setp_int(Ge, 0x8000, 0x7fff, S16));
    assert!(setp_int(Ne, 1, 2, B64));
    let n = f32::NAN;
    assert!(!setp_f32(Eq, n, n) && !setp_f32(Ne, n, 1.0) && !setp_f32(Lt, n, 1.0));
    assert!(setp_f32(Equ, n, 1.0) && setp_f32(Neu, n, 1.0) && setp_f32(Geu, 1.0, n));
    assert!(setp_f32(Nan, 1.0, n) && !setp_f32(Num, 1.0, n) && setp_f32(Num, 1.0, 2.0));
    assert!(setp_f32(Eq, 0.0, -0.0) && !setp_f32(Lt, -0.0, 0.0));
    assert!(setp_f32(Ne, 1.0, 2.0) && !setp_f32(Neu, 2.0, 2.0));
    assert!(setp_f32(Leu, 2.0, 2.0) && !setp_f32(Gtu, 2.0, 2.0));
    assert!(setp_f64(Gt, 2.0, 1.0) && setp_f64(Ltu, f64::NAN, 0.0));
    assert!(setp_f16(Lt, 0xbc00, 0x3c00) && !setp_f16(Eq, 0x7e00, 0x7e00));
    assert!(setp_f16(Eq, 0x8000, 0x0000));
    assert!(setp_bf16(Gt, 0x4000, 0x3f80));
}

#[test]
fn dp4a_cases() {
    // a = bytes [1, 2, 3, 4], b = bytes [-1, 1, -1, 1] (signed) or [255, 1, 255, 1] (unsigned).
    let (a, b) = (0x0403_0201u32, 0x01ff_01ffu32);
    assert_eq!(dp4a(a, true, b, true, 10), 10 - 1 + 2 - 3 + 4);
    assert_eq!(dp4a(a, false, b, false, 0), 255 + 2 + 3 * 255 + 4);
    assert_eq!(dp4a(0xffff_ffff, true, 0xffff_ffff, true, 0), 4);
}
