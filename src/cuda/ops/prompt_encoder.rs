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
/// Token kinds, as the kernel's table rows.
pub const KIND_NOT_A_POINT: i32 = 0;
pub const KIND_BOX_CORNER0: i32 = 3;
pub const KIND_BOX_CORNER1: i32 = 4;

/// One prompt's tokens in the official order: points, the pad point when there is no box,
/// then the two box corners. Coordinates in the 1024 input frame.
pub fn prompt_tokens(
    points: &[[f32; 2]],
    labels: &[i32],
    box_xyxy: Option<[f32; 4]>,
) -> Result<Vec<([f32; 2], i32)>> {
    crate::cpu::ops::prompt_encoder::check_sparse(points, labels, box_xyxy)?;
    let mut t = Vec::with_capacity(points.len() + 2);
    for (p, &l) in points.iter().zip(labels) {
        t.push((*p, l + 1));
    }
    match box_xyxy {
        None if !points.is_empty() => t.push(([0.0, 0.0], KIND_NOT_A_POINT)),
        None => {}
        Some(b) => {
            t.push(([b[0], b[1]], KIND_BOX_CORNER0));
            t.push(([b[2], b[3]], KIND_BOX_CORNER1));
        }
    }
    Ok(t)
}

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
