//! The automatic mask generator with everything per mask on a CUDA device: the prompt
//! encoder and mask decoder over each batch of grid points, `postprocess_masks` to the crop,
//! the stability score, thresholding with bit-packing, area and box, and box NMS within and
//! across crops. The host keeps what is per batch or per survivor: the IoU filter on the
//! batch's predictions (which also picks the planes to post-process), the crop-edge filter on
//! the boxes, RLE from the packed bits of the masks that pass, and small-region removal.
//!
//! The algorithm (grids, crops, order, un-cropping, records) is the CPU generator's
//! ([`super::generator::Pipeline`]), so both keep and order masks as the official does.
//!
//! Where the device path meets today's launchers is kept in one place ([`Post`]): the decoder
//! hands back host logits and [`Post::upload`] copies the planes that pass the IoU filter to
//! the device; the post-processing launchers allocate their outputs per call.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream};

use crate::amg::generator::{run_pipeline, AmgConfig, BatchFrame, Cand, Pipeline, Progress};
use crate::amg::geometry::near_crop_edge;
use crate::amg::record::MaskRecord;
use crate::amg::rle::Rle;
use crate::amg::source::input_points;
use crate::cpu::ops::postprocess::{MaskFrame, TORCH_THREADS};
use crate::cpu::ops::prompt_encoder::sparse_tokens;
use crate::cuda::model::mask_decoder::{DecodedMasks, DevicePrompt};
use crate::cuda::model::mask_decoder_exec::CudaDecoder;
use crate::cuda::ops::{nms, postprocess};
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::error::{Error, Result};
use crate::io::image::rgb::RgbImage;
use crate::io::weights::WeightSource;
use crate::sam::predictor::{ImageEmbedding, Sam};

/// Device memory for one post-processing launch's logits at the crop's size (the bilinear
/// intermediate is at most as large again): a batch's masks go in chunks under this, so a
/// 64-point batch at 1500x2250 (192 masks, 2.6 GB of logits) never needs more.
const POST_BYTES: usize = 512 << 20;

/// The automatic mask generator on a CUDA device: `sam` embeds each crop (on the device it
/// was loaded for), the decoder and the per-mask work run here.
pub struct DeviceAmg<'a> {
    sam: &'a Sam,
    dec: CudaDecoder,
    frame: MaskFrame,
}

impl<'a> DeviceAmg<'a> {
    /// The prompt encoder and mask decoder of `weights` (the model `sam` was built from) on
    /// CUDA device `ordinal`.
    pub fn new(sam: &'a Sam, weights: &dyn WeightSource, ordinal: usize) -> Result<Self> {
        let gpu = Arc::new(GpuContext::with_device(ordinal)?);
        Ok(DeviceAmg {
            sam,
            dec: CudaDecoder::new(gpu, weights, &sam.config)?,
            frame: sam.mask_frame(),
        })
    }

    /// Where the per-mask work runs, in words.
    pub fn description(&self) -> String {
        let i = self.dec.gpu().info();
        format!("CUDA device {} ({})", i.ordinal, i.name)
    }

    /// `SamAutomaticMaskGenerator.generate`, as [`super::generate_with_progress`].
    pub fn generate(
        &self,
        img: &RgbImage,
        cfg: &AmgConfig,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<MaskRecord>> {
        run_pipeline(self, img, cfg, progress)
    }

    fn gpu(&self) -> &GpuContext {
        self.dec.gpu()
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.dec.gpu().stream()
    }
}

impl Pipeline for DeviceAmg<'_> {
    type Crop = ImageEmbedding;

    fn crop(&self, img: &RgbImage) -> Result<ImageEmbedding> {
        self.sam.embed(img)
    }

    fn batch(
        &self,
        emb: &ImageEmbedding,
        points: &[[f64; 2]],
        frame: &BatchFrame,
        cfg: &AmgConfig,
    ) -> Result<Vec<Cand>> {
        let q = input_points(points, frame.crop_size, self.sam.config.encoder.img_size);
        let prompts = q
            .iter()
            .map(|p| {
                Ok(DevicePrompt {
                    tokens: sparse_tokens(&[*p], &[1], None)?,
                    mask: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let decoded = self.dec.decode(&emb.features, &prompts)?;
        // The multimask outputs (mask tokens 1..), point-major, that pass the IoU filter.
        let mut jobs = Vec::new();
        for (pi, d) in decoded.iter().enumerate() {
            for (mi, &iou) in d.iou.iter().enumerate().skip(1) {
                check_finite(iou, "predicted IoU")?;
                if cfg.pred_iou_thresh > 0.0 && (iou as f64) <= cfg.pred_iou_thresh {
                    continue;
                }
                jobs.push((pi, mi));
            }
        }
        let post = Post {
            gpu: self.gpu(),
            stream: self.stream(),
            frame: self.frame,
            emb,
        };
        let (ch, cw) = frame.crop_size;
        let per = (POST_BYTES / (4 * ch * cw).max(1)).clamp(1, postprocess::PP_MAX_MASKS);
        let mut out = Vec::new();
        for chunk in jobs.chunks(per) {
            let low = post.upload(&decoded, chunk)?;
            let logits = post.logits(&low, chunk.len(), frame.crop_size)?;
            let stab = post.stability(&logits, chunk.len(), frame.crop_size, cfg)?;
            // NaN (0/0) fails `>=` and is dropped, as in torch.
            let pass: Vec<usize> = (0..chunk.len())
                .filter(|&k| {
                    cfg.stability_score_thresh <= 0.0
                        || stab[k] as f64 >= cfg.stability_score_thresh
                })
                .collect();
            if pass.is_empty() {
                continue;
            }
            let packed = post.pack(logits, chunk.len(), &pass, frame.crop_size)?;
            let orig_box = [0, 0, frame.orig.1, frame.orig.0];
            let plane = packed.h * packed.words_per_row;
            for (j, &k) in pass.iter().enumerate() {
                let s = packed.stats[j];
                let [x, y, w, h] = s.bbox.map(|v| v as i64);
                let bbox = [x, y, x + w, y + h];
                if near_crop_edge(bbox, frame.crop, orig_box) {
                    continue;
                }
                let (pi, mi) = chunk[k];
                let rle = Rle::from_packed_crop(
                    &packed.bits[j * plane..(j + 1) * plane],
                    packed.words_per_row,
                    frame.crop_size,
                    (frame.crop[0], frame.crop[1]),
                    frame.orig.0,
                    frame.orig.1,
                )?;
                out.push(Cand {
                    rle,
                    bbox,
                    iou: decoded[pi].iou[mi],
                    point: points[pi],
                    stability: stab[k],
                    crop: frame.crop,
                });
            }
        }
        Ok(out)
    }

    fn nms(&self, boxes: &[[f32; 4]], scores: &[f32], thresh: f64) -> Result<Vec<usize>> {
        nms::nms(self.gpu(), self.stream(), boxes, scores, thresh)
    }
}

fn check_finite(v: f32, what: &str) -> Result<()> {
    if v.is_nan() || v.is_infinite() {
        return Err(Error::Cuda(format!(
            "the device decoder returned a non-finite {what} ({v})"
        )));
    }
    Ok(())
}

/// The post-processing launchers as one batch's masks use them: the one place that knows how
/// they take and return buffers.
struct Post<'a> {
    gpu: &'a GpuContext,
    stream: &'a Arc<CudaStream>,
    frame: MaskFrame,
    emb: &'a ImageEmbedding,
}

impl Post<'_> {
    /// The low-res planes of `jobs` ((point, mask token) pairs) on the device, `[jobs, s, s]`.
    fn upload(&self, decoded: &[DecodedMasks], jobs: &[(usize, usize)]) -> Result<CudaSlice<f32>> {
        let plane = self.frame.plane();
        let mut host = Vec::with_capacity(jobs.len() * plane);
        for &(pi, mi) in jobs {
            let p = decoded[pi]
                .low_res
                .get(mi * plane..(mi + 1) * plane)
                .ok_or_else(|| Error::Cuda(format!("the decoder returned no mask {mi}")))?;
            host.extend_from_slice(p);
        }
        guarded("copying masks to the device", || {
            self.stream.clone_htod(&host)
        })
    }

    /// `postprocess_masks` to the crop's size: `[masks, h, w]` logits.
    fn logits(
        &self,
        low: &CudaSlice<f32>,
        masks: usize,
        crop_size: (usize, usize),
    ) -> Result<CudaSlice<f32>> {
        postprocess::postprocess_masks(
            self.gpu,
            self.stream,
            self.frame,
            low,
            masks,
            self.emb.input_size,
            crop_size,
            TORCH_THREADS,
        )
    }

    /// `calculate_stability_score` of each plane at `mask_threshold` 0.
    fn stability(
        &self,
        logits: &CudaSlice<f32>,
        masks: usize,
        (h, w): (usize, usize),
        cfg: &AmgConfig,
    ) -> Result<Vec<f32>> {
        let offset = cfg.stability_score_offset as f32;
        postprocess::stability_scores(self.gpu, self.stream, logits, masks, h * w, offset)
    }

    /// Planes `keep` of `logits` thresholded and packed with their area and box; the others
    /// are dropped on the device first.
    fn pack(
        &self,
        logits: CudaSlice<f32>,
        masks: usize,
        keep: &[usize],
        (h, w): (usize, usize),
    ) -> Result<postprocess::PackedMasks> {
        let plane = h * w;
        let kept = if keep.len() == masks {
            logits
        } else {
            let mut dst = self.gpu.zeros_f32(self.stream, keep.len() * plane)?;
            for (j, &k) in keep.iter().enumerate() {
                let src = logits.slice(k * plane..(k + 1) * plane);
                let mut d = dst.slice_mut(j * plane..(j + 1) * plane);
                guarded("device-to-device copy", || {
                    self.stream.memcpy_dtod(&src, &mut d)
                })?;
            }
            dst
        };
        postprocess::threshold_pack(self.gpu, self.stream, &kept, keep.len(), (h, w))
    }
}
