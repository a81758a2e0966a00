//! PTX parser: tokens from [`super::lexer`] to the [`Module`] of `ast.rs`.
//!
//! Recursive descent over a pre-lexed token vector. The parser checks syntax only, but it
//! is deliberately strict: a directive or operand form it does not know is an error naming
//! the construct and its line, never silently dropped, because a simulator that quietly
//! ignores part of a kernel gives wrong answers that look right. The only things skipped
//! are debug-info directives (`.file`, `.loc`, `.section` blocks; `@@DWARF` lines go in the
//! lexer), which carry no semantics.
//!
//! Conventions the AST leaves open, fixed here:
//! - A bare name operand is [`Operand::Reg`] if it starts with `%`, is `_`, or was declared
//!   `.reg` in an enclosing scope (inline-asm `low`, `p`); otherwise it is [`Operand::Sym`]
//!   (variables, parameters, labels, callees). So `.param` names in call sequences are symbols.
//! - `call` always gets exactly three operands: `Vec(returns)`, `Sym(callee)`, `Vec(args)`,
//!   with empty vectors where the text has none, so lowering need not guess which is which.
//! - Decimal float literals are [`Imm::F64`] bits, except in a clearly-f32 place: the
//!   initialiser of an `.f32` variable, or an instruction with an `f32` and no `f64`
//!   modifier, where they are [`Imm::F32`] bits. nvcc always writes `0f`/`0d` hex anyway.
//!   A leading `-` on a `0f`/`0d` literal flips its sign bit.
//! - `.ptr` parameter attributes are kept without dots, `.align` with its value:
//!   `.ptr .global .align 1` gives `["ptr", "global", "align 1"]`; an `.align` before
//!   `.ptr` is the parameter's own alignment and goes to `align`.
//! - `.target` keeps every comma-separated item (`sm_80, debug` gives both). A missing
//!   `.address_size` means 32, as the PTX ISA says. `.noreturn` on a function is accepted
//!   and dropped (a hint without semantics), as is function linkage (no AST field).
//! - Line of a declaration list or statement: the line of its first token.

use super::ast::*;
use super::lexer::{bail, Cursor, Kind, PResult};

/// Nesting limit for blocks and initialiser braces: garbage input must give an error, not
/// a stack overflow. Real PTX nests two or three deep.
const MAX_DEPTH: u32 = 64;

/// Element types a declaration may use. Opaque `.texref`-style types are left out on
/// purpose: the simulator has no texture path, so they should fail at parse time.
const TYPES: &[&str] = &[
    "b8", "b16", "b32", "b64", "b128", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "f16",
    "f16x2", "bf16", "bf16x2", "tf32", "f32", "f64", "e4m3", "e5m2", "e4m3x2", "e5m2x2", "pred",
];

/// A declaration with nothing set, for struct-update syntax.
const BLANK_DECL: VarDecl = VarDecl {
    space: Space::Reg,
    is_extern: false,
    linkage: None,
    align: None,
    vector: None,
    ty: String::new(),
    name: String::new(),
    range: None,
    dims: Vec::new(),
    init: Vec::new(),
    ptr_attrs: Vec::new(),
    line: 0,
};

/// Parses one PTX module.
pub fn parse(src: &str) -> Result<Module, ParseError> {
    Parser {
        cur: Cursor::new(src)?,
        regs: Vec::new(),
        depth: 0,
    }
    .module()
}

struct Parser<'a> {
    cur: Cursor<'a>,
    /// Non-`%` names declared `.reg` in the enclosing scopes, with their `<N>` range if any:
    /// the only way to tell inline-asm registers (`low`) from symbols (`smem`) by syntax.
    regs: Vec<(&'a str, Option<u32>)>,
    depth: u32,
}

impl<'a> std::ops::Deref for Parser<'a> {
    type Target = Cursor<'a>;
    fn deref(&self) -> &Cursor<'a> {
        &self.cur
    }
}

impl<'a> std::ops::DerefMut for Parser<'a> {
    fn deref_mut(&mut self) -> &mut Cursor<'a> {
        &mut self.cur
    }
}

/// Whether `regs` (names with optional `<N>` ranges) declares `name`.
fn declares(regs: &[(&str, Option<u32>)], name: &str) -> bool {
    let in_range = |rest: &str, k: u32| {
        rest.bytes().all(|b| b.is_ascii_digit()) && rest.parse::<u32>().is_ok_and(|i| i < k)
    };
    regs.iter().any(|&(n, range)| match range {
        None => n == name,
        Some(k) => name.strip_prefix(n).is_some_and(|rest| in_range(rest, k)),
    })
}

/// A `.reg` covers its whole scope, so a name used above its declaration was taken for a
/// symbol: make such uses in `stmts` (callees aside) registers of `regs`.
fn promote(stmts: &mut [Stmt], regs: &[(&str, Option<u32>)]) {
    fn fix(o: &mut Operand, regs: &[(&str, Option<u32>)]) {
        match o {
            Operand::Sym(n) if declares(regs, n) => *o = Operand::Reg(std::mem::take(n)),
            Operand::Addr { base, .. } => match base {
                AddrBase::Sym(n) if declares(regs, n) => *base = AddrBase::Reg(std::mem::take(n)),
                _ => {}
            },
            Operand::Vec(v) => v.iter_mut().for_each(|e| fix(e, regs)),
            _ => {}
        }
    }
    for s in stmts {
        match s {
            Stmt::Instr(i) => {
                let is_call = i.opcode == "call";
                let ops = i.operands.iter_mut().enumerate();
                ops.filter(|(k, _)| !is_call || *k != 1)
                    .for_each(|(_, o)| fix(o, regs));
            }
            Stmt::Block(b) => promote(b, regs),
            _ => {}
        }
    }
}

fn space_of(d: &str) -> Space {
    match d {
        ".global" => Space::Global,
        ".shared" => Space::Shared,
        ".const" => Space::Const,
        ".local" => Space::Local,
        ".param" => Space::Param,
        _ => Space::Reg,
    }
}

impl<'a> Parser<'a> {
    fn enter(&mut self, line: u32) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            bail!(line, "nesting deeper than {MAX_DEPTH} levels");
        }
        Ok(())
    }

    /// `item, item, ...` (at least one item): the shape of most PTX lists.
    fn comma_list<T>(&mut self, mut item: impl FnMut(&mut Self) -> PResult<T>) -> PResult<Vec<T>> {
        let mut out = vec![item(self)?];
        while self.eat(b',') {
            out.push(item(self)?);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- module scope

    fn module(mut self) -> PResult<Module> {
        let mut m = Module {
            version: (0, 0),
            target: Vec::new(),
            address_size: 32,
            vars: Vec::new(),
            functions: Vec::new(),
        };
        let mut have_version = false;
        loop {
            let t = self.peek();
            match (t.kind, self.text(t)) {
                (Kind::Eof, _) => break,
                (Kind::Dot, ".file" | ".loc") => self.skip_line(),
                (Kind::Dot, ".section") => self.skip_section()?,
                (Kind::Dot, ".version") if !have_version => {
                    self.bump();
                    m.version = self.version()?;
                    have_version = true;
                }
                _ if !have_version => return self.found(t, "`.version` first"),
                (Kind::Dot, ".version") => bail!(t.line, "duplicate `.version`"),
                (Kind::Dot, ".target") => {
                    self.bump();
                    let what = "a `.target` item such as `sm_80`";
                    let items = self.comma_list(|p| Ok(p.ident(what)?.to_string()))?;
                    m.target.extend(items);
                }
                (Kind::Dot, ".address_size") => {
                    self.bump();
                    m.address_size = self.u32("an address size")?;
                    if !matches!(m.address_size, 32 | 64) {
                        bail!(
                            t.line,
                            "`.address_size {}` must be 32 or 64",
                            m.address_size
                        );
                    }
                }
                _ if m.target.is_empty() => return self.found(t, "`.target`"),
                (Kind::Dot, _) => self.module_item(&mut m)?,
                _ => return self.found(t, "a directive at module scope"),
            }
        }
        if !have_version {
            bail!(1, "missing `.version` directive");
        }
        if m.target.is_empty() {
            bail!(self.peek().line, "missing `.target` directive");
        }
        Ok(m)
    }

    /// A variable or function, after optional linkage (`.visible`, `.extern`, ...).
    fn module_item(&mut self, m: &mut Module) -> PResult<()> {
        let line = self.peek().line;
        let mut linkage = None;
        let mut is_extern = false;
        loop {
            match self.dot() {
                ".extern" => is_extern = true,
                l @ (".visible" | ".weak" | ".common") => linkage = Some(l[1..].to_string()),
                _ => break,
            }
            self.bump();
        }
        match self.dot() {
            ".entry" | ".func" => {
                let f = self.function(line)?;
                m.functions.push(f);
            }
            d @ (".global" | ".const" | ".shared" | ".local") => {
                self.bump();
                let decls = self.decls(space_of(d), linkage, is_extern, line, true)?;
                m.vars.extend(decls);
                self.expect(b';', "after a variable declaration")?;
            }
            _ => {
                let t = self.peek();
                bail!(
                    t.line,
                    "unsupported directive {} at module scope",
                    self.show(t)
                );
            }
        }
        Ok(())
    }

    fn function(&mut self, line: u32) -> PResult<Function> {
        let kw = self.bump();
        let is_entry = self.text(kw) == ".entry";
        // `.reg` parameters of a `.func` are registers in its body, and only there.
        let mark = self.regs.len();
        let returns = if is_entry {
            Vec::new()
        } else {
            self.param_list()?
        };
        let nt = self.peek();
        let name = self.ident("a function name")?;
        if name.starts_with('%') {
            return self.found(nt, "a function name");
        }
        let params = self.param_list()?;
        let mut tuning = Tuning::default();
        while self.peek().kind == Kind::Dot {
            let t = self.bump();
            match self.text(t) {
                ".maxntid" => tuning.maxntid = Some(self.dim3()?),
                ".reqntid" => tuning.reqntid = Some(self.dim3()?),
                ".minnctapersm" => tuning.minnctapersm = Some(self.u32("a CTA count")?),
                ".maxnreg" => tuning.maxnreg = Some(self.u32("a register count")?),
                ".noreturn" => {}
                _ => bail!(t.line, "unsupported function directive {}", self.show(t)),
            }
        }
        let body = if self.eat(b';') {
            None
        } else {
            let open = self.expect(b'{', "or `;` after the function header")?;
            Some(self.block(open.line)?)
        };
        self.regs.truncate(mark);
        let name = name.to_string();
        Ok(Function {
            is_entry,
            name,
            returns,
            params,
            tuning,
            body,
            line,
        })
    }

    /// `( .param ..., .reg ... )`; no parentheses at all is an empty list.
    fn param_list(&mut self) -> PResult<Vec<VarDecl>> {
        if !self.eat(b'(') || self.eat(b')') {
            return Ok(Vec::new());
        }
        let params = self.comma_list(|p| {
            let t = p.peek();
            let space = match p.dot() {
                ".param" => Space::Param,
                ".reg" => Space::Reg,
                _ => return p.found(t, "a `.param` or `.reg` parameter"),
            };
            p.bump();
            p.decls(space, None, false, t.line, false)
        })?;
        self.expect(b')', "to close the parameter list")?;
        Ok(params.into_iter().flatten().collect())
    }

    // ---------------------------------------------------------------- declarations

    /// The part of a declaration after its state space: attributes, type, then one name
    /// (or, with `list`, several comma-separated names, one [`VarDecl`] each).
    fn decls(
        &mut self,
        space: Space,
        linkage: Option<String>,
        is_extern: bool,
        line: u32,
        list: bool,
    ) -> PResult<Vec<VarDecl>> {
        let mut proto = VarDecl {
            space,
            is_extern,
            linkage,
            line,
            ..BLANK_DECL
        };
        let mut in_ptr = false;
        while self.peek().kind == Kind::Dot {
            let t = self.bump();
            let a = self.word(t);
            match a {
                "align" => {
                    let n = self.u32("an alignment")?;
                    if in_ptr {
                        proto.ptr_attrs.push(format!("align {n}"));
                    } else {
                        proto.align = Some(n);
                    }
                }
                "ptr" if space == Space::Param => {
                    in_ptr = true;
                    proto.ptr_attrs.push(a.to_string());
                }
                "global" | "shared" | "const" | "local" if in_ptr => {
                    proto.ptr_attrs.push(a.to_string())
                }
                "v2" | "v4" | "v8" if proto.vector.is_none() => proto.vector = a[1..].parse().ok(),
                _ if TYPES.contains(&a) && proto.ty.is_empty() => proto.ty = a.to_string(),
                _ => bail!(t.line, "unexpected {} in a declaration", self.show(t)),
            }
        }
        if proto.ty.is_empty() {
            return self.found(self.peek(), "a type in the declaration");
        }
        if list {
            self.comma_list(|p| p.declared(&proto))
        } else {
            Ok(vec![self.declared(&proto)?])
        }
    }

    /// One declared name with its range, dimensions and initialiser, on top of `proto`.
    fn declared(&mut self, proto: &VarDecl) -> PResult<VarDecl> {
        let mut d = proto.clone();
        let name = self.ident("a declared name")?;
        d.name = name.to_string();
        if self.eat(b'<') {
            d.range = Some(self.u32("a register count")?);
            self.expect(b'>', "after the register count")?;
        }
        while self.eat(b'[') {
            let dim = if self.is_punct(b']') {
                None
            } else {
                Some(self.uint("an array size")?)
            };
            d.dims.push(dim);
            self.expect(b']', "after the array size")?;
        }
        if self.is_punct(b'=') {
            let t = self.bump();
            if matches!(d.space, Space::Reg | Space::Param) {
                bail!(
                    t.line,
                    "initialisers are only allowed on variables, not {:?}",
                    d.space
                );
            }
            let f32ctx = d.ty == "f32";
            self.init(f32ctx, &mut d.init)?;
        }
        if d.space == Space::Reg && !name.starts_with('%') {
            self.regs.push((name, d.range));
        }
        Ok(d)
    }

    /// An initialiser value or brace list; nested braces are flattened into `out`.
    fn init(&mut self, f32ctx: bool, out: &mut Vec<Imm>) -> PResult<()> {
        let t = self.peek();
        if self.eat(b'{') {
            self.enter(t.line)?;
            if !self.eat(b'}') {
                self.comma_list(|p| p.init(f32ctx, out))?;
                self.expect(b'}', "to close the initialiser list")?;
            }
            self.depth -= 1;
            return Ok(());
        }
        let neg = self.eat(b'-');
        let n = self.bump();
        if n.kind != Kind::Num {
            let what = if n.kind == Kind::Ident {
                " (symbolic initialisers are not supported)"
            } else {
                ""
            };
            bail!(n.line, "bad initialiser value {}{what}", self.show(n));
        }
        out.push(self.number(n, neg, f32ctx)?);
        Ok(())
    }

    fn is_reg(&self, name: &str) -> bool {
        name.starts_with('%') || name == "_" || declares(&self.regs, name)
    }

    // ---------------------------------------------------------------- bodies

    /// Statements up to the `}` matching an already consumed `{` on line `open`.
    fn block(&mut self, open: u32) -> PResult<Vec<Stmt>> {
        self.enter(open)?;
        let mark = self.regs.len();
        let mut out = Vec::new();
        loop {
            let t = self.peek();
            match t.kind {
                Kind::Eof => bail!(open, "unterminated `{{` block opened on line {open}"),
                Kind::Punct(b'}') => {
                    self.bump();
                    break;
                }
                Kind::Punct(b'{') => {
                    self.bump();
                    out.push(Stmt::Block(self.block(t.line)?));
                }
                Kind::Ident if self.peek2().kind == Kind::Punct(b':') => {
                    let name = self.text(t);
                    if name.starts_with('%') {
                        return self.found(t, "a label name");
                    }
                    self.pos += 2;
                    out.push(Stmt::Label(name.to_string(), t.line));
                }
                Kind::Ident | Kind::Punct(b'@') => out.push(Stmt::Instr(self.instr()?)),
                Kind::Dot => self.body_directive(&mut out)?,
                _ => return self.found(t, "a statement"),
            }
        }
        if self.regs.len() > mark {
            promote(&mut out, &self.regs[mark..]);
        }
        self.regs.truncate(mark);
        self.depth -= 1;
        Ok(out)
    }

    fn body_directive(&mut self, out: &mut Vec<Stmt>) -> PResult<()> {
        let t = self.peek();
        match self.dot() {
            d @ (".reg" | ".local" | ".shared" | ".param" | ".const" | ".global") => {
                self.bump();
                let decls = self.decls(space_of(d), None, false, t.line, true)?;
                out.extend(decls.into_iter().map(Stmt::Decl));
                self.expect(b';', "after a declaration")?;
            }
            ".pragma" => {
                self.bump();
                let parts = self.comma_list(|p| {
                    let s = p.bump();
                    let q = p.text(s);
                    match q.get(1..q.len().saturating_sub(1)) {
                        Some(inner) if s.kind == Kind::Str => Ok(inner),
                        _ => p.found(s, "a string after `.pragma`"),
                    }
                })?;
                self.expect(b';', "after `.pragma`")?;
                out.push(Stmt::Pragma(parts.join(", "), t.line));
            }
            ".loc" | ".file" => self.skip_line(),
            ".branchtargets" => bail!(t.line, "`.branchtargets` (brx.idx jump tables) unsupported"),
            d @ (".callprototype" | ".calltargets") => {
                bail!(t.line, "`{d}` (indirect call) is not supported")
            }
            _ => bail!(
                t.line,
                "unsupported directive {} in a function body",
                self.show(t)
            ),
        }
        Ok(())
    }

    fn instr(&mut self) -> PResult<Instr> {
        let line = self.peek().line;
        let guard = if self.eat(b'@') {
            let neg = self.eat(b'!');
            Some((neg, self.ident("a guard predicate after `@`")?.to_string()))
        } else {
            None
        };
        let t = self.peek();
        let opcode = self.text(t);
        if t.kind != Kind::Ident || !opcode.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return self.found(t, "an instruction");
        }
        self.bump();
        let mut mods = Vec::new();
        while self.peek().kind == Kind::Dot {
            let m = self.bump();
            mods.push(self.word(m).to_string());
        }
        let f32ctx = mods.iter().any(|m| m == "f32") && !mods.iter().any(|m| m == "f64");
        let mut operands = Vec::new();
        if opcode == "call" {
            operands = self.call_operands()?;
        } else if !self.is_punct(b';') {
            operands = self.comma_list(|p| p.operand(f32ctx, true))?;
        }
        self.expect(b';', "or `,` after an operand")?;
        let opcode = opcode.to_string();
        Ok(Instr {
            guard,
            opcode,
            mods,
            operands,
            line,
        })
    }

    /// `call (ret), f, (a, b)` / `call f, (a)` / `call f`: normalised to three operands.
    fn call_operands(&mut self) -> PResult<Vec<Operand>> {
        let rets = if self.is_punct(b'(') {
            let r = self.paren_list()?;
            self.expect(b',', "after the call's return list")?;
            r
        } else {
            Vec::new()
        };
        let t = self.peek();
        let callee = self.ident("a callee name")?;
        if self.is_reg(callee) {
            bail!(t.line, "indirect call through `{callee}` is not supported");
        }
        let args = if self.eat(b',') {
            self.paren_list()?
        } else {
            Vec::new()
        };
        if self.is_punct(b',') {
            let l = self.peek().line;
            bail!(l, "call prototype operand (indirect call) is not supported");
        }
        Ok(vec![
            Operand::Vec(rets),
            Operand::Sym(callee.to_string()),
            Operand::Vec(args),
        ])
    }

    fn paren_list(&mut self) -> PResult<Vec<Operand>> {
        self.expect(b'(', "to open a call operand list")?;
        if self.eat(b')') {
            return Ok(Vec::new());
        }
        let out = self.comma_list(|p| p.operand(false, false))?;
        self.expect(b')', "to close the call operand list")?;
        Ok(out)
    }

    /// One operand; `compound` allows vectors and addresses (not inside a vector).
    fn operand(&mut self, f32ctx: bool, compound: bool) -> PResult<Operand> {
        let t = self.bump();
        Ok(match t.kind {
            Kind::Ident => {
                let name = self.text(t);
                if self.eat(b'|') {
                    let second = self.ident("a second register after `|`")?;
                    Operand::RegPair(name.to_string(), second.to_string())
                } else if self.is_reg(name) {
                    Operand::Reg(name.to_string())
                } else {
                    Operand::Sym(name.to_string())
                }
            }
            Kind::Punct(b'!') => Operand::NotReg(self.ident("a predicate after `!`")?.to_string()),
            Kind::Num => Operand::Imm(self.number(t, false, f32ctx)?),
            Kind::Punct(b'-') => {
                let n = self.bump();
                if n.kind != Kind::Num {
                    return self.found(n, "a number after `-`");
                }
                Operand::Imm(self.number(n, true, f32ctx)?)
            }
            Kind::Punct(b'{') if compound => {
                let elems = self.comma_list(|p| p.operand(f32ctx, false))?;
                self.expect(b'}', "to close the vector operand")?;
                Operand::Vec(elems)
            }
            Kind::Punct(b'[') if compound => self.address()?,
            _ => bail!(t.line, "bad operand {}", self.show(t)),
        })
    }

    /// After `[`: `%rd1`, `%rd1+16`, `%rd1+-16`, `%rd1-8`, `sym`, `sym+8`, `1024`.
    fn address(&mut self) -> PResult<Operand> {
        let t = self.peek();
        let (base, mut offset) = match t.kind {
            Kind::Ident => {
                self.bump();
                let name = self.text(t);
                let reg = self.is_reg(name);
                (
                    if reg {
                        AddrBase::Reg(name.into())
                    } else {
                        AddrBase::Sym(name.into())
                    },
                    0,
                )
            }
            Kind::Num | Kind::Punct(b'-') => (AddrBase::Abs, self.offset(false)?),
            _ => return self.found(t, "a register, symbol or number in the address"),
        };
        if self.eat(b'+') {
            offset = offset.wrapping_add(self.offset(false)?);
        } else if self.eat(b'-') {
            offset = offset.wrapping_add(self.offset(true)?);
        }
        if self.eat(b',') {
            return self.tensor_address(base, offset);
        }
        let end = self.peek();
        if !self.eat(b']') {
            bail!(
                end.line,
                "unsupported address expression: {} where `]` was expected",
                self.show(end)
            );
        }
        Ok(Operand::Addr { base, offset })
    }

    /// `[map, {c0, c1}]` of the tensor copies, after the comma: `Vec([Addr, Vec(coords)])`.
    fn tensor_address(&mut self, base: AddrBase, offset: i64) -> PResult<Operand> {
        let t = self.bump();
        if t.kind != Kind::Punct(b'{') {
            bail!(
                t.line,
                "unsupported address expression: {} after `,` where `{{` (tensor coordinates) \
                 was expected",
                self.show(t)
            );
        }
        let coords = self.comma_list(|p| p.operand(false, false))?;
        self.expect(b'}', "to close the tensor coordinates")?;
        self.expect(b']', "to close the tensor operand")?;
        Ok(Operand::Vec(vec![
            Operand::Addr { base, offset },
            Operand::Vec(coords),
        ]))
    }

    fn offset(&mut self, neg: bool) -> PResult<i64> {
        let neg = neg ^ self.eat(b'-');
        let t = self.bump();
        match self.number(t, neg, false) {
            Ok(Imm::Int(v)) => Ok(v),
            _ => self.found(t, "an integer address offset"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operand::{Reg, Sym};

    const HDR: &str = ".version 9.0\n.target sm_80\n.address_size 64\n";

    /// Parses `src` as the body of a kernel; its first line is line 5.
    fn body(src: &str) -> Vec<Stmt> {
        let m = parse(&format!("{HDR}.entry k() {{\n{src}\n}}")).unwrap();
        m.functions[0].body.clone().unwrap()
    }

    /// The operands of the single instruction `src`, with `f32` literals per its modifiers.
    fn ops(src: &str) -> Vec<Operand> {
        match &body(src)[..] {
            [Stmt::Instr(i)] => i.operands.clone(),
            other => panic!("{src}: {other:?}"),
        }
    }

    fn ins(line: u32, text: &str, operands: Vec<Operand>) -> Stmt {
        let mut parts = text.split('.').map(String::from);
        let (opcode, guard) = (parts.next().unwrap(), None);
        Stmt::Instr(Instr {
            guard,
            opcode,
            mods: parts.collect(),
            operands,
            line,
        })
    }

    fn r(s: &str) -> Operand {
        Reg(s.into())
    }
    fn sym(s: &str) -> Operand {
        Sym(s.into())
    }
    fn imm(v: i64) -> Operand {
        Operand::Imm(Imm::Int(v))
    }
    fn at(base: &str, offset: i64) -> Operand {
        let base = match base {
            "" => AddrBase::Abs,
            b if b.starts_with('%') => AddrBase::Reg(b.into()),
            b => AddrBase::Sym(b.into()),
        };
        Operand::Addr { base, offset }
    }
    fn regs(v: &[&str]) -> Operand {
        Operand::Vec(v.iter().map(|s| r(s)).collect())
    }

    fn decl(space: Space, ty: &str, name: &str, line: u32) -> VarDecl {
        let (ty, name) = (ty.to_string(), name.to_string());
        VarDecl {
            space,
            ty,
            name,
            line,
            ..BLANK_DECL
        }
    }

    #[test]
    fn header_comments_and_entry_signature() {
        let src = "// c\n.version 9.0 /* a\n b */\n.target sm_90a, debug\n.address_size 64\n\
            .visible .entry k(\n .param .u64 .ptr .global .align 1 k_param_0,\n\
            .param .align 8 .b8 k_param_1[136]\n)\n.maxntid 256, 1, 1\n.reqntid 128\n\
            .minnctapersm 2\n.maxnreg 64\n{\n ret;\n}\n";
        let m = parse(src).unwrap();
        assert_eq!((m.version, m.address_size), ((9, 0), 64));
        assert_eq!(m.target, ["sm_90a", "debug"]);
        let mut p0 = decl(Space::Param, "u64", "k_param_0", 7);
        p0.ptr_attrs = vec!["ptr".into(), "global".into(), "align 1".into()];
        let mut p1 = decl(Space::Param, "b8", "k_param_1", 8);
        (p1.align, p1.dims) = (Some(8), vec![Some(136)]);
        let tuning = Tuning {
            maxntid: Some([256, 1, 1]),
            reqntid: Some([128, 1, 1]),
            minnctapersm: Some(2),
            maxnreg: Some(64),
        };
        let (name, returns, params) = ("k".to_string(), vec![], vec![p0, p1]);
        let body = Some(vec![ins(15, "ret", vec![])]);
        let f = Function {
            is_entry: true,
            name,
            returns,
            params,
            tuning,
            body,
            line: 6,
        };
        assert_eq!(m.functions, [f]);
    }

    #[test]
    fn funcs_prototypes_and_module_vars() {
        let src = format!(
            "{HDR}.func (.param .b32 func_retval0) f(.param .b32 f_param_0);\n\
            .extern .func h\n(\n.param .b64 h_p\n)\n;\n\
            .visible .func (.param .align 8 .b8 rv[16]) g()\n{{\nret;\n}}\n\
            .global .align 4 .b8 tbl[4] = {{65, 144, 0x1F, -1}};\n\
            .const .f32 cf[2] = {{1.5, 0f3F800000}};\n\
            .global .s32 nested[2][2] = {{{{1, 2}}, {{3, 4}}}}, scal = 5;\n\
            .extern .shared .align 128 .b8 smem[];\n.visible .global .v2 .u64 counter;\n"
        );
        let m = parse(&src).unwrap();
        let fs: Vec<_> = m
            .functions
            .iter()
            .map(|f| (&f.name[..], f.body.is_some()))
            .collect();
        assert_eq!(fs, [("f", false), ("h", false), ("g", true)]);
        let f = &m.functions[0];
        assert_eq!((f.is_entry, f.line), (false, 4));
        assert_eq!(f.returns, [decl(Space::Param, "b32", "func_retval0", 4)]);
        assert_eq!(f.params, [decl(Space::Param, "b32", "f_param_0", 4)]);
        assert_eq!(m.functions[1].params, [decl(Space::Param, "b64", "h_p", 7)]);
        let mut rv = decl(Space::Param, "b8", "rv", 10);
        (rv.align, rv.dims) = (Some(8), vec![Some(16)]);
        let g = &m.functions[2];
        assert_eq!((&g.returns, g.params.len()), (&vec![rv], 0));
        let mut tbl = decl(Space::Global, "b8", "tbl", 14);
        (tbl.align, tbl.dims) = (Some(4), vec![Some(4)]);
        tbl.init = [65, 144, 31, -1].map(Imm::Int).to_vec();
        let mut cf = decl(Space::Const, "f32", "cf", 15);
        cf.dims = vec![Some(2)];
        cf.init = vec![Imm::F32(1.5f32.to_bits()), Imm::F32(0x3F80_0000)];
        let mut nested = decl(Space::Global, "s32", "nested", 16);
        (nested.dims, nested.init) = (vec![Some(2), Some(2)], [1, 2, 3, 4].map(Imm::Int).to_vec());
        let mut scal = decl(Space::Global, "s32", "scal", 16);
        scal.init = vec![Imm::Int(5)];
        let mut smem = decl(Space::Shared, "b8", "smem", 17);
        (smem.is_extern, smem.align, smem.dims) = (true, Some(128), vec![None]);
        let mut counter = decl(Space::Global, "u64", "counter", 18);
        (counter.linkage, counter.vector) = (Some("visible".into()), Some(2));
        assert_eq!(m.vars, [tbl, cf, nested, scal, smem, counter]);
    }

    #[test]
    fn body_declarations() {
        let b = body(
            ".reg .pred %p<100>;\n.reg .b16 low, high;\n\
            .local .align 4 .b8 __local_depot0[28];\n.shared .align 16 .b8 buf[1024];",
        );
        let mut p = decl(Space::Reg, "pred", "%p", 5);
        p.range = Some(100);
        let mut depot = decl(Space::Local, "b8", "__local_depot0", 7);
        (depot.align, depot.dims) = (Some(4), vec![Some(28)]);
        let mut buf = decl(Space::Shared, "b8", "buf", 8);
        (buf.align, buf.dims) = (Some(16), vec![Some(1024)]);
        let low = decl(Space::Reg, "b16", "low", 6);
        let high = decl(Space::Reg, "b16", "high", 6);
        assert_eq!(b, [p, low, high, depot, buf].map(Stmt::Decl));
    }

    #[test]
    fn labels_guards_and_lines() {
        let b = body("@%p1 bra $L__BB0_3;\n@!%p1 bra.uni $L__BB0_3;\n$L__BB0_3:\nexit; ret;\ncp.async.commit_group;");
        let guarded = |line, neg, text| match ins(line, text, vec![sym("$L__BB0_3")]) {
            Stmt::Instr(i) => Stmt::Instr(Instr {
                guard: Some((neg, "%p1".into())),
                ..i
            }),
            _ => unreachable!(),
        };
        let want = vec![
            guarded(5, false, "bra"),
            guarded(6, true, "bra.uni"),
            Stmt::Label("$L__BB0_3".into(), 7),
            ins(8, "exit", vec![]),
            ins(8, "ret", vec![]),
            ins(9, "cp.async.commit_group", vec![]),
        ];
        assert_eq!(b, want);
    }

    #[test]
    fn operand_forms() {
        let mma =
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%f1,%f2}, {%r1}, {%r5}, {%f3};";
        let pair = Operand::RegPair("%r17".into(), "%p1".into());
        #[rustfmt::skip]
        let cases = vec![
            ("mov.u64 %SPL, __local_depot0;", vec![r("%SPL"), sym("__local_depot0")]),
            ("mov.b64 %rd102, k_param_0;", vec![r("%rd102"), sym("k_param_0")]),
            ("shfl.sync.bfly.b32 %r17|%p1, %r14, 1, 31, -1;", vec![pair, r("%r14"), imm(1), imm(31), imm(-1)]),
            ("and.pred %p3, %p1, !%p2;", vec![r("%p3"), r("%p1"), Operand::NotReg("%p2".into())]),
            ("ld.global.nc.v4.f32 {%f1, %f2, _, %f4}, [%rd1+16];", vec![regs(&["%f1", "%f2", "_", "%f4"]), at("%rd1", 16)]),
            ("st.global.u32 [%rd1+-16], %r1;", vec![at("%rd1", -16), r("%r1")]),
            ("ld.local.u32 %r2, [%rd1-8];", vec![r("%r2"), at("%rd1", -8)]),
            ("ld.param.u64 %rd2, [k_param_0];", vec![r("%rd2"), at("k_param_0", 0)]),
            ("ld.shared.f32 %f1, [buf+8];", vec![r("%f1"), at("buf", 8)]),
            ("ld.global.u32 %r3, [1024];", vec![r("%r3"), at("", 1024)]),
            ("cp.async.cg.shared.global [%r89], [%rd3], 16, %r90;", vec![at("%r89", 0), at("%rd3", 0), imm(16), r("%r90")]),
            ("bar.warp.sync -1;", vec![imm(-1)]),
            ("cp.async.bulk.tensor.2d.shared::cluster.global [%r7], [%rd3, {%r2, %r9}], [%r5];",
             vec![at("%r7", 0), Operand::Vec(vec![at("%rd3", 0), regs(&["%r2", "%r9"])]), at("%r5", 0)]),
            (mma, vec![regs(&["%f1", "%f2"]), regs(&["%r1"]), regs(&["%r5"]), regs(&["%f3"])]),
        ];
        for (src, want) in cases {
            assert_eq!(ops(src), want, "{src}");
        }
        let specials = "%tid.x %ctaid.y %ntid.x %nctaid.z %laneid %warpid %SPL %clock64";
        for s in specials.split(' ') {
            assert_eq!(ops(&format!("mov.u32 %r1, {s};")), [r("%r1"), r(s)]);
        }
        let b = body(mma);
        let mods = "sync aligned m16n8k16 row col f32 f16 f16 f32";
        assert!(matches!(&b[0], Stmt::Instr(i) if i.opcode == "mma" && i.mods.join(" ") == mods));
    }

    #[test]
    fn scoped_blocks_calls_and_pragmas() {
        let b = body(
            "{ .reg .b16 low,high; mov.b32 {low,high},%r116; }\n{ cvt.rn.f16x2.f32 %r3, %f2, %f1; }\n\
            mov.u64 %rd1, low;\n{ // callseq 0, 0\n.param .b32 param0;\n.param .b32 retval0;\n\
            call.uni (retval0), \nf, \n(\nparam0\n);\n}\ncall.uni g, ();\ncall h;\n.pragma \"nounroll\";",
        );
        let call = |line, text, ret: Vec<Operand>, f: &str, args: Vec<Operand>| {
            ins(
                line,
                text,
                vec![Operand::Vec(ret), sym(f), Operand::Vec(args)],
            )
        };
        #[rustfmt::skip]
        let want = vec![
            Stmt::Block(vec![
                Stmt::Decl(decl(Space::Reg, "b16", "low", 5)),
                Stmt::Decl(decl(Space::Reg, "b16", "high", 5)),
                ins(5, "mov.b32", vec![regs(&["low", "high"]), r("%r116")]),
            ]),
            Stmt::Block(vec![ins(6, "cvt.rn.f16x2.f32", vec![r("%r3"), r("%f2"), r("%f1")])]),
            ins(7, "mov.u64", vec![r("%rd1"), sym("low")]),
            Stmt::Block(vec![
                Stmt::Decl(decl(Space::Param, "b32", "param0", 9)),
                Stmt::Decl(decl(Space::Param, "b32", "retval0", 10)),
                call(11, "call.uni", vec![sym("retval0")], "f", vec![sym("param0")]),
            ]),
            call(17, "call.uni", vec![], "g", vec![]),
            call(18, "call", vec![], "h", vec![]),
            Stmt::Pragma("nounroll".into(), 19),
        ];
        assert_eq!(b, want);
        // A `.reg` covers its whole block, even the lines above it.
        let b = format!(
            "{:?}",
            body("{ call.uni x, (x); mov.b32 x, [x]; .reg .b32 x; }")
        );
        assert!(b.contains(r#"[Vec([]), Sym("x"), Vec([Reg("x")])]"#), "{b}");
        assert!(
            b.contains(r#"[Reg("x"), Addr { base: Reg("x"), offset: 0 }]"#),
            "{b}"
        );
    }
}
