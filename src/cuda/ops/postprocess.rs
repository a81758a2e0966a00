//! Mask post-processing launchers (`kernels/postprocess.cu`): `Sam.postprocess_masks`
//! (bilinear to 1024, crop, bilinear to the original size) bit-identical to the CPU path
//! and PyTorch, then threshold, LSB-first bit-packing, area and box, so only packed masks
//! come back to the host.
//!
//! The `*_into` launchers work in a [`PostScratch`], device buffers grown on first need
//! and kept, so a caller that post-processes batch after batch (the decoder's `predict`)
//! allocates nothing once warm; the plain launchers are the same kernels over a fresh
//! scratch.

use std::sync::Arc;

use cudarc::driver::{
    CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};

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
        let mut out = Vec::with_capacity(self.h * self.w);
        self.unpack_into(m, &mut out);
        out
    }

    /// Appends mask `m`'s booleans, row-major, to `out`.
    pub fn unpack_into(&self, m: usize, out: &mut Vec<bool>) {
        let plane = self.h * self.words_per_row;
        let words = &self.bits[m * plane..(m + 1) * plane];
        for row in words.chunks(self.words_per_row) {
            out.extend((0..self.w).map(|x| row[x / 32] >> (x % 32) & 1 == 1));
        }
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

/// A device buffer that only grows: reallocated (counted) when a pass needs more than it
/// holds, else reused.
struct Grow<T>(Option<CudaSlice<T>>);

impl<T: DeviceRepr + ValidAsZeroBits> Grow<T> {
    fn get(
        &mut self,
        gpu: &GpuContext,
        stream: &Arc<CudaStream>,
        len: usize,
    ) -> Result<&mut CudaSlice<T>> {
        if self.0.as_ref().is_none_or(|b| b.len() < len) {
            self.0 = None;
            let b = gpu.alloc_zeros::<T>(stream, len, "allocating post-processing scratch")?;
            self.0 = Some(b);
        }
        Ok(self.0.as_mut().expect("allocated above"))
    }

    fn ptr(&mut self, gpu: &GpuContext, stream: &Arc<CudaStream>, len: usize) -> Result<u64> {
        let b = self.get(gpu, stream, len)?;
        let (p, _g) = b.device_ptr(stream);
        Ok(p)
    }
}

impl<T> Default for Grow<T> {
    fn default() -> Self {
        Grow(None)
    }
}

/// The device buffers of post-processing passes, grown on demand and kept between them.
#[derive(Default)]
pub struct PostScratch {
    /// Index tables, then the plane list.
    ints: Grow<i32>,
    /// Weight tables.
    floats: Grow<f32>,
    /// The upsampled, cropped planes `[masks, ih, iw]`.
    up: Grow<f32>,
    /// The generic kernel's W pass.
    tmp: Grow<f32>,
    /// Logits at the original size `[masks, H, W]`.
    out: Grow<f32>,
    bits: Grow<u32>,
    area: Grow<u64>,
    boxes: Grow<i32>,
    counts: Grow<u64>,
}

/// A resize's host tables, uploaded into the scratch: (h tables, w tables) as device
/// pointers `[i0, i1, l0, l1]`.
type TablePtrs = ([u64; 4], [u64; 4]);

impl PostScratch {
    /// Uploads the row and column tables of one resize (no allocation once warm).
    #[allow(clippy::too_many_arguments)]
    fn tables(
        &mut self,
        gpu: &GpuContext,
        stream: &Arc<CudaStream>,
        (in_h, in_w): (usize, usize),
        (out_h, out_w): (usize, usize),
        (keep_h, keep_w): (usize, usize),
        kernel: TorchBilinearKernel,
        base: usize,
    ) -> Result<TablePtrs> {
        let th = bilinear_tables(in_h, out_h, kernel, keep_h);
        let tw = bilinear_tables(in_w, out_w, kernel, keep_w);
        let ints: Vec<i32> = [th.0, th.1, tw.0, tw.1].concat();
        let floats: Vec<f32> = [th.2, th.3, tw.2, tw.3].concat();
        let n = base + ints.len();
        let ip = self.ints.ptr(gpu, stream, n)?;
        let fp = self.floats.ptr(gpu, stream, n)?;
        let ib = self.ints.get(gpu, stream, n)?;
        let mut iv = ib.slice_mut(base..n);
        guarded("copying resize tables", || {
            stream.memcpy_htod(&ints, &mut iv)
        })?;
        let fb = self.floats.get(gpu, stream, n)?;
        let mut fv = fb.slice_mut(base..n);
        guarded("copying resize tables", || {
            stream.memcpy_htod(&floats, &mut fv)
        })?;
        let at = |p: u64, k: usize, sz: usize| p + ((base + k) * sz) as u64;
        let (h, w) = (keep_h, keep_w);
        Ok((
            [at(ip, 0, 4), at(ip, h, 4), at(fp, 0, 4), at(fp, h, 4)],
            [
                at(ip, 2 * h, 4),
                at(ip, 2 * h + w, 4),
                at(fp, 2 * h, 4),
                at(fp, 2 * h + w, 4),
            ],
        ))
    }
}

/// [`threshold_pack_into`] on the first `masks` planes `[h, w]` of the last
/// [`postprocess_into`]'s logits, which stay in `scratch`.
pub fn threshold_pack_logits(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    masks: usize,
    (h, w): (usize, usize),
    scratch: &mut PostScratch,
) -> Result<()> {
    with_logits(scratch, |logits, scratch| {
        threshold_pack_into(gpu, stream, logits, masks, (h, w), scratch)
    })
}

/// Runs `f` on the last [`postprocess_into`]'s logits, held in `scratch`, with the rest of
/// the scratch (the logits are taken out for the call and put back).
fn with_logits<R>(
    scratch: &mut PostScratch,
    f: impl FnOnce(&CudaSlice<f32>, &mut PostScratch) -> Result<R>,
) -> Result<R> {
    let out = std::mem::take(&mut scratch.out);
    let r = match &out.0 {
        Some(logits) => f(logits, scratch),
        None => Err(Error::Cuda(
            "post-processing scratch holds no logits".into(),
        )),
    };
    scratch.out = out;
    r
}

/// [`stability_scores_with`] on the first `masks` planes of `plane` values of the last
/// [`postprocess_into`]'s logits, which stay in `scratch`.
pub fn stability_scores_logits(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    masks: usize,
    plane: usize,
    offset: f32,
    scratch: &mut PostScratch,
) -> Result<Vec<f32>> {
    with_logits(scratch, |logits, scratch| {
        let view = logits.slice(0..(masks * plane).min(logits.len()));
        stability_scores_with(gpu, stream, &view, masks, plane, offset, scratch)
    })
}

/// Where a resize reads: device address, row and plane strides (in elements), and the
/// optional device plane list (0: none).
struct Src {
    ptr: u64,
    row_stride: usize,
    plane_stride: usize,
    planes: u64,
}

/// Bilinear from the top-left `in_h x in_w` window of planes `src` to the first
/// `keep_h x keep_w` outputs of an `out_h x out_w` resize, written as `[masks, keep_h,
/// keep_w]` at `out`.
#[allow(clippy::too_many_arguments)]
fn resize(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    src: &Src,
    masks: usize,
    (in_h, in_w): (usize, usize),
    out_size: (usize, usize),
    (keep_h, keep_w): (usize, usize),
    kernel: TorchBilinearKernel,
    (t, tables_base): (&mut PostScratch, usize),
    out: u64,
) -> Result<()> {
    let ((hi0, hi1, hl0, hl1), (wi0, wi1, wl0, wl1)) = {
        let (h, w) = t.tables(
            gpu,
            stream,
            (in_h, in_w),
            out_size,
            (keep_h, keep_w),
            kernel,
            tables_base,
        )?;
        ((h[0], h[1], h[2], h[3]), (w[0], w[1], w[2], w[3]))
    };
    let (rs, ps) = (
        as_i32("row stride", src.row_stride)?,
        src.plane_stride as i64,
    );
    let (kh, kw) = (as_i32("rows", keep_h)?, as_i32("columns", keep_w)?);
    let (sp, pl) = (src.ptr, src.planes);
    match kernel {
        TorchBilinearKernel::ChannelsLast => {
            let f = gpu.function("bilinear_channels_last_f32")?;
            let mut b = stream.launch_builder(f);
            b.arg(&sp).arg(&rs).arg(&ps).arg(&pl);
            b.arg(&hi0).arg(&hi1).arg(&hl0).arg(&hl1).arg(&kh);
            b.arg(&wi0).arg(&wi1).arg(&wl0).arg(&wl1).arg(&kw).arg(&out);
            let cfg = grid(keep_w, keep_h, masks, PP_THREADS)?;
            // SAFETY: arguments match the kernel signature; the tables hold keep_h / keep_w
            // entries whose indices are < in_h / in_w, the caller checked src covers every
            // (plane, row, column) they address, and out holds masks*keep_h*keep_w values.
            guarded("bilinear_channels_last_f32", || {
                unsafe { b.launch(cfg) }.map(|_| ())
            })?;
        }
        TorchBilinearKernel::Generic => {
            let tp = t.tmp.ptr(gpu, stream, masks * in_h * keep_w)?;
            let ih = as_i32("input rows", in_h)?;
            {
                let f = gpu.function("bilinear_w_f32")?;
                let mut b = stream.launch_builder(f);
                b.arg(&sp).arg(&rs).arg(&ps).arg(&pl).arg(&ih);
                b.arg(&wi0).arg(&wi1).arg(&wl0).arg(&wl1).arg(&kw).arg(&tp);
                let cfg = grid(keep_w, in_h, masks, PP_THREADS)?;
                // SAFETY: as above; tmp holds masks*in_h*keep_w values.
                guarded("bilinear_w_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
            }
            let f = gpu.function("bilinear_h_f32")?;
            let mut b = stream.launch_builder(f);
            b.arg(&tp).arg(&ih);
            b.arg(&hi0).arg(&hi1).arg(&hl0).arg(&hl1);
            b.arg(&kh).arg(&kw).arg(&out);
            let cfg = grid(keep_w, keep_h, masks, PP_THREADS)?;
            // SAFETY: the row tables index rows < in_h of tmp; out holds masks*keep_h*keep_w.
            guarded("bilinear_h_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
        }
    }
    Ok(())
}

/// `Sam.postprocess_masks` into `scratch` (read it with [`PostScratch::logits`]): planes
/// `[*, s, s]` of `low_res` (s = `frame.low_res`), either the first `masks` or, with
/// `planes`, the listed ones in that order, to logits `[masks, H, W]` at `orig_size`,
/// bit-identical to [`MaskFrame::postprocess_with`] with the same `torch_threads`.
#[allow(clippy::too_many_arguments)]
pub fn postprocess_into(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    frame: MaskFrame,
    low_res: &dyn DevicePtr<f32>,
    (masks, planes): (usize, Option<&[i32]>),
    input_size: (usize, usize),
    orig_size: (usize, usize),
    torch_threads: usize,
    scratch: &mut PostScratch,
) -> Result<()> {
    let plane = frame.plane();
    gpu.check_stream(stream)?;
    let available = low_res.len() / plane.max(1);
    if let Some(p) = planes {
        if p.len() != masks || p.iter().any(|&k| k < 0 || k as usize >= available) {
            return Err(Error::Shape {
                name: "post-processing plane list".into(),
                expected: vec![masks, available],
                got: vec![
                    p.len(),
                    p.iter().map(|&k| k.max(0) as usize).max().unwrap_or(0),
                ],
            });
        }
    } else {
        check_len("low_res masks", low_res.len(), masks * plane)?;
    }
    // The launch reads planes of a possibly longer buffer.
    frame.check_args(masks * plane, masks, input_size, orig_size)?;
    let (ih, iw) = input_size;
    let (oh, ow) = orig_size;
    let (s, img) = (frame.low_res, frame.img_size);
    let k1 = torch_kernel_for(masks, img, img, torch_threads);
    let k2 = torch_kernel_for(masks, oh, ow, torch_threads);
    // The plane list goes first in `ints`, both resizes' tables after it; sized for all
    // of them up front, so nothing is reallocated under a pending launch.
    let base = planes.map_or(0, <[i32]>::len);
    let need = base + 2 * (ih + iw + oh + ow);
    scratch.floats.get(gpu, stream, need)?;
    let plane_ptr = match planes {
        Some(p) => {
            let buf = scratch.ints.get(gpu, stream, need)?;
            let mut v = buf.slice_mut(0..p.len());
            guarded("copying the plane list", || stream.memcpy_htod(p, &mut v))?;
            let (ptr, _g) = buf.device_ptr(stream);
            ptr
        }
        None => 0,
    };
    let (lp, _l) = low_res.device_ptr(stream);
    let up = scratch.up.ptr(gpu, stream, masks * ih * iw)?;
    let src = Src {
        ptr: lp,
        row_stride: s,
        plane_stride: plane,
        planes: plane_ptr,
    };
    resize(
        gpu,
        stream,
        &src,
        masks,
        (s, s),
        (img, img),
        (ih, iw),
        k1,
        (scratch, base),
        up,
    )?;
    let out = scratch.out.ptr(gpu, stream, masks * oh * ow)?;
    let src = Src {
        ptr: up,
        row_stride: iw,
        plane_stride: ih * iw,
        planes: 0,
    };
    // After the first resize's tables: both stay valid until the stream has run them.
    let base2 = base + 2 * (ih + iw);
    resize(
        gpu,
        stream,
        &src,
        masks,
        (ih, iw),
        (oh, ow),
        (oh, ow),
        k2,
        (scratch, base2),
        out,
    )
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
    let mut scratch = PostScratch::default();
    postprocess_into(
        gpu,
        stream,
        frame,
        low_res,
        (masks, None),
        input_size,
        orig_size,
        torch_threads,
        &mut scratch,
    )?;
    scratch
        .out
        .0
        .ok_or_else(|| Error::Cuda("post-processing wrote no logits".into()))
}

/// `logits > 0` for `masks` planes `[h, w]`, packed, with area and box per mask, into
/// `scratch`; [`download_packed`] copies them back.
pub fn threshold_pack_into(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    logits: &dyn DevicePtr<f32>,
    masks: usize,
    (h, w): (usize, usize),
    scratch: &mut PostScratch,
) -> Result<()> {
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
    let bp = scratch.bits.ptr(gpu, stream, masks * h * words)?;
    let area = scratch.area.get(gpu, stream, masks)?;
    guarded("clearing mask areas", || stream.memset_zeros(area))?;
    let (ap, _a) = area.device_ptr(stream);
    let init: Vec<i32> = (0..masks)
        .flat_map(|_| [i32::MAX, i32::MAX, -1, -1])
        .collect();
    let boxes = scratch.boxes.get(gpu, stream, 4 * masks)?;
    let mut bv = boxes.slice_mut(0..4 * masks);
    guarded("initialising mask boxes", || {
        stream.memcpy_htod(&init, &mut bv)
    })?;
    let (xp, _x) = boxes.device_ptr(stream);
    let f = gpu.function("mask_threshold_pack")?;
    let (lp, _l) = logits.device_ptr(stream);
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
    })
}

/// The first `masks` of a [`threshold_pack_into`]'s results, copied to the host (waits
/// for the stream): only the bits and the statistics travel.
pub fn download_packed(
    stream: &Arc<CudaStream>,
    scratch: &PostScratch,
    masks: usize,
    (h, w): (usize, usize),
) -> Result<PackedMasks> {
    let words = w.div_ceil(32);
    let bits = first(stream, &scratch.bits, masks * h * words)?;
    Ok(PackedMasks {
        h,
        w,
        words_per_row: words,
        bits,
        stats: download_stats(stream, scratch, masks)?,
    })
}

/// The first `n` elements of a scratch buffer, copied to the host.
fn first<T: DeviceRepr>(stream: &Arc<CudaStream>, b: &Grow<T>, n: usize) -> Result<Vec<T>> {
    match &b.0 {
        Some(b) if b.len() >= n => {
            guarded("device-to-host copy", || stream.clone_dtoh(&b.slice(0..n)))
        }
        _ => Err(Error::Cuda(
            "post-processing scratch holds no packed masks".into(),
        )),
    }
}

/// Area and box of the first `masks` packed planes.
fn download_stats(
    stream: &Arc<CudaStream>,
    scratch: &PostScratch,
    masks: usize,
) -> Result<Vec<MaskStats>> {
    let area = first(stream, &scratch.area, masks)?;
    let boxes = first(stream, &scratch.boxes, 4 * masks)?;
    Ok(area
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
        .collect())
}

/// Planes `keep` (ascending, each below `masks`) of a [`threshold_pack_into`]'s `masks`
/// results, copied to the host in that order (waits for the stream): the bits of the other
/// planes stay on the device.
pub fn download_packed_planes(
    stream: &Arc<CudaStream>,
    scratch: &PostScratch,
    masks: usize,
    keep: &[usize],
    (h, w): (usize, usize),
) -> Result<PackedMasks> {
    if keep.windows(2).any(|p| p[0] >= p[1]) || keep.last().is_some_and(|&k| k >= masks) {
        return Err(Error::Shape {
            name: "packed planes to download (ascending, below the count)".into(),
            expected: vec![masks],
            got: keep.to_vec(),
        });
    }
    if keep.len() == masks {
        return download_packed(stream, scratch, masks, (h, w));
    }
    let words = w.div_ceil(32);
    let plane = h * words;
    let bits_dev = match &scratch.bits.0 {
        Some(b) if b.len() >= masks * plane => b,
        _ => {
            return Err(Error::Cuda(
                "post-processing scratch holds no packed masks".into(),
            ))
        }
    };
    // Runs of consecutive planes travel in one copy each.
    let mut bits = Vec::with_capacity(keep.len() * plane);
    let mut i = 0;
    while i < keep.len() {
        let mut j = i + 1;
        while j < keep.len() && keep[j] == keep[j - 1] + 1 {
            j += 1;
        }
        let run = bits_dev.slice(keep[i] * plane..(keep[j - 1] + 1) * plane);
        bits.extend(guarded("device-to-host copy", || stream.clone_dtoh(&run))?);
        i = j;
    }
    let all = download_stats(stream, scratch, masks)?;
    Ok(PackedMasks {
        h,
        w,
        words_per_row: words,
        bits,
        stats: keep.iter().map(|&k| all[k]).collect(),
    })
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
    let mut scratch = PostScratch::default();
    threshold_pack_into(gpu, stream, logits, masks, (h, w), &mut scratch)?;
    download_packed(stream, &scratch, masks, (h, w))
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
    stability_scores_with(
        gpu,
        stream,
        logits,
        masks,
        plane,
        offset,
        &mut PostScratch::default(),
    )
}

/// [`stability_scores`] counting in `scratch` (no allocation once warm).
pub fn stability_scores_with(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    logits: &dyn DevicePtr<f32>,
    masks: usize,
    plane: usize,
    offset: f32,
    scratch: &mut PostScratch,
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
    let counts = scratch.counts.get(gpu, stream, 2 * masks)?;
    guarded("clearing stability counts", || stream.memset_zeros(counts))?;
    let f = gpu.function("mask_stability_counts")?;
    let (lp, _l) = logits.device_ptr(stream);
    let (cp, _c) = counts.device_ptr(stream);
    let pl = plane as i64;
    let mut b = stream.launch_builder(f);
    b.arg(&lp).arg(&pl).arg(&offset).arg(&cp);
    let cfg = grid(STAB_BLOCKS * PP_THREADS, 1, masks, PP_THREADS)?;
    // SAFETY: arguments match the kernel; logits hold masks*plane values, counts 2*masks.
    guarded("mask_stability_counts", || {
        unsafe { b.launch(cfg) }.map(|_| ())
    })?;
    drop((_l, _c));
    let counts = guarded("device-to-host copy", || {
        stream.clone_dtoh(&counts.slice(0..2 * masks))
    })?;
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
