//! Sparse prompt embeddings for a batch of prompts (`kernels/prompt_encoder.cu`).
//!
//! Prompts with different point counts share one `[prompts, tokens]` layout: each is padded
//! with not-a-point tokens, exactly the official padding token (label -1), so a padded
//! prompt decodes as the official model decodes that prompt with the extra `-1` points.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cuda::runtime::context::{as_i32, check_len, guarded, GpuContext};
use crate::{Error, Result};

/// Threads per block along the Fourier features.
pub const PE_THREADS: usize = 128;
pub use crate::cpu::ops::prompt_encoder::{
    sparse_tokens as prompt_tokens, KIND_BOX_CORNER0, KIND_BOX_CORNER1, KIND_NOT_A_POINT,
};

/// Pads every prompt to the longest with not-a-point tokens: `(coords [n*2], kinds [n],
/// tokens per prompt)`.
pub fn pad_prompts(prompts: &[Vec<([f32; 2], i32)>]) -> (Vec<f32>, Vec<i32>, usize) {
    let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut coords = Vec::with_capacity(prompts.len() * t * 2);
    let mut kinds = Vec::with_capacity(prompts.len() * t);
    for p in prompts {
        for k in 0..t {
            let (c, kind) = p.get(k).copied().unwrap_or(([0.0, 0.0], KIND_NOT_A_POINT));
            coords.extend_from_slice(&c);
            kinds.push(kind);
        }
    }
    (coords, kinds, t)
}

/// Embeds `n` tokens: `gauss` `[2, feats]`, `table` `[5, 2*feats]` (see
/// [`crate::cpu::model::prompt_encoder::PromptEncoder::sparse_tables`]), `coords` `[n, 2]`, `kinds`
/// `[n]` in 0..5. Returns `[n, 2*feats]`.
#[allow(clippy::too_many_arguments)]
pub fn sparse_embeddings(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    gauss: &CudaSlice<f32>,
    table: &CudaSlice<f32>,
    coords: &CudaSlice<f32>,
    kinds: &[i32],
    input_size: usize,
) -> Result<CudaSlice<f32>> {
    gpu.check_stream(stream)?;
    let n = kinds.len();
    let feats = gauss.len() / 2;
    if n == 0 || feats == 0 || n > 65_535 || input_size == 0 {
        return Err(Error::Unsupported(format!(
            "prompt_sparse on {n} tokens (1..=65535), {feats} features, input {input_size}"
        )));
    }
    if let Some(k) = kinds.iter().find(|k| !(0..5).contains(*k)) {
        return Err(Error::Prompt(format!("token kind {k} is not in 0..5")));
    }
    check_len("prompt table", table.len(), 5 * 2 * feats)?;
    check_len("prompt coords", coords.len(), 2 * n)?;
    let kinds_dev = guarded("host-to-device copy", || stream.clone_htod(kinds))?;
    let mut out = gpu.zeros_f32(stream, n * 2 * feats)?;
    let f = gpu.function("prompt_sparse_f32")?;
    let (cp, _c) = coords.device_ptr(stream);
    let (kp, _k) = kinds_dev.device_ptr(stream);
    let (gp, _g) = gauss.device_ptr(stream);
    let (tp, _t) = table.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (nn, ff) = (as_i32("tokens", n)?, as_i32("features", feats)?);
    let size = input_size as f32;
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let mut b = stream.launch_builder(f);
    b.arg(&cp).arg(&kp).arg(&gp).arg(&tp);
    b.arg(&nn).arg(&ff).arg(&size).arg(&two_pi).arg(&op);
    let cfg = LaunchConfig {
        grid_dim: (feats.div_ceil(PE_THREADS) as u32, n as u32, 1),
        block_dim: (PE_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel; coords hold 2n values, kinds n values in 0..5,
    // gauss 2*feats, table 5*2*feats, out n*2*feats.
    guarded("prompt_sparse_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
    drop((_c, _k, _g, _t, _o));
    Ok(out)
}

/// The decoder's token matrix for `batch` prompts of `sparse` tokens each
/// (`decoder_tokens_f32`): per prompt the `prefix` rows (IoU token, mask tokens) then the
/// sparse embeddings. `coords` `[batch * sparse, 2]` and `kinds` `[batch * sparse]` as
/// [`pad_prompts`] makes them; `out` `[batch, prefix_rows + sparse, 2 * feats]`.
#[allow(clippy::too_many_arguments)]
pub fn decoder_tokens(
    gpu: &GpuContext,
    stream: &CudaStream,
    coords: &dyn DevicePtr<f32>,
    kinds: &dyn DevicePtr<i32>,
    gauss: &dyn DevicePtr<f32>,
    table: &dyn DevicePtr<f32>,
    prefix: &dyn DevicePtr<f32>,
    (batch, sparse, prefix_rows): (usize, usize, usize),
    input_size: usize,
    out: &mut dyn DevicePtrMut<f32>,
) -> Result<()> {
    gpu.check_stream(stream)?;
    let feats = gauss.len() / 2;
    let rows = batch * (prefix_rows + sparse);
    if rows == 0 || feats == 0 || rows > 65_535 || input_size == 0 {
        return Err(Error::Unsupported(format!(
            "decoder_tokens on {batch} prompts of {prefix_rows} + {sparse} tokens (at most \
             65535 rows), {feats} features, input {input_size}"
        )));
    }
    let dim = 2 * feats;
    check_len("prompt table", table.len(), 5 * dim)?;
    check_len("output tokens", prefix.len(), prefix_rows * dim)?;
    check_len("prompt coords", coords.len(), 2 * batch * sparse)?;
    check_len("prompt kinds", kinds.len(), batch * sparse)?;
    check_len("decoder tokens", out.len(), rows * dim)?;
    let f = gpu.function("decoder_tokens_f32")?;
    let (cp, _c) = coords.device_ptr(stream);
    let (kp, _k) = kinds.device_ptr(stream);
    let (gp, _g) = gauss.device_ptr(stream);
    let (tp, _t) = table.device_ptr(stream);
    let (pp, _p) = prefix.device_ptr(stream);
    let (op, _o) = out.device_ptr_mut(stream);
    let (n, pr, ff) = (
        as_i32("sparse tokens", sparse)?,
        as_i32("prefix rows", prefix_rows)?,
        as_i32("features", feats)?,
    );
    let size = input_size as f32;
    let two_pi = (2.0 * std::f64::consts::PI) as f32;
    let mut b = stream.launch_builder(f);
    b.arg(&cp).arg(&kp).arg(&gp).arg(&tp).arg(&pp);
    b.arg(&n).arg(&pr).arg(&ff).arg(&size).arg(&two_pi).arg(&op);
    let cfg = LaunchConfig {
        grid_dim: (feats.div_ceil(PE_THREADS) as u32, rows as u32, 1),
        block_dim: (PE_THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel; every buffer holds the lengths checked above. The
    // kinds must be in 0..5: the schedule's caller writes them from `prompt_tokens`.
    guarded("decoder_tokens_f32", || {
        unsafe { b.launch(cfg) }.map(|_| ())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_official_order_and_padding() {
        let t = prompt_tokens(&[[1.0, 2.0], [3.0, 4.0]], &[1, 0], None).unwrap();
        assert_eq!(t, vec![([1.0, 2.0], 2), ([3.0, 4.0], 1), ([0.0, 0.0], 0)]);
        let t = prompt_tokens(&[[1.0, 2.0]], &[-1], Some([5.0, 6.0, 7.0, 8.0])).unwrap();
        assert_eq!(t, vec![([1.0, 2.0], 0), ([5.0, 6.0], 3), ([7.0, 8.0], 4)]);
        assert!(prompt_tokens(&[], &[], None).unwrap().is_empty());
        assert!(prompt_tokens(&[[1.0, 2.0]], &[2], None).is_err());
        assert!(prompt_tokens(&[[f32::NAN, 2.0]], &[1], None).is_err());
        let (c, k, t) = pad_prompts(&[
            vec![([1.0, 2.0], 2)],
            vec![([3.0, 4.0], 1), ([5.0, 6.0], 1)],
        ]);
        assert_eq!(t, 2);
        assert_eq!(k, vec![2, 0, 1, 1]);
        assert_eq!(c, vec![1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 5.0, 6.0]);
    }
}
