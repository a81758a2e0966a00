//! A launch: checks the configuration, then runs thread blocks in parallel on worker threads
//! (blocks are independent), each block's warps round-robin in time slices (so a warp that
//! spins on a flag another warp sets terminates), under an optional wall-clock watchdog.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::api::{limits, Fault, FaultKind, Kernel, LaunchConfig, Profile};
use super::check::Shadow;
use super::exec::{run_warp, BlockState, Stop, Warp, WarpState};
use super::program::KernelCode;
use super::sync::Barriers;
use crate::mem::{GlobalMem, Snapshot};

/// Everything a block needs that is the same for the whole launch.
pub struct Env<'a> {
    pub code: &'a KernelCode,
    pub cfg: &'a LaunchConfig,
    pub params: &'a [u8],
    pub global: Snapshot,
    /// Profile class of each instruction, as an index into `classes`.
    pub class_id: Vec<u8>,
    pub classes: Vec<&'static str>,
    pub shared_bytes: u32,
    /// `VGPU_WATCHDOG_S` after the launch started.
    pub deadline: Option<Instant>,
}

/// `VGPU_WATCHDOG_S`: the wall-clock limit of one launch, off when unset. Read at every
/// launch, so that a process can change it between launches.
fn watchdog() -> Option<Duration> {
    let v = std::env::var("VGPU_WATCHDOG_S").ok()?;
    let s: f64 = v.trim().parse().ok().filter(|s: &f64| *s > 0.0)?;
    Some(Duration::from_secs_f64(s))
}

/// Per-worker profile counters, merged at the end of the launch.
#[derive(Clone, Default)]
pub struct Counters {
    pub by_class: Vec<u64>,
    pub mma: u64,
    pub mma_flops: u64,
    pub wgmma_flops: u64,
    pub global_read: u64,
    pub global_written: u64,
    pub shared_accesses: u64,
    pub shared_wavefronts: u64,
    pub bank_conflicts: u64,
}

impl Counters {
    #[inline]
    pub fn count(&mut self, class: u8) {
        self.by_class[class as usize] += 1;
    }
    fn merge(&mut self, o: &Counters) {
        for (a, b) in self.by_class.iter_mut().zip(&o.by_class) {
            *a += b;
        }
        self.mma += o.mma;
        self.mma_flops += o.mma_flops;
        self.wgmma_flops += o.wgmma_flops;
        self.global_read += o.global_read;
        self.global_written += o.global_written;
        self.shared_accesses += o.shared_accesses;
        self.shared_wavefronts += o.shared_wavefronts;
        self.bank_conflicts += o.bank_conflicts;
    }
}

fn bad(kind: FaultKind, k: &str, msg: String) -> Fault {
    Fault {
        kind,
        message: format!("kernel `{k}`: {msg}"),
    }
}

fn check_config(code: &KernelCode, cfg: &LaunchConfig) -> Result<u32, Fault> {
    let name = &code.name;
    for d in 0..3 {
        if cfg.grid[d] == 0 || cfg.block[d] == 0 {
            return Err(bad(
                FaultKind::InvalidValue,
                name,
                format!(
                    "zero launch dimension grid {:?} block {:?}",
                    cfg.grid, cfg.block
                ),
            ));
        }
        if cfg.grid[d] > limits::MAX_GRID_DIM[d] || cfg.block[d] > limits::MAX_BLOCK_DIM[d] {
            return Err(bad(
                FaultKind::InvalidValue,
                name,
                format!(
                    "grid {:?} / block {:?} exceed the device limits",
                    cfg.grid, cfg.block
                ),
            ));
        }
    }
    let threads: u64 = cfg.block.iter().map(|&x| x as u64).product();
    if threads > limits::MAX_THREADS_PER_BLOCK as u64 || threads > code.max_threads as u64 {
        return Err(bad(
            FaultKind::InvalidValue,
            name,
            format!(
                "{threads} threads per block exceed the limit of {}",
                code.max_threads.min(limits::MAX_THREADS_PER_BLOCK)
            ),
        ));
    }
    if let Some(r) = code.reqntid {
        if r != cfg.block {
            return Err(bad(
                FaultKind::InvalidValue,
                name,
                format!("block {:?} differs from .reqntid {r:?}", cfg.block),
            ));
        }
    }
    if cfg.dynamic_shared > cfg.max_dynamic_shared {
        return Err(bad(
            FaultKind::InvalidValue,
            name,
            format!(
                "{} bytes of dynamic shared memory requested but the function allows {} \
                 (above 48 KB needs cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES))",
                cfg.dynamic_shared, cfg.max_dynamic_shared
            ),
        ));
    }
    let shared = code.dynamic_shared_offset as u64 + cfg.dynamic_shared as u64;
    if shared > limits::MAX_SHARED_PER_BLOCK_OPTIN as u64 {
        return Err(bad(
            FaultKind::OutOfResources,
            name,
            format!(
                "{shared} bytes of shared memory exceed the per-block maximum of {}",
                limits::MAX_SHARED_PER_BLOCK_OPTIN
            ),
        ));
    }
    if (code.regs as u64).min(255) * threads > limits::REGS_PER_BLOCK as u64 * 4 {
        // Generous: PTX virtual registers overcount; only absurd launches are refused.
        return Err(bad(
            FaultKind::OutOfResources,
            name,
            "too many registers for this block size".into(),
        ));
    }
    Ok(threads as u32)
}

pub fn run(
    kernel: &Kernel,
    cfg: &LaunchConfig,
    params: &[u8],
    mem: &GlobalMem,
) -> Result<Profile, Fault> {
    let code = &kernel.module.inner.kernels[kernel.index];
    let threads = check_config(code, cfg)?;
    if (params.len() as u32) < kernel.param_bytes() {
        return Err(bad(
            FaultKind::InvalidValue,
            &code.name,
            format!(
                "parameter buffer of {} bytes, the kernel takes {}",
                params.len(),
                kernel.param_bytes()
            ),
        ));
    }
    let mut classes: Vec<&'static str> = Vec::new();
    let class_id = code
        .insts
        .iter()
        .map(|i| match classes.iter().position(|c| *c == i.class) {
            Some(k) => k as u8,
            None => {
                classes.push(i.class);
                (classes.len() - 1) as u8
            }
        })
        .collect();
    let env = Env {
        code,
        cfg,
        params,
        global: mem.snapshot(),
        class_id,
        shared_bytes: code.dynamic_shared_offset.max(code.static_shared) + cfg.dynamic_shared,
        classes,
        deadline: watchdog().map(|d| Instant::now() + d),
    };
    let nblocks = cfg.grid.iter().map(|&x| x as u64).product::<u64>();
    let workers = worker_count().min(nblocks.max(1) as usize);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let first_fault: Mutex<Option<(u64, Fault)>> = Mutex::new(None);
    let total = Mutex::new(Counters {
        by_class: vec![0; env.classes.len()],
        ..Default::default()
    });
    let work = || {
        let mut counters = Counters {
            by_class: vec![0; env.classes.len()],
            ..Default::default()
        };
        let mut scratch = Scratch::default();
        while !stop.load(Ordering::Relaxed) {
            let bi = next.fetch_add(1, Ordering::Relaxed);
            if bi >= nblocks {
                break;
            }
            let [gx, gy, _] = cfg.grid;
            let ctaid = [
                (bi % gx as u64) as u32,
                ((bi / gx as u64) % gy as u64) as u32,
                (bi / (gx as u64 * gy as u64)) as u32,
            ];
            if let Err(f) = run_block(&env, ctaid, threads, &mut scratch, &mut counters) {
                stop.store(true, Ordering::Relaxed);
                let mut ff = first_fault.lock().unwrap_or_else(|e| e.into_inner());
                if ff.as_ref().is_none_or(|(b, _)| bi < *b) {
                    *ff = Some((bi, f));
                }
                break;
            }
        }
        total
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .merge(&counters);
    };
    if workers <= 1 {
        work();
    } else {
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(work);
            }
        });
    }
    if let Some((_, f)) = first_fault.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(f);
    }
    let t = total.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut warp_instructions: Vec<(&'static str, u64)> = env
        .classes
        .iter()
        .copied()
        .zip(t.by_class.iter().copied())
        .filter(|&(_, n)| n > 0)
        .collect();
    warp_instructions.sort_by_key(|&(c, _)| c);
    Ok(Profile {
        warp_instructions,
        mma: t.mma,
        mma_flops: t.mma_flops,
        wgmma_flops: t.wgmma_flops,
        global_bytes_read: t.global_read,
        global_bytes_written: t.global_written,
        shared_accesses: t.shared_accesses,
        shared_wavefronts: t.shared_wavefronts,
        bank_conflicts: t.bank_conflicts,
    })
}

/// Worker threads for blocks: `VGPU_THREADS`, else every core.
fn worker_count() -> usize {
    std::env::var("VGPU_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Buffers a worker reuses from block to block.
#[derive(Default)]
struct Scratch {
    shared: Vec<u8>,
    shadow: Shadow,
    local: Vec<u8>,
    warps: Vec<Warp>,
    barriers: Barriers,
    mbars: super::mbarrier::Mbarriers,
}

/// Fill for fresh shared and local memory: real hardware leaves stale data there.
const STALE: u8 = 0xCD;

fn run_block(
    env: &Env,
    ctaid: [u32; 3],
    threads: u32,
    s: &mut Scratch,
    counters: &mut Counters,
) -> Result<(), Fault> {
    let code = env.code;
    let smem = env.shared_bytes as usize;
    s.shared.clear();
    s.shared.resize(smem, STALE);
    s.shadow.reset(smem, threads.div_ceil(32) as usize);
    s.shadow
        .track_async_proxy(code.wgmma.is_some(), smem, threads as usize);
    let local_bytes = code.local_bytes;
    s.local.clear();
    s.local
        .resize(local_bytes as usize * threads as usize, STALE);
    let nwarps = threads.div_ceil(32);
    s.warps.clear();
    for wi in 0..nwarps {
        let n = (threads - wi * 32).min(32);
        let live = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
        s.warps.push(Warp::new(wi, live, code.regs as usize));
    }
    s.barriers.reset(s.warps.len());
    s.mbars.reset();
    let mut b = BlockState {
        ctaid,
        block_dim: env.cfg.block,
        grid_dim: env.cfg.grid,
        dynamic_shared: env.cfg.dynamic_shared,
        nthreads: threads,
        shared: &mut s.shared,
        shadow: &mut s.shadow,
        local: &mut s.local,
        local_bytes,
        counters,
        mbars: &mut s.mbars,
    };
    let warps = &mut s.warps;
    loop {
        super::mbarrier::wake(&b, warps);
        let mut ran = false;
        for wi in 0..warps.len() {
            if warps[wi].state != WarpState::Run {
                continue;
            }
            ran = true;
            match run_warp(env, &mut b, &mut warps[wi])? {
                Stop::Yield => {}
                Stop::Barrier(a) => s.barriers.arrive(env, &mut b, warps, wi, a)?,
                Stop::Warpgroup => super::wgmma::arrive(env, &mut b, warps, wi)?,
                Stop::Done => {
                    if code.wgmma.is_some() {
                        super::wgmma::exited(env, &b, warps, wi)?;
                    }
                    s.barriers.exited(env, &mut b, warps, wi)?
                }
            }
        }
        if let Some(d) = env.deadline {
            if Instant::now() >= d {
                return Err(Fault {
                    kind: FaultKind::LaunchTimeout,
                    message: format!(
                        "kernel `{}` block ({},{},{}): launch ran past VGPU_WATCHDOG_S; {}",
                        code.name,
                        ctaid[0],
                        ctaid[1],
                        ctaid[2],
                        where_warps_are(code, warps)
                    ),
                });
            }
        }
        if !ran {
            if warps.iter().all(|w| w.state == WarpState::Done) {
                return Ok(());
            }
            if super::mbarrier::time_out(&b, warps) {
                continue;
            }
            let mbars = b.mbars.describe();
            return Err(Fault {
                kind: FaultKind::LaunchFailed,
                message: format!(
                    "kernel `{}` block ({},{},{}): barrier deadlock: {}{}{mbars}",
                    code.name,
                    ctaid[0],
                    ctaid[1],
                    ctaid[2],
                    where_warps_are(code, warps),
                    if mbars.is_empty() { "" } else { "; " },
                ),
            });
        }
    }
}

/// Each unfinished warp's state and PTX line, for deadlock and timeout messages.
fn where_warps_are(code: &KernelCode, warps: &[Warp]) -> String {
    let line = |pc: u32| code.insts.get(pc as usize).map_or(0, |x| x.line);
    warps
        .iter()
        .filter(|w| w.state != WarpState::Done)
        .map(|w| match w.state {
            WarpState::Warpgroup { pc } => format!(
                "warp {} waits for its warpgroup at wgmma.mma_async (PTX line {})",
                w.id,
                line(pc)
            ),
            WarpState::Barrier { id, pc } => {
                format!(
                    "warp {} waits at barrier {id} (PTX line {})",
                    w.id,
                    line(pc)
                )
            }
            WarpState::Mbar { .. } => super::mbarrier::where_parked(code, w).unwrap_or_default(),
            _ => format!(
                "warp {} runs at PTX line {} (lanes {:#010x})",
                w.id,
                line(w.pc),
                w.mask
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
