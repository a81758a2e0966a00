//! Address resolution and checked loads/stores for every state space (memcheck).

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use super::api::FaultKind;
use super::exec::{BlockState, Warp};
use super::launch::Env;
use super::program::{MemSpace, LOCAL_WINDOW, PARAM_WINDOW, SHARED_WINDOW, WINDOW_SIZE};

/// A resolved, bounds-checked location.
#[derive(Clone, Copy, Debug)]
pub enum Loc {
    Global(u64),
    Shared(usize),
    Local(usize),
    Param(usize),
}

pub type MemErr = (FaultKind, String);

fn space_name(s: MemSpace) -> &'static str {
    match s {
        MemSpace::Global => "global",
        MemSpace::Shared => "shared",
        MemSpace::Local => "local",
        MemSpace::Param => "param",
        MemSpace::Const => "const",
        MemSpace::Generic => "generic",
    }
}

/// What an access does to the bytes it names: initcheck refuses reads (and atomics, which
/// read) of bytes never written, and writes make bytes written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    Atomic,
}

/// Checks alignment, bounds and (global memory) initialisation of an access of `size` bytes
/// at `addr` in `space`; a global write marks its bytes written.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    lane: usize,
    space: MemSpace,
    addr: u64,
    size: u32,
    write: bool,
) -> Result<Loc, MemErr> {
    let access = if write { Access::Write } else { Access::Read };
    resolve_as(env, b, w, lane, space, addr, size, access)
}

/// [`resolve`] for an atomic: a write, but also a read, so the bytes (global or shared) must
/// have been written before. Shared bytes' race state stays with the caller (atomics do not
/// race with each other).
#[allow(clippy::too_many_arguments)]
pub fn resolve_atomic(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    lane: usize,
    space: MemSpace,
    addr: u64,
    size: u32,
) -> Result<Loc, MemErr> {
    let loc = resolve_as(env, b, w, lane, space, addr, size, Access::Atomic)?;
    if let Loc::Shared(o) = loc {
        if let Some(k) = b.shadow.first_unwritten(o, size as usize) {
            return Err((
                FaultKind::LaunchFailed,
                format!(
                    "atomic on uninitialised shared memory at {k:#x} (never written in this \
                     block; an atomic reads its target)"
                ),
            ));
        }
    }
    Ok(loc)
}

#[allow(clippy::too_many_arguments)]
fn resolve_as(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    lane: usize,
    space: MemSpace,
    addr: u64,
    size: u32,
    access: Access,
) -> Result<Loc, MemErr> {
    let write = access != Access::Read;
    let (space, addr) = match space {
        MemSpace::Generic => {
            if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) {
                (MemSpace::Shared, addr - SHARED_WINDOW)
            } else if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) {
                (MemSpace::Local, addr - LOCAL_WINDOW)
            } else if (PARAM_WINDOW..PARAM_WINDOW + WINDOW_SIZE).contains(&addr) {
                (MemSpace::Param, addr - PARAM_WINDOW)
            } else {
                (MemSpace::Global, addr)
            }
        }
        // Shared and local addresses are 32-bit offsets: [r + imm] wraps modulo 2^32 as on
        // the chip (NVVM relies on it, e.g. `(x - 2212) + 2212` folded into an immediate
        // with x - 2212 below zero).
        MemSpace::Shared | MemSpace::Local => (space, addr & 0xffff_ffff),
        s => (s, addr),
    };
    let rw = match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Atomic => "atomic",
    };
    if size > 1 && addr % size as u64 != 0 {
        return Err((
            FaultKind::MisalignedAddress,
            format!(
                "misaligned {} {rw} of {size} bytes at {addr:#x}",
                space_name(space)
            ),
        ));
    }
    let end = addr.checked_add(size as u64);
    let oob = |limit: u64| -> MemErr {
        (
            FaultKind::IllegalAddress,
            format!(
                "out-of-bounds {} {rw} of {size} bytes at {addr:#x} (the {} window holds {limit} bytes)",
                space_name(space),
                space_name(space)
            ),
        )
    };
    match space {
        MemSpace::Global | MemSpace::Const => {
            let Some(i) = env.global.find(addr, size as u64) else {
                return Err((
                    FaultKind::IllegalAddress,
                    format!(
                        "out-of-bounds {} {rw} of {size} bytes at {addr:#x}: no live allocation \
                         holds it",
                        space_name(space)
                    ),
                ));
            };
            if access == Access::Write {
                env.global.mark_written(i, addr, size as u64);
            } else if !env.global.written(i, addr, size as u64) {
                return Err(uninit_global(env, i, space, rw, addr, size));
            }
            Ok(Loc::Global(addr))
        }
        MemSpace::Shared => {
            let lim = b.shared.len() as u64;
            match end {
                Some(e) if e <= lim => Ok(Loc::Shared(addr as usize)),
                _ => Err(oob(lim)),
            }
        }
        MemSpace::Local => {
            let lim = b.local_bytes as u64;
            match end {
                Some(e) if e <= lim => {
                    let tid = b.tid_of(w.id, lane) as usize;
                    Ok(Loc::Local(tid * b.local_bytes as usize + addr as usize))
                }
                _ => Err(oob(lim)),
            }
        }
        MemSpace::Param => {
            if write {
                return Err((
                    FaultKind::IllegalAddress,
                    "write to kernel parameter space".into(),
                ));
            }
            let lim = env.params.len() as u64;
            match end {
                Some(e) if e <= lim => Ok(Loc::Param(addr as usize)),
                _ => Err(oob(lim)),
            }
        }
        MemSpace::Generic => unreachable!("generic addresses were resolved above"),
    }
}

/// Initcheck's report: where the first never-written byte lies in its allocation.
#[cold]
fn uninit_global(env: &Env, i: usize, space: MemSpace, rw: &str, addr: u64, size: u32) -> MemErr {
    let r = env.global.range(i);
    let k = env
        .global
        .first_unwritten(i, addr, size as u64)
        .unwrap_or(addr);
    (
        FaultKind::LaunchFailed,
        format!(
            "{rw} of uninitialised {} memory: {size} bytes at {addr:#x}, byte {k:#x} (offset {} \
             of the {}-byte allocation at {:#x}) never written by a copy, memset or kernel",
            space_name(space),
            k - r.start,
            r.len,
            r.start
        ),
    )
}

/// Reads `out.len()` bytes (no checks: `loc` came from [`resolve`]).
pub fn read(env: &Env, b: &BlockState, loc: Loc, out: &mut [u8]) {
    let n = out.len();
    match loc {
        // SAFETY: resolve() found [a, a+n) inside a live device allocation, which is host
        // memory owned by the allocator for the duration of the launch.
        Loc::Global(a) => unsafe {
            std::ptr::copy_nonoverlapping(a as *const u8, out.as_mut_ptr(), n)
        },
        Loc::Shared(o) => out.copy_from_slice(&b.shared[o..o + n]),
        Loc::Local(o) => out.copy_from_slice(&b.local[o..o + n]),
        Loc::Param(o) => out.copy_from_slice(&env.params[o..o + n]),
    }
}

pub fn write(b: &mut BlockState, loc: Loc, data: &[u8]) {
    let n = data.len();
    match loc {
        // SAFETY: as in read(); concurrent blocks writing the same global bytes is a data
        // race in the kernel, with the same unspecified result as on hardware.
        Loc::Global(a) => unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), a as *mut u8, n) },
        Loc::Shared(o) => b.shared[o..o + n].copy_from_slice(data),
        Loc::Local(o) => b.local[o..o + n].copy_from_slice(data),
        Loc::Param(_) => {}
    }
}

/// `loc` moved `by` bytes on, within the same space (an element of a vector access).
pub fn offset(loc: Loc, by: u32) -> Loc {
    match loc {
        Loc::Global(a) => Loc::Global(a + by as u64),
        Loc::Shared(o) => Loc::Shared(o + by as usize),
        Loc::Local(o) => Loc::Local(o + by as usize),
        Loc::Param(o) => Loc::Param(o + by as usize),
    }
}

/// Atomic read-modify-write of 2, 4 or 8 bytes; returns the old value.
pub fn atomic(b: &mut BlockState, loc: Loc, size: u32, f: &dyn Fn(u64) -> u64) -> u64 {
    /// One compare-exchange loop per width; `$at` is the std atomic of that width.
    macro_rules! cas_loop {
        ($at:ty, $t:ty, $a:expr) => {{
            // SAFETY: aligned to `size` (checked by resolve) and inside a live allocation.
            let at = unsafe { &*($a as *const $at) };
            let mut old = at.load(Ordering::Relaxed);
            loop {
                let new = f(old as u64) as $t;
                match at.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return old as u64,
                    Err(x) => old = x,
                }
            }
        }};
    }
    match loc {
        Loc::Global(a) => match size {
            2 => cas_loop!(AtomicU16, u16, a),
            4 => cas_loop!(AtomicU32, u32, a),
            _ => cas_loop!(AtomicU64, u64, a),
        },
        Loc::Shared(o) | Loc::Local(o) => {
            let mem: &mut [u8] = match loc {
                Loc::Shared(_) => b.shared,
                _ => b.local,
            };
            let n = size as usize;
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(&mem[o..o + n]);
            let old = u64::from_le_bytes(buf);
            let new = f(old);
            mem[o..o + n].copy_from_slice(&new.to_le_bytes()[..n]);
            old
        }
        Loc::Param(_) => 0,
    }
}
