//! Checkpoint reading, conversion, validation, config inference and the .pth cache.
//!
//! Fixtures in tests/fixtures/pth/ come from tools/make_pth_fixtures.py (torch.save); the
//! expected f16 bits there are torch's own conversions, and sam_shapes.json lists the
//! official state-dict names/shapes as built by segment_anything.

mod common;
use common::checkpoint::{err_of, temp_dir, tensor_listing, Shapes};
use half::f16;
use samrt::io::checkpoint::{
    open_model, read_pth, read_pth_bytes, write_safetensors_f16, Checkpoint, DType, TensorF16,
};
use samrt::io::config::{
    expected_shapes, infer_config, infer_encoder_config, param_count, EncoderConfig, SamConfig,
};
use samrt::io::weights::WeightSource;
use samrt::Error;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

fn load_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_against_expected(file: &str, got: &[TensorF16]) {
    let exp = load_json("expected.json");
    let exp = exp[file].as_array().unwrap();
    assert_eq!(got.len(), exp.len(), "{file}: tensor count");
    for (g, e) in got.iter().zip(exp) {
        assert_eq!(g.name, e["name"].as_str().unwrap(), "{file}: order");
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(g.shape, shape, "{file}: {}", g.name);
        let bits: Vec<u16> = e["f16_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u16)
            .collect();
        let got_bits: Vec<u16> = g.data.iter().map(|h| h.to_bits()).collect();
        // Exact: torch and we both round to nearest even.
        assert_eq!(got_bits, bits, "{file}: values of {}", g.name);
    }
}

#[test]
fn reads_f32_f16_bf16_fixtures_exactly() {
    for file in ["f32.pth", "f16.pth", "bf16.pth", "parameter.pth"] {
        let got = read_pth(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        check_against_expected(file, &got);
    }
}

#[test]
fn reads_views_with_offsets_strides_and_broadcast() {
    let got = read_pth(&fixture("views.pth")).unwrap();
    check_against_expected("views.pth", &got);
    // Spot-check by hand: base[r][c] = (6r + c) * 0.25 - 2, sliced = base[1:, ::2].
    let sliced = &got[0];
    assert_eq!(sliced.data[0].to_f32(), 6.0 * 0.25 - 2.0);
    assert_eq!(sliced.data[1].to_f32(), 8.0 * 0.25 - 2.0);
}

#[test]
fn reads_zip64_archive_with_other_prefix() {
    let got = read_pth(&fixture("zip64.pth")).unwrap();
    check_against_expected("zip64.pth", &got);
    let bytes = std::fs::read(fixture("zip64.pth")).unwrap();
    assert!(
        bytes.windows(4).any(|w| w == b"PK\x06\x06"),
        "fixture lacks ZIP64 record"
    );
}

#[test]
fn rejects_unsupported_pth_files_clearly() {
    let e = err_of(read_pth(&fixture("deflated.pth")));
    assert!(
        matches!(&e, Error::Zip(m) if m.contains("compressed")),
        "{e}"
    );
    let e = err_of(read_pth(&fixture("overflow.pth")));
    assert!(
        matches!(&e, Error::Checkpoint(m) if m.contains("`w`") && m.contains("f16 range")),
        "{e}"
    );
    let e = err_of(read_pth(&fixture("nested.pth")));
    assert!(
        matches!(&e, Error::Checkpoint(m) if m.contains("`model`") && m.contains("nested")),
        "{e}"
    );
    let e = err_of(read_pth(&fixture("int64.pth")));
    assert!(
        matches!(&e, Error::Pickle(m) if m.contains("LongStorage")),
        "{e}"
    );
    let e = err_of(read_pth(&fixture("broadcast_bomb.pth")));
    assert!(
        matches!(&e, Error::Checkpoint(m) if m.contains("`bomb`")),
        "{e}"
    );
    let e = err_of(read_pth(&fixture("legacy.pth")));
    assert!(matches!(&e, Error::Unsupported(_)), "{e}");
    let e = err_of(read_pth(Path::new("/nonexistent/samrt.pth")));
    assert!(matches!(&e, Error::Io { .. }), "{e}");
}

/// Offsets of the zip structures in `f32.pth`, found by signature.
fn find_sig(data: &[u8], sig: &[u8; 4]) -> Vec<usize> {
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| w == sig)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn rejects_corrupt_zip_structures() {
    let good = std::fs::read(fixture("f32.pth")).unwrap();
    // Every truncation fails cleanly (the end record moves or vanishes).
    for len in 0..good.len() {
        assert!(read_pth_bytes(&good[..len]).is_err(), "truncated to {len}");
    }
    let eocd = *find_sig(&good, b"PK\x05\x06").last().unwrap();
    let central = find_sig(&good, b"PK\x01\x02");

    let mut bad = good.clone();
    bad[eocd + 10..eocd + 12].copy_from_slice(&0xFFF0u16.to_le_bytes()); // entry count
    assert!(matches!(err_of(read_pth_bytes(&bad)), Error::Zip(_)));

    let mut bad = good.clone();
    bad[eocd + 16..eocd + 20].copy_from_slice(&0x7FFF_0000u32.to_le_bytes()); // cd offset
    assert!(matches!(err_of(read_pth_bytes(&bad)), Error::Zip(_)));

    let mut bad = good.clone();
    bad[central[0]] = b'X'; // central directory signature
    assert!(matches!(err_of(read_pth_bytes(&bad)), Error::Zip(_)));

    for (field, value) in [
        (42usize, 0x7FFF_FFF0u32),
        (20, 0x7FFF_FFF0),
        (24, 0x7FFF_FFF0),
    ] {
        // local header offset, compressed size, uncompressed size of the 5th entry (a storage)
        let mut bad = good.clone();
        let at = central[4] + field;
        bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
        assert!(read_pth_bytes(&bad).is_err(), "field {field}");
    }

    // Corrupt storage bytes: the CRC check names the entry.
    let mut bad = good.clone();
    let pos = bad
        .windows(4)
        .position(|w| w == 0.5f32.to_le_bytes())
        .unwrap();
    bad[pos] ^= 1;
    let e = err_of(read_pth_bytes(&bad));
    assert!(matches!(&e, Error::Zip(m) if m.contains("CRC")), "{e}");
}

#[test]
fn hostile_pickles_fail_without_panicking() {
    use samrt::io::checkpoint::pickle::load_state_dict;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown opcode", b"\x80\x02\xff.".to_vec()),
        ("missing memo", b"\x80\x02h\x05.".to_vec()),
        ("missing long memo", b"\x80\x02j\xff\xff\xff\x7f.".to_vec()),
        ("underflow", b"\x80\x02R.".to_vec()),
        ("tuple without mark", b"\x80\x02t.".to_vec()),
        ("pop below mark", b"\x80\x02K\x01(0.".to_vec()),
        ("huge string", b"\x80\x02X\xff\xff\xff\xff".to_vec()),
        ("no stop", b"\x80\x02}".to_vec()),
        ("empty", Vec::new()),
        ("evil global", b"\x80\x02cos\nsystem\n.".to_vec()),
        ("unterminated global", b"\x80\x02ctorch".to_vec()),
        ("list root", b"\x80\x02].".to_vec()),
        ("setitem on list", b"\x80\x02]K\x01K\x02s.".to_vec()),
        ("bad persid", b"\x80\x02K\x01Q.".to_vec()),
        ("huge long", b"\x80\x02\x8a\x10AAAAAAAAAAAAAAAA.".to_vec()),
        ("protocol 9", b"\x80\x09}.".to_vec()),
    ];
    for (what, bytes) in cases {
        assert!(load_state_dict(&bytes).is_err(), "{what}");
    }

    // A million nested tuples: dropping them must not recurse.
    let mut deep = b"\x80\x02]".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    deep.push(b'.');
    assert!(load_state_dict(&deep).is_err());

    // A long chain of lists linked through the memo, also dropped iteratively.
    let mut chain = b"\x80\x02]r\x00\x00\x00\x00".to_vec();
    for i in 1u32..200_000 {
        chain.push(b']');
        chain.push(b'r');
        chain.extend_from_slice(&i.to_le_bytes());
        chain.push(b'a');
        chain.push(b'j');
        chain.extend_from_slice(&i.to_le_bytes());
        chain.push(b'0'); // keep only the outermost list on the stack
    }
    chain.push(b'.');
    assert!(load_state_dict(&chain).is_err());

    // Object spam stops at the budget instead of exhausting memory.
    let mut spam = b"\x80\x02N".to_vec();
    spam.extend(std::iter::repeat_n(b'2', 8_000_000));
    let e = err_of(load_state_dict(&spam));
    assert!(
        matches!(&e, Error::Pickle(m) if m.contains("objects")),
        "{e}"
    );
}

fn tensors_fixture() -> Vec<TensorF16> {
    read_pth(&fixture("f32.pth")).unwrap()
}

#[test]
fn safetensors_roundtrip_matches_pth() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let tensors = tensors_fixture();
    write_safetensors_f16(&path, &tensors).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.len(), tensors.len());
    assert_eq!(ck.path(), Some(path.as_path()));
    assert_eq!(
        ck.metadata().get("producer").map(String::as_str),
        Some("samrt")
    );
    // File order is state-dict order.
    let order: Vec<&str> = ck.tensors().iter().map(|t| t.0).collect();
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(order, names);
    for t in &tensors {
        assert_eq!(ck.shape(&t.name), Some(t.shape.clone()));
        assert_eq!(ck.dtype(&t.name), Some(DType::F16));
        let want: Vec<f32> = t.data.iter().map(|h| h.to_f32()).collect();
        // f16 -> f32 is exact, so the values are equal bit for bit.
        assert_eq!(ck.f32(&t.name, &t.shape).unwrap(), want, "{}", t.name);
        assert_eq!(ck.raw_f16(&t.name).unwrap(), &t.data[..]);
    }
    let names = ck.names();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert!(matches!(
        ck.f32("layer.weight", &[3, 2]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(ck.f32("nope", &[1]), Err(Error::MissingTensor(_))));
    // The header pads the data section to 8 bytes and no temp file is left behind.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(n % 8, 0);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // Rewriting replaces the file atomically.
    write_safetensors_f16(&path, &tensors[..2]).unwrap();
    assert_eq!(Checkpoint::open(&path).unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_rejects_inconsistent_tensors() {
    let dir = temp_dir("writer");
    let t = |name: &str, shape: Vec<usize>, n: usize| TensorF16 {
        name: name.into(),
        shape,
        data: vec![f16::from_f32(0.5); n],
    };
    let path = dir.join("x.safetensors");
    assert!(write_safetensors_f16(&path, &[t("a", vec![2], 3)]).is_err());
    assert!(write_safetensors_f16(&path, &[t("a", vec![1], 1), t("a", vec![1], 1)]).is_err());
    assert!(write_safetensors_f16(&path, &[t("__metadata__", vec![1], 1)]).is_err());
    assert!(!path.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Checkpoint>();
}

/// A safetensors image with `header` padded to 8 bytes and `data` after it.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(data);
    out
}

#[test]
fn reads_f32_and_bf16_safetensors() {
    let vals = [1.5f32, -0.25, 3.0e5, 7.0e-3];
    let mut data: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let b = [half::bf16::from_f32(2.5), half::bf16::from_f32(-1.0e-3)];
    data.extend(b.iter().flat_map(|v| v.to_le_bytes()));
    let ck = Checkpoint::from_bytes(st(
        r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[16,20]}}"#,
        &data,
    ))
    .unwrap();
    // F32 is returned as stored (no f16 round trip), BF16 widened exactly.
    assert_eq!(ck.f32("w", &[2, 2]).unwrap(), vals);
    assert_eq!(
        ck.f32("b", &[2]).unwrap(),
        vec![b[0].to_f32(), b[1].to_f32()]
    );
    assert!(ck.raw_f16("w").is_none());
    assert_eq!(ck.dtype("b"), Some(DType::BF16));
}

#[test]
fn misaligned_f16_still_reads() {
    // Header length 33 (not padded): the F16 data starts at an odd file offset.
    let h = r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(h.as_bytes());
    let v = [f16::from_f32(1.25), f16::from_f32(-2.0)];
    bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
    let ck = Checkpoint::from_bytes(bytes).unwrap();
    assert_eq!(ck.f32("a", &[2]).unwrap(), vec![1.25, -2.0]);
    if let Some(raw) = ck.raw_f16("a") {
        assert_eq!(raw, &v);
    }
}

#[test]
fn checkpoint_rejects_each_hostile_header() {
    let d8 = [0x3Cu8, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44, 0x00];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty file", Vec::new()),
        ("7 bytes", vec![0; 7]),
        ("absurd length", {
            let mut b = u64::MAX.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("101 MB header", {
            let mut b = 101_000_000u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("length past end", {
            let mut b = 64u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
        ("not json", st("{nope", &d8)),
        ("top-level array", st("[1,2]", &d8)),
        (
            "wrong dtype",
            st(
                r#"{"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
                &d8,
            ),
        ),
        (
            "no dtype",
            st(r#"{"a":{"shape":[4],"data_offsets":[0,8]}}"#, &d8),
        ),
        (
            "no shape",
            st(r#"{"a":{"dtype":"F16","data_offsets":[0,8]}}"#, &d8),
        ),
        (
            "no offsets",
            st(r#"{"a":{"dtype":"F16","shape":[4]}}"#, &d8),
        ),
        (
            "size mismatch",
            st(
                r#"{"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#,
                &d8,
            ),
        ),
        (
            "huge shape",
            st(
                r#"{"a":{"dtype":"F16","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#,
                &d8,
            ),
        ),
        (
            "negative dim",
            st(
                r#"{"a":{"dtype":"F16","shape":[-4],"data_offsets":[0,8]}}"#,
                &d8,
            ),
        ),
        (
            "float dim",
            st(
                r#"{"a":{"dtype":"F16","shape":[4.0],"data_offsets":[0,8]}}"#,
                &d8,
            ),
        ),
        (
            "rank 40",
            st(
                &format!(
                    r#"{{"a":{{"dtype":"F16","shape":[{}],"data_offsets":[0,2]}}}}"#,
                    vec!["1"; 40].join(",")
                ),
                &d8,
            ),
        ),
        (
            "end past data",
            st(
                r#"{"a":{"dtype":"F16","shape":[8],"data_offsets":[0,16]}}"#,
                &d8,
            ),
        ),
        (
            "begin after end",
            st(
                r#"{"a":{"dtype":"F16","shape":[0],"data_offsets":[8,4]}}"#,
                &d8,
            ),
        ),
        (
            "three offsets",
            st(
                r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,4,8]}}"#,
                &d8,
            ),
        ),
        (
            "overlap",
            st(
                r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}}"#,
                &d8,
            ),
        ),
        (
            "duplicate",
            st(
                r#"{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"a":{"dtype":"F16","shape":[2],"data_offsets":[4,8]}}"#,
                &d8,
            ),
        ),
        (
            "metadata not strings",
            st(r#"{"__metadata__":{"k":1}}"#, &d8),
        ),
        (
            "deep nesting",
            st(
                &format!(
                    r#"{{"a":{{"x":{}{}}}}}"#,
                    "[".repeat(5000),
                    "]".repeat(5000)
                ),
                &d8,
            ),
        ),
    ];
    for (what, bytes) in cases {
        match Checkpoint::from_bytes(bytes) {
            Ok(_) => panic!("{what}: accepted"),
            Err(Error::Checkpoint(m)) => {
                assert!(m.contains("header") || m.contains("short"), "{what}: {m}")
            }
            Err(other) => panic!("{what}: unexpected error {other}"),
        }
    }
    // Unknown entry fields are tolerated; zero-sized tensors may sit anywhere.
    let ok = st(
        r#"{"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8],"extra":[1,{"x":2}]},"z":{"dtype":"F16","shape":[0,3],"data_offsets":[2,2]}}"#,
        &d8,
    );
    let ck = Checkpoint::from_bytes(ok).unwrap();
    assert_eq!(ck.f32("z", &[0, 3]).unwrap(), Vec::<f32>::new());
    // The path is named in file errors.
    let dir = temp_dir("hostile");
    let p = dir.join("bad.safetensors");
    std::fs::write(&p, st("{nope", &d8)).unwrap();
    let e = err_of(Checkpoint::open(&p));
    assert!(e.to_string().contains("bad.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The official listing of `model` from sam_shapes.json, in state-dict order, and the
/// parameter count torch reports.
fn listing(model: &str) -> (Vec<(String, Vec<usize>)>, usize) {
    let all = load_json("sam_shapes.json");
    let m = &all[model];
    let tensors = tensor_listing(&m["tensors"]);
    (tensors, m["params"].as_u64().unwrap() as usize)
}

fn shapes(model: &str) -> Shapes {
    Shapes(listing(model).0.into_iter().collect())
}

#[test]
fn infers_official_configs_and_counts_parameters() {
    for model in ["vit_b", "vit_l", "vit_h"] {
        let (list, params) = listing(model);
        let w = Shapes(list.iter().cloned().collect());
        let cfg = infer_config(&w).unwrap_or_else(|e| panic!("{model}: {e}"));
        assert_eq!(cfg, SamConfig::by_name(model).unwrap(), "{model}");
        assert_eq!(
            expected_shapes(&cfg),
            list,
            "{model}: names, shapes and order"
        );
        assert_eq!(param_count(&w), params, "{model}");
    }
    assert_eq!(param_count(&shapes("vit_b")), 93_735_472);
    assert_eq!(param_count(&shapes("vit_h")), 641_090_608);
}

#[test]
fn infers_nonstandard_config() {
    let (list, params) = listing("custom_4x160");
    let w = Shapes(list.iter().cloned().collect());
    let cfg = infer_config(&w).unwrap();
    let want = EncoderConfig {
        embed_dim: 160,
        depth: 4,
        num_heads: 2,
        head_dim: 80,
        mlp_dim: 640,
        window_size: 14,
        global_attn_indexes: vec![1, 3],
        img_size: 1024,
        patch_size: 16,
        out_chans: 256,
    };
    assert_eq!(cfg, SamConfig::with_encoder(want));
    assert_eq!(expected_shapes(&cfg), list);
    assert_eq!(param_count(&w), params);
}

fn infer_err(edit: impl FnOnce(&mut HashMap<String, Vec<usize>>)) -> Error {
    let mut w = shapes("vit_b");
    edit(&mut w.0);
    err_of(infer_config(&w))
}

#[test]
fn config_inference_rejects_bad_models() {
    let e = infer_err(|m| {
        m.remove("mask_decoder.iou_token.weight");
    });
    assert!(
        matches!(&e, Error::MissingTensor(n) if n == "mask_decoder.iou_token.weight"),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert(
            "image_encoder.blocks.3.mlp.lin2.weight".into(),
            vec![768, 3000],
        );
    });
    assert!(
        matches!(&e, Error::Shape { name, expected, .. } if name.ends_with("blocks.3.mlp.lin2.weight") && expected == &vec![768, 3072]),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert("pixel_mean".into(), vec![3, 1, 1]);
        m.insert("extra.weight".into(), vec![2]);
    });
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("pixel_mean") && msg.contains("extra.weight")),
        "{e}"
    );

    let e = infer_err(|m| m.retain(|k, _| !k.starts_with("image_encoder.blocks.3.")));
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("block 3")),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert("image_encoder.blocks.300.norm1.weight".into(), vec![768]);
    });
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("256")),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert(
            "image_encoder.patch_embed.proj.weight".into(),
            vec![0, 3, 16, 16],
        );
    });
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("embed_dim 0")),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert(
            "image_encoder.patch_embed.proj.weight".into(),
            vec![768, 3, 8, 8],
        );
    });
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("patch size")),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert(
            "image_encoder.blocks.0.attn.rel_pos_h".into(),
            vec![27, 100],
        );
    });
    assert!(
        matches!(&e, Error::Config(msg) if msg.contains("head_dim 100")),
        "{e}"
    );

    let e = infer_err(|m| {
        m.insert("image_encoder.blocks.4.attn.rel_pos_h".into(), vec![27, 32]);
    });
    assert!(matches!(&e, Error::Shape { .. }), "{e}");

    // One block with tables of another size among windowed ones: the official encoder has
    // one window size, so it is a global block whose table (made for an 8x8 grid) is
    // resized at load as the official `get_rel_pos` does; see tests/checkpoint_img_size.rs.
    let mut w = shapes("vit_b");
    w.0.insert("image_encoder.blocks.4.attn.rel_pos_h".into(), vec![15, 64]);
    w.0.insert("image_encoder.blocks.4.attn.rel_pos_w".into(), vec![15, 64]);
    let cfg = infer_encoder_config(&w).unwrap();
    assert_eq!(cfg.global_attn_indexes, vec![2, 4, 5, 8, 11]);
    assert_eq!(cfg.window_size, 14);

    // rel_pos_h and rel_pos_w of one block must agree.
    let e = infer_err(|m| {
        m.insert("image_encoder.blocks.4.attn.rel_pos_h".into(), vec![28, 64]);
    });
    assert!(
        matches!(&e, Error::Shape { name, .. } if name.ends_with("blocks.4.attn.rel_pos_w")),
        "{e}"
    );

    let e = infer_err(|m| m.clear());
    assert!(matches!(&e, Error::MissingTensor(_)), "{e}");

    // A global block turned windowed (rel_pos rows 27) is a different, valid model only if
    // the rest agrees; here rel_pos_w still says global, so the shape check catches it.
    let e = infer_err(|m| {
        m.insert("image_encoder.blocks.2.attn.rel_pos_h".into(), vec![27, 64]);
    });
    assert!(
        matches!(&e, Error::Shape { name, .. } if name.ends_with("blocks.2.attn.rel_pos_w")),
        "{e}"
    );
}

#[test]
fn open_model_converts_once_then_reuses_cache() {
    let dir = temp_dir("cache");
    let cache = dir.join("cache");
    std::env::set_var("SAMRT_CACHE_DIR", &cache);
    let pth = dir.join("tiny model.pth");
    std::fs::copy(fixture("f32.pth"), &pth).unwrap();

    let (ck, msg) = open_model(&pth).unwrap();
    let msg = msg.unwrap();
    assert!(
        msg.starts_with("converted tiny model.pth to fp16 safetensors at "),
        "{msg}"
    );
    assert!(msg.ends_with("(cached for next time)"), "{msg}");
    let cached: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1);
    assert_eq!(ck.path(), Some(cached[0].as_path()));
    let expected = tensors_fixture();
    for t in &expected {
        assert_eq!(ck.raw_f16(&t.name).unwrap(), &t.data[..]);
    }

    let (ck2, msg2) = open_model(&pth).unwrap();
    assert_eq!(
        msg2.unwrap(),
        format!("using cached conversion {}", cached[0].display())
    );
    assert_eq!(ck2.len(), expected.len());

    // A damaged cache file is rebuilt (unmap it first: it is about to be truncated).
    drop((ck, ck2));
    std::fs::write(&cached[0], b"garbage").unwrap();
    let (_, msg3) = open_model(&pth).unwrap();
    assert!(msg3.unwrap().starts_with("converted"));

    // A changed source gets a new cache entry.
    std::fs::copy(fixture("bf16.pth"), &pth).unwrap();
    let (ck4, msg4) = open_model(&pth).unwrap();
    assert!(msg4.unwrap().starts_with("converted"));
    assert_eq!(ck4.names(), vec!["x".to_string(), "y".to_string()]);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);

    // Format comes from the magic bytes, not the extension.
    let st_as_pth = dir.join("weights.pth");
    std::fs::copy(&cached[0], &st_as_pth).unwrap();
    let (ck5, msg5) = open_model(&st_as_pth).unwrap();
    assert!(msg5.is_none());
    assert_eq!(ck5.len(), expected.len());
    let pth_as_st = dir.join("disguised.safetensors");
    std::fs::copy(fixture("f16.pth"), &pth_as_st).unwrap();
    let (_, msg6) = open_model(&pth_as_st).unwrap();
    assert!(msg6.unwrap().starts_with("converted disguised.safetensors"));
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, b"hello world, not a model").unwrap();
    assert!(matches!(err_of(open_model(&junk)), Error::Checkpoint(_)));
    assert!(matches!(
        err_of(open_model(&fixture("legacy.pth"))),
        Error::Unsupported(_)
    ));

    std::env::remove_var("SAMRT_CACHE_DIR");
    std::fs::remove_dir_all(&dir).unwrap();
}
