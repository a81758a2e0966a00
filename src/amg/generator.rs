//! The official `SamAutomaticMaskGenerator` ("segment everything") on the CPU model.
//!
//! Same algorithm, order and arithmetic as `automatic_mask_generator.py`: per crop, embed
//! the crop, decode a grid of single foreground points in batches (three masks each),
//! filter by predicted IoU and stability, drop masks touching inner crop edges, NMS per
//! crop, NMS across crops, then optionally remove small regions and NMS again.
//!
//! Memory stays bounded: a batch's low-res logits are upsampled one mask at a time (and
//! only for masks that pass the IoU filter); survivors are kept as RLE.

use crate::amg::geometry::{
    crop_boxes, layer_grid_sides, mask_to_box, near_crop_edge, nms, point_grid, stability_score,
    xyxy_to_xywh,
};
use crate::amg::record::MaskRecord;
use crate::amg::regions::remove_small_regions;
use crate::amg::rle::Rle;
use crate::amg::source::MaskSource;
use crate::error::{Error, Result};
use crate::io::image::rgb::RgbImage;
use crate::sam::predictor::Sam;
use rayon::prelude::*;

/// `SamAutomaticMaskGenerator`'s arguments, with its defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct AmgConfig {
    pub points_per_side: usize,
    pub points_per_batch: usize,
    pub pred_iou_thresh: f64,
    pub stability_score_thresh: f64,
    pub stability_score_offset: f64,
    pub box_nms_thresh: f64,
    pub crop_n_layers: usize,
    pub crop_nms_thresh: f64,
    pub crop_overlap_ratio: f64,
    pub crop_n_points_downscale_factor: usize,
    pub min_mask_region_area: usize,
}

impl Default for AmgConfig {
    fn default() -> Self {
        AmgConfig {
            points_per_side: 32,
            points_per_batch: 64,
            pred_iou_thresh: 0.88,
            stability_score_thresh: 0.95,
            stability_score_offset: 1.0,
            box_nms_thresh: 0.7,
            crop_n_layers: 0,
            crop_nms_thresh: 0.7,
            crop_overlap_ratio: 512.0 / 1500.0,
            crop_n_points_downscale_factor: 1,
            min_mask_region_area: 0,
        }
    }
}

impl AmgConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.points_per_side == 0 {
            return bad("points_per_side must be at least 1".into());
        }
        if self.crop_n_points_downscale_factor == 0 {
            return bad("crop_n_points_downscale_factor must be at least 1".into());
        }
        self.validate_settings()?;
        let sides = layer_grid_sides(
            self.points_per_side,
            self.crop_n_layers,
            self.crop_n_points_downscale_factor,
        );
        if let Some(i) = sides.iter().position(|&n| n == 0) {
            return bad(format!(
                "crop layer {i} gets 0 points per side (points_per_side {} / factor {}^{i})",
                self.points_per_side, self.crop_n_points_downscale_factor
            ));
        }
        let per_layer: Vec<usize> = sides.iter().map(|&n| n.saturating_mul(n)).collect();
        check_prompt_total(&per_layer).map_err(|total| {
            Error::Config(format!(
                "points_per_side {} with crop_n_layers {} means {total} point prompts per image \
                 (over all crops); the limit is {MAX_PROMPTS_PER_IMAGE}",
                self.points_per_side, self.crop_n_layers
            ))
        })
    }

    /// Everything but the point grid: what explicit `point_grids` runs check too.
    fn validate_settings(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.points_per_batch == 0 {
            return bad("points_per_batch must be at least 1".into());
        }
        if self.crop_n_layers > 8 {
            return bad(format!(
                "crop_n_layers {} is too many (layer 8 alone has 65,536 crops)",
                self.crop_n_layers
            ));
        }
        for (name, v) in [
            ("pred_iou_thresh", self.pred_iou_thresh),
            ("stability_score_thresh", self.stability_score_thresh),
            ("stability_score_offset", self.stability_score_offset),
            ("box_nms_thresh", self.box_nms_thresh),
            ("crop_nms_thresh", self.crop_nms_thresh),
            ("crop_overlap_ratio", self.crop_overlap_ratio),
        ] {
            if !v.is_finite() {
                return bad(format!("{name} must be a finite number, got {v}"));
            }
        }
        if !(0.0..1.0).contains(&self.crop_overlap_ratio) {
            return bad(format!(
                "crop_overlap_ratio must be in [0, 1), got {}",
                self.crop_overlap_ratio
            ));
        }
        Ok(())
    }
}

/// Layer i has (2^i)^2 crops of `per_layer[i]` point prompts each. Bounding the total makes
/// an absurd grid a clear error, not a 160 GB allocation or a week-long run; `Err` carries
/// the total.
fn check_prompt_total(per_layer: &[usize]) -> std::result::Result<(), u128> {
    let total: u128 = per_layer
        .iter()
        .enumerate()
        .map(|(i, &n)| (1u128 << (2 * i)) * n as u128)
        .sum();
    if total > MAX_PROMPTS_PER_IMAGE as u128 {
        return Err(total);
    }
    Ok(())
}

/// Upper bound on point prompts per image over all crop layers (2^24: the official default
/// uses 1,024; 4,096 points per side without crops is the largest square grid allowed).
pub const MAX_PROMPTS_PER_IMAGE: usize = 1 << 24;

/// A mask that survived a batch, in the frame of the whole image.
pub(crate) struct Cand {
    pub(crate) rle: Rle,
    /// XYXY, crop frame until un-cropped.
    pub(crate) bbox: [i64; 4],
    pub(crate) iou: f32,
    pub(crate) point: [f64; 2],
    pub(crate) stability: f32,
    pub(crate) crop: [usize; 4],
}

/// Where one point batch sits: the crop's size (h, w), its box in the image (XYXY) and the
/// image's size (h, w).
pub(crate) struct BatchFrame {
    pub(crate) crop_size: (usize, usize),
    pub(crate) crop: [usize; 4],
    pub(crate) orig: (usize, usize),
}

/// What differs between the generator on the CPU and on a device: how a crop is embedded,
/// how a batch of grid points becomes the masks that pass the IoU, stability and crop-edge
/// filters (in official order), and where box NMS runs. Grids, crops, per-crop and
/// cross-crop NMS order, un-cropping, small regions and the records are shared.
pub(crate) trait Pipeline {
    type Crop;
    fn crop(&self, img: &RgbImage) -> Result<Self::Crop>;
    /// `points` in the crop's pixel frame, float64 as the official grid.
    fn batch(
        &self,
        crop: &Self::Crop,
        points: &[[f64; 2]],
        frame: &BatchFrame,
        cfg: &AmgConfig,
    ) -> Result<Vec<Cand>>;
    /// torchvision's `batched_nms` with one category: kept indices, by score.
    fn nms(&self, boxes: &[[f32; 4]], scores: &[f32], thresh: f64) -> Result<Vec<usize>>;
}

/// The CPU pipeline over any [`MaskSource`].
struct Host<'a, S>(&'a S);

impl<S: MaskSource> Pipeline for Host<'_, S> {
    type Crop = S::Crop;
    fn crop(&self, img: &RgbImage) -> Result<S::Crop> {
        self.0.crop(img)
    }
    fn batch(
        &self,
        crop: &S::Crop,
        points: &[[f64; 2]],
        frame: &BatchFrame,
        cfg: &AmgConfig,
    ) -> Result<Vec<Cand>> {
        process_batch(self.0, crop, points, frame, cfg)
    }
    fn nms(&self, boxes: &[[f32; 4]], scores: &[f32], thresh: f64) -> Result<Vec<usize>> {
        Ok(nms(boxes, scores, thresh))
    }
}

pub fn generate(sam: &Sam, img: &RgbImage, cfg: &AmgConfig) -> Result<Vec<MaskRecord>> {
    generate_with(sam, img, cfg)
}

/// Where [`generate_with_progress`] is within one image. One image can take minutes (each
/// crop is a full encoder pass, and a dense grid is many decoder batches), so a caller
/// running a dataset needs more than per-image granularity to show it is alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The crop being processed, counting from 1, out of `crops` (1 without crop layers).
    pub crop: usize,
    pub crops: usize,
    /// Point batches of this crop finished so far (0 when the crop starts, before its
    /// embedding), out of `batches`.
    pub batches_done: usize,
    pub batches: usize,
}

/// [`generate`] with masks from any [`MaskSource`].
pub fn generate_with<S: MaskSource>(
    src: &S,
    img: &RgbImage,
    cfg: &AmgConfig,
) -> Result<Vec<MaskRecord>> {
    generate_with_progress(src, img, cfg, &mut |_| {})
}

/// [`generate_with`] that reports [`Progress`] when each crop starts and after each batch
/// of point prompts. The callback only observes: the records are the same as without it.
pub fn generate_with_progress<S: MaskSource>(
    src: &S,
    img: &RgbImage,
    cfg: &AmgConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<MaskRecord>> {
    run_pipeline(&Host(src), img, cfg, progress)
}

/// The generator with `cfg`'s point grids on any [`Pipeline`].
pub(crate) fn run_pipeline<P: Pipeline>(
    p: &P,
    img: &RgbImage,
    cfg: &AmgConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<MaskRecord>> {
    cfg.validate()?;
    let sides = layer_grid_sides(
        cfg.points_per_side,
        cfg.crop_n_layers,
        cfg.crop_n_points_downscale_factor,
    );
    let grids: Vec<Vec<[f64; 2]>> = sides.iter().map(|&n| point_grid(n)).collect();
    generate_on_grids(p, img, cfg, &grids, progress)
}

/// [`generate`] with explicit point grids, the official `point_grids` argument: grid `i`
/// holds (x, y) points normalised to the crop ([0, 1] inside it) and is used in crop
/// layer `i`; `cfg.points_per_side` and `cfg.crop_n_points_downscale_factor` are unused.
/// Grids beyond layer `crop_n_layers` are ignored, as in the official generator.
pub fn generate_with_point_grids<S: MaskSource>(
    src: &S,
    img: &RgbImage,
    cfg: &AmgConfig,
    grids: &[Vec<[f64; 2]>],
) -> Result<Vec<MaskRecord>> {
    run_pipeline_on_grids(&Host(src), img, cfg, grids)
}

/// [`generate_with_point_grids`] on any [`Pipeline`].
pub(crate) fn run_pipeline_on_grids<P: Pipeline>(
    p: &P,
    img: &RgbImage,
    cfg: &AmgConfig,
    grids: &[Vec<[f64; 2]>],
) -> Result<Vec<MaskRecord>> {
    cfg.validate_settings()?;
    let layers = cfg.crop_n_layers + 1;
    if grids.len() < layers {
        return Err(Error::Config(format!(
            "crop_n_layers {} needs {layers} point grids, got {}",
            cfg.crop_n_layers,
            grids.len()
        )));
    }
    let grids = &grids[..layers];
    for (i, g) in grids.iter().enumerate() {
        if g.is_empty() {
            return Err(Error::Config(format!("point grid {i} is empty")));
        }
        if let Some(p) = g.iter().find(|p| !p[0].is_finite() || !p[1].is_finite()) {
            return Err(Error::Config(format!(
                "point grid {i} has a non-finite point ({}, {})",
                p[0], p[1]
            )));
        }
    }
    let per_layer: Vec<usize> = grids.iter().map(|g| g.len()).collect();
    check_prompt_total(&per_layer).map_err(|total| {
        Error::Config(format!(
            "the point grids mean {total} point prompts per image (over all crops); \
             the limit is {MAX_PROMPTS_PER_IMAGE}"
        ))
    })?;
    generate_on_grids(p, img, cfg, grids, &mut |_| {})
}

/// The generator proper, once the grids of every crop layer are known and checked.
fn generate_on_grids<P: Pipeline>(
    src: &P,
    img: &RgbImage,
    cfg: &AmgConfig,
    grids: &[Vec<[f64; 2]>],
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<MaskRecord>> {
    let (h, w) = (img.height, img.width);
    if h == 0 || w == 0 {
        return Err(Error::Image("image is empty".into()));
    }
    let crops = crop_boxes(h, w, cfg.crop_n_layers, cfg.crop_overlap_ratio);

    let mut data: Vec<Cand> = Vec::new();
    for (k, &(crop, layer)) in crops.iter().enumerate() {
        let mut report = |batches_done, batches| {
            progress(Progress {
                crop: k + 1,
                crops: crops.len(),
                batches_done,
                batches,
            })
        };
        data.extend(process_crop(
            src,
            img,
            crop,
            &grids[layer],
            cfg,
            &mut report,
        )?);
    }
    if crops.len() > 1 {
        let boxes: Vec<[f32; 4]> = data.iter().map(|c| box_f32(c.bbox)).collect();
        // `1 / box_area(crop_boxes)`: an int64 area divided in f32.
        let scores: Vec<f32> = data
            .iter()
            .map(|c| 1.0 / (((c.crop[2] - c.crop[0]) * (c.crop[3] - c.crop[1])) as f32))
            .collect();
        data = take(data, &src.nms(&boxes, &scores, cfg.crop_nms_thresh)?);
    }
    if cfg.min_mask_region_area > 0 {
        data = postprocess_small_regions(
            src,
            data,
            cfg.min_mask_region_area as f64,
            cfg.box_nms_thresh.max(cfg.crop_nms_thresh),
        )?;
    }
    Ok(data
        .into_iter()
        .map(|c| MaskRecord {
            area: c.rle.area(),
            segmentation: c.rle,
            bbox: xyxy_to_xywh(c.bbox),
            predicted_iou: c.iou,
            point_coords: c.point,
            stability_score: c.stability,
            crop_box: xyxy_to_xywh(c.crop.map(|v| v as i64)),
        })
        .collect())
}

fn box_f32(b: [i64; 4]) -> [f32; 4] {
    b.map(|v| v as f32)
}

/// `MaskData.filter` with an index list: the kept items in that order.
fn take<T>(items: Vec<T>, keep: &[usize]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    keep.iter().filter_map(|&i| slots[i].take()).collect()
}

fn crop_image(img: &RgbImage, crop: [usize; 4]) -> RgbImage {
    let [x0, y0, x1, y1] = crop;
    let mut data = Vec::with_capacity((x1 - x0) * (y1 - y0) * 3);
    for y in y0..y1 {
        data.extend_from_slice(&img.data[(y * img.width + x0) * 3..(y * img.width + x1) * 3]);
    }
    RgbImage {
        width: x1 - x0,
        height: y1 - y0,
        data,
    }
}

/// `_process_crop`: embed the crop, decode its grid in batches, NMS, un-crop. `report`
/// gets (batches done, batches) at the start and after each batch.
fn process_crop<P: Pipeline>(
    src: &P,
    img: &RgbImage,
    crop: [usize; 4],
    grid: &[[f64; 2]],
    cfg: &AmgConfig,
    report: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Cand>> {
    let batches = grid.len().div_ceil(cfg.points_per_batch);
    report(0, batches);
    let cropped = if crop == [0, 0, img.width, img.height] {
        None
    } else {
        Some(crop_image(img, crop))
    };
    let im = cropped.as_ref().unwrap_or(img);
    let state = src.crop(im)?;
    let (ch, cw) = (im.height, im.width);
    let frame = BatchFrame {
        crop_size: (ch, cw),
        crop,
        orig: (img.height, img.width),
    };
    let points: Vec<[f64; 2]> = grid
        .iter()
        .map(|p| [p[0] * cw as f64, p[1] * ch as f64])
        .collect();
    let mut data = Vec::new();
    for (b, batch) in points.chunks(cfg.points_per_batch).enumerate() {
        data.extend(src.batch(&state, batch, &frame, cfg)?);
        report(b + 1, batches);
    }
    let boxes: Vec<[f32; 4]> = data.iter().map(|c| box_f32(c.bbox)).collect();
    let scores: Vec<f32> = data.iter().map(|c| c.iou).collect();
    let mut data = take(data, &src.nms(&boxes, &scores, cfg.box_nms_thresh)?);
    let (dx, dy) = (crop[0] as i64, crop[1] as i64);
    for c in &mut data {
        c.bbox = [
            c.bbox[0] + dx,
            c.bbox[1] + dy,
            c.bbox[2] + dx,
            c.bbox[3] + dy,
        ];
        c.point = [c.point[0] + crop[0] as f64, c.point[1] + crop[1] as f64];
    }
    Ok(data)
}

/// `_process_batch`: a batch of single-point prompts; returns the masks that pass the
/// IoU, stability and crop-edge filters, point-major as the official flattens them.
fn process_batch<S: MaskSource>(
    src: &S,
    state: &S::Crop,
    points: &[[f64; 2]],
    frame: &BatchFrame,
    cfg: &AmgConfig,
) -> Result<Vec<Cand>> {
    let ((ch, cw), crop, orig) = (frame.crop_size, frame.crop, frame.orig);
    let outs = src.batch_above(state, points, cfg.pred_iou_thresh)?;
    // (point index, mask index) of every mask passing the IoU filter, in official order.
    let mut jobs = Vec::new();
    for pi in 0..points.len() {
        for (mi, &iou) in src.iou(&outs, pi).iter().enumerate() {
            if cfg.pred_iou_thresh > 0.0 && (iou as f64) <= cfg.pred_iou_thresh {
                continue;
            }
            jobs.push((pi, mi));
        }
    }
    let offset = cfg.stability_score_offset as f32;
    let orig_box = [0, 0, orig.1, orig.0];
    let res: Vec<Option<Cand>> = jobs
        .par_iter()
        .map(|&(pi, mi)| -> Result<Option<Cand>> {
            let logits = src.logits(state, &outs, pi, mi)?;
            if logits.len() != ch * cw {
                return Err(Error::Shape {
                    name: "mask logits".into(),
                    expected: vec![ch, cw],
                    got: vec![logits.len()],
                });
            }
            let stab = stability_score(&logits, offset);
            // NaN (0/0) fails `>=` and is dropped, as in torch.
            let pass = (stab as f64) >= cfg.stability_score_thresh;
            if cfg.stability_score_thresh > 0.0 && !pass {
                return Ok(None);
            }
            let mask: Vec<bool> = logits.iter().map(|&v| v > 0.0).collect();
            drop(logits);
            let bbox = mask_to_box(&mask, ch, cw);
            if near_crop_edge(bbox, crop, orig_box) {
                return Ok(None);
            }
            let rle = Rle::from_crop(&mask, ch, cw, (crop[0], crop[1]), orig.0, orig.1)?;
            Ok(Some(Cand {
                rle,
                bbox,
                iou: src.iou(&outs, pi)[mi],
                point: points[pi],
                stability: stab,
                crop,
            }))
        })
        .collect::<Result<_>>()?;
    Ok(res.into_iter().flatten().collect())
}

/// The official `remove_small_regions` holes-then-islands pass on one mask: the new mask
/// and whether either pass changed anything.
fn clean_mask(rle: &Rle, min_area: f64) -> Result<(Vec<bool>, bool)> {
    let (h, w) = (rle.h, rle.w);
    let m = rle.to_mask()?;
    let (m, ch1) = remove_small_regions(&m, h, w, min_area, true);
    let (m, ch2) = remove_small_regions(&m, h, w, min_area, false);
    Ok((m, ch1 || ch2))
}

/// `postprocess_small_regions`: fill small holes, drop small islands, then NMS preferring
/// unchanged masks (score 1) over changed ones (score 0). To keep one full-size mask per
/// thread rather than one per record, the kept changed masks are recomputed after NMS.
fn postprocess_small_regions<P: Pipeline>(
    src: &P,
    data: Vec<Cand>,
    min_area: f64,
    thresh: f64,
) -> Result<Vec<Cand>> {
    if data.is_empty() {
        return Ok(data);
    }
    let fixed: Vec<(bool, [i64; 4])> = data
        .par_iter()
        .map(|c| -> Result<_> {
            let (m, changed) = clean_mask(&c.rle, min_area)?;
            Ok((changed, mask_to_box(&m, c.rle.h, c.rle.w)))
        })
        .collect::<Result<_>>()?;
    let boxes: Vec<[f32; 4]> = fixed.iter().map(|f| box_f32(f.1)).collect();
    let scores: Vec<f32> = fixed.iter().map(|f| if f.0 { 0.0 } else { 1.0 }).collect();
    let keep = src.nms(&boxes, &scores, thresh)?;
    let mut data = take(data, &keep);
    data.par_iter_mut()
        .zip(keep.par_iter())
        .try_for_each(|(c, &i)| -> Result<()> {
            if fixed[i].0 {
                let (m, _) = clean_mask(&c.rle, min_area)?;
                c.rle = Rle::from_mask(&m, c.rle.h, c.rle.w)?;
                c.bbox = fixed[i].1;
            }
            Ok(())
        })?;
    Ok(data)
}
