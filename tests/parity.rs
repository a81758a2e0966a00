//! Parity with the official segment_anything on the fixture model, module by module and end
//! to end (tolerances from the foundation issue unless stated).

mod common;
use common::*;
use samrt::io::image::{load_image, resize_bilinear_pillow, resize_shape};

/// FNV-1a 64 of the resized image bytes, as tools/make_fixtures.py records it.
fn fnv1a64(b: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= x as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn config_is_inferred_from_shapes() {
    let c = &tiny_model().config.encoder;
    let want = &manifest()["model"]["config"];
    assert_eq!(c.embed_dim as u64, want["embed_dim"].as_u64().unwrap());
    assert_eq!(c.depth as u64, want["depth"].as_u64().unwrap());
    assert_eq!(c.num_heads as u64, want["num_heads"].as_u64().unwrap());
    assert_eq!(c.head_dim as u64, want["head_dim"].as_u64().unwrap());
    assert_eq!(c.window_size as u64, want["window_size"].as_u64().unwrap());
    assert_eq!(c.global_attn_indexes, vec![1, 3]);
}

#[test]
fn pillow_resize_is_bit_identical_on_fixture_images() {
    for im in manifest()["images"].as_array().unwrap() {
        let img = load_image(&fixtures().join(im["file"].as_str().unwrap())).unwrap();
        let (h, w) = resize_shape(img.height, img.width, 1024);
        let want = f64s(&im["input_size"]);
        assert_eq!([h as f64, w as f64], [want[0], want[1]], "{}", im["name"]);
        let r = resize_bilinear_pillow(&img, w, h);
        assert_eq!(
            fnv1a64(&r.data),
            im["resized"]["fnv1a64"].as_str().unwrap(),
            "{}",
            im["name"]
        );
    }
}

#[test]
fn image_embedding_matches_official() {
    let im = image("coffee");
    let img = load_image(&fixtures().join(im["file"].as_str().unwrap())).unwrap();
    let emb = tiny_model().embed(&img).unwrap();
    let (shape, want) = npy_f32(im["embedding"].as_str().unwrap());
    assert_eq!(shape, vec![256, 64, 64]);
    let (d, r) = (
        max_abs_diff(&emb.features, &want),
        rel_l2(&emb.features, &want),
    );
    eprintln!("embedding: max |diff| {d:.3e}, relative L2 {r:.3e}");
    // f32 with a different summation order than PyTorch through 4 blocks + neck: errors of
    // a few ulps per op, so relative 1e-5 is loose yet catches any real formula mistake.
    assert!(r < 1e-5, "relative L2 {r}");
    assert!(d < 1e-3, "max abs {d}");
    assert_eq!(emb.input_size, (683, 1024));
    assert_eq!(emb.original_size, (400, 600));
}

/// Every 7th row/column of a [256,64,64] map, as the fixtures store dense tensors.
fn strided(x: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for c in 0..256 {
        for y in (0..64).step_by(7) {
            for xx in (0..64).step_by(7) {
                out.push(x[c * 4096 + y * 64 + xx]);
            }
        }
    }
    out
}

#[test]
fn dense_positional_encoding_matches_official() {
    let (_, want) = npy_f32(manifest()["common"]["dense_pe_strided"].as_str().unwrap());
    let d = max_abs_diff(&strided(tiny_model().dense_pe()), &want);
    // sin/cos of arguments up to ~2π·|G|·2 in f32: a few ulps of the argument.
    assert!(d < 1e-5, "dense pe max |diff| {d}");
}

#[test]
fn prompt_encoder_matches_official() {
    let sam = tiny_model();
    let (_, no_mask) = npy_f32(manifest()["common"]["no_mask_embed"].as_str().unwrap());
    for p in prompts().iter().filter(|p| !p["intermediates"].is_null()) {
        let it = &p["intermediates"];
        let pts: Vec<[f32; 2]> = if it["coords_1024"].is_null() {
            vec![]
        } else {
            f64s(&it["coords_1024"])
                .chunks(2)
                .map(|c| [c[0] as f32, c[1] as f32])
                .collect()
        };
        let labels: Vec<i32> = if p["labels"].is_null() {
            vec![]
        } else {
            p["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_i64().unwrap() as i32)
                .collect()
        };
        let bx = if it["box_1024"].is_null() {
            None
        } else {
            let b = f64s(&it["box_1024"]);
            Some([b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
        };
        let mask = p["mask_input"].as_str().map(|f| npy_f32(f).1);
        let (sparse, n, dense) = sam
            .prompt_encoder()
            .encode(&pts, &labels, bx, mask.as_deref())
            .unwrap();
        let (shape, want) = npy_f32(it["sparse"].as_str().unwrap());
        assert_eq!(vec![n, 256], shape, "{}", p["name"]);
        let d = max_abs_diff(&sparse, &want);
        // Fourier features of coordinates up to 1024: f32 argument rounding, as above.
        assert!(d < 1e-5, "{}: sparse max |diff| {d}", p["name"]);
        match it["dense"].as_str() {
            Some(f) => {
                let d = max_abs_diff(&strided(&dense), &npy_f32(f).1);
                // Three convolutions and two LayerNorm2d in f32.
                assert!(d < 1e-4, "{}: dense max |diff| {d}", p["name"]);
            }
            None => {
                for c in 0..256 {
                    assert!(dense[c * 4096..(c + 1) * 4096]
                        .iter()
                        .all(|&v| v == no_mask[c]));
                }
            }
        }
    }
}

#[test]
fn mask_decoder_matches_official() {
    let sam = tiny_model();
    let (_, emb) = npy_f32(image("coffee")["embedding"].as_str().unwrap());
    let (_, no_mask) = npy_f32(manifest()["common"]["no_mask_embed"].as_str().unwrap());
    for p in prompts()
        .iter()
        .filter(|p| !p["intermediates"].is_null() && p["mask_input"].is_null())
    {
        let it = &p["intermediates"];
        let (shape, sparse) = npy_f32(it["sparse"].as_str().unwrap());
        let dense: Vec<f32> = no_mask.iter().flat_map(|&v| vec![v; 4096]).collect();
        let out = sam
            .mask_decoder()
            .predict_masks(&emb, sam.dense_pe(), &sparse, shape[0], &dense)
            .unwrap();
        assert_eq!(out.num_masks, 4);
        let want_iou: Vec<f32> = f64s(&it["decoder_iou"]).iter().map(|&v| v as f32).collect();
        let d = max_abs_diff(&out.iou, &want_iou);
        // Two transformer layers in f32 from identical inputs: errors stay near 1e-6.
        assert!(d < 1e-4, "{}: iou max |diff| {d}", p["name"]);
        if let Some(f) = it["decoder_masks"].as_str() {
            let d = max_abs_diff(&out.low_res, &npy_f32(f).1);
            assert!(d < 1e-4, "{}: logits max |diff| {d}", p["name"]);
        }
    }
}

/// End to end through the library, like `SamPredictor.set_image` + `predict`.
#[test]
fn predictor_matches_official_end_to_end() {
    let sam = tiny_model();
    for im in manifest()["images"].as_array().unwrap() {
        let img = load_image(&fixtures().join(im["file"].as_str().unwrap())).unwrap();
        let emb = sam.embed(&img).unwrap();
        for p in prompts().iter().filter(|p| p["image"] == im["name"]) {
            let pred = sam.predict(&emb, &prompt_of(p)).unwrap();
            check_prediction(p, &pred);
        }
    }
}

pub fn check_prediction(p: &serde_json::Value, pred: &samrt::Prediction) {
    let name = p["name"].as_str().unwrap();
    let scores = f64s(&p["scores"]);
    assert_eq!(pred.num_masks, scores.len(), "{name}");
    for (a, b) in pred.scores.iter().zip(&scores) {
        assert!((*a as f64 - b).abs() <= 2e-3, "{name}: score {a} vs {b}");
    }
    let (shape, want) = packed_masks(&p["masks"]);
    assert_eq!(
        shape,
        vec![pred.num_masks, pred.height, pred.width],
        "{name}"
    );
    let agree =
        pred.masks.iter().zip(&want).filter(|(a, b)| a == b).count() as f64 / want.len() as f64;
    assert!(agree >= 0.995, "{name}: mask agreement {agree}");
    let ds = pred
        .scores
        .iter()
        .zip(&scores)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "{name}: max |d score| {ds:.2e}, mask agreement {:.5}%",
        agree * 100.0
    );
    for d in low_res_diffs(p, &pred.low_res_logits, pred.num_masks) {
        assert!(d <= 1e-2, "{name}: low-res logits max |diff| {d}");
        eprintln!("{name}: low-res logits max |diff| {d:.2e}");
    }
}
