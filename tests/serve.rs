//! `samrt serve` over real HTTP on 127.0.0.1 with the tiny fixture model: the routes and
//! their JSON, one case per error status, a slow client, 16 concurrent clients, a small
//! cache under 200 images, shutdown with a request in flight, and batched == lone.

mod common;
use common::server::{check_auto, head, masks_json, read_response, Server};
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(image(name)["file"].as_str().unwrap())).unwrap()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// A PNG of pseudo-random pixels, different for each `seed`.
fn png(seed: u32, w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x * 31 + y * 17 + seed * 101).wrapping_mul(2_654_435_761) >> 8;
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn embed(s: &Server, data: &[u8]) -> Value {
    let r = s.request("POST", "/v1/embed", data);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn embed_id(s: &Server, name: &str) -> String {
    embed(s, &image_bytes(name))["image_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn metrics_contain(s: &Server, names: &[&str]) {
    let m = s.get("/metrics").text();
    for name in names {
        assert!(m.contains(name), "{name} missing from /metrics:\n{m}");
    }
}

fn assert_error(r: &common::server::Resp, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let msg = r.json()["error"]
        .as_str()
        .expect("{\"error\": ...}")
        .to_lowercase();
    assert!(
        msg.contains(&needle.to_lowercase()),
        "`{needle}` not in `{msg}`"
    );
}

/// The library's answer for one prompt, in the server's JSON (the reference every HTTP
/// answer is held to).
fn library_masks(emb: &samrt::ImageEmbedding, p: &samrt::Prompt) -> Value {
    let pred = tiny_model()
        .predict_independent(emb, std::slice::from_ref(p))
        .unwrap()
        .remove(0);
    masks_json(&pred)
}

#[test]
fn routes_answer_what_the_library_computes() {
    let s = Server::start(&[]);
    let h = s.get("/health").json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["device"], "cpu");
    assert!(h["model"]
        .as_str()
        .unwrap()
        .ends_with("sam_tiny.safetensors"));

    let data = image_bytes("coffee");
    let first = embed(&s, &data);
    let id = first["image_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    assert_eq!(first["cached"], false);
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(600), Some(400))
    );
    let t = std::time::Instant::now();
    let again = embed(&s, &data);
    assert_eq!(again["cached"], true);
    assert_eq!(again["image_id"], first["image_id"]);
    assert!(t.elapsed() < Duration::from_secs(2));

    // The embedding as .npy, equal to the library's.
    let img = samrt::io::image::decode_image(&data, "coffee").unwrap();
    let emb = tiny_model().embed(&img).unwrap();
    let r = s.get(&format!("/v1/embed/{id}"));
    assert_eq!(r.status, 200);
    let arr = samrt::io::npy::parse(&r.body).unwrap();
    let [c, e, _] = tiny_model().embedding_shape();
    assert_eq!(arr.shape, vec![1, c, e, e]);
    assert_eq!(arr.to_f32(), emb.features);

    // Segment by image_id: three masks per prompt in the library's order; one mask with
    // multimask false; labels default to 1.
    let prompts = json!([
        {"points": [[300, 200]]},
        {"points": [[100, 80], [500, 300]], "labels": [1, 0], "multimask": false},
        {"box": [50, 40, 400, 300]},
    ]);
    let r = s.post_json("/v1/segment", &json!({"image_id": id, "prompts": prompts}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["image_id"], id.as_str());
    let lib = [
        samrt::Prompt {
            points: vec![[300.0, 200.0]],
            labels: vec![1],
            multimask: true,
            ..Default::default()
        },
        samrt::Prompt {
            points: vec![[100.0, 80.0], [500.0, 300.0]],
            labels: vec![1, 0],
            multimask: false,
            ..Default::default()
        },
        samrt::Prompt {
            box_xyxy: Some([50.0, 40.0, 400.0, 300.0]),
            multimask: true,
            ..Default::default()
        },
    ];
    for (k, p) in lib.iter().enumerate() {
        assert_eq!(v["prompts"][k], library_masks(&emb, p), "prompt {k}");
    }
    assert_eq!(v["prompts"][0]["masks"].as_array().unwrap().len(), 3);
    assert_eq!(v["prompts"][1]["masks"].as_array().unwrap().len(), 1);
    // The RLE decodes to the library's mask.
    let m = &v["prompts"][0]["masks"][0]["rle"];
    let rle =
        samrt::amg::rle::Rle::from_coco_string(m["counts"].as_str().unwrap(), 400, 600).unwrap();
    let pred = tiny_model()
        .predict_independent(&emb, &lib[..1])
        .unwrap()
        .remove(0);
    assert_eq!(rle.to_mask().unwrap(), pred.mask(0));

    // logits: true gives [C, S, S] float32 .npy; a plane sent back as mask_input refines.
    let r = s.post_json(
        "/v1/segment",
        &json!({"image": b64(&data), "prompts": [{"points": [[300, 200]]}], "logits": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["image_id"], id.as_str());
    let npy = unb64(v["prompts"][0]["low_res_logits"].as_str().unwrap());
    let arr = samrt::io::npy::parse(&npy).unwrap();
    let side = tiny_model().low_res_side();
    assert_eq!(arr.shape, vec![3, side, side]);
    assert_eq!(arr.to_f32(), pred.low_res_logits);
    let plane = arr.to_f32()[..side * side].to_vec();
    let mask_npy = samrt::io::npy::f32_bytes(&[1, side, side], &plane).unwrap();
    let refine = json!({"image_id": id, "prompts": [
        {"points": [[300, 200]], "mask_input": b64(&mask_npy), "multimask": false},
        {"points": [[300, 200]], "mask_input": [plane.chunks(side).map(|r| r.to_vec()).collect::<Vec<_>>()], "multimask": false},
    ]});
    let r = s.post_json("/v1/segment", &refine);
    assert_eq!(r.status, 200, "{}", r.text());
    let want = samrt::Prompt {
        points: vec![[300.0, 200.0]],
        labels: vec![1],
        mask_input: Some(plane.clone()),
        multimask: false,
        ..Default::default()
    };
    let v = r.json();
    assert_eq!(v["prompts"][0], library_masks(&emb, &want));
    assert_eq!(v["prompts"][1], v["prompts"][0]);

    // /v1/auto: the records `samrt auto` writes, with COCO RLE.
    let gen = samrt::amg::AutoGenerator::Cpu(tiny_model());
    check_auto(&s, &data, (&gen, &img), (4, 8));

    // The page and the metrics.
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    metrics_contain(
        &s,
        &[
            "samrt_requests_total{route=\"/v1/segment\",status=\"200\"}",
            "samrt_request_duration_seconds_bucket{route=\"/v1/embed\"",
            "samrt_cache_hits_total",
            "samrt_cache_misses_total",
            "samrt_cache_bytes",
            "samrt_cache_evictions_total",
            "samrt_decoder_batch_size_bucket",
            "samrt_queue_depth",
        ],
    );
    assert!(s.terminate().success());
}

#[test]
fn each_error_has_its_status_and_the_server_goes_on() {
    let s = Server::start(&["--max-body-mb", "1", "--max-queue", "2"]);
    let id = embed_id(&s, "chelsea");
    let seg =
        |prompts: Value| s.post_json("/v1/segment", &json!({"image_id": id, "prompts": prompts}));
    // 400
    assert_error(
        &s.request("POST", "/v1/segment", b"{\"image_id\": "),
        400,
        "not valid JSON",
    );
    assert_error(
        &s.request(
            "POST",
            "/v1/segment",
            b"{\"image_id\": \"x\", \"prompts\": [{\"points\": [[NaN, 1]]}]}",
        ),
        400,
        "not valid JSON",
    );
    assert_error(
        &seg(json!([{"points": [[10, 10]], "labels": [2]}])),
        400,
        "label 2",
    );
    assert_error(
        &seg(json!([{"points": [[10, 10]], "labels": [0.5]}])),
        400,
        "must be 0 or 1",
    );
    assert_error(
        &seg(json!([{"points": [[10, 10]], "mask_input": [[1.0, 2.0], [3.0, 4.0]]}])),
        400,
        "mask input is 2x2",
    );
    assert_error(
        &seg(json!([{"mask_input": "masks/previous.npy"}])),
        400,
        "reads no files",
    );
    let wrong = samrt::io::npy::f32_bytes(&[3, 4, 4], &[0.0; 48]).unwrap();
    assert_error(
        &seg(json!([{"mask_input": b64(&wrong)}])),
        400,
        "has shape [3, 4, 4]",
    );
    assert_error(&seg(json!([{"pointz": [[1, 2]]}])), 400, "unknown key");
    assert_error(&seg(json!([])), 400, "empty");
    assert_error(
        &s.request(
            "POST",
            "/v1/auto?points_per_side=abc",
            &image_bytes("chelsea"),
        ),
        400,
        "whole number",
    );
    assert_error(
        &s.request("POST", "/v1/auto?nope=1", &image_bytes("chelsea")),
        400,
        "unknown option",
    );
    // 404
    assert_error(
        &s.post_json(
            "/v1/segment",
            &json!({"image_id": "0".repeat(64), "prompts": [{"points": [[1, 1]]}]}),
        ),
        404,
        "unknown image_id",
    );
    assert_error(
        &s.get(&format!("/v1/embed/{}", "f".repeat(64))),
        404,
        "unknown image_id",
    );
    assert_error(&s.get("/v2/nothing"), 404, "no such route");
    // 405
    let r = s.get("/v1/segment");
    assert_error(&r, 405, "use POST");
    assert_eq!(r.header("allow"), Some("POST"));
    assert_error(&s.request("POST", "/health", b""), 405, "use GET");
    // 413: the whole oversized body is sent and the answer still arrives.
    let big = vec![7u8; 3 << 20];
    assert_error(&s.request("POST", "/v1/embed", &big), 413, "over the limit");
    // 415
    assert_error(
        &s.request("POST", "/v1/embed", b"this is not an image"),
        415,
        "invalid image",
    );
    assert_error(&s.request("POST", "/v1/embed", b""), 415, "empty");
    // 503 with Retry-After: two uploads that have sent half their body hold the queue.
    let hold: Vec<_> = (0..2)
        .map(|_| {
            let mut c = s.connect();
            c.write_all(&head("POST", "/v1/embed", 1000)).unwrap();
            c.write_all(&[0u8; 10]).unwrap();
            c
        })
        .collect();
    // Wait until the server has admitted both (its queue-depth gauge says 2), so that the
    // next request is refused whatever the scheduling on a loaded machine.
    let t = std::time::Instant::now();
    loop {
        let m = s.get("/metrics").text();
        if m.lines().any(|l| l == "samrt_queue_depth 2") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the two held uploads were not admitted in 20 s:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = s.request("POST", "/v1/embed", &image_bytes("chelsea"));
    assert_error(&busy, 503, "--max-queue");
    assert_eq!(busy.header("retry-after"), Some("1"));
    drop(hold);
    // 500: a panicking handler (test hook), then the server still answers.
    assert_error(&s.get("/__test/panic"), 500, "panicked");
    let t = std::time::Instant::now();
    loop {
        let r = s.request("POST", "/v1/embed", &image_bytes("chelsea"));
        if r.status == 200 {
            assert_eq!(r.json()["cached"], true);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{}", r.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.get("/health").status, 200);
    metrics_contain(
        &s,
        &[
            "status=\"400\"",
            "status=\"404\"",
            "status=\"405\"",
            "status=\"413\"",
            "status=\"415\"",
            "status=\"500\"",
            "status=\"503\"",
        ],
    );
    assert!(s.terminate().success());
}

#[test]
fn a_slow_client_sending_a_byte_at_a_time_is_answered() {
    let s = Server::start(&[]);
    let id = embed_id(&s, "coffee");
    let body = json!({"image_id": id, "prompts": [{"points": [[300, 200]]}]}).to_string();
    let mut c = s.connect();
    c.set_nodelay(true).unwrap();
    c.write_all(&head("POST", "/v1/segment", body.len()))
        .unwrap();
    for b in body.as_bytes() {
        c.write_all(&[*b]).unwrap();
        c.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = read_response(&mut c);
    assert_eq!(r.status, 200, "{}", r.text());
    let fast = s.request("POST", "/v1/segment", body.as_bytes());
    assert_eq!(r.body, fast.body);
}

/// SIGTERM with a request in flight: that request is answered, then the process exits 0.
#[test]
fn sigterm_finishes_the_request_in_flight_and_exits_0() {
    let s = Server::start(&[]);
    let id = embed_id(&s, "coffee");
    let body = json!({"image_id": id, "prompts": [{"points": [[300, 200]]}]}).to_string();
    let mut c = s.connect();
    c.write_all(&head("POST", "/v1/segment", body.len()))
        .unwrap();
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    c.write_all(a).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    common::server::signal(s.pid(), "TERM");
    std::thread::sleep(Duration::from_millis(300));
    c.write_all(b).unwrap();
    let r = read_response(&mut c);
    assert_eq!(r.status, 200, "{}", r.text());
    let log = s.stderr.clone();
    let status = s.terminate();
    assert!(status.success(), "{status:?}: {}", log.lock().unwrap());
}

/// 16 clients, 1,000 requests in all, on one embedding: every answer is the lone answer
/// for its prompt, bit for bit, though the server decoded them in batches.
#[test]
fn sixteen_clients_a_thousand_requests_batched_equals_lone() {
    let s = Server::start(&["--batch-wait-ms", "5", "--max-batch", "16"]);
    let id = embed_id(&s, "coffee");
    let body = |k: usize| {
        let mut p = json!({"points": [[40 + 37 * (k % 14), 30 + 29 * (k % 12)]]});
        if k.is_multiple_of(3) {
            p["multimask"] = json!(false);
        }
        json!({"image_id": id, "prompts": [p]}).to_string()
    };
    const DISTINCT: usize = 24;
    // Lone answers, one request at a time.
    let lone: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|k| {
            let r = s.request("POST", "/v1/segment", body(k).as_bytes());
            assert_eq!(r.status, 200, "{}", r.text());
            r.body
        })
        .collect();
    let before = batches(&s);
    let total = 1000;
    std::thread::scope(|sc| {
        for c in 0..16 {
            let (s, lone, body) = (&s, &lone, &body);
            sc.spawn(move || {
                for n in (c..total).step_by(16) {
                    let k = n % DISTINCT;
                    let r = s.request("POST", "/v1/segment", body(k).as_bytes());
                    assert_eq!(r.status, 200, "request {n}: {}", r.text());
                    assert!(
                        r.body == lone[k],
                        "request {n} (prompt {k}) differs from its lone answer"
                    );
                }
            });
        }
    });
    let (calls, prompts) = batches(&s);
    let (calls, prompts) = (calls - before.0, prompts - before.1);
    assert_eq!(prompts, total as u64);
    assert!(
        calls < total as u64,
        "{calls} decoder calls for {total} requests: nothing batched"
    );
    eprintln!("{total} requests in {calls} decoder calls");
}

/// (decoder calls, prompts decoded) from /metrics.
fn batches(s: &Server) -> (u64, u64) {
    let m = s.get("/metrics").text();
    let get = |name: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().parse::<f64>().unwrap() as u64)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    (
        get("samrt_decoder_batch_size_count "),
        get("samrt_decoder_batch_size_sum "),
    )
}

/// 200 distinct images through a 12 MiB cache (three of the tiny model's 4 MiB
/// embeddings): evictions happen, evicted ids answer 404, the
/// newest is still there, and the resident set stays within the model, the cache and a
/// stated margin (64 MiB: the allocator's retained pages, thread stacks, the runtime).
#[test]
fn two_hundred_images_through_a_small_cache_keep_memory_bounded() {
    const MARGIN_KIB: u64 = 64 << 10;
    let s = Server::start(&["--cache-mb", "12"]);
    let first = embed(&s, &png(0, 96, 64));
    let baseline = s.rss_kib();
    let mut peak = baseline;
    let mut last = first.clone();
    for k in 1..200 {
        last = embed(&s, &png(k, 96, 64));
        assert_eq!(last["cached"], false);
        if k.is_multiple_of(20) {
            peak = peak.max(s.rss_kib());
        }
    }
    peak = peak.max(s.rss_kib());
    let m = s.get("/metrics").text();
    let evictions: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("samrt_cache_evictions_total "))
        .unwrap()
        .parse()
        .unwrap();
    let bytes: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("samrt_cache_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        evictions >= 190 && bytes <= 12 << 20,
        "evictions {evictions}, bytes {bytes}"
    );
    let old = first["image_id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/embed/{old}")).status, 404);
    let new = last["image_id"].as_str().unwrap();
    assert_eq!(s.get(&format!("/v1/embed/{new}")).status, 200);
    let cache_kib = 12 << 10;
    eprintln!("RSS: {baseline} KiB after the first image, peak {peak} KiB over 200");
    assert!(
        peak <= baseline + cache_kib + MARGIN_KIB,
        "RSS grew from {baseline} to {peak} KiB"
    );
}

/// The library side of batching: a prompt's result from `predict_independent` is the same
/// bits alone and in any company (the server's batched answers rely on it).
#[test]
fn predict_independent_does_not_depend_on_the_batch() {
    let sam = tiny_model();
    let img = samrt::io::image::decode_image(&image_bytes("coffee"), "coffee").unwrap();
    let emb = sam.embed(&img).unwrap();
    let side = sam.low_res_side();
    let mut ps: Vec<samrt::Prompt> = (0..6)
        .map(|k: usize| samrt::Prompt {
            points: vec![[50.0 + 80.0 * k as f64, 40.0 + 50.0 * k as f64]],
            labels: vec![1],
            multimask: k.is_multiple_of(2),
            ..Default::default()
        })
        .collect();
    ps[5].mask_input = Some((0..side * side).map(|i| (i % 7) as f32 - 3.0).collect());
    ps[4].box_xyxy = Some([10.0, 10.0, 300.0, 200.0]);
    let all = sam.predict_independent(&emb, &ps).unwrap();
    for (k, p) in ps.iter().enumerate() {
        let alone = sam
            .predict_independent(&emb, std::slice::from_ref(p))
            .unwrap()
            .remove(0);
        assert_eq!(alone.scores, all[k].scores, "prompt {k}");
        assert_eq!(alone.low_res_logits, all[k].low_res_logits, "prompt {k}");
        assert_eq!(alone.masks, all[k].masks, "prompt {k}");
    }
    // With a mask input the decode is `predict`'s own.
    let p = sam.predict(&emb, &ps[5]).unwrap();
    assert_eq!(p.low_res_logits, all[5].low_res_logits);
}

/// Eight concurrent posts of one new image: one encode, one answer with `"cached": false`.
#[test]
fn concurrent_posts_of_one_image_encode_it_once() {
    let s = Server::start(&[]);
    let data = png(7, 80, 60);
    let answers: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8).map(|_| sc.spawn(|| embed(&s, &data))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let fresh = answers.iter().filter(|a| a["cached"] == false).count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| a["image_id"] == answers[0]["image_id"]));
    metrics_contain(&s, &["samrt_encodes_total 1\n"]);
}

/// The count in `samrt_decoder_batch_size`'s bucket `le` (cumulative).
fn batch_bucket(s: &Server, le: &str) -> u64 {
    let m = s.get("/metrics").text();
    let key = format!("samrt_decoder_batch_size_bucket{{le=\"{le}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
        .unwrap_or_else(|| panic!("{key} missing:\n{m}"))
}

/// What careful clients send beyond the basics: more prompts than `--max-batch` in one
/// request (decoded in calls of at most that many, each answer the lone one); HEAD where
/// GET is; base64 wrapped in lines or as a `data:` URL, beside `"image_id": null`;
/// percent-encoded `/v1/auto` options; a 413 before the body when the client waits for
/// `100 Continue`; and a prompt that only fails in the image's frame (a coordinate that
/// overflows f32 there) sent beside good ones: it alone gets the 400.
#[test]
fn careful_clients_edges_are_answered() {
    let s = Server::start(&[
        "--max-batch",
        "4",
        "--max-body-mb",
        "1",
        "--batch-wait-ms",
        "50",
    ]);
    let data = image_bytes("chelsea");
    let id = embed(&s, &data)["image_id"].as_str().unwrap().to_string();
    let seg = |v: Value| s.post_json("/v1/segment", &v);
    let point = |k: usize| json!({"points": [[10 + 23 * k, 15 + 11 * k]]});

    // 10 prompts with --max-batch 4: three decoder calls, none above 4 prompts.
    let (calls0, n0) = batches(&s);
    let over4 = batch_bucket(&s, "+Inf") - batch_bucket(&s, "4");
    let prompts: Vec<Value> = (0..10).map(point).collect();
    let r = seg(json!({"image_id": id, "prompts": prompts}));
    assert_eq!(r.status, 200, "{}", r.text());
    let all = r.json();
    assert_eq!(all["prompts"].as_array().unwrap().len(), 10);
    let (calls, n) = batches(&s);
    assert_eq!(n - n0, 10);
    assert!(
        calls - calls0 >= 3,
        "{} calls for 10 prompts",
        calls - calls0
    );
    assert_eq!(
        batch_bucket(&s, "+Inf") - batch_bucket(&s, "4"),
        over4,
        "a decoder call above --max-batch 4"
    );
    for k in [0, 5, 9] {
        let r = seg(json!({"image_id": id, "prompts": [point(k)]}));
        assert_eq!(r.json()["prompts"][0], all["prompts"][k], "prompt {k}");
    }

    // HEAD answers as GET, without a body.
    for path in ["/health", "/"] {
        let mut c = s.connect();
        c.write_all(&head("HEAD", path, 0)).unwrap();
        let r = read_response(&mut c);
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path} sent a body");
    }

    // Base64 as `base64` (76-column lines) and as a data: URL; a null image_id is absent.
    let want = seg(json!({"image_id": id, "prompts": [point(3)]})).json();
    let text = b64(&data);
    let wrapped = text
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for image in [wrapped, format!("data:image/png;base64,{text}")] {
        let r = seg(json!({"image": image, "image_id": null, "prompts": [point(3)]}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), want);
    }

    // Percent-encoded option names and values mean what they spell.
    let plain = s.request(
        "POST",
        "/v1/auto?points_per_side=4&pred_iou_thresh=0.5",
        &data,
    );
    assert_eq!(plain.status, 200, "{}", plain.text());
    let encoded = s.request(
        "POST",
        "/v1/auto?points%5Fper%5Fside=%34&pred_iou_thresh=0%2E5",
        &data,
    );
    assert_eq!(encoded.status, 200, "{}", encoded.text());
    assert_eq!(encoded.json(), plain.json());
    for q in ["points_per_side=%zz", "points_per_side=%+4"] {
        assert_error(
            &s.request("POST", &format!("/v1/auto?{q}"), &data),
            400,
            "%-escape",
        );
    }

    // Expect: 100-continue over the limit: the 413 comes before any body byte is sent.
    let mut c = s.connect();
    c.write_all(
        b"POST /v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut c);
    assert_error(&r, 413, "over the limit");

    // A coordinate that is finite as given but not in the image's input frame, sent with
    // good prompts at once: it is refused alone, and every good one gets its lone answer.
    let good = seg(json!({"image_id": id, "prompts": [point(2)]})).body;
    for _ in 0..3 {
        std::thread::scope(|sc| {
            let bad =
                sc.spawn(|| seg(json!({"image_id": id, "prompts": [{"points": [[1e300, 1]]}]})));
            let goods: Vec<_> = (0..4)
                .map(|_| sc.spawn(|| seg(json!({"image_id": id, "prompts": [point(2)]}))))
                .collect();
            assert_error(&bad.join().unwrap(), 400, "not finite");
            for g in goods {
                let r = g.join().unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                assert!(
                    r.body == good,
                    "a good request's answer changed beside a bad one"
                );
            }
        });
    }
    let status = s.terminate();
    assert!(status.success(), "{status:?}");
}

/// `--listen` takes a host name: `localhost:0` binds and the ready line names the port.
#[test]
fn listen_takes_a_host_name() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(["serve", "--model", tiny_safetensors().to_str().unwrap()])
        .args(["--device", "cpu", "--listen", "localhost:0"])
        .env("SAMRT_CACHE_DIR", scratch("serve-cache"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut ready = None;
    let mut log = String::new();
    for line in lines.by_ref().map_while(Result::ok) {
        log += &line;
        if let Some(a) = line.strip_prefix("samrt: listening on http://") {
            ready = Some(a.to_string());
            break;
        }
    }
    // The name's address answers.
    let addr: std::net::SocketAddr = ready
        .as_deref()
        .unwrap_or_else(|| panic!("no ready line: {log}"))
        .parse()
        .unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(&head("GET", "/health", 0)).unwrap();
    assert_eq!(read_response(&mut c).status, 200);
    common::server::signal(child.id(), "TERM");
    // Read to the end: the server reports its shutdown on stderr.
    lines.map_while(Result::ok).for_each(|l| log += &l);
    let status = child.wait().unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert!(status.success(), "{status:?}");
}
