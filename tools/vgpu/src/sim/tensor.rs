//! Tensor-core instructions executed natively over the whole warp: gather fragments from the
//! register file, compute with [`crate::isa::warp`], scatter the results.
//!
//! Under `VGPU_NUMERICS=hardware` the sums follow the tensor cores' truncating accumulation
//! instead ([`crate::isa::tc`]); an mma with a non-finite input keeps the exact path, which
//! propagates infinities and NaN as IEEE does (the hardware model does not describe them).

use super::alu::src;
use super::api::{Fault, FaultKind};
use super::check::LaneAddrs;
use super::exec::{fault, BlockState, Warp};
use super::launch::Env;
use super::memory::{resolve, Loc};
use super::ops::account_shared;
use super::program::*;
use crate::isa::{tc, warp as iw};
use crate::numerics::tc_profile;

/// An operand's value in all 32 lanes (one dispatch on the operand kind, not 32).
fn lanes32(w: &Warp, b: &BlockState, s: &Src) -> [u32; 32] {
    match *s {
        Src::Reg(r) => {
            // One bounds check for the 32 lanes, so the copy vectorises.
            let base = r as usize * 32;
            let regs: &[u64; 32] = w.regs[base..base + 32]
                .try_into()
                .expect("a register is 32 lanes");
            std::array::from_fn(|l| regs[l] as u32)
        }
        _ => std::array::from_fn(|l| src(w, b, s, l) as u32),
    }
}

pub fn mma(
    w: &mut Warp,
    b: &mut BlockState,
    kind: MmaKind,
    d: &[u32],
    a: &[Src],
    bb: &[Src],
    c: &[Src],
) {
    let get = |w: &Warp, b: &BlockState, s: &Src, l: usize| src(w, b, s, l) as u32;
    b.counters.mma += 1;
    match kind {
        MmaKind::M16n8k16F32F16 | MmaKind::M16n8k16F32Bf16 => {
            b.counters.mma_flops += 2 * 16 * 8 * 16;
            if kind == MmaKind::M16n8k16F32F16 && tc_profile().is_none() {
                if let Some(r) = mma_f16_on_registers(w, d, a, bb, c) {
                    return r;
                }
            }
            let av: [[u32; 32]; 4] = std::array::from_fn(|k| lanes32(w, b, &a[k]));
            let bv: [[u32; 32]; 2] = std::array::from_fn(|k| lanes32(w, b, &bb[k]));
            let cv: [[u32; 32]; 4] = std::array::from_fn(|k| lanes32(w, b, &c[k]));
            let mut fa = [[0u32; 4]; 32];
            let mut fb = [[0u32; 2]; 32];
            let mut fc = [[0f32; 4]; 32];
            for l in 0..32 {
                fa[l] = [av[0][l], av[1][l], av[2][l], av[3][l]];
                fb[l] = [bv[0][l], bv[1][l]];
                fc[l] = [cv[0][l], cv[1][l], cv[2][l], cv[3][l]].map(f32::from_bits);
            }
            let bf16 = kind == MmaKind::M16n8k16F32Bf16;
            let hw = tc_profile().and_then(|p| tc::mma_m16n8k16_f32(&p, bf16, &fa, &fb, &fc));
            let r = match hw {
                Some(r) => r,
                None if bf16 => iw::mma_m16n8k16_f32_bf16(&fa, &fb, &fc),
                None => iw::mma_m16n8k16_f32_f16(&fa, &fb, &fc),
            };
            for (k, &dk) in d.iter().enumerate().take(4) {
                let base = dk as usize * 32;
                let out: &mut [u64; 32] = (&mut w.regs[base..base + 32])
                    .try_into()
                    .expect("a register is 32 lanes");
                for (o, row) in out.iter_mut().zip(&r) {
                    *o = row[k].to_bits() as u64;
                }
            }
        }
        MmaKind::M16n8k16F16F16 => {
            b.counters.mma_flops += 2 * 16 * 8 * 16;
            let mut fa = [[0u32; 4]; 32];
            let mut fb = [[0u32; 2]; 32];
            let mut fc = [[0u32; 2]; 32];
            for l in 0..32 {
                for k in 0..4 {
                    fa[l][k] = get(w, b, &a[k], l);
                }
                for k in 0..2 {
                    fb[l][k] = get(w, b, &bb[k], l);
                    fc[l][k] = get(w, b, &c[k], l);
                }
            }
            let r = tc_profile()
                .and_then(|p| tc::mma_m16n8k16_f16(&p, &fa, &fb, &fc))
                .unwrap_or_else(|| iw::mma_m16n8k16_f16_f16(&fa, &fb, &fc));
            for (l, row) in r.iter().enumerate() {
                for k in 0..2 {
                    w.set(d[k], l, row[k] as u64);
                }
            }
        }
        MmaKind::M16n8k8F32F16 => {
            b.counters.mma_flops += 2 * 16 * 8 * 8;
            let mut fa = [[0u32; 2]; 32];
            let mut fb = [[0u32; 1]; 32];
            let mut fc = [[0f32; 4]; 32];
            for l in 0..32 {
                for k in 0..2 {
                    fa[l][k] = get(w, b, &a[k], l);
                }
                fb[l][0] = get(w, b, &bb[0], l);
                for k in 0..4 {
                    fc[l][k] = f32::from_bits(get(w, b, &c[k], l));
                }
            }
            let r = tc_profile()
                .and_then(|p| tc::mma_m16n8k8_f32(&p, &fa, &fb, &fc))
                .unwrap_or_else(|| iw::mma_m16n8k8_f32_f16(&fa, &fb, &fc));
            for (k, &dk) in d.iter().enumerate().take(4) {
                let base = dk as usize * 32;
                let out: &mut [u64; 32] = (&mut w.regs[base..base + 32])
                    .try_into()
                    .expect("a register is 32 lanes");
                for (o, row) in out.iter_mut().zip(&r) {
                    *o = row[k].to_bits() as u64;
                }
            }
        }
    }
}

/// The exact f16 m16n8k16 read from and written to the register file directly, when every
/// operand is a register (as nvcc emits it); `None` otherwise.
fn mma_f16_on_registers(w: &mut Warp, d: &[u32], a: &[Src], bb: &[Src], c: &[Src]) -> Option<()> {
    let reg = |s: &Src| match *s {
        Src::Reg(r) => Some(r as usize * 32),
        _ => None,
    };
    let (a0, a1, a2, a3) = (reg(&a[0])?, reg(&a[1])?, reg(&a[2])?, reg(&a[3])?);
    let (b0, b1) = (reg(&bb[0])?, reg(&bb[1])?);
    let (c0, c1, c2, c3) = (reg(&c[0])?, reg(&c[1])?, reg(&c[2])?, reg(&c[3])?);
    let r = |base: usize| -> &iw::Lanes {
        w.regs[base..base + 32]
            .try_into()
            .expect("a register is 32 lanes")
    };
    let mut out = [[0u64; 32]; 4];
    iw::mma_m16n8k16_f32_f16_lanes(
        [r(a0), r(a1), r(a2), r(a3)],
        [r(b0), r(b1)],
        [r(c0), r(c1), r(c2), r(c3)],
        &mut out,
    );
    for (&dk, o) in d.iter().zip(&out) {
        let base = dk as usize * 32;
        w.regs[base..base + 32].copy_from_slice(o);
    }
    Some(())
}

pub fn ldmatrix(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    num: u32,
    trans: bool,
    d: &[u32],
    addr: &Addr,
) -> Result<(), Fault> {
    let mut rows = [0u32; 32];
    for (l, r) in rows.iter_mut().enumerate() {
        let base = addr.base.map_or(0, |reg| w.r(reg, l));
        let a = base.wrapping_add(addr.offset as u64);
        // Generic addresses in the shared window and plain shared offsets both work.
        *r = (a & 0xffff_ffff) as u32;
    }
    let mut addrs = LaneAddrs::default();
    let mut read = |lane: u32, a: u32| -> Result<[u16; 8], Fault> {
        let l = lane as usize;
        // An aligned row inside the block's shared memory needs no further checks; anything
        // else goes through `resolve`, which names the fault.
        let o = if a.is_multiple_of(16) && a as usize + 16 <= b.shared.len() {
            a as usize
        } else {
            let loc = resolve(env, b, w, l, MemSpace::Shared, a as u64, 16, false)
                .map_err(|(k, m)| fault(env, b, w, l, k, format!("ldmatrix row address: {m}")))?;
            let Loc::Shared(o) = loc else {
                unreachable!("shared space")
            };
            o
        };
        let who = b.who(w, l);
        b.shadow
            .read(o, 16, who, false)
            .map_err(|e| fault(env, b, w, l, FaultKind::LaunchFailed, e))?;
        addrs.push(lane, a);
        let mut out = [0u16; 8];
        for (k, h) in out.iter_mut().enumerate() {
            *h = u16::from_le_bytes([b.shared[o + 2 * k], b.shared[o + 2 * k + 1]]);
        }
        Ok(out)
    };
    let regs = iw::ldmatrix(num, trans, &rows, &mut read)?;
    // Each 8x8 matrix is one 128-byte phase of eight 16-byte rows.
    account_shared(b, addrs.as_slice(), 16);
    for (l, r) in regs.iter().enumerate() {
        for (k, &dd) in d.iter().enumerate() {
            w.set(dd, l, r[k] as u64);
        }
    }
    Ok(())
}
