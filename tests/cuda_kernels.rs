//! CUDA kernels against the f32 CPU reference, on fresh random inputs with awkward shapes
//! (LayerNorm, post-processing, mask downscaling, NMS, prompt embeddings, launch and shape
//! checks; the GEMMs and attention have their own files, cuda_gemm.rs and cuda_attention.rs).
//!
//! Inputs are rounded to fp16 before the reference sees them, so each comparison measures
//! the kernel (fp32 accumulation, fp16 output rounding), not the input quantisation. Without
//! an NVIDIA driver or GPU every GPU test prints why it skips and passes; the shape
//! validation tests at the end need no GPU.
#![cfg(feature = "cuda")]

mod common;

use common::gpu::*;

use samrt::cpu::ops::layer_norm::layer_norm;
use samrt::cuda::cuda_available;
use samrt::cuda::ops::gemm::{gemm as gpu_gemm, Epilogue, GemmScales, GemmShape};
use samrt::cuda::ops::layer_norm::{layer_norm as gpu_layer_norm, LayerNormShape, LnInput};
use samrt::Error;

// ---------------------------------------------------------------- layer norm

fn run_layer_norm(test: &str, rows: usize, dim: usize, f32_input: bool, eps: f32) {
    let Some(gpu) = gpu_or_skip(test) else { return };
    let mut rng = Rng::new(test);
    let s = gpu.stream();
    // Residual-stream-like rows: a large common offset makes a one-pass variance cancel.
    let mut x = rng.vec(rows * dim, -2.0, 2.0);
    for (r, row) in x.chunks_mut(dim).enumerate() {
        let off = (r % 7) as f32 * 3.0 - 9.0;
        row.iter_mut().for_each(|v| *v += off);
    }
    if !f32_input {
        x = round_f16(&x);
    }
    let gamma = rng.vec(dim, 0.5, 1.5);
    let beta = rng.vec(dim, -0.5, 0.5);
    let mut want = x.clone();
    layer_norm(&mut want, dim, &gamma, &beta, eps);

    let g = gpu.upload_f32(s, &gamma).unwrap();
    let b = gpu.upload_f32(s, &beta).unwrap();
    let mut out = gpu.zeros_f16(s, rows * dim).unwrap();
    let shape = LayerNormShape { rows, dim };
    if f32_input {
        let xd = gpu.upload_f32(s, &x).unwrap();
        gpu_layer_norm(&gpu, s, LnInput::F32(&xd), &g, &b, &mut out, shape, eps).unwrap();
    } else {
        let xd = gpu.upload_f16(s, &x).unwrap();
        gpu_layer_norm(&gpu, s, LnInput::F16(&xd), &g, &b, &mut out, shape, eps).unwrap();
    }
    let got = gpu.download_f16(s, &out).unwrap();
    // fp16 output: half an ulp is 2^-11 relative; 1e-3 absolute covers values near zero
    // and the fp32 (GPU) vs f64 (CPU) statistics.
    assert_close(test, &got, &want, 1e-3, 1e-3);
}

#[test]
fn layer_norm_f32_residual_input_matches_cpu() {
    run_layer_norm("layer_norm_f32_residual_input", 4099, 768, true, 1e-6);
}

#[test]
fn layer_norm_f16_input_matches_cpu() {
    run_layer_norm("layer_norm_f16_input_d1280", 4100, 1280, false, 1e-6);
    // 264 columns: the last 256-column chunk is almost empty.
    run_layer_norm("layer_norm_f16_input_d264", 333, 264, false, 1e-5);
    run_layer_norm("layer_norm_f16_input_d2048", 65, 2048, false, 1e-5);
}

// ---------------------------------------------------------------- launch checks

#[test]
fn launchers_reject_short_buffers() {
    let Some(gpu) = gpu_or_skip("launchers_reject_short_buffers") else {
        return;
    };
    let s = gpu.stream();
    let a = gpu.zeros_f16(s, 64 * 64).unwrap();
    let w = gpu.zeros_f16(s, 64 * 64).unwrap();
    let bias = gpu.zeros_f32(s, 64).unwrap();
    let mut out = gpu.zeros_f16(s, 64 * 63).unwrap();
    let shape = GemmShape {
        m: 64,
        n: 64,
        k: 64,
    };
    let r = gpu_gemm(
        &gpu,
        s,
        &a,
        &w,
        Some(&bias),
        shape,
        GemmScales::default(),
        Epilogue::Bias(&mut out),
    );
    assert!(matches!(r, Err(Error::Cuda(_))), "{r:?}");
}

#[test]
fn cuda_available_fails_cleanly_or_reports_a_device() {
    match cuda_available() {
        Ok(info) => {
            println!("CUDA device: {info:?}");
            assert!(!info.name.is_empty());
        }
        Err(Error::Cuda(msg)) if require_gpu() => {
            panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU: {msg}")
        }
        Err(Error::Cuda(msg)) => {
            println!("skipping device checks: {msg}");
            assert!(!msg.is_empty());
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

// ---------------------------------------------------------------- shape validation (no GPU)

#[test]
fn gemm_shapes_are_validated() {
    let ok = GemmShape {
        m: 4097,
        n: 770,
        k: 3080,
    };
    assert!(ok.validate().is_ok());
    for bad in [
        GemmShape {
            m: 4096,
            n: 768,
            k: 770,
        },
        GemmShape {
            m: 4096,
            n: 767,
            k: 768,
        },
        GemmShape {
            m: 0,
            n: 768,
            k: 768,
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn layer_norm_shapes_are_validated() {
    assert!(LayerNormShape { rows: 5, dim: 2048 }.validate().is_ok());
    for bad in [
        LayerNormShape { rows: 5, dim: 2056 },
        LayerNormShape { rows: 5, dim: 772 },
        LayerNormShape { rows: 0, dim: 768 },
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::Unsupported(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn embedded_ptx_lists_every_launcher_kernel() {
    let names: Vec<&str> = samrt::cuda::embedded_kernels()
        .flat_map(|(_, e)| e.iter().copied())
        .collect();
    for k in [
        "layer_norm_f16",
        "layer_norm_f32_f16",
        "gemm_bias_f16",
        "gemm_bias_gelu_f16",
        "gemm_bias_residual_f16",
        "conv3x3_f16",
        "attn_relpos_s14_d64_f16",
        "attn_relpos_s14_d80_f16",
        "attn_relpos_s64_d64_f16",
        "attn_relpos_s64_d80_f16",
        "attn_relpos_any_d64_f16",
        "attn_relpos_any_d80_f16",
        "attn_plain_d16_f16",
        "attn_plain_d32_f16",
        "attn_plain_d64_f16",
        "bilinear_w_f32",
        "bilinear_h_f32",
        "bilinear_channels_last_f32",
        "mask_threshold_pack",
        "prompt_sparse_f32",
        "mask_stability_counts",
        "nms_mask_f32",
        "mask_downscaling_f32",
    ] {
        assert!(names.contains(&k), "{k} missing from {names:?}");
    }
}

// ---------------------------------------------------------------- mask post-processing

#[test]
fn postprocess_masks_bit_identical_to_cpu() {
    let Some(gpu) = gpu_or_skip("postprocess_masks_bit_identical_to_cpu") else {
        return;
    };
    let mut rng = Rng::new("postprocess_masks_bit_identical_to_cpu");
    let stream = gpu.stream().clone();
    // (masks, input size, original size): the 1500x2250 photo; a portrait crop; a tiny
    // original (channels-last kernel in stage 2: out_h + out_w <= 128); 3 masks with one
    // torch thread (channels-last in both stages); one mask of an odd size.
    type Size = (usize, usize);
    let cases: [(usize, Size, Size, usize); 5] = [
        (3, (683, 1024), (1500, 2250), 2),
        (2, (1024, 768), (1200, 900), 2),
        (3, (731, 1024), (50, 70), 2),
        (3, (683, 1024), (300, 450), 1),
        (1, (1024, 1023), (997, 995), 2),
    ];
    for (m, input, orig, threads) in cases {
        // Logits around 0 with a large range, so thresholds cut through the masks.
        let low = rng.vec(m * 65536, -20.0, 20.0);
        let want =
            samrt::cpu::ops::postprocess::postprocess_masks_with(&low, m, input, orig, threads)
                .unwrap();
        let dev = gpu.upload_f32(&stream, &low).unwrap();
        let out = samrt::cuda::ops::postprocess::postprocess_masks(
            &gpu, &stream, &dev, m, input, orig, threads,
        )
        .unwrap();
        let got = gpu.download_f32(&stream, &out).unwrap();
        assert_eq!(got.len(), want.len());
        let ndiff = got
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        // Every rounding is explicit on both sides: bit-identical, not merely close.
        assert_eq!(
            ndiff, 0,
            "{m} masks {input:?} -> {orig:?}: {ndiff} values differ"
        );
        let packed =
            samrt::cuda::ops::postprocess::threshold_pack(&gpu, &stream, &out, m, orig).unwrap();
        let plane = orig.0 * orig.1;
        for offset in [1.0f32, 0.05] {
            let stab = samrt::cuda::ops::postprocess::stability_scores(
                &gpu, &stream, &out, m, plane, offset,
            )
            .unwrap();
            for k in 0..m {
                let want = samrt::amg::geometry::stability_score(
                    &want[k * plane..(k + 1) * plane],
                    offset,
                );
                assert_eq!(stab[k].to_bits(), want.to_bits(), "mask {k} stability");
            }
        }
        for k in 0..m {
            let mask = samrt::cpu::ops::postprocess::threshold(&want[k * plane..(k + 1) * plane]);
            assert_eq!(packed.mask(k), mask, "mask {k} bits");
            let stats = samrt::cpu::ops::postprocess::mask_stats(&mask, orig.0, orig.1).unwrap();
            assert_eq!(packed.stats[k], stats, "mask {k} area / box");
        }
    }
    // An all-negative mask: empty box, zero area.
    let low = vec![-1.0f32; 65536];
    let dev = gpu.upload_f32(&stream, &low).unwrap();
    let out = samrt::cuda::ops::postprocess::postprocess_masks(
        &gpu,
        &stream,
        &dev,
        1,
        (683, 1024),
        (100, 150),
        2,
    )
    .unwrap();
    let packed =
        samrt::cuda::ops::postprocess::threshold_pack(&gpu, &stream, &out, 1, (100, 150)).unwrap();
    assert_eq!(
        packed.stats[0],
        samrt::cpu::ops::postprocess::MaskStats::default()
    );
}

#[test]
fn postprocess_shapes_are_validated() {
    let Some(gpu) = gpu_or_skip("postprocess_shapes_are_validated") else {
        return;
    };
    let stream = gpu.stream().clone();
    let dev = gpu.upload_f32(&stream, &vec![0.5f32; 65536]).unwrap();
    let pp = |m, input, orig| {
        samrt::cuda::ops::postprocess::postprocess_masks(&gpu, &stream, &dev, m, input, orig, 2)
    };
    assert!(pp(0, (683, 1024), (10, 10)).is_err());
    assert!(pp(1, (1025, 1024), (10, 10)).is_err());
    assert!(pp(1, (683, 1024), (0, 10)).is_err());
    // Two masks need two planes.
    assert!(pp(2, (683, 1024), (10, 10)).is_err());
}

// ---------------------------------------------------------------- mask downscaling

#[test]
fn mask_downscaling_matches_cpu() {
    let Some(gpu) = gpu_or_skip("mask_downscaling_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new("mask_downscaling_matches_cpu");
    let cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
    let w = samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, rng.next());
    let pe = samrt::cpu::model::prompt_encoder::PromptEncoder::load(&w, &cfg).unwrap();
    let stream = gpu.stream().clone();
    let (m, g, dim) = (3, pe.grid(), pe.embed_dim());
    // Low-res logits as the decoder emits them (range about +-20), three different masks.
    let masks = rng.vec(m * 16 * g * g, -20.0, 20.0);
    let packed = gpu
        .upload_f32(&stream, &pe.mask_downscaling_packed())
        .unwrap();
    let dev = gpu.upload_f32(&stream, &masks).unwrap();
    let out = samrt::cuda::ops::mask_downscaling::mask_downscaling(
        &gpu, &stream, &dev, m, &packed, g, dim,
    )
    .unwrap();
    let got = gpu.download_f32(&stream, &out).unwrap();
    let plane = 16 * g * g;
    let mut worst = 0f32;
    for k in 0..m {
        let want = pe.embed_mask(&masks[k * plane..(k + 1) * plane]).unwrap();
        for (a, b) in got[k * dim * g * g..(k + 1) * dim * g * g]
            .iter()
            .zip(&want)
        {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    // f32 sums of at most 16 terms in another order, CUDA erff (2 ulp) vs the CPU erf
    // (1 ulp), LayerNorm over 4 and 16 channels: a few 1e-6 relative.
    println!("mask_downscaling: max rel. diff {worst:e}");
    assert!(worst <= 2e-5, "max rel. diff {worst}");
    let short = gpu.upload_f32(&stream, &[0.5f32; 10]).unwrap();
    assert!(samrt::cuda::ops::mask_downscaling::mask_downscaling(
        &gpu, &stream, &dev, m, &short, g, dim
    )
    .is_err());
}

// ---------------------------------------------------------------- box NMS

#[test]
fn nms_matches_cpu() {
    let Some(gpu) = gpu_or_skip("nms_matches_cpu") else {
        return;
    };
    let mut rng = Rng::new("nms_matches_cpu");
    let stream = gpu.stream().clone();
    // Integer boxes (as AMG's mask boxes) clustered so many overlap, float boxes, repeated
    // scores (ties keep input order), across tile boundaries (1, 63, 64, 65, 1000, 3000).
    for n in [1usize, 63, 64, 65, 1000, 3000] {
        for integer in [true, false] {
            let boxes: Vec<[f32; 4]> = (0..n)
                .map(|_| {
                    let (cx, cy) = (rng.uniform(0.0, 300.0), rng.uniform(0.0, 200.0));
                    let (w, h) = (rng.uniform(1.0, 120.0), rng.uniform(1.0, 90.0));
                    let b = [cx, cy, cx + w, cy + h];
                    if integer {
                        b.map(f32::floor)
                    } else {
                        b
                    }
                })
                .collect();
            let scores: Vec<f32> = (0..n)
                .map(|_| (rng.uniform(0.0, 1.0) * 20.0).floor() / 20.0)
                .collect();
            for thresh in [0.7, 0.3, 0.0, 1.0] {
                let want = samrt::amg::geometry::nms(&boxes, &scores, thresh);
                let got =
                    samrt::cuda::ops::nms::nms(&gpu, &stream, &boxes, &scores, thresh).unwrap();
                assert_eq!(got, want, "n {n} integer {integer} thresh {thresh}");
            }
        }
    }
    assert!(samrt::cuda::ops::nms::nms(&gpu, &stream, &[], &[], 0.7)
        .unwrap()
        .is_empty());
    assert!(samrt::cuda::ops::nms::nms(&gpu, &stream, &[[0.0; 4]], &[], 0.7).is_err());
}

// ---------------------------------------------------------------- prompt encoder

#[test]
fn prompt_sparse_embeddings_match_cpu() {
    use samrt::cuda::ops::prompt_encoder::{pad_prompts, prompt_tokens, sparse_embeddings};
    let Some(gpu) = gpu_or_skip("prompt_sparse_embeddings_match_cpu") else {
        return;
    };
    let mut rng = Rng::new("prompt_sparse_embeddings_match_cpu");
    let cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
    let w = samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, rng.next());
    let pe = samrt::cpu::model::prompt_encoder::PromptEncoder::load(&w, &cfg).unwrap();
    let stream = gpu.stream().clone();
    // 37 prompts: 0-4 points with labels -1/0/1, with and without a box, coordinates
    // anywhere in (and a little outside) the 1024 frame.
    let mut cpu = Vec::new();
    let mut toks = Vec::new();
    for p in 0..37 {
        let n = p % 5;
        let pts: Vec<[f32; 2]> = (0..n)
            .map(|_| [rng.uniform(-10.0, 1030.0), rng.uniform(-10.0, 1030.0)])
            .collect();
        let labels: Vec<i32> = (0..n).map(|_| (rng.next() % 3) as i32 - 1).collect();
        let bx = (p % 3 == 0 || n == 0).then(|| {
            let (x0, y0) = (rng.uniform(0.0, 900.0), rng.uniform(0.0, 900.0));
            [
                x0,
                y0,
                x0 + rng.uniform(1.0, 120.0),
                y0 + rng.uniform(1.0, 120.0),
            ]
        });
        cpu.push(pe.encode_sparse(&pts, &labels, bx).unwrap());
        toks.push(prompt_tokens(&pts, &labels, bx).unwrap());
    }
    let (gauss, table, size) = pe.sparse_tables();
    let (coords, kinds, t) = pad_prompts(&toks);
    let g = gpu.upload_f32(&stream, &gauss).unwrap();
    let tb = gpu.upload_f32(&stream, &table).unwrap();
    let c = gpu.upload_f32(&stream, &coords).unwrap();
    let out = sparse_embeddings(&gpu, &stream, &g, &tb, &c, &kinds, size).unwrap();
    let got = gpu.download_f32(&stream, &out).unwrap();
    let dim = 256;
    let mut worst = 0f32;
    for (p, (sparse, n)) in cpu.iter().enumerate() {
        assert_eq!(*n, toks[p].len());
        for k in 0..t {
            let row = &got[(p * t + k) * dim..(p * t + k + 1) * dim];
            let want = if k < *n {
                &sparse[k * dim..(k + 1) * dim]
            } else {
                &table[..dim] // padding: not-a-point
            };
            for (a, b) in row.iter().zip(want) {
                worst = worst.max((a - b).abs());
            }
        }
    }
    // Identical argument t (explicitly rounded steps); CUDA sincosf is within 2 ulp and the
    // CPU sin/cos within 1 ulp of values in [-1, 1], then one rounded add.
    println!(
        "prompt_sparse: max |gpu - cpu| {worst:e} over {} tokens",
        kinds.len()
    );
    assert!(worst <= 1e-6, "max diff {worst}");
}
