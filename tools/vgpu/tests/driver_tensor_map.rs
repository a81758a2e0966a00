//! `cuTensorMapEncodeTiled` through the exported function: every rule of the CUDA driver
//! API's description of its arguments, broken one at a time, is CUDA_ERROR_INVALID_VALUE,
//! and the legal edge values succeed.

mod common;
use common::driver::*;

use std::ptr::{null, null_mut};

use cuda::driver::*;

/// The arguments of one call, starting from a legal 2D fp16 map with the 128B swizzle.
#[derive(Clone)]
struct Args {
    dtype: u32,
    rank: u32,
    global: u64,
    dims: Vec<u64>,
    strides: Vec<u64>,
    bx: Vec<u32>,
    es: Vec<u32>,
    interleave: u32,
    swizzle: u32,
    l2: u32,
    oob: u32,
}

fn base() -> Args {
    Args {
        dtype: 6,
        rank: 2,
        global: 0x7000_0000_0100,
        dims: vec![128, 64],
        strides: vec![256],
        bx: vec![64, 32],
        es: vec![1, 1],
        interleave: 0,
        swizzle: 3,
        l2: 2,
        oob: 0,
    }
}

/// The call with `a`, writing to `tm` and reading the dimensions from `dims`.
fn call_at(a: &Args, tm: *mut CUtensorMap, dims: *const u64) -> CUresult {
    unsafe {
        cuTensorMapEncodeTiled(
            tm,
            a.dtype,
            a.rank,
            a.global as *mut _,
            dims,
            a.strides.as_ptr(),
            a.bx.as_ptr(),
            a.es.as_ptr(),
            a.interleave,
            a.swizzle,
            a.l2,
            a.oob,
        )
    }
}

fn call(a: &Args) -> CUresult {
    let mut tm = CUtensorMap { opaque: [0; 16] };
    call_at(a, &mut tm, a.dims.as_ptr())
}

#[track_caller]
fn invalid(what: &str, f: impl FnOnce(&mut Args)) {
    let mut a = base();
    f(&mut a);
    assert_eq!(call(&a), CUDA_ERROR_INVALID_VALUE, "{what}");
}

#[track_caller]
fn valid(what: &str, f: impl FnOnce(&mut Args)) {
    let mut a = base();
    f(&mut a);
    assert_eq!(call(&a), CUDA_SUCCESS, "{what}");
}

#[test]
fn legal_maps_encode() {
    valid("base", |_| {});
    valid("rank 1", |a| {
        a.rank = 1;
        a.dims = vec![4096];
        a.strides.clear();
        a.bx = vec![64];
        a.es = vec![1];
    });
    valid("rank 5, f32, no swizzle, box 256", |a| {
        a.dtype = 7;
        a.rank = 5;
        a.dims = vec![64, 4, 4, 4, 1 << 32];
        a.strides = vec![256, 1024, 4096, 16384];
        a.bx = vec![4, 256, 1, 2, 1];
        a.es = vec![1; 5];
        a.swizzle = 0;
    });
    valid("bf16 with the 64B swizzle and a NaN fill", |a| {
        a.dtype = 9;
        a.bx = vec![32, 8];
        a.swizzle = 2;
        a.oob = 1;
    });
    valid("32B swizzle with a 16-byte box row", |a| {
        a.bx = vec![8, 8];
        a.swizzle = 1;
    });
    valid("element stride of dimension 0 is ignored", |a| {
        a.es = vec![4, 1]
    });
    valid("strides just below 2^40", |a| {
        a.strides = vec![(1 << 40) - 16]
    });
}

#[test]
fn every_broken_rule_is_invalid_value() {
    invalid("rank 0", |a| a.rank = 0);
    invalid("rank 6", |a| a.rank = 6);
    invalid("unknown data type", |a| a.dtype = 99);
    invalid("global address not 16-byte aligned", |a| a.global += 8);
    invalid("null global address", |a| a.global = 0);
    invalid("zero dimension", |a| a.dims[1] = 0);
    invalid("dimension above 2^32", |a| a.dims[0] = (1 << 32) + 1);
    invalid("stride not a multiple of 16", |a| a.strides[0] = 264);
    invalid("stride of 2^40", |a| a.strides[0] = 1 << 40);
    invalid("zero box", |a| a.bx[1] = 0);
    invalid("box above 256", |a| a.bx[1] = 257);
    invalid("box row not a multiple of 16 bytes", |a| {
        a.swizzle = 0;
        a.bx[0] = 12;
    });
    invalid("element stride 0", |a| a.es[1] = 0);
    invalid("element stride 9", |a| a.es[0] = 9);
    invalid("unknown interleave", |a| a.interleave = 3);
    invalid("unknown swizzle", |a| a.swizzle = 7);
    invalid("unknown L2 promotion", |a| a.l2 = 4);
    invalid("unknown OOB fill", |a| a.oob = 2);
    invalid("NaN fill of an integer type", |a| {
        a.dtype = 2;
        a.bx[0] = 32;
        a.oob = 1;
    });
    invalid("128-byte box row with the 64B swizzle", |a| a.swizzle = 2);
    invalid("64-byte box row with the 32B swizzle", |a| {
        a.bx[0] = 32;
        a.swizzle = 1;
    });
}

/// SAM's attention head: 80 fp16 values per row are 160 bytes, more than the 128-byte span
/// of SWIZZLE_128B; the same box without swizzle is legal.
#[test]
fn head_dim_80_in_fp16_does_not_fit_the_128b_swizzle() {
    let sam = |a: &mut Args| {
        a.dims = vec![80, 4096];
        a.strides = vec![160];
        a.bx = vec![80, 64];
    };
    invalid("160-byte box row with SWIZZLE_128B", sam);
    valid("160-byte box row unswizzled", |a| {
        sam(a);
        a.swizzle = 0;
    });
}

#[test]
fn bad_pointers_are_invalid_value() {
    let a = base();
    expect(
        call_at(&a, null_mut(), a.dims.as_ptr()),
        CUDA_ERROR_INVALID_VALUE,
    );
    // A map object not 64-byte aligned.
    let mut raw = [0u64; 32];
    let at = (raw.as_mut_ptr() as usize).next_multiple_of(64) + 8;
    let r = call_at(&a, at as *mut CUtensorMap, a.dims.as_ptr());
    expect(r, CUDA_ERROR_INVALID_VALUE);
    let mut tm = CUtensorMap { opaque: [0; 16] };
    expect(call_at(&a, &mut tm, null()), CUDA_ERROR_INVALID_VALUE);
}
