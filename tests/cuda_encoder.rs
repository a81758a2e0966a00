//! The image encoder end to end on the CUDA path (on vgpu in CI): weights on the device, the
//! scheduled graph over one arena, CUDA-graph replay, against the f32 CPU oracle.
//!
//! Tolerance: relative L2 <= 5e-3 for the embedding. The GPU stores activations in fp16
//! (unit roundoff 2^-11 = 4.9e-4) between ops and accumulates in fp32; through a few dozen
//! ops the errors add up to ~1e-3, and the final LayerNorm2d normalises away scale drift.
#![cfg(feature = "cuda")]

mod common;

use std::sync::Arc;

use samrt::cpu::model::image_encoder::{random_encoder_weights, ImageEncoder};
use samrt::cpu::ops::preprocess_patchify::preprocess;
use samrt::cuda::model::encoder_exec::CudaEncoder;
use samrt::cuda::GpuContext;
use samrt::io::config::EncoderConfig;
use samrt::io::image::{load_image, RgbImage};
use samrt::io::weights::{MapWeights, WeightSource};

/// The tests of this file run one at a time: the device allocation counter is per process,
/// and on vgpu each launch already uses every core, so parallel tests would only contend.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gpu_or_skip(test: &str) -> Option<Arc<GpuContext>> {
    common::gpu::gpu_or_skip(test).map(Arc::new)
}

fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        assert!(g.is_finite(), "non-finite output {g}");
        num += (g as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

fn photo(name: &str) -> RgbImage {
    load_image(&common::fixtures().join("images").join(name)).unwrap()
}

/// A small synthetic image with structure at every scale (not a constant, not zeros).
fn synthetic(w: usize, h: usize, seed: u32) -> RgbImage {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3u32 {
                let v = (x as u32 * (7 + c) + y as u32 * (13 + 2 * c) + seed * 31)
                    ^ ((x * y) as u32 >> 3);
                data.push((v % 251) as u8);
            }
        }
    }
    RgbImage {
        width: w,
        height: h,
        data,
    }
}

/// Random encoder weights made well conditioned as in trained ViTs: residual-branch
/// outputs (attn.proj, mlp.lin2) scaled by 1/sqrt(2*depth), every weight rounded to fp16 so
/// both paths use the same numbers. `boost` multiplies qkv and lin1 weights (overflow test).
fn weights(cfg: &EncoderConfig, seed: u64, boost: f32) -> MapWeights {
    let mut w = random_encoder_weights(cfg, seed);
    let damp = 1.0 / (2.0 * cfg.depth as f32).sqrt();
    for (name, (_, v)) in w.tensors.iter_mut() {
        let f = if name.ends_with("attn.proj.weight") || name.ends_with("mlp.lin2.weight") {
            damp / boost.max(1.0)
        } else if name.ends_with("attn.qkv.weight") || name.ends_with("mlp.lin1.weight") {
            boost
        } else {
            1.0
        };
        v.iter_mut()
            .for_each(|x| *x = half::f16::from_f32(*x * f).to_f32());
    }
    w
}

fn cpu_embedding(w: &dyn WeightSource, cfg: &EncoderConfig, img: &RgbImage) -> Vec<f32> {
    let enc = ImageEncoder::load(w, cfg).unwrap();
    let (x, _) = preprocess(img, cfg.img_size).unwrap();
    enc.forward(&x).unwrap()
}

fn small_cfg(img: usize) -> EncoderConfig {
    // head_dim 64, one global and one windowed block, grid 16 (windows padded 16 -> 28).
    let mut c = EncoderConfig::standard(128, 2, 2, vec![1]);
    c.img_size = img;
    c
}

#[test]
fn encoder_tiny_fixture_1024_matches_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_tiny_fixture_1024_matches_cpu") else {
        return;
    };
    let sam = common::tiny_model();
    let ck = samrt::io::checkpoint::Checkpoint::open(common::tiny_safetensors()).unwrap();
    let cfg = &sam.config.encoder;
    let enc = CudaEncoder::new(gpu, &ck, cfg).unwrap();
    let img = photo("coffee.png");
    let got = enc.embed_batch(&[&img]).unwrap();
    let want = sam.embed(&img).unwrap();
    assert_eq!(got[0].1, want.input_size);
    let e = rel_l2(&got[0].0, &want.features);
    println!("tiny fixture model, 1024: embedding rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

#[test]
fn encoder_vit_b_shaped_256_matches_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_vit_b_shaped_256_matches_cpu") else {
        return;
    };
    let mut cfg = EncoderConfig::vit_b();
    cfg.img_size = 256;
    let w = weights(&cfg, 7, 1.0);
    let img = synthetic(300, 200, 1);
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let got = enc.embed_batch(&[&img]).unwrap();
    let want = cpu_embedding(&w, &cfg, &img);
    let e = rel_l2(&got[0].0, &want);
    println!("random vit_b-shaped, 256: embedding rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

/// vit_h's head dim (80) at 1024 px, so that its S = 64 global attention (on sm_90 the
/// wgmma kernel `attn_relpos_s64_d80_sm90a.cu`) and S = 14 windows run inside an encoder:
/// 2 heads of 80, one windowed and one global block.
#[test]
fn encoder_hd80_1024_matches_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_hd80_1024_matches_cpu") else {
        return;
    };
    let cfg = EncoderConfig::standard(160, 2, 2, vec![1]);
    let w = weights(&cfg, 11, 1.0);
    let img = synthetic(700, 1024, 6);
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let got = enc.embed_batch(&[&img]).unwrap();
    let want = cpu_embedding(&w, &cfg, &img);
    let e = rel_l2(&got[0].0, &want);
    println!("random hd 80 encoder, 1024: embedding rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

#[test]
fn encoder_batch_of_two_equals_two_single_calls() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_batch_of_two_equals_two_single_calls") else {
        return;
    };
    let cfg = small_cfg(256);
    let w = weights(&cfg, 11, 1.0);
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let (a, b) = (synthetic(256, 180, 2), synthetic(97, 256, 3));
    let both = enc.embed_batch(&[&a, &b]).unwrap();
    let one = enc.embed_batch(&[&a]).unwrap();
    let two = enc.embed_batch(&[&b]).unwrap();
    // Every kernel computes each row/window the same way whatever the batch: bit-identical.
    assert_eq!(both[0].0, one[0].0);
    assert_eq!(both[1].0, two[0].0);
    assert_eq!(both[1].1, (256, 97));
    let e = rel_l2(&both[1].0, &cpu_embedding(&w, &cfg, &b));
    println!("small model, batch 2: image 1 rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

#[test]
fn checked_arena_is_bit_identical_to_the_shared_arena() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("checked_arena_is_bit_identical_to_the_shared_arena") else {
        return;
    };
    let cfg = small_cfg(256);
    let w = weights(&cfg, 13, 1.0);
    let arena = CudaEncoder::new(gpu, &w, &cfg)
        .unwrap()
        .checked_arena(false);
    let checked = arena.new_context().checked_arena(true);
    let (a, b) = (synthetic(256, 180, 4), synthetic(97, 256, 5));
    // Same kernels, same order, other addresses: the same bits, batch 1 and 2.
    for imgs in [vec![&a], vec![&a, &b]] {
        let want = arena.embed_batch(&imgs).unwrap();
        let got = checked.embed_batch(&imgs).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&g.0), bits(&w.0));
            assert_eq!(g.1, w.1);
        }
    }
}

#[test]
fn encoder_fp16_overflow_is_avoided_by_scaling() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_fp16_overflow_is_avoided_by_scaling") else {
        return;
    };
    let cfg = small_cfg(256);
    // qkv and lin1 weights x400: their outputs reach ~1e5 > 65504, which a plain fp16 path
    // stores as inf. The residual stream (fp32) grows accordingly.
    let w = weights(&cfg, 5, 400.0);
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let s = enc.scales().clone();
    assert!(
        s.qkv.iter().chain(&s.mlp).any(|&x| x < 1.0),
        "the bound should demand scaling: {s:?}"
    );
    let img = synthetic(256, 256, 4);
    let got = enc.embed_batch(&[&img]).unwrap();
    let want = cpu_embedding(&w, &cfg, &img);
    let e = rel_l2(&got[0].0, &want);
    println!("x400 qkv/lin1 weights, scales {s:?}: rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

/// A finite f32 weight beyond fp16's range (fine for the f32 CPU backend) is refused at
/// upload naming the tensor, instead of becoming infinity on the device only.
#[test]
fn weight_beyond_fp16_range_is_refused_at_upload() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("weight_beyond_fp16_range_is_refused_at_upload") else {
        return;
    };
    let cfg = small_cfg(256);
    let mut w = weights(&cfg, 6, 1.0);
    let name = "image_encoder.pos_embed";
    w.tensors.get_mut(name).expect("pos_embed").1[7] = 1.0e5;
    let err = match CudaEncoder::new(gpu, &w, &cfg) {
        Ok(_) => panic!("a 1e5 weight must not be stored as fp16"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(name) && err.contains("100000") && err.contains("65504"),
        "{err}"
    );
}

/// `vgpu_allocation_count`, when the driver is vgpu (a real driver lacks the symbol).
fn vgpu_allocations() -> Option<u64> {
    // SAFETY: looks up a symbol of the already-loaded driver library; the signature is
    // vgpu's `extern "C" fn() -> u64`.
    unsafe {
        let lib = cudarc::driver::sys::culib();
        let f = lib
            .get::<unsafe extern "C" fn() -> u64>(b"vgpu_allocation_count")
            .ok()?;
        Some(f())
    }
}

#[test]
fn encoder_steady_state_makes_no_device_allocations() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_steady_state_makes_no_device_allocations") else {
        return;
    };
    let cfg = small_cfg(128);
    let w = weights(&cfg, 3, 1.0);
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let img = synthetic(128, 100, 5);
    let first = enc.embed_batch(&[&img]).unwrap();
    let Some(before) = vgpu_allocations() else {
        println!("not on vgpu: allocation counting needs vgpu_allocation_count; skipped");
        return;
    };
    for _ in 0..3 {
        let again = enc.embed_batch(&[&img]).unwrap();
        assert_eq!(
            again[0].0, first[0].0,
            "replay must reproduce the first run"
        );
    }
    assert_eq!(
        vgpu_allocations(),
        Some(before),
        "device allocations after warm-up"
    );
    let (wb, ab) = enc.planned_bytes(1);
    println!("planned: weights {wb} B, arena {ab} B");
    assert!(ab > 0 && wb > 0);
}

/// A full random vit_b at 1024x1024 (about 370 GFLOP): seconds on a GPU, hours on vgpu, so
/// ignored by default; tools/gpu-run.sh runs it with `--include-ignored`.
#[test]
#[ignore]
fn encoder_vit_b_1024_matches_cpu() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = gpu_or_skip("encoder_vit_b_1024_matches_cpu") else {
        return;
    };
    let cfg = EncoderConfig::vit_b();
    let w = weights(&cfg, 8, 1.0);
    let img = photo("coffee.png");
    let enc = CudaEncoder::new(gpu, &w, &cfg).unwrap();
    let got = enc.embed_batch(&[&img]).unwrap();
    let want = cpu_embedding(&w, &cfg, &img);
    let e = rel_l2(&got[0].0, &want);
    println!("random vit_b, 1024: embedding rel. L2 {e:.3e}");
    assert!(e <= 5e-3, "rel. L2 {e}");
}

/// The planned device memory of a vit_b encoder at 1024 (no GPU needed): weights + arena at
/// batch 1 under the 600 MB target, and the arena growing with the batch.
#[test]
fn vit_b_memory_plan_meets_the_batch_1_target() {
    let cfg = EncoderConfig::vit_b();
    let w = random_encoder_weights(&cfg, 1);
    let (wb, a1) = samrt::cuda::model::encoder::memory_plan(&w, &cfg, 1).unwrap();
    let (_, a8) = samrt::cuda::model::encoder::memory_plan(&w, &cfg, 8).unwrap();
    let mb = |b: usize| b as f64 / 1e6;
    println!(
        "vit_b plan: weights {:.1} MB, arena {:.1} MB (batch 1), {:.1} MB (batch 8); peak {:.1} MB",
        mb(wb),
        mb(a1),
        mb(a8),
        mb(wb + a1)
    );
    assert!(wb + a1 <= 600_000_000, "batch-1 peak {} B", wb + a1);
    assert!(
        a8 > 7 * a1 && a8 <= 8 * a1 + 4096,
        "arena at batch 8: {a8} B vs {a1} B"
    );
}
