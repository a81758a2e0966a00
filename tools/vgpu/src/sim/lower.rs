//! AST to [`Program`]: flattens scopes, numbers registers densely, lays out shared, local,
//! param and global memory, resolves labels and decodes every instruction once.
//!
//! Anything not understood fails the module load with the construct and its PTX line:
//! the simulator is never silently wrong.

use std::collections::HashMap;

use super::decode::decode;
use super::program::{GlobalVar, Inst, KernelCode, Program};
use crate::isa::Ty;
use crate::ptx::{Function, Imm, Instr, Module, Operand, Space, Stmt, VarDecl};

pub(crate) type LResult<T> = Result<T, String>;

pub(crate) fn err<T>(line: u32, msg: impl Into<String>) -> LResult<T> {
    Err(format!("PTX line {line}: {}", msg.into()))
}

/// Size in bytes of one element of a declared type.
pub(crate) fn type_size(ty: &str) -> Option<u32> {
    Some(match ty {
        "b8" | "u8" | "s8" | "pred" => 1,
        "b16" | "u16" | "s16" | "f16" | "bf16" => 2,
        "b32" | "u32" | "s32" | "f32" | "f16x2" | "bf16x2" => 4,
        "b64" | "u64" | "s64" | "f64" => 8,
        "b128" => 16,
        _ => return None,
    })
}

fn decl_size(d: &VarDecl) -> LResult<(u64, u32)> {
    let elem = type_size(&d.ty)
        .ok_or_else(|| format!("PTX line {}: unknown type .{}", d.line, d.ty))?
        as u64
        * d.vector.unwrap_or(1) as u64;
    let mut n: u64 = 1;
    for dim in &d.dims {
        n = n.saturating_mul(dim.unwrap_or(0));
    }
    let align = d.align.unwrap_or(elem as u32).max(1);
    Ok((elem.saturating_mul(n), align))
}

fn align_up(x: u64, a: u64) -> u64 {
    x.div_ceil(a.max(1)) * a.max(1)
}

/// What a symbol stands for when used as a value or an address base.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SymVal {
    /// Offset in the kernel's parameter buffer.
    Param(u64),
    /// Offset in the block's shared memory.
    Shared(u64),
    /// Offset in the thread's local memory.
    Local(u64),
    /// Identity-mapped global/const address.
    Global(u64),
    /// A label: branch targets only, never a value.
    Label,
}

/// Per-function lowering state shared with the instruction decoder.
pub(crate) struct Ctx<'a> {
    /// Register name (scope-qualified) to slot.
    slots: HashMap<String, u32>,
    pub reg_names: Vec<String>,
    /// Declared registers of each open scope (during flattening): plain -> qualified name.
    scopes: Vec<HashMap<String, String>>,
    /// Every declared register, by qualified name.
    declared: std::collections::HashSet<String>,
    pub syms: HashMap<String, SymVal>,
    /// Module-level shared variables, laid out for a kernel only if it references them.
    module_shared: &'a HashMap<String, (u64, u32)>,
    module_extern_shared: &'a HashMap<String, u32>,
    pub shared_end: u64,
    /// Extern (dynamic) shared symbols referenced, with their alignment.
    pub extern_shared: Vec<(String, u32)>,
    pub labels: HashMap<String, u32>,
}

impl<'a> Ctx<'a> {
    /// Slot of a register operand name, resolving scoped names.
    pub fn reg(&mut self, name: &str, line: u32) -> LResult<u32> {
        if let Some(&s) = self.slots.get(name) {
            return Ok(s);
        }
        if !self.declared.contains(name) {
            return err(line, format!("register {name} is not declared"));
        }
        let s = self.reg_names.len() as u32;
        let shown = name.split('#').next().unwrap_or(name);
        self.reg_names.push(shown.to_string());
        self.slots.insert(name.to_string(), s);
        Ok(s)
    }

    /// A scratch slot (sink `_` operands).
    pub fn scratch(&mut self) -> u32 {
        let s = self.reg_names.len() as u32;
        self.reg_names.push("_".into());
        s
    }

    pub fn sym(&self, name: &str, line: u32) -> LResult<SymVal> {
        match self.syms.get(name) {
            Some(&v) => Ok(v),
            None => err(line, format!("unknown symbol `{name}`")),
        }
    }

    /// Lays out a module-level shared variable the kernel references (first use only).
    fn touch_module_shared(&mut self, name: &str) {
        if self.syms.contains_key(name) {
            return;
        }
        if let Some(&(size, align)) = self.module_shared.get(name) {
            let off = align_up(self.shared_end, align as u64);
            self.shared_end = off + size;
            self.syms.insert(name.to_string(), SymVal::Shared(off));
        } else if let Some(&align) = self.module_extern_shared.get(name) {
            self.extern_shared.push((name.to_string(), align));
        }
    }
}

/// Value of an immediate for an instruction of type `ty`.
pub(crate) fn imm_bits(imm: Imm, ty: Ty) -> u64 {
    match (imm, ty) {
        (Imm::F32(b), Ty::F64) => (f32::from_bits(b) as f64).to_bits(),
        (Imm::F32(b), _) => b as u64,
        (Imm::F64(b), Ty::F32) => (f64::from_bits(b) as f32).to_bits() as u64,
        (Imm::F64(b), _) => b,
        (Imm::Int(i), Ty::F32) => (i as f32).to_bits() as u64,
        (Imm::Int(i), Ty::F64) => (i as f64).to_bits(),
        (Imm::Int(i), _) => i as u64,
    }
}

struct Flat {
    instrs: Vec<Instr>,
}

pub fn lower(m: &Module) -> LResult<Program> {
    let mut globals = Vec::new();
    let mut gsyms: HashMap<String, SymVal> = HashMap::new();
    let mut module_shared = HashMap::new();
    let mut module_extern_shared = HashMap::new();
    for v in &m.vars {
        match v.space {
            Space::Global | Space::Const => {
                let (size, _) = decl_size(v)?;
                let g = make_global(v, size)?;
                gsyms.insert(v.name.clone(), SymVal::Global(g.addr));
                globals.push(g);
            }
            Space::Shared if v.is_extern => {
                module_extern_shared.insert(v.name.clone(), v.align.unwrap_or(16));
            }
            Space::Shared => {
                let (size, align) = decl_size(v)?;
                module_shared.insert(v.name.clone(), (size, align));
            }
            _ => return err(v.line, format!("module-scope .{:?} variable", v.space)),
        }
    }
    for f in &m.functions {
        if !f.is_entry && f.body.is_some() {
            return err(
                f.line,
                format!(
                    ".func {} with a body: device-function calls are not supported \
                     (nvcc inlines them at -O3)",
                    f.name
                ),
            );
        }
    }
    let mut kernels = Vec::new();
    for f in m.functions.iter().filter(|f| f.is_entry) {
        kernels.push(lower_kernel(
            f,
            &gsyms,
            &module_shared,
            &module_extern_shared,
        )?);
    }
    Ok(Program { kernels, globals })
}

fn make_global(v: &VarDecl, size: u64) -> LResult<GlobalVar> {
    let size_us =
        usize::try_from(size).map_err(|_| format!("PTX line {}: global too large", v.line))?;
    if size > (1 << 32) {
        return err(v.line, "module global larger than 4 GB");
    }
    let mut storage = vec![0u8; size_us.max(1)].into_boxed_slice();
    let elem = type_size(&v.ty).unwrap_or(1) as usize;
    for (i, imm) in v.init.iter().enumerate() {
        let bits = match *imm {
            Imm::Int(x) => x as u64,
            Imm::F32(b) if elem == 8 => (f32::from_bits(b) as f64).to_bits(),
            Imm::F32(b) => b as u64,
            Imm::F64(b) if elem == 4 => (f64::from_bits(b) as f32).to_bits() as u64,
            Imm::F64(b) => b,
        };
        let at = i * elem;
        if at + elem > storage.len() {
            return err(
                v.line,
                format!("initialiser of {} longer than the array", v.name),
            );
        }
        storage[at..at + elem].copy_from_slice(&bits.to_le_bytes()[..elem]);
    }
    let addr = storage.as_ptr() as u64;
    Ok(GlobalVar {
        name: v.name.clone(),
        addr,
        size,
        storage,
    })
}

fn lower_kernel(
    f: &Function,
    gsyms: &HashMap<String, SymVal>,
    module_shared: &HashMap<String, (u64, u32)>,
    module_extern_shared: &HashMap<String, u32>,
) -> LResult<KernelCode> {
    let mut params = Vec::new();
    let mut syms = gsyms.clone();
    let mut off = 0u64;
    for p in &f.params {
        let (size, align) = decl_size(p)?;
        off = align_up(off, align as u64);
        params.push(super::api::ParamInfo {
            offset: off as u32,
            size: size as u32,
            align,
        });
        syms.insert(p.name.clone(), SymVal::Param(off));
        off += size;
    }
    if off > 32764 {
        return err(
            f.line,
            format!(
                "kernel {} has {off} bytes of parameters (limit 32764)",
                f.name
            ),
        );
    }
    let mut cx = Ctx {
        slots: HashMap::new(),
        reg_names: Vec::new(),
        scopes: vec![HashMap::new()],
        declared: Default::default(),
        syms,
        module_shared,
        module_extern_shared,
        shared_end: 0,
        extern_shared: Vec::new(),
        labels: HashMap::new(),
    };
    let body = f.body.as_deref().unwrap_or(&[]);
    let mut flat = Flat { instrs: Vec::new() };
    let mut local_end = 0u64;
    let mut scope_id = 0u32;
    flatten(body, &mut cx, &mut flat, &mut local_end, &mut scope_id, 0)?;
    for i in &flat.instrs {
        for o in &i.operands {
            for name in symbols_of(o) {
                cx.touch_module_shared(name);
            }
        }
    }
    // The dynamic shared area starts after the static one, aligned as the strictest extern
    // declaration asks (at least 16 bytes, as the hardware guarantees).
    let dyn_align = cx
        .extern_shared
        .iter()
        .map(|e| e.1)
        .max()
        .unwrap_or(16)
        .max(16) as u64;
    let dyn_off = align_up(cx.shared_end, dyn_align);
    for (name, _) in cx.extern_shared.clone() {
        cx.syms.insert(name, SymVal::Shared(dyn_off));
    }

    let mut insts = Vec::with_capacity(flat.instrs.len() + 1);
    for ins in &flat.instrs {
        insts.push(decode(ins, &mut cx)?);
    }
    // Falling off the end of a kernel exits.
    insts.push(Inst {
        op: super::program::Op::Exit,
        guard: None,
        line: f.line,
        class: "control",
    });
    let regs = super::regalloc::compact(&mut insts, cx.reg_names.len() as u32);
    let t = &f.tuning;
    let max_threads = t
        .maxntid
        .or(t.reqntid)
        .map(|d| d.iter().map(|&x| x.max(1)).product())
        .unwrap_or(super::api::limits::MAX_THREADS_PER_BLOCK);
    Ok(KernelCode {
        name: f.name.clone(),
        params,
        static_shared: cx.shared_end as u32,
        dynamic_shared_offset: dyn_off as u32,
        local_bytes: local_end as u32,
        num_regs: (cx.reg_names.len() as u32).min(255),
        max_threads,
        reqntid: t.reqntid,
        regs,
        reg_names: cx.reg_names,
        reconv: super::program::reconvergence(&insts),
        wgmma: super::wgmma::analyse(&insts, regs),
        insts,
    })
}

/// Symbol names an operand mentions (values and address bases).
fn symbols_of(o: &Operand) -> Vec<&str> {
    match o {
        Operand::Sym(n) => vec![n.as_str()],
        Operand::Addr {
            base: crate::ptx::AddrBase::Sym(n),
            ..
        } => vec![n.as_str()],
        Operand::Vec(v) => v.iter().flat_map(symbols_of).collect(),
        _ => Vec::new(),
    }
}

fn flatten(
    stmts: &[Stmt],
    cx: &mut Ctx,
    flat: &mut Flat,
    local_end: &mut u64,
    scope_id: &mut u32,
    depth: u32,
) -> LResult<()> {
    if depth > 64 {
        return err(0, "scopes nested deeper than 64");
    }
    // Declarations first: PTX lets a scope use a register declared further down.
    for s in stmts {
        if let Stmt::Decl(d) = s {
            declare(d, cx, local_end, *scope_id)?;
        }
    }
    for s in stmts {
        match s {
            Stmt::Decl(_) | Stmt::Pragma(..) => {}
            Stmt::Label(name, line) => {
                if cx
                    .labels
                    .insert(name.clone(), flat.instrs.len() as u32)
                    .is_some()
                {
                    return err(*line, format!("label {name} defined twice"));
                }
                cx.syms.insert(name.clone(), SymVal::Label);
            }
            Stmt::Instr(i) => {
                let mut i = i.clone();
                qualify(&mut i, cx);
                flat.instrs.push(i);
            }
            Stmt::Block(inner) => {
                *scope_id += 1;
                cx.scopes.push(HashMap::new());
                let r = flatten(inner, cx, flat, local_end, scope_id, depth + 1);
                cx.scopes.pop();
                r?;
            }
        }
    }
    Ok(())
}

/// Rewrites register names of an instruction to their scope-qualified names, so that the
/// decoder sees one flat namespace.
fn qualify(i: &mut Instr, cx: &Ctx) {
    let q = |n: &mut String| {
        if let Some(qn) = cx.scopes.iter().rev().find_map(|s| s.get(n.as_str())) {
            *n = qn.clone();
        }
    };
    if let Some((_, g)) = &mut i.guard {
        q(g);
    }
    fn walk(o: &mut Operand, q: &dyn Fn(&mut String)) {
        match o {
            Operand::Reg(n) | Operand::NotReg(n) => q(n),
            Operand::RegPair(a, b) => {
                q(a);
                q(b);
            }
            Operand::Addr {
                base: crate::ptx::AddrBase::Reg(n),
                ..
            } => q(n),
            Operand::Vec(v) => v.iter_mut().for_each(|e| walk(e, q)),
            _ => {}
        }
    }
    for o in &mut i.operands {
        walk(o, &q);
    }
}

fn declare(d: &VarDecl, cx: &mut Ctx, local_end: &mut u64, scope_id: u32) -> LResult<()> {
    match d.space {
        Space::Reg => {
            let top = cx.scopes.last_mut().expect("a scope is always open");
            let mut add = |name: String| {
                let q = if scope_id == 0 {
                    name.clone()
                } else {
                    format!("{name}#{scope_id}")
                };
                // The qualified name maps to itself in the flat namespace.
                top.insert(name, q.clone());
                q
            };
            let mut quals = Vec::new();
            match d.range {
                Some(n) => {
                    for k in 0..n {
                        quals.push(add(format!("{}{k}", d.name)));
                    }
                }
                None => quals.push(add(d.name.clone())),
            }
            cx.declared.extend(quals);
        }
        Space::Local => {
            let (size, align) = decl_size(d)?;
            let off = align_up(*local_end, align as u64);
            *local_end = off + size;
            cx.syms.insert(d.name.clone(), SymVal::Local(off));
        }
        Space::Shared if d.is_extern => {
            cx.extern_shared
                .push((d.name.clone(), d.align.unwrap_or(16)));
        }
        Space::Shared => {
            let (size, align) = decl_size(d)?;
            let off = align_up(cx.shared_end, align as u64);
            cx.shared_end = off + size;
            cx.syms.insert(d.name.clone(), SymVal::Shared(off));
        }
        Space::Param | Space::Global | Space::Const => {
            return err(
                d.line,
                format!(".{:?} declaration inside a kernel body", d.space).to_lowercase(),
            )
        }
    }
    Ok(())
}
