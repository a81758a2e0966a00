//! Prompt encoder + mask decoder on random weights: one single-point prompt, and a batch of
//! 64 single-point prompts (the automatic mask generator's points_per_batch) through
//! forward_batch.

use criterion::{criterion_group, criterion_main, Criterion};
use samrt::cpu::model::mask_decoder::{random_decoder_weights, MaskDecoder};
use samrt::cpu::model::prompt_encoder::PromptEncoder;
use samrt::io::config::SamConfig;
use std::hint::black_box;
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let cfg = SamConfig::by_name("vit_b").expect("config");
    let w = random_decoder_weights(&cfg, 42);
    let pe = PromptEncoder::load(&w, &cfg).expect("prompt encoder");
    let md = MaskDecoder::load(&w, &cfg).expect("mask decoder");
    let image: Vec<f32> = (0..256 * 4096)
        .map(|i| ((i as f32) * 0.0137).sin() * 0.6)
        .collect();
    let dense_pe = pe.dense_pe();

    let mut g = c.benchmark_group("decoder");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("single_point_encode_and_decode", |b| {
        b.iter(|| {
            let (s, n, d) = pe
                .encode(&[[412.0, 377.0]], &[1], None, None)
                .expect("encode");
            black_box(
                md.forward(&image, &dense_pe, &s, n, &d, true)
                    .expect("decode"),
            )
        })
    });
    let prompts: Vec<_> = (0..64)
        .map(|i| {
            let (x, y) = ((i % 8) as f32 * 128.0 + 64.0, (i / 8) as f32 * 128.0 + 64.0);
            pe.encode(&[[x, y]], &[1], None, None).expect("encode")
        })
        .collect();
    g.measurement_time(Duration::from_secs(30));
    g.bench_function("forward_batch_64_points", |b| {
        b.iter(|| {
            black_box(
                md.forward_batch(&image, &dense_pe, &prompts, true)
                    .expect("batch"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
