//! `samrt auto` as a dataset tool: empty inputs, the parameter record that guards resuming,
//! the failure list, amg.py's flag names, progress on stderr and the help text. Small
//! images and small grids keep each model run to a second or so.

mod common;

use common::{fixtures, scratch, tiny_safetensors};
use samrt::amg::generator::{generate_with, generate_with_progress, AmgConfig, Progress};
use samrt::amg::source::MaskSource;
use samrt::io::image::RgbImage;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `samrt auto` on the CPU (with a GPU, `auto` would pick CUDA) in a private cache.
fn auto(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .arg("auto")
        .args(args)
        .args(["--device", "cpu"])
        .env("SAMRT_CACHE_DIR", scratch("cache"))
        .output()
        .expect("run samrt")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn model() -> String {
    s(tiny_safetensors()).to_string()
}

/// A clean failure: exit status 1, the message, every line `samrt:`-prefixed, no stdout.
fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected `{n}` in: {err}");
    }
    assert_clean_streams(o);
}

/// stdout empty, and every stderr line starts with `samrt:`.
fn assert_clean_streams(o: &Output) {
    assert!(o.stdout.is_empty(), "stdout: {:?}", o.stdout);
    let err = stderr(o);
    for l in err.lines() {
        assert!(l.starts_with("samrt: "), "unprefixed line `{l}` in: {err}");
    }
}

/// Small crops of a fixture photo, so a run takes about a second per image.
fn small_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let src = image::open(fixtures().join("images/chelsea.png"))
        .unwrap()
        .to_rgb8();
    (0..n)
        .map(|i| {
            let c = image::imageops::crop_imm(&src, 40 * i as u32, 30, 64, 48).to_image();
            let p = dir.join(format!("img{i}.png"));
            c.save(&p).unwrap();
            p
        })
        .collect()
}

/// Options that keep masks on the tiny random model (its IoU estimates are low).
const SMALL: &[&str] = &[
    "--points-per-side",
    "2",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn empty_inputs_are_errors_and_an_empty_shard_is_not() {
    let root = scratch("auto-empty");
    let m = model();
    let out = root.join("out");
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    // Files that are not images do not count.
    std::fs::write(empty.join("notes.md"), "x").unwrap();
    let o = auto(&["--model", &m, "--image", s(&empty), "--out", s(&out)]);
    assert_fails_with(&o, &["the directory has no images"]);

    for text in ["", "# only a comment\n\n   \n# another\n"] {
        let list = root.join("list.txt");
        std::fs::write(&list, text).unwrap();
        let o = auto(&["--model", &m, "--image", s(&list), "--out", s(&out)]);
        assert_fails_with(&o, &["the list names no images"]);
    }
    assert!(!out.exists(), "a refused run must not create --out");

    // More shards than images: the other shards have the work, so this one does nothing.
    let imgs = small_images(&root.join("imgs"), 1);
    let o = auto(&[
        "--model",
        &m,
        "--image",
        s(&imgs[0]),
        "--out",
        s(&out),
        "--shard",
        "1/2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no images fall in this shard (the input has 1 image)"));
    assert_clean_streams(&o);

    // An image whose output would be the parameter record is refused before any work.
    let clash = root.join("samrt_auto_params.png");
    std::fs::copy(&imgs[0], &clash).unwrap();
    let o = auto(&[
        "--model",
        &m,
        "--image",
        s(&clash),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ]);
    assert_fails_with(&o, &["keeps for its own records"]);

    // Outputs without a record of the parameters that made them are not trusted.
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("img0.json"), "[]").unwrap();
    let o = auto(&[
        "--model",
        &m,
        "--image",
        s(&imgs[0]),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ]);
    assert_fails_with(&o, &["no samrt_auto_params.json", "--force"]);
}

#[test]
fn parameters_are_recorded_a_change_is_refused_and_force_reruns() {
    let root = scratch("auto-params");
    let m = model();
    let imgs = small_images(&root.join("imgs"), 1);
    let out = root.join("out");
    let base = [
        "--model",
        &m,
        "--image",
        s(&imgs[0]),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ];
    let o = auto(&with(&base, SMALL));
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = read_json(&out.join("samrt_auto_params.json"));
    let p = &rec["parameters"];
    assert_eq!(p["points_per_side"], 2);
    assert_eq!(p["points_per_batch"], 64);
    assert_eq!(p["pred_iou_thresh"], 0.0);
    assert_eq!(p["stability_score_thresh"], 0.0);
    assert_eq!(p["crop_n_layers"], 0);
    assert_eq!(p["min_mask_region_area"], 0);
    assert_eq!(p["output_mode"], "coco_rle");
    let size = std::fs::metadata(tiny_safetensors()).unwrap().len();
    assert_eq!(p["model"]["size"], size);
    assert!(p["model"]["fingerprint"].is_string());
    assert_eq!(p.as_object().unwrap().len(), 13, "{p}");

    // Same parameters: finished images are skipped.
    let dest = out.join("img0.json");
    std::fs::write(&dest, "[]").unwrap();
    let o = auto(&with(&base, SMALL));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping 1 image with existing outputs"));
    assert_clean_streams(&o);
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "[]");

    // Different parameters: refused, naming each difference, nothing touched.
    let changed = with(
        &base,
        &[
            "--points-per-side",
            "3",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0.5",
        ],
    );
    let o = auto(&changed);
    assert_fails_with(
        &o,
        &[
            "points_per_side: recorded 2, now 3",
            "stability_score_thresh: recorded 0.0, now 0.5",
            "--force",
        ],
    );
    assert!(!stderr(&o).contains("pred_iou_thresh"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "[]");
    // The output mode counts too.
    let o = auto(&with(
        &[
            "--model",
            &m,
            "--image",
            s(&imgs[0]),
            "--out",
            s(&out),
            "--output-mode",
            "uncompressed_rle",
        ],
        SMALL,
    ));
    assert_fails_with(
        &o,
        &["output_mode: recorded coco_rle, now uncompressed_rle"],
    );

    // --force regenerates and records the new parameters.
    let o = auto(&with(&changed, &["--force"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read_to_string(&dest).unwrap(), "[]");
    assert!(read_json(&dest).is_array());
    let rec = read_json(&out.join("samrt_auto_params.json"));
    assert_eq!(rec["parameters"]["points_per_side"], 3);
    assert_eq!(rec["parameters"]["stability_score_thresh"], 0.5);
    // ... after which the new parameters resume normally.
    let o = auto(&changed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping 1 image"));
}

#[test]
fn failed_images_are_listed_and_the_list_feeds_back() {
    let root = scratch("auto-failures");
    let m = model();
    let dir = root.join("imgs");
    let imgs = small_images(&dir, 1);
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"not a png").unwrap();
    let out = root.join("out");
    let o = auto(&with(
        &[
            "--model",
            &m,
            "--image",
            s(&dir),
            "--out",
            s(&out),
            "--output-mode",
            "coco_rle",
        ],
        SMALL,
    ));
    let failures = out.join("failures.txt");
    assert_fails_with(
        &o,
        &[
            "1 of 2 images failed; retry it with --image",
            "failures.txt",
        ],
    );
    let err = stderr(&o);
    // The bad image's path appears once in its line, not twice.
    let line = err.lines().find(|l| l.contains("bad.png")).unwrap();
    assert_eq!(line.matches("bad.png").count(), 1, "{line}");
    assert!(out.join("img0.json").is_file(), "the good image still ran");
    let listed = std::fs::read_to_string(&failures).unwrap();
    let abs = std::fs::canonicalize(&bad).unwrap();
    assert_eq!(listed.lines().collect::<Vec<_>>(), vec![s(&abs)]);

    // Fed back (from another working directory, through a relative list path), only the
    // failed image runs; still failing, it is listed again.
    let fed = |o: &str| {
        Command::new(env!("CARGO_BIN_EXE_samrt"))
            .current_dir(&root)
            .args(["auto", "--device", "cpu", "--model", &m])
            .args(["--image", "out/failures.txt", "--out", o])
            .args(["--output-mode", "coco_rle"])
            .args(SMALL)
            .env("SAMRT_CACHE_DIR", scratch("cache"))
            .output()
            .unwrap()
    };
    let o = fed("out");
    assert_fails_with(&o, &["[1/1]", "1 of 1 image failed"]);
    assert_eq!(std::fs::read_to_string(&failures).unwrap(), listed);

    // Repaired, it runs, and the stale list is removed.
    std::fs::copy(&imgs[0], &bad).unwrap();
    let o = fed("out");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_streams(&o);
    assert!(out.join("bad.json").is_file());
    assert!(
        !failures.exists(),
        "a run without failures removes failures.txt"
    );
}

#[test]
fn amg_py_flag_names_work() {
    let root = scratch("auto-aliases");
    let imgs = small_images(&root.join("imgs"), 1);
    let out = root.join("out");
    let o = auto(&with(
        &[
            "--checkpoint",
            &model(),
            "--model-type",
            "vit_b",
            "--input",
            s(&imgs[0]),
            "--output",
            s(&out),
            "--convert-to-rle",
        ],
        SMALL,
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_streams(&o);
    // The tiny model is no official size, so --model-type has nothing to contradict.
    assert!(stderr(&o).contains("is not an official model size"));
    let v = read_json(&out.join("img0.json"));
    assert!(!v.as_array().unwrap().is_empty());
    for r in v.as_array().unwrap() {
        assert!(r["segmentation"]["counts"].is_string(), "COCO RLE: {r}");
    }
    let rec = read_json(&out.join("samrt_auto_params.json"));
    assert_eq!(rec["parameters"]["output_mode"], "coco_rle");

    // --convert-to-rle and a different --output-mode contradict each other.
    let o = auto(&[
        "--checkpoint",
        &model(),
        "--input",
        s(&imgs[0]),
        "--output",
        s(&out),
        "--convert-to-rle",
        "--output-mode",
        "binary_mask",
    ]);
    assert_fails_with(&o, &["--convert-to-rle", "--output-mode binary_mask"]);
}

/// A ViT-B-shaped safetensors file whose data is a hole: the shapes are all `--model-type`
/// reads, so the file costs a header, not 180 MB.
fn sparse_vit_b(path: &Path) {
    let cfg = samrt::io::config::SamConfig::by_name("vit_b").unwrap();
    let mut json = String::from("{");
    let mut off = 0usize;
    for (i, (name, shape)) in samrt::io::config::expected_shapes(&cfg).iter().enumerate() {
        let end = off + shape.iter().product::<usize>() * 2;
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#""{name}":{{"dtype":"F16","shape":{shape:?},"data_offsets":[{off},{end}]}}"#
        ));
        off = end;
    }
    json.push('}');
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(json.as_bytes());
    std::fs::write(path, &bytes).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len((bytes.len() + off) as u64).unwrap();
}

#[test]
fn model_type_must_match_the_checkpoint() {
    let root = scratch("auto-model-type");
    let ck = root.join("vit_b_shaped.safetensors");
    sparse_vit_b(&ck);
    let imgs = small_images(&root.join("imgs"), 1);
    let out = root.join("out");
    for (flag, shown) in [
        ("vit_h", "--model-type vit_h"),
        ("default", "--model-type default (vit_h)"),
        ("vit_l", "--model-type vit_l"),
    ] {
        let o = auto(&[
            "--checkpoint",
            s(&ck),
            "--model-type",
            flag,
            "--input",
            s(&imgs[0]),
            "--output",
            s(&out),
        ]);
        assert_fails_with(&o, &[shown, "is a vit_b checkpoint", "--model-type vit_b"]);
    }
    assert!(!out.exists(), "the check comes before any work");
}

#[test]
fn progress_goes_to_stderr_and_stdout_stays_empty() {
    let root = scratch("auto-progress");
    let imgs = small_images(&root.join("imgs"), 2);
    let list = root.join("list.txt");
    std::fs::write(&list, "# two images\nimgs/img0.png\n\nimgs/img1.png\n").unwrap();
    let out = root.join("out");
    let o = auto(&[
        "--model",
        &model(),
        "--image",
        s(&list),
        "--out",
        s(&out),
        "--points-per-side",
        "4",
        "--points-per-batch",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_streams(&o);
    let err = stderr(&o);
    for (k, p) in imgs.iter().enumerate() {
        let name = p.file_name().unwrap().to_str().unwrap();
        // The first progress line of an image is always shown; later ones are throttled.
        let start = format!("{name}: crop 1/1, points batch 0/4");
        assert!(err.contains(&start), "expected `{start}` in: {err}");
        let done = err
            .lines()
            .find(|l| l.starts_with(&format!("samrt: [{}/2] ", k + 1)))
            .unwrap_or_else(|| panic!("no [{}/2] line in: {err}", k + 1));
        assert!(done.contains(name) && done.contains("ETA"), "{done}");
        let n: usize = done
            .split(": ")
            .nth(2)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let noun = if n == 1 { " mask |" } else { " masks |" };
        assert!(done.contains(&format!("{n}{noun}")), "{done}");
    }
}

#[test]
fn help_describes_every_option() {
    let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(["auto", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = help.lines().collect();
    let mut seen = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        if !t.starts_with("--") && !t.starts_with("-h") {
            continue;
        }
        let flag = t
            .split([' ', ','])
            .find(|w| w.starts_with("--"))
            .unwrap()
            .to_string();
        // The description follows on the same line after the value name, or indented on
        // the next line.
        let same_line = t.split("  ").filter(|w| !w.trim().is_empty()).count() >= 2;
        let next_line = lines.get(i + 1).is_some_and(|n| {
            let n = n.trim_start();
            !n.is_empty() && !n.starts_with('-')
        });
        assert!(same_line || next_line, "{flag} has no description:\n{help}");
        seen.push(flag);
    }
    let amg_py = [
        "--input",
        "--output",
        "--model-type",
        "--checkpoint",
        "--device",
        "--convert-to-rle",
        "--points-per-side",
        "--points-per-batch",
        "--pred-iou-thresh",
        "--stability-score-thresh",
        "--stability-score-offset",
        "--box-nms-thresh",
        "--crop-n-layers",
        "--crop-nms-thresh",
        "--crop-overlap-ratio",
        "--crop-n-points-downscale-factor",
        "--min-mask-region-area",
    ];
    for f in amg_py.iter().chain(&[
        "--model",
        "--image",
        "--out",
        "--output-mode",
        "--shard",
        "--force",
    ]) {
        assert!(help.contains(f), "{f} missing from:\n{help}");
    }
    for f in [
        "--model",
        "--image",
        "--out",
        "--force",
        "--shard",
        "--points-per-side",
    ] {
        assert!(
            seen.iter().any(|s| s == f),
            "{f} not listed as an option: {seen:?}"
        );
    }
}

/// A source of one fixed disc per point, enough to drive the generator without a model.
struct Discs;

impl MaskSource for Discs {
    type Crop = (usize, usize);
    type Batch = Vec<([f64; 2], [f32; 1])>;

    fn crop(&self, img: &RgbImage) -> samrt::Result<(usize, usize)> {
        Ok((img.height, img.width))
    }
    fn batch(&self, _: &(usize, usize), points: &[[f64; 2]]) -> samrt::Result<Self::Batch> {
        Ok(points.iter().map(|&p| (p, [0.95])).collect())
    }
    fn iou<'b>(&self, b: &'b Self::Batch, i: usize) -> &'b [f32] {
        &b[i].1
    }
    fn logits(
        &self,
        &(h, w): &(usize, usize),
        b: &Self::Batch,
        i: usize,
        _: usize,
    ) -> samrt::Result<Vec<f32>> {
        let [px, py] = b[i].0;
        Ok((0..h * w)
            .map(|k| {
                let (x, y) = ((k % w) as f64 - px, (k / w) as f64 - py);
                ((6.0 - (x * x + y * y).sqrt()) * 100.0) as f32
            })
            .collect())
    }
}

#[test]
fn progress_reports_every_crop_and_batch_without_changing_the_result() {
    let img = RgbImage {
        width: 80,
        height: 60,
        data: vec![0; 80 * 60 * 3],
    };
    let cfg = AmgConfig {
        points_per_side: 4,
        points_per_batch: 5,
        crop_n_layers: 1,
        ..AmgConfig::default()
    };
    let plain = generate_with(&Discs, &img, &cfg).unwrap();
    let mut seen = Vec::new();
    let with_progress =
        generate_with_progress(&Discs, &img, &cfg, &mut |p: Progress| seen.push(p)).unwrap();
    assert!(!plain.is_empty());
    assert_eq!(plain, with_progress);
    // 5 crops (the image and 4 of layer 1), 16 points each in batches of 5: 4 batches,
    // each crop reported at its start and after every batch.
    let mut expected = Vec::new();
    for crop in 1..=5 {
        for batches_done in 0..=4 {
            expected.push(Progress {
                crop,
                crops: 5,
                batches_done,
                batches: 4,
            });
        }
    }
    assert_eq!(seen, expected);
}
