//! Box NMS, the CPU side of the `nms` kernel family (`kernels/nms.cu`): the reference the
//! GPU kernel repeats operation for operation, and what the automatic mask generator uses.

/// torchvision `batched_nms` with one category: indices kept, by score descending (ties in
/// input order), suppressing a box whose f32 IoU with a kept one is `> thresh`.
///
/// For more than 1,000 boxes torchvision re-sorts the kept indices with an unstable sort,
/// so its order among exactly tied scores there is implementation-defined; the kept set is
/// the same.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], thresh: f64) -> Vec<usize> {
    let n = boxes.len();
    let order = nms_order(scores);
    let areas: Vec<f32> = boxes.iter().map(|&b| box_area(b)).collect();
    let mut suppressed = vec![false; n];
    let mut keep = Vec::new();
    for (oi, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[oi + 1..] {
            if suppressed[j] {
                continue;
            }
            if box_iou(boxes[i], boxes[j], areas[i], areas[j]) as f64 > thresh {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// The order NMS visits boxes in: score descending, ties in input order (stable), NaN
/// last, as torch's stable sort places NaN first only for ascending.
pub fn nms_order(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or_else(|| scores[a].is_nan().cmp(&scores[b].is_nan()))
    });
    order
}

/// XYXY box area in f32.
pub fn box_area(b: [f32; 4]) -> f32 {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// f32 IoU of two XYXY boxes with their areas, in torchvision's operation order (the GPU
/// kernel in kernels/nms.cu repeats these operations).
pub fn box_iou(bi: [f32; 4], bj: [f32; 4], ai: f32, aj: f32) -> f32 {
    let w = (bi[2].min(bj[2]) - bi[0].max(bj[0])).max(0.0);
    let h = (bi[3].min(bj[3]) - bi[1].max(bj[1])).max(0.0);
    let inter = w * h;
    inter / (ai + aj - inter)
}
