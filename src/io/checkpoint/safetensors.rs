//! The safetensors format: an 8-byte little-endian header length, a JSON header mapping each
//! tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data
//! section) plus an optional `__metadata__` string map, then the raw little-endian data.
//!
//! samrt writes F16 only (the cache format); it reads F16, BF16 and F32 so externally made
//! files work too. `Checkpoint::open` validates the whole header before any tensor is used.

use super::tensor::{bytes_to_f32, checked_numel, DType};
use crate::error::{Error, Result};
use crate::io::weights::TensorF16;
use crate::io::weights::{check_shape, count_non_finite, non_finite_tensor, WeightSource};
use half::f16;
use rayon::prelude::*;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Header size limit: the vit_h header is about 60 KB; anything near this is not a model.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Highest tensor rank a header may declare.
const MAX_RANK: usize = 32;
/// Tensors at least this large are converted to f32 on several threads.
const PAR_MIN: usize = 1 << 18;

fn header_err(msg: impl fmt::Display) -> Error {
    Error::Checkpoint(format!("safetensors header: {msg}"))
}

/// Writes `tensors` as an F16 safetensors file, atomically: the data goes to a temporary
/// file in the same directory which is renamed over `path` only once complete and synced,
/// so a crash or a concurrent reader never sees half a file.
pub fn write_safetensors_f16(path: &Path, tensors: &[TensorF16]) -> Result<()> {
    let header = build_header(tensors)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Checkpoint(format!("{}: not a file path", path.display())))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{}.{}.{nanos}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_file(&tmp, &header, tensors)
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn build_header(tensors: &[TensorF16]) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    let mut json = String::from(r#"{"__metadata__":{"format":"pt","producer":"samrt"}"#);
    let mut offset = 0usize;
    for t in tensors {
        if t.name == "__metadata__" || !seen.insert(t.name.as_str()) {
            return Err(Error::Checkpoint(format!(
                "cannot write tensor name `{}` twice or as a reserved key",
                t.name
            )));
        }
        if checked_numel(&t.shape) != Some(t.data.len()) {
            return Err(Error::Checkpoint(format!(
                "tensor `{}` has shape {:?} but {} elements",
                t.name,
                t.shape,
                t.data.len()
            )));
        }
        let end = offset + t.data.len() * 2;
        let name = serde_json::to_string(&t.name).map_err(header_err)?;
        json.push_str(&format!(
            r#",{name}:{{"dtype":"F16","shape":{:?},"data_offsets":[{offset},{end}]}}"#,
            t.shape
        ));
        offset = end;
    }
    json.push('}');
    // Pad so the data section starts 8-byte aligned, as the safetensors writer does.
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    Ok(out)
}

fn write_file(tmp: &Path, header: &[u8], tensors: &[TensorF16]) -> Result<()> {
    let io = |e| Error::io(tmp, e);
    let file = std::fs::File::create(tmp).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    w.write_all(header).map_err(io)?;
    for t in tensors {
        if cfg!(target_endian = "little") {
            w.write_all(bytemuck::cast_slice(&t.data)).map_err(io)?;
        } else {
            for h in &t.data {
                w.write_all(&h.to_le_bytes()).map_err(io)?;
            }
        }
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

/// Where one tensor's bytes are, as absolute offsets into the file.
#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

enum Bytes {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated, memory-mapped safetensors checkpoint. Tensors are read lazily from the map,
/// so opening a 1.3 GB file costs only the header parse.
pub struct Checkpoint {
    bytes: Bytes,
    path: Option<PathBuf>,
    entries: HashMap<String, Entry>,
    metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Maps and validates a safetensors file.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < 8 {
            return Err(Error::Checkpoint(format!(
                "{}: {len} bytes is too short for a safetensors file",
                path.display()
            )));
        }
        // SAFETY: read-only map; samrt never writes to a file it has mapped (the cache is
        // replaced by rename, which leaves existing maps intact).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let mut ck = Self::parse(Bytes::Map(map)).map_err(|e| match e {
            Error::Checkpoint(m) => Error::Checkpoint(format!("{}: {m}", path.display())),
            other => other,
        })?;
        ck.path = Some(path.to_path_buf());
        Ok(ck)
    }

    /// Validates a safetensors image held in memory (tests, fuzzing, embedded weights).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Checkpoint> {
        Self::parse(Bytes::Owned(bytes))
    }

    fn parse(bytes: Bytes) -> Result<Checkpoint> {
        let data = bytes.as_slice();
        if data.len() < 8 {
            return Err(Error::Checkpoint(format!(
                "{} bytes is too short for a safetensors file",
                data.len()
            )));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&data[..8]);
        let n = u64::from_le_bytes(len8);
        if n > MAX_HEADER_BYTES || n > (data.len() - 8) as u64 {
            return Err(header_err(format!(
                "declared length {n} exceeds {} (file is {} bytes)",
                MAX_HEADER_BYTES.min((data.len() - 8) as u64),
                data.len()
            )));
        }
        let data_start = 8 + n as usize;
        let header: Header = serde_json::from_slice(&data[8..data_start]).map_err(header_err)?;
        let data_len = data.len() - data_start;
        let mut entries = HashMap::with_capacity(header.tensors.len());
        let mut ranges = Vec::with_capacity(header.tensors.len());
        for (name, raw) in header.tensors {
            let e = validate_entry(&name, raw, data_start, data_len)?;
            // Zero-sized tensors occupy no bytes; they may sit anywhere in the section.
            if e.end > e.start {
                ranges.push((e.start, e.end, name.clone()));
            }
            entries.insert(name, e);
        }
        // As the reference implementation requires, the (non-empty) tensors tile the data section
        // exactly: no overlap, no gap, and the last one ends at the end of the file. A header
        // length that is off by even one byte shifts every tensor, which then fails here
        // instead of loading as garbage.
        ranges.sort();
        let mut expected = data_start;
        let mut previous: Option<&str> = None;
        for (start, end, name) in &ranges {
            if *start != expected {
                return Err(header_err(match previous {
                    Some(p) if *start < expected => {
                        format!("tensors `{p}` and `{name}` overlap")
                    }
                    Some(p) => format!(
                        "{} unused between tensors `{p}` and `{name}`",
                        crate::error::count(start - expected, "byte")
                    ),
                    None => format!(
                        "the data section starts with {} that no tensor uses",
                        crate::error::count(start - expected, "byte")
                    ),
                }));
            }
            expected = *end;
            previous = Some(name);
        }
        if expected != data.len() {
            let k = data.len() - expected;
            return Err(header_err(format!(
                "the tensors end {k} byte{} before the end of the file: the declared header \
                 length ({n}) and the data size disagree",
                if k == 1 { "" } else { "s" }
            )));
        }
        Ok(Checkpoint {
            bytes,
            path: None,
            entries,
            metadata: header.metadata,
        })
    }

    /// The file this checkpoint was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The header's `__metadata__` map.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn dtype(&self, name: &str) -> Option<DType> {
        self.entries.get(name).map(|e| e.dtype)
    }

    /// Name, dtype and shape of every tensor, in the order their data lies in the file.
    pub fn tensors(&self) -> Vec<(&str, DType, &[usize])> {
        let mut v: Vec<_> = self.entries.iter().collect();
        v.sort_by_key(|(n, e)| (e.start, e.end, n.as_str()));
        v.into_iter()
            .map(|(n, e)| (n.as_str(), e.dtype, e.shape.as_slice()))
            .collect()
    }

    /// The tensor's stored bytes (little-endian, its own dtype), zero-copy.
    pub fn raw_bytes(&self, name: &str) -> Option<&[u8]> {
        let e = self.entries.get(name)?;
        Some(&self.bytes.as_slice()[e.start..e.end])
    }

    /// The tensor's f16 values straight from the map, for upload without a copy. None when
    /// the tensor is absent, is not stored as F16, or starts at an odd address (only possible
    /// for files from other writers with an odd header length; call `f32` instead then).
    /// Files written by samrt pad the header to 8 bytes, so their F16 tensors are aligned.
    pub fn raw_f16(&self, name: &str) -> Option<&[f16]> {
        let e = self.entries.get(name)?;
        if e.dtype != DType::F16 || !cfg!(target_endian = "little") {
            return None;
        }
        bytemuck::try_cast_slice(self.raw_bytes(name)?).ok()
    }
}

fn validate_entry(name: &str, raw: RawEntry, data_start: usize, data_len: usize) -> Result<Entry> {
    let bad = |m: String| header_err(format!("tensor `{name}`: {m}"));
    let dtype = match raw.dtype.as_deref() {
        Some("F16") => DType::F16,
        Some("BF16") => DType::BF16,
        Some("F32") => DType::F32,
        Some(other) => {
            return Err(bad(format!(
                "dtype {other} is not supported (F16, BF16 or F32)"
            )))
        }
        None => return Err(bad("no dtype".into())),
    };
    let shape = raw
        .shape
        .ok_or_else(|| bad("no shape".into()))?
        .into_iter()
        .map(usize::try_from)
        .collect::<std::result::Result<Vec<usize>, _>>()
        .map_err(|_| bad("shape does not fit in memory".into()))?;
    let offsets = raw.offsets.ok_or_else(|| bad("no data_offsets".into()))?;
    let [b, e] = offsets[..] else {
        return Err(bad(format!(
            "data_offsets has {} values, expected 2",
            offsets.len()
        )));
    };
    let nbytes = checked_numel(&shape)
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
    if b > e || e > data_len as u64 {
        return Err(bad(format!(
            "data_offsets [{b}, {e}] fall outside the {data_len}-byte data section"
        )));
    }
    if (e - b) != nbytes as u64 {
        return Err(bad(format!(
            "shape {shape:?} of {} needs {nbytes} bytes but data_offsets span {}",
            dtype.name(),
            e - b
        )));
    }
    Ok(Entry {
        dtype,
        shape,
        start: data_start + b as usize,
        end: data_start + e as usize,
    })
}

impl WeightSource for Checkpoint {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn f32(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        check_shape(self, name, expected)?;
        let e = &self.entries[name];
        let bytes = &self.bytes.as_slice()[e.start..e.end];
        let es = e.dtype.size();
        let mut out = vec![0f32; bytes.len() / es];
        // Each chunk is checked for NaN/inf right after its conversion, while it is in cache.
        let bad: usize = if out.len() >= PAR_MIN {
            let chunk = PAR_MIN / 4;
            out.par_chunks_mut(chunk)
                .zip(bytes.par_chunks(chunk * es))
                .map(|(o, b)| {
                    bytes_to_f32(b, e.dtype, o);
                    count_non_finite(o)
                })
                .sum()
        } else {
            bytes_to_f32(bytes, e.dtype, &mut out);
            count_non_finite(&out)
        };
        if bad > 0 {
            return Err(non_finite_tensor(name, bad, &out));
        }
        Ok(out)
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.keys().cloned().collect();
        v.sort();
        v
    }
}

/// The header, with tensor names checked for uniqueness while parsing (a JSON map would
/// silently keep the last duplicate).
struct Header {
    tensors: Vec<(String, RawEntry)>,
    metadata: BTreeMap<String, String>,
}

#[derive(Default)]
struct RawEntry {
    dtype: Option<String>,
    shape: Option<Vec<u64>>,
    offsets: Option<Vec<u64>>,
}

/// A JSON array of at most `MAX_RANK` unsigned integers, so a hostile header cannot make us
/// build a huge vector.
struct Dims(Vec<u64>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Header, A::Error> {
                let mut seen = HashSet::new();
                let mut h = Header {
                    tensors: Vec::new(),
                    metadata: BTreeMap::new(),
                };
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    if k == "__metadata__" {
                        h.metadata = m.next_value()?;
                    } else {
                        let e: RawEntry = m.next_value()?;
                        h.tensors.push((k, e));
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tensor entry {dtype, shape, data_offsets}")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<RawEntry, A::Error> {
                let mut e = RawEntry::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "dtype" => e.dtype = Some(m.next_value()?),
                        "shape" => e.shape = Some(m.next_value::<Dims>()?.0),
                        "data_offsets" => e.offsets = Some(m.next_value::<Dims>()?.0),
                        _ => {
                            m.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(e)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for Dims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Dims;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of at most {MAX_RANK} non-negative integers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Dims, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<u64>()? {
                    if v.len() == MAX_RANK {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_RANK} dimensions"
                        )));
                    }
                    v.push(x);
                }
                Ok(Dims(v))
            }
        }
        d.deserialize_seq(V)
    }
}
