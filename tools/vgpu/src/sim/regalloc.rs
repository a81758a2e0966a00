//! Register compaction at load. nvcc's PTX numbers registers almost in SSA form (a GEMM
//! declares `%f<4810>`, `%r<831>`, ...), and each got its own 32-lane slot: several
//! megabytes of register file per block, zeroed per block and far larger than any cache.
//! Here per-thread liveness on the control-flow graph gives each register the interval of
//! instructions where it holds a value, and a linear scan maps registers whose intervals
//! do not overlap onto one slot.
//!
//! Nothing a program can observe changes. Each lane is a thread that follows the graph, and
//! a slot changes hands only between registers that are never live at one instruction, so
//! a read sees the value of the register it names. A register read before any write is
//! live from the entry, so no other register used its slot before it, and the read still
//! sees the zero every slot starts with. A guarded write does not end a live range (lanes
//! whose guard is false keep the old value). Cross-lane reads (`shfl`) read lanes that
//! execute the same instruction, where the register is live for them too.

use super::program::*;

/// How an instruction touches a register.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Use,
    Def,
}

fn src(s: &mut Src, f: &mut impl FnMut(&mut u32, Role)) {
    if let Src::Reg(r) | Src::NotReg(r) = s {
        f(r, Role::Use);
    }
}

fn addr(a: &mut Addr, f: &mut impl FnMut(&mut u32, Role)) {
    if let Some(r) = &mut a.base {
        f(r, Role::Use);
    }
}

/// Every register `inst` reads or writes, as (register, written), uses first.
pub fn registers_of(inst: &Inst) -> Vec<(u32, bool)> {
    let mut inst = inst.clone();
    let mut out = Vec::new();
    visit(&mut inst, &mut |r, role| out.push((*r, role == Role::Def)));
    out
}

/// Calls `f` on every register `inst` reads (uses first) or writes.
fn visit(inst: &mut Inst, f: &mut impl FnMut(&mut u32, Role)) {
    if let Some((p, _)) = &mut inst.guard {
        f(p, Role::Use);
    }
    let def = Role::Def;
    match &mut inst.op {
        Op::Un { d, a, .. } | Op::Cvt { d, a, .. } | Op::Cvta { d, a, .. } => {
            src(a, f);
            f(d, def);
        }
        Op::Bin { d, a, b, .. }
        | Op::Set { d, a, b, .. }
        | Op::PredLogic { d, a, b, .. }
        | Op::CvtPack { d, a, b, .. } => {
            src(a, f);
            src(b, f);
            f(d, def);
        }
        Op::Ter { d, a, b, c, .. } => {
            for s in [a, b, c] {
                src(s, f);
            }
            f(d, def);
        }
        Op::Bfi {
            d, a, b, pos, len, ..
        } => {
            for s in [a, b, pos, len] {
                src(s, f);
            }
            f(d, def);
        }
        Op::Setp {
            d, dn, a, b, comb, ..
        } => {
            src(a, f);
            src(b, f);
            if let Some((_, c)) = comb {
                src(c, f);
            }
            f(d, def);
            if let Some(dn) = dn {
                f(dn, def);
            }
        }
        Op::Pack { d, parts, .. } => {
            parts.iter_mut().for_each(|s| src(s, f));
            f(d, def);
        }
        Op::Unpack { ds, a, .. } => {
            src(a, f);
            ds.iter_mut().flatten().for_each(|d| f(d, def));
        }
        Op::Ld { ds, addr: a, .. } => {
            addr(a, f);
            ds.iter_mut().flatten().for_each(|d| f(d, def));
        }
        Op::St { srcs, addr: a, .. } => {
            addr(a, f);
            srcs.iter_mut().for_each(|s| src(s, f));
        }
        Op::Atom {
            d, addr: a, b, c, ..
        } => {
            addr(a, f);
            b.iter_mut().for_each(|s| src(s, f));
            if let Some(c) = c {
                src(c, f);
            }
            d.iter_mut().for_each(|d| f(d, def));
        }
        Op::Bar {
            id, count, kind, ..
        } => {
            src(id, f);
            if let Some(c) = count {
                src(c, f);
            }
            if let BarKind::Red { d, pred, .. } = kind {
                src(pred, f);
                f(d, def);
            }
        }
        Op::BarWarp { mask } => src(mask, f),
        Op::Shfl {
            d,
            p,
            a,
            b,
            c,
            mask,
            ..
        } => {
            for s in [a, b, c, mask] {
                src(s, f);
            }
            f(d, def);
            if let Some(p) = p {
                f(p, def);
            }
        }
        Op::Vote { d, a, mask, .. } => {
            src(a, f);
            src(mask, f);
            f(d, def);
        }
        Op::Activemask { d } => f(d, def),
        Op::Mma { d, a, b, c, .. } => {
            for s in a.iter_mut().chain(b.iter_mut()).chain(c.iter_mut()) {
                src(s, f);
            }
            d.iter_mut().for_each(|d| f(d, def));
        }
        Op::Ldmatrix { d, addr: a, .. } => {
            addr(a, f);
            d.iter_mut().for_each(|d| f(d, def));
        }
        Op::CpAsync {
            dst,
            src: s,
            src_size,
            ..
        } => {
            addr(dst, f);
            addr(s, f);
            if let Some(x) = src_size {
                src(x, f);
            }
        }
        Op::Wgmma(x) => {
            match &mut x.a {
                WgA::Desc(s) => src(s, f),
                WgA::Regs(v) => v.iter_mut().for_each(|s| src(s, f)),
            }
            src(&mut x.b, f);
            src(&mut x.scale_d, f);
            // Accumulators are read too (scale-d), but `compact` pins them to slots of their
            // own, so they are visited once, as the renaming pass requires.
            x.d.iter_mut().for_each(|d| f(d, def));
        }
        Op::Bra { .. }
        | Op::Exit
        | Op::CpAsyncCommit
        | Op::CpAsyncWait { .. }
        | Op::WgmmaFence
        | Op::WgmmaCommit
        | Op::WgmmaWait { .. }
        | Op::FenceProxyAsync
        | Op::Nop => {}
        Op::Async(a) => async_op(a, f),
    }
}

fn async_op(op: &mut super::mbarrier::AsyncOp, f: &mut impl FnMut(&mut u32, Role)) {
    use super::mbarrier::AsyncOp as A;
    match op {
        A::Init { addr: a, count, .. } => {
            addr(a, f);
            src(count, f);
        }
        A::Inval { addr: a, .. } => addr(a, f),
        A::Arrive {
            d,
            addr: a,
            count,
            tx,
            ..
        } => {
            addr(a, f);
            for s in [count, tx].into_iter().flatten() {
                src(s, f);
            }
            if let Some(d) = d {
                f(d, Role::Def);
            }
        }
        A::Tx { addr: a, bytes, .. } => {
            addr(a, f);
            src(bytes, f);
        }
        A::Wait {
            d, addr: a, arg, ..
        } => {
            addr(a, f);
            src(arg, f);
            f(d, Role::Def);
        }
        A::Tensor {
            dst,
            map,
            coords,
            mbar,
        } => {
            for a in [dst, map, mbar] {
                addr(a, f);
            }
            coords.iter_mut().for_each(|s| src(s, f));
        }
        A::Bulk {
            dst,
            src: s,
            size,
            mbar,
        } => {
            for a in [dst, s, mbar] {
                addr(a, f);
            }
            src(size, f);
        }
        A::SetMaxNReg { .. } => {}
    }
}

/// A set of registers.
#[derive(Clone, PartialEq)]
struct Set(Vec<u64>);

impl Set {
    fn new(n: usize) -> Self {
        Set(vec![0; n.div_ceil(64)])
    }
    fn insert(&mut self, r: u32) {
        self.0[r as usize / 64] |= 1 << (r % 64);
    }
    fn remove(&mut self, r: u32) {
        self.0[r as usize / 64] &= !(1 << (r % 64));
    }
    fn union(&mut self, o: &Set) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn for_each(&self, mut f: impl FnMut(u32)) {
        for (k, &w) in self.0.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                f((k * 64) as u32 + w.trailing_zeros());
                w &= w - 1;
            }
        }
    }
}

/// Successors of instruction `i` (`n`: past the end, the exit).
fn successors(insts: &[Inst], i: usize) -> ([usize; 2], usize) {
    let guarded = insts[i].guard.is_some();
    match insts[i].op {
        Op::Bra { target } if guarded => ([target as usize, i + 1], 2),
        Op::Bra { target } => ([target as usize, 0], 1),
        Op::Exit if guarded => ([i + 1, 0], 1),
        Op::Exit => ([0, 0], 0),
        _ => ([i + 1, 0], 1),
    }
}

/// Renames the registers of `insts` (indices below `nregs`) onto as few slots as their
/// live intervals allow; returns the number of slots.
pub fn compact(insts: &mut [Inst], nregs: u32) -> u32 {
    let n = insts.len();
    let nr = nregs as usize;
    // Basic blocks: leaders are the entry, branch targets and what follows control flow.
    let mut leader = vec![false; n + 1];
    leader[0] = true;
    for (i, inst) in insts.iter().enumerate() {
        if let Op::Bra { target } = inst.op {
            leader[(target as usize).min(n)] = true;
        }
        if matches!(inst.op, Op::Bra { .. } | Op::Exit) {
            leader[i + 1] = true;
        }
    }
    let starts: Vec<usize> = (0..n).filter(|&i| leader[i]).collect();
    let mut block_of = vec![0usize; n + 1];
    for (b, &s) in starts.iter().enumerate() {
        let end = starts.get(b + 1).copied().unwrap_or(n);
        block_of[s..end].fill(b);
    }
    let nb = starts.len();
    let end_of = |b: usize| starts.get(b + 1).copied().unwrap_or(n);
    // Per block: registers read before written (gen) and written unguarded (kill).
    let mut gen = vec![Set::new(nr); nb];
    let mut kill = vec![Set::new(nr); nb];
    for b in 0..nb {
        for i in (starts[b]..end_of(b)).rev() {
            let guarded = insts[i].guard.is_some();
            let (g, k) = (&mut gen[b], &mut kill[b]);
            let mut uses = Vec::new();
            visit(&mut insts[i], &mut |r, role| match role {
                Role::Def if !guarded => {
                    g.remove(*r);
                    k.insert(*r);
                }
                Role::Def => {}
                Role::Use => uses.push(*r),
            });
            for r in uses {
                g.insert(r);
            }
        }
    }
    // Registers live after block `b`: live into any successor of its last instruction.
    let succ: Vec<Vec<usize>> = (0..nb)
        .map(|b| {
            let (s, k) = successors(insts, end_of(b) - 1);
            s[..k]
                .iter()
                .filter(|&&t| t < n)
                .map(|&t| block_of[t])
                .collect()
        })
        .collect();
    let live_out = |live_in: &[Set], b: usize| {
        let mut out = Set::new(nr);
        for &t in &succ[b] {
            out.union(&live_in[t]);
        }
        out
    };
    // Backward dataflow to a fixed point: live_in = gen | (live_out - kill).
    let mut live_in = vec![Set::new(nr); nb];
    let mut changed = true;
    while changed {
        changed = false;
        for b in (0..nb).rev() {
            let mut out = live_out(&live_in, b);
            for (o, (kw, gw)) in out.0.iter_mut().zip(kill[b].0.iter().zip(&gen[b].0)) {
                *o = (*o & !kw) | gw;
            }
            if out != live_in[b] {
                live_in[b] = out;
                changed = true;
            }
        }
    }
    // Intervals: every instruction where a register is live on entry or written.
    const NONE: (usize, usize) = (usize::MAX, 0);
    let mut span = vec![NONE; nr];
    fn touch(span: &mut [(usize, usize)], r: u32, i: usize) {
        let s = &mut span[r as usize];
        *s = (s.0.min(i), s.1.max(i));
    }
    for (b, &start) in starts.iter().enumerate() {
        let mut live = live_out(&live_in, b);
        for i in (start..end_of(b)).rev() {
            // Live after i: it holds its value at i as well.
            live.for_each(|r| touch(&mut span, r, i));
            let guarded = insts[i].guard.is_some();
            let mut uses = Vec::new();
            visit(&mut insts[i], &mut |r, role| match role {
                Role::Def => {
                    touch(&mut span, *r, i);
                    if !guarded {
                        live.remove(*r);
                    }
                }
                Role::Use => uses.push(*r),
            });
            for r in uses {
                touch(&mut span, r, i);
                live.insert(r);
            }
        }
    }
    // Registers live into the entry hold their initial zero from the start.
    if let Some(entry) = live_in.first() {
        entry.for_each(|r| touch(&mut span, r, 0));
    }
    // A wgmma accumulator is written when its `wgmma.wait_group` completes it, and its A
    // registers are read until then, which the instruction's interval does not show; the
    // wgmma checks also name registers by slot. They keep slots of their own.
    for inst in insts.iter() {
        if let Op::Wgmma(x) = &inst.op {
            let a = match &x.a {
                WgA::Regs(v) => v.as_slice(),
                WgA::Desc(_) => &[],
            };
            let a = a.iter().filter_map(|s| match *s {
                Src::Reg(r) => Some(r),
                _ => None,
            });
            for r in x.d.iter().copied().chain(a) {
                span[r as usize] = (0, n);
            }
        }
    }
    // Linear scan over intervals in order of start.
    let mut order: Vec<u32> = (0..nregs).filter(|&r| span[r as usize] != NONE).collect();
    order.sort_by_key(|&r| span[r as usize]);
    let mut slot = vec![u32::MAX; nr];
    let mut free: Vec<u32> = Vec::new();
    // Active intervals as (end, slot), ended ones returned to `free`.
    let mut active: std::collections::BinaryHeap<std::cmp::Reverse<(usize, u32)>> =
        Default::default();
    let mut slots = 0u32;
    for r in order {
        let (start, end) = span[r as usize];
        while let Some(&std::cmp::Reverse((e, s))) = active.peek() {
            if e >= start {
                break;
            }
            active.pop();
            free.push(s);
        }
        let s = free.pop().unwrap_or_else(|| {
            slots += 1;
            slots - 1
        });
        slot[r as usize] = s;
        active.push(std::cmp::Reverse((end, s)));
    }
    for inst in insts.iter_mut() {
        visit(inst, &mut |r, _| *r = slot[*r as usize]);
    }
    slots
}
