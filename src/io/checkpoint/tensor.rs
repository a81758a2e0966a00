//! Checkpoint element types and their conversion to the f16 tensors samrt stores, with
//! the non-finite check done in the same pass.

use crate::error::{Error, Result};
use crate::io::weights::non_finite_tensor;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};
use std::borrow::Cow;

/// Element types a checkpoint may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The safetensors spelling.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
}

/// Product of a shape, or None on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Elements converted per step; small enough to stay in cache, large enough to amortise.
const CHUNK: usize = 1 << 14;

/// Little-endian f32 values, borrowed when the bytes are suitably aligned.
fn f32s_le(bytes: &[u8]) -> Cow<'_, [f32]> {
    if cfg!(target_endian = "little") {
        if let Ok(s) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Little-endian 16-bit words, borrowed when aligned.
fn u16s_le(bytes: &[u8]) -> Cow<'_, [u16]> {
    if cfg!(target_endian = "little") {
        if let Ok(s) = bytemuck::try_cast_slice::<u8, u16>(bytes) {
            return Cow::Borrowed(s);
        }
    }
    Cow::Owned(
        bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

/// Whether an f16 bit pattern is NaN or infinite (all exponent bits set).
fn f16_bits_non_finite(bits: u16) -> bool {
    bits & 0x7C00 == 0x7C00
}

/// Rounds f32 to f16 (nearest even) into `dst`, failing if a finite value overflows; returns
/// how many values were already NaN or infinite in `src`.
fn f32_to_f16_checked(src: &[f32], dst: &mut [f16], name: &str, base: usize) -> Result<usize> {
    dst.convert_from_f32_slice(src);
    let bad = count_non_finite_f16(dst);
    if bad > 0 {
        for (i, (h, s)) in dst.iter().zip(src).enumerate() {
            if h.is_infinite() && s.is_finite() {
                return Err(Error::Checkpoint(format!(
                    "tensor `{name}`: value {s} at index {} is outside the f16 range (max 65504)",
                    base + i
                )));
            }
        }
    }
    Ok(bad)
}

/// How many of `v` are NaN or infinite; branch-free so it vectorises.
fn count_non_finite_f16(v: &[f16]) -> usize {
    v.iter()
        .map(|h| usize::from(f16_bits_non_finite(h.to_bits())))
        .sum()
}

/// Converts contiguous little-endian elements of `dtype` to f16. NaN or infinity is refused
/// here, naming the tensor, so that neither `samrt convert` nor the conversion cache ever
/// writes a file that loads but computes NaN.
pub(crate) fn bytes_to_f16(bytes: &[u8], dtype: DType, name: &str) -> Result<Vec<f16>> {
    let n = bytes.len() / dtype.size();
    let mut out = vec![f16::ZERO; n];
    let mut bad = 0;
    match dtype {
        DType::F16 => {
            let words = u16s_le(bytes);
            out.reinterpret_cast_mut().copy_from_slice(&words);
            bad = count_non_finite_f16(&out);
        }
        DType::F32 => {
            let chunk_bytes = CHUNK * 4;
            for (ci, (src, dst)) in bytes
                .chunks(chunk_bytes)
                .zip(out.chunks_mut(CHUNK))
                .enumerate()
            {
                bad += f32_to_f16_checked(&f32s_le(src), dst, name, ci * CHUNK)?;
            }
        }
        DType::BF16 => {
            let mut tmp = vec![0f32; CHUNK.min(n)];
            for (ci, (src, dst)) in bytes
                .chunks(CHUNK * 2)
                .zip(out.chunks_mut(CHUNK))
                .enumerate()
            {
                let words = u16s_le(src);
                let t = &mut tmp[..dst.len()];
                words.reinterpret_cast::<bf16>().convert_to_f32_slice(t);
                bad += f32_to_f16_checked(t, dst, name, ci * CHUNK)?;
            }
        }
    }
    if bad > 0 {
        // Rare path: widen to report the first bad value the same way a load does.
        let mut wide = vec![0f32; n];
        out.convert_to_f32_slice(&mut wide);
        return Err(non_finite_tensor(name, bad, &wide));
    }
    Ok(out)
}

/// Converts contiguous little-endian elements of `dtype` to f32 (exact for every dtype).
pub(crate) fn bytes_to_f32(bytes: &[u8], dtype: DType, out: &mut [f32]) {
    match dtype {
        DType::F32 => out.copy_from_slice(&f32s_le(bytes)),
        DType::F16 => u16s_le(bytes)
            .reinterpret_cast::<f16>()
            .convert_to_f32_slice(out),
        DType::BF16 => u16s_le(bytes)
            .reinterpret_cast::<bf16>()
            .convert_to_f32_slice(out),
    }
}
