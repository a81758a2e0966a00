//! Driver API through the exported functions, called as Rust functions of the rlib: device
//! queries, the primary context, streams, events, error strings, the sticky error and the
//! not-supported stubs.
//!
//! All tests of a file share the process's driver state (one device, one primary context),
//! so each runs alone (`Ctx` holds a lock) with its own retain of the primary context,
//! released at the end: the context, and anything a failed test left in it, is destroyed
//! between tests.

mod common;
use common::driver::*;

use std::ffi::{c_char, c_int, c_uint, CStr};
use std::ptr::null_mut;
use std::time::Duration;

use cuda::driver::*;
use cuda::sim::limits;

fn attr(a: c_int) -> c_int {
    let mut v = -12345;
    check(unsafe { cuDeviceGetAttribute(&mut v, a, 0) });
    v
}

#[test]
fn device_queries() {
    let _c = Ctx::new();
    let mut n = 0;
    check(unsafe { cuDeviceGetCount(&mut n) });
    assert_eq!(n, 1);
    let mut dev = -1;
    check(unsafe { cuDeviceGet(&mut dev, 0) });
    assert_eq!(dev, 0);
    expect(
        unsafe { cuDeviceGet(&mut dev, 1) },
        CUDA_ERROR_INVALID_DEVICE,
    );
    expect(
        unsafe { cuDeviceGet(null_mut(), 0) },
        CUDA_ERROR_INVALID_VALUE,
    );

    let mut name = [0 as c_char; 128];
    check(unsafe { cuDeviceGetName(name.as_mut_ptr(), 128, 0) });
    let s = unsafe { CStr::from_ptr(name.as_ptr()) }.to_str().unwrap();
    assert_eq!(s, limits::device_name());
    assert!(s.contains("simulator"), "{s}");
    let mut short = [0x7f as c_char; 8];
    check(unsafe { cuDeviceGetName(short.as_mut_ptr(), 5, 0) });
    assert_eq!(
        unsafe { CStr::from_ptr(short.as_ptr()) }.to_bytes(),
        &limits::DEVICE_NAME.as_bytes()[..4]
    );
    expect(
        unsafe { cuDeviceGetName(short.as_mut_ptr(), 0, 0) },
        CUDA_ERROR_INVALID_VALUE,
    );

    // CU_DEVICE_ATTRIBUTE_* values of CUDA 13.0.
    assert_eq!((attr(75), attr(76)), (9, 0), "compute capability");
    assert_eq!(attr(16), 132, "multiprocessors");
    assert_eq!(attr(97), 232448, "opt-in shared memory per block");
    assert_eq!(attr(8), 49152, "shared memory per block");
    assert_eq!(attr(81), 228 * 1024, "shared memory per SM");
    assert_eq!(attr(10), 32, "warp size");
    assert_eq!(attr(1), 1024, "threads per block");
    assert_eq!([attr(2), attr(3), attr(4)], [1024, 1024, 64]);
    assert_eq!([attr(5), attr(6), attr(7)], [i32::MAX, 65535, 65535]);
    assert_eq!(
        (attr(12), attr(82)),
        (65536, 65536),
        "registers per block / SM"
    );
    assert!(
        attr(13) > 1_000_000 && attr(36) > 1_000_000,
        "clock rates in kHz"
    );
    assert_eq!(attr(37), 5120, "bus width");
    assert_eq!(attr(38), 50 << 20, "L2");
    assert_eq!(
        (attr(31), attr(41), attr(20)),
        (1, 1, 0),
        "concurrent kernels, UVA, compute mode"
    );
    assert_eq!(
        attr(115),
        1,
        "memory pools (cudarc then allocates with cuMemAllocAsync)"
    );
    assert_eq!(attr(83), 0, "no managed memory");
    for bad in [0, -1, 148, 100_000] {
        let mut v = 0;
        expect(
            unsafe { cuDeviceGetAttribute(&mut v, bad, 0) },
            CUDA_ERROR_INVALID_VALUE,
        );
    }
    let mut v = 0;
    expect(
        unsafe { cuDeviceGetAttribute(&mut v, 16, 1) },
        CUDA_ERROR_INVALID_DEVICE,
    );
    expect(
        unsafe { cuDeviceGetAttribute(null_mut(), 16, 0) },
        CUDA_ERROR_INVALID_VALUE,
    );

    let mut bytes = 0usize;
    check(unsafe { cuDeviceTotalMem_v2(&mut bytes, 0) });
    assert_eq!(bytes, 80 << 30);
    let mut uuid = [0u8; 16];
    check(unsafe { cuDeviceGetUuid_v2(&mut uuid, 0) });
    assert_ne!(uuid, [0; 16]);
    let (mut major, mut minor) = (0, 0);
    check(unsafe { cuDeviceComputeCapability(&mut major, &mut minor, 0) });
    assert_eq!((major, minor), (9, 0));
}

#[test]
fn driver_version_and_error_strings() {
    let mut v = 0;
    check(unsafe { cuDriverGetVersion(&mut v) });
    assert_eq!(v, 13000);
    expect(
        unsafe { cuDriverGetVersion(null_mut()) },
        CUDA_ERROR_INVALID_VALUE,
    );
    let codes = [
        CUDA_SUCCESS,
        CUDA_ERROR_INVALID_VALUE,
        CUDA_ERROR_OUT_OF_MEMORY,
        CUDA_ERROR_NOT_INITIALIZED,
        CUDA_ERROR_INVALID_DEVICE,
        CUDA_ERROR_INVALID_CONTEXT,
        CUDA_ERROR_INVALID_PTX,
        CUDA_ERROR_INVALID_HANDLE,
        CUDA_ERROR_NOT_FOUND,
        CUDA_ERROR_ILLEGAL_ADDRESS,
        CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
        CUDA_ERROR_ILLEGAL_INSTRUCTION,
        CUDA_ERROR_MISALIGNED_ADDRESS,
        CUDA_ERROR_LAUNCH_FAILED,
        CUDA_ERROR_NOT_SUPPORTED,
        CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        CUDA_ERROR_CAPTURED_EVENT,
        CUDA_ERROR_UNKNOWN,
    ];
    for code in codes {
        let (mut name, mut desc) = (std::ptr::null(), std::ptr::null());
        check(unsafe { cuGetErrorName(code, &mut name) });
        check(unsafe { cuGetErrorString(code, &mut desc) });
        let name = unsafe { CStr::from_ptr(name) }.to_str().unwrap();
        let desc = unsafe { CStr::from_ptr(desc) }.to_str().unwrap();
        assert!(name.starts_with("CUDA_"), "{code}: {name}");
        assert_eq!(name, error_name(code));
        assert!(!desc.is_empty());
    }
    let mut s = std::ptr::null();
    check(unsafe { cuGetErrorString(CUDA_ERROR_ILLEGAL_ADDRESS, &mut s) });
    assert_eq!(
        unsafe { CStr::from_ptr(s) }.to_str().unwrap(),
        "an illegal memory access was encountered"
    );
    expect(
        unsafe { cuGetErrorString(12345, &mut s) },
        CUDA_ERROR_INVALID_VALUE,
    );
    assert_eq!(
        unsafe { CStr::from_ptr(s) }.to_str().unwrap(),
        "unknown error"
    );
    expect(
        unsafe { cuGetErrorName(12345, &mut s) },
        CUDA_ERROR_INVALID_VALUE,
    );
    expect(
        unsafe { cuGetErrorName(0, null_mut()) },
        CUDA_ERROR_INVALID_VALUE,
    );
}

#[test]
fn primary_context_and_current_stack() {
    let c = Ctx::new();
    let mut again = null_mut();
    check(unsafe { cuDevicePrimaryCtxRetain(&mut again, 0) });
    assert_eq!(again, c.ctx, "one primary context");
    let (mut flags, mut active) = (7u32, 0);
    check(unsafe { cuDevicePrimaryCtxGetState(0, &mut flags, &mut active) });
    assert_eq!((flags, active), (0, 1));
    check(unsafe { cuDevicePrimaryCtxSetFlags_v2(0, 4) }); // CU_CTX_SCHED_BLOCKING_SYNC
    check(unsafe { cuDevicePrimaryCtxGetState(0, &mut flags, &mut active) });
    assert_eq!(flags, 4);
    check(unsafe { cuDevicePrimaryCtxRelease_v2(0) });

    let mut cur = null_mut();
    check(unsafe { cuCtxGetCurrent(&mut cur) });
    assert_eq!(cur, c.ctx);
    let mut dev = -1;
    check(unsafe { cuCtxGetDevice(&mut dev) });
    assert_eq!(dev, 0);
    check(unsafe { cuCtxPushCurrent_v2(c.ctx) });
    let mut popped = null_mut();
    check(unsafe { cuCtxPopCurrent_v2(&mut popped) });
    assert_eq!(popped, c.ctx);
    check(unsafe { cuCtxGetCurrent(&mut cur) });
    assert_eq!(cur, c.ctx, "pop restored the previous top");
    expect(
        unsafe { cuCtxSetCurrent(0x1234 as CUcontext) },
        CUDA_ERROR_INVALID_CONTEXT,
    );
    check(unsafe { cuCtxSynchronize() });

    // A thread without a current context cannot use the context.
    let ctx = c.ctx as usize;
    std::thread::spawn(move || unsafe {
        let mut cur = 0x1 as CUcontext;
        check(cuCtxGetCurrent(&mut cur));
        assert!(cur.is_null());
        let mut p = 0u64;
        expect(cuMemAlloc_v2(&mut p, 16), CUDA_ERROR_INVALID_CONTEXT);
        expect(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
        expect(cuCtxPopCurrent_v2(null_mut()), CUDA_ERROR_INVALID_CONTEXT);
        check(cuCtxSetCurrent(ctx as CUcontext));
        check(cuMemAlloc_v2(&mut p, 16));
        check(cuMemFree_v2(p));
    })
    .join()
    .unwrap();

    let mut dummy = 0usize;
    check(unsafe { cuCtxGetLimit(&mut dummy, 1) }); // printf FIFO
    assert_eq!(dummy, 1 << 20);
    check(unsafe { cuCtxSetLimit(2, 64 << 20) });
    check(unsafe { cuCtxGetLimit(&mut dummy, 2) });
    assert_eq!(dummy, 64 << 20);
    expect(
        unsafe { cuCtxGetLimit(&mut dummy, 99) },
        CUDA_ERROR_UNSUPPORTED_LIMIT,
    );
    let (mut least, mut greatest) = (9, 9);
    check(unsafe { cuCtxGetStreamPriorityRange(&mut least, &mut greatest) });
    assert_eq!((least, greatest), (0, -5));
}

#[test]
fn releasing_the_last_retain_destroys_the_context() {
    let _serial = serial();
    let live_before = global_mem().live_count();
    let (mut ctx, mut p, mut s, mut e) = (null_mut(), 0u64, null_mut(), null_mut());
    unsafe {
        check(cuInit(0));
        check(cuDevicePrimaryCtxRetain(&mut ctx, 0));
        check(cuCtxSetCurrent(ctx));
        check(cuMemAlloc_v2(&mut p, 1000));
        check(cuStreamCreate(&mut s, 0));
        check(cuEventCreate(&mut e, 0));
        assert_eq!(global_mem().live_count(), live_before + 1);
        check(cuDevicePrimaryCtxRelease_v2(0));
        assert_eq!(
            global_mem().live_count(),
            live_before,
            "allocation freed with the context"
        );
        let (mut flags, mut active) = (0, 1);
        check(cuDevicePrimaryCtxGetState(0, &mut flags, &mut active));
        assert_eq!(active, 0);
        expect(cuDevicePrimaryCtxRelease_v2(0), CUDA_ERROR_INVALID_CONTEXT);
        // The handle stays current but names a destroyed context.
        expect(cuCtxSynchronize(), CUDA_ERROR_INVALID_CONTEXT);
        check(cuDevicePrimaryCtxRetain(&mut ctx, 0));
        expect(cuMemFree_v2(p), CUDA_ERROR_INVALID_VALUE);
        expect(cuStreamSynchronize(s), CUDA_ERROR_INVALID_HANDLE);
        expect(cuEventQuery(e), CUDA_ERROR_INVALID_HANDLE);
        check(cuDevicePrimaryCtxRelease_v2(0));
        check(cuCtxSetCurrent(null_mut()));
    }
}

#[test]
fn sticky_error_fails_context_calls_until_reset() {
    let _c = Ctx::new();
    let mut p = 0u64;
    check(unsafe { cuMemAlloc_v2(&mut p, 64) });
    // What a launch that faults with an illegal address does (the mechanism is the same).
    set_sticky_error(CUDA_ERROR_ILLEGAL_ADDRESS);
    set_sticky_error(CUDA_ERROR_LAUNCH_FAILED); // the first error sticks
    unsafe {
        let mut q = 0u64;
        expect(cuMemAlloc_v2(&mut q, 64), CUDA_ERROR_ILLEGAL_ADDRESS);
        expect(cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS);
        expect(cuMemFree_v2(p), CUDA_ERROR_ILLEGAL_ADDRESS);
        let mut s = null_mut();
        expect(cuStreamCreate(&mut s, 0), CUDA_ERROR_ILLEGAL_ADDRESS);
        expect(cuMemsetD8_v2(p, 0, 64), CUDA_ERROR_ILLEGAL_ADDRESS);
        // Not context calls: still work.
        let mut v = 0;
        check(cuDeviceGetAttribute(&mut v, 16, 0));
        check(cuDriverGetVersion(&mut v));
        let mut str = std::ptr::null();
        check(cuGetErrorString(CUDA_ERROR_ILLEGAL_ADDRESS, &mut str));
        let mut cur = null_mut();
        check(cuCtxGetCurrent(&mut cur));
        // Reset destroys the context's resources and clears the error.
        check(cuDevicePrimaryCtxReset_v2(0));
        check(cuCtxSynchronize());
        expect(cuMemFree_v2(p), CUDA_ERROR_INVALID_VALUE);
        check(cuMemAlloc_v2(&mut q, 64));
        check(cuMemFree_v2(q));
    }
}

#[test]
fn sticky_error_clears_when_the_context_is_released() {
    {
        let _c = Ctx::new();
        set_sticky_error(CUDA_ERROR_MISALIGNED_ADDRESS);
        expect(unsafe { cuCtxSynchronize() }, CUDA_ERROR_MISALIGNED_ADDRESS);
    }
    let _c = Ctx::new();
    check(unsafe { cuCtxSynchronize() });
}

#[test]
fn streams() {
    let _c = Ctx::new();
    unsafe {
        let (mut a, mut b) = (null_mut(), null_mut());
        check(cuStreamCreate(&mut a, 0));
        check(cuStreamCreateWithPriority(&mut b, 1, -100));
        assert_ne!(a, b);
        let (mut flags, mut prio) = (9u32, 9);
        check(cuStreamGetFlags(b, &mut flags));
        check(cuStreamGetPriority(b, &mut prio));
        assert_eq!(
            (flags, prio),
            (1, -5),
            "non-blocking; priority clamped to the range"
        );
        expect(cuStreamCreate(&mut a, 2), CUDA_ERROR_INVALID_VALUE);
        for s in [a, b, null_mut(), 0x1 as CUstream, 0x2 as CUstream] {
            check(cuStreamSynchronize(s));
            check(cuStreamQuery(s));
            let mut dev = -1;
            check(cuStreamGetDevice(s, &mut dev));
        }
        let mut ctx = null_mut();
        check(cuStreamGetCtx(a, &mut ctx));
        assert!(!ctx.is_null());
        expect(
            cuStreamDestroy_v2(0x2 as CUstream),
            CUDA_ERROR_INVALID_HANDLE,
        );
        check(cuStreamDestroy_v2(a));
        check(cuStreamDestroy_v2(b));
        expect(cuStreamDestroy_v2(a), CUDA_ERROR_INVALID_HANDLE);
        expect(cuStreamSynchronize(a), CUDA_ERROR_INVALID_HANDLE);
        expect(
            cuStreamSynchronize(0xdead0 as CUstream),
            CUDA_ERROR_INVALID_HANDLE,
        );
    }
}

unsafe extern "C" fn bump(data: *mut std::ffi::c_void) {
    unsafe { *data.cast::<u32>() += 1 };
}

#[test]
fn events_and_host_functions() {
    let _c = Ctx::new();
    unsafe {
        let mut s = null_mut();
        check(cuStreamCreate(&mut s, 1));
        let (mut a, mut b, mut untimed) = (null_mut(), null_mut(), null_mut());
        check(cuEventCreate(&mut a, 0));
        check(cuEventCreate(&mut b, 1)); // blocking sync
        check(cuEventCreate(&mut untimed, 2)); // CU_EVENT_DISABLE_TIMING, cudarc's default
        expect(cuEventCreate(&mut a, 4), CUDA_ERROR_INVALID_VALUE); // interprocess needs 2
        let mut ms = 0f32;
        expect(
            cuEventElapsedTime_v2(&mut ms, a, b),
            CUDA_ERROR_INVALID_HANDLE,
        ); // unrecorded
        check(cuEventQuery(a)); // an unrecorded event is complete
        check(cuEventRecord(a, s));
        std::thread::sleep(Duration::from_millis(30));
        check(cuEventRecord(b, null_mut()));
        check(cuEventSynchronize(b));
        check(cuEventQuery(b));
        check(cuEventElapsedTime_v2(&mut ms, a, b));
        assert!((25.0..5000.0).contains(&ms), "{ms} ms");
        check(cuEventElapsedTime(&mut ms, b, a));
        assert!(ms < 0.0);
        check(cuEventRecord(untimed, s));
        expect(
            cuEventElapsedTime_v2(&mut ms, a, untimed),
            CUDA_ERROR_INVALID_HANDLE,
        );
        check(cuStreamWaitEvent(s, a, 0));
        check(cuStreamWaitEvent(null_mut(), untimed, 0));
        expect(cuStreamWaitEvent(s, a, 1), CUDA_ERROR_INVALID_VALUE); // EXTERNAL outside capture
        for e in [a, b, untimed] {
            check(cuEventDestroy_v2(e));
        }
        expect(cuEventDestroy_v2(a), CUDA_ERROR_INVALID_HANDLE);
        expect(cuEventRecord(a, s), CUDA_ERROR_INVALID_HANDLE);

        let mut n = 0u32;
        check(cuLaunchHostFunc(s, Some(bump), (&mut n as *mut u32).cast()));
        check(cuLaunchHostFunc(
            null_mut(),
            Some(bump),
            (&mut n as *mut u32).cast(),
        ));
        assert_eq!(n, 2, "host functions run in order, before the call returns");
        expect(
            cuLaunchHostFunc(s, None, null_mut()),
            CUDA_ERROR_INVALID_VALUE,
        );
        check(cuStreamDestroy_v2(s));
    }
}

#[test]
fn unsupported_entry_points_return_not_supported() {
    assert_eq!(cuArrayDestroy(), CUDA_ERROR_NOT_SUPPORTED);
    assert_eq!(cuCtxCreate_v4(), CUDA_ERROR_NOT_SUPPORTED);
    assert_eq!(cuMemAllocManaged(), CUDA_ERROR_NOT_SUPPORTED);
    for name in IMPLEMENTED {
        assert!(
            !NOT_SUPPORTED.contains(name),
            "{name} is both implemented and a stub"
        );
    }
    assert!(NOT_SUPPORTED.len() > 300, "{}", NOT_SUPPORTED.len());
}

#[test]
fn functions_need_init_and_arguments() {
    let _c = Ctx::new();
    // Exported bodies never unwind: null out-pointers are errors.
    unsafe {
        expect(cuCtxGetCurrent(null_mut()), CUDA_ERROR_INVALID_VALUE);
        expect(cuStreamCreate(null_mut(), 0), CUDA_ERROR_INVALID_VALUE);
        expect(cuEventCreate(null_mut(), 0), CUDA_ERROR_INVALID_VALUE);
        expect(
            cuMemGetInfo_v2(null_mut(), null_mut()),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuModuleLoadData(null_mut(), null_mut()),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(cuInit(1), CUDA_ERROR_INVALID_VALUE);
        let mut mode: c_uint = 2;
        check(cuThreadExchangeStreamCaptureMode(&mut mode));
        assert_eq!(mode, 0, "global by default");
        check(cuThreadExchangeStreamCaptureMode(&mut mode));
        assert_eq!(mode, 2);
    }
}
