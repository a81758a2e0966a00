//! The mask decoder's image->token folded attention (`kernels/attn_fold_i2t.cu`): every
//! image row of every prompt attends to the prompt's folded token rows (`kf`, `cb`, `vf`,
//! see `graph::fold_ops`), and the result plus out_proj's bias is added into the fp32 image
//! stream `keys`. One block per 64 image rows and prompt, both products on tensor cores.

use cudarc::driver::{
    CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};

use crate::cuda::runtime::context::{as_i32, check_align, check_len, guarded, GpuContext};
pub use crate::graph::fold_ops::attn_fold_i2t_entry;
use crate::graph::fold_ops::{AttnFoldShape, FOLD_DIMS, FOLD_I2T_MAX_TOKENS};
use crate::{Error, Result};

/// Eight warps: a pair per 16 image rows, each warp one half of `dim`.
pub const ATTN_FOLD_I2T_THREADS: usize = 256;
/// Image rows per block.
pub const ATTN_FOLD_I2T_ROWS: usize = 64;
/// Most blocks along the grid's y axis (one per prompt).
const MAX_GRID_Y: usize = 65_535;

/// Mirrors `struct FoldI2tParams` in kernels/attn_fold_i2t.cu field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct FoldI2tParams {
    xpe: u64,
    kf: u64,
    cb: u64,
    vf: u64,
    bias: u64,
    keys: u64,
    xpe_batch: i64,
    batch: i32,
    tokens: i32,
    heads: i32,
    hw: i32,
    scale: f32,
    pad_: i32,
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter struct.
unsafe impl DeviceRepr for FoldI2tParams {}

/// The kernel's 8-token score tiles for `tokens`: 1, 2 or 4 (its three variants).
fn score_tiles(tokens: usize) -> usize {
    match tokens {
        0..=8 => 1,
        9..=16 => 2,
        _ => 4,
    }
}

/// Dynamic shared memory of one block: the fp16 xpe tile and one head's fp16 kf and vf
/// (rows of `dim + 8` halves, token rows padded to 16 or 32), every warp's partial scores
/// (fp32 fragments), then the fp32 staging of the next head's kf and vf rows.
pub fn attn_fold_i2t_smem_bytes(shape: &AttnFoldShape) -> usize {
    let lds = shape.dim + 8;
    let nt = score_tiles(shape.tokens);
    let padded = (nt * 8).max(16);
    let warps = ATTN_FOLD_I2T_THREADS / 32;
    (ATTN_FOLD_I2T_ROWS + 2 * padded) * lds * 2
        + warps * nt * 32 * 4 * 4
        + 2 * shape.tokens * shape.dim * 4
}

/// Rejects what the kernel cannot do; runs without a GPU.
fn validate(s: &AttnFoldShape) -> Result<()> {
    if s.batch == 0 || s.tokens == 0 || s.heads == 0 || s.hw == 0 || s.head_dim == 0 {
        return Err(Error::Unsupported(format!("attn_fold_i2t with {s:?}")));
    }
    if !s.i2t_fits() {
        return Err(Error::Unsupported(format!(
            "attn_fold_i2t needs dim in {FOLD_DIMS:?} and at most {FOLD_I2T_MAX_TOKENS} \
             tokens, got {s:?}"
        )));
    }
    if s.batch > MAX_GRID_Y {
        return Err(Error::Unsupported(format!(
            "attn_fold_i2t batch {} exceeds the grid's {MAX_GRID_Y} prompts",
            s.batch
        )));
    }
    as_i32("attn_fold_i2t image rows", s.hw)?;
    as_i32("attn_fold_i2t folded rows", s.batch * s.rows())?;
    Ok(())
}

/// `keys[b, j] += bias + sum_h sum_t softmax_t(scale * (xpe[j] . kf[b,t,h] + cb[b,t,h]))
/// vf[b,t,h]` for every prompt `b` and image row `j` (`xpe` is prompt `b`'s image side, or
/// the one shared side). `xpe` fp16 `[1 or batch, hw, dim]`; `kf`, `vf` fp32 `[batch,
/// tokens, heads, dim]` (rounded to fp16 in the kernel); `cb` fp32 `[batch, tokens, heads]`;
/// `bias` fp32 `[dim]`; `keys` fp32 `[batch, hw, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn attn_fold_i2t(
    gpu: &GpuContext,
    stream: &CudaStream,
    shape: AttnFoldShape,
    xpe: &dyn DevicePtr<u16>,
    kf: &dyn DevicePtr<f32>,
    cb: &dyn DevicePtr<f32>,
    vf: &dyn DevicePtr<f32>,
    bias: &dyn DevicePtr<f32>,
    keys: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    validate(&shape)?;
    gpu.check_stream(stream)?;
    let s = shape;
    check_len("attn_fold_i2t xpe", xpe.len(), s.image_len())?;
    check_len("attn_fold_i2t kf", kf.len(), s.folded_len())?;
    check_len("attn_fold_i2t cb", cb.len(), s.batch * s.rows())?;
    check_len("attn_fold_i2t vf", vf.len(), s.folded_len())?;
    check_len("attn_fold_i2t bias", bias.len(), s.dim)?;
    check_len("attn_fold_i2t keys", keys.len(), s.batch * s.hw * s.dim)?;
    let smem = attn_fold_i2t_smem_bytes(&s);
    let have = gpu.info().max_shared_per_block;
    if smem > have {
        return Err(Error::Unsupported(format!(
            "attn_fold_i2t with {s:?} needs {smem} bytes of shared memory, the device has {have}"
        )));
    }
    let name = attn_fold_i2t_entry(s.dim);
    let f = gpu.function(&name)?;
    let (xp, _x) = xpe.device_ptr(stream);
    let (kp, _k) = kf.device_ptr(stream);
    let (cp, _c) = cb.device_ptr(stream);
    let (vp, _v) = vf.device_ptr(stream);
    let (bp, _b) = bias.device_ptr(stream);
    let (op, _o) = keys.device_ptr_mut(stream);
    // xpe, kf and vf rows are copied in 16-byte cp.async chunks; bias and keys are read
    // and written as float2.
    check_align("attn_fold_i2t xpe", xp, 16)?;
    check_align("attn_fold_i2t kf", kp, 16)?;
    check_align("attn_fold_i2t vf", vp, 16)?;
    check_align("attn_fold_i2t bias", bp, 8)?;
    check_align("attn_fold_i2t keys", op, 8)?;
    let params = FoldI2tParams {
        xpe: xp,
        kf: kp,
        cb: cp,
        vf: vp,
        bias: bp,
        keys: op,
        xpe_batch: if s.image_shared {
            0
        } else {
            (s.hw * s.dim) as i64
        },
        batch: s.batch as i32,
        tokens: s.tokens as i32,
        heads: s.heads as i32,
        hw: s.hw as i32,
        scale: s.scale(),
        pad_: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (s.hw.div_ceil(ATTN_FOLD_I2T_ROWS) as u32, s.batch as u32, 1),
        block_dim: (ATTN_FOLD_I2T_THREADS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    let mut b = stream.launch_builder(f);
    b.arg(&params);
    // SAFETY: one FoldI2tParams by value (same C layout); every row the kernel reads or
    // writes lies inside the lengths checked above (xpe rows past hw are not read), with
    // the alignment its vector accesses need.
    guarded(&name, || unsafe { b.launch(cfg) }.map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(tokens: usize, dim: usize) -> AttnFoldShape {
        AttnFoldShape {
            batch: 2,
            tokens,
            heads: 8,
            hw: 4096,
            dim,
            head_dim: 16,
            image_shared: false,
        }
    }

    #[test]
    fn validation_rejects_what_the_kernel_cannot_do() {
        assert!(validate(&shape(7, 256)).is_ok());
        assert!(validate(&shape(32, 128)).is_ok());
        assert!(validate(&shape(33, 256)).is_err());
        assert!(validate(&shape(7, 192)).is_err());
        assert!(validate(&shape(0, 256)).is_err());
        assert!(validate(&AttnFoldShape {
            hw: 0,
            ..shape(7, 256)
        })
        .is_err());
        assert!(validate(&AttnFoldShape {
            batch: 70_000,
            ..shape(7, 256)
        })
        .is_err());
        assert_eq!(attn_fold_i2t_entry(256), "attn_fold_i2t_d256_f16");
    }

    #[test]
    fn shared_memory_fits_an_a100_at_the_largest_shape() {
        // 64 x 264 + 2 x 32 x 264 halves, 8 warps x 4 tiles x 32 lanes x 4 floats, then
        // 2 x 32 x 256 floats: 149,504 bytes.
        assert_eq!(attn_fold_i2t_smem_bytes(&shape(32, 256)), 149_504);
        assert!(attn_fold_i2t_smem_bytes(&shape(32, 256)) <= 163 * 1024);
    }
}
