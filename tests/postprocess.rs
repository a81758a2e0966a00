//! Mask post-processing against torch's F.interpolate outputs recorded by
//! tools/make_resize_fixtures.py; the comparison is on f32 bit patterns.

use samrt::cpu::ops::postprocess::{
    mask_stats, postprocess_masks, postprocess_masks_with, resize_bilinear_torch,
    resize_bilinear_torch_with, threshold, torch_kernel_for, MaskStats, TorchBilinearKernel,
};
use samrt::io::npy;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The fixture script's `hash_map`: exactly representable values in [-8, 8).
fn hash_map(n: usize) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let v = (i.wrapping_mul(2654435761) & 0xFFFF_FFFF) >> 8;
            (v as f64 / (1u64 << 20) as f64 - 8.0) as f32
        })
        .collect()
}

/// Positional checksum of the bit patterns, as the fixture script computes it.
fn checksum(v: &[f32]) -> [u64; 2] {
    let mut s = [0u64; 2];
    for (i, x) in v.iter().enumerate() {
        let b = x.to_bits() as u64;
        s[0] = s[0].wrapping_add(b);
        s[1] = s[1].wrapping_add(b.wrapping_mul(i as u64 + 1));
    }
    s
}

/// Compares against a fixture entry; returns (mismatching samples, max abs diff).
fn compare(entry: &serde_json::Value, got: &[f32]) -> (usize, f32) {
    let mut bad = 0;
    let mut max = 0f32;
    for s in entry["samples"].as_array().unwrap() {
        let i = s[0].as_u64().unwrap() as usize;
        let want = f32::from_bits(s[1].as_u64().unwrap() as u32);
        if got[i].to_bits() != want.to_bits() {
            bad += 1;
            max = max.max((got[i] - want).abs());
        }
    }
    if let Some(name) = entry["full"].as_str() {
        let (_, want) = npy::read_f32(&fixtures().join(name)).unwrap();
        assert_eq!(want.len(), got.len());
        for (a, b) in got.iter().zip(&want) {
            if a.to_bits() != b.to_bits() {
                bad += 1;
                max = max.max((a - b).abs());
            }
        }
    }
    let want: Vec<u64> = entry["checksum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    if checksum(got) != [want[0], want[1]] {
        bad += 1;
    }
    (bad, max)
}

#[test]
fn single_channel_bilinear_is_bit_exact() {
    let m = manifest();
    for e in m["torch_resize"].as_array().unwrap() {
        let g = |k: &str| e[k].as_u64().unwrap() as usize;
        let (ih, iw, oh, ow) = (g("in_h"), g("in_w"), g("out_h"), g("out_w"));
        let src = hash_map(ih * iw);
        let got = resize_bilinear_torch(&src, ih, iw, oh, ow).unwrap();
        assert_eq!(got.len(), oh * ow);
        let (bad, max) = compare(e, &got);
        eprintln!("{ih}x{iw} -> {oh}x{ow}: {bad} mismatches, max abs diff {max:e}");
        assert_eq!(
            bad, 0,
            "{ih}x{iw} -> {oh}x{ow} is not bit-exact (max diff {max:e})"
        );
    }
}

#[test]
fn postprocess_masks_is_bit_exact() {
    let m = manifest();
    for e in m["postprocess"].as_array().unwrap() {
        let g = |k: &str| e[k].as_u64().unwrap() as usize;
        let c = g("c");
        let (input, orig) = ((g("input_h"), g("input_w")), (g("orig_h"), g("orig_w")));
        let threads = g("torch_threads");
        let low = hash_map(c * 256 * 256);
        let got = if threads > 1 {
            postprocess_masks(&low, c, input, orig).unwrap()
        } else {
            postprocess_masks_with(&low, c, input, orig, threads).unwrap()
        };
        assert_eq!(got.len(), c * orig.0 * orig.1);
        let (bad, max) = compare(e, &got);
        eprintln!("postprocess c={c} {input:?} -> {orig:?} (torch threads {threads}): {bad} mismatches, max abs diff {max:e}");
        assert_eq!(
            bad, 0,
            "postprocess to {orig:?} is not bit-exact (max diff {max:e})"
        );
    }
}

#[test]
fn kernel_choice_follows_pytorch() {
    use TorchBilinearKernel::*;
    assert_eq!(torch_kernel_for(3, 1024, 1024, 8), Generic);
    assert_eq!(torch_kernel_for(3, 1024, 1024, 1), ChannelsLast);
    assert_eq!(torch_kernel_for(1, 1024, 1024, 1), Generic);
    assert_eq!(torch_kernel_for(1, 64, 64, 8), ChannelsLast);
    assert_eq!(torch_kernel_for(1, 64, 65, 8), Generic);
}

#[test]
fn identity_resize_copies() {
    let src = hash_map(12 * 7);
    for k in [
        TorchBilinearKernel::Generic,
        TorchBilinearKernel::ChannelsLast,
    ] {
        let got = resize_bilinear_torch_with(&src, 12, 7, 12, 7, k).unwrap();
        assert_eq!(got, src);
    }
}

#[test]
fn bad_shapes_are_errors() {
    assert!(resize_bilinear_torch(&[1.0; 5], 2, 3, 4, 4).is_err());
    assert!(resize_bilinear_torch(&[1.0; 6], 2, 3, 0, 4).is_err());
    let low = hash_map(256 * 256);
    assert!(postprocess_masks(&low, 2, (10, 10), (10, 10)).is_err());
    assert!(postprocess_masks(&low, 1, (1025, 10), (10, 10)).is_err());
    assert!(postprocess_masks(&low, 1, (10, 10), (0, 10)).is_err());
}

#[test]
fn threshold_is_strict() {
    let t = threshold(&[-1.0, 0.0, -0.0, 1e-30, f32::NAN, 3.0]);
    assert_eq!(t, [false, false, false, true, false, true]);
}

#[test]
fn mask_stats_area_and_box() {
    let (h, w) = (5, 6);
    let mut m = vec![false; h * w];
    assert_eq!(mask_stats(&m, h, w).unwrap(), MaskStats::default());
    m[w + 2] = true;
    m[3 * w + 4] = true;
    m[3 * w + 1] = true;
    let s = mask_stats(&m, h, w).unwrap();
    assert_eq!(s.area, 3);
    // Official convention: w = max_x - min_x (xyxy [1, 1, 4, 3] -> xywh [1, 1, 3, 2]).
    assert_eq!(s.bbox, [1, 1, 3, 2]);
    m.iter_mut().for_each(|b| *b = true);
    assert_eq!(
        mask_stats(&m, h, w).unwrap(),
        MaskStats {
            area: 30,
            bbox: [0, 0, 5, 4]
        }
    );
    assert!(mask_stats(&m, 4, 6).is_err());
}

/// Timing for the report: `cargo test --release --test postprocess -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_postprocess_3_masks_1500x2250() {
    let low = hash_map(3 * 256 * 256);
    let n = 5;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let out = postprocess_masks(&low, 3, (683, 1024), (1500, 2250)).unwrap();
        std::hint::black_box(threshold(&out));
    }
    eprintln!(
        "postprocess 3 masks 256 -> 1500x2250 (+threshold): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}

#[test]
fn thresholded_postprocess_equals_threshold_of_logits() {
    use samrt::cpu::ops::postprocess::{postprocess_masks, postprocess_masks_threshold, threshold};
    // Logits from a hash around 0 so the threshold cuts through; the 1500x2250 photo, a
    // portrait, a tiny original (channels-last second stage) and one mask.
    for (c, input, orig) in [
        (3, (683, 1024), (1500, 2250)),
        (1, (1024, 768), (1200, 900)),
        (3, (731, 1024), (50, 70)),
        (1, (1024, 1023), (997, 995)),
    ] {
        let low: Vec<f32> = hash_map(c * 65536).iter().map(|v| v * 8.0 - 1.0).collect();
        let want = threshold(&postprocess_masks(&low, c, input, orig).unwrap());
        let got = postprocess_masks_threshold(&low, c, input, orig).unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "{c} masks {input:?} -> {orig:?}");
        assert!(want.iter().any(|&b| b) && want.iter().any(|&b| !b));
    }
    assert!(postprocess_masks_threshold(&[0.0; 10], 1, (683, 1024), (10, 10)).is_err());
}
