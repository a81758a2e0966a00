//! Executes one thread block: warps of 32 lanes over a shared register file laid out
//! `regs[reg * 32 + lane]`, so that each decoded instruction becomes one loop over lanes.
//!
//! Divergence: a reconvergence stack per warp, as the SIMT hardware before Volta kept and
//! as GPGPU-Sim models it. A branch that splits the running group pushes its immediate
//! post-dominator (computed at load, `program::reconvergence`) with the whole group, then
//! each path; a path runs until it reaches that pc, where the next entry takes over and
//! the last one continues with every lane. The join is where the program's structure
//! meets, whatever the layout: a cold block placed after `ret` that jumps back rejoins
//! before the next `shfl.sync`. `.aligned` instructions (bar.sync, mma, ldmatrix) require
//! the whole live warp in the running group; `*.sync` warp instructions require every live
//! lane of their member mask. A warp runs for a time slice ([`SLICE`]) at a time.

use super::api::{Fault, FaultKind};
use super::check::{Shadow, Who};
use super::launch::Env;
use super::program::*;
use super::sync::Arrival;

pub const FULL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarpState {
    Run,
    /// Waiting for barrier `id`, reached at `pc`, to complete (see `sync::Barriers`).
    Barrier {
        id: u32,
        pc: u32,
    },
    /// Parked at the mbarrier wait at `pc` (on the barrier at shared `addr`) until the
    /// block's mbarriers change from generation `gen` (see `sim::mbarrier`).
    Mbar {
        pc: u32,
        addr: u32,
        gen: u64,
    },
    /// Parked at the `wgmma.mma_async` at `pc` until its warpgroup has all arrived.
    Warpgroup {
        pc: u32,
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

/// A lane group of the reconvergence stack: where it is, which lanes, and the pc at which
/// it has finished and hands over to the entry below it.
pub type Path = (u32, u32, u32);

pub struct Warp {
    pub id: u32,
    /// Lanes that exist and have not exited.
    pub live: u32,
    pub pc: u32,
    pub mask: u32,
    /// Reconvergence pc of the running group.
    pub rpc: u32,
    /// Paths below the running one, innermost last. An entry's lanes are all in the mask of
    /// the entry that waits at its reconvergence pc, so a group that finishes never loses
    /// lanes.
    pub stack: Vec<Path>,
    pub state: WarpState,
    /// Dynamic instruction counter, used to tell lanes of one instruction apart in the
    /// race checker.
    pub seq: u32,
    pub regs: Vec<u64>,
    pub cp: Vec<CpAsyncLane>,
    /// `bar.red` destination (register, op) while waiting at such a barrier.
    pub red_dst: Option<(u32, RedOp)>,
    /// The next mbarrier wait that finds nothing complete returns false instead of parking
    /// (set by `mbarrier::time_out`), and the generation at which that last happened.
    pub mbar_expire: bool,
    pub mbar_timed_out: Option<u64>,
    /// Issued and pending wgmma work (`wgmma`).
    pub wg: super::wgmma::WarpWgmma,
}

impl Warp {
    pub fn new(id: u32, live: u32, nregs: usize) -> Self {
        Warp {
            id,
            live,
            pc: 0,
            mask: live,
            rpc: NO_RECONV,
            stack: Vec::new(),
            state: if live == 0 {
                WarpState::Done
            } else {
                WarpState::Run
            },
            seq: 0,
            regs: vec![0; nregs * 32],
            cp: vec![CpAsyncLane::default(); 32],
            red_dst: None,
            mbar_expire: false,
            mbar_timed_out: None,
            wg: Default::default(),
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

    /// The running group has finished its path: the next live entry of the stack runs.
    fn reconverge(&mut self) {
        while let Some((p, m, r)) = self.stack.pop() {
            let m = m & self.live;
            if m != 0 {
                self.pc = p;
                self.mask = m;
                self.rpc = r;
                return;
            }
        }
        self.state = WarpState::Done;
    }

    /// Continues at `pc + 1` with the running group, reconverging there if it is the join.
    #[inline]
    pub fn advance(&mut self) {
        self.pc += 1;
        if self.pc == self.rpc {
            self.reconverge();
        }
    }

    /// `taken` lanes of the running group go to `target`; a split pushes the join `reconv`
    /// (the branch's immediate post-dominator) and both paths, fall-through first.
    pub fn branch(&mut self, taken: u32, target: u32, reconv: &[u32]) {
        let not_taken = self.mask & !taken;
        if taken == 0 {
            self.advance();
        } else if not_taken == 0 {
            self.pc = target;
            if self.pc == self.rpc {
                self.reconverge();
            }
        } else {
            let reconv = reconv[self.pc as usize];
            if reconv != self.rpc {
                self.stack.push((reconv, self.mask, self.rpc));
            }
            if target != reconv {
                self.stack.push((target, taken, reconv));
            }
            if self.pc + 1 != reconv {
                self.stack.push((self.pc + 1, not_taken, reconv));
            }
            self.reconverge();
        }
    }

    /// Lanes in `exit` leave; the warp continues with whatever group is left.
    pub fn exit(&mut self, exit: u32) {
        self.live &= !exit;
        let rest = self.mask & !exit;
        if rest != 0 {
            self.mask = rest;
            self.advance();
        } else {
            self.reconverge();
        }
    }
}

/// What stopped a warp's run.
pub enum Stop {
    /// Its time slice is used up; it can go on.
    Yield,
    /// At a barrier instruction (waiting or, for `bar.arrive`, not).
    Barrier(Arrival),
    /// Parked at a `wgmma.mma_async` for the rest of its warpgroup.
    Warpgroup,
    Done,
}

/// Warp instructions per time slice: warps of a block take turns, so a warp spinning on a
/// flag that another warp sets sees it set. Large enough that switching costs nothing.
pub const SLICE: u32 = 1024;

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
    pub counters: &'s mut super::launch::Counters,
    pub mbars: &'s mut super::mbarrier::Mbarriers,
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
    fault_at(env, b, w.id, lane, w.pc, kind, what)
}

/// [`fault`] for a thread of warp `warp` at instruction `pc`.
pub fn fault_at(
    env: &Env,
    b: &BlockState,
    warp: u32,
    lane: usize,
    pc: u32,
    kind: FaultKind,
    what: impl AsRef<str>,
) -> Fault {
    let inst = env.code.insts.get(pc as usize);
    let tid = b.tid3(b.tid_of(warp, lane));
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

/// Runs `w` for up to [`SLICE`] instructions, until it reaches a barrier, exits, or
/// faults.
pub fn run_warp(env: &Env, b: &mut BlockState, w: &mut Warp) -> Result<Stop, Fault> {
    let insts = &env.code.insts;
    let mut budget = SLICE;
    loop {
        if w.state == WarpState::Done {
            return Ok(Stop::Done);
        }
        if budget == 0 {
            return Ok(Stop::Yield);
        }
        budget -= 1;
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
            Some((p, neg)) => super::vector::guard(w, p, neg, mask),
        };
        if exec != 0 {
            if let Some(k) = &env.code.wgmma {
                super::wgmma::track(env, b, w, k)?;
            }
        }
        match &inst.op {
            Op::Wgmma(_) if exec != 0 => {
                super::wgmma::park(env, b, w, exec)?;
                return Ok(Stop::Warpgroup);
            }
            Op::Bra { target } => {
                w.branch(exec, *target, &env.code.reconv);
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
            Op::Bar {
                id,
                count,
                aligned,
                kind,
            } => {
                if exec == 0 {
                    w.advance();
                    continue;
                }
                retire_parked_at_exit(w, insts);
                if *aligned && (exec != w.mask || w.mask != w.live) {
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
                let red = match *kind {
                    BarKind::Red { op, d, pred } => {
                        let mut preds = 0u32;
                        let mut m = exec;
                        while m != 0 {
                            let l = m.trailing_zeros() as usize;
                            m &= m - 1;
                            if super::alu::src(w, b, &pred, l) & 1 != 0 {
                                preds |= 1 << l;
                            }
                        }
                        Some((op, d, preds))
                    }
                    _ => None,
                };
                let arrival = Arrival {
                    id: super::alu::src(w, b, id, l) as u32,
                    count: count.map(|c| super::alu::src(w, b, &c, l) as u32),
                    aligned: *aligned,
                    wait: *kind != BarKind::Arrive,
                    red,
                    pc: w.pc,
                    lanes: exec,
                };
                w.advance();
                return Ok(Stop::Barrier(arrival));
            }
            Op::Async(a) => {
                if exec != 0 {
                    let flow = super::mbarrier::execute(env, b, w, a, exec)?;
                    if let super::mbarrier::Flow::Park(addr) = flow {
                        let gen = b.mbars.gen;
                        w.state = WarpState::Mbar {
                            pc: w.pc,
                            addr,
                            gen,
                        };
                        return Ok(Stop::Yield);
                    }
                }
                w.advance();
                continue;
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
/// barrier. They leave here too, before the barrier's convergence check. A lane's position
/// is the topmost stack entry that holds it.
fn retire_parked_at_exit(w: &mut Warp, insts: &[Inst]) {
    let mut seen = w.mask;
    let mut parked = 0u32;
    for &(pc, m, _) in w.stack.iter().rev() {
        let new = m & w.live & !seen;
        seen |= m;
        let at_exit = insts
            .get(pc as usize)
            .is_some_and(|i| i.guard.is_none() && matches!(i.op, Op::Exit));
        if at_exit {
            parked |= new;
        }
    }
    if parked != 0 {
        complete_all_cp_async(w, parked);
        w.live &= !parked;
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
