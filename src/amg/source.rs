//! Where the automatic mask generator's masks come from: the [`MaskSource`] contract, and
//! the SAM model as one (embed each crop once, decode batches of points against it).

use crate::cpu::model::mask_decoder::{DecoderImage, DecoderOutput};
use crate::error::{Error, Result};
use crate::io::image::resize::resize_shape;
use crate::io::image::rgb::RgbImage;
use crate::sam::predictor::{ImageEmbedding, Sam};

/// Where the generator's masks come from: the SAM model ([`Sam`] implements it), or any
/// predictor with the same contract (the tests drive the official algorithm with synthetic
/// masks through it). Per crop the source is prepared once; per batch of grid points it
/// predicts `k` masks per point with their IoU estimates, and hands out any one mask's
/// logits at the crop's size on demand (only masks passing the IoU filter are asked for).
pub trait MaskSource: Sync {
    /// Per-crop state (the embedding).
    type Crop: Sync;
    /// Per-batch state (the low-res masks).
    type Batch: Sync;
    fn crop(&self, img: &RgbImage) -> Result<Self::Crop>;
    /// `points` are in the crop's pixel frame, float64 as the official grid.
    fn batch(&self, crop: &Self::Crop, points: &[[f64; 2]]) -> Result<Self::Batch>;
    /// [`MaskSource::batch`] for a caller that will only read the masks of a point whose
    /// IoU prediction is above `iou_thresh` (when it is > 0): a source may skip computing
    /// the others' logits. Defaults to computing everything.
    fn batch_above(
        &self,
        crop: &Self::Crop,
        points: &[[f64; 2]],
        iou_thresh: f64,
    ) -> Result<Self::Batch> {
        let _ = iou_thresh;
        self.batch(crop, points)
    }
    /// IoU predictions of point `i`'s masks.
    fn iou<'b>(&self, batch: &'b Self::Batch, i: usize) -> &'b [f32];
    /// Logits `[h, w]` of mask `m` of point `i` at the crop's size.
    fn logits(
        &self,
        crop: &Self::Crop,
        batch: &Self::Batch,
        i: usize,
        m: usize,
    ) -> Result<Vec<f32>>;
}

/// The SAM model as a mask source: embed each crop once, decode each batch of points with
/// the image side prepared once per crop, post-process masks one at a time.
pub struct SamCrop {
    emb: ImageEmbedding,
    image: DecoderImage,
}

impl MaskSource for Sam {
    type Crop = SamCrop;
    type Batch = Vec<DecoderOutput>;

    fn crop(&self, img: &RgbImage) -> Result<SamCrop> {
        let emb = self.embed(img)?;
        // Every grid prompt is a single point without a mask: one image side per crop.
        let image = self.prepare_points(&emb.features)?;
        Ok(SamCrop { emb, image })
    }

    fn batch(&self, crop: &SamCrop, points: &[[f64; 2]]) -> Result<Vec<DecoderOutput>> {
        self.batch_above(crop, points, 0.0)
    }

    fn batch_above(
        &self,
        crop: &SamCrop,
        points: &[[f64; 2]],
        iou_thresh: f64,
    ) -> Result<Vec<DecoderOutput>> {
        let q = input_points(points, crop.emb.original_size, self.config.encoder.img_size);
        // Exactly `process_batch`'s filter, negated: a mask is read unless
        // `thresh > 0 && iou <= thresh`.
        let read = |v: &f32| {
            use std::cmp::Ordering::{Equal, Less};
            !matches!((*v as f64).partial_cmp(&iou_thresh), Some(Less | Equal))
        };
        let want = |iou: &[f32]| iou_thresh <= 0.0 || iou.iter().any(read);
        self.decode_points_where(&crop.image, &q, &want)
    }

    fn iou<'b>(&self, batch: &'b Vec<DecoderOutput>, i: usize) -> &'b [f32] {
        &batch[i].iou
    }

    fn logits(
        &self,
        crop: &SamCrop,
        batch: &Vec<DecoderOutput>,
        i: usize,
        m: usize,
    ) -> Result<Vec<f32>> {
        let frame = self.mask_frame();
        let plane = frame.plane();
        let low = batch[i]
            .low_res
            .get(m * plane..(m + 1) * plane)
            .ok_or_else(|| Error::Unsupported(format!("mask {m} of point {i} was not computed")))?;
        frame.postprocess(low, 1, crop.emb.input_size, crop.emb.original_size)
    }
}

/// Grid points of a crop of size (h, w), in its pixel frame, as the prompt encoder gets them
/// in the `side`-pixel input frame (see [`amg_coord`]).
pub(crate) fn input_points(
    points: &[[f64; 2]],
    (ch, cw): (usize, usize),
    side: usize,
) -> Vec<[f32; 2]> {
    let (nh, nw) = resize_shape(ch, cw, side);
    let (sx, sy) = (nw as f64 / cw as f64, nh as f64 / ch as f64);
    points
        .iter()
        .map(|p| {
            [
                amg_coord(p[0], sx, side as f64),
                amg_coord(p[1], sy, side as f64),
            ]
        })
        .collect()
}

/// The f32 x whose `(x + 0.5) / 1024` in f32 equals the official f64 pipeline's
/// `f32((x64 * new_w / old_w + 0.5) / 1024)`: in AMG the points stay float64 through
/// `apply_coords`, the +0.5 shift and the normalisation, and only then become f32. With
/// U = that f32 times 1024 (exact), U - 0.5 is exact in f32 and adding 0.5 back gives U.
fn amg_coord(v: f64, scale: f64, input_side: f64) -> f32 {
    let u = ((v * scale + 0.5) / input_side) as f32;
    u * input_side as f32 - 0.5
}
