//! Opening a model file of either format. A `.pth` is converted to fp16 safetensors once and
//! the result kept in a cache directory, keyed by the source's canonical path, size and
//! modification time, so later runs memory-map it instead of re-parsing 2.5 GB of pickle/zip.

use super::pth::read_pth;
use super::safetensors::{write_safetensors_f16, Checkpoint};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bumped whenever the conversion changes, so stale cache files are not reused.
const CACHE_FORMAT: u32 = 1;

/// The two formats samrt reads, told apart by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// torch.save zip archive ("PK\x03\x04").
    Pth,
    /// 8-byte header length followed by a JSON object.
    Safetensors,
}

/// Sniffs the format from the first bytes, whatever the extension says.
pub fn detect_format(path: &Path) -> Result<Format> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 9];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    let head = &head[..got];
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Format::Pth);
    }
    if head.len() == 9 && head[8] == b'{' {
        let mut n = [0u8; 8];
        n.copy_from_slice(&head[..8]);
        if u64::from_le_bytes(n) <= len - 8 {
            return Ok(Format::Safetensors);
        }
    }
    if head.starts_with(&[0x80, 0x02]) {
        return Err(Error::Unsupported(format!(
            "{}: legacy (pre-1.6, non-zip) torch.save format; re-save it with a newer torch",
            path.display()
        )));
    }
    Err(Error::Checkpoint(format!(
        "{}: neither a PyTorch zip checkpoint nor a safetensors file",
        path.display()
    )))
}

/// `$SAMRT_CACHE_DIR`, else `$XDG_CACHE_HOME/samrt`, else `$HOME/.cache/samrt`.
pub fn cache_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("SAMRT_CACHE_DIR") {
        return Ok(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Ok(d.join("samrt"));
    }
    if let Some(h) = var("HOME") {
        return Ok(h.join(".cache").join("samrt"));
    }
    Err(Error::Unsupported(
        "no cache directory: set SAMRT_CACHE_DIR (or HOME)".into(),
    ))
}

/// 64-bit FNV-1a: stable across Rust versions, unlike `DefaultHasher`, which matters for a
/// name that must survive upgrades.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.iter().chain(&[0xFF]) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The cache file for a `.pth`: `<stem>-<hash>.f16.safetensors` in `cache_dir()`.
pub fn cache_path(pth: &Path) -> Result<PathBuf> {
    let canon = pth.canonicalize().map_err(|e| Error::io(pth, e))?;
    let meta = std::fs::metadata(&canon).map_err(|e| Error::io(pth, e))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let hash = fnv1a(&[
        canon.to_string_lossy().as_bytes(),
        &meta.len().to_le_bytes(),
        &mtime.to_le_bytes(),
        &CACHE_FORMAT.to_le_bytes(),
    ]);
    let stem: String = pth
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(cache_dir()?.join(format!("{stem}-{hash:016x}.f16.safetensors")))
}

/// Opens a model file. Safetensors are mapped directly; a `.pth` goes through the cache. The
/// message, when present, tells the user about a conversion or cache hit.
pub fn open_model(path: &Path) -> Result<(Checkpoint, Option<String>)> {
    open_tracked(path).map(|(ck, msg, _)| (ck, msg))
}

/// Opens a model file as [`open_model`] does and builds `T` from it (e.g. a `Sam`). A cached
/// conversion whose weights `build` finds NaN or infinite was damaged after it was written,
/// since the conversion refuses such values: it is rebuilt from the `.pth` once and `build`
/// runs again. A damaged `.pth` still fails, naming the tensor.
pub fn load_model<T>(
    path: &Path,
    build: impl Fn(&Checkpoint) -> Result<T>,
) -> Result<(T, Option<String>)> {
    let (ck, msg, cache_hit) = open_tracked(path)?;
    match build(&ck) {
        Err(Error::NonFinite(why)) if cache_hit => {
            let cached = ck.path().map(Path::to_path_buf);
            drop(ck);
            let cached = cached.map_or_else(|| cache_path(path), Ok)?;
            let ck = convert_into(path, &cached)?;
            let model = build(&ck)?;
            let msg = format!(
                "the cached conversion {} was damaged ({why}); rebuilt it from {}",
                cached.display(),
                path.display()
            );
            Ok((model, Some(msg)))
        }
        other => other.map(|model| (model, msg)),
    }
}

/// [`open_model`], also saying whether the checkpoint is an existing cache file.
fn open_tracked(path: &Path) -> Result<(Checkpoint, Option<String>, bool)> {
    match detect_format(path)? {
        Format::Safetensors => Ok((Checkpoint::open(path)?, None, false)),
        Format::Pth => {
            let cached = cache_path(path)?;
            if cached.is_file() {
                // A damaged cache file is rebuilt rather than reported.
                if let Ok(ck) = Checkpoint::open(&cached) {
                    let msg = format!("using cached conversion {}", cached.display());
                    return Ok((ck, Some(msg), true));
                }
            }
            let ck = convert_into(path, &cached)?;
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let msg = format!(
                "converted {} to fp16 safetensors at {} (cached for next time)",
                name.unwrap_or_else(|| path.display().to_string()),
                cached.display()
            );
            Ok((ck, Some(msg), false))
        }
    }
}

/// Converts the `.pth` at `path` into the cache file `cached` (atomically replacing any old
/// one) and opens the result.
fn convert_into(path: &Path, cached: &Path) -> Result<Checkpoint> {
    let tensors = read_pth(path)?;
    if let Some(dir) = cached.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_safetensors_f16(cached, &tensors)?;
    drop(tensors);
    Checkpoint::open(cached)
}
