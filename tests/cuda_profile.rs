//! `samrt profile`: its refusals on every build, and on a device (vgpu in CI) the JSON
//! schema, one row per kernel entry point of the encoder's schedule, and every row's time
//! at or above its roofline floor.

mod common;
use common::*;
use std::process::{Command, Output};

fn profile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_samrt"))
        .arg("profile")
        .args(args)
        .env("SAMRT_CACHE_DIR", scratch("profile-cache"))
        .output()
        .expect("run samrt")
}

/// Exit status 1 and one `samrt: error:` line containing `what`.
#[track_caller]
fn refused(o: &Output, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(o.stdout.is_empty());
    assert!(err.contains("samrt: error:") && err.contains(what), "{err}");
}

#[test]
fn the_cpu_and_bad_sizes_are_refused_with_a_reason() {
    let model = tiny_safetensors().to_str().unwrap();
    refused(
        &profile(&["--device", "cpu", "--model", model]),
        "use --device cuda",
    );
    for n in ["0", "65"] {
        refused(
            &profile(&["--model", model, "--component", "decoder", "--prompts", n]),
            &format!("--prompts {n}: between 1 and 64"),
        );
    }
    refused(&profile(&["--model", model, "--batch", "0"]), "--batch 0");
    let o = profile(&["--model", model, "--component", "gpu"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_cuda_feature_profile_says_so() {
    let model = tiny_safetensors().to_str().unwrap();
    refused(
        &profile(&["--device", "cuda", "--model", model]),
        "built without the `cuda` feature",
    );
}

#[cfg(feature = "cuda")]
mod device {
    use super::*;
    use samrt::graph::OpDesc;
    use samrt::io::checkpoint::Checkpoint;
    use serde_json::Value;

    /// Whether a CUDA device is usable; otherwise says the test skips (or panics under
    /// SAMRT_REQUIRE_GPU=1, as CI's vgpu run sets) after checking the refusal is clear.
    fn cuda_or_skip(test: &str) -> bool {
        match samrt::cuda::cuda_available() {
            Ok(_) => true,
            Err(e) => {
                let model = tiny_safetensors().to_str().unwrap();
                refused(&profile(&["--model", model]), "--device cuda");
                assert!(
                    !gpu::require_gpu(),
                    "SAMRT_REQUIRE_GPU=1 but no usable GPU: {e}"
                );
                println!("skipping {test}: no CUDA device ({e})");
                false
            }
        }
    }

    /// (entry point, op) of each node of the tiny model's decoder at 256 px for 3
    /// single-point prompts (bucket 4).
    fn decoder_schedule() -> Vec<(String, &'static str)> {
        use samrt::cuda::model::mask_decoder::{build_graph, DecoderDims, DecoderKey};
        let ck = Checkpoint::open(tiny_safetensors()).expect("open the tiny model");
        let cfg = samrt::io::config::infer_config(&ck)
            .and_then(|c| c.at_image_size(256))
            .expect("config at 256");
        let key = DecoderKey {
            batch: 4,
            sparse: 2,
            mask_input: false,
        };
        let (g, _) = build_graph(&DecoderDims::new(&cfg).expect("dims"), key);
        g.nodes
            .iter()
            .map(|n| (n.op.entry_point(), n.op.name()))
            .collect()
    }

    /// (entry point, op) of each node of the tiny model's encoder at 256 px, batch 2.
    fn schedule() -> Vec<(String, &'static str)> {
        let ck = Checkpoint::open(tiny_safetensors()).expect("open the tiny model");
        let cfg = samrt::io::config::infer_config(&ck)
            .and_then(|c| c.at_image_size(256))
            .expect("config at 256");
        let p = samrt::sam::backend::plan_cuda_encoder(&ck, &cfg.encoder, 2).expect("plan");
        p.graph
            .nodes
            .iter()
            .map(|n| (n.op.entry_point(), n.op.name()))
            .collect()
    }

    #[test]
    fn json_schema_and_every_kernel_above_its_floor() {
        if !cuda_or_skip("json_schema_and_every_kernel_above_its_floor") {
            return;
        }
        let args = tiny_at_256(&["--batch", "2", "--component", "encoder"]);
        check_profile(&args, schedule(), "batch 2");
    }

    /// The decoder's kernels: the same schema and floors, one row per entry point of the
    /// decoder's schedule for the bucket that holds `--prompts`.
    #[test]
    fn decoder_json_schema_and_every_kernel_above_its_floor() {
        if !cuda_or_skip("decoder_json_schema_and_every_kernel_above_its_floor") {
            return;
        }
        let args = tiny_at_256(&["--prompts", "3", "--component", "decoder"]);
        check_profile(&args, decoder_schedule(), "bucket 4");
    }

    /// `samrt profile` arguments for the tiny model at 256 px on the device, then `rest`.
    fn tiny_at_256<'a>(rest: &[&'a str]) -> Vec<&'a str> {
        let model = tiny_safetensors().to_str().unwrap();
        let head = ["--device", "cuda", "--model", model, "--image-size", "256"];
        [&head[..], rest].concat()
    }

    /// Runs `samrt profile args` as JSON and as a table and checks both against `nodes`
    /// (the profiled schedule); the table's header contains `header`.
    fn check_profile(args: &[&str], nodes: Vec<(String, &'static str)>, header: &str) {
        let o = profile(&[args, &["--json"]].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{err}");
        let j: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
        let keys = |v: &Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |k: &[&str]| {
            let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&j),
            sorted(&["device", "time_source", "total_us", "floor_us", "kernels"])
        );
        let on_vgpu = j["device"].as_str().unwrap().starts_with("vgpu");
        assert_eq!(
            j["time_source"],
            if on_vgpu { "model" } else { "cuda_events" }
        );
        let rows = j["kernels"].as_array().unwrap();
        let (mut total, mut floor, mut launches) = (0.0, 0.0, 0);
        for r in rows {
            assert_eq!(
                keys(r),
                sorted(&[
                    "name",
                    "op",
                    "launches",
                    "time_us",
                    "floor_us",
                    "flops",
                    "bytes",
                    "bound",
                    "warp_instructions",
                    "mma",
                    "shared_requests",
                    "shared_wavefronts",
                    "bank_conflicts",
                    "global_bytes_read",
                    "global_bytes_written"
                ]),
                "{r}"
            );
            let (t, f) = (
                r["time_us"].as_f64().unwrap(),
                r["floor_us"].as_f64().unwrap(),
            );
            assert!(t >= f && f > 0.0, "time below the floor: {r}");
            let (flops, bytes) = (r["flops"].as_u64().unwrap(), r["bytes"].as_u64().unwrap());
            let roof = (flops as f64 / 989e12).max(bytes as f64 / 3.35e12) * 1e6;
            assert!(
                (f - roof).abs() <= 1e-9 * roof,
                "floor is not the roofline: {r}"
            );
            assert!(
                ["tensor", "issue", "smem", "dram", "latency"]
                    .contains(&r["bound"].as_str().unwrap()),
                "{r}"
            );
            if on_vgpu {
                assert!(r["warp_instructions"].as_u64().unwrap() > 0, "{r}");
                // The GEMMs, the convolution, the encoder's attention and the decoder's
                // folded attentions run on the tensor cores; the elementwise kernels, the
                // decoder's fp32 attention and the folded split's merge pass do not.
                let name = r["name"].as_str().unwrap();
                let tensor = ["gemm", "conv3x3", "attn"]
                    .iter()
                    .any(|p| name.starts_with(p))
                    && !name.starts_with("attn_decoder")
                    && !name.starts_with("attn_fold_t2i_combine");
                assert_eq!(tensor, r["mma"].as_u64().unwrap() > 0, "{r}");
                // Every mma is at least an m16n8k8 (2,048 FLOPs).
                assert!(
                    flops >= 2048 * r["mma"].as_u64().unwrap(),
                    "mma FLOPs counted: {r}"
                );
            }
            total += t;
            floor += f;
            launches += r["launches"].as_u64().unwrap();
        }
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b;
        assert!(close(j["total_us"].as_f64().unwrap(), total), "{j}");
        assert!(close(j["floor_us"].as_f64().unwrap(), floor), "{j}");
        assert!(total >= floor);
        // One row per (entry point, op) of the schedule, in order of first launch, with
        // as many launches as it has nodes.
        assert_eq!(launches as usize, nodes.len());
        let mut want: Vec<(String, &str, u64)> = Vec::new();
        for (e, op) in &nodes {
            match want.iter_mut().find(|w| &w.0 == e && w.1 == *op) {
                Some(w) => w.2 += 1,
                None => want.push((e.clone(), op, 1)),
            }
        }
        let got: Vec<(String, &str, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["op"].as_str().unwrap(),
                    r["launches"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want);

        // The table: a header, one line per kernel and the total.
        let o = profile(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(text.contains(header), "{text}");
        for (name, op, _) in &want {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(name.as_str()) && l.contains(op)),
                "{name} missing:\n{text}"
            );
        }
        assert!(text.lines().last().unwrap().starts_with("total"), "{text}");
    }
}
