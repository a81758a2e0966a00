//! The CUDA context: device discovery, the embedded PTX modules and launch helpers.
//!
//! Device buffers of fp16 values are `CudaSlice<u16>` holding the IEEE half bit patterns
//! (`half::f16::to_bits`); [`GpuContext::upload_f16`] / [`GpuContext::download_f16`] convert.
//!
//! cudarc panics when `libcuda.so` is missing or lacks a symbol, so every entry point first
//! checks [`cudarc::driver::sys::is_culib_present`] and runs the driver calls under
//! `catch_unwind`: without a GPU the backend returns [`Error::Cuda`] and never aborts.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cudarc::driver::sys::{self, CUdevice_attribute, CUfunction_attribute};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use crate::{Error, Result};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

/// Suffix of modules compiled for `sm_90a` (wgmma/TMA); loaded only on compute capability 9.0.
const SM90A_SUFFIX: &str = "_sm90a";

/// The environment variable that picks the kernel builds: `sm_80` loads only the portable
/// modules, even on Hopper (to compare the two builds, or to step around a Hopper kernel);
/// `sm_90a`, or unset, adds the `*_sm90a` modules on compute capability 9.0.
pub const CUDA_ARCH_VAR: &str = "SAMRT_CUDA_ARCH";

/// Whether the `*_sm90a` modules are to be loaded on `info`'s device, as
/// [`CUDA_ARCH_VAR`] (`arch`, its value) asks: an unknown value, or `sm_90a` on a device
/// that is not compute capability 9.0, is an error rather than a silent fallback.
pub fn use_sm90a(arch: Option<&str>, info: &DeviceInfo) -> Result<bool> {
    match arch {
        None | Some("") => Ok(info.is_sm90()),
        Some("sm_80") => Ok(false),
        Some("sm_90a") if info.is_sm90() => Ok(true),
        Some("sm_90a") => Err(Error::Unsupported(format!(
            "{CUDA_ARCH_VAR}=sm_90a needs a compute capability 9.0 device; {} is {}.{}",
            info.name, info.compute_capability.0, info.compute_capability.1
        ))),
        Some(other) => Err(Error::Unsupported(format!(
            "{CUDA_ARCH_VAR}={other:?}: expected sm_80 (portable kernels only) or sm_90a"
        ))),
    }
}

/// What the backend found on the device it opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub multiprocessors: u32,
    pub total_memory: usize,
    /// Largest dynamic + static shared memory one block may opt into, in bytes.
    pub max_shared_per_block: usize,
    /// `cuDriverGetVersion`, e.g. 13000 for a CUDA 13.0 driver.
    pub driver_version: i32,
}

impl DeviceInfo {
    /// Whether the `*_sm90a` (Hopper-only) modules apply to this device.
    pub fn is_sm90(&self) -> bool {
        self.compute_capability == (9, 0)
    }
}

/// Names of the embedded PTX modules and their entry points, as compiled by build.rs.
pub fn embedded_kernels() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    embedded::KERNELS.iter().map(|(m, _, e)| (*m, *e))
}

/// Probes device 0: a clean [`Error::Cuda`] when there is no driver or no GPU.
pub fn cuda_available() -> Result<DeviceInfo> {
    let ctx = open_context(0)?;
    query_info(&ctx, 0)
}

/// Device allocations made through [`GpuContext::alloc_zeros`] (and so by the executor's
/// arenas and the decoder's resident embeddings and scratch) since the process started: the
/// steady-state tests read it before and after a run to show that warm runs allocate
/// nothing.
static DEVICE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// How many device allocations the runtime has made in this process (see
/// [`GpuContext::alloc_zeros`]).
pub fn device_allocations() -> usize {
    DEVICE_ALLOCATIONS.load(Ordering::Relaxed)
}

/// One device, one default stream and every kernel of the embedded modules.
pub struct GpuContext {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
    functions: HashMap<&'static str, CudaFunction>,
    /// Entry points whose loaded function is the `*_sm90a` module's.
    sm90a_entries: HashSet<&'static str>,
}

impl GpuContext {
    /// Opens device 0.
    pub fn new() -> Result<Self> {
        Self::with_device(0)
    }

    /// Opens `ordinal`, creates a stream and loads (JIT-compiles) the embedded PTX.
    pub fn with_device(ordinal: usize) -> Result<Self> {
        let ctx = open_context(ordinal)?;
        let info = query_info(&ctx, ordinal)?;
        if info.compute_capability.0 < 8 {
            return Err(Error::Unsupported(format!(
                "{} has compute capability {}.{}; the kernels need sm_80 or newer \
                 (mma.sync m16n8k16, cp.async)",
                info.name, info.compute_capability.0, info.compute_capability.1
            )));
        }
        let arch = std::env::var(CUDA_ARCH_VAR).ok();
        let sm90a = use_sm90a(arch.as_deref(), &info)?;
        let stream = guarded("creating a stream", || ctx.new_stream())?;
        let mut functions = HashMap::new();
        let mut sm90a_entries = HashSet::new();
        // Portable modules first, so that an sm_90a entry point of the same name replaces the
        // portable one on Hopper.
        let mut modules: Vec<_> = embedded::KERNELS.iter().collect();
        modules.sort_by_key(|(name, _, _)| name.ends_with(SM90A_SUFFIX));
        for (module, ptx, entries) in modules {
            let hopper = module.ends_with(SM90A_SUFFIX);
            if hopper && !sm90a {
                continue;
            }
            let m = guarded(&format!("loading PTX module `{module}`"), || {
                ctx.load_module(Ptx::from_src(*ptx))
            })
            .map_err(|e| ptx_hint(e, &info))?;
            for &entry in entries.iter() {
                let f = guarded(&format!("loading kernel `{entry}`"), || {
                    m.load_function(entry)
                })?;
                allow_max_dynamic_smem(&f, entry, &info)?;
                functions.insert(entry, f);
                if hopper {
                    sm90a_entries.insert(entry);
                }
            }
        }
        Ok(GpuContext {
            ctx,
            stream,
            info,
            functions,
            sm90a_entries,
        })
    }

    /// Whether any `*_sm90a` module was loaded: compute capability 9.0, and
    /// [`CUDA_ARCH_VAR`] not `sm_80`.
    pub fn sm90a_loaded(&self) -> bool {
        !self.sm90a_entries.is_empty()
    }

    /// Whether entry point `name` runs the `*_sm90a` build (which then replaced the
    /// portable entry of the same name): launchers whose two builds differ in launch
    /// geometry pick it by this.
    pub fn is_sm90a_entry(&self, name: &str) -> bool {
        self.sm90a_entries.contains(name)
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream created with the context; launchers take a stream explicitly, so other
    /// streams from [`GpuContext::new_stream`] work as well.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn new_stream(&self) -> Result<Arc<CudaStream>> {
        guarded("creating a stream", || self.ctx.new_stream())
    }

    /// Entry points that were loaded on this device, sorted.
    pub fn kernel_names(&self) -> Vec<&'static str> {
        let mut v: Vec<_> = self.functions.keys().copied().collect();
        v.sort_unstable();
        v
    }

    pub fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions.get(name).ok_or_else(|| {
            Error::Cuda(format!(
                "kernel `{name}` is not in the embedded PTX (rebuild with --features cuda)"
            ))
        })
    }

    /// Copies f32 values to the device as fp16 bit patterns (round to nearest even).
    pub fn upload_f16(&self, stream: &Arc<CudaStream>, host: &[f32]) -> Result<CudaSlice<u16>> {
        let bits: Vec<u16> = host
            .iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect();
        guarded("host-to-device copy", || stream.clone_htod(&bits))
    }

    pub fn upload_f32(&self, stream: &Arc<CudaStream>, host: &[f32]) -> Result<CudaSlice<f32>> {
        guarded("host-to-device copy", || stream.clone_htod(host))
    }

    /// Copies fp16 bit patterns back as f32 (waits for the stream).
    pub fn download_f16(&self, stream: &Arc<CudaStream>, dev: &CudaSlice<u16>) -> Result<Vec<f32>> {
        let bits = guarded("device-to-host copy", || stream.clone_dtoh(dev))?;
        Ok(bits
            .into_iter()
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect())
    }

    pub fn download_f32(&self, stream: &Arc<CudaStream>, dev: &CudaSlice<f32>) -> Result<Vec<f32>> {
        guarded("device-to-host copy", || stream.clone_dtoh(dev))
    }

    pub fn zeros_f16(&self, stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<u16>> {
        self.alloc_zeros(stream, len, "device allocation")
    }

    pub fn zeros_f32(&self, stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<f32>> {
        self.alloc_zeros(stream, len, "device allocation")
    }

    /// `len` zeroed elements on `stream` (at least one: a zero-byte allocation is an
    /// error in the driver), counted in [`device_allocations`]; `what` names it in errors.
    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
        what: &str,
    ) -> Result<CudaSlice<T>> {
        DEVICE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        guarded(what, || stream.alloc_zeros::<T>(len.max(1)))
    }

    pub fn synchronize(&self, stream: &CudaStream) -> Result<()> {
        guarded("stream synchronize", || stream.synchronize())
    }

    /// Launchers refuse streams of another context: the kernels were loaded into this one.
    pub(crate) fn check_stream(&self, stream: &CudaStream) -> Result<()> {
        if Arc::ptr_eq(stream.context(), &self.ctx) {
            Ok(())
        } else {
            Err(Error::Cuda(
                "stream belongs to a different CUDA context than the loaded kernels".into(),
            ))
        }
    }
}

fn open_context(ordinal: usize) -> Result<Arc<CudaContext>> {
    // SAFETY: only tries to dlopen libcuda under its usual names; no driver call is made.
    if !unsafe { sys::is_culib_present() } {
        return Err(Error::Cuda(
            "no NVIDIA driver (libcuda.so) found; the CUDA backend needs an NVIDIA GPU with \
             driver >= 580 (the embedded PTX is ISA 9.0 from CUDA 13.0)"
                .into(),
        ));
    }
    let count = guarded("initialising the CUDA driver", CudaContext::device_count)?;
    if count <= 0 {
        return Err(Error::Cuda(
            "the NVIDIA driver reports no CUDA device".into(),
        ));
    }
    if ordinal >= count as usize {
        return Err(Error::Cuda(format!(
            "CUDA device {ordinal} requested but only {count} present"
        )));
    }
    guarded(&format!("opening CUDA device {ordinal}"), || {
        CudaContext::new(ordinal)
    })
}

fn query_info(ctx: &Arc<CudaContext>, ordinal: usize) -> Result<DeviceInfo> {
    let attr = |a: CUdevice_attribute, what: &str| guarded(what, || ctx.attribute(a));
    let name = guarded("device name", || ctx.name())?;
    let compute_capability = guarded("compute capability", || ctx.compute_capability())?;
    let multiprocessors = attr(
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
        "multiprocessor count",
    )?;
    let max_shared = attr(
        CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        "shared memory limit",
    )?;
    let total_memory = guarded("device memory size", || ctx.total_mem())?;
    let mut driver_version = 0i32;
    // SAFETY: writes one i32 through a valid pointer; the driver library is loaded.
    let rc = catch_unwind(AssertUnwindSafe(|| unsafe {
        sys::cuDriverGetVersion(&mut driver_version)
    }))
    .map_err(|_| Error::Cuda("cuDriverGetVersion is missing from libcuda".into()))?;
    if rc != sys::CUresult::CUDA_SUCCESS {
        return Err(Error::Cuda(format!("cuDriverGetVersion failed: {rc:?}")));
    }
    Ok(DeviceInfo {
        ordinal,
        name,
        compute_capability,
        multiprocessors: multiprocessors.max(0) as u32,
        total_memory,
        max_shared_per_block: max_shared.max(0) as usize,
        driver_version,
    })
}

/// Lets `f` use all the shared memory the device allows per block. The attribute is only a
/// ceiling (it reserves nothing); each launcher still checks its own requirement against
/// [`DeviceInfo::max_shared_per_block`] before launching.
fn allow_max_dynamic_smem(f: &CudaFunction, entry: &str, info: &DeviceInfo) -> Result<()> {
    let static_smem = guarded(&format!("attributes of `{entry}`"), || {
        f.get_attribute(CUfunction_attribute::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
    })?;
    let dynamic = (info.max_shared_per_block as i32 - static_smem).max(0);
    guarded(&format!("shared memory limit of `{entry}`"), || {
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            dynamic,
        )
    })
}

fn ptx_hint(e: Error, info: &DeviceInfo) -> Error {
    match e {
        Error::Cuda(m) if m.contains("UNSUPPORTED_PTX_VERSION") => Error::Cuda(format!(
            "{m}: the embedded PTX (ISA 9.0, CUDA 13.0) needs a driver >= 580; this one reports \
             version {}",
            info.driver_version
        )),
        other => other,
    }
}

/// Runs a cudarc call, turning its errors and its panics (missing library or symbol) into
/// [`Error::Cuda`].
pub(crate) fn guarded<T>(
    what: &str,
    f: impl FnOnce() -> std::result::Result<T, DriverError>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Cuda(format!("{what}: {e}"))),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::Cuda(format!(
                "{what}: CUDA driver library unusable: {msg}"
            )))
        }
    }
}

/// A launch dimension or scalar argument as the `int` the kernels take.
pub(crate) fn as_i32(what: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Unsupported(format!("{what} = {v} exceeds i32 range")))
}

/// Buffer must hold at least `need` elements.
pub(crate) fn check_len(what: &str, len: usize, need: usize) -> Result<()> {
    if len < need {
        return Err(Error::Cuda(format!(
            "{what} holds {len} elements, the launch needs {need}"
        )));
    }
    Ok(())
}

/// Device address must be a multiple of `align` bytes (vector loads, cp.async).
pub(crate) fn check_align(what: &str, ptr: sys::CUdeviceptr, align: u64) -> Result<()> {
    if !ptr.is_multiple_of(align) {
        return Err(Error::Cuda(format!(
            "{what} at {ptr:#x} is not {align}-byte aligned"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(cc: (i32, i32)) -> DeviceInfo {
        DeviceInfo {
            ordinal: 0,
            name: "test".into(),
            compute_capability: cc,
            multiprocessors: 132,
            total_memory: 1 << 30,
            max_shared_per_block: 227 * 1024,
            driver_version: 13000,
        }
    }

    #[test]
    fn cuda_arch_selects_the_sm90a_modules() {
        let (hopper, ampere) = (device((9, 0)), device((8, 0)));
        assert!(use_sm90a(None, &hopper).unwrap());
        assert!(use_sm90a(Some(""), &hopper).unwrap());
        assert!(!use_sm90a(None, &ampere).unwrap());
        assert!(!use_sm90a(Some("sm_80"), &hopper).unwrap());
        assert!(!use_sm90a(Some("sm_80"), &ampere).unwrap());
        assert!(use_sm90a(Some("sm_90a"), &hopper).unwrap());
        // Blackwell (10.0) cannot run sm_90a code either.
        for (arch, dev) in [
            ("sm_90a", &ampere),
            ("sm_90a", &device((10, 0))),
            ("sm_90", &hopper),
        ] {
            assert!(
                matches!(use_sm90a(Some(arch), dev), Err(Error::Unsupported(_))),
                "{arch} on {:?}",
                dev.compute_capability
            );
        }
    }
}
