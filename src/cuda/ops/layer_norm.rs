//! Row-wise LayerNorm launchers (`kernels/layer_norm.cu`): fp32 statistics; fp16 or fp32
//! input, optionally scaled per row ([`LnScale`], as [`super::cast_rows`] stores the residual
//! stream); fp16 token-major output, or fp32 channel-first output for the neck's final
//! LayerNorm2d ([`LnOutput`]).

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::graph::ops::{layer_norm_entry, LnIn, LnOut};
use crate::{Error, Result};

/// Rows per block of the token-major variants: 4 warps of 2 rows each (a block's one copy
/// of gamma and beta in shared memory serves 8 rows; 512 blocks for a 4096-token image keep
/// 16 warps on each H100 SM).
pub const LN_ROWS_PER_BLOCK: usize = 8;
/// 4 warps.
pub const LN_THREADS: usize = 128;
/// The kernel keeps a row in registers: 8 chunks of 8 values per lane.
pub const LN_MAX_DIM: usize = 2048;
/// Row length granularity: rows are read and written in 16-byte vectors.
pub const LN_DIM_MULTIPLE: usize = 8;

/// Tokens per block of the channel-first variant (`CF_TOKENS` in the kernel).
pub const LN_CF_TOKENS: usize = 32;
/// Threads per block of the channel-first variant (`CF_WARPS` warps in the kernel).
pub const LN_CF_THREADS: usize = 512;

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

/// How the stored input relates to the true LayerNorm input: `x_true = x_stored * s` with
/// `s = in_scale * row_scale[row]` (`row_scale` absent: `s = in_scale`). LayerNorm is
/// invariant to a positive scale except for eps, so the kernel normalises `x_stored` with
/// `eps / s^2` (derivation in `kernels/layer_norm.cu`). Row scales must be positive and
/// finite; [`super::cast_rows`] writes powers of two >= 1.
#[derive(Clone, Copy)]
pub struct LnScale<'a> {
    pub row_scale: Option<&'a dyn DevicePtr<f32>>,
    pub in_scale: f32,
}

impl LnScale<'_> {
    /// Unscaled input (`s = 1`): bit-identical to the plain LayerNorm.
    pub const NONE: LnScale<'static> = LnScale {
        row_scale: None,
        in_scale: 1.0,
    };

    /// Rejects an `in_scale` that is not positive and finite or that makes
    /// `eps / in_scale^2` overflow; runs without a GPU.
    pub fn validate(&self, eps: f32) -> Result<()> {
        let s = self.in_scale;
        if !(s.is_finite() && s > 0.0 && (eps / s / s).is_finite()) {
            return Err(Error::Unsupported(format!(
                "layer_norm in_scale {s}: must be positive, finite and leave eps / in_scale^2 \
                 finite"
            )));
        }
        Ok(())
    }
}

impl Default for LnScale<'_> {
    fn default() -> Self {
        LnScale::NONE
    }
}

/// Where the normalised rows go.
pub enum LnOutput<'a> {
    /// fp16 `[rows, dim]`, token-major (the next GEMM's operand); 16-byte aligned.
    F16(&'a mut dyn DevicePtrMut<u16>),
    /// fp32 `[rows / tokens, dim, tokens]`, channel-first: the neck's final LayerNorm2d
    /// writing the image embedding `[B, 256, G, G]` with `tokens = G^2`. fp16 input only.
    F32ChannelFirst {
        out: &'a mut dyn DevicePtrMut<f32>,
        tokens: usize,
    },
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
    layer_norm_ex(
        gpu,
        stream,
        x,
        LnScale::NONE,
        gamma,
        beta,
        LnOutput::F16(out),
        shape,
        eps,
    )
}

/// LayerNorm of the true rows `x_stored * s` (see [`LnScale`]) of a row-major `[rows, dim]`
/// input, into token-major fp16 or channel-first fp32 ([`LnOutput`]). Buffers hold at least
/// `rows * dim` values (`gamma`, `beta`: `dim`; `row_scale`: `rows`); x, gamma, beta and an
/// fp16 output are 16-byte aligned.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_ex(
    gpu: &GpuContext,
    stream: &CudaStream,
    x: LnInput<'_>,
    scale: LnScale<'_>,
    gamma: &dyn DevicePtr<f32>,
    beta: &dyn DevicePtr<f32>,
    out: LnOutput<'_>,
    shape: LayerNormShape,
    eps: f32,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(Error::Unsupported(format!("layer_norm eps {eps}")));
    }
    scale.validate(eps)?;
    let in_scale = scale.in_scale;
    let n = shape.rows * shape.dim;
    check_len("layer_norm gamma", gamma.len(), shape.dim)?;
    check_len("layer_norm beta", beta.len(), shape.dim)?;
    let (rows, dim) = (as_i32("rows", shape.rows)?, as_i32("dim", shape.dim)?);

    let (gp, _g) = gamma.device_ptr(stream);
    let (bp, _b) = beta.device_ptr(stream);
    check_align("layer_norm gamma", gp, 16)?;
    check_align("layer_norm beta", bp, 16)?;
    let (sp, _s) = match scale.row_scale {
        Some(rs) => {
            check_len("layer_norm row_scale", rs.len(), shape.rows)?;
            let (p, guard) = rs.device_ptr(stream);
            (p, Some(guard))
        }
        None => (0, None),
    };
    let (f16_in, xp, _x) = match &x {
        LnInput::F16(x) => {
            check_len("layer_norm input", x.len(), n)?;
            let (p, guard) = x.device_ptr(stream);
            (true, p, guard)
        }
        LnInput::F32(x) => {
            check_len("layer_norm input", x.len(), n)?;
            let (p, guard) = x.device_ptr(stream);
            (false, p, guard)
        }
    };
    check_align("layer_norm input", xp, 16)?;

    match out {
        LnOutput::F16(out) => {
            check_len("layer_norm output", out.len(), n)?;
            let input = if f16_in { LnIn::F16 } else { LnIn::F32 };
            let name = layer_norm_entry(input, LnOut::F16).expect("every input has an f16 kernel");
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
                .arg(&eps)
                .arg(&sp)
                .arg(&in_scale);
            // SAFETY: argument list matches the kernel signature (x, gamma, beta, y, rows,
            // dim, eps, row_scale, in_scale); all buffers were checked to hold rows*dim (or
            // dim, or rows) elements, x/gamma/beta/y 16-byte aligned, which is every address
            // the kernel touches; row_scale is null or holds rows values.
            guarded(name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
        }
        LnOutput::F32ChannelFirst { out, tokens } => {
            let input = if f16_in { LnIn::F16 } else { LnIn::F32 };
            let Some(name) = layer_norm_entry(input, LnOut::F32ChannelFirst { tokens }) else {
                return Err(Error::Unsupported(
                    "channel-first LayerNorm output takes fp16 input only".into(),
                ));
            };
            if tokens == 0 || !shape.rows.is_multiple_of(tokens) {
                return Err(Error::Unsupported(format!(
                    "channel-first LayerNorm: {} rows are not a whole number of {tokens}-token \
                     images",
                    shape.rows
                )));
            }
            let batch = shape.rows / tokens;
            if batch > 65_535 {
                return Err(Error::Unsupported(format!(
                    "channel-first LayerNorm on {batch} images (grid.y limit 65535)"
                )));
            }
            check_len("layer_norm output", out.len(), n)?;
            let f = gpu.function(name)?;
            let (op, _o) = out.device_ptr_mut(stream);
            let t = as_i32("tokens", tokens)?;
            let cfg = LaunchConfig {
                grid_dim: (tokens.div_ceil(LN_CF_TOKENS) as u32, batch as u32, 1),
                block_dim: (LN_CF_THREADS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = stream.launch_builder(f);
            b.arg(&xp)
                .arg(&gp)
                .arg(&bp)
                .arg(&op)
                .arg(&t)
                .arg(&dim)
                .arg(&eps)
                .arg(&sp)
                .arg(&in_scale);
            // SAFETY: argument list matches the kernel signature (x, gamma, beta, y, tokens,
            // dim, eps, row_scale, in_scale); x holds batch*tokens*dim fp16 (16-byte
            // aligned), y batch*dim*tokens fp32, gamma/beta dim, row_scale null or rows; the
            // grid covers tokens in 32-token blocks and the kernel bounds-checks the tail.
            guarded(name, || unsafe { b.launch(cfg) }.map(|_| ()))
        }
    }
}
