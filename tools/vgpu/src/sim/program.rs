//! The lowered program: a flat, pre-decoded instruction array per kernel with densely
//! numbered registers, so the interpreter never looks at names or strings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::api::{Fault, FaultKind, Module, ParamInfo};
use crate::isa::{CmpOp, IRnd, Rnd, Ty};

/// Address windows of the generic address space. Global memory is identity-mapped (host
/// addresses are below 2^47); the other state spaces sit in ranges no host pointer can take.
pub const SHARED_WINDOW: u64 = 0xFFFF_0000_0000_0000;
pub const LOCAL_WINDOW: u64 = 0xFFFE_0000_0000_0000;
pub const PARAM_WINDOW: u64 = 0xFFFD_0000_0000_0000;
pub const WINDOW_SIZE: u64 = 0x0000_0001_0000_0000;

/// Special registers, evaluated per lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    SmId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    Clock,
    Clock64,
    GlobalTimer,
    /// `%SPL`/`%SP` when not declared as a plain register.
    DynSmemSize,
    TotalSmemSize,
}

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Src {
    Reg(u32),
    /// Predicate register read negated (`!%p`).
    NotReg(u32),
    Imm(u64),
    Special(Special),
}

/// State space of a memory access. `Generic` is resolved per address through the windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemSpace {
    Global,
    Shared,
    Local,
    Param,
    Const,
    Generic,
}

/// `[reg + imm]` or `[imm]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Addr {
    pub base: Option<u32>,
    pub offset: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    MulLo,
    MulHi,
    MulWide,
    Div,
    Rem,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    CopySign,
    Mul24Lo,
    Mul24Hi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Mov,
    Not,
    Neg,
    Abs,
    Popc,
    Clz,
    Brev,
    Bfind,
    BfindShift,
    Cnot,
    Ex2,
    Lg2,
    Rcp,
    RcpApprox,
    Rsqrt,
    Sqrt,
    SqrtApprox,
    Sin,
    Cos,
    Tanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerOp {
    Fma,
    MadLo,
    MadHi,
    MadWide,
    Mad24Lo,
    Selp,
    Bfe,
    Prmt(u8),
    ShfL { clamp: bool },
    ShfR { clamp: bool },
    Lop3(u8),
    Sad,
}

/// Floating-point modifiers of an arithmetic instruction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FMods {
    pub rnd: Option<Rnd>,
    pub ftz: bool,
    pub sat: bool,
    /// `.approx` / `.full` variants of div, sqrt, rcp.
    pub approx: bool,
    /// Integer `.sat` (add.sat.s32) and min/max `.NaN`.
    pub nan: bool,
    /// `mul.rn` etc. written explicitly: no fma contraction either way; kept for fidelity.
    pub explicit_rnd: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

pub use crate::isa::atom::AtomOp;

pub use crate::isa::warp::{ShflMode, VoteMode};

/// `bar.red` reductions of a predicate over the participating threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedOp {
    /// `.popc.u32`: how many threads had it true.
    Popc,
    /// `.and.pred`
    And,
    /// `.or.pred`
    Or,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BarKind {
    /// Arrive and wait.
    Sync,
    /// Arrive without waiting (producer side of a named barrier).
    Arrive,
    /// Arrive, wait, and receive the reduction of `pred` in `d`.
    Red { op: RedOp, d: u32, pred: Src },
}

/// Tensor-core instruction shapes the simulator executes natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmaKind {
    /// m16n8k16 row.col f32 += f16 * f16
    M16n8k16F32F16,
    /// m16n8k16 row.col f32 += bf16 * bf16
    M16n8k16F32Bf16,
    /// m16n8k16 row.col f16 += f16 * f16
    M16n8k16F16F16,
    /// m16n8k8 row.col f32 += f16 * f16
    M16n8k8F32F16,
}

/// One decoded instruction. Register operands are dense indices into the warp's register
/// file; vectors are expanded; branch targets are instruction indices.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Un {
        op: UnOp,
        ty: Ty,
        m: FMods,
        d: u32,
        a: Src,
    },
    Bin {
        op: BinOp,
        ty: Ty,
        m: FMods,
        d: u32,
        a: Src,
        b: Src,
    },
    Ter {
        op: TerOp,
        ty: Ty,
        m: FMods,
        d: u32,
        a: Src,
        b: Src,
        c: Src,
    },
    Bfi {
        ty: Ty,
        d: u32,
        a: Src,
        b: Src,
        pos: Src,
        len: Src,
    },
    Setp {
        cmp: CmpOp,
        ty: Ty,
        ftz: bool,
        d: u32,
        dn: Option<u32>,
        a: Src,
        b: Src,
        comb: Option<(BoolOp, Src)>,
    },
    /// `set.cmp.dtype.stype`: all ones / 1.0f on true.
    Set {
        cmp: CmpOp,
        dty: Ty,
        ty: Ty,
        d: u32,
        a: Src,
        b: Src,
    },
    PredLogic {
        op: BoolOp,
        d: u32,
        a: Src,
        b: Src,
    },
    Cvt {
        dty: Ty,
        sty: Ty,
        frnd: Option<Rnd>,
        irnd: Option<IRnd>,
        ftz: bool,
        sat: bool,
        d: u32,
        a: Src,
    },
    /// `cvt.rn.f16x2.f32 d, a, b` (a to the upper half) and the bf16x2 form.
    CvtPack {
        bf16: bool,
        rnd: Rnd,
        relu: bool,
        sat: bool,
        d: u32,
        a: Src,
        b: Src,
    },
    /// `cvta.space` (to generic) / `cvta.to.space` (from generic).
    Cvta {
        to_generic: bool,
        space: MemSpace,
        wide: bool,
        d: u32,
        a: Src,
    },
    /// `mov.b32 %r, {a, b}`: parts packed low to high, `bits` each.
    Pack {
        bits: u32,
        d: u32,
        parts: Vec<Src>,
    },
    /// `mov.b32 {a, b}, %r`.
    Unpack {
        bits: u32,
        ds: Vec<Option<u32>>,
        a: Src,
    },
    /// `strong`: `.volatile`, `.relaxed` or `.acquire` (synchronisation, not a data race).
    Ld {
        space: MemSpace,
        ty: Ty,
        ds: Vec<Option<u32>>,
        addr: Addr,
        strong: bool,
    },
    /// `strong`: `.volatile`, `.relaxed` or `.release`.
    St {
        space: MemSpace,
        ty: Ty,
        srcs: Vec<Src>,
        addr: Addr,
        strong: bool,
    },
    /// `atom`/`red`, scalar or vector; `ty` is the element type, `b` has one operand per
    /// element and `d` one destination per element (`red`: none). Forms the ISA does not
    /// list are refused at load.
    Atom {
        space: MemSpace,
        op: AtomOp,
        ty: Ty,
        /// `.noftz`: `.add.f32` keeps subnormals on global memory too.
        noftz: bool,
        d: Vec<u32>,
        addr: Addr,
        b: Vec<Src>,
        c: Option<Src>,
    },
    Bra {
        target: u32,
    },
    Exit,
    /// `bar.sync` / `bar.arrive` / `bar.red` (and `barrier.*`, `.aligned` or not) with an
    /// optional thread count.
    Bar {
        id: Src,
        count: Option<Src>,
        aligned: bool,
        kind: BarKind,
    },
    BarWarp {
        mask: Src,
    },
    Shfl {
        mode: ShflMode,
        d: u32,
        p: Option<u32>,
        a: Src,
        b: Src,
        c: Src,
        mask: Src,
    },
    Vote {
        mode: VoteMode,
        d: u32,
        a: Src,
        mask: Src,
    },
    Activemask {
        d: u32,
    },
    Mma {
        kind: MmaKind,
        d: Vec<u32>,
        a: Vec<Src>,
        b: Vec<Src>,
        c: Vec<Src>,
    },
    Ldmatrix {
        num: u32,
        trans: bool,
        d: Vec<u32>,
        addr: Addr,
    },
    /// `cp.async.{ca,cg}.shared.global [dst], [src], cp_size{, src_size}`.
    CpAsync {
        dst: Addr,
        src: Addr,
        size: u32,
        src_size: Option<Src>,
    },
    CpAsyncCommit,
    /// `wait_group n`; `wait_all` also commits the open group first (ISA: it is
    /// `commit_group; wait_group 0`).
    CpAsyncWait {
        n: u32,
        all: bool,
    },
    /// `wgmma.mma_async` (see `sim::wgmma`): a collective of the warpgroup.
    Wgmma(Box<Wgmma>),
    /// `wgmma.fence.sync.aligned`
    WgmmaFence,
    /// `wgmma.commit_group.sync.aligned`
    WgmmaCommit,
    /// `wgmma.wait_group.sync.aligned n`
    WgmmaWait {
        n: u32,
    },
    /// `fence.proxy.async{.space}`: orders the thread's generic-proxy shared writes before
    /// later async-proxy reads (`sim::proxy`).
    FenceProxyAsync,
    /// Fences and hints with no effect in a sequentially consistent simulator.
    Nop,
    /// mbarrier, bulk copies, setmaxnreg (`sim::mbarrier`); run by the warp loop, since a
    /// wait may park the warp.
    Async(Box<super::mbarrier::AsyncOp>),
}

/// The A operand of `wgmma.mma_async`: a matrix descriptor or four registers per thread.
#[derive(Clone, Debug, PartialEq)]
pub enum WgA {
    Desc(Src),
    Regs(Vec<Src>),
}

/// `wgmma.mma_async.sync.aligned.m64nNk16.f32.{f16,bf16}` operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Wgmma {
    pub bf16: bool,
    pub n: u32,
    /// N/2 accumulator registers per thread.
    pub d: Vec<u32>,
    pub a: WgA,
    /// B's matrix descriptor.
    pub b: Src,
    /// Predicate (or immediate): false computes D = A*B without reading D.
    pub scale_d: Src,
    pub neg_a: bool,
    pub neg_b: bool,
    /// A M-major / B N-major in shared memory (imm-trans-a / imm-trans-b = 1).
    pub trans_a: bool,
    pub trans_b: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub op: Op,
    /// Guard predicate register and whether it is negated.
    pub guard: Option<(u32, bool)>,
    pub line: u32,
    /// Class name for the profile counters.
    pub class: &'static str,
}

pub struct KernelCode {
    pub name: String,
    pub params: Vec<ParamInfo>,
    pub static_shared: u32,
    /// Byte offset of the dynamic (`.extern .shared`) area in the block's shared memory.
    pub dynamic_shared_offset: u32,
    pub local_bytes: u32,
    pub num_regs: u32,
    pub max_threads: u32,
    /// `.reqntid`, when given: launches with another block shape fail.
    pub reqntid: Option<[u32; 3]>,
    pub insts: Vec<Inst>,
    /// Register slots per lane after compaction (`regalloc`); `reg_names` are the virtual
    /// registers the PTX declares.
    pub regs: u32,
    /// Register name of each slot, for messages.
    pub reg_names: Vec<String>,
    /// Reconvergence point of each instruction (its immediate post-dominator), or
    /// [`NO_RECONV`]; read when a branch diverges.
    pub reconv: Vec<u32>,
    /// Register tables of the wgmma checks; `None` when the kernel has no wgmma.
    pub wgmma: Option<Box<super::wgmma::KernelWgmma>>,
}

/// Paths that only meet at kernel exit (or never, in an endless loop).
pub const NO_RECONV: u32 = u32::MAX;

/// Immediate post-dominator of every instruction, over the instruction-level control-flow
/// graph with a virtual exit node (Cooper, Harvey and Kennedy's iterative algorithm on the
/// reverse graph). A diverged warp reconverges there, which is where the program's
/// structure joins its paths whatever the code layout: nvcc puts `[[unlikely]]` blocks
/// after `ret` and jumps back, so the lowest pc is not the join.
pub fn reconvergence(insts: &[Inst]) -> Vec<u32> {
    let n = insts.len();
    let exit = n;
    let succ = |i: usize| -> ([usize; 2], usize) {
        let guarded = insts[i].guard.is_some();
        match insts[i].op {
            Op::Bra { target } if guarded => ([target as usize, i + 1], 2),
            Op::Bra { target } => ([target as usize, 0], 1),
            Op::Exit if guarded => ([exit, i + 1], 2),
            Op::Exit => ([exit, 0], 1),
            _ => ([i + 1, 0], 1),
        }
    };
    // Predecessors in the forward graph are the successors in the reverse graph.
    let mut preds: Vec<Vec<u32>> = vec![Vec::new(); n + 1];
    for i in 0..n {
        let (s, k) = succ(i);
        for &t in &s[..k] {
            preds[t.min(exit)].push(i as u32);
        }
    }
    // Postorder of the reverse graph from the exit.
    const UNSEEN: usize = usize::MAX;
    let mut rank = vec![UNSEEN; n + 1];
    let mut order = Vec::with_capacity(n + 1);
    let mut seen = vec![false; n + 1];
    let mut stack = vec![(exit, 0usize)];
    seen[exit] = true;
    while let Some(&mut (v, ref mut k)) = stack.last_mut() {
        if let Some(&p) = preds[v].get(*k) {
            *k += 1;
            if !seen[p as usize] {
                seen[p as usize] = true;
                stack.push((p as usize, 0));
            }
        } else {
            rank[v] = order.len();
            order.push(v);
            stack.pop();
        }
    }
    let mut idom = vec![UNSEEN; n + 1];
    idom[exit] = exit;
    let intersect = |idom: &[usize], mut a: usize, mut b: usize| {
        while a != b {
            while rank[a] < rank[b] {
                a = idom[a];
            }
            while rank[b] < rank[a] {
                b = idom[b];
            }
        }
        a
    };
    let mut changed = true;
    while changed {
        changed = false;
        for &v in order.iter().rev().skip(1) {
            let (s, k) = succ(v);
            let mut new = UNSEEN;
            for &t in &s[..k] {
                let t = t.min(exit);
                if idom[t] != UNSEEN {
                    new = if new == UNSEEN {
                        t
                    } else {
                        intersect(&idom, t, new)
                    };
                }
            }
            if new != UNSEEN && idom[v] != new {
                idom[v] = new;
                changed = true;
            }
        }
    }
    idom[..n]
        .iter()
        .map(|&d| if d >= exit { NO_RECONV } else { d as u32 })
        .collect()
}

pub struct GlobalVar {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    /// Keeps the storage alive; `addr` points into it.
    pub storage: Box<[u8]>,
}

pub struct Program {
    pub kernels: Vec<KernelCode>,
    pub globals: Vec<GlobalVar>,
}

/// Loaded modules by content hash; each entry keeps its text so that a hash collision is
/// detected by comparison and never returns another module's code.
type Cache = HashMap<u64, Vec<(Arc<str>, Arc<Module>)>>;

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// FNV-1a over the text.
fn content_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Parses and lowers `ptx` once per distinct text.
pub fn load_cached(ptx: &str) -> Result<Arc<Module>, Fault> {
    let key = content_hash(ptx);
    let hit = cache().lock().ok().and_then(|c| {
        c.get(&key)?
            .iter()
            .find(|(text, _)| &**text == ptx)
            .map(|(_, m)| Arc::clone(m))
    });
    if let Some(m) = hit {
        return Ok(m);
    }
    let ast = crate::ptx::parse(ptx).map_err(|e| Fault {
        kind: FaultKind::InvalidPtx,
        message: e.to_string(),
    })?;
    let program = super::lower::lower(&ast).map_err(|e| Fault {
        kind: FaultKind::InvalidPtx,
        message: e,
    })?;
    let m = Arc::new(Module { inner: program });
    if let Ok(mut c) = cache().lock() {
        c.entry(key)
            .or_default()
            .push((Arc::from(ptx), Arc::clone(&m)));
    }
    Ok(m)
}
