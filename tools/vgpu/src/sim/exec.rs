//! Executes one thread block: warps of 32 lanes over a shared register file laid out
//! `regs[reg * 32 + lane]`, so that each decoded instruction becomes one loop over lanes.
//!
//! Divergence: each warp runs the group of lanes with the smallest program counter; other
//! groups wait in a list sorted by pc and merge back when the running group reaches their
//! pc. For the structured code nvcc emits this reconverges at the immediate post-dominator
//! of every branch, and it never runs a lane ahead of a lane that could still join it.
//! `.aligned` instructions (bar.sync, mma, ldmatrix) require the whole live warp in the
//! running group; `*.sync` warp instructions require every live lane of their member mask.

use super::api::{Fault, FaultKind};
use super::check::{Shadow, Who};
use super::launch::Env;
use super::program::*;

pub const FULL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarpState {
    Run,
    /// Waiting at `bar.sync id` (with an optional thread count).
    Barrier {
        id: u32,
        count: Option<u32>,
    },
    Done,
}

/// One pending cp.async copy: destination offset in shared memory and the 16 bytes.
#[derive(Clone, Copy)]
pub struct Copy16 {
    pub dst: u32,
    pub size: u32,
    pub data: [u8; 16],
}

#[derive(Default, Clone)]
pub struct CpAsyncLane {
    pub open: Vec<Copy16>,
    pub committed: std::collections::VecDeque<Vec<Copy16>>,
}

pub struct Warp {
    pub id: u32,
    /// Lanes that exist and have not exited.
    pub live: u32,
    pub pc: u32,
    pub mask: u32,
    /// Diverged lane groups (pc, mask), sorted by descending pc: the smallest is last.
    pub waiting: Vec<(u32, u32)>,
    pub state: WarpState,
    /// Dynamic instruction counter, used to tell lanes of one instruction apart in the
    /// race checker.
    pub seq: u32,
    pub regs: Vec<u64>,
    pub cp: Vec<CpAsyncLane>,
}

impl Warp {
    pub fn new(id: u32, live: u32, nregs: usize) -> Self {
        Warp {
            id,
            live,
            pc: 0,
            mask: live,
            waiting: Vec::new(),
            state: if live == 0 {
                WarpState::Done
            } else {
                WarpState::Run
            },
            seq: 0,
            regs: vec![0; nregs * 32],
            cp: vec![CpAsyncLane::default(); 32],
        }
    }

    #[inline]
    pub fn r(&self, reg: u32, lane: usize) -> u64 {
        self.regs[reg as usize * 32 + lane]
    }

    #[inline]
    pub fn set(&mut self, reg: u32, lane: usize, v: u64) {
        self.regs[reg as usize * 32 + lane] = v;
    }

    /// Inserts a lane group into the waiting list, merging with a group at the same pc.
    fn park(&mut self, pc: u32, mask: u32) {
        if mask == 0 {
            return;
        }
        match self.waiting.binary_search_by(|&(p, _)| pc.cmp(&p)) {
            Ok(i) => self.waiting[i].1 |= mask,
            Err(i) => self.waiting.insert(i, (pc, mask)),
        }
    }

    /// Makes the group with the smallest pc the running one.
    fn reschedule(&mut self) {
        if let Some(&(p, m)) = self.waiting.last() {
            if p < self.pc {
                self.waiting.pop();
                let (cp, cm) = (self.pc, self.mask);
                self.park(cp, cm);
                self.pc = p;
                self.mask = m;
            } else if p == self.pc {
                self.waiting.pop();
                self.mask |= m;
            }
        }
    }

    /// Continues at `pc + 1` with the running group, merging lanes waiting there.
    #[inline]
    pub fn advance(&mut self) {
        self.pc += 1;
        if let Some(&(p, m)) = self.waiting.last() {
            if p == self.pc {
                self.waiting.pop();
                self.mask |= m;
            }
        }
    }

    pub fn branch(&mut self, taken: u32, target: u32) {
        let not_taken = self.mask & !taken;
        if taken == 0 {
            self.advance();
        } else if not_taken == 0 {
            self.pc = target;
            self.reschedule();
        } else {
            let next = self.pc + 1;
            self.park(target, taken);
            self.park(next, not_taken);
            let (p, m) = self.waiting.pop().expect("two groups were just parked");
            self.pc = p;
            self.mask = m;
        }
    }

    /// Lanes in `exit` leave; the warp continues with whatever group is left.
    pub fn exit(&mut self, exit: u32) {
        self.live &= !exit;
        let rest = self.mask & !exit;
        if rest != 0 {
            self.mask = rest;
            self.advance();
            return;
        }
        match self.waiting.pop() {
            Some((p, m)) => {
                self.pc = p;
                self.mask = m & self.live;
                if self.mask == 0 {
                    self.exit(0);
                }
            }
            None => self.state = WarpState::Done,
        }
    }
}

/// What stopped a warp's run.
pub enum Stop {
    Barrier,
    Done,
}

/// Per-block state shared by its warps.
pub struct BlockState<'s> {
    pub ctaid: [u32; 3],
    pub block_dim: [u32; 3],
    pub grid_dim: [u32; 3],
    pub dynamic_shared: u32,
    pub nthreads: u32,
    pub shared: &'s mut [u8],
    pub shadow: &'s mut Shadow,
    pub local: &'s mut [u8],
    pub local_bytes: u32,
    pub epoch: u32,
    pub counters: &'s mut super::launch::Counters,
}

impl BlockState<'_> {
    pub fn tid_of(&self, warp: u32, lane: usize) -> u32 {
        warp * 32 + lane as u32
    }
    pub fn who(&self, w: &Warp, lane: usize) -> Who {
        Who {
            tid: self.tid_of(w.id, lane),
            warp: w.id,
            seq: w.seq,
            epoch: self.epoch,
        }
    }
    pub fn tid3(&self, tid: u32) -> [u32; 3] {
        let [bx, by, _] = self.block_dim;
        [tid % bx, (tid / bx) % by, tid / (bx * by)]
    }
}

/// A fault with the context every message carries.
pub fn fault(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    lane: usize,
    kind: FaultKind,
    what: impl AsRef<str>,
) -> Fault {
    let inst = env.code.insts.get(w.pc as usize);
    let tid = b.tid3(b.tid_of(w.id, lane));
    Fault {
        kind,
        message: format!(
            "kernel `{}` block ({},{},{}) thread ({},{},{}) PTX line {}: {}",
            env.code.name,
            b.ctaid[0],
            b.ctaid[1],
            b.ctaid[2],
            tid[0],
            tid[1],
            tid[2],
            inst.map_or(0, |i| i.line),
            what.as_ref()
        ),
    }
}

/// First lane set in `m` (for messages).
pub fn first_lane(m: u32) -> usize {
    m.trailing_zeros().min(31) as usize
}

/// Runs `w` until it reaches a barrier, exits, or faults.
pub fn run_warp(env: &Env, b: &mut BlockState, w: &mut Warp) -> Result<Stop, Fault> {
    let insts = &env.code.insts;
    loop {
        if w.state == WarpState::Done {
            return Ok(Stop::Done);
        }
        let Some(inst) = insts.get(w.pc as usize) else {
            return Err(fault(
                env,
                b,
                w,
                first_lane(w.mask),
                FaultKind::IllegalInstruction,
                "program counter past the end",
            ));
        };
        w.seq = w.seq.wrapping_add(1);
        b.counters.count(env.class_id[w.pc as usize]);
        let mask = w.mask;
        let exec = match inst.guard {
            None => mask,
            Some((p, neg)) => {
                let mut e = 0u32;
                let mut m = mask;
                while m != 0 {
                    let l = m.trailing_zeros() as usize;
                    m &= m - 1;
                    if (w.r(p, l) & 1 != 0) != neg {
                        e |= 1 << l;
                    }
                }
                e
            }
        };
        match &inst.op {
            Op::Bra { target } => {
                w.branch(exec, *target);
                continue;
            }
            Op::Exit => {
                if exec == 0 {
                    w.advance();
                } else {
                    complete_all_cp_async(w, exec);
                    w.exit(exec);
                }
                continue;
            }
            Op::Bar { id, count, aligned } => {
                if exec == 0 {
                    w.advance();
                    continue;
                }
                retire_parked_at_exit(w, insts);
                if *aligned && (exec != w.mask || w.mask != w.live || !w.waiting.is_empty()) {
                    let missing = w.live & !exec;
                    return Err(fault(
                        env,
                        b,
                        w,
                        first_lane(exec),
                        FaultKind::LaunchFailed,
                        format!(
                            "divergent bar.sync: lanes {missing:#010x} of warp {} are live \
                             but not at this barrier (synccheck)",
                            w.id
                        ),
                    ));
                }
                let l = first_lane(exec);
                let id = super::alu::src(w, b, id, l) as u32;
                let count = count.map(|c| super::alu::src(w, b, &c, l) as u32);
                w.state = WarpState::Barrier { id, count };
                w.advance();
                return Ok(Stop::Barrier);
            }
            _ => {}
        }
        if exec != 0 {
            super::ops::execute(env, b, w, inst, exec)?;
        }
        w.advance();
    }
}

/// Lanes parked at an unconditional `ret`/`exit` will do nothing but leave: nvcc compiles
/// `if (tid >= n) return; ... __syncthreads();` as a branch to a shared `ret`, which ptxas
/// turns into EXIT on the branch itself, so hardware does not wait for those lanes at the
/// barrier. They leave here too, before the barrier's convergence check.
fn retire_parked_at_exit(w: &mut Warp, insts: &[Inst]) {
    let mut k = 0;
    while k < w.waiting.len() {
        let (pc, m) = w.waiting[k];
        let at_exit = insts
            .get(pc as usize)
            .is_some_and(|i| i.guard.is_none() && matches!(i.op, Op::Exit));
        if at_exit {
            complete_all_cp_async(w, m);
            w.live &= !m;
            w.waiting.remove(k);
        } else {
            k += 1;
        }
    }
}

/// Lanes that exit with copies in flight: the hardware completes them; so do we, without
/// checks (no one can wait for them any more).
fn complete_all_cp_async(w: &mut Warp, lanes: u32) {
    let mut m = lanes;
    while m != 0 {
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        w.cp[l].open.clear();
        w.cp[l].committed.clear();
    }
}
