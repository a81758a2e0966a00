//! Per-row power-of-two scaled fp32 -> fp16 cast (`kernels/cast_rows.cu`): the residual
//! stream (values possibly beyond fp16's 65504) to fp16 rows `x / s` plus the fp32 row
//! scales `s = 2^k` with `max|x| / s <= 2^14`. LayerNorm consumes the pair directly
//! ([`super::layer_norm::LnScale`]). Host reference (bit-identical): [`crate::cuda::model::scales::cast_rows`].

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Rows per block: one warp per row.
pub const CR_ROWS_PER_BLOCK: usize = 4;
pub const CR_THREADS: usize = CR_ROWS_PER_BLOCK * 32;
/// Row length granularity: rows are read and written in 8-element vectors.
pub const CR_DIM_MULTIPLE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CastRowsShape {
    pub rows: usize,
    pub dim: usize,
}

impl CastRowsShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.dim == 0 || !self.dim.is_multiple_of(CR_DIM_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "cast_rows needs rows > 0 and dim a positive multiple of {CR_DIM_MULTIPLE}, got \
                 [{}, {}]",
                self.rows, self.dim
            )));
        }
        as_i32("cast_rows rows", self.rows)?;
        as_i32("cast_rows dim", self.dim)?;
        self.rows
            .checked_mul(self.dim)
            .ok_or_else(|| Error::Unsupported("cast_rows size overflows".into()))?;
        Ok(())
    }
}

/// `out[r, :] = f16(x[r, :] / s_r)`, `row_scale[r] = s_r`, for a row-major `[rows, dim]` fp32
/// input. `x` and `out` hold at least `rows * dim` values and are 16-byte aligned;
/// `row_scale` holds at least `rows`.
pub fn cast_rows(
    gpu: &GpuContext,
    stream: &CudaStream,
    x: &dyn DevicePtr<f32>,
    out: &mut dyn DevicePtrMut<u16>,
    row_scale: &mut dyn DevicePtrMut<f32>,
    shape: CastRowsShape,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let n = shape.rows * shape.dim;
    check_len("cast_rows input", x.len(), n)?;
    check_len("cast_rows output", out.len(), n)?;
    check_len("cast_rows row_scale", row_scale.len(), shape.rows)?;
    let f = gpu.function("cast_rows_f16")?;
    let (xp, _x) = x.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (sp, _s) = row_scale.device_ptr_mut(stream);
    check_align("cast_rows input", xp, 16)?;
    check_align("cast_rows output", op, 16)?;
    let (rows, dim) = (as_i32("rows", shape.rows)?, as_i32("dim", shape.dim)?);
    let cfg = LaunchConfig {
        grid_dim: (shape.rows.div_ceil(CR_ROWS_PER_BLOCK) as u32, 1, 1),
        block_dim: (CR_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&xp).arg(&op).arg(&sp).arg(&rows).arg(&dim);
    // SAFETY: arguments match the kernel (x, y, row_scale, rows, dim); x and out hold
    // rows*dim values, 16-byte aligned, row_scale holds rows.
    guarded("cast_rows_f16", || unsafe { b.launch(cfg) }.map(|_| ()))
}
