//! Runners of the mask decoder's kernels (`token_linear`, `attn_decoder`, `layer_norm_pe`,
//! `image_tokens`, `decoder_tokens`, `conv_transpose2x2_*`) against their CPU references,
//! on fresh random inputs. fp16 operands are rounded to fp16 before the reference sees
//! them, so the comparison measures the kernel.

use cudarc::driver::CudaSlice;
use samrt::cpu::ops as cpu;
use samrt::cuda::ops::attn_decoder::{self as ad, AttnDecoderKind, AttnDecoderShape};
use samrt::cuda::ops::conv_transpose2x2 as ct;
use samrt::cuda::ops::gemm::{gemm, Epilogue, GemmScales, GemmShape};
use samrt::cuda::GpuContext;

use super::common::gpu::{assert_close, assert_within, round_f16, Rng};
use super::refs::same_bits;

const EPS32: f32 = f32::EPSILON / 2.0;

fn up32(gpu: &GpuContext, v: &[f32]) -> CudaSlice<f32> {
    gpu.upload_f32(gpu.stream(), v).unwrap()
}

fn down32(gpu: &GpuContext, d: &CudaSlice<f32>) -> Vec<f32> {
    gpu.download_f32(gpu.stream(), d).unwrap()
}

#[derive(Clone, Copy, Debug)]
pub struct LinearCase {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Extra elements between rows of a (the heads read one token row per prompt).
    pub lda_pad: usize,
    pub a2: bool,
    pub relu: bool,
    pub accumulate: bool,
    /// Linears in the launch: each its own weights, input offset and output; with `a2`,
    /// every other job adds it (q/k add the PE, v does not).
    pub jobs: usize,
    /// A LayerNorm of the input rows first (the fused post-norm), its rows written back.
    pub norm: bool,
    /// Input rows off 16 B alignment (the kernel's scalar staging); else aligned as the
    /// decoder's are (float4 staging, when K and the row stride are multiples of 4).
    pub misaligned: bool,
}

pub fn run_token_linear(gpu: &GpuContext, rng: &mut Rng, c: LinearCase) {
    use samrt::cuda::ops::token_linear::{
        token_linear, token_linear_with, TokenLinearJob, TokenLinearShape, TokenLinearVariant,
        TokenNorm,
    };
    let (m, n, k) = (c.m, c.n, c.k);
    // Job j reads from offset off + step j: jobs overlap in a, as the heads' token rows do.
    let (off, step) = if c.misaligned { (5, 3) } else { (8, 4) };
    let (lda, ldo) = (k + c.lda_pad, n + 3);
    let a_off = |j: usize| off + step * j;
    let a = rng.vec(a_off(c.jobs) + m * lda, -1.5, 1.5);
    let a2 = rng.vec(a.len(), -1.0, 1.0);
    let s = 1.0 / (k as f32).sqrt();
    let shape = TokenLinearShape {
        m,
        n,
        k,
        lda,
        ldo,
        relu: c.relu,
        accumulate: c.accumulate,
    };
    struct Host {
        w: Vec<f32>,
        bias: Vec<f32>,
        out0: Vec<f32>,
        with_a2: bool,
    }
    let host: Vec<Host> = (0..c.jobs)
        .map(|j| Host {
            w: rng.vec(n * k, -s, s),
            bias: rng.vec(n, -0.1, 0.1),
            out0: rng.vec(off + m * ldo, -1.0, 1.0),
            with_a2: c.a2 && j % 2 == 0,
        })
        .collect();
    let (da, da2) = (up32(gpu, &a), up32(gpu, &a2));
    let gamma = rng.vec(k, 0.5, 1.5);
    let beta = rng.vec(k, -0.2, 0.2);
    let (dg, dbeta) = (up32(gpu, &gamma), up32(gpu, &beta));
    let mut dnorm = up32(gpu, &vec![0.0f32; a.len()]);
    let mut dev: Vec<_> = host
        .iter()
        .map(|h| (up32(gpu, &h.w), up32(gpu, &h.bias), up32(gpu, &h.out0)))
        .collect();
    let mut jobs: Vec<TokenLinearJob<'_>> = dev
        .iter_mut()
        .zip(&host)
        .enumerate()
        .map(|(j, ((w, b, out), h))| TokenLinearJob {
            a_offset: a_off(j),
            with_a2: h.with_a2,
            weight: &*w,
            bias: Some(&*b as &dyn cudarc::driver::DevicePtr<f32>),
            out,
            out_offset: off,
        })
        .collect();
    let a2v = c.a2.then_some(&da2 as &dyn cudarc::driver::DevicePtr<f32>);
    let norm = c.norm.then_some(TokenNorm {
        gamma: &dg,
        beta: &dbeta,
        eps: 1e-5,
        out: Some(&mut dnorm),
    });
    token_linear(gpu, gpu.stream(), shape, &da, a2v, norm, &mut jobs).unwrap();
    drop(jobs);
    // The input rows as the reference sees them: each job's rows LayerNorm'ed on the CPU
    // (fp32, two passes, as layer_norm_pe), at their places in a copy of `a`.
    let normed = |off: usize| -> Vec<f32> {
        let mut x = a.clone();
        if c.norm {
            for r in 0..m {
                let row = &mut x[off + r * lda..off + r * lda + k];
                cpu::layer_norm_pe::layer_norm_pe(row, k, (&gamma, &beta, 1e-5), None);
            }
        }
        x
    };
    if c.norm {
        // Job 0's normalised rows, written back (the residual stream from there on):
        // within 2e-6 of the CPU's, as layer_norm_pe's own op rows.
        let got = down32(gpu, &dnorm);
        let want = normed(a_off(0));
        let rows: Vec<usize> = (0..m)
            .flat_map(|r| (0..k).map(move |i| a_off(0) + r * lda + i))
            .collect();
        let pick = |v: &[f32]| rows.iter().map(|&i| v[i]).collect::<Vec<f32>>();
        assert_close(
            "token_linear norm rows",
            &pick(&got),
            &pick(&want),
            2e-6,
            2e-6,
        );
    }
    let mut firsts = Vec::new();
    for (j, (h, d)) in host.iter().zip(&dev).enumerate() {
        let got = down32(gpu, &d.2);
        let mut want = h.out0.clone();
        let ao = a_off(j);
        let x_all = normed(ao);
        let a2r = h.with_a2.then(|| &a2[ao..]);
        let flags = (c.relu, c.accumulate);
        let dims = (m, n, k);
        cpu::token_linear::token_linear(
            &x_all[ao..],
            a2r,
            dims,
            (lda, ldo),
            &h.w,
            &h.bias,
            flags,
            &mut want[off..],
        );
        // Both sides sum k products of the same f32 inputs in some order: each is within
        // gamma_(k+1) * sum |x w| (+ |bias|, and the residual add) of the exact value, so
        // they differ by at most twice that. With the LayerNorm, the inputs themselves
        // differ by up to 2e-6 (1 + |x|) (its op rows' bound), times sum |w|.
        let mut tol = vec![0.0f32; want.len()];
        for r in 0..m {
            for o in 0..n {
                let x = |i: usize| {
                    let at = ao + r * lda + i;
                    x_all[at] + if h.with_a2 { a2[at] } else { 0.0 }
                };
                let w = &h.w[o * k..(o + 1) * k];
                let mag: f32 = (0..k).map(|i| (x(i) * w[i]).abs()).sum::<f32>()
                    + h.bias[o].abs()
                    + h.out0[off + r * ldo + o].abs();
                let ln: f32 = if c.norm {
                    (0..k)
                        .map(|i| 2e-6 * (1.0 + x_all[ao + r * lda + i].abs()) * w[i].abs())
                        .sum()
                } else {
                    0.0
                };
                tol[off + r * ldo + o] = 2.0 * (k as f32 + 3.0) * EPS32 * mag + ln;
            }
        }
        assert_within(&format!("token_linear job {j}"), &got, &want, &tol);
        firsts.push(got);
    }
    // The other variant (columns per warp) gives the same bits: it sums in the same order.
    let other = match TokenLinearVariant::select(m, n, c.jobs) {
        TokenLinearVariant::Cols1 => TokenLinearVariant::Cols4,
        TokenLinearVariant::Cols4 => TokenLinearVariant::Cols1,
    };
    let mut outs2: Vec<_> = host.iter().map(|h| up32(gpu, &h.out0)).collect();
    let mut dnorm2 = up32(gpu, &vec![0.0f32; a.len()]);
    let mut jobs2: Vec<TokenLinearJob<'_>> = outs2
        .iter_mut()
        .zip(&dev)
        .zip(&host)
        .enumerate()
        .map(|(j, ((out, (w, b, _)), h))| TokenLinearJob {
            a_offset: a_off(j),
            with_a2: h.with_a2,
            weight: w,
            bias: Some(b as &dyn cudarc::driver::DevicePtr<f32>),
            out,
            out_offset: off,
        })
        .collect();
    let norm2 = c.norm.then_some(TokenNorm {
        gamma: &dg,
        beta: &dbeta,
        eps: 1e-5,
        out: Some(&mut dnorm2),
    });
    token_linear_with(gpu, gpu.stream(), other, shape, &da, a2v, norm2, &mut jobs2).unwrap();
    drop(jobs2);
    for (j, (first, out)) in firsts.iter().zip(&outs2).enumerate() {
        let same = same_bits(first, &down32(gpu, out));
        assert!(
            same,
            "token_linear job {j}: {other:?} differs from the selected variant"
        );
    }
    if c.norm {
        let same = same_bits(&down32(gpu, &dnorm), &down32(gpu, &dnorm2));
        assert!(same, "token_linear norm rows: {other:?} differs");
    }
}

pub fn run_attn_decoder(gpu: &GpuContext, rng: &mut Rng, c: AttnDecoderShape) {
    let (shape, w) = (c, c.width());
    let qn = if c.q_shared { 1 } else { c.batch };
    let kvn = if c.kv_shared { 1 } else { c.batch };
    // Logits up to ~|q||k| ~ 3-6: peaked and flat rows both occur.
    let mut q = rng.vec(qn * c.lq * w, -1.0, 1.0);
    let mut k = rng.vec(kvn * c.lk * w, -1.0, 1.0);
    let mut v = rng.vec(kvn * c.lk * w, -2.0, 2.0);
    let s = gpu.stream();
    let out_len = c.batch * c.lq * w;
    let got = match c.kind {
        AttnDecoderKind::SelfAttn => {
            let mut o = gpu.zeros_f32(s, out_len).unwrap();
            let (dq, dk, dv) = (up32(gpu, &q), up32(gpu, &k), up32(gpu, &v));
            ad::attn_decoder_self(gpu, s, shape, &dq, &dk, &dv, &mut o).unwrap();
            down32(gpu, &o)
        }
        AttnDecoderKind::TokenToImage | AttnDecoderKind::TokenToImageSplit => {
            (k, v) = (round_f16(&k), round_f16(&v));
            let mut o = gpu.zeros_f32(s, out_len).unwrap();
            let dq = up32(gpu, &q);
            let (dk, dv) = (
                gpu.upload_f16(s, &k).unwrap(),
                gpu.upload_f16(s, &v).unwrap(),
            );
            if c.kind == AttnDecoderKind::TokenToImage {
                ad::attn_decoder_t2i(gpu, s, shape, &dq, &dk, &dv, &mut o).unwrap();
            } else {
                // Both passes, through a scratch of NaNs: a chunk state the first pass
                // failed to write poisons its output.
                let mut part = up32(gpu, &vec![f32::NAN; shape.partial_len()]);
                ad::attn_decoder_t2i(gpu, s, shape, &dq, &dk, &dv, &mut part).unwrap();
                ad::attn_decoder_combine(gpu, s, shape, &part, &mut o).unwrap();
            }
            down32(gpu, &o)
        }
        AttnDecoderKind::ImageToToken => {
            q = round_f16(&q);
            let mut o = gpu.zeros_f16(s, out_len).unwrap();
            let dq = gpu.upload_f16(s, &q).unwrap();
            let (dk, dv) = (up32(gpu, &k), up32(gpu, &v));
            ad::attn_decoder_i2t(gpu, s, shape, &dq, &dk, &dv, &mut o).unwrap();
            gpu.download_f16(s, &o).unwrap()
        }
    };
    let want = cpu::attn_decoder::attn_decoder(
        &q,
        &k,
        &v,
        (c.batch, c.lq, c.lk),
        (c.heads, c.head_dim),
        (c.q_shared, c.kv_shared),
    );
    // fp32 softmax and weighted sums in another order (online softmax, lanes and chunks
    // merged) with |v| <= 2: a few ulp of the O(1) outputs, ~1e-6; the fp16 output adds its
    // rounding (2^-11 relative).
    let rtol = if c.kind == AttnDecoderKind::ImageToToken {
        1.0 / 2048.0
    } else {
        1e-5
    };
    assert_close("attn_decoder", &got, &want, 1e-5, rtol);
}

pub fn run_layer_norm_pe(gpu: &GpuContext, rng: &mut Rng, rows: usize, dim: usize, pe_rows: usize) {
    use samrt::cuda::ops::layer_norm_pe::layer_norm_pe;
    let s = gpu.stream();
    // Rows with a mean of up to 3 and a spread of ~1: the two-pass variance matters.
    let mut x = rng.vec(rows * dim, -1.0, 1.0);
    for r in 0..rows {
        let mean = rng.uniform(-3.0, 3.0);
        x[r * dim..(r + 1) * dim]
            .iter_mut()
            .for_each(|v| *v += mean);
    }
    let g = rng.vec(dim, 0.5, 1.5);
    let b = rng.vec(dim, -0.3, 0.3);
    let pe = rng.vec(pe_rows * dim, -1.0, 1.0);
    let mut dx = up32(gpu, &x);
    let (dg, db, dpe) = (up32(gpu, &g), up32(gpu, &b), up32(gpu, &pe));
    let mut o1 = gpu.zeros_f16(s, rows * dim).unwrap();
    let mut o2 = gpu.zeros_f16(s, rows * dim).unwrap();
    let copies: samrt::cuda::ops::layer_norm_pe::LnPeCopies = (Some(&mut o1), Some(&mut o2));
    layer_norm_pe(
        gpu,
        s,
        &mut dx,
        &dg,
        &db,
        Some((&dpe, pe_rows)),
        copies,
        (rows, dim),
        1e-5,
    )
    .unwrap();
    let got = down32(gpu, &dx);
    let mut want = x.clone();
    let with_pe =
        cpu::layer_norm_pe::layer_norm_pe(&mut want, dim, (&g, &b, 1e-5), Some((&pe, pe_rows)))
            .unwrap();
    // f32 means and variances summed in another order: a few ulp of the normalised O(1)
    // values (|gamma| <= 1.5).
    assert_close("layer_norm_pe", &got, &want, 2e-6, 2e-6);
    // The fp16 copies round f32 values that differ by up to the f32 bound above, so they
    // may differ by that much plus an fp16 ulp: relative where normal, 2^-24 where the sum
    // with the PE cancels into fp16's subnormal range (seen: 1.25e-6 apart near 3e-6).
    let h1 = gpu.download_f16(s, &o1).unwrap();
    let h2 = gpu.download_f16(s, &o2).unwrap();
    let atol = 2e-6 + 6e-8;
    assert_close(
        "layer_norm_pe fp16",
        &h1,
        &round_f16(&want),
        atol,
        1.0 / 1024.0,
    );
    assert_close(
        "layer_norm_pe fp16 + PE",
        &h2,
        &round_f16(&with_pe),
        atol,
        1.0 / 1024.0,
    );
}

pub fn run_image_tokens(gpu: &GpuContext, rng: &mut Rng, sides: usize, batch: usize, hw: usize) {
    use samrt::cuda::ops::image_tokens::{image_tokens, ImageTokensOut, ImageTokensShape};
    let (dim, s) = (256, gpu.stream());
    let emb = rng.vec(dim * hw, -1.0, 1.0);
    let dense = (sides > 1).then(|| rng.vec(sides * dim * hw, -1.0, 1.0));
    let no_mask = rng.vec(dim, -0.5, 0.5);
    let pe = rng.vec(hw * dim, -1.0, 1.0);
    let (de, dn, dp) = (up32(gpu, &emb), up32(gpu, &no_mask), up32(gpu, &pe));
    let dd = dense.as_ref().map(|d| up32(gpu, d));
    let mut o32 = gpu.zeros_f32(s, batch * hw * dim).unwrap();
    let mut o16 = gpu.zeros_f16(s, sides * hw * dim).unwrap();
    let mut ope = gpu.zeros_f16(s, sides * hw * dim).unwrap();
    let shape = ImageTokensShape {
        sides,
        batch,
        hw,
        dim,
    };
    let out = ImageTokensOut {
        tokens: Some(&mut o32),
        tokens16: Some(&mut o16),
        tokens_pe16: Some(&mut ope),
    };
    let dref = dd
        .as_ref()
        .map(|d| d as &dyn cudarc::driver::DevicePtr<f32>);
    image_tokens(gpu, s, shape, &de, dref, &dn, &dp, out).unwrap();
    let want = cpu::image_tokens::image_tokens(&emb, dense.as_deref(), &no_mask, (sides, hw, dim));
    let plane = hw * dim;
    let want32: Vec<f32> = (0..batch)
        .flat_map(|b| want[(b % sides) * plane..(b % sides + 1) * plane].to_vec())
        .collect();
    // One f32 add on each side, then one fp16 rounding: bit-identical.
    assert_eq!(down32(gpu, &o32), want32, "image_tokens fp32");
    assert_eq!(gpu.download_f16(s, &o16).unwrap(), round_f16(&want));
    let plus: Vec<f32> = want
        .iter()
        .enumerate()
        .map(|(i, v)| v + pe[i % plane])
        .collect();
    assert_eq!(gpu.download_f16(s, &ope).unwrap(), round_f16(&plus));
    // The outputs are optional (the decoder's per-image prep writes only the fp16 pair, its
    // decodes only the fp32 stream): each alone writes what it wrote with the others.
    let mut a32 = gpu.zeros_f32(s, batch * hw * dim).unwrap();
    let only32 = ImageTokensOut {
        tokens: Some(&mut a32),
        tokens16: None,
        tokens_pe16: None,
    };
    image_tokens(gpu, s, shape, &de, dref, &dn, &dp, only32).unwrap();
    assert_eq!(down32(gpu, &a32), want32, "image_tokens fp32 alone");
    let (mut a16, mut ape) = (
        gpu.zeros_f16(s, sides * hw * dim).unwrap(),
        gpu.zeros_f16(s, sides * hw * dim).unwrap(),
    );
    let only16 = ImageTokensOut {
        tokens: None,
        tokens16: Some(&mut a16),
        tokens_pe16: Some(&mut ape),
    };
    image_tokens(gpu, s, shape, &de, dref, &dn, &dp, only16).unwrap();
    assert_eq!(gpu.download_f16(s, &a16).unwrap(), round_f16(&want));
    assert_eq!(gpu.download_f16(s, &ape).unwrap(), round_f16(&plus));
    let none = ImageTokensOut {
        tokens: None,
        tokens16: None,
        tokens_pe16: None,
    };
    assert!(image_tokens(gpu, s, shape, &de, dref, &dn, &dp, none).is_err());
}

/// `prompts` prompts of `points` points each (labels 0/1), with a box or not; 0 points and
/// no box is a mask-input-only prompt (no sparse tokens at all).
pub fn run_decoder_tokens(
    gpu: &GpuContext,
    rng: &mut Rng,
    prompts: usize,
    points: usize,
    with_box: bool,
) {
    use samrt::cuda::ops::prompt_encoder::{decoder_tokens, pad_prompts, prompt_tokens};
    let cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
    let wts = samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, rng.next());
    let pe = samrt::cpu::model::prompt_encoder::PromptEncoder::load(&wts, &cfg).unwrap();
    let (dim, prefix, s) = (256, 5, gpu.stream());
    let out_tokens = rng.vec(prefix * dim, -1.0, 1.0);
    let mut cpu_rows = Vec::new();
    let mut toks = Vec::new();
    for _ in 0..prompts {
        let pts: Vec<[f32; 2]> = (0..points)
            .map(|_| [rng.uniform(-10.0, 1030.0), rng.uniform(-10.0, 1030.0)])
            .collect();
        let labels: Vec<i32> = (0..points).map(|_| (rng.next() % 2) as i32).collect();
        let bx = with_box.then(|| {
            let (x0, y0) = (rng.uniform(0.0, 900.0), rng.uniform(0.0, 900.0));
            [
                x0,
                y0,
                x0 + rng.uniform(1.0, 120.0),
                y0 + rng.uniform(1.0, 120.0),
            ]
        });
        let (sparse, _) = pe.encode_sparse(&pts, &labels, bx).unwrap();
        cpu_rows.extend_from_slice(&out_tokens);
        cpu_rows.extend(sparse);
        toks.push(prompt_tokens(&pts, &labels, bx).unwrap());
    }
    let (coords, kinds, n) = pad_prompts(&toks);
    let (gauss, table, size) = pe.sparse_tables();
    let (dg, dt, dpre) = (up32(gpu, &gauss), up32(gpu, &table), up32(gpu, &out_tokens));
    let dc = up32(gpu, &coords);
    let dk = s.clone_htod(&kinds).unwrap();
    let mut out = gpu.zeros_f32(s, prompts * (prefix + n) * dim).unwrap();
    let shape = (prompts, n, prefix);
    decoder_tokens(gpu, s, &dc, &dk, &dg, &dt, &dpre, shape, size, &mut out).unwrap();
    // The same rounded steps as the CPU; CUDA sincosf within 2 ulp, the CPU's within 1.
    assert_close("decoder_tokens", &down32(gpu, &out), &cpu_rows, 1e-6, 0.0);
}

/// The first output upscaling: `gemm` on the ConvTranspose2d weight's GEMM layout, then
/// `conv_transpose2x2_ln_gelu`.
pub fn run_conv_transpose2x2_ln_gelu(
    gpu: &GpuContext,
    rng: &mut Rng,
    batch: usize,
    g: usize,
    cin: usize,
    cout: usize,
) {
    let s = gpu.stream();
    let x = round_f16(&rng.vec(batch * g * g * cin, -2.0, 2.0));
    let sc = 1.0 / (cin as f32).sqrt();
    let wt = round_f16(&rng.vec(cin * cout * 4, -sc, sc));
    let bias = rng.vec(cout, -0.1, 0.1);
    let (gamma, beta) = (rng.vec(cout, 0.5, 1.5), rng.vec(cout, -0.3, 0.3));
    let (wg, bg) = cpu::conv_transpose2x2::gemm_layout(&wt, &bias, cin, cout);
    let (dx, dw) = (
        gpu.upload_f16(s, &x).unwrap(),
        gpu.upload_f16(s, &wg).unwrap(),
    );
    let db = up32(gpu, &bg);
    let rows = batch * g * g;
    let mut u = gpu.zeros_f16(s, rows * 4 * cout).unwrap();
    let shape = GemmShape {
        m: rows,
        n: 4 * cout,
        k: cin,
    };
    let epi = Epilogue::Bias(&mut u);
    gemm(
        gpu,
        s,
        &dx,
        &dw,
        Some(&db),
        shape,
        GemmScales::default(),
        epi,
    )
    .unwrap();
    let mut out = gpu.zeros_f16(s, rows * 4 * cout).unwrap();
    let (dg, dbeta) = (up32(gpu, &gamma), up32(gpu, &beta));
    let dims = (batch, g, cout);
    ct::conv_transpose2x2_ln_gelu(gpu, s, &u, &dg, &dbeta, dims, 1e-6, &mut out).unwrap();
    let got = gpu.download_f16(s, &out).unwrap();
    let want = cpu::conv_transpose2x2::conv_transpose2x2_ln_gelu(
        &x,
        (batch, g),
        &wt,
        &bias,
        (cin, cout),
        (&gamma, &beta),
        1e-6,
    )
    .unwrap();
    // The GEMM's output is stored in fp16 before the LayerNorm (2^-11 relative to values up
    // to ~3 std from the mean, i.e. ~1.5e-3 of the normalised value times |gamma| <= 1.5),
    // and the result is rounded to fp16 again (2^-11 relative).
    assert_close("conv_transpose2x2_ln_gelu", &got, &want, 3e-3, 1.0 / 1024.0);
}

pub fn run_conv_transpose2x2_masks(
    gpu: &GpuContext,
    rng: &mut Rng,
    batch: usize,
    g: usize,
    c: usize,
    masks: usize,
) {
    let s = gpu.stream();
    let u = round_f16(&rng.vec(batch * g * g * 4 * c, -1.0, 2.0));
    let hyper = rng.vec(batch * masks * c, -1.0, 1.0);
    let du = gpu.upload_f16(s, &u).unwrap();
    let dh = up32(gpu, &hyper);
    let side = 2 * g;
    let mut out = gpu.zeros_f32(s, batch * masks * side * side).unwrap();
    ct::conv_transpose2x2_masks(gpu, s, &du, &dh, (batch, g, c), masks, &mut out).unwrap();
    let up = cpu::conv_transpose2x2::unblock(&u, batch, g, c);
    let want =
        cpu::conv_transpose2x2::conv_transpose2x2_masks(&up, &hyper, (batch, side, c, masks));
    // c products of exact fp16 values and f32 weights summed in another order: gamma_c *
    // sum |h u| <= c * 2^-24 * c * 2 ~ 1e-4 at c = 32; typically far less.
    assert_close(
        "conv_transpose2x2_masks",
        &down32(gpu, &out),
        &want,
        1e-4,
        1e-6,
    );
}

/// The decoder launchers refuse what their kernels cannot do, with an error and no launch:
/// short buffers, head dims without a kernel, a PE without its copy, a mismatched kind.
pub fn run_decoder_validation(gpu: &GpuContext) {
    use samrt::cuda::ops::layer_norm_pe::layer_norm_pe;
    use samrt::cuda::ops::token_linear::{
        token_linear, TokenLinearJob, TokenLinearShape, TokenNorm, TL_MAX_JOBS,
    };
    let s = gpu.stream();
    let x = gpu.zeros_f32(s, 64 * 64).unwrap();
    let mut out = gpu.zeros_f32(s, 64 * 64).unwrap();
    let shape = TokenLinearShape {
        m: 64,
        n: 64,
        k: 64,
        lda: 64,
        ldo: 64,
        relu: false,
        accumulate: false,
    };
    // lda < k, and a weight one row short.
    let bad = TokenLinearShape { lda: 63, ..shape };
    assert!(bad.validate().is_err());
    let short_w = gpu.zeros_f32(s, 63 * 64).unwrap();
    fn job<'a>(
        w: &'a CudaSlice<f32>,
        a_offset: usize,
        with_a2: bool,
        out: &'a mut CudaSlice<f32>,
    ) -> TokenLinearJob<'a> {
        TokenLinearJob {
            a_offset,
            with_a2,
            weight: w,
            bias: None,
            out,
            out_offset: 0,
        }
    }
    let call = |shape, norm, jobs: &mut [TokenLinearJob<'_>]| {
        token_linear(gpu, s, shape, &x, None, norm, jobs)
    };
    let r = call(shape, None, &mut [job(&short_w, 0, false, &mut out)]);
    assert!(matches!(r, Err(samrt::Error::Cuda(_))), "{r:?}");
    // An offset that runs the last row past the buffer.
    let r = call(shape, None, &mut [job(&x, 1, false, &mut out)]);
    assert!(r.is_err());
    // A job that adds a2 with none bound; no jobs; more jobs than the kernel's table.
    let r = call(shape, None, &mut [job(&x, 0, true, &mut out)]);
    assert!(r.is_err());
    assert!(call(shape, None, &mut []).is_err());
    // A LayerNorm wider than a block's row, and a short gamma.
    let wide = TokenLinearShape {
        k: 320,
        lda: 320,
        m: 8,
        ..shape
    };
    let g = gpu.zeros_f32(s, 320).unwrap();
    let ln = |gamma| TokenNorm {
        gamma,
        beta: &g,
        eps: 1e-5,
        out: None,
    };
    let w320 = gpu.zeros_f32(s, 64 * 320).unwrap();
    let r = call(wide, Some(ln(&g)), &mut [job(&w320, 0, false, &mut out)]);
    assert!(matches!(r, Err(samrt::Error::Unsupported(_))), "{r:?}");
    let short_g = gpu.zeros_f32(s, 63).unwrap();
    let r = call(
        shape,
        Some(ln(&short_g)),
        &mut [job(&x, 0, false, &mut out)],
    );
    assert!(r.is_err());
    let mut outs: Vec<_> = (0..=TL_MAX_JOBS)
        .map(|_| gpu.zeros_f32(s, 64 * 64).unwrap())
        .collect();
    let mut many: Vec<_> = outs.iter_mut().map(|o| job(&x, 0, false, o)).collect();
    assert!(call(shape, None, &mut many).is_err());
    let attn = AttnDecoderShape {
        kind: AttnDecoderKind::SelfAttn,
        batch: 1,
        lq: 8,
        lk: 8,
        heads: 2,
        head_dim: 24,
        q_shared: false,
        kv_shared: false,
    };
    let r = ad::attn_decoder_self(gpu, s, attn, &x, &x, &x, &mut out);
    assert!(matches!(r, Err(samrt::Error::Unsupported(_))), "{r:?}");
    let t2i = AttnDecoderShape {
        kind: AttnDecoderKind::TokenToImage,
        head_dim: 32,
        ..attn
    };
    let r = ad::attn_decoder_self(gpu, s, t2i, &x, &x, &x, &mut out);
    assert!(
        r.is_err(),
        "a t2i shape through the self-attention launcher"
    );
    // The split's combine: only for a split shape, and only with its whole scratch.
    let r = ad::attn_decoder_combine(gpu, s, t2i, &x, &mut out);
    assert!(r.is_err(), "a combine of an unsplit shape");
    let split = AttnDecoderShape {
        kind: AttnDecoderKind::TokenToImageSplit,
        lk: 300,
        ..t2i
    };
    let short = gpu.zeros_f32(s, split.partial_len() - 1).unwrap();
    let r = ad::attn_decoder_combine(gpu, s, split, &short, &mut out);
    assert!(matches!(r, Err(samrt::Error::Cuda(_))), "{r:?}");
    let (g, b) = (gpu.zeros_f32(s, 64).unwrap(), gpu.zeros_f32(s, 64).unwrap());
    let mut xm = gpu.zeros_f32(s, 64 * 64).unwrap();
    let copies: samrt::cuda::ops::layer_norm_pe::LnPeCopies = (None, None);
    let r = layer_norm_pe(
        gpu,
        s,
        &mut xm,
        &g,
        &b,
        Some((&x, 64)),
        copies,
        (64, 64),
        1e-5,
    );
    assert!(r.is_err(), "a PE without the copy that adds it");
}
