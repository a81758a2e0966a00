//! `samrt segment --device cuda` end to end (on vgpu in CI): the image encoder and the mask
//! decoder on the GPU, against the official predictor's fixtures. One CLI call decodes all
//! of the image's fixture prompts (`--prompts`), so each image is encoded once.
//!
//! Tolerances (issues 19 and 20): mask agreement >= 99.5 %, |score - official| <= 2e-2,
//! low-res logits within 0.1 of the official model in float64 where the fixture stores them.
//! The embedding carries fp16 rounding (rel. L2 ~5e-4, see tests/cuda_encoder.rs) and the
//! decoder's image side runs on fp16 operands, which move scores by ~1e-3 and flip only
//! pixels at the mask boundary.
#![cfg(feature = "cuda")]

mod common;
use common::gpu::cuda_or_skip;
use common::*;
use std::process::Command;

/// The image whose prompts run on the GPU path: the photo with six fixture prompts (points,
/// a box, a mask input, combinations, single- and multi-mask). One image keeps the vgpu run
/// short; the image decoding and resize are the CPU path's, tested in tests/cli.rs.
const IMAGES: [&str; 1] = ["coffee"];

#[test]
fn segment_on_cuda_matches_official_fixtures() {
    if !cuda_or_skip("segment_on_cuda_matches_official_fixtures") {
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
        assert!(err.contains("mask decoder on CUDA device"), "{err}");
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
fn bench_on_cuda_times_the_encoder_and_decoder() {
    if !cuda_or_skip("bench_on_cuda_times_the_encoder_and_decoder") {
        return;
    }
    let model = small_model_file();
    let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args([
            "bench",
            "--device",
            "cuda",
            "--iters",
            "1",
            "--batch",
            "2",
            "--prompts",
            "3",
            "--json",
            "--model",
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
    // The GEMM and conv rows carry their block tile (`_BMxBN`, GemmTile::select's).
    let comp_tiled = |c: &str| {
        rows.iter().find(|r| {
            r["component"]
                .as_str()
                .and_then(|s| s.strip_prefix(c))
                .is_some_and(|t| t.starts_with('_'))
        })
    };
    for c in [
        "encoder",
        "encoder_end_to_end",
        "encoder.gemm_bias_f16",
        "encoder.attn_relpos",
        "encoder.conv3x3_f16",
    ] {
        let r = comp(c)
            .or_else(|| comp_tiled(c))
            .unwrap_or_else(|| panic!("no {c} row in {j}"));
        assert_eq!(r["batch"], 2);
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["peak_mem_mb"].as_u64().unwrap() > 0, "{r}");
    }
    // The decoder: one point end to end, and --prompts single-point prompts (buckets 2 + 1).
    for (c, n) in [("decoder", 1), ("decoder_batch", 3)] {
        let r = comp(c).unwrap_or_else(|| panic!("no {c} row in {j}"));
        assert_eq!(r["batch"], n);
        assert!(r["median_ms"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// Models of other input sizes with the encoder on the GPU (tests/fixtures/img_size/): one
/// built for 256 px and the 1024 checkpoint run at `--image-size 512` (its rel-pos tables
/// and pos_embed resized on the host, then uploaded as fp16). Judged against the official
/// model in float64 with this file's tolerances for the fp16 encoder: mask agreement >=
/// 99.5 %, |score - official| <= 2e-2; low-res logits are [C, 4E, 4E].
#[test]
fn segment_on_cuda_at_other_image_sizes() {
    if !cuda_or_skip("segment_on_cuda_at_other_image_sizes") {
        return;
    }
    let cache = scratch("cuda-cli-cache");
    for (case, trained, size) in [("vit256", 256, None), ("vit1024_at512", 1024, Some("512"))] {
        let dir = img_size_dir().join(case);
        let out = scratch(&format!("cuda-img-size-{case}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_samrt"));
        cmd.args(["segment", "--model"])
            .arg(img_size_model(trained))
            .arg("--image")
            .arg(img_size_dir().join("image.png"))
            .arg("--prompts")
            .arg(dir.join("prompts.json"))
            .args(["--device", "cuda", "--out"])
            .arg(&out)
            .env("SAMRT_CACHE_DIR", &cache);
        if let Some(s) = size {
            cmd.args(["--image-size", s]);
        }
        let o = cmd.output().expect("run samrt");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{case}: {err}");
        assert!(err.contains("image encoder on CUDA device"), "{err}");
        assert!(err.contains("mask decoder on CUDA device"), "{err}");
        check_img_size_case(case, &out);
    }
}

/// The three prompts of img_size case `case` as `segment --prompts` wrote them into `out`,
/// against the official model in float64: scores, masks at the original size, low-res
/// logits `[C, 4E, 4E]`.
fn check_img_size_case(case: &str, out: &std::path::Path) {
    let dir = img_size_dir().join(case);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
    let side = json["low_res"].as_u64().unwrap() as usize;
    for k in 0..3 {
        let pdir = out.join(format!("prompt_{k}"));
        let (shape, low_res) = samrt::io::npy::read_f32(&pdir.join("low_res_logits.npy")).unwrap();
        assert_eq!(&shape[1..], [side, side], "{case} p{k}");
        // The float64 run's low-res logits of the masks this call returns.
        let (_, want_lr) =
            samrt::io::npy::read_f32(&dir.join(format!("p{k}_low_res.npy"))).unwrap();
        let dl = max_abs_diff(&low_res, &want_lr[want_lr.len() - low_res.len()..]);
        println!("{case} p{k}: low-res logits max |d| {dl:.2e}");
        assert!(dl <= 0.1, "{case} p{k}: low-res logits max |d| {dl}");
        let (_, scores) = samrt::io::npy::read_f32(&pdir.join("iou_predictions.npy")).unwrap();
        // float64 in the fixture.
        let want_iou = samrt::io::npy::read(&dir.join(format!("p{k}_iou.npy")))
            .unwrap()
            .to_f32();
        let (lshape, logits) =
            samrt::io::npy::read_f32(&dir.join(format!("p{k}_logits.npy"))).unwrap();
        let (h, w) = (lshape[1], lshape[2]);
        for i in 0..shape[0] {
            let ds = (scores[i] - want_iou[i]).abs();
            assert!(
                ds <= 2e-2,
                "{case} p{k}: score {} vs {}",
                scores[i],
                want_iou[i]
            );
            let png = image::open(pdir.join(format!("mask_{i}.png"))).unwrap();
            let png = png.as_luma8().expect("8-bit grayscale PNG");
            let theirs = &logits[i * h * w..(i + 1) * h * w];
            let agree = png
                .pixels()
                .zip(theirs)
                .filter(|(p, &l)| (p.0[0] == 255) == (l > 0.0))
                .count() as f64
                / (h * w) as f64;
            println!(
                "{case} p{k} mask {i}: |d score| {ds:.2e}, agreement {:.4} %",
                100.0 * agree
            );
            assert!(agree >= 0.995, "{case} p{k} mask {i}: agreement {agree}");
        }
    }
}

/// `segment --embedding --device cuda`: the embedding made on the CPU by `samrt embed`, the
/// prompt encoder and mask decoder on the device (the 256-px model: a 16x16 grid, 64x64
/// low-res masks, a mask-input prompt among the three).
#[test]
fn segment_embedding_decodes_on_cuda() {
    if !cuda_or_skip("segment_embedding_decodes_on_cuda") {
        return;
    }
    let cache = scratch("cuda-cli-cache");
    let out = scratch("cuda-embedding-vit256");
    let emb = out.join("emb.safetensors");
    let model = img_size_model(256);
    let image = img_size_dir().join("image.png");
    let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(["embed", "--device", "cpu", "--model"])
        .arg(&model)
        .arg("--image")
        .arg(&image)
        .arg("--out")
        .arg(&emb)
        .env("SAMRT_CACHE_DIR", &cache)
        .output()
        .expect("run samrt");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(["segment", "--device", "cuda", "--model"])
        .arg(&model)
        .arg("--embedding")
        .arg(&emb)
        .arg("--prompts")
        .arg(img_size_dir().join("vit256").join("prompts.json"))
        .arg("--out")
        .arg(&out)
        .env("SAMRT_CACHE_DIR", &cache)
        .output()
        .expect("run samrt");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("samrt: mask decoder on CUDA device 0"),
        "{err}"
    );
    assert!(!err.contains("image encoder"), "{err}");
    check_img_size_case("vit256", &out);
}
