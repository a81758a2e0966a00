//! Mask logits back to image resolution, bit-exact with PyTorch's CPU `F.interpolate`.
//!
//! `Sam.postprocess_masks` is two `F.interpolate(mode="bilinear", align_corners=False)`
//! calls. PyTorch's CPU build contracts its multiply-adds into FMAs, so matching it to the
//! last bit means reproducing which products are fused; the formulas below were pinned
//! down empirically against torch 2.x on x86-64 (see tests/postprocess.rs).
//!
//! Two kernels exist in PyTorch and both are reproduced:
//! - generic (NCHW): per axis `t = fma(x0, l0, x1 * l1)`, first along W then along H.
//!   Separable, so we run it as a horizontal pass then a vertical pass.
//! - channels-last: weights `w_ij = h_i * w_j`, `out = fma(x11, w11, fma(x10, w10,
//!   fma(x00, w00, x01 * w01)))`, and its source index uses `fma(scale, d + 0.5, -0.5)`.
//!   PyTorch picks it when `out_h + out_w <= 128`, and also when torch runs on one thread
//!   with exactly 3 channels (see [`torch_kernel_for`]).

use crate::error::{Error, Result};
use rayon::prelude::*;

/// Side of the official decoder's low-resolution mask logits (4x the 64x64 embedding);
/// other input sizes use [`MaskFrame`].
pub const LOW_RES: usize = 256;
/// Side of the official models' padded encoder input.
pub const IMG_SIZE: usize = 1024;

/// Which PyTorch CPU bilinear kernel to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TorchBilinearKernel {
    Generic,
    ChannelsLast,
}

/// PyTorch's choice (`upsample_bilinear2d_kernel_impl_float`) for a contiguous NCHW float
/// tensor with `channels` channels and `torch_threads` intra-op threads.
pub fn torch_kernel_for(
    channels: usize,
    out_h: usize,
    out_w: usize,
    torch_threads: usize,
) -> TorchBilinearKernel {
    if out_h + out_w <= 128 || (torch_threads == 1 && channels == 3) {
        TorchBilinearKernel::ChannelsLast
    } else {
        TorchBilinearKernel::Generic
    }
}

/// Per-axis source indices and weights (`compute_source_index_and_lambda`).
struct Axis {
    i0: Vec<usize>,
    i1: Vec<usize>,
    l0: Vec<f32>,
    l1: Vec<f32>,
}

impl Axis {
    fn truncate(&mut self, n: usize) {
        self.i0.truncate(n);
        self.i1.truncate(n);
        self.l0.truncate(n);
        self.l1.truncate(n);
    }
}

/// The source-index and weight tables of one axis (`i0, i1, l0, l1` per output position,
/// first `keep` positions), as the GPU kernels take them: the same numbers the CPU path
/// uses, so both round identically.
pub fn bilinear_tables(
    in_size: usize,
    out_size: usize,
    kernel: TorchBilinearKernel,
    keep: usize,
) -> (Vec<i32>, Vec<i32>, Vec<f32>, Vec<f32>) {
    let mut a = axis(
        in_size,
        out_size,
        kernel == TorchBilinearKernel::ChannelsLast,
    );
    a.truncate(keep);
    let idx = |v: &[usize]| v.iter().map(|&i| i as i32).collect();
    (idx(&a.i0), idx(&a.i1), a.l0, a.l1)
}

fn axis(in_size: usize, out_size: usize, fused_src: bool) -> Axis {
    let mut a = Axis {
        i0: Vec::with_capacity(out_size),
        i1: Vec::with_capacity(out_size),
        l0: Vec::with_capacity(out_size),
        l1: Vec::with_capacity(out_size),
    };
    // area_pixel_compute_scale: float(in) / out in float32.
    let scale = in_size as f32 / out_size as f32;
    for d in 0..out_size {
        if in_size == out_size {
            a.i0.push(d);
            a.i1.push(d);
            a.l0.push(1.0);
            a.l1.push(0.0);
            continue;
        }
        let dd = d as f32 + 0.5;
        let src = if fused_src {
            fma(scale, dd, -0.5)
        } else {
            scale * dd - 0.5
        };
        let src = if src < 0.0 { 0.0 } else { src };
        let i0 = (src.floor() as usize).min(in_size - 1);
        let l1 = (src - i0 as f32).clamp(0.0, 1.0);
        a.i0.push(i0);
        a.i1.push(if i0 < in_size - 1 { i0 + 1 } else { i0 });
        a.l1.push(l1);
        a.l0.push(1.0 - l1);
    }
    a
}

/// Correctly rounded fused multiply-add. With the `fma` target feature this is one
/// instruction; otherwise Rust falls back to a (slower, equally exact) software routine.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// One output row of the generic kernel's W pass: `fma(x[i0], l0, x[i1] * l1)`.
#[inline(always)]
fn hrow(src: &[f32], ax: &Axis, out: &mut [f32]) {
    for (q, o) in out.iter_mut().enumerate() {
        *o = fma(src[ax.i0[q]], ax.l0[q], src[ax.i1[q]] * ax.l1[q]);
    }
}

/// The H pass combines two W-interpolated rows: `fma(t0, l0, t1 * l1)`.
#[inline(always)]
fn vrow(t0: &[f32], t1: &[f32], l0: f32, l1: f32, out: &mut [f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(t0).zip(t1) {
        *o = fma(a, l0, b * l1);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn hrow_fma(src: &[f32], ax: &Axis, out: &mut [f32]) {
    hrow(src, ax, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn vrow_fma(t0: &[f32], t1: &[f32], l0: f32, l1: f32, out: &mut [f32]) {
    vrow(t0, t1, l0, l1, out)
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn hrow_dispatch(fast: bool, src: &[f32], ax: &Axis, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is only true when the CPU reports fma and avx2.
        return unsafe { hrow_fma(src, ax, out) };
    }
    let _ = fast;
    hrow(src, ax, out)
}

fn vrow_dispatch(fast: bool, t0: &[f32], t1: &[f32], l0: f32, l1: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is only true when the CPU reports fma and avx2.
        return unsafe { vrow_fma(t0, t1, l0, l1, out) };
    }
    let _ = fast;
    vrow(t0, t1, l0, l1, out)
}

/// Generic kernel on the top-left `src_h x in_w` window of a `src_w`-wide map; the axes
/// say which output rows/cols to produce. The kernel is separable, so each W-interpolated
/// source row is computed once (only if some output row reads it) and shared.
fn generic(
    src: &[f32],
    src_w: usize,
    src_h: usize,
    in_w: usize,
    ax_h: &Axis,
    ax_w: &Axis,
) -> Vec<f32> {
    let out_w = ax_w.i0.len();
    let fast = has_fma();
    let tmp = generic_w_pass(src, src_w, src_h, in_w, ax_h, ax_w, fast);
    let mut out = vec![0f32; ax_h.i0.len() * out_w];
    out.par_chunks_mut(out_w).enumerate().for_each(|(r, orow)| {
        generic_h_row(&tmp, out_w, ax_h, r, fast, orow);
    });
    out
}

/// [`generic`] followed by `> 0.0`, without materialising the f32 output: each row is
/// interpolated into a per-thread buffer and thresholded from there (the same values, so
/// the same masks as `threshold(generic(..))`).
fn generic_threshold(
    src: &[f32],
    src_w: usize,
    src_h: usize,
    in_w: usize,
    ax_h: &Axis,
    ax_w: &Axis,
) -> Vec<bool> {
    let out_w = ax_w.i0.len();
    let fast = has_fma();
    let tmp = generic_w_pass(src, src_w, src_h, in_w, ax_h, ax_w, fast);
    let mut out = vec![false; ax_h.i0.len() * out_w];
    out.par_chunks_mut(out_w).enumerate().for_each_init(
        || vec![0f32; out_w],
        |buf, (r, orow)| {
            generic_h_row(&tmp, out_w, ax_h, r, fast, buf);
            orow.iter_mut()
                .zip(buf.iter())
                .for_each(|(o, &v)| *o = v > 0.0);
        },
    );
    out
}

/// The W pass: every source row some output row reads, interpolated to `out_w` columns.
fn generic_w_pass(
    src: &[f32],
    src_w: usize,
    src_h: usize,
    in_w: usize,
    ax_h: &Axis,
    ax_w: &Axis,
    fast: bool,
) -> Vec<f32> {
    let out_w = ax_w.i0.len();
    let mut needed = vec![false; src_h];
    for r in 0..ax_h.i0.len() {
        needed[ax_h.i0[r]] = true;
        needed[ax_h.i1[r]] = true;
    }
    let mut tmp = vec![0f32; src_h * out_w];
    tmp.par_chunks_mut(out_w)
        .enumerate()
        .filter(|(y, _)| needed[*y])
        .for_each(|(y, trow)| {
            hrow_dispatch(fast, &src[y * src_w..y * src_w + in_w], ax_w, trow);
        });
    tmp
}

/// Output row `r` of the H pass from the W-interpolated rows.
fn generic_h_row(tmp: &[f32], out_w: usize, ax_h: &Axis, r: usize, fast: bool, orow: &mut [f32]) {
    let (a, b) = (ax_h.i0[r], ax_h.i1[r]);
    vrow_dispatch(
        fast,
        &tmp[a * out_w..(a + 1) * out_w],
        &tmp[b * out_w..(b + 1) * out_w],
        ax_h.l0[r],
        ax_h.l1[r],
        orow,
    );
}

fn channels_last(src: &[f32], src_w: usize, ax_h: &Axis, ax_w: &Axis) -> Vec<f32> {
    let out_w = ax_w.i0.len();
    let out_h = ax_h.i0.len();
    let mut out = vec![0f32; out_h * out_w];
    out.par_chunks_mut(out_w).enumerate().for_each(|(r, orow)| {
        let (h0, h1) = (ax_h.l0[r], ax_h.l1[r]);
        let r0 = &src[ax_h.i0[r] * src_w..];
        let r1 = &src[ax_h.i1[r] * src_w..];
        for (q, o) in orow.iter_mut().enumerate() {
            let (c0, c1) = (ax_w.i0[q], ax_w.i1[q]);
            let (w0, w1) = (ax_w.l0[q], ax_w.l1[q]);
            let (w00, w01, w10, w11) = (h0 * w0, h0 * w1, h1 * w0, h1 * w1);
            let s = fma(r0[c0], w00, r0[c1] * w01);
            let s = fma(r1[c0], w10, s);
            *o = fma(r1[c1], w11, s);
        }
    });
    out
}

fn check_len(name: &str, got: usize, h: usize, w: usize) -> Result<()> {
    if h == 0 || w == 0 || got != h * w {
        return Err(Error::Shape {
            name: name.to_string(),
            expected: vec![h, w],
            got: vec![got],
        });
    }
    Ok(())
}

/// `F.interpolate(x[None, None], (out_h, out_w), mode="bilinear", align_corners=False)`
/// for one float32 channel, as PyTorch's multi-threaded CPU build computes it.
pub fn resize_bilinear_torch(
    src: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<f32>> {
    let kernel = torch_kernel_for(1, out_h, out_w, 2);
    resize_bilinear_torch_with(src, in_h, in_w, out_h, out_w, kernel)
}

/// As [`resize_bilinear_torch`] with an explicit choice of PyTorch kernel.
pub fn resize_bilinear_torch_with(
    src: &[f32],
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: TorchBilinearKernel,
) -> Result<Vec<f32>> {
    check_len("bilinear input", src.len(), in_h, in_w)?;
    if out_h == 0 || out_w == 0 {
        return Err(Error::Shape {
            name: "bilinear output".into(),
            expected: vec![1, 1],
            got: vec![out_h, out_w],
        });
    }
    Ok(resize_window(src, in_w, in_h, in_w, out_h, out_w, kernel))
}

/// Bilinear on the top-left `in_h x in_w` window of a `src_w`-wide map (the crop in
/// `masks[..., :h, :w]` is a view, so PyTorch interpolates exactly these values).
fn resize_window(
    src: &[f32],
    src_w: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: TorchBilinearKernel,
) -> Vec<f32> {
    let fused = kernel == TorchBilinearKernel::ChannelsLast;
    let ax_h = axis(in_h, out_h, fused);
    let ax_w = axis(in_w, out_w, fused);
    match kernel {
        TorchBilinearKernel::Generic => generic(src, src_w, in_h, in_w, &ax_h, &ax_w),
        TorchBilinearKernel::ChannelsLast => channels_last(src, src_w, &ax_h, &ax_w),
    }
}

/// The two square frames `Sam.postprocess_masks` maps between: the decoder's low-res masks
/// (`low_res`, 4x the embedding side: 256 at the official 1024 input, 64 at 256) and the
/// padded model input (`img_size`). Masks go `low_res` -> `img_size`, are cropped to the
/// resized image, then go to the original size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskFrame {
    pub low_res: usize,
    pub img_size: usize,
}

impl MaskFrame {
    /// The official models' frame: 256 -> 1024.
    pub const OFFICIAL: MaskFrame = MaskFrame {
        low_res: LOW_RES,
        img_size: IMG_SIZE,
    };

    /// The frame of a model whose input side is `img_size` and embedding side `grid`.
    pub fn new(grid: usize, img_size: usize) -> MaskFrame {
        MaskFrame {
            low_res: 4 * grid,
            img_size,
        }
    }

    /// Values in one low-res mask plane.
    pub fn plane(&self) -> usize {
        self.low_res * self.low_res
    }

    /// `Sam.postprocess_masks` for `c` low-res masks `[c, low_res, low_res]`: bilinear to
    /// `img_size` square, crop to `input_size` (h, w), bilinear to `orig_size` (h, w).
    /// Returns `[c, H, W]` logits. Matches PyTorch run with more than one thread (its
    /// default); see [`MaskFrame::postprocess_with`] for single-threaded PyTorch.
    pub fn postprocess(
        &self,
        low_res: &[f32],
        c: usize,
        input_size: (usize, usize),
        orig_size: (usize, usize),
    ) -> Result<Vec<f32>> {
        self.postprocess_with(low_res, c, input_size, orig_size, TORCH_THREADS)
    }

    /// As [`MaskFrame::postprocess`], reproducing PyTorch with `torch_threads` intra-op
    /// threads (the kernel choice, hence the last bit, depends on it for 3-channel inputs).
    pub fn postprocess_with(
        &self,
        low_res: &[f32],
        c: usize,
        input_size: (usize, usize),
        orig_size: (usize, usize),
        torch_threads: usize,
    ) -> Result<Vec<f32>> {
        self.postprocess_each(
            low_res,
            c,
            input_size,
            orig_size,
            torch_threads,
            |up, k2| {
                let (ih, iw) = input_size;
                let (oh, ow) = orig_size;
                resize_window(up, iw, ih, iw, oh, ow, k2)
            },
        )
    }

    /// `threshold(postprocess(..))` (`masks > 0.0` at the original size) without the
    /// `[c, H, W]` f32 logits in between: what a caller that only wants masks needs, at a
    /// fraction of the memory traffic. Equal to the two-step result bit for bit.
    pub fn postprocess_threshold(
        &self,
        low_res: &[f32],
        c: usize,
        input_size: (usize, usize),
        orig_size: (usize, usize),
    ) -> Result<Vec<bool>> {
        let (ih, iw) = input_size;
        let (oh, ow) = orig_size;
        self.postprocess_each(
            low_res,
            c,
            input_size,
            orig_size,
            TORCH_THREADS,
            |up, k2| match k2 {
                TorchBilinearKernel::Generic => {
                    let (ax_h, ax_w) = (axis(ih, oh, false), axis(iw, ow, false));
                    generic_threshold(up, iw, ih, iw, &ax_h, &ax_w)
                }
                TorchBilinearKernel::ChannelsLast => {
                    threshold(&resize_window(up, iw, ih, iw, oh, ow, k2))
                }
            },
        )
    }

    /// Rejects what `Sam.postprocess_masks` cannot take: `c` low-res planes `[c, low_res,
    /// low_res]` (`low_res_len` values), an input size within the `img_size` frame, a
    /// non-empty original size. Shared by the CPU path and the CUDA launcher.
    pub fn check_args(
        &self,
        low_res_len: usize,
        c: usize,
        (ih, iw): (usize, usize),
        (oh, ow): (usize, usize),
    ) -> Result<()> {
        let (s, img) = (self.low_res, self.img_size);
        if s == 0 || img == 0 {
            return Err(Error::Shape {
                name: "postprocess frame (low-res side, input side)".into(),
                expected: vec![LOW_RES, IMG_SIZE],
                got: vec![s, img],
            });
        }
        if c == 0 || Some(low_res_len) != c.checked_mul(s * s) {
            return Err(Error::Shape {
                name: "low_res_masks".into(),
                expected: vec![c, s, s],
                got: vec![low_res_len],
            });
        }
        if ih == 0 || iw == 0 || ih > img || iw > img || oh == 0 || ow == 0 {
            return Err(Error::Shape {
                name: "postprocess sizes (input h, w, original h, w)".into(),
                expected: vec![img, img, 1, 1],
                got: vec![ih, iw, oh, ow],
            });
        }
        Ok(())
    }

    /// Validates, then per mask: the cropped `low_res -> img_size` upsample and
    /// `stage2(upsampled, kernel)` for the resize to the original size, concatenated.
    fn postprocess_each<T>(
        &self,
        low_res: &[f32],
        c: usize,
        input_size: (usize, usize),
        orig_size: (usize, usize),
        torch_threads: usize,
        stage2: impl Fn(&[f32], TorchBilinearKernel) -> Vec<T>,
    ) -> Result<Vec<T>> {
        self.check_args(low_res.len(), c, input_size, orig_size)?;
        let (ih, iw) = input_size;
        let (oh, ow) = orig_size;
        let k1 = torch_kernel_for(c, self.img_size, self.img_size, torch_threads);
        let k2 = torch_kernel_for(c, oh, ow, torch_threads);
        let mut out = Vec::with_capacity(c * oh * ow);
        for m in low_res.chunks_exact(self.plane()) {
            out.extend(stage2(&self.upsample_cropped(m, ih, iw, k1), k2));
        }
        Ok(out)
    }

    /// The `low_res -> img_size` upsample restricted to the `[:ih, :iw]` crop: every output
    /// element is computed independently by PyTorch, so skipping the cropped-away ones
    /// changes nothing.
    fn upsample_cropped(
        &self,
        m: &[f32],
        ih: usize,
        iw: usize,
        kernel: TorchBilinearKernel,
    ) -> Vec<f32> {
        let fused = kernel == TorchBilinearKernel::ChannelsLast;
        let s = self.low_res;
        let mut ax_h = axis(s, self.img_size, fused);
        let mut ax_w = axis(s, self.img_size, fused);
        ax_h.truncate(ih);
        ax_w.truncate(iw);
        match kernel {
            TorchBilinearKernel::Generic => generic(m, s, s, s, &ax_h, &ax_w),
            TorchBilinearKernel::ChannelsLast => channels_last(m, s, &ax_h, &ax_w),
        }
    }
}

/// [`MaskFrame::postprocess`] in the official 256 -> 1024 frame.
pub fn postprocess_masks(
    low_res: &[f32],
    c: usize,
    input_size: (usize, usize),
    orig_size: (usize, usize),
) -> Result<Vec<f32>> {
    MaskFrame::OFFICIAL.postprocess(low_res, c, input_size, orig_size)
}

/// PyTorch's intra-op thread count that [`MaskFrame::postprocess`] reproduces (any count
/// above one picks the same kernels).
pub const TORCH_THREADS: usize = 2;

/// [`MaskFrame::postprocess_with`] in the official 256 -> 1024 frame.
pub fn postprocess_masks_with(
    low_res: &[f32],
    c: usize,
    input_size: (usize, usize),
    orig_size: (usize, usize),
    torch_threads: usize,
) -> Result<Vec<f32>> {
    MaskFrame::OFFICIAL.postprocess_with(low_res, c, input_size, orig_size, torch_threads)
}

/// [`MaskFrame::postprocess_threshold`] in the official 256 -> 1024 frame.
pub fn postprocess_masks_threshold(
    low_res: &[f32],
    c: usize,
    input_size: (usize, usize),
    orig_size: (usize, usize),
) -> Result<Vec<bool>> {
    MaskFrame::OFFICIAL.postprocess_threshold(low_res, c, input_size, orig_size)
}

/// [`MaskFrame::check_args`] in the official 256 -> 1024 frame.
pub fn check_postprocess_args(
    low_res_len: usize,
    c: usize,
    input_size: (usize, usize),
    orig_size: (usize, usize),
) -> Result<()> {
    MaskFrame::OFFICIAL.check_args(low_res_len, c, input_size, orig_size)
}

/// `mask = logits > mask_threshold` with SAM's threshold 0.0 (strict; NaN is false).
pub fn threshold(logits: &[f32]) -> Vec<bool> {
    logits.iter().map(|&v| v > 0.0).collect()
}

/// Area and tight bounding box of a binary mask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MaskStats {
    pub area: u64,
    /// x, y, w, h with the official convention (`batched_mask_to_box` then
    /// `box_xyxy_to_xywh`): w = max_x - min_x, so a one-pixel mask has w = 0; all zero when
    /// empty. One convention for `segment` and `auto`, so their boxes compare directly.
    pub bbox: [u32; 4],
}

/// Area and bounding box of an `h x w` row-major mask.
pub fn mask_stats(mask: &[bool], h: usize, w: usize) -> Result<MaskStats> {
    check_len("mask", mask.len(), h, w)?;
    let rows: Vec<(u64, usize, usize)> = mask
        .par_chunks(w)
        .map(|row| {
            let area = row.iter().filter(|&&b| b).count() as u64;
            let lo = row.iter().position(|&b| b).unwrap_or(usize::MAX);
            let hi = row.iter().rposition(|&b| b).unwrap_or(0);
            (area, lo, hi)
        })
        .collect();
    let area: u64 = rows.iter().map(|r| r.0).sum();
    if area == 0 {
        return Ok(MaskStats::default());
    }
    let y0 = rows.iter().position(|r| r.0 > 0).unwrap_or(0);
    let y1 = rows.iter().rposition(|r| r.0 > 0).unwrap_or(0);
    let x0 = rows
        .iter()
        .filter(|r| r.0 > 0)
        .map(|r| r.1)
        .min()
        .unwrap_or(0);
    let x1 = rows
        .iter()
        .filter(|r| r.0 > 0)
        .map(|r| r.2)
        .max()
        .unwrap_or(0);
    Ok(MaskStats {
        area,
        bbox: [x0 as u32, y0 as u32, (x1 - x0) as u32, (y1 - y0) as u32],
    })
}
