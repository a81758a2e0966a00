use super::*;

const ONE_H: u64 = 0x3c00; // f16 1.0
const TWO_H: u64 = 0x4000; // f16 2.0

#[test]
fn f16x2_add_is_per_half() {
    // The case: four adds of (1.0, 2.0) give (4.0, 8.0), not an integer sum.
    let b = ONE_H | TWO_H << 16;
    let mut m = 0;
    for _ in 0..4 {
        m = apply(AtomOp::Add, Ty::F16x2, m, b, 0, false);
    }
    assert_eq!(m, 0x4400 | 0x4800 << 16);
    // A carry out of the low half must not reach the high half: 65504 + 65504 = inf.
    let r = apply(AtomOp::Add, Ty::F16x2, 0x7bff, 0x7bff, 0, false);
    assert_eq!(r, 0x7c00);
}

#[test]
fn half_add_rounds_to_nearest_even_and_keeps_subnormals() {
    // 1.0 + 2^-11 is a tie between 1.0 and 1.0 + 2^-10: even is 1.0.
    assert_eq!(apply(AtomOp::Add, Ty::F16, ONE_H, 0x1000, 0, false), ONE_H);
    // 2^-24 + 2^-24 = 2^-23, both subnormal (noftz keeps them).
    assert_eq!(apply(AtomOp::Add, Ty::F16, 1, 1, 0, false), 2);
    // bf16: 1.0 + 2^-8 is a tie: even is 1.0; 1.0 + 3*2^-9 rounds up to 1.0 + 2^-7.
    assert_eq!(
        apply(AtomOp::Add, Ty::Bf16, 0x3f80, 0x3b80, 0, false),
        0x3f80
    );
    assert_eq!(
        apply(AtomOp::Add, Ty::Bf16, 0x3f80, 0x3bc0, 0, false),
        0x3f81
    );
}

#[test]
fn f32_add_flushes_only_when_told() {
    let sub = 1u64; // smallest f32 subnormal
    assert_eq!(apply(AtomOp::Add, Ty::F32, sub, sub, 0, false), 2);
    assert_eq!(apply(AtomOp::Add, Ty::F32, sub, sub, 0, true), 0);
    // Sign-preserving: -sub + -sub flushes to -0.
    let nsub = 0x8000_0001;
    assert_eq!(
        apply(AtomOp::Add, Ty::F32, nsub, nsub, 0, true),
        0x8000_0000
    );
}

#[test]
fn inc_dec_wrap_within_bound() {
    let inc = |m, s| apply(AtomOp::Inc, Ty::U32, m, s, 0, false);
    let dec = |m, s| apply(AtomOp::Dec, Ty::U32, m, s, 0, false);
    assert_eq!(inc(2, 3), 3);
    assert_eq!(inc(3, 3), 0);
    assert_eq!(inc(9, 3), 0);
    assert_eq!(dec(1, 3), 0);
    assert_eq!(dec(0, 3), 3);
    assert_eq!(dec(9, 3), 3);
    // Unsigned: 0xffffffff is above every bound but itself.
    assert_eq!(inc(0xffff_ffff, 0xffff_ffff), 0);
}

#[test]
fn min_max_signedness() {
    let m = 0xffff_ffffu64; // -1 as s32, 4294967295 as u32
    assert_eq!(apply(AtomOp::Min, Ty::S32, m, 5, 0, false), m);
    assert_eq!(apply(AtomOp::Min, Ty::U32, m, 5, 0, false), 5);
    assert_eq!(apply(AtomOp::Max, Ty::S64, u64::MAX, 5, 0, false), 5);
    // f16x2 min per half, NaN loses.
    let r = apply(
        AtomOp::Min,
        Ty::F16x2,
        0x7e00 | TWO_H << 16,
        ONE_H | ONE_H << 16,
        0,
        false,
    );
    assert_eq!(r, ONE_H | ONE_H << 16);
}

#[test]
fn cas_and_exch() {
    assert_eq!(apply(AtomOp::Cas, Ty::B16, 7, 7, 9, false), 9);
    assert_eq!(apply(AtomOp::Cas, Ty::B16, 7, 8, 9, false), 7);
    assert_eq!(
        apply(AtomOp::Exch, Ty::B64, 7, u64::MAX, 0, false),
        u64::MAX
    );
}

#[test]
fn check_follows_the_isa_tables() {
    use AtomOp::*;
    assert!(check(false, Add, Ty::F16x2, 1, true).is_ok());
    assert!(
        check(false, Add, Ty::F16x2, 1, false).is_err(),
        "noftz is required"
    );
    assert!(check(false, Add, Ty::S64, 1, false).is_err());
    assert!(check(false, Inc, Ty::S32, 1, false).is_err());
    assert!(check(false, And, Ty::U32, 1, false).is_err());
    assert!(check(false, Cas, Ty::B16, 1, false).is_ok());
    assert!(check(true, Cas, Ty::B32, 1, false).is_err());
    assert!(check(true, Exch, Ty::B32, 1, false).is_err());
    assert!(check(false, Min, Ty::F32, 1, false).is_err());
    assert!(check(false, Max, Ty::Bf16x2, 4, true).is_ok());
    assert!(check(false, Max, Ty::Bf16x2, 8, true).is_err());
    assert!(check(false, Add, Ty::F16, 8, true).is_ok());
    assert!(check(false, Add, Ty::F32, 4, false).is_ok());
    assert!(check(false, Min, Ty::F32, 2, false).is_err());
    assert!(check(false, Add, Ty::U32, 2, false).is_err());
}
