//! Any input size end to end: official models built for 256, 512 and 1024 px, and a 1024
//! checkpoint run at `--image-size 512`, decoded through the library and the CLI and judged
//! against the official model run in float64 (tests/fixtures/img_size/, written by
//! tools/make_img_size_fixtures.py: a small random encoder per size, well-conditioned, plus
//! the prompt encoder and mask decoder of sam_tiny.pth).
//!
//! Tolerances: each output's error against float64 must be at most twice official
//! float32's own error on that output (case.json). Both are float32 computations of the same
//! formulas in different orders, so each lands at about the same distance from float64;
//! the factor 2 leaves room for that, not for a wrong formula (a wrong rel-pos or pos_embed
//! resize moves the logits by 1e-2 or more). Masks must equal float64's at every pixel
//! whose float64 logit is farther from 0 than that bound; closer pixels may go either way
//! in any float32 computation, official float32's included.

mod common;
use common::{img_size_dir as dir, img_size_model, run_samrt, scratch};
use samrt::{ComputeDevice, LoadOptions, Prompt, Sam};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Case {
    name: &'static str,
    dir: PathBuf,
    json: Value,
    model: PathBuf,
    /// `--image-size` (None: the checkpoint's own).
    image_size: Option<usize>,
}

fn case(name: &'static str) -> Case {
    let dir = dir().join(name);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let trained = json["encoder"]["img_size"].as_u64().unwrap() as usize;
    let run = json["img_size"].as_u64().unwrap() as usize;
    Case {
        name,
        dir,
        model: img_size_model(trained),
        image_size: (run != trained).then_some(run),
        json,
    }
}

impl Case {
    fn low_res(&self) -> usize {
        self.json["low_res"].as_u64().unwrap() as usize
    }
    fn load(&self) -> Sam {
        let opts = LoadOptions {
            device: ComputeDevice::Cpu,
            image_size: self.image_size,
        };
        Sam::load_with(&self.model, opts).unwrap().0
    }
    fn npy(&self, file: &str) -> (Vec<usize>, Vec<f64>) {
        let a = samrt::io::npy::read(&self.dir.join(file)).unwrap();
        let v = match &a.data {
            samrt::io::npy::NpyData::F64(v) => v.clone(),
            _ => a.to_f32().into_iter().map(f64::from).collect(),
        };
        (a.shape, v)
    }
    /// The fixture's prompts.json as library prompts (mask inputs read from their files).
    fn prompts(&self) -> Vec<Prompt> {
        let text = std::fs::read_to_string(self.dir.join("prompts.json")).unwrap();
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        list.iter()
            .map(|p| {
                let pts = |v: &Value| -> Vec<f64> {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect()
                };
                Prompt {
                    points: p["points"]
                        .as_array()
                        .map(|a| a.iter().map(|q| [pts(q)[0], pts(q)[1]]).collect())
                        .unwrap_or_default(),
                    labels: p["labels"]
                        .as_array()
                        .map(|a| a.iter().map(|l| l.as_i64().unwrap() as i32).collect())
                        .unwrap_or_default(),
                    box_xyxy: p.get("box").map(|b| {
                        let b = pts(b);
                        [b[0], b[1], b[2], b[3]]
                    }),
                    mask_input: p.get("mask_input").map(|f| {
                        let (shape, v) = self.npy(f.as_str().unwrap());
                        assert_eq!(shape, [1, self.low_res(), self.low_res()]);
                        v.into_iter().map(|x| x as f32).collect()
                    }),
                    multimask: p["multimask"].as_bool().unwrap(),
                }
            })
            .collect()
    }
    fn stat(&self, k: usize, key: &str) -> f64 {
        self.json["prompts"][k][key].as_f64().unwrap()
    }
}

fn max_err(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

/// Masks against float64's: equal wherever |float64 logit| > `band`; returns how many
/// pixels lie inside the band (where any float32 computation may flip).
fn check_masks(what: &str, got: &[bool], logits_f64: &[f64], band: f64) -> usize {
    assert_eq!(got.len(), logits_f64.len(), "{what}");
    let mut near = 0;
    for (i, (&m, &l)) in got.iter().zip(logits_f64).enumerate() {
        if l.abs() <= band {
            near += 1;
        } else {
            assert_eq!(m, l > 0.0, "{what}: pixel {i}, float64 logit {l:e}");
        }
    }
    near
}

/// The library path: embed, `predict_logits` per prompt, every output against float64.
/// Returns our low-res logits and masks per prompt, for the CLI check.
fn check_library(c: &Case) -> Vec<(Vec<f32>, Vec<bool>)> {
    let sam = c.load();
    let s = c.low_res();
    assert_eq!(sam.low_res_side(), s, "{}", c.name);
    assert_eq!(sam.embedding_shape(), [256, s / 4, s / 4]);
    let img = samrt::io::image::load_image(&dir().join("image.png")).unwrap();
    let emb = sam.embed(&img).unwrap();
    let want_input: Vec<usize> = serde_json::from_value(c.json["input_size"].clone()).unwrap();
    assert_eq!([emb.input_size.0, emb.input_size.1], want_input[..]);
    let mut out = Vec::new();
    for (k, p) in c.prompts().iter().enumerate() {
        let what = format!("{} p{k}", c.name);
        let pred = sam.predict_logits(&emb, p).unwrap();
        let (lshape, low) = c.npy(&format!("p{k}_low_res.npy"));
        assert_eq!(lshape, [pred.num_masks, s, s], "{what}");
        let e = max_err(&pred.low_res_logits, &low);
        let tol = 2.0 * c.stat(k, "low_res_max_abs");
        eprintln!(
            "{what}: low-res error {e:.2e} (official float32 {:.2e})",
            tol / 2.0
        );
        assert!(e <= tol, "{what}: low-res logits off by {e:e} > {tol:e}");
        let (_, logits) = c.npy(&format!("p{k}_logits.npy"));
        let e = max_err(&pred.logits, &logits);
        let band = 2.0 * c.stat(k, "logits_max_abs");
        eprintln!(
            "{what}: logits error {e:.2e} (official float32 {:.2e})",
            band / 2.0
        );
        assert!(e <= band, "{what}: logits off by {e:e} > {band:e}");
        let (_, iou) = c.npy(&format!("p{k}_iou.npy"));
        let e = max_err(&pred.scores, &iou);
        // Official float32's IoU error is a maximum over only 1 to 3 values per prompt, so
        // the bound takes the case's largest; rounding float64 to float32 alone costs 3e-8.
        let official = (0..3).map(|j| c.stat(j, "iou_max_abs")).fold(0.0, f64::max);
        let tol = 2.0 * official + 6e-8;
        assert!(e <= tol, "{what}: IoU off by {e:e} > {tol:e}");
        let masks: Vec<bool> = pred.logits.iter().map(|&v| v > 0.0).collect();
        let near = check_masks(&what, &masks, &logits, band);
        // A handful of boundary pixels at most (the fixture's smallest |logit| is ~2e-6).
        assert!(near <= 8, "{what}: {near} pixels within {band:e} of 0");
        let thresholded = sam.predict(&emb, p).unwrap();
        assert_eq!(
            thresholded.masks, masks,
            "{what}: predict vs predict_logits"
        );
        out.push((pred.low_res_logits, masks));
    }
    out
}

/// `samrt segment --prompts` on the case (CPU): the same low-res logits bit for bit and the
/// same masks as the library; returns the output directory.
fn check_cli(c: &Case, lib: &[(Vec<f32>, Vec<bool>)]) {
    let out = scratch(&format!("img-size-cli-{}", c.name));
    let cache = scratch("img-size-cache");
    let prompts = c.dir.join("prompts.json");
    let image = dir().join("image.png");
    let size = c.image_size.map(|s| s.to_string());
    let mut args = vec![
        "segment",
        "--model",
        c.model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(s) = &size {
        args.extend(["--image-size", s]);
    }
    let o = run_samrt(&args, &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = c.low_res();
    for (k, (low, masks)) in lib.iter().enumerate() {
        let d = out.join(format!("prompt_{k}"));
        let (shape, got) = samrt::io::npy::read_f32(&d.join("low_res_logits.npy")).unwrap();
        assert_eq!(shape, [low.len() / (s * s), s, s], "{} p{k}", c.name);
        assert_eq!(&got, low, "{} p{k}: CLI vs library low-res logits", c.name);
        let n = shape[0];
        let plane = masks.len() / n;
        for i in 0..n {
            let png = image::open(d.join(format!("mask_{i}.png")))
                .unwrap()
                .to_luma8();
            assert_eq!((png.height(), png.width()), (90, 120));
            let bits: Vec<bool> = png.as_raw().iter().map(|&v| v > 127).collect();
            assert_eq!(
                bits,
                masks[i * plane..(i + 1) * plane],
                "{} p{k} mask {i}",
                c.name
            );
        }
    }
}

fn parity(name: &'static str) {
    let c = case(name);
    let lib = check_library(&c);
    check_cli(&c, &lib);
}

#[test]
fn decode_parity_at_256() {
    parity("vit256");
}

#[test]
fn decode_parity_at_512() {
    parity("vit512");
}

#[test]
fn decode_parity_at_1024() {
    parity("vit1024");
}

/// A checkpoint made for 1024 run at `--image-size 512`: the global block's 127-row rel-pos
/// tables resized linearly to 63 rows (official `get_rel_pos`), pos_embed bicubically.
#[test]
fn decode_parity_1024_checkpoint_at_image_size_512() {
    parity("vit1024_at512");
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 with a `samrt: error:` message containing `want`.
fn refused(o: &std::process::Output, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(want), "wanted `{want}` in: {err}");
}

/// Every entry point takes the model's low-res side and refuses another, naming the shape
/// it expects.
#[test]
fn entry_points_take_the_models_size_and_name_the_expected_shape() {
    let m256 = img_size_model(256);
    let m1024 = img_size_model(1024);
    let (m256, m1024) = (m256.to_str().unwrap(), m1024.to_str().unwrap());
    let cache = scratch("img-size-cache");
    let tmp = scratch("img-size-entry");
    let image = dir().join("image.png");
    let image = image.to_str().unwrap();
    let out = tmp.join("out");
    let out = out.to_str().unwrap();
    let seg = |model: &str, extra: &[&str]| {
        let mut a = vec![
            "segment", "--model", model, "--image", image, "--out", out, "--point", "60,40",
        ];
        a.extend_from_slice(extra);
        run_samrt(&a, &cache)
    };
    let m64 = tmp.join("m64.npy");
    let v64: Vec<f32> = (0..64 * 64).map(|i| ((i % 7) as f32 - 3.0) * 0.5).collect();
    samrt::io::npy::write_f32(&m64, &[1, 64, 64], &v64).unwrap();
    let m256_file = tmp.join("m256.npy");
    let v256: Vec<f32> = (0..256 * 256)
        .map(|i| ((i % 5) as f32 - 2.0) * 0.5)
        .collect();
    samrt::io::npy::write_f32(&m256_file, &[256, 256], &v256).unwrap();

    // --mask-input: 64x64 fits the 256 model, 256x256 does not (and the other way round).
    let o = seg(m256, &["--mask-input", m64.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, _) = samrt::io::npy::read_f32(&tmp.join("out/low_res_logits.npy")).unwrap();
    assert_eq!(shape, [3, 64, 64]);
    refused(
        &seg(m256, &["--mask-input", m256_file.to_str().unwrap()]),
        "expected [64, 64]",
    );
    refused(
        &seg(m1024, &["--mask-input", m64.to_str().unwrap()]),
        "expected [256, 256]",
    );
    // A low_res_logits.npy stack of the 256 model feeds back into it (best mask by score).
    let stack = tmp.join("out/low_res_logits.npy");
    let o = seg(m256, &["--mask-input", stack.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));

    // --prompts: inline and .npy mask inputs.
    let inline = |side: usize| {
        let row = vec![0.5f32; side];
        serde_json::json!([{ "points": [[60, 40]], "mask_input": vec![row; side] }])
    };
    let write_prompts = |name: &str, v: Value| {
        let p = tmp.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    };
    let prompts = |model: &str, file: &Path| {
        run_samrt(
            &[
                "segment",
                "--model",
                model,
                "--image",
                image,
                "--out",
                out,
                "--prompts",
                file.to_str().unwrap(),
            ],
            &cache,
        )
    };
    let ok = write_prompts("inline64.json", inline(64));
    let o = prompts(m256, &ok);
    assert!(o.status.success(), "{}", stderr(&o));
    refused(&prompts(m1024, &ok), "expected [256, 256]");
    let bad = write_prompts(
        "npy256.json",
        serde_json::json!([
            { "points": [[60, 40]] },
            { "points": [[60, 40]], "mask_input": "m256.npy" }
        ]),
    );
    let o = prompts(m256, &bad);
    refused(
        &o,
        "prompt 1: mask input has shape [256, 256], expected [64, 64]",
    );
    // Nothing was decoded before the refusal.
    assert!(String::from_utf8_lossy(&o.stdout).is_empty());

    // segment --embedding: an embedding made at --image-size 512 needs the model at 512.
    let emb = tmp.join("e512.safetensors");
    let o = run_samrt(
        &[
            "embed",
            "--model",
            m1024,
            "--image",
            image,
            "--out",
            emb.to_str().unwrap(),
            "--image-size",
            "512",
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["shape"], serde_json::json!([1, 256, 32, 32]));
    let from_emb = |extra: &[&str]| {
        let mut a = vec![
            "segment",
            "--model",
            m1024,
            "--embedding",
            emb.to_str().unwrap(),
            "--out",
            out,
            "--point",
            "60,40",
        ];
        a.extend_from_slice(extra);
        run_samrt(&a, &cache)
    };
    refused(
        &from_emb(&[]),
        "shape [256, 32, 32], this model uses [256, 64, 64]",
    );
    let o = from_emb(&["--image-size", "512"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, _) = samrt::io::npy::read_f32(&tmp.join("out/low_res_logits.npy")).unwrap();
    assert_eq!(shape, [3, 128, 128]);

    // --image-size must be a multiple of the patch size.
    refused(
        &seg(m1024, &["--image-size", "500"]),
        "multiple of the patch size 16",
    );
    refused(&seg(m1024, &["--image-size", "0"]), "--image-size 0");
}

/// `samrt auto` and `samrt bench` on a model built for 256 px.
#[test]
fn auto_and_bench_run_a_256_model() {
    let m256 = img_size_model(256);
    let cache = scratch("img-size-cache");
    let out = scratch("img-size-auto");
    let image = dir().join("image.png");
    let o = run_samrt(
        &[
            "auto",
            "--model",
            m256.to_str().unwrap(),
            "--image",
            image.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--points-per-side",
            "6",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
            "--output-mode",
            "uncompressed_rle",
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("image.json")).unwrap();
    let recs: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(!recs.is_empty(), "no masks");
    for r in &recs {
        assert_eq!(r["segmentation"]["size"], serde_json::json!([90, 120]));
    }
    let o = run_samrt(
        &[
            "bench",
            "--model",
            m256.to_str().unwrap(),
            "--iters",
            "1",
            "--prompts",
            "4",
            "--json",
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["results"].as_array().unwrap().len() >= 6, "{j}");
    // A random vit_b built for 256 px.
    let o = run_samrt(
        &[
            "bench",
            "--image-size",
            "256",
            "--iters",
            "1",
            "--prompts",
            "2",
            "--json",
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["results"][0]["model"], "vit_b@256", "{j}");
    refused(
        &run_samrt(&["bench", "--image-size", "100", "--iters", "1"], &cache),
        "multiple of the patch size 16",
    );
}
