//! One PTX instruction (opcode, modifiers, operands) to one decoded [`Op`].

use super::decode_mods::{bool_of, class_of, cmp_of, special, Mods};
use super::lower::{err, imm_bits, Ctx, LResult, SymVal};
use super::program::*;
use crate::isa::{Rnd, Ty};
use crate::ptx::{AddrBase, Instr, Operand};

mod async_ops;
mod atom;
mod wgmma;

struct D<'c, 'a> {
    cx: &'c mut Ctx<'a>,
    line: u32,
}

impl D<'_, '_> {
    fn src(&mut self, o: &Operand, ty: Ty) -> LResult<Src> {
        match o {
            Operand::Reg(n) => {
                if let Some(s) = special(n) {
                    return Ok(Src::Special(s));
                }
                Ok(Src::Reg(self.cx.reg(n, self.line)?))
            }
            Operand::NotReg(n) => Ok(Src::NotReg(self.cx.reg(n, self.line)?)),
            Operand::Imm(i) => Ok(Src::Imm(imm_bits(*i, ty))),
            Operand::Sym(n) => Ok(Src::Imm(match self.cx.sym(n, self.line)? {
                SymVal::Param(o) | SymVal::Shared(o) | SymVal::Local(o) | SymVal::Global(o) => o,
                SymVal::Label => return err(self.line, format!("label {n} used as a value")),
            })),
            other => err(self.line, format!("unexpected operand {other:?}")),
        }
    }
    fn dst(&mut self, o: &Operand) -> LResult<u32> {
        match o {
            Operand::Reg(n) if n == "_" => Ok(self.cx.scratch()),
            Operand::Reg(n) if special(n).is_none() => self.cx.reg(n, self.line),
            other => err(self.line, format!("bad destination {other:?}")),
        }
    }
    fn opt_dst(&mut self, o: &Operand) -> LResult<Option<u32>> {
        match o {
            Operand::Reg(n) if n == "_" => Ok(None),
            _ => self.dst(o).map(Some),
        }
    }
    fn addr(&mut self, o: &Operand) -> LResult<Addr> {
        let Operand::Addr { base, offset } = o else {
            return err(self.line, format!("expected an address, got {o:?}"));
        };
        match base {
            AddrBase::Reg(n) => Ok(Addr {
                base: Some(self.cx.reg(n, self.line)?),
                offset: *offset,
            }),
            AddrBase::Abs => Ok(Addr {
                base: None,
                offset: *offset,
            }),
            AddrBase::Sym(n) => match self.cx.sym(n, self.line)? {
                SymVal::Param(o) | SymVal::Shared(o) | SymVal::Local(o) | SymVal::Global(o) => {
                    Ok(Addr {
                        base: None,
                        offset: (o as i64).wrapping_add(*offset),
                    })
                }
                SymVal::Label => err(self.line, format!("label {n} used as an address")),
            },
        }
    }
    fn vec_dsts(&mut self, o: &Operand) -> LResult<Vec<Option<u32>>> {
        match o {
            Operand::Vec(v) => v.iter().map(|e| self.opt_dst(e)).collect(),
            other => Ok(vec![self.opt_dst(other)?]),
        }
    }
    fn vec_srcs(&mut self, o: &Operand, ty: Ty) -> LResult<Vec<Src>> {
        match o {
            Operand::Vec(v) => v.iter().map(|e| self.src(e, ty)).collect(),
            other => Ok(vec![self.src(other, ty)?]),
        }
    }
    fn label(&self, o: &Operand) -> LResult<u32> {
        match o {
            Operand::Sym(n) => match self.cx.labels.get(n) {
                Some(&pc) => Ok(pc),
                None => err(self.line, format!("unknown label {n}")),
            },
            other => err(self.line, format!("bad branch target {other:?}")),
        }
    }
}

fn space_of(m: &mut Mods) -> MemSpace {
    match m.any(&["global", "shared", "local", "param", "const"]) {
        Some("global") => MemSpace::Global,
        Some("shared") => {
            // `.shared::cta` arrives as the modifier "shared::cta" from some compilers.
            MemSpace::Shared
        }
        Some("local") => MemSpace::Local,
        Some("param") => MemSpace::Param,
        Some("const") => MemSpace::Const,
        _ => {
            if m.has("shared::cta") {
                MemSpace::Shared
            } else {
                MemSpace::Generic
            }
        }
    }
}

fn nops(i: &Instr, n: usize) -> LResult<()> {
    if i.operands.len() != n {
        return err(
            i.line,
            format!(
                "`{}` expects {n} operands, got {}",
                i.opcode,
                i.operands.len()
            ),
        );
    }
    Ok(())
}

/// Decodes one instruction.
pub(crate) fn decode(i: &Instr, cx: &mut Ctx) -> LResult<Inst> {
    let line = i.line;
    let mut d = D { cx, line };
    let guard = match &i.guard {
        Some((neg, r)) => Some((d.cx.reg(r, line)?, *neg)),
        None => None,
    };
    let mut m = Mods::new(i);
    let o = &i.operands;
    let mut ty_for_class = None;
    let op = match i.opcode.as_str() {
        "mov" => {
            nops(i, 2)?;
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            match (&o[0], &o[1]) {
                (Operand::Vec(parts), src) => {
                    let n = parts.len() as u32;
                    Op::Unpack {
                        bits: ty_bits(ty) / n.max(1),
                        ds: d.vec_dsts(&o[0])?,
                        a: d.src(src, ty)?,
                    }
                }
                (dst, Operand::Vec(parts)) => {
                    let n = parts.len() as u32;
                    let bits = ty_bits(ty) / n.max(1);
                    Op::Pack {
                        bits,
                        d: d.dst(dst)?,
                        parts: d.vec_srcs(&o[1], int_ty(bits))?,
                    }
                }
                _ => Op::Un {
                    op: UnOp::Mov,
                    ty,
                    m: FMods::default(),
                    d: d.dst(&o[0])?,
                    a: d.src(&o[1], ty)?,
                },
            }
        }
        "add" | "sub" | "min" | "max" | "and" | "or" | "xor" | "div" | "rem" | "copysign"
        | "shl" | "shr" | "mul" | "mul24" => {
            nops(i, 3)?;
            let fm = m.fmods();
            let hi = m.has("hi");
            let lo = m.has("lo");
            let wide = m.has("wide");
            m.hints(&["cc"]);
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            let opn = i.opcode.as_str();
            if ty == Ty::Pred && matches!(opn, "and" | "or" | "xor") {
                let bop = match opn {
                    "and" => BoolOp::And,
                    "or" => BoolOp::Or,
                    _ => BoolOp::Xor,
                };
                Op::PredLogic {
                    op: bop,
                    d: d.dst(&o[0])?,
                    a: d.src(&o[1], ty)?,
                    b: d.src(&o[2], ty)?,
                }
            } else {
                let op = match (opn, hi, wide) {
                    ("add", ..) => BinOp::Add,
                    ("sub", ..) => BinOp::Sub,
                    ("min", ..) => BinOp::Min,
                    ("max", ..) => BinOp::Max,
                    ("and", ..) => BinOp::And,
                    ("or", ..) => BinOp::Or,
                    ("xor", ..) => BinOp::Xor,
                    ("div", ..) => BinOp::Div,
                    ("rem", ..) => BinOp::Rem,
                    ("copysign", ..) => BinOp::CopySign,
                    ("shl", ..) => BinOp::Shl,
                    ("shr", ..) => BinOp::Shr,
                    ("mul24", true, _) => BinOp::Mul24Hi,
                    ("mul24", ..) => BinOp::Mul24Lo,
                    ("mul", true, _) => BinOp::MulHi,
                    ("mul", _, true) => BinOp::MulWide,
                    _ => {
                        let _ = lo;
                        BinOp::MulLo
                    }
                };
                // Shift amounts are always u32.
                let bty = if matches!(op, BinOp::Shl | BinOp::Shr) {
                    Ty::U32
                } else {
                    ty
                };
                Op::Bin {
                    op,
                    ty,
                    m: fm,
                    d: d.dst(&o[0])?,
                    a: d.src(&o[1], ty)?,
                    b: d.src(&o[2], bty)?,
                }
            }
        }
        "mad" | "fma" | "mad24" => {
            nops(i, 4)?;
            let fm = m.fmods();
            let hi = m.has("hi");
            m.has("lo");
            let wide = m.has("wide");
            m.hints(&["cc"]);
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            let op = match (i.opcode.as_str(), hi, wide) {
                ("fma", ..) => TerOp::Fma,
                ("mad", ..) if ty.is_float() => TerOp::Fma,
                ("mad24", ..) => TerOp::Mad24Lo,
                (_, true, _) => TerOp::MadHi,
                (_, _, true) => TerOp::MadWide,
                _ => TerOp::MadLo,
            };
            // mad.wide's addend is double width.
            let cty = if op == TerOp::MadWide {
                wide_ty(ty)
            } else {
                ty
            };
            Op::Ter {
                op,
                ty,
                m: fm,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
                b: d.src(&o[2], ty)?,
                c: d.src(&o[3], cty)?,
            }
        }
        "selp" | "bfe" | "prmt" | "shf" | "lop3" | "sad" => {
            let opn = i.opcode.as_str();
            let op = match opn {
                "selp" => TerOp::Selp,
                "bfe" => TerOp::Bfe,
                "prmt" => {
                    let mode = match m.any(&["f4e", "b4e", "rc8", "ecl", "ecr", "rc16"]) {
                        None => 0,
                        Some("f4e") => 1,
                        Some("b4e") => 2,
                        Some("rc8") => 3,
                        Some("ecl") => 4,
                        Some("ecr") => 5,
                        _ => 6,
                    };
                    TerOp::Prmt(mode)
                }
                "shf" => {
                    let left = m.has("l");
                    m.has("r");
                    let clamp = m.has("clamp");
                    m.has("wrap");
                    if left {
                        TerOp::ShfL { clamp }
                    } else {
                        TerOp::ShfR { clamp }
                    }
                }
                "lop3" => TerOp::Lop3(0),
                _ => TerOp::Sad,
            };
            if op == TerOp::Lop3(0) {
                nops(i, 5)?;
            } else {
                nops(i, 4)?;
            }
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            let (bty, cty) = match op {
                TerOp::Selp => (ty, Ty::Pred),
                TerOp::Bfe => (Ty::U32, Ty::U32),
                _ => (ty, ty),
            };
            let op = if op == TerOp::Lop3(0) {
                // lop3.b32 d, a, b, c, immLut: the table rides in the op.
                match d.src(&o[4], Ty::U32)? {
                    Src::Imm(v) => TerOp::Lop3(v as u8),
                    _ => return err(line, "lop3 lookup table must be an immediate"),
                }
            } else {
                op
            };
            Op::Ter {
                op,
                ty,
                m: FMods::default(),
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
                b: d.src(&o[2], bty)?,
                c: d.src(&o[3], cty)?,
            }
        }
        "bfi" => {
            nops(i, 5)?;
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            Op::Bfi {
                ty,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
                b: d.src(&o[2], ty)?,
                pos: d.src(&o[3], Ty::U32)?,
                len: d.src(&o[4], Ty::U32)?,
            }
        }
        "not" | "neg" | "abs" | "popc" | "clz" | "brev" | "bfind" | "cnot" | "ex2" | "lg2"
        | "rcp" | "rsqrt" | "sqrt" | "sin" | "cos" | "tanh" => {
            nops(i, 2)?;
            let fm = m.fmods();
            let shift = m.has("shiftamt");
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            let op = match i.opcode.as_str() {
                "not" => UnOp::Not,
                "neg" => UnOp::Neg,
                "abs" => UnOp::Abs,
                "popc" => UnOp::Popc,
                "clz" => UnOp::Clz,
                "brev" => UnOp::Brev,
                "bfind" if shift => UnOp::BfindShift,
                "bfind" => UnOp::Bfind,
                "cnot" => UnOp::Cnot,
                "ex2" => UnOp::Ex2,
                "lg2" => UnOp::Lg2,
                "rcp" if fm.approx => UnOp::RcpApprox,
                "rcp" => UnOp::Rcp,
                "rsqrt" => UnOp::Rsqrt,
                "sqrt" if fm.approx => UnOp::SqrtApprox,
                "sqrt" => UnOp::Sqrt,
                "sin" => UnOp::Sin,
                "cos" => UnOp::Cos,
                _ => UnOp::Tanh,
            };
            Op::Un {
                op,
                ty,
                m: fm,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
            }
        }
        "setp" => {
            let cmp = cmp_of(&mut m, line)?;
            let bop = bool_of(&mut m);
            let ftz = m.has("ftz");
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            let (dd, dn) = match &o.first() {
                Some(Operand::RegPair(a, b)) => (d.cx.reg(a, line)?, Some(d.cx.reg(b, line)?)),
                Some(x) => (d.dst(x)?, None),
                None => return err(line, "setp without operands"),
            };
            let comb = match bop {
                Some(b) => {
                    nops(i, 4)?;
                    Some((b, d.src(&o[3], Ty::Pred)?))
                }
                None => {
                    nops(i, 3)?;
                    None
                }
            };
            Op::Setp {
                cmp,
                ty,
                ftz,
                d: dd,
                dn,
                a: d.src(&o[1], ty)?,
                b: d.src(&o[2], ty)?,
                comb,
            }
        }
        "set" => {
            nops(i, 3)?;
            let cmp = cmp_of(&mut m, line)?;
            m.has("ftz");
            let tys = m.types();
            let [dty, ty] = tys[..] else {
                return err(line, "set needs destination and source types");
            };
            Op::Set {
                cmp,
                dty,
                ty,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
                b: d.src(&o[2], ty)?,
            }
        }
        "cvt" => {
            let frnd = m.rnd();
            let irnd = m.irnd();
            let ftz = m.has("ftz");
            let sat = m.has("sat");
            let relu = m.has("relu");
            let tys = m.types();
            match tys[..] {
                [Ty::F16x2 | Ty::Bf16x2, Ty::F32] => {
                    nops(i, 3)?;
                    Op::CvtPack {
                        bf16: tys[0] == Ty::Bf16x2,
                        rnd: frnd.unwrap_or(Rnd::Rn),
                        relu,
                        sat,
                        d: d.dst(&o[0])?,
                        a: d.src(&o[1], Ty::F32)?,
                        b: d.src(&o[2], Ty::F32)?,
                    }
                }
                [dty, sty] => {
                    nops(i, 2)?;
                    if relu {
                        return err(line, "cvt.relu is only supported for f16x2/bf16x2");
                    }
                    ty_for_class = Some(dty);
                    Op::Cvt {
                        dty,
                        sty,
                        frnd,
                        irnd,
                        ftz,
                        sat,
                        d: d.dst(&o[0])?,
                        a: d.src(&o[1], sty)?,
                    }
                }
                _ => return err(line, "cvt needs destination and source types"),
            }
        }
        "cvta" => {
            nops(i, 2)?;
            let to = m.has("to");
            let space = space_of(&mut m);
            let ty = m.ty()?;
            Op::Cvta {
                to_generic: !to,
                space,
                wide: ty_bits(ty) == 64,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], ty)?,
            }
        }
        "ld" | "ldu" => {
            nops(i, 2)?;
            let strong = is_strong(&m);
            m.hints(&[
                "nc",
                "acquire",
                "ca",
                "cg",
                "cs",
                "lu",
                "cv",
                "volatile",
                "relaxed",
                "weak",
                "L1::no_allocate",
                "L1::evict_last",
                "L1::evict_first",
                "L2::64B",
                "L2::128B",
                "L2::256B",
                "cta",
                "gpu",
                "sys",
            ]);
            let space = space_of(&mut m);
            m.any(&["v2", "v4", "v8"]);
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            Op::Ld {
                space,
                ty,
                ds: d.vec_dsts(&o[0])?,
                addr: d.addr(&o[1])?,
                strong,
            }
        }
        "st" => {
            nops(i, 2)?;
            let strong = is_strong(&m);
            m.hints(&[
                "release",
                "wb",
                "cg",
                "cs",
                "wt",
                "volatile",
                "relaxed",
                "weak",
                "cta",
                "gpu",
                "sys",
                "L1::no_allocate",
            ]);
            let space = space_of(&mut m);
            m.any(&["v2", "v4", "v8"]);
            let ty = m.ty()?;
            ty_for_class = Some(ty);
            Op::St {
                space,
                ty,
                addr: d.addr(&o[0])?,
                srcs: d.vec_srcs(&o[1], ty)?,
                strong,
            }
        }
        "atom" | "red" => {
            let (op, ty) = atom::decode(&mut d, &mut m, i)?;
            ty_for_class = Some(ty);
            op
        }
        "bra" => {
            m.has("uni");
            nops(i, 1)?;
            Op::Bra {
                target: d.label(&o[0])?,
            }
        }
        "ret" | "exit" => {
            m.has("uni");
            nops(i, 0)?;
            Op::Exit
        }
        "bar" | "barrier" => {
            if m.has("warp") {
                m.has("sync");
                nops(i, 1)?;
                Op::BarWarp {
                    mask: d.src(&o[0], Ty::B32)?,
                }
            } else {
                let what = m.any(&["sync", "red", "arrive"]);
                if i.opcode == "barrier" && what.is_none() {
                    return err(line, format!("`{}` needs .sync, .arrive or .red", m.what));
                }
                // `bar` is `barrier.*.aligned`.
                let aligned = i.opcode == "bar" || m.has("aligned");
                m.has("cta");
                let (kind, ops) = match what {
                    Some("arrive") => {
                        if o.len() != 2 {
                            return err(line, "bar.arrive takes a barrier id and a thread count");
                        }
                        (BarKind::Arrive, &o[..])
                    }
                    Some("red") => {
                        let op = match m.any(&["popc", "and", "or"]) {
                            Some("popc") => RedOp::Popc,
                            Some("and") => RedOp::And,
                            Some("or") => RedOp::Or,
                            _ => return err(line, "bar.red needs .popc, .and or .or"),
                        };
                        let ty = m.ty()?;
                        if (op == RedOp::Popc) != (ty == Ty::U32)
                            || (op != RedOp::Popc && ty != Ty::Pred)
                        {
                            return err(line, "bar.red.popc is .u32, bar.red.and/.or are .pred");
                        }
                        if o.len() < 3 || o.len() > 4 {
                            return err(line, "bar.red takes d, id, {count,} predicate");
                        }
                        let kind = BarKind::Red {
                            op,
                            d: d.dst(&o[0])?,
                            pred: d.src(&o[o.len() - 1], Ty::Pred)?,
                        };
                        (kind, &o[1..o.len() - 1])
                    }
                    _ => (BarKind::Sync, &o[..]),
                };
                if ops.is_empty() || ops.len() > 2 {
                    return err(line, "a barrier takes an id and an optional thread count");
                }
                Op::Bar {
                    id: d.src(&ops[0], Ty::U32)?,
                    count: match ops.get(1) {
                        Some(c) => Some(d.src(c, Ty::U32)?),
                        None => None,
                    },
                    aligned,
                    kind,
                }
            }
        }
        "shfl" => {
            m.has("sync");
            let mode = match m.any(&["up", "down", "bfly", "idx"]) {
                Some("up") => ShflMode::Up,
                Some("down") => ShflMode::Down,
                Some("bfly") => ShflMode::Bfly,
                Some("idx") => ShflMode::Idx,
                _ => return err(line, "shfl without a mode"),
            };
            let ty = m.ty()?;
            if ty_bits(ty) != 32 {
                return err(line, "shfl must be .b32");
            }
            nops(i, 5)?;
            let (dd, p) = match &o[0] {
                Operand::RegPair(a, b) => (d.cx.reg(a, line)?, Some(d.cx.reg(b, line)?)),
                x => (d.dst(x)?, None),
            };
            Op::Shfl {
                mode,
                d: dd,
                p,
                a: d.src(&o[1], Ty::B32)?,
                b: d.src(&o[2], Ty::B32)?,
                c: d.src(&o[3], Ty::B32)?,
                mask: d.src(&o[4], Ty::B32)?,
            }
        }
        "vote" => {
            m.has("sync");
            let mode = match m.any(&["all", "any", "uni", "ballot"]) {
                Some("all") => VoteMode::All,
                Some("any") => VoteMode::Any,
                Some("uni") => VoteMode::Uni,
                Some("ballot") => VoteMode::Ballot,
                _ => return err(line, "vote without a mode"),
            };
            m.types();
            nops(i, 3)?;
            Op::Vote {
                mode,
                d: d.dst(&o[0])?,
                a: d.src(&o[1], Ty::Pred)?,
                mask: d.src(&o[2], Ty::B32)?,
            }
        }
        "activemask" => {
            m.types();
            nops(i, 1)?;
            Op::Activemask { d: d.dst(&o[0])? }
        }
        "mma" => {
            m.hints(&["sync", "aligned"]);
            let shape = m.any(&["m16n8k16", "m16n8k8"]);
            if !(m.has("row") && m.has("col")) {
                return err(line, "mma: only .row.col layouts are supported");
            }
            let tys = m.types();
            let kind = match (shape, &tys[..]) {
                (Some("m16n8k16"), [Ty::F32, Ty::F16, Ty::F16, Ty::F32]) => MmaKind::M16n8k16F32F16,
                (Some("m16n8k16"), [Ty::F32, Ty::Bf16, Ty::Bf16, Ty::F32]) => {
                    MmaKind::M16n8k16F32Bf16
                }
                (Some("m16n8k16"), [Ty::F16, Ty::F16, Ty::F16, Ty::F16]) => MmaKind::M16n8k16F16F16,
                (Some("m16n8k8"), [Ty::F32, Ty::F16, Ty::F16, Ty::F32]) => MmaKind::M16n8k8F32F16,
                _ => return err(line, format!("unsupported mma form `{}`", m.what)),
            };
            nops(i, 4)?;
            let (nd, na, nb) = match kind {
                MmaKind::M16n8k16F32F16 | MmaKind::M16n8k16F32Bf16 => (4, 4, 2),
                MmaKind::M16n8k16F16F16 => (2, 4, 2),
                MmaKind::M16n8k8F32F16 => (4, 2, 1),
            };
            let dv: Vec<u32> = d
                .vec_dsts(&o[0])?
                .into_iter()
                .map(|x| x.unwrap_or(u32::MAX))
                .collect();
            let a = d.vec_srcs(&o[1], Ty::B32)?;
            let b = d.vec_srcs(&o[2], Ty::B32)?;
            let cty = if nd == 4 { Ty::F32 } else { Ty::B32 };
            let c = d.vec_srcs(&o[3], cty)?;
            if dv.len() != nd
                || a.len() != na
                || b.len() != nb
                || c.len() != nd
                || dv.contains(&u32::MAX)
            {
                return err(line, "mma operand vector sizes do not match its shape");
            }
            Op::Mma {
                kind,
                d: dv,
                a,
                b,
                c,
            }
        }
        "ldmatrix" => {
            m.hints(&["sync", "aligned", "m8n8"]);
            let num = match m.any(&["x1", "x2", "x4"]) {
                Some("x1") => 1,
                Some("x2") => 2,
                Some("x4") => 4,
                _ => return err(line, "ldmatrix without .x1/.x2/.x4"),
            };
            let trans = m.has("trans");
            let sp = space_of(&mut m);
            if !matches!(sp, MemSpace::Shared | MemSpace::Generic) {
                return err(line, "ldmatrix reads shared memory only");
            }
            if m.ty()? != Ty::B16 {
                return err(line, "ldmatrix: only .b16 is supported");
            }
            nops(i, 2)?;
            let dv: Vec<u32> = d
                .vec_dsts(&o[0])?
                .into_iter()
                .map(|x| x.unwrap_or(u32::MAX))
                .collect();
            if dv.len() != num as usize || dv.contains(&u32::MAX) {
                return err(line, "ldmatrix destination count does not match .xN");
            }
            Op::Ldmatrix {
                num,
                trans,
                d: dv,
                addr: d.addr(&o[1])?,
            }
        }
        "cp" => {
            if !m.has("async") {
                return err(line, format!("`{}` is not supported", m.what));
            }
            if m.list.iter().any(|x| x == "bulk") {
                Op::Async(Box::new(async_ops::bulk(&mut d, &mut m, i)?))
            } else if m.has("commit_group") {
                nops(i, 0)?;
                Op::CpAsyncCommit
            } else if m.has("wait_group") {
                nops(i, 1)?;
                match d.src(&o[0], Ty::U32)? {
                    Src::Imm(n) => Op::CpAsyncWait {
                        n: n as u32,
                        all: false,
                    },
                    _ => return err(line, "cp.async.wait_group needs an immediate"),
                }
            } else if m.has("wait_all") {
                nops(i, 0)?;
                Op::CpAsyncWait { n: 0, all: true }
            } else {
                m.any(&["ca", "cg"]);
                if !(m.has("shared") || m.has("shared::cta")) || !m.has("global") {
                    return err(line, "cp.async must copy global to shared");
                }
                m.hints(&["L2::64B", "L2::128B", "L2::256B"]);
                if o.len() != 3 && o.len() != 4 {
                    return err(line, "cp.async takes 3 or 4 operands");
                }
                let size = match d.src(&o[2], Ty::U32)? {
                    Src::Imm(n @ (4 | 8 | 16)) => n as u32,
                    _ => return err(line, "cp.async size must be 4, 8 or 16"),
                };
                Op::CpAsync {
                    dst: d.addr(&o[0])?,
                    src: d.addr(&o[1])?,
                    size,
                    src_size: match o.get(3) {
                        Some(s) => Some(d.src(s, Ty::U32)?),
                        None => None,
                    },
                }
            }
        }
        "mbarrier" => Op::Async(Box::new(async_ops::mbarrier(&mut d, &mut m, i)?)),
        "setmaxnreg" => Op::Async(Box::new(async_ops::setmaxnreg(&mut d, &mut m, i)?)),
        "wgmma" => wgmma::decode(&mut d, &mut m, i)?,
        "fence" if wgmma::fence_proxy_async(&mut m, i)?.is_some() => Op::FenceProxyAsync,
        "membar" | "fence" | "prefetch" | "prefetchu" | "nanosleep" | "pmevent" => {
            m.hints(&[
                "cta", "gl", "sys", "gpu", "sc", "acq_rel", "global", "L1", "L2", "proxy", "async",
            ]);
            // `fence.mbarrier_init.release.cluster`: mbarrier state is block-wide here;
            // `prefetch.tensormap` only warms a cache.
            m.hints(&["mbarrier_init", "release", "cluster", "tensormap"]);
            Op::Nop
        }
        other => {
            return err(
                line,
                format!("unsupported instruction `{other}` (`{}`)", m.what),
            )
        }
    };
    m.done()?;
    let class = class_of(&op, ty_for_class);
    Ok(Inst {
        op,
        guard,
        line,
        class,
    })
}

pub fn ty_bits(t: Ty) -> u32 {
    if t == Ty::Pred {
        1
    } else {
        t.bits()
    }
}

fn int_ty(bits: u32) -> Ty {
    match bits {
        8 => Ty::B8,
        16 => Ty::B16,
        32 => Ty::B32,
        _ => Ty::B64,
    }
}

fn wide_ty(t: Ty) -> Ty {
    match t {
        Ty::S16 => Ty::S32,
        Ty::U16 => Ty::U32,
        Ty::S32 => Ty::S64,
        Ty::U32 => Ty::U64,
        other => other,
    }
}

/// `.volatile`, `.relaxed`, `.acquire`, `.release`: accesses that synchronise.
fn is_strong(m: &Mods) -> bool {
    m.list
        .iter()
        .any(|x| matches!(x.as_str(), "volatile" | "relaxed" | "acquire" | "release"))
}
