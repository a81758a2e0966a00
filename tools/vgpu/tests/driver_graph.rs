//! Stream capture and graphs through the exported driver functions: recorded (not executed)
//! work, replay with host memory read at replay time, fork/join across streams, graph-owned
//! allocations, and the capture-safety rules.
//!
//! Tests of this file share the process's driver state and run one at a time (see `Ctx`).

mod common;
use common::driver::*;

use std::ffi::c_uint;
use std::ptr::null_mut;

use cuda::driver::*;

const GLOBAL: c_uint = 0;
const THREAD_LOCAL: c_uint = 1;
const RELAXED: c_uint = 2;

fn status(s: CUstream) -> c_uint {
    let mut st = 99;
    check(unsafe { cuStreamIsCapturing(s, &mut st) });
    st
}

fn instantiate(g: CUgraph) -> CUgraphExec {
    let mut e = null_mut();
    check(unsafe { cuGraphInstantiateWithFlags(&mut e, g, 0) });
    e
}

#[test]
fn captured_copies_and_memsets_replay_in_order() {
    let _c = Ctx::new();
    let s = stream(1);
    let (a, b) = (alloc(64), alloc(64));
    let mut host = [5u32; 16];
    let mut out = vec![0u32; 16];
    unsafe {
        check(cuMemsetD32_v2(a, 1, 16));
        check(cuMemsetD32_v2(b, 2, 16));
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        assert_eq!(status(s), 1);
        check(cuMemsetD32Async(a, 7, 8, s));
        check(cuMemcpyHtoDAsync_v2(b, host.as_ptr().cast(), 64, s));
        check(cuMemcpyDtoDAsync_v2(a + 32, b, 32, s));
        check(cuMemcpyDtoHAsync_v2(out.as_mut_ptr().cast(), a, 64, s));
        let mut g = null_mut();
        check(cuStreamEndCapture(s, &mut g));
        assert!(!g.is_null());
        assert_eq!(status(s), 0);
        // Nothing ran during capture.
        assert_eq!(download_u32(a, 16), [1; 16]);
        assert_eq!(download_u32(b, 16), [2; 16]);
        assert_eq!(out, [0; 16]);

        let mut n = 0usize;
        check(cuGraphGetNodes(g, null_mut(), &mut n));
        assert_eq!(n, 4);
        let mut nodes = [null_mut(); 5];
        n = 5;
        check(cuGraphGetNodes(g, nodes.as_mut_ptr(), &mut n));
        assert_eq!(n, 4);
        assert!(nodes[4].is_null());
        let types: Vec<c_uint> = nodes[..4]
            .iter()
            .map(|&nd| {
                let mut t = 99;
                check(cuGraphNodeGetType(nd, &mut t));
                t
            })
            .collect();
        assert_eq!(types, [2, 1, 1, 1], "memset, then three copies");

        let e = instantiate(g);
        // Host memory is read at replay, not at capture.
        host.iter_mut().for_each(|v| *v = 9);
        check(cuGraphLaunch(e, s));
        let want: Vec<u32> = [7; 8].into_iter().chain([9; 8]).collect();
        assert_eq!(download_u32(a, 16), want);
        assert_eq!(download_u32(b, 16), [9; 16]);
        assert_eq!(out, want, "device-to-host node wrote the host buffer");
        // Replays again, on another stream, after the data changed.
        check(cuMemsetD32_v2(a, 0, 16));
        host.iter_mut().for_each(|v| *v = 3);
        check(cuGraphUpload(e, null_mut()));
        check(cuGraphLaunch(e, null_mut()));
        assert_eq!(
            download_u32(a, 16),
            [7, 7, 7, 7, 7, 7, 7, 7, 3, 3, 3, 3, 3, 3, 3, 3]
        );
        let mut f = 1;
        check(cuGraphExecGetFlags(e, &mut f));
        assert_eq!(f, 0);

        // The instance outlives its graph.
        check(cuGraphDestroy(g));
        check(cuGraphLaunch(e, s));
        check(cuGraphExecDestroy(e));
        expect(cuGraphLaunch(e, s), CUDA_ERROR_INVALID_HANDLE);
        expect(cuGraphDestroy(g), CUDA_ERROR_INVALID_HANDLE);

        // Memory freed after capture: replay reports it instead of writing freed memory.
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        check(cuMemsetD8Async(b, 0, 64, s));
        check(cuStreamEndCapture(s, &mut g));
        let e = instantiate(g);
        check(cuMemFree_v2(b));
        expect(cuGraphLaunch(e, s), CUDA_ERROR_INVALID_VALUE);
        check(cuGraphExecDestroy(e));
        check(cuGraphDestroy(g));
        check(cuMemFree_v2(a));
    }
}

#[test]
fn instantiate_flags_are_checked() {
    let _c = Ctx::new();
    let s = stream(1);
    unsafe {
        check(cuStreamBeginCapture_v2(s, THREAD_LOCAL));
        let mut g = null_mut();
        check(cuStreamEndCapture(s, &mut g));
        let mut e = null_mut();
        // AUTO_FREE_ON_LAUNCH | DEVICE_LAUNCH is invalid (cudarc's test expects it).
        expect(
            cuGraphInstantiateWithFlags(&mut e, g, 1 | 4),
            CUDA_ERROR_INVALID_VALUE,
        );
        expect(
            cuGraphInstantiateWithFlags(&mut e, g, 1 << 10),
            CUDA_ERROR_INVALID_VALUE,
        );
        check(cuGraphInstantiateWithFlags(&mut e, g, 1 | 8));
        check(cuGraphLaunch(e, s)); // an empty graph
        check(cuGraphExecDestroy(e));
        check(cuGraphDestroy(g));
        expect(
            cuGraphInstantiateWithFlags(&mut e, null_mut(), 0),
            CUDA_ERROR_INVALID_VALUE,
        );
    }
}

#[test]
fn fork_join_capture_across_streams() {
    let _c = Ctx::new();
    let (s1, s2) = (stream(1), stream(1));
    let a = alloc(64);
    let (mut fork, mut join) = (null_mut(), null_mut());
    unsafe {
        check(cuEventCreate(&mut fork, 2));
        check(cuEventCreate(&mut join, 2));
        check(cuStreamBeginCapture_v2(s1, GLOBAL));
        check(cuMemsetD32Async(a, 1, 16, s1));
        check(cuEventRecord(fork, s1));
        expect(cuEventQuery(fork), CUDA_ERROR_CAPTURED_EVENT);
        // (The query invalidated the capture, as on the real driver: start over.)
        let mut g = null_mut();
        expect(
            cuStreamEndCapture(s1, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        assert!(g.is_null());

        check(cuStreamBeginCapture_v2(s1, GLOBAL));
        check(cuMemsetD32Async(a, 1, 16, s1));
        check(cuEventRecord(fork, s1));
        check(cuStreamWaitEvent(s2, fork, 0)); // s2 joins the capture
        assert_eq!(status(s2), 1);
        check(cuMemsetD32Async(a + 32, 2, 8, s2));
        check(cuEventRecord(join, s2));
        check(cuStreamWaitEvent(s1, join, 0)); // ... and is joined back
        check(cuStreamEndCapture(s1, &mut g));
        assert_eq!(status(s2), 0, "the capture ended for every member");
        let e = instantiate(g);
        check(cuGraphLaunch(e, s1));
        assert_eq!(
            download_u32(a, 16),
            [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]
        );
        check(cuGraphExecDestroy(e));
        check(cuGraphDestroy(g));

        // Forgetting the join back is an error.
        check(cuStreamBeginCapture_v2(s1, GLOBAL));
        check(cuEventRecord(fork, s1));
        check(cuStreamWaitEvent(s2, fork, 0));
        check(cuMemsetD32Async(a, 3, 16, s2));
        expect(
            cuStreamEndCapture(s2, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_UNMATCHED,
        );
        expect(
            cuStreamEndCapture(s1, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_UNJOINED,
        );
        assert!(g.is_null());
        assert_eq!((status(s1), status(s2)), (0, 0));
        assert_eq!(download_u32(a, 1), [1], "nothing ran");
    }
}

#[test]
fn graph_owned_allocations_keep_their_address() {
    let _c = Ctx::new();
    let s = stream(1);
    let out = alloc(64);
    let live0 = global_mem().live_count();
    let count0 = allocation_count();
    unsafe {
        check(cuStreamBeginCapture_v2(s, THREAD_LOCAL));
        let mut tmp = 0;
        check(cuMemAllocAsync(&mut tmp, 64, s));
        check(cuMemsetD32Async(tmp, 42, 16, s));
        check(cuMemcpyDtoDAsync_v2(out, tmp, 64, s));
        check(cuMemFreeAsync(tmp, s));
        let mut g = null_mut();
        check(cuStreamEndCapture(s, &mut g));
        let e = instantiate(g);
        for _ in 0..3 {
            check(cuMemsetD32_v2(out, 0, 16));
            check(cuGraphLaunch(e, s));
            assert_eq!(download_u32(out, 16), [42; 16]);
        }
        assert_eq!(allocation_count() - count0, 1, "allocated once, at capture");
        expect(cuMemFree_v2(tmp), CUDA_ERROR_INVALID_VALUE); // the graph owns it
        check(cuGraphDestroy(g));
        assert_eq!(
            global_mem().live_count(),
            live0 + 1,
            "the instance still holds it"
        );
        check(cuGraphExecDestroy(e));
        assert_eq!(global_mem().live_count(), live0);
        check(cuMemFree_v2(out));
    }
}

#[test]
fn unsafe_calls_during_global_capture_invalidate_it() {
    let c = Ctx::new();
    let s = stream(1);
    let a = alloc(16);
    let host = [0u8; 16];
    unsafe {
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        expect(cuStreamBeginCapture_v2(s, GLOBAL), CUDA_ERROR_ILLEGAL_STATE);
        expect(
            cuMemcpyHtoD_v2(a, host.as_ptr().cast(), 16),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        );
        assert_eq!(status(s), 2, "invalidated");
        expect(
            cuMemsetD8Async(a, 0, 16, s),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        expect(cuCtxSynchronize(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        let mut g = 0x1 as CUgraph;
        expect(
            cuStreamEndCapture(s, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        assert!(g.is_null());
        check(cuCtxSynchronize());

        // Another thread is also bound by a global-mode capture...
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        let ctx = c.ctx as usize;
        let other = move || {
            std::thread::spawn(move || {
                check(cuCtxSetCurrent(ctx as CUcontext));
                cuCtxSynchronize()
            })
            .join()
            .unwrap()
        };
        expect(other(), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        expect(
            cuStreamEndCapture(s, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        // ... but not by a thread-local one, and the capturing thread not by a relaxed one.
        check(cuStreamBeginCapture_v2(s, THREAD_LOCAL));
        check(other());
        expect(cuMemFree_v2(a), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        expect(
            cuStreamEndCapture(s, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        check(cuStreamBeginCapture_v2(s, RELAXED));
        let mut p = 0;
        check(cuMemAlloc_v2(&mut p, 16));
        check(cuMemFree_v2(p));
        check(cuStreamEndCapture(s, &mut g));
        check(cuGraphDestroy(g));

        // Synchronizing or querying the capturing stream itself.
        check(cuStreamBeginCapture_v2(s, RELAXED));
        expect(
            cuStreamSynchronize(s),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        );
        expect(
            cuStreamEndCapture(s, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        expect(cuStreamEndCapture(s, &mut g), CUDA_ERROR_ILLEGAL_STATE);

        // cuThreadExchangeStreamCaptureMode(RELAXED) lifts the thread's restriction.
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        let mut mode = RELAXED;
        check(cuThreadExchangeStreamCaptureMode(&mut mode));
        check(cuCtxSynchronize());
        check(cuThreadExchangeStreamCaptureMode(&mut mode));
        check(cuStreamEndCapture(s, &mut g));
        check(cuGraphDestroy(g));
        check(cuMemFree_v2(a));
    }
}

#[test]
fn legacy_stream_rules() {
    let _c = Ctx::new();
    let (blocking, nonblocking) = (stream(0), stream(1));
    let a = alloc(16);
    unsafe {
        // The legacy stream cannot be captured.
        expect(
            cuStreamBeginCapture_v2(null_mut(), GLOBAL),
            CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        );
        // While a non-blocking stream captures, the legacy stream is usable...
        check(cuStreamBeginCapture_v2(nonblocking, RELAXED));
        check(cuMemsetD8Async(a, 1, 16, null_mut()));
        let mut g = null_mut();
        check(cuStreamEndCapture(nonblocking, &mut g));
        check(cuGraphDestroy(g));
        // ... while a blocking one captures, legacy work would depend on it.
        check(cuStreamBeginCapture_v2(blocking, RELAXED));
        expect(
            cuMemsetD8Async(a, 1, 16, null_mut()),
            CUDA_ERROR_STREAM_CAPTURE_IMPLICIT,
        );
        expect(
            cuStreamEndCapture(blocking, &mut g),
            CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        );
        // The per-thread default stream can be captured.
        let per_thread = 0x2 as CUstream;
        check(cuStreamBeginCapture_v2(per_thread, THREAD_LOCAL));
        check(cuMemsetD8Async(a, 5, 16, per_thread));
        let (mut st, mut id) = (0, 0u64);
        check(cuStreamGetCaptureInfo_v3(
            per_thread,
            &mut st,
            &mut id,
            null_mut(),
            null_mut(),
            null_mut(),
            null_mut(),
        ));
        assert_eq!(st, 1);
        assert_ne!(id, 0);
        check(cuStreamEndCapture(per_thread, &mut g));
        let e = instantiate(g);
        check(cuGraphLaunch(e, per_thread));
        let mut v = [0u8; 16];
        check(cuMemcpyDtoH_v2(v.as_mut_ptr().cast(), a, 16));
        assert_eq!(v, [5; 16]);
        check(cuGraphExecDestroy(e));
        check(cuGraphDestroy(g));
        check(cuMemFree_v2(a));
    }
}

#[test]
fn graph_launched_into_a_capture_becomes_a_child_node() {
    let _c = Ctx::new();
    let s = stream(1);
    let a = alloc(16);
    unsafe {
        let mut inner = null_mut();
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        check(cuMemsetD8Async(a, 8, 16, s));
        check(cuStreamEndCapture(s, &mut inner));
        let inner_exec = instantiate(inner);
        let mut outer = null_mut();
        check(cuStreamBeginCapture_v2(s, GLOBAL));
        check(cuMemsetD8Async(a, 0, 16, s));
        check(cuGraphLaunch(inner_exec, s));
        check(cuStreamEndCapture(s, &mut outer));
        let mut nodes = [null_mut(); 2];
        let mut n = 2usize;
        check(cuGraphGetNodes(outer, nodes.as_mut_ptr(), &mut n));
        let mut t = 0;
        check(cuGraphNodeGetType(nodes[1], &mut t));
        assert_eq!(t, 4, "CU_GRAPH_NODE_TYPE_GRAPH");
        let e = instantiate(outer);
        check(cuMemsetD8_v2(a, 1, 16));
        check(cuGraphLaunch(e, s));
        let mut v = [0u8; 16];
        check(cuMemcpyDtoH_v2(v.as_mut_ptr().cast(), a, 16));
        assert_eq!(v, [8; 16]);
        for x in [e, inner_exec] {
            check(cuGraphExecDestroy(x));
        }
        for x in [outer, inner] {
            check(cuGraphDestroy(x));
        }
        check(cuMemFree_v2(a));
        check(cuStreamDestroy_v2(s));
    }
}
