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

fn samrt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .args(args)
        .env("SAMRT_CACHE_DIR", scratch("hostile-cache"))
        .output()
        .unwrap()
}

/// Options that once aborted on allocation or ran unbounded now fail fast and clearly.
#[test]
fn unbounded_work_options_are_refused() {
    let m = tiny_safetensors().to_str().unwrap().to_string();
    let img = fixtures().join("images/chelsea.png");
    let img = img.to_str().unwrap();
    let out = scratch("hostile-out");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "auto",
                "--model",
                &m,
                "--image",
                img,
                "--out",
                out,
                "--points-per-side",
                "100000",
            ],
            "point prompts per image",
        ),
        (
            &[
                "auto",
                "--model",
                &m,
                "--image",
                img,
                "--out",
                out,
                "--crop-n-layers",
                "8",
            ],
            "point prompts per image",
        ),
        (
            &["bench", "--model", &m, "--prompts", "1000000"],
            "--prompts 1000000: at most",
        ),
        (
            &["bench", "--model", &m, "--batch", "100000"],
            "--batch 100000: at most",
        ),
    ];
    for (args, needle) in cases {
        let t = std::time::Instant::now();
        let o = samrt(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
        assert!(
            t.elapsed().as_secs() < 30,
            "{args:?} took {:?}",
            t.elapsed()
        );
    }
}
