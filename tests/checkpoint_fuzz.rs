//! Property tests: randomly mutated or truncated checkpoints must make the readers return Ok
//! or Err, never panic, hang or allocate without bound. Bounded to 256 cases per property so
//! the file runs in seconds (SAMRT_FUZZ_CASES raises it).

use proptest::prelude::*;
use samrt::io::checkpoint::pickle::load_state_dict;
use samrt::io::checkpoint::zip::ZipArchive;
use samrt::io::checkpoint::{read_pth_bytes, write_safetensors_f16, Checkpoint};
use samrt::io::weights::WeightSource;
use std::path::Path;
use std::sync::OnceLock;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/pth")
            .join(name),
    )
    .unwrap()
}

fn pth_files() -> &'static [Vec<u8>] {
    static F: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    F.get_or_init(|| {
        ["f32.pth", "views.pth", "zip64.pth", "bf16.pth"]
            .iter()
            .map(|n| fixture(n))
            .collect()
    })
}

/// The data.pkl streams of the fixtures, to mutate the pickle past the zip's CRC check.
fn pickles() -> &'static [Vec<u8>] {
    static P: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    P.get_or_init(|| {
        pth_files()
            .iter()
            .map(|f| {
                let z = ZipArchive::parse(f).unwrap();
                let e = z
                    .entries()
                    .iter()
                    .find(|e| e.name.ends_with("/data.pkl"))
                    .unwrap();
                z.read(e, true).unwrap().to_vec()
            })
            .collect()
    })
}

fn safetensors_file() -> &'static [u8] {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| {
        let tensors = read_pth_bytes(&fixture("views.pth")).unwrap();
        let dir = std::env::temp_dir().join(format!("samrt-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("v.safetensors");
        write_safetensors_f16(&p, &tensors).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        bytes
    })
}

/// Byte edits: (position fraction, value, kind) where kind 0 sets, 1 xors a bit, 2 inserts,
/// 3 deletes; then an optional truncation.
#[derive(Debug, Clone)]
struct Edits {
    ops: Vec<(f64, u8, u8)>,
    truncate: Option<f64>,
}

fn edits() -> impl Strategy<Value = Edits> {
    (
        prop::collection::vec((0.0..1.0f64, any::<u8>(), 0u8..4), 1..8),
        prop::option::weighted(0.25, 0.0..1.0f64),
    )
        .prop_map(|(ops, truncate)| Edits { ops, truncate })
}

fn apply(base: &[u8], e: &Edits) -> Vec<u8> {
    let mut b = base.to_vec();
    for &(f, v, kind) in &e.ops {
        if b.is_empty() {
            break;
        }
        let i = ((f * b.len() as f64) as usize).min(b.len() - 1);
        match kind {
            0 => b[i] = v,
            1 => b[i] ^= 1 << (v % 8),
            2 => b.insert(i, v),
            _ => {
                b.remove(i);
            }
        }
    }
    if let Some(t) = e.truncate {
        b.truncate((t * b.len() as f64) as usize);
    }
    b
}

/// Opening may fail; if it succeeds every tensor must read back without panicking.
fn exercise_safetensors(bytes: Vec<u8>) {
    if let Ok(ck) = Checkpoint::from_bytes(bytes) {
        for name in ck.names() {
            let shape = ck.shape(&name).unwrap();
            match ck.f32(&name, &shape) {
                Ok(v) => assert_eq!(v.len(), shape.iter().product::<usize>()),
                // A flipped exponent bit can make a value NaN or infinite: refused, not read.
                Err(samrt::Error::NonFinite(_)) => {}
                Err(e) => panic!("{name}: {e}"),
            }
            let _ = ck.raw_f16(&name);
        }
    }
}

/// 256 by default; set SAMRT_FUZZ_CASES for a longer hunt.
fn cases() -> u32 {
    std::env::var("SAMRT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_pth_never_panics(which in 0usize..4, e in edits()) {
        let bytes = apply(&pth_files()[which], &e);
        let _ = read_pth_bytes(&bytes);
    }

    #[test]
    fn mutated_pickle_never_panics(which in 0usize..4, e in edits()) {
        let bytes = apply(&pickles()[which], &e);
        let _ = load_state_dict(&bytes);
    }

    #[test]
    fn random_opcode_soup_never_panics(ops in prop::collection::vec(
        prop::sample::select(b"()0124NKMJ\x88\x89\x85\x86\x87t]}aesuhqrRbQX\x8a\x94.".to_vec()), 0..300),
        args in prop::collection::vec(any::<u8>(), 0..300)) {
        // Interleave opcodes with argument bytes so length-prefixed ops see varied inputs.
        let mut bytes = vec![0x80, 2];
        for (i, op) in ops.iter().enumerate() {
            bytes.push(*op);
            if let Some(a) = args.get(i) {
                if a % 3 == 0 { bytes.push(a / 3); }
            }
        }
        let _ = load_state_dict(&bytes);
    }

    #[test]
    fn mutated_safetensors_never_panics(e in edits()) {
        exercise_safetensors(apply(safetensors_file(), &e));
    }

    #[test]
    fn mutated_safetensors_header_never_panics(e in edits()) {
        // Confine the edits to the header, where the validation logic lives.
        let full = safetensors_file();
        let n = u64::from_le_bytes(full[..8].try_into().unwrap()) as usize + 8;
        let mut bytes = apply(&full[..n], &e);
        bytes.extend_from_slice(&full[n..]);
        exercise_safetensors(bytes);
    }
}
