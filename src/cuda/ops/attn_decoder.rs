//! The mask decoder's attentions (`kernels/attn_decoder.cu`): bias-free multi-head
//! attention in fp32 arithmetic over batches of prompts, one launch for every prompt and
//! head. Token->image reads the image-side fp16 GEMM outputs and image->token writes fp16
//! for the out_proj GEMM; a batch stride of 0 shares one image side between all prompts.
//! Token->image over many keys splits them into chunks (two launches: the chunks' softmax
//! states into scratch, then their merge), so that one prompt fills the device.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
pub use crate::graph::decoder_ops::{
    attn_decoder_combine_entry, t2i_chunks, AttnDecoderKind, AttnDecoderShape,
    ATTN_DECODER_HEAD_DIMS,
};
use crate::{Error, Result};

pub const ATTN_DECODER_THREADS: usize = 128;

/// Mirrors `struct AttnDecParams` in kernels/attn_decoder.cu field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AttnDecParams {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    q_batch: i64,
    k_batch: i64,
    v_batch: i64,
    o_batch: i64,
    q_ld: i32,
    k_ld: i32,
    v_ld: i32,
    o_ld: i32,
    batch: i32,
    lq: i32,
    lk: i32,
    heads: i32,
    scale: f32,
    chunks: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for AttnDecParams {}

/// The two kernels of one shape: the attention, or the split's combine pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Attend,
    Combine,
}

/// Checks of a shape against the kernels (`AttnDecoderShape` is host-side, in the op).
trait Validate {
    fn validate(&self) -> Result<()>;
    /// Key chunks the kernels split over: [`t2i_chunks`] for the split, else 1.
    fn chunks(&self) -> usize;
    fn blocks(&self, pass: Pass) -> usize;
    fn config(&self, pass: Pass) -> LaunchConfig;
    /// Elements the attention kernel writes: the output, or the split's scratch.
    fn attend_out_len(&self) -> usize;
    fn q_len(&self) -> usize;
    fn kv_len(&self) -> usize;
}

impl Validate for AttnDecoderShape {
    /// Rejects what the kernels cannot do; runs without a GPU.
    fn validate(&self) -> Result<()> {
        let s = *self;
        if s.batch == 0 || s.lq == 0 || s.lk == 0 || s.heads == 0 {
            return Err(Error::Unsupported(format!("attn_decoder with {s:?}")));
        }
        if !ATTN_DECODER_HEAD_DIMS.contains(&s.head_dim) {
            return Err(Error::Unsupported(format!(
                "attn_decoder head dim {} (kernels exist for {ATTN_DECODER_HEAD_DIMS:?})",
                s.head_dim
            )));
        }
        if s.blocks(Pass::Attend).max(s.blocks(Pass::Combine)) > i32::MAX as usize {
            return Err(Error::Unsupported(format!("attn_decoder grid for {s:?}")));
        }
        as_i32("attn_decoder rows", s.batch * s.lq.max(s.lk) * s.width())?;
        as_i32("attn_decoder scratch", s.attend_out_len())?;
        Ok(())
    }

    fn chunks(&self) -> usize {
        if self.kind == AttnDecoderKind::TokenToImageSplit {
            t2i_chunks(self.lk)
        } else {
            1
        }
    }

    fn blocks(&self, pass: Pass) -> usize {
        let groups = self.batch * self.lq * self.heads;
        match pass {
            Pass::Attend => {
                let per_block = ATTN_DECODER_THREADS / self.kind.lanes();
                (groups * self.chunks()).div_ceil(per_block)
            }
            Pass::Combine => groups.div_ceil(ATTN_DECODER_THREADS / 32),
        }
    }

    fn config(&self, pass: Pass) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.blocks(pass) as u32, 1, 1),
            block_dim: (ATTN_DECODER_THREADS as u32, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn attend_out_len(&self) -> usize {
        if self.kind == AttnDecoderKind::TokenToImageSplit {
            self.partial_len()
        } else {
            self.batch * self.lq * self.width()
        }
    }

    fn q_len(&self) -> usize {
        (if self.q_shared { 1 } else { self.batch }) * self.lq * self.width()
    }

    fn kv_len(&self) -> usize {
        (if self.kv_shared { 1 } else { self.batch }) * self.lk * self.width()
    }
}

fn launch(
    gpu: &GpuContext,
    stream: &CudaStream,
    (shape, pass): (AttnDecoderShape, Pass),
    ptrs: [u64; 4],
    lens: [usize; 4],
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let out_len = shape.batch * shape.lq * shape.width();
    let name = match pass {
        Pass::Attend => {
            check_len("attn_decoder q", lens[0], shape.q_len())?;
            check_len("attn_decoder k", lens[1], shape.kv_len())?;
            check_len("attn_decoder v", lens[2], shape.kv_len())?;
            check_len("attn_decoder output", lens[3], shape.attend_out_len())?;
            let fp16_kv = [
                AttnDecoderKind::TokenToImage,
                AttnDecoderKind::TokenToImageSplit,
            ];
            if fp16_kv.contains(&shape.kind) {
                // The fp16 k/v rows are read in 16-byte loads.
                check_align("attn_decoder k", ptrs[1], 16)?;
                check_align("attn_decoder v", ptrs[2], 16)?;
            }
            shape.kind.entry_point(shape.head_dim)
        }
        Pass::Combine => {
            check_len("attn_decoder scratch", lens[0], shape.partial_len())?;
            check_len("attn_decoder output", lens[3], out_len)?;
            attn_decoder_combine_entry(shape.head_dim)
        }
    };
    let f = gpu.function(&name)?;
    let w = shape.width();
    let stride = |shared: bool, l: usize| if shared { 0 } else { (l * w) as i64 };
    let params = AttnDecParams {
        q: ptrs[0],
        k: ptrs[1],
        v: ptrs[2],
        o: ptrs[3],
        q_batch: stride(shape.q_shared, shape.lq),
        k_batch: stride(shape.kv_shared, shape.lk),
        v_batch: stride(shape.kv_shared, shape.lk),
        o_batch: (shape.lq * w) as i64,
        q_ld: w as i32,
        k_ld: w as i32,
        v_ld: w as i32,
        o_ld: w as i32,
        batch: shape.batch as i32,
        lq: shape.lq as i32,
        lk: shape.lk as i32,
        heads: shape.heads as i32,
        scale: 1.0 / (shape.head_dim as f64).sqrt() as f32,
        chunks: shape.chunks() as i32,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: one AttnDecParams by value (same C layout); every row, head and chunk the
    // kernel reads or writes lies inside the lengths checked above, of the dtypes `name`
    // takes (the combine reads only q, the scratch, and writes o).
    guarded(&name, || {
        unsafe { b.launch(shape.config(pass)) }.map(|_| ())
    })
}

/// One launch of the `shape.kind` kernel on typed buffers (the kernel's dtypes).
fn typed<Q, K, O>(
    gpu: &GpuContext,
    stream: &CudaStream,
    (shape, want): (AttnDecoderShape, AttnDecoderKind),
    (q, k, v): (&dyn DevicePtr<Q>, &dyn DevicePtr<K>, &dyn DevicePtr<K>),
    out: &mut dyn DevicePtrMut<O>,
) -> Result<()> {
    check_kind(shape, want)?;
    let lens = [q.len(), k.len(), v.len(), out.len()];
    let ((qp, _q), (kp, _k), (vp, _v)) = (
        q.device_ptr(stream),
        k.device_ptr(stream),
        v.device_ptr(stream),
    );
    let (op, _o) = out.device_ptr_mut(stream);
    launch(gpu, stream, (shape, Pass::Attend), [qp, kp, vp, op], lens)
}

/// Token self-attention: fp32 q, k, v and output.
pub fn attn_decoder_self(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnDecoderShape,
    q: &dyn DevicePtr<f32>,
    k: &dyn DevicePtr<f32>,
    v: &dyn DevicePtr<f32>,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    let kind = AttnDecoderKind::SelfAttn;
    typed(gpu, stream, (shape, kind), (q, k, v), out)
}

/// Tokens attend to the image: fp32 q, fp16 k and v. `out` is the fp32 output, or for a
/// [`AttnDecoderKind::TokenToImageSplit`] shape pass 1's scratch
/// ([`AttnDecoderShape::partial_len`]: each chunk's softmax state), which
/// [`attn_decoder_combine`] turns into the output.
pub fn attn_decoder_t2i(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnDecoderShape,
    q: &dyn DevicePtr<f32>,
    k: &dyn DevicePtr<u16>,
    v: &dyn DevicePtr<u16>,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    let kind = match shape.kind {
        AttnDecoderKind::TokenToImageSplit => AttnDecoderKind::TokenToImageSplit,
        _ => AttnDecoderKind::TokenToImage,
    };
    typed(gpu, stream, (shape, kind), (q, k, v), out)
}

/// Pass 2 of the split token->image attention: merges `partial` chunk by chunk, in chunk
/// order, into the fp32 output.
pub fn attn_decoder_combine(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnDecoderShape,
    partial: &dyn DevicePtr<f32>,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    check_kind(shape, AttnDecoderKind::TokenToImageSplit)?;
    let lens = [partial.len(), 0, 0, out.len()];
    let (pp, _p) = partial.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    launch(gpu, stream, (shape, Pass::Combine), [pp, 0, 0, op], lens)
}

/// The image attends to the tokens: fp16 q, fp32 k and v, fp16 output.
pub fn attn_decoder_i2t(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnDecoderShape,
    q: &dyn DevicePtr<u16>,
    k: &dyn DevicePtr<f32>,
    v: &dyn DevicePtr<f32>,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    let kind = AttnDecoderKind::ImageToToken;
    typed(gpu, stream, (shape, kind), (q, k, v), out)
}

fn check_kind(shape: AttnDecoderShape, want: AttnDecoderKind) -> Result<()> {
    if shape.kind != want {
        return Err(Error::Unsupported(format!(
            "attn_decoder launcher for {want:?} called with {:?}",
            shape.kind
        )));
    }
    Ok(())
}
