//! `samrt bench`: per-component latency (median and p90 after warm-up) and peak memory,
//! on random weights of a named configuration or on a checkpoint file. Components match
//! tools/bench_torch.py: `decoder` is one point prompt end to end (prompt encoder, mask
//! decoder, masks at the 1500x2250 original size), `decoder_batch` N single-point prompts
//! (low-res logits and scores), `auto` the automatic mask generator; `prompt_encoder`,
//! `mask_decoder` and `postprocess` are the parts of `decoder`. CPU timings use the
//! wall clock; the CUDA path (CUDA events) arrives with the CUDA model path.

use super::common::{resolve_device, CliError, Context, Device};
use clap::Args;
use samrt::amg::generator::{generate, AmgConfig};
use samrt::cpu::model::image_encoder::random_encoder_weights;
use samrt::cpu::model::mask_decoder::random_decoder_weights;
use samrt::cpu::ops::preprocess_patchify::preprocess;
use samrt::io::config::SamConfig;
use samrt::io::image::from_rgb;
use samrt::io::weights::MapWeights;
use samrt::sam::predictor::ImageEmbedding;
use samrt::{Prompt, Sam};
use std::path::Path;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "auto")]
    device: Device,
    /// vit_b, vit_l, vit_h (random weights) or a checkpoint file.
    #[arg(long, default_value = "vit_b")]
    model: String,
    /// Images per encoder call.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Timed iterations per component (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Single-point prompts decoded together for the decoder_batch component.
    #[arg(long, default_value_t = 64)]
    prompts: usize,
    /// Also time the automatic mask generator (official defaults, 32x32 grid) on the
    /// synthetic 1500x2250 image: tens of seconds per run on a CPU.
    #[arg(long)]
    auto: bool,
    /// Print one JSON object (bench/results schema) instead of a table.
    #[arg(long)]
    json: bool,
    /// Input size in pixels (a multiple of 16): random models are built for it, a
    /// checkpoint runs at it (README: "Input sizes"). Default: the model's own (1024).
    #[arg(long, value_name = "PIXELS")]
    image_size: Option<usize>,
}

/// Bounds that keep a benchmark's memory and run time finite (the largest CUDA graph batch;
/// 2^16 prompts decode in one batch on the CPU in minutes).
const MAX_BATCH: usize = 64;
const MAX_PROMPTS: usize = 1 << 16;
const MAX_ITERS: usize = 100_000;

/// The decoder targets are stated for a 1500x2250 photo; bench on that size.
const ORIG_H: usize = 1500;
const ORIG_W: usize = 2250;

fn time_ms(
    iters: usize,
    mut f: impl FnMut() -> Result<(), CliError>,
) -> Result<(f64, f64), CliError> {
    f()?; // warm-up: first-touch allocation, page faults, rayon pool start
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median_p90(t))
}

/// (median, p90) of timings.
fn median_p90(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    let p90 = t[((t.len() as f64 * 0.9).ceil() as usize).clamp(1, t.len()) - 1];
    (t[t.len() / 2], p90)
}

/// Peak resident set size of this process in MB (Linux VmHWM), 0 where unknown.
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// UTC date as YYYY-MM-DD from the system clock (civil-from-days, H. Hinnant).
/// The machine-written result record (bench/results/ schema), one JSON line on stdout.
fn print_json<C: serde::Serialize>(
    model: &str,
    rows: &[(C, usize, f64, f64)],
    peak_mem_mb: u64,
    device: String,
    driver: serde_json::Value,
) {
    let results: Vec<_> = rows
        .iter()
        .map(|(c, b, m, p)| {
            serde_json::json!({"system": "samrt", "model": model, "batch": b, "component": c,
                               "median_ms": m, "p90_ms": p, "peak_mem_mb": peak_mem_mb})
        })
        .collect();
    let argv: Vec<String> = std::env::args().collect();
    let j = serde_json::json!({
        "device": device,
        "driver": driver,
        "date": today(),
        "command": argv.join(" "),
        "results": results,
    });
    println!("{j}");
}

fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The benchmark image: 1500x2250 pseudo-random pixels (a hash of the index), the same in
/// every run.
pub(super) fn synthetic_image() -> Result<samrt::io::image::RgbImage, CliError> {
    let pixels: Vec<u8> = (0..ORIG_H * ORIG_W * 3)
        .map(|i| ((i * 2_654_435_761usize) >> 13) as u8)
        .collect();
    from_rgb(ORIG_W, ORIG_H, pixels).context(|| "synthetic image".to_string())
}

fn load(model: &str, image_size: Option<usize>) -> Result<(Sam, String), CliError> {
    load_on(model, samrt::ComputeDevice::Cpu, image_size)
}

/// `--model` on `device`: random weights of a named configuration, or a checkpoint file;
/// with the model's name as results label it.
pub(super) fn load_on(
    model: &str,
    device: samrt::ComputeDevice,
    image_size: Option<usize>,
) -> Result<(Sam, String), CliError> {
    if let Some(mut cfg) = SamConfig::by_name(model) {
        if let Some(s) = image_size {
            cfg = cfg
                .at_image_size(s)
                .context(|| format!("--image-size {s}"))?;
        }
        let mut w: MapWeights = random_encoder_weights(&cfg.encoder, 1);
        w.tensors.extend(random_decoder_weights(&cfg, 2).tensors);
        let sam =
            Sam::from_weights_on(&w, device).context(|| format!("building random {model}"))?;
        return Ok((sam, label(model, image_size)));
    }
    let opts = samrt::LoadOptions { device, image_size };
    let (sam, msg) =
        Sam::load_with(Path::new(model), opts).context(|| format!("loading --model {model}"))?;
    if let Some(m) = msg {
        eprintln!("samrt: {m}");
    }
    Ok((sam, label(model, image_size)))
}

/// The model as results name it: `vit_b`, or `vit_b@512` at another input size.
fn label(model: &str, image_size: Option<usize>) -> String {
    match image_size {
        Some(s) => format!("{model}@{s}"),
        None => model.to_string(),
    }
}

pub fn run(a: BenchArgs) -> Result<(), CliError> {
    if a.iters == 0 || a.batch == 0 || a.prompts == 0 {
        return Err(CliError::msg(
            "--iters, --batch and --prompts must be at least 1",
        ));
    }
    for (flag, v, max) in [
        ("--iters", a.iters, MAX_ITERS),
        ("--batch", a.batch, MAX_BATCH),
        ("--prompts", a.prompts, MAX_PROMPTS),
    ] {
        if v > max {
            return Err(CliError::msg(format!("{flag} {v}: at most {max}")));
        }
    }
    let device = resolve_device(a.device)?;
    if let samrt::ComputeDevice::Cuda(_) = device {
        return run_cuda(&a, device);
    }
    let (sam, model) = load(&a.model, a.image_size)?;
    let img_size = sam.config.encoder.img_size;
    let img = synthetic_image()?;
    let lib = |e: samrt::Error| CliError::msg(e.to_string());

    let mut rows: Vec<(&str, usize, f64, f64)> = Vec::new();
    let (x, input_size) = preprocess(&img, img_size).map_err(lib)?;
    let (m, p) = time_ms(a.iters, || {
        preprocess(&img, img_size).map(|_| ()).map_err(lib)
    })?;
    rows.push(("preprocess", 1, m, p));
    let mut features = Vec::new();
    let (m, p) = time_ms(a.iters, || {
        for _ in 0..a.batch {
            features = sam
                .image_encoder()
                .and_then(|e| e.forward(&x))
                .map_err(lib)?;
        }
        Ok(())
    })?;
    rows.push(("encoder", a.batch, m, p));
    let prompt = Prompt {
        points: vec![[ORIG_W as f64 / 2.0, ORIG_H as f64 / 3.0]],
        labels: vec![1],
        multimask: true,
        ..Default::default()
    };
    let orig = (ORIG_H, ORIG_W);
    let pt = samrt::io::image::transform_coords_f64(
        prompt.points[0][0],
        prompt.points[0][1],
        orig,
        input_size,
    );
    let pe = sam.prompt_encoder();
    let (sparse, n, dense) = pe.encode(&[[pt.0, pt.1]], &[1], None, None).map_err(lib)?;
    let (m, p) = time_ms(a.iters, || {
        pe.encode(&[[pt.0, pt.1]], &[1], None, None)
            .map(|_| ())
            .map_err(lib)
    })?;
    rows.push(("prompt_encoder", 1, m, p));
    let dec = sam.mask_decoder();
    let out = dec
        .forward(&features, sam.dense_pe(), &sparse, n, &dense, true)
        .map_err(lib)?;
    let (m, p) = time_ms(a.iters, || {
        dec.forward(&features, sam.dense_pe(), &sparse, n, &dense, true)
            .map(|_| ())
            .map_err(lib)
    })?;
    rows.push(("mask_decoder", 1, m, p));
    let (m, p) = time_ms(a.iters, || {
        let m = sam
            .mask_frame()
            .postprocess_threshold(&out.low_res, out.num_masks, input_size, orig)
            .map_err(lib)?;
        std::hint::black_box(m);
        Ok(())
    })?;
    rows.push(("postprocess", 1, m, p));
    // One point prompt end to end, as a user calls it: encode, decode, masks at the
    // original size.
    let emb = ImageEmbedding {
        features: features.clone(),
        original_size: orig,
        input_size,
        device: None,
    };
    let (m, p) = time_ms(a.iters, || {
        std::hint::black_box(sam.predict(&emb, &prompt).map_err(lib)?);
        Ok(())
    })?;
    rows.push(("decoder", 1, m, p));
    // N single-point prompts on a grid: low-res logits and scores.
    let side = (a.prompts as f64).sqrt().ceil() as usize;
    let grid: Vec<[f32; 2]> = (0..a.prompts)
        .map(|i| {
            let (gx, gy) = ((i % side) as f64 + 0.5, (i / side) as f64 + 0.5);
            let (x, y) = samrt::io::image::transform_coords_f64(
                gx / side as f64 * ORIG_W as f64,
                gy / side as f64 * ORIG_H as f64,
                orig,
                input_size,
            );
            [x, y]
        })
        .collect();
    let (m, p) = time_ms(a.iters, || {
        let image = sam.prepare_points(&features).map_err(lib)?;
        std::hint::black_box(sam.decode_points(&image, &grid).map_err(lib)?);
        Ok(())
    })?;
    rows.push(("decoder_batch", a.prompts, m, p));
    if a.auto {
        let cfg = AmgConfig::default();
        let (m, p) = time_ms(a.iters, || {
            std::hint::black_box(generate(&sam, &img, &cfg).map_err(lib)?);
            Ok(())
        })?;
        rows.push(("auto", 1, m, p));
    }
    let peak = peak_rss_mb();

    if a.json {
        let device = format!(
            "CPU: {} ({} threads)",
            cpu_name(),
            rayon::current_num_threads()
        );
        print_json(&model, &rows, peak, device, serde_json::Value::Null);
    } else {
        println!("samrt bench: {model} on CPU ({}, {} threads), original {ORIG_W}x{ORIG_H}, {} iterations after 1 warm-up", cpu_name(), rayon::current_num_threads(), a.iters);
        println!(
            "{:<16} {:>6} {:>12} {:>12}",
            "component", "batch", "median ms", "p90 ms"
        );
        for (c, b, m, p) in &rows {
            println!("{c:<16} {b:>6} {m:>12.2} {p:>12.2}");
        }
        println!("peak memory (RSS): {peak} MB");
    }
    Ok(())
}

/// `--device cuda`: the image encoder on the GPU, timed with CUDA events around each replay
/// of its captured graph (batch `--batch`), plus each kernel's median time run eagerly, the
/// host-inclusive `embed_batch` wall time, and the planned peak device memory.
fn run_cuda(a: &BenchArgs, device: samrt::ComputeDevice) -> Result<(), CliError> {
    let (sam, model) = load_on(&a.model, device, a.image_size)?;
    let lib = |e: samrt::Error| CliError::msg(e.to_string());
    let enc = sam.encoder_backend().map_err(lib)?;
    let info = enc
        .device()
        .ok_or_else(|| CliError::msg("the model's image encoder is not on a device"))?;
    let img = synthetic_image()?;
    let mut rows: Vec<(String, usize, f64, f64)> = Vec::new();
    let (m, p) = median_p90(enc.time_runs(&img, a.batch, a.iters).map_err(lib)?);
    rows.push(("encoder".into(), a.batch, m, p));
    let imgs = vec![&img; a.batch];
    let (m, p) = time_ms(a.iters, || {
        std::hint::black_box(sam.embed_batch(&imgs).map_err(lib)?);
        Ok(())
    })?;
    rows.push(("encoder_end_to_end".into(), a.batch, m, p));
    let mut per_op: Vec<(String, f64)> = Vec::new();
    for n in enc.time_kernels(&img, a.batch, a.iters).map_err(lib)? {
        // One row per kernel entry point; the attention's entry point varies with the window
        // and head size, so its row is the op's, summed over the variants.
        let (op, ms) = match n.op {
            "attn_relpos" => (n.op.to_string(), n.median_ms),
            _ => (n.entry_point, n.median_ms),
        };
        match per_op.iter_mut().find(|(o, _)| *o == op) {
            Some(e) => e.1 += ms,
            None => per_op.push((op, ms)),
        }
    }
    for (op, ms) in per_op {
        rows.push((format!("encoder.{op}"), a.batch, ms, ms));
    }
    decoder_rows(&sam, &img, a, &mut rows)?;
    let (wb, ab) = enc
        .planned_bytes(a.batch)
        .ok_or_else(|| CliError::msg("the image encoder's device has no memory plan"))?;
    let peak = ((wb + ab) as f64 / 1e6).round() as u64;
    let dev = format!(
        "GPU: {} (cc {}.{}, {} SMs)",
        info.name, info.compute_capability.0, info.compute_capability.1, info.multiprocessors
    );
    if a.json {
        print_json(
            &model,
            &rows,
            peak,
            dev,
            serde_json::json!(info.driver_version),
        );
    } else {
        println!(
            "samrt bench: {model} image encoder and mask decoder on {dev}, batch {}, {} iterations after 1 warm-up (encoder: CUDA events; decoder: wall clock)",
            a.batch, a.iters
        );
        println!(
            "{:<32} {:>6} {:>12} {:>12}",
            "component", "batch", "median ms", "p90 ms"
        );
        for (c, b, m, p) in &rows {
            println!("{c:<32} {b:>6} {m:>12.3} {p:>12.3}");
        }
        println!(
            "peak device memory (planned): {peak} MB = weights {:.1} MB + arena {:.1} MB",
            wb as f64 / 1e6,
            ab as f64 / 1e6
        );
    }
    Ok(())
}

/// The decoder on the device: `decoder`, one point prompt end to end as a user calls it
/// (`predict` on the resident embedding: prompt encoder, mask decoder, post-processing to
/// the 1500x2250 original, packed masks back), and `decoder_batch`, `--prompts`
/// single-point prompts decoded with their low-res logits and scores left on the device
/// (tools/gpu-run.sh runs 64 and 1,024). Wall clock, host work included.
fn decoder_rows(
    sam: &Sam,
    img: &samrt::io::image::RgbImage,
    a: &BenchArgs,
    rows: &mut Vec<(String, usize, f64, f64)>,
) -> Result<(), CliError> {
    let lib = |e: samrt::Error| CliError::msg(format!("timing the mask decoder: {e}"));
    let dec = sam
        .decoder_backend()
        .ok_or_else(|| CliError::msg("the model's mask decoder is not on a device"))?;
    let emb = sam.embed(img).map_err(lib)?;
    let prompt = Prompt {
        points: vec![[ORIG_W as f64 / 2.0, ORIG_H as f64 / 3.0]],
        labels: vec![1],
        multimask: true,
        ..Default::default()
    };
    let (m, p) = time_ms(a.iters, || {
        std::hint::black_box(sam.predict(&emb, &prompt).map_err(lib)?);
        Ok(())
    })?;
    rows.push(("decoder".into(), 1, m, p));
    let n = a.prompts;
    let (_, prompts) = decoder_inputs(sam, n);
    let views: Vec<_> = prompts.iter().map(|p| p.as_view()).collect();
    let t = dec
        .time_decode(&emb.features, &views, a.iters)
        .map_err(lib)?;
    let (m, p) = median_p90(t);
    rows.push(("decoder_batch".into(), n, m, p));
    Ok(())
}

/// A deterministic embedding of a trained model's scale and `n` single-point prompts on a
/// grid over the input frame: the decoder's kernels and counters do not depend on values.
pub(super) fn decoder_inputs(
    sam: &samrt::Sam,
    n: usize,
) -> (Vec<f32>, Vec<samrt::cuda::model::mask_decoder::OwnedPrompt>) {
    let len: usize = sam.embedding_shape().iter().product();
    let features = (0..len)
        .map(|i| (((i * 2_654_435_761usize) >> 11) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let size = sam.config.encoder.img_size as f32;
    let side = (n as f64).sqrt().ceil() as usize;
    let prompts = (0..n)
        .map(|i| {
            let xy = [
                ((i % side) as f32 + 0.5) / side as f32 * size,
                ((i / side) as f32 + 0.5) / side as f32 * size,
            ];
            samrt::cuda::model::mask_decoder::OwnedPrompt::point(xy)
        })
        .collect();
    (features, prompts)
}
