//! `samrt serve --device cuda` (on vgpu in CI): the server's answers are the library's on
//! the same device, bit for bit, for a lone request and for requests batched together by
//! the server (the device decoder pads every batch to a fixed bucket and its kernels do not
//! look across prompts, so company cannot change an answer). The CPU server's contract is
//! tested in tests/serve.rs; this file checks only what the device changes.
#![cfg(feature = "cuda")]

mod common;
use common::server::{check_auto, masks_json, Server};
use common::*;
use serde_json::{json, Value};

fn cuda_or_skip(test: &str) -> bool {
    if samrt::cuda::cuda_available().is_ok() {
        return true;
    }
    if std::env::var("SAMRT_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("SAMRT_REQUIRE_GPU=1 but no usable GPU");
    }
    println!("skipping {test}: no CUDA device");
    false
}

/// The library's answer for `p` on `sam`, in the server's JSON.
fn library_masks(sam: &samrt::Sam, emb: &samrt::ImageEmbedding, p: &samrt::Prompt) -> Value {
    masks_json(&sam.predict(emb, p).unwrap())
}

#[test]
fn serve_on_cuda_answers_what_the_library_computes_there() {
    if !cuda_or_skip("serve_on_cuda_answers_what_the_library_computes_there") {
        return;
    }
    // The 256-px model (16x16 embedding, 64x64 low-res masks) keeps vgpu's decode short.
    let model = img_size_model(256);
    let s = Server::start_on(&model, "cuda", &["--batch-wait-ms", "50"]);
    let h = s.get("/health").json();
    assert!(h["device"].as_str().unwrap().starts_with("cuda"), "{h}");
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("mask decoder on CUDA"), "{log}");

    let data = std::fs::read(img_size_dir().join("image.png")).unwrap();
    let r = s.request("POST", "/v1/embed", &data);
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["image_id"].as_str().unwrap().to_string();

    let (sam, _) = samrt::Sam::load_on(&model, samrt::ComputeDevice::Cuda(0)).unwrap();
    let img = samrt::io::image::decode_image(&data, "image.png").unwrap();
    let emb = sam.embed(&img).unwrap();
    // Four prompts: vgpu simulates every warp on a CPU, so the batch stays small.
    let prompts: Vec<(Value, samrt::Prompt)> = (0..4)
        .map(|k| {
            let (x, y) = (10.0 + 30.0 * k as f64, 8.0 + 20.0 * k as f64);
            let multimask = k % 3 != 1;
            (
                json!({"points": [[x, y]], "multimask": multimask}),
                samrt::Prompt {
                    points: vec![[x, y]],
                    labels: vec![1],
                    multimask,
                    ..Default::default()
                },
            )
        })
        .collect();
    let want: Vec<Value> = prompts
        .iter()
        .map(|(_, p)| library_masks(&sam, &emb, p))
        .collect();
    // Lone requests, one after another.
    for (k, (j, _)) in prompts.iter().enumerate().take(2) {
        let t = std::time::Instant::now();
        let r = s.post_json("/v1/segment", &json!({"image_id": id, "prompts": [j]}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["prompts"][0], want[k], "lone prompt {k}");
        eprintln!("lone request {k}: {:.1} s", t.elapsed().as_secs_f64());
    }
    let t = std::time::Instant::now();
    // The same prompts from concurrent clients: the server batches some of them together.
    let before = decoder_calls(&s);
    let got: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|(j, _)| {
                let (s, id) = (&s, &id);
                sc.spawn(move || {
                    let r = s.post_json("/v1/segment", &json!({"image_id": id, "prompts": [j]}));
                    assert_eq!(r.status, 200, "{}", r.text());
                    r.json()["prompts"][0].clone()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g, &want[k], "concurrent prompt {k}");
    }
    let calls = decoder_calls(&s) - before;
    eprintln!(
        "{} concurrent requests in {calls} decoder calls, {:.1} s",
        prompts.len(),
        t.elapsed().as_secs_f64()
    );
    // /v1/auto runs on the device generator: the records `samrt auto --device cuda` writes.
    let gen = samrt::amg::AutoGenerator::on_model(&sam);
    assert!(
        gen.description().starts_with("CUDA"),
        "{}",
        gen.description()
    );
    check_auto(&s, &data, (&gen, &img), (2, 4));
    assert!(s.terminate().success());
}

/// Decoder calls so far, from /metrics.
fn decoder_calls(s: &Server) -> u64 {
    let m = s.get("/metrics").text();
    m.lines()
        .find_map(|l| l.strip_prefix("samrt_decoder_batch_size_count "))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .expect("samrt_decoder_batch_size_count")
}
