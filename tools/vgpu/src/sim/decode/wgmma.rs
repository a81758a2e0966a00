//! Decoding of `wgmma.*` and `fence.proxy.async`. The forms modelled are the 16-bit-input,
//! f32-accumulator `mma_async` shapes m64nNk16 (N a multiple of 8 up to 256); every other
//! form fails the load with its name, so that a kernel is never run with a meaning it does
//! not have.

use super::super::decode_mods::Mods;
use super::super::lower::{err, LResult};
use super::super::program::*;
use super::D;
use crate::isa::Ty;
use crate::ptx::{Instr, Operand};

pub(super) fn decode(d: &mut D, m: &mut Mods, i: &Instr) -> LResult<Op> {
    let line = i.line;
    let o = &i.operands;
    m.hints(&["sync", "aligned"]);
    if m.has("fence") {
        return no_operands(i, Op::WgmmaFence);
    }
    if m.has("commit_group") {
        return no_operands(i, Op::WgmmaCommit);
    }
    if m.has("wait_group") {
        return match o.as_slice() {
            [Operand::Imm(crate::ptx::Imm::Int(n))] if (0..=7).contains(n) => {
                Ok(Op::WgmmaWait { n: *n as u32 })
            }
            _ => err(line, "wgmma.wait_group takes an immediate 0..7"),
        };
    }
    if !m.has("mma_async") {
        return err(line, format!("unsupported instruction `{}`", m.what));
    }
    let what = m.what.clone();
    let n = m
        .list
        .iter()
        .enumerate()
        .find_map(|(k, s)| {
            let n: u32 = s.strip_prefix("m64n")?.strip_suffix("k16")?.parse().ok()?;
            Some((k, n))
        })
        .filter(|&(_, n)| n % 8 == 0 && (8..=256).contains(&n));
    let Some((k, n)) = n else {
        return err(
            line,
            format!("`{what}`: only m64nNk16 with N = 8..256 is supported"),
        );
    };
    m.used[k] = true;
    let bf16 = match m.types()[..] {
        [Ty::F32, Ty::F16, Ty::F16] => false,
        [Ty::F32, Ty::Bf16, Ty::Bf16] => true,
        _ => {
            return err(
                line,
                format!("`{what}`: only .f32.f16.f16 and .f32.bf16.bf16 are supported"),
            )
        }
    };
    let regs_a = matches!(o.get(1), Some(Operand::Vec(_)));
    // d, a, b, scale-d, imm-scale-a, imm-scale-b, [imm-trans-a,] imm-trans-b
    let want = if regs_a { 7 } else { 8 };
    if o.len() != want {
        return err(
            line,
            format!("`{what}` takes {want} operands, got {}", o.len()),
        );
    }
    let dv = d.vec_dsts(&o[0])?;
    if dv.len() != n as usize / 2 || dv.contains(&None) {
        return err(
            line,
            format!("`{what}` needs {} accumulator registers", n / 2),
        );
    }
    let a = if regs_a {
        let a = d.vec_srcs(&o[1], Ty::B32)?;
        if a.len() != 4 || !a.iter().all(|s| matches!(s, Src::Reg(_))) {
            return err(
                line,
                format!("`{what}`: A in registers is four .b32 registers"),
            );
        }
        WgA::Regs(a)
    } else {
        WgA::Desc(d.src(&o[1], Ty::B64)?)
    };
    let imm = |k: usize, ok: &[i64]| match o[k] {
        Operand::Imm(crate::ptx::Imm::Int(v)) if ok.contains(&v) => Ok(v),
        _ => err(
            line,
            format!("`{what}`: operand {} must be one of {ok:?}", k + 1),
        ),
    };
    let neg_a = imm(4, &[1, -1])? == -1;
    let neg_b = imm(5, &[1, -1])? == -1;
    let (trans_a, trans_b) = if regs_a {
        (false, imm(6, &[0, 1])? == 1)
    } else {
        (imm(6, &[0, 1])? == 1, imm(7, &[0, 1])? == 1)
    };
    Ok(Op::Wgmma(Box::new(Wgmma {
        bf16,
        n,
        d: dv.into_iter().flatten().collect(),
        a,
        b: d.src(&o[2], Ty::B64)?,
        scale_d: d.src(&o[3], Ty::Pred)?,
        neg_a,
        neg_b,
        trans_a,
        trans_b,
    })))
}

fn no_operands(i: &Instr, op: Op) -> LResult<Op> {
    if !i.operands.is_empty() {
        return err(i.line, format!("`{}` takes no operands", i.opcode));
    }
    Ok(op)
}

/// `fence.proxy.async{.shared::cta,.shared::cluster,.global}`: a launch without clusters is
/// a cluster of one CTA, so the shared::cluster form orders this CTA's shared memory too.
pub(super) fn fence_proxy_async(m: &mut Mods, i: &Instr) -> LResult<Option<Op>> {
    if !(m.list.len() >= 2 && m.list[0] == "proxy" && m.list[1] == "async") {
        return Ok(None);
    }
    m.hints(&["proxy", "async"]);
    m.any(&["shared::cta", "shared::cluster", "global"]);
    no_operands(i, Op::FenceProxyAsync).map(Some)
}
