//! Prompt encoder + mask decoder tests. The official-parity test needs data written by
//! `tools/check_decoder.py` and runs only when SAMRT_DECODER_PARITY_DIR points at it.

use samrt::cpu::model::mask_decoder::{random_decoder_weights, DecoderOutput, MaskDecoder};
use samrt::cpu::model::prompt_encoder::PromptEncoder;
use samrt::io::config::SamConfig;
use samrt::io::weights::{MapWeights, WeightSource};
use std::path::{Path, PathBuf};

fn cfg() -> SamConfig {
    SamConfig::by_name("vit_b").unwrap()
}

/// Deterministic non-constant test data (a few incommensurate sines).
fn wave(n: usize, seed: f32, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = i as f32;
            amp * ((x * 0.013 + seed).sin() + 0.5 * (x * 0.0071 * seed + 1.0).cos())
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

struct Model {
    pe: PromptEncoder,
    md: MaskDecoder,
}

fn random_model(seed: u64) -> Model {
    let w = random_decoder_weights(&cfg(), seed);
    Model {
        pe: PromptEncoder::load(&w, &cfg()).unwrap(),
        md: MaskDecoder::load(&w, &cfg()).unwrap(),
    }
}

#[test]
fn random_weights_are_complete_nonzero_and_f16_exact() {
    let a = random_decoder_weights(&cfg(), 7);
    let b = random_decoder_weights(&cfg(), 7);
    // The official prompt_encoder (17) + mask_decoder (120) state_dict entries.
    assert_eq!(a.names().len(), 137);
    for name in a.names() {
        assert!(name.starts_with("prompt_encoder.") || name.starts_with("mask_decoder."));
        let (shape, va) = &a.tensors[&name];
        assert_eq!(va, &b.tensors[&name].1, "{name} not deterministic");
        for &v in va {
            assert!(v != 0.0, "{name} has a zero");
            assert_eq!(half::f16::from_f32(v).to_f32(), v, "{name} not f16-exact");
        }
        assert_eq!(shape.iter().product::<usize>(), va.len());
    }
    assert_ne!(
        a.tensors["mask_decoder.mask_tokens.weight"].1,
        random_decoder_weights(&cfg(), 8).tensors["mask_decoder.mask_tokens.weight"].1
    );
}

#[test]
fn load_rejects_wrong_shape_and_missing_tensor() {
    let mut w = random_decoder_weights(&cfg(), 1);
    w.tensors.remove("mask_decoder.iou_token.weight");
    assert!(matches!(
        MaskDecoder::load(&w, &cfg()),
        Err(samrt::Error::MissingTensor(_))
    ));
    let mut w = random_decoder_weights(&cfg(), 1);
    w.insert(
        "prompt_encoder.no_mask_embed.weight",
        vec![1, 255],
        vec![0.5; 255],
    );
    assert!(matches!(
        PromptEncoder::load(&w, &cfg()),
        Err(samrt::Error::Shape { .. })
    ));
}

/// PE of known points through the whole `encode` path, against values computed by hand
/// from a chosen Gaussian matrix and point embeddings.
#[test]
fn fourier_pe_of_known_points() {
    let mut w = random_decoder_weights(&cfg(), 3);
    // Feature k: G[0,k] = (k+1)/64, G[1,k] = -(k%5)/4.
    let g: Vec<f32> = (0..128)
        .map(|k| (k + 1) as f32 / 64.0)
        .chain((0..128).map(|k| -((k % 5) as f32) / 4.0))
        .collect();
    w.insert(
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
        vec![2, 128],
        g.clone(),
    );
    let emb: Vec<f32> = (0..256).map(|i| 0.001 * i as f32).collect();
    w.insert(
        "prompt_encoder.point_embeddings.1.weight",
        vec![1, 256],
        emb.clone(),
    );
    let pe = PromptEncoder::load(&w, &cfg()).unwrap();
    // (255.5, 767.5) + 0.5 = (256, 768) -> u = 0.25, v = 0.75 -> a = -0.5, b = 0.5.
    let (sparse, n, _) = pe.encode(&[[255.5, 767.5]], &[1], None, None).unwrap();
    assert_eq!(n, 2, "point plus pad");
    let not_a_point = &w.tensors["prompt_encoder.not_a_point_embed.weight"].1;
    assert_eq!(
        &sparse[256..],
        &not_a_point[..],
        "pad row is not_a_point_embed"
    );
    for k in 0..128 {
        let t = 2.0 * std::f64::consts::PI * (-0.5 * g[k] as f64 + 0.5 * g[128 + k] as f64);
        // f32 rounding of 2*pi*t for |t| <= 1.5 moves sin/cos by < 2e-6.
        assert!(
            (sparse[k] as f64 - (t.sin() + emb[k] as f64)).abs() < 2e-6,
            "sin {k}"
        );
        assert!(
            (sparse[128 + k] as f64 - (t.cos() + emb[128 + k] as f64)).abs() < 2e-6,
            "cos {k}"
        );
    }
    // Dense PE cell (row 0, col 63): u = 63.5/64, v = 0.5/64.
    let dpe = pe.dense_pe();
    assert_eq!(dpe.len(), 256 * 64 * 64);
    let (a, b) = (2.0 * 63.5 / 64.0 - 1.0, 2.0 * 0.5 / 64.0 - 1.0);
    for k in [0usize, 17, 127] {
        let t = 2.0 * std::f64::consts::PI * (a * g[k] as f64 + b * g[128 + k] as f64);
        // Same f32 argument rounding as above, |t| <= 2.5.
        assert!((dpe[k * 4096 + 63] as f64 - t.sin()).abs() < 3e-6);
        assert!((dpe[(128 + k) * 4096 + 63] as f64 - t.cos()).abs() < 3e-6);
    }
    // Box corners: no pad, embeddings 2 and 3.
    let (sparse, n, dense) = pe
        .encode(&[], &[], Some([10.0, 20.0, 30.0, 40.0]), None)
        .unwrap();
    assert_eq!((n, sparse.len()), (2, 512));
    assert_eq!(dense, pe.no_mask_dense());
}

#[test]
fn encode_rejects_bad_prompts() {
    let m = random_model(2);
    assert!(m.pe.encode(&[[1.0, 2.0]], &[], None, None).is_err());
    assert!(m.pe.encode(&[[1.0, 2.0]], &[2], None, None).is_err());
    assert!(m.pe.encode(&[[f32::NAN, 2.0]], &[1], None, None).is_err());
    assert!(m
        .pe
        .encode(&[], &[], Some([0.0, 0.0, f32::INFINITY, 1.0]), None)
        .is_err());
    assert!(m
        .pe
        .encode(&[[1.0, 2.0]], &[1], None, Some(&[0.5; 100]))
        .is_err());
    let (sparse, n, _) = m.pe.encode(&[], &[], None, None).unwrap();
    assert_eq!(
        (sparse.len(), n),
        (0, 0),
        "no prompt means no sparse tokens"
    );
}

#[test]
fn shapes_finiteness_and_multimask_slicing() {
    let m = random_model(11);
    let image = wave(256 * 4096, 0.3, 0.5);
    let pe = m.pe.dense_pe();
    let mask = wave(256 * 256, 1.7, 4.0);
    let (sparse, n, dense) =
        m.pe.encode(&[[300.0, 410.0], [700.0, 90.0]], &[1, 0], None, Some(&mask))
            .unwrap();
    assert_eq!(n, 3);
    let all = m.md.predict_masks(&image, &pe, &sparse, n, &dense).unwrap();
    assert_eq!(
        (all.num_masks, all.low_res.len(), all.iou.len()),
        (4, 4 * 65536, 4)
    );
    assert!(all.low_res.iter().chain(&all.iou).all(|v| v.is_finite()));
    // Masks differ from each other and are not flat.
    assert!(max_abs_diff(&all.low_res[..65536], &all.low_res[65536..131072]) > 1e-3);
    assert!(all.low_res[..65536]
        .iter()
        .any(|&v| (v - all.low_res[0]).abs() > 1e-3));
    let multi = m.md.forward(&image, &pe, &sparse, n, &dense, true).unwrap();
    assert_eq!(multi.num_masks, 3);
    assert_eq!(multi.low_res, all.low_res[65536..]);
    assert_eq!(multi.iou, all.iou[1..]);
    let single =
        m.md.forward(&image, &pe, &sparse, n, &dense, false)
            .unwrap();
    assert_eq!(single.num_masks, 1);
    assert_eq!(single.low_res, all.low_res[..65536]);
    assert_eq!(single.iou, all.iou[..1]);
    // Bad sizes are errors, not panics.
    assert!(m
        .md
        .predict_masks(&image[1..], &pe, &sparse, n, &dense)
        .is_err());
    assert!(m
        .md
        .predict_masks(&image, &pe, &sparse, n + 1, &dense)
        .is_err());
    assert!(m
        .md
        .predict_masks(&image, &pe, &sparse, n, &dense[1..])
        .is_err());
}

#[test]
fn forward_batch_equals_single_calls() {
    let m = random_model(5);
    let image = wave(256 * 4096, 0.9, 0.7);
    let pe = m.pe.dense_pe();
    let mask_a = wave(65536, 2.3, 3.0);
    let mask_b = wave(65536, 0.4, 5.0);
    let prompts: Vec<(Vec<f32>, usize, Vec<f32>)> = vec![
        m.pe.encode(&[[100.0, 200.0]], &[1], None, None).unwrap(),
        m.pe.encode(&[[10.0, 900.0], [512.0, 512.0]], &[0, 1], None, None)
            .unwrap(),
        m.pe.encode(&[], &[], Some([50.0, 60.0, 700.0, 800.0]), None)
            .unwrap(),
        m.pe.encode(&[[400.0, 300.0]], &[1], None, Some(&mask_a))
            .unwrap(),
        m.pe.encode(&[[401.0, 300.0]], &[1], None, Some(&mask_a))
            .unwrap(),
        m.pe.encode(
            &[[33.0, 44.0]],
            &[1],
            Some([1.0, 2.0, 300.0, 400.0]),
            Some(&mask_b),
        )
        .unwrap(),
        m.pe.encode(&[], &[], None, None).unwrap(),
    ];
    for multimask in [true, false] {
        let batch =
            m.md.forward_batch(&image, &pe, &prompts, multimask)
                .unwrap();
        assert_eq!(batch.len(), prompts.len());
        for (i, (s, n, d)) in prompts.iter().enumerate() {
            let one: DecoderOutput = m.md.forward(&image, &pe, s, *n, d, multimask).unwrap();
            // Same arithmetic in the same order, so bit-identical results are expected.
            assert_eq!(batch[i], one, "prompt {i} multimask {multimask}");
        }
    }
    assert!(m
        .md
        .forward_batch(&image, &pe, &[], true)
        .unwrap()
        .is_empty());
    let bad = vec![(vec![0.5f32; 100], 1usize, pe.clone())];
    assert!(m.md.forward_batch(&image, &pe, &bad, true).is_err());
}

// ---------------------------------------------------------------------------------------
// Official parity (data from tools/check_decoder.py).

fn read_f32(dir: &Path, entry: &serde_json::Value) -> (Vec<usize>, Vec<f32>) {
    let file = dir.join(entry["file"].as_str().expect("file"));
    let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let data: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let shape: Vec<usize> = entry["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "{}",
        file.display()
    );
    (shape, data)
}

#[test]
fn official_parity() {
    let Some(dir) = std::env::var_os("SAMRT_DECODER_PARITY_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipping official_parity: set SAMRT_DECODER_PARITY_DIR to a directory written by \
             `python3 tools/check_decoder.py DIR`"
        );
        return;
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index.json"))
            .unwrap();
    let mut w = MapWeights::default();
    for (name, e) in index["weights"].as_object().expect("weights") {
        let (shape, data) = read_f32(&dir, e);
        w.insert(name.clone(), shape, data);
    }
    // random_decoder_weights must produce exactly the official names and shapes.
    let ours = random_decoder_weights(&cfg(), 0);
    assert_eq!(
        ours.names(),
        w.names(),
        "tensor names differ from the official modules"
    );
    for name in w.names() {
        assert_eq!(ours.shape(&name), w.shape(&name), "{name}");
    }
    let pe = PromptEncoder::load(&w, &cfg()).unwrap();
    let md = MaskDecoder::load(&w, &cfg()).unwrap();
    let (_, image) = read_f32(&dir, &index["image_embedding"]);
    let (_, dense_pe) = read_f32(&dir, &index["dense_pe"]);
    let d_pe = max_abs_diff(&pe.dense_pe(), &dense_pe);
    println!("dense_pe max abs diff {d_pe:.3e}");
    let mut worst_logit = 0.0f32;
    let mut worst_iou = 0.0f32;
    let mut worst_embed = d_pe;
    let mut prompts = Vec::new();
    let mut want_all = Vec::new();
    for case in index["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap();
        let points: Vec<[f32; 2]> = case["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
            .collect();
        let labels: Vec<i32> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_i64().unwrap() as i32)
            .collect();
        let bx = case["box"].as_array().map(|b| {
            let v: Vec<f32> = b.iter().map(|x| x.as_f64().unwrap() as f32).collect();
            [v[0], v[1], v[2], v[3]]
        });
        let mask = (!case["mask"].is_null()).then(|| read_f32(&dir, &case["mask"]).1);
        let (_, want_sparse) = read_f32(&dir, &case["sparse"]);
        let (_, want_dense) = read_f32(&dir, &case["dense"]);
        let (_, want_low) = read_f32(&dir, &case["low_res"]);
        let (_, want_iou) = read_f32(&dir, &case["iou"]);

        let (sparse, n, dense) = pe.encode(&points, &labels, bx, mask.as_deref()).unwrap();
        assert_eq!(
            n,
            case["n_sparse"].as_u64().unwrap() as usize,
            "{name} n_sparse"
        );
        let d_sparse = max_abs_diff(&sparse, &want_sparse);
        let d_dense = max_abs_diff(&dense, &want_dense);
        // Decoder alone, fed the official embeddings.
        let off = md
            .predict_masks(&image, &dense_pe, &want_sparse, n, &want_dense)
            .unwrap();
        // End to end from our own prompt encoding.
        let ours = md
            .predict_masks(&image, &pe.dense_pe(), &sparse, n, &dense)
            .unwrap();
        let d_low_off = max_abs_diff(&off.low_res, &want_low);
        let d_iou_off = max_abs_diff(&off.iou, &want_iou);
        let d_low = max_abs_diff(&ours.low_res, &want_low);
        let d_iou = max_abs_diff(&ours.iou, &want_iou);
        let range = want_low.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let f64_gap = case["f32_vs_f64"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:>10}: sparse {d_sparse:.2e} dense {d_dense:.2e} | decoder-only logits \
             {d_low_off:.2e} iou {d_iou_off:.2e} | end-to-end logits {d_low:.2e} iou {d_iou:.2e} \
             (|logit| max {range:.2}, official f32 vs f64 {f64_gap:.1e})"
        );
        worst_logit = worst_logit.max(d_low).max(d_low_off);
        worst_iou = worst_iou.max(d_iou).max(d_iou_off);
        worst_embed = worst_embed.max(d_sparse).max(d_dense);
        prompts.push((sparse, n, dense));
        want_all.push((want_low, want_iou));
    }
    let batch = md
        .forward_batch(&image, &pe.dense_pe(), &prompts, true)
        .unwrap();
    let mut worst_batch = 0.0f32;
    for (b, (low, iou)) in batch.iter().zip(&want_all) {
        worst_batch = worst_batch
            .max(max_abs_diff(&b.low_res, &low[65536..]))
            .max(max_abs_diff(&b.iou, &iou[1..]));
    }
    println!(
        "worst: embeddings {worst_embed:.2e}, logits {worst_logit:.2e}, iou {worst_iou:.2e}, \
         forward_batch {worst_batch:.2e}"
    );
    // f32 sin/cos and conv sums in a different order: a few ulp of O(1) values.
    assert!(worst_embed < 1e-5, "embeddings differ by {worst_embed}");
    // Spec target: logits within 1e-4 of the official float32 result.
    assert!(worst_logit <= 1e-4, "logits differ by {worst_logit}");
    assert!(worst_iou <= 1e-4, "iou differs by {worst_iou}");
    assert!(
        worst_batch <= 1e-4,
        "forward_batch differs by {worst_batch}"
    );
}

/// The automatic mask generator's lazy path: a point whose IoU predictions the caller
/// rejects gets no masks computed, and everything else is bit-identical.
#[test]
fn masks_are_computed_only_where_wanted() {
    let sam = common_tiny();
    let emb_features = wave(256 * 64 * 64, 0.3, 1.0);
    let image = sam.prepare_points(&emb_features).unwrap();
    let points = [[100.5f32, 200.25], [700.0, 30.0], [512.0, 512.0]];
    let all = sam.decode_points(&image, &points).unwrap();
    let first_iou = all[0].iou.clone();
    let lazy = sam
        .decode_points_where(&image, &points, &|iou| iou != first_iou.as_slice())
        .unwrap();
    assert!(
        lazy[0].low_res.is_empty(),
        "point 0's masks were not wanted"
    );
    assert_eq!(lazy[0].iou, all[0].iou);
    assert_eq!(lazy[0].num_masks, 3);
    assert_eq!(&lazy[1..], &all[1..], "the others are bit-identical");
}

fn common_tiny() -> samrt::Sam {
    let tensors = samrt::io::checkpoint::read_pth(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sam_tiny.pth"),
    )
    .unwrap();
    samrt::Sam::from_weights(&samrt::io::weights::F16Weights::new(tensors)).unwrap()
}
