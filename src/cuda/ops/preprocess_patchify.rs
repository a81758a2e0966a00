//! Image normalisation fused with the patch embedding's im2col
//! (`kernels/preprocess_patchify.cu`): Pillow-resized uint8 HWC images in, the fp16 patch
//! matrix `[B * grid^2, 3 * patch^2]` that the patch-embedding GEMM reads as its A operand
//! out. CPU twin: [`crate::cpu::ops::preprocess_patchify`] (bit-identical before the fp16
//! rounding, which is round-to-nearest-even on both sides).
//!
//! Device layout: image `b` sits in a fixed slot of `img_size^2 * 3` bytes at byte
//! `b * img_size^2 * 3` of the pixel buffer (rows packed at pitch `3 * w`, the rest of the
//! slot unused), and its size in the device array `sizes[b] = [h, w]` (i32). The sizes are
//! read on the device, so one captured launch serves every image size; [`pack_images`]
//! checks sizes on the host and builds both buffers.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

pub use crate::cpu::ops::preprocess_patchify::PatchGeom;
use crate::cpu::ops::preprocess_patchify::PATCHIFY_CHANS;
use crate::cpu::ops::preprocess_patchify::{PIXEL_MEAN, PIXEL_STD};
use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Threads per block; must match `PATCHIFY_THREADS` in the kernel.
pub const PATCHIFY_THREADS: usize = 256;
/// Patch sides are multiples of 8: each thread writes 8 columns as one 16-byte vector.
pub const PATCHIFY_PATCH_MULTIPLE: usize = 8;
/// Largest image side: keeps every in-kernel index (`img_size^2 / 8` threads) in `int`.
pub const PATCHIFY_MAX_IMG_SIZE: usize = 16384;
/// Images per launch (grid.y).
pub const PATCHIFY_MAX_BATCH: usize = 65_535;

/// Bytes of one image slot in the pixel buffer: `img_size^2 * 3`.
pub fn slot_bytes(geom: PatchGeom) -> usize {
    geom.img_size * geom.img_size * PATCHIFY_CHANS
}

/// Everything the launcher checks about the geometry and batch, without a GPU: a patch that
/// is a positive multiple of 8 dividing `img_size <= 16384`, and `1..=65535` images.
pub fn validate(geom: PatchGeom, batch: usize) -> Result<()> {
    geom.validate()?;
    if !geom.patch.is_multiple_of(PATCHIFY_PATCH_MULTIPLE) || geom.img_size > PATCHIFY_MAX_IMG_SIZE
    {
        return Err(Error::Unsupported(format!(
            "preprocess_patchify needs patch % {PATCHIFY_PATCH_MULTIPLE} == 0 and img_size <= \
             {PATCHIFY_MAX_IMG_SIZE}, got patch {} and img_size {}",
            geom.patch, geom.img_size
        )));
    }
    if batch == 0 || batch > PATCHIFY_MAX_BATCH {
        return Err(Error::Unsupported(format!(
            "preprocess_patchify on {batch} images (1..={PATCHIFY_MAX_BATCH})"
        )));
    }
    Ok(())
}

/// Host side of the device layout: checks every image (`(rgb, height, width)`, HWC bytes
/// resized to long side `img_size`) and returns the pixel buffer (`batch` slots of
/// [`slot_bytes`], zero beyond each image) and the `[h, w]` sizes array. (Uploading only
/// each slot's first `h * w * 3` bytes is enough; the kernel reads nothing else.)
pub fn pack_images(
    geom: PatchGeom,
    images: &[(&[u8], usize, usize)],
) -> Result<(Vec<u8>, Vec<i32>)> {
    validate(geom, images.len())?;
    let slot = slot_bytes(geom);
    let mut pixels = Vec::new();
    let mut sizes = Vec::with_capacity(2 * images.len());
    for (b, &(rgb, h, w)) in images.iter().enumerate() {
        geom.check_image(h, w)?;
        if rgb.len() != h * w * PATCHIFY_CHANS {
            return Err(Error::Image(format!(
                "preprocess_patchify image {b}: {w}x{h} RGB needs {} bytes, got {}",
                h * w * PATCHIFY_CHANS,
                rgb.len()
            )));
        }
        pixels.resize(b * slot, 0);
        pixels.extend_from_slice(rgb);
        sizes.extend([h as i32, w as i32]);
    }
    pixels.resize(images.len() * slot, 0);
    Ok((pixels, sizes))
}

/// Writes the patch matrix of each of `batch` images to `out`, image `b` at rows
/// `b * grid^2 ..`, as fp16 bit patterns, in one launch. `pixels` holds `batch` slots of
/// [`slot_bytes`], `sizes` `[batch][2]` = (h, w) as i32 (clamped to `[0, img_size]` by the
/// kernel, which cannot report errors: check sizes on the host, e.g. with [`pack_images`]),
/// `out` at least `batch * grid^2 * 3 * patch^2` values, 16-byte aligned.
pub fn preprocess_patchify(
    gpu: &GpuContext,
    stream: &CudaStream,
    pixels: &dyn DevicePtr<u8>,
    sizes: &dyn DevicePtr<i32>,
    batch: usize,
    geom: PatchGeom,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    validate(geom, batch)?;
    gpu.check_stream(stream)?;
    check_len(
        "preprocess_patchify pixels",
        pixels.len(),
        batch * slot_bytes(geom),
    )?;
    check_len("preprocess_patchify sizes", sizes.len(), 2 * batch)?;
    check_len("preprocess_patchify output", out.len(), batch * geom.len())?;
    let f = gpu.function("preprocess_patchify_f16")?;
    let (ip, _i) = pixels.device_ptr(stream);
    let (sp, _s) = sizes.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    check_align("preprocess_patchify sizes", sp, 4)?;
    check_align("preprocess_patchify output", op, 16)?;
    let img_size = as_i32("img_size", geom.img_size)?;
    let patch = as_i32("patch", geom.patch)?;
    let threads = geom.rows() * geom.patch * geom.patch / PATCHIFY_PATCH_MULTIPLE;
    let cfg = LaunchConfig {
        grid_dim: (threads.div_ceil(PATCHIFY_THREADS) as u32, batch as u32, 1),
        block_dim: (PATCHIFY_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut l = stream.launch_builder(f);
    l.arg(&ip).arg(&sp).arg(&img_size).arg(&patch);
    for v in PIXEL_MEAN.iter().chain(&PIXEL_STD) {
        l.arg(v);
    }
    l.arg(&op);
    // SAFETY: arguments match the kernel (img, sizes, img_size, patch, mean0..2, std0..2,
    // out). pixels holds batch slots of img_size^2*3 bytes and the kernel reads only
    // y < h <= img_size, x < w <= img_size of slot b (sizes clamped in-kernel); sizes holds
    // 2*batch i32; out holds batch blocks of grid^2 x 3*patch^2 fp16, 16-byte aligned, and
    // each block is 6*img_size^2 bytes (a multiple of 16 since patch % 8 == 0).
    guarded("preprocess_patchify_f16", || {
        unsafe { l.launch(cfg) }.map(|_| ())
    })
}
