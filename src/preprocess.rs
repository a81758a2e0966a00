//! Image input: decoding, the Pillow-exact resize, normalisation and prompt coordinate maps.
//!
//! The official predictor resizes with torchvision's `resize` on a PIL image, i.e. Pillow's
//! `Image.resize(size, BILINEAR)`, which is integer arithmetic once its weights are known.
//! Reproducing Pillow's double-precision weight computation and fixed-point rounding step by
//! step is what makes our resized pixels bit-identical, so the encoder sees the same input.

use crate::error::{Error, Result};
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageReader, Limits};
use rayon::prelude::*;
use std::path::Path;

/// Largest accepted width or height. Beyond this a hostile header could ask for gigabytes.
pub const MAX_IMAGE_SIDE: u32 = 20_000;
/// Largest decoder allocation we allow (bytes).
pub const MAX_DECODE_ALLOC: u64 = 1 << 30;

/// SAM's pixel statistics (RGB, 0..255 scale); not stored in the checkpoint.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

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

fn image_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Image(format!("{}: {e}", path.display()))
}

/// Decodes an image file the way `np.array(Image.open(path).convert("RGB"))` sees it.
///
/// Pillow conventions kept: alpha is dropped, not composited; palettes are expanded;
/// 16-bit greyscale is clipped to 0..255 (Pillow opens it as mode "I;16" and converting
/// an "I" image to RGB clamps); 16-bit colour keeps the high byte (Pillow's "RGB;16B"
/// unpacker); EXIF orientation is ignored. The format is detected from content.
/// Known gaps: JPEG (zune-jpeg vs libjpeg-turbo) and lossy WebP decoders may differ from
/// Pillow's by a unit in some pixels; CMYK JPEGs use the decoder's own CMYK->RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    if let Some(img) = load_jpeg(path)? {
        return Ok(img);
    }
    let mut reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| image_err(path, e))?;
    let (w, h) = decoder.dimensions();
    check_decode_size(w as usize, h as usize, decoder.total_bytes())
        .map_err(|e| image_err(path, e))?;
    // The decoder reports 16-bit grey with a tRNS chunk as La16, like real grey+alpha;
    // Pillow opens the former as "I;16" (clipped) and the latter as "LA" (high byte).
    let grey16 =
        matches!(decoder.original_color_type(), ExtendedColorType::L16) || is_png_grey16(path);
    let img = DynamicImage::from_decoder(decoder).map_err(|e| image_err(path, e))?;
    to_rgb(img, grey16).map_err(|e| image_err(path, e))
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

/// JPEG files through the Pillow-exact decoder (`crate::jpeg`); `None` for other formats
/// and for CMYK/YCCK JPEGs, which take the general path.
fn load_jpeg(path: &Path) -> Result<Option<RgbImage>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 3];
    if f.read_exact(&mut head).is_err() || !crate::jpeg::is_jpeg(&head) {
        return Ok(None);
    }
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_DECODE_ALLOC {
        return Err(image_err(
            path,
            format!("{len}-byte file exceeds the decode limit"),
        ));
    }
    // The rest comes from the handle already open, not from opening the file again.
    let mut data = Vec::with_capacity(len as usize);
    f.rewind()
        .and_then(|_| f.read_to_end(&mut data))
        .map_err(|e| Error::io(path, e))?;
    crate::jpeg::decode(&data, &path.display().to_string())
}

/// True for a PNG whose IHDR says 16-bit greyscale without alpha (colour type 0).
fn is_png_grey16(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 26];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    ok && &head[..8] == b"\x89PNG\r\n\x1a\n"
        && &head[12..16] == b"IHDR"
        && head[24] == 16
        && head[25] == 0
}

/// Pillow's convert("RGB") on what the decoder produced; `grey16_source` marks 16-bit
/// greyscale files, which Pillow clips instead of taking the high byte.
fn to_rgb(img: DynamicImage, grey16_source: bool) -> std::result::Result<RgbImage, String> {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let n = width * height;
    let clip16 = |v: u16| v.min(255) as u8;
    let hi16 = |v: u16| (v >> 8) as u8;
    let mut data = Vec::with_capacity(n * 3);
    match img {
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().for_each(|&v| data.extend([v; 3])),
        DynamicImage::ImageLumaA8(b) => b
            .as_raw()
            .chunks_exact(2)
            .for_each(|p| data.extend([p[0]; 3])),
        DynamicImage::ImageRgb8(b) => data.extend_from_slice(b.as_raw()),
        DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .for_each(|p| data.extend_from_slice(&p[..3])),
        DynamicImage::ImageLuma16(b) => {
            b.as_raw().iter().for_each(|&v| data.extend([clip16(v); 3]))
        }
        DynamicImage::ImageLumaA16(b) => b.as_raw().chunks_exact(2).for_each(|p| {
            let v = if grey16_source {
                clip16(p[0])
            } else {
                hi16(p[0])
            };
            data.extend([v; 3])
        }),
        DynamicImage::ImageRgb16(b) => data.extend(b.as_raw().iter().map(|&v| hi16(v))),
        DynamicImage::ImageRgba16(b) => b
            .as_raw()
            .chunks_exact(4)
            .for_each(|p| data.extend(p[..3].iter().map(|&v| hi16(v)))),
        other => return Err(format!("unsupported pixel format {:?}", other.color())),
    }
    if data.len() != n * 3 {
        return Err("decoder returned a short pixel buffer".into());
    }
    Ok(RgbImage {
        width,
        height,
        data,
    })
}

/// `ResizeLongestSide.get_preprocess_shape`: (new_h, new_w) with the long side = `target`.
pub fn resize_shape(h: usize, w: usize, target: usize) -> (usize, usize) {
    let scale = target as f64 * 1.0 / h.max(w).max(1) as f64;
    let newh = (h as f64 * scale + 0.5) as usize;
    let neww = (w as f64 * scale + 0.5) as usize;
    (newh, neww)
}

/// Pillow's fixed-point precision for 8-bit images (PRECISION_BITS = 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// Per-axis convolution taps: for output `o`, source pixels `start[o]..start[o]+len[o]`
/// with weights `k[o*ksize..]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle)
/// filter over the full box `[0, in_size)`. Operation order follows Resample.c exactly:
/// the weights are doubles, normalised by their sum, then rounded half away from zero.
fn pillow_taps(in_size: usize, out_size: usize) -> Taps {
    // Pillow passes the box as C floats; `(double)(in1 - in0)` is exact for our sizes.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = if scale < 1.0 { 1.0 } else { scale };
    let support = 1.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let ss = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = 0.0 + (xx as f64 + 0.5) * scale;
        // C `(int)` truncates toward zero; clamping to 0 afterwards matches Pillow.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut ww = 0.0f64;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let t = ((x + xmin) as f64 - center + 0.5) * ss;
            let v = bilinear_filter(t);
            *wx = v;
            ww += v;
        }
        for (x, wx) in w.iter().enumerate().take(n) {
            let v = if ww != 0.0 { wx / ww } else { *wx };
            let scaled = v * (1u32 << PRECISION_BITS) as f64;
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        start.push(xmin);
        len.push(n);
    }
    Taps {
        start,
        len,
        ksize,
        k,
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's clip8: the accumulator already holds the +0.5 rounding term.
#[inline]
fn clip8(acc: i32) -> u8 {
    if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else if acc <= 0 {
        0
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Horizontal pass over source rows `row0..row0+rows` (RGB interleaved).
fn resample_horizontal(src: &[u8], src_w: usize, row0: usize, rows: usize, t: &Taps) -> Vec<u8> {
    let out_w = t.start.len();
    let mut out = vec![0u8; rows * out_w * 3];
    out.par_chunks_mut(out_w * 3)
        .enumerate()
        .for_each(|(r, orow)| {
            let srow = &src[(row0 + r) * src_w * 3..(row0 + r + 1) * src_w * 3];
            for xx in 0..out_w {
                let k = &t.k[xx * t.ksize..xx * t.ksize + t.len[xx]];
                let base = t.start[xx] * 3;
                let init = 1i32 << (PRECISION_BITS - 1);
                let (mut s0, mut s1, mut s2) = (init, init, init);
                let px = &srow[base..base + k.len() * 3];
                for (p, &kx) in px.chunks_exact(3).zip(k) {
                    s0 += p[0] as i32 * kx;
                    s1 += p[1] as i32 * kx;
                    s2 += p[2] as i32 * kx;
                }
                orow[xx * 3] = clip8(s0);
                orow[xx * 3 + 1] = clip8(s1);
                orow[xx * 3 + 2] = clip8(s2);
            }
        });
    out
}

/// Vertical pass; `t.start` is relative to the first row of `src`.
fn resample_vertical(src: &[u8], w: usize, t: &Taps, first_row: usize) -> Vec<u8> {
    let out_h = t.start.len();
    let row_len = w * 3;
    let mut out = vec![0u8; out_h * row_len];
    out.par_chunks_mut(row_len).enumerate().for_each_init(
        || vec![0i32; row_len],
        |acc, (yy, orow)| {
            acc.fill(1 << (PRECISION_BITS - 1));
            let k = &t.k[yy * t.ksize..yy * t.ksize + t.len[yy]];
            let y0 = t.start[yy] - first_row;
            for (y, &ky) in k.iter().enumerate() {
                let srow = &src[(y0 + y) * row_len..(y0 + y + 1) * row_len];
                for (a, &p) in acc.iter_mut().zip(srow) {
                    *a += p as i32 * ky;
                }
            }
            for (o, &a) in orow.iter_mut().zip(acc.iter()) {
                *o = clip8(a);
            }
        },
    );
    out
}

/// Bit-identical to Pillow's `Image.resize((new_w, new_h), Image.BILINEAR)` on RGB.
///
/// Separable, each pass rounding to uint8; a pass whose size is unchanged is skipped, and
/// equal sizes return a copy, as Pillow does. Antialiased when shrinking (support grows
/// with the scale). Pass order follows Pillow 13's `ImagingResampleInner`: horizontal
/// first (over only the source rows the vertical pass reads) unless the height shrinks by
/// more than twice as many pixels as the width, then vertical first. The order changes
/// the rounding, so it matters for bit-exactness. A zero target side yields an empty image
/// (Pillow raises; callers check first).
pub fn resize_bilinear_pillow(img: &RgbImage, new_w: usize, new_h: usize) -> RgbImage {
    if new_w == 0 || new_h == 0 || img.width == 0 || img.height == 0 {
        return RgbImage {
            width: new_w,
            height: new_h,
            data: Vec::new(),
        };
    }
    let need_h = new_w != img.width;
    let need_v = new_h != img.height;
    if !need_h && !need_v {
        return img.clone();
    }
    let dh = img.height as i64 - new_h as i64;
    let dw = img.width as i64 - new_w as i64;
    let horizontal_first = !(dh > 0 && dh > dw * 2);
    let taps_v = need_v.then(|| pillow_taps(img.height, new_h));
    let taps_h = need_h.then(|| pillow_taps(img.width, new_w));
    let data = match (&taps_h, &taps_v) {
        (Some(th), Some(tv)) if horizontal_first => {
            let n = new_h - 1;
            let (first, last) = (tv.start[0], tv.start[n] + tv.len[n]);
            let mid = resample_horizontal(&img.data, img.width, first, last - first, th);
            resample_vertical(&mid, new_w, tv, first)
        }
        (Some(th), Some(tv)) => {
            let mid = resample_vertical(&img.data, img.width, tv, 0);
            resample_horizontal(&mid, img.width, 0, new_h, th)
        }
        (Some(th), None) => resample_horizontal(&img.data, img.width, 0, img.height, th),
        (None, Some(tv)) => resample_vertical(&img.data, img.width, tv, 0),
        (None, None) => img.data.clone(),
    };
    RgbImage {
        width: new_w,
        height: new_h,
        data,
    }
}

/// `SamPredictor.set_image` input: Pillow resize to the long side `target`, then
/// `(x - mean) / std` in f32, then zero padding bottom/right to `target x target`.
///
/// Returns the CHW tensor and `input_size` = (resized h, resized w). Fails when the
/// resized image would have a zero side (aspect ratio beyond 2*target:1), where the
/// official pipeline errors too.
pub fn preprocess(img: &RgbImage, target: usize) -> Result<(Vec<f32>, (usize, usize))> {
    img.check()?;
    let (nh, nw) = resize_shape(img.height, img.width, target);
    if nh == 0 || nw == 0 || nh > target || nw > target {
        return Err(Error::Image(format!(
            "{}x{} image cannot be resized to long side {target} (gives {nw}x{nh})",
            img.width, img.height
        )));
    }
    let resized = resize_bilinear_pillow(img, nw, nh);
    let plane = target * target;
    let mut out = vec![0f32; 3 * plane];
    out.par_chunks_mut(target)
        .enumerate()
        .for_each(|(row_idx, orow)| {
            let (c, y) = (row_idx / target, row_idx % target);
            if y >= nh {
                return;
            }
            let (mean, std) = (PIXEL_MEAN[c], PIXEL_STD[c]);
            let srow = &resized.data[y * nw * 3..(y + 1) * nw * 3];
            for (x, o) in orow.iter_mut().take(nw).enumerate() {
                *o = (srow[x * 3 + c] as f32 - mean) / std;
            }
        });
    Ok((out, (nh, nw)))
}

/// `ResizeLongestSide.apply_coords` for one point: f64 maths as numpy does, then rounded
/// to f32 as `torch.as_tensor(..., dtype=torch.float)` does. `orig`/`input` are (h, w).
pub fn transform_coords(x: f32, y: f32, orig: (usize, usize), input: (usize, usize)) -> (f32, f32) {
    transform_coords_f64(x as f64, y as f64, orig, input)
}

/// As [`transform_coords`] for coordinates that arrive as f64 (JSON, numpy float64):
/// rounding them to f32 first could change the result's last bit.
pub fn transform_coords_f64(
    x: f64,
    y: f64,
    orig: (usize, usize),
    input: (usize, usize),
) -> (f32, f32) {
    let (old_h, old_w) = (orig.0 as f64, orig.1 as f64);
    let (new_h, new_w) = (input.0 as f64, input.1 as f64);
    ((x * (new_w / old_w)) as f32, (y * (new_h / old_h)) as f32)
}

/// `ResizeLongestSide.apply_boxes` for one XYXY box.
pub fn transform_box(b: [f32; 4], orig: (usize, usize), input: (usize, usize)) -> [f32; 4] {
    let (x0, y0) = transform_coords(b[0], b[1], orig, input);
    let (x1, y1) = transform_coords(b[2], b[3], orig, input);
    [x0, y0, x1, y1]
}
