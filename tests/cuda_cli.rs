//! `samrt segment --device cuda` end to end (on vgpu in CI): the image encoder on the GPU,
//! the decoder on the CPU from the downloaded embedding, against the official predictor's
//! fixtures. One CLI call decodes all of the image's fixture prompts
//! (`--prompts`), so each image is encoded once.
//!
//! Tolerances (the issue's): mask agreement >= 99.5 %, |score - official| <= 2e-2. The
//! embedding carries fp16 rounding (rel. L2 ~5e-4, see tests/cuda_encoder.rs), which moves
//! scores by ~1e-3 and flips only pixels at the mask boundary.
#![cfg(feature = "cuda")]

mod common;
use common::*;
use std::process::Command;

/// The image whose prompts run on the GPU path: the photo with six fixture prompts (points,
/// a box, a mask input, combinations, single- and multi-mask). One image keeps the vgpu run
/// short; the image decoding and resize are the CPU path's, tested in tests/cli.rs.
const IMAGES: [&str; 1] = ["coffee"];

#[test]
fn segment_on_cuda_matches_official_fixtures() {
    if samrt::cuda::cuda_available().is_err() {
        if std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU");
        }
        println!("skipping segment_on_cuda_matches_official_fixtures: no CUDA device");
        return;
    }
    let cache = scratch("cuda-cli-cache");
    for image in IMAGES {
        let ps: Vec<&serde_json::Value> =
            prompts().iter().filter(|p| p["image"] == image).collect();
        let list: Vec<serde_json::Value> = ps
            .iter()
            .map(|p| {
                let mut o = serde_json::Map::new();
                if !p["points"].is_null() {
                    o.insert("points".into(), p["points"].clone());
                    o.insert("labels".into(), p["labels"].clone());
                }
                if !p["box"].is_null() {
                    o.insert("box".into(), p["box"].clone());
                }
                if let Some(f) = p["mask_input"].as_str() {
                    let abs = fixtures().join(f);
                    o.insert("mask_input".into(), abs.to_str().unwrap().into());
                }
                o.insert("multimask".into(), p["multimask"].clone());
                serde_json::Value::Object(o)
            })
            .collect();
        let dir = scratch(&format!("cuda-cli-{image}"));
        let pfile = dir.join("prompts.json");
        std::fs::write(&pfile, serde_json::to_vec(&list).unwrap()).unwrap();
        let img = fixtures().join(common::image(image)["file"].as_str().unwrap());
        let out = dir.join("out");
        let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
            .args(["segment", "--model"])
            .arg(tiny_safetensors())
            .arg("--image")
            .arg(&img)
            .arg("--prompts")
            .arg(&pfile)
            .args(["--device", "cuda", "--out"])
            .arg(&out)
            .env("SAMRT_CACHE_DIR", &cache)
            .output()
            .expect("run samrt");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{image}: {err}");
        assert!(err.contains("image encoder on CUDA device"), "{err}");
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        let got = json["prompts"].as_array().unwrap();
        assert_eq!(got.len(), ps.len());
        for (p, g) in ps.iter().zip(got) {
            let name = p["name"].as_str().unwrap();
            let scores = f64s(&p["scores"]);
            let masks = g["masks"].as_array().unwrap();
            assert_eq!(masks.len(), scores.len(), "{name}");
            let (shape, want) = packed_masks(&p["masks"]);
            let (h, w) = (shape[1], shape[2]);
            let pdir = out.join(g["dir"].as_str().unwrap());
            for (i, rec) in masks.iter().enumerate() {
                let s = rec["score"].as_f64().unwrap();
                let ds = (s - scores[i]).abs();
                assert!(ds <= 2e-2, "{name}: score {s} vs {}", scores[i]);
                let png = image::open(pdir.join(format!("mask_{i}.png"))).unwrap();
                let png = png.as_luma8().expect("8-bit grayscale PNG");
                let ours: Vec<bool> = png.pixels().map(|p| p.0[0] == 255).collect();
                let theirs = &want[i * h * w..(i + 1) * h * w];
                let agree =
                    ours.iter().zip(theirs).filter(|(a, b)| a == b).count() as f64 / (h * w) as f64;
                println!(
                    "{name} mask {i}: |d score| {ds:.2e}, agreement {:.4} %",
                    100.0 * agree
                );
                assert!(agree >= 0.995, "{name} mask {i}: agreement {agree}");
            }
        }
    }
}

/// A small random SAM (encoder: 2 blocks, 128 dim, img_size 256, one global block; official
/// decoder) written as fp16 safetensors, for CLI runs that must stay fast on vgpu.
fn small_model_file() -> std::path::PathBuf {
    use samrt::io::config::{EncoderConfig, SamConfig};
    let mut enc = EncoderConfig::standard(128, 2, 2, vec![1]);
    enc.img_size = 256;
    let cfg = SamConfig::with_encoder(enc);
    let mut w = samrt::cpu::model::image_encoder::random_encoder_weights(&cfg.encoder, 21);
    w.tensors
        .extend(samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, 22).tensors);
    let mut tensors: Vec<samrt::io::checkpoint::TensorF16> = w
        .tensors
        .into_iter()
        .map(|(name, (shape, v))| samrt::io::checkpoint::TensorF16 {
            name,
            shape,
            data: v.into_iter().map(half::f16::from_f32).collect(),
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let path = scratch("cuda-bench").join("small.safetensors");
    samrt::io::checkpoint::write_safetensors_f16(&path, &tensors).unwrap();
    path
}

#[test]
fn bench_on_cuda_times_the_encoder_with_events() {
    if samrt::cuda::cuda_available().is_err() {
        if std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU");
        }
        println!("skipping bench_on_cuda_times_the_encoder_with_events: no CUDA device");
        return;
    }
    let model = small_model_file();
    let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args([
            "bench", "--device", "cuda", "--iters", "1", "--batch", "2", "--json", "--model",
        ])
        .arg(&model)
        .env("SAMRT_CACHE_DIR", scratch("cuda-bench-cache"))
        .output()
        .expect("run samrt");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    assert!(j["device"].as_str().unwrap().starts_with("GPU: "), "{j}");
    assert!(j["driver"].as_i64().unwrap() > 0);
    let rows = j["results"].as_array().unwrap();
    let comp = |c: &str| rows.iter().find(|r| r["component"] == c);
    for c in [
        "encoder",
        "encoder_end_to_end",
        "encoder.gemm_bias_f16",
        "encoder.attn_relpos",
        "encoder.conv3x3_f16",
    ] {
        let r = comp(c).unwrap_or_else(|| panic!("no {c} row in {j}"));
        assert_eq!(r["batch"], 2);
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_mem_mb"].as_u64().unwrap() > 0, "{r}");
    }
}
