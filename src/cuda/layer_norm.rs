//! Row-wise LayerNorm launcher (`kernels/layer_norm.cu`): fp32 statistics, fp16 output.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use super::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Rows per block: one warp per row.
pub const LN_ROWS_PER_BLOCK: usize = 4;
pub const LN_THREADS: usize = LN_ROWS_PER_BLOCK * 32;
/// The kernel keeps a row in registers: 8 chunks of 8 values per lane.
pub const LN_MAX_DIM: usize = 2048;
/// Row length granularity: rows are read and written in 16-byte vectors.
pub const LN_DIM_MULTIPLE: usize = 8;

/// The input of the normalisation: fp16 activations or the fp32 residual stream.
pub enum LnInput<'a> {
    F16(&'a dyn DevicePtr<u16>),
    F32(&'a dyn DevicePtr<f32>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNormShape {
    pub rows: usize,
    pub dim: usize,
}

impl LayerNormShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.dim == 0 {
            return Err(Error::Unsupported(format!(
                "layer_norm on an empty [{}, {}] input",
                self.rows, self.dim
            )));
        }
        if !self.dim.is_multiple_of(LN_DIM_MULTIPLE) || self.dim > LN_MAX_DIM {
            return Err(Error::Unsupported(format!(
                "layer_norm needs dim % {LN_DIM_MULTIPLE} == 0 and dim <= {LN_MAX_DIM}, got {}",
                self.dim
            )));
        }
        as_i32("layer_norm rows", self.rows)?;
        Ok(())
    }

    fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.rows.div_ceil(LN_ROWS_PER_BLOCK) as u32, 1, 1),
            block_dim: (LN_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// `out[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta` (fp16 out), per row of a
/// row-major `[rows, dim]` input; biased variance as nn.LayerNorm.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    gpu: &GpuContext,
    stream: &CudaStream,
    x: LnInput<'_>,
    gamma: &dyn DevicePtr<f32>,
    beta: &dyn DevicePtr<f32>,
    out: &mut dyn DevicePtrMut<u16>,
    shape: LayerNormShape,
    eps: f32,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Unsupported(format!("layer_norm eps {eps}")));
    }
    let n = shape.rows * shape.dim;
    check_len("layer_norm gamma", gamma.len(), shape.dim)?;
    check_len("layer_norm beta", beta.len(), shape.dim)?;
    check_len("layer_norm output", out.len(), n)?;
    let (rows, dim) = (as_i32("rows", shape.rows)?, as_i32("dim", shape.dim)?);

    let (gp, _g) = gamma.device_ptr(stream);
    let (bp, _b) = beta.device_ptr(stream);
    check_align("layer_norm gamma", gp, 16)?;
    check_align("layer_norm beta", bp, 16)?;
    let (name, xp, _x) = match &x {
        LnInput::F16(x) => {
            check_len("layer_norm input", x.len(), n)?;
            let (p, guard) = x.device_ptr(stream);
            ("layer_norm_f16", p, guard)
        }
        LnInput::F32(x) => {
            check_len("layer_norm input", x.len(), n)?;
            let (p, guard) = x.device_ptr(stream);
            ("layer_norm_f32_f16", p, guard)
        }
    };
    check_align("layer_norm input", xp, 16)?;
    let f = gpu.function(name)?;
    let (op, _o) = out.device_ptr_mut(stream);
    check_align("layer_norm output", op, 16)?;

    let mut b = stream.launch_builder(f);
    b.arg(&xp)
        .arg(&gp)
        .arg(&bp)
        .arg(&op)
        .arg(&rows)
        .arg(&dim)
        .arg(&eps);
    // SAFETY: argument list matches the kernel signature (x, gamma, beta, y, rows, dim,
    // eps); all buffers were checked to hold rows*dim (or dim) elements with 16-byte
    // alignment, which is every address the kernel touches.
    guarded(name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
}
