//! Mask post-processing launchers (`kernels/postprocess.cu`): `Sam.postprocess_masks`
//! (bilinear to 1024, crop, bilinear to the original size) bit-identical to the CPU path
//! and PyTorch, then threshold, LSB-first bit-packing, area and box, so only packed masks
//! come back to the host.
//!
//! Scratch buffers are allocated per call for now; the inference context's arena will own
//! them once the CUDA model path exists.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cpu::ops::postprocess::{
    bilinear_tables, torch_kernel_for, MaskFrame, MaskStats, TorchBilinearKernel,
};
use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Threads per block along output columns for the resize kernels.
pub const PP_THREADS: usize = 256;
/// Threads per block for packing (a multiple of 32: the kernel reduces per warp).
pub const PACK_THREADS: usize = 128;
/// Masks per launch: the grid's z dimension.
pub const PP_MAX_MASKS: usize = 65_535;

/// Thresholded masks as they come back: `bits[m][y][word]`, pixel `x` of row `y` is bit
/// `x % 32` of word `x / 32`, rows padded to `words_per_row` words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedMasks {
    pub h: usize,
    pub w: usize,
    pub words_per_row: usize,
    pub bits: Vec<u32>,
    /// Per mask, as [`crate::cpu::ops::postprocess::mask_stats`] computes it.
    pub stats: Vec<MaskStats>,
}

impl PackedMasks {
    /// Mask `m` as booleans, row-major.
    pub fn mask(&self, m: usize) -> Vec<bool> {
        let plane = self.h * self.words_per_row;
        let words = &self.bits[m * plane..(m + 1) * plane];
        let mut out = Vec::with_capacity(self.h * self.w);
        for row in words.chunks(self.words_per_row) {
            out.extend((0..self.w).map(|x| row[x / 32] >> (x % 32) & 1 == 1));
        }
        out
    }
}

fn grid(cols: usize, rows: usize, masks: usize, threads: usize) -> Result<LaunchConfig> {
    if rows > 65_535 || masks > PP_MAX_MASKS {
        return Err(Error::Unsupported(format!(
            "postprocess launch of {masks} masks x {rows} rows exceeds the grid limits"
        )));
    }
    Ok(LaunchConfig {
        grid_dim: (cols.div_ceil(threads) as u32, rows as u32, masks as u32),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: 0,
    })
}

struct Tables {
    i0: CudaSlice<i32>,
    i1: CudaSlice<i32>,
    l0: CudaSlice<f32>,
    l1: CudaSlice<f32>,
}

fn tables(
    stream: &Arc<CudaStream>,
    in_size: usize,
    out_size: usize,
    kernel: TorchBilinearKernel,
    keep: usize,
) -> Result<Tables> {
    let (i0, i1, l0, l1) = bilinear_tables(in_size, out_size, kernel, keep);
    let up_i = |v: &Vec<i32>| guarded("host-to-device copy", || stream.clone_htod(v));
    let up_f = |v: &Vec<f32>| guarded("host-to-device copy", || stream.clone_htod(v));
    Ok(Tables {
        i0: up_i(&i0)?,
        i1: up_i(&i1)?,
        l0: up_f(&l0)?,
        l1: up_f(&l1)?,
    })
}

/// Bilinear from the top-left `in_h x in_w` window of planes `src` (`row_stride`,
/// `plane_stride` in elements) to the first `keep_h x keep_w` outputs of an
/// `out_h x out_w` resize. Returns `[masks, keep_h, keep_w]`.
#[allow(clippy::too_many_arguments)]
fn resize(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    src: &CudaSlice<f32>,
    (row_stride, plane_stride): (usize, usize),
    masks: usize,
    (in_h, in_w): (usize, usize),
    (out_h, out_w): (usize, usize),
    (keep_h, keep_w): (usize, usize),
    kernel: TorchBilinearKernel,
) -> Result<CudaSlice<f32>> {
    check_len(
        "postprocess input",
        src.len(),
        (masks - 1) * plane_stride + (in_h - 1) * row_stride + in_w,
    )?;
    let th = tables(stream, in_h, out_h, kernel, keep_h)?;
    let tw = tables(stream, in_w, out_w, kernel, keep_w)?;
    let mut out = gpu.zeros_f32(stream, masks * keep_h * keep_w)?;
    let (rs, ps) = (as_i32("row stride", row_stride)?, plane_stride as i64);
    let (kh, kw) = (as_i32("rows", keep_h)?, as_i32("columns", keep_w)?);
    let (sp, _s) = src.device_ptr(stream);
    let (hi0, _a) = th.i0.device_ptr(stream);
    let (hi1, _b) = th.i1.device_ptr(stream);
    let (hl0, _c) = th.l0.device_ptr(stream);
    let (hl1, _d) = th.l1.device_ptr(stream);
    let (wi0, _e) = tw.i0.device_ptr(stream);
    let (wi1, _f) = tw.i1.device_ptr(stream);
    let (wl0, _g) = tw.l0.device_ptr(stream);
    let (wl1, _h) = tw.l1.device_ptr(stream);
    match kernel {
        TorchBilinearKernel::ChannelsLast => {
            let f = gpu.function("bilinear_channels_last_f32")?;
            let (op, _o) = out.device_ptr_mut(stream);
            let mut b = stream.launch_builder(f);
            b.arg(&sp).arg(&rs).arg(&ps);
            b.arg(&hi0).arg(&hi1).arg(&hl0).arg(&hl1).arg(&kh);
            b.arg(&wi0).arg(&wi1).arg(&wl0).arg(&wl1).arg(&kw).arg(&op);
            let cfg = grid(keep_w, keep_h, masks, PP_THREADS)?;
            // SAFETY: arguments match the kernel signature; the tables hold keep_h / keep_w
            // entries whose indices are < in_h / in_w, src was checked to cover every
            // (mask, row, column) they address, and out holds masks*keep_h*keep_w values.
            guarded("bilinear_channels_last_f32", || {
                unsafe { b.launch(cfg) }.map(|_| ())
            })?;
        }
        TorchBilinearKernel::Generic => {
            let mut tmp = gpu.zeros_f32(stream, masks * in_h * keep_w)?;
            let ih = as_i32("input rows", in_h)?;
            {
                let f = gpu.function("bilinear_w_f32")?;
                let (tp, _t) = tmp.device_ptr_mut(stream);
                let mut b = stream.launch_builder(f);
                b.arg(&sp).arg(&rs).arg(&ps).arg(&ih);
                b.arg(&wi0).arg(&wi1).arg(&wl0).arg(&wl1).arg(&kw).arg(&tp);
                let cfg = grid(keep_w, in_h, masks, PP_THREADS)?;
                // SAFETY: as above; tmp holds masks*in_h*keep_w values.
                guarded("bilinear_w_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
            }
            let f = gpu.function("bilinear_h_f32")?;
            let (tp, _t) = tmp.device_ptr(stream);
            let (op, _o) = out.device_ptr_mut(stream);
            let mut b = stream.launch_builder(f);
            b.arg(&tp).arg(&ih);
            b.arg(&hi0)
                .arg(&hi1)
                .arg(&hl0)
                .arg(&hl1)
                .arg(&kh)
                .arg(&kw)
                .arg(&op);
            let cfg = grid(keep_w, keep_h, masks, PP_THREADS)?;
            // SAFETY: the row tables index rows < in_h of tmp; out holds masks*keep_h*keep_w.
            guarded("bilinear_h_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
        }
    }
    Ok(out)
}

/// `Sam.postprocess_masks` on `masks` low-res planes `[masks, s, s]` in `frame` (s =
/// `frame.low_res`): returns the logits `[masks, H, W]` at `orig_size`, bit-identical to
/// [`MaskFrame::postprocess_with`] with the same `torch_threads`.
#[allow(clippy::too_many_arguments)]
pub fn postprocess_masks(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    frame: MaskFrame,
    low_res: &CudaSlice<f32>,
    masks: usize,
    input_size: (usize, usize),
    orig_size: (usize, usize),
    torch_threads: usize,
) -> Result<CudaSlice<f32>> {
    let plane = frame.plane();
    // The launch reads `masks` planes of a possibly longer buffer.
    frame.check_args(masks * plane, masks, input_size, orig_size)?;
    let (ih, iw) = input_size;
    let (oh, ow) = orig_size;
    gpu.check_stream(stream)?;
    check_len("low_res masks", low_res.len(), masks * plane)?;
    let (s, img) = (frame.low_res, frame.img_size);
    let k1 = torch_kernel_for(masks, img, img, torch_threads);
    let k2 = torch_kernel_for(masks, oh, ow, torch_threads);
    let up = resize(
        gpu,
        stream,
        low_res,
        (s, plane),
        masks,
        (s, s),
        (img, img),
        (ih, iw),
        k1,
    )?;
    resize(
        gpu,
        stream,
        &up,
        (iw, ih * iw),
        masks,
        (ih, iw),
        (oh, ow),
        (oh, ow),
        k2,
    )
}

/// `logits > 0` for `masks` planes `[h, w]`, packed, with area and box per mask; copies
/// only the bits and the statistics back (waits for the stream).
pub fn threshold_pack(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    logits: &CudaSlice<f32>,
    masks: usize,
    (h, w): (usize, usize),
) -> Result<PackedMasks> {
    if masks == 0 || h == 0 || w == 0 {
        return Err(Error::Shape {
            name: "threshold masks, h, w".into(),
            expected: vec![1, 1, 1],
            got: vec![masks, h, w],
        });
    }
    gpu.check_stream(stream)?;
    check_len("mask logits", logits.len(), masks * h * w)?;
    let words = w.div_ceil(32);
    let mut bits = guarded("device allocation", || {
        stream.alloc_zeros::<u32>(masks * h * words)
    })?;
    let mut area = guarded("device allocation", || stream.alloc_zeros::<u64>(masks))?;
    let init: Vec<i32> = (0..masks)
        .flat_map(|_| [i32::MAX, i32::MAX, -1, -1])
        .collect();
    let mut boxes = guarded("host-to-device copy", || stream.clone_htod(&init))?;
    let f = gpu.function("mask_threshold_pack")?;
    let (lp, _l) = logits.device_ptr(stream);
    let (bp, _b) = bits.device_ptr_mut(stream);
    let (ap, _a) = area.device_ptr_mut(stream);
    let (xp, _x) = boxes.device_ptr_mut(stream);
    let (hh, ww, wd) = (as_i32("h", h)?, as_i32("w", w)?, as_i32("words", words)?);
    let mut b = stream.launch_builder(f);
    b.arg(&lp)
        .arg(&hh)
        .arg(&ww)
        .arg(&wd)
        .arg(&bp)
        .arg(&ap)
        .arg(&xp);
    let cfg = grid(words, h, masks, PACK_THREADS)?;
    // SAFETY: arguments match the kernel; logits hold masks*h*w values, bits masks*h*words,
    // area masks, boxes 4*masks; threads past `words` only join the warp reduction.
    guarded("mask_threshold_pack", || {
        unsafe { b.launch(cfg) }.map(|_| ())
    })?;
    drop((_l, _b, _a, _x));
    let bits = guarded("device-to-host copy", || stream.clone_dtoh(&bits))?;
    let area = guarded("device-to-host copy", || stream.clone_dtoh(&area))?;
    let boxes = guarded("device-to-host copy", || stream.clone_dtoh(&boxes))?;
    let stats = area
        .iter()
        .zip(boxes.chunks(4))
        .map(|(&a, b)| {
            if a == 0 {
                MaskStats::default()
            } else {
                let [x0, y0, x1, y1] = [b[0], b[1], b[2], b[3]].map(|v| v as u32);
                MaskStats {
                    area: a,
                    bbox: [x0, y0, x1 - x0, y1 - y0],
                }
            }
        })
        .collect();
    Ok(PackedMasks {
        h,
        w,
        words_per_row: words,
        bits,
        stats,
    })
}

/// Blocks per mask for the stability counts (each thread strides over the plane).
pub const STAB_BLOCKS: usize = 64;

/// `stability_score` (src/amg/geometry.rs) for `masks` planes of `plane` logits: counts on
/// the GPU, the same f32 division on the host, so scores are bit-identical to the CPU's.
pub fn stability_scores(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    logits: &CudaSlice<f32>,
    masks: usize,
    plane: usize,
    offset: f32,
) -> Result<Vec<f32>> {
    if masks == 0 || plane == 0 || !offset.is_finite() {
        return Err(Error::Shape {
            name: "stability masks, plane (and a finite offset)".into(),
            expected: vec![1, 1],
            got: vec![masks, plane],
        });
    }
    gpu.check_stream(stream)?;
    check_len("mask logits", logits.len(), masks * plane)?;
    let mut counts = guarded("device allocation", || stream.alloc_zeros::<u64>(2 * masks))?;
    let f = gpu.function("mask_stability_counts")?;
    let (lp, _l) = logits.device_ptr(stream);
    let (cp, _c) = counts.device_ptr_mut(stream);
    let pl = plane as i64;
    let mut b = stream.launch_builder(f);
    b.arg(&lp).arg(&pl).arg(&offset).arg(&cp);
    let cfg = grid(STAB_BLOCKS * PP_THREADS, 1, masks, PP_THREADS)?;
    // SAFETY: arguments match the kernel; logits hold masks*plane values, counts 2*masks.
    guarded("mask_stability_counts", || {
        unsafe { b.launch(cfg) }.map(|_| ())
    })?;
    drop((_l, _c));
    let counts = guarded("device-to-host copy", || stream.clone_dtoh(&counts))?;
    // Counts of one plane fit u32 (< 2^31 pixels); the official divides int32 counts as f32.
    Ok(counts
        .chunks(2)
        .map(|c| c[0] as u32 as f32 / c[1] as u32 as f32)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacking_is_lsb_first_with_padded_rows() {
        // 2 rows of 35 pixels: words_per_row 2; row 0 has x = 0, 31, 32, 34; row 1 x = 1.
        let p = PackedMasks {
            h: 2,
            w: 35,
            words_per_row: 2,
            bits: vec![1 | 1 << 31, 0b101, 0b10, 0],
            stats: vec![MaskStats::default()],
        };
        let m = p.mask(0);
        let on: Vec<usize> = (0..70).filter(|&i| m[i]).collect();
        assert_eq!(on, [0, 31, 32, 34, 36]);
    }
}
