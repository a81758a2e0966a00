//! Bulk copies from global to shared memory that complete on an mbarrier:
//! `cp.async.bulk.tensor` in tile mode (the tensor memory accelerator, TMA) and the plain
//! `cp.async.bulk`.
//!
//! A tensor copy moves the box of the map (`sim::tensor_map`) whose first element is at the
//! given coordinates: dimension 0 innermost, packed densely into shared memory from the
//! destination, elements outside the tensor filled with zeros (or the NaN the map asks for),
//! then each 16-byte chunk placed by the map's swizzle, which acts on the shared-memory
//! address bits (so the destination's alignment is part of the pattern). The transaction
//! bytes are the whole box, filled elements included. The data lands when the copy is
//! issued; when it counts as complete is the mbarrier's business ([`super::mbarrier`]).

use super::alu::src;
use super::api::{Fault, FaultKind};
use super::exec::{fault, BlockState, Warp};
use super::launch::Env;
use super::mbarrier::copy_issued;
use super::memory::{self, resolve, Loc};
use super::program::{Addr, MemSpace, Src};
use super::tensor_map::TensorMap;

fn addr_of(w: &Warp, a: &Addr, l: usize) -> u64 {
    a.base
        .map_or(0, |r| w.r(r, l))
        .wrapping_add(a.offset as u64)
}

/// The 16-bit, 32-bit and 64-bit NaNs of `CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA`
/// (the canonical quiet NaN of the element's format; bf16 shares f32's upper half).
fn nan_fill(m: &TensorMap) -> Vec<u8> {
    match (m.dtype, m.elem_bytes) {
        (9, _) => 0x7fc0u16.to_le_bytes().to_vec(),
        (_, 2) => 0x7e00u16.to_le_bytes().to_vec(),
        (_, 4) => 0x7fc0_0000u32.to_le_bytes().to_vec(),
        _ => 0x7ff8_0000_0000_0000u64.to_le_bytes().to_vec(),
    }
}

/// Reads `len` global bytes at `a` (bounds and initcheck as an ordinary load).
fn read_global(env: &Env, a: u64, out: &mut [u8]) -> Result<(), String> {
    let len = out.len() as u64;
    let Some(i) = env.global.find(a, len) else {
        return Err(format!(
            "out-of-bounds global read of {len} bytes at {a:#x}: no live allocation holds it"
        ));
    };
    if !env.global.written(i, a, len) {
        let k = env.global.first_unwritten(i, a, len).unwrap_or(a);
        return Err(format!(
            "read of uninitialised global memory: {len} bytes at {a:#x}, byte {k:#x} never \
             written by a copy, memset or kernel"
        ));
    }
    // SAFETY: `find` placed [a, a+len) inside a live device allocation.
    unsafe { std::ptr::copy_nonoverlapping(a as *const u8, out.as_mut_ptr(), out.len()) };
    Ok(())
}

/// The 128 bytes of the tensor-map operand: a generic address of a kernel parameter
/// (`__grid_constant__`), of global or of constant memory, 64-byte aligned.
fn read_map(env: &Env, b: &BlockState, w: &Warp, l: usize, a: u64) -> Result<[u8; 128], Fault> {
    let mut o = [0u8; 128];
    for half in 0..2 {
        let at = a.wrapping_add(64 * half as u64);
        let loc = resolve(env, b, w, l, MemSpace::Generic, at, 64, false)
            .map_err(|(k, m)| fault(env, b, w, l, k, format!("tensor-map operand: {m}")))?;
        if let Loc::Shared(_) | Loc::Local(_) = loc {
            return Err(fault(
                env,
                b,
                w,
                l,
                FaultKind::IllegalAddress,
                format!("tensor-map operand {a:#x} is not in param, const or global memory"),
            ));
        }
        memory::read(env, b, loc, &mut o[64 * half..64 * half + 64]);
    }
    Ok(o)
}

/// The shared offset of a copy destination of `len` bytes aligned to `align`.
#[allow(clippy::too_many_arguments)]
fn dst_off(
    env: &Env,
    b: &BlockState,
    w: &Warp,
    l: usize,
    a: u64,
    len: u64,
    align: u64,
) -> Result<u32, Fault> {
    let a = a & 0xffff_ffff;
    if !a.is_multiple_of(align) {
        return Err(fault(
            env,
            b,
            w,
            l,
            FaultKind::MisalignedAddress,
            format!("bulk copy destination shared {a:#x} is not {align}-byte aligned"),
        ));
    }
    if a + len > b.shared.len() as u64 {
        return Err(fault(
            env,
            b,
            w,
            l,
            FaultKind::IllegalAddress,
            format!(
                "bulk copy of {len} bytes to shared {a:#x} runs past the block's {} bytes of \
                 shared memory",
                b.shared.len()
            ),
        ));
    }
    Ok(a as u32)
}

/// The box of `m` at `coords`, unswizzled, and the number of bytes read from global memory.
fn gather(env: &Env, m: &TensorMap, coords: &[i64]) -> Result<(Vec<u8>, u64), String> {
    let eb = m.elem_bytes as usize;
    let r = m.rank as usize;
    let row = m.box_dim[0] as usize * eb;
    let rows: usize = m.box_dim[1..r].iter().map(|&x| x as usize).product();
    let fill = if m.oob_nan { nan_fill(m) } else { vec![0; eb] };
    let mut out = vec![0u8; row * rows];
    let mut read = 0u64;
    for (ri, dst) in out.chunks_mut(row).enumerate() {
        // Coordinates of this row in dimensions 1..rank, and whether it is in the tensor.
        let mut rest = ri;
        let mut base = m.global as i128;
        let mut inside = true;
        for (k, &at) in coords.iter().enumerate().take(r).skip(1) {
            let c = at + (rest % m.box_dim[k] as usize) as i64;
            rest /= m.box_dim[k] as usize;
            inside &= c >= 0 && (c as u64) < m.dims[k];
            base += c as i128 * m.strides[k] as i128;
        }
        let c0 = coords[0];
        let lo = (-c0).clamp(0, m.box_dim[0] as i64) as usize;
        let hi = (m.dims[0] as i64 - c0).clamp(0, m.box_dim[0] as i64) as usize;
        let (lo, hi) = if inside && lo < hi { (lo, hi) } else { (0, 0) };
        for j in (0..lo).chain(hi..m.box_dim[0] as usize) {
            dst[j * eb..(j + 1) * eb].copy_from_slice(&fill);
        }
        if hi > lo {
            let a = base + (c0 + lo as i64) as i128 * eb as i128;
            read_global(env, a as u64, &mut dst[lo * eb..hi * eb])?;
            read += ((hi - lo) * eb) as u64;
        }
    }
    Ok((out, read))
}

/// Writes `data` (a multiple of 16 bytes: box rows and bulk sizes are) to shared memory
/// from `dst`, each 16-byte chunk where `place` puts it, marks the bytes as written by the
/// async proxy and returns the ranges written.
fn land(
    b: &mut BlockState,
    who: super::check::Who,
    dst: u32,
    data: &[u8],
    place: impl Fn(u32) -> u32,
) -> Result<Vec<(u32, u32)>, String> {
    let mut chunks: Vec<u32> = Vec::with_capacity(data.len() / 16);
    for (k, c) in data.chunks(16).enumerate() {
        let t = place(dst + 16 * k as u32);
        let end = t as usize + c.len();
        if end > b.shared.len() {
            return Err(format!(
                "swizzled bulk copy chunk at shared {t:#x} runs past the block's shared memory"
            ));
        }
        b.shadow.async_write(t as usize, c.len(), who)?;
        b.shared[t as usize..end].copy_from_slice(c);
        chunks.push(t);
    }
    chunks.sort_unstable();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for t in chunks {
        match ranges.last_mut() {
            Some((o, n)) if *o + *n == t => *n += 16,
            _ => ranges.push((t, 16)),
        }
    }
    b.counters.shared_accesses += 1;
    b.counters.shared_wavefronts += data.len().div_ceil(128) as u64;
    Ok(ranges)
}

/// The copy of an [`AsyncOp::Tensor`] or [`AsyncOp::Bulk`], without its mbarrier.
pub enum Copy<'a> {
    Tensor {
        dst: &'a Addr,
        map: &'a Addr,
        coords: &'a [Src],
    },
    Bulk {
        dst: &'a Addr,
        src: &'a Addr,
        size: &'a Src,
    },
}

/// Each lane of `exec` issues `op`, completing on the mbarrier at `mbar`.
pub fn execute(
    env: &Env,
    b: &mut BlockState,
    w: &mut Warp,
    op: &Copy,
    mbar: &Addr,
    exec: u32,
) -> Result<(), Fault> {
    let fail = |b: &BlockState, w: &Warp, l: usize, msg: String| {
        fault(env, b, w, l, FaultKind::LaunchFailed, msg)
    };
    let mut m = exec;
    while m != 0 {
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        let who = b.who(w, l);
        let off = mbar_off(env, b, w, l, mbar)?;
        b.mbars.check_init(off).map_err(|e| fail(b, w, l, e))?;
        let (bytes, ranges) = match op {
            Copy::Tensor { dst, map, coords } => {
                let raw = read_map(env, b, w, l, addr_of(w, map, l))?;
                let tm = TensorMap::decode(&raw).map_err(|e| fail(b, w, l, e))?;
                if coords.len() != tm.rank as usize {
                    return Err(fail(
                        b,
                        w,
                        l,
                        format!(
                            "cp.async.bulk.tensor.{}d with a rank-{} tensor map",
                            coords.len(),
                            tm.rank
                        ),
                    ));
                }
                let cs: Vec<i64> = coords
                    .iter()
                    .map(|c| src(w, b, c, l) as u32 as i32 as i64)
                    .collect();
                let bytes = tm.box_bytes();
                let d = dst_off(env, b, w, l, addr_of(w, dst, l), bytes, 128)?;
                let (data, read) = gather(env, &tm, &cs).map_err(|e| {
                    fault(
                        env,
                        b,
                        w,
                        l,
                        FaultKind::IllegalAddress,
                        format!("cp.async.bulk.tensor: {e}"),
                    )
                })?;
                b.counters.global_read += read;
                let sw = tm.swizzle;
                let ranges =
                    land(b, who, d, &data, |a| sw.apply(a)).map_err(|e| fail(b, w, l, e))?;
                (bytes, ranges)
            }
            Copy::Bulk { dst, src: s, size } => {
                let n = src(w, b, size, l) & 0xffff_ffff;
                let sa = addr_of(w, s, l);
                if n == 0 || !n.is_multiple_of(16) || !sa.is_multiple_of(16) {
                    return Err(fault(
                        env,
                        b,
                        w,
                        l,
                        FaultKind::MisalignedAddress,
                        format!(
                            "cp.async.bulk of {n} bytes from {sa:#x}: size and source must be \
                             non-zero multiples of 16"
                        ),
                    ));
                }
                let d = dst_off(env, b, w, l, addr_of(w, dst, l), n, 16)?;
                let mut data = vec![0u8; n as usize];
                read_global(env, sa, &mut data).map_err(|e| {
                    fault(
                        env,
                        b,
                        w,
                        l,
                        FaultKind::IllegalAddress,
                        format!("cp.async.bulk: {e}"),
                    )
                })?;
                b.counters.global_read += n;
                let ranges = land(b, who, d, &data, |a| a).map_err(|e| fail(b, w, l, e))?;
                (n, ranges)
            }
        };
        copy_issued(b, off, bytes, ranges).map_err(|e| fail(b, w, l, e))?;
    }
    Ok(())
}

/// The mbarrier operand of a copy (`.shared::cluster`: this CTA's shared memory, as a
/// launch without clusters is a cluster of one).
fn mbar_off(env: &Env, b: &BlockState, w: &Warp, l: usize, a: &Addr) -> Result<u32, Fault> {
    let x = addr_of(w, a, l) & 0xffff_ffff;
    match resolve(env, b, w, l, MemSpace::Shared, x, 8, true) {
        Ok(Loc::Shared(o)) => Ok(o as u32),
        Ok(other) => Err(fault(
            env,
            b,
            w,
            l,
            FaultKind::IllegalAddress,
            format!("bulk copy mbarrier operand resolved to {other:?}, not shared memory"),
        )),
        Err((k, m)) => Err(fault(
            env,
            b,
            w,
            l,
            k,
            format!("bulk copy mbarrier operand: {m}"),
        )),
    }
}
