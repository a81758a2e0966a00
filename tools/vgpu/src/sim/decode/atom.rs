//! Decoding of `atom` and `red`: every form the PTX ISA lists loads, and every other
//! combination fails the load with the reason, so that a kernel vgpu accepts is one ptxas
//! accepts and computes what the chip computes (see [`crate::isa::atom`]).

use super::super::decode_mods::Mods;
use super::super::lower::{err, LResult};
use super::super::program::*;
use super::D;
use crate::isa::atom::{check, AtomOp};
use crate::isa::Ty;
use crate::ptx::{Instr, Operand};

pub(super) fn decode(d: &mut D, m: &mut Mods, i: &Instr) -> LResult<(Op, Ty)> {
    let line = i.line;
    let red = i.opcode == "red";
    let what = m.what.clone();
    // Ordering (.sem) and scope are accepted as the ISA spells them; every atomic is a
    // synchronising access whatever they say, and values do not depend on them.
    let sems: &[&str] = if red {
        &["relaxed", "release"]
    } else {
        &["relaxed", "acquire", "release", "acq_rel"]
    };
    m.hints(sems);
    m.hints(&["cta", "cluster", "gpu", "sys"]);
    if red && m.list.iter().any(|s| s == "acquire" || s == "acq_rel") {
        return err(
            line,
            format!("`{what}`: red takes only .relaxed or .release"),
        );
    }
    // A launch without clusters is a cluster of one CTA, so `.shared::cluster` addresses
    // are this CTA's shared memory.
    let space = match m.any(&[
        "global",
        "shared",
        "shared::cta",
        "shared::cluster",
        "local",
        "param",
        "const",
    ]) {
        None => MemSpace::Generic,
        Some("global") => MemSpace::Global,
        Some("shared" | "shared::cta" | "shared::cluster") => MemSpace::Shared,
        Some(s) => {
            return err(
                line,
                format!("`{what}`: atomics work on .global or .shared memory, not .{s}"),
            )
        }
    };
    let cache_hint = m.has("L2::cache_hint");
    if cache_hint && space == MemSpace::Shared {
        return err(
            line,
            format!("`{what}`: .L2::cache_hint needs .global memory"),
        );
    }
    if m.list.iter().any(|s| s == "b128") {
        return err(
            line,
            format!("`{what}`: 128-bit atomics are not supported by vgpu (no .b128 registers)"),
        );
    }
    let op = match m.any(&[
        "add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas",
    ]) {
        Some("add") => AtomOp::Add,
        Some("min") => AtomOp::Min,
        Some("max") => AtomOp::Max,
        Some("inc") => AtomOp::Inc,
        Some("dec") => AtomOp::Dec,
        Some("and") => AtomOp::And,
        Some("or") => AtomOp::Or,
        Some("xor") => AtomOp::Xor,
        Some("exch") => AtomOp::Exch,
        Some("cas") => AtomOp::Cas,
        _ => return err(line, format!("`{what}` has no operation")),
    };
    let noftz = m.has("noftz");
    let vec = match m.any(&["v2", "v4", "v8"]) {
        Some("v2") => 2,
        Some("v4") => 4,
        Some("v8") => 8,
        _ => 1,
    };
    let ty = match m.types()[..] {
        [t] => t,
        [] => return err(line, format!("`{what}` has no type")),
        _ => return err(line, format!("`{what}` has more than one type")),
    };
    if let Err(e) = check(red, op, ty, vec, noftz) {
        return err(line, format!("`{what}`: {e}"));
    }
    if vec > 1 && space == MemSpace::Shared {
        return err(
            line,
            format!("`{what}`: vector atomics work on .global memory only"),
        );
    }

    let o = &i.operands;
    let base = usize::from(!red);
    let want = base + 2 + usize::from(op == AtomOp::Cas);
    // The optional cache policy operand goes with .L2::cache_hint; it is only a hint.
    if o.len() != want && !(cache_hint && o.len() == want + 1) {
        return err(
            line,
            format!("`{what}` expects {want} operands, got {}", o.len()),
        );
    }
    if o.len() == want + 1 {
        d.src(&o[want], Ty::B64)?;
    }
    let elems = |o: &Operand, role: &str| -> LResult<Vec<Operand>> {
        match (o, vec) {
            (Operand::Vec(v), n) if v.len() == n && n > 1 => Ok(v.clone()),
            (Operand::Vec(_), _) | (_, 2..) => err(
                line,
                format!("`{what}`: {role} must be a vector of {vec} registers"),
            ),
            (one, _) => Ok(vec![one.clone()]),
        }
    };
    let dst = if red {
        Vec::new()
    } else {
        elems(&o[0], "the destination")?
            .iter()
            .map(|e| d.dst(e))
            .collect::<LResult<_>>()?
    };
    let b = elems(&o[base + 1], "the operand")?
        .iter()
        .map(|e| d.src(e, ty))
        .collect::<LResult<_>>()?;
    let c = match op {
        AtomOp::Cas => Some(d.src(&o[base + 2], ty)?),
        _ => None,
    };
    Ok((
        Op::Atom {
            space,
            op,
            ty,
            noftz,
            d: dst,
            addr: d.addr(&o[base])?,
            b,
            c,
        },
        ty,
    ))
}
