//! One `wgmma.mma_async` of a complete warpgroup: operands gathered from the four warps'
//! registers and from shared memory through the matrix descriptors ([`crate::isa::wgmma`]),
//! D = A*B (+ D) computed, and each warp's quarter queued as pending (see [`super::wgmma`]).
//!
//! Shared-memory operands are read by the async proxy: every 16-byte chunk goes through the
//! race checker (A's rows as read by the warp whose accumulators they feed, B as read by all
//! four) and through [`super::check::Shadow::async_proxy_read`], which reports generic-proxy
//! writes that no `fence.proxy.async` made visible.
//!
//! Numerics: exact products summed in f64 and rounded once (the `mma.sync` exact model), or
//! under `VGPU_NUMERICS=hardware` the tensor-core model of [`crate::isa::tc`] (whose Hopper
//! profile was measured on `mma`, so applying it to wgmma is an assumption).

use super::alu::src;
use super::api::{Fault, FaultKind};
use super::check::Who;
use super::exec::{fault, BlockState, Warp};
use super::launch::Env;
use super::memory::{resolve, Loc};
use super::program::*;
use super::wgmma::{Fenced, Pending};
use crate::isa::fp::{BF16, F16, F32};
use crate::isa::tc;
use crate::isa::wgmma::{a_coord, chunk_of, d_coord, decode_desc, dot_f32, input, Desc, Swizzle};
use crate::isa::Rnd;
use crate::numerics::tc_profile;

const SIGN: u16 = 0x8000;

/// The value of `s`, which must be the same in all 128 threads (descriptors, scale-d).
fn uniform(env: &Env, b: &BlockState, g: &[Warp], s: &Src, what: &str) -> Result<u64, Fault> {
    let v = src(&g[0], b, s, 0);
    for w in g {
        for l in 0..32 {
            if src(w, b, s, l) != v {
                return Err(fault(
                    env,
                    b,
                    w,
                    l,
                    FaultKind::IllegalInstruction,
                    format!(
                        "wgmma.mma_async {what} differs between threads of the warpgroup \
                         ({:#x} in thread 0 of warp {}, {:#x} here); it must be uniform",
                        v,
                        g[0].id,
                        src(w, b, s, l)
                    ),
                ));
            }
        }
    }
    Ok(v)
}

/// Reads a 64 x 16 (A) or 16 x N (B) operand through `desc`: `mn` rows of 16 k values as
/// raw 16-bit inputs, sign flipped when `neg`. `readers(mn)` is the mask of warps (of the
/// group) that consume row `mn`.
#[allow(clippy::too_many_arguments)]
fn load(
    env: &Env,
    b: &mut BlockState,
    g: &[Warp],
    desc: &Desc,
    mn_major: bool,
    rows: u32,
    neg: bool,
    readers: impl Fn(u32) -> u32,
    what: &str,
) -> Result<Vec<[u16; 16]>, Fault> {
    let w0 = &g[0];
    if desc.base_offset != 0 && desc.swizzle != Swizzle::None {
        return Err(fault(
            env,
            b,
            w0,
            0,
            FaultKind::IllegalInstruction,
            format!(
                "{what} matrix descriptor has base offset {}: swizzle atoms that do not start \
                 at the pattern's repeat boundary are not modelled",
                desc.base_offset
            ),
        ));
    }
    let mut out = vec![[0u16; 16]; rows as usize];
    // Chunks: K-major (mn, 8 k's), MN-major (8 mn's, k).
    let chunks: Vec<(u32, u32)> = if mn_major {
        (0..rows / 8)
            .flat_map(|m8| (0..16).map(move |k| (8 * m8, k)))
            .collect()
    } else {
        (0..rows).flat_map(|mn| [(mn, 0), (mn, 8)]).collect()
    };
    let flip = if neg { SIGN } else { 0 };
    for (mn, k) in chunks {
        let (addr, _) = chunk_of(desc, mn_major, mn, k);
        let o = if addr as usize + 16 <= b.shared.len() {
            addr as usize
        } else {
            let loc = resolve(env, b, w0, 0, MemSpace::Shared, addr as u64, 16, false)
                .map_err(|(k, m)| fault(env, b, w0, 0, k, format!("{what} operand: {m}")))?;
            let Loc::Shared(o) = loc else {
                unreachable!("shared space")
            };
            o
        };
        let mut m = readers(mn);
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            m &= m - 1;
            let w = &g[j];
            let who = Who {
                tid: w.id * 32,
                warp: w.id,
                seq: w.seq,
            };
            let r = b
                .shadow
                .read(o, 16, who, false)
                .and_then(|()| b.shadow.async_proxy_read(o, 16, w.id));
            r.map_err(|e| {
                fault(
                    env,
                    b,
                    w,
                    0,
                    FaultKind::LaunchFailed,
                    format!("{what}: {e}"),
                )
            })?;
        }
        for e in 0..8u32 {
            let h = u16::from_le_bytes([
                b.shared[o + 2 * e as usize],
                b.shared[o + 2 * e as usize + 1],
            ]);
            let (r, kk) = if mn_major { (mn + e, k) } else { (mn, k + e) };
            out[r as usize][kk as usize] = h ^ flip;
        }
    }
    // One wavefront per 128 bytes read, each chunk once (the swizzles exist to make the
    // tensor cores' reads conflict-free).
    b.counters.shared_accesses += 1;
    b.counters.shared_wavefronts += (rows as u64 * 32).div_ceil(128);
    Ok(out)
}

/// Runs the `wgmma.mma_async` at `pc` for the four warps `g` of a warpgroup.
pub fn issue(env: &Env, b: &mut BlockState, g: &mut [Warp], pc: u32) -> Result<(), Fault> {
    let Op::Wgmma(x) = &env.code.insts[pc as usize].op else {
        unreachable!("parked at a wgmma")
    };
    let words = env.code.wgmma.as_ref().map_or(0, |k| k.words);
    let a_regs: Vec<u32> = match &x.a {
        WgA::Regs(v) => v
            .iter()
            .filter_map(|s| match s {
                Src::Reg(r) => Some(*r),
                _ => None,
            })
            .collect(),
        WgA::Desc(_) => Vec::new(),
    };
    // Operand registers accessed since the last wgmma.fence.
    for w in g.iter() {
        let regs = x.d.iter().chain(&a_regs).copied();
        let what = match w.wg.fence_state(regs) {
            Fenced::Yes => continue,
            Fenced::AccessedAt(at) => {
                let line = env.code.insts.get(at as usize).map_or(0, |i| i.line);
                format!(
                    "its accumulator or A registers were accessed at PTX line {line}, after the \
                     warp's last wgmma.fence"
                )
            }
            Fenced::Never => "the warp has not executed wgmma.fence before its first wgmma".into(),
        };
        return Err(fault(
            env,
            b,
            w,
            0,
            FaultKind::LaunchFailed,
            format!("wgmma.mma_async without wgmma.fence: {what} (wgmmacheck)"),
        ));
    }
    let n = x.n;
    let bd = decode_desc(uniform(env, b, g, &x.b, "B descriptor")?);
    let scale_d = uniform(env, b, g, &x.scale_d, "scale-d")? & 1 != 0;
    let a: Vec<[u16; 16]> = match &x.a {
        WgA::Desc(s) => {
            let ad = decode_desc(uniform(env, b, g, s, "A descriptor")?);
            load(
                env,
                b,
                g,
                &ad,
                x.trans_a,
                64,
                x.neg_a,
                |m| 1 << (m / 16),
                "A",
            )?
        }
        WgA::Regs(v) => {
            let flip = if x.neg_a { SIGN } else { 0 };
            let mut a = vec![[0u16; 16]; 64];
            for (j, w) in g.iter().enumerate() {
                for l in 0..32u32 {
                    for e in 0..8u32 {
                        let reg = src(w, b, &v[e as usize / 2], l as usize) as u32;
                        let h = (reg >> (16 * (e % 2))) as u16;
                        let (r, k) = a_coord(j as u32, l, e);
                        a[r as usize][k as usize] = h ^ flip;
                    }
                }
            }
            a
        }
    };
    let bt = load(env, b, g, &bd, x.trans_b, n, x.neg_b, |_| 0xf, "B")?;
    let af: Vec<[f64; 16]> = a.iter().map(|r| r.map(|h| input(h, x.bf16))).collect();
    let bf: Vec<[f64; 16]> = bt.iter().map(|r| r.map(|h| input(h, x.bf16))).collect();
    let hw = tc_profile();
    let fmt = if x.bf16 { BF16 } else { F16 };
    let terms = |m: &[[u16; 16]]| -> Option<Vec<[tc::Term; 16]>> {
        m.iter()
            .map(|r| {
                let mut t = [tc::Term::default(); 16];
                for (o, &h) in t.iter_mut().zip(r) {
                    *o = tc::term(h as u64, fmt)?;
                }
                Some(t)
            })
            .collect()
    };
    let (at, btt) = match hw {
        Some(_) => (terms(&a), terms(&bt)),
        None => (None, None),
    };
    for (j, w) in g.iter_mut().enumerate() {
        let newest = w.wg.newest().filter(|p| p.d == x.d).map(|p| p.vals.clone());
        let mut vals = Vec::with_capacity(x.d.len());
        for (i, &dr) in x.d.iter().enumerate() {
            let c: [u32; 32] = match (&newest, w.wg.latest(dr)) {
                (Some(v), _) => v[i],
                (None, Some(v)) => *v,
                (None, None) => std::array::from_fn(|l| w.r(dr, l) as u32),
            };
            let mut out = [0u32; 32];
            for (l, o) in out.iter_mut().enumerate() {
                let (r, col) = d_coord(j as u32, l as u32, i as u32);
                let cbits = if scale_d { c[l] } else { 0 };
                let hw_val = match (hw, &at, &btt) {
                    (Some(p), Some(at), Some(bt)) => tc::dot(
                        &p,
                        &at[r as usize],
                        &bt[col as usize],
                        cbits as u64,
                        F32,
                        Rnd::Rz,
                    )
                    .map(|v| v as u32),
                    _ => None,
                };
                *o = hw_val.unwrap_or_else(|| {
                    let cv = f32::from_bits(cbits) as f64;
                    dot_f32(cv, &af[r as usize], &bf[col as usize]).to_bits()
                });
            }
            vals.push(out);
        }
        w.wg.push(
            words,
            Pending {
                pc,
                d: x.d.clone(),
                vals,
                a: a_regs.clone(),
            },
        );
    }
    b.counters.mma += 1;
    b.counters.mma_flops += 2 * 64 * n as u64 * 16;
    b.counters.wgmma_flops += 2 * 64 * n as u64 * 16;
    Ok(())
}
