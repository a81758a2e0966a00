//! Config inference and conversion for image sizes other than 1024
//! (tests/fixtures/encoder_img_size/, from tools/make_encoder_img_size_fixtures.py).

mod common;
use common::checkpoint::{err_of, temp_dir, tensor_listing, Shapes};
use half::f16;
use samrt::io::checkpoint::{read_pth, Checkpoint, TensorF16};
use samrt::io::config::{
    expected_shapes, infer_config, infer_encoder_config, param_count, EncoderConfig, SamConfig,
};
use samrt::io::weights::WeightSource;
use samrt::Error;
use serde_json::Value;
use std::path::Path;

fn img_size_listing(key: &str) -> (Vec<(String, Vec<usize>)>, usize, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/encoder_img_size/sam_shapes.json");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let m = all[key].clone();
    let tensors = tensor_listing(&m["tensors"]);
    (tensors, m["params"].as_u64().unwrap() as usize, m)
}

/// Official vit_b Sam built at img_size 256 and 128: the grid comes from pos_embed, global
/// blocks are the ones whose rel-pos tables span it (31 / 15 rows), the rest are windowed
/// with window 14 (27 rows), padded 16 -> 28 or 8 -> 14. At 224 the grid equals the window
/// and every block is reported global (the shapes cannot tell; both compute the same).
#[test]
fn infers_official_vit_b_at_other_image_sizes() {
    for (key, img, global) in [
        ("vit_b_256", 256, vec![2, 5, 8, 11]),
        ("vit_b_128", 128, vec![2, 5, 8, 11]),
        ("vit_b_224", 224, (0..12).collect()),
    ] {
        let (list, params, m) = img_size_listing(key);
        assert_eq!(m["img_size"].as_u64(), Some(img as u64));
        let w = Shapes(list.iter().cloned().collect());
        let cfg = infer_config(&w).unwrap_or_else(|e| panic!("{key}: {e}"));
        let want = EncoderConfig {
            img_size: img,
            global_attn_indexes: global,
            ..EncoderConfig::vit_b()
        };
        assert_eq!(cfg, SamConfig::with_encoder(want), "{key}");
        assert_eq!(
            expected_shapes(&cfg),
            list,
            "{key}: names, shapes and order"
        );
        assert_eq!(param_count(&w), params, "{key}");
    }
}

#[test]
fn other_image_size_errors_name_the_grid() {
    let base = || Shapes(img_size_listing("vit_b_256").0.into_iter().collect());
    // A global table sized for 1024 (127 rows) in a 256 model: a global block of a
    // checkpoint trained at another size, whose table the official `get_rel_pos` resizes
    // (linearly, to 31 rows) at run time. It loads as global, its stored shape accepted.
    let mut w = base();
    for t in ["rel_pos_h", "rel_pos_w"] {
        w.0.insert(format!("image_encoder.blocks.2.attn.{t}"), vec![127, 64]);
    }
    let cfg = infer_config(&w).unwrap();
    assert_eq!(cfg.encoder.global_attn_indexes, vec![2, 5, 8, 11]);
    assert_eq!((cfg.encoder.window_size, cfg.encoder.img_size), (14, 256));
    // rel_pos_w must have rel_pos_h's shape, as the constructor makes them.
    w.0.insert("image_encoder.blocks.2.attn.rel_pos_w".into(), vec![31, 64]);
    let e = err_of(infer_config(&w));
    assert!(
        matches!(&e, Error::Shape { name, .. } if name == "image_encoder.blocks.2.attn.rel_pos_w"),
        "{e}"
    );
    // A third table size fits no official constructor.
    let mut w = base();
    for (b, rows) in [(2, 127), (0, 41)] {
        for t in ["rel_pos_h", "rel_pos_w"] {
            w.0.insert(format!("image_encoder.blocks.{b}.attn.{t}"), vec![rows, 64]);
        }
    }
    let e = err_of(infer_config(&w));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("41") && m.contains("127")
            && m.contains("27") && m.contains("one window size") && m.contains("16x16")),
        "{e}"
    );
    // An even row count for the windows: no window side gives it.
    let mut w = base();
    for b in [0, 1, 3, 4, 6, 7, 9, 10] {
        for t in ["rel_pos_h", "rel_pos_w"] {
            w.0.insert(format!("image_encoder.blocks.{b}.attn.{t}"), vec![26, 64]);
        }
    }
    let e = err_of(infer_config(&w));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("26 rows") && m.contains("= 31")),
        "{e}"
    );
    // pos_embed that is not [1, G, G, D].
    for bad in [vec![1, 16, 8, 768], vec![1, 16, 16, 64], vec![16, 16, 768]] {
        let mut w = base();
        w.0.insert("image_encoder.pos_embed".into(), bad.clone());
        let e = err_of(infer_config(&w));
        assert!(
            matches!(&e, Error::Config(m) if m.contains("pos_embed")),
            "{bad:?}: {e}"
        );
    }
    let mut w = base();
    w.0.remove("image_encoder.pos_embed");
    assert!(matches!(
        err_of(infer_config(&w)),
        Error::MissingTensor(n) if n == "image_encoder.pos_embed"
    ));
    // The mask decoder needs a 256-channel embedding.
    let mut w = base();
    w.0.insert("image_encoder.neck.0.weight".into(), vec![128, 768, 1, 1]);
    w.0.insert("image_encoder.neck.2.weight".into(), vec![128, 128, 3, 3]);
    for t in [
        "neck.1.weight",
        "neck.1.bias",
        "neck.3.weight",
        "neck.3.bias",
    ] {
        w.0.insert(format!("image_encoder.{t}"), vec![128]);
    }
    assert_eq!(infer_encoder_config(&w).unwrap().out_chans, 128);
    let e = err_of(infer_config(&w));
    assert!(
        matches!(&e, Error::Shape { name, expected, .. } if name == "image_encoder.neck.0.weight" && expected == &vec![256, 768, 1, 1]),
        "{e}"
    );
}

/// A minimal `torch.save` (zip, stored entries, pickle protocol 2): f16 storages, one per
/// tensor, in the layout torch writes, so the CLI can be given a .pth of any shape.
fn write_torch_f16(path: &Path, tensors: &[TensorF16]) {
    fn unicode(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }
    fn global(p: &mut Vec<u8>, module: &str, name: &str) {
        p.push(b'c');
        p.extend(format!("{module}\n{name}\n").as_bytes());
    }
    fn int(p: &mut Vec<u8>, v: usize) {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    }
    fn ints(p: &mut Vec<u8>, v: &[usize]) {
        p.push(b'(');
        v.iter().for_each(|&x| int(p, x));
        p.push(b't');
    }
    let mut pkl = vec![0x80, 2];
    global(&mut pkl, "collections", "OrderedDict");
    pkl.extend(b")R(");
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        unicode(&mut pkl, &t.name);
        global(&mut pkl, "torch._utils", "_rebuild_tensor_v2");
        pkl.extend(b"((");
        unicode(&mut pkl, "storage");
        global(&mut pkl, "torch", "HalfStorage");
        unicode(&mut pkl, &i.to_string());
        unicode(&mut pkl, "cpu");
        int(&mut pkl, t.data.len());
        pkl.extend(b"tQ");
        int(&mut pkl, 0);
        ints(&mut pkl, &t.shape);
        let mut strides = vec![1usize; t.shape.len()];
        for d in (0..t.shape.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * t.shape[d + 1];
        }
        ints(&mut pkl, &strides);
        pkl.push(0x89); // NEWFALSE: requires_grad
        global(&mut pkl, "collections", "OrderedDict");
        pkl.extend(b")RtR");
        let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        files.push((format!("archive/data/{i}"), bytes));
    }
    pkl.extend(b"u.");
    files.insert(0, ("archive/data.pkl".into(), pkl));
    files.push(("archive/byteorder".into(), b"little".to_vec()));
    files.push(("archive/version".into(), b"3\n".to_vec()));

    let (mut zip, mut central) = (Vec::new(), Vec::new());
    for (name, data) in &files {
        let crc = crc32fast::hash(data);
        let offset = zip.len() as u32;
        let mut head = Vec::new();
        head.extend(20u16.to_le_bytes()); // version needed
        head.extend([0u8; 4]); // flags, method (stored)
        head.extend([0u8; 4]); // time, date
        head.extend(crc.to_le_bytes());
        head.extend((data.len() as u32).to_le_bytes());
        head.extend((data.len() as u32).to_le_bytes());
        head.extend((name.len() as u16).to_le_bytes());
        head.extend(0u16.to_le_bytes()); // extra length
        zip.extend(0x0403_4b50u32.to_le_bytes());
        zip.extend(&head);
        zip.extend(name.as_bytes());
        zip.extend(data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        central.extend(&head);
        central.extend([0u8; 10]); // comment length, disk, internal and external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let cd_offset = zip.len() as u32;
    zip.extend(&central);
    zip.extend(0x0605_4b50u32.to_le_bytes());
    zip.extend([0u8; 4]); // disk numbers
    zip.extend((files.len() as u16).to_le_bytes());
    zip.extend((files.len() as u16).to_le_bytes());
    zip.extend((central.len() as u32).to_le_bytes());
    zip.extend(cd_offset.to_le_bytes());
    zip.extend(0u16.to_le_bytes());
    std::fs::write(path, zip).unwrap();
}

/// The reported bug: `samrt convert` and `samrt info` on a whole model built with
/// img_size 256 (grid 16, global blocks' rel-pos 31 rows, windowed 27).
#[test]
fn cli_converts_and_describes_an_img_size_256_model() {
    let cfg = SamConfig::with_encoder(EncoderConfig {
        img_size: 256,
        ..EncoderConfig::standard(64, 4, 2, vec![1, 3])
    });
    let mut w = samrt::cpu::model::image_encoder::random_encoder_weights(&cfg.encoder, 1);
    w.tensors
        .extend(samrt::cpu::model::mask_decoder::random_decoder_weights(&cfg, 2).tensors);
    let tensors: Vec<TensorF16> = expected_shapes(&cfg)
        .into_iter()
        .map(|(name, shape)| {
            let v = w.f32(&name, &shape).unwrap();
            let data = v.iter().map(|&x| f16::from_f32(x)).collect();
            TensorF16 { name, shape, data }
        })
        .collect();
    let dir = temp_dir("img256");
    let pth = dir.join("sam_256.pth");
    write_torch_f16(&pth, &tensors);
    assert_eq!(read_pth(&pth).unwrap(), tensors, "the writer round-trips");

    let run = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_samrt"))
            .args(args)
            .env("SAMRT_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        let (out, err) = (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        );
        assert!(o.status.success(), "samrt {args:?}: {err}");
        out
    };
    let st = dir.join("sam_256.safetensors");
    run(&["convert", pth.to_str().unwrap(), st.to_str().unwrap()]);
    for file in [&pth, &st] {
        let text = run(&["info", file.to_str().unwrap()]);
        for want in [
            "embed_dim: 64",
            "depth: 4",
            "window_size: 14",
            "global_attn_indexes: [1, 3]",
            "image_size: 256",
        ] {
            assert!(
                text.contains(want),
                "{}: no `{want}` in\n{text}",
                file.display()
            );
        }
    }
    let ck = Checkpoint::open(&st).unwrap();
    assert_eq!(infer_config(&ck).unwrap(), cfg);
    std::fs::remove_dir_all(&dir).unwrap();
}
