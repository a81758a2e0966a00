//! Hostile inputs that once got through (issue 11), each reproduced here first.

mod common;
use common::*;
use std::process::Command;

/// A safetensors header length of n - 1 shifted every tensor by one byte and the run
/// "succeeded" with garbage. The tensors must tile the data section exactly.
#[test]
fn safetensors_header_length_off_by_one_is_rejected() {
    let good = std::fs::read(tiny_safetensors()).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap());
    let dir = scratch("hostile-header");
    for (what, declared) in [("n - 1", n - 1), ("n + 1", n + 1)] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&declared.to_le_bytes());
        let path = dir.join(format!("shifted-{}.safetensors", declared));
        std::fs::write(&path, &bad).unwrap();
        match samrt::checkpoint::Checkpoint::open(&path) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => println!("{what}: {e}"),
        }
        let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
            .arg("info")
            .arg(&path)
            .env("SAMRT_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.starts_with("samrt: error:") && !err.contains("panicked"),
            "{err}"
        );
    }
}
