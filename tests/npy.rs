//! .npy reading and writing: round trips, numpy-written files, malformed input.

use proptest::prelude::*;
use samrt::io::npy::{self, parse, NpyData};
use samrt::Error;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("samrt-npy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file with the given format version, header dict text and body.
fn raw(version: u8, dict: &str, body: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let header = format!("{dict}\n");
    if version == 1 {
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

fn f32_body(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn f32_round_trip_keeps_bits() {
    let data = [1.5f32, -0.0, f32::MIN_POSITIVE, 3.0e38, -7.25, 1e-45];
    for shape in [vec![6], vec![2, 3], vec![1, 2, 3, 1]] {
        let p = tmp("rt.npy");
        npy::write_f32(&p, &shape, &data).unwrap();
        let (s, v) = npy::read_f32(&p).unwrap();
        assert_eq!(s, shape);
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = data.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, want);
        // numpy aligns the data to 64 bytes.
        let len = std::fs::metadata(&p).unwrap().len() as usize;
        assert_eq!((len - data.len() * 4) % 64, 0);
    }
    let p = tmp("scalar.npy");
    npy::write_f32(&p, &[], &[2.0]).unwrap();
    assert_eq!(npy::read_f32(&p).unwrap(), (vec![], vec![2.0]));
}

#[test]
fn u8_and_bool_round_trip() {
    let p = tmp("u8.npy");
    npy::write_u8(&p, &[2, 2], &[0, 7, 255, 128]).unwrap();
    let a = npy::read(&p).unwrap();
    assert_eq!(a.descr(), "|u1");
    assert_eq!(a.data, NpyData::U8(vec![0, 7, 255, 128]));
    let p = tmp("b1.npy");
    npy::write_bool(&p, &[3], &[true, false, true]).unwrap();
    let a = npy::read(&p).unwrap();
    assert_eq!(a.data, NpyData::Bool(vec![true, false, true]));
    assert_eq!(a.to_f32(), [1.0, 0.0, 1.0]);
}

#[test]
fn write_rejects_mismatched_shape() {
    assert!(matches!(
        npy::write_f32(&tmp("bad.npy"), &[2, 2], &[1.0; 3]),
        Err(Error::Npy(_))
    ));
}

#[test]
fn reads_numpy_written_file() {
    // Written by np.save in tools/make_resize_fixtures.py.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize/post_3x40x30_t2.npy");
    let (shape, v) = npy::read_f32(&p).unwrap();
    assert_eq!(shape, [3, 40, 30]);
    assert_eq!(v.len(), 3600);
    assert!(v.iter().all(|x| x.is_finite() && x.abs() <= 8.0));
}

#[test]
fn versions_and_dtypes() {
    let body = f32_body(&[1.0, 2.0]);
    for v in [1, 2, 3] {
        let a = parse(&raw(
            v,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &body,
        ))
        .unwrap();
        assert_eq!(a.to_f32(), [1.0, 2.0]);
    }
    // Key order and quoting as other writers produce them.
    let a = parse(&raw(
        1,
        r#"{"shape": (1, 2), "fortran_order": False, "descr": "<f4"}"#,
        &body,
    ))
    .unwrap();
    assert_eq!(a.shape, [1, 2]);
    let f8: Vec<u8> = [0.1f64, -3.5]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let a = parse(&raw(
        1,
        "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
        &f8,
    ))
    .unwrap();
    assert_eq!(a.to_f32(), [0.1f64 as f32, -3.5]);
    let i8: Vec<u8> = [-1i64, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
    let a = parse(&raw(
        1,
        "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
        &i8,
    ))
    .unwrap();
    assert_eq!(a.data, NpyData::I64(vec![-1, 3]));
    let a = parse(&raw(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }",
        &[],
    ))
    .unwrap();
    assert_eq!((a.to_f32(), a.shape), (vec![], vec![0, 5]));
}

#[test]
fn malformed_files_are_npy_errors() {
    let body = f32_body(&[1.0, 2.0]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("fortran", raw(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", &body)),
        ("big-endian", raw(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", &body)),
        ("object", raw(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", &body)),
        ("short body", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", &body)),
        ("long body", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", &body)),
        ("overflow", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &body)),
        ("huge dim", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", &body)),
        ("negative", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", &body)),
        ("missing key", raw(1, "{'descr': '<f4', 'shape': (2,), }", &body)),
        ("extra key", raw(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", &body)),
        ("not a dict", raw(1, "hello", &body)),
        ("version 4", raw(4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &body)),
        ("bad magic", b"\x93NUMPZ\x01\x00\x00\x00".to_vec()),
        ("empty", vec![]),
    ];
    for (name, bytes) in cases {
        assert!(
            matches!(parse(&bytes), Err(Error::Npy(_))),
            "{name} should be rejected"
        );
    }
    // Header length pointing past the end of the file.
    let mut b = raw(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
        &body,
    );
    b[8] = 0xff;
    b[9] = 0xff;
    assert!(matches!(parse(&b), Err(Error::Npy(_))));
    assert!(matches!(
        npy::read(&tmp("does-not-exist.npy")),
        Err(Error::Io { .. })
    ));
}

fn valid_file() -> Vec<u8> {
    raw(
        1,
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
        &f32_body(&[1.0; 6]),
    )
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&bytes);
        let mut with_magic = b"\x93NUMPY\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = parse(&with_magic);
    }

    #[test]
    fn truncations_are_errors(cut in 0usize..100) {
        let f = valid_file();
        let cut = cut.min(f.len() - 1);
        prop_assert!(parse(&f[..cut]).is_err());
    }

    #[test]
    fn mutations_never_panic(pos in 0usize..100, val in any::<u8>()) {
        let mut f = valid_file();
        let pos = pos % f.len();
        f[pos] = val;
        if let Ok(a) = parse(&f) {
            let n: usize = a.shape.iter().product();
            prop_assert_eq!(a.to_f32().len(), n);
        }
    }
}
