//! Decoding of `mbarrier.*`, `cp.async.bulk[.tensor]` (global to shared, completing on an
//! mbarrier) and `setmaxnreg`, into [`AsyncOp`]s. Forms vgpu does not model (multicast,
//! im2col, `noComplete`, bulk stores) fail the load with their name.

use super::super::decode_mods::Mods;
use super::super::lower::{err, LResult, SymVal};
use super::super::mbarrier::AsyncOp;
use super::super::program::*;
use super::D;
use crate::isa::Ty;
use crate::ptx::{AddrBase, Instr, Operand};

fn nops(i: &Instr, lo: usize, hi: usize) -> LResult<()> {
    let n = i.operands.len();
    if n < lo || n > hi {
        return err(
            i.line,
            format!("`{}` takes {lo}..={hi} operands, got {n}", i.opcode),
        );
    }
    Ok(())
}

/// The state space of an mbarrier operand: this CTA's shared memory (a launch without
/// clusters is a cluster of one CTA) or a generic address.
fn bar_space(m: &mut Mods) -> MemSpace {
    match m.any(&["shared", "shared::cta", "shared::cluster"]) {
        Some(_) => MemSpace::Shared,
        None => MemSpace::Generic,
    }
}

pub(super) fn mbarrier(d: &mut D, m: &mut Mods, i: &Instr) -> LResult<AsyncOp> {
    let line = i.line;
    let o = &i.operands;
    m.hints(&["release", "acquire", "relaxed", "cta", "cluster"]);
    let space = bar_space(m);
    if !m.has("b64") {
        return err(line, format!("`{}`: mbarrier objects are .b64", m.what));
    }
    let op = match m.any(&[
        "init",
        "inval",
        "arrive",
        "arrive_drop",
        "expect_tx",
        "complete_tx",
        "test_wait",
        "try_wait",
    ]) {
        Some("init") => {
            nops(i, 2, 2)?;
            AsyncOp::Init {
                space,
                addr: d.addr(&o[0])?,
                count: d.src(&o[1], Ty::U32)?,
            }
        }
        Some("inval") => {
            nops(i, 1, 1)?;
            AsyncOp::Inval {
                space,
                addr: d.addr(&o[0])?,
            }
        }
        Some(a @ ("arrive" | "arrive_drop")) => {
            if m.has("noComplete") {
                return err(line, "mbarrier.arrive.noComplete is not supported by vgpu");
            }
            let expect = m.has("expect_tx");
            nops(i, 2, 3)?;
            if expect && o.len() != 3 {
                return err(
                    line,
                    "mbarrier.arrive.expect_tx takes state, [addr], txCount",
                );
            }
            let third = match o.get(2) {
                Some(x) => Some(d.src(x, Ty::U32)?),
                None => None,
            };
            AsyncOp::Arrive {
                space,
                d: d.opt_dst(&o[0])?,
                addr: d.addr(&o[1])?,
                count: if expect { None } else { third },
                tx: if expect { third } else { None },
                drop: a == "arrive_drop",
            }
        }
        Some(t @ ("expect_tx" | "complete_tx")) => {
            nops(i, 2, 2)?;
            AsyncOp::Tx {
                space,
                addr: d.addr(&o[0])?,
                bytes: d.src(&o[1], Ty::U32)?,
                complete: t == "complete_tx",
            }
        }
        Some(w) => {
            let parity = m.has("parity");
            // try_wait's optional suspend-time hint only bounds how long the hardware waits.
            nops(i, 3, if w == "try_wait" { 4 } else { 3 })?;
            AsyncOp::Wait {
                space,
                d: d.dst(&o[0])?,
                addr: d.addr(&o[1])?,
                arg: d.src(&o[2], if parity { Ty::U32 } else { Ty::B64 })?,
                parity,
            }
        }
        None => return err(line, format!("`{}` is not supported by vgpu", m.what)),
    };
    Ok(op)
}

/// `cp.async.bulk...` (after `cp.async`).
pub(super) fn bulk(d: &mut D, m: &mut Mods, i: &Instr) -> LResult<AsyncOp> {
    let line = i.line;
    let o = &i.operands;
    m.has("bulk");
    let tensor = m.has("tensor");
    let dims = m.any(&["1d", "2d", "3d", "4d", "5d"]);
    // `.shared::cta` destinations are PTX ISA 8.6's spelling of the same copy. The
    // destination space comes first.
    let pos = |x: &str| m.list.iter().position(|y| y == x);
    let dst = pos("shared::cluster").or(pos("shared::cta"));
    let to_shared = matches!((dst, pos("global")), (Some(d), Some(g)) if d < g);
    m.any(&["shared::cluster", "shared::cta"]);
    m.has("global");
    if !to_shared || !m.has("mbarrier::complete_tx::bytes") {
        return err(
            line,
            format!(
                "`{}`: vgpu supports bulk copies from global to shared memory completing on an \
                 mbarrier (mbarrier::complete_tx::bytes)",
                m.what
            ),
        );
    }
    if m.list
        .iter()
        .any(|x| x.starts_with("multicast") || x == "im2col")
    {
        return err(
            line,
            format!("`{}`: multicast and im2col are not supported", m.what),
        );
    }
    // A cache policy operand goes with `.L2::cache_hint`; it changes nothing observable.
    let hint = m.has("L2::cache_hint") as usize;
    if tensor {
        m.has("tile");
        let Some(dims) = dims else {
            return err(line, "cp.async.bulk.tensor without .1d .. .5d");
        };
        nops(i, 3 + hint, 3 + hint)?;
        let Operand::Vec(parts) = &o[1] else {
            return err(
                line,
                "cp.async.bulk.tensor needs a [tensorMap, {coordinates}] operand",
            );
        };
        let (Some(map), Some(Operand::Vec(cs))) = (parts.first(), parts.get(1)) else {
            return err(
                line,
                "cp.async.bulk.tensor needs a [tensorMap, {coordinates}] operand",
            );
        };
        let n = (dims.as_bytes()[0] - b'0') as usize;
        if cs.len() != n {
            return err(
                line,
                format!("cp.async.bulk.tensor.{dims} with {} coordinates", cs.len()),
            );
        }
        let coords = cs
            .iter()
            .map(|c| d.src(c, Ty::S32))
            .collect::<LResult<Vec<_>>>()?;
        let mut map_addr = d.addr(map)?;
        if let Operand::Addr {
            base: AddrBase::Sym(s),
            ..
        } = map
        {
            // A parameter named directly is a .param address: make it generic.
            if let Ok(SymVal::Param(_)) = d.cx.sym(s, line) {
                map_addr.offset = map_addr.offset.wrapping_add(PARAM_WINDOW as i64);
            }
        }
        Ok(AsyncOp::Tensor {
            dst: d.addr(&o[0])?,
            map: map_addr,
            coords,
            mbar: d.addr(&o[2])?,
        })
    } else {
        nops(i, 4 + hint, 4 + hint)?;
        Ok(AsyncOp::Bulk {
            dst: d.addr(&o[0])?,
            src: d.addr(&o[1])?,
            size: d.src(&o[2], Ty::U32)?,
            mbar: d.addr(&o[3])?,
        })
    }
}

/// `setmaxnreg.{inc,dec}.sync.aligned.u32 n`: n a multiple of 8 in 24..=256.
pub(super) fn setmaxnreg(d: &mut D, m: &mut Mods, i: &Instr) -> LResult<AsyncOp> {
    let line = i.line;
    let inc = match m.any(&["inc", "dec"]) {
        Some(d) => d == "inc",
        None => return err(line, "setmaxnreg needs .inc or .dec"),
    };
    if !m.has("sync") || !m.has("aligned") {
        return err(line, "setmaxnreg needs .inc or .dec and .sync.aligned");
    }
    if m.ty()? != Ty::U32 {
        return err(line, "setmaxnreg takes a .u32 count");
    }
    nops(i, 1, 1)?;
    match d.src(&i.operands[0], Ty::U32)? {
        Src::Imm(n) if (24..=256).contains(&n) && n % 8 == 0 => {
            Ok(AsyncOp::SetMaxNReg { inc, n: n as u32 })
        }
        Src::Imm(n) => err(
            line,
            format!("setmaxnreg count {n} is not a multiple of 8 in 24..=256"),
        ),
        _ => err(line, "setmaxnreg needs an immediate register count"),
    }
}
