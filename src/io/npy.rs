//! NumPy `.npy` files: the interchange format for prompts, masks and reference tensors.
//!
//! Only C-order little-endian arrays of a few dtypes are read. Every length in the header is
//! checked against the bytes actually present before anything is allocated, so a corrupt or
//! hostile file yields `Error::Npy`, never a panic or an oversized allocation.

use crate::error::{Error, Result};
use std::path::Path;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element data, in the file's dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

impl NpyArray {
    /// Values as f32 (`astype(np.float32)`: f64 rounds to nearest, bool becomes 0/1).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            NpyData::F32(v) => v.clone(),
            NpyData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::Bool(v) => v.iter().map(|&x| x as u8 as f32).collect(),
            NpyData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            NpyData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The dtype string as numpy spells it.
    pub fn descr(&self) -> &'static str {
        match self.data {
            NpyData::F32(_) => "<f4",
            NpyData::F64(_) => "<f8",
            NpyData::U8(_) => "|u1",
            NpyData::Bool(_) => "|b1",
            NpyData::I32(_) => "<i4",
            NpyData::I64(_) => "<i8",
        }
    }
}

fn err(m: impl Into<String>) -> Error {
    Error::Npy(m.into())
}

/// Reads and parses a `.npy` file.
pub fn read(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse(&bytes).map_err(|e| match e {
        Error::Npy(m) => Error::Npy(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Reads a `.npy` file of any supported dtype as f32 values plus its shape.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let a = read(path)?;
    let v = a.to_f32();
    Ok((a.shape, v))
}

/// Parses `.npy` bytes (format versions 1.0, 2.0 and 3.0).
pub fn parse(bytes: &[u8]) -> Result<NpyArray> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err("missing \\x93NUMPY magic"));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("truncated header length"));
            }
            let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (n as usize, 12)
        }
        _ => return Err(err(format!("unsupported format version {major}.{minor}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| {
            err(format!(
                "header of {header_len} bytes runs past the file end"
            ))
        })?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| err("header is not valid UTF-8"))?;
    if (major == 1 || major == 2) && !header.is_ascii() {
        return Err(err("version 1/2 header must be ASCII"));
    }
    let h = parse_header(header)?;
    if h.fortran_order {
        return Err(err("fortran_order=True arrays are not supported"));
    }
    let (item, kind) = match h.descr.as_str() {
        "<f4" => (4, 0),
        "<f8" => (8, 1),
        "|u1" | "<u1" | ">u1" => (1, 2),
        "|b1" | "<b1" | ">b1" => (1, 3),
        "<i4" => (4, 4),
        "<i8" => (8, 5),
        d => {
            return Err(err(format!(
                "unsupported dtype {d:?} (expected <f4, <f8, |u1, |b1, <i4 or <i8)"
            )))
        }
    };
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("shape {:?} overflows", h.shape)))?;
    let nbytes = count
        .checked_mul(item)
        .ok_or_else(|| err(format!("shape {:?} overflows", h.shape)))?;
    let body = &bytes[end..];
    if body.len() != nbytes {
        return Err(err(format!(
            "shape {:?} of {} needs {nbytes} data bytes, file has {}",
            h.shape,
            h.descr,
            body.len()
        )));
    }
    let data = match kind {
        0 => NpyData::F32(
            body.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        1 => NpyData::F64(
            body.chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        2 => NpyData::U8(body.to_vec()),
        3 => NpyData::Bool(body.iter().map(|&b| b != 0).collect()),
        4 => NpyData::I32(
            body.chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        _ => NpyData::I64(
            body.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
    })
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the header dict, a Python literal such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(s: &str) -> Result<Header> {
    let mut p = Lexer {
        s: s.as_bytes(),
        i: 0,
    };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            k => return Err(err(format!("unexpected header key {k:?}"))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(err("trailing characters after the header dict"));
    }
    Ok(Header {
        descr: descr.ok_or_else(|| err("header lacks 'descr'"))?,
        fortran_order: fortran.ok_or_else(|| err("header lacks 'fortran_order'"))?,
        shape: shape.ok_or_else(|| err("header lacks 'shape'"))?,
    })
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(err(format!(
                "malformed header: expected {:?} at byte {}",
                c as char, self.i
            )))
        }
    }

    fn string(&mut self) -> Result<String> {
        let q = match self.s.get(self.i) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                return Err(err(format!(
                    "malformed header: expected a string at byte {}",
                    self.i
                )))
            }
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i] != q {
            self.i += 1;
        }
        if self.i >= self.s.len() {
            return Err(err("malformed header: unterminated string"));
        }
        let v = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
        self.i += 1;
        Ok(v)
    }

    fn boolean(&mut self) -> Result<bool> {
        let rest = &self.s[self.i..];
        if rest.starts_with(b"True") {
            self.i += 4;
            Ok(true)
        } else if rest.starts_with(b"False") {
            self.i += 5;
            Ok(false)
        } else {
            Err(err("malformed header: fortran_order must be True or False"))
        }
    }

    fn tuple(&mut self) -> Result<Vec<usize>> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            if start == self.i {
                return Err(err(
                    "malformed header: shape must hold non-negative integers",
                ));
            }
            // Python 2 era writers append `L` to longs.
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let d: usize = digits
                .parse()
                .map_err(|_| err(format!("shape dimension {digits} is too large")))?;
            self.eat(b'L');
            dims.push(d);
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Serialises an array with a version 1.0 header (2.0 if the header would not fit).
fn encode(descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // numpy pads so that the data starts on a 64-byte boundary, ending the header with '\n'.
    let padded = |prefix: usize| {
        let pad = (64 - (prefix + dict.len() + 1) % 64) % 64;
        format!("{dict}{}\n", " ".repeat(pad))
    };
    let (v1, prefix, dict) = match padded(10) {
        d if d.len() <= u16::MAX as usize => (true, 10, d),
        _ => (false, 12, padded(12)),
    };
    let mut out = Vec::with_capacity(prefix + dict.len() + body.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(body);
    out
}

fn write_bytes(path: &Path, descr: &str, shape: &[usize], count: usize, body: &[u8]) -> Result<()> {
    let bytes = encode_checked(descr, shape, count, body)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn encode_checked(descr: &str, shape: &[usize], count: usize, body: &[u8]) -> Result<Vec<u8>> {
    let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(count) {
        return Err(err(format!(
            "shape {shape:?} does not match {count} elements"
        )));
    }
    Ok(encode(descr, shape, body))
}

/// A little-endian float32 array as .npy bytes, for callers that send rather than save it
/// (the HTTP server).
pub fn f32_bytes(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    let body: &[u8] = bytemuck::cast_slice(data);
    let body: Vec<u8> = if cfg!(target_endian = "little") {
        body.to_vec()
    } else {
        data.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    encode_checked("<f4", shape, data.len(), &body)
}

/// Writes a little-endian float32 array.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes(path, "<f4", shape, data.len(), &body)
}

/// Writes a uint8 array.
pub fn write_u8(path: &Path, shape: &[usize], data: &[u8]) -> Result<()> {
    write_bytes(path, "|u1", shape, data.len(), data)
}

/// Writes a bool array (one byte per element, 0 or 1).
pub fn write_bool(path: &Path, shape: &[usize], data: &[bool]) -> Result<()> {
    let body: Vec<u8> = data.iter().map(|&b| b as u8).collect();
    write_bytes(path, "|b1", shape, data.len(), &body)
}
