//! nn.Linear on the mask decoder's prompt tokens in fp32 (`kernels/token_linear.cu`):
//! `out[m] (+)= act((a[m] + a2[m]) @ w^T + bias)`, rows strided, for up to
//! [`TL_MAX_JOBS`] linears of one shape in one launch. The decoder's token side is a few
//! rows per prompt, so warps that split K over a handful of rows replace the 128-row fp16
//! tensor-core tiles there, and the residual stream keeps f32 precision.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
pub use crate::graph::decoder_ops::TL_MAX_JOBS;
use crate::{Error, Result};

pub use crate::graph::decoder_ops::{TokenLinearVariant, TL_BLOCK_M};
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

    fn config(&self, jobs: usize, v: TokenLinearVariant) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                self.n.div_ceil(v.block_n()) as u32,
                self.m.div_ceil(TL_BLOCK_M) as u32,
                jobs as u32,
            ),
            block_dim: (TL_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// One linear of a launch: where its rows start in the shared input, whether the input
/// adds `a2`, its weight `[n, k]` (nn.Linear layout) and bias `[n]`, and where it writes.
pub struct TokenLinearJob<'a> {
    pub a_offset: usize,
    pub with_a2: bool,
    pub weight: &'a dyn DevicePtr<f32>,
    pub bias: Option<&'a dyn DevicePtr<f32>>,
    pub out: &'a mut dyn DevicePtrMut<f32>,
    pub out_offset: usize,
}

/// Mirrors `struct TokenLinearJob` in kernels/token_linear.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct JobParams {
    a: u64,
    a2: u64,
    w: u64,
    bias: u64,
    out: u64,
}

/// Mirrors `struct TokenLinearNorm`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct NormParams {
    gamma: u64,
    beta: u64,
    out: u64,
    eps: f32,
    pad_: i32,
}

/// Mirrors `struct TokenLinearParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Params {
    job: [JobParams; TL_MAX_JOBS],
    norm: NormParams,
    lda: i64,
    ldo: i64,
    m: i32,
    n: i32,
    k: i32,
    relu: i32,
    accumulate: i32,
    pad_: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for Params {}

/// A LayerNorm of the input rows before the product (the decoder's post-norms): `gamma`,
/// `beta` `[k]`, and where the normalised rows of the first job go (row stride `lda`, from
/// its `a_offset`), if anywhere. The PE (`a2`) is added after it. Needs `k <= TL_KC` (256):
/// a block holds whole rows.
pub struct TokenNorm<'a> {
    pub gamma: &'a dyn DevicePtr<f32>,
    pub beta: &'a dyn DevicePtr<f32>,
    pub eps: f32,
    pub out: Option<&'a mut dyn DevicePtrMut<f32>>,
}

/// Widest row a fused LayerNorm takes (`TL_KC` in the kernel: one row per block stage).
pub const TL_NORM_MAX_K: usize = 256;

/// Elements a strided operand spans from its offset.
fn span(rows: usize, ld: usize, cols: usize) -> usize {
    (rows - 1) * ld + cols
}

/// Launches `token_linear` (the [`TokenLinearVariant`] its shape selects) for `jobs` (1 to [`TL_MAX_JOBS`]), all reading rows of `a`
/// (plus `a2` where a job asks for it, at the same offsets and strides).
pub fn token_linear(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: TokenLinearShape,
    a: &dyn DevicePtr<f32>,
    a2: Option<&dyn DevicePtr<f32>>,
    norm: Option<TokenNorm<'_>>,
    jobs: &mut [TokenLinearJob<'_>],
) -> Result<()> {
    let variant = TokenLinearVariant::select(shape.m, shape.n, jobs.len());
    token_linear_with(gpu, stream, variant, shape, a, a2, norm, jobs)
}

/// [`token_linear`] with the variant given (the tests check that both give the same bits).
#[allow(clippy::too_many_arguments)]
pub fn token_linear_with(
    gpu: &GpuContext,
    stream: &CudaStream,
    variant: TokenLinearVariant,
    shape: TokenLinearShape,
    a: &dyn DevicePtr<f32>,
    a2: Option<&dyn DevicePtr<f32>>,
    norm: Option<TokenNorm<'_>>,
    jobs: &mut [TokenLinearJob<'_>],
) -> Result<()> {
    shape.validate()?;
    if norm.is_some() && shape.k > TL_NORM_MAX_K {
        return Err(Error::Unsupported(format!(
            "token_linear's LayerNorm takes rows of at most {TL_NORM_MAX_K}, not {}",
            shape.k
        )));
    }
    if jobs.is_empty() || jobs.len() > TL_MAX_JOBS {
        return Err(Error::Unsupported(format!(
            "token_linear runs 1 to {TL_MAX_JOBS} linears per launch, not {}",
            jobs.len()
        )));
    }
    gpu.check_stream(stream)?;
    let config = shape.config(jobs.len(), variant);
    let TokenLinearShape {
        m, n, k, lda, ldo, ..
    } = shape;
    let (ap, _a) = a.device_ptr(stream);
    let a2p = a2.map(|x| x.device_ptr(stream));
    let mut params = Params {
        lda: lda as i64,
        ldo: ldo as i64,
        m: as_i32("m", m)?,
        n: as_i32("n", n)?,
        k: as_i32("k", k)?,
        relu: shape.relu as i32,
        accumulate: shape.accumulate as i32,
        ..Params::default()
    };
    let first_off = jobs[0].a_offset;
    let mut guards = Vec::with_capacity(3 * jobs.len() + 3);
    for (slot, job) in params.job.iter_mut().zip(jobs.iter_mut()) {
        check_len("token_linear a", a.len(), job.a_offset + span(m, lda, k))?;
        slot.a = ap + 4 * job.a_offset as u64;
        if job.with_a2 {
            let (p, len) = a2
                .map(|x| (a2p.as_ref().map_or(0, |g| g.0), x.len()))
                .ok_or_else(|| {
                    Error::Unsupported("a token_linear job adds a2, but none is bound".into())
                })?;
            check_len("token_linear a2", len, job.a_offset + span(m, lda, k))?;
            slot.a2 = p + 4 * job.a_offset as u64;
        }
        check_len("token_linear weight", job.weight.len(), n * k)?;
        let (wp, g) = job.weight.device_ptr(stream);
        slot.w = wp;
        guards.push(g);
        if let Some(b) = job.bias {
            check_len("token_linear bias", b.len(), n)?;
            let (bp, g) = b.device_ptr(stream);
            slot.bias = bp;
            guards.push(g);
        }
        let o_len = job.out.len();
        check_len(
            "token_linear output",
            o_len,
            job.out_offset + span(m, ldo, n),
        )?;
        let (op, g) = job.out.device_ptr_mut(stream);
        slot.out = op + 4 * job.out_offset as u64;
        guards.push(g);
    }
    if let Some(nm) = norm {
        check_len("token_linear norm gamma", nm.gamma.len(), k)?;
        check_len("token_linear norm beta", nm.beta.len(), k)?;
        let (gp, g) = nm.gamma.device_ptr(stream);
        let (bp, b) = nm.beta.device_ptr(stream);
        guards.extend([g, b]);
        params.norm = NormParams {
            gamma: gp,
            beta: bp,
            eps: nm.eps,
            ..NormParams::default()
        };
        if let Some(out) = nm.out {
            check_len(
                "token_linear norm output",
                out.len(),
                first_off + span(m, lda, k),
            )?;
            let (op, g) = out.device_ptr_mut(stream);
            params.norm.out = op + 4 * first_off as u64;
            guards.push(g);
        }
    }
    let f = gpu.function(variant.entry_point())?;
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: the parameter struct matches the kernel's; every row a job touches lies inside
    // the lengths checked above (a null a2 / bias is skipped in-kernel).
    guarded(variant.entry_point(), || {
        unsafe { b.launch(config) }.map(|_| ())
    })
}
