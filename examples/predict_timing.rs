//! The library's `predict` timed for one point prompt on one image: the reference that
//! tools/serve_load.py holds `samrt serve`'s single-request latency to (HTTP + JSON + RLE
//! overhead). Prints JSON: median and p90 in ms for `predict` and for `predict_independent`
//! (the server's decoder call), plus both with the COCO RLE of every mask, a 16-prompt
//! batch per prompt, `prepare_points` (the per-call image side) and the thread count
//! (`RAYON_NUM_THREADS`).
//!
//! `cargo run --release --example predict_timing -- MODEL.safetensors IMAGE X Y ITERS`

use samrt::amg::rle::Rle;
use std::time::Instant;

fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(|a, b| a.total_cmp(b));
    (t[t.len() / 2], t[(t.len() * 9).div_ceil(10) - 1])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, image, x, y, iters] = args.as_slice() else {
        return Err("usage: predict_timing MODEL IMAGE X Y ITERS".into());
    };
    let iters: usize = iters.parse()?;
    let (sam, _) = samrt::Sam::load(std::path::Path::new(model))?;
    let img = samrt::io::image::load_image(std::path::Path::new(image))?;
    let emb = sam.embed(&img)?;
    let prompt = samrt::Prompt {
        points: vec![[x.parse()?, y.parse()?]],
        labels: vec![1],
        multimask: true,
        ..Default::default()
    };
    let mut out = serde_json::Map::new();
    for (name, rle) in [("predict", false), ("predict_rle", true)] {
        for independent in [false, true] {
            let mut t = Vec::new();
            for k in 0..=iters {
                let s = Instant::now();
                let p = if independent {
                    sam.predict_independent(&emb, std::slice::from_ref(&prompt))?
                        .remove(0)
                } else {
                    sam.predict(&emb, &prompt)?
                };
                if rle {
                    for i in 0..p.num_masks {
                        std::hint::black_box(
                            Rle::from_mask(p.mask(i), p.height, p.width)?.coco_string(),
                        );
                    }
                }
                if k > 0 {
                    t.push(s.elapsed().as_secs_f64() * 1e3);
                }
            }
            let (p50, p90) = stats(t);
            let key = if independent {
                format!("{name}_independent")
            } else {
                name.to_string()
            };
            out.insert(key, serde_json::json!({"p50_ms": p50, "p90_ms": p90}));
        }
    }
    // The server's best case for dynamic batching, without HTTP: one `predict_independent`
    // call holding `BATCH` copies of the prompt, per prompt, next to the lone call.
    let batch: usize = match std::env::var("PREDICT_TIMING_BATCH") {
        Ok(v) => v.parse()?,
        Err(_) => 16,
    };
    let many = vec![prompt.clone(); batch];
    let mut t = Vec::new();
    for k in 0..=iters.div_ceil(4) {
        let s = Instant::now();
        std::hint::black_box(sam.predict_independent(&emb, &many)?);
        if k > 0 {
            t.push(s.elapsed().as_secs_f64() * 1e3 / batch as f64);
        }
    }
    let (p50, p90) = stats(t);
    out.insert(
        format!("predict_independent_batch{batch}_per_prompt"),
        serde_json::json!({"p50_ms": p50, "p90_ms": p90}),
    );
    // The per-call image side that a batch shares and a lone prompt pays alone.
    let mut t = Vec::new();
    for k in 0..=iters {
        let s = Instant::now();
        std::hint::black_box(sam.prepare_points(&emb.features)?);
        if k > 0 {
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (p50, p90) = stats(t);
    out.insert(
        "prepare_points".into(),
        serde_json::json!({"p50_ms": p50, "p90_ms": p90}),
    );
    out.insert(
        "threads".into(),
        serde_json::json!(rayon::current_num_threads()),
    );
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}
