//! Library entry points the Python package relies on: `Sam::predict_logits`
//! (`return_logits=True`) and `generate_with_point_grids` (the official `point_grids`).

mod common;

use samrt::amg::generator::{generate, generate_with_point_grids, AmgConfig};
use samrt::amg::geometry::point_grid;
use samrt::io::image::load_image;
use samrt::Error;

#[test]
fn predict_logits_thresholds_to_predict() {
    let sam = common::tiny_model();
    let img = load_image(&common::fixtures().join("images/chelsea.png")).unwrap();
    let emb = sam.embed(&img).unwrap();
    for p in common::prompts().iter().filter(|p| p["image"] == "chelsea") {
        let prompt = common::prompt_of(p);
        let a = sam.predict(&emb, &prompt).unwrap();
        let b = sam.predict_logits(&emb, &prompt).unwrap();
        assert_eq!(
            (a.num_masks, a.height, a.width),
            (b.num_masks, b.height, b.width)
        );
        assert_eq!(a.scores, b.scores);
        assert_eq!(a.low_res_logits, b.low_res_logits);
        let t: Vec<bool> = b.logits.iter().map(|&v| v > 0.0).collect();
        assert_eq!(a.masks, t);
        // Logits, not a 0/1 image: both signs and more than two values.
        assert!(b.logits.iter().any(|&v| v < -0.5) && b.logits.iter().any(|&v| v > 0.5));
    }
    let bad = samrt::Prompt {
        points: vec![[f64::NAN, 1.0]],
        labels: vec![1],
        ..Default::default()
    };
    assert!(matches!(
        sam.predict_logits(&emb, &bad),
        Err(Error::Prompt(_))
    ));
}

#[test]
fn explicit_point_grids_match_points_per_side() {
    let sam = common::tiny_model();
    let img = load_image(&common::fixtures().join("images/chelsea.png")).unwrap();
    let cfg = AmgConfig {
        points_per_side: 4,
        pred_iou_thresh: 0.0,
        stability_score_thresh: 0.0,
        stability_score_offset: 0.05,
        ..AmgConfig::default()
    };
    let want = generate(sam, &img, &cfg).unwrap();
    assert!(!want.is_empty());
    // Extra grids beyond crop_n_layers are ignored, as in the official generator.
    let got = generate_with_point_grids(sam, &img, &cfg, &[point_grid(4), vec![]]).unwrap();
    assert_eq!(got, want);

    let err = |grids: &[Vec<[f64; 2]>], cfg: &AmgConfig| match generate_with_point_grids(
        sam, &img, cfg, grids,
    ) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected an error"),
    };
    assert!(err(&[], &cfg).contains("needs 1 point grids, got 0"));
    assert!(err(&[vec![]], &cfg).contains("point grid 0 is empty"));
    assert!(err(&[vec![[0.5, f64::NAN]]], &cfg).contains("non-finite"));
    let layered = AmgConfig {
        crop_n_layers: 1,
        ..cfg.clone()
    };
    assert!(err(&[point_grid(2)], &layered).contains("needs 2 point grids"));
    // 4^8 crops at layer 8 with 2^10 points each: over the 2^24 bound.
    let deep = AmgConfig {
        crop_n_layers: 8,
        ..cfg.clone()
    };
    let grids: Vec<Vec<[f64; 2]>> = (0..9).map(|_| point_grid(32)).collect();
    assert!(err(&grids, &deep).contains("point prompts per image"));
    let batch0 = AmgConfig {
        points_per_batch: 0,
        ..cfg
    };
    assert!(err(&[point_grid(2)], &batch0).contains("points_per_batch"));
}
