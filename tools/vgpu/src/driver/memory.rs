//! Device memory: allocation (sync and stream-ordered), copies, memsets, pinned host memory
//! and pointer queries.
//!
//! Device pointers are host addresses (see [`crate::mem`]). Every device-side range of a copy
//! or memset must lie inside one live allocation (CUDA_ERROR_INVALID_VALUE otherwise), so an
//! out-of-bounds copy is reported instead of corrupting the host heap. Pinned host memory is
//! registered with the memory table as well, because with unified addressing kernels may
//! dereference it, as on the real device.
//!
//! Copies and memsets become graph [`Node`]s, executed at once or recorded when the stream is
//! capturing (see [`super::graph`]); synchronous variants are issued to the legacy stream after
//! the capture-safety check.

use std::alloc::{alloc, dealloc, Layout};
use std::ffi::{c_int, c_uint, c_void};

use super::capture::{check_unsafe_call, issue, submit, Target};
use super::context::CUcontext;
use super::error::*;
use super::graph::{CopyKind, Node};
use super::state::*;
use super::stream::CUstream;
use crate::mem::ALLOC_ALIGN;
use crate::sim::limits;

pub type CUdeviceptr = u64;
pub type CUmemoryPool = *mut c_void;

/// The device's one memory pool (cuDeviceGetDefaultMemPool); cuMemAllocAsync draws from it.
pub(crate) const DEFAULT_POOL: u64 = 0x0C7C_1000;

const HOST_ALIGN: usize = 4096;

/// A pinned host range: allocated here (cuMemHostAlloc) or registered by the caller.
pub(crate) struct HostMem {
    len: u64,
    owned: bool,
    flags: c_uint,
}

fn legacy() -> CUstream {
    std::ptr::null_mut()
}

/// Allocates `bytes` of device memory owned by the context and counts it.
fn alloc_device(st: &mut State, bytes: usize) -> Res<u64> {
    let bytes = bytes as u64;
    let mem = global_mem();
    if mem.used_bytes().saturating_add(bytes) > limits::TOTAL_MEMORY {
        return Err(CUDA_ERROR_OUT_OF_MEMORY);
    }
    let addr = mem.alloc(bytes).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
    st.allocs.insert(addr, bytes);
    count_allocation();
    Ok(addr)
}

/// Releases device memory once no kernel is using it (see the gate in [`super::state`]).
pub(crate) fn release_device(addr: u64) {
    let _g = gate_write();
    global_mem().free(addr);
}

/// Frees an allocation of the context; unknown pointers are CUDA_ERROR_INVALID_VALUE.
pub(crate) fn free_device(addr: u64) -> Res {
    let known = state().allocs.remove(&addr).is_some();
    if !known {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    release_device(addr);
    Ok(())
}

/// Frees every allocation and pinned range of the context (context destruction).
pub(crate) fn free_all(st: &mut State) {
    for (addr, _) in st.allocs.drain() {
        release_device(addr);
    }
    for (addr, h) in st.host.drain() {
        global_mem().unregister(addr);
        if h.owned {
            free_host_block(addr, h.len);
        }
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAlloc_v2(dptr: *mut CUdeviceptr, bytesize: usize) -> CUresult {
    guard_ctx(|| {
        nonnull(dptr)?;
        if bytesize == 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let mut st = state();
        check_unsafe_call(&mut st)?;
        let addr = alloc_device(&mut st, bytesize)?;
        unsafe { put(dptr, addr) }
    })
}

/// Freeing 0 is a no-op.
#[no_mangle]
pub unsafe extern "C" fn cuMemFree_v2(dptr: CUdeviceptr) -> CUresult {
    guard_ctx(|| {
        check_unsafe_call(&mut state())?;
        if dptr == 0 {
            return Ok(());
        }
        free_device(dptr)
    })
}

/// Stream-ordered allocation (what cudarc uses, since the device reports memory pools).
/// Work is synchronous, so the memory is ready at return. During capture the memory is
/// allocated at capture time and keeps its address for every replay, like a graph memory
/// node; zero bytes give the null pointer.
#[no_mangle]
pub unsafe extern "C" fn cuMemAllocAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    stream: CUstream,
) -> CUresult {
    guard_ctx(|| {
        nonnull(dptr)?;
        let mut st = state();
        let target = issue(&mut st, stream)?;
        if bytesize == 0 {
            return unsafe { put(dptr, 0) };
        }
        let addr = alloc_device(&mut st, bytesize)?;
        if let Target::Capture(sid) = target {
            st.sessions
                .get_mut(&sid)
                .ok_or(CUDA_ERROR_UNKNOWN)?
                .allocs
                .push(addr);
        }
        unsafe { put(dptr, addr) }
    })
}

/// During capture, freeing memory allocated in the same capture hands it to the graph (freed
/// when the graph and its instances are destroyed); freeing older memory records a free node.
#[no_mangle]
pub unsafe extern "C" fn cuMemFreeAsync(dptr: CUdeviceptr, stream: CUstream) -> CUresult {
    guard_ctx(|| {
        let mut st = state();
        let target = issue(&mut st, stream)?;
        if dptr == 0 {
            return Ok(());
        }
        if !st.allocs.contains_key(&dptr) {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        match target {
            Target::Now => {
                drop(st);
                free_device(dptr)
            }
            Target::Capture(sid) => {
                let s = st.sessions.get_mut(&sid).ok_or(CUDA_ERROR_UNKNOWN)?;
                if let Some(i) = s.allocs.iter().position(|&a| a == dptr) {
                    s.allocs.swap_remove(i);
                    s.graph_owned.push(dptr);
                    st.allocs.remove(&dptr);
                } else {
                    s.nodes.push(Node::Free { addr: dptr });
                }
                Ok(())
            }
        }
    })
}

fn check_pool(pool: CUmemoryPool) -> Res {
    if from_handle(pool) == DEFAULT_POOL {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_VALUE)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocFromPoolAsync(
    dptr: *mut CUdeviceptr,
    bytesize: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> CUresult {
    match guard_ctx(|| check_pool(pool)) {
        CUDA_SUCCESS => unsafe { cuMemAllocAsync(dptr, bytesize, stream) },
        e => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetDefaultMemPool(
    pool: *mut CUmemoryPool,
    dev: c_int,
) -> CUresult {
    guard(|| {
        if dev != 0 {
            return Err(CUDA_ERROR_INVALID_DEVICE);
        }
        unsafe { put(pool, to_handle(DEFAULT_POOL)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetMemPool(pool: *mut CUmemoryPool, dev: c_int) -> CUresult {
    unsafe { cuDeviceGetDefaultMemPool(pool, dev) }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceSetMemPool(dev: c_int, pool: CUmemoryPool) -> CUresult {
    guard(|| {
        if dev != 0 {
            return Err(CUDA_ERROR_INVALID_DEVICE);
        }
        check_pool(pool)
    })
}

/// Reuse policies (1-3) read as enabled; the release threshold (4) is stored; reserved/used
/// (5-8) report the bytes allocated now. Values are `int` for 1-3 and `cuuint64_t` otherwise.
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolGetAttribute(
    pool: CUmemoryPool,
    attr: c_int,
    value: *mut c_void,
) -> CUresult {
    guard_ctx(|| {
        check_pool(pool)?;
        nonnull(value)?;
        let used = global_mem().used_bytes();
        match attr {
            1..=3 => unsafe { put(value.cast::<c_int>(), 1) },
            4 => unsafe { put(value.cast::<u64>(), state().pool_release_threshold) },
            5..=8 => unsafe { put(value.cast::<u64>(), used) },
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemPoolSetAttribute(
    pool: CUmemoryPool,
    attr: c_int,
    value: *mut c_void,
) -> CUresult {
    guard_ctx(|| {
        check_pool(pool)?;
        nonnull(value)?;
        match attr {
            1..=3 => Ok(()),
            // SAFETY: the attribute's value type is cuuint64_t.
            4 => {
                state().pool_release_threshold = unsafe { value.cast::<u64>().read() };
                Ok(())
            }
            // Only resetting a high watermark (to 0) is allowed.
            6 | 8 if unsafe { value.cast::<u64>().read() } == 0 => Ok(()),
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

/// Nothing is cached: frees return memory at once.
#[no_mangle]
pub unsafe extern "C" fn cuMemPoolTrimTo(
    pool: CUmemoryPool,
    _min_bytes_to_keep: usize,
) -> CUresult {
    guard_ctx(|| check_pool(pool))
}

/// Total 80 GB; free = total minus the bytes currently allocated.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    guard_ctx(|| {
        nonnull(free)?;
        nonnull(total)?;
        let t = limits::TOTAL_MEMORY;
        unsafe {
            put(free, t.saturating_sub(global_mem().used_bytes()) as usize)?;
            put(total, t as usize)
        }
    })
}

// ------------------------------------------------------------------------- copies, memsets

fn copy_sync(dst: u64, src: u64, bytes: usize, kind: CopyKind) -> CUresult {
    guard_ctx(|| {
        check_unsafe_call(&mut state())?;
        submit(
            legacy(),
            Node::Copy {
                dst,
                src,
                bytes: bytes as u64,
                kind,
            },
        )
    })
}

fn copy_async(dst: u64, src: u64, bytes: usize, kind: CopyKind, stream: CUstream) -> CUresult {
    guard_ctx(|| {
        submit(
            stream,
            Node::Copy {
                dst,
                src,
                bytes: bytes as u64,
                kind,
            },
        )
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoD_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: usize,
) -> CUresult {
    copy_sync(dst, src as u64, bytes, CopyKind::HtoD)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoH_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: usize,
) -> CUresult {
    copy_sync(dst as u64, src, bytes, CopyKind::DtoH)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoD_v2(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
) -> CUresult {
    copy_sync(dst, src, bytes, CopyKind::DtoD)
}

/// Unified-addressing copy: each side is device memory if it lies in a live allocation,
/// host memory otherwise.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpy(dst: CUdeviceptr, src: CUdeviceptr, bytes: usize) -> CUresult {
    copy_sync(dst, src, bytes, CopyKind::Unified)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyHtoDAsync_v2(
    dst: CUdeviceptr,
    src: *const c_void,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    copy_async(dst, src as u64, bytes, CopyKind::HtoD, stream)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoHAsync_v2(
    dst: *mut c_void,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    copy_async(dst as u64, src, bytes, CopyKind::DtoH, stream)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyDtoDAsync_v2(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    copy_async(dst, src, bytes, CopyKind::DtoD, stream)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyAsync(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    copy_async(dst, src, bytes, CopyKind::Unified, stream)
}

fn check_peer(a: CUcontext, b: CUcontext) -> Res {
    if from_handle(a) == PRIMARY_CTX && from_handle(b) == PRIMARY_CTX {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_CONTEXT)
    }
}

/// One context: a peer copy is a device-to-device copy within it.
#[no_mangle]
pub unsafe extern "C" fn cuMemcpyPeer(
    dst: CUdeviceptr,
    dst_ctx: CUcontext,
    src: CUdeviceptr,
    src_ctx: CUcontext,
    bytes: usize,
) -> CUresult {
    match guard_ctx(|| check_peer(dst_ctx, src_ctx)) {
        CUDA_SUCCESS => copy_sync(dst, src, bytes, CopyKind::DtoD),
        e => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemcpyPeerAsync(
    dst: CUdeviceptr,
    dst_ctx: CUcontext,
    src: CUdeviceptr,
    src_ctx: CUcontext,
    bytes: usize,
    stream: CUstream,
) -> CUresult {
    match guard_ctx(|| check_peer(dst_ctx, src_ctx)) {
        CUDA_SUCCESS => copy_async(dst, src, bytes, CopyKind::DtoD, stream),
        e => e,
    }
}

fn memset(dst: u64, value: u32, elem: u8, count: usize, stream: Option<CUstream>) -> CUresult {
    guard_ctx(|| {
        let node = Node::Set {
            dst,
            value,
            elem,
            count: count as u64,
        };
        match stream {
            Some(s) => submit(s, node),
            None => {
                check_unsafe_call(&mut state())?;
                submit(legacy(), node)
            }
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8_v2(dst: CUdeviceptr, uc: u8, n: usize) -> CUresult {
    memset(dst, uc as u32, 1, n, None)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD16_v2(dst: CUdeviceptr, us: u16, n: usize) -> CUresult {
    memset(dst, us as u32, 2, n, None)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32_v2(dst: CUdeviceptr, ui: u32, n: usize) -> CUresult {
    memset(dst, ui, 4, n, None)
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD8Async(
    dst: CUdeviceptr,
    uc: u8,
    n: usize,
    stream: CUstream,
) -> CUresult {
    memset(dst, uc as u32, 1, n, Some(stream))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD16Async(
    dst: CUdeviceptr,
    us: u16,
    n: usize,
    stream: CUstream,
) -> CUresult {
    memset(dst, us as u32, 2, n, Some(stream))
}

#[no_mangle]
pub unsafe extern "C" fn cuMemsetD32Async(
    dst: CUdeviceptr,
    ui: u32,
    n: usize,
    stream: CUstream,
) -> CUresult {
    memset(dst, ui, 4, n, Some(stream))
}

// ------------------------------------------------------------------------ pinned host memory

fn host_layout(len: u64) -> Option<Layout> {
    Layout::from_size_align(usize::try_from(len.max(1)).ok()?, HOST_ALIGN).ok()
}

fn free_host_block(addr: u64, len: u64) {
    if let Some(layout) = host_layout(len) {
        // SAFETY: addr was returned by `alloc(layout)` in cuMemHostAlloc with this layout.
        unsafe { dealloc(addr as *mut u8, layout) };
    }
}

fn overlaps_host(st: &State, addr: u64, len: u64) -> bool {
    st.host
        .iter()
        .any(|(&a, h)| addr < a + h.len.max(1) && a < addr + len.max(1))
}

/// Pinned memory is ordinary host memory (page-aligned), made visible to kernels.
#[no_mangle]
pub unsafe extern "C" fn cuMemHostAlloc(
    pp: *mut *mut c_void,
    bytesize: usize,
    flags: c_uint,
) -> CUresult {
    guard_ctx(|| {
        nonnull(pp)?;
        if flags & !0x7 != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let len = bytesize as u64;
        let layout = host_layout(len).ok_or(CUDA_ERROR_OUT_OF_MEMORY)?;
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout) };
        if p.is_null() {
            return Err(CUDA_ERROR_OUT_OF_MEMORY);
        }
        let addr = p as u64;
        global_mem().register(addr, len.max(1));
        state().host.insert(
            addr,
            HostMem {
                len: len.max(1),
                owned: true,
                flags,
            },
        );
        unsafe { put(pp, p.cast()) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemAllocHost_v2(pp: *mut *mut c_void, bytesize: usize) -> CUresult {
    unsafe { cuMemHostAlloc(pp, bytesize, 0) }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    guard_ctx(|| {
        let addr = p as u64;
        let mut st = state();
        match st.host.get(&addr) {
            Some(h) if h.owned => {
                let len = h.len;
                st.host.remove(&addr);
                drop(st);
                let _g = gate_write();
                global_mem().unregister(addr);
                free_host_block(addr, len);
                Ok(())
            }
            _ => Err(CUDA_ERROR_INVALID_VALUE),
        }
    })
}

/// Page-locks nothing; makes the range visible to kernels.
#[no_mangle]
pub unsafe extern "C" fn cuMemHostRegister_v2(
    p: *mut c_void,
    bytesize: usize,
    flags: c_uint,
) -> CUresult {
    guard_ctx(|| {
        nonnull(p)?;
        if bytesize == 0 || flags & !0xF != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        let (addr, len) = (p as u64, bytesize as u64);
        let mut st = state();
        if overlaps_host(&st, addr, len) || global_mem().find(addr, 1).is_some() {
            return Err(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
        }
        global_mem().register(addr, len);
        st.host.insert(
            addr,
            HostMem {
                len,
                owned: false,
                flags,
            },
        );
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostRegister(
    p: *mut c_void,
    bytesize: usize,
    flags: c_uint,
) -> CUresult {
    unsafe { cuMemHostRegister_v2(p, bytesize, flags) }
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostUnregister(p: *mut c_void) -> CUresult {
    guard_ctx(|| {
        let addr = p as u64;
        let mut st = state();
        match st.host.get(&addr) {
            Some(h) if !h.owned => {
                st.host.remove(&addr);
                drop(st);
                let _g = gate_write();
                global_mem().unregister(addr);
                Ok(())
            }
            _ => Err(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED),
        }
    })
}

/// The host range containing `addr`: (start, len, flags).
fn host_range(st: &State, addr: u64) -> Option<(u64, u64, c_uint)> {
    st.host
        .iter()
        .find(|(&a, h)| addr >= a && addr < a + h.len)
        .map(|(&a, h)| (a, h.len, h.flags))
}

/// Identity mapping: the device pointer of pinned memory is its host address.
#[no_mangle]
pub unsafe extern "C" fn cuMemHostGetDevicePointer_v2(
    pdptr: *mut CUdeviceptr,
    p: *mut c_void,
    flags: c_uint,
) -> CUresult {
    guard_ctx(|| {
        nonnull(pdptr)?;
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        host_range(&state(), p as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe { put(pdptr, p as u64) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuMemHostGetFlags(pflags: *mut c_uint, p: *mut c_void) -> CUresult {
    guard_ctx(|| {
        let (_, _, flags) = host_range(&state(), p as u64).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe { put(pflags, flags) }
    })
}

// ------------------------------------------------------------------------- pointer queries

/// Base and size of the live allocation containing `dptr`; either output may be NULL.
#[no_mangle]
pub unsafe extern "C" fn cuMemGetAddressRange_v2(
    pbase: *mut CUdeviceptr,
    psize: *mut usize,
    dptr: CUdeviceptr,
) -> CUresult {
    guard_ctx(|| {
        let r = global_mem().find(dptr, 1).ok_or(CUDA_ERROR_NOT_FOUND)?;
        if !pbase.is_null() {
            unsafe { put(pbase, r.start)? };
        }
        if !psize.is_null() {
            unsafe { put(psize, r.len as usize)? };
        }
        Ok(())
    })
}

/// CONTEXT, MEMORY_TYPE, DEVICE_POINTER, HOST_POINTER, DEVICE_ORDINAL, RANGE_START_ADDR and
/// RANGE_SIZE; other attributes are CUDA_ERROR_INVALID_VALUE, as is memory the driver does not
/// know (pageable host memory).
#[no_mangle]
pub unsafe extern "C" fn cuPointerGetAttribute(
    data: *mut c_void,
    attribute: c_int,
    ptr: CUdeviceptr,
) -> CUresult {
    guard_ctx(|| {
        nonnull(data)?;
        let st = state();
        let host = host_range(&st, ptr);
        let range = match host {
            Some((a, len, _)) => (a, len),
            None => {
                let r = global_mem().find(ptr, 1).ok_or(CUDA_ERROR_INVALID_VALUE)?;
                (r.start, r.len)
            }
        };
        drop(st);
        unsafe {
            match attribute {
                1 => put(data.cast::<CUcontext>(), to_handle(PRIMARY_CTX)),
                // CU_MEMORYTYPE_HOST = 1, CU_MEMORYTYPE_DEVICE = 2
                2 => put(data.cast::<c_uint>(), if host.is_some() { 1 } else { 2 }),
                3 => put(data.cast::<CUdeviceptr>(), ptr),
                4 if host.is_some() => put(data.cast::<*mut c_void>(), ptr as *mut c_void),
                9 => put(data.cast::<c_int>(), 0),
                11 => put(data.cast::<CUdeviceptr>(), range.0),
                12 => put(data.cast::<usize>(), range.1 as usize),
                _ => Err(CUDA_ERROR_INVALID_VALUE),
            }
        }
    })
}

/// Alignment the allocator guarantees (for tests and documentation).
pub const DEVICE_ALLOC_ALIGN: usize = ALLOC_ALIGN;
