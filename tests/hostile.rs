//! Hostile inputs that once got through (issue 11), each reproduced here first.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A safetensors header length of n - 1 shifted every tensor by one byte and the run
/// "succeeded" with garbage. The tensors must tile the data section exactly.
#[test]
fn safetensors_header_length_off_by_one_is_rejected() {
    let good = std::fs::read(tiny_safetensors()).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap());
    let dir = scratch("hostile-header");
    for (what, declared) in [("n - 1", n - 1), ("n + 1", n + 1)] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&declared.to_le_bytes());
        let path = dir.join(format!("shifted-{}.safetensors", declared));
        std::fs::write(&path, &bad).unwrap();
        match samrt::io::checkpoint::Checkpoint::open(&path) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => println!("{what}: {e}"),
        }
        let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
            .arg("info")
            .arg(&path)
            .env("SAMRT_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.starts_with("samrt: error:") && !err.contains("panicked"),
            "{err}"
        );
    }
}

fn samrt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(args)
        .env("SAMRT_CACHE_DIR", scratch("hostile-cache"))
        .output()
        .unwrap()
}

/// Options that once aborted on allocation or ran unbounded now fail fast and clearly.
#[test]
fn unbounded_work_options_are_refused() {
    let m = tiny_safetensors().to_str().unwrap().to_string();
    let img = fixtures().join("images/chelsea.png");
    let img = img.to_str().unwrap();
    let out = scratch("hostile-out");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "auto",
                "--model",
                &m,
                "--image",
                img,
                "--out",
                out,
                "--points-per-side",
                "100000",
            ],
            "point prompts per image",
        ),
        (
            &[
                "auto",
                "--model",
                &m,
                "--image",
                img,
                "--out",
                out,
                "--crop-n-layers",
                "8",
            ],
            "point prompts per image",
        ),
        (
            &["bench", "--model", &m, "--prompts", "1000000"],
            "--prompts 1000000: at most",
        ),
        (
            &["bench", "--model", &m, "--batch", "100000"],
            "--batch 100000: at most",
        ),
    ];
    for (args, needle) in cases {
        let t = std::time::Instant::now();
        let o = samrt(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(
            t.elapsed().as_secs() < 30,
            "{args:?} took {:?}",
            t.elapsed()
        );
    }
}

// ---- Non-finite weights, activations and outputs: each once gave `"score": null`, empty
// masks or an empty AMG result with exit 0.

/// Runs `samrt` on the CPU with its own cache directory.
fn samrt_in(cache: &Path, args: &[&str]) -> Output {
    let mut args = args.to_vec();
    if matches!(args.first(), Some(&("segment" | "auto"))) {
        args.extend(["--device", "cpu"]);
    }
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(&args)
        .env("SAMRT_CACHE_DIR", cache)
        .output()
        .unwrap()
}

/// A clean failure: exit 1, a `samrt: error:` line, every needle in stderr, no panic.
fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}\nstderr: {err}",
        stdout(o)
    );
    assert!(
        err.contains("samrt: error:") && !err.contains("panicked"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `segment` on the cat with one foreground point, three masks.
fn segment(cache: &Path, model: &Path, out: &Path, extra: &[&str]) -> Output {
    let img = fixtures().join("images/chelsea.png");
    let mut args = vec![
        "segment",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--point",
        "200,150,1",
    ];
    args.extend_from_slice(extra);
    samrt_in(cache, &args)
}

/// Every score the CLI printed is a number (a NaN score is printed as `null`).
fn assert_scores_finite(o: &Output) {
    let v: serde_json::Value = serde_json::from_str(&stdout(o)).unwrap();
    let masks = v["masks"].as_array().unwrap();
    assert_eq!(masks.len(), 3, "{v}");
    for m in masks {
        assert!(m["score"].as_f64().is_some_and(f64::is_finite), "{v}");
    }
}

/// Byte range of tensor `name`'s data in a safetensors image.
fn st_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let off = &header[name]["data_offsets"];
    let (b, e) = (off[0].as_u64().unwrap(), off[1].as_u64().unwrap());
    8 + n + b as usize..8 + n + e as usize
}

/// Overwrites f16 elements of tensor `name` in an fp16 safetensors file.
fn poison_f16(path: &Path, name: &str, at: &[usize], bits: u16) {
    let mut bytes = std::fs::read(path).unwrap();
    let r = st_range(&bytes, name);
    for &i in at {
        bytes[r.start + 2 * i..r.start + 2 * i + 2].copy_from_slice(&bits.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The fixture model as an F32 safetensors file, so that values can be finite and beyond
/// fp16's range, with `edit` applied to each tensor.
fn tiny_f32_with(file: &str, edit: impl Fn(&str, &mut [f32])) -> PathBuf {
    use samrt::io::weights::WeightSource;
    let ck = samrt::io::checkpoint::Checkpoint::open(tiny_safetensors()).unwrap();
    let mut header = serde_json::Map::new();
    let mut data: Vec<u8> = Vec::new();
    for (name, _, shape) in ck.tensors() {
        let mut v = ck.f32(name, shape).unwrap();
        edit(name, &mut v);
        let begin = data.len();
        data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        let offsets = [begin, data.len()];
        let entry = serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": offsets});
        header.insert(name.to_string(), entry);
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    let path = scratch("hostile-f32").join(file);
    std::fs::write(&path, out).unwrap();
    path
}

/// sam_tiny.pth with elements of tensor `name` (an f32 storage) replaced, and the storage
/// entry's CRC-32 recomputed in the local and central headers, so only the values are wrong.
fn tiny_pth_with(name: &str, edits: &[(usize, f32)]) -> Vec<u8> {
    use samrt::io::checkpoint::{pickle::load_state_dict, zip::ZipArchive, DType};
    let mut bytes = std::fs::read(fixtures().join("sam_tiny.pth")).unwrap();
    let (entry, offset) = {
        let zip = ZipArchive::parse(&bytes).unwrap();
        let pkl = zip
            .entries()
            .iter()
            .find(|e| e.name.ends_with("/data.pkl"))
            .unwrap();
        let tensors = load_state_dict(zip.read(pkl, true).unwrap()).unwrap();
        let t = &tensors.iter().find(|(n, _)| n == name).unwrap().1;
        assert_eq!(t.storage.dtype, DType::F32);
        let prefix = pkl.name.strip_suffix("data.pkl").unwrap();
        let key = format!("{prefix}data/{}", t.storage.key);
        (zip.find(&key).unwrap().clone(), t.offset)
    };
    let start = entry.data_offset as usize;
    for &(i, v) in edits {
        let at = start + 4 * (offset + i);
        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    let crc = crc32fast::hash(&bytes[start..start + entry.size as usize]);
    let name = entry.name.as_bytes();
    // (signature, CRC offset, name-length offset, name offset) of a local and a central record.
    for (sig, crc_at, len_at, name_at) in [(0x0403_4b50u32, 14, 26, 30), (0x0201_4b50, 16, 28, 46)]
    {
        let p = (0..bytes.len() - name_at - name.len())
            .find(|&p| {
                bytes[p..p + 4] == sig.to_le_bytes()
                    && bytes[p + len_at..p + len_at + 2] == (name.len() as u16).to_le_bytes()
                    && &bytes[p + name_at..p + name_at + name.len()] == name
            })
            .unwrap();
        bytes[p + crc_at..p + crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

/// A NaN in a safetensors tensor is refused at load, naming the tensor and the count; the
/// library says the same without the CLI.
#[test]
fn nan_weight_in_safetensors_is_named() {
    let dir = scratch("hostile-nan-st");
    let path = dir.join("nan.safetensors");
    std::fs::copy(tiny_safetensors(), &path).unwrap();
    let name = "image_encoder.blocks.1.attn.qkv.weight";
    poison_f16(&path, name, &[0, 7, 4000], 0x7E00);
    let o = segment(&dir.join("cache"), &path, &dir.join("out"), &[]);
    assert_fails_with(&o, &[name, "3 "]);

    let ck = samrt::io::checkpoint::Checkpoint::open(&path).unwrap();
    match samrt::Sam::from_weights(&ck) {
        Err(e @ samrt::Error::NonFinite(_)) => assert!(e.to_string().contains(name), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a NaN weight was accepted"),
    }
}

/// An official .pth holding inf and NaN: `convert` refuses it, and so does `segment`, both
/// naming the tensor, and no cache file is left behind.
#[test]
fn non_finite_pth_is_refused_at_convert_and_load() {
    let dir = scratch("hostile-inf-pth");
    let cache = dir.join("cache");
    let name = "mask_decoder.iou_token.weight";
    let pth = dir.join("inf.pth");
    std::fs::write(
        &pth,
        tiny_pth_with(name, &[(3, f32::INFINITY), (9, f32::NAN)]),
    )
    .unwrap();
    let out = dir.join("inf.safetensors");
    let o = samrt_in(
        &cache,
        &["convert", pth.to_str().unwrap(), out.to_str().unwrap()],
    );
    assert_fails_with(&o, &[name, "2 "]);
    assert!(!out.exists());
    let o = segment(&cache, &pth, &dir.join("out"), &[]);
    assert_fails_with(&o, &[name, "2 "]);
    let cached = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert_eq!(cached, 0, "a cache file was written");
}

/// A finite f32 beyond fp16's range would become inf in the fp16 file: refused, named.
#[test]
fn pth_value_beyond_f16_range_is_refused() {
    let dir = scratch("hostile-big-pth");
    let name = "prompt_encoder.point_embeddings.1.weight";
    let pth = dir.join("big.pth");
    std::fs::write(&pth, tiny_pth_with(name, &[(5, 70000.0)])).unwrap();
    let out = dir.join("big.safetensors");
    let o = samrt_in(
        &dir.join("cache"),
        &["convert", pth.to_str().unwrap(), out.to_str().unwrap()],
    );
    assert_fails_with(&o, &[name, "70000", "65504"]);
    assert!(!out.exists());
}

/// A conversion cache damaged after it was written (NaN where the .pth is fine) is rebuilt
/// from the .pth, and the run succeeds with finite output.
#[test]
fn corrupted_cache_is_rebuilt_from_the_pth() {
    let dir = scratch("hostile-cache-nan");
    let cache = dir.join("cache");
    let pth = fixtures().join("sam_tiny.pth");
    let o = segment(&cache, &pth, &dir.join("out1"), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cached: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let name = "mask_decoder.iou_prediction_head.layers.2.bias";
    poison_f16(&cached[0], name, &[0, 1, 2, 3], 0x7E00);

    let o = segment(&cache, &pth, &dir.join("out2"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("rebuilt"), "{err}");
    assert_scores_finite(&o);
    let bytes = std::fs::read(&cached[0]).unwrap();
    let r = st_range(&bytes, name);
    assert!(
        bytes[r].chunks(2).all(|h| h[1] & 0x7C != 0x7C),
        "cache still poisoned"
    );

    // The rebuilt cache is a normal hit next time.
    let o = segment(&cache, &pth, &dir.join("out3"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains("using cached conversion"),
        "{err}"
    );
}

/// A finite mask input of 3e38 overflowed in the mask downscaling path; it is refused with
/// the documented bound, which itself is accepted.
#[test]
fn huge_mask_input_is_refused_with_the_bound() {
    use samrt::sam::predictor::{Prompt, MAX_MASK_INPUT_ABS};
    let dir = scratch("hostile-mask");
    let npy = dir.join("huge.npy");
    samrt::io::npy::write_f32(&npy, &[256, 256], &vec![3e38; 256 * 256]).unwrap();
    let m = tiny_safetensors();
    let o = segment(
        &dir.join("cache"),
        m,
        &dir.join("out"),
        &["--mask-input", npy.to_str().unwrap()],
    );
    assert_fails_with(&o, &["mask input", &format!("{MAX_MASK_INPUT_ABS:e}")]);

    let with = |v: f32| Prompt {
        mask_input: Some(vec![v; 256 * 256]),
        ..Default::default()
    };
    with(MAX_MASK_INPUT_ABS).validate().unwrap();
    with(-MAX_MASK_INPUT_ABS).validate().unwrap();
    assert!(with(MAX_MASK_INPUT_ABS * 1.5).validate().is_err());
    // At the bound the model's output stays finite.
    let sam = tiny_model();
    let img = samrt::io::image::load_image(&fixtures().join("images/chelsea.png")).unwrap();
    let emb = sam.embed(&img).unwrap();
    for v in [MAX_MASK_INPUT_ABS, -MAX_MASK_INPUT_ABS] {
        let p = Prompt {
            points: vec![[200.0, 150.0]],
            labels: vec![1],
            ..with(v)
        };
        let pred = sam.predict(&emb, &p).unwrap();
        assert!(pred
            .scores
            .iter()
            .chain(&pred.low_res_logits)
            .all(|x| x.is_finite()));
    }
}

/// Finite weights so large that the decoder's IoU head overflows f32: the scores would be
/// NaN (`null` in JSON, and AMG would keep no mask). `segment` and `auto` now fail clearly.
#[test]
fn decoder_overflow_is_an_error_not_null() {
    let dir = scratch("hostile-dec-overflow");
    let model = tiny_f32_with("iou-head.safetensors", |name, v| {
        if name.starts_with("mask_decoder.iou_prediction_head.layers.") && name.ends_with("weight")
        {
            v.iter_mut().for_each(|x| *x *= 1e30);
        }
    });
    let o = segment(&dir.join("cache"), &model, &dir.join("out"), &[]);
    assert_fails_with(&o, &["non-finite", "IoU"]);
    let img = fixtures().join("images/chelsea.png");
    let auto_out = dir.join("auto");
    let args = [
        "auto",
        "--model",
        model.to_str().unwrap(),
        "--image",
        img.to_str().unwrap(),
        "--out",
        auto_out.to_str().unwrap(),
        "--points-per-side",
        "4",
    ];
    let o = samrt_in(&dir.join("cache"), &args);
    assert_fails_with(&o, &["non-finite", "IoU"]);
}

/// Finite weights that overflow inside the image encoder: `embed` fails instead of handing
/// a NaN embedding to the decoder.
#[test]
fn encoder_overflow_is_an_error() {
    let dir = scratch("hostile-enc-overflow");
    let model = tiny_f32_with("neck.safetensors", |name, v| {
        if name == "image_encoder.neck.2.weight" {
            v.iter_mut().for_each(|x| *x = 3e38f32.copysign(*x));
        }
    });
    let o = segment(&dir.join("cache"), &model, &dir.join("out"), &[]);
    assert_fails_with(&o, &["non-finite", "image embedding"]);
}
