//! Writes a random, well-conditioned SAM checkpoint (official tensor names, fp16
//! safetensors) of a named configuration, the same weights `samrt bench` times: for timing
//! file-based paths (`segment --embedding`, the Python package) without downloading one.
//!
//! `cargo run --release --example random_checkpoint -- vit_b /tmp/vit_b_random.safetensors`

use samrt::cpu::model::image_encoder::random_encoder_weights;
use samrt::cpu::model::mask_decoder::random_decoder_weights;
use samrt::io::checkpoint::{write_safetensors_f16, TensorF16};
use samrt::io::config::SamConfig;
use samrt::io::weights::WeightSource;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, out] = args.as_slice() else {
        return Err("usage: random_checkpoint vit_b|vit_l|vit_h OUT.safetensors".into());
    };
    let cfg = SamConfig::by_name(name).ok_or("model must be vit_b, vit_l or vit_h")?;
    let mut w = random_encoder_weights(&cfg.encoder, 1);
    w.tensors.extend(random_decoder_weights(&cfg, 2).tensors);
    let tensors: Vec<TensorF16> = w
        .names()
        .into_iter()
        .map(|n| {
            let (shape, data) = &w.tensors[&n];
            TensorF16 {
                name: n.clone(),
                shape: shape.clone(),
                data: data.iter().map(|&v| half::f16::from_f32(v)).collect(),
            }
        })
        .collect();
    write_safetensors_f16(std::path::Path::new(out), &tensors)?;
    eprintln!("wrote {} tensors to {out}", tensors.len());
    Ok(())
}
