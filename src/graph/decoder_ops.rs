//! The mask decoder's ops in the schedule vocabulary ([`super::ops::Op`]): typed parameters
//! naming their buffers and weights, and the host-side kernel selection of each family.

use crate::graph::buffer::BufId;
use crate::graph::weights::WeightId;

/// The three attentions of the two-way transformer, one kernel variant each
/// (`kernels/attn_decoder.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnDecoderKind {
    /// Prompt tokens to prompt tokens: fp32 q, k, v and output.
    SelfAttn,
    /// Prompt tokens to the image: fp32 q, fp16 k/v (image-side GEMM outputs), fp32 output.
    TokenToImage,
    /// Token->image split over the keys ([`t2i_chunks`] chunks): writes each chunk's
    /// softmax state to fp32 scratch ([`AttnDecoderShape::partial_len`]), which an
    /// [`AttnDecoderCombine`] merges into the output.
    TokenToImageSplit,
    /// The image to prompt tokens: fp16 q, fp32 k/v, fp16 output (the out_proj GEMM's A).
    ImageToToken,
}

/// Head dims with a kernel instantiation (the decoder's 32 and 16, and 64).
pub const ATTN_DECODER_HEAD_DIMS: [usize; 3] = [16, 32, 64];

impl AttnDecoderKind {
    /// Threads that share one (prompt, query, head): a warp splits the image's keys.
    pub fn lanes(self) -> usize {
        match self {
            AttnDecoderKind::TokenToImage | AttnDecoderKind::TokenToImageSplit => 32,
            AttnDecoderKind::SelfAttn | AttnDecoderKind::ImageToToken => 1,
        }
    }

    /// `attn_decoder_{self|t2i|i2t}_d{head_dim}_{output dtype}`.
    pub fn entry_point(self, head_dim: usize) -> String {
        let (v, t) = match self {
            AttnDecoderKind::SelfAttn => ("self", "f32"),
            AttnDecoderKind::TokenToImage => ("t2i", "f32"),
            AttnDecoderKind::TokenToImageSplit => ("t2i_split", "f32"),
            AttnDecoderKind::ImageToToken => ("i2t", "f16"),
        };
        format!("attn_decoder_{v}_d{head_dim}_{t}")
    }

    /// The token->image kernel for `lk` image keys: split over the keys where that makes
    /// more than one chunk. A function of `lk` alone, never of the batch, so that a prompt
    /// decodes bit-identically in any batch.
    pub fn token_to_image(lk: usize) -> Self {
        if t2i_chunks(lk) > 1 {
            AttnDecoderKind::TokenToImageSplit
        } else {
            AttnDecoderKind::TokenToImage
        }
    }
}

/// Keys per chunk the split aims at: 4 per lane of a warp, so that a lane's own keys
/// still outweigh the warp's shuffle merge.
pub const T2I_CHUNK_KEYS: usize = 128;
/// At most this many chunks: 4096 keys (a 1024 px image) make 32, which gives one point
/// (7 tokens, 8 heads) 448 blocks of 4 warps, over 3 per SM of an H100.
pub const T2I_MAX_CHUNKS: usize = 32;

/// Key chunks of the split token->image attention over `lk` keys, each of
/// `ceil(lk / chunks)` keys (the last may be shorter or empty).
pub fn t2i_chunks(lk: usize) -> usize {
    lk.div_ceil(T2I_CHUNK_KEYS).clamp(1, T2I_MAX_CHUNKS)
}

/// `attn_decoder_combine_d{head_dim}_f32`: the split's second pass.
pub fn attn_decoder_combine_entry(head_dim: usize) -> String {
    format!("attn_decoder_combine_d{head_dim}_f32")
}

/// q `[batch or 1, lq, heads*head_dim]`, k and v `[batch or 1, lk, heads*head_dim]`, out
/// `[batch, lq, heads*head_dim]`, all contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDecoderShape {
    pub kind: AttnDecoderKind,
    pub batch: usize,
    pub lq: usize,
    pub lk: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub q_shared: bool,
    pub kv_shared: bool,
}

impl AttnDecoderShape {
    /// `heads * head_dim`: the width of every q, k, v and output row.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// fp32 scratch of the split: per (prompt, query, head, chunk) the max, the sum and
    /// `head_dim` accumulators.
    pub fn partial_len(&self) -> usize {
        self.batch * self.lq * self.heads * t2i_chunks(self.lk) * (self.head_dim + 2)
    }
}

/// The decoder's token matrix: per prompt the output tokens (IoU, masks) then the sparse
/// prompt embeddings of its points and box corners.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderTokens {
    /// fp32 `[batch * sparse, 2]` input-frame coordinates, i32 `[batch * sparse]` kinds.
    pub coords: BufId,
    pub kinds: BufId,
    pub gauss: WeightId,
    pub table: WeightId,
    /// fp32 `[prefix, dim]`: iou_token then mask_tokens.
    pub prefix: WeightId,
    /// fp32 `[batch, prefix + sparse, dim]`.
    pub out: BufId,
    pub batch: usize,
    pub sparse: usize,
    pub prefix_rows: usize,
    pub dim: usize,
    pub input_size: usize,
}

/// The prompt encoder's mask path: `[batch, 4g, 4g]` logits to `[batch, dim, g, g]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskDownscaling {
    pub masks: BufId,
    pub packed: WeightId,
    pub out: BufId,
    pub batch: usize,
    pub grid: usize,
    pub dim: usize,
}

/// Image embedding + dense prompt, token-major, with the fp16 GEMM operands.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTokens {
    /// fp32 `[dim, hw]`.
    pub embedding: BufId,
    /// fp32 `[sides, dim, hw]`, or `no_mask` broadcast when None.
    pub dense: Option<BufId>,
    pub no_mask: WeightId,
    /// fp32 `[hw, dim]`.
    pub pe: WeightId,
    /// fp32 `[batch, hw, dim]`, when written.
    pub out32: Option<BufId>,
    /// fp16 `[sides, hw, dim]`: the tokens, and the tokens plus PE, when written.
    pub out16: Option<BufId>,
    pub outpe16: Option<BufId>,
    /// 1 (one image side shared by every prompt) or `batch`.
    pub sides: usize,
    pub batch: usize,
    pub hw: usize,
    pub dim: usize,
}

/// Linears one `token_linear` launch runs (`TL_MAX_JOBS` in kernels/token_linear.cu).
pub const TL_MAX_JOBS: usize = 8;

/// Blocks a `token_linear` launch needs before four columns per warp pay: two 8-warp
/// blocks on each of an H100's 132 SMs, the occupancy its issue rate needs.
const TL_FILL_BLOCKS: usize = 2 * 132;

/// Output columns per warp of `token_linear` (kernels/token_linear.cu). One column makes the
/// most blocks, which a few rows (one prompt) need to spread over the SMs; four columns
/// read each staged input value for four outputs, a third of the instructions per output
/// when many rows fill the machine anyway. Both sum every output in the same order, so the
/// choice (which depends on the row count, hence the batch) changes no bit of the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLinearVariant {
    Cols1,
    Cols4,
}

impl TokenLinearVariant {
    /// The variant for `jobs` Linears of `m` rows and `n` outputs in one launch.
    pub fn select(m: usize, n: usize, jobs: usize) -> Self {
        let blocks = n.div_ceil(Self::Cols4.block_n()) * m.div_ceil(TL_BLOCK_M) * jobs;
        if blocks >= TL_FILL_BLOCKS {
            Self::Cols4
        } else {
            Self::Cols1
        }
    }

    /// Output columns per block (8 warps).
    pub fn block_n(self) -> usize {
        match self {
            Self::Cols1 => 8,
            Self::Cols4 => 32,
        }
    }

    pub fn entry_point(self) -> &'static str {
        match self {
            Self::Cols1 => "token_linear_c1_f32",
            Self::Cols4 => "token_linear_c4_f32",
        }
    }
}

/// Rows per `token_linear` block.
pub const TL_BLOCK_M: usize = 8;

/// fp32 nn.Linear on token rows, up to [`TL_MAX_JOBS`] of one shape in one launch:
/// `out (+)= act((a + a2) @ w^T + bias)` for each job.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLinear {
    pub a: BufId,
    pub lda: usize,
    pub a2: Option<BufId>,
    pub ldo: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub relu: bool,
    pub accumulate: bool,
    /// A LayerNorm of the input rows first (the post-norm before this Linear).
    pub norm: Option<TokenNorm>,
    pub jobs: Vec<LinearJob>,
}

/// The LayerNorm a [`TokenLinear`] applies to its input rows: its weights, and the buffer
/// that receives the first job's normalised rows (the residual stream from here on), if
/// any reads them later.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenNorm {
    pub gamma: WeightId,
    pub beta: WeightId,
    pub eps: f32,
    pub out: Option<BufId>,
}

impl TokenLinear {
    pub fn variant(&self) -> TokenLinearVariant {
        TokenLinearVariant::select(self.m, self.n, self.jobs.len())
    }

    /// The buffers the jobs write, each once.
    pub fn job_outs(&self) -> Vec<BufId> {
        let mut outs: Vec<BufId> = self.norm.iter().flat_map(|n| n.out).collect();
        for j in &self.jobs {
            if !outs.contains(&j.out) {
                outs.push(j.out);
            }
        }
        outs
    }
}

/// One linear of a [`TokenLinear`]: its first input row in `a` (and `a2`, when it adds the
/// query PE), its weights, and where its rows go.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearJob {
    pub a_offset: usize,
    pub with_a2: bool,
    pub weight: WeightId,
    pub bias: WeightId,
    pub out: BufId,
    pub out_offset: usize,
}

/// Multi-head attention without bias; q/k/v contiguous `[.., heads * head_dim]` rows.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnDecoder {
    pub q: BufId,
    pub k: BufId,
    pub v: BufId,
    pub out: BufId,
    pub shape: AttnDecoderShape,
}

/// The split token->image attention's second pass: `partial` (what the
/// [`AttnDecoderKind::TokenToImageSplit`] pass wrote) merged chunk by chunk into `out`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnDecoderCombine {
    pub partial: BufId,
    pub out: BufId,
    pub shape: AttnDecoderShape,
}

/// In-place fp32 LayerNorm of rows with optional fp16 copies (plain and plus PE).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormPe {
    pub x: BufId,
    pub gamma: WeightId,
    pub beta: WeightId,
    /// `[pe_rows, dim]`, row r of x uses row r % pe_rows.
    pub pe: Option<WeightId>,
    pub out16: Option<BufId>,
    pub outpe16: Option<BufId>,
    pub rows: usize,
    pub dim: usize,
    pub pe_rows: usize,
    pub eps: f32,
}

/// The first upscaling's 2x2 scatter + LayerNorm2d + GELU.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2x2LnGelu {
    /// fp16 `[batch * grid^2, 4 * channels]` (the GEMM's sub-pixel-blocked output).
    pub u: BufId,
    pub gamma: WeightId,
    pub beta: WeightId,
    /// fp16 NHWC `[batch, 2 grid, 2 grid, channels]`.
    pub out: BufId,
    pub batch: usize,
    pub grid: usize,
    pub channels: usize,
    pub eps: f32,
}

/// The second upscaling's 2x2 scatter fused with the hypernetwork mask product.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2x2Masks {
    /// fp16 `[batch * grid^2, 4 * channels]`, GELU applied.
    pub u: BufId,
    /// fp32 `[batch, masks, channels]`.
    pub hyper: BufId,
    /// fp32 `[batch, masks, 2 grid, 2 grid]`.
    pub out: BufId,
    pub batch: usize,
    pub grid: usize,
    pub channels: usize,
    pub masks: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_to_image_splits_large_images_into_whole_chunks() {
        // 1024 px (64x64 keys): 32 chunks of 128; 128 px (8x8): one chunk, unsplit.
        assert_eq!(t2i_chunks(4096), 32);
        let kind = AttnDecoderKind::token_to_image;
        assert_eq!(kind(4096), AttnDecoderKind::TokenToImageSplit);
        assert_eq!(kind(64), AttnDecoderKind::TokenToImage);
        assert_eq!(kind(128), AttnDecoderKind::TokenToImage);
        assert_eq!(kind(129), AttnDecoderKind::TokenToImageSplit);
        // No split leaves a chunk without keys.
        for lk in 1..20_000 {
            let c = t2i_chunks(lk);
            assert!((c - 1) * lk.div_ceil(c) < lk, "lk {lk}: {c} chunks");
        }
    }
}
