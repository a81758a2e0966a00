//! `samrt info --graph`: the CUDA encoder's schedule, planned on the host with no device and
//! no `cuda` feature. The snapshot pins the op list, the kernel entry points, buffer
//! lifetimes and arena offsets of the tiny fixture model; a change to the schedule or the
//! planner shows up here as a diff to review (regenerate with `SAMRT_UPDATE_SNAPSHOTS=1`).

mod common;

use common::{fixtures, run_samrt, scratch};

const SNAPSHOT: &str = "info_graph_tiny.txt";

fn info(args: &[&str]) -> std::process::Output {
    let model = fixtures().join("sam_tiny.pth");
    let mut argv = vec!["info", model.to_str().unwrap()];
    argv.extend(args);
    run_samrt(&argv, &scratch("info-graph-cache"))
}

#[test]
fn graph_of_the_tiny_model_matches_the_snapshot() {
    let o = info(&["--graph"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    let path = fixtures().join(SNAPSHOT);
    if std::env::var_os("SAMRT_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &out).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        out,
        want,
        "samrt info --graph differs from {}",
        path.display()
    );
    // The shape of the plan, independent of the snapshot: every node names an op and the
    // entry point it launches, windowed and global blocks pick their attention kernels.
    assert!(out.contains("attn_relpos          attn_relpos_s14_d80_f16"));
    assert!(out.contains("attn_relpos          attn_relpos_s64_d80_f16"));
    assert!(out.contains("layer_norm           layer_norm_f16_f32_cf"));
    assert!(out.contains("nodes: 36\n"));
}

#[test]
fn batch_scales_the_arena_not_the_weights() {
    // The byte count of a totals line: "weights: 69 tensors, 5424896 bytes", "arena: N bytes".
    let field = |o: &str, k: &str| -> usize {
        let line = o.lines().find(|l| l.starts_with(k)).unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        words[words.len() - 2].parse().unwrap()
    };
    let one = String::from_utf8(info(&["--graph"]).stdout).unwrap();
    let o = info(&["--graph", "--batch", "2", "--image-size", "1024"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let two = String::from_utf8(o.stdout).unwrap();
    assert!(two.contains("graph: image_encoder, batch 2, image 1024x1024"));
    assert_eq!(field(&one, "weights:"), field(&two, "weights:"));
    assert!(field(&two, "arena:") > field(&one, "arena:"));
    assert_eq!(
        field(&two, "peak:"),
        field(&two, "weights:") + field(&two, "arena:")
    );
}

#[test]
fn another_image_size_or_batch_is_refused() {
    let o = info(&["--graph", "--image-size", "512"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--image-size 512: this model's input size is 1024"),
        "{err}"
    );
    let o = info(&["--graph", "--batch", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--batch 0: must be 1..=64"));
}
