//! The mask decoder's folded cross attentions (`attn_fold_t2i`, `attn_fold_i2t`) in the
//! schedule vocabulary: the image-side projections of the later layers reassociated onto
//! the prompt tokens, as the CPU's `cpu/ops/folded_attention.rs` does, so that no
//! per-prompt image-side GEMM runs.
//!
//! Every folded token tensor is fp32 `[batch, tokens, heads, dim]`: row `(b, t, h)` at
//! `((b * tokens + t) * heads + h) * dim`, `dim` the image token width (embedding_dim).
//! - token->image: `q'[b,t,h] = q_h[t] Wk_h` (the token side folds q_proj into it), then
//!   `y[b,t,h] = softmax_j(scale * q'[b,t,h] . xpe[j]) @ x` over the `hw` image rows; the
//!   value and output projections run on `y` afterwards (token side).
//! - image->token: `k'[b,t,h] = Wq_h^T k_h[t]`, `v''[b,t,h] = Wo_h v_h[t]` (+ `Wo_h bv_h`),
//!   `cb[b,t,h] = bq_h . k_h[t]`; then for every image row j
//!   `keys[b,j] += bias + sum_h sum_t softmax_t(scale * (xpe[j] . k'[b,t,h] + cb[b,t,h])) v''[b,t,h]`.
//!
//! `scale = 1 / sqrt(head_dim)` of the unfolded attention (internal width / heads), as the
//! official `Attention` divides by `math.sqrt(c_per_head)`.

use crate::graph::buffer::BufId;
use crate::graph::weights::WeightId;

/// Image token widths with a folded kernel instantiation (SAM's prompt_embed_dim is 256).
pub const FOLD_DIMS: [usize; 2] = [128, 256];
/// Most tokens per prompt image->token folds: each head's softmax over the tokens is one
/// register tile (a wider prompt runs the unfolded path).
pub const FOLD_I2T_MAX_TOKENS: usize = 32;
/// Image rows per chunk the split token->image fold aims at.
pub const FOLD_CHUNK_KEYS: usize = 256;
/// At most this many chunks (4,096 image rows at 1024 px make 16).
pub const FOLD_MAX_CHUNKS: usize = 16;

/// Image-row chunks the token->image fold splits over `hw` rows, each of
/// `ceil(hw / chunks)` rows (the last may be shorter). A function of `hw` alone, never of
/// the batch, so that a prompt decodes bit-identically in any batch.
pub fn fold_chunks(hw: usize) -> usize {
    hw.div_ceil(FOLD_CHUNK_KEYS).clamp(1, FOLD_MAX_CHUNKS)
}

/// Pass 1's kernel for image token width `dim` (one of [`FOLD_DIMS`]).
pub fn attn_fold_t2i_entry(dim: usize) -> String {
    format!("attn_fold_t2i_d{dim}_f16")
}

/// Pass 2's kernel (the chunks' merge) for image token width `dim`.
pub fn attn_fold_t2i_combine_entry(dim: usize) -> String {
    format!("attn_fold_t2i_combine_d{dim}_f32")
}

/// The shape of one folded attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnFoldShape {
    pub batch: usize,
    /// Prompt tokens per prompt.
    pub tokens: usize,
    pub heads: usize,
    /// Image rows (64 x 64 at 1024 px).
    pub hw: usize,
    /// Image token width: every folded row and image row has `dim` elements.
    pub dim: usize,
    /// The unfolded attention's per-head width: the softmax scale is `1 / sqrt(head_dim)`.
    pub head_dim: usize,
    /// One image side (`xpe`, `x`) for every prompt (batch stride 0), or one per prompt.
    pub image_shared: bool,
}

impl AttnFoldShape {
    /// Folded rows per prompt: `tokens * heads`.
    pub fn rows(&self) -> usize {
        self.tokens * self.heads
    }

    /// `1 / sqrt(head_dim)`, the square root in f64 rounded once (official `math.sqrt`).
    pub fn scale(&self) -> f32 {
        (1.0 / (self.head_dim as f64).sqrt()) as f32
    }

    /// Whether the folded kernels take this shape (else the decoder runs unfolded).
    pub fn t2i_fits(&self) -> bool {
        FOLD_DIMS.contains(&self.dim) && self.head_dim > 0
    }

    pub fn i2t_fits(&self) -> bool {
        self.t2i_fits() && self.tokens <= FOLD_I2T_MAX_TOKENS
    }

    /// Whether folding does less work than the unfolded attention, per prompt and per
    /// cross attention (both directions cost the same). Folded: two token-side products
    /// with per-head `[dim, dim]` weights (`2 * tokens * heads * dim^2` multiply-adds) and
    /// the kernel's two passes over the image rows (`2 * tokens * heads * hw * dim`).
    /// Unfolded: two image-side projections (`2 * hw * dim * c`, `c = heads * head_dim`),
    /// two token-side ones (`2 * tokens * dim * c`) and the attention (`2 * tokens * hw * c`).
    /// With SAM's widths a one-point prompt folds from about 180 image rows up (so at
    /// 1024 px, not at 128 px), and a prompt of 18 tokens or more never folds. A function
    /// of the tokens and the widths, never of the batch, so a prompt decodes
    /// bit-identically in any batch.
    pub fn pays(&self) -> bool {
        let (t, h, hw, d) = (self.tokens, self.heads, self.hw, self.dim);
        let c = self.heads * self.head_dim;
        let folded = 2 * t * h * d * (d + hw);
        let unfolded = 2 * hw * d * c + 2 * t * c * (d + hw);
        folded < unfolded
    }

    /// fp32 scratch of the token->image split: per (prompt, folded row, chunk) the max,
    /// the sum and `dim` accumulators, `[batch, rows, chunks, dim + 2]`.
    pub fn partial_len(&self) -> usize {
        self.batch * self.rows() * fold_chunks(self.hw) * (self.dim + 2)
    }

    /// Elements of a folded token tensor `[batch, tokens, heads, dim]`.
    pub fn folded_len(&self) -> usize {
        self.batch * self.rows() * self.dim
    }

    /// Elements of the image side `[1 or batch, hw, dim]`.
    pub fn image_len(&self) -> usize {
        (if self.image_shared { 1 } else { self.batch }) * self.hw * self.dim
    }
}

/// The image->token folded kernel for image width `dim` (one of [`FOLD_DIMS`]).
pub fn attn_fold_i2t_entry(dim: usize) -> String {
    format!("attn_fold_i2t_d{dim}_f16")
}

/// Token->image folded, pass 1 (`attn_fold_t2i_f16`): each chunk's softmax state of
/// `q'` (fp32) over `xpe`, `x` (fp16) into `partial`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnFoldT2i {
    pub qf: BufId,
    pub xpe: BufId,
    pub x: BufId,
    pub partial: BufId,
    pub shape: AttnFoldShape,
}

/// Token->image folded, pass 2 (`attn_fold_t2i_combine_f32`): the chunks merged into `y`.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnFoldT2iCombine {
    pub partial: BufId,
    pub y: BufId,
    pub shape: AttnFoldShape,
}

/// Image->token folded (`attn_fold_i2t_f16`), residual added into the fp32 image stream.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnFoldI2t {
    /// fp16 `[1 or batch, hw, dim]`: image tokens plus PE.
    pub xpe: BufId,
    /// fp32 `[batch, tokens, heads, dim]`.
    pub kf: BufId,
    /// fp32 `[batch, tokens, heads]`.
    pub cb: BufId,
    /// fp32 `[batch, tokens, heads, dim]`.
    pub vf: BufId,
    /// fp32 `[dim]`: out_proj's bias.
    pub bias: WeightId,
    /// fp32 `[batch, hw, dim]`, updated in place.
    pub keys: BufId,
    pub shape: AttnFoldShape,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_chunks_cover_the_image_in_whole_chunks() {
        assert_eq!(fold_chunks(4096), 16);
        assert_eq!(fold_chunks(64), 1);
        assert_eq!(fold_chunks(257), 2);
        for hw in 1..20_000 {
            let c = fold_chunks(hw);
            assert!((c - 1) * hw.div_ceil(c) < hw, "hw {hw}: {c} chunks");
        }
    }

    fn sam(tokens: usize, hw: usize) -> AttnFoldShape {
        AttnFoldShape {
            batch: 3,
            tokens,
            heads: 8,
            hw,
            dim: 256,
            head_dim: 16,
            image_shared: false,
        }
    }

    #[test]
    fn folding_pays_for_few_tokens_on_large_images_only() {
        // One point (7 tokens): unfolded at 128 px (8x8) and 192 px, folded at 256 px up.
        assert!(!sam(7, 64).pays());
        assert!(!sam(7, 144).pays());
        assert!(sam(7, 256).pays());
        assert!(sam(7, 4096).pays());
        // 16 tokens still fold at 1024 px, 17 do not, and 18 never do.
        assert!(sam(16, 4096).pays());
        assert!(!sam(17, 4096).pays());
        assert!(!sam(18, 1 << 20).pays());
        // The batch never enters the choice.
        let mut s = sam(7, 4096);
        s.batch = 1;
        assert!(s.pays());
    }
}
