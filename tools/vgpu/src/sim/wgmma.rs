//! Warpgroup MMA: the asynchronous state of `wgmma.mma_async` per warp, the rendezvous of
//! the four warps of a warpgroup, `wgmma.fence` / `commit_group` / `wait_group`, and the
//! register checks.
//!
//! A warpgroup is four consecutive warps whose first index is a multiple of 4. Each warp
//! that reaches a `wgmma.mma_async` parks ([`WarpState::Warpgroup`]); when the fourth
//! arrives at the same instruction the operation runs once ([`super::wgmma_exec::issue`])
//! and all four go on. Its result is not written then: each warp gets its quarter of the
//! accumulators as a [`Pending`] entry, grouped by `wgmma.commit_group` and written to the
//! registers when `wgmma.wait_group` completes the group, as the hardware's asynchronous
//! writes land. The values themselves are computed at issue from the operands as they are
//! then, which is what a program that obeys the ISA's rules (no operand changes before the
//! wait) observes.
//!
//! Checks, reported as the sanitizer-style faults of `check`:
//! - a partial warpgroup, divergent warps, or warps of one warpgroup at different
//!   `wgmma.mma_async` instructions or exiting while the others wait;
//! - an accumulator or A-fragment register of an issued but not yet completed wgmma read
//!   or written by any other instruction (undefined until the `wait_group`, as the ISA
//!   says);
//! - a wgmma whose accumulator or A registers were accessed by other instructions since the
//!   warp's last `wgmma.fence` (or with no `wgmma.fence` ever executed). Consecutive
//!   wgmmas on the same accumulators need no fence, as the ISA allows.
//!
//! Registers are tracked by slot; wgmma operand registers keep a slot of their own
//! (`regalloc`), so a slot stands for exactly one of them.

use std::collections::VecDeque;

use super::api::{Fault, FaultKind};
use super::exec::{fault, fault_at, BlockState, Warp, WarpState, FULL};
use super::launch::Env;
use super::program::*;

/// Per-kernel tables, built at load when the kernel contains a wgmma.
pub struct KernelWgmma {
    /// Per instruction, the wgmma operand slots (accumulators, A fragments) it reads or
    /// writes; empty for the wgmma instructions themselves.
    pub touch: Vec<Box<[u32]>>,
    /// Words of a register bitmap.
    pub words: usize,
}

/// The tables for `insts` (registers already compacted to `slots`), or `None` without wgmma.
pub fn analyse(insts: &[Inst], slots: u32) -> Option<Box<KernelWgmma>> {
    let mut operand = vec![false; slots as usize];
    let mut any = false;
    for inst in insts {
        if let Op::Wgmma(x) = &inst.op {
            any = true;
            for &d in &x.d {
                operand[d as usize] = true;
            }
            if let WgA::Regs(v) = &x.a {
                for s in v {
                    if let Src::Reg(r) = *s {
                        operand[r as usize] = true;
                    }
                }
            }
        }
    }
    if !any {
        return None;
    }
    let touch = insts
        .iter()
        .map(|i| {
            if matches!(i.op, Op::Wgmma(_)) {
                return Box::default();
            }
            let mut v: Vec<u32> = super::regalloc::registers_of(i)
                .into_iter()
                .map(|(r, _)| r)
                .filter(|&r| operand.get(r as usize).copied().unwrap_or(false))
                .collect();
            v.sort_unstable();
            v.dedup();
            v.into_boxed_slice()
        })
        .collect();
    Some(Box::new(KernelWgmma {
        touch,
        words: (slots as usize).div_ceil(64),
    }))
}

/// One warp's quarter of an issued wgmma: its accumulator slots and their new values.
pub struct Pending {
    pub pc: u32,
    pub d: Vec<u32>,
    pub vals: Vec<[u32; 32]>,
    /// A-fragment registers (A from registers), also off limits until completion.
    pub a: Vec<u32>,
}

impl Pending {
    fn regs(&self) -> impl Iterator<Item = u32> + '_ {
        self.d.iter().chain(&self.a).copied()
    }
}

/// [`WarpWgmma::fence_state`].
pub enum Fenced {
    Yes,
    /// An operand register was accessed at this pc after the last fence.
    AccessedAt(u32),
    /// The warp never executed `wgmma.fence`.
    Never,
}

/// A warp's wgmma state.
#[derive(Default)]
pub struct WarpWgmma {
    pub open: Vec<Pending>,
    pub committed: VecDeque<Vec<Pending>>,
    /// Accumulator slots of pending wgmmas.
    busy: Vec<u64>,
    /// Operand slots accessed by other instructions since the last `wgmma.fence`, and the
    /// pc of each slot's last access (for messages).
    touched: Vec<u64>,
    touched_at: Vec<u32>,
    fenced: bool,
}

fn bit(set: &[u64], r: u32) -> bool {
    set.get(r as usize / 64)
        .is_some_and(|w| w & (1 << (r % 64)) != 0)
}

impl WarpWgmma {
    fn ensure(&mut self, words: usize) {
        if self.busy.len() < words {
            self.busy.resize(words, 0);
            self.touched.resize(words, 0);
            self.touched_at.resize(words * 64, 0);
        }
    }

    /// Pending entries, newest first.
    fn newest_first(&self) -> impl Iterator<Item = &Pending> {
        self.open
            .iter()
            .rev()
            .chain(self.committed.iter().rev().flat_map(|g| g.iter().rev()))
    }

    /// The value accumulator slot `r` will hold once everything issued so far completes.
    pub fn latest(&self, r: u32) -> Option<&[u32; 32]> {
        if !bit(&self.busy, r) {
            return None;
        }
        self.newest_first()
            .find_map(|p| p.d.iter().position(|&x| x == r).map(|k| &p.vals[k]))
    }

    /// The newest pending entry, for the common chain of wgmmas on the same accumulators.
    pub fn newest(&self) -> Option<&Pending> {
        self.newest_first().next()
    }

    pub fn push(&mut self, words: usize, p: Pending) {
        self.ensure(words);
        for r in p.regs() {
            self.busy[r as usize / 64] |= 1 << (r % 64);
        }
        self.open.push(p);
    }

    /// The pending wgmma that uses `r`, and whether as an accumulator.
    fn user_of(&self, r: u32) -> Option<(u32, bool)> {
        self.newest_first()
            .find(|p| p.regs().any(|x| x == r))
            .map(|p| (p.pc, p.d.contains(&r)))
    }

    /// Whether a wgmma on `regs` is ordered after their other accesses by a `wgmma.fence`.
    pub fn fence_state(&self, regs: impl IntoIterator<Item = u32>) -> Fenced {
        if !self.fenced {
            return Fenced::Never;
        }
        match regs.into_iter().find(|&r| bit(&self.touched, r)) {
            Some(r) => Fenced::AccessedAt(self.touched_at[r as usize]),
            None => Fenced::Yes,
        }
    }
}

/// Before warp `w` executes the instruction at its pc with lanes `exec`: an access to a
/// pending accumulator is an error; accesses to wgmma operands are remembered for the
/// `wgmma.fence` check.
pub fn track(env: &Env, b: &BlockState, w: &mut Warp, k: &KernelWgmma) -> Result<(), Fault> {
    let regs = &k.touch[w.pc as usize];
    if regs.is_empty() {
        return Ok(());
    }
    w.wg.ensure(k.words);
    for &r in regs.iter() {
        if bit(&w.wg.busy, r) {
            let (pc, acc) = w.wg.user_of(r).unwrap_or((0, true));
            let line = env.code.insts.get(pc as usize).map_or(0, |i| i.line);
            let what = if acc {
                "an accumulator"
            } else {
                "an A-fragment"
            };
            return Err(fault(
                env,
                b,
                w,
                0,
                FaultKind::LaunchFailed,
                format!(
                    "accesses {what} register of the wgmma.mma_async at PTX line {line} \
                     before the wgmma.wait_group that completes it; the register is undefined \
                     (accumulator) or still being read (A) until then (wgmmacheck)"
                ),
            ));
        }
        w.wg.touched[r as usize / 64] |= 1 << (r % 64);
        w.wg.touched_at[r as usize] = w.pc;
    }
    Ok(())
}

/// `.sync.aligned`: the whole warp, converged.
fn require_warp(env: &Env, b: &BlockState, w: &Warp, exec: u32, what: &str) -> Result<(), Fault> {
    if exec != FULL || w.mask != w.live {
        return Err(fault(
            env,
            b,
            w,
            exec.trailing_zeros().min(31) as usize,
            FaultKind::LaunchFailed,
            format!(
                "{what} executed by lanes {exec:#010x} only; it needs all 32 threads of the \
                 warp, converged (synccheck)"
            ),
        ));
    }
    Ok(())
}

/// `wgmma.fence`, `commit_group`, `wait_group` and `fence.proxy.async` for warp `w`.
pub fn per_warp(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    op: &Op,
    exec: u32,
) -> Result<(), Fault> {
    match *op {
        Op::WgmmaFence => {
            require_warp(env, b, w, exec, "wgmma.fence.sync.aligned")?;
            w.wg.touched.iter_mut().for_each(|x| *x = 0);
            w.wg.fenced = true;
        }
        Op::WgmmaCommit => {
            require_warp(env, b, w, exec, "wgmma.commit_group.sync.aligned")?;
            let g = std::mem::take(&mut w.wg.open);
            w.wg.committed.push_back(g);
        }
        Op::WgmmaWait { n } => {
            require_warp(env, b, w, exec, "wgmma.wait_group.sync.aligned")?;
            let mut done = false;
            while w.wg.committed.len() > n as usize {
                let g = w.wg.committed.pop_front().unwrap_or_default();
                for p in g {
                    for (&r, v) in p.d.iter().zip(&p.vals) {
                        let base = r as usize * 32;
                        for (o, &x) in w.regs[base..base + 32].iter_mut().zip(v) {
                            *o = x as u64;
                        }
                    }
                }
                done = true;
            }
            if done {
                let wg = &mut w.wg;
                wg.busy.iter_mut().for_each(|x| *x = 0);
                let regs: Vec<u32> = wg.newest_first().flat_map(|p| p.regs()).collect();
                for r in regs {
                    wg.busy[r as usize / 64] |= 1 << (r % 64);
                }
            }
        }
        Op::FenceProxyAsync => {
            let mut m = exec;
            while m != 0 {
                let l = m.trailing_zeros();
                m &= m - 1;
                b.shadow.proxy_fence(w.id * 32 + l, w.id);
            }
        }
        _ => unreachable!("not a per-warp wgmma operation"),
    }
    Ok(())
}

/// Warp `w` reached the `wgmma.mma_async` at its pc with lanes `exec`: it must be whole
/// and converged; it then parks until its warpgroup is complete.
pub fn park(env: &Env, b: &BlockState, w: &mut Warp, exec: u32) -> Result<(), Fault> {
    require_warp(env, b, w, exec, "wgmma.mma_async.sync.aligned")?;
    w.state = WarpState::Warpgroup { pc: w.pc };
    Ok(())
}

/// Warp `wi` has parked at a wgmma: when all four warps of its warpgroup are there, the
/// operation runs and they go on.
pub fn arrive(env: &Env, b: &mut BlockState, warps: &mut [Warp], wi: usize) -> Result<(), Fault> {
    let WarpState::Warpgroup { pc } = warps[wi].state else {
        return Ok(());
    };
    let g0 = wi & !3;
    let err = |b: &BlockState, what: String| {
        Err(fault_at(
            env,
            b,
            wi as u32,
            0,
            pc,
            FaultKind::LaunchFailed,
            what,
        ))
    };
    if g0 + 4 > warps.len() || warps[g0..g0 + 4].iter().any(|w| w.live != FULL) {
        return err(
            b,
            format!(
                "wgmma.mma_async in warp {wi}, whose warpgroup (warps {g0}..{}) is not four \
                 whole warps in this block of {} threads; a warpgroup is 4 consecutive full \
                 warps starting at a multiple of 4 (wgmmacheck)",
                g0 + 3,
                b.nthreads
            ),
        );
    }
    let mut ready = 0;
    for (j, w) in warps[g0..g0 + 4].iter().enumerate() {
        match w.state {
            WarpState::Warpgroup { pc: p } if p == pc => ready += 1,
            WarpState::Warpgroup { pc: p } => {
                let line = env.code.insts.get(p as usize).map_or(0, |i| i.line);
                return err(
                    b,
                    format!(
                        "warp {} of the same warpgroup waits at the wgmma.mma_async at PTX line \
                         {line}; all four warps must execute the same instruction (wgmmacheck)",
                        g0 + j
                    ),
                );
            }
            WarpState::Done => {
                return err(
                    b,
                    format!(
                        "warp {} of this warpgroup exited without executing this \
                         wgmma.mma_async (wgmmacheck)",
                        g0 + j
                    ),
                )
            }
            _ => {}
        }
    }
    if ready < 4 {
        return Ok(());
    }
    super::wgmma_exec::issue(env, b, &mut warps[g0..g0 + 4], pc)?;
    for w in &mut warps[g0..g0 + 4] {
        w.state = WarpState::Run;
        w.advance();
    }
    Ok(())
}

/// Warp `wi` exited: no warp of its warpgroup may be waiting for it at a wgmma.
pub fn exited(env: &Env, b: &BlockState, warps: &[Warp], wi: usize) -> Result<(), Fault> {
    let g0 = wi & !3;
    for (j, w) in warps.iter().enumerate().skip(g0).take(4) {
        if let WarpState::Warpgroup { pc } = w.state {
            return Err(fault_at(
                env,
                b,
                j as u32,
                0,
                pc,
                FaultKind::LaunchFailed,
                format!(
                    "waits at wgmma.mma_async while warp {wi} of its warpgroup exits without \
                     executing it (wgmmacheck)"
                ),
            ));
        }
    }
    Ok(())
}
