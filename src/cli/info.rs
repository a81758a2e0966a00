//! `samrt info`: the configuration inferred from a checkpoint and, for CUDA, the planned
//! device memory.

use super::common::{CliError, Context, Device};

/// The weights of `file` without side effects: a `.pth` is read through its conversion
/// cache when one exists, else parsed in memory (`info` never writes the cache).
fn open_readonly(
    file: &std::path::Path,
) -> Result<Box<dyn samrt::io::weights::WeightSource>, CliError> {
    use samrt::io::checkpoint::{cache_path, detect_format, read_pth, Checkpoint, Format};
    let ctx = || format!("reading {}", file.display());
    if detect_format(file).context(ctx)? == Format::Safetensors {
        return Ok(Box::new(Checkpoint::open(file).context(ctx)?));
    }
    if let Ok(ck) = cache_path(file).and_then(|c| Checkpoint::open(&c)) {
        return Ok(Box::new(ck));
    }
    let tensors = read_pth(file).context(ctx)?;
    Ok(Box::new(samrt::io::weights::F16Weights::new(tensors)))
}

/// `graph`: print the CUDA schedule too, for the given input size (None: the model's).
pub fn info(
    file: &std::path::Path,
    device: Device,
    batch: usize,
    graph: Option<Option<usize>>,
) -> Result<(), CliError> {
    let ck = open_readonly(file)?;
    let ck = ck.as_ref();
    let cfg =
        samrt::io::config::infer_config(ck).context(|| format!("reading {}", file.display()))?;
    let e = &cfg.encoder;
    let name = match (e.embed_dim, e.depth, e.num_heads) {
        (768, 12, 12) => "vit_b",
        (1024, 24, 16) => "vit_l",
        (1280, 32, 16) => "vit_h",
        _ => "custom",
    };
    println!("model: {name}");
    println!("embed_dim: {}", e.embed_dim);
    println!("depth: {}", e.depth);
    println!("num_heads: {}", e.num_heads);
    println!("head_dim: {}", e.head_dim);
    println!("mlp_dim: {}", e.mlp_dim);
    println!("window_size: {}", e.window_size);
    println!("global_attn_indexes: {:?}", e.global_attn_indexes);
    println!("image_size: {}", e.img_size);
    println!("patch_size: {}", e.patch_size);
    println!("prompt_embed_dim: {}", cfg.prompt_embed_dim);
    println!("parameters: {}", samrt::io::config::param_count(ck));
    if device != Device::Cpu {
        device_plan(ck, &cfg, batch)?;
    }
    if let Some(size) = graph {
        print_graph(ck, &cfg, batch, size)?;
    }
    Ok(())
}

/// The encoder's and the mask decoder's schedules as the CUDA backend would run them. Kernel
/// entry points are named the same on every device (sm_80 and later); on compute capability
/// 9.0 some of them run their `*_sm90a` build (the GEMMs, the S = 64 attentions).
fn print_graph(
    ck: &dyn samrt::io::weights::WeightSource,
    cfg: &samrt::io::config::SamConfig,
    batch: usize,
    image_size: Option<usize>,
) -> Result<(), CliError> {
    let max = samrt::sam::backend::CUDA_MAX_BATCH;
    if batch == 0 || batch > max {
        return Err(CliError::msg(format!("--batch {batch}: must be 1..={max}")));
    }
    let cfg = match image_size {
        Some(s) => cfg
            .at_image_size(s)
            .context(|| format!("--image-size {s}"))?,
        None => cfg.clone(),
    };
    let img = cfg.encoder.img_size;
    let p = samrt::sam::backend::plan_cuda_encoder(ck, &cfg.encoder, batch)
        .context(|| "planning the CUDA encoder".to_string())?;
    println!("graph: image_encoder, batch {batch}, image {img}x{img}, arch sm_80");
    print!("{}", p.describe());
    print_decoder_graph(ck, &cfg, batch)
}

/// The mask decoder's schedule for one-point prompts (two sparse tokens: the point and the
/// official pad point), at the power-of-two batch the device decoder would run `batch`
/// prompts in.
fn print_decoder_graph(
    ck: &dyn samrt::io::weights::WeightSource,
    cfg: &samrt::io::config::SamConfig,
    batch: usize,
) -> Result<(), CliError> {
    use samrt::cuda::model::decoder_weights::{plan_decoder, plan_decoder_image};
    use samrt::cuda::model::mask_decoder::{DecoderKey, MAX_DECODE_BATCH};
    let prep =
        plan_decoder_image(ck, cfg).context(|| "planning the CUDA mask decoder".to_string())?;
    println!("graph: mask_decoder image prep, once per image, arch sm_80");
    print!("{}", prep.describe());
    let key = DecoderKey {
        batch: batch.min(MAX_DECODE_BATCH).next_power_of_two(),
        sparse: 2,
        mask_input: false,
    };
    let p = plan_decoder(ck, cfg, key).context(|| "planning the CUDA mask decoder".to_string())?;
    println!(
        "graph: mask_decoder, batch {}, one point per prompt, arch sm_80",
        key.batch
    );
    print!("{}", p.describe());
    Ok(())
}

/// The CUDA encoder's planned device memory. Planning is host-only, but `--device cuda`
/// asks about this build's device, so a build without the `cuda` feature says so.
fn device_plan(
    ck: &dyn samrt::io::weights::WeightSource,
    cfg: &samrt::io::config::SamConfig,
    batch: usize,
) -> Result<(), CliError> {
    if !samrt::sam::backend::CUDA_BUILT {
        return super::common::cuda_device().map(|_| ());
    }
    let max = samrt::sam::backend::CUDA_MAX_BATCH;
    if batch == 0 || batch > max {
        return Err(CliError::msg(format!("--batch {batch}: must be 1..={max}")));
    }
    let p = samrt::sam::backend::plan_cuda_encoder(ck, &cfg.encoder, batch)
        .context(|| "planning the CUDA encoder".to_string())?;
    let (w, arena) = (p.weight_bytes, p.plan.arena_bytes);
    let mb = |b: usize| b as f64 / 1e6;
    println!("cuda_encoder_batch: {batch}");
    println!("cuda_weights_mb: {:.1}", mb(w));
    println!("cuda_arena_mb: {:.1}", mb(arena));
    println!("cuda_peak_mb: {:.1}", mb(w + arena));
    Ok(())
}
