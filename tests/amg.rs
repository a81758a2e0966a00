//! Automatic mask generation against the official SamAutomaticMaskGenerator
//! (tests/fixtures/amg/, from tools/make_amg_fixtures.py), its RLE / COCO encoders, output
//! formats, and the `samrt auto` dataset mode.

mod common;
use common::amg::{amg_case, compare_records, config_of, official_rle, records_of, Extra};

use samrt::amg::geometry::{crop_boxes, nms, point_grid_1d};
use samrt::amg::output::{metadata_csv, py_float};
use samrt::amg::regions::remove_small_regions;
use samrt::amg::rle::Rle;
use samrt::amg::{generate, generate_with, AmgConfig, MaskRecord, MaskSource};
use samrt::io::image::RgbImage;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn amg_manifest() -> Value {
    let t = std::fs::read_to_string(common::fixtures().join("amg/manifest.json")).unwrap();
    serde_json::from_str(&t).unwrap()
}

fn check_case(name: &str) {
    let case = amg_case("manifest.json", name);
    let official = records_of(&case);
    assert!(!official.is_empty(), "{name}: the fixture keeps no masks");
    let img = samrt::io::image::load_image(
        &common::fixtures()
            .join("images")
            .join(case["image"].as_str().unwrap()),
    )
    .unwrap();
    let ours = generate(common::tiny_model(), &img, &config_of(&case)).unwrap();
    let extra = Extra {
        stability: None,
        box_px: None,
    };
    compare_records(name, &ours, &official, &extra);
}

/// tools/make_amg_fixtures.py's synthetic predictor: discs around each point (radii in the
/// 1024 input frame), an island on mask 1, a hole in mask 2; the same float64 operations,
/// rounded once to f32, so the official records must be matched exactly.
struct Discs {
    radii: Vec<f64>,
}

struct DiscCrop {
    h: usize,
    w: usize,
    sx: f64,
    sy: f64,
}

impl MaskSource for Discs {
    type Crop = DiscCrop;
    /// Points in the 1024 frame and their IoUs.
    type Batch = Vec<([f64; 2], Vec<f32>)>;

    fn crop(&self, img: &RgbImage) -> samrt::Result<DiscCrop> {
        let (h, w) = (img.height, img.width);
        let (nh, nw) = samrt::io::image::resize_shape(h, w, 1024);
        Ok(DiscCrop {
            h,
            w,
            sx: nw as f64 / w as f64,
            sy: nh as f64 / h as f64,
        })
    }

    fn batch(&self, c: &DiscCrop, points: &[[f64; 2]]) -> samrt::Result<Self::Batch> {
        Ok(points
            .iter()
            .map(|p| {
                let q = [p[0] * c.sx, p[1] * c.sy];
                let base = ((q[0] * 7.0 + q[1] * 13.0) % 100.0) / 1000.0;
                let ious = (0..self.radii.len())
                    .map(|m| (0.87 + base + 0.01 * m as f64) as f32)
                    .collect();
                (q, ious)
            })
            .collect())
    }

    fn iou<'b>(&self, b: &'b Self::Batch, i: usize) -> &'b [f32] {
        &b[i].1
    }

    fn logits(&self, c: &DiscCrop, b: &Self::Batch, i: usize, m: usize) -> samrt::Result<Vec<f32>> {
        let ([px, py], r) = (b[i].0, self.radii[m]);
        let mut out = Vec::with_capacity(c.h * c.w);
        for y in 0..c.h {
            let dy = y as f64 * c.sy - py;
            for x in 0..c.w {
                let xf = x as f64 * c.sx;
                let dx = xf - px;
                let mut v = 10.0 * (r - (dx * dx + dy * dy).sqrt());
                if m == 1 {
                    let ex = xf - (px + 45.0);
                    v = v.max(10.0 * (4.0 - (ex * ex + dy * dy).sqrt()));
                }
                if m == 2 {
                    let ex = xf - (px - 30.0);
                    v = v.min(10.0 * ((ex * ex + dy * dy).sqrt() - 5.0));
                }
                out.push(v as f32);
            }
        }
        Ok(out)
    }
}

#[test]
fn synthetic_discs_match_official_exactly_across_crops() {
    let man = amg_manifest();
    let case = man["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "synthetic_discs")
        .unwrap()
        .clone();
    let official = records_of(&case);
    let size = common::f64s(&case["size"]);
    let (h, w) = (size[0] as usize, size[1] as usize);
    let img = RgbImage {
        width: w,
        height: h,
        data: vec![0; h * w * 3],
    };
    let src = Discs {
        radii: common::f64s(&case["radii"]),
    };
    let ours = generate_with(&src, &img, &config_of(&case)).unwrap();
    // The fixture must exercise what it is for: masks kept from inner crops.
    let inner = official
        .iter()
        .filter(|o| common::f64s(&o["crop_box"]) != [0.0, 0.0, w as f64, h as f64])
        .count();
    assert!(inner > 0, "no inner-crop record in the fixture");
    assert_eq!(ours.len(), official.len(), "record count");
    for (k, (o, r)) in official.iter().zip(&ours).enumerate() {
        assert_eq!(
            official_rle(&o["segmentation"]),
            r.segmentation,
            "record {k}: mask"
        );
        let as_f = |b: [i64; 4]| b.map(|v| v as f64).to_vec();
        assert_eq!(common::f64s(&o["bbox"]), as_f(r.bbox), "record {k}: bbox");
        assert_eq!(
            common::f64s(&o["crop_box"]),
            as_f(r.crop_box),
            "record {k}: crop"
        );
        assert_eq!(o["area"].as_u64().unwrap(), r.area, "record {k}: area");
        assert_eq!(
            o["predicted_iou"].as_f64().unwrap(),
            r.predicted_iou as f64,
            "record {k}: predicted_iou"
        );
        assert_eq!(
            o["stability_score"].as_f64().unwrap(),
            r.stability_score as f64,
            "record {k}: stability"
        );
        assert_eq!(
            common::f64s(&o["point_coords"][0]),
            r.point_coords.to_vec(),
            "record {k}: point"
        );
    }
    eprintln!(
        "synthetic_discs: {} records ({inner} from inner crops) identical to the official",
        ours.len()
    );
}

#[test]
fn chelsea_coco_matches_official() {
    check_case("chelsea_coco");
}

#[test]
fn coffee_crops_and_small_regions_match_official() {
    check_case("coffee_crops_regions");
}

#[test]
fn coffee_crops_without_nms_match_official() {
    check_case("coffee_crops_no_nms");
}

/// Re-encoding every official mask gives pycocotools' counts and COCO strings bit for bit.
#[test]
fn rle_and_coco_encoders_match_pycocotools() {
    let man = amg_manifest();
    let mut n = 0;
    for case in man["cases"].as_array().unwrap() {
        for o in records_of(case) {
            let seg = &o["segmentation"];
            let rle = official_rle(seg);
            let mask = rle.to_mask().unwrap();
            let again = Rle::from_mask(&mask, rle.h, rle.w).unwrap();
            assert_eq!(again.counts, rle.counts);
            assert_eq!(again.area(), o["area"].as_u64().unwrap());
            if let Some(s) = seg["counts"].as_str() {
                assert_eq!(again.coco_string(), s);
            }
            if let Some(s) = o["coco_counts"].as_str() {
                assert_eq!(again.coco_string(), s);
            }
            n += 1;
        }
    }
    assert!(n > 0);
}

/// The device's bit-packed masks (LSB first, rows padded to whole words) encode as the
/// boolean masks do, across word boundaries and with the padding bits set (they must be
/// ignored).
#[test]
fn rle_from_packed_bits_equals_rle_from_booleans() {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for (ch, cw) in [(1usize, 1usize), (3, 31), (5, 32), (4, 33), (7, 70)] {
        let wpr = cw.div_ceil(32) + 1; // one spare word per row, as a padded pitch
        let mut bits = vec![0u32; ch * wpr];
        let mut mask = vec![false; ch * cw];
        for y in 0..ch {
            for x in 0..wpr * 32 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let on = (s >> 40) & 3 != 0;
                if on {
                    bits[y * wpr + x / 32] |= 1 << (x % 32);
                }
                if x < cw {
                    mask[y * cw + x] = on;
                }
            }
        }
        let (h, w, origin) = (ch + 3, cw + 5, (2, 1));
        assert_eq!(
            Rle::from_packed_crop(&bits, wpr, (ch, cw), origin, h, w).unwrap(),
            Rle::from_crop(&mask, ch, cw, origin, h, w).unwrap(),
            "{ch}x{cw}"
        );
    }
    // Too few words per row, or a crop outside the image: errors, not panics.
    assert!(Rle::from_packed_crop(&[0; 2], 1, (2, 33), (0, 0), 2, 33).is_err());
    assert!(Rle::from_packed_crop(&[0; 2], 1, (2, 3), (1, 0), 2, 3).is_err());
}

#[test]
fn rle_edge_cases() {
    // First pixel set: counts start with a zero-length zero-run.
    let m = [true, false, false, true, true, true];
    let r = Rle::from_mask(&m, 2, 3).unwrap();
    // Column-major: column 0 = 1,1 | column 1 = 0,1 | column 2 = 0,1.
    assert_eq!(r.counts, vec![0, 2, 1, 1, 1, 1]);
    assert_eq!(r.to_mask().unwrap(), m.to_vec());
    assert_eq!(Rle::from_coco_string(&r.coco_string(), 2, 3).unwrap(), r);
    // A crop placed in a larger frame equals encoding the zero-padded mask.
    let crop = [true, false, true, true];
    let a = Rle::from_crop(&crop, 2, 2, (1, 2), 5, 4).unwrap();
    let mut full = vec![false; 20];
    for y in 0..2 {
        for x in 0..2 {
            full[(y + 2) * 4 + x + 1] = crop[y * 2 + x];
        }
    }
    assert_eq!(a, Rle::from_mask(&full, 5, 4).unwrap());
    // Large deltas exercise the multi-character and negative paths.
    let big = Rle {
        h: 1000,
        w: 1000,
        counts: vec![5, 300_000, 7, 600_000, 94_988],
    };
    assert_eq!(
        Rle::from_coco_string(&big.coco_string(), 1000, 1000).unwrap(),
        big
    );
}

#[test]
fn grids_and_crop_boxes_follow_numpy() {
    assert_eq!(point_grid_1d(1), vec![0.5]);
    let g = point_grid_1d(32);
    assert_eq!(g[0], 1.0 / 64.0);
    assert_eq!(g[31], 1.0 - 1.0 / 64.0);
    // generate_crop_boxes((400, 600), 1, 512/1500): overlap int(0.3413*400) = 136.
    let b = crop_boxes(400, 600, 1, 512.0 / 1500.0);
    let boxes: Vec<[usize; 4]> = b.iter().map(|x| x.0).collect();
    assert_eq!(
        boxes,
        vec![
            [0, 0, 600, 400],
            [0, 0, 368, 268],
            [0, 132, 368, 400],
            [232, 0, 600, 268],
            [232, 132, 600, 400]
        ]
    );
}

#[test]
fn nms_orders_by_score_and_keeps_ties_stable() {
    let boxes = [
        [0.0, 0.0, 10.0, 10.0],
        [1.0, 1.0, 10.0, 10.0],
        [20.0, 20.0, 30.0, 30.0],
        [40.0, 0.0, 50.0, 10.0],
    ];
    let keep = nms(&boxes, &[0.5, 0.9, 0.5, 0.5], 0.7);
    assert_eq!(keep, vec![1, 2, 3]);
}

#[test]
fn small_regions_fill_holes_then_drop_islands() {
    // 6x6: a ring with a 1-pixel hole, plus a lone diagonal-touching pixel and a far island.
    let mut m = vec![false; 36];
    for (y, x) in [
        (1, 1),
        (1, 2),
        (1, 3),
        (2, 1),
        (2, 3),
        (3, 1),
        (3, 2),
        (3, 3),
        (4, 4),
        (0, 5),
    ] {
        m[y * 6 + x] = true;
    }
    let (filled, ch) = remove_small_regions(&m, 6, 6, 2.0, true);
    assert!(ch && filled[2 * 6 + 2]);
    // (4,4) touches the ring diagonally, so with 8-connectivity it is part of it.
    let (kept, ch) = remove_small_regions(&filled, 6, 6, 2.0, false);
    assert!(ch && kept[4 * 6 + 4] && !kept[5]);
    // No island big enough: the largest survives.
    let (only, _) = remove_small_regions(&filled, 6, 6, 100.0, false);
    assert_eq!(only.iter().filter(|&&b| b).count(), 10);
}

#[test]
fn python_float_repr() {
    assert_eq!(py_float(16.0), "16.0");
    assert_eq!(py_float(0.1), "0.1");
    assert_eq!(py_float(1e-5), "1e-05");
    assert_eq!(py_float(0.0001), "0.0001");
    assert_eq!(py_float(1e16), "1e+16");
    assert_eq!(py_float(0.8999999761581421), "0.8999999761581421");
    assert_eq!(py_float(-2.5), "-2.5");
}

#[test]
fn metadata_csv_layout() {
    let r = MaskRecord {
        segmentation: Rle {
            h: 2,
            w: 2,
            counts: vec![1, 3],
        },
        area: 3,
        bbox: [0, 0, 1, 1],
        predicted_iou: 0.9,
        point_coords: [16.0, 8.5],
        stability_score: 1.0,
        crop_box: [0, 0, 2, 2],
    };
    assert_eq!(
        metadata_csv(&[r]),
        "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h\n0,3,0,0,1,1,16.0,8.5,0.8999999761581421,1.0,0,0,2,2"
    );
}

#[test]
fn config_validation() {
    assert!(AmgConfig::default().validate().is_ok());
    let bad = [
        AmgConfig {
            points_per_side: 0,
            ..Default::default()
        },
        AmgConfig {
            pred_iou_thresh: f64::NAN,
            ..Default::default()
        },
        AmgConfig {
            crop_overlap_ratio: 1.5,
            ..Default::default()
        },
        AmgConfig {
            crop_n_layers: 2,
            crop_n_points_downscale_factor: 8,
            points_per_side: 4,
            ..Default::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
    }
}

// ---------------------------------------------------------------------------------------
// `samrt auto` dataset mode.

fn small_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let src = image::open(common::fixtures().join("images/chelsea.png"))
        .unwrap()
        .to_rgb8();
    (0..n)
        .map(|i| {
            let c = image::imageops::crop_imm(&src, 40 * i as u32, 30, 96, 64).to_image();
            let p = dir.join(format!("img{i}.png"));
            c.save(&p).unwrap();
            p
        })
        .collect()
}

fn auto(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .arg("auto")
        // The CPU oracle path: with a GPU (or vgpu) `auto` would pick CUDA.
        .args(["--device", "cpu"])
        .arg("--model")
        .arg(common::tiny_safetensors())
        .args([
            "--points-per-side",
            "2",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
        ])
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cli_dataset_dir_resume_and_bad_image() {
    let root = common::scratch("amg-dir");
    let dir = root.join("imgs");
    small_images(&dir, 3);
    std::fs::write(dir.join("bad.png"), b"not a png").unwrap();
    let out = root.join("out");
    let o = auto(&[
        "--image",
        s(&dir),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a bad image must fail the run: {err}");
    assert!(err.contains("bad.png"), "{err}");
    assert!(err.contains("ETA"), "{err}");
    for i in 0..3 {
        let f = out.join(format!("img{i}.json"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        for r in v.as_array().unwrap() {
            assert!(r["segmentation"]["counts"].is_string());
            assert_eq!(r["segmentation"]["size"], serde_json::json!([64, 96]));
        }
    }
    assert!(!out.join("bad.json").exists());
    // No temporary leftovers.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // Resume: finished outputs are not recomputed.
    std::fs::write(out.join("img1.json"), "[]").unwrap();
    let o = auto(&[
        "--image",
        s(&dir),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("skipping 3"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("img1.json")).unwrap(),
        "[]"
    );
    std::fs::remove_file(dir.join("bad.png")).unwrap();
    let o = auto(&[
        "--image",
        s(&dir),
        "--out",
        s(&out),
        "--output-mode",
        "coco_rle",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn cli_list_shards_and_binary_mask() {
    let root = common::scratch("amg-list");
    let imgs = small_images(&root.join("imgs"), 3);
    let list = root.join("list.txt");
    let text: Vec<String> = imgs
        .iter()
        .map(|p| format!("imgs/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    std::fs::write(&list, text.join("\n") + "\n").unwrap();
    let out = root.join("out");
    for shard in ["0/2", "1/2"] {
        let o = auto(&["--image", s(&list), "--out", s(&out), "--shard", shard]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let done: Vec<bool> = (0..3)
            .map(|i| out.join(format!("img{i}")).is_dir())
            .collect();
        if shard == "0/2" {
            assert_eq!(done, vec![true, false, true]);
        } else {
            assert_eq!(done, vec![true, true, true]);
        }
    }
    let csv = std::fs::read_to_string(out.join("img0/metadata.csv")).unwrap();
    let lines: Vec<&str> = csv.split('\n').collect();
    assert!(lines[0].starts_with("id,area,bbox_x0"));
    for (i, l) in lines[1..].iter().enumerate() {
        assert!(l.starts_with(&format!("{i},")));
        let png = image::open(out.join(format!("img0/{i}.png")))
            .unwrap()
            .to_luma8();
        assert_eq!(png.dimensions(), (96, 64));
        assert!(png.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    }
    for bad in [
        vec!["--shard", "2/2"],
        vec!["--shard", "x"],
        vec!["--points-per-batch", "0"],
        vec!["--box-nms-thresh", "nan"],
    ] {
        let mut a = vec!["--image", s(&list), "--out", s(&out)];
        a.extend(bad.iter());
        let o = auto(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {err}");
    }
}
