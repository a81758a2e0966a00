//! Syntax tree of a PTX module, as close to the text as is useful. Lowering
//! (`crate::sim::lower`) gives it meaning; the parser only checks syntax.

/// State space of a variable or an instruction's memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    Reg,
    Global,
    Shared,
    Const,
    Local,
    Param,
}

/// A declaration: `.reg .b32 %r<100>;`, `.shared .align 16 .b8 buf[1024];`,
/// `.global .align 4 .b8 tbl[24] = {1, 2, ...};`, a parameter, a `.local` depot.
#[derive(Clone, Debug, PartialEq)]
pub struct VarDecl {
    pub space: Space,
    /// `.extern` (e.g. `.extern .shared .align 16 .b8 smem[];`).
    pub is_extern: bool,
    /// `.visible` / `.weak` / `.common` linkage (ignored by the simulator, kept for messages).
    pub linkage: Option<String>,
    pub align: Option<u32>,
    /// `.v2` / `.v4` vector declarations.
    pub vector: Option<u32>,
    /// Element type without the dot: "b8", "f32", "pred", "u64", ...
    pub ty: String,
    pub name: String,
    /// `%r<100>`: the declaration names %r0 .. %r99.
    pub range: Option<u32>,
    /// Array dimensions: `[1024]` is `Some(1024)`, `[]` is `None`. Empty for scalars.
    pub dims: Vec<Option<u64>>,
    /// Initialiser values, flattened, as written (integers or float bit patterns).
    pub init: Vec<Imm>,
    /// `.ptr .shared .align 16` attributes of kernel parameters, if any (kept verbatim).
    pub ptr_attrs: Vec<String>,
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Imm {
    /// Integer literal (decimal, hex 0x, octal 0, binary 0b), optionally negative; the `U`
    /// suffix is accepted. Stored as two's complement bits.
    Int(i64),
    /// `0fXXXXXXXX` or a decimal float literal in an f32 context: the bits.
    F32(u32),
    /// `0dXXXXXXXXXXXXXXXX`: the bits.
    F64(u64),
}

/// An address expression inside `[...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum AddrBase {
    /// `[%rd1]`, `[%r5+16]`
    Reg(String),
    /// `[param_name]`, `[shared_array+8]`, `[__local_depot0]`
    Sym(String),
    /// `[1024]`: an absolute address.
    Abs,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// `%r1`, `%tid.x`, `%SPL`, also scoped inline-asm names like `low`.
    Reg(String),
    /// `%r1|%p2` (shfl destination with predicate output; also setp's `p|q`).
    RegPair(String, String),
    /// `!%p1` as a source operand (e.g. `and.pred %p3, %p1, !%p2`; `selp` never needs it).
    NotReg(String),
    Imm(Imm),
    /// A symbol used as a value: `mov.u64 %rd1, smem;`, `mov.b64 %rd2, kernel_param_0;`,
    /// and branch targets `bra $L__BB0_3;`.
    Sym(String),
    /// `[base+offset]` / `[base-offset]` / `[base]`.
    Addr {
        base: AddrBase,
        offset: i64,
    },
    /// `{%f1, %f2, %f3, %f4}`; elements may also be `_` (sink), kept as `Reg("_")`. The
    /// tensor operand `[map, {c0, c1}]` of `cp.async.bulk.tensor` is a two-element `Vec`:
    /// the address, then the coordinates.
    Vec(Vec<Operand>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instr {
    /// `@%p1` is `Some((false, "%p1"))`, `@!%p1` is `Some((true, "%p1"))`.
    pub guard: Option<(bool, String)>,
    /// The mnemonic before the first dot: "mma", "ld", "cvt", "bra", ...
    pub opcode: String,
    /// Dot-separated modifiers in order, without dots:
    /// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32` gives
    /// ["sync","aligned","m16n8k16","row","col","f32","f16","f16","f32"].
    pub mods: Vec<String>,
    pub operands: Vec<Operand>,
    /// 1-based source line.
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Decl(VarDecl),
    Label(String, u32),
    Instr(Instr),
    /// `{ ... }`: a nested scope (inline asm blocks) with its own declarations.
    Block(Vec<Stmt>),
    /// Function-body directives such as `.pragma "nounroll";` (kept, ignored).
    Pragma(String, u32),
}

/// Performance-tuning directives of an entry (`.maxntid 256, 1, 1`, `.reqntid`, ...).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tuning {
    pub maxntid: Option<[u32; 3]>,
    pub reqntid: Option<[u32; 3]>,
    pub minnctapersm: Option<u32>,
    pub maxnreg: Option<u32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// `.entry` (kernel) or `.func`.
    pub is_entry: bool,
    pub name: String,
    /// `.func (.param .b32 retval) name (...)`
    pub returns: Vec<VarDecl>,
    pub params: Vec<VarDecl>,
    pub tuning: Tuning,
    /// `None` for a prototype/declaration without a body.
    pub body: Option<Vec<Stmt>>,
    pub line: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    /// `.version 9.0` as (9, 0).
    pub version: (u32, u32),
    /// `.target sm_80` targets, e.g. ["sm_80"] or ["sm_90a"].
    pub target: Vec<String>,
    pub address_size: u32,
    /// Module-scope variables (`.global`, `.const`, `.shared`, `.extern .shared`).
    pub vars: Vec<VarDecl>,
    pub functions: Vec<Function>,
}

/// A syntax error: message and 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PTX line {}: {}", self.line, self.message)
    }
}
