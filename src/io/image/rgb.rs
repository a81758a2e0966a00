//! The decoded image every path shares, and the size limits applied before decoding.

use crate::error::{Error, Result};

/// Largest accepted width or height. Beyond this a hostile header could ask for gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 20_000;
/// Largest decoder allocation we allow (bytes).
pub const MAX_DECODE_ALLOC: u64 = 1 << 30;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (HWC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Rejects an image whose buffer does not hold `width x height` RGB pixels, or that is
    /// empty: every consumer (CPU and CUDA preprocessing) needs both.
    pub fn check(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 || self.data.len() != self.width * self.height * 3 {
            return Err(Error::Image(format!(
                "malformed {}x{} image with {} bytes",
                self.width,
                self.height,
                self.data.len()
            )));
        }
        Ok(())
    }

    /// Pixel `(x, y)` as `[r, g, b]`; None when out of bounds.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }
}

/// Wraps caller-provided HWC RGB bytes after checking that they describe a real image.
pub fn from_rgb(width: usize, height: usize, data: Vec<u8>) -> Result<RgbImage> {
    if width == 0 || height == 0 {
        return Err(Error::Image(format!("zero-size image {width}x{height}")));
    }
    let expected = width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| Error::Image(format!("image {width}x{height} is too large")))?;
    if data.len() != expected {
        return Err(Error::Image(format!(
            "{width}x{height} RGB image needs {expected} bytes, got {}",
            data.len()
        )));
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// The decode limits every image passes before its pixels are allocated: non-empty, at most
/// [`MAX_IMAGE_SIDE`] per side, at most [`MAX_DECODE_ALLOC`] bytes decoded.
pub(crate) fn check_decode_size(w: usize, h: usize, bytes: u64) -> std::result::Result<(), String> {
    if w == 0 || h == 0 {
        return Err(format!("zero-size image {w}x{h}"));
    }
    if w > MAX_IMAGE_SIDE as usize || h > MAX_IMAGE_SIDE as usize {
        return Err(format!("{w}x{h} exceeds the {MAX_IMAGE_SIDE} px limit"));
    }
    if bytes > MAX_DECODE_ALLOC {
        return Err(format!(
            "{w}x{h} needs more than {MAX_DECODE_ALLOC} bytes to decode"
        ));
    }
    Ok(())
}
