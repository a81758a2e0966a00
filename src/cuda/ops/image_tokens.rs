//! The mask decoder's image tokens (`kernels/image_tokens.cu`): image embedding + dense
//! prompt embedding, transposed to token-major, as the fp32 residual stream of every prompt
//! and the fp16 GEMM operands (tokens, tokens + PE) of each image side.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// The shared-memory transpose tile (32 x 32, block 32 x 8).
pub const IT_TILE: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageTokensShape {
    /// Image sides: 1 (shared by all prompts) or `batch` (one dense embedding per prompt).
    pub sides: usize,
    pub batch: usize,
    pub hw: usize,
    pub dim: usize,
}

/// The outputs, each optional (at least one): fp32 `[batch, hw, dim]`, fp16 `[sides, hw,
/// dim]` twice (plain, plus PE).
pub struct ImageTokensOut<'a> {
    pub tokens: Option<&'a mut dyn DevicePtrMut<f32>>,
    pub tokens16: Option<&'a mut dyn DevicePtrMut<u16>>,
    pub tokens_pe16: Option<&'a mut dyn DevicePtrMut<u16>>,
}

/// `emb` `[dim, hw]`, `dense` `[sides, dim, hw]` or None for `no_mask` `[dim]` broadcast,
/// `pe` `[hw, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn image_tokens(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: ImageTokensShape,
    emb: &dyn DevicePtr<f32>,
    dense: Option<&dyn DevicePtr<f32>>,
    no_mask: &dyn DevicePtr<f32>,
    pe: &dyn DevicePtr<f32>,
    out: ImageTokensOut<'_>,
) -> Result<()> {
    gpu.check_stream(stream)?;
    let ImageTokensShape {
        sides,
        batch,
        hw,
        dim,
    } = shape;
    if batch == 0 || hw == 0 || dim == 0 || !(sides == 1 || sides == batch) || sides > 65_535 {
        return Err(Error::Unsupported(format!("image_tokens with {shape:?}")));
    }
    let plane = hw * dim;
    check_len("image_tokens embedding", emb.len(), plane)?;
    if let Some(d) = dense {
        check_len("image_tokens dense", d.len(), sides * plane)?;
    }
    check_len("image_tokens no_mask", no_mask.len(), dim)?;
    check_len("image_tokens pe", pe.len(), plane)?;
    if out.tokens.is_none() && out.tokens16.is_none() && out.tokens_pe16.is_none() {
        return Err(Error::Unsupported("image_tokens with no output".into()));
    }
    if let Some(t) = &out.tokens {
        check_len("image_tokens output", t.len(), batch * plane)?;
    }
    for (what, o) in [
        ("image_tokens fp16 output", &out.tokens16),
        ("image_tokens fp16 + PE", &out.tokens_pe16),
    ] {
        if let Some(o) = o {
            check_len(what, o.len(), sides * plane)?;
        }
    }
    let f = gpu.function("image_tokens_f32")?;
    let (ep, _e) = emb.device_ptr(stream);
    let dp = dense.map(|d| d.device_ptr(stream));
    let dp = dp.as_ref().map_or(0, |(p, _)| *p);
    let (np, _n) = no_mask.device_ptr(stream);
    let (pp, _p) = pe.device_ptr(stream);
    let ImageTokensOut {
        tokens,
        tokens16,
        tokens_pe16,
    } = out;
    let o32 = tokens.map(|t| t.device_ptr_mut(stream));
    let o16 = tokens16.map(|t| t.device_ptr_mut(stream));
    let op16 = tokens_pe16.map(|t| t.device_ptr_mut(stream));
    let (o32, o16, op16) = (
        o32.as_ref().map_or(0, |p| p.0),
        o16.as_ref().map_or(0, |p| p.0),
        op16.as_ref().map_or(0, |p| p.0),
    );
    let (s, b, h, d) = (
        as_i32("sides", sides)?,
        as_i32("batch", batch)?,
        as_i32("hw", hw)?,
        as_i32("dim", dim)?,
    );
    as_i32("image_tokens elements", batch * plane)?;
    let mut l = stream.launch_builder(f);
    l.arg(&ep)
        .arg(&dp)
        .arg(&np)
        .arg(&pp)
        .arg(&s)
        .arg(&b)
        .arg(&h)
        .arg(&d);
    l.arg(&o32).arg(&o16).arg(&op16);
    let cfg = LaunchConfig {
        grid_dim: (
            hw.div_ceil(IT_TILE) as u32,
            dim.div_ceil(IT_TILE) as u32,
            sides as u32,
        ),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument types match the kernel; every index is below the lengths checked
    // above (a null dense pointer selects no_mask in-kernel; null outputs are skipped).
    guarded("image_tokens_f32", || unsafe { l.launch(cfg) }.map(|_| ()))
}
