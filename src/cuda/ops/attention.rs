//! Flash-attention launchers (`kernels/attention.cu`).
//!
//! [`attn_relpos`] is the image encoder's attention with the decomposed relative
//! position bias computed in-kernel, windowed (S x S windows over the grid padded up to a
//! multiple of S, the padding folded into the indexing) or global (S = grid, any grid). It
//! reads the packed qkv GEMM output, optionally stored with q scaled (`q_scale`), and writes
//! the head-merged result for the proj GEMM; SAM's 14 x 14 windows run two blocks per
//! (window, head), each holding all 196 keys and half the queries. The kernel variant is chosen by
//! [`AttnRelposShape::variant`]. [`attn_plain`] is the mask decoder's bias-free
//! attention.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Queries per block (4 warps x 16 rows) of every kernel but `attn_relpos_s14_*`, which
/// holds all of a window's keys and half its queries per block ([`WIN14_THREADS`]).
pub const ATTN_BLOCK_Q: usize = 64;
/// Keys per pipelined tile.
pub const ATTN_BLOCK_K: usize = 64;
pub const ATTN_THREADS: usize = 128;
/// Head dims with an encoder (rel-pos) instantiation: vit_b/l and vit_h.
pub const ENCODER_HEAD_DIMS: [usize; 2] = [64, 80];
/// Sides S (window, or grid when global) with a compile-time instantiation: SAM's 14 and
/// the 64x64 global grid of 1024-pixel images. Every other S in 1..=[`ENCODER_MAX_SIDE`]
/// runs the run-time-S variant ([`AttnRelposVariant::AnySide`]).
pub const ENCODER_WINDOWS: [usize; 2] = [14, 64];
/// Largest side S accepted: the rel-pos tables take `2 * 64 * rel_ld(S) * 4` bytes of shared
/// memory (130 KiB at 256) next to the K/V tiles (36-44 KiB), which at 256 fits only GPUs
/// with >= 175 KiB per block (H100/H200); the launch checks the device's limit. (The kernel's
/// index arithmetic holds up to S = 1625.)
pub const ENCODER_MAX_SIDE: usize = 256;
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
    side: i32,
    scale: f32,
    q_scale: f32,
    pad_: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for AttnParams {}

/// Row stride (floats) of the in-kernel rel-pos tables for side `s`: `s` rounded up to 4 mod 8,
/// which keeps the score initialisation's shared reads at most 2-way bank-conflicted for
/// every S. Mirrors `Side::ld` in kernels/attention.cu.
pub fn rel_ld(s: usize) -> usize {
    ((s + 3) & !7) + 4
}

/// The S = 14 kernel (`attn_relpos_s14_*`): two blocks of 7 warps per (window, head), warp
/// w of block x owning the window's query column 7x + w.
pub const WIN14_THREADS: usize = 224;
const WIN14_SPLIT: u32 = 2;
/// Its key slots: 14 key rows of 16 (2 masked), and staged rel-pos table rows (27 used).
const WIN14_KEYS: usize = 224;
const WIN14_TABLE_ROWS: usize = 32;
/// Floats per row of a warp's `Q Rh^T` product (16 rows per warp).
const WIN14_PRODUCT_LD: usize = 40;

/// Shared memory of an S = 14 block: K and V of the whole window and the two staged
/// tables (rows padded by 8 halves), the fp16 k/v bias row for padding tokens, and per
/// warp its `Q Rh^T` rows (fp32). Mirrors the layout in `attention_win14`.
fn win14_smem_bytes(head_dim: usize) -> usize {
    (2 * WIN14_KEYS + 2 * WIN14_TABLE_ROWS) * (head_dim + 8) * 2
        + 2 * head_dim * 2
        + (WIN14_THREADS / 32) * 16 * WIN14_PRODUCT_LD * 4
}

/// The head dim whose S = 64 kernel is kernels/attn_relpos_s64.cu (4 warps of 32 queries, 128
/// per block); hd 80 keeps attention.cu's 16-row schedule and geometry, as two m16 tiles of
/// its 80-wide output do not fit in 255 registers without spilling (on sm_90a
/// kernels/attn_relpos_s64_d80_sm90a.cu replaces that kernel within the same geometry).
const S64_HEAD_DIM: usize = 64;
const S64_BLOCK_Q: usize = 128;
const S64_THREADS: usize = 128;

/// Shared memory of an attn_relpos_s64.cu block: two stages of K and V tiles and the Q tile
/// (rows padded by 8 halves), rel_w of each warp's second m16 tile (`[64][72]` fp32) and the
/// rel_h batch (`[128][4]` fp32). Mirrors `G` in that file.
fn s64_smem_bytes() -> usize {
    let lds = S64_HEAD_DIM + 8;
    (4 * ATTN_BLOCK_K + S64_BLOCK_Q) * lds * 2 + S64_BLOCK_Q / 2 * 72 * 4 + S64_BLOCK_Q * 4 * 4
}

/// Shared memory of one block: two stages of K and V tiles (rows padded by 8 halves; the Q
/// tile borrows stage 1 before the main loop), and for rel-pos the fp32 tables
/// `[64][rel_ld(S)]`: `rel_h` and `rel_w`, or in the S = 64 instantiation `rel_h` alone
/// (`rel_w` then lives in registers and its table is scratch in stage 1). Mirrors `Tile` in
/// kernels/attention.cu.
fn smem_bytes(head_dim: usize, rel: Option<(usize, AttnRelposVariant)>) -> usize {
    let tile = ATTN_BLOCK_K * (head_dim + 8);
    4 * tile * 2
        + rel.map_or(0, |(side, v)| {
            let tables = if v == AttnRelposVariant::Side64 { 1 } else { 2 };
            tables * ATTN_BLOCK_Q * rel_ld(side) * 4
        })
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
pub struct AttnRelposShape {
    pub batch: usize,
    /// Tokens per image side (64 for 1024-pixel inputs, `img_size / 16` in general).
    pub grid: usize,
    pub dim: usize,
    pub heads: usize,
    /// The side S of the attended squares: the window size (14) for windowed blocks, whose
    /// grid is padded up to a multiple of S; equal to `grid` for global blocks. Any S in
    /// `1..=ENCODER_MAX_SIDE` with any grid; the rel-pos tables have `2*S - 1` rows.
    pub window: usize,
}

/// The encoder attention kernels; [`AttnRelposShape::variant`] picks one (host-side, in
/// the op vocabulary, so that a plan names its kernels without a device).
pub use crate::graph::ops::AttnRelposVariant;

impl AttnRelposShape {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }

    pub fn windows_per_side(&self) -> usize {
        self.grid.div_ceil(self.window.max(1))
    }

    /// The one place that maps a shape to a kernel variant: a compile-time instantiation
    /// when S has one ([`ENCODER_WINDOWS`]), else the run-time-S kernel.
    pub fn variant(&self) -> AttnRelposVariant {
        AttnRelposVariant::for_side(self.window, self.grid)
    }

    /// Rejects what the kernels cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let AttnRelposShape {
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
        if window == 0 || window > ENCODER_MAX_SIDE {
            return Err(Error::Unsupported(format!(
                "encoder attention window (side) {window}: supported 1..={ENCODER_MAX_SIDE} \
                 (global attention uses window = grid)"
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
        self.variant().entry_point(self.head_dim())
    }

    /// Queries per block (`None` for the window-14 kernel, which splits a window's queries
    /// over `WIN14_SPLIT` blocks), threads and shared bytes: the one place that pairs a
    /// variant with its kernel's constants.
    fn block(&self) -> (Option<usize>, usize, usize) {
        let hd = self.head_dim();
        match self.variant() {
            AttnRelposVariant::Side14 => (None, WIN14_THREADS, win14_smem_bytes(hd)),
            AttnRelposVariant::Side64 if hd == S64_HEAD_DIM => {
                (Some(S64_BLOCK_Q), S64_THREADS, s64_smem_bytes())
            }
            v => (
                Some(ATTN_BLOCK_Q),
                ATTN_THREADS,
                smem_bytes(hd, Some((self.window, v))),
            ),
        }
    }

    pub fn smem_bytes(&self) -> usize {
        self.block().2
    }

    pub fn config(&self) -> LaunchConfig {
        let wps = self.windows_per_side();
        let (block_q, threads, smem) = self.block();
        let x = block_q.map_or(WIN14_SPLIT, |b| {
            (self.window * self.window).div_ceil(b) as u32
        });
        LaunchConfig {
            grid_dim: (x, self.heads as u32, (self.batch * wps * wps) as u32),
            block_dim: (threads as u32, 1, 1),
            shared_mem_bytes: smem as u32,
        }
    }
}

/// The encoder attention's inputs. `qkv` is the qkv Linear output `[batch*grid*grid, 3*dim]`
/// (tokens row-major over the unpadded grid), `qkv_bias` its fp32 bias `[3*dim]` (it stands in
/// for the padding tokens, so it must be in the same units as the stored qkv), `rel_pos_h` /
/// `rel_pos_w` the fp16 tables `[2*window-1, head_dim]`.
///
/// With `qt = q_scale * q` (q as stored) the logits are
/// `softmax_scale * <qt, k> + <qt, Rh> + <qt, Rw>`; k and v are used as stored, so the output
/// is in the units of the stored v. Unscaled storage: `q_scale: 1.0, softmax_scale: None`.
/// With the whole qkv output stored times `a`: `q_scale = 1/a` and
/// `softmax_scale = Some(head_dim^-0.5 / a)` (k carries `a` too), output times `a`.
pub struct AttnRelposInputs<'a> {
    pub qkv: &'a dyn DevicePtr<u16>,
    pub qkv_bias: &'a dyn DevicePtr<f32>,
    pub rel_pos_h: &'a dyn DevicePtr<u16>,
    pub rel_pos_w: &'a dyn DevicePtr<u16>,
    /// True q = `q_scale` x stored q, in the dot product and in the rel-pos terms. Finite, > 0.
    pub q_scale: f32,
    /// Scale of `<qt, k>`; `None` is the spec's `head_dim^-0.5`. Finite, > 0.
    pub softmax_scale: Option<f32>,
}

/// Writes `out[batch*grid*grid, dim]` (fp16, channel `h*head_dim + c`).
pub fn attn_relpos(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnRelposShape,
    inputs: &AttnRelposInputs<'_>,
    out: &mut dyn DevicePtrMut<u16>,
) -> Result<()> {
    shape.validate()?;
    let scale = inputs
        .softmax_scale
        .unwrap_or_else(|| (shape.head_dim() as f32).powf(-0.5));
    for (what, v) in [("q_scale", inputs.q_scale), ("softmax_scale", scale)] {
        // The online softmax tracks the running max of the unscaled score, which is the max
        // of the logits only for a positive scale.
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::Unsupported(format!(
                "encoder attention {what} {v}: must be finite and positive"
            )));
        }
    }
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
    // 16 B: the S = 14 kernel stages the tables with cp.async.
    check_align("attention rel_pos_h", rh, 16)?;
    check_align("attention rel_pos_w", rw, 16)?;
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
        side: s as i32,
        scale,
        q_scale: inputs.q_scale,
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
pub struct AttnPlainShape {
    pub batch: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Queries per sequence.
    pub lq: usize,
    /// Keys (= values) per sequence.
    pub lk: usize,
}

impl AttnPlainShape {
    /// Rejects what the kernels cannot do; runs without a GPU.
    pub fn validate(&self) -> Result<()> {
        let AttnPlainShape {
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
pub fn attn_plain(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnPlainShape,
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
        q_scale: 1.0,
        ..AttnParams::default()
    };
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: one AttnParams by value (same C layout); rows < lq / lk of each sequence and
    // the head's channels are inside the buffers checked above.
    guarded(&name, || unsafe { b.launch(shape.config()) }.map(|_| ()))
}
