//! `samrt embed` + `segment --embedding` (encode once, prompt many times), the mask-input
//! round trip, and prompt limits (issue 11), driven through the CLI.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

fn samrt(args: &[&str], cache: &Path) -> Output {
    run_samrt(args, cache)
}

fn ok(o: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "failed: {err}");
    serde_json::from_slice(&o.stdout).expect("stdout is one JSON object")
}

fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure: {err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("samrt: "), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn image_path() -> PathBuf {
    fixtures().join("images/coffee.png")
}

#[test]
fn saved_embedding_decodes_exactly_as_a_full_segment() {
    let dir = scratch("embed-roundtrip");
    let model = tiny_safetensors();
    let pth = fixtures().join("sam_tiny.pth");
    let prompt = ["--point", "300,200", "--point", "120,80,0"];
    let img = image_path();
    let mut full = vec!["segment", "--model", s(model), "--image", s(&img)];
    full.extend(prompt);
    let out_full = dir.join("full");
    full.extend(["--out", s(&out_full)]);
    let want = ok(&samrt(&full, &dir));
    let want_logits = std::fs::read(out_full.join("low_res_logits.npy")).unwrap();

    for ext in ["safetensors", "npy"] {
        let emb = dir.join(format!("emb.{ext}"));
        // Made from the .pth (through its cache): the same model, the same fingerprint.
        let info = ok(&samrt(
            &[
                "embed",
                "--model",
                s(&pth),
                "--image",
                s(&image_path()),
                "--out",
                s(&emb),
            ],
            &dir,
        ));
        assert_eq!(info["shape"], serde_json::json!([1, 256, 64, 64]));
        assert_eq!(info["original_size"], serde_json::json!([400, 600]));
        assert_eq!(info["input_size"], serde_json::json!([683, 1024]));
        if ext == "npy" {
            assert!(dir.join("emb.json").is_file(), "sidecar beside the .npy");
        }
        let out = dir.join(format!("from-{ext}"));
        let mut args = vec!["segment", "--model", s(model), "--embedding", s(&emb)];
        args.extend(prompt);
        args.extend(["--out", s(&out)]);
        assert_eq!(ok(&samrt(&args, &dir)), want, "{ext}: same JSON");
        let got = std::fs::read(out.join("low_res_logits.npy")).unwrap();
        assert!(got == want_logits, "{ext}: bit-identical logits");
        for i in 0..3 {
            let f = format!("mask_{i}.png");
            assert_eq!(
                std::fs::read(out.join(&f)).unwrap(),
                std::fs::read(out_full.join(&f)).unwrap(),
                "{ext}: {f}"
            );
        }
    }
    // --image with --embedding: only its size is checked.
    let other = fixtures().join("images/astronaut.png");
    let o = samrt(
        &[
            "segment",
            "--model",
            s(model),
            "--embedding",
            s(&dir.join("emb.npy")),
            "--image",
            s(&other),
            "--point",
            "1,1",
            "--out",
            s(&dir.join("x")),
        ],
        &dir,
    );
    fails_with(&o, "was made from a 600x400 image");
}

#[test]
fn embedding_of_another_model_is_refused() {
    let dir = scratch("embed-foreign");
    let model = tiny_safetensors();
    let emb = dir.join("emb.safetensors");
    ok(&samrt(
        &[
            "embed",
            "--model",
            s(model),
            "--image",
            s(&image_path()),
            "--out",
            s(&emb),
        ],
        &dir,
    ));
    // The same architecture with one value changed (its last byte: a low mantissa bit).
    let mut bytes = std::fs::read(model).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let other = dir.join("other.safetensors");
    std::fs::write(&other, bytes).unwrap();
    let o = samrt(
        &[
            "segment",
            "--model",
            s(&other),
            "--embedding",
            s(&emb),
            "--point",
            "5,5",
            "--out",
            s(&dir.join("o")),
        ],
        &dir,
    );
    fails_with(&o, "made by another model");

    // Damaged or foreign files are errors, not garbage.
    let bad = dir.join("bad.safetensors");
    std::fs::copy(model, &bad).unwrap();
    let npy = dir.join("plain.npy");
    samrt::io::npy::write_f32(&npy, &[1, 256, 64, 64], &vec![0.5; 256 * 64 * 64]).unwrap();
    for (file, needle) in [
        (&bad, "metadata `format`"),
        (&npy, "plain.json"),
        (&dir.join("missing.safetensors"), "missing.safetensors"),
        (&dir.join("emb.txt"), "must end in .safetensors or .npy"),
    ] {
        let o = samrt(
            &[
                "segment",
                "--model",
                s(model),
                "--embedding",
                s(file),
                "--point",
                "5,5",
                "--out",
                s(&dir.join("o")),
            ],
            &dir,
        );
        fails_with(&o, needle);
    }
}

#[test]
fn mask_input_round_trip_picks_the_best_mask_or_mask_k() {
    let dir = scratch("mask-roundtrip");
    let model = tiny_safetensors();
    let img = image_path();
    let run = |extra: &[&str], out: &Path| {
        let mut a = vec!["segment", "--model", s(model), "--image", s(&img)];
        a.extend(["--point", "300,200"]);
        a.extend(extra);
        a.extend(["--out", s(out)]);
        samrt(&a, &dir)
    };
    let first = dir.join("first");
    ok(&run(&[], &first));
    let (shape, scores) = samrt::io::npy::read_f32(&first.join("iou_predictions.npy")).unwrap();
    assert_eq!(shape, [3], "scores written next to the logits");
    let (_, logits) = samrt::io::npy::read_f32(&first.join("low_res_logits.npy")).unwrap();
    let best = (0..3).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
    let n = 256 * 256;
    // One mask of the stack, written alone, is the reference for each choice.
    let single = |k: usize| {
        let p = dir.join(format!("mask{k}.npy"));
        samrt::io::npy::write_f32(&p, &[1, 256, 256], &logits[k * n..(k + 1) * n]).unwrap();
        let out = dir.join(format!("ref{k}"));
        let json = ok(&run(&["--mask-input", s(&p)], &out));
        (json, std::fs::read(out.join("low_res_logits.npy")).unwrap())
    };
    let stack = s(&first.join("low_res_logits.npy")).to_string();
    let default = dir.join("default");
    let got = ok(&run(&["--mask-input", &stack], &default));
    let (want, want_logits) = single(best);
    assert_eq!(got, want, "default = best-scoring mask ({best})");
    assert!(std::fs::read(default.join("low_res_logits.npy")).unwrap() == want_logits);
    let k = (best + 1) % 3;
    let got = ok(&run(
        &["--mask-input", &format!("{stack}:{k}")],
        &dir.join("k"),
    ));
    assert_eq!(got, single(k).0, "FILE.npy:{k}");

    // float64 holding the same values gives the same answer.
    let body: Vec<u8> = logits[best * n..(best + 1) * n]
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (256, 256), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let h = format!("{header}{}\n", " ".repeat(pad % 64));
    npy.extend((h.len() as u16).to_le_bytes());
    npy.extend(h.as_bytes());
    npy.extend(body);
    let f64_path = dir.join("mask_f64.npy");
    std::fs::write(&f64_path, npy).unwrap();
    assert_eq!(
        ok(&run(&["--mask-input", s(&f64_path)], &dir.join("f64"))),
        want,
        "float64 .npy"
    );

    // Without the scores beside it, a stack needs :K; K must exist.
    let lone = dir.join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    std::fs::copy(first.join("low_res_logits.npy"), lone.join("l.npy")).unwrap();
    let o = run(&["--mask-input", s(&lone.join("l.npy"))], &dir.join("x"));
    fails_with(&o, "FILE.npy:K");
    let o = run(&["--mask-input", &format!("{stack}:3")], &dir.join("x"));
    fails_with(&o, "mask 3 asked for, the file holds 3 masks");
    // Inside a prompts file too, relative to the JSON file.
    let prompts = dir.join("p.json");
    std::fs::write(
        &prompts,
        format!(
            "\u{FEFF}[{{\"points\": [[300, 200]], \"mask_input\": \"first/low_res_logits.npy:{k}\"}}]"
        ),
    )
    .unwrap();
    let mut a = vec!["segment", "--model", s(model), "--image", s(&img)];
    let pj = dir.join("pj");
    a.extend(["--prompts", s(&prompts), "--out", s(&pj)]);
    let got = ok(&samrt(&a, &dir));
    assert_eq!(
        got["prompts"][0]["masks"],
        single(k).0["masks"],
        "BOM + :K in JSON"
    );
}

#[test]
fn points_per_prompt_are_capped() {
    let dir = scratch("points-cap");
    let max = samrt::sam::predictor::MAX_POINTS_PER_PROMPT;
    let pts: Vec<[f64; 2]> = (0..=max).map(|i| [(i % 600) as f64, 7.0]).collect();
    let prompts = dir.join("p.json");
    std::fs::write(&prompts, serde_json::json!([{ "points": pts }]).to_string()).unwrap();
    let model = tiny_safetensors();
    let o = samrt(
        &[
            "segment",
            "--model",
            s(model),
            "--image",
            s(&image_path()),
            "--prompts",
            s(&prompts),
            "--out",
            s(&dir.join("o")),
        ],
        &dir,
    );
    fails_with(&o, &format!("at most {max} points per prompt"));
    let mut p = samrt::Prompt {
        points: pts,
        labels: vec![1; max + 1],
        ..Default::default()
    };
    assert!(p.validate().is_err());
    p.points.pop();
    p.labels.pop();
    assert!(p.validate().is_ok());
}

/// Messages (issue 11): one `samrt:` prefix (usage errors too), each path once, `info`
/// without writing the cache, `convert` saying a safetensors file needs no conversion.
#[test]
fn messages_are_prefixed_and_info_has_no_side_effects() {
    let dir = scratch("messages");
    let cache = dir.join("cache");
    let o = samrt(&["segment", "--bogus"], &cache);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("samrt: error: unexpected argument"),
        "{err}"
    );

    let pth = fixtures().join("sam_tiny.pth");
    let o = samrt(&["info", s(&pth)], &cache);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("embed_dim: 160"));
    assert!(!cache.exists(), "info wrote {}", cache.display());

    let model = tiny_safetensors();
    let o = samrt(
        &["convert", s(model), s(&dir.join("x.safetensors"))],
        &cache,
    );
    fails_with(&o, "is already a safetensors file");
    assert!(!dir.join("x.safetensors").exists());

    let missing = dir.join("missing.png");
    let o = samrt(
        &[
            "segment",
            "--model",
            s(model),
            "--image",
            s(&missing),
            "--point",
            "1,1",
            "--out",
            s(&dir.join("o")),
        ],
        &cache,
    );
    fails_with(&o, "No such file");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches(s(&missing)).count(), 1, "path once: {err}");
    let o = samrt(&["info", s(&dir.join("nope.pth"))], &cache);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("nope.pth").count(), 1, "path once: {err}");
}
