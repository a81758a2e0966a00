//! Block barriers (`bar.sync`, `bar.arrive`, `bar.red`, `barrier.*`): sixteen per block,
//! each counting arrivals in its current phase, and the synccheck rules for `.aligned` ones.
//!
//! A barrier with a thread count completes when that many threads have arrived (a warp
//! counts as 32, as on hardware); one without completes when every warp that has not
//! exited has arrived. Completion publishes the arrivers' accesses to the waiters (vector
//! clocks in `check::Shadow`), so a named barrier orders only the warps that took part,
//! and `bar.arrive` releases without acquiring.
//!
//! `.aligned` barriers must be executed by every non-exited thread of the block at the same
//! instruction. Two rules catch the ways kernels break that: waiters of one phase must all
//! be at one pc, and a warp may not exit while another warp reaches a block-wide aligned
//! barrier that it has not. The second is checked by counting, per warp, the block-wide
//! aligned barriers it has waited at, which makes it independent of the order in which
//! the simulator interleaves warps. Lanes of a partly exited warp are not counted: nvcc's
//! `if (tid >= n) return; ... __syncthreads();` is legal (see `exec::retire_parked_at_exit`).

use super::api::{Fault, FaultKind};
use super::check::{Clock, MAX_WARPS, ZERO_CLOCK};
use super::exec::{fault_at, first_lane, BlockState, Warp, WarpState};
use super::launch::Env;
use super::program::RedOp;

/// Barriers per block.
pub const IDS: usize = 16;

/// One warp's arrival at a barrier.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub id: u32,
    pub count: Option<u32>,
    pub aligned: bool,
    /// `bar.sync`/`bar.red` wait; `bar.arrive` does not.
    pub wait: bool,
    /// `bar.red`: the operation, destination register and the lanes whose predicate holds.
    pub red: Option<(RedOp, u32, u32)>,
    /// The barrier instruction.
    pub pc: u32,
    /// The arriving lanes.
    pub lanes: u32,
}

#[derive(Clone, Copy)]
struct Bar {
    /// Warps that arrived in this phase, and those of them waiting.
    arrived: u32,
    waiting: u32,
    threads: u32,
    count: Option<u32>,
    /// pc and warp of the first aligned waiter.
    site: Option<(u32, u32)>,
    popc: u32,
    all: bool,
    any: bool,
    clock: Clock,
}

const IDLE: Bar = Bar {
    arrived: 0,
    waiting: 0,
    threads: 0,
    count: None,
    site: None,
    popc: 0,
    all: true,
    any: false,
    clock: ZERO_CLOCK,
};

pub struct Barriers {
    bars: [Bar; IDS],
    /// Block-wide aligned barriers each warp has waited at, per id.
    passed: [[u32; IDS]; MAX_WARPS],
    /// Per id, the exited warp that had waited at the fewest of them: (count, warp).
    exited: [Option<(u32, u32)>; IDS],
}

impl Default for Barriers {
    fn default() -> Self {
        Barriers {
            bars: [IDLE; IDS],
            passed: [[0; IDS]; MAX_WARPS],
            exited: [None; IDS],
        }
    }
}

impl Barriers {
    /// A fresh block of `warps` warps.
    pub fn reset(&mut self, warps: usize) {
        self.bars = [IDLE; IDS];
        for p in &mut self.passed[..warps.min(MAX_WARPS)] {
            *p = [0; IDS];
        }
        self.exited = [None; IDS];
    }

    fn line(env: &Env, pc: u32) -> u32 {
        env.code.insts.get(pc as usize).map_or(0, |i| i.line)
    }

    /// Records warp `wi`'s arrival and completes the barrier if this was the last one.
    pub fn arrive(
        &mut self,
        env: &Env,
        b: &mut BlockState,
        warps: &mut [Warp],
        wi: usize,
        a: Arrival,
    ) -> Result<(), Fault> {
        let lane = first_lane(a.lanes);
        let err = |b: &BlockState, kind, what: String| {
            fault_at(env, b, wi as u32, lane, a.pc, kind, what)
        };
        let id = a.id as usize;
        if id >= IDS {
            return Err(err(
                b,
                FaultKind::IllegalInstruction,
                format!("barrier id {} out of range (0..{IDS})", a.id),
            ));
        }
        if let Some(c) = a.count {
            if c == 0 || c % 32 != 0 {
                return Err(err(
                    b,
                    FaultKind::IllegalInstruction,
                    format!("barrier thread count {c} is not a positive multiple of 32"),
                ));
            }
        }
        let bar = &mut self.bars[id];
        if bar.arrived != 0 && bar.count != a.count {
            return Err(err(
                b,
                FaultKind::LaunchFailed,
                format!(
                    "barrier {id} reached with thread count {:?} while other warps wait with \
                     {:?} (synccheck)",
                    a.count, bar.count
                ),
            ));
        }
        if a.wait && a.aligned {
            match bar.site {
                Some((pc, w0)) if pc != a.pc => {
                    return Err(err(
                        b,
                        FaultKind::LaunchFailed,
                        format!(
                            "aligned barrier {id} reached at two sites: warp {w0} waits at PTX \
                             line {} and warp {wi} at this one; every thread of the block must \
                             execute the same barrier instruction (synccheck)",
                            Self::line(env, pc)
                        ),
                    ))
                }
                Some(_) => {}
                None => bar.site = Some((a.pc, wi as u32)),
            }
            if a.count.is_none() {
                self.passed[wi][id] += 1;
                if let Some((p, ew)) = self.exited[id] {
                    if p < self.passed[wi][id] {
                        return Err(err(
                            b,
                            FaultKind::LaunchFailed,
                            format!(
                                "warp {ew} exited without reaching this aligned barrier, which \
                                 every non-exited thread of the block must reach (synccheck)"
                            ),
                        ));
                    }
                }
            }
        }
        let bar = &mut self.bars[id];
        bar.count = a.count;
        bar.arrived |= 1 << wi;
        bar.threads += 32;
        if a.wait {
            bar.waiting |= 1 << wi;
            warps[wi].state = WarpState::Barrier { id: a.id, pc: a.pc };
        }
        if let Some((op, d, preds)) = a.red {
            bar.popc += preds.count_ones();
            bar.all &= preds == a.lanes;
            bar.any |= preds != 0;
            warps[wi].red_dst = Some((d, op));
        }
        let c = b.shadow.release(wi as u32);
        for (x, y) in bar.clock.iter_mut().zip(&c) {
            *x = (*x).max(*y);
        }
        self.try_complete(id, b, warps);
        Ok(())
    }

    /// Warp `wi` has exited: no aligned block-wide barrier may be waiting for it, and
    /// barriers without a count may now be complete.
    pub fn exited(
        &mut self,
        env: &Env,
        b: &mut BlockState,
        warps: &mut [Warp],
        wi: usize,
    ) -> Result<(), Fault> {
        for id in 0..IDS {
            let bar = &self.bars[id];
            if let (Some((pc, w0)), None) = (bar.site, bar.count) {
                let lane = first_lane(warps[w0 as usize].mask);
                return Err(fault_at(
                    env,
                    b,
                    w0,
                    lane,
                    pc,
                    FaultKind::LaunchFailed,
                    format!(
                        "waits at aligned barrier {id} while warp {wi} exits without reaching \
                         it; every non-exited thread of the block must reach it (synccheck)"
                    ),
                ));
            }
            let p = self.passed[wi][id];
            if self.exited[id].is_none_or(|(q, _)| p < q) {
                self.exited[id] = Some((p, wi as u32));
            }
        }
        for id in 0..IDS {
            self.try_complete(id, b, warps);
        }
        Ok(())
    }

    fn try_complete(&mut self, id: usize, b: &mut BlockState, warps: &mut [Warp]) {
        let bar = self.bars[id];
        if bar.arrived == 0 {
            return;
        }
        let complete = match bar.count {
            Some(c) => bar.threads >= c,
            None => warps
                .iter()
                .enumerate()
                .all(|(i, w)| w.state == WarpState::Done || bar.arrived & (1 << i) != 0),
        };
        if !complete {
            return;
        }
        let mut m = bar.waiting;
        while m != 0 {
            let wi = m.trailing_zeros() as usize;
            m &= m - 1;
            b.shadow.acquire(wi as u32, &bar.clock);
            let w = &mut warps[wi];
            w.state = WarpState::Run;
            if let Some((d, op)) = w.red_dst.take() {
                let v = match op {
                    RedOp::Popc => bar.popc as u64,
                    RedOp::And => bar.all as u64,
                    RedOp::Or => bar.any as u64,
                };
                let mut lanes = w.mask;
                while lanes != 0 {
                    let l = lanes.trailing_zeros() as usize;
                    lanes &= lanes - 1;
                    w.set(d, l, v);
                }
            }
        }
        self.bars[id] = IDLE;
    }
}
