//! One model, many threads: `Sam` is Send + Sync and gives the same answers under load.

mod common;
use common::*;
use samrt::io::image::load_image;
use std::sync::Arc;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn model_is_send_and_sync() {
    assert_send_sync::<samrt::Sam>();
    assert_send_sync::<samrt::ImageEmbedding>();
}

#[test]
fn eight_threads_share_one_model() {
    let sam = tiny_model();
    let names = ["astronaut", "coffee", "chelsea", "camera"];
    let imgs: Vec<_> = names
        .iter()
        .map(|n| {
            Arc::new(load_image(&fixtures().join(image(n)["file"].as_str().unwrap())).unwrap())
        })
        .collect();
    let prompt_for = |n: &str| prompt_of(prompts().iter().find(|p| p["image"] == n).unwrap());
    // Reference answers, one thread at a time.
    let want: Vec<_> = names
        .iter()
        .zip(&imgs)
        .map(|(n, img)| {
            let emb = sam.embed(img).unwrap();
            let p = sam.predict(&emb, &prompt_for(n)).unwrap();
            (emb.features, p.scores, p.masks)
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (n, img) = (names[t % 4], imgs[t % 4].clone());
                let prompt = prompt_for(n);
                s.spawn(move || {
                    let emb = sam.embed(&img).unwrap();
                    let p = sam.predict(&emb, &prompt).unwrap();
                    (t % 4, emb.features, p.scores, p.masks)
                })
            })
            .collect();
        for h in handles {
            let (i, f, sc, m) = h.join().unwrap();
            // The same arithmetic in the same order whatever the thread count: bit-identical.
            assert_eq!(f, want[i].0, "embedding of {}", names[i]);
            assert_eq!(sc, want[i].1);
            assert_eq!(m, want[i].2);
        }
    });
}

#[test]
fn batched_predict_equals_single_calls() {
    let sam = tiny_model();
    let im = image("coffee");
    let img = load_image(&fixtures().join(im["file"].as_str().unwrap())).unwrap();
    let emb = sam.embed(&img).unwrap();
    let ps: Vec<samrt::Prompt> = prompts()
        .iter()
        .filter(|p| p["image"] == "coffee")
        .map(prompt_of)
        .collect();
    assert!(ps.len() >= 5);
    let batch = sam.predict_batch(&emb, &ps).unwrap();
    for (p, b) in ps.iter().zip(&batch) {
        let s = sam.predict(&emb, p).unwrap();
        assert_eq!(s.num_masks, b.num_masks);
        for (x, y) in s.scores.iter().zip(&b.scores) {
            // Shared image-side work may be summed in another order: f32 rounding only.
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!(max_abs_diff(&s.low_res_logits, &b.low_res_logits) < 1e-4);
    }
}

#[test]
fn invalid_prompts_are_rejected() {
    let sam = tiny_model();
    let img = samrt::io::image::from_rgb(
        40,
        30,
        (0..40 * 30 * 3).map(|i| (i * 37 % 251) as u8).collect(),
    )
    .unwrap();
    let emb = sam.embed(&img).unwrap();
    let bad = [
        samrt::Prompt {
            points: vec![[f64::NAN, 3.0]],
            labels: vec![1],
            ..Default::default()
        },
        samrt::Prompt {
            points: vec![[1.0, f64::INFINITY]],
            labels: vec![1],
            ..Default::default()
        },
        samrt::Prompt {
            points: vec![[1.0, 2.0]],
            labels: vec![2],
            ..Default::default()
        },
        samrt::Prompt {
            points: vec![[1.0, 2.0]],
            labels: vec![],
            ..Default::default()
        },
        samrt::Prompt {
            box_xyxy: Some([0.0, 0.0, f64::NAN, 4.0]),
            ..Default::default()
        },
        samrt::Prompt {
            mask_input: Some(vec![0.5; 100]),
            ..Default::default()
        },
    ];
    for p in &bad {
        match sam.predict(&emb, p) {
            Err(samrt::Error::Prompt(m)) => eprintln!("rejected: {m}"),
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("accepted {p:?}"),
        }
    }
}
