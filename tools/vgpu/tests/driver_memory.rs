//! Device memory through the exported driver functions: allocation (sync and stream
//! ordered), copies, memsets, range checks, invalid frees, pinned host memory, pointer
//! queries and the allocation counter.
//!
//! Tests of this file share the process's driver state and run one at a time (see `Ctx`).

mod common;
use common::driver::*;

use std::ffi::c_void;
use std::ptr::null_mut;

use cuda::driver::*;
use cuda::mem::FRESH_FILL;

#[test]
fn alloc_copy_round_trips() {
    let _c = Ctx::new();
    let count0 = allocation_count();
    let a = alloc(1000);
    let b = alloc(1000);
    assert_eq!(a % DEVICE_ALLOC_ALIGN as u64, 0);
    assert_eq!(
        download(a, 1000),
        vec![FRESH_FILL; 1000],
        "fresh memory is not zeroed"
    );
    let host: Vec<u8> = (0..1000).map(|i| (i * 7) as u8).collect();
    unsafe {
        check(cuMemcpyHtoD_v2(a, host.as_ptr().cast(), 1000));
        check(cuMemcpyDtoD_v2(b, a, 1000));
        assert_eq!(download(b, 1000), host);
        // Unified copies: each side classified by the memory table.
        let mut back = vec![0u8; 10];
        check(cuMemcpy(back.as_mut_ptr() as u64, b + 990, 10));
        assert_eq!(back, host[990..]);
        check(cuMemcpy(b, host.as_ptr() as u64 + 500, 100));
        assert_eq!(download(b, 100), host[500..600]);
        check(cuMemcpy(b + 1, b, 10)); // overlapping device copy
                                       // Async variants on a stream complete before they return.
        let mut s = null_mut();
        check(cuStreamCreate(&mut s, 1));
        let ones = vec![1u8; 1000];
        check(cuMemcpyHtoDAsync_v2(a, ones.as_ptr().cast(), 1000, s));
        check(cuMemcpyDtoDAsync_v2(b, a, 500, s));
        let mut out = vec![0u8; 1000];
        check(cuMemcpyDtoHAsync_v2(out.as_mut_ptr().cast(), b, 1000, s));
        assert_eq!(&out[..500], &ones[..500]);
        check(cuMemcpyAsync(out.as_mut_ptr() as u64, a, 1000, s));
        assert_eq!(out, ones);
        let ctx = {
            let mut c = null_mut();
            check(cuCtxGetCurrent(&mut c));
            c
        };
        check(cuMemcpyPeerAsync(b, ctx, a, ctx, 1000, s));
        expect(
            cuMemcpyPeer(b, null_mut(), a, ctx, 1000),
            CUDA_ERROR_INVALID_CONTEXT,
        );
        // Zero-length copies are no-ops, even with null host pointers.
        check(cuMemcpyHtoD_v2(a, std::ptr::null(), 0));
        check(cuMemFree_v2(a));
        check(cuMemFree_v2(b));
        check(cuStreamDestroy_v2(s));
    }
    assert_eq!(allocation_count() - count0, 2);
    assert_eq!(vgpu_allocation_count(), allocation_count());
}

#[test]
fn copies_are_range_checked() {
    let _c = Ctx::new();
    let a = alloc(256);
    let host = vec![0u8; 4096];
    let mut sink = vec![0u8; 4096];
    unsafe {
        check(cuMemcpyHtoD_v2(a + 128, host.as_ptr().cast(), 128)); // interior, in range
        expect(
            cuMemcpyHtoD_v2(a + 129, host.as_ptr().cast(), 128),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuMemcpyHtoD_v2(a, host.as_ptr().cast(), 257),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuMemcpyDtoH_v2(sink.as_mut_ptr().cast(), a, 4096),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(cuMemcpyDtoD_v2(a, a + 200, 100), CUDA_ERROR_INVALID_VALUE);
        expect(
            cuMemcpyHtoD_v2(0x10, host.as_ptr().cast(), 4),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuMemcpyHtoD_v2(a, std::ptr::null(), 4),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuMemcpy(a + 250, host.as_ptr() as u64, 100),
            CUDA_ERROR_INVALID_VALUE,
        );
        check(cuMemFree_v2(a));
        expect(
            cuMemcpyDtoH_v2(sink.as_mut_ptr().cast(), a, 4),
            CUDA_ERROR_INVALID_VALUE,
        );
    }
}

#[test]
fn memsets() {
    let _c = Ctx::new();
    let a = alloc(64);
    unsafe {
        check(cuMemsetD8_v2(a, 0xAB, 64));
        assert_eq!(download(a, 64), vec![0xAB; 64]);
        check(cuMemsetD16_v2(a + 2, 0x1234, 3));
        assert_eq!(
            download(a, 10),
            [0xAB, 0xAB, 0x34, 0x12, 0x34, 0x12, 0x34, 0x12, 0xAB, 0xAB]
        );
        check(cuMemsetD32_v2(a + 8, 0xDEADBEEF, 2));
        assert_eq!(
            download(a + 8, 8),
            [0xEF, 0xBE, 0xAD, 0xDE, 0xEF, 0xBE, 0xAD, 0xDE]
        );
        let mut s = null_mut();
        check(cuStreamCreate(&mut s, 0));
        check(cuMemsetD8Async(a, 0, 64, s));
        check(cuMemsetD16Async(a, 0xFFFF, 1, s));
        check(cuMemsetD32Async(a + 60, 7, 1, s));
        let v = download(a, 64);
        assert_eq!(&v[..3], [0xFF, 0xFF, 0]);
        assert_eq!(&v[60..], [7, 0, 0, 0]);
        expect(cuMemsetD32_v2(a + 2, 0, 1), CUDA_ERROR_INVALID_VALUE); // misaligned
        expect(cuMemsetD16Async(a + 1, 0, 1, s), CUDA_ERROR_INVALID_VALUE);
        expect(cuMemsetD32_v2(a, 0, 17), CUDA_ERROR_INVALID_VALUE); // past the end
        expect(cuMemsetD8_v2(a + 64, 0, 1), CUDA_ERROR_INVALID_VALUE);
        check(cuMemsetD8_v2(a + 64, 0, 0));
        check(cuMemFree_v2(a));
        check(cuStreamDestroy_v2(s));
    }
}

#[test]
fn invalid_frees() {
    let _c = Ctx::new();
    let a = alloc(100);
    unsafe {
        expect(cuMemFree_v2(a + 8), CUDA_ERROR_INVALID_VALUE); // interior pointer
        expect(cuMemFree_v2(0x1000), CUDA_ERROR_INVALID_VALUE);
        let host = [0u8; 8];
        expect(cuMemFree_v2(host.as_ptr() as u64), CUDA_ERROR_INVALID_VALUE);
        check(cuMemFree_v2(0)); // freeing NULL is a no-op
        check(cuMemFree_v2(a));
        expect(cuMemFree_v2(a), CUDA_ERROR_INVALID_VALUE); // double free
        expect(cuMemFreeAsync(a, null_mut()), CUDA_ERROR_INVALID_VALUE);
        let mut p = 0;
        expect(cuMemAlloc_v2(&mut p, 0), CUDA_ERROR_INVALID_VALUE);
        expect(cuMemAlloc_v2(null_mut(), 8), CUDA_ERROR_INVALID_VALUE);
        expect(cuMemAlloc_v2(&mut p, 1 << 40), CUDA_ERROR_OUT_OF_MEMORY); // > 80 GB
    }
}

#[test]
fn stream_ordered_allocation_and_pool() {
    let _c = Ctx::new();
    unsafe {
        let mut s = null_mut();
        check(cuStreamCreate(&mut s, 1));
        let count0 = allocation_count();
        let (mut free0, mut total) = (0usize, 0usize);
        check(cuMemGetInfo_v2(&mut free0, &mut total));
        assert_eq!(total, 80 << 30);
        let mut p = 0;
        check(cuMemAllocAsync(&mut p, 1 << 20, s));
        assert_ne!(p, 0);
        let mut free1 = 0;
        check(cuMemGetInfo_v2(&mut free1, &mut total));
        assert_eq!(free0 - free1, 1 << 20);
        check(cuMemsetD8Async(p, 3, 1 << 20, s));
        check(cuMemFreeAsync(p, s));
        expect(cuMemFreeAsync(p, s), CUDA_ERROR_INVALID_VALUE);
        let mut z = 1;
        check(cuMemAllocAsync(&mut z, 0, s)); // cudarc's `stream.null()`
        assert_eq!(z, 0);
        check(cuMemFreeAsync(0, s));
        let mut pool = null_mut();
        check(cuDeviceGetDefaultMemPool(&mut pool, 0));
        check(cuMemAllocFromPoolAsync(&mut p, 64, pool, null_mut()));
        let mut threshold = u64::MAX;
        check(cuMemPoolSetAttribute(
            pool,
            4,
            (&mut threshold as *mut u64).cast(),
        ));
        let mut back = 0u64;
        check(cuMemPoolGetAttribute(
            pool,
            4,
            (&mut back as *mut u64).cast(),
        ));
        assert_eq!(back, u64::MAX);
        check(cuMemPoolGetAttribute(
            pool,
            7,
            (&mut back as *mut u64).cast(),
        ));
        assert!(back >= 64);
        check(cuMemPoolTrimTo(pool, 0));
        expect(
            cuMemAllocFromPoolAsync(&mut p, 64, 0x99 as CUmemoryPool, s),
            CUDA_ERROR_INVALID_VALUE,
        );
        check(cuMemFree_v2(p));
        assert_eq!(allocation_count() - count0, 2);
        expect(
            cuMemAllocAsync(&mut p, 64, 0xbad0 as CUstream),
            CUDA_ERROR_INVALID_HANDLE,
        );
        check(cuStreamDestroy_v2(s));
    }
}

#[test]
fn pinned_host_memory_and_pointer_queries() {
    let _c = Ctx::new();
    unsafe {
        let mut h: *mut c_void = null_mut();
        check(cuMemHostAlloc(&mut h, 4096, 0x4)); // write-combined, cudarc's alloc_pinned
        assert_eq!(h as usize % 4096, 0);
        let mut flags = 0;
        check(cuMemHostGetFlags(&mut flags, h));
        assert_eq!(flags, 4);
        let mut dptr = 0;
        check(cuMemHostGetDevicePointer_v2(&mut dptr, h, 0));
        assert_eq!(dptr, h as u64, "identity-mapped");
        let d = alloc(4096);
        check(cuMemsetD8_v2(d, 9, 4096));
        check(cuMemcpyDtoH_v2(h, d, 4096));
        assert!(std::slice::from_raw_parts(h.cast::<u8>(), 4096)
            .iter()
            .all(|&b| b == 9));
        // Kernels may read pinned memory: it is in the memory table, so device-side copies work.
        check(cuMemcpyDtoD_v2(d, h as u64, 16));

        let mut ty = 0u32;
        check(cuPointerGetAttribute(
            (&mut ty as *mut u32).cast(),
            2,
            d + 5,
        ));
        assert_eq!(ty, 2, "CU_MEMORYTYPE_DEVICE");
        check(cuPointerGetAttribute(
            (&mut ty as *mut u32).cast(),
            2,
            h as u64,
        ));
        assert_eq!(ty, 1, "CU_MEMORYTYPE_HOST");
        let (mut base, mut size) = (0u64, 0usize);
        check(cuPointerGetAttribute(
            (&mut base as *mut u64).cast(),
            11,
            d + 5,
        ));
        check(cuPointerGetAttribute(
            (&mut size as *mut usize).cast(),
            12,
            d + 5,
        ));
        assert_eq!((base, size), (d, 4096));
        check(cuMemGetAddressRange_v2(&mut base, &mut size, d + 100));
        assert_eq!((base, size), (d, 4096));
        let local = [0u8; 4];
        expect(
            cuPointerGetAttribute((&mut ty as *mut u32).cast(), 2, local.as_ptr() as u64),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuMemGetAddressRange_v2(&mut base, &mut size, 0x10),
            CUDA_ERROR_NOT_FOUND,
        );

        expect(cuMemFree_v2(h as u64), CUDA_ERROR_INVALID_VALUE);
        check(cuMemFreeHost(h));
        expect(cuMemFreeHost(h), CUDA_ERROR_INVALID_VALUE);

        let mut buf = vec![0u32; 1024];
        let p = buf.as_mut_ptr().cast::<c_void>();
        check(cuMemHostRegister_v2(p, 4096, 0));
        expect(
            cuMemHostRegister_v2(p, 4096, 0),
            CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED,
        );
        check(cuMemsetD32_v2(d, 0x01020304, 1024));
        check(cuMemcpyDtoD_v2(p as u64, d, 4096)); // registered memory is device-addressable
        assert!(buf.iter().all(|&v| v == 0x01020304));
        check(cuMemHostUnregister(p));
        expect(
            cuMemHostUnregister(p),
            CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED,
        );
        check(cuMemFree_v2(d));
    }
}

#[test]
fn allocation_count_is_steady_for_repeated_work() {
    let _c = Ctx::new();
    let work = || unsafe {
        let mut p = 0;
        check(cuMemAllocAsync(&mut p, 4096, null_mut()));
        check(cuMemsetD8Async(p, 1, 4096, null_mut()));
        check(cuMemFreeAsync(p, null_mut()));
    };
    work();
    let after_one = allocation_count();
    work();
    assert_eq!(
        allocation_count() - after_one,
        1,
        "one allocation per run is counted"
    );
    let scratch = alloc(64);
    let before = allocation_count();
    for _ in 0..3 {
        check(unsafe { cuMemsetD8_v2(scratch, 0, 64) });
    }
    assert_eq!(allocation_count(), before, "no allocation in steady state");
    check(unsafe { cuMemFree_v2(scratch) });
}
