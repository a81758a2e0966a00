//! Modules (PTX text handed to the simulator), functions and their attributes, launches.
//!
//! A launch is checked as the real driver checks it (dimensions, threads per block, shared
//! memory against the function's CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES), its
//! parameters are packed into the buffer layout the simulator reports, and it runs to
//! completion on the calling thread. A fault is printed (`vgpu: <message>`) and returned;
//! faults that corrupt a real context (illegal address, misaligned address, launch failure,
//! illegal instruction) become the context's sticky error.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write;
use std::sync::{Arc, Mutex};

use super::capture::submit;
use super::error::*;
use super::graph::Node;
use super::state::*;
use super::stream::CUstream;
use crate::sim::{self, limits, FaultKind, Kernel, LaunchConfig};

pub type CUmodule = *mut c_void;
pub type CUfunction = *mut c_void;

pub(crate) struct ModuleInfo {
    sim: Arc<sim::Module>,
    /// Entry name -> function handle (one handle per entry, as on the real driver).
    functions: HashMap<String, u64>,
    ptx_version: c_int,
}

struct FuncAttrs {
    max_dynamic_shared: u32,
    carveout: c_int,
    cache_config: c_uint,
    /// Settable cluster attributes 10..=15 (stored, reported back, otherwise unused).
    cluster: [c_int; 6],
}

pub(crate) struct Function {
    kernel: Kernel,
    module: u64,
    name: CString,
    ptx_version: c_int,
    attrs: Mutex<FuncAttrs>,
}

impl Function {
    fn attrs(&self) -> std::sync::MutexGuard<'_, FuncAttrs> {
        self.attrs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One line to stderr; a failed write (closed stderr) is ignored rather than a panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The `CUresult` of a simulator fault.
pub fn fault_code(kind: FaultKind) -> CUresult {
    match kind {
        FaultKind::InvalidPtx => CUDA_ERROR_INVALID_PTX,
        FaultKind::IllegalAddress => CUDA_ERROR_ILLEGAL_ADDRESS,
        FaultKind::MisalignedAddress => CUDA_ERROR_MISALIGNED_ADDRESS,
        FaultKind::LaunchFailed => CUDA_ERROR_LAUNCH_FAILED,
        FaultKind::IllegalInstruction => CUDA_ERROR_ILLEGAL_INSTRUCTION,
        FaultKind::LaunchTimeout => CUDA_ERROR_LAUNCH_TIMEOUT,
        FaultKind::OutOfResources => CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
        FaultKind::InvalidValue => CUDA_ERROR_INVALID_VALUE,
    }
}

/// Appends one launch's counters to `VGPU_PROFILE_FILE` as one JSON line, written with a
/// single `write` on a file opened for appending, so that lines of concurrent launches never
/// interleave. A tool reads the counters from there rather than from stderr, whose lines
/// mix with everything else the process prints. A failed write is reported and the launch
/// still succeeds: the kernel ran.
fn append_profile(path: &std::ffi::OsStr, line: &str) {
    let r = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = r {
        say(&format!(
            "vgpu: VGPU_PROFILE_FILE {}: {e}",
            std::path::Path::new(path).display()
        ));
    }
}

/// Runs one launch; see the module documentation for fault handling. VGPU_PROFILE=1 prints
/// the launch's profile counters; VGPU_PROFILE_FILE=PATH appends them to PATH as JSON. Both
/// are read at every launch, so a process may turn them on for some launches only.
pub(crate) fn run_kernel(func: &Function, cfg: &LaunchConfig, params: &[u8]) -> Res {
    let result = {
        let _g = gate_read();
        sim::launch(&func.kernel, cfg, params, global_mem())
    };
    match result {
        Ok(profile) => {
            if std::env::var_os("VGPU_PROFILE").is_some_and(|v| v == "1") {
                say(&profile.report(func.kernel.name(), cfg));
            }
            if let Some(path) = std::env::var_os("VGPU_PROFILE_FILE").filter(|p| !p.is_empty()) {
                append_profile(&path, &profile.json_line(&func.kernel, cfg));
            }
            Ok(())
        }
        Err(fault) => {
            say(&format!("vgpu: {}", fault.message));
            let code = fault_code(fault.kind);
            if fault.kind.is_sticky() {
                set_sticky_error(code);
            }
            Err(code)
        }
    }
}

/// Drops one load of a module: its functions die, and its globals leave the memory table
/// with the last load of the same simulator module.
pub(crate) fn release_module(st: &mut State, m: &ModuleInfo) {
    for h in m.functions.values() {
        st.functions.remove(h);
    }
    let key = Arc::as_ptr(&m.sim) as usize;
    let n = st.module_loads.entry(key).or_insert(1);
    *n -= 1;
    if *n == 0 {
        st.module_loads.remove(&key);
        let _g = gate_write();
        m.sim.unregister_globals(global_mem());
    }
}

/// `.version X.Y` as X*10+Y (CU_FUNC_ATTRIBUTE_PTX_VERSION), 0 if absent.
fn ptx_version(ptx: &str) -> c_int {
    ptx.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(".version"))
        .and_then(|v| {
            let (a, b) = v.trim().split_once('.')?;
            Some(a.parse::<c_int>().ok()? * 10 + b.trim().parse::<c_int>().ok()?)
        })
        .unwrap_or(0)
}

/// Loads PTX text; errors carry the message for a JIT error log.
fn load_ptx(image: *const c_void) -> Result<u64, (CUresult, String)> {
    if image.is_null() {
        return Err((CUDA_ERROR_INVALID_VALUE, String::new()));
    }
    // SAFETY: a NUL-terminated PTX string or a binary image (driver contract): reading stops at
    // the first NUL, so it never passes the end of a string.
    let head: Vec<u8> = (0..4)
        .map(|i| unsafe { image.cast::<u8>().add(i).read() })
        .scan(false, |end, b| {
            (!std::mem::replace(end, b == 0)).then_some(b)
        })
        .collect();
    let magic = |m: u32| head == m.to_le_bytes();
    if head == b"\x7fELF" || magic(0xBA55_ED50) || magic(0x4662_43B1) {
        let msg = "vgpu: only PTX text can be loaded (got a cubin/fatbin image)".to_string();
        say(&msg);
        return Err((CUDA_ERROR_NOT_SUPPORTED, msg));
    }
    // SAFETY: not a binary image, so a NUL-terminated string.
    let text = unsafe { CStr::from_ptr(image.cast::<c_char>()) }
        .to_str()
        .map_err(|_| (CUDA_ERROR_INVALID_PTX, "PTX is not valid UTF-8".to_string()))?;
    let module = sim::Module::load(text).map_err(|f| {
        say(&format!("vgpu: {}", f.message));
        (fault_code(f.kind), f.message)
    })?;
    let mut st = state();
    let key = Arc::as_ptr(&module) as usize;
    let loads = st.module_loads.entry(key).or_insert(0);
    *loads += 1;
    if *loads == 1 {
        module.register_globals(global_mem());
    }
    let id = st.new_id();
    let info = ModuleInfo {
        sim: module,
        functions: HashMap::new(),
        ptx_version: ptx_version(text),
    };
    st.modules.insert(id, info);
    Ok(id)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadData(module: *mut CUmodule, image: *const c_void) -> CUresult {
    guard_ctx(|| {
        nonnull(module)?;
        let id = load_ptx(image).map_err(|(c, _)| c)?;
        unsafe { put(module, to_handle(id)) }
    })
}

/// JIT options are ignored except the error/info log buffers, which receive the load error.
#[no_mangle]
pub unsafe extern "C" fn cuModuleLoadDataEx(
    module: *mut CUmodule,
    image: *const c_void,
    num_options: c_uint,
    options: *const c_int,
    option_values: *mut *mut c_void,
) -> CUresult {
    guard_ctx(|| {
        nonnull(module)?;
        let result = load_ptx(image);
        let msg = result
            .as_ref()
            .err()
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        if num_options > 0 && !options.is_null() && !option_values.is_null() {
            // SAFETY: the caller passes `num_options` options and values.
            unsafe { write_jit_logs(num_options as usize, options, option_values, &msg) };
        }
        let id = result.map_err(|(c, _)| c)?;
        unsafe { put(module, to_handle(id)) }
    })
}

/// Fills CU_JIT_ERROR_LOG_BUFFER (5, size option 6) with `msg` and empties
/// CU_JIT_INFO_LOG_BUFFER (3, size option 4); the size options receive the bytes written.
unsafe fn write_jit_logs(n: usize, options: *const c_int, values: *mut *mut c_void, msg: &str) {
    // SAFETY: n options and n values (caller's contract).
    let (opts, vals) = unsafe {
        (
            std::slice::from_raw_parts(options, n),
            std::slice::from_raw_parts_mut(values, n),
        )
    };
    for (buf_opt, size_opt, text) in [(5, 6, msg), (3, 4, "")] {
        let (Some(b), Some(s)) = (
            opts.iter().position(|&o| o == buf_opt),
            opts.iter().position(|&o| o == size_opt),
        ) else {
            continue;
        };
        let (buf, cap) = (vals[b].cast::<u8>(), vals[s] as usize);
        if buf.is_null() || cap == 0 {
            continue;
        }
        let len = text.len().min(cap - 1);
        // SAFETY: the buffer option points to `cap` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf, len);
            buf.add(len).write(0);
        }
        vals[s] = len as *mut c_void;
    }
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleLoad(module: *mut CUmodule, fname: *const c_char) -> CUresult {
    guard_ctx(|| {
        nonnull(module)?;
        nonnull(fname)?;
        // SAFETY: NUL-terminated path.
        let path = unsafe { CStr::from_ptr(fname) }
            .to_str()
            .map_err(|_| CUDA_ERROR_INVALID_VALUE)?;
        let mut text = std::fs::read(path).map_err(|_| CUDA_ERROR_FILE_NOT_FOUND)?;
        text.push(0);
        let id = load_ptx(text.as_ptr().cast()).map_err(|(c, _)| c)?;
        unsafe { put(module, to_handle(id)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleUnload(hmod: CUmodule) -> CUresult {
    guard_ctx(|| {
        let mut st = state();
        let m = st
            .modules
            .remove(&from_handle(hmod))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        release_module(&mut st, &m);
        Ok(())
    })
}

/// The function handle of entry `name`, created on first request.
fn get_function(st: &mut State, hmod: u64, name: &str) -> Res<u64> {
    let m = st.modules.get(&hmod).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
    if let Some(&h) = m.functions.get(name) {
        return Ok(h);
    }
    let kernel = m.sim.kernel(name).ok_or(CUDA_ERROR_NOT_FOUND)?;
    let ptx_version = m.ptx_version;
    let id = st.new_id();
    let max_dynamic_shared =
        limits::DEFAULT_SHARED_PER_BLOCK.saturating_sub(kernel.static_shared_bytes());
    let f = Function {
        name: CString::new(name).map_err(|_| CUDA_ERROR_INVALID_VALUE)?,
        kernel,
        module: hmod,
        ptx_version,
        attrs: Mutex::new(FuncAttrs {
            max_dynamic_shared,
            carveout: -1,
            cache_config: 0,
            cluster: [0; 6],
        }),
    };
    st.functions.insert(id, Arc::new(f));
    st.modules
        .get_mut(&hmod)
        .ok_or(CUDA_ERROR_UNKNOWN)?
        .functions
        .insert(name.to_string(), id);
    Ok(id)
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunction(
    hfunc: *mut CUfunction,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    guard_ctx(|| {
        nonnull(hfunc)?;
        nonnull(name)?;
        // SAFETY: NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name) }
            .to_str()
            .map_err(|_| CUDA_ERROR_NOT_FOUND)?;
        let id = get_function(&mut state(), from_handle(hmod), name)?;
        unsafe { put(hfunc, to_handle(id)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleGetFunctionCount(count: *mut c_uint, hmod: CUmodule) -> CUresult {
    guard_ctx(|| {
        nonnull(count)?;
        let st = state();
        let m = st
            .modules
            .get(&from_handle(hmod))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        unsafe { put(count, m.sim.kernel_names().len() as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuModuleEnumerateFunctions(
    functions: *mut CUfunction,
    num: c_uint,
    hmod: CUmodule,
) -> CUresult {
    guard_ctx(|| {
        nonnull(functions)?;
        let mut st = state();
        let hmod = from_handle(hmod);
        let names: Vec<String> = {
            let m = st.modules.get(&hmod).ok_or(CUDA_ERROR_INVALID_HANDLE)?;
            m.sim.kernel_names().into_iter().map(String::from).collect()
        };
        for (i, name) in names.iter().take(num as usize).enumerate() {
            let h = get_function(&mut st, hmod, name)?;
            // SAFETY: the array holds `num` handles.
            unsafe { functions.add(i).write(to_handle(h)) };
        }
        Ok(())
    })
}

/// Address and size of a module-scope `.global`/`.const` variable; either output may be NULL.
#[no_mangle]
pub unsafe extern "C" fn cuModuleGetGlobal_v2(
    dptr: *mut u64,
    bytes: *mut usize,
    hmod: CUmodule,
    name: *const c_char,
) -> CUresult {
    guard_ctx(|| {
        nonnull(name)?;
        // SAFETY: NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name) }
            .to_str()
            .map_err(|_| CUDA_ERROR_NOT_FOUND)?;
        let st = state();
        let m = st
            .modules
            .get(&from_handle(hmod))
            .ok_or(CUDA_ERROR_INVALID_HANDLE)?;
        let (_, addr, size) = m
            .sim
            .globals()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .ok_or(CUDA_ERROR_NOT_FOUND)?;
        if !dptr.is_null() {
            unsafe { put(dptr, addr)? };
        }
        if !bytes.is_null() {
            unsafe { put(bytes, size as usize)? };
        }
        Ok(())
    })
}

/// CU_MODULE_EAGER_LOADING: modules are lowered when loaded.
#[no_mangle]
pub unsafe extern "C" fn cuModuleGetLoadingMode(mode: *mut c_uint) -> CUresult {
    guard(|| unsafe { put(mode, 1) })
}

// ------------------------------------------------------------------------------- functions

fn function(h: CUfunction) -> Res<Arc<Function>> {
    state()
        .functions
        .get(&from_handle(h))
        .cloned()
        .ok_or(CUDA_ERROR_INVALID_HANDLE)
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetAttribute(
    pi: *mut c_int,
    attrib: c_int,
    hfunc: CUfunction,
) -> CUresult {
    guard_ctx(|| {
        nonnull(pi)?;
        let f = function(hfunc)?;
        let k = &f.kernel;
        let a = f.attrs();
        let v = match attrib {
            0 => k.max_threads_per_block().min(limits::MAX_THREADS_PER_BLOCK) as c_int,
            1 => k.static_shared_bytes() as c_int,
            2 => 0,
            3 => k.local_bytes() as c_int,
            4 => k.num_regs() as c_int,
            5 => f.ptx_version,
            6 => limits::CC_MAJOR * 10 + limits::CC_MINOR,
            7 => 0,
            8 => a.max_dynamic_shared as c_int,
            9 => a.carveout,
            10..=15 => a.cluster[(attrib - 10) as usize],
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        };
        unsafe { put(pi, v) }
    })
}

/// MAX_DYNAMIC_SHARED_SIZE_BYTES must leave static + dynamic within the 227 KB opt-in limit;
/// the carveout is a percentage or -1; the cluster attributes are stored. Read-only
/// attributes are CUDA_ERROR_INVALID_VALUE.
#[no_mangle]
pub unsafe extern "C" fn cuFuncSetAttribute(
    hfunc: CUfunction,
    attrib: c_int,
    value: c_int,
) -> CUresult {
    guard_ctx(|| {
        let f = function(hfunc)?;
        let mut a = f.attrs();
        match attrib {
            8 => {
                let total = f.kernel.static_shared_bytes() as i64 + value as i64;
                if value < 0 || total > limits::MAX_SHARED_PER_BLOCK_OPTIN as i64 {
                    return Err(CUDA_ERROR_INVALID_VALUE);
                }
                a.max_dynamic_shared = value as u32;
            }
            9 if (-1..=100).contains(&value) => a.carveout = value,
            10..=15 => a.cluster[(attrib - 10) as usize] = value,
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncSetCacheConfig(hfunc: CUfunction, config: c_uint) -> CUresult {
    guard_ctx(|| {
        let f = function(hfunc)?;
        if config > 3 {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
        f.attrs().cache_config = config;
        Ok(())
    })
}

/// The name stays valid while the module is loaded.
#[no_mangle]
pub unsafe extern "C" fn cuFuncGetName(name: *mut *const c_char, hfunc: CUfunction) -> CUresult {
    guard_ctx(|| {
        let f = function(hfunc)?;
        unsafe { put(name, f.name.as_ptr()) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncGetModule(hmod: *mut CUmodule, hfunc: CUfunction) -> CUresult {
    guard_ctx(|| {
        let f = function(hfunc)?;
        unsafe { put(hmod, to_handle(f.module)) }
    })
}

/// Offset and size of parameter `index` in the packed parameter buffer.
#[no_mangle]
pub unsafe extern "C" fn cuFuncGetParamInfo(
    hfunc: CUfunction,
    index: usize,
    offset: *mut usize,
    size: *mut usize,
) -> CUresult {
    guard_ctx(|| {
        let f = function(hfunc)?;
        let p = *f
            .kernel
            .params()
            .get(index)
            .ok_or(CUDA_ERROR_INVALID_VALUE)?;
        unsafe {
            put(offset, p.offset as usize)?;
            if !size.is_null() {
                put(size, p.size as usize)?;
            }
        }
        Ok(())
    })
}

/// CU_FUNCTION_LOADED: functions are loaded with their module.
#[no_mangle]
pub unsafe extern "C" fn cuFuncIsLoaded(state: *mut c_uint, hfunc: CUfunction) -> CUresult {
    guard_ctx(|| {
        function(hfunc)?;
        unsafe { put(state, 1) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn cuFuncLoad(hfunc: CUfunction) -> CUresult {
    guard_ctx(|| function(hfunc).map(drop))
}

// -------------------------------------------------------------------------------- launches

/// Packs the parameters: `kernel_params` holds one pointer per parameter; `extra` is the
/// CU_LAUNCH_PARAM_BUFFER_POINTER / _SIZE / _END list of a pre-packed buffer.
unsafe fn pack_params(
    k: &Kernel,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> Res<Vec<u8>> {
    let total = k.param_bytes() as usize;
    let mut buf = vec![0u8; total];
    match (kernel_params.is_null(), extra.is_null()) {
        (false, true) => {
            for (i, p) in k.params().iter().enumerate() {
                // SAFETY: one pointer per parameter, to a value of its size (driver contract).
                unsafe {
                    let src = kernel_params.add(i).read().cast::<u8>();
                    copy_param(&mut buf, p.offset as usize, src, p.size as usize)?;
                }
            }
        }
        (true, false) => {
            // SAFETY: the caller's END-terminated list.
            let (ptr, size) = unsafe { extra_buffer(extra)? };
            if size < total {
                return Err(CUDA_ERROR_INVALID_VALUE);
            }
            // SAFETY: the buffer holds at least `total` bytes (its size says so).
            unsafe { copy_param(&mut buf, 0, ptr, total)? };
        }
        (true, true) if total == 0 => {}
        (false, false) | (true, true) => return Err(CUDA_ERROR_INVALID_VALUE),
    }
    Ok(buf)
}

/// Copies the `n` bytes at `src` (checked non-null) into `buf[o..o + n]`.
///
/// # Safety
/// A non-null `src` points to `n` readable bytes.
unsafe fn copy_param(buf: &mut [u8], o: usize, src: *const u8, n: usize) -> Res {
    nonnull(src)?;
    let dst = buf.get_mut(o..o + n).ok_or(CUDA_ERROR_INVALID_VALUE)?;
    // SAFETY: `src` has `n` bytes (caller), `dst` is `n` bytes of `buf`.
    unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), n) };
    Ok(())
}

/// The pre-packed buffer and its size named by a launch's `extra` list.
///
/// # Safety
/// `extra` is an END-terminated key/value list whose size value points to a `usize`.
unsafe fn extra_buffer(extra: *mut *mut c_void) -> Res<(*const u8, usize)> {
    let (mut ptr, mut size) = (std::ptr::null::<u8>(), None::<usize>);
    for i in (0..64).step_by(2) {
        // SAFETY: the list is END-terminated; values follow their keys.
        let key = unsafe { extra.add(i).read() } as usize;
        match key {
            0 => break,
            1 => ptr = unsafe { extra.add(i + 1).read() }.cast(),
            2 => {
                let p = unsafe { extra.add(i + 1).read() }.cast::<usize>();
                nonnull(p)?;
                size = Some(unsafe { p.read() });
            }
            _ => return Err(CUDA_ERROR_INVALID_VALUE),
        }
    }
    Ok((ptr, size.ok_or(CUDA_ERROR_INVALID_VALUE)?))
}

/// Checks a launch configuration against the device limits and the function's attributes.
fn check_launch(f: &Function, grid: [u32; 3], block: [u32; 3], shared: u32) -> Res<LaunchConfig> {
    for d in 0..3 {
        if grid[d] == 0
            || block[d] == 0
            || grid[d] > limits::MAX_GRID_DIM[d]
            || block[d] > limits::MAX_BLOCK_DIM[d]
        {
            return Err(CUDA_ERROR_INVALID_VALUE);
        }
    }
    let threads = block.iter().map(|&b| b as u64).product::<u64>();
    if threads > limits::MAX_THREADS_PER_BLOCK as u64 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    if threads > f.kernel.max_threads_per_block() as u64 {
        // More threads than the kernel's .maxntid: "too many resources requested for launch".
        return Err(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
    }
    let max_dynamic = f.attrs().max_dynamic_shared;
    let total = shared as u64 + f.kernel.static_shared_bytes() as u64;
    if shared > max_dynamic || total > limits::MAX_SHARED_PER_BLOCK_OPTIN as u64 {
        return Err(CUDA_ERROR_INVALID_VALUE);
    }
    Ok(LaunchConfig {
        grid,
        block,
        dynamic_shared: shared,
        max_dynamic_shared: max_dynamic,
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn launch(
    hfunc: CUfunction,
    grid: [u32; 3],
    block: [u32; 3],
    shared: u32,
    stream: CUstream,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> Res {
    let func = function(hfunc)?;
    let cfg = check_launch(&func, grid, block, shared)?;
    let params = unsafe { pack_params(&func.kernel, kernel_params, extra)? };
    submit(stream, Node::Kernel { func, cfg, params })
}

#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernel(
    f: CUfunction,
    grid_x: c_uint,
    grid_y: c_uint,
    grid_z: c_uint,
    block_x: c_uint,
    block_y: c_uint,
    block_z: c_uint,
    shared_mem_bytes: c_uint,
    h_stream: CUstream,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard_ctx(|| unsafe {
        launch(
            f,
            [grid_x, grid_y, grid_z],
            [block_x, block_y, block_z],
            shared_mem_bytes,
            h_stream,
            kernel_params,
            extra,
        )
    })
}

/// Grid-wide synchronization is whatever the simulator does with it; otherwise a plain launch.
#[no_mangle]
pub unsafe extern "C" fn cuLaunchCooperativeKernel(
    f: CUfunction,
    grid_x: c_uint,
    grid_y: c_uint,
    grid_z: c_uint,
    block_x: c_uint,
    block_y: c_uint,
    block_z: c_uint,
    shared_mem_bytes: c_uint,
    h_stream: CUstream,
    kernel_params: *mut *mut c_void,
) -> CUresult {
    guard_ctx(|| unsafe {
        launch(
            f,
            [grid_x, grid_y, grid_z],
            [block_x, block_y, block_z],
            shared_mem_bytes,
            h_stream,
            kernel_params,
            std::ptr::null_mut(),
        )
    })
}

#[repr(C)]
pub struct CUlaunchAttribute {
    pub id: c_uint,
    pub pad: [u8; 4],
    pub value: [u64; 8],
}

#[repr(C)]
pub struct CUlaunchConfig {
    pub grid_dim: [c_uint; 3],
    pub block_dim: [c_uint; 3],
    pub shared_mem_bytes: c_uint,
    pub h_stream: CUstream,
    pub attrs: *mut CUlaunchAttribute,
    pub num_attrs: c_uint,
}

/// Launch attributes are accepted and ignored, except a cluster dimension other than 1x1x1
/// (thread block clusters are not simulated: CUDA_ERROR_NOT_SUPPORTED).
#[no_mangle]
pub unsafe extern "C" fn cuLaunchKernelEx(
    config: *const CUlaunchConfig,
    f: CUfunction,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard_ctx(|| {
        nonnull(config)?;
        // SAFETY: non-null; the caller's config.
        let c = unsafe { &*config };
        if c.num_attrs > 0 {
            nonnull(c.attrs)?;
            // SAFETY: `num_attrs` attributes.
            let attrs = unsafe { std::slice::from_raw_parts(c.attrs, c.num_attrs as usize) };
            for a in attrs.iter().filter(|a| a.id == 4) {
                let (x, y, z) = (
                    a.value[0] & 0xFFFF_FFFF,
                    a.value[0] >> 32,
                    a.value[1] & 0xFFFF_FFFF,
                );
                if x.max(1) * y.max(1) * z.max(1) > 1 {
                    say("vgpu: thread block clusters are not supported");
                    return Err(CUDA_ERROR_NOT_SUPPORTED);
                }
            }
        }
        unsafe {
            launch(
                f,
                c.grid_dim,
                c.block_dim,
                c.shared_mem_bytes,
                c.h_stream,
                kernel_params,
                extra,
            )
        }
    })
}
