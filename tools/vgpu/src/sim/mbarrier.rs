//! Hopper's asynchronous instructions: `mbarrier` transaction barriers, the bulk copies
//! that complete on them (`cp.async.bulk[.tensor]`, in [`super::tma`]) and `setmaxnreg`.
//!
//! An mbarrier lives in shared memory; vgpu keeps its state in a table of the block keyed
//! by the object's shared offset ([`Mbarriers`]): the current phase number, the arrivals
//! still pending in it, the expected count, and the transaction count (bytes announced by
//! `expect_tx` minus bytes completed). A phase completes when its pending arrivals and
//! its transaction count both reach zero; then the next phase starts with the expected
//! count pending.
//!
//! Bulk copies have no timing here: a copy's bytes land in shared memory when it is
//! issued, but its `complete_tx` is held back until the phase has no arrival pending, the
//! latest moment the hardware may deliver it. So announcing the bytes after issuing the
//! copy is as legal as before, and a phase whose copies bring more bytes than announced
//! is caught at once (the count would go below zero with nobody left to announce). Until
//! the phase completes, the destination bytes are unreadable in the shadow memory
//! (`check::Shadow::async_write`), which is how a read before the wait is found.
//!
//! Waiting: `mbarrier.try_wait`/`test_wait` that finds the phase incomplete in every lane
//! parks the warp ([`super::exec::WarpState::Mbar`]) instead of letting nvcc's
//! `@!p bra` loop spin; the block scheduler resumes it when any mbarrier of the block
//! changes ([`wake`]). When nothing else can run, each parked warp is resumed once with
//! the wait returning false, as a real time-out would ([`time_out`]); a warp that parks
//! again with nothing changed is stuck, and the block reports a deadlock with the state of
//! every mbarrier instead of hanging.
//!
//! Arrivals release and successful waits acquire (their default `.release`/`.acquire`
//! semantics), so data written before an arrive is ordered before reads after the wait.

use std::collections::HashMap;

use super::alu::src;
use super::api::{Fault, FaultKind};
use super::check::{Clock, PROXY, ZERO_CLOCK};
use super::exec::{fault, first_lane, BlockState, Warp, WarpState};
use super::launch::Env;
use super::memory::{resolve, Loc};
use super::program::{Addr, KernelCode, MemSpace, Src};
use super::tma::Copy;

/// The ISA's limit on the expected count and on the transaction count's magnitude.
const LIMIT: i64 = (1 << 20) - 1;

/// Decoded forms of the asynchronous instructions.
#[derive(Clone, Debug, PartialEq)]
pub enum AsyncOp {
    /// `mbarrier.init.b64 [addr], count`
    Init {
        space: MemSpace,
        addr: Addr,
        count: Src,
    },
    /// `mbarrier.inval.b64 [addr]`
    Inval { space: MemSpace, addr: Addr },
    /// `mbarrier.arrive[_drop][.expect_tx].b64 state, [addr]{, count | txCount}`
    Arrive {
        space: MemSpace,
        d: Option<u32>,
        addr: Addr,
        count: Option<Src>,
        tx: Option<Src>,
        drop: bool,
    },
    /// `mbarrier.expect_tx` (`complete: false`) / `mbarrier.complete_tx`.
    Tx {
        space: MemSpace,
        addr: Addr,
        bytes: Src,
        complete: bool,
    },
    /// `mbarrier.{test,try}_wait[.parity].b64 p, [addr], state|parity`.
    Wait {
        space: MemSpace,
        d: u32,
        addr: Addr,
        arg: Src,
        parity: bool,
    },
    /// `cp.async.bulk.tensor.Nd.shared::cluster.global.tile.mbarrier::complete_tx::bytes`
    Tensor {
        dst: Addr,
        map: Addr,
        coords: Vec<Src>,
        mbar: Addr,
    },
    /// `cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes`
    Bulk {
        dst: Addr,
        src: Addr,
        size: Src,
        mbar: Addr,
    },
    /// `setmaxnreg.{inc,dec}.sync.aligned.u32 n` (n checked at load).
    SetMaxNReg { inc: bool, n: u32 },
}

impl AsyncOp {
    /// Profile class: copies with the other memory traffic classes, barrier operations
    /// with synchronisation.
    pub fn class(&self) -> &'static str {
        match self {
            AsyncOp::Tensor { .. } | AsyncOp::Bulk { .. } => "tma",
            AsyncOp::SetMaxNReg { .. } => "control",
            _ => "mbarrier",
        }
    }
}

/// What the warp does after an asynchronous instruction.
pub enum Flow {
    Next,
    /// Every lane's wait found its phase incomplete: park until an mbarrier changes. The
    /// shared offset is the first lane's barrier, for messages.
    Park(u32),
}

struct Mbar {
    expected: u32,
    pending: u32,
    phase: u32,
    /// Announced minus completed transaction bytes.
    tx: i64,
    /// Bytes of copies issued in this phase, completed once no arrival is pending.
    held: i64,
    /// Shared ranges written by this phase's copies, readable once it completes.
    ranges: Vec<(u32, u32)>,
    clock: Clock,
}

/// The block's mbarriers, and a counter of their changes that parked warps compare with.
#[derive(Default)]
pub struct Mbarriers {
    map: HashMap<u32, Mbar>,
    pub gen: u64,
    /// `setmaxnreg` per warpgroup and ordinal: (inc, count, first warp); and per warp how
    /// many it has executed.
    nreg: HashMap<(u32, u32), (bool, u32, u32)>,
    nreg_count: HashMap<u32, u32>,
}

impl Mbarriers {
    pub fn reset(&mut self) {
        self.map.clear();
        self.gen = 0;
        self.nreg.clear();
        self.nreg_count.clear();
    }

    /// Fails with the use-before-init message unless a barrier lives at `off`.
    pub fn check_init(&self, off: u32) -> Result<(), String> {
        match self.map.contains_key(&off) {
            true => Ok(()),
            false => Err(uninit(off)),
        }
    }

    /// The state of every mbarrier of the block, for deadlock messages.
    pub fn describe(&self) -> String {
        let mut v: Vec<_> = self.map.iter().collect();
        v.sort_by_key(|(k, _)| **k);
        v.iter()
            .map(|(off, m)| {
                let mut s = format!(
                    "mbarrier at shared {off:#x} in phase {}: {} of {} arrivals pending, \
                     transaction count {}",
                    m.phase,
                    m.pending,
                    m.expected,
                    m.tx - m.held
                );
                if m.pending == 0 && m.tx > m.held {
                    s.push_str(
                        " (every arrival is in but expect_tx announced more bytes than the \
                         copies delivered)",
                    );
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Resumes warps parked on an mbarrier wait if an mbarrier changed since they parked.
pub fn wake(b: &BlockState, warps: &mut [Warp]) {
    for w in warps.iter_mut() {
        if let WarpState::Mbar { gen, .. } = w.state {
            if gen != b.mbars.gen {
                w.state = WarpState::Run;
            }
        }
    }
}

/// Nothing can run: parked warps that have not yet timed out at this state of the mbarriers
/// resume with their wait returning false. Returns false when none is left to resume (the
/// block is deadlocked).
pub fn time_out(b: &BlockState, warps: &mut [Warp]) -> bool {
    let mut any = false;
    for w in warps.iter_mut() {
        if let WarpState::Mbar { .. } = w.state {
            if w.mbar_timed_out != Some(b.mbars.gen) {
                w.mbar_expire = true;
                w.state = WarpState::Run;
                any = true;
            }
        }
    }
    any
}

/// A parked warp, for deadlock messages.
pub fn where_parked(code: &KernelCode, w: &Warp) -> Option<String> {
    let WarpState::Mbar { pc, addr, .. } = w.state else {
        return None;
    };
    let line = code.insts.get(pc as usize).map_or(0, |x| x.line);
    Some(format!(
        "warp {} waits on the mbarrier at shared {addr:#x} (PTX line {line})",
        w.id
    ))
}

/// The shared offset of an 8-byte-aligned mbarrier operand.
fn bar_off(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    l: usize,
    space: MemSpace,
    a: &Addr,
) -> Result<u32, Fault> {
    let x = a
        .base
        .map_or(0, |r| w.r(r, l))
        .wrapping_add(a.offset as u64);
    let x = if space == MemSpace::Shared {
        x & 0xffff_ffff
    } else {
        x
    };
    match resolve(env, b, w, l, space, x, 8, true) {
        Ok(Loc::Shared(o)) => Ok(o as u32),
        Ok(_) => Err(fault(
            env,
            b,
            w,
            l,
            FaultKind::IllegalAddress,
            format!("mbarrier operand {x:#x} is not in shared memory"),
        )),
        Err((k, m)) => Err(fault(env, b, w, l, k, format!("mbarrier operand: {m}"))),
    }
}

fn uninit(off: u32) -> String {
    format!(
        "mbarrier at shared {off:#x} used before mbarrier.init (or after mbarrier.inval) in \
         this block"
    )
}

/// The barrier at `off`, or the use-before-init error.
fn get<'a>(b: &'a mut BlockState<'_>, off: u32) -> Result<&'a mut Mbar, String> {
    b.mbars.map.get_mut(&off).ok_or_else(|| uninit(off))
}

/// Completes the phase of the barrier at `off` if nothing is outstanding, delivering held
/// copies once no arrival is pending.
pub(crate) fn settle(b: &mut BlockState, off: u32) -> Result<(), String> {
    let m = get(b, off)?;
    if m.pending != 0 {
        return Ok(());
    }
    m.tx -= std::mem::take(&mut m.held);
    if m.tx < 0 {
        return Err(format!(
            "mbarrier at shared {off:#x} phase {}: the copies completed {} more bytes than \
             expect_tx announced (transaction count {}, every arrival already in)",
            m.phase, -m.tx, m.tx
        ));
    }
    if m.tx > 0 {
        return Ok(());
    }
    m.phase = m.phase.wrapping_add(1);
    m.pending = m.expected;
    let ranges = std::mem::take(&mut m.ranges);
    // The phase publishes its copies' writes to whoever observes it complete.
    let c = b.shadow.release(PROXY);
    let m = get(b, off)?;
    for (x, y) in m.clock.iter_mut().zip(&c) {
        *x = (*x).max(*y);
    }
    for (o, n) in ranges {
        b.shadow.async_done(o as usize, n as usize);
    }
    b.mbars.gen += 1;
    Ok(())
}

/// A bulk copy of `bytes` issued on the barrier at `off`, its data already in `ranges`.
pub(crate) fn copy_issued(
    b: &mut BlockState,
    off: u32,
    bytes: u64,
    ranges: Vec<(u32, u32)>,
) -> Result<(), String> {
    let m = get(b, off)?;
    m.held += bytes as i64;
    m.ranges.extend(ranges);
    b.mbars.gen += 1;
    settle(b, off)
}

fn lanes(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (m != 0).then(|| {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            l
        })
    })
}

/// The state token of an arrive: the barrier's offset and the phase it arrived in.
fn token(off: u32, phase: u32) -> u64 {
    ((off as u64) << 32) | phase as u64
}

pub fn execute(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    op: &AsyncOp,
    exec: u32,
) -> Result<Flow, Fault> {
    let fail = |b: &BlockState, w: &Warp, l: usize, msg: String| {
        fault(env, b, w, l, FaultKind::LaunchFailed, msg)
    };
    match op {
        AsyncOp::Init { space, addr, count } => {
            for l in lanes(exec) {
                let off = bar_off(env, b, w, l, *space, addr)?;
                let n = src(w, b, count, l) as u32;
                if n == 0 || n as i64 > LIMIT {
                    return Err(fail(
                        b,
                        w,
                        l,
                        format!("mbarrier.init count {n} is not in 1..=2^20-1"),
                    ));
                }
                b.mbars.map.insert(
                    off,
                    Mbar {
                        expected: n,
                        pending: n,
                        phase: 0,
                        tx: 0,
                        held: 0,
                        ranges: Vec::new(),
                        clock: ZERO_CLOCK,
                    },
                );
                b.mbars.gen += 1;
            }
        }
        AsyncOp::Inval { space, addr } => {
            for l in lanes(exec) {
                let off = bar_off(env, b, w, l, *space, addr)?;
                if b.mbars.map.remove(&off).is_none() {
                    return Err(fail(b, w, l, uninit(off)));
                }
                b.mbars.gen += 1;
            }
        }
        AsyncOp::Arrive {
            space,
            d,
            addr,
            count,
            tx,
            drop,
        } => {
            let clock = b.shadow.release(w.id);
            for l in lanes(exec) {
                let off = bar_off(env, b, w, l, *space, addr)?;
                let c = count.map_or(1, |c| src(w, b, &c, l) as u32);
                let t = tx.map_or(0, |t| src(w, b, &t, l) as u32 as i64);
                let r = arrive(b, off, c, t, *drop, &clock);
                let phase = r.map_err(|e| fail(b, w, l, e))?;
                if let Some(d) = d {
                    w.set(*d, l, token(off, phase));
                }
            }
        }
        AsyncOp::Tx {
            space,
            addr,
            bytes,
            complete,
        } => {
            for l in lanes(exec) {
                let off = bar_off(env, b, w, l, *space, addr)?;
                let n = src(w, b, bytes, l) as u32 as i64;
                let r = get(b, off).and_then(|m| {
                    if *complete {
                        m.held += n;
                    } else {
                        m.tx += n;
                    }
                    tx_range(off, m.tx - m.held)
                });
                r.and_then(|()| {
                    b.mbars.gen += 1;
                    settle(b, off)
                })
                .map_err(|e| fail(b, w, l, e))?;
            }
        }
        AsyncOp::Wait {
            space,
            d,
            addr,
            arg,
            parity,
        } => return wait(env, b, w, exec, *space, *d, addr, arg, *parity),
        AsyncOp::Tensor {
            dst,
            map,
            coords,
            mbar,
        } => {
            let op = Copy::Tensor { dst, map, coords };
            super::tma::execute(env, b, w, &op, mbar, exec)?;
        }
        AsyncOp::Bulk {
            dst,
            src: s,
            size,
            mbar,
        } => {
            let op = Copy::Bulk { dst, src: s, size };
            super::tma::execute(env, b, w, &op, mbar, exec)?;
        }
        AsyncOp::SetMaxNReg { inc, n } => {
            let l = first_lane(exec);
            if exec != w.live || w.mask != w.live {
                return Err(fail(
                    b,
                    w,
                    l,
                    format!(
                        "setmaxnreg.sync.aligned {n} executed by lanes {exec:#010x} of warp {}; \
                         it needs the whole converged warp",
                        w.id
                    ),
                ));
            }
            let group_end = (w.id / 4 + 1) * 128;
            if b.nthreads < group_end {
                return Err(fail(
                    b,
                    w,
                    l,
                    format!(
                        "setmaxnreg in warp {}, whose warpgroup (warps {}..{}) is incomplete in \
                         a block of {} threads",
                        w.id,
                        w.id / 4 * 4,
                        w.id / 4 * 4 + 4,
                        b.nthreads
                    ),
                ));
            }
            set_max_nreg(b, w.id, *inc, *n).map_err(|e| fail(b, w, l, e))?;
        }
    }
    Ok(Flow::Next)
}

/// Registers are not modelled; what is checked is that the warps of a warpgroup agree: the
/// k-th `setmaxnreg` each of them executes has the same direction and count.
fn set_max_nreg(b: &mut BlockState, warp: u32, inc: bool, n: u32) -> Result<(), String> {
    let k = b.mbars.nreg_count.entry(warp).or_insert(0);
    *k += 1;
    let key = (warp / 4, *k);
    let &mut (i0, n0, w0) = b.mbars.nreg.entry(key).or_insert((inc, n, warp));
    if (i0, n0) != (inc, n) {
        let dir = |i: bool| if i { "inc" } else { "dec" };
        return Err(format!(
            "setmaxnreg.{} {n} in warp {warp} but setmaxnreg.{} {n0} in warp {w0} of the same \
             warpgroup (number {} of each); the warpgroup must execute it uniformly",
            dir(inc),
            dir(i0),
            key.1
        ));
    }
    Ok(())
}

fn tx_range(off: u32, tx: i64) -> Result<(), String> {
    if tx.abs() > LIMIT {
        return Err(format!(
            "mbarrier at shared {off:#x}: transaction count {tx} outside ±(2^20-1)"
        ));
    }
    Ok(())
}

/// `c` arrivals (and `t` announced bytes) on the barrier at `off`; returns the phase
/// arrived in.
fn arrive(
    b: &mut BlockState,
    off: u32,
    c: u32,
    t: i64,
    drop: bool,
    clock: &Clock,
) -> Result<u32, String> {
    let m = get(b, off)?;
    if c == 0 || c > m.pending {
        return Err(format!(
            "mbarrier at shared {off:#x} phase {}: arrive count overflow ({c} arrivals with \
             only {} of the expected {} pending)",
            m.phase, m.pending, m.expected
        ));
    }
    let phase = m.phase;
    m.tx += t;
    tx_range(off, m.tx - m.held)?;
    m.pending -= c;
    if drop {
        m.expected -= c;
    }
    for (x, y) in m.clock.iter_mut().zip(clock) {
        *x = (*x).max(*y);
    }
    b.mbars.gen += 1;
    settle(b, off)?;
    Ok(phase)
}

#[allow(clippy::too_many_arguments)]
fn wait(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    exec: u32,
    space: MemSpace,
    d: u32,
    addr: &Addr,
    arg: &Src,
    parity: bool,
) -> Result<Flow, Fault> {
    let mut done = 0u32;
    let mut first = None;
    for l in lanes(exec) {
        let off = bar_off(env, b, w, l, space, addr)?;
        first.get_or_insert(off);
        let a = src(w, b, arg, l);
        let m = b
            .mbars
            .map
            .get(&off)
            .ok_or_else(|| fault(env, b, w, l, FaultKind::LaunchFailed, uninit(off)))?;
        let complete = if parity {
            (m.phase & 1) as u64 != a & 1
        } else {
            if a >> 32 != off as u64 {
                return Err(fault(
                    env,
                    b,
                    w,
                    l,
                    FaultKind::LaunchFailed,
                    format!(
                        "mbarrier wait on shared {off:#x} with state {a:#x}, which is not a token \
                         an arrive on this mbarrier returned"
                    ),
                ));
            }
            a as u32 != m.phase
        };
        if complete {
            done |= 1 << l;
            let c = m.clock;
            b.shadow.acquire(w.id, &c);
        }
    }
    let expire = std::mem::take(&mut w.mbar_expire);
    if done == 0 && !expire {
        return Ok(Flow::Park(first.unwrap_or(0)));
    }
    if done == 0 {
        w.mbar_timed_out = Some(b.mbars.gen);
    }
    for l in lanes(exec) {
        w.set(d, l, (done >> l & 1) as u64);
    }
    Ok(Flow::Next)
}
