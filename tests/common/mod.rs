//! Fixture access shared by the integration tests. The fixtures come from
//! tools/make_fixtures.py (official segment_anything on a random-weight model).
#![allow(dead_code)]

pub mod amg;
pub mod checkpoint;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod server;

use samrt::io::checkpoint::{read_pth, write_safetensors_f16, Checkpoint};
use samrt::Sam;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The samrt crate's tests/fixtures; capi/tests include this module by path, and their
/// manifest directory is capi/.
pub fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match dir.join("tests/fixtures") {
        f if f.is_dir() => f,
        _ => dir.join("../tests/fixtures"),
    }
}

pub fn manifest() -> &'static Value {
    static M: OnceLock<Value> = OnceLock::new();
    M.get_or_init(|| {
        let text =
            std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
        serde_json::from_str(&text).expect("manifest parses")
    })
}

/// A scratch directory unique to this test process.
pub fn scratch(name: &str) -> PathBuf {
    static SWEEP: OnceLock<()> = OnceLock::new();
    SWEEP.get_or_init(sweep_stale_scratch);
    let d = std::env::temp_dir().join(format!("samrt-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Removes scratch directories of earlier test processes that have exited (Linux: their
/// /proc entry is gone), since the harness has no teardown hook to delete them itself.
fn sweep_stale_scratch() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("samrt-test-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The fixture model converted to fp16 safetensors (once per test binary).
pub fn tiny_safetensors() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let tensors = read_pth(&fixtures().join("sam_tiny.pth")).expect("read sam_tiny.pth");
        let out = scratch("model").join("sam_tiny.safetensors");
        write_safetensors_f16(&out, &tensors).expect("write safetensors");
        out
    })
}

/// tests/fixtures/img_size/ (tools/make_img_size_fixtures.py).
pub fn img_size_dir() -> PathBuf {
    fixtures().join("img_size")
}

/// `img_size/encoder{trained}.pth`'s image encoder (an official encoder built for
/// `trained` px) with sam_tiny.pth's prompt encoder and mask decoder, as one fp16
/// safetensors model (written once per size and test process).
pub fn img_size_model(trained: usize) -> PathBuf {
    static FILES: OnceLock<std::sync::Mutex<Vec<(usize, PathBuf)>>> = OnceLock::new();
    let mut files = FILES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, p)) = files.iter().find(|(s, _)| *s == trained) {
        return p.clone();
    }
    let mut t = read_pth(&img_size_dir().join(format!("encoder{trained}.pth"))).unwrap();
    assert!(t.iter().all(|x| x.name.starts_with("image_encoder.")));
    let decoder = read_pth(&fixtures().join("sam_tiny.pth")).unwrap();
    t.extend(
        decoder.into_iter().filter(|x| {
            x.name.starts_with("prompt_encoder.") || x.name.starts_with("mask_decoder.")
        }),
    );
    let out = scratch("img-size-models").join(format!("sam_{trained}.safetensors"));
    write_safetensors_f16(&out, &t).unwrap();
    files.push((trained, out.clone()));
    out
}

pub fn tiny_model() -> &'static Sam {
    static S: OnceLock<Sam> = OnceLock::new();
    S.get_or_init(|| {
        let ck = Checkpoint::open(tiny_safetensors()).expect("open safetensors");
        Sam::from_weights(&ck).expect("build model")
    })
}

pub fn npy_f32(rel: &str) -> (Vec<usize>, Vec<f32>) {
    samrt::io::npy::read_f32(&fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Masks stored as np.packbits (MSB first) over a bool [C,H,W] array.
pub fn packed_masks(entry: &Value) -> (Vec<usize>, Vec<bool>) {
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let n: usize = shape.iter().product();
    let arr = samrt::io::npy::read(&fixtures().join(entry["file"].as_str().unwrap())).unwrap();
    let bytes = match arr.data {
        samrt::io::npy::NpyData::U8(b) => b,
        other => panic!("packed masks should be uint8, got {other:?}"),
    };
    let bits = (0..n)
        .map(|i| (bytes[i / 8] >> (7 - i % 8)) & 1 == 1)
        .collect();
    (shape, bits)
}

pub fn image(name: &str) -> &'static Value {
    manifest()["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap()
}

pub fn prompts() -> &'static Vec<Value> {
    manifest()["prompts"].as_array().unwrap()
}

pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The library prompt a manifest entry describes.
pub fn prompt_of(p: &Value) -> samrt::Prompt {
    let mut out = samrt::Prompt {
        multimask: p["multimask"].as_bool().unwrap(),
        ..Default::default()
    };
    if !p["points"].is_null() {
        for pt in p["points"].as_array().unwrap() {
            let v = f64s(pt);
            out.points.push([v[0], v[1]]);
        }
        out.labels = p["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap() as i32)
            .collect();
    }
    if !p["box"].is_null() {
        let b = f64s(&p["box"]);
        out.box_xyxy = Some([b[0], b[1], b[2], b[3]]);
    }
    if let Some(f) = p["mask_input"].as_str() {
        out.mask_input = Some(npy_f32(f).1);
    }
    out
}

/// Max |logit - official| of each stored low-res mask of fixture prompt `p` (none when the
/// fixture stores no logits); `logits` are a prediction's `[num_masks, 256, 256]`.
pub fn low_res_diffs(p: &Value, logits: &[f32], num_masks: usize) -> Vec<f32> {
    let Some(f) = p["low_res"]["file"].as_str() else {
        return Vec::new();
    };
    let (_, lr) = npy_f32(f);
    let idx: Vec<usize> = p["low_res"]
        .get("mask_indices")
        .map(|v| f64s(v).iter().map(|&i| i as usize).collect())
        .unwrap_or_else(|| (0..num_masks).collect());
    let channels: Option<Vec<usize>> = p["low_res"]
        .get("channels")
        .map(|v| f64s(v).iter().map(|&i| i as usize).collect());
    let n = 256 * 256;
    idx.iter()
        .enumerate()
        .map(|(k, &i)| {
            let src = channels.as_ref().map_or(k, |c| c[i]);
            max_abs_diff(&logits[i * n..(i + 1) * n], &lr[src * n..(src + 1) * n])
        })
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// Runs the `samrt` binary with its cache in `cache`. A command that takes `--device` runs on
/// the CPU unless the arguments say otherwise: these are CPU contract tests (with a GPU, or
/// vgpu, `auto` would pick CUDA; tests/cuda_cli.rs covers that path).
pub fn run_samrt(args: &[&str], cache: &Path) -> std::process::Output {
    let mut args = args.to_vec();
    let takes_device = matches!(
        args.first(),
        Some(&("segment" | "auto" | "bench" | "embed"))
    );
    if takes_device && !args.contains(&"--device") {
        args.extend(["--device", "cpu"]);
    }
    // option_env: capi/tests include this module, and their package has no samrt binary.
    let Some(exe) = option_env!("CARGO_BIN_EXE_samrt") else {
        panic!("run_samrt: only the samrt crate's tests have the samrt binary");
    };
    std::process::Command::new(exe)
        .args(&args)
        .env("SAMRT_CACHE_DIR", cache)
        .output()
        .expect("run samrt")
}
