//! Tensor-core Linear launcher (`kernels/gemm.cu`): `a[m, k] @ w[n, k]^T + bias` with the
//! epilogue picked by [`Epilogue`]. fp16 operands, fp32 accumulation and bias.

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use super::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

pub const GEMM_BLOCK_M: usize = 128;
pub const GEMM_BLOCK_N: usize = 128;
pub const GEMM_BLOCK_K: usize = 32;
pub const GEMM_STAGES: usize = 4;
pub const GEMM_THREADS: usize = 256;
/// Dynamic shared memory: `GEMM_STAGES` stages of one A and one W tile of fp16.
pub const GEMM_SMEM_BYTES: usize = GEMM_STAGES * 2 * GEMM_BLOCK_M * GEMM_BLOCK_K * 2;
/// K is loaded in 16-byte chunks that must lie wholly inside or outside the matrix.
pub const GEMM_K_MULTIPLE: usize = 8;
/// The epilogue stores column pairs.
pub const GEMM_N_MULTIPLE: usize = 2;

/// What happens to `acc = a @ w^T` after the K loop; each variant carries its output.
pub enum Epilogue<'a> {
    /// `out[m, n] = acc + bias` (fp16).
    Bias(&'a mut dyn DevicePtrMut<u16>),
    /// `out[m, n] = gelu_erf(acc + bias)` (fp16), the encoder MLP's lin1.
    BiasGelu(&'a mut dyn DevicePtrMut<u16>),
    /// `residual[m, n] += acc + bias` in place on the fp32 residual stream (attn proj, lin2).
    BiasResidual(&'a mut dyn DevicePtrMut<f32>),
}

impl Epilogue<'_> {
    pub fn kernel_name(&self) -> &'static str {
        match self {
            Epilogue::Bias(_) => "gemm_bias_f16",
            Epilogue::BiasGelu(_) => "gemm_bias_gelu_f16",
            Epilogue::BiasResidual(_) => "gemm_bias_residual_f16",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl GemmShape {
    /// Rejects what the kernel cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let GemmShape { m, n, k } = *self;
        if m == 0 || n == 0 || k == 0 {
            return Err(Error::Unsupported(format!(
                "gemm with an empty dimension (m={m}, n={n}, k={k})"
            )));
        }
        if !k.is_multiple_of(GEMM_K_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "gemm needs k % {GEMM_K_MULTIPLE} == 0, got k={k}"
            )));
        }
        if !n.is_multiple_of(GEMM_N_MULTIPLE) {
            return Err(Error::Unsupported(format!(
                "gemm needs n % {GEMM_N_MULTIPLE} == 0, got n={n}"
            )));
        }
        as_i32("gemm m", m)?;
        as_i32("gemm n", n)?;
        as_i32("gemm k", k)?;
        if m.div_ceil(GEMM_BLOCK_M) > 65535 {
            return Err(Error::Unsupported(format!(
                "gemm m={m} exceeds the grid's y limit"
            )));
        }
        Ok(())
    }

    pub fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                self.n.div_ceil(GEMM_BLOCK_N) as u32,
                self.m.div_ceil(GEMM_BLOCK_M) as u32,
                1,
            ),
            block_dim: (GEMM_THREADS as u32, 1, 1),
            shared_mem_bytes: GEMM_SMEM_BYTES as u32,
        }
    }

    /// 2*m*n*k, for throughput figures.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

/// nn.Linear on the tensor cores: `a` is `[m, k]`, `w` the `[n, k]` weight (out, in), `bias`
/// `[n]` fp32, all row-major and contiguous.
pub fn linear(
    gpu: &GpuContext,
    stream: &CudaStream,
    a: &dyn DevicePtr<u16>,
    w: &dyn DevicePtr<u16>,
    bias: &dyn DevicePtr<f32>,
    shape: GemmShape,
    epilogue: Epilogue<'_>,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    if GEMM_SMEM_BYTES > gpu.info().max_shared_per_block {
        return Err(Error::Unsupported(format!(
            "gemm needs {GEMM_SMEM_BYTES} B of shared memory per block, the device allows {}",
            gpu.info().max_shared_per_block
        )));
    }
    let GemmShape { m, n, k } = shape;
    check_len("gemm a", a.len(), m * k)?;
    check_len("gemm w", w.len(), n * k)?;
    check_len("gemm bias", bias.len(), n)?;
    let name = epilogue.kernel_name();
    let f = gpu.function(name)?;

    let (ap, _a) = a.device_ptr(stream);
    let (wp, _w) = w.device_ptr(stream);
    let (bp, _b) = bias.device_ptr(stream);
    check_align("gemm a", ap, 16)?;
    check_align("gemm w", wp, 16)?;
    check_align("gemm bias", bp, 8)?;
    let (op, _o) = match epilogue {
        Epilogue::Bias(out) | Epilogue::BiasGelu(out) => {
            check_len("gemm output", out.len(), m * n)?;
            let (p, guard) = out.device_ptr_mut(stream);
            check_align("gemm output", p, 4)?;
            (p, guard)
        }
        Epilogue::BiasResidual(res) => {
            check_len("gemm residual", res.len(), m * n)?;
            let (p, guard) = res.device_ptr_mut(stream);
            check_align("gemm residual", p, 8)?;
            (p, guard)
        }
    };
    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
    let mut b = stream.launch_builder(f);
    b.arg(&ap)
        .arg(&wp)
        .arg(&bp)
        .arg(&op)
        .arg(&mi)
        .arg(&ni)
        .arg(&ki);
    // SAFETY: (a, w, bias, out, M, N, K) is the signature of all three gemm kernels; the
    // shape was validated (k % 8, n even, i32 range) and every buffer checked to hold the
    // elements and alignment the kernel reads and writes.
    guarded(name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
}
