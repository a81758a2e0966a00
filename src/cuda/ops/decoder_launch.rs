//! Launches of the mask decoder's ops (the decoder half of [`super`]'s `Launch for Op`):
//! each reads its buffers and weights from the launch context and calls its family's
//! launcher.

use cudarc::driver::{DevicePtr, DevicePtrMut};

use super::attn_decoder::AttnDecoderKind;
use super::attn_decoder::{
    attn_decoder_combine, attn_decoder_i2t, attn_decoder_self, attn_decoder_t2i,
};
use super::attn_fold_i2t::attn_fold_i2t;
use super::attn_fold_t2i::{attn_fold_t2i, attn_fold_t2i_combine};
use super::conv_transpose2x2::{conv_transpose2x2_ln_gelu, conv_transpose2x2_masks};
use super::image_tokens::{image_tokens, ImageTokensOut, ImageTokensShape};
use super::layer_norm_pe::layer_norm_pe;
use super::mask_downscaling::mask_downscaling_into;
use super::prompt_encoder::decoder_tokens;
use super::token_linear::{token_linear, TokenLinearJob, TokenLinearShape, TokenNorm};
use crate::cuda::runtime::executor::LaunchCx;
use crate::graph::decoder_ops::{
    AttnDecoder, AttnDecoderCombine, ConvTranspose2x2LnGelu, ConvTranspose2x2Masks, DecoderTokens,
    ImageTokens, LayerNormPe, MaskDownscaling, TokenLinear,
};
use crate::graph::fold_ops::{AttnFoldI2t, AttnFoldT2i, AttnFoldT2iCombine};
use crate::Result;

pub(super) fn decoder_tokens_op(t: &DecoderTokens, cx: &LaunchCx<'_>) -> Result<()> {
    decoder_tokens(
        cx.gpu,
        cx.stream,
        &cx.buf::<f32>(t.coords)?,
        &cx.buf::<i32>(t.kinds)?,
        &cx.weight::<f32>(t.gauss)?,
        &cx.weight::<f32>(t.table)?,
        &cx.weight::<f32>(t.prefix)?,
        (t.batch, t.sparse, t.prefix_rows),
        t.input_size,
        &mut cx.buf::<f32>(t.out)?,
    )
}

pub(super) fn mask_downscaling_op(m: &MaskDownscaling, cx: &LaunchCx<'_>) -> Result<()> {
    mask_downscaling_into(
        cx.gpu,
        cx.stream,
        &cx.buf::<f32>(m.masks)?,
        m.batch,
        &cx.weight::<f32>(m.packed)?,
        m.grid,
        m.dim,
        &mut cx.buf::<f32>(m.out)?,
    )
}

pub(super) fn image_tokens_op(t: &ImageTokens, cx: &LaunchCx<'_>) -> Result<()> {
    let dense = t.dense.map(|d| cx.buf::<f32>(d)).transpose()?;
    let shape = ImageTokensShape {
        sides: t.sides,
        batch: t.batch,
        hw: t.hw,
        dim: t.dim,
    };
    let mut o32 = t.out32.map(|b| cx.buf::<f32>(b)).transpose()?;
    let mut o16 = t.out16.map(|b| cx.buf::<u16>(b)).transpose()?;
    let mut ope16 = t.outpe16.map(|b| cx.buf::<u16>(b)).transpose()?;
    let out = ImageTokensOut {
        tokens: o32.as_mut().map(|v| v as &mut dyn DevicePtrMut<f32>),
        tokens16: o16.as_mut().map(|v| v as &mut dyn DevicePtrMut<u16>),
        tokens_pe16: ope16.as_mut().map(|v| v as &mut dyn DevicePtrMut<u16>),
    };
    image_tokens(
        cx.gpu,
        cx.stream,
        shape,
        &cx.buf::<f32>(t.embedding)?,
        dense.as_ref().map(|d| d as &dyn DevicePtr<f32>),
        &cx.weight::<f32>(t.no_mask)?,
        &cx.weight::<f32>(t.pe)?,
        out,
    )
}

pub(super) fn token_linear_op(l: &TokenLinear, cx: &LaunchCx<'_>) -> Result<()> {
    let shape = TokenLinearShape {
        m: l.m,
        n: l.n,
        k: l.k,
        lda: l.lda,
        ldo: l.ldo,
        relu: l.relu,
        accumulate: l.accumulate,
    };
    let a2 = l.a2.map(|b| cx.buf::<f32>(b)).transpose()?;
    // Views first (each job its own, also where jobs share a buffer), then the jobs that
    // borrow them.
    let mut views = Vec::with_capacity(l.jobs.len());
    for j in &l.jobs {
        let w = cx.weight::<f32>(j.weight)?;
        let b = cx.weight::<f32>(j.bias)?;
        views.push((w, b, cx.buf::<f32>(j.out)?));
    }
    let mut jobs: Vec<TokenLinearJob<'_>> = l
        .jobs
        .iter()
        .zip(views.iter_mut())
        .map(|(j, (w, b, out))| TokenLinearJob {
            a_offset: j.a_offset,
            with_a2: j.with_a2,
            weight: &*w,
            bias: Some(&*b as &dyn DevicePtr<f32>),
            out,
            out_offset: j.out_offset,
        })
        .collect();
    let norm_views = match &l.norm {
        Some(n) => Some((
            cx.weight::<f32>(n.gamma)?,
            cx.weight::<f32>(n.beta)?,
            n.out.map(|b| cx.buf::<f32>(b)).transpose()?,
            n.eps,
        )),
        None => None,
    };
    let mut norm_views = norm_views;
    let norm = norm_views.as_mut().map(|(g, b, out, eps)| TokenNorm {
        gamma: &*g,
        beta: &*b,
        eps: *eps,
        out: out.as_mut().map(|o| o as &mut dyn DevicePtrMut<f32>),
    });
    token_linear(
        cx.gpu,
        cx.stream,
        shape,
        &cx.buf::<f32>(l.a)?,
        a2.as_ref().map(|v| v as &dyn DevicePtr<f32>),
        norm,
        &mut jobs,
    )
}

pub(super) fn attn_decoder_op(a: &AttnDecoder, cx: &LaunchCx<'_>) -> Result<()> {
    let (shape, g, s) = (a.shape, cx.gpu, &**cx.stream);
    match shape.kind {
        AttnDecoderKind::SelfAttn => attn_decoder_self(
            g,
            s,
            shape,
            &cx.buf::<f32>(a.q)?,
            &cx.buf::<f32>(a.k)?,
            &cx.buf::<f32>(a.v)?,
            &mut cx.buf::<f32>(a.out)?,
        ),
        // The split writes its scratch: the op's `out`, a node of its own merges it.
        AttnDecoderKind::TokenToImage | AttnDecoderKind::TokenToImageSplit => attn_decoder_t2i(
            g,
            s,
            shape,
            &cx.buf::<f32>(a.q)?,
            &cx.buf::<u16>(a.k)?,
            &cx.buf::<u16>(a.v)?,
            &mut cx.buf::<f32>(a.out)?,
        ),
        AttnDecoderKind::ImageToToken => attn_decoder_i2t(
            g,
            s,
            shape,
            &cx.buf::<u16>(a.q)?,
            &cx.buf::<f32>(a.k)?,
            &cx.buf::<f32>(a.v)?,
            &mut cx.buf::<u16>(a.out)?,
        ),
    }
}

pub(super) fn attn_decoder_combine_op(c: &AttnDecoderCombine, cx: &LaunchCx<'_>) -> Result<()> {
    attn_decoder_combine(
        cx.gpu,
        cx.stream,
        c.shape,
        &cx.buf::<f32>(c.partial)?,
        &mut cx.buf::<f32>(c.out)?,
    )
}

pub(super) fn attn_fold_t2i_op(a: &AttnFoldT2i, cx: &LaunchCx<'_>) -> Result<()> {
    attn_fold_t2i(
        cx.gpu,
        cx.stream,
        a.shape,
        &cx.buf::<f32>(a.qf)?,
        &cx.buf::<u16>(a.xpe)?,
        &cx.buf::<u16>(a.x)?,
        &mut cx.buf::<f32>(a.partial)?,
    )
}

pub(super) fn attn_fold_t2i_combine_op(c: &AttnFoldT2iCombine, cx: &LaunchCx<'_>) -> Result<()> {
    attn_fold_t2i_combine(
        cx.gpu,
        cx.stream,
        c.shape,
        &cx.buf::<f32>(c.partial)?,
        &mut cx.buf::<f32>(c.y)?,
    )
}

pub(super) fn attn_fold_i2t_op(a: &AttnFoldI2t, cx: &LaunchCx<'_>) -> Result<()> {
    attn_fold_i2t(
        cx.gpu,
        cx.stream,
        a.shape,
        &cx.buf::<u16>(a.xpe)?,
        &cx.buf::<f32>(a.kf)?,
        &cx.buf::<f32>(a.cb)?,
        &cx.buf::<f32>(a.vf)?,
        &cx.weight::<f32>(a.bias)?,
        &mut cx.buf::<f32>(a.keys)?,
    )
}

pub(super) fn layer_norm_pe_op(l: &LayerNormPe, cx: &LaunchCx<'_>) -> Result<()> {
    let pe = l.pe.map(|w| cx.weight::<f32>(w)).transpose()?;
    let mut o1 = l.out16.map(|b| cx.buf::<u16>(b)).transpose()?;
    let mut o2 = l.outpe16.map(|b| cx.buf::<u16>(b)).transpose()?;
    layer_norm_pe(
        cx.gpu,
        cx.stream,
        &mut cx.buf::<f32>(l.x)?,
        &cx.weight::<f32>(l.gamma)?,
        &cx.weight::<f32>(l.beta)?,
        pe.as_ref().map(|p| (p as &dyn DevicePtr<f32>, l.pe_rows)),
        (
            o1.as_mut()
                .map(|v| v as &mut dyn cudarc::driver::DevicePtrMut<u16>),
            o2.as_mut()
                .map(|v| v as &mut dyn cudarc::driver::DevicePtrMut<u16>),
        ),
        (l.rows, l.dim),
        l.eps,
    )
}

pub(super) fn ct_ln_gelu_op(c: &ConvTranspose2x2LnGelu, cx: &LaunchCx<'_>) -> Result<()> {
    conv_transpose2x2_ln_gelu(
        cx.gpu,
        cx.stream,
        &cx.buf::<u16>(c.u)?,
        &cx.weight::<f32>(c.gamma)?,
        &cx.weight::<f32>(c.beta)?,
        (c.batch, c.grid, c.channels),
        c.eps,
        &mut cx.buf::<u16>(c.out)?,
    )
}

pub(super) fn ct_masks_op(c: &ConvTranspose2x2Masks, cx: &LaunchCx<'_>) -> Result<()> {
    conv_transpose2x2_masks(
        cx.gpu,
        cx.stream,
        &cx.buf::<u16>(c.u)?,
        &cx.buf::<f32>(c.hyper)?,
        (c.batch, c.grid, c.channels),
        c.masks,
        &mut cx.buf::<f32>(c.out)?,
    )
}
