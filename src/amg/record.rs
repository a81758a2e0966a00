//! The generator's output record, shared by the generator and the output writers.

use crate::amg::rle::Rle;

/// One generated mask, as the official record describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskRecord {
    /// The mask at the original image size.
    pub segmentation: Rle,
    pub area: u64,
    /// XYWH with w = x_max - x_min (the official `box_xyxy_to_xywh`, no +1).
    pub bbox: [i64; 4],
    pub predicted_iou: f32,
    /// The point prompt in original image pixels.
    pub point_coords: [f64; 2],
    pub stability_score: f32,
    /// XYWH of the crop the mask came from.
    pub crop_box: [i64; 4],
}
