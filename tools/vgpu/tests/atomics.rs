//! Every `atom`/`red` form the PTX ISA lists, computed per element: one table of small
//! kernels in which the threads of several warps (and blocks) hit the same word(s), checked
//! against a host model written from the ISA's definitions (not the simulator's code). For
//! `atom` rows the returned old values must also be a consistent history: some order of the
//! threads in which each one saw the value the one before it left. Forms the ISA does not
//! list are refused at load, and ptxas (next to nvcc) must agree on both lists, so the table
//! is legal PTX for sm_90.

mod common;
use common::*;

use std::path::PathBuf;
use std::process::Command;

use cuda::sim::{FaultKind, Module};

/// Where the atomic's address points and how it is written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mem {
    /// `.global` with the allocation's address.
    Global,
    /// No state space, address of the global allocation.
    GenericGlobal,
    /// `.shared` (or `.shared::cta`/`::cluster`) with a shared-window address.
    Shared,
    /// No state space, `cvta.shared` address.
    GenericShared,
}

struct Row {
    /// Opcode and modifiers as written in the kernel; operands are generated.
    inst: &'static str,
    mem: Mem,
    /// (grid, block); shared rows use one block.
    dims: (u32, u32),
    /// Initial value of each element.
    init: Vec<u64>,
    /// Operand `b` of thread `t`, element `k`.
    b: fn(u32, usize) -> u64,
    /// Operand `c` (`.cas`) of thread `t`.
    c: fn(u32) -> u64,
    /// The final values written out by hand (empty: the model's answer only).
    want: Vec<u64>,
}

const F16_1: u64 = 0x3c00;
const F16_2: u64 = 0x4000;
const BF16_1: u64 = 0x3f80;
const SEVERAL: (u32, u32) = (3, 64);
const BLOCK: (u32, u32) = (1, 128);

fn zero(_: u32) -> u64 {
    0
}

// One row per line: the table reads as a list of instructions.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use Mem::*;
    let r = |inst, mem, dims, init: &[u64], b, c, want: &[u64]| Row {
        inst,
        mem,
        dims,
        init: init.to_vec(),
        b,
        c,
        want: want.to_vec(),
    };
    vec![
        // The case: 4 x (1.0, 2.0) into an f16x2 word is (4.0, 8.0), not an integer sum.
        r("atom.global.add.noftz.f16x2", Global, (1, 4), &[0], |_, _| F16_1 | F16_2 << 16, zero, &[0x4800_4400]),
        r("atom.global.add.noftz.f16x2", Global, SEVERAL, &[0], |_, _| F16_1 | F16_2 << 16, zero, &[0x5e00_5a00]),
        r("red.shared.add.noftz.f16x2", Shared, BLOCK, &[0x3c00_bc00], |t, _| if t.is_multiple_of(2) { 0x3800_b800 } else { 0xb400_3400 }, zero, &[]),
        r("atom.add.noftz.bf16x2", GenericGlobal, SEVERAL, &[0], |_, _| 0xbf80_3f00, zero, &[0xc340_42c0]),
        r("atom.shared::cta.add.noftz.bf16x2", Shared, BLOCK, &[0x4000_c000], |t, _| if t < 64 { 0x3f80_3f80 } else { 0xbf80_4000 }, zero, &[]),
        r("atom.shared.add.noftz.f16", Shared, BLOCK, &[0], |_, _| 0x3400, zero, &[0x5000]),
        r("red.global.add.noftz.bf16", Global, SEVERAL, &[BF16_1], |_, _| 0x3e00, zero, &[]),
        // Rounding to nearest even at each step: 1 + 2^-11 (f16), 1 + 2^-8 (bf16) and
        // 1 + 2^-24 (f32) are ties, so the word never moves; subnormal f16 steps are kept.
        r("atom.global.add.noftz.f16", Global, SEVERAL, &[F16_1], |_, _| 0x1000, zero, &[F16_1]),
        r("atom.global.add.noftz.bf16x2", Global, SEVERAL, &[BF16_1 | BF16_1 << 16], |_, _| 0x3b80_3b80, zero, &[0x3f80_3f80]),
        r("atom.global.add.f32", Global, SEVERAL, &[0x3f80_0000], |_, _| 0x3380_0000, zero, &[0x3f80_0000]),
        r("red.global.add.noftz.f16", Global, SEVERAL, &[0], |_, _| 1, zero, &[192]),
        // f32 add flushes subnormals on global memory and keeps them on shared memory.
        r("atom.global.add.f32", Global, SEVERAL, &[0], |_, _| 1, zero, &[0]),
        r("red.add.f32", GenericGlobal, SEVERAL, &[0], |_, _| 1, zero, &[0]),
        r("atom.shared.add.f32", Shared, BLOCK, &[0], |_, _| 1, zero, &[128]),
        r("red.add.f32", GenericShared, BLOCK, &[0], |_, _| 1, zero, &[128]),
        r("atom.global.add.f32", Global, SEVERAL, &[0xc000_0000], |t, _| (0.25f32 * (t % 4) as f32).to_bits() as u64, zero, &[]),
        r("atom.global.add.f64", Global, SEVERAL, &[0], |t, _| ((t % 8) as f64 * 0.125 - 0.5).to_bits(), zero, &[]),
        r("red.shared.add.f64", Shared, BLOCK, &[1.5f64.to_bits()], |_, _| 0.5f64.to_bits(), zero, &[65.5f64.to_bits()]),
        // Vector forms (sm_90, global only); each element is its own atomic.
        r("atom.global.v2.f16x2.add.noftz", Global, SEVERAL, &[0, 0], |_, k| if k == 0 { F16_1 | F16_2 << 16 } else { 0x3800_3800 }, zero, &[0x5e00_5a00, 0x5600_5600]),
        r("red.global.v4.bf16x2.add.noftz", Global, SEVERAL, &[0; 4], |t, k| ((k as u64 + 1) * 0x80 + 0x3c00) * if t.is_multiple_of(2) { 1 } else { 0x10000 }, zero, &[]),
        r("atom.global.v4.f32.add", Global, SEVERAL, &[0; 4], |t, k| ((t % 3) as f32 + k as f32 * 0.5).to_bits() as u64, zero, &[]),
        r("atom.v2.f32.add", GenericGlobal, SEVERAL, &[0; 2], |_, k| if k == 0 { 1 } else { 0x3f80_0000 }, zero, &[0, 0x4340_0000]),
        r("atom.global.v8.f16.max.noftz", Global, SEVERAL, &[0xfc00; 8], |t, k| ((t * 7 + k as u32 * 13) % 200) as u64 * 0x10 + 0x3000, zero, &[]),
        r("atom.global.v8.bf16.min.noftz", Global, SEVERAL, &[0x7f80; 8], |t, k| (((t * 5 + k as u32 * 3) % 150) as u64 * 0x20 + 0x3000) | if (t + k as u32).is_multiple_of(3) { 0x8000 } else { 0 }, zero, &[]),
        r("red.global.v4.f16.add.noftz", Global, SEVERAL, &[0; 4], |_, k| 0x3800 + k as u64 * 0x400, zero, &[]),
        r("atom.global.v2.bf16x2.max.noftz", Global, SEVERAL, &[0xff80_ff80; 2], |t, k| ((t as u64 % 61) << (16 * (k as u64 & 1))) | 0x3f00_3f00, zero, &[]),
        r("red.global.v4.f16x2.min.noftz", Global, SEVERAL, &[0x7c00_7c00; 4], |t, k| ((t as u64 * 31 + k as u64) % 1000) * 0x10001 + 0x2000_2000, zero, &[]),
        // Integers: add, min/max signedness, 64 bits.
        r("atom.global.add.u32", Global, SEVERAL, &[0], |_, _| 1, zero, &[192]),
        r("atom.shared.add.s32", Shared, BLOCK, &[5], |t, _| (-(t as i64) as u64) & 0xffff_ffff, zero, &[(5 - 8128i64) as u64 & 0xffff_ffff]),
        r("atom.global.add.u64", Global, SEVERAL, &[0xffff_fff0], |t, _| 0x1_0000_0001 * (t as u64 + 1), zero, &[]),
        r("red.shared.add.u64", Shared, BLOCK, &[u64::MAX - 3], |_, _| 1, zero, &[124]),
        r("atom.global.min.s32", Global, SEVERAL, &[0], |t, _| (t as u64).wrapping_sub(100) & 0xffff_ffff, zero, &[(-100i32) as u32 as u64]),
        r("atom.global.min.u32", Global, SEVERAL, &[0xffff_ffff], |t, _| (t as u64).wrapping_sub(100) & 0xffff_ffff, zero, &[0]),
        r("atom.shared.max.s32", Shared, BLOCK, &[0x8000_0000], |t, _| (t as u64).wrapping_sub(64) & 0xffff_ffff, zero, &[63]),
        r("atom.shared.max.u32", Shared, BLOCK, &[0], |t, _| (t as u64).wrapping_sub(64) & 0xffff_ffff, zero, &[0xffff_ffff]),
        r("atom.global.min.s64", Global, SEVERAL, &[0], |t, _| (t as u64).wrapping_sub(1 << 40), zero, &[(1u64 << 40).wrapping_neg()]),
        r("atom.global.max.u64", Global, SEVERAL, &[0], |t, _| (t as u64).wrapping_sub(1 << 40), zero, &[(1u64 << 40).wrapping_neg() + 191]),
        r("red.global.max.s64", Global, SEVERAL, &[u64::MAX], |t, _| (t as u64 * 0x1_0000_0001).wrapping_sub(50), zero, &[]),
        r("atom.shared.min.u64", Shared, BLOCK, &[u64::MAX], |t, _| (t as u64 * 0x9e37_79b9_7f4a_7c15) | 1 << 63, zero, &[]),
        // inc/dec wrap: inc counts 0..=b then 0; dec counts down to 0, then b (and resets
        // anything above b to b).
        r("atom.global.inc.u32", Global, SEVERAL, &[0], |_, _| 16, zero, &[192 % 17]),
        r("atom.shared.dec.u32", Shared, BLOCK, &[3], |_, _| 9, zero, &[5]),
        r("red.global.dec.u32", Global, SEVERAL, &[1000], |_, _| 9, zero, &[8]),
        r("red.shared.inc.u32", Shared, BLOCK, &[50], |_, _| 0xffff_fff0, zero, &[178]),
        // Bit operations, exchange, compare-and-swap.
        r("atom.global.and.b32", Global, SEVERAL, &[0xffff_ffff], |t, _| !(1u64 << (t % 32)) & 0xffff_ffff, zero, &[0]),
        r("atom.shared.or.b64", Shared, BLOCK, &[0], |t, _| 1 << (t % 64), zero, &[u64::MAX]),
        r("atom.global.xor.b32", Global, SEVERAL, &[0x1234_5678], |t, _| (t as u64 * 0x9e37_79b9) & 0xffff_ffff, zero, &[]),
        r("red.global.xor.b64", Global, SEVERAL, &[7], |t, _| t as u64 * 0x9e37_79b9_7f4a_7c15, zero, &[]),
        r("atom.global.exch.b32", Global, SEVERAL, &[0xdead], |t, _| t as u64 + 1, zero, &[]),
        r("atom.shared.exch.b64", Shared, BLOCK, &[0xdead], |t, _| (t as u64 + 1) << 33, zero, &[]),
        r("atom.global.cas.b32", Global, SEVERAL, &[77], |_, _| 77, |t| t as u64 + 1000, &[]),
        r("atom.shared.cas.b64", Shared, BLOCK, &[1 << 40], |_, _| 1 << 40, |t| t as u64, &[]),
        r("atom.global.cas.b16", Global, SEVERAL, &[0x00ff], |t, _| if t.is_multiple_of(2) { 0x00ff } else { 0x0fff }, |t| t as u64 + 0x100, &[]),
        r("atom.shared.cas.b16", Shared, BLOCK, &[5], |_, _| 5, |_| 0xbeef, &[0xbeef]),
        // Ordering and scope qualifiers are accepted; values are the same.
        r("atom.acq_rel.gpu.global.add.u32", Global, SEVERAL, &[0], |_, _| 2, zero, &[384]),
        r("atom.acquire.sys.global.inc.u32", Global, SEVERAL, &[0], |_, _| 1000, zero, &[192]),
        r("atom.relaxed.cluster.shared::cluster.add.u32", Shared, BLOCK, &[0], |_, _| 1, zero, &[128]),
        r("red.release.cta.shared::cta.add.u32", Shared, BLOCK, &[0], |_, _| 3, zero, &[384]),
        r("red.relaxed.sys.add.u64", GenericGlobal, SEVERAL, &[0], |_, _| 1 << 32, zero, &[192 << 32]),
        r("atom.release.gpu.add.noftz.f16x2", GenericShared, BLOCK, &[0], |_, _| F16_1 | F16_2 << 16, zero, &[0x5c00_5800]),
        r("atom.global.add.L2::cache_hint.u32", Global, SEVERAL, &[0], |_, _| 1, zero, &[192]),
    ]
}

/// What a row's instruction is, read back from its modifiers.
struct Form {
    red: bool,
    op: &'static str,
    ty: &'static str,
    n: usize,
    noftz: bool,
    hint: bool,
}

fn form(inst: &str) -> Form {
    let parts: Vec<&str> = inst.split('.').collect();
    let pick = |set: &[&'static str]| set.iter().copied().find(|s| parts.contains(s));
    Form {
        red: parts[0] == "red",
        op: pick(&[
            "add", "min", "max", "inc", "dec", "and", "or", "xor", "exch", "cas",
        ])
        .unwrap(),
        ty: pick(&[
            "u32", "s32", "u64", "s64", "b16", "b32", "b64", "f16", "bf16", "f16x2", "bf16x2",
            "f32", "f64",
        ])
        .unwrap(),
        n: match pick(&["v2", "v4", "v8"]) {
            Some(v) => v[1..].parse().unwrap(),
            None => 1,
        },
        noftz: parts.contains(&"noftz"),
        hint: inst.contains("L2::cache_hint"),
    }
}

fn bytes_of(ty: &str) -> usize {
    match ty {
        "b16" | "f16" | "bf16" => 2,
        "u64" | "s64" | "b64" | "f64" => 8,
        _ => 4,
    }
}

// ---------------------------------------------------------------------------------------
// Host model, from the ISA's definitions

/// A float format's bits to its value, flushing subnormals when `flush`.
fn val(ty: &str, x: u64, flush: bool) -> f64 {
    let v = match ty {
        "f16" => h2f(x as u16) as f64,
        "bf16" => f32::from_bits((x as u32) << 16) as f64,
        "f32" => f32::from_bits(x as u32) as f64,
        _ => f64::from_bits(x),
    };
    if flush && v.abs() < f32::MIN_POSITIVE as f64 {
        0.0f64.copysign(v)
    } else {
        v
    }
}

/// The exact sum rounded once to nearest even, as bits of `ty`.
fn fadd(ty: &str, a: u64, b: u64, flush: bool) -> u64 {
    let fmt = match ty {
        "f16" => F16,
        "bf16" => BF16,
        "f32" => F32,
        _ => F64,
    };
    let (x, y) = (val(ty, a, flush), val(ty, b, flush));
    let terms: Vec<_> = [x, y]
        .iter()
        .filter(|v| **v != 0.0)
        .map(|&v| decompose(v))
        .collect();
    let s = if terms.is_empty() {
        // IEEE: -0 + -0 = -0, any other sum of zeros is +0.
        if x.is_sign_negative() && y.is_sign_negative() {
            -0.0
        } else {
            0.0
        }
    } else {
        round_sum(&terms, fmt, Mode::Rn)
    };
    match ty {
        "f16" => f16_encode(s) as u64,
        "bf16" => ((s as f32).to_bits() >> 16) as u64,
        "f32" => val_bits_f32(s, flush),
        _ => s.to_bits(),
    }
}

fn val_bits_f32(s: f64, flush: bool) -> u64 {
    let v = s as f32;
    let v = if flush && v.abs() < f32::MIN_POSITIVE {
        0.0f32.copysign(v)
    } else {
        v
    };
    v.to_bits() as u64
}

fn scalar(op: &str, ty: &str, old: u64, b: u64, c: u64, flush: bool) -> u64 {
    let bits = bytes_of(ty) * 8;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let (old, b) = (old & mask, b & mask);
    let signed = |x: u64| ((x << (64 - bits)) as i64) >> (64 - bits);
    let float = matches!(ty, "f16" | "bf16" | "f32" | "f64");
    match op {
        "add" if float => fadd(ty, old, b, flush),
        "min" | "max" if float => {
            let (x, y) = (val(ty, old, false), val(ty, b, false));
            if (op == "min") == (y < x) {
                b
            } else {
                old
            }
        }
        "add" => old.wrapping_add(b) & mask,
        "min" | "max" => {
            let less = if ty.starts_with('s') {
                signed(b) < signed(old)
            } else {
                b < old
            };
            if (op == "min") == less {
                b
            } else {
                old
            }
        }
        "inc" => {
            if old >= b {
                0
            } else {
                old + 1
            }
        }
        "dec" => {
            if old == 0 || old > b {
                b
            } else {
                old - 1
            }
        }
        "and" => old & b,
        "or" => old | b,
        "xor" => old ^ b,
        "exch" => b,
        "cas" => {
            if old == b {
                c & mask
            } else {
                old
            }
        }
        _ => unreachable!("{op}"),
    }
}

/// One element of the row's type: packed types are two independent halves.
fn model(f: &Form, old: u64, b: u64, c: u64, flush: bool) -> u64 {
    match f.ty {
        "f16x2" | "bf16x2" => {
            let h = &f.ty[..f.ty.len() - 2];
            let lo = scalar(f.op, h, old & 0xffff, b & 0xffff, 0, false);
            let hi = scalar(f.op, h, old >> 16, b >> 16, 0, false);
            lo | hi << 16
        }
        ty => scalar(f.op, ty, old, b, c, flush),
    }
}

/// Whether the old values `seen` (old, b, c per thread) fit one order of the atomics from
/// `init` to `fin`. Each thread is an edge old -> step(old, b, c); a valid order walks every
/// edge once from `init`, ending at `fin`: an Eulerian trail. Values can repeat (an add of
/// +x then -x), so a greedy walk may take a wrong branch where a valid order exists; the
/// trail conditions (degree balance, every edge reachable from `init`) decide exactly.
fn history(
    init: u64,
    seen: &[(u64, u64, u64)],
    step: impl Fn(u64, u64, u64) -> u64,
    fin: u64,
) -> Result<(), String> {
    use std::collections::HashMap;
    let edges: Vec<(u64, u64)> = seen.iter().map(|&(o, b, c)| (o, step(o, b, c))).collect();
    let mut balance: HashMap<u64, i64> = HashMap::new();
    let mut out: HashMap<u64, Vec<u64>> = HashMap::new();
    for &(u, v) in &edges {
        *balance.entry(u).or_default() += 1;
        *balance.entry(v).or_default() -= 1;
        out.entry(u).or_default().push(v);
    }
    for (&node, &d) in &balance {
        let want = i64::from(node == init && init != fin) - i64::from(node == fin && init != fin);
        if d != want {
            return Err(format!(
                "value {node:#x} is left {d} more times than reached (an order from {init:#x} \
                 to {fin:#x} needs {want}): some thread saw a value no order produces"
            ));
        }
    }
    let mut reached = std::collections::HashSet::from([init]);
    let mut todo = vec![init];
    while let Some(u) = todo.pop() {
        for &v in out.get(&u).into_iter().flatten() {
            if reached.insert(v) {
                todo.push(v);
            }
        }
    }
    match edges.iter().find(|(u, _)| !reached.contains(u)) {
        Some((u, _)) => Err(format!(
            "no order from {init:#x} reaches the value {u:#x} a thread saw"
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Kernels

const HEADER: &str = ".version 8.1\n.target sm_90\n.address_size 64\n";

fn kernel(name: &str, row: &Row) -> String {
    let f = form(row.inst);
    let eb = bytes_of(f.ty);
    let bits = eb * 8;
    let n = f.n;
    let shared = matches!(row.mem, Mem::Shared | Mem::GenericShared);
    let mut k = format!(
        ".visible .entry {name}(.param .u64 p_mem, .param .u64 p_old, .param .u64 p_b, .param .u64 p_c)\n{{\n\
         \t.reg .pred %p<2>;\n\t.reg .b32 %r<6>;\n\t.reg .b64 %rd<12>;\n\
         \t.reg .b{bits} %vb<8>;\n\t.reg .b{bits} %vd<8>;\n\t.reg .b{bits} %vc<2>;\n\
         \t.shared .align 16 .b8 sm[16];\n\
         \tld.param.u64 %rd1, [p_mem];\n\tld.param.u64 %rd2, [p_old];\n\
         \tld.param.u64 %rd3, [p_b];\n\tld.param.u64 %rd4, [p_c];\n\
         \tcvta.to.global.u64 %rd1, %rd1;\n\
         \tmov.u32 %r1, %tid.x;\n\tmov.u32 %r2, %ctaid.x;\n\tmov.u32 %r3, %ntid.x;\n\
         \tmad.lo.u32 %r4, %r2, %r3, %r1;\n\
         \tmul.wide.u32 %rd5, %r4, {};\n\tadd.u64 %rd6, %rd3, %rd5;\n\tadd.u64 %rd7, %rd2, %rd5;\n\
         \tmul.wide.u32 %rd8, %r4, {eb};\n\tadd.u64 %rd9, %rd4, %rd8;\n",
        n * eb
    );
    for i in 0..n {
        k += &format!("\tld.global.b{bits} %vb{i}, [%rd6+{}];\n", i * eb);
    }
    k += &format!("\tld.global.b{bits} %vc0, [%rd9];\n");
    k += "\tsetp.eq.u32 %p1, %r1, 0;\n";
    if shared {
        for i in 0..n {
            k += &format!("\t@%p1 ld.global.b{bits} %vc1, [%rd1+{}];\n", i * eb);
            k += &format!("\t@%p1 st.shared.b{bits} [sm+{}], %vc1;\n", i * eb);
        }
        k += "\tbar.sync 0;\n";
    }
    k += match row.mem {
        Mem::Global | Mem::GenericGlobal => "\tmov.u64 %rd10, %rd1;\n",
        Mem::Shared => "\tmov.u64 %rd10, sm;\n",
        Mem::GenericShared => "\tmov.u64 %rd10, sm;\n\tcvta.shared.u64 %rd10, %rd10;\n",
    };
    let list = |r: &str| {
        let v: Vec<String> = (0..n).map(|i| format!("%{r}{i}")).collect();
        if n == 1 {
            v[0].clone()
        } else {
            format!("{{{}}}", v.join(", "))
        }
    };
    let mut ops = Vec::new();
    if !f.red {
        ops.push(list("vd"));
    }
    ops.push("[%rd10]".to_string());
    ops.push(list("vb"));
    if f.op == "cas" {
        ops.push("%vc0".into());
    }
    if f.hint {
        ops.push("%rd9".into());
    }
    k += &format!("\t{} {};\n", row.inst, ops.join(", "));
    if !f.red {
        for i in 0..n {
            k += &format!("\tst.global.b{bits} [%rd7+{}], %vd{i};\n", i * eb);
        }
    }
    if shared {
        k += "\tbar.sync 0;\n";
        for i in 0..n {
            k += &format!("\t@%p1 ld.shared.b{bits} %vc1, [sm+{}];\n", i * eb);
            k += &format!("\t@%p1 st.global.b{bits} [%rd1+{}], %vc1;\n", i * eb);
        }
    }
    k + "\tret;\n}\n"
}

fn module_text() -> String {
    let mut t = HEADER.to_string();
    for (i, row) in rows().iter().enumerate() {
        t += "\n";
        t += &kernel(&format!("k{i}"), row);
    }
    t
}

fn to_bytes(vals: &[u64], eb: usize) -> Vec<u8> {
    vals.iter()
        .flat_map(|v| v.to_le_bytes()[..eb].to_vec())
        .collect()
}

fn from_bytes(b: &[u8], eb: usize) -> Vec<u64> {
    b.chunks(eb)
        .map(|c| {
            let mut x = [0u8; 8];
            x[..eb].copy_from_slice(c);
            u64::from_le_bytes(x)
        })
        .collect()
}

#[test]
fn every_listed_form_computes_per_element() {
    let text = module_text();
    let m = Module::load(&text).unwrap_or_else(|f| panic!("{f}"));
    let dev = Dev::new();
    let mut failures = Vec::new();
    for (i, row) in rows().iter().enumerate() {
        let f = form(row.inst);
        let eb = bytes_of(f.ty);
        let (grid, block) = row.dims;
        let threads = (grid * block) as usize;
        assert_eq!(row.init.len(), f.n, "{}", row.inst);
        let bs: Vec<u64> = (0..threads)
            .flat_map(|t| (0..f.n).map(move |k| (row.b)(t as u32, k)))
            .collect();
        let cs: Vec<u64> = (0..threads).map(|t| (row.c)(t as u32)).collect();
        let mut mem = to_bytes(&row.init, eb);
        mem.resize(16, 0);
        let p_mem = dev.upload(&mem);
        let p_old = dev.upload(&vec![0u8; threads * f.n * eb]);
        let p_b = dev.upload(&to_bytes(&bs, eb));
        let p_c = dev.upload(&to_bytes(&cs, eb));
        let args = [
            Arg::Ptr(p_mem),
            Arg::Ptr(p_old),
            Arg::Ptr(p_b),
            Arg::Ptr(p_c),
        ];
        if let Err(e) = dev.try_launch(&m, &format!("k{i}"), grid, block, 0, &args) {
            failures.push(format!("{}: launch failed: {e}", row.inst));
            continue;
        }
        let got = from_bytes(&dev.download::<u8>(p_mem, f.n * eb), eb);
        let olds = from_bytes(&dev.download::<u8>(p_old, threads * f.n * eb), eb);
        let flush = f.ty == "f32"
            && f.op == "add"
            && !f.noftz
            && matches!(row.mem, Mem::Global | Mem::GenericGlobal);
        for k in 0..f.n {
            // exch and cas leave whichever thread came last or first: only the history
            // below can check them.
            let fold = (0..threads).fold(row.init[k], |m, t| {
                model(&f, m, bs[t * f.n + k], cs[t], flush)
            });
            let want = if matches!(f.op, "exch" | "cas") {
                got[k]
            } else {
                fold
            };
            let hand = row.want.get(k).copied().unwrap_or(want);
            if got[k] != want || want != hand {
                failures.push(format!(
                    "{} element {k}: memory {:#x}, model {want:#x}, by hand {hand:#x}",
                    row.inst, got[k]
                ));
            }
            if !f.red {
                let seen: Vec<(u64, u64, u64)> = (0..threads)
                    .map(|t| (olds[t * f.n + k], bs[t * f.n + k], cs[t]))
                    .collect();
                if let Err(e) = history(
                    row.init[k],
                    &seen,
                    |m, b, c| model(&f, m, b, c, flush),
                    got[k],
                ) {
                    failures.push(format!("{} element {k}: old values: {e}", row.inst));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// ptxas from the nvcc install, to check that the table is legal PTX.
fn ptxas() -> PathBuf {
    nvcc().with_file_name("ptxas")
}

/// Whether ptxas assembles `text` for sm_90, and its complaint if not.
fn ptxas_accepts(name: &str, text: &str) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("vgpu-atomics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.ptx"));
    std::fs::write(&p, text).unwrap();
    let out = Command::new(ptxas())
        .args(["-arch=sm_90", "-o", "/dev/null"])
        .arg(&p)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas().display()));
    let _ = std::fs::remove_file(&p);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_table_is_legal_ptx() {
    ptxas_accepts("table", &module_text())
        .unwrap_or_else(|e| panic!("ptxas rejects the table:\n{e}"));
}

/// Forms the ISA does not list, and what vgpu's load error must say about them.
const REFUSED: &[(&str, &str)] = &[
    ("atom.global.add.f16x2 %r1, [%rd1], %r2;", "requires .noftz"),
    ("red.global.add.bf16 [%rd1], %h1;", "requires .noftz"),
    ("atom.global.add.s64 %rd2, [%rd1], %rd3;", "no atom.add.s64"),
    ("atom.global.inc.s32 %r1, [%rd1], %r2;", "no atom.inc.s32"),
    ("atom.global.dec.u64 %rd2, [%rd1], %rd3;", "no atom.dec.u64"),
    ("atom.global.and.u32 %r1, [%rd1], %r2;", "no atom.and.u32"),
    ("atom.global.exch.u64 %rd2, [%rd1], %rd3;", "no atom.exch.u64"),
    ("atom.global.min.f32 %r1, [%rd1], %r2;", "no atom.min.f32"),
    ("atom.global.max.f64 %rd2, [%rd1], %rd3;", "no atom.max.f64"),
    ("atom.global.add.noftz.f16x2 %r1, [%rd1], %r2, %r3;", "expects 3 operands"),
    ("atom.global.min.noftz.f16 %h2, [%rd1], %h1;", "no atom.min.f16"),
    ("atom.global.cas.b16 %h2, [%rd1], %h1;", "expects 4 operands"),
    ("atom.global.or.b16 %h2, [%rd1], %h1;", "no atom.or.b16"),
    ("red.global.cas.b32 [%rd1], %r1, %r2;", "red has no .cas"),
    ("red.global.exch.b64 [%rd1], %rd2;", "red has no .exch"),
    ("atom.global.v8.f16x2.add.noftz {%r1, %r1, %r1, %r1, %r1, %r1, %r1, %r1}, [%rd1], {%r2, %r2, %r2, %r2, %r2, %r2, %r2, %r2};", "no vector atom.add.v8.f16x2"),
    ("atom.global.v2.f32.min {%r1, %r2}, [%rd1], {%r2, %r3};", "no vector atom.min.v2.f32"),
    ("atom.global.v2.u32.add {%r1, %r2}, [%rd1], {%r2, %r3};", "no vector atom.add.v2.u32"),
    ("atom.shared.v2.f32.add {%r1, %r2}, [%rd1], {%r2, %r3};", "global memory only"),
    ("atom.global.v4.f32.add {%r1, %r2}, [%rd1], {%r2, %r3};", "vector of 4 registers"),
    ("atom.local.add.u32 %r1, [%rd1], %r2;", "not .local"),
    ("red.acquire.global.add.u32 [%rd1], %r2;", "only .relaxed or .release"),
    ("atom.shared.add.L2::cache_hint.u32 %r1, [%rd1], %r2, %rd2;", ".L2::cache_hint needs .global"),
    ("atom.global.add.noftz.u32 %r1, [%rd1], %r2;", ".noftz applies only"),
    ("atom.global.add.f32 %r1, [%rd1], %r2, %rd2;", "expects 3 operands"),
];

fn refused_text(line: &str) -> String {
    format!(
        "{HEADER}\n.visible .entry refused(.param .u64 p)\n{{\n\t.reg .b16 %h<3>;\n\t.reg .b32 %r<4>;\n\
         \t.reg .b64 %rd<4>;\n\tld.param.u64 %rd1, [p];\n\tmov.b32 %r2, 1;\n\tmov.b32 %r3, 1;\n\
         \tmov.b64 %rd2, 1;\n\tmov.b64 %rd3, 1;\n\tmov.b16 %h1, 1;\n\t{line}\n\tret;\n}}\n"
    )
}

#[test]
fn unlisted_forms_are_refused_at_load() {
    let mut failures = Vec::new();
    for (i, &(line, needle)) in REFUSED.iter().enumerate() {
        let text = refused_text(line);
        let n = text.lines().position(|l| l.contains(line)).unwrap() + 1;
        match Module::load(&text) {
            Ok(_) => failures.push(format!("`{line}` loaded")),
            Err(f) => {
                let msg = &f.message;
                if f.kind != FaultKind::InvalidPtx
                    || !msg.contains(needle)
                    || !msg.contains(&format!("line {n}"))
                {
                    failures.push(format!("`{line}`: want {needle:?} at line {n}: {f}"));
                }
            }
        }
        if ptxas_accepts(&format!("refused{i}"), &text).is_ok() {
            failures.push(format!(
                "ptxas accepts `{line}`: the table of refusals is wrong"
            ));
        }
    }
    // The same kernel with a listed form loads (the refusals are about the form only).
    Module::load(&refused_text(
        "atom.global.add.noftz.f16x2 %r1, [%rd1], %r2;",
    ))
    .unwrap_or_else(|f| panic!("{f}"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Generic addresses are resolved at run time: a vector atomic on shared memory, or any
/// atomic on local memory, is refused where it happens.
#[test]
fn generic_atomics_outside_their_spaces_fail_at_run_time() {
    let text = format!(
        "{HEADER}\n.visible .entry vec_on_shared(.param .u64 p)\n{{\n\t.reg .b32 %r<6>;\n\
         \t.reg .b64 %rd<3>;\n\t.shared .align 16 .b8 sm[16];\n\tmov.u64 %rd1, sm;\n\
         \tcvta.shared.u64 %rd2, %rd1;\n\tmov.b32 %r1, 0;\n\tst.shared.v2.b32 [sm], {{%r1, %r1}};\n\
         \tatom.v2.f32.add {{%r2, %r3}}, [%rd2], {{%r1, %r1}};\n\tret;\n}}\n\n\
         .visible .entry on_local(.param .u64 p)\n{{\n\t.reg .b32 %r<4>;\n\t.reg .b64 %rd<3>;\n\
         \t.local .align 4 .b8 buf[4];\n\tmov.u64 %rd1, buf;\n\tcvta.local.u64 %rd2, %rd1;\n\
         \tmov.b32 %r1, 1;\n\tst.local.b32 [buf], %r1;\n\tatom.add.u32 %r2, [%rd2], %r1;\n\tret;\n}}\n"
    );
    ptxas_accepts("generic", &text).unwrap_or_else(|e| panic!("ptxas: {e}"));
    let m = Module::load(&text).unwrap_or_else(|f| panic!("{f}"));
    let dev = Dev::new();
    for (name, needle) in [
        ("vec_on_shared", "vector atomic on generic address"),
        ("on_local", "not global or shared memory"),
    ] {
        let f = dev
            .try_launch(&m, name, 1, 1, 0, &[Arg::U64(0)])
            .err()
            .unwrap_or_else(|| panic!("`{name}` must fail"));
        assert_eq!(f.kind, FaultKind::IllegalAddress, "{f}");
        let op = if name == "on_local" {
            "atom.add.u32"
        } else {
            "atom.v2.f32.add"
        };
        let line = text.lines().position(|l| l.contains(op)).unwrap() + 1;
        for s in [name, "block", "thread", &format!("line {line}"), needle] {
            assert!(f.message.contains(s), "message lacks {s:?}: {f}");
        }
    }
}

/// `.noftz` on f32 (PTX ISA 9.4, newer than the pinned ptxas, so not assembled here) keeps
/// subnormals on global memory, where plain `.add.f32` flushes them.
#[test]
fn f32_noftz_keeps_subnormals_on_global() {
    let text = ".version 9.4\n.target sm_90\n.address_size 64\n\n\
                .visible .entry k(.param .u64 p)\n{\n\t.reg .b32 %r<3>;\n\t.reg .b64 %rd<2>;\n\
                \tld.param.u64 %rd1, [p];\n\tmov.b32 %r1, 1;\n\
                \tatom.global.add.noftz.f32 %r2, [%rd1], %r1;\n\tred.global.add.f32 [%rd1+4], %r1;\n\
                \tret;\n}\n";
    let m = Module::load(text).unwrap_or_else(|f| panic!("{f}"));
    let dev = Dev::new();
    let p = dev.upload(&[0u32, 0]);
    dev.launch(&m, "k", 2, 64, 0, &[Arg::Ptr(p)]);
    assert_eq!(dev.download::<u32>(p, 2), [128, 0]);
}

/// `.b128` atomics are legal PTX for sm_90 but vgpu has no 128-bit registers: refused at
/// load, naming the line, instead of being computed on 64 bits.
#[test]
fn b128_atomics_are_refused_at_load() {
    for line in [
        "atom.global.exch.b128 %q1, [%rd1], %q2;",
        "atom.global.cas.b128 %q1, [%rd1], %q2, %q2;",
    ] {
        let text = format!(
            "{HEADER}\n.visible .entry k(.param .u64 p)\n{{\n\t.reg .b128 %q<3>;\n\
             \t.reg .b64 %rd<2>;\n\tld.param.u64 %rd1, [p];\n\t{line}\n\tret;\n}}\n"
        );
        let n = text.lines().position(|l| l.contains(line)).unwrap() + 1;
        let f = Module::load(&text)
            .err()
            .expect("b128 atomics must not load");
        assert_eq!(f.kind, FaultKind::InvalidPtx, "{f}");
        for s in ["128-bit", &format!("line {n}")] {
            assert!(f.message.contains(s), "message lacks {s:?}: {f}");
        }
    }
}
