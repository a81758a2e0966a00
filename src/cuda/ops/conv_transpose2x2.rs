//! The output upscaling's 2x2 scatters (`kernels/conv_transpose2x2.cu`). Each
//! ConvTranspose2d(k=2, s=2) is a `gemm` on the weight laid out by
//! [`crate::cpu::ops::conv_transpose2x2::gemm_layout`]; these kernels read its
//! sub-pixel-blocked output: [`conv_transpose2x2_ln_gelu`] scatters the first into an NHWC
//! map with LayerNorm2d and GELU, [`conv_transpose2x2_masks`] scatters the second straight
//! into the hypernetwork mask product.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Output pixels per block of the LayerNorm2d kernel (one warp each).
pub const CT_LN_PIXELS_PER_BLOCK: usize = 4;
/// Threads (output pixels) per block of the mask product.
pub const CT_MASK_THREADS: usize = 256;

/// `u` fp16 `[batch * grid^2, 4 * channels]` -> `out` fp16 NHWC `[batch, 2 grid, 2 grid,
/// channels]`, LayerNorm2d (`gamma`, `beta`, `eps`) and GELU applied.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2x2_ln_gelu(
    gpu: &GpuContext,
    stream: &CudaStream,
    u: &dyn DevicePtr<u16>,
    gamma: &dyn DevicePtr<f32>,
    beta: &dyn DevicePtr<f32>,
    (batch, grid, channels): (usize, usize, usize),
    eps: f32,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    gpu.check_stream(stream)?;
    if batch == 0 || grid == 0 || channels == 0 {
        return Err(Error::Unsupported(format!(
            "conv_transpose2x2_ln_gelu on batch {batch}, grid {grid}, {channels} channels"
        )));
    }
    let pixels = batch * 4 * grid * grid;
    check_len("upscaling GEMM output", u.len(), pixels * channels)?;
    check_len("LayerNorm2d weight", gamma.len(), channels)?;
    check_len("LayerNorm2d bias", beta.len(), channels)?;
    check_len("upscaled map", out.len(), pixels * channels)?;
    as_i32("upscaled elements", pixels * channels)?;
    let f = gpu.function("conv_transpose2x2_ln_gelu_f16")?;
    let (up, _u) = u.device_ptr(stream);
    let (gp, _g) = gamma.device_ptr(stream);
    let (bp, _b) = beta.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (b, g, c) = (
        as_i32("batch", batch)?,
        as_i32("grid", grid)?,
        as_i32("channels", channels)?,
    );
    let mut l = stream.launch_builder(f);
    l.arg(&up)
        .arg(&gp)
        .arg(&bp)
        .arg(&b)
        .arg(&g)
        .arg(&c)
        .arg(&eps)
        .arg(&op);
    let cfg = LaunchConfig {
        grid_dim: (
            as_i32("blocks", pixels.div_ceil(CT_LN_PIXELS_PER_BLOCK))? as u32,
            1,
            1,
        ),
        block_dim: (32 * CT_LN_PIXELS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument types match the kernel; reads and writes stay inside the lengths
    // checked above.
    guarded("conv_transpose2x2_ln_gelu_f16", || {
        unsafe { l.launch(cfg) }.map(|_| ())
    })
}

/// `u` fp16 `[batch * grid^2, 4 * channels]` (GELU applied), `hyper` fp32 `[batch, masks,
/// channels]` -> `out` fp32 `[batch, masks, 2 grid, 2 grid]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2x2_masks(
    gpu: &GpuContext,
    stream: &CudaStream,
    u: &dyn DevicePtr<u16>,
    hyper: &dyn DevicePtr<f32>,
    (batch, grid, channels): (usize, usize, usize),
    masks: usize,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    gpu.check_stream(stream)?;
    if batch == 0 || grid == 0 || channels == 0 || masks == 0 || batch > 65_535 {
        return Err(Error::Unsupported(format!(
            "conv_transpose2x2_masks on batch {batch}, grid {grid}, {channels} channels, \
             {masks} masks"
        )));
    }
    let plane = 4 * grid * grid;
    check_len("upscaling GEMM output", u.len(), batch * plane * channels)?;
    check_len(
        "hypernetwork weights",
        hyper.len(),
        batch * masks * channels,
    )?;
    check_len("mask logits", out.len(), batch * masks * plane)?;
    as_i32("mask logits", batch * masks * plane)?;
    let smem = masks * channels * 4;
    if smem > 48 * 1024 {
        return Err(Error::Unsupported(format!(
            "conv_transpose2x2_masks: {masks} x {channels} hypernetwork weights exceed 48 KiB"
        )));
    }
    let f = gpu.function("conv_transpose2x2_masks_f32")?;
    let (up, _u) = u.device_ptr(stream);
    let (hp, _h) = hyper.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (g, c, m) = (
        as_i32("grid", grid)?,
        as_i32("channels", channels)?,
        as_i32("masks", masks)?,
    );
    let mut l = stream.launch_builder(f);
    l.arg(&up).arg(&hp).arg(&g).arg(&c).arg(&m).arg(&op);
    let cfg = LaunchConfig {
        grid_dim: (plane.div_ceil(CT_MASK_THREADS) as u32, batch as u32, 1),
        block_dim: (CT_MASK_THREADS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    // SAFETY: argument types match the kernel; the shared memory holds masks * channels
    // floats; reads and writes stay inside the lengths checked above.
    guarded("conv_transpose2x2_masks_f32", || {
        unsafe { l.launch(cfg) }.map(|_| ())
    })
}
