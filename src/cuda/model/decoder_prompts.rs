//! What the device decoder is asked for: prompts, the schedule key of a batch of them, the
//! buckets a call's prompts are decoded in, and the masks that come back.

use crate::cpu::ops::prompt_encoder::KIND_NOT_A_POINT;

/// Most prompts one run decodes (an arena and a captured graph per shape). Larger calls
/// run in chunks of this size; smaller remainders at the power-of-two batch that holds
/// them, so the buckets are 1, 2, 4, ..., 64. No kernel's tiles or splits depend on the
/// batch, so a prompt's result does not depend on its bucket.
pub const MAX_DECODE_BATCH: usize = 64;

/// What one schedule decodes: `batch` prompts of `sparse` tokens each, with or without mask
/// inputs. Packed into the executor's shape key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderKey {
    pub batch: usize,
    pub sparse: usize,
    pub mask_input: bool,
}

impl DecoderKey {
    pub fn pack(self) -> usize {
        (self.sparse << 16) | (self.batch << 1) | self.mask_input as usize
    }

    pub fn unpack(key: usize) -> Self {
        DecoderKey {
            batch: (key >> 1) & 0x7fff,
            sparse: key >> 16,
            mask_input: key & 1 == 1,
        }
    }
}

/// One prompt for the device decoder: its sparse tokens (input-frame coordinates and kinds,
/// `cpu::ops::prompt_encoder::sparse_tokens`) and its mask input, if any.
#[derive(Clone, Debug, Default)]
pub struct DevicePrompt<'a> {
    pub tokens: Vec<([f32; 2], i32)>,
    pub mask: Option<&'a [f32]>,
}

/// A [`DevicePrompt`] that owns its mask input, for callers that build prompts (benchmarks,
/// profiles) rather than borrow them.
#[derive(Clone, Debug, Default)]
pub struct OwnedPrompt {
    pub tokens: Vec<([f32; 2], i32)>,
    pub mask: Option<Vec<f32>>,
}

impl OwnedPrompt {
    /// One foreground point at `xy` (input frame), as `sparse_tokens` encodes it: the
    /// point (kind = label 1 + 1), then the padding point.
    pub fn point(xy: [f32; 2]) -> OwnedPrompt {
        OwnedPrompt {
            tokens: vec![(xy, 1 + 1), ([0.0, 0.0], KIND_NOT_A_POINT)],
            mask: None,
        }
    }

    pub fn as_view(&self) -> DevicePrompt<'_> {
        DevicePrompt {
            tokens: self.tokens.clone(),
            mask: self.mask.as_deref(),
        }
    }
}

/// Every mask token's output for one prompt: logits `[masks, S, S]` and IoU `[masks]`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedMasks {
    pub low_res: Vec<f32>,
    pub iou: Vec<f32>,
}

/// Where `predict` maps masks: the model's frame, the resized input size and the original
/// size of the image (h, w).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostFrame {
    pub frame: crate::cpu::ops::postprocess::MaskFrame,
    pub input_size: (usize, usize),
    pub orig_size: (usize, usize),
}

/// One prompt's requested masks (the three multimask outputs, or the single one): low-res
/// logits `[n, S, S]`, IoU `[n]` and the thresholded masks `[n, H, W]` at the original size.
#[derive(Clone, Debug, PartialEq)]
pub struct PredictedMasks {
    pub low_res: Vec<f32>,
    pub iou: Vec<f32>,
    pub masks: Vec<bool>,
}

/// The mask tokens a prompt's prediction keeps, as the official predictor slices them:
/// the multimask outputs 1.., or the single-mask output 0.
pub fn requested_masks(multimask: bool, masks: usize) -> std::ops::Range<usize> {
    if multimask {
        1..masks
    } else {
        0..1.min(masks)
    }
}

/// The batches `prompts` are decoded in: prompts that share a schedule (token count and
/// whether they carry a mask input), in chunks of at most [`MAX_DECODE_BATCH`], each run at
/// the power-of-two batch that holds it so that few schedules serve every request.
pub fn plan_batches(prompts: &[DevicePrompt]) -> Vec<(DecoderKey, Vec<usize>)> {
    let mut groups: Vec<((usize, bool), Vec<usize>)> = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let k = (p.tokens.len(), p.mask.is_some());
        match groups.iter_mut().find(|g| g.0 == k) {
            Some(g) => g.1.push(i),
            None => groups.push((k, vec![i])),
        }
    }
    groups
        .into_iter()
        .flat_map(|((sparse, mask_input), idx)| {
            idx.chunks(MAX_DECODE_BATCH)
                .map(|c| {
                    let key = DecoderKey {
                        batch: c.len().next_power_of_two(),
                        sparse,
                        mask_input,
                    };
                    (key, c.to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}
