//! The decoder's folded token->image attention (`kernels/attn_fold_t2i.cu`): every folded
//! row `q'[b, t, h]` (fp32, `[batch, tokens, heads, dim]`) attends over the `hw` fp16 image
//! rows, `y = softmax(scale * q' xpe^T) x`, on the tensor cores. Two launches, split over the
//! image rows flash-decoding style so that one prompt fills the device: [`attn_fold_t2i`]
//! writes each chunk's softmax state to fp32 scratch ([`AttnFoldShape::partial_len`]),
//! [`attn_fold_t2i_combine`] merges the chunks in chunk order into `y`. The chunk count,
//! [`fold_chunks`], depends on `hw` alone, so a prompt's `y` is the same in any batch.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
pub use crate::graph::fold_ops::{
    attn_fold_t2i_combine_entry, attn_fold_t2i_entry, fold_chunks, AttnFoldShape, FOLD_DIMS,
};
use crate::{Error, Result};

/// Folded rows per pass-1 block (4 warps x 16 rows of one prompt, twice: two warp groups
/// split each tile's image rows).
pub const FOLD_T2I_BLOCK_ROWS: usize = 64;
/// Image rows per streamed tile.
pub const FOLD_T2I_BLOCK_KEYS: usize = 32;
/// Tiles in the cp.async ring (double buffering).
pub const FOLD_T2I_STAGES: usize = 2;
pub const FOLD_T2I_THREADS: usize = 256;
/// Threads of a combine block (one folded row).
pub const FOLD_T2I_COMBINE_THREADS: usize = 128;
/// CUDA's limit on grid dimensions y and z.
const GRID_YZ_MAX: usize = 65_535;

/// Mirrors `struct FoldT2iParams` in kernels/attn_fold_t2i.cu field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FoldT2iParams {
    qf: u64,
    xpe: u64,
    x: u64,
    partial: u64,
    y: u64,
    image_batch: i64,
    batch: i32,
    rows: i32,
    hw: i32,
    chunks: i32,
    chunk_len: i32,
    sl2: f32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for FoldT2iParams {}

/// Dynamic shared memory of a pass-1 block: the fp16 Q' tile and the ring's xpe and x
/// tiles, rows padded by 8 halves. Mirrors `FoldTile::SMEM` in the kernel.
pub fn smem_bytes(dim: usize) -> usize {
    (FOLD_T2I_BLOCK_ROWS + 2 * FOLD_T2I_STAGES * FOLD_T2I_BLOCK_KEYS) * (dim + 8) * 2
}

/// Rejects what the kernels cannot do; runs without a GPU.
fn validate(s: &AttnFoldShape) -> Result<()> {
    if !s.t2i_fits() {
        return Err(Error::Unsupported(format!(
            "attn_fold_t2i with {s:?} (kernels exist for dim {FOLD_DIMS:?}, head_dim > 0)"
        )));
    }
    if s.batch == 0 || s.tokens == 0 || s.heads == 0 || s.hw == 0 {
        return Err(Error::Unsupported(format!("attn_fold_t2i with {s:?}")));
    }
    as_i32("attn_fold_t2i rows", s.rows())?;
    // The kernel's chunk end, `chunk * chunk_len + chunk_len`, may pass hw by a chunk.
    as_i32("attn_fold_t2i hw", s.hw + s.hw.div_ceil(fold_chunks(s.hw)))?;
    as_i32("attn_fold_t2i batch * rows", s.batch * s.rows())?;
    let row_blocks = s.rows().div_ceil(FOLD_T2I_BLOCK_ROWS);
    let combine_blocks = s.batch * s.rows(); // a block per folded row
    if s.batch > GRID_YZ_MAX || row_blocks.max(combine_blocks) > i32::MAX as usize {
        return Err(Error::Unsupported(format!("attn_fold_t2i grid for {s:?}")));
    }
    Ok(())
}

fn params(s: &AttnFoldShape, ptrs: [u64; 5]) -> FoldT2iParams {
    let chunks = fold_chunks(s.hw);
    FoldT2iParams {
        qf: ptrs[0],
        xpe: ptrs[1],
        x: ptrs[2],
        partial: ptrs[3],
        y: ptrs[4],
        image_batch: if s.image_shared {
            0
        } else {
            (s.hw * s.dim) as i64
        },
        batch: s.batch as i32,
        rows: s.rows() as i32,
        hw: s.hw as i32,
        chunks: chunks as i32,
        chunk_len: s.hw.div_ceil(chunks) as i32,
        sl2: s.scale() * std::f32::consts::LOG2_E,
    }
}

/// Pass 1: each (prompt, 64-row tile of folded rows, image chunk) block writes its rows'
/// chunk states (max in log2 units, sum, `dim` accumulators) into `partial`
/// (`[batch, rows, chunks, dim + 2]` fp32). `qf` is fp32 `[batch, tokens, heads, dim]`
/// (16-byte aligned: read as float4), `xpe` and `x` fp16 `[1 or batch, hw, dim]` (16-byte
/// aligned: cp.async); Q' is rounded to fp16 for the tensor cores.
#[allow(clippy::too_many_arguments)]
pub fn attn_fold_t2i(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnFoldShape,
    qf: &dyn DevicePtr<f32>,
    xpe: &dyn DevicePtr<u16>,
    x: &dyn DevicePtr<u16>,
    partial: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    validate(&shape)?;
    gpu.check_stream(stream)?;
    check_len("attn_fold_t2i qf", qf.len(), shape.folded_len())?;
    check_len("attn_fold_t2i xpe", xpe.len(), shape.image_len())?;
    check_len("attn_fold_t2i x", x.len(), shape.image_len())?;
    check_len("attn_fold_t2i partial", partial.len(), shape.partial_len())?;
    let smem = smem_bytes(shape.dim);
    let have = gpu.info().max_shared_per_block;
    if smem > have {
        return Err(Error::Unsupported(format!(
            "attn_fold_t2i needs {smem} B of shared memory per block, the device allows {have}"
        )));
    }
    let ((qp, _q), (kp, _k), (vp, _v)) = (
        qf.device_ptr(stream),
        xpe.device_ptr(stream),
        x.device_ptr(stream),
    );
    let (pp, _p) = partial.device_ptr_mut(stream);
    check_align("attn_fold_t2i qf", qp, 16)?;
    check_align("attn_fold_t2i xpe", kp, 16)?;
    check_align("attn_fold_t2i x", vp, 16)?;
    let name = attn_fold_t2i_entry(shape.dim);
    let f = gpu.function(&name)?;
    let p = params(&shape, [qp, kp, vp, pp, 0]);
    let config = LaunchConfig {
        grid_dim: (
            shape.rows().div_ceil(FOLD_T2I_BLOCK_ROWS) as u32,
            fold_chunks(shape.hw) as u32,
            shape.batch as u32,
        ),
        block_dim: (FOLD_T2I_THREADS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&p);
    // SAFETY: one FoldT2iParams by value (same C layout); the kernel reads qf rows
    // [b * rows, (b + 1) * rows) of `dim` floats, image rows [0, hw) of prompt b (or of the
    // shared side) and writes partial rows [b * rows, (b + 1) * rows) x chunks, all inside
    // the lengths checked above.
    guarded(&name, || unsafe { b.launch(config) }.map(|_| ()))
}

/// Pass 2: merges each folded row's chunk states, in chunk order, into `y` (fp32
/// `[batch, tokens, heads, dim]`).
pub fn attn_fold_t2i_combine(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnFoldShape,
    partial: &dyn DevicePtr<f32>,
    y: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    validate(&shape)?;
    gpu.check_stream(stream)?;
    check_len("attn_fold_t2i partial", partial.len(), shape.partial_len())?;
    check_len("attn_fold_t2i y", y.len(), shape.folded_len())?;
    let (pp, _p) = partial.device_ptr(stream);
    let (yp, _y) = y.device_ptr_mut(stream);
    let name = attn_fold_t2i_combine_entry(shape.dim);
    let f = gpu.function(&name)?;
    let p = params(&shape, [0, 0, 0, pp, yp]);
    let config = LaunchConfig {
        grid_dim: ((shape.batch * shape.rows()) as u32, 1, 1),
        block_dim: (FOLD_T2I_COMBINE_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&p);
    // SAFETY: one FoldT2iParams by value; the kernel reads partial rows [0, batch * rows) x
    // chunks and writes y rows [0, batch * rows) of `dim` floats, inside the checked lengths.
    guarded(&name, || unsafe { b.launch(config) }.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(dim: usize, hw: usize) -> AttnFoldShape {
        AttnFoldShape {
            batch: 1,
            tokens: 7,
            heads: 8,
            hw,
            dim,
            head_dim: 16,
            image_shared: false,
        }
    }

    #[test]
    fn validation_rejects_what_the_kernels_cannot_do() {
        assert!(validate(&shape(256, 4096)).is_ok());
        assert!(validate(&shape(128, 1)).is_ok());
        assert!(matches!(
            validate(&shape(64, 4096)),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            validate(&shape(256, 0)),
            Err(Error::Unsupported(_))
        ));
        let no_head = AttnFoldShape {
            head_dim: 0,
            ..shape(256, 64)
        };
        assert!(matches!(validate(&no_head), Err(Error::Unsupported(_))));
        let huge = AttnFoldShape {
            batch: 70_000,
            ..shape(256, 64)
        };
        assert!(matches!(validate(&huge), Err(Error::Unsupported(_))));
        let no_tokens = AttnFoldShape {
            tokens: 0,
            ..shape(256, 64)
        };
        assert!(matches!(validate(&no_tokens), Err(Error::Unsupported(_))));
    }

    #[test]
    fn shared_memory_fits_an_sm80_block_at_both_widths() {
        // 99 KiB at 256 (A100 allows 163 KiB, H100 227 KiB), 51 KiB at 128.
        assert_eq!(smem_bytes(256), 101_376);
        assert_eq!(smem_bytes(128), 52_224);
    }
}
