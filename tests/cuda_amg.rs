//! The automatic mask generator on CUDA (vgpu in CI): the decoder, post-processing,
//! stability, packing and box NMS on the device, against the official
//! SamAutomaticMaskGenerator's records (tests/fixtures/amg/vit256_*, from
//! tools/make_amg_vit256_fixtures.py) and against samrt's CPU generator, through the library
//! and through `samrt auto --device cuda`.
//!
//! The model is tests/fixtures/img_size/'s 256-px one (a small well-conditioned random
//! encoder with sam_tiny's prompt encoder and mask decoder): vgpu takes seconds per decoded
//! prompt at 1024 px, and the 256-px model keeps a few dozen prompts over crops in budget.
//!
//! Tolerances (issue 20's): the same number of records; mask IoU >= 0.98 (pixels at logit ~0
//! may flip: the device's embedding and the decoder's image side carry fp16 rounding);
//! |d predicted_iou| <= 5e-3 (observed ~1e-5); |d stability_score| <= 2e-2 (a handful of
//! pixels within rounding of +-offset move the counts); boxes within 2 px. The fixtures'
//! thresholds sit in gaps of the official values (tools/make_amg_vit256_fixtures.py), far
//! wider than those deviations, so no mask is near a filter's edge.
#![cfg(feature = "cuda")]

mod common;
use common::amg::{amg_case, compare_records, config_of, record_value, records_of, Extra};
use common::gpu::cuda_or_skip;
use common::*;
use samrt::amg::{AutoGenerator, MaskRecord};
use samrt::{ComputeDevice, LoadOptions, Sam};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const MANIFEST: &str = "vit256_manifest.json";

const TOL: Extra = Extra {
    stability: Some(2e-2),
    box_px: Some(2.0),
};

fn model() -> PathBuf {
    img_size_model(256)
}

fn sam_on(device: ComputeDevice) -> Sam {
    let opts = LoadOptions {
        device,
        image_size: None,
    };
    Sam::load_with(&model(), opts).expect("load").0
}

fn cuda_sam() -> &'static Sam {
    static S: OnceLock<Sam> = OnceLock::new();
    S.get_or_init(|| sam_on(ComputeDevice::Cuda(0)))
}

fn image_of(case: &serde_json::Value) -> samrt::io::image::RgbImage {
    let name = case["image"].as_str().unwrap();
    samrt::io::image::load_image(&fixtures().join("images").join(name)).unwrap()
}

/// The case on the device and on the CPU: each against the official records, and the
/// device's against the CPU's.
fn check_case(name: &str) {
    let case = amg_case(MANIFEST, name);
    let official = records_of(&case);
    assert!(!official.is_empty(), "{name}: the fixture keeps no masks");
    let (img, cfg) = (image_of(&case), config_of(&case));
    let cpu = sam_on(ComputeDevice::Cpu);
    let on_cpu = samrt::amg::generate(&cpu, &img, &cfg).unwrap();
    compare_records(&format!("{name} (CPU)"), &on_cpu, &official, &TOL);
    let gen = AutoGenerator::open(cuda_sam(), &model(), ComputeDevice::Cuda(0)).unwrap();
    assert!(gen.description().starts_with("CUDA device 0"));
    let t = std::time::Instant::now();
    let on_dev = gen.generate(&img, &cfg, &mut |_| {}).unwrap();
    eprintln!("{name}: device AMG {:.1} s", t.elapsed().as_secs_f64());
    compare_records(&format!("{name} (CUDA)"), &on_dev, &official, &TOL);
    let cpu_values: Vec<serde_json::Value> = on_cpu.iter().map(record_value).collect();
    compare_records(&format!("{name} (CUDA vs CPU)"), &on_dev, &cpu_values, &TOL);
}

/// One crop, two batches of 8 points, IoU and stability filters, box NMS.
#[test]
fn grid_on_cuda_matches_official_and_cpu() {
    if cuda_or_skip("grid_on_cuda_matches_official_and_cpu") {
        check_case("vit256_grid");
    }
}

/// Crop layer 1: crop embeddings, point scaling, the crop-edge filter, un-cropping, the
/// cross-crop pass and small-region removal.
#[test]
fn crops_on_cuda_match_official_and_cpu() {
    if cuda_or_skip("crops_on_cuda_match_official_and_cpu") {
        check_case("vit256_crops");
    }
}

fn records_in(path: &std::path::Path) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The record a JSON output holds, for [`compare_records`].
fn parse_record(v: &serde_json::Value) -> MaskRecord {
    let seg = &v["segmentation"];
    let size = f64s(&seg["size"]);
    let int4 = |k: &str| {
        let b = f64s(&v[k]);
        [b[0] as i64, b[1] as i64, b[2] as i64, b[3] as i64]
    };
    let pt = f64s(&v["point_coords"][0]);
    MaskRecord {
        segmentation: samrt::amg::rle::Rle {
            h: size[0] as usize,
            w: size[1] as usize,
            counts: seg["counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap() as u32)
                .collect(),
        },
        area: v["area"].as_u64().unwrap(),
        bbox: int4("bbox"),
        predicted_iou: v["predicted_iou"].as_f64().unwrap() as f32,
        point_coords: [pt[0], pt[1]],
        stability_score: v["stability_score"].as_f64().unwrap() as f32,
        crop_box: int4("crop_box"),
    }
}

/// `samrt auto --device cuda` in dataset mode (a directory) names where the decoder runs and
/// writes what `--device cpu` writes, within the tolerances. Thresholds 0 keep every mask.
#[test]
fn cli_auto_on_cuda_equals_cpu() {
    if !cuda_or_skip("cli_auto_on_cuda_equals_cpu") {
        return;
    }
    let dir = scratch("cuda-amg-cli");
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(
        fixtures().join("images/coffee.png"),
        images.join("coffee.png"),
    )
    .unwrap();
    let run = |device: &str| {
        let out = dir.join(device);
        let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
            .args(["auto", "--device", device, "--model"])
            .arg(model())
            .arg("--image")
            .arg(&images)
            .arg("--out")
            .arg(&out)
            .args(["--points-per-side", "2", "--points-per-batch", "3"])
            .args(["--pred-iou-thresh", "0", "--stability-score-thresh", "0"])
            .args([
                "--stability-score-offset",
                "0.05",
                "--box-nms-thresh",
                "1.0",
            ])
            .args(["--output-mode", "uncompressed_rle"])
            .env("SAMRT_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "auto --device {device}: {err}");
        (records_in(&out.join("coffee.json")), err)
    };
    let (cpu, _) = run("cpu");
    let (dev, err) = run("cuda");
    assert!(err.contains("image encoder on CUDA device 0"), "{err}");
    assert!(err.contains("mask decoder on CUDA device 0"), "{err}");
    assert!(
        err.contains("automatic masks: mask decoder on CUDA"),
        "{err}"
    );
    assert!(cpu.len() > 1, "the CPU run keeps {} masks", cpu.len());
    let dev: Vec<MaskRecord> = dev.iter().map(parse_record).collect();
    compare_records("auto --device cuda vs cpu", &dev, &cpu, &TOL);
}
