//! Peak memory of `segment --prompts` does not grow with the number of prompts: they are
//! decoded in bounded chunks and their outputs streamed (1,000 prompts once took 5.2 GB).
//! Its own test binary, because it reads the peak RSS of all waited-for children.

mod common;
use common::*;
use std::process::Command;

#[repr(C)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn getrusage(who: i32, usage: *mut Rusage) -> i32;
}

/// Peak RSS in MB of the largest child waited for so far.
fn children_peak_mb() -> f64 {
    const RUSAGE_CHILDREN: i32 = -1;
    let mut r = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: getrusage fills the struct, which has the Linux x86_64/aarch64 layout.
    assert_eq!(unsafe { getrusage(RUSAGE_CHILDREN, &mut r) }, 0);
    r.maxrss as f64 / 1024.0
}

#[test]
#[cfg(target_os = "linux")]
fn many_prompts_run_in_bounded_memory() {
    let dir = scratch("prompt-memory");
    let model = tiny_safetensors().to_str().unwrap().to_string();
    let image = fixtures().join("images/coffee.png");
    let run = |n: usize| {
        let prompts: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"points": [[(i * 37) % 600, (i * 11) % 400]], "multimask": false}))
            .collect();
        let file = dir.join(format!("p{n}.json"));
        std::fs::write(&file, serde_json::Value::Array(prompts).to_string()).unwrap();
        let out = dir.join(format!("o{n}"));
        let o = Command::new(env!("CARGO_BIN_EXE_samrt"))
            .args(["segment", "--device", "cpu", "--model", &model])
            .args(["--image", image.to_str().unwrap(), "--prompts"])
            .args([file.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .env("SAMRT_CACHE_DIR", &dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(json["prompts"].as_array().unwrap().len(), n);
        assert!(out.join(format!("prompt_{}/mask_0.png", n - 1)).is_file());
        children_peak_mb()
    };
    // One chunk's worth (the chunk is ~40 prompts at this image size), then four times
    // as many. Without chunking each prompt held ~5 MB until the end: +600 MB here.
    let small = run(40);
    let large = run(160);
    eprintln!("peak RSS: 40 prompts {small:.0} MB, 160 prompts {large:.0} MB");
    assert!(
        large < small + 100.0,
        "peak grew from {small:.0} MB to {large:.0} MB"
    );
}
