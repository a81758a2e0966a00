//! Helpers of the driver API tests (`driver_*.rs`), which call the exported functions as
//! Rust functions of the rlib.
//!
//! All tests of a file share the process's driver state (one device, one primary context),
//! so each runs alone (`Ctx` holds a lock) with its own retain of the primary context,
//! released at the end: the context, and anything a failed test left in it, is destroyed
//! between tests.

use std::ffi::c_uint;
use std::ptr::null_mut;
use std::sync::{Mutex, MutexGuard};

use cuda::driver::*;

static SERIAL: Mutex<()> = Mutex::new(());

/// The lock that makes the tests of a file run one at a time (held by `Ctx`; a test that
/// manages the primary context itself takes it directly).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[track_caller]
pub fn check(r: CUresult) {
    assert_eq!(r, CUDA_SUCCESS, "{}", error_name(r));
}

#[track_caller]
pub fn expect(r: CUresult, want: CUresult) {
    assert_eq!(r, want, "got {}, want {}", error_name(r), error_name(want));
}

/// One retain of the primary context, current on this thread, for the test's duration.
pub struct Ctx {
    pub ctx: CUcontext,
    _serial: MutexGuard<'static, ()>,
}

impl Ctx {
    pub fn new() -> Self {
        let serial = serial();
        let mut ctx = null_mut();
        unsafe {
            check(cuInit(0));
            check(cuDevicePrimaryCtxRetain(&mut ctx, 0));
            check(cuCtxSetCurrent(ctx));
        }
        Ctx {
            ctx,
            _serial: serial,
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        unsafe {
            cuCtxSetCurrent(null_mut());
            cuDevicePrimaryCtxRelease_v2(0);
        }
    }
}

pub fn alloc(bytes: usize) -> CUdeviceptr {
    let mut p = 0;
    check(unsafe { cuMemAlloc_v2(&mut p, bytes) });
    p
}

pub fn download(p: CUdeviceptr, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    check(unsafe { cuMemcpyDtoH_v2(v.as_mut_ptr().cast(), p, n) });
    v
}

pub fn download_u32(p: CUdeviceptr, n: usize) -> Vec<u32> {
    let mut v = vec![0u32; n];
    check(unsafe { cuMemcpyDtoH_v2(v.as_mut_ptr().cast(), p, n * 4) });
    v
}

pub fn stream(flags: c_uint) -> CUstream {
    let mut s = null_mut();
    check(unsafe { cuStreamCreate(&mut s, flags) });
    s
}
