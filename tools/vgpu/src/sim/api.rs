//! The simulator's interface to the driver layer.

use std::fmt;
use std::sync::Arc;

use crate::mem::GlobalMem;

/// Why a module failed to load or a launch failed; the driver maps kinds to `CUresult`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Unparseable PTX or an unsupported construct (CUDA_ERROR_INVALID_PTX).
    InvalidPtx,
    /// Out-of-bounds global/shared/local access (CUDA_ERROR_ILLEGAL_ADDRESS), sticky.
    IllegalAddress,
    /// Misaligned access (CUDA_ERROR_MISALIGNED_ADDRESS), sticky.
    MisalignedAddress,
    /// Shared-memory race, uninitialised shared read, missing cp.async wait, divergent
    /// `.aligned` instruction, barrier deadlock (CUDA_ERROR_LAUNCH_FAILED), sticky.
    LaunchFailed,
    /// An instruction the simulator cannot execute (CUDA_ERROR_ILLEGAL_INSTRUCTION), sticky.
    IllegalInstruction,
    /// The launch ran past `VGPU_WATCHDOG_S` seconds (CUDA_ERROR_LAUNCH_TIMEOUT), sticky.
    LaunchTimeout,
    /// Too many threads, too much shared memory (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES); not sticky.
    OutOfResources,
    /// Bad grid/block dimensions or parameter buffer (CUDA_ERROR_INVALID_VALUE); not sticky.
    InvalidValue,
}

impl FaultKind {
    /// Whether the error corrupts the context (every later call fails), as on a real device.
    pub fn is_sticky(self) -> bool {
        matches!(
            self,
            FaultKind::IllegalAddress
                | FaultKind::MisalignedAddress
                | FaultKind::LaunchFailed
                | FaultKind::IllegalInstruction
                | FaultKind::LaunchTimeout
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// One line naming kernel, block, thread, PTX line and address where they apply.
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// Layout of one kernel parameter in the packed parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub offset: u32,
    pub size: u32,
    pub align: u32,
}

/// Per-launch dimensions and limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_shared: u32,
    /// CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES as set on the function (default 48 KB
    /// minus static shared memory, as on the real driver).
    pub max_dynamic_shared: u32,
}

/// Device limits the simulator enforces (a Hopper-class device).
pub mod limits {
    pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
    pub const MAX_BLOCK_DIM: [u32; 3] = [1024, 1024, 64];
    pub const MAX_GRID_DIM: [u32; 3] = [i32::MAX as u32, 65535, 65535];
    /// Shared memory a block may use without the opt-in attribute.
    pub const DEFAULT_SHARED_PER_BLOCK: u32 = 48 * 1024;
    /// Opt-in maximum per block (227 KB on H100/H200).
    pub const MAX_SHARED_PER_BLOCK_OPTIN: u32 = 227 * 1024;
    pub const SHARED_PER_SM: u32 = 228 * 1024;
    pub const MULTIPROCESSORS: u32 = 132;
    pub const WARP_SIZE: u32 = 32;
    pub const REGS_PER_BLOCK: u32 = 65536;
    pub const TOTAL_MEMORY: u64 = 80 * 1024 * 1024 * 1024;
    pub const CC_MAJOR: i32 = 9;
    pub const CC_MINOR: i32 = 0;
    pub const DEVICE_NAME: &str = "vgpu (samrt PTX simulator, Hopper-class sm_90)";

    /// [`DEVICE_NAME`], with the numerics mode appended when it is not `exact`, so that a
    /// log line naming the device also says which arithmetic produced the numbers.
    pub fn device_name() -> String {
        match crate::numerics::numerics() {
            crate::numerics::Numerics::Exact => DEVICE_NAME.to_string(),
            n => format!("{DEVICE_NAME}, numerics: {}", n.describe()),
        }
    }
}

/// Profile counters of one launch (printed with VGPU_PROFILE=1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    /// Warp instructions executed, by class name (e.g. "fp32", "int", "mma", "ld.global").
    pub warp_instructions: Vec<(&'static str, u64)>,
    pub mma: u64,
    /// Floating-point operations of the tensor instructions (2*m*n*k per warp mma.sync,
    /// per warpgroup wgmma).
    pub mma_flops: u64,
    /// The part of `mma_flops` done by wgmma: a timing model rates it apart from
    /// mma.sync, which reaches less of the chip's tensor peak.
    pub wgmma_flops: u64,
    pub global_bytes_read: u64,
    pub global_bytes_written: u64,
    /// Shared-memory requests: one per warp-level shared access (ld/st/atom.shared,
    /// ldmatrix, the shared side of cp.async).
    pub shared_accesses: u64,
    /// Wavefronts those requests need without conflicts: one per 128 bytes the warp moves
    /// (4 for a full-warp 16-byte access or an ldmatrix.x4), so that a timing model can
    /// charge shared bandwidth as `shared_wavefronts + bank_conflicts`.
    pub shared_wavefronts: u64,
    /// Extra shared-memory wavefronts caused by bank conflicts (32 banks x 4 B).
    pub bank_conflicts: u64,
}

/// A loaded PTX module (parsed and lowered once; cached by content hash).
pub struct Module {
    pub(crate) inner: crate::sim::program::Program,
}

/// One entry point of a module.
#[derive(Clone)]
pub struct Kernel {
    pub(crate) module: Arc<Module>,
    pub(crate) index: usize,
}

impl Module {
    /// Parses and lowers `ptx`; identical text returns the cached module.
    pub fn load(ptx: &str) -> Result<Arc<Module>, Fault> {
        crate::sim::program::load_cached(ptx)
    }

    /// The `.entry` named `name`.
    pub fn kernel(self: &Arc<Self>, name: &str) -> Option<Kernel> {
        let index = self.inner.kernels.iter().position(|k| k.name == name)?;
        Some(Kernel {
            module: Arc::clone(self),
            index,
        })
    }

    pub fn kernel_names(&self) -> Vec<&str> {
        self.inner.kernels.iter().map(|k| k.name.as_str()).collect()
    }

    /// Module-scope `.global`/`.const` variables: (name, device address, size).
    pub fn globals(&self) -> Vec<(&str, u64, u64)> {
        self.inner
            .globals
            .iter()
            .map(|g| (g.name.as_str(), g.addr, g.size))
            .collect()
    }

    /// Makes the module's global variables addressable by kernels (called once on load).
    pub fn register_globals(&self, mem: &GlobalMem) {
        for g in &self.inner.globals {
            mem.register(g.addr, g.size.max(1));
        }
    }

    pub fn unregister_globals(&self, mem: &GlobalMem) {
        for g in &self.inner.globals {
            mem.unregister(g.addr);
        }
    }
}

impl Kernel {
    fn k(&self) -> &crate::sim::program::KernelCode {
        &self.module.inner.kernels[self.index]
    }
    pub fn name(&self) -> &str {
        &self.k().name
    }
    pub fn params(&self) -> &[ParamInfo] {
        &self.k().params
    }
    /// Total size of the packed parameter buffer.
    pub fn param_bytes(&self) -> u32 {
        self.k()
            .params
            .iter()
            .map(|p| p.offset + p.size)
            .max()
            .unwrap_or(0)
    }
    pub fn static_shared_bytes(&self) -> u32 {
        self.k().static_shared
    }
    pub fn local_bytes(&self) -> u32 {
        self.k().local_bytes
    }
    /// Registers per thread as a real compiler might report them (number of declared
    /// 32-bit register slots, capped at 255).
    pub fn num_regs(&self) -> u32 {
        self.k().num_regs.min(255)
    }
    /// Register slots per thread in the simulator's register file, after compaction
    /// (`sim::regalloc`): fewer than the virtual registers the PTX declares.
    pub fn register_slots(&self) -> u32 {
        self.k().regs
    }
    /// `.maxntid` product, or the device limit.
    pub fn max_threads_per_block(&self) -> u32 {
        self.k().max_threads
    }
}

/// Runs `kernel` to completion on the calling thread (blocks spread over worker threads).
/// `params` is the packed parameter buffer laid out as [`Kernel::params`] says.
pub fn launch(
    kernel: &Kernel,
    cfg: &LaunchConfig,
    params: &[u8],
    mem: &GlobalMem,
) -> Result<Profile, Fault> {
    crate::sim::launch::run(kernel, cfg, params, mem)
}

impl Profile {
    /// One line for VGPU_PROFILE=1.
    pub fn report(&self, kernel: &str, cfg: &LaunchConfig) -> String {
        let classes: Vec<String> = self
            .warp_instructions
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        format!(
            "vgpu profile: {kernel} grid={:?} block={:?} smem={} | warp instr: {} | mma={} \
             ({} flop, {} by wgmma) | global read={} B written={} B | shared accesses={} wavefronts={} \
             bank conflicts={}",
            cfg.grid,
            cfg.block,
            cfg.dynamic_shared,
            classes.join(" "),
            self.mma,
            self.mma_flops,
            self.wgmma_flops,
            self.global_bytes_read,
            self.global_bytes_written,
            self.shared_accesses,
            self.shared_wavefronts,
            self.bank_conflicts
        )
    }

    /// One JSON object (one line, no newline) for `VGPU_PROFILE_FILE`: the launch's shape
    /// and resources, then the counters. The field names are the documented file format
    /// (README, "Profile"); samrt's `profile` command reads them.
    pub fn json_line(&self, kernel: &Kernel, cfg: &LaunchConfig) -> String {
        let classes: Vec<String> = self
            .warp_instructions
            .iter()
            .map(|(c, n)| format!("\"{}\":{n}", json_escape(c)))
            .collect();
        let dims = |d: [u32; 3]| format!("[{},{},{}]", d[0], d[1], d[2]);
        format!(
            "{{\"kernel\":\"{}\",\"grid\":{},\"block\":{},\"static_shared_bytes\":{},\
             \"dynamic_shared_bytes\":{},\"registers\":{},\"warp_instructions\":{{{}}},\
             \"mma\":{},\"mma_flops\":{},\"wgmma_flops\":{},\"global_bytes_read\":{},\"global_bytes_written\":{},\
             \"shared_requests\":{},\"shared_wavefronts\":{},\"bank_conflicts\":{}}}",
            json_escape(kernel.name()),
            dims(cfg.grid),
            dims(cfg.block),
            kernel.static_shared_bytes(),
            cfg.dynamic_shared,
            kernel.num_regs(),
            classes.join(","),
            self.mma,
            self.mma_flops,
            self.wgmma_flops,
            self.global_bytes_read,
            self.global_bytes_written,
            self.shared_accesses,
            self.shared_wavefronts,
            self.bank_conflicts
        )
    }
}

/// A JSON string body: quotes, backslashes and control characters escaped (PTX names are
/// identifiers, but the format must not depend on that).
fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}
