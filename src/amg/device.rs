//! The automatic mask generator with everything per mask on a CUDA device: the prompt
//! encoder and mask decoder over each batch of grid points, `postprocess_masks` to the crop,
//! the stability score, thresholding with bit-packing, area and box, and box NMS within and
//! across crops. The host keeps what is per batch or per survivor: the IoU filter on the
//! batch's scores (which also picks the planes to post-process), the crop-edge filter on
//! the boxes, RLE from the packed bits of the masks that pass, and small-region removal.
//!
//! The algorithm (grids, crops, order, un-cropping, records) is the CPU generator's
//! ([`super::generator::Pipeline`]), so both keep and order masks as the official does.
//!
//! Data movement per point batch: the crop's embedding stays on the device when the encoder
//! left it there (same context); the decoder's low-res logits are post-processed where they
//! were decoded ([`CudaDecoder::decode_device`]), in the decoder's post-processing scratch
//! (no allocation once warm); only the IoU scores, the stability counts, every plane's area
//! and box, and the packed bits of the masks that pass the stability filter come back.

use std::sync::Arc;

use cudarc::driver::CudaStream;

use crate::amg::generator::{run_pipeline, AmgConfig, BatchFrame, Cand, Pipeline, Progress};
use crate::amg::geometry::near_crop_edge;
use crate::amg::record::MaskRecord;
use crate::amg::rle::Rle;
use crate::amg::source::input_points;
use crate::cpu::ops::postprocess::{MaskFrame, TORCH_THREADS};
use crate::cpu::ops::prompt_encoder::sparse_tokens;
use crate::cuda::model::mask_decoder::DevicePrompt;
use crate::cuda::model::mask_decoder_exec::{CudaDecoder, DecodedBatch, EmbeddingInput};
use crate::cuda::ops::nms;
use crate::cuda::ops::postprocess::{
    download_packed_planes, postprocess_into, stability_scores_logits, threshold_pack_logits,
    PostScratch, PP_MAX_MASKS,
};
use crate::cuda::runtime::context::{guarded, GpuContext};
use crate::cuda::runtime::resident::Resident;
use crate::error::{Error, Result};
use crate::io::image::rgb::RgbImage;
use crate::io::weights::WeightSource;
use crate::sam::predictor::{ImageEmbedding, Sam};

/// Device memory for one post-processing pass's logits at the crop's size (the bilinear
/// intermediate is at most as large again): a batch's masks go in passes under this, so a
/// 64-point batch at 1500x2250 (192 masks, 2.6 GB of logits) never needs more.
const POST_BYTES: usize = 512 << 20;

/// The decoder the generator runs on: the model's own, or one built for it.
enum Decoder<'a> {
    Shared(&'a CudaDecoder),
    Own(Box<CudaDecoder>),
}

/// The automatic mask generator on a CUDA device: `sam` embeds each crop (on the device it
/// was loaded for), the decoder and the per-mask work run here.
pub struct DeviceAmg<'a> {
    sam: &'a Sam,
    dec: Decoder<'a>,
    frame: MaskFrame,
}

impl<'a> DeviceAmg<'a> {
    /// On `sam`'s own CUDA decoder, when it has one on device `ordinal`: no second copy of
    /// the decoder's weights, and crops embedded on that device are decoded in place.
    pub fn sharing(sam: &'a Sam, ordinal: usize) -> Option<Self> {
        let dec = sam
            .decoder_backend()
            .and_then(|b| b.cuda_decoder())
            .filter(|d| d.gpu().info().ordinal == ordinal)?;
        Some(DeviceAmg {
            sam,
            dec: Decoder::Shared(dec),
            frame: sam.mask_frame(),
        })
    }

    /// The prompt encoder and mask decoder of `weights` (the model `sam` was built from) on
    /// CUDA device `ordinal`.
    pub fn new(sam: &'a Sam, weights: &dyn WeightSource, ordinal: usize) -> Result<Self> {
        let gpu = Arc::new(GpuContext::with_device(ordinal)?);
        Ok(DeviceAmg {
            sam,
            dec: Decoder::Own(Box::new(CudaDecoder::new(gpu, weights, &sam.config)?)),
            frame: sam.mask_frame(),
        })
    }

    /// Where the per-mask work runs, in words.
    pub fn description(&self) -> String {
        let i = self.dec().gpu().info();
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

    fn dec(&self) -> &CudaDecoder {
        match &self.dec {
            Decoder::Shared(d) => d,
            Decoder::Own(d) => d,
        }
    }

    fn gpu(&self) -> &GpuContext {
        self.dec().gpu()
    }

    fn stream(&self) -> &Arc<CudaStream> {
        self.dec().gpu().stream()
    }

    /// The crop's embedding as the decoder takes it: in place when it lives in the
    /// decoder's context, else the host values.
    fn input<'e>(&self, emb: &'e ImageEmbedding) -> EmbeddingInput<'e> {
        let resident = emb
            .device
            .as_ref()
            .and_then(|d| d.get::<Resident>())
            .filter(|r| r.check_context(self.gpu()).is_ok());
        match resident {
            Some(r) => EmbeddingInput::Device(r),
            None => EmbeddingInput::Host(&emb.features),
        }
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
        let dec = self.dec();
        let mut scratch = dec.post_scratch()?;
        let mut out = Vec::new();
        dec.decode_device(self.input(emb), &prompts, |b| {
            let job = BatchJob {
                amg: self,
                emb,
                points,
                frame,
                cfg,
            };
            job.run(b, &mut scratch, &mut out)
        })?;
        // Batches come back in prompt order (one shape, chunks in order); keep the CPU
        // generator's point-major order whatever the decoder's batching.
        out.sort_by_key(|c| c.0);
        Ok(out.into_iter().map(|c| c.1).collect())
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

/// One point batch's post-processing, run on each decoded batch where it lies.
struct BatchJob<'a, 'b> {
    amg: &'a DeviceAmg<'b>,
    emb: &'a ImageEmbedding,
    points: &'a [[f64; 2]],
    frame: &'a BatchFrame,
    cfg: &'a AmgConfig,
}

impl BatchJob<'_, '_> {
    /// The candidates of batch `b`, each keyed by (point, mask token) for ordering.
    fn run(
        &self,
        b: &DecodedBatch<'_>,
        scratch: &mut PostScratch,
        out: &mut Vec<((usize, usize), Cand)>,
    ) -> Result<()> {
        let (nm, n) = (b.masks, b.indices.len());
        let mut iou = vec![0f32; n * nm];
        guarded("copying scores to the host", || {
            b.stream.memcpy_dtoh(&b.iou.prefix(n * nm), &mut iou)
        })?;
        // The multimask outputs (mask tokens 1..), slot-major, that pass the IoU filter, as
        // planes of the batch's logits.
        let mut planes = Vec::new();
        for k in 0..n {
            for mi in 1..nm {
                let v = iou[k * nm + mi];
                check_finite(v, "predicted IoU")?;
                if self.cfg.pred_iou_thresh > 0.0 && (v as f64) <= self.cfg.pred_iou_thresh {
                    continue;
                }
                planes.push((k * nm + mi) as i32);
            }
        }
        let (ch, cw) = self.frame.crop_size;
        let per = (POST_BYTES / (4 * ch * cw).max(1)).clamp(1, PP_MAX_MASKS);
        let offset = self.cfg.stability_score_offset as f32;
        for chunk in planes.chunks(per) {
            let m = chunk.len();
            postprocess_into(
                b.gpu,
                b.stream,
                self.amg.frame,
                b.low_res,
                (m, Some(chunk)),
                self.emb.input_size,
                self.frame.crop_size,
                TORCH_THREADS,
                scratch,
            )?;
            let stab = stability_scores_logits(b.gpu, b.stream, m, ch * cw, offset, scratch)?;
            // NaN (0/0) fails `>=` and is dropped, as in torch.
            let thresh = self.cfg.stability_score_thresh;
            let pass: Vec<usize> = (0..m)
                .filter(|&j| thresh <= 0.0 || stab[j] as f64 >= thresh)
                .collect();
            if pass.is_empty() {
                continue;
            }
            threshold_pack_logits(b.gpu, b.stream, m, self.frame.crop_size, scratch)?;
            let packed = download_packed_planes(b.stream, scratch, m, &pass, self.frame.crop_size)?;
            let orig_box = [0, 0, self.frame.orig.1, self.frame.orig.0];
            let plane = packed.h * packed.words_per_row;
            for (j, &k) in pass.iter().enumerate() {
                let [x, y, w, h] = packed.stats[j].bbox.map(|v| v as i64);
                let bbox = [x, y, x + w, y + h];
                if near_crop_edge(bbox, self.frame.crop, orig_box) {
                    continue;
                }
                let p = chunk[k] as usize;
                let (slot, mi) = (p / nm, p % nm);
                let pi = b.indices[slot];
                let rle = Rle::from_packed_crop(
                    &packed.bits[j * plane..(j + 1) * plane],
                    packed.words_per_row,
                    self.frame.crop_size,
                    (self.frame.crop[0], self.frame.crop[1]),
                    self.frame.orig.0,
                    self.frame.orig.1,
                )?;
                let cand = Cand {
                    rle,
                    bbox,
                    iou: iou[p],
                    point: self.points[pi],
                    stability: stab[k],
                    crop: self.frame.crop,
                };
                out.push(((pi, mi), cand));
            }
        }
        Ok(())
    }
}
