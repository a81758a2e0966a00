//! Residual-stream initialisation (`kernels/residual_init.cu`): the fp32 stream
//! `[B, T, D]` starts as the fp16 position embedding `[T, D]` (official `[1, G, G, D]`),
//! widened and repeated per image; the patch-embedding GEMM's residual epilogue then adds
//! conv + bias. CPU twin: [`crate::cpu::ops::residual_init`].

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Threads per block; must match `RI_THREADS` in the kernel.
pub const RI_THREADS: usize = 256;
/// `tokens * dim` granularity: each thread converts one 16-byte vector of 8 halves.
pub const RI_MULTIPLE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidualInitShape {
    pub batch: usize,
    /// T = grid^2.
    pub tokens: usize,
    pub dim: usize,
}

impl ResidualInitShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let n = self.tokens.checked_mul(self.dim);
        let total = n.and_then(|n| n.checked_mul(self.batch));
        if self.batch == 0 || total.is_none_or(|t| t == 0) {
            return Err(Error::Unsupported(format!(
                "residual_init on {self:?}: empty or overflowing"
            )));
        }
        let n = self.tokens * self.dim;
        if !n.is_multiple_of(RI_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "residual_init needs tokens * dim % {RI_MULTIPLE} == 0, got {n}"
            )));
        }
        as_i32("residual_init tokens * dim", n)?;
        as_i32("residual_init batch", self.batch)?;
        Ok(())
    }
}

/// `res[b][t][c] = f32(pos_embed[t][c])` for every image `b`. `pos_embed` holds at least
/// `tokens * dim` fp16 values, `res` at least `batch * tokens * dim`; both 16-byte aligned.
pub fn residual_init(
    gpu: &GpuContext,
    stream: &CudaStream,
    pos_embed: &dyn DevicePtr<u16>,
    res: &mut dyn DevicePtrMut<f32>,
    shape: ResidualInitShape,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let n = shape.tokens * shape.dim;
    check_len("residual_init pos_embed", pos_embed.len(), n)?;
    check_len("residual_init residual", res.len(), shape.batch * n)?;
    let f = gpu.function("residual_init_f32")?;
    let (pp, _p) = pos_embed.device_ptr(stream);
    let (rp, _r) = res.device_ptr_mut(stream);
    check_align("residual_init pos_embed", pp, 16)?;
    check_align("residual_init residual", rp, 16)?;
    let n8 = as_i32("tokens * dim / 8", n / RI_MULTIPLE)?;
    let batch = as_i32("batch", shape.batch)?;
    let cfg = LaunchConfig {
        grid_dim: ((n / RI_MULTIPLE).div_ceil(RI_THREADS) as u32, 1, 1),
        block_dim: (RI_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&pp).arg(&rp).arg(&n8).arg(&batch);
    // SAFETY: arguments match the kernel (pos, res, n8, batch); pos holds n8 16-byte vectors
    // and res batch * n8 pairs of them, both 16-byte aligned (checked above).
    guarded("residual_init_f32", || unsafe { b.launch(cfg) }.map(|_| ()))
}
