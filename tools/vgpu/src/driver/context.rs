//! Initialization, the device (ordinal 0, a Hopper-class part) and its primary context.
//!
//! There is one device and one context, the primary one, with a retain count. A thread's
//! current context is a per-thread stack, as on the real driver; cudarc makes its context
//! current (cuCtxGetCurrent, then cuCtxSetCurrent if needed) before every call.
//! When the retain count drops to zero, or on cuDevicePrimaryCtxReset_v2, every resource of
//! the context (allocations, streams, events, modules, graphs) is destroyed and the sticky
//! error cleared, as the real driver does.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::mem::take;

use super::capture::check_unsafe_call;
use super::error::*;
use super::memory::free_all;
use super::state::*;
use crate::sim::limits;

pub type CUdevice = c_int;
pub type CUcontext = *mut c_void;

/// What cuDriverGetVersion reports: a CUDA 13.0 driver (the embedded PTX is ISA 9.0).
pub const DRIVER_VERSION: c_int = 13000;

/// Flags a primary context may carry (CU_CTX_SCHED_MASK | CU_CTX_MAP_HOST |
/// CU_CTX_LMEM_RESIZE_TO_MAX | CU_CTX_COREDUMP_ENABLE | CU_CTX_USER_COREDUMP_ENABLE |
/// CU_CTX_SYNC_MEMOPS).
const CTX_FLAGS_MASK: c_uint = 0x07 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80;

fn check_device(dev: CUdevice) -> Res {
    if dev == 0 {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_DEVICE)
    }
}

/// The value of device attribute `attrib`, as an H100 SXM reports it where the simulator
/// models the feature, 0 where it does not (textures, surfaces, managed memory, clusters,
/// tensor maps, VMM, IPC: a client that asks sees the feature as absent and does not use it).
/// `None` for values outside the enum (CUDA_ERROR_INVALID_VALUE).
pub fn device_attribute(attrib: c_int) -> Option<c_int> {
    let opt_in = limits::MAX_SHARED_PER_BLOCK_OPTIN as c_int;
    Some(match attrib {
        1 => limits::MAX_THREADS_PER_BLOCK as c_int,
        2..=4 => limits::MAX_BLOCK_DIM[(attrib - 2) as usize] as c_int,
        5..=7 => limits::MAX_GRID_DIM[(attrib - 5) as usize] as c_int,
        8 => limits::DEFAULT_SHARED_PER_BLOCK as c_int,
        9 => 65536, // total constant memory
        10 => limits::WARP_SIZE as c_int,
        11 => i32::MAX, // max pitch
        12 => limits::REGS_PER_BLOCK as c_int,
        13 => 1_980_000, // clock rate, kHz
        14 => 512,       // texture alignment
        15 => 1,         // gpu overlap
        16 => limits::MULTIPROCESSORS as c_int,
        17 | 18 => 0,           // kernel exec timeout, integrated
        19 => 1,                // can map host memory (pinned memory is device-visible)
        20 => 0,                // compute mode default
        30 => 512,              // surface alignment
        31 => 1,                // concurrent kernels
        32 => 1,                // ECC enabled
        33..=35 => 0,           // PCI bus/device id, TCC
        36 => 2_619_000,        // memory clock, kHz (HBM3)
        37 => 5120,             // memory bus width, bits
        38 => 50 * 1024 * 1024, // L2 size
        39 => 2048,             // max threads per SM
        40 => 2,                // async engines
        41 => 1,                // unified addressing
        50 => 0,                // PCI domain
        75 => limits::CC_MAJOR,
        76 => limits::CC_MINOR,
        78..=80 => 1, // stream priorities, global/local L1 caching
        81 => limits::SHARED_PER_SM as c_int,
        82 => limits::REGS_PER_BLOCK as c_int, // registers per SM
        87 => 2,                               // single/double precision perf ratio
        90 | 91 => 1, // compute preemption, host pointer for registered memory
        97 => opt_in,
        99 => 1,            // cuMemHostRegister supported
        106 => 32,          // max blocks per SM
        111 => 1024,        // reserved shared memory per block
        113 => 1,           // read-only host register
        115 => 1,           // memory pools: cudarc then uses cuMemAllocAsync/FreeAsync
        126 => 4,           // memory sync domains
        131 | 134 => -1,    // NUMA ids: none
        139 => 0x2330_10DE, // PCI device/vendor id of an H100 SXM
        0 | 148.. => return None,
        a if a < 0 => return None,
        _ => 0,
    })
}

/// Requires `flags == 0`, as the real driver does. Idempotent.
#[no_mangle]
pub unsafe extern "C" fn cuInit(flags: c_uint) -> CUresult {
    guard_noinit(|| {
        if flags != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // A misspelt VGPU_NUMERICS must not quietly run the exact arithmetic.
        if let Err(msg) = crate::numerics::checked() {
            eprintln!("{msg}");
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        set_initialized();
        Ok(())
    })
}

/// Reports [`DRIVER_VERSION`]; needs no cuInit.
#[no_mangle]
pub unsafe extern "C" fn cuDriverGetVersion(driver_version: *mut c_int) -> CUresult {
    guard_noinit(|| unsafe { put(driver_version, DRIVER_VERSION) })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    guard(|| unsafe { put(count, 1) })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGet(device: *mut CUdevice, ordinal: c_int) -> CUresult {
    guard(|| {
        nonnull(device)?;
        check_device(ordinal)?;
        unsafe { put(device, 0) }
    })
}

/// `limits::device_name()`, truncated to `len - 1` bytes and NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: CUdevice) -> CUresult {
    guard(|| {
        nonnull(name)?;
        if len <= 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        check_device(dev)?;
        let name_s = limits::device_name();
        let src = name_s.as_bytes();
        let n = src.len().min(len as usize - 1);
        // SAFETY: the caller provides `len` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), name.cast::<u8>(), n);
            name.add(n).write(0);
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetAttribute(
    pi: *mut c_int,
    attrib: c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        nonnull(pi)?;
        check_device(dev)?;
        let v = device_attribute(attrib).ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe { put(pi, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: CUdevice) -> CUresult {
    guard(|| {
        nonnull(bytes)?;
        check_device(dev)?;
        unsafe { put(bytes, limits::TOTAL_MEMORY as usize) }
    })
}

/// Deprecated, but trivial.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceComputeCapability(
    major: *mut c_int,
    minor: *mut c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        nonnull(major)?;
        nonnull(minor)?;
        check_device(dev)?;
        unsafe {
            put(major, limits::CC_MAJOR)?;
            put(minor, limits::CC_MINOR)
        }
    })
}

/// A fixed UUID spelling "vgpu-simulator-0".
const UUID: [u8; 16] = *b"vgpu-simulator-0";

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    guard(|| {
        nonnull(uuid)?;
        check_device(dev)?;
        unsafe { put(uuid, UUID) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetUuid_v2(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    unsafe { cuDeviceGetUuid(uuid, dev) }
}

#[no_mangle]
pub unsafe extern "C" fn cuDeviceGetPCIBusId(
    pci_bus_id: *mut c_char,
    len: c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        nonnull(pci_bus_id)?;
        check_device(dev)?;
        let id = b"0000:00:00.0\0";
        if (len as usize) < id.len() || len < 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: the caller provides `len` >= 13 writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(id.as_ptr(), pci_bus_id.cast::<u8>(), id.len()) };
        Ok(())
    })
}

/// One device: no peers.
#[no_mangle]
pub unsafe extern "C" fn cuDeviceCanAccessPeer(
    can: *mut c_int,
    dev: CUdevice,
    peer: CUdevice,
) -> CUresult {
    guard(|| {
        nonnull(can)?;
        check_device(dev)?;
        check_device(peer)?;
        unsafe { put(can, 0) }
    })
}

// ------------------------------------------------------------------------- primary context

/// Destroys everything the context owns and clears the sticky error. Called with the state
/// lock held (allowed lock order: state, then memory gate).
fn destroy_context(st: &mut State) {
    let sessions = take(&mut st.sessions);
    st.capture.clear();
    let graphs = take(&mut st.graphs);
    let execs = take(&mut st.execs);
    st.streams.clear();
    st.events.clear();
    st.functions.clear();
    let modules = take(&mut st.modules);
    for m in modules.into_values() {
        super::module::release_module(st, &m);
    }
    free_all(st);
    drop((sessions, graphs, execs));
    st.ctx_flags = 0;
    st.limits = DEFAULT_LIMITS;
    st.cache_config = 0;
    st.pool_release_threshold = 0;
    clear_sticky();
}

/// Retains the primary context (creating it on the first retain).
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    guard(|| {
        nonnull(pctx)?;
        check_device(dev)?;
        state().retain += 1;
        unsafe { put(pctx, to_handle(PRIMARY_CTX)) }
    })
}

/// Drops one retain; the last one destroys the context. Works on a context in a sticky
/// error state (that is how an application recovers).
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: CUdevice) -> CUresult {
    guard(|| {
        check_device(dev)?;
        let mut st = state();
        if st.retain == 0 {
            return Err(CUDA_ERROR_INVALID_CONTEXT);
        }
        st.retain -= 1;
        if st.retain == 0 {
            destroy_context(&mut st);
        }
        Ok(())
    })
}

/// Destroys every resource of the primary context and clears its sticky error; the retain
/// count is kept, so holders of the handle go on using a fresh context.
#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxReset_v2(dev: CUdevice) -> CUresult {
    guard(|| {
        check_device(dev)?;
        destroy_context(&mut state());
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxGetState(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    guard(|| {
        nonnull(flags)?;
        nonnull(active)?;
        check_device(dev)?;
        let st = state();
        unsafe {
            put(flags, st.ctx_flags)?;
            put(active, (st.retain > 0) as c_int)
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuDevicePrimaryCtxSetFlags_v2(dev: CUdevice, flags: c_uint) -> CUresult {
    guard(|| {
        check_device(dev)?;
        if flags & !CTX_FLAGS_MASK != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        state().ctx_flags = flags;
        Ok(())
    })
}

// ------------------------------------------------------------------- current context stack

fn check_ctx_handle(ctx: CUcontext) -> Res {
    if from_handle(ctx) == PRIMARY_CTX {
        Ok(())
    } else {
        Err(CUDA_ERROR_INVALID_CONTEXT)
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCurrent(pctx: *mut CUcontext) -> CUresult {
    guard(|| {
        let cur = current_ctx().map_or(std::ptr::null_mut(), to_handle);
        unsafe { put(pctx, cur) }
    })
}

/// Replaces the top of the thread's stack; NULL pops it.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCurrent(ctx: CUcontext) -> CUresult {
    guard(|| {
        if ctx.is_null() {
            CTX_STACK.with(|s| s.borrow_mut().pop());
            return Ok(());
        }
        check_ctx_handle(ctx)?;
        CTX_STACK.with(|s| {
            let mut s = s.borrow_mut();
            s.pop();
            s.push(PRIMARY_CTX);
        });
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxPushCurrent_v2(ctx: CUcontext) -> CUresult {
    guard(|| {
        check_ctx_handle(ctx)?;
        CTX_STACK.with(|s| s.borrow_mut().push(PRIMARY_CTX));
        Ok(())
    })
}

/// `pctx` may be NULL (the popped context is then not returned).
#[no_mangle]
pub unsafe extern "C" fn cuCtxPopCurrent_v2(pctx: *mut CUcontext) -> CUresult {
    guard(|| {
        let top = CTX_STACK
            .with(|s| s.borrow_mut().pop())
            .ok_or(CUDA_ERROR_INVALID_CONTEXT)?;
        if !pctx.is_null() {
            unsafe { put(pctx, to_handle(top))? };
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice(device: *mut CUdevice) -> CUresult {
    guard_ctx(|| unsafe { put(device, 0) })
}

/// All work is done by the time a call returns, so synchronizing only reports errors: the
/// sticky one, or CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED while a capture forbids it.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize() -> CUresult {
    guard_ctx(|| check_unsafe_call(&mut state()))
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetFlags(flags: *mut c_uint) -> CUresult {
    guard_ctx(|| unsafe { put(flags, state().ctx_flags) })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetFlags(flags: c_uint) -> CUresult {
    guard_ctx(|| {
        if flags & !CTX_FLAGS_MASK != 0 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        state().ctx_flags = flags;
        Ok(())
    })
}

fn limit_index(limit: c_int) -> Res<usize> {
    match limit {
        0..=6 => Ok(limit as usize),
        _ => Err(CUDA_ERROR_UNSUPPORTED_LIMIT),
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetLimit(value: *mut usize, limit: c_int) -> CUresult {
    guard_ctx(|| {
        nonnull(value)?;
        let i = limit_index(limit)?;
        unsafe { put(value, state().limits[i]) }
    })
}

/// Values are stored and reported back; none changes what the simulator does.
#[no_mangle]
pub unsafe extern "C" fn cuCtxSetLimit(limit: c_int, value: usize) -> CUresult {
    guard_ctx(|| {
        let i = limit_index(limit)?;
        state().limits[i] = value;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetCacheConfig(config: *mut c_uint) -> CUresult {
    guard_ctx(|| unsafe { put(config, state().cache_config) })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSetCacheConfig(config: c_uint) -> CUresult {
    guard_ctx(|| {
        if config > 3 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        state().cache_config = config;
        Ok(())
    })
}

/// H100's range: priorities 0 (least) to -5 (greatest).
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetStreamPriorityRange(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    guard_ctx(|| {
        if !least.is_null() {
            unsafe { put(least, 0)? };
        }
        if !greatest.is_null() {
            unsafe { put(greatest, -5)? };
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetApiVersion(ctx: CUcontext, version: *mut c_uint) -> CUresult {
    guard(|| {
        if !ctx.is_null() {
            check_ctx_handle(ctx)?;
        }
        unsafe { put(version, 3020) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxSynchronize_v2(ctx: CUcontext) -> CUresult {
    match guard(|| check_ctx_handle(ctx)) {
        CUDA_SUCCESS => unsafe { cuCtxSynchronize() },
        e => e,
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuCtxGetDevice_v2(device: *mut CUdevice, ctx: CUcontext) -> CUresult {
    match guard(|| check_ctx_handle(ctx)) {
        CUDA_SUCCESS => unsafe { cuCtxGetDevice(device) },
        e => e,
    }
}

/// The primary context's id is 1.
#[no_mangle]
pub unsafe extern "C" fn cuCtxGetId(ctx: CUcontext, id: *mut u64) -> CUresult {
    guard(|| {
        if !ctx.is_null() {
            check_ctx_handle(ctx)?;
        }
        unsafe { put(id, 1) }
    })
}
