//! Reads a torch.save zip checkpoint holding a flat state dict into f16 tensors.
//!
//! Layout: `<prefix>/data.pkl` (the pickle), `<prefix>/data/<key>` (one raw little-endian
//! storage per key), optional `<prefix>/byteorder`. The prefix is the saved file's stem for
//! older torch versions and "archive" for newer ones, so it is taken from data.pkl's path.

use super::pickle::{self, TensorRef};
use super::tensor::{bytes_to_f16, checked_numel};
use super::zip::{ZipArchive, ZipEntry};
use crate::error::{Error, Result};
use crate::io::weights::TensorF16;
use half::f16;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// The bytes a pre-1.6 (non-zip) torch.save starts with: pickle protocol 2 then LONG1 of the
/// magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: [u8; 4] = [0x80, 0x02, 0x8a, 0x0a];

/// Reads `path` (memory-mapped) and converts every tensor to f16, in state-dict order.
pub fn read_pth(path: &Path) -> Result<Vec<TensorF16>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and dropped before returning; the file being truncated by
    // another process while we read it is outside what any reader can defend against.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    read_pth_bytes(&map).map_err(|e| match e {
        Error::Checkpoint(m) => Error::Checkpoint(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Reads a checkpoint already in memory.
pub fn read_pth_bytes(data: &[u8]) -> Result<Vec<TensorF16>> {
    if data.starts_with(&LEGACY_MAGIC) {
        return Err(Error::Unsupported(
            "this is the legacy (pre-1.6, non-zip) torch.save format; re-save it with \
             torch.save(torch.load(path), path) using torch >= 1.6"
                .into(),
        ));
    }
    let archive = ZipArchive::parse(data)?;
    let prefix = find_prefix(&archive)?;
    check_byteorder(&archive, &prefix)?;
    let pkl = archive
        .find(&format!("{prefix}data.pkl"))
        .ok_or_else(|| Error::Zip("data.pkl vanished".into()))?;
    let tensors = pickle::load_state_dict(archive.read(pkl, true)?)?;

    let storages: HashMap<&str, &ZipEntry> = archive
        .entries()
        .iter()
        .filter_map(|e| Some((e.name.strip_prefix(&prefix)?.strip_prefix("data/")?, e)))
        .collect();
    let mut verified: HashSet<String> = HashSet::new();
    // Views may repeat or broadcast a storage, but a real checkpoint's tensors never hold
    // more elements than the file has bytes; the cap (output <= 2x the file + 2 MiB) keeps a
    // hostile shape from demanding terabytes.
    let max_total = data.len().saturating_add(1 << 20);
    let mut total = 0usize;
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let numel = checked_numel(&t.shape).ok_or_else(|| {
            Error::Checkpoint(format!(
                "tensor `{name}` has an overflowing shape {:?}",
                t.shape
            ))
        })?;
        total = total.saturating_add(numel);
        if total > max_total {
            return Err(Error::Checkpoint(format!(
                "tensor `{name}` {:?}: the tensors hold more elements than the file could back",
                t.shape
            )));
        }
        let key = &t.storage.key;
        let entry = storages.get(key.as_str()).ok_or_else(|| {
            Error::Checkpoint(format!(
                "tensor `{name}` refers to storage `{key}` but {prefix}data/{key} is missing"
            ))
        })?;
        let verify = verified.insert(key.clone());
        let bytes = archive.read(entry, verify)?;
        let data = convert(&name, &t, bytes)?;
        out.push(TensorF16 {
            name,
            shape: t.shape,
            data,
        });
    }
    Ok(out)
}

/// The directory holding data.pkl, with its trailing slash.
fn find_prefix(archive: &ZipArchive) -> Result<String> {
    let mut found = archive.entries().iter().filter_map(|e| {
        let p = e.name.strip_suffix("data.pkl")?;
        (p.ends_with('/') && p.matches('/').count() == 1).then(|| p.to_string())
    });
    match (found.next(), found.next()) {
        (Some(p), None) => Ok(p),
        (None, _) => Err(Error::Zip(
            "no <archive>/data.pkl entry: this zip is not a torch.save checkpoint".into(),
        )),
        (Some(a), Some(b)) => Err(Error::Zip(format!(
            "two pickles ({a}data.pkl and {b}data.pkl); cannot tell which is the checkpoint"
        ))),
    }
}

fn check_byteorder(archive: &ZipArchive, prefix: &str) -> Result<()> {
    if let Some(e) = archive.find(&format!("{prefix}byteorder")) {
        let order = archive.read(e, false)?;
        if order != b"little" {
            return Err(Error::Unsupported(format!(
                "checkpoint byte order `{}`; only little-endian checkpoints are supported",
                String::from_utf8_lossy(&order[..order.len().min(16)])
            )));
        }
    }
    Ok(())
}

/// Gathers the tensor's elements (honouring storage offset and strides) and converts them.
fn convert(name: &str, t: &TensorRef, bytes: &[u8]) -> Result<Vec<f16>> {
    let dtype = t.storage.dtype;
    let es = dtype.size();
    let storage_bytes = t.storage.numel.checked_mul(es);
    if storage_bytes != Some(bytes.len()) {
        return Err(Error::Checkpoint(format!(
            "tensor `{name}`: storage `{}` should hold {} {} elements but its entry has {} bytes",
            t.storage.key,
            t.storage.numel,
            dtype.name(),
            bytes.len()
        )));
    }
    let numel = checked_numel(&t.shape).unwrap_or(usize::MAX);
    if numel == 0 {
        return Ok(Vec::new());
    }
    // Highest element index the view touches; must lie inside the storage.
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
    match last {
        Some(l) if l < t.storage.numel => {}
        _ => {
            return Err(Error::Checkpoint(format!(
                "tensor `{name}` (shape {:?}, stride {:?}, offset {}) reaches past its storage of {} elements",
                t.shape, t.stride, t.offset, t.storage.numel
            )))
        }
    }
    if is_contiguous(&t.shape, &t.stride) {
        let start = t.offset * es;
        return bytes_to_f16(&bytes[start..start + numel * es], dtype, name);
    }
    // Strided view: gather element bytes in row-major order, then convert in one pass.
    let mut gathered = Vec::with_capacity(numel * es);
    let mut idx = vec![0usize; t.shape.len()];
    let mut off = t.offset;
    for _ in 0..numel {
        gathered.extend_from_slice(&bytes[off * es..off * es + es]);
        // Wrapping steps stay exact modulo 2^64: a size-1 dimension may carry any stride.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            off = off.wrapping_add(t.stride[d]);
            if idx[d] < t.shape[d] {
                break;
            }
            off = off.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]));
            idx[d] = 0;
        }
    }
    bytes_to_f16(&gathered, dtype, name)
}

/// Row-major contiguity, ignoring the stride of size-1 dimensions as torch does.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}
