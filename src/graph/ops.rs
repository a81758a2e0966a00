//! The op vocabulary of the CUDA schedules: one variant per kernel family, with typed
//! parameters that name their buffers and weights, and the one function per family that
//! picks the kernel entry point. An op's name is its entry point without the dtype and
//! variant suffix (`gemm_bias_gelu` launches `gemm_bias_gelu_f16_128x256`, `attn_relpos` launches
//! `attn_relpos_s14_d64_f16`). A kernel family has one file name in `kernels/`, `cuda/ops/`
//! and `cpu/ops/` (the gemm epilogues and conv3x3 share `gemm`); `cast_rows`, an fp16 storage
//! op the f32 CPU model never performs, has its host reference with the other fp16 numerics
//! in `cuda/model/scales.rs`.
//!
//! Selection lives here, host-side, so a plan names the kernels it will launch without a
//! device; the launchers call these same functions.

use crate::graph::buffer::BufId;
use crate::graph::decoder_ops::{
    attn_decoder_combine_entry, AttnDecoder, AttnDecoderCombine, ConvTranspose2x2LnGelu,
    ConvTranspose2x2Masks, DecoderTokens, ImageTokens, LayerNormPe, MaskDownscaling, TokenLinear,
};
use crate::graph::fold_ops::{
    attn_fold_i2t_entry, attn_fold_t2i_combine_entry, attn_fold_t2i_entry, AttnFoldI2t,
    AttnFoldT2i, AttnFoldT2iCombine,
};
use crate::graph::gemm_tile::GemmTile;
use crate::graph::weights::WeightId;

/// What the planner, the executor and `samrt info --graph` need to know of an op.
pub trait OpDesc {
    /// The op's name (see the module docs).
    fn name(&self) -> &'static str;
    /// The kernel entry point it launches.
    fn entry_point(&self) -> String;
    /// Buffers read, then buffers written (a buffer updated in place is in both).
    fn reads(&self) -> Vec<BufId>;
    fn writes(&self) -> Vec<BufId>;
}

/// GEMM epilogues, as in `kernels/gemm.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmEpilogue {
    /// `out = f16(out_scale * y)`.
    Bias,
    /// `out = f16(out_scale * gelu_erf(y))`.
    BiasGelu,
    /// `residual += y` on the fp32 residual stream (in place).
    BiasResidual,
}

impl GemmEpilogue {
    pub fn name(self) -> &'static str {
        match self {
            GemmEpilogue::Bias => "gemm_bias",
            GemmEpilogue::BiasGelu => "gemm_bias_gelu",
            GemmEpilogue::BiasResidual => "gemm_bias_residual",
        }
    }

    /// Bytes of output traffic per element: fp16 written, or the fp32 residual read and
    /// written.
    pub fn out_bytes(self) -> usize {
        match self {
            GemmEpilogue::Bias | GemmEpilogue::BiasGelu => 2,
            GemmEpilogue::BiasResidual => 8,
        }
    }

    /// The kernel entry point of this epilogue on block tile `tile`.
    pub fn entry_point(self, tile: GemmTile) -> String {
        format!("{}_f16_{}", self.name(), tile.suffix())
    }
}

/// The entry point of the implicit-GEMM 3x3 convolution on block tile `tile`.
pub fn conv3x3_entry(tile: GemmTile) -> String {
    format!("conv3x3_f16_{}", tile.suffix())
}

/// The dtype a LayerNorm reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LnIn {
    F16,
    F32,
}

/// Where a LayerNorm writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LnOut {
    /// fp16 token-major `[rows, dim]`.
    F16,
    /// fp32 channel-first `[batch, dim, tokens]` (the image embedding).
    F32ChannelFirst { tokens: usize },
}

/// The LayerNorm kernel for an input dtype and output layout; None where no kernel exists
/// (fp32 input with channel-first output).
pub fn layer_norm_entry(input: LnIn, output: LnOut) -> Option<&'static str> {
    match (input, output) {
        (LnIn::F16, LnOut::F16) => Some("layer_norm_f16"),
        (LnIn::F32, LnOut::F16) => Some("layer_norm_f32_f16"),
        (LnIn::F16, LnOut::F32ChannelFirst { .. }) => Some("layer_norm_f16_f32_cf"),
        (LnIn::F32, LnOut::F32ChannelFirst { .. }) => None,
    }
}

/// The encoder attention kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnRelposVariant {
    /// `attn_relpos_s14_d*`: S = 14 compile-time (SAM's windows).
    Side14,
    /// `attn_relpos_s64_d*`: S = 64 compile-time on a grid that is a multiple of 64 (no
    /// padding tokens): a key tile is one key row and `rel_w` is computed once (global
    /// attention at 1024 px).
    Side64,
    /// `attn_relpos_any_d*`: S is a kernel argument (other image sizes and windows).
    AnySide,
}

impl AttnRelposVariant {
    /// The one place that maps the attended side S (on a `grid`-token side) to a kernel
    /// variant: a compile-time instantiation where S has one, else the run-time-S kernel.
    /// S = 64 has one only where the squares tile the grid exactly.
    pub fn for_side(window: usize, grid: usize) -> Self {
        match window {
            14 => AttnRelposVariant::Side14,
            64 if grid.is_multiple_of(64) => AttnRelposVariant::Side64,
            _ => AttnRelposVariant::AnySide,
        }
    }

    /// `attn_relpos_{s14|s64|any}_d{head_dim}_f16`.
    pub fn entry_point(self, head_dim: usize) -> String {
        let side = match self {
            AttnRelposVariant::Side14 => "s14",
            AttnRelposVariant::Side64 => "s64",
            AttnRelposVariant::AnySide => "any",
        };
        format!("attn_relpos_{side}_d{head_dim}_f16")
    }
}

/// Resized uint8 images -> normalised, zero-padded, patch-major fp16 rows.
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessPatchify {
    /// `[batch, img, img, 3]` u8 and `[batch, 2]` i32 (h, w) in; `[batch*grid^2, 3*p*p]` out.
    pub image: BufId,
    pub sizes: BufId,
    pub patches: BufId,
    pub batch: usize,
    pub img_size: usize,
    pub patch: usize,
}

/// `residual[b] = pos_embed` for every image.
#[derive(Clone, Debug, PartialEq)]
pub struct ResidualInit {
    pub pos_embed: WeightId,
    pub residual: BufId,
    pub batch: usize,
    pub tokens: usize,
    pub dim: usize,
}

/// `y = (a @ w^T) * in_scale * row_scale[m] + bias`, then the epilogue.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    /// fp16 `[m, k]`.
    pub a: BufId,
    /// fp16 `[n, k]`.
    pub weight: WeightId,
    pub bias: Option<WeightId>,
    /// fp16 `[m, n]`, or the fp32 residual `[m, n]` for [`GemmEpilogue::BiasResidual`].
    pub out: BufId,
    pub epilogue: GemmEpilogue,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// True A = stored A * in_scale (undoes the producer's storage scale).
    pub in_scale: f32,
    /// Stored output = out_scale * y (fp16 epilogues only).
    pub out_scale: f32,
    /// Per-row scales of A, as [`CastRows`] writes them.
    pub row_scale: Option<BufId>,
}

/// LayerNorm over the last dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNorm {
    pub x: BufId,
    pub input: LnIn,
    /// True input = stored * in_scale (* row_scale[row] when given).
    pub in_scale: f32,
    pub row_scale: Option<BufId>,
    pub gamma: WeightId,
    pub beta: WeightId,
    pub out: BufId,
    pub output: LnOut,
    pub rows: usize,
    pub dim: usize,
    pub eps: f32,
}

/// Windowed or global attention with the decomposed relative-position bias, heads split
/// from the packed qkv rows in-kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnRelpos {
    pub qkv: BufId,
    /// The qkv bias (scaled like the stored qkv) stands in for padding tokens.
    pub qkv_bias: WeightId,
    pub rel_pos_h: WeightId,
    pub rel_pos_w: WeightId,
    pub out: BufId,
    pub batch: usize,
    pub grid: usize,
    /// The attended side: the window for windowed blocks, `grid` for global ones.
    pub window: usize,
    pub heads: usize,
    pub dim: usize,
    /// q scale (1/alpha) and the softmax scale divided by alpha (k is scaled too).
    pub q_scale: f32,
    pub softmax_scale: f32,
}

impl AttnRelpos {
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads.max(1)
    }
}

/// fp32 rows -> fp16 rows with exact per-row power-of-two scales.
#[derive(Clone, Debug, PartialEq)]
pub struct CastRows {
    pub x: BufId,
    pub out: BufId,
    pub row_scale: BufId,
    pub rows: usize,
    pub dim: usize,
}

/// 3x3 convolution, padding 1, as an implicit GEMM on NHWC fp16.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv3x3 {
    pub x: BufId,
    /// `[cout][3][3][cin]`, as `cpu::ops::gemm::conv3x3_weight_layout` lays it out.
    pub weight: WeightId,
    pub out: BufId,
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub out_scale: f32,
}

/// One node's work.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    PreprocessPatchify(PreprocessPatchify),
    ResidualInit(ResidualInit),
    Gemm(Gemm),
    LayerNorm(LayerNorm),
    AttnRelpos(AttnRelpos),
    CastRows(CastRows),
    Conv3x3(Conv3x3),
    DecoderTokens(DecoderTokens),
    MaskDownscaling(MaskDownscaling),
    ImageTokens(ImageTokens),
    TokenLinear(TokenLinear),
    AttnDecoder(AttnDecoder),
    AttnDecoderCombine(AttnDecoderCombine),
    AttnFoldT2i(AttnFoldT2i),
    AttnFoldT2iCombine(AttnFoldT2iCombine),
    AttnFoldI2t(AttnFoldI2t),
    LayerNormPe(LayerNormPe),
    ConvTranspose2x2LnGelu(ConvTranspose2x2LnGelu),
    ConvTranspose2x2Masks(ConvTranspose2x2Masks),
}

impl OpDesc for Op {
    fn name(&self) -> &'static str {
        match self {
            Op::PreprocessPatchify(_) => "preprocess_patchify",
            Op::ResidualInit(_) => "residual_init",
            Op::Gemm(g) => g.epilogue.name(),
            Op::LayerNorm(_) => "layer_norm",
            Op::AttnRelpos(_) => "attn_relpos",
            Op::CastRows(_) => "cast_rows",
            Op::Conv3x3(_) => "conv3x3",
            Op::DecoderTokens(_) => "decoder_tokens",
            Op::MaskDownscaling(_) => "mask_downscaling",
            Op::ImageTokens(_) => "image_tokens",
            Op::TokenLinear(_) => "token_linear",
            Op::AttnDecoder(_) | Op::AttnDecoderCombine(_) => "attn_decoder",
            Op::AttnFoldT2i(_) | Op::AttnFoldT2iCombine(_) => "attn_fold_t2i",
            Op::AttnFoldI2t(_) => "attn_fold_i2t",
            Op::LayerNormPe(_) => "layer_norm_pe",
            Op::ConvTranspose2x2LnGelu(_) => "conv_transpose2x2_ln_gelu",
            Op::ConvTranspose2x2Masks(_) => "conv_transpose2x2_masks",
        }
    }

    fn entry_point(&self) -> String {
        match self {
            Op::PreprocessPatchify(_) => "preprocess_patchify_f16".into(),
            Op::ResidualInit(_) => "residual_init_f32".into(),
            Op::Gemm(g) => g.epilogue.entry_point(GemmTile::select(g.n)),
            Op::LayerNorm(l) => layer_norm_entry(l.input, l.output)
                .unwrap_or("(no kernel)")
                .into(),
            Op::AttnRelpos(a) => {
                AttnRelposVariant::for_side(a.window, a.grid).entry_point(a.head_dim())
            }
            Op::CastRows(_) => "cast_rows_f16".into(),
            Op::Conv3x3(c) => conv3x3_entry(GemmTile::select(c.cout)),
            Op::DecoderTokens(_) => "decoder_tokens_f32".into(),
            Op::MaskDownscaling(_) => "mask_downscaling_f32".into(),
            Op::ImageTokens(_) => "image_tokens_f32".into(),
            Op::TokenLinear(l) => l.variant().entry_point().into(),
            Op::AttnDecoder(a) => a.shape.kind.entry_point(a.shape.head_dim),
            Op::AttnDecoderCombine(c) => attn_decoder_combine_entry(c.shape.head_dim),
            Op::AttnFoldT2i(a) => attn_fold_t2i_entry(a.shape.dim),
            Op::AttnFoldT2iCombine(c) => attn_fold_t2i_combine_entry(c.shape.dim),
            Op::AttnFoldI2t(a) => attn_fold_i2t_entry(a.shape.dim),
            Op::LayerNormPe(_) => "layer_norm_pe_f32".into(),
            Op::ConvTranspose2x2LnGelu(_) => "conv_transpose2x2_ln_gelu_f16".into(),
            Op::ConvTranspose2x2Masks(_) => "conv_transpose2x2_masks_f32".into(),
        }
    }

    fn reads(&self) -> Vec<BufId> {
        match self {
            Op::PreprocessPatchify(p) => vec![p.image, p.sizes],
            Op::ResidualInit(_) => vec![],
            Op::Gemm(g) => {
                let mut r = vec![g.a];
                r.extend(g.row_scale);
                if g.epilogue == GemmEpilogue::BiasResidual {
                    r.push(g.out);
                }
                r
            }
            Op::LayerNorm(l) => std::iter::once(l.x).chain(l.row_scale).collect(),
            Op::AttnRelpos(a) => vec![a.qkv],
            Op::CastRows(c) => vec![c.x],
            Op::Conv3x3(c) => vec![c.x],
            Op::DecoderTokens(t) => vec![t.coords, t.kinds],
            Op::MaskDownscaling(m) => vec![m.masks],
            Op::ImageTokens(t) => std::iter::once(t.embedding).chain(t.dense).collect(),
            Op::TokenLinear(l) => {
                let mut r = vec![l.a];
                r.extend(l.a2);
                if l.accumulate {
                    r.extend(l.jobs.iter().map(|j| j.out));
                }
                r
            }
            Op::AttnDecoder(a) => vec![a.q, a.k, a.v],
            Op::AttnDecoderCombine(c) => vec![c.partial],
            Op::AttnFoldT2i(a) => vec![a.qf, a.xpe, a.x],
            Op::AttnFoldT2iCombine(c) => vec![c.partial],
            Op::AttnFoldI2t(a) => vec![a.xpe, a.kf, a.cb, a.vf, a.keys],
            Op::LayerNormPe(l) => vec![l.x],
            Op::ConvTranspose2x2LnGelu(c) => vec![c.u],
            Op::ConvTranspose2x2Masks(c) => vec![c.u, c.hyper],
        }
    }

    fn writes(&self) -> Vec<BufId> {
        match self {
            Op::PreprocessPatchify(p) => vec![p.patches],
            Op::ResidualInit(r) => vec![r.residual],
            Op::Gemm(g) => vec![g.out],
            Op::LayerNorm(l) => vec![l.out],
            Op::AttnRelpos(a) => vec![a.out],
            Op::CastRows(c) => vec![c.out, c.row_scale],
            Op::Conv3x3(c) => vec![c.out],
            Op::DecoderTokens(t) => vec![t.out],
            Op::MaskDownscaling(m) => vec![m.out],
            Op::ImageTokens(t) => t
                .out32
                .into_iter()
                .chain(t.out16)
                .chain(t.outpe16)
                .collect(),
            Op::TokenLinear(l) => l.job_outs(),
            Op::AttnDecoder(a) => vec![a.out],
            Op::AttnDecoderCombine(c) => vec![c.out],
            Op::AttnFoldT2i(a) => vec![a.partial],
            Op::AttnFoldT2iCombine(c) => vec![c.y],
            Op::AttnFoldI2t(a) => vec![a.keys],
            Op::LayerNormPe(l) => std::iter::once(l.x)
                .chain(l.out16)
                .chain(l.outpe16)
                .collect(),
            Op::ConvTranspose2x2LnGelu(c) => vec![c.out],
            Op::ConvTranspose2x2Masks(c) => vec![c.out],
        }
    }
}
