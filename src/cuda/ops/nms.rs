//! Box NMS on the GPU (`kernels/nms.cu`): the suppression bit matrix on the device, the
//! greedy walk on the host. Same kept set and order as [`crate::cpu::ops::nms::nms`].

use std::sync::Arc;

use cudarc::driver::{CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};

use crate::cpu::ops::nms::nms_order;
use crate::cuda::runtime::context::{as_i32, guarded, GpuContext};
use crate::{Error, Result};

/// Boxes per tile: one thread per row box, one 64-bit word per (row, column tile).
pub const NMS_TILE: usize = 64;
/// Grid limit on tiles per axis.
pub const NMS_MAX_BOXES: usize = NMS_TILE * 65_535;

/// Indices kept, by descending score (ties in input order, NaN last), suppressing a box
/// whose f32 IoU with a kept box is `> thresh`; boxes are XYXY.
pub fn nms(
    gpu: &GpuContext,
    stream: &Arc<CudaStream>,
    boxes: &[[f32; 4]],
    scores: &[f32],
    thresh: f64,
) -> Result<Vec<usize>> {
    let n = boxes.len();
    if scores.len() != n {
        return Err(Error::Shape {
            name: "nms scores".into(),
            expected: vec![n],
            got: vec![scores.len()],
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if n > NMS_MAX_BOXES {
        return Err(Error::Unsupported(format!(
            "nms on {n} boxes (max {NMS_MAX_BOXES})"
        )));
    }
    gpu.check_stream(stream)?;
    let order = nms_order(scores);
    let sorted: Vec<f32> = order.iter().flat_map(|&i| boxes[i]).collect();
    let dev = guarded("host-to-device copy", || stream.clone_htod(&sorted))?;
    let words = n.div_ceil(NMS_TILE);
    let mut mask = guarded("device allocation", || stream.alloc_zeros::<u64>(n * words))?;
    let f = gpu.function("nms_mask_f32")?;
    let (bp, _b) = dev.device_ptr(stream);
    let (mp, _m) = mask.device_ptr_mut(stream);
    let nn = as_i32("boxes", n)?;
    let mut b = stream.launch_builder(f);
    b.arg(&bp).arg(&nn).arg(&thresh).arg(&mp);
    let cfg = LaunchConfig {
        grid_dim: (words as u32, words as u32, 1),
        block_dim: (NMS_TILE as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match the kernel; `dev` holds n float4 boxes (cudarc allocations are
    // 256-byte aligned, so float4 loads are aligned), `mask` n*words words; the kernel writes
    // only words of tiles at or after the row's own tile, the rest stay zero.
    guarded("nms_mask_f32", || unsafe { b.launch(cfg) }.map(|_| ()))?;
    drop((_b, _m));
    let mask = guarded("device-to-host copy", || stream.clone_dtoh(&mask))?;
    Ok(greedy(&order, &mask, words))
}

/// The walk over the suppression matrix (`mask[k][word]`, bit = a later sorted box that
/// sorted box `k` suppresses): keep a box unless a kept one suppressed it.
fn greedy(order: &[usize], mask: &[u64], words: usize) -> Vec<usize> {
    let mut removed = vec![0u64; words];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if removed[k / NMS_TILE] >> (k % NMS_TILE) & 1 == 1 {
            continue;
        }
        keep.push(i);
        for (r, m) in removed.iter_mut().zip(&mask[k * words..(k + 1) * words]) {
            *r |= m;
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel writes, computed on the host with the same expressions.
    fn emulate(sorted: &[[f32; 4]], thresh: f64) -> (Vec<u64>, usize) {
        use crate::cpu::ops::nms::{box_area, box_iou};
        let n = sorted.len();
        let words = n.div_ceil(NMS_TILE);
        let mut mask = vec![0u64; n * words];
        for i in 0..n {
            for j in i + 1..n {
                let (bi, bj) = (sorted[i], sorted[j]);
                let ovr = box_iou(bi, bj, box_area(bi), box_area(bj));
                if ovr as f64 > thresh {
                    mask[i * words + j / NMS_TILE] |= 1 << (j % NMS_TILE);
                }
            }
        }
        (mask, words)
    }

    #[test]
    fn walk_over_the_bit_matrix_equals_the_cpu_nms() {
        let mut s = 0x1234_5678u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
        for n in [1usize, 64, 65, 200] {
            let boxes: Vec<[f32; 4]> = (0..n)
                .map(|_| {
                    let (x, y) = ((r() * 200.0).floor(), (r() * 150.0).floor());
                    [
                        x,
                        y,
                        x + (r() * 80.0).floor() + 1.0,
                        y + (r() * 60.0).floor() + 1.0,
                    ]
                })
                .collect();
            let scores: Vec<f32> = (0..n).map(|_| (r() * 10.0).floor()).collect();
            let order = nms_order(&scores);
            let sorted: Vec<[f32; 4]> = order.iter().map(|&i| boxes[i]).collect();
            for thresh in [0.7, 0.2] {
                let (mask, words) = emulate(&sorted, thresh);
                assert_eq!(
                    greedy(&order, &mask, words),
                    crate::cpu::ops::nms::nms(&boxes, &scores, thresh),
                    "n {n} thresh {thresh}"
                );
            }
        }
    }
}
