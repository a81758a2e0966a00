//! Test harness shared by the end-to-end tests: CUDA C++ compiled to PTX with nvcc at test
//! time (once per source and flag set per test process), a small device wrapper with typed
//! upload/download, launches with packed parameters, a deterministic RNG and host-side
//! reference arithmetic (f16 conversions, directed rounding) written from the IEEE/PTX
//! definitions, not taken from the simulator.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cuda::mem::GlobalMem;
use cuda::sim::{self, Fault, LaunchConfig, Module, Profile};

pub mod driver;

// ---------------------------------------------------------------------------------------
// nvcc

/// The nvcc to use: `$NVCC`, else the repository's pinned install. Panics (never skips)
/// when it is missing, so that CI cannot pass without running these tests.
pub fn nvcc() -> PathBuf {
    if let Ok(p) = std::env::var("NVCC") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "NVCC={} does not exist; run tools/install-nvcc.sh",
            p.display()
        );
        return p;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join(".cache/cuda-13.0/nvidia/cu13/bin/nvcc");
    assert!(
        p.exists(),
        "nvcc not found at {} and $NVCC is not set: run tools/install-nvcc.sh (these tests \
         compile CUDA C++ to PTX and must not be skipped)",
        p.display()
    );
    p
}

type Slot = Arc<OnceLock<String>>;

fn ptx_cache() -> &'static Mutex<HashMap<String, Slot>> {
    static C: OnceLock<Mutex<HashMap<String, Slot>>> = OnceLock::new();
    C.get_or_init(|| Mutex::new(HashMap::new()))
}

fn run_nvcc(name: &str, src: &str, flags: &[&str]) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "vgpu-test-{}-{}-{}",
        std::process::id(),
        name,
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let cu = dir.join(format!("{name}.cu"));
    let ptx = dir.join(format!("{name}.ptx"));
    std::fs::write(&cu, src).expect("write .cu");
    let mut cmd = Command::new(nvcc());
    cmd.arg("-ptx");
    if !flags.iter().any(|f| f.starts_with("-arch")) {
        cmd.arg("-arch=compute_80");
    }
    cmd.args(["-std=c++17", "-O3"])
        .args(flags)
        .arg("-o")
        .arg(&ptx)
        .arg(&cu);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nvcc ({e}); run tools/install-nvcc.sh"));
    assert!(
        out.status.success(),
        "nvcc failed on {name}.cu {flags:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&ptx).expect("read .ptx");
    let _ = std::fs::remove_dir_all(&dir);
    text
}

/// PTX for `src` compiled with the default flags.
pub fn compile(name: &str, src: &str) -> String {
    compile_with(name, src, &[])
}

/// PTX for `src` compiled with extra nvcc `flags`; each (source, flags) pair is compiled
/// once per process, concurrent callers of the same pair wait for the one compile, and
/// different pairs compile in parallel.
pub fn compile_with(name: &str, src: &str, flags: &[&str]) -> String {
    let key = format!("{}\0{}", flags.join(" "), src);
    let slot = {
        let mut c = ptx_cache().lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(c.entry(key).or_default())
    };
    slot.get_or_init(|| run_nvcc(name, src, flags)).clone()
}

/// Compiles several sources at once (one thread each), so a test needing many waits once.
pub fn compile_many(jobs: &[(&str, &str, &[&str])]) -> Vec<String> {
    std::thread::scope(|s| {
        let hs: Vec<_> = jobs
            .iter()
            .map(|&(n, src, fl)| s.spawn(move || compile_with(n, src, fl)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("nvcc thread"))
            .collect()
    })
}

/// Compiles and loads; panics with the simulator's message if the module is rejected.
pub fn module(name: &str, src: &str, flags: &[&str]) -> Arc<Module> {
    let ptx = compile_with(name, src, flags);
    Module::load(&ptx).unwrap_or_else(|f| panic!("Module::load({name}) failed: {f}"))
}

// ---------------------------------------------------------------------------------------
// Device wrapper

/// A kernel argument, packed at the offset the kernel's parameter list gives; `Bytes` is a
/// struct passed by value, already laid out.
#[derive(Clone, Debug)]
pub enum Arg {
    Ptr(u64),
    U32(u32),
    I32(i32),
    F32(f32),
    U64(u64),
    Bytes(Vec<u8>),
}

impl Arg {
    fn bytes(&self) -> Vec<u8> {
        match *self {
            Arg::Ptr(v) | Arg::U64(v) => v.to_le_bytes().to_vec(),
            Arg::U32(v) => v.to_le_bytes().to_vec(),
            Arg::I32(v) => v.to_le_bytes().to_vec(),
            Arg::F32(v) => v.to_le_bytes().to_vec(),
            Arg::Bytes(ref b) => b.clone(),
        }
    }
}

/// Launch dimensions: `5`, `(4, 2)`, `(4, 2, 3)` or `[4, 2, 3]`.
#[derive(Clone, Copy, Debug)]
pub struct D3(pub [u32; 3]);
impl From<u32> for D3 {
    fn from(x: u32) -> Self {
        D3([x, 1, 1])
    }
}
impl From<(u32, u32)> for D3 {
    fn from((x, y): (u32, u32)) -> Self {
        D3([x, y, 1])
    }
}
impl From<(u32, u32, u32)> for D3 {
    fn from((x, y, z): (u32, u32, u32)) -> Self {
        D3([x, y, z])
    }
}
impl From<[u32; 3]> for D3 {
    fn from(v: [u32; 3]) -> Self {
        D3(v)
    }
}

/// Default dynamic shared limit of a kernel: 48 KB minus its static shared memory.
pub fn default_max_dynamic(k: &sim::Kernel) -> u32 {
    (48 * 1024u32).saturating_sub(k.static_shared_bytes())
}

/// Device memory plus helpers; frees what it allocated when dropped.
pub struct Dev {
    pub mem: GlobalMem,
    allocs: Mutex<Vec<u64>>,
}

impl Default for Dev {
    fn default() -> Self {
        Self::new()
    }
}

impl Dev {
    pub fn new() -> Self {
        Dev {
            mem: GlobalMem::new(),
            allocs: Mutex::new(Vec::new()),
        }
    }

    /// `n` elements of `T` (filled with 0xA5 bytes, as fresh device memory is).
    pub fn alloc<T>(&self, n: usize) -> u64 {
        let bytes = (n * std::mem::size_of::<T>()) as u64;
        let p = self.mem.alloc(bytes).expect("device allocation");
        self.allocs.lock().unwrap().push(p);
        p
    }

    pub fn upload<T: Copy>(&self, data: &[T]) -> u64 {
        let p = self.alloc::<T>(data.len());
        self.write(p, data);
        p
    }

    pub fn write<T: Copy>(&self, ptr: u64, data: &[T]) {
        // SAFETY: `ptr` is a live allocation of at least `data.len()` elements (identity-
        // mapped global memory) and no launch is running.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr as *mut T, data.len()) }
        // A host-to-device copy, as far as initcheck is concerned.
        self.mem
            .mark_written(ptr, std::mem::size_of_val(data) as u64);
    }

    pub fn download<T: Copy>(&self, ptr: u64, n: usize) -> Vec<T> {
        assert!(
            self.mem
                .find(ptr, (n * std::mem::size_of::<T>()) as u64)
                .is_some(),
            "download outside a live allocation"
        );
        // SAFETY: checked above that [ptr, ptr + n*size) is one live allocation.
        unsafe { std::slice::from_raw_parts(ptr as *const T, n).to_vec() }
    }

    /// Packs `args` at the offsets the kernel declares (sizes must match).
    pub fn pack(k: &sim::Kernel, args: &[Arg]) -> Vec<u8> {
        let ps = k.params();
        assert_eq!(
            ps.len(),
            args.len(),
            "kernel `{}` takes {} parameters",
            k.name(),
            ps.len()
        );
        let mut buf = vec![0u8; k.param_bytes() as usize];
        for (p, a) in ps.iter().zip(args) {
            let b = a.bytes();
            assert_eq!(
                b.len() as u32,
                p.size,
                "parameter size of {a:?} in `{}`",
                k.name()
            );
            buf[p.offset as usize..p.offset as usize + b.len()].copy_from_slice(&b);
        }
        buf
    }

    pub fn kernel(m: &Arc<Module>, name: &str) -> sim::Kernel {
        m.kernel(name)
            .unwrap_or_else(|| panic!("no kernel `{name}` in module: {:?}", m.kernel_names()))
    }

    /// Launch with explicit limits; returns the simulator's result.
    #[allow(clippy::too_many_arguments)]
    pub fn try_launch_cfg(
        &self,
        m: &Arc<Module>,
        name: &str,
        grid: impl Into<D3>,
        block: impl Into<D3>,
        dynamic_shared: u32,
        max_dynamic_shared: Option<u32>,
        args: &[Arg],
    ) -> Result<Profile, Fault> {
        let k = Self::kernel(m, name);
        m.register_globals(&self.mem);
        let cfg = LaunchConfig {
            grid: grid.into().0,
            block: block.into().0,
            dynamic_shared,
            max_dynamic_shared: max_dynamic_shared.unwrap_or_else(|| default_max_dynamic(&k)),
        };
        sim::launch(&k, &cfg, &Self::pack(&k, args), &self.mem)
    }

    pub fn try_launch(
        &self,
        m: &Arc<Module>,
        name: &str,
        grid: impl Into<D3>,
        block: impl Into<D3>,
        smem: u32,
        args: &[Arg],
    ) -> Result<Profile, Fault> {
        self.try_launch_cfg(m, name, grid, block, smem, None, args)
    }

    /// Launch that must succeed.
    pub fn launch(
        &self,
        m: &Arc<Module>,
        name: &str,
        grid: impl Into<D3>,
        block: impl Into<D3>,
        smem: u32,
        args: &[Arg],
    ) -> Profile {
        self.try_launch(m, name, grid, block, smem, args)
            .unwrap_or_else(|f| panic!("launch of `{name}` failed: {f}"))
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        for p in self.allocs.lock().unwrap().drain(..) {
            self.mem.free(p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deterministic random numbers

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// splitmix64
    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn u32(&mut self) -> u32 {
        (self.u64() >> 32) as u32
    }
    /// Uniform in [lo, hi).
    pub fn f32(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn range(&mut self, n: u32) -> u32 {
        (self.u64() % n as u64) as u32
    }
    /// A random normal f16 with magnitude in [2^-2, 2^3) (exponent field 13..=17).
    pub fn f16_bits(&mut self) -> u16 {
        let sign = (self.u32() & 1) as u16;
        let exp = 13 + self.range(5) as u16;
        let man = (self.u32() & 0x3ff) as u16;
        (sign << 15) | (exp << 10) | man
    }
}

// ---------------------------------------------------------------------------------------
// Host reference arithmetic (IEEE 754 definitions)

/// Exact f16 -> f32.
pub fn h2f(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: m * 2^-24 (exact in f32)
            let v = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13) | 0x0040_0000,
        (e, m) => sign | (((e - 15 + 127) as u32) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Rn,
    Rz,
    Ru,
    Rd,
}

/// A binary floating-point format: significand bits (with the implicit one), exponent of
/// the smallest subnormal quantum, largest finite value.
#[derive(Clone, Copy, Debug)]
pub struct Fmt {
    pub prec: u32,
    pub qmin: i32,
    pub max: f64,
}
pub const F16: Fmt = Fmt {
    prec: 11,
    qmin: -24,
    max: 65504.0,
};
pub const BF16: Fmt = Fmt {
    prec: 8,
    qmin: -133,
    max: 3.3895313892515355e38,
};
pub const F32: Fmt = Fmt {
    prec: 24,
    qmin: -149,
    max: f32::MAX as f64,
};
pub const F64: Fmt = Fmt {
    prec: 53,
    qmin: -1074,
    max: f64::MAX,
};

/// A finite f64 as (negative, integer significand, exponent): x = ±mag * 2^e exactly.
pub fn decompose(x: f64) -> (bool, u128, i32) {
    let b = x.to_bits();
    let neg = b >> 63 != 0;
    let ef = ((b >> 52) & 0x7ff) as i32;
    let m = b & ((1u64 << 52) - 1);
    assert!(ef != 0x7ff, "decompose of a non-finite value");
    let (m, e) = if ef == 0 {
        (m, -1074)
    } else {
        (m | 1 << 52, ef - 1075)
    };
    // strip trailing zeros so that an f32's significand takes at most 24 bits
    let tz = if m == 0 { 0 } else { m.trailing_zeros() };
    (neg, (m >> tz) as u128, e + tz as i32)
}

/// Rounds the exact value ±mag * 2^e to `fmt` in `mode` (IEEE 754: round to the format's
/// precision with unbounded exponent, subnormals on the 2^qmin grid, then overflow: rn
/// goes to infinity, the directed modes to infinity only on their own side). The result is
/// returned as an f64, which holds every value of the three formats exactly.
pub fn round_bin(neg: bool, mag: u128, e: i32, fmt: Fmt, mode: Mode) -> f64 {
    if mag == 0 {
        return if neg { -0.0 } else { 0.0 };
    }
    let nbits = 128 - mag.leading_zeros() as i32;
    let top = e + nbits - 1; // value in [2^top, 2^(top+1))
    let q = (top - (fmt.prec as i32 - 1)).max(fmt.qmin);
    let (mut m, rem_half): (u128, std::cmp::Ordering) = if q <= e {
        (mag << (e - q), std::cmp::Ordering::Less)
    } else {
        let s = (q - e) as u32;
        if s >= 128 {
            (0, std::cmp::Ordering::Less) // far below half the quantum
        } else {
            let rem = mag & ((1u128 << s) - 1);
            let half = 1u128 << (s - 1);
            (mag >> s, rem.cmp(&half))
        }
    };
    let inexact = q > e && {
        let s = (q - e) as u32;
        s >= 128 || mag & ((1u128 << s) - 1) != 0
    };
    use std::cmp::Ordering::*;
    let up = match mode {
        Mode::Rz => false,
        Mode::Rn => rem_half == Greater || (rem_half == Equal && m & 1 == 1),
        Mode::Ru => inexact && !neg,
        Mode::Rd => inexact && neg,
    };
    if up {
        m += 1;
    }
    let v = m as f64 * 2f64.powi(q);
    let v = if v > fmt.max {
        match (mode, neg) {
            (Mode::Rn, _) | (Mode::Ru, false) | (Mode::Rd, true) => f64::INFINITY,
            _ => fmt.max,
        }
    } else {
        v
    };
    if neg {
        -v
    } else {
        v
    }
}

/// Rounds a finite f64 to f32 (exactly, from the f64's value).
pub fn f64_to_f32(x: f64, mode: Mode) -> f32 {
    if !x.is_finite() {
        return x as f32;
    }
    let (n, m, e) = decompose(x);
    round_bin(n, m, e, F32, mode) as f32
}

/// Encodes a value that is exactly representable in f16 (or ±inf).
pub fn f16_encode(v: f64) -> u16 {
    let sign: u16 = if v.is_sign_negative() { 0x8000 } else { 0 };
    let a = v.abs();
    if a.is_infinite() {
        return sign | 0x7c00;
    }
    if a < 2f64.powi(-14) {
        return sign | (a * 2f64.powi(24)) as u16;
    }
    let top = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023; // a in [2^top, 2^(top+1))
    let frac = ((a / 2f64.powi(top) - 1.0) * 1024.0) as u16;
    sign | (((top + 15) as u16) << 10) | frac
}

/// f64 -> f16 bits in `mode` (NaN -> a quiet NaN).
pub fn f64_to_h(x: f64, mode: Mode) -> u16 {
    if x.is_nan() {
        return 0x7e00;
    }
    if x.is_infinite() {
        return f16_encode(x);
    }
    let (n, m, e) = decompose(x);
    f16_encode(round_bin(n, m, e, F16, mode))
}

/// f64 -> bf16 bits in `mode`.
pub fn f64_to_bf16(x: f64, mode: Mode) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    if x.is_infinite() {
        return ((x as f32).to_bits() >> 16) as u16;
    }
    let (n, m, e) = decompose(x);
    ((round_bin(n, m, e, BF16, mode) as f32).to_bits() >> 16) as u16
}

/// Exact sum of exact terms ±mag * 2^e, rounded once to `fmt`. An exact zero sum of terms
/// of opposite signs is +0, or -0 when rounding down (IEEE 754 6.3).
pub fn round_sum(terms: &[(bool, u128, i32)], fmt: Fmt, mode: Mode) -> f64 {
    // A term more than 64 bits below the largest cannot cancel it (at most one such large
    // term is summed here) and only decides which side of a rounding boundary the sum lies
    // on: it is replaced by a tiny value of the same sign, which rounds identically.
    let top = |t: &(bool, u128, i32)| t.2 + 127 - t.1.leading_zeros() as i32;
    let tmax = terms
        .iter()
        .filter(|t| t.1 != 0)
        .map(top)
        .max()
        .unwrap_or(0);
    let terms: Vec<(bool, u128, i32)> = terms
        .iter()
        .map(|&t| {
            if t.1 != 0 && top(&t) < tmax - 64 {
                (t.0, 1, tmax - 100)
            } else {
                t
            }
        })
        .collect();
    let emin = terms.iter().map(|t| t.2).min().unwrap();
    let mut acc: i128 = 0;
    for &(n, m, e) in &terms {
        let sh = (e - emin) as u32;
        assert!(
            sh + (128 - m.leading_zeros()) < 126,
            "terms too far apart for the exact sum"
        );
        let v = (m << sh) as i128;
        acc += if n { -v } else { v };
    }
    if acc == 0 {
        let all_neg = terms.iter().all(|t| t.0 || t.1 == 0) && terms.iter().any(|t| t.0);
        let neg = all_neg || mode == Mode::Rd;
        return if neg { -0.0 } else { 0.0 };
    }
    round_bin(acc < 0, acc.unsigned_abs(), emin, fmt, mode)
}

/// a * b + c with a single rounding (f32).
pub fn fma_f32(a: f32, b: f32, c: f32, mode: Mode) -> f32 {
    let (na, ma, ea) = decompose(a as f64);
    let (nb, mb, eb) = decompose(b as f64);
    let c = decompose(c as f64);
    round_sum(&[(na ^ nb, ma * mb, ea + eb), c], F32, mode) as f32
}

pub fn add_f32(a: f32, b: f32, mode: Mode) -> f32 {
    round_sum(&[decompose(a as f64), decompose(b as f64)], F32, mode) as f32
}

pub fn mul_f32(a: f32, b: f32, mode: Mode) -> f32 {
    let (na, ma, ea) = decompose(a as f64);
    let (nb, mb, eb) = decompose(b as f64);
    round_sum(&[(na ^ nb, ma * mb, ea + eb)], F32, mode) as f32
}

/// An integer rounded to `fmt`.
pub fn int_to(v: i128, fmt: Fmt, mode: Mode) -> f64 {
    round_bin(v < 0, v.unsigned_abs(), 0, fmt, mode)
}

/// Distance in units in the last place between two finite f32 of the same sign.
pub fn ulps(a: f32, b: f32) -> u32 {
    let key = |x: f32| {
        let i = x.to_bits() as i32;
        if i < 0 {
            i32::MIN.wrapping_sub(i) as i64
        } else {
            i as i64
        }
    };
    (key(a) - key(b)).unsigned_abs() as u32
}
