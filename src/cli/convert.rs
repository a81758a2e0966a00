//! `samrt convert`: an official `.pth` to fp16 safetensors, checked to describe a SAM model.

use super::common::{CliError, Context};

/// Whether `a` and `b` name the same existing file, through symlinks or hard links.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
    }
}

pub fn convert(input: &std::path::Path, output: &std::path::Path) -> Result<(), CliError> {
    let format = samrt::io::checkpoint::detect_format(input)
        .context(|| format!("reading {}", input.display()))?;
    if format == samrt::io::checkpoint::Format::Safetensors {
        return Err(CliError::msg(format!(
            "convert: {} is already a safetensors file; pass it to --model as it is \
             (convert reads official PyTorch .pth checkpoints)",
            input.display()
        )));
    }
    if same_file(input, output) {
        return Err(CliError::msg(format!(
            "convert: the output {} is the input file itself (directly or through a link); \
             writing it would destroy the checkpoint",
            output.display()
        )));
    }
    let tensors = samrt::io::checkpoint::pth::read_pth(input)
        .context(|| format!("reading {}", input.display()))?;
    samrt::io::checkpoint::safetensors::write_safetensors_f16(output, &tensors)
        .context(|| format!("writing {}", output.display()))?;
    // Validate what we wrote describes a SAM model, so a converted file is usable.
    let ck = samrt::io::checkpoint::safetensors::Checkpoint::open(output)
        .context(|| format!("re-opening {}", output.display()))?;
    let cfg = samrt::io::config::infer_config(&ck)
        .context(|| format!("checking {}", output.display()))?;
    eprintln!(
        "samrt: converted {} tensors ({} parameters, embed_dim {}, depth {}) to {}",
        tensors.len(),
        samrt::io::config::param_count(&ck),
        cfg.encoder.embed_dim,
        cfg.encoder.depth,
        output.display()
    );
    Ok(())
}
