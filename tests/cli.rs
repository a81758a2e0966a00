//! The `samrt` CLI contract, driven as a user would: parity with the official predictor
//! through files, and clean failures on bad input.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn samrt(args: &[&str], cache: &Path) -> Output {
    run_samrt(args, cache)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Bad input: a non-zero exit that is not a panic (101), one clear message, nothing else.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "expected `{needle}` in: {err}"
    );
}

fn model() -> String {
    tiny_safetensors().to_str().unwrap().to_string()
}

fn img_path(name: &str) -> String {
    fixtures()
        .join(image(name)["file"].as_str().unwrap())
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn segment_matches_official_for_every_fixture_prompt() {
    let cache = scratch("cli-cache");
    for p in prompts() {
        let name = p["name"].as_str().unwrap();
        let out = scratch(&format!("cli-{name}"));
        let image = img_path(p["image"].as_str().unwrap());
        let m = model();
        let mut args: Vec<String> = vec![
            "segment".into(),
            "--model".into(),
            m,
            "--image".into(),
            image,
        ];
        if !p["points"].is_null() {
            for (pt, l) in p["points"]
                .as_array()
                .unwrap()
                .iter()
                .zip(p["labels"].as_array().unwrap())
            {
                let v = f64s(pt);
                args.push("--point".into());
                args.push(format!("{},{},{}", v[0], v[1], l));
            }
        }
        if !p["box"].is_null() {
            let b = f64s(&p["box"]);
            args.push("--box".into());
            args.push(format!("{},{},{},{}", b[0], b[1], b[2], b[3]));
        }
        if let Some(f) = p["mask_input"].as_str() {
            args.push("--mask-input".into());
            args.push(fixtures().join(f).to_str().unwrap().into());
        }
        if !p["multimask"].as_bool().unwrap() {
            args.push("--single-mask".into());
        }
        args.extend([
            "--device".into(),
            "cpu".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]);
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let o = samrt(&argv, &cache);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let json: serde_json::Value =
            serde_json::from_slice(&o.stdout).expect("stdout is one JSON object");
        let masks = json["masks"].as_array().unwrap();
        let scores = f64s(&p["scores"]);
        assert_eq!(masks.len(), scores.len(), "{name}");
        let (shape, want) = packed_masks(&p["masks"]);
        let (h, w) = (shape[1], shape[2]);
        for (i, rec) in masks.iter().enumerate() {
            assert_eq!(rec["file"], format!("mask_{i}.png"));
            let s = rec["score"].as_f64().unwrap();
            assert!(
                (s - scores[i]).abs() <= 2e-3,
                "{name}: score {s} vs {}",
                scores[i]
            );
            let png = image::open(out.join(format!("mask_{i}.png"))).unwrap();
            let png = png.as_luma8().expect("8-bit grayscale PNG");
            assert_eq!((png.height() as usize, png.width() as usize), (h, w));
            assert!(png.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
            let ours: Vec<bool> = png.pixels().map(|p| p.0[0] == 255).collect();
            let theirs = &want[i * h * w..(i + 1) * h * w];
            let agree =
                ours.iter().zip(theirs).filter(|(a, b)| a == b).count() as f64 / (h * w) as f64;
            assert!(agree >= 0.995, "{name} mask {i}: agreement {agree}");
            let area = ours.iter().filter(|&&b| b).count() as u64;
            assert_eq!(
                rec["area"].as_u64().unwrap(),
                area,
                "area is of the written mask"
            );
            // The official box convention (as `auto` writes it): w = max_x - min_x.
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for (k, _) in ours.iter().enumerate().filter(|(_, &b)| b) {
                (x0, x1) = (x0.min(k % w), x1.max(k % w));
                (y0, y1) = (y0.min(k / w), y1.max(k / w));
            }
            let want_box = if area == 0 {
                vec![0.0; 4]
            } else {
                vec![x0 as f64, y0 as f64, (x1 - x0) as f64, (y1 - y0) as f64]
            };
            assert_eq!(f64s(&rec["bbox"]), want_box, "{name} mask {i}: bbox");
        }
        let (lshape, _) = samrt::io::npy::read_f32(&out.join("low_res_logits.npy")).unwrap();
        assert_eq!(lshape, vec![masks.len(), 256, 256]);
    }
}

#[test]
fn pth_is_converted_once_then_cached() {
    let cache = scratch("cli-pth-cache");
    let out = scratch("cli-pth-out");
    let pth = fixtures().join("sam_tiny.pth");
    let args = [
        "segment",
        "--model",
        pth.to_str().unwrap(),
        "--image",
        &img_path("chelsea"),
        "--point",
        "200,150",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = samrt(&args, &cache);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("converted"), "{}", stderr(&first));
    let second = samrt(&args, &cache);
    assert!(second.status.success());
    assert!(stderr(&second).contains("cached"), "{}", stderr(&second));
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn info_and_convert() {
    let cache = scratch("cli-info");
    let o = samrt(
        &["info", fixtures().join("sam_tiny.pth").to_str().unwrap()],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("embed_dim: 160")
            && text.contains("depth: 4")
            && text.contains("head_dim: 80"),
        "{text}"
    );
    assert!(text.contains("global_attn_indexes: [1, 3]"), "{text}");
    let want = manifest()["model"]["num_params"].as_u64().unwrap();
    // The manifest counts the state dict; `parameters` leaves out the 2x128 Gaussian PE buffer.
    assert!(
        text.contains(&format!("parameters: {}", want - 256)),
        "{text}"
    );
    let st = scratch("cli-convert").join("m.safetensors");
    let o = samrt(
        &[
            "convert",
            fixtures().join("sam_tiny.pth").to_str().unwrap(),
            st.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = samrt(&["info", st.to_str().unwrap()], &cache);
    assert!(String::from_utf8_lossy(&o.stdout).contains("embed_dim: 160"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_input_fails_cleanly() {
    let cache = scratch("cli-bad-cache");
    let dir = scratch("cli-bad");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let m = model();
    let img = img_path("chelsea");
    let seg = |extra: &[&str], model: &str, image: &str| {
        let mut a = vec!["segment", "--model", model, "--image", image, "--out", out];
        a.extend_from_slice(extra);
        samrt(&a, &cache)
    };
    // Prompts.
    assert_clean_failure(&seg(&["--point", "1,2,3,4"], &m, &img), "--point");
    assert_clean_failure(&seg(&["--point", "a,b"], &m, &img), "not a number");
    assert_clean_failure(&seg(&["--point", "nan,5"], &m, &img), "not finite");
    assert_clean_failure(&seg(&["--point", "5,inf"], &m, &img), "not finite");
    assert_clean_failure(&seg(&["--point", "5,6,2"], &m, &img), "label");
    assert_clean_failure(&seg(&["--point", "5,6,-1"], &m, &img), "label");
    assert_clean_failure(&seg(&["--box", "1,2,3"], &m, &img), "--box");
    assert_clean_failure(&seg(&["--box", "1,2,3,NaN"], &m, &img), "not finite");
    // Mask inputs of the wrong shape or dtype.
    let wrong_shape = dir.join("m128.npy");
    samrt::io::npy::write_f32(&wrong_shape, &[128, 128], &vec![0.25; 128 * 128]).unwrap();
    assert_clean_failure(
        &seg(&["--mask-input", wrong_shape.to_str().unwrap()], &m, &img),
        "shape",
    );
    let wrong_dtype = dir.join("mu8.npy");
    samrt::io::npy::write_u8(&wrong_dtype, &[256, 256], &vec![3; 65536]).unwrap();
    assert_clean_failure(
        &seg(&["--mask-input", wrong_dtype.to_str().unwrap()], &m, &img),
        "float32",
    );
    let garbage = write(
        &dir,
        "garbage.npy",
        b"\x93NUMPY\x01\x00\xff\xffnot a header",
    );
    assert_clean_failure(
        &seg(&["--mask-input", garbage.to_str().unwrap()], &m, &img),
        ".npy",
    );
    // Images.
    assert_clean_failure(
        &seg(&[], &m, dir.join("missing.png").to_str().unwrap()),
        "missing.png",
    );
    let junk = write(&dir, "junk.png", b"\x89PNG\r\n\x1a\n this is not a png");
    assert_clean_failure(&seg(&[], &m, junk.to_str().unwrap()), "image");
    let full = std::fs::read(fixtures().join(image("chelsea")["file"].as_str().unwrap())).unwrap();
    let trunc = write(&dir, "trunc.png", &full[..full.len() / 2]);
    assert_clean_failure(&seg(&[], &m, trunc.to_str().unwrap()), "image");
    // Checkpoints.
    let pth = std::fs::read(fixtures().join("sam_tiny.pth")).unwrap();
    let tpth = write(&dir, "trunc.pth", &pth[..pth.len() / 3]);
    assert_clean_failure(&seg(&[], tpth.to_str().unwrap(), &img), "trunc.pth");
    let st = std::fs::read(tiny_safetensors()).unwrap();
    let tst = write(&dir, "trunc.safetensors", &st[..st.len() - 1000]);
    assert_clean_failure(&seg(&[], tst.to_str().unwrap(), &img), "trunc.safetensors");
    let mut huge = st.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let hst = write(&dir, "huge_header.safetensors", &huge);
    assert_clean_failure(&seg(&[], hst.to_str().unwrap(), &img), "header");
    let empty = write(&dir, "empty.safetensors", b"");
    assert_clean_failure(
        &seg(&[], empty.to_str().unwrap(), &img),
        "empty.safetensors",
    );
    assert_clean_failure(
        &seg(&[], dir.join("nope.pth").to_str().unwrap(), &img),
        "nope.pth",
    );
    // Device.
    if !cfg!(feature = "cuda") {
        assert_clean_failure(&seg(&["--device", "cuda"], &m, &img), "cuda");
    }
}

#[test]
fn bench_reports_every_component_as_json() {
    let cache = scratch("cli-bench");
    let o = samrt(
        &[
            "bench",
            "--device",
            "cpu",
            "--model",
            &model(),
            "--iters",
            "2",
            "--prompts",
            "3",
            "--json",
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    for key in ["device", "date", "command", "results"] {
        assert!(!j[key].is_null(), "missing {key}");
    }
    let comps: Vec<&str> = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["component"].as_str().unwrap())
        .collect();
    assert_eq!(
        comps,
        [
            "preprocess",
            "encoder",
            "prompt_encoder",
            "mask_decoder",
            "postprocess",
            "decoder",
            "decoder_batch"
        ]
    );
    let batch = &j["results"][6]["batch"];
    assert_eq!(batch, 3, "decoder_batch reports its prompt count");
    for r in j["results"].as_array().unwrap() {
        let (m, p) = (
            r["median_ms"].as_f64().unwrap(),
            r["p90_ms"].as_f64().unwrap(),
        );
        assert!(m > 0.0 && p >= m, "{r}");
        assert_eq!(r["system"], "samrt");
    }
    assert_clean_failure(
        &samrt(&["bench", "--model", "vit_q", "--iters", "1"], &cache),
        "vit_q",
    );
    assert_clean_failure(
        &samrt(&["bench", "--model", "vit_b", "--iters", "0"], &cache),
        "--iters",
    );
    assert_clean_failure(
        &samrt(&["bench", "--model", "vit_b", "--prompts", "0"], &cache),
        "--prompts",
    );
}

#[test]
fn prompts_file_decodes_many_prompts_in_one_call() {
    let cache = scratch("cli-prompts-cache");
    let dir = scratch("cli-prompts");
    let coffee: Vec<&serde_json::Value> = prompts()
        .iter()
        .filter(|p| p["image"] == "coffee")
        .collect();
    let mut list: Vec<serde_json::Value> = coffee
        .iter()
        .map(|p| {
            let mut o = serde_json::json!({"points": p["points"], "labels": p["labels"], "box": p["box"], "multimask": p["multimask"]});
            if let Some(f) = p["mask_input"].as_str() {
                // Relative to the prompts file.
                std::fs::copy(fixtures().join(f), dir.join("mask_in.npy")).unwrap();
                o["mask_input"] = "mask_in.npy".into();
            }
            o
        })
        .collect();
    // The same mask prompt again with the logits inline, as [1, 256, 256] numbers.
    let with_mask = list
        .iter()
        .position(|o| o.get("mask_input").is_some())
        .expect("a mask prompt");
    let arr = samrt::io::npy::read(&dir.join("mask_in.npy")).unwrap();
    let samrt::io::npy::NpyData::F32(v) = arr.data else {
        panic!("mask fixture is not f32")
    };
    let rows: Vec<Vec<f32>> = v.chunks(256).map(|r| r.to_vec()).collect();
    let mut inline = list[with_mask].clone();
    inline["mask_input"] = serde_json::json!([rows]);
    list.push(inline);
    let pf = write(
        &dir,
        "prompts.json",
        serde_json::to_string(&list).unwrap().as_bytes(),
    );
    let out = dir.join("out");
    let o = samrt(
        &[
            "segment",
            "--model",
            &model(),
            "--image",
            &img_path("coffee"),
            "--prompts",
            pf.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let got = json["prompts"].as_array().unwrap();
    assert_eq!(got.len(), coffee.len() + 1);
    let logits =
        |k: usize| std::fs::read(out.join(format!("prompt_{k}/low_res_logits.npy"))).unwrap();
    assert_eq!(
        logits(with_mask),
        logits(coffee.len()),
        "inline mask_input = .npy mask_input"
    );
    for (k, (g, p)) in got.iter().zip(&coffee).enumerate() {
        assert_eq!(g["dir"], format!("prompt_{k}"));
        let scores = f64s(&p["scores"]);
        let masks = g["masks"].as_array().unwrap();
        assert_eq!(masks.len(), scores.len());
        let (shape, want) = packed_masks(&p["masks"]);
        let (h, w) = (shape[1], shape[2]);
        for (i, rec) in masks.iter().enumerate() {
            assert!((rec["score"].as_f64().unwrap() - scores[i]).abs() <= 2e-3);
            let png = image::open(out.join(format!("prompt_{k}/mask_{i}.png")))
                .unwrap()
                .to_luma8();
            let agree = png
                .pixels()
                .zip(&want[i * h * w..(i + 1) * h * w])
                .filter(|(a, b)| (a.0[0] == 255) == **b)
                .count();
            assert!(
                agree as f64 / (h * w) as f64 >= 0.995,
                "{} mask {i}",
                p["name"]
            );
        }
        assert!(out.join(format!("prompt_{k}/low_res_logits.npy")).exists());
    }
    let img = img_path("coffee");
    let m = model();
    let run = |body: &str, extra: &[&str]| {
        let f = write(&dir, "bad.json", body.as_bytes());
        let mut a = vec![
            "segment",
            "--model",
            m.as_str(),
            "--image",
            img.as_str(),
            "--prompts",
            f.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        samrt(&a, &cache)
    };
    assert_clean_failure(&run("[{\"points\": [[1, 2]]", &[]), "JSON");
    assert_clean_failure(&run("[]", &[]), "empty");
    assert_clean_failure(
        &run("[{\"points\": [[1, 2]], \"labels\": [2]}]", &[]),
        "label",
    );
    assert_clean_failure(&run("[{\"points\": [[1, 2, 3]]}]", &[]), "[x, y]");
    assert_clean_failure(&run("[{\"pointz\": [[1, 2]]}]", &[]), "unknown key");
    assert_clean_failure(&run("[{\"box\": [1, 2, 3]}]", &[]), "box");
    assert_clean_failure(
        &run("[{\"mask_input\": \"missing.npy\"}]", &[]),
        "missing.npy",
    );
    assert_clean_failure(&run("[{\"mask_input\": [[1, 2], [3, 4]]}]", &[]), "shape");
    assert_clean_failure(&run("[{\"mask_input\": [[1, 2], [3]]}]", &[]), "ragged");
    assert_clean_failure(&run("[{\"mask_input\": [[\"a\"]]}]", &[]), "numbers");
    assert_clean_failure(&run("[{\"mask_input\": [[1e39]]}]", &[]), "finite");
    assert_clean_failure(&run("[{\"mask_input\": 5}]", &[]), "256x256");
    let o = run("[{\"points\": [[1, 2]]}]", &["--point", "3,4"]);
    assert!(!o.status.success() && o.status.code() != Some(101));
}

/// `samrt info FILE | head`: a reader that goes away ends the process quietly (SIGPIPE, as
/// other Unix tools), never with the panic hook's "internal error" and exit 70.
#[test]
fn closed_stdout_ends_quietly() {
    use std::process::Stdio;
    let cache = scratch("cli-pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(["info", &model()])
        .env("SAMRT_CACHE_DIR", &cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run samrt");
    // Close the read end before samrt has printed anything.
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("internal error") && !err.contains("panicked"),
        "{err}"
    );
    assert_ne!(o.status.code(), Some(70), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert!(
            o.status.success() || o.status.signal() == Some(13),
            "status {:?}: {err}",
            o.status
        );
    }
}

/// `samrt convert x.pth x.pth` (or through a symlink or hard link) must refuse and leave the
/// checkpoint intact.
#[test]
fn convert_refuses_to_overwrite_its_input() {
    let dir = scratch("cli-convert-same");
    let pth = dir.join("model.pth");
    std::fs::copy(fixtures().join("sam_tiny.pth"), &pth).unwrap();
    let before = std::fs::read(&pth).unwrap();
    let sym = dir.join("link.pth");
    let hard = dir.join("hard.pth");
    let _ = std::fs::remove_file(&sym);
    let _ = std::fs::remove_file(&hard);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&pth, &sym).unwrap();
    std::fs::hard_link(&pth, &hard).unwrap();
    let p = pth.to_str().unwrap();
    let mut outs = vec![p.to_string(), hard.to_str().unwrap().to_string()];
    if cfg!(unix) {
        outs.push(sym.to_str().unwrap().to_string());
    }
    for out in &outs {
        let o = samrt(&["convert", p, out], &dir);
        assert_clean_failure(&o, "is the input file itself");
        assert_eq!(std::fs::read(&pth).unwrap(), before, "{out}: input changed");
    }
}

// ---- `samrt info --graph`
// `samrt info --graph`: the CUDA encoder's schedule, planned on the host with no device and
// no `cuda` feature. The snapshot pins the op list, the kernel entry points, buffer
// lifetimes and arena offsets of the tiny fixture model; a change to the schedule or the
// planner shows up here as a diff to review (regenerate with `SAMRT_UPDATE_SNAPSHOTS=1`).
const GRAPH_SNAPSHOT: &str = "info_graph_tiny.txt";

fn info_graph(args: &[&str]) -> std::process::Output {
    let model = fixtures().join("sam_tiny.pth");
    let mut argv = vec!["info", model.to_str().unwrap()];
    argv.extend(args);
    run_samrt(&argv, &scratch("info-graph-cache"))
}

#[test]
fn graph_of_the_tiny_model_matches_the_snapshot() {
    let o = info_graph(&["--graph"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let path = fixtures().join(GRAPH_SNAPSHOT);
    if std::env::var_os("SAMRT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        out,
        want,
        "samrt info --graph differs from {}",
        path.display()
    );
    // The shape of the plan, independent of the snapshot: every node names an op and the
    // entry point it launches, windowed and global blocks pick their attention kernels.
    assert!(out.contains("attn_relpos          attn_relpos_s14_d80_f16"));
    assert!(out.contains("attn_relpos          attn_relpos_s64_d80_f16"));
    assert!(out.contains("layer_norm           layer_norm_f16_f32_cf"));
    assert!(out.contains("nodes: 36\n"));
    // The mask decoder's schedule follows, for one-point prompts.
    assert!(out.contains("graph: mask_decoder, batch 1, one point per prompt"));
    // 4096 image keys: token->image split over them, then merged.
    assert!(out.contains("attn_decoder         attn_decoder_t2i_split_d16_f32"));
    assert!(out.contains("attn_decoder         attn_decoder_combine_d16_f32"));
    assert!(out.contains("conv_transpose2x2_masks conv_transpose2x2_masks_f32"));
}

#[test]
fn batch_scales_the_arena_not_the_weights() {
    // The byte count of a totals line: "weights: 69 tensors, 5424896 bytes", "arena: N bytes".
    let field = |o: &str, k: &str| -> usize {
        let line = o.lines().find(|l| l.starts_with(k)).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        words[words.len() - 2].parse().unwrap()
    };
    let one = String::from_utf8(info_graph(&["--graph"]).stdout).unwrap();
    let o = info_graph(&["--graph", "--batch", "2", "--image-size", "1024"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let two = String::from_utf8(o.stdout).unwrap();
    assert!(two.contains("graph: image_encoder, batch 2, image 1024x1024"));
    assert_eq!(field(&one, "weights:"), field(&two, "weights:"));
    assert!(field(&two, "arena:") > field(&one, "arena:"));
    assert_eq!(
        field(&two, "peak:"),
        field(&two, "weights:") + field(&two, "arena:")
    );
}

#[test]
fn another_image_size_plans_that_size_and_bad_ones_are_refused() {
    // The 1024 model run at 512 (as `--image-size 512` of embed/segment/auto runs it): a
    // 32x32 grid, so the global blocks take the any-side attention kernel, not the 64 one.
    let o = info_graph(&["--graph", "--image-size", "512"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.contains("graph: image_encoder, batch 1, image 512x512"),
        "{out}"
    );
    assert!(out.contains("attn_relpos_any_d80_f16"), "{out}");
    assert!(!out.contains("attn_relpos_s64"), "{out}");
    let o = info_graph(&["--graph", "--image-size", "500"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--image-size 500") && err.contains("multiple of the patch size 16"),
        "{err}"
    );
    let o = info_graph(&["--graph", "--batch", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch 0: must be 1..=64"));
}
