//! Process-wide driver state: the device memory table, the registries behind every handle,
//! the locks, and the entry guards every exported function runs its body under.
//!
//! Handles (`CUstream`, `CUevent`, `CUmodule`, ...) are small integers from one counter, cast
//! to pointers, and looked up in maps: a stale or foreign handle is an error code
//! (CUDA_ERROR_INVALID_HANDLE), never a dereference of freed memory.
//!
//! Locking: `STATE` (all registries) and `GATE` (device memory in use) are never held in the
//! order GATE -> STATE. Work that touches device memory (launches, copies, memsets) holds
//! `GATE` for reading without `STATE`; frees take it for writing, so a free waits for kernels
//! running on other threads instead of unmapping memory under them (the real cuMemFree also
//! synchronizes the device).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::capture::Session;
use super::error::*;
use super::graph::{Exec, Graph};
use super::memory::HostMem;
use super::module::{Function, ModuleInfo};
use super::stream::{EventInfo, StreamInfo};
use crate::mem::GlobalMem;

pub(crate) type Res<T = ()> = Result<T, CUresult>;

/// The handle of the device's primary context (the only context there is).
pub(crate) const PRIMARY_CTX: u64 = 0x0C7C_0000;

/// `CU_STREAM_LEGACY` / `CU_STREAM_PER_THREAD` special stream handles.
pub(crate) const STREAM_LEGACY: u64 = 0x1;
pub(crate) const STREAM_PER_THREAD: u64 = 0x2;

static MEM: LazyLock<GlobalMem> = LazyLock::new(GlobalMem::new);
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// The context's sticky error (0 = none): set by a faulting launch, cleared on destruction.
static STICKY: AtomicU32 = AtomicU32::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static GATE: RwLock<()> = RwLock::new(());
static STATE: LazyLock<Mutex<State>> = LazyLock::new(|| Mutex::new(State::new()));

thread_local! {
    /// The calling thread's context stack (cuCtxPush/Pop/SetCurrent).
    pub(crate) static CTX_STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Key of this thread's `CU_STREAM_PER_THREAD` stream (0 until first used).
    pub(crate) static PER_THREAD_KEY: Cell<u64> = const { Cell::new(0) };
    /// cuThreadExchangeStreamCaptureMode: this thread's capture interaction mode.
    pub(crate) static CAPTURE_MODE: Cell<u32> = const { Cell::new(0) };
}

/// The device's memory: every allocation, module global and pinned host range kernels may
/// touch.
pub fn global_mem() -> &'static GlobalMem {
    &MEM
}

/// Device allocations made through cuMemAlloc_v2 / cuMemAllocAsync /
/// cuMemAllocFromPoolAsync since the process started (monotonic): a test that runs the same
/// work twice can assert that the second run allocated nothing.
pub fn allocation_count() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

pub(crate) fn count_allocation() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
}

/// [`allocation_count`] for applications that dlopen the library (`dlsym`).
#[no_mangle]
pub extern "C" fn vgpu_allocation_count() -> u64 {
    allocation_count()
}

pub(crate) fn set_initialized() {
    INITIALIZED.store(true, Ordering::Release);
}

pub(crate) fn sticky() -> CUresult {
    STICKY.load(Ordering::Acquire)
}

/// Makes `code` the context's sticky error (only the first one sticks, as on the device).
pub fn set_sticky_error(code: CUresult) {
    let _ = STICKY.compare_exchange(CUDA_SUCCESS, code, Ordering::AcqRel, Ordering::Acquire);
}

pub(crate) fn clear_sticky() {
    STICKY.store(CUDA_SUCCESS, Ordering::Release);
}

pub(crate) fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn gate_read() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn gate_write() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn to_handle<T>(id: u64) -> *mut T {
    id as usize as *mut T
}

pub(crate) fn from_handle<T>(p: *mut T) -> u64 {
    p as usize as u64
}

/// Everything that lives in the primary context.
pub(crate) struct State {
    next_id: u64,
    pub retain: u32,
    pub ctx_flags: u32,
    pub limits: [usize; 10],
    pub cache_config: u32,
    /// Device allocations owned by the context: address -> bytes.
    pub allocs: HashMap<u64, u64>,
    pub host: HashMap<u64, HostMem>,
    pub streams: HashMap<u64, StreamInfo>,
    pub events: HashMap<u64, EventInfo>,
    pub modules: HashMap<u64, ModuleInfo>,
    pub functions: HashMap<u64, Arc<Function>>,
    /// Loads per simulator module (the simulator caches modules by content, so two loads of
    /// the same PTX share globals): registered with the memory table while > 0.
    pub module_loads: HashMap<usize, u32>,
    /// Stream key -> capture session it belongs to.
    pub capture: HashMap<u64, u64>,
    pub sessions: HashMap<u64, Session>,
    pub graphs: HashMap<u64, Graph>,
    pub execs: HashMap<u64, Exec>,
    pub pool_release_threshold: u64,
}

/// Defaults of cuCtxGetLimit (H100 values).
pub(crate) const DEFAULT_LIMITS: [usize; 10] = [1024, 1 << 20, 8 << 20, 2, 2048, 32, 0, 0, 0, 0];

impl State {
    fn new() -> Self {
        State {
            next_id: 0x1000,
            retain: 0,
            ctx_flags: 0,
            limits: DEFAULT_LIMITS,
            cache_config: 0,
            allocs: HashMap::new(),
            host: HashMap::new(),
            streams: HashMap::new(),
            events: HashMap::new(),
            modules: HashMap::new(),
            functions: HashMap::new(),
            module_loads: HashMap::new(),
            capture: HashMap::new(),
            sessions: HashMap::new(),
            graphs: HashMap::new(),
            execs: HashMap::new(),
            pool_release_threshold: 0,
        }
    }

    /// A fresh handle value, never reused in the life of the process.
    pub fn new_id(&mut self) -> u64 {
        self.next_id += 0x10;
        self.next_id
    }
}

/// Runs an exported function's body: a panic becomes CUDA_ERROR_UNKNOWN instead of
/// unwinding into C. Needs no cuInit (error strings, cuDriverGetVersion).
pub(crate) fn guard_noinit(f: impl FnOnce() -> Res) -> CUresult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CUDA_SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => CUDA_ERROR_UNKNOWN,
    }
}

/// [`guard_noinit`] for calls that need cuInit (device queries, primary context management).
pub(crate) fn guard(f: impl FnOnce() -> Res) -> CUresult {
    guard_noinit(|| {
        require_init()?;
        f()
    })
}

/// [`guard`] for calls on the current context: it must exist and be alive, and a sticky
/// error from an earlier fault fails every such call.
pub(crate) fn guard_ctx(f: impl FnOnce() -> Res) -> CUresult {
    guard_noinit(|| {
        require_ctx()?;
        f()
    })
}

pub(crate) fn require_init() -> Res {
    if INITIALIZED.load(Ordering::Acquire) {
        Ok(())
    } else {
        Err(CUDA_ERROR_NOT_INITIALIZED)
    }
}

pub(crate) fn current_ctx() -> Option<u64> {
    CTX_STACK.with(|s| s.borrow().last().copied())
}

pub(crate) fn require_ctx() -> Res {
    require_init()?;
    if current_ctx() != Some(PRIMARY_CTX) || state().retain == 0 {
        return Err(CUDA_ERROR_INVALID_CONTEXT);
    }
    match sticky() {
        CUDA_SUCCESS => Ok(()),
        code => Err(code),
    }
}

/// `Err(CUDA_ERROR_INVALID_VALUE)` for a null pointer argument.
pub(crate) fn nonnull<T>(p: *const T) -> Res {
    if p.is_null() {
        Err(CUDA_ERROR_INVALID_VALUE)
    } else {
        Ok(())
    }
}

/// Writes an out-parameter after checking it is not null.
///
/// # Safety
/// `p` is null or valid for a write of `T`.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> Res {
    nonnull(p)?;
    // SAFETY: non-null; validity is the caller's contract with the C API.
    unsafe { p.write(v) };
    Ok(())
}
