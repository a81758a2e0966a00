//! The official `SamPredictor` workflow: embed an image once, then decode any number of
//! prompts against it. `Sam` holds only immutable f32 weights, so one model serves many
//! threads at once.

use crate::cpu::model::image_encoder::ImageEncoder;
use crate::cpu::model::mask_decoder::{DecoderImage, DecoderOutput, MaskDecoder};
use crate::cpu::model::prompt_encoder::PromptEncoder;
use crate::cpu::ops::layer_norm::transpose;
use crate::cpu::ops::postprocess::{mask_stats, MaskFrame, MaskStats};
use crate::cpu::ops::preprocess_patchify::preprocess;
use crate::cpu::ops::prompt_encoder::sparse_tokens;
use crate::cuda::model::mask_decoder::{DevicePrompt, PostFrame};
use crate::error::{Error, Result};
use crate::io::checkpoint::cache::load_model;
use crate::io::config::{infer_config, SamConfig};
use crate::io::image::resize::transform_coords_f64;
use crate::io::image::rgb::RgbImage;
use crate::io::weights::{count_non_finite, WeightSource};
use crate::sam::backend::{self, DecoderBackend, DecoderEmbedding, EncoderBackend};
pub use crate::sam::backend::{ComputeDevice, DeviceEmbedding};
use rayon::prelude::*;
use std::path::Path;
use std::sync::Arc;

/// Side of the low-resolution mask logits of the official models (1024 input, 64x64
/// embedding). A model built for another input size has low-res masks 4x its embedding side:
/// see [`Sam::low_res_side`].
pub const LOW_RES: usize = 256;

/// Most point prompts in one prompt. Each point is a token in every attention of the
/// decoder, so cost grows with the count; SAM was trained with at most a few dozen clicks,
/// and 100,000 points once ran for minutes.
pub const MAX_POINTS_PER_PROMPT: usize = 1024;

/// Largest |value| accepted in a mask input. The official decoder's low-res logits are tens
/// at most, so this keeps every real input with a wide margin. Far larger finite values
/// overflow f32 in the mask-downscaling path (its first LayerNorm2d squares the conv output,
/// which passes f32's range from about 1e18), and the prediction would be NaN.
pub const MAX_MASK_INPUT_ABS: f32 = 1e6;

pub struct Sam {
    pub config: SamConfig,
    /// The image encoder on the device it was loaded for. None when loaded with
    /// [`Sam::load_decoder`]: decoding a saved embedding needs only the prompt encoder and
    /// mask decoder, and converting the encoder's weights would cost more than the click.
    encoder: Option<Box<dyn EncoderBackend>>,
    /// The prompt encoder and mask decoder on the device the model was loaded for; None on
    /// the CPU, where `prompt_encoder` and `decoder` decode. (The automatic mask generator's
    /// point batches still decode on the CPU.)
    device_decoder: Option<Box<dyn DecoderBackend>>,
    /// [`crate::io::checkpoint::fingerprint`] of the file the model was loaded from.
    fingerprint: Option<String>,
    prompt_encoder: PromptEncoder,
    decoder: MaskDecoder,
    /// The dense positional encoding depends only on weights: computed once at load.
    dense_pe: Vec<f32>,
    /// `dense_pe` token-major (`[hw, dim]`), as every CPU decode of a prompt without a mask
    /// input takes it: transposed once here rather than per call.
    dense_pe_t: Arc<[f32]>,
}

/// An image's embedding plus the sizes needed to map prompts and masks back to it.
#[derive(Clone)]
pub struct ImageEmbedding {
    /// [256, E, E] ([`Sam::embedding_shape`]; E = 64 at the official 1024 input)
    pub features: Vec<f32>,
    /// (h, w) of the image as given.
    pub original_size: (usize, usize),
    /// (h, w) after the longest-side resize to the model's input size, before padding.
    pub input_size: (usize, usize),
    /// `features` kept in device memory, when the model decodes on a device: set by
    /// [`Sam::embed`] when the encoder runs there too, or by [`Sam::upload_embedding`];
    /// `predict` and `predict_batch` then move no embedding to the device. None elsewhere.
    pub device: Option<DeviceEmbedding>,
}

/// One prompt, in original-image pixel coordinates (f64, as numpy passes them to the
/// official predictor: rounding to f32 first can change the transformed value's last bit).
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub points: Vec<[f64; 2]>,
    /// 1 foreground, 0 background; one per point.
    pub labels: Vec<i32>,
    pub box_xyxy: Option<[f64; 4]>,
    /// Low-res logits of an earlier prediction, [S * S] with S = [`Sam::low_res_side`] (256
    /// for the official models).
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
    /// [C, S, S] logits in the padded input frame (S = [`Sam::low_res_side`]).
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

/// Fails if any of `values` (`what`) is NaN or infinite. Every input is checked to be finite
/// (and mask inputs bounded), so a non-finite output means finite values overflowed f32
/// inside the model: weights far outside a trained model's range, or an embedding from
/// elsewhere. Failing beats returning NaN scores (`null` in JSON) and empty masks.
fn check_output(what: &str, values: &[f32]) -> Result<()> {
    match count_non_finite(values) {
        0 => Ok(()),
        bad => Err(Error::NonFinite(format!(
            "{bad} of the {} values of {what} are NaN or infinite: the computation overflowed \
             f32, most likely because the checkpoint's weights are far larger than a trained \
             model's",
            values.len()
        ))),
    }
}

/// [`check_output`] on a decoder output's IoU scores and mask logits.
fn check_decoded(out: &DecoderOutput) -> Result<()> {
    check_output("the mask decoder's IoU scores", &out.iou)?;
    check_output("the mask decoder's low-res mask logits", &out.low_res)
}

impl Prompt {
    /// Rejects what the official predictor would turn into garbage or an exception, for any
    /// model: a mask input must be square here; [`Sam::check_prompt`] also checks its side
    /// against the model's.
    pub fn validate(&self) -> Result<()> {
        if self.points.len() > MAX_POINTS_PER_PROMPT {
            return Err(Error::Prompt(format!(
                "{} points; at most {MAX_POINTS_PER_PROMPT} points per prompt",
                self.points.len()
            )));
        }
        if self.points.len() != self.labels.len() {
            return Err(Error::Prompt(format!(
                "{} but {}",
                crate::error::count(self.points.len(), "point"),
                crate::error::count(self.labels.len(), "label")
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
            let side = m.len().isqrt();
            if m.is_empty() || side * side != m.len() {
                return Err(Error::Prompt(format!(
                    "mask input has {} values, expected a square S x S mask (256x256 = 65536 \
                     for the official models)",
                    m.len()
                )));
            }
            if m.iter().any(|v| !v.is_finite()) {
                return Err(Error::Prompt(
                    "mask input contains NaN or infinite values".into(),
                ));
            }
            if let Some(v) = m.iter().find(|v| v.abs() > MAX_MASK_INPUT_ABS) {
                return Err(Error::Prompt(format!(
                    "mask input value {v:e} is beyond ±{MAX_MASK_INPUT_ABS:e}; it should be the \
                     low-res logits of an earlier prediction (tens at most)"
                )));
            }
        }
        Ok(())
    }
}

/// How to load a model: where its image encoder runs and the input size it runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: ComputeDevice,
    /// Run at this input side (a multiple of 16) instead of the checkpoint's own (1024 for
    /// the official models): see [`SamConfig::at_image_size`]. Global blocks' rel-pos tables
    /// are resized linearly as the official `get_rel_pos` does; `pos_embed` bicubically (the
    /// official encoder cannot run a checkpoint at another size without that step).
    pub image_size: Option<usize>,
}

impl LoadOptions {
    pub fn on(device: ComputeDevice) -> LoadOptions {
        LoadOptions {
            device,
            image_size: None,
        }
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
        Sam::load_with(path, LoadOptions::on(device))
    }

    /// As [`Sam::load_on`], with the options of [`LoadOptions`].
    pub fn load_with(path: &Path, opts: LoadOptions) -> Result<(Sam, Option<String>)> {
        load_model(path, |ckpt| {
            let mut sam = Sam::build(ckpt, Some(opts.device), opts.device, opts.image_size)?;
            sam.fingerprint = Some(crate::io::checkpoint::fingerprint(ckpt));
            Ok(sam)
        })
    }

    /// The prompt encoder and mask decoder only, for decoding saved embeddings; `embed`
    /// then fails with a clear error.
    pub fn load_decoder(path: &Path) -> Result<(Sam, Option<String>)> {
        Sam::load_decoder_at(path, None)
    }

    /// [`Sam::load_decoder`] for embeddings made at input side `image_size` (see
    /// [`LoadOptions::image_size`]).
    pub fn load_decoder_at(
        path: &Path,
        image_size: Option<usize>,
    ) -> Result<(Sam, Option<String>)> {
        Sam::load_decoder_with(
            path,
            LoadOptions {
                device: ComputeDevice::Cpu,
                image_size,
            },
        )
    }

    /// [`Sam::load_decoder_at`] with the prompt encoder and mask decoder on `opts.device`.
    pub fn load_decoder_with(path: &Path, opts: LoadOptions) -> Result<(Sam, Option<String>)> {
        load_model(path, |ckpt| {
            let mut sam = Sam::build(ckpt, None, opts.device, opts.image_size)?;
            sam.fingerprint = Some(crate::io::checkpoint::fingerprint(ckpt));
            Ok(sam)
        })
    }

    /// The model file's fingerprint, when loaded from a file.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    /// Values in one image embedding: [prompt_embed_dim, side, side] with side =
    /// img_size / patch_size (64 for the official 1024 input).
    pub fn embedding_shape(&self) -> [usize; 3] {
        let side = self.config.encoder.grid();
        [self.config.prompt_embed_dim, side, side]
    }

    /// Side S of the low-res masks the decoder writes and the mask inputs it takes, `[C, S,
    /// S]`: 4x the embedding side (256 at the official 1024 input, 64 at 256).
    pub fn low_res_side(&self) -> usize {
        4 * self.config.encoder.grid()
    }

    /// The frames `postprocess_masks` maps between for this model (low-res side -> input
    /// side -> original size).
    pub fn mask_frame(&self) -> MaskFrame {
        MaskFrame::new(self.config.encoder.grid(), self.config.encoder.img_size)
    }

    /// [`Prompt::validate`], then the mask input's side against this model's
    /// [`Sam::low_res_side`], naming the shape it expects.
    pub fn check_prompt(&self, p: &Prompt) -> Result<()> {
        p.validate()?;
        let s = self.low_res_side();
        match &p.mask_input {
            Some(m) if m.len() != s * s => {
                let got = m.len().isqrt();
                Err(Error::Prompt(format!(
                    "mask input is {got}x{got}, expected {s}x{s} = {} ([1, {s}, {s}]: this \
                     model's low-res masks, 4x its {}x{} embedding)",
                    s * s,
                    s / 4,
                    s / 4
                )))
            }
            _ => Ok(()),
        }
    }

    /// [`Sam::check_prompt`] plus what depends on the image: the points and box mapped to
    /// the input frame must stay finite in f32 (a coordinate near f64's range overflows
    /// there). A prompt that passes decodes on `emb` without a prompt error, so a server can
    /// refuse a bad prompt alone before it joins a batch.
    pub fn check_prompt_on(&self, emb: &ImageEmbedding, p: &Prompt) -> Result<()> {
        let (pts, bx) = self.input_frame(emb, p)?;
        crate::cpu::ops::prompt_encoder::check_sparse(&pts, &p.labels, bx)
    }

    fn encoder(&self) -> Result<&dyn EncoderBackend> {
        self.encoder.as_deref().ok_or_else(|| {
            Error::Unsupported(
                "this model was loaded without its image encoder (decoder only), so it \
                 cannot embed images"
                    .into(),
            )
        })
    }

    /// The model with its image encoder on `device` (no CPU encoder is built for a CUDA
    /// device); an error for CUDA in a build without the `cuda` feature.
    pub fn from_weights_on(w: &dyn WeightSource, device: ComputeDevice) -> Result<Sam> {
        Sam::build(w, Some(device), device, None)
    }

    /// [`Sam::from_weights_on`] with the options of [`LoadOptions`].
    pub fn from_weights_with(w: &dyn WeightSource, opts: LoadOptions) -> Result<Sam> {
        Sam::build(w, Some(opts.device), opts.device, opts.image_size)
    }

    /// Where the image encoder runs, in words (e.g. for `--device auto` messages).
    pub fn device_description(&self) -> String {
        self.encoder
            .as_ref()
            .map_or_else(|| "CPU".into(), |e| e.description())
    }

    /// Whether the prompt encoder and mask decoder run on a device (whose result for a
    /// prompt does not depend on the others decoded with it).
    pub(crate) fn decodes_on_device(&self) -> bool {
        self.device_decoder.is_some()
    }

    /// Where the prompt encoder and mask decoder run, in words.
    pub fn decoder_description(&self) -> String {
        self.device_decoder
            .as_ref()
            .map_or_else(|| "CPU".into(), |d| d.description())
    }

    /// The device decoder's backend (timings, kernel profiles); None on the CPU.
    pub fn decoder_backend(&self) -> Option<&dyn DecoderBackend> {
        self.device_decoder.as_deref()
    }

    /// The image encoder's backend (its device, timings and memory plan); an error for a
    /// model loaded with [`Sam::load_decoder`].
    pub fn encoder_backend(&self) -> Result<&dyn EncoderBackend> {
        self.encoder()
    }

    pub fn from_weights(w: &dyn WeightSource) -> Result<Sam> {
        Sam::build(w, Some(ComputeDevice::Cpu), ComputeDevice::Cpu, None)
    }

    /// The model with the image encoder on `encoder_on` (none when None) and the prompt
    /// encoder and mask decoder on `decoder_on`. The CPU modules are built either way: they
    /// check the weights' shapes and decode the automatic mask generator's point batches.
    fn build(
        w: &dyn WeightSource,
        encoder_on: Option<ComputeDevice>,
        decoder_on: ComputeDevice,
        image_size: Option<usize>,
    ) -> Result<Sam> {
        let mut config = infer_config(w)?;
        if let Some(s) = image_size {
            config = config.at_image_size(s)?;
        }
        let (encoder, device_decoder) = match (encoder_on, decoder_on) {
            (Some(e), d) if e == d => backend::open_model(d, w, &config, true)?,
            (e, d) => {
                let enc = e
                    .map(|e| backend::open(e, w, &config.encoder))
                    .transpose()?;
                (enc, backend::open_model(d, w, &config, false)?.1)
            }
        };
        let prompt_encoder = PromptEncoder::load(w, &config)?;
        let decoder = MaskDecoder::load(w, &config)?;
        let dense_pe = prompt_encoder.dense_pe();
        let dim = config.prompt_embed_dim;
        let dense_pe_t = transpose(&dense_pe, dim, dense_pe.len() / dim.max(1)).into();
        Ok(Sam {
            config,
            encoder,
            device_decoder,
            fingerprint: None,
            prompt_encoder,
            decoder,
            dense_pe,
            dense_pe_t,
        })
    }

    /// The CPU image encoder; an error for a model loaded with [`Sam::load_decoder`].
    pub fn image_encoder(&self) -> Result<&ImageEncoder> {
        let e = self.encoder()?;
        e.cpu_encoder().ok_or_else(|| {
            Error::Unsupported(format!(
                "the image encoder runs on the {}, not the CPU",
                e.description()
            ))
        })
    }
    pub fn prompt_encoder(&self) -> &PromptEncoder {
        &self.prompt_encoder
    }
    pub fn mask_decoder(&self) -> &MaskDecoder {
        &self.decoder
    }
    /// [256, E, E], E the embedding side.
    pub fn dense_pe(&self) -> &[f32] {
        &self.dense_pe
    }

    /// The decoder's image side for prompts without a mask input, prepared once for any
    /// number of [`Sam::decode_points`] calls on this embedding.
    pub fn prepare_points(&self, features: &[f32]) -> Result<DecoderImage> {
        self.decoder.prepare_no_mask(
            features,
            self.dense_pe_t.clone(),
            self.prompt_encoder.no_mask_embed(),
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
        self.decode_points_where(image, points, &|_| true)
    }

    /// [`Sam::decode_points`] computing a point's masks only when `want_masks` accepts its
    /// three IoU predictions (else its `low_res` is empty): see
    /// [`MaskDecoder::decode_prepared_where`].
    pub fn decode_points_where(
        &self,
        image: &DecoderImage,
        points: &[[f32; 2]],
        want_masks: &(dyn Fn(&[f32]) -> bool + Sync),
    ) -> Result<Vec<DecoderOutput>> {
        let sparse: Vec<(Vec<f32>, usize)> = points
            .iter()
            .map(|q| self.prompt_encoder.encode_sparse(&[*q], &[1], None))
            .collect::<Result<_>>()?;
        let views: Vec<(&[f32], usize)> = sparse.iter().map(|(s, n)| (s.as_slice(), *n)).collect();
        let outs = self
            .decoder
            .decode_prepared_where(image, &views, true, want_masks)?;
        outs.iter().try_for_each(check_decoded)?;
        Ok(outs)
    }

    /// `set_image`: resize, normalise, pad and run the image encoder.
    pub fn embed(&self, img: &RgbImage) -> Result<ImageEmbedding> {
        Ok(self.embed_batch(&[img])?.remove(0))
    }

    /// Embeds several images in one call: one batched launch sequence on the GPU (a CUDA
    /// graph per batch size), image by image on the CPU. Equal to calling `embed` on each.
    pub fn embed_batch(&self, imgs: &[&RgbImage]) -> Result<Vec<ImageEmbedding>> {
        if imgs.is_empty() {
            return Ok(Vec::new());
        }
        let Some(enc) = self.encoder.as_deref() else {
            // A bad image is reported before the missing encoder, as the CPU path always did.
            for img in imgs {
                preprocess(img, self.config.encoder.img_size)?;
            }
            return self.encoder().map(|_| Vec::new());
        };
        let mut out = Vec::with_capacity(imgs.len());
        // A device copy is kept only where a device decoder will read it.
        let resident = self.device_decoder.is_some();
        for chunk in imgs.chunks(enc.max_batch()) {
            let embedded = match resident {
                true => enc.embed_resident(chunk)?,
                false => enc.embed(chunk)?.into_iter().map(|e| (e, None)).collect(),
            };
            for (img, ((features, input_size), device)) in chunk.iter().zip(embedded) {
                check_output("the image embedding", &features)?;
                out.push(ImageEmbedding {
                    features,
                    original_size: (img.height, img.width),
                    input_size,
                    device,
                });
            }
        }
        Ok(out)
    }

    /// Copies `emb.features` to the device decoder once (`emb.device`), so that later
    /// `predict`/`predict_batch` calls on it move no embedding; nothing on the CPU. Checks
    /// the embedding's shape.
    pub fn upload_embedding(&self, emb: &mut ImageEmbedding) -> Result<()> {
        if let Some(dec) = self.device_decoder.as_deref() {
            emb.device = Some(dec.upload(&emb.features)?);
        }
        Ok(())
    }

    /// Prompt encoder inputs in the 1024 frame, as `SamPredictor.predict` transforms them.
    pub(crate) fn encode_prompt(
        &self,
        emb: &ImageEmbedding,
        p: &Prompt,
    ) -> Result<(Vec<f32>, usize, Vec<f32>)> {
        let (pts, bx) = self.input_frame(emb, p)?;
        self.prompt_encoder
            .encode(&pts, &p.labels, bx, p.mask_input.as_deref())
    }

    /// The sparse half of [`Sam::encode_prompt`] (`(sparse [N, dim], N)`), for prompts that
    /// share the no-mask dense embedding: their 4 MB dense plane would be built and dropped.
    pub(crate) fn encode_sparse_prompt(
        &self,
        emb: &ImageEmbedding,
        p: &Prompt,
    ) -> Result<(Vec<f32>, usize)> {
        let (pts, bx) = self.input_frame(emb, p)?;
        self.prompt_encoder.encode_sparse(&pts, &p.labels, bx)
    }

    /// A checked prompt's points and box in the input frame.
    #[allow(clippy::type_complexity)]
    fn input_frame(
        &self,
        emb: &ImageEmbedding,
        p: &Prompt,
    ) -> Result<(Vec<[f32; 2]>, Option<[f32; 4]>)> {
        self.check_prompt(p)?;
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
        Ok((pts, bx))
    }

    /// Checked prompts as the device decoder takes them.
    fn device_prompts<'a>(
        &self,
        emb: &ImageEmbedding,
        prompts: &'a [Prompt],
    ) -> Result<Vec<DevicePrompt<'a>>> {
        prompts
            .iter()
            .map(|p| {
                let (pts, bx) = self.input_frame(emb, p)?;
                Ok(DevicePrompt {
                    tokens: sparse_tokens(&pts, &p.labels, bx)?,
                    mask: p.mask_input.as_deref(),
                })
            })
            .collect()
    }

    /// `predict_batch` on the device decoder: decoding and post-processing on the device,
    /// from the embedding's device copy when it has one.
    fn predict_device(
        &self,
        dec: &dyn DecoderBackend,
        emb: &ImageEmbedding,
        prompts: &[Prompt],
    ) -> Result<Vec<Prediction>> {
        let device_prompts = self.device_prompts(emb, prompts)?;
        let multimask: Vec<bool> = prompts.iter().map(|p| p.multimask).collect();
        let input = DecoderEmbedding {
            host: &emb.features,
            device: emb.device.as_ref(),
        };
        let post = PostFrame {
            frame: self.mask_frame(),
            input_size: emb.input_size,
            orig_size: emb.original_size,
        };
        let (height, width) = emb.original_size;
        dec.predict(input, &device_prompts, &multimask, post)?
            .into_iter()
            .map(|o| {
                check_output("the mask decoder's IoU scores", &o.iou)?;
                check_output("the mask decoder's low-res mask logits", &o.low_res)?;
                Ok(Prediction {
                    num_masks: o.iou.len(),
                    height,
                    width,
                    masks: o.masks,
                    scores: o.iou,
                    low_res_logits: o.low_res,
                })
            })
            .collect()
    }

    /// Decodes `prompts` on the device decoder, each sliced per its multimask flag.
    fn decode_device(
        &self,
        dec: &dyn DecoderBackend,
        emb: &ImageEmbedding,
        prompts: &[Prompt],
    ) -> Result<Vec<DecoderOutput>> {
        let device_prompts = self.device_prompts(emb, prompts)?;
        let outs = dec.decode(&emb.features, &device_prompts)?;
        Ok(outs
            .into_iter()
            .zip(prompts)
            .map(|(o, p)| {
                let num_masks = o.iou.len();
                let full = DecoderOutput {
                    low_res: o.low_res,
                    iou: o.iou,
                    num_masks,
                };
                full.slice(p.multimask)
            })
            .collect())
    }

    pub(crate) fn finish(&self, emb: &ImageEmbedding, out: DecoderOutput) -> Result<Prediction> {
        check_decoded(&out)?;
        let (h, w) = emb.original_size;
        let masks = self.mask_frame().postprocess_threshold(
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
        if let Some(dec) = self.device_decoder.as_deref() {
            let prompts = std::slice::from_ref(prompt);
            return Ok(self.predict_device(dec, emb, prompts)?.remove(0));
        }
        let out = self.decode_one(emb, prompt)?;
        self.finish(emb, out)
    }

    /// One prompt through the prompt encoder and mask decoder: the low-res half that
    /// `predict` and `predict_logits` share (each checks the outputs once).
    pub(crate) fn decode_one(
        &self,
        emb: &ImageEmbedding,
        prompt: &Prompt,
    ) -> Result<DecoderOutput> {
        if let Some(dec) = self.device_decoder.as_deref() {
            let prompts = std::slice::from_ref(prompt);
            return Ok(self.decode_device(dec, emb, prompts)?.remove(0));
        }
        if prompt.mask_input.is_none() {
            // The no-mask dense embedding is one vector per channel: the prepared path adds it
            // without building the 4 MB plane (the same values and bits as `forward`).
            let (sparse, n) = self.encode_sparse_prompt(emb, prompt)?;
            let image = self.prepare_points(&emb.features)?;
            let mut out =
                self.decoder
                    .decode_prepared(&image, &[(&sparse, n)], prompt.multimask)?;
            return Ok(out.remove(0));
        }
        // `forward`'s computation with the PE transposed once at load (same bits).
        let (sparse, n, dense) = self.encode_prompt(emb, prompt)?;
        let image = self
            .decoder
            .prepare_dense(&emb.features, self.dense_pe_t.clone(), &dense)?;
        drop(dense);
        let mut out = self
            .decoder
            .decode_prepared(&image, &[(&sparse, n)], prompt.multimask)?;
        Ok(out.remove(0))
    }

    /// Decodes many prompts against one embedding in one call. The multimask flag is taken
    /// per prompt; prompts are grouped so each group shares the image-side work.
    pub fn predict_batch(
        &self,
        emb: &ImageEmbedding,
        prompts: &[Prompt],
    ) -> Result<Vec<Prediction>> {
        if let Some(dec) = self.device_decoder.as_deref() {
            return self.predict_device(dec, emb, prompts);
        }
        if prompts.iter().all(|p| p.mask_input.is_none()) {
            // One prepared image for all (as `predict_independent`): no 4 MB dense plane per
            // prompt to build and compare.
            return self.predict_independent(emb, prompts);
        }
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

/// A prediction whose masks are the upscaled f32 logits rather than thresholded: what the
/// official `predict(..., return_logits=True)` returns, for callers that choose their own
/// threshold or blend masks.
pub struct LogitsPrediction {
    pub num_masks: usize,
    pub height: usize,
    pub width: usize,
    /// [C, H, W] logits at the original size (`> 0.0` gives [`Prediction::masks`]).
    pub logits: Vec<f32>,
    pub scores: Vec<f32>,
    /// [C, S, S] logits in the padded input frame (S = [`Sam::low_res_side`]).
    pub low_res_logits: Vec<f32>,
}

impl Sam {
    /// [`Sam::predict`] keeping the full-size logits (`return_logits=True`); thresholding
    /// them at 0.0 gives `predict`'s masks bit for bit.
    pub fn predict_logits(
        &self,
        emb: &ImageEmbedding,
        prompt: &Prompt,
    ) -> Result<LogitsPrediction> {
        let out = self.decode_one(emb, prompt)?;
        check_decoded(&out)?;
        let logits = self.mask_frame().postprocess(
            &out.low_res,
            out.num_masks,
            emb.input_size,
            emb.original_size,
        )?;
        Ok(LogitsPrediction {
            num_masks: out.num_masks,
            height: emb.original_size.0,
            width: emb.original_size.1,
            logits,
            scores: out.iou,
            low_res_logits: out.low_res,
        })
    }
}
