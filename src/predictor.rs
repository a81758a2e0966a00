//! The official `SamPredictor` workflow: embed an image once, then decode any number of
//! prompts against it. `Sam` holds only immutable f32 weights, so one model serves many
//! threads at once.

use crate::checkpoint::cache::open_model;
use crate::config::{infer_config, SamConfig};
use crate::error::{Error, Result};
use crate::image_encoder::ImageEncoder;
use crate::mask_decoder::{DecoderImage, DecoderOutput, MaskDecoder};
use crate::postprocess::{mask_stats, postprocess_masks_threshold, MaskStats};
use crate::preprocess::{preprocess, transform_coords_f64, RgbImage};
use crate::prompt_encoder::PromptEncoder;
use crate::weights::WeightSource;
use rayon::prelude::*;
use std::path::Path;

/// Side of the low-resolution mask logits the decoder produces and accepts.
pub const LOW_RES: usize = 256;

/// Where the image encoder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    /// A CUDA device by ordinal (needs the `cuda` feature and the NVIDIA driver).
    Cuda(usize),
}

pub struct Sam {
    pub config: SamConfig,
    encoder: ImageEncoder,
    /// The image encoder on the GPU, when loaded for a CUDA device; the prompt encoder and
    /// mask decoder run on the CPU from the downloaded embedding until the GPU decoder lands.
    #[cfg(feature = "cuda")]
    gpu_encoder: Option<crate::cuda::encoder_exec::CudaEncoder>,
    prompt_encoder: PromptEncoder,
    decoder: MaskDecoder,
    /// The dense positional encoding depends only on weights: computed once at load.
    dense_pe: Vec<f32>,
}

/// An image's embedding plus the sizes needed to map prompts and masks back to it.
#[derive(Clone)]
pub struct ImageEmbedding {
    /// [256, 64, 64]
    pub features: Vec<f32>,
    /// (h, w) of the image as given.
    pub original_size: (usize, usize),
    /// (h, w) after the longest-side resize to 1024, before padding.
    pub input_size: (usize, usize),
}

/// One prompt, in original-image pixel coordinates (f64, as numpy passes them to the
/// official predictor: rounding to f32 first can change the transformed value's last bit).
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub points: Vec<[f64; 2]>,
    /// 1 foreground, 0 background; one per point.
    pub labels: Vec<i32>,
    pub box_xyxy: Option<[f64; 4]>,
    /// Low-res logits of an earlier prediction, [256 * 256].
    pub mask_input: Option<Vec<f32>>,
    pub multimask: bool,
}

pub struct Prediction {
    pub num_masks: usize,
    pub height: usize,
    pub width: usize,
    /// [C, H, W] booleans (logit > 0.0) at the original size.
    pub masks: Vec<bool>,
    pub scores: Vec<f32>,
    /// [C, 256, 256] logits in the padded 1024 frame.
    pub low_res_logits: Vec<f32>,
}

impl Prediction {
    pub fn mask(&self, i: usize) -> &[bool] {
        let n = self.height * self.width;
        &self.masks[i * n..(i + 1) * n]
    }
    pub fn stats(&self, i: usize) -> Result<MaskStats> {
        mask_stats(self.mask(i), self.height, self.width)
    }
}

impl Prompt {
    /// Rejects what the official predictor would turn into garbage or an exception.
    pub fn validate(&self) -> Result<()> {
        if self.points.len() != self.labels.len() {
            return Err(Error::Prompt(format!(
                "{} points but {} labels",
                self.points.len(),
                self.labels.len()
            )));
        }
        for p in &self.points {
            if !p[0].is_finite() || !p[1].is_finite() {
                return Err(Error::Prompt(format!(
                    "point ({}, {}) is not finite",
                    p[0], p[1]
                )));
            }
        }
        if let Some(l) = self.labels.iter().find(|&&l| l != 0 && l != 1) {
            return Err(Error::Prompt(format!(
                "point label {l} is not 0 (background) or 1 (foreground)"
            )));
        }
        if let Some(b) = self.box_xyxy {
            if b.iter().any(|v| !v.is_finite()) {
                return Err(Error::Prompt(format!("box {b:?} is not finite")));
            }
        }
        if let Some(m) = &self.mask_input {
            if m.len() != LOW_RES * LOW_RES {
                return Err(Error::Prompt(format!(
                    "mask input has {} values, expected 256x256 = 65536",
                    m.len()
                )));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(Error::Prompt(
                    "mask input contains NaN or infinite values".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Sam {
    /// Loads a .safetensors or .pth file (a .pth is converted once into the cache); the
    /// message, if any, says what the cache did.
    pub fn load(path: &Path) -> Result<(Sam, Option<String>)> {
        Sam::load_on(path, ComputeDevice::Cpu)
    }

    /// As [`Sam::load`], with the image encoder on `device`: for CUDA its fp16 weights are
    /// copied to the device once, and `embed`/`embed_batch` run there.
    pub fn load_on(path: &Path, device: ComputeDevice) -> Result<(Sam, Option<String>)> {
        let (ckpt, msg) = open_model(path)?;
        Ok((Sam::from_weights_on(&ckpt, device)?, msg))
    }

    pub fn from_weights_on(w: &dyn WeightSource, device: ComputeDevice) -> Result<Sam> {
        #[allow(unused_mut)]
        let mut sam = Sam::from_weights(w)?;
        match device {
            ComputeDevice::Cpu => {}
            #[cfg(feature = "cuda")]
            ComputeDevice::Cuda(ordinal) => {
                let gpu = std::sync::Arc::new(crate::cuda::GpuContext::with_device(ordinal)?);
                sam.gpu_encoder = Some(crate::cuda::encoder_exec::CudaEncoder::new(
                    gpu,
                    w,
                    &sam.config.encoder,
                )?);
            }
            #[cfg(not(feature = "cuda"))]
            ComputeDevice::Cuda(_) => {
                return Err(Error::Unsupported(
                    "this samrt was built without the `cuda` feature".into(),
                ))
            }
        }
        Ok(sam)
    }

    /// Where the image encoder runs, in words (e.g. for `--device auto` messages).
    pub fn device_description(&self) -> String {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu_encoder {
            let i = g.gpu().info();
            return format!("CUDA device {} ({})", i.ordinal, i.name);
        }
        "CPU".into()
    }

    /// The GPU image encoder, when the model was loaded for a CUDA device.
    #[cfg(feature = "cuda")]
    pub fn gpu_encoder(&self) -> Option<&crate::cuda::encoder_exec::CudaEncoder> {
        self.gpu_encoder.as_ref()
    }

    pub fn from_weights(w: &dyn WeightSource) -> Result<Sam> {
        let config = infer_config(w)?;
        let encoder = ImageEncoder::load(w, &config.encoder)?;
        let prompt_encoder = PromptEncoder::load(w, &config)?;
        let decoder = MaskDecoder::load(w, &config)?;
        let dense_pe = prompt_encoder.dense_pe();
        Ok(Sam {
            config,
            encoder,
            #[cfg(feature = "cuda")]
            gpu_encoder: None,
            prompt_encoder,
            decoder,
            dense_pe,
        })
    }

    pub fn image_encoder(&self) -> &ImageEncoder {
        &self.encoder
    }
    pub fn prompt_encoder(&self) -> &PromptEncoder {
        &self.prompt_encoder
    }
    pub fn mask_decoder(&self) -> &MaskDecoder {
        &self.decoder
    }
    /// [256, 64, 64]
    pub fn dense_pe(&self) -> &[f32] {
        &self.dense_pe
    }

    /// The decoder's image side for prompts without a mask input, prepared once for any
    /// number of [`Sam::decode_points`] calls on this embedding.
    pub fn prepare_points(&self, features: &[f32]) -> Result<DecoderImage> {
        self.decoder.prepare_image(
            features,
            &self.dense_pe,
            &self.prompt_encoder.no_mask_dense(),
        )
    }

    /// One single-foreground-point prompt per point (coordinates already in the 1024 input
    /// frame), all masks (multimask), decoded in parallel: the automatic mask generator's
    /// batches.
    pub fn decode_points(
        &self,
        image: &DecoderImage,
        points: &[[f32; 2]],
    ) -> Result<Vec<DecoderOutput>> {
        let sparse: Vec<(Vec<f32>, usize)> = points
            .iter()
            .map(|q| self.prompt_encoder.encode_sparse(&[*q], &[1], None))
            .collect::<Result<_>>()?;
        let views: Vec<(&[f32], usize)> = sparse.iter().map(|(s, n)| (s.as_slice(), *n)).collect();
        self.decoder.decode_prepared(image, &views, true)
    }

    /// `set_image`: resize, normalise, pad and run the image encoder.
    pub fn embed(&self, img: &RgbImage) -> Result<ImageEmbedding> {
        #[cfg(feature = "cuda")]
        if self.gpu_encoder.is_some() {
            return Ok(self.embed_batch(&[img])?.remove(0));
        }
        let target = self.config.encoder.img_size;
        let (x, input_size) = preprocess(img, target)?;
        let features = self.encoder.forward(&x)?;
        Ok(ImageEmbedding {
            features,
            original_size: (img.height, img.width),
            input_size,
        })
    }

    /// Embeds several images in one call: one batched launch sequence on the GPU (a CUDA
    /// graph per batch size), image by image on the CPU. Equal to calling `embed` on each.
    pub fn embed_batch(&self, imgs: &[&RgbImage]) -> Result<Vec<ImageEmbedding>> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu_encoder {
            let mut out = Vec::with_capacity(imgs.len());
            for chunk in imgs.chunks(crate::cuda::encoder_exec::MAX_BATCH) {
                for (img, (features, input_size)) in chunk.iter().zip(g.embed_batch(chunk)?) {
                    out.push(ImageEmbedding {
                        features,
                        original_size: (img.height, img.width),
                        input_size,
                    });
                }
            }
            return Ok(out);
        }
        imgs.iter().map(|img| self.embed(img)).collect()
    }

    /// Prompt encoder inputs in the 1024 frame, as `SamPredictor.predict` transforms them.
    fn encode_prompt(
        &self,
        emb: &ImageEmbedding,
        p: &Prompt,
    ) -> Result<(Vec<f32>, usize, Vec<f32>)> {
        p.validate()?;
        let (orig, input) = (emb.original_size, emb.input_size);
        let pts: Vec<[f32; 2]> = p
            .points
            .iter()
            .map(|q| {
                let (x, y) = transform_coords_f64(q[0], q[1], orig, input);
                [x, y]
            })
            .collect();
        // apply_boxes is apply_coords on the two corners.
        let bx = p.box_xyxy.map(|b| {
            let (x0, y0) = transform_coords_f64(b[0], b[1], orig, input);
            let (x1, y1) = transform_coords_f64(b[2], b[3], orig, input);
            [x0, y0, x1, y1]
        });
        self.prompt_encoder
            .encode(&pts, &p.labels, bx, p.mask_input.as_deref())
    }

    fn finish(&self, emb: &ImageEmbedding, out: DecoderOutput) -> Result<Prediction> {
        let (h, w) = emb.original_size;
        let masks = postprocess_masks_threshold(
            &out.low_res,
            out.num_masks,
            emb.input_size,
            emb.original_size,
        )?;
        Ok(Prediction {
            num_masks: out.num_masks,
            height: h,
            width: w,
            masks,
            scores: out.iou,
            low_res_logits: out.low_res,
        })
    }

    pub fn predict(&self, emb: &ImageEmbedding, prompt: &Prompt) -> Result<Prediction> {
        let (sparse, n, dense) = self.encode_prompt(emb, prompt)?;
        let out = self.decoder.forward(
            &emb.features,
            &self.dense_pe,
            &sparse,
            n,
            &dense,
            prompt.multimask,
        )?;
        self.finish(emb, out)
    }

    /// Decodes many prompts against one embedding in one call. The multimask flag is taken
    /// per prompt; prompts are grouped so each group shares the image-side work.
    pub fn predict_batch(
        &self,
        emb: &ImageEmbedding,
        prompts: &[Prompt],
    ) -> Result<Vec<Prediction>> {
        let mut encoded: Vec<_> = prompts
            .iter()
            .map(|p| self.encode_prompt(emb, p).map(Some))
            .collect::<Result<_>>()?;
        let mut outs: Vec<Option<DecoderOutput>> = (0..prompts.len()).map(|_| None).collect();
        for multimask in [true, false] {
            let idx: Vec<usize> = (0..prompts.len())
                .filter(|&i| prompts[i].multimask == multimask)
                .collect();
            if idx.is_empty() {
                continue;
            }
            // Each prompt belongs to exactly one group: move its embeddings instead of copying
            // the 4 MB dense map.
            let group: Vec<_> = idx
                .iter()
                .map(|&i| encoded[i].take().expect("each prompt is in one group"))
                .collect();
            let res =
                self.decoder
                    .forward_batch(&emb.features, &self.dense_pe, &group, multimask)?;
            for (i, o) in idx.into_iter().zip(res) {
                outs[i] = Some(o);
            }
        }
        outs.into_par_iter()
            .map(|o| self.finish(emb, o.expect("every prompt belongs to one group")))
            .collect()
    }
}
