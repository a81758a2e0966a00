//! Point grids, crop boxes, mask boxes, stability score and NMS, with the official
//! arithmetic (numpy f64 for grids, f32 for scores and IoU, torchvision's NMS order).

pub use crate::cpu::ops::nms::{box_area, box_iou, nms, nms_order};

/// `np.linspace(offset, 1 - offset, n)` with `offset = 1 / (2n)`: numpy computes
/// `i * step + start` and then sets the last element to `stop` exactly.
pub fn point_grid_1d(n: usize) -> Vec<f64> {
    let offset = 1.0 / (2 * n) as f64;
    let (start, stop) = (offset, 1.0 - offset);
    if n == 1 {
        return vec![start];
    }
    let step = (stop - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    v[n - 1] = stop;
    v
}

/// `build_point_grid`: (x, y) in [0, 1]^2, ordered `iy * n + ix`.
pub fn point_grid(n: usize) -> Vec<[f64; 2]> {
    let v = point_grid_1d(n);
    let mut out = Vec::with_capacity(n * n);
    for &y in &v {
        for &x in &v {
            out.push([x, y]);
        }
    }
    out
}

/// `build_all_layer_point_grids`: layer i has `int(n / factor^i)` points per side.
pub fn layer_grid_sides(n_per_side: usize, n_layers: usize, factor: usize) -> Vec<usize> {
    (0..=n_layers)
        .map(|i| (n_per_side as f64 / (factor as f64).powi(i as i32)) as usize)
        .collect()
}

/// `generate_crop_boxes`: XYXY boxes and their layer index, the full image first.
pub fn crop_boxes(
    h: usize,
    w: usize,
    n_layers: usize,
    overlap_ratio: f64,
) -> Vec<([usize; 4], usize)> {
    let mut out = vec![([0, 0, w, h], 0)];
    let short = h.min(w) as f64;
    let crop_len = |orig: usize, n: usize, overlap: i64| -> i64 {
        ((overlap * (n as i64 - 1) + orig as i64) as f64 / n as f64).ceil() as i64
    };
    for layer in 0..n_layers {
        let n = 1usize << (layer + 1);
        let overlap = (overlap_ratio * short * (2.0 / n as f64)) as i64;
        let cw = crop_len(w, n, overlap);
        let ch = crop_len(h, n, overlap);
        let x0s: Vec<i64> = (0..n).map(|i| (cw - overlap) * i as i64).collect();
        let y0s: Vec<i64> = (0..n).map(|i| (ch - overlap) * i as i64).collect();
        for &x0 in &x0s {
            for &y0 in &y0s {
                let b = [
                    x0.max(0) as usize,
                    y0.max(0) as usize,
                    (x0 + cw).min(w as i64).max(0) as usize,
                    (y0 + ch).min(h as i64).max(0) as usize,
                ];
                out.push((b, layer + 1));
            }
        }
    }
    out
}

/// `batched_mask_to_box` for one row-major mask: XYXY with inclusive max; empty -> zeros.
pub fn mask_to_box(mask: &[bool], h: usize, w: usize) -> [i64; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0usize, 0usize);
    for y in 0..h {
        let row = &mask[y * w..(y + 1) * w];
        if let Some(a) = row.iter().position(|&b| b) {
            let b = row.iter().rposition(|&b| b).unwrap_or(a);
            y0 = y0.min(y);
            y1 = y;
            x0 = x0.min(a);
            x1 = x1.max(b);
        }
    }
    if y0 == usize::MAX {
        return [0; 4];
    }
    [x0 as i64, y0 as i64, x1 as i64, y1 as i64]
}

/// `calculate_stability_score` with threshold 0: `#(logit > offset) / #(logit > -offset)`,
/// the int32 counts divided in f32 as torch's true division does (0/0 is NaN).
pub fn stability_score(logits: &[f32], offset: f32) -> f32 {
    let (mut inter, mut union) = (0u32, 0u32);
    for &v in logits {
        inter += (v > offset) as u32;
        union += (v > -offset) as u32;
    }
    inter as f32 / union as f32
}

/// `is_box_near_crop_edge` (atol 20): a crop-frame box within 20 px of a crop edge that is
/// not also an image edge.
pub fn near_crop_edge(b: [i64; 4], crop: [usize; 4], orig: [usize; 4]) -> bool {
    let off = [crop[0], crop[1], crop[0], crop[1]];
    (0..4).any(|k| {
        let v = (b[k] + off[k] as i64) as f32;
        let near_crop = (v - crop[k] as f32).abs() <= 20.0;
        let near_img = (v - orig[k] as f32).abs() <= 20.0;
        near_crop && !near_img
    })
}

/// `box_xyxy_to_xywh`: w = x1 - x0 (no +1), as the official records report.
pub fn xyxy_to_xywh(b: [i64; 4]) -> [i64; 4] {
    [b[0], b[1], b[2] - b[0], b[3] - b[1]]
}
