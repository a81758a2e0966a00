//! One vit_b encoder block on random weights: a windowed block (14x14 windows, 64->70
//! padding) and a global-attention block, on a full 64x64 token map. Model-level latency is
//! `tools/bench_cpu.py`; this isolates the block for kernel work.

use criterion::{criterion_group, criterion_main, Criterion};
use samrt::cpu::model::image_encoder::{random_encoder_weights, ImageEncoder};
use samrt::io::config::EncoderConfig;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    // vit_b widths, two blocks: 0 windowed, 1 global.
    let cfg = EncoderConfig::standard(768, 2, 12, vec![1]);
    let enc = ImageEncoder::load(&random_encoder_weights(&cfg, 7), &cfg).expect("encoder");
    let tokens = cfg.grid() * cfg.grid();
    let x0: Vec<f32> = (0..tokens * cfg.embed_dim)
        .map(|i| ((i as f32) * 0.0173).sin())
        .collect();

    let mut g = c.benchmark_group("encoder_block_vit_b");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for (name, i) in [("windowed", 0), ("global", 1)] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut x = x0.clone();
                enc.block_forward(i, &mut x).expect("block");
                black_box(x)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
