//! The decoder schedule's dimensions and the pieces of it that the per-prompt schedule
//! (`mask_decoder`) and the per-image prep (`decoder_image`) share: layer 0's image side and
//! the image-side GEMM node.

use crate::error::{Error, Result};
use crate::graph::buffer::{BufId, DType, Role};
use crate::graph::decoder_ops::ATTN_DECODER_HEAD_DIMS;
use crate::graph::ops::{Gemm, GemmEpilogue, Op};
use crate::graph::schedule::Graph;
use crate::io::config::SamConfig;

/// The decoder's dimensions, from the model configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderDims {
    pub dim: usize,
    pub heads: usize,
    pub depth: usize,
    pub mlp: usize,
    pub masks: usize,
    pub iou_hidden: usize,
    pub grid: usize,
    pub input_size: usize,
}

impl DecoderDims {
    /// The dimensions, refused where no kernel fits them.
    pub fn new(cfg: &SamConfig) -> Result<Self> {
        let d = DecoderDims {
            dim: cfg.prompt_embed_dim,
            heads: cfg.transformer_heads,
            depth: cfg.transformer_depth,
            mlp: cfg.transformer_mlp_dim,
            masks: cfg.num_mask_tokens,
            iou_hidden: cfg.iou_head_hidden_dim,
            grid: cfg.encoder.grid(),
            input_size: cfg.encoder.img_size,
        };
        let fits = cfg.mask_in_chans == 16
            && d.heads > 0
            && d.dim.is_multiple_of(16 * d.heads)
            && ATTN_DECODER_HEAD_DIMS.contains(&(d.dim / d.heads))
            && ATTN_DECODER_HEAD_DIMS.contains(&(d.dim / 2 / d.heads))
            && d.depth > 0
            && d.masks > 0
            && d.grid > 0;
        if !fits {
            return Err(Error::Unsupported(format!(
                "the CUDA mask decoder needs a width divisible by 16 x heads with head dims in \
                 {ATTN_DECODER_HEAD_DIMS:?}, 16 mask channels and at least one layer; this \
                 model has width {}, {} heads, {} mask channels, {} layers",
                d.dim, d.heads, cfg.mask_in_chans, d.depth
            )));
        }
        Ok(d)
    }

    pub fn hw(&self) -> usize {
        self.grid * self.grid
    }

    /// Rows before the sparse tokens: the IoU token and the mask tokens.
    pub fn prefix(&self) -> usize {
        1 + self.masks
    }

    /// Side of the low-res masks and mask inputs.
    pub fn low_res(&self) -> usize {
        4 * self.grid
    }
}

/// Layer 0's image-side projections, fp16 `[hw, dim / 2]` each: token->image's keys and
/// values and image->token's queries. They depend on the image alone (without a mask input
/// the dense prompt is the same for every prompt), so the decoder computes them once per
/// image, not once per decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer0Side {
    pub t2i_k: BufId,
    pub t2i_v: BufId,
    pub i2t_q: BufId,
}

impl Layer0Side {
    /// The buffers in the order the decoder lays them out in its one allocation.
    pub fn buffers(&self) -> [BufId; 3] {
        [self.t2i_k, self.t2i_v, self.i2t_q]
    }
}

/// Layer 0's image-side buffers as externals of `gr`.
pub(crate) fn layer0_externals(gr: &mut Graph<Op>, d: &DecoderDims) -> Layer0Side {
    let len = d.hw() * d.dim / 2;
    let [t2i_k, t2i_v, i2t_q] = [
        "layers.0.cross_attn_token_to_image.k",
        "layers.0.cross_attn_token_to_image.v",
        "layers.0.cross_attn_image_to_token.q",
    ]
    .map(|n| gr.buffer(n, DType::F16, len, Role::External));
    Layer0Side {
        t2i_k,
        t2i_v,
        i2t_q,
    }
}

/// fp16 tensor-core Linear `{name}` on image rows: `out = a @ w^T + b` (+ epilogue).
pub(crate) fn image_gemm(
    gr: &mut Graph<Op>,
    name: &str,
    (a, out): (BufId, BufId),
    (m, n, k): (usize, usize, usize),
    epilogue: GemmEpilogue,
) {
    let gemm = Gemm {
        a,
        weight: gr.weights.id(format!("{name}.weight"), DType::F16, n * k),
        bias: Some(gr.weights.id(format!("{name}.bias"), DType::F32, n)),
        out,
        epilogue,
        m,
        n,
        k,
        in_scale: 1.0,
        out_scale: 1.0,
        row_scale: None,
    };
    gr.add(name, Op::Gemm(gemm));
}
