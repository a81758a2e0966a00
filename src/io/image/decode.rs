//! Image files to [`RgbImage`], as Pillow's `Image.open(path).convert("RGB")` sees them.

use super::jpeg;
use super::rgb::{check_decode_size, RgbImage, MAX_DECODE_ALLOC, MAX_IMAGE_SIDE};
use crate::error::{Error, Result};
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageReader, Limits};
use std::path::Path;

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
    let reader = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    decode_reader(reader, is_png_grey16(path)).map_err(|e| image_err(path, e))
}

/// [`load_image`] on a file's bytes already in memory (an HTTP request body); `what` names
/// it in errors.
pub fn decode_image(data: &[u8], what: &str) -> Result<RgbImage> {
    let fail = |e: String| Error::Image(format!("{what}: {e}"));
    if jpeg::is_jpeg(data) {
        if let Some(img) = jpeg::decode(data, what)? {
            return Ok(img);
        }
    }
    let reader = ImageReader::new(std::io::Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    decode_reader(reader, png_grey16(data)).map_err(fail)
}

/// The decode shared by files and bytes: the size limits, then Pillow's RGB conversion.
/// `png_grey16` is [`png_grey16`] on the data's first bytes.
fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    png_grey16: bool,
) -> std::result::Result<RgbImage, String> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = decoder.dimensions();
    check_decode_size(w as usize, h as usize, decoder.total_bytes()).map_err(|e| e.to_string())?;
    // The decoder reports 16-bit grey with a tRNS chunk as La16, like real grey+alpha;
    // Pillow opens the former as "I;16" (clipped) and the latter as "LA" (high byte).
    let grey16 = matches!(decoder.original_color_type(), ExtendedColorType::L16) || png_grey16;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())?;
    to_rgb(img, grey16)
}
/// JPEG files through the Pillow-exact decoder (`crate::io::image::jpeg`); `None` for other formats
/// and for CMYK/YCCK JPEGs, which take the general path.
fn load_jpeg(path: &Path) -> Result<Option<RgbImage>> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 3];
    if f.read_exact(&mut head).is_err() || !jpeg::is_jpeg(&head) {
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
    jpeg::decode(&data, &path.display().to_string())
}

/// True for a PNG whose IHDR says 16-bit greyscale without alpha (colour type 0).
fn is_png_grey16(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 26];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok();
    ok && png_grey16(&head)
}

/// [`is_png_grey16`] on the file's first bytes.
fn png_grey16(head: &[u8]) -> bool {
    head.len() >= 26
        && &head[..8] == b"\x89PNG\r\n\x1a\n"
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
