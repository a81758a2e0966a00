//! Flash-attention launchers (`kernels/attention.cu`).
//!
//! [`encoder_attention`] is the image encoder's attention with the decomposed relative
//! position bias computed in-kernel, windowed (14x14, the 64 -> 70 padding folded into the
//! indexing) or global (64x64). It reads the packed qkv GEMM output and writes the head-merged
//! result for the proj GEMM. [`plain_attention`] is the mask decoder's bias-free attention.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use super::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Queries per block (4 warps x 16 rows).
pub const ATTN_BLOCK_Q: usize = 64;
/// Keys per pipelined tile.
pub const ATTN_BLOCK_K: usize = 64;
pub const ATTN_THREADS: usize = 128;
/// Head dims with an encoder (rel-pos) instantiation: vit_b/l and vit_h.
pub const ENCODER_HEAD_DIMS: [usize; 2] = [64, 80];
/// Window sizes with an instantiation: SAM's 14 and the 64x64 global grid.
pub const ENCODER_WINDOWS: [usize; 2] = [14, 64];
/// Head dims with a plain instantiation: the decoder's 32 (self-attn) and 16 (cross-attn),
/// plus 64.
pub const PLAIN_HEAD_DIMS: [usize; 3] = [16, 32, 64];

/// Mirrors `struct AttnParams` in kernels/attention.cu field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct AttnParams {
    q: u64,
    k: u64,
    v: u64,
    o: u64,
    k_bias: u64,
    v_bias: u64,
    rel_h: u64,
    rel_w: u64,
    q_batch: i64,
    k_batch: i64,
    v_batch: i64,
    o_batch: i64,
    q_ld: i32,
    k_ld: i32,
    v_ld: i32,
    o_ld: i32,
    lq: i32,
    lk: i32,
    grid: i32,
    windows_per_side: i32,
    scale: f32,
    pad_: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for AttnParams {}

/// Shared memory of one block: Q tile, two K and two V stages (rows padded by 8 halves), and
/// for rel-pos the fp32 `rel_h`, `rel_w` tables `[64][window]`.
fn smem_bytes(head_dim: usize, rel_window: Option<usize>) -> usize {
    let tile = ATTN_BLOCK_K * (head_dim + 8);
    (ATTN_BLOCK_Q * (head_dim + 8) + 4 * tile) * 2
        + rel_window.map_or(0, |s| 2 * ATTN_BLOCK_Q * s * 4)
}

fn check_smem(gpu: &GpuContext, need: usize, what: &str) -> Result<()> {
    let have = gpu.info().max_shared_per_block;
    if need > have {
        return Err(Error::Unsupported(format!(
            "{what} needs {need} B of shared memory per block, the device allows {have}"
        )));
    }
    Ok(())
}

/// One encoder attention call: `batch` images of `grid x grid` tokens, embed dim `dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderAttnShape {
    pub batch: usize,
    /// Tokens per image side (64 for 1024-pixel inputs).
    pub grid: usize,
    pub dim: usize,
    pub heads: usize,
    /// 14 for windowed blocks; equal to `grid` (64) for global blocks.
    pub window: usize,
}

impl EncoderAttnShape {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    pub fn windows_per_side(&self) -> usize {
        self.grid.div_ceil(self.window.max(1))
    }

    /// Rejects what the kernels cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let EncoderAttnShape {
            batch,
            grid,
            dim,
            heads,
            window,
        } = *self;
        if batch == 0 || grid == 0 || heads == 0 || !dim.is_multiple_of(heads) {
            return Err(Error::Unsupported(format!(
                "encoder attention shape {self:?}: empty, or dim not divisible by heads"
            )));
        }
        let hd = dim / heads;
        if !ENCODER_HEAD_DIMS.contains(&hd) {
            return Err(Error::Unsupported(format!(
                "encoder attention head_dim {hd}: kernels exist for {ENCODER_HEAD_DIMS:?}"
            )));
        }
        if !ENCODER_WINDOWS.contains(&window) {
            return Err(Error::Unsupported(format!(
                "encoder attention window {window}: kernels exist for {ENCODER_WINDOWS:?}"
            )));
        }
        if window == 64 && grid != 64 {
            return Err(Error::Unsupported(format!(
                "global attention is instantiated for a 64x64 grid, got {grid}x{grid}"
            )));
        }
        let z = batch * self.windows_per_side() * self.windows_per_side();
        if heads > 65535 || z > 65535 {
            return Err(Error::Unsupported(format!(
                "encoder attention launch grid too large ({heads} heads, {z} windows)"
            )));
        }
        as_i32("tokens", batch * grid * grid)?;
        as_i32("qkv row stride", 3 * dim)?;
        Ok(())
    }

    pub fn kernel_name(&self) -> String {
        format!("attn_relpos_s{}_d{}_f16", self.window, self.head_dim())
    }

    pub fn smem_bytes(&self) -> usize {
        smem_bytes(self.head_dim(), Some(self.window))
    }

    pub fn config(&self) -> LaunchConfig {
        let wps = self.windows_per_side();
        LaunchConfig {
            grid_dim: (
                (self.window * self.window).div_ceil(ATTN_BLOCK_Q) as u32,
                self.heads as u32,
                (self.batch * wps * wps) as u32,
            ),
            block_dim: (ATTN_THREADS as u32, 1, 1),
            shared_mem_bytes: self.smem_bytes() as u32,
        }
    }
}

/// The encoder attention's inputs. `qkv` is the qkv Linear output `[batch*grid*grid, 3*dim]`
/// (tokens row-major over the unpadded grid), `qkv_bias` its fp32 bias `[3*dim]` (it stands in
/// for the padding tokens), `rel_pos_h` / `rel_pos_w` the fp16 tables `[2*window-1, head_dim]`.
pub struct EncoderAttnInputs<'a> {
    pub qkv: &'a dyn DevicePtr<u16>,
    pub qkv_bias: &'a dyn DevicePtr<f32>,
    pub rel_pos_h: &'a dyn DevicePtr<u16>,
    pub rel_pos_w: &'a dyn DevicePtr<u16>,
}

/// Writes `out[batch*grid*grid, dim]` (fp16, channel `h*head_dim + c`).
pub fn encoder_attention(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: EncoderAttnShape,
    inputs: &EncoderAttnInputs<'_>,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let name = shape.kernel_name();
    check_smem(gpu, shape.smem_bytes(), &name)?;
    let f = gpu.function(&name)?;
    let (d, hd, s) = (shape.dim, shape.head_dim(), shape.window);
    let tokens = shape.batch * shape.grid * shape.grid;
    check_len("attention qkv", inputs.qkv.len(), tokens * 3 * d)?;
    check_len("attention qkv bias", inputs.qkv_bias.len(), 3 * d)?;
    check_len(
        "attention rel_pos_h",
        inputs.rel_pos_h.len(),
        (2 * s - 1) * hd,
    )?;
    check_len(
        "attention rel_pos_w",
        inputs.rel_pos_w.len(),
        (2 * s - 1) * hd,
    )?;
    check_len("attention output", out.len(), tokens * d)?;

    let (qkv, _q) = inputs.qkv.device_ptr(stream);
    let (bias, _b) = inputs.qkv_bias.device_ptr(stream);
    let (rh, _rh) = inputs.rel_pos_h.device_ptr(stream);
    let (rw, _rw) = inputs.rel_pos_w.device_ptr(stream);
    let (o, _o) = out.device_ptr_mut(stream);
    check_align("attention qkv", qkv, 16)?;
    check_align("attention qkv bias", bias, 4)?;
    check_align("attention rel_pos_h", rh, 4)?;
    check_align("attention rel_pos_w", rw, 4)?;
    check_align("attention output", o, 4)?;

    let (d64, ld) = (d as u64, as_i32("qkv row stride", 3 * d)?);
    let params = AttnParams {
        q: qkv,
        k: qkv + 2 * d64,
        v: qkv + 4 * d64,
        o,
        k_bias: bias + 4 * d64,
        v_bias: bias + 8 * d64,
        rel_h: rh,
        rel_w: rw,
        q_ld: ld,
        k_ld: ld,
        v_ld: ld,
        o_ld: d as i32,
        lq: (s * s) as i32,
        lk: (s * s) as i32,
        grid: shape.grid as i32,
        windows_per_side: shape.windows_per_side() as i32,
        scale: (hd as f32).powf(-0.5),
        ..AttnParams::default()
    };
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: the kernel takes one AttnParams by value (same C layout); every address it
    // derives lies inside the buffers checked above: tokens of the grid, 3*dim columns of
    // qkv, 3*dim bias entries, (2*window-1)*head_dim table entries, dim output columns.
    guarded(&name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
}

/// Bias-free multi-head attention over `batch` independent sequences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainAttnShape {
    pub batch: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Queries per sequence.
    pub lq: usize,
    /// Keys (= values) per sequence.
    pub lk: usize,
}

impl PlainAttnShape {
    /// Rejects what the kernels cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let PlainAttnShape {
            batch,
            heads,
            head_dim,
            lq,
            lk,
        } = *self;
        if batch == 0 || heads == 0 || lq == 0 || lk == 0 {
            return Err(Error::Unsupported(format!(
                "attention with an empty shape {self:?}"
            )));
        }
        if !PLAIN_HEAD_DIMS.contains(&head_dim) {
            return Err(Error::Unsupported(format!(
                "attention head_dim {head_dim}: kernels exist for {PLAIN_HEAD_DIMS:?}"
            )));
        }
        if batch > 65535 || heads > 65535 {
            return Err(Error::Unsupported(format!(
                "attention launch grid too large ({batch} sequences, {heads} heads)"
            )));
        }
        as_i32("attention queries", batch * lq * heads * head_dim)?;
        as_i32("attention keys", batch * lk * heads * head_dim)?;
        Ok(())
    }

    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kernel_name(&self) -> String {
        format!("attn_plain_d{}_f16", self.head_dim)
    }

    pub fn smem_bytes(&self) -> usize {
        smem_bytes(self.head_dim, None)
    }

    pub fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                self.lq.div_ceil(ATTN_BLOCK_Q) as u32,
                self.heads as u32,
                self.batch as u32,
            ),
            block_dim: (ATTN_THREADS as u32, 1, 1),
            shared_mem_bytes: self.smem_bytes() as u32,
        }
    }
}

/// `out = softmax(q k^T / sqrt(head_dim)) v` per head. `q` and `out` are
/// `[batch, lq, heads*head_dim]`, `k` and `v` `[batch, lk, heads*head_dim]`, contiguous, head
/// `h` in channels `h*head_dim..`, as the decoder's `_separate_heads` / `_recombine_heads`.
pub fn plain_attention(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: PlainAttnShape,
    q: &dyn DevicePtr<u16>,
    k: &dyn DevicePtr<u16>,
    v: &dyn DevicePtr<u16>,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    shape.validate()?;
    gpu.check_stream(stream)?;
    let name = shape.kernel_name();
    check_smem(gpu, shape.smem_bytes(), &name)?;
    let f = gpu.function(&name)?;
    let w = shape.width();
    check_len("attention q", q.len(), shape.batch * shape.lq * w)?;
    check_len("attention k", k.len(), shape.batch * shape.lk * w)?;
    check_len("attention v", v.len(), shape.batch * shape.lk * w)?;
    check_len("attention output", out.len(), shape.batch * shape.lq * w)?;
    let (qp, _q) = q.device_ptr(stream);
    let (kp, _k) = k.device_ptr(stream);
    let (vp, _v) = v.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    for (what, p, align) in [
        ("q", qp, 16),
        ("k", kp, 16),
        ("v", vp, 16),
        ("output", op, 4),
    ] {
        check_align(&format!("attention {what}"), p, align)?;
    }
    let ld = w as i32;
    let params = AttnParams {
        q: qp,
        k: kp,
        v: vp,
        o: op,
        q_batch: (shape.lq * w) as i64,
        k_batch: (shape.lk * w) as i64,
        v_batch: (shape.lk * w) as i64,
        o_batch: (shape.lq * w) as i64,
        q_ld: ld,
        k_ld: ld,
        v_ld: ld,
        o_ld: ld,
        lq: shape.lq as i32,
        lk: shape.lk as i32,
        scale: (shape.head_dim as f32).powf(-0.5),
        ..AttnParams::default()
    };
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: one AttnParams by value (same C layout); rows < lq / lk of each sequence and
    // the head's channels are inside the buffers checked above.
    guarded(&name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
}
