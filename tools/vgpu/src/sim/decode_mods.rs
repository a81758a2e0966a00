//! Pieces of the decoder that are not the opcode dispatch: modifier bookkeeping (every
//! modifier must be understood or the load fails), special registers, comparison and
//! predicate-combination modifiers, and the profile class of each decoded instruction.

use super::lower::{err, LResult};
use super::program::*;
use crate::isa::{CmpOp, IRnd, Rnd, Ty};
use crate::ptx::Instr;

/// Modifiers of an instruction, with the ones already understood ticked off, so that an
/// unknown modifier fails the load instead of being ignored.
pub(crate) struct Mods<'a> {
    pub(crate) list: &'a [String],
    pub(crate) used: Vec<bool>,
    pub(crate) line: u32,
    pub(crate) what: String,
}

impl<'a> Mods<'a> {
    pub(crate) fn new(i: &'a Instr) -> Self {
        Mods {
            list: &i.mods,
            used: vec![false; i.mods.len()],
            line: i.line,
            what: std::iter::once(i.opcode.as_str())
                .chain(i.mods.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("."),
        }
    }
    pub(crate) fn has(&mut self, m: &str) -> bool {
        match self.list.iter().position(|x| x == m) {
            Some(k) => {
                self.used[k] = true;
                true
            }
            None => false,
        }
    }
    /// Ticks off any of `ms`, returning the first present.
    pub(crate) fn any(&mut self, ms: &[&'static str]) -> Option<&'static str> {
        ms.iter().copied().find(|m| self.has(m))
    }
    /// All type modifiers in order.
    pub(crate) fn types(&mut self) -> Vec<Ty> {
        let mut v = Vec::new();
        for (k, m) in self.list.iter().enumerate() {
            if let Some(t) = Ty::from_str(m) {
                self.used[k] = true;
                v.push(t);
            }
        }
        v
    }
    pub(crate) fn ty(&mut self) -> LResult<Ty> {
        match self.types().last() {
            Some(&t) => Ok(t),
            None => err(self.line, format!("`{}` has no type", self.what)),
        }
    }
    pub(crate) fn rnd(&mut self) -> Option<Rnd> {
        Some(match self.any(&["rn", "rz", "rm", "rp", "rna"])? {
            "rn" => Rnd::Rn,
            "rz" => Rnd::Rz,
            "rm" => Rnd::Rm,
            "rp" => Rnd::Rp,
            _ => Rnd::Rna,
        })
    }
    pub(crate) fn irnd(&mut self) -> Option<IRnd> {
        Some(match self.any(&["rni", "rzi", "rmi", "rpi"])? {
            "rni" => IRnd::Rni,
            "rzi" => IRnd::Rzi,
            "rmi" => IRnd::Rmi,
            _ => IRnd::Rpi,
        })
    }
    pub(crate) fn fmods(&mut self) -> FMods {
        let rnd = self.rnd();
        FMods {
            rnd,
            explicit_rnd: rnd.is_some(),
            ftz: self.has("ftz"),
            sat: self.has("sat"),
            approx: self.any(&["approx", "full"]).is_some(),
            nan: self.has("NaN"),
        }
    }
    /// Fails on any modifier nobody ticked off.
    pub(crate) fn done(&self) -> LResult<()> {
        for (k, m) in self.list.iter().enumerate() {
            if !self.used[k] {
                return err(
                    self.line,
                    format!("unsupported modifier .{m} in `{}`", self.what),
                );
            }
        }
        Ok(())
    }
    /// Ticks off modifiers that are performance hints only.
    pub(crate) fn hints(&mut self, ms: &[&str]) {
        for m in ms {
            self.has(m);
        }
    }
}

pub(crate) fn special(name: &str) -> Option<Special> {
    let dim = |s: &str| match s {
        "x" => Some(0u8),
        "y" => Some(1),
        "z" => Some(2),
        _ => None,
    };
    if let Some((base, d)) = name.split_once('.') {
        let d = dim(d)?;
        return Some(match base {
            "%tid" => Special::Tid(d),
            "%ntid" => Special::Ntid(d),
            "%ctaid" => Special::Ctaid(d),
            "%nctaid" => Special::Nctaid(d),
            _ => return None,
        });
    }
    Some(match name {
        "%laneid" => Special::LaneId,
        "%warpid" => Special::WarpId,
        "%nwarpid" => Special::NWarpId,
        "%smid" => Special::SmId,
        "%lanemask_eq" => Special::LaneMaskEq,
        "%lanemask_lt" => Special::LaneMaskLt,
        "%lanemask_le" => Special::LaneMaskLe,
        "%lanemask_gt" => Special::LaneMaskGt,
        "%lanemask_ge" => Special::LaneMaskGe,
        "%clock" => Special::Clock,
        "%clock64" => Special::Clock64,
        "%globaltimer" => Special::GlobalTimer,
        "%dynamic_smem_size" => Special::DynSmemSize,
        "%total_smem_size" => Special::TotalSmemSize,
        _ => return None,
    })
}

pub(crate) fn class_of(op: &Op, ty: Option<Ty>) -> &'static str {
    match op {
        Op::Mma { .. } => "mma",
        Op::Wgmma(_) | Op::WgmmaFence | Op::WgmmaCommit | Op::WgmmaWait { .. } => "wgmma",
        Op::Ldmatrix { .. } => "ldmatrix",
        Op::CpAsync { .. } | Op::CpAsyncCommit | Op::CpAsyncWait { .. } => "cp.async",
        Op::Async(a) => a.class(),
        Op::Ld { space, .. } | Op::St { space, .. } | Op::Atom { space, .. } => match space {
            MemSpace::Shared => "shared",
            MemSpace::Local => "local",
            MemSpace::Param => "param",
            _ => "global",
        },
        Op::Bra { .. } | Op::Exit | Op::Bar { .. } | Op::BarWarp { .. } => "control",
        Op::Shfl { .. } | Op::Vote { .. } | Op::Activemask { .. } => "warp",
        Op::Cvt { .. } | Op::CvtPack { .. } => "cvt",
        Op::Un {
            op:
                UnOp::Ex2
                | UnOp::Lg2
                | UnOp::Rcp
                | UnOp::RcpApprox
                | UnOp::Rsqrt
                | UnOp::Sqrt
                | UnOp::SqrtApprox
                | UnOp::Sin
                | UnOp::Cos
                | UnOp::Tanh,
            ..
        } => "sfu",
        _ => match ty {
            Some(Ty::F32) => "fp32",
            Some(Ty::F64) => "fp64",
            Some(Ty::F16 | Ty::F16x2 | Ty::Bf16 | Ty::Bf16x2) => "fp16",
            Some(Ty::Pred) => "pred",
            _ => "int",
        },
    }
}

pub(crate) fn cmp_of(m: &mut Mods, line: u32) -> LResult<CmpOp> {
    for (k, s) in m.list.iter().enumerate() {
        if let Some(c) = CmpOp::from_str(s) {
            m.used[k] = true;
            return Ok(c);
        }
    }
    err(line, format!("`{}` has no comparison", m.what))
}

pub(crate) fn bool_of(m: &mut Mods) -> Option<BoolOp> {
    match m.any(&["and", "or", "xor"])? {
        "and" => Some(BoolOp::And),
        "or" => Some(BoolOp::Or),
        _ => Some(BoolOp::Xor),
    }
}
