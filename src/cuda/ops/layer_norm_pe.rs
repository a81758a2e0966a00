//! In-place fp32 LayerNorm of the mask decoder's residual streams with the fp16 copies the
//! next image-side GEMMs read (`kernels/layer_norm_pe.cu`): one warp per row.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Rows per block (one warp each).
pub const LNPE_ROWS_PER_BLOCK: usize = 4;

/// The fp16 copies of the normalised rows: `(plain, plus PE)`.
pub type LnPeCopies<'a> = (
    Option<&'a mut dyn DevicePtrMut<u16>>,
    Option<&'a mut dyn DevicePtrMut<u16>>,
);

/// `x` `[rows, dim]` normalised in place; `pe` `(values [pe_rows, dim], pe_rows)`, needed
/// exactly when the plus-PE copy is asked for.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_pe(
    gpu: &GpuContext,
    stream: &CudaStream,
    x: &mut dyn DevicePtrMut<f32>,
    gamma: &dyn DevicePtr<f32>,
    beta: &dyn DevicePtr<f32>,
    pe: Option<(&dyn DevicePtr<f32>, usize)>,
    copies: LnPeCopies<'_>,
    (rows, dim): (usize, usize),
    eps: f32,
) -> Result<()> {
    gpu.check_stream(stream)?;
    let (out16, outpe16) = copies;
    if rows == 0 || dim == 0 || pe.is_some() != outpe16.is_some() {
        return Err(Error::Unsupported(format!(
            "layer_norm_pe on {rows} x {dim} rows (the PE comes with the plus-PE copy)"
        )));
    }
    check_len("layer_norm_pe x", x.len(), rows * dim)?;
    check_len("layer_norm_pe gamma", gamma.len(), dim)?;
    check_len("layer_norm_pe beta", beta.len(), dim)?;
    let pe_rows = match pe {
        Some((p, n)) if n > 0 => {
            check_len("layer_norm_pe pe", p.len(), n * dim)?;
            n
        }
        Some(_) => return Err(Error::Unsupported("layer_norm_pe with an empty PE".into())),
        None => 1,
    };
    if let Some(o) = &out16 {
        check_len("layer_norm_pe fp16 copy", o.len(), rows * dim)?;
    }
    if let Some(o) = &outpe16 {
        check_len("layer_norm_pe fp16 copy + PE", o.len(), rows * dim)?;
    }
    let blocks = rows.div_ceil(LNPE_ROWS_PER_BLOCK);
    let f = gpu.function("layer_norm_pe_f32")?;
    let (xp, _x) = x.device_ptr_mut(stream);
    let (gp, _g) = gamma.device_ptr(stream);
    let (bp, _b) = beta.device_ptr(stream);
    let pp = pe.map(|(p, _)| p.device_ptr(stream));
    let o1 = out16.map(|o| o.device_ptr_mut(stream));
    let o2 = outpe16.map(|o| o.device_ptr_mut(stream));
    let pp = pp.as_ref().map_or(0, |(p, _)| *p);
    let o1p = o1.as_ref().map_or(0, |(p, _)| *p);
    let o2p = o2.as_ref().map_or(0, |(p, _)| *p);
    let (pr, r, d) = (
        as_i32("pe rows", pe_rows)?,
        as_i32("rows", rows)?,
        as_i32("dim", dim)?,
    );
    let mut b = stream.launch_builder(f);
    b.arg(&xp)
        .arg(&gp)
        .arg(&bp)
        .arg(&pp)
        .arg(&pr)
        .arg(&o1p)
        .arg(&o2p);
    b.arg(&r).arg(&d).arg(&eps);
    let cfg = LaunchConfig {
        grid_dim: (as_i32("blocks", blocks)? as u32, 1, 1),
        block_dim: (32 * LNPE_ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: argument types match the kernel; x, the copies and the PE rows hold the
    // lengths checked above; null copies are skipped in-kernel.
    guarded("layer_norm_pe_f32", || unsafe { b.launch(cfg) }.map(|_| ()))
}
