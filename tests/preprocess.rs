//! Image decoding and the Pillow-exact resize against fixtures written by
//! tools/make_resize_fixtures.py (Pillow 13 / numpy outputs).

use samrt::cpu::ops::preprocess_patchify::{preprocess, PIXEL_MEAN, PIXEL_STD};
use samrt::io::image::{
    from_rgb, load_image, resize_bilinear_pillow, resize_shape, transform_box, transform_coords,
    transform_coords_f64, RgbImage,
};
use samrt::io::npy;
use samrt::Error;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize")
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("samrt-preprocess-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn resize_shape_matches_get_preprocess_shape() {
    // Values printed by ResizeLongestSide.get_preprocess_shape.
    assert_eq!(resize_shape(1500, 2250, 1024), (683, 1024));
    assert_eq!(resize_shape(300, 451, 1024), (681, 1024));
    assert_eq!(resize_shape(7, 5, 1024), (1024, 731));
    assert_eq!(resize_shape(1023, 1, 1024), (1024, 1));
    assert_eq!(resize_shape(1024, 1024, 1024), (1024, 1024));
}

#[test]
fn pillow_bilinear_is_bit_identical() {
    let m = manifest();
    for case in m["pillow"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let input = load_image(&fixtures().join(format!("in_{name}.png"))).unwrap();
        let expected = load_image(&fixtures().join(format!("out_{name}.png"))).unwrap();
        let (h, w) = (input.height, input.width);
        assert_eq!(
            (h as u64, w as u64),
            (case["h"].as_u64().unwrap(), case["w"].as_u64().unwrap())
        );
        let (nh, nw) = resize_shape(h, w, 1024);
        assert_eq!((nh, nw), (expected.height, expected.width), "{name}");
        let got = resize_bilinear_pillow(&input, nw, nh);
        let diffs = got
            .data
            .iter()
            .zip(&expected.data)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diffs,
            0,
            "{name}: {diffs} of {} bytes differ from Pillow",
            got.data.len()
        );
    }
}

#[test]
fn resize_to_same_size_is_a_copy() {
    let img = from_rgb(3, 2, (1..=18).collect()).unwrap();
    assert_eq!(resize_bilinear_pillow(&img, 3, 2), img);
}

#[test]
fn preprocess_normalises_then_pads() {
    let (w, h) = (7, 5);
    let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
    let img = from_rgb(w, h, data).unwrap();
    let (t, (ih, iw)) = preprocess(&img, 1024).unwrap();
    assert_eq!((ih, iw), (731, 1024));
    assert_eq!(t.len(), 3 * 1024 * 1024);
    let resized = resize_bilinear_pillow(&img, iw, ih);
    for c in 0..3 {
        for &(y, x) in &[
            (0, 0),
            (100, 500),
            (730, 1023),
            (731, 0),
            (1023, 1023),
            (5, 1023),
        ] {
            let v = t[c * 1024 * 1024 + y * 1024 + x];
            if y < ih && x < iw {
                let p = resized.data[(y * iw + x) * 3 + c] as f32;
                assert_eq!(v.to_bits(), ((p - PIXEL_MEAN[c]) / PIXEL_STD[c]).to_bits());
            } else {
                assert_eq!(v.to_bits(), 0, "padding must be exactly zero");
            }
        }
    }
}

#[test]
fn preprocess_rejects_degenerate_aspect() {
    let img = from_rgb(5000, 1, vec![9; 5000 * 3]).unwrap();
    assert!(matches!(preprocess(&img, 1024), Err(Error::Image(_))));
}

#[test]
fn coords_match_apply_coords() {
    // Bits of torch.as_tensor(ResizeLongestSide(1024).apply_coords(np.array(pts)), float).
    let o = (1500, 2250);
    let i = resize_shape(o.0, o.1, 1024);
    let (x, y) = transform_coords_f64(500.3, 375.7, o, i);
    assert_eq!((x.to_bits(), y.to_bits()), (1130606893, 1126896025));
    // The same point given as float32 (np.float32 input) rounds differently.
    let (x, _) = transform_coords(500.3, 375.7, o, i);
    assert_eq!(x.to_bits(), 1130606892);
    let (x, y) = transform_coords_f64(2249.99, 0.5, o, i);
    assert_eq!((x.to_bits(), y.to_bits()), (1149239221, 1047077235));
    let o = (300, 451);
    let i = resize_shape(o.0, o.1, 1024);
    let b = transform_box([450.0, 299.0, 0.1, 123.456], o, i);
    let bits: Vec<u32> = b.iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, [1149202096, 1143582392, 1047035919, 1133256544]);
}

#[test]
fn decoding_matches_pillow_convert_rgb() {
    let m = manifest();
    let mut report = Vec::new();
    for case in m["decode"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let (shape, want) = npy::read_f32(&fixtures().join(format!("{file}.npy"))).unwrap();
        let got = load_image(&fixtures().join(file)).unwrap();
        assert_eq!(shape, [got.height, got.width, 3], "{file}");
        let max = got
            .data
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (a as f32 - b).abs())
            .fold(0f32, f32::max);
        let ndiff = got
            .data
            .iter()
            .zip(&want)
            .filter(|(&a, &b)| a as f32 != b)
            .count();
        // JPEG goes through libjpeg-turbo's decoder (mozjpeg) like Pillow: exact.
        let lossy = file.contains("lossy");
        report.push(format!(
            "{file}: max diff {max}, {ndiff}/{} bytes differ",
            want.len()
        ));
        if lossy {
            // Lossy WebP: image-webp and libwebp may round the upsampling differently by a
            // few units.
            assert!(max <= 4.0, "{file}: max diff {max}");
        } else {
            assert_eq!(max, 0.0, "{file}: lossless decode differs from Pillow");
        }
    }
    eprintln!("{}", report.join("\n"));
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG with a valid IHDR claiming `w x h` and a tiny (wrong) IDAT.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |t: &[u8], d: &[u8]| {
        out.extend_from_slice(&(d.len() as u32).to_be_bytes());
        let mut td = t.to_vec();
        td.extend_from_slice(d);
        out.extend_from_slice(&td);
        out.extend_from_slice(&crc32(&td).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

#[test]
fn hostile_and_broken_files_fail_cleanly() {
    let huge = tmp("huge.png");
    std::fs::write(&huge, png_header(100_000, 100_000)).unwrap();
    let e = load_image(&huge).unwrap_err();
    assert!(matches!(e, Error::Image(_)), "{e}");

    let wide = tmp("wide.png");
    std::fs::write(&wide, png_header(19_000, 19_000)).unwrap();
    assert!(
        matches!(load_image(&wide), Err(Error::Image(_))),
        "1 GiB limit"
    );

    let zero = tmp("zero.png");
    std::fs::write(&zero, png_header(0, 0)).unwrap();
    assert!(matches!(load_image(&zero), Err(Error::Image(_))));

    let good = std::fs::read(fixtures().join("in_up_451x300.png")).unwrap();
    for cut in [8, 33, 100, good.len() / 2, good.len() - 13] {
        let p = tmp(&format!("trunc{cut}.png"));
        std::fs::write(&p, &good[..cut]).unwrap();
        assert!(
            matches!(load_image(&p), Err(Error::Image(_))),
            "truncated at {cut}"
        );
    }
    let jpg = std::fs::read(fixtures().join("dec_rgb_q90.jpg")).unwrap();
    let p = tmp("trunc.jpg");
    std::fs::write(&p, &jpg[..jpg.len() / 3]).unwrap();
    // Pillow refuses a truncated JPEG ("image file is truncated"); so do we, at any cut.
    for cut in [2, 3, 100, jpg.len() / 3, jpg.len() - 2, jpg.len() - 1] {
        std::fs::write(&p, &jpg[..cut]).unwrap();
        match load_image(&p) {
            Err(Error::Image(m)) => assert!(!m.is_empty()),
            other => panic!("truncated JPEG at {cut}: {other:?}"),
        }
    }
    // Corrupt entropy data must not panic either.
    let mut bad = jpg.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 64].iter_mut().for_each(|b| *b = 0xFF);
    std::fs::write(&p, &bad).unwrap();
    let _ = load_image(&p);

    let garbage = tmp("garbage.png");
    std::fs::write(&garbage, b"definitely not an image at all").unwrap();
    assert!(matches!(load_image(&garbage), Err(Error::Image(_))));

    assert!(matches!(
        load_image(&tmp("missing.png")),
        Err(Error::Io { .. })
    ));
}

#[test]
fn from_rgb_validates() {
    assert!(from_rgb(0, 5, vec![]).is_err());
    assert!(from_rgb(2, 2, vec![0; 11]).is_err());
    let img: RgbImage = from_rgb(2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
    assert_eq!(img.pixel(1, 0), Some([4, 5, 6]));
    assert_eq!(img.pixel(2, 0), None);
}

/// Timing for the report: `cargo test --release --test preprocess -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_resize_1500x2250() {
    let (w, h) = (2250, 1500);
    let data: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i * 2654435761usize) >> 13) as u8)
        .collect();
    let img = from_rgb(w, h, data).unwrap();
    let t = std::time::Instant::now();
    let n = 10;
    for _ in 0..n {
        std::hint::black_box(resize_bilinear_pillow(&img, 1024, 683));
    }
    eprintln!(
        "resize 2250x1500 -> 1024x683: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(preprocess(&img, 1024).unwrap());
    }
    eprintln!(
        "preprocess (resize+normalise+pad): {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
