//! Mask post-processing (bit-identical to the CPU), the prompt encoder's mask downscaling
//! and sparse embeddings, and the automatic mask generator's box NMS, against their CPU
//! twins.

use crate::common::gpu::Rng;
use samrt::cuda::GpuContext;

#[allow(clippy::too_many_arguments)]
pub fn run_postprocess(
    gpu: &GpuContext,
    rng: &mut Rng,
    frame: samrt::cpu::ops::postprocess::MaskFrame,
    m: usize,
    input: (usize, usize),
    orig: (usize, usize),
    threads: usize,
    all_negative: bool,
) {
    use samrt::cpu::ops::postprocess as cpu;
    use samrt::cuda::ops::postprocess::{postprocess_masks, stability_scores, threshold_pack};
    let s = gpu.stream();
    // Logits around 0 with a large range, so thresholds cut through the masks.
    let low = if all_negative {
        vec![-1.0f32; m * frame.plane()]
    } else {
        rng.vec(m * frame.plane(), -20.0, 20.0)
    };
    let dev = gpu.upload_f32(s, &low).unwrap();
    let out = postprocess_masks(gpu, s, frame, &dev, m, input, orig, threads).unwrap();
    let packed = threshold_pack(gpu, s, &out, m, orig).unwrap();
    if all_negative {
        // Empty box, zero area.
        assert_eq!(packed.stats[0], cpu::MaskStats::default());
        return;
    }
    let want = frame
        .postprocess_with(&low, m, input, orig, threads)
        .unwrap();
    let got = gpu.download_f32(s, &out).unwrap();
    assert_eq!(got.len(), want.len());
    let ndiff = crate::refs::bits_differ(&got, &want);
    // Every rounding is explicit on both sides: bit-identical, not merely close.
    assert_eq!(
        ndiff, 0,
        "{m} masks {input:?} -> {orig:?}: {ndiff} values differ"
    );
    let plane = orig.0 * orig.1;
    for offset in [1.0f32, 0.05] {
        let stab = stability_scores(gpu, s, &out, m, plane, offset).unwrap();
        for k in 0..m {
            let want =
                samrt::amg::geometry::stability_score(&want[k * plane..(k + 1) * plane], offset);
            assert_eq!(stab[k].to_bits(), want.to_bits(), "mask {k} stability");
        }
    }
    for k in 0..m {
        let mask = cpu::threshold(&want[k * plane..(k + 1) * plane]);
        assert_eq!(packed.mask(k), mask, "mask {k} bits");
        let stats = cpu::mask_stats(&mask, orig.0, orig.1).unwrap();
        assert_eq!(packed.stats[k], stats, "mask {k} area / box");
    }
    scratch_path(gpu, (frame, &dev, m, input, orig, threads), &want);
}

/// The path the device generator takes: listed planes (in reverse order) post-processed in
/// a kept scratch, their stability counted there, and the packed bits of every other one
/// downloaded; each equals the CPU's result for its plane.
/// A post-processing case: frame, device low-res planes, count, input and original size,
/// torch threads.
type PostCase<'a> = (
    samrt::cpu::ops::postprocess::MaskFrame,
    &'a cudarc::driver::CudaSlice<f32>,
    usize,
    (usize, usize),
    (usize, usize),
    usize,
);

fn scratch_path(
    gpu: &GpuContext,
    (frame, dev, m, input, orig, threads): PostCase<'_>,
    want: &[f32],
) {
    use samrt::cpu::ops::postprocess as cpu;
    use samrt::cuda::ops::postprocess::{
        download_packed_planes, postprocess_into, stability_scores_logits, threshold_pack_logits,
        PostScratch,
    };
    let s = gpu.stream();
    let plane = orig.0 * orig.1;
    let list: Vec<i32> = (0..m as i32).rev().collect();
    let mut scratch = PostScratch::default();
    postprocess_into(
        gpu,
        s,
        frame,
        dev,
        (m, Some(&list)),
        input,
        orig,
        threads,
        &mut scratch,
    )
    .unwrap();
    let stab = stability_scores_logits(gpu, s, m, plane, 1.0, &mut scratch).unwrap();
    threshold_pack_logits(gpu, s, m, orig, &mut scratch).unwrap();
    let keep: Vec<usize> = (0..m).step_by(2).collect();
    let packed = download_packed_planes(s, &scratch, m, &keep, orig).unwrap();
    assert_eq!(packed.stats.len(), keep.len());
    for (j, &k) in keep.iter().enumerate() {
        let src = list[k] as usize;
        let logits = &want[src * plane..(src + 1) * plane];
        let st = samrt::amg::geometry::stability_score(logits, 1.0);
        assert_eq!(
            stab[k].to_bits(),
            st.to_bits(),
            "listed plane {k} stability"
        );
        let mask = cpu::threshold(logits);
        assert_eq!(packed.mask(j), mask, "listed plane {k} bits");
        let stats = cpu::mask_stats(&mask, orig.0, orig.1).unwrap();
        assert_eq!(packed.stats[j], stats, "listed plane {k} area / box");
    }
    // Planes out of order or past the count are refused.
    assert!(download_packed_planes(s, &scratch, m, &[m], orig).is_err());
    assert!(download_packed_planes(s, &scratch, m, &[1, 0], orig).is_err());
}

// ---------------------------------------------------------------- prompt encoder, AMG

/// vit_b's prompt encoder with random weights.
fn prompt_encoder(rng: &mut Rng) -> samrt::cpu::model::prompt_encoder::PromptEncoder {
    let cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
    let w = samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, rng.next());
    samrt::cpu::model::prompt_encoder::PromptEncoder::load(&w, &cfg).unwrap()
}

pub fn run_mask_downscaling(gpu: &GpuContext, rng: &mut Rng, m: usize) {
    use samrt::cuda::ops::mask_downscaling::mask_downscaling;
    let pe = prompt_encoder(rng);
    let s = gpu.stream();
    let (g, dim) = (pe.grid(), pe.embed_dim());
    // Low-res logits as the decoder emits them (range about +-20), different masks.
    let masks = rng.vec(m * 16 * g * g, -20.0, 20.0);
    let packed = gpu.upload_f32(s, &pe.mask_downscaling_packed()).unwrap();
    let dev = gpu.upload_f32(s, &masks).unwrap();
    let out = mask_downscaling(gpu, s, &dev, m, &packed, g, dim).unwrap();
    let got = gpu.download_f32(s, &out).unwrap();
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
    // Packed weights too short.
    let short = gpu.upload_f32(s, &[0.5f32; 10]).unwrap();
    assert!(mask_downscaling(gpu, s, &dev, m, &short, g, dim).is_err());
}

pub fn run_prompt_sparse(gpu: &GpuContext, rng: &mut Rng, prompts: usize) {
    use samrt::cuda::ops::prompt_encoder::{pad_prompts, prompt_tokens, sparse_embeddings};
    let pe = prompt_encoder(rng);
    let s = gpu.stream();
    // 0-4 points with labels -1/0/1, with and without a box, coordinates anywhere in (and a
    // little outside) the 1024 frame.
    let mut cpu = Vec::new();
    let mut toks = Vec::new();
    for p in 0..prompts {
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
    let g = gpu.upload_f32(s, &gauss).unwrap();
    let tb = gpu.upload_f32(s, &table).unwrap();
    let c = gpu.upload_f32(s, &coords).unwrap();
    let out = sparse_embeddings(gpu, s, &g, &tb, &c, &kinds, size).unwrap();
    let got = gpu.download_f32(s, &out).unwrap();
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

/// Integer boxes (as AMG's mask boxes) clustered so many overlap, float boxes, repeated
/// scores (ties keep input order); the kept indices must equal torchvision's (the CPU twin).
pub fn run_nms(gpu: &GpuContext, rng: &mut Rng, sizes: &[usize]) {
    use samrt::cuda::ops::nms::nms;
    let s = gpu.stream();
    for &n in sizes {
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
                let got = nms(gpu, s, &boxes, &scores, thresh).unwrap();
                assert_eq!(got, want, "n {n} integer {integer} thresh {thresh}");
            }
        }
    }
    // No boxes; scores missing.
    assert!(nms(gpu, s, &[], &[], 0.7).unwrap().is_empty());
    assert!(nms(gpu, s, &[[0.0; 4]], &[], 0.7).is_err());
}
