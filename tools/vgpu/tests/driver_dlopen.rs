//! The built `libcuda.so` as cudarc uses it: dlopen, look symbols up by name, dlclose, and
//! dlopen again (cudarc probes the library with a load/unload before loading it for good).
//! Also checks that every driver symbol cudarc 0.19.10 may look up is exported, so that no
//! cudarc call can panic with "Missing symbol".
//!
//! The library is found next to this test binary (target/<profile>/deps or its parent);
//! dlopen/dlsym come from glibc, declared here rather than through a crate.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::io::Write;
use std::path::PathBuf;

use cuda::driver::{IMPLEMENTED, NOT_SUPPORTED};

extern "C" {
    fn dlopen(filename: *const c_char, flags: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
    fn dlerror() -> *mut c_char;
}

const RTLD_NOW: c_int = 2;

type GetCount = unsafe extern "C" fn(*mut c_int) -> c_uint;
type Init = unsafe extern "C" fn(c_uint) -> c_uint;
type Version = unsafe extern "C" fn(*mut c_int) -> c_uint;
type Retain = unsafe extern "C" fn(*mut *mut c_void, c_int) -> c_uint;
type Release = unsafe extern "C" fn(c_int) -> c_uint;
type SetCurrent = unsafe extern "C" fn(*mut c_void) -> c_uint;
type AllocAsync = unsafe extern "C" fn(*mut u64, usize, *mut c_void) -> c_uint;
type FreeAsync = unsafe extern "C" fn(u64, *mut c_void) -> c_uint;
type MemsetAsync = unsafe extern "C" fn(u64, u8, usize, *mut c_void) -> c_uint;
type DtoH = unsafe extern "C" fn(*mut c_void, u64, usize) -> c_uint;
type Count = unsafe extern "C" fn() -> u64;

fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir").to_path_buf();
    [deps.join("libcuda.so"), deps.join("../libcuda.so")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("libcuda.so not found next to {}", exe.display()))
}

fn open(path: &CStr) -> *mut c_void {
    let h = unsafe { dlopen(path.as_ptr(), RTLD_NOW) };
    assert!(
        !h.is_null(),
        "dlopen: {}",
        unsafe { CStr::from_ptr(dlerror()) }.to_string_lossy()
    );
    h
}

/// The symbol `name` as a function pointer of type `F`.
unsafe fn sym<F: Copy>(h: *mut c_void, name: &str) -> F {
    let c = CString::new(name).unwrap();
    let p = unsafe { dlsym(h, c.as_ptr()) };
    assert!(!p.is_null(), "dlsym({name}) failed");
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: F is a function pointer type matching the exported signature.
    unsafe { std::mem::transmute_copy(&p) }
}

/// Names cudarc's dynamic loader looks up (`load::<_F>("...")`), from its source in the cargo
/// registry; `None` when the source is not there.
fn cudarc_symbols() -> Option<Vec<String>> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = std::fs::read_dir(home.join("registry/src"))
        .ok()?
        .find_map(|d| {
            let p = d.ok()?.path().join("cudarc-0.19.10/src/driver/sys/mod.rs");
            std::fs::read_to_string(p).ok()
        })?;
    let mut names: Vec<String> = src
        .split("load::<_F>(\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(String::from))
        .collect();
    names.sort();
    names.dedup();
    Some(names)
}

#[test]
fn dlopen_dlclose_dlopen_and_every_cudarc_symbol() {
    let path = CString::new(library().to_str().unwrap()).unwrap();

    // First load: a fresh library, cuInit required.
    let h = open(&path);
    unsafe {
        let get_count: GetCount = sym(h, "cuDeviceGetCount");
        let init: Init = sym(h, "cuInit");
        let version: Version = sym(h, "cuDriverGetVersion");
        let mut n = -1;
        assert_eq!(
            get_count(&mut n),
            3,
            "CUDA_ERROR_NOT_INITIALIZED before cuInit"
        );
        let mut v = 0;
        assert_eq!(version(&mut v), 0);
        assert_eq!(v, 13000);
        assert_eq!(init(0), 0);
        assert_eq!(get_count(&mut n), 0);
        assert_eq!(n, 1);
        assert_eq!(dlclose(h), 0);
    }

    // Second load (the library stays resident: linked with -z nodelete).
    let h = open(&path);
    unsafe {
        let init: Init = sym(h, "cuInit");
        let get_count: GetCount = sym(h, "cuDeviceGetCount");
        assert_eq!(init(0), 0);
        let mut n = -1;
        assert_eq!(get_count(&mut n), 0);
        assert_eq!(n, 1);

        // The calls cudarc makes for a context, an allocation and a copy.
        let retain: Retain = sym(h, "cuDevicePrimaryCtxRetain");
        let set_current: SetCurrent = sym(h, "cuCtxSetCurrent");
        let alloc: AllocAsync = sym(h, "cuMemAllocAsync");
        let memset: MemsetAsync = sym(h, "cuMemsetD8Async");
        let dtoh: DtoH = sym(h, "cuMemcpyDtoH_v2");
        let free: FreeAsync = sym(h, "cuMemFreeAsync");
        let release: Release = sym(h, "cuDevicePrimaryCtxRelease_v2");
        let count: Count = sym(h, "vgpu_allocation_count");
        let mut ctx = std::ptr::null_mut();
        assert_eq!(retain(&mut ctx, 0), 0);
        assert_eq!(set_current(ctx), 0);
        let before = count();
        let mut p = 0u64;
        assert_eq!(alloc(&mut p, 64, std::ptr::null_mut()), 0);
        assert_eq!(count(), before + 1);
        assert_eq!(memset(p, 0x5A, 64, std::ptr::null_mut()), 0);
        let mut out = [0u8; 64];
        assert_eq!(dtoh(out.as_mut_ptr().cast(), p, 64), 0);
        assert_eq!(out, [0x5A; 64]);
        assert_eq!(free(p, std::ptr::null_mut()), 0);
        assert_eq!(release(0), 0);

        for name in IMPLEMENTED.iter().chain(NOT_SUPPORTED) {
            let c = CString::new(*name).unwrap();
            assert!(
                !dlsym(h, c.as_ptr()).is_null(),
                "{name} is listed but not exported"
            );
        }
        match cudarc_symbols() {
            Some(names) => {
                assert!(names.len() > 400, "{} names", names.len());
                for name in &names {
                    let c = CString::new(name.as_str()).unwrap();
                    assert!(!dlsym(h, c.as_ptr()).is_null(), "{name} is not exported");
                    let listed = IMPLEMENTED.contains(&name.as_str())
                        || NOT_SUPPORTED.contains(&name.as_str());
                    assert!(listed, "{name} is in neither IMPLEMENTED nor NOT_SUPPORTED");
                }
            }
            None => {
                let _ = writeln!(
                    std::io::stderr(),
                    "cudarc 0.19.10 source not found in the cargo registry: symbol coverage not checked"
                );
            }
        }
        let stub: unsafe extern "C" fn() -> c_uint = sym(h, "cuArrayCreate_v2");
        assert_eq!(stub(), 801, "CUDA_ERROR_NOT_SUPPORTED");
        assert_eq!(dlclose(h), 0);
    }
}
