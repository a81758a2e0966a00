//! The official automatic mask generator's fixtures (tests/fixtures/amg/, from
//! tools/make_amg_fixtures.py and tools/make_amg_vit256_fixtures.py) and the comparison of
//! samrt's records against them, shared by the CPU (tests/amg.rs) and CUDA
//! (tests/cuda_amg.rs) generators.

use samrt::amg::rle::Rle;
use samrt::amg::{AmgConfig, MaskRecord};
use serde_json::Value;

/// The case `name` of `tests/fixtures/amg/<manifest>`.
pub fn amg_case(manifest: &str, name: &str) -> Value {
    let t = std::fs::read_to_string(super::fixtures().join("amg").join(manifest)).unwrap();
    let man: Value = serde_json::from_str(&t).unwrap();
    man["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name} in {manifest}"))
        .clone()
}

pub fn records_of(case: &Value) -> Vec<Value> {
    let f = super::fixtures()
        .join("amg")
        .join(case["file"].as_str().unwrap());
    serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap()
}

/// The official segmentation of a record as an RLE, whichever mode it was written in.
pub fn official_rle(seg: &Value) -> Rle {
    let size = super::f64s(&seg["size"]);
    let (h, w) = (size[0] as usize, size[1] as usize);
    match &seg["counts"] {
        Value::String(s) => Rle::from_coco_string(s, h, w).unwrap(),
        Value::Array(a) => Rle {
            h,
            w,
            counts: a.iter().map(|v| v.as_u64().unwrap() as u32).collect(),
        },
        other => panic!("unexpected counts {other}"),
    }
}

pub fn config_of(case: &Value) -> AmgConfig {
    let c = &case["config"];
    let d = AmgConfig::default();
    let u = |k: &str, def: usize| c[k].as_u64().map(|v| v as usize).unwrap_or(def);
    let f = |k: &str, def: f64| c[k].as_f64().unwrap_or(def);
    AmgConfig {
        points_per_side: u("points_per_side", d.points_per_side),
        points_per_batch: u("points_per_batch", d.points_per_batch),
        pred_iou_thresh: f("pred_iou_thresh", d.pred_iou_thresh),
        stability_score_thresh: f("stability_score_thresh", d.stability_score_thresh),
        stability_score_offset: f("stability_score_offset", d.stability_score_offset),
        box_nms_thresh: f("box_nms_thresh", d.box_nms_thresh),
        crop_n_layers: u("crop_n_layers", d.crop_n_layers),
        crop_nms_thresh: f("crop_nms_thresh", d.crop_nms_thresh),
        crop_overlap_ratio: f("crop_overlap_ratio", d.crop_overlap_ratio),
        crop_n_points_downscale_factor: u(
            "crop_n_points_downscale_factor",
            d.crop_n_points_downscale_factor,
        ),
        min_mask_region_area: u("min_mask_region_area", d.min_mask_region_area),
    }
}

pub fn mask_iou(a: &[bool], b: &[bool]) -> f64 {
    let inter = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let union = a.iter().zip(b).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// What [`compare_records`] allows beyond mask IoU >= 0.98 and |d predicted_iou| <= 5e-3.
pub struct Extra {
    /// Largest |d stability_score|, when checked.
    pub stability: Option<f64>,
    /// Largest difference of any box coordinate in pixels, when checked (boxes are always
    /// equal where the masks are).
    pub box_px: Option<f64>,
}

/// A record of samrt as the official writes it.
pub fn record_value(r: &MaskRecord) -> Value {
    samrt::amg::output::record_json(r, false)
}

/// Matches `ours` to the reference records `want` (official fixture records, or another
/// samrt run as [`record_value`]s) and asserts the tolerances: the same count, mask IoU >=
/// 0.98, |d predicted_iou| <= 5e-3, the same point and crop box, and `extra`. Records match
/// in order where they fit, else the best unused one (tie order may differ).
pub fn compare_records(name: &str, ours: &[MaskRecord], want: &[Value], extra: &Extra) {
    assert_eq!(ours.len(), want.len(), "{name}: record count");
    let our_masks: Vec<Vec<bool>> = ours
        .iter()
        .map(|r| r.segmentation.to_mask().unwrap())
        .collect();
    let mut used = vec![false; ours.len()];
    let (mut worst_iou, mut worst_dp, mut worst_ds, mut worst_box) = (1.0f64, 0f64, 0f64, 0f64);
    let (mut in_order, mut flipped_sides) = (0, 0);
    for (k, o) in want.iter().enumerate() {
        let om = official_rle(&o["segmentation"]).to_mask().unwrap();
        let j = if mask_iou(&om, &our_masks[k]) >= 0.98 && !used[k] {
            in_order += 1;
            k
        } else {
            (0..ours.len())
                .filter(|&j| !used[j])
                .max_by(|&a, &b| {
                    mask_iou(&om, &our_masks[a]).total_cmp(&mask_iou(&om, &our_masks[b]))
                })
                .unwrap()
        };
        used[j] = true;
        let iou = mask_iou(&om, &our_masks[j]);
        let dp = (ours[j].predicted_iou as f64 - o["predicted_iou"].as_f64().unwrap()).abs();
        worst_iou = worst_iou.min(iou);
        worst_dp = worst_dp.max(dp);
        // Encoder outputs agree with the official to f32 rounding (fp16 weights on the
        // device), so a handful of pixels at logit ~0 may flip; 0.98 mask IoU allows that
        // and nothing structural.
        assert!(iou >= 0.98, "{name} record {k}: mask IoU {iou}");
        // Predicted IoU: rounding through the encoder and decoder, far below 5e-3.
        assert!(dp <= 5e-3, "{name} record {k}: |d predicted_iou| {dp}");
        let pt = super::f64s(&o["point_coords"][0]);
        // Grid points are exact f64 arithmetic on both sides.
        assert!(
            (pt[0] - ours[j].point_coords[0]).abs() < 1e-9
                && (pt[1] - ours[j].point_coords[1]).abs() < 1e-9,
            "{name} record {k}: point"
        );
        // The official boxes turn float (600.0) when some crop or batch kept no mask (an
        // empty float tensor joins the int64 ones), so compare values.
        let as_f = |b: [i64; 4]| b.map(|v| v as f64).to_vec();
        assert_eq!(
            super::f64s(&o["crop_box"]),
            as_f(ours[j].crop_box),
            "{name} record {k}: crop box"
        );
        let bbox = super::f64s(&o["bbox"]);
        if iou == 1.0 {
            assert_eq!(bbox, as_f(ours[j].bbox), "{name} record {k}: bbox");
            assert_eq!(
                o["area"].as_u64().unwrap(),
                ours[j].area,
                "{name} record {k}: area"
            );
        }
        if let Some(tol) = extra.stability {
            let ds =
                (ours[j].stability_score as f64 - o["stability_score"].as_f64().unwrap()).abs();
            worst_ds = worst_ds.max(ds);
            assert!(ds <= tol, "{name} record {k}: |d stability_score| {ds}");
        }
        // Our box is our mask's, exactly (an empty mask's box is the crop's origin, as the
        // official un-crops its zeros).
        let (h, w) = (ours[j].segmentation.h, ours[j].segmentation.w);
        assert!(
            ours[j].area == 0
                || xywh(samrt::amg::geometry::mask_to_box(&our_masks[j], h, w)) == ours[j].bbox,
            "{name} record {k}: bbox {:?} is not its mask's",
            ours[j].bbox
        );
        if let Some(tol) = extra.box_px {
            // A box side may move further only where the mask that reaches further does so
            // with a pixel the other mask lacks: random-weight masks are speckled, and one
            // isolated pixel at logit ~0 flipping (as mask IoU allows) can set a side.
            let both: Vec<bool> = om
                .iter()
                .zip(&our_masks[j])
                .map(|(a, b)| *a && *b)
                .collect();
            let common = corners(xywh(samrt::amg::geometry::mask_to_box(&both, h, w)));
            let (a, b) = (
                corners(ours[j].bbox),
                corners(bbox.iter().map(|&v| v as i64)),
            );
            for i in 0..4 {
                let d = (a[i] - b[i]).abs() as f64;
                if d <= tol {
                    worst_box = worst_box.max(d);
                } else if a[i] != common[i] || b[i] != common[i] {
                    flipped_sides += 1;
                } else {
                    panic!("{name} record {k}: box {:?} vs {bbox:?}", ours[j].bbox);
                }
            }
        }
    }
    eprintln!(
        "{name}: {} records, {in_order} matched in order, worst mask IoU {worst_iou:.6}, worst \
         |d iou| {worst_dp:.2e}, worst |d stability| {worst_ds:.2e}, worst box {worst_box} px \
         ({flipped_sides} box sides further, each set by a pixel only one mask has)",
        ours.len()
    );
}

fn xywh(b: [i64; 4]) -> [i64; 4] {
    samrt::amg::geometry::xyxy_to_xywh(b)
}

/// XYWH (w = x1 - x0) to its corners.
fn corners(b: impl IntoIterator<Item = i64>) -> [i64; 4] {
    let v: Vec<i64> = b.into_iter().collect();
    [v[0], v[1], v[0] + v[2], v[1] + v[3]]
}
