//! Executes one decoded instruction for the lanes in `exec`.

use super::alu::{self, sext, src};
use super::api::{Fault, FaultKind};
use super::check::{bank_conflicts, LaneAddrs, StoreKind, SHARED_KEY};
use super::exec::{fault, first_lane, BlockState, Copy16, Warp, FULL};
use super::launch::Env;
use super::memory::{self, resolve, Loc};
use super::program::*;
use super::vector;
use crate::isa::{self, Ty};

/// Iterates over the set lanes of a mask.
#[inline]
fn lanes(m: u32) -> impl Iterator<Item = usize> {
    let mut m = m;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(l)
        }
    })
}

fn ty_bytes(ty: Ty) -> u32 {
    super::decode::ty_bits(ty).div_ceil(8)
}

fn addr_of(w: &Warp, a: &Addr, lane: usize) -> u64 {
    let base = a.base.map_or(0, |r| w.r(r, lane));
    base.wrapping_add(a.offset as u64)
}

pub fn execute(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    inst: &Inst,
    exec: u32,
) -> Result<(), Fault> {
    let f = |b: &BlockState, w: &Warp, lane: usize, kind: FaultKind, msg: String| {
        fault(env, b, w, lane, kind, msg)
    };
    let ill = |b: &BlockState, w: &Warp, lane: usize, msg: String| {
        fault(env, b, w, lane, FaultKind::IllegalInstruction, msg)
    };
    match &inst.op {
        Op::Un { op, ty, m, d, a } => {
            if let Some(f) = vector::fast_un(*op, *ty, m) {
                vector::run1(w, b, exec, *d, a, f);
                return Ok(());
            }
            for l in lanes(exec) {
                let v = alu::un(*op, *ty, m, src(w, b, a, l)).map_err(|e| ill(b, w, l, e))?;
                w.set(*d, l, v);
            }
        }
        Op::Bin {
            op,
            ty,
            m,
            d,
            a,
            b: bb,
        } => {
            if let Some(f) = vector::fast_bin(*op, *ty, m) {
                vector::run2(w, b, exec, *d, a, bb, f);
                return Ok(());
            }
            for l in lanes(exec) {
                let v = alu::bin(*op, *ty, m, src(w, b, a, l), src(w, b, bb, l))
                    .map_err(|e| ill(b, w, l, e))?;
                w.set(*d, l, v);
            }
        }
        Op::Ter {
            op,
            ty,
            m,
            d,
            a,
            b: bb,
            c,
        } => {
            if let Some(f) = vector::fast_ter(*op, *ty, m) {
                vector::run3(w, b, exec, *d, a, bb, c, f);
                return Ok(());
            }
            for l in lanes(exec) {
                let v = alu::ter(
                    *op,
                    *ty,
                    m,
                    src(w, b, a, l),
                    src(w, b, bb, l),
                    src(w, b, c, l),
                )
                .map_err(|e| ill(b, w, l, e))?;
                w.set(*d, l, v);
            }
        }
        Op::Bfi {
            ty,
            d,
            a,
            b: bb,
            pos,
            len,
        } => {
            for l in lanes(exec) {
                let v = alu::bfi(
                    *ty,
                    src(w, b, a, l),
                    src(w, b, bb, l),
                    src(w, b, pos, l),
                    src(w, b, len, l),
                );
                w.set(*d, l, v);
            }
        }
        Op::Setp {
            cmp,
            ty,
            ftz,
            d,
            dn,
            a,
            b: bb,
            comb,
        } => {
            if comb.is_none() {
                let (mut ta, mut tb) = ([0; 32], [0; 32]);
                let x = vector::operand(w, b, a, &mut ta);
                let y = vector::operand(w, b, bb, &mut tb);
                if let Some(t) = vector::fast_setp(*cmp, *ty, *ftz, x, y) {
                    let p: vector::V = std::array::from_fn(|l| (t >> l & 1) as u64);
                    vector::scatter(w, *d, exec, &p);
                    if let Some(dn) = dn {
                        let q: vector::V = std::array::from_fn(|l| (!t >> l & 1) as u64);
                        vector::scatter(w, *dn, exec, &q);
                    }
                    return Ok(());
                }
            }
            for l in lanes(exec) {
                let t = alu::setp(*cmp, *ty, *ftz, src(w, b, a, l), src(w, b, bb, l))
                    .map_err(|e| ill(b, w, l, e))?;
                let (p, q) = match comb {
                    None => (t, !t),
                    Some((op, c)) => {
                        let c = src(w, b, c, l) & 1 != 0;
                        (bool_op(*op, t, c), bool_op(*op, !t, c))
                    }
                };
                w.set(*d, l, p as u64);
                if let Some(dn) = dn {
                    w.set(*dn, l, q as u64);
                }
            }
        }
        Op::Set {
            cmp,
            dty,
            ty,
            d,
            a,
            b: bb,
        } => {
            for l in lanes(exec) {
                let t = alu::setp(*cmp, *ty, false, src(w, b, a, l), src(w, b, bb, l))
                    .map_err(|e| ill(b, w, l, e))?;
                let v = match (*dty, t) {
                    (_, false) => 0,
                    (Ty::F32, true) => 1f32.to_bits() as u64,
                    (dt, true) => alu::mask(super::decode::ty_bits(dt)),
                };
                w.set(*d, l, v);
            }
        }
        Op::PredLogic { op, d, a, b: bb } => {
            for l in lanes(exec) {
                let v = bool_op(*op, src(w, b, a, l) & 1 != 0, src(w, b, bb, l) & 1 != 0);
                w.set(*d, l, v as u64);
            }
        }
        Op::Cvt {
            dty,
            sty,
            frnd,
            irnd,
            ftz,
            sat,
            d,
            a,
        } => {
            for l in lanes(exec) {
                let v = alu::cvt(*dty, *sty, *frnd, *irnd, *ftz, *sat, src(w, b, a, l));
                w.set(*d, l, v);
            }
        }
        Op::CvtPack {
            bf16,
            rnd,
            relu,
            sat,
            d,
            a,
            b: bb,
        } => {
            for l in lanes(exec) {
                let (x, y) = (
                    f32::from_bits(src(w, b, a, l) as u32),
                    f32::from_bits(src(w, b, bb, l) as u32),
                );
                let v = if *bf16 {
                    isa::cvt::cvt_pack_bf16x2(x, y, *rnd, *relu, *sat)
                } else {
                    isa::cvt::cvt_pack_f16x2(x, y, *rnd, *relu, *sat)
                };
                w.set(*d, l, v as u64);
            }
        }
        Op::Cvta {
            to_generic,
            space,
            wide,
            d,
            a,
        } => {
            let window = match space {
                MemSpace::Shared => SHARED_WINDOW,
                MemSpace::Local => LOCAL_WINDOW,
                MemSpace::Param => PARAM_WINDOW,
                _ => 0,
            };
            for l in lanes(exec) {
                let x = src(w, b, a, l);
                let v = if *to_generic {
                    if window == 0 {
                        x
                    } else {
                        window.wrapping_add(x & 0xffff_ffff)
                    }
                } else if window == 0 {
                    x
                } else {
                    x.wrapping_sub(window)
                };
                w.set(*d, l, if *wide { v } else { v & 0xffff_ffff });
            }
        }
        Op::Pack { bits, d, parts } => {
            for l in lanes(exec) {
                let mut v = 0u64;
                for (k, p) in parts.iter().enumerate() {
                    v |= (src(w, b, p, l) & alu::mask(*bits)) << (*bits as usize * k);
                }
                w.set(*d, l, v);
            }
        }
        Op::Unpack { bits, ds, a } => {
            for l in lanes(exec) {
                let v = src(w, b, a, l);
                for (k, dd) in ds.iter().enumerate() {
                    if let Some(dd) = dd {
                        w.set(*dd, l, (v >> (*bits as usize * k)) & alu::mask(*bits));
                    }
                }
            }
        }
        Op::Ld {
            space,
            ty,
            ds,
            addr,
            strong,
        } => {
            let eb = ty_bytes(*ty);
            let size = eb * ds.len() as u32;
            let mut shared_addrs = LaneAddrs::default();
            for l in lanes(exec) {
                let a = addr_of(w, addr, l);
                let loc = resolve(env, b, w, l, *space, a, size, false)
                    .map_err(|(k, m)| f(b, w, l, k, m))?;
                let kind = StoreKind {
                    strong: *strong,
                    same_value: false,
                };
                check_access(env, b, w, l, loc, size, None, kind, &mut shared_addrs)?;
                let mut buf = [0u8; 32];
                memory::read(env, b, loc, &mut buf[..size as usize]);
                for (k, dd) in ds.iter().enumerate() {
                    let mut e = [0u8; 8];
                    e[..eb as usize].copy_from_slice(&buf[k * eb as usize..(k + 1) * eb as usize]);
                    let raw = u64::from_le_bytes(e);
                    let v = if ty.is_signed() && eb < 8 {
                        sext(raw, eb * 8) as u64
                    } else {
                        raw
                    };
                    if let Some(dd) = dd {
                        w.set(*dd, l, v);
                    }
                }
            }
            account_shared(b, shared_addrs.as_slice(), size);
        }
        Op::St {
            space,
            ty,
            srcs,
            addr,
            strong,
        } => {
            let eb = ty_bytes(*ty);
            let size = eb * srcs.len() as u32;
            let mut shared_addrs = LaneAddrs::default();
            for l in lanes(exec) {
                let a = addr_of(w, addr, l);
                let loc = resolve(env, b, w, l, *space, a, size, true)
                    .map_err(|(k, m)| f(b, w, l, k, m))?;
                let mut buf = [0u8; 32];
                for (k, s) in srcs.iter().enumerate() {
                    let v = src(w, b, s, l);
                    buf[k * eb as usize..(k + 1) * eb as usize]
                        .copy_from_slice(&v.to_le_bytes()[..eb as usize]);
                }
                let kind = StoreKind {
                    strong: *strong,
                    same_value: false,
                };
                let data = &buf[..size as usize];
                check_access(env, b, w, l, loc, size, Some(data), kind, &mut shared_addrs)?;
                memory::write(b, loc, data);
            }
            account_shared(b, shared_addrs.as_slice(), size);
        }
        Op::Atom {
            space,
            op,
            ty,
            noftz,
            d,
            addr,
            b: bb,
            c,
        } => {
            let (op, ty) = (*op, *ty);
            let eb = ty_bytes(ty);
            let size = eb * bb.len() as u32;
            for l in lanes(exec) {
                let a = addr_of(w, addr, l);
                let loc = memory::resolve_atomic(env, b, w, l, *space, a, size)
                    .map_err(|(k, m)| f(b, w, l, k, m))?;
                // Generic addresses are only known here: the ISA allows scalar atomics on
                // global and shared memory and vector ones on global memory only.
                let flush =
                    match loc {
                        Loc::Global(_) => ty == Ty::F32 && op == AtomOp::Add && !noftz,
                        Loc::Shared(_) if bb.len() == 1 => false,
                        _ => {
                            let kind = if bb.len() == 1 { "" } else { "vector " };
                            return Err(f(
                                b,
                                w,
                                l,
                                FaultKind::IllegalAddress,
                                format!(
                                "{kind}atomic on generic address {a:#x}, which is not {} memory",
                                if bb.len() == 1 { "global or shared" } else { "global" }
                            ),
                            ));
                        }
                    };
                let y = c.map_or(0, |c| src(w, b, &c, l));
                // Each element is its own atomic, as the ISA guarantees no more.
                for (k, s) in bb.iter().enumerate() {
                    let x = src(w, b, s, l);
                    let at = memory::offset(loc, k as u32 * eb);
                    let old = memory::atomic(b, at, eb, &|old| {
                        isa::atom::apply(op, ty, old, x, y, flush)
                    });
                    if let Some(&r) = d.get(k) {
                        w.set(r, l, old);
                    }
                }
                if let Loc::Global(_) = loc {
                    b.counters.global_read += size as u64;
                    b.counters.global_written += size as u64;
                } else if let Loc::Shared(o) = loc {
                    let who = b.who(w, l);
                    b.shadow
                        .atomic(o, size as usize, who)
                        .map_err(|e| fault(env, b, w, l, FaultKind::LaunchFailed, e))?;
                }
                if let Some(key) = sync_key(loc) {
                    b.shadow.acquire_at(key, w.id);
                    b.shadow.release_at(key, w.id);
                }
            }
        }
        Op::BarWarp { mask } => {
            for l in lanes(exec) {
                let m = src(w, b, mask, l) as u32;
                require_converged(env, b, w, exec, m, "bar.warp.sync")?;
            }
        }
        Op::Shfl {
            mode,
            d,
            p,
            a,
            b: bb,
            c,
            mask,
        } => {
            let mut vals = [0u64; 32];
            for l in lanes(exec) {
                vals[l] = src(w, b, a, l);
            }
            for l in lanes(exec) {
                let m = src(w, b, mask, l) as u32;
                if m & (1 << l) == 0 {
                    return Err(f(
                        b,
                        w,
                        l,
                        FaultKind::LaunchFailed,
                        format!("shfl.sync by lane {l} which is not in its member mask {m:#010x}"),
                    ));
                }
                require_converged(env, b, w, exec, m, "shfl.sync")?;
                let (sl, inr) = isa::warp::shfl_source(
                    *mode,
                    l as u32,
                    src(w, b, bb, l) as u32,
                    src(w, b, c, l) as u32,
                );
                let sl = sl as usize;
                if inr && exec & (1 << sl) == 0 {
                    return Err(f(b, w, l, FaultKind::LaunchFailed, format!("shfl.sync reads lane {sl}, which is not executing it (undefined result)")));
                }
                let v = if inr { vals[sl] } else { vals[l] };
                w.set(*d, l, v & 0xffff_ffff);
                if let Some(p) = p {
                    w.set(*p, l, inr as u64);
                }
            }
        }
        Op::Vote { mode, d, a, mask } => {
            let mut preds = 0u32;
            for l in lanes(exec) {
                require_converged(env, b, w, exec, src(w, b, mask, l) as u32, "vote.sync")?;
                if src(w, b, a, l) & 1 != 0 {
                    preds |= 1 << l;
                }
            }
            let r = isa::warp::warp_vote(*mode, exec, preds);
            for l in lanes(exec) {
                let v = match mode {
                    VoteMode::Ballot => r as u64,
                    _ => (r & 1) as u64,
                };
                w.set(*d, l, v);
            }
        }
        Op::Activemask { d } => {
            for l in lanes(exec) {
                w.set(*d, l, exec as u64);
            }
        }
        Op::Mma {
            kind,
            d,
            a,
            b: bb,
            c,
        } => {
            require_full(env, b, w, exec, "mma.sync.aligned")?;
            super::tensor::mma(w, b, *kind, d, a, bb, c);
        }
        Op::Ldmatrix {
            num,
            trans,
            d,
            addr,
        } => {
            require_full(env, b, w, exec, "ldmatrix.sync.aligned")?;
            super::tensor::ldmatrix(env, b, w, *num, *trans, d, addr)?;
        }
        Op::CpAsync {
            dst,
            src: s,
            size,
            src_size,
        } => {
            let mut shared_addrs = LaneAddrs::default();
            for l in lanes(exec) {
                let da = addr_of(w, dst, l);
                let sa = addr_of(w, s, l);
                let n = src_size.map_or(*size as u64, |x| src(w, b, &x, l) & 0xffff_ffff);
                if n > *size as u64 {
                    return Err(f(
                        b,
                        w,
                        l,
                        FaultKind::IllegalInstruction,
                        format!("cp.async src-size {n} exceeds cp-size {size}"),
                    ));
                }
                let dloc = resolve(
                    env,
                    b,
                    w,
                    l,
                    MemSpace::Shared,
                    da & 0xffff_ffff,
                    *size,
                    true,
                )
                .map_err(|(k, m)| f(b, w, l, k, m))?;
                let mut data = [0u8; 16];
                if n > 0 {
                    // Alignment is that of the whole copy; the bytes read are src-size.
                    if !sa.is_multiple_of(*size as u64) {
                        return Err(f(
                            b,
                            w,
                            l,
                            FaultKind::MisalignedAddress,
                            format!(
                                "misaligned cp.async global source {sa:#x} for a {size}-byte copy"
                            ),
                        ));
                    }
                    let sloc = resolve(env, b, w, l, MemSpace::Global, sa, n as u32, false)
                        .map_err(|(k, m)| f(b, w, l, k, m))?;
                    memory::read(env, b, sloc, &mut data[..n as usize]);
                    b.counters.global_read += n;
                }
                let Loc::Shared(off) = dloc else {
                    unreachable!("resolved in shared space")
                };
                shared_addrs.push(l as u32, off as u32);
                b.shadow.set_pending(off, *size as usize, true);
                w.cp[l].open.push(Copy16 {
                    dst: off as u32,
                    size: *size,
                    data,
                });
            }
            account_shared(b, shared_addrs.as_slice(), *size);
        }
        Op::CpAsyncCommit => {
            for l in lanes(exec) {
                let g = std::mem::take(&mut w.cp[l].open);
                w.cp[l].committed.push_back(g);
            }
        }
        Op::CpAsyncWait { n, all } => {
            for l in lanes(exec) {
                if *all {
                    let g = std::mem::take(&mut w.cp[l].open);
                    w.cp[l].committed.push_back(g);
                }
                while w.cp[l].committed.len() > *n as usize {
                    let g = w.cp[l].committed.pop_front().unwrap_or_default();
                    for c in g {
                        let off = c.dst as usize;
                        let sz = c.size as usize;
                        b.shadow.set_pending(off, sz, false);
                        let who = b.who(w, l);
                        b.shadow
                            .write(off, sz, who, StoreKind::default())
                            .map_err(|e| {
                                f(
                                    b,
                                    w,
                                    l,
                                    FaultKind::LaunchFailed,
                                    format!("cp.async completion: {e}"),
                                )
                            })?;
                        b.shared[off..off + sz].copy_from_slice(&c.data[..sz]);
                    }
                }
            }
        }
        Op::WgmmaFence | Op::WgmmaCommit | Op::WgmmaWait { .. } | Op::FenceProxyAsync => {
            super::wgmma::per_warp(env, b, w, &inst.op, exec)?;
        }
        Op::Nop => {}
        Op::Bra { .. } | Op::Exit | Op::Bar { .. } | Op::Async(_) | Op::Wgmma(_) => {
            unreachable!("control flow is handled by the warp loop")
        }
    }
    Ok(())
}

fn bool_op(op: BoolOp, a: bool, b: bool) -> bool {
    match op {
        BoolOp::And => a & b,
        BoolOp::Or => a | b,
        BoolOp::Xor => a ^ b,
    }
}

/// Shadow checks and traffic counters for a read or a write (`data`: the bytes stored).
/// Strong accesses also release (store) or acquire (load) at their word.
#[allow(clippy::too_many_arguments)]
fn check_access(
    env: &Env,
    b: &mut BlockState,
    w: &Warp,
    l: usize,
    loc: Loc,
    size: u32,
    data: Option<&[u8]>,
    mut kind: StoreKind,
    shared_addrs: &mut LaneAddrs,
) -> Result<(), Fault> {
    match loc {
        Loc::Global(_) if data.is_some() => b.counters.global_written += size as u64,
        Loc::Global(_) => b.counters.global_read += size as u64,
        Loc::Shared(o) => {
            let who = b.who(w, l);
            let r = match data {
                Some(d) => {
                    kind.same_value = b.shared[o..o + d.len()] == *d;
                    b.shadow.write(o, size as usize, who, kind)
                }
                None => b.shadow.read(o, size as usize, who, kind.strong),
            };
            r.map_err(|e| fault(env, b, w, l, FaultKind::LaunchFailed, e))?;
            shared_addrs.push(l as u32, o as u32);
        }
        _ => {}
    }
    if kind.strong {
        if let Some(key) = sync_key(loc) {
            if data.is_some() {
                b.shadow.release_at(key, w.id);
            } else {
                b.shadow.acquire_at(key, w.id);
            }
        }
    }
    Ok(())
}

/// The word a strong access or atomic synchronises through.
fn sync_key(loc: Loc) -> Option<u64> {
    match loc {
        Loc::Global(a) => Some(a & !3),
        Loc::Shared(o) => Some(SHARED_KEY | (o as u64 & !3)),
        _ => None,
    }
}

pub fn account_shared(b: &mut BlockState, addrs: &[(u32, u32)], bytes_per_lane: u32) {
    if addrs.is_empty() {
        return;
    }
    b.counters.shared_accesses += 1;
    // One wavefront per 128-byte phase, as `bank_conflicts` splits them.
    let lanes_per_phase = (128 / bytes_per_lane.clamp(4, 16)) as usize;
    b.counters.shared_wavefronts += addrs.len().div_ceil(lanes_per_phase) as u64;
    b.counters.bank_conflicts += bank_conflicts(addrs, bytes_per_lane);
}

/// `*.sync` with member mask `m`: every live lane of `m` must be executing this instruction.
fn require_converged(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    exec: u32,
    m: u32,
    what: &str,
) -> Result<(), Fault> {
    let missing = m & w.live & !exec;
    if missing != 0 {
        return Err(fault(
            env,
            b,
            w,
            first_lane(exec),
            FaultKind::LaunchFailed,
            format!("{what} with member mask {m:#010x}: lanes {missing:#010x} are live but diverged (synccheck)"),
        ));
    }
    Ok(())
}

/// `.aligned` warp-wide instructions need all 32 lanes, converged.
fn require_full(env: &Env, b: &BlockState, w: &Warp, exec: u32, what: &str) -> Result<(), Fault> {
    if exec != FULL {
        return Err(fault(
            env,
            b,
            w,
            first_lane(exec),
            FaultKind::LaunchFailed,
            format!(
                "{what} executed by lanes {exec:#010x} only; it needs the whole converged warp"
            ),
        ));
    }
    Ok(())
}
