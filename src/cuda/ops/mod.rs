//! Typed kernel launchers, one file per kernel family, named as `kernels/<op>.cu`. Each
//! launcher takes the stream explicitly and checks shapes, lengths and alignment before it
//! launches.

pub mod attention;
pub mod attn_decoder;
pub mod attn_fold_i2t;
pub mod attn_fold_t2i;
pub mod cast_rows;
pub mod conv_transpose2x2;
mod decoder_launch;
pub mod gemm;
pub mod image_tokens;
pub mod layer_norm;
pub mod layer_norm_pe;
pub mod mask_downscaling;
pub mod nms;
pub mod postprocess;
pub mod preprocess_patchify;
pub mod prompt_encoder;
pub mod residual_init;
pub mod token_linear;

use cudarc::driver::DevicePtr;

use crate::cpu::ops::preprocess_patchify::PatchGeom;
use crate::cuda::runtime::executor::{Launch, LaunchCx};
use crate::graph::ops::{GemmEpilogue, LnIn, LnOut, Op};
use crate::Result;

use attention::{attn_relpos, AttnRelposInputs, AttnRelposShape};
use cast_rows::CastRowsShape;
use gemm::{Conv3x3Shape, Epilogue, GemmScales, GemmShape};
use layer_norm::{layer_norm_ex, LayerNormShape, LnInput, LnOutput, LnScale};
use residual_init::ResidualInitShape;

/// Each op of the vocabulary launches through its family's launcher; the executor knows
/// nothing of the families.
impl Launch for Op {
    fn launch(&self, cx: &LaunchCx<'_>) -> Result<()> {
        let (gpu, s) = (cx.gpu, &**cx.stream);
        match self {
            Op::PreprocessPatchify(p) => {
                let geom = PatchGeom {
                    img_size: p.img_size,
                    patch: p.patch,
                };
                preprocess_patchify::preprocess_patchify(
                    gpu,
                    s,
                    &cx.buf::<u8>(p.image)?,
                    &cx.buf::<i32>(p.sizes)?,
                    p.batch,
                    geom,
                    &mut cx.buf::<u16>(p.patches)?,
                )
            }
            Op::ResidualInit(r) => residual_init::residual_init(
                gpu,
                s,
                &cx.weight::<u16>(r.pos_embed)?,
                &mut cx.buf::<f32>(r.residual)?,
                ResidualInitShape {
                    batch: r.batch,
                    tokens: r.tokens,
                    dim: r.dim,
                },
            ),
            Op::Gemm(g) => {
                let rs = g.row_scale.map(|b| cx.buf::<f32>(b)).transpose()?;
                let scales = GemmScales {
                    row_scale: rs.as_ref().map(|v| v as &dyn DevicePtr<f32>),
                    in_scale: g.in_scale,
                    out_scale: g.out_scale,
                };
                let bias = g.bias.map(|b| cx.weight::<f32>(b)).transpose()?;
                let bias = bias.as_ref().map(|v| v as &dyn DevicePtr<f32>);
                let (a, w) = (cx.buf::<u16>(g.a)?, cx.weight::<u16>(g.weight)?);
                let shape = GemmShape {
                    m: g.m,
                    n: g.n,
                    k: g.k,
                };
                // Only the view of the output's real dtype is made: the fp32 residual, or fp16.
                let (mut out16, mut out32);
                let epilogue = match g.epilogue {
                    GemmEpilogue::BiasResidual => {
                        out32 = cx.buf::<f32>(g.out)?;
                        Epilogue::BiasResidual(&mut out32)
                    }
                    GemmEpilogue::Bias => {
                        out16 = cx.buf::<u16>(g.out)?;
                        Epilogue::Bias(&mut out16)
                    }
                    GemmEpilogue::BiasGelu => {
                        out16 = cx.buf::<u16>(g.out)?;
                        Epilogue::BiasGelu(&mut out16)
                    }
                };
                gemm::gemm(gpu, s, &a, &w, bias, shape, scales, epilogue)
            }
            Op::LayerNorm(l) => {
                let (xf, xh);
                let x = match l.input {
                    LnIn::F32 => {
                        xf = cx.buf::<f32>(l.x)?;
                        LnInput::F32(&xf)
                    }
                    LnIn::F16 => {
                        xh = cx.buf::<u16>(l.x)?;
                        LnInput::F16(&xh)
                    }
                };
                let rs = l.row_scale.map(|b| cx.buf::<f32>(b)).transpose()?;
                let scale = LnScale {
                    row_scale: rs.as_ref().map(|v| v as &dyn DevicePtr<f32>),
                    in_scale: l.in_scale,
                };
                let (mut out16, mut out32);
                let output = match l.output {
                    LnOut::F16 => {
                        out16 = cx.buf::<u16>(l.out)?;
                        LnOutput::F16(&mut out16)
                    }
                    LnOut::F32ChannelFirst { tokens } => {
                        out32 = cx.buf::<f32>(l.out)?;
                        LnOutput::F32ChannelFirst {
                            out: &mut out32,
                            tokens,
                        }
                    }
                };
                let shape = LayerNormShape {
                    rows: l.rows,
                    dim: l.dim,
                };
                let (g, b) = (cx.weight::<f32>(l.gamma)?, cx.weight::<f32>(l.beta)?);
                layer_norm_ex(gpu, s, x, scale, &g, &b, output, shape, l.eps)
            }
            Op::AttnRelpos(a) => {
                let bias = cx.weight::<f32>(a.qkv_bias)?;
                let (rh, rw) = (
                    cx.weight::<u16>(a.rel_pos_h)?,
                    cx.weight::<u16>(a.rel_pos_w)?,
                );
                let qkv = cx.buf::<u16>(a.qkv)?;
                let inputs = AttnRelposInputs {
                    qkv: &qkv,
                    qkv_bias: &bias,
                    rel_pos_h: &rh,
                    rel_pos_w: &rw,
                    q_scale: a.q_scale,
                    softmax_scale: Some(a.softmax_scale),
                };
                let shape = AttnRelposShape {
                    batch: a.batch,
                    grid: a.grid,
                    dim: a.dim,
                    heads: a.heads,
                    window: a.window,
                };
                attn_relpos(gpu, s, shape, &inputs, &mut cx.buf::<u16>(a.out)?)
            }
            Op::CastRows(c) => cast_rows::cast_rows(
                gpu,
                s,
                &cx.buf::<f32>(c.x)?,
                &mut cx.buf::<u16>(c.out)?,
                &mut cx.buf::<f32>(c.row_scale)?,
                CastRowsShape {
                    rows: c.rows,
                    dim: c.dim,
                },
            ),
            Op::Conv3x3(c) => gemm::conv3x3(
                gpu,
                s,
                &cx.buf::<u16>(c.x)?,
                &cx.weight::<u16>(c.weight)?,
                None,
                Conv3x3Shape {
                    batch: c.batch,
                    h: c.h,
                    w: c.w,
                    cin: c.cin,
                    cout: c.cout,
                },
                GemmScales {
                    row_scale: None,
                    in_scale: 1.0,
                    out_scale: c.out_scale,
                },
                &mut cx.buf::<u16>(c.out)?,
            ),
            Op::DecoderTokens(t) => decoder_launch::decoder_tokens_op(t, cx),
            Op::MaskDownscaling(m) => decoder_launch::mask_downscaling_op(m, cx),
            Op::ImageTokens(t) => decoder_launch::image_tokens_op(t, cx),
            Op::TokenLinear(l) => decoder_launch::token_linear_op(l, cx),
            Op::AttnDecoder(a) => decoder_launch::attn_decoder_op(a, cx),
            Op::AttnDecoderCombine(c) => decoder_launch::attn_decoder_combine_op(c, cx),
            Op::AttnFoldT2i(a) => decoder_launch::attn_fold_t2i_op(a, cx),
            Op::AttnFoldT2iCombine(c) => decoder_launch::attn_fold_t2i_combine_op(c, cx),
            Op::AttnFoldI2t(a) => decoder_launch::attn_fold_i2t_op(a, cx),
            Op::LayerNormPe(l) => decoder_launch::layer_norm_pe_op(l, cx),
            Op::ConvTranspose2x2LnGelu(c) => decoder_launch::ct_ln_gelu_op(c, cx),
            Op::ConvTranspose2x2Masks(c) => decoder_launch::ct_masks_op(c, cx),
        }
    }
}
