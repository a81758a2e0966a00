//! The prompt encoder's mask path on the GPU (`kernels/mask_downscaling.cu`): mask logits
//! `[M, 4g, 4g]` to dense prompt embeddings `[M, dim, g, g]`, one thread per output pixel.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Output pixels per block.
pub const MD_THREADS: usize = 128;
/// The kernel's fixed channel counts: every SAM has mask_in_chans 16 (4 after conv 1).
pub const MD_MASK_IN_CHANS: usize = 16;
/// LayerNorm2d's eps (official common.py).
pub const MD_LN_EPS: f32 = 1e-6;

/// Length of the packed weights for `dim` output channels
/// ([`crate::cpu::model::prompt_encoder::PromptEncoder::mask_downscaling_packed`]).
pub fn packed_len(dim: usize) -> usize {
    crate::cpu::ops::prompt_encoder::mask_packed_len(dim)
}

/// Dense embeddings of `masks` mask inputs of side `4 * grid`.
pub fn mask_downscaling(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    mask_logits: &CudaSlice<f32>,
    masks: usize,
    packed: &CudaSlice<f32>,
    grid: usize,
    dim: usize,
) -> Result<CudaSlice<f32>> {
    let mut out = gpu.zeros_f32(stream, masks * dim * grid * grid)?;
    mask_downscaling_into(gpu, stream, mask_logits, masks, packed, grid, dim, &mut out)?;
    Ok(out)
}

/// [`mask_downscaling`] into a caller's buffer (the decoder schedule's arena).
#[allow(clippy::too_many_arguments)]
pub fn mask_downscaling_into(
    gpu: &GpuContext,
    stream: &CudaStream,
    mask_logits: &dyn DevicePtr<f32>,
    masks: usize,
    packed: &dyn DevicePtr<f32>,
    grid: usize,
    dim: usize,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    gpu.check_stream(stream)?;
    if masks == 0 || masks > 65_535 || grid == 0 || dim == 0 {
        return Err(Error::Unsupported(format!(
            "mask_downscaling on {masks} masks (1..=65535), grid {grid}, dim {dim}"
        )));
    }
    if packed.len() != packed_len(dim) {
        return Err(Error::Unsupported(format!(
            "mask_downscaling weights hold {} values; mask_in_chans {MD_MASK_IN_CHANS} and dim \
             {dim} need {}",
            packed.len(),
            packed_len(dim)
        )));
    }
    let side = 4 * grid;
    check_len("mask inputs", mask_logits.len(), masks * side * side)?;
    check_len("dense embeddings", out.len(), masks * dim * grid * grid)?;
    let f = gpu.function("mask_downscaling_f32")?;
    let (mp, _m) = mask_logits.device_ptr(stream);
    let (pp, _p) = packed.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (g, d) = (as_i32("grid", grid)?, as_i32("dim", dim)?);
    let mut b = stream.launch_builder(f);
    b.arg(&mp).arg(&pp).arg(&g).arg(&d).arg(&MD_LN_EPS).arg(&op);
    let cfg = LaunchConfig {
        grid_dim: ((grid * grid).div_ceil(MD_THREADS) as u32, masks as u32, 1),
        block_dim: (MD_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel; the input holds masks*(4g)^2 values, the weights
    // exactly packed_len(dim), the output masks*dim*g*g.
    guarded("mask_downscaling_f32", || {
        unsafe { b.launch(cfg) }.map(|_| ())
    })
}
