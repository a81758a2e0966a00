//! nn.Linear on the mask decoder's prompt tokens in fp32 (`kernels/token_linear.cu`):
//! `out[m] (+)= act((a[m] + a2[m]) @ w^T + bias)`, rows strided. The decoder's token side
//! is a few rows per prompt, so fp32 SIMT tiles of 16 rows replace the 128-row fp16
//! tensor-core tiles there, and the residual stream keeps f32 precision.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Rows per block.
pub const TL_BLOCK_M: usize = 16;
/// Columns per block.
pub const TL_BLOCK_N: usize = 64;
pub const TL_THREADS: usize = 256;

/// `m` rows of `k` inputs to `n` outputs; row `r` of `a` (and `a2`) starts `r * lda` past its
/// offset, row `r` of `out` `r * ldo` past its offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLinearShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldo: usize,
    /// ReLU after the bias (the decoder MLPs' hidden layers).
    pub relu: bool,
    /// `out += y` (a residual add) instead of `out = y`.
    pub accumulate: bool,
}

impl TokenLinearShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let s = *self;
        if s.m == 0 || s.n == 0 || s.k == 0 || s.lda < s.k || s.ldo < s.n {
            return Err(Error::Unsupported(format!("token_linear with {s:?}")));
        }
        if s.m.div_ceil(TL_BLOCK_M) > 65_535 {
            return Err(Error::Unsupported(format!(
                "token_linear on {} rows exceeds the grid's y limit",
                s.m
            )));
        }
        as_i32("token_linear n", s.n)?;
        as_i32("token_linear k", s.k)?;
        Ok(())
    }

    fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                self.n.div_ceil(TL_BLOCK_N) as u32,
                self.m.div_ceil(TL_BLOCK_M) as u32,
                1,
            ),
            block_dim: (TL_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// Elements a strided operand spans from its offset.
fn span(rows: usize, ld: usize, cols: usize) -> usize {
    (rows - 1) * ld + cols
}

/// Launches `token_linear_f32`. `a` and `out` are (buffer, element offset); `a2` is read at
/// `a`'s offset and strides; `w` is `[n, k]` (nn.Linear layout), `bias` `[n]`.
#[allow(clippy::too_many_arguments)]
pub fn token_linear(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: TokenLinearShape,
    a: (&dyn DevicePtr<f32>, usize),
    a2: Option<&dyn DevicePtr<f32>>,
    w: &dyn DevicePtr<f32>,
    bias: Option<&dyn DevicePtr<f32>>,
    out: (&mut dyn DevicePtrMut<f32>, usize),
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let TokenLinearShape {
        m, n, k, lda, ldo, ..
    } = shape;
    let (a, a_off) = a;
    let (out, o_off) = out;
    check_len("token_linear a", a.len(), a_off + span(m, lda, k))?;
    if let Some(a2) = a2 {
        check_len("token_linear a2", a2.len(), a_off + span(m, lda, k))?;
    }
    check_len("token_linear weight", w.len(), n * k)?;
    if let Some(b) = bias {
        check_len("token_linear bias", b.len(), n)?;
    }
    check_len("token_linear output", out.len(), o_off + span(m, ldo, n))?;
    let f = gpu.function("token_linear_f32")?;
    let (ap, _a) = a.device_ptr(stream);
    let a2p = a2.map(|x| x.device_ptr(stream));
    let (wp, _w) = w.device_ptr(stream);
    let bp = bias.map(|x| x.device_ptr(stream));
    let (op, _o) = out.device_ptr_mut(stream);
    let ap = ap + 4 * a_off as u64;
    let a2p = a2p.as_ref().map_or(0, |(p, _)| p + 4 * a_off as u64);
    let bp = bp.as_ref().map_or(0, |(p, _)| *p);
    let op = op + 4 * o_off as u64;
    let (lda, ldo) = (lda as i64, ldo as i64);
    let (mm, nn, kk) = (as_i32("m", m)?, as_i32("n", n)?, as_i32("k", k)?);
    let (relu, acc) = (shape.relu as i32, shape.accumulate as i32);
    let mut b = stream.launch_builder(f);
    b.arg(&ap)
        .arg(&a2p)
        .arg(&lda)
        .arg(&wp)
        .arg(&bp)
        .arg(&op)
        .arg(&ldo);
    b.arg(&mm).arg(&nn).arg(&kk).arg(&relu).arg(&acc);
    // SAFETY: argument types match the kernel; every row the kernel touches lies inside the
    // lengths checked above (a null a2 / bias is skipped in-kernel).
    guarded("token_linear_f32", || {
        unsafe { b.launch(shape.config()) }.map(|_| ())
    })
}
