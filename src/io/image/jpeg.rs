//! JPEG decoding with the same pixels as Pillow.
//!
//! Pillow decodes JPEG with libjpeg-turbo's defaults (accurate integer IDCT, "fancy"
//! triangular chroma upsampling, its YCbCr->RGB tables). Pure-Rust decoders round
//! differently (up to 3 levels here), which shifts every downstream number away from the
//! official predictor. mozjpeg is libjpeg-turbo with encoder changes only, so its decoder
//! reproduces Pillow bit for bit (tests/preprocess.rs checks fixtures Pillow wrote).
//!
//! Like Pillow, a truncated file is an error (libjpeg itself pads it with grey and warns),
//! and CMYK/YCCK files are left to the caller's fallback decoder.

use super::rgb::{check_decode_size, RgbImage};
use crate::error::{Error, Result};
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, jpeg_std_error, JWRN_JPEG_EOF};
use std::cell::Cell;
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// True for data starting with the JPEG SOI marker.
pub fn is_jpeg(data: &[u8]) -> bool {
    data.starts_with(&[0xFF, 0xD8, 0xFF])
}

thread_local! {
    /// Set by the message hook when libjpeg warns that the data ended early.
    static HIT_EOF: Cell<bool> = const { Cell::new(false) };
}

extern "C-unwind" fn on_message(cinfo: &mut jpeg_common_struct, level: c_int) {
    // SAFETY: libjpeg passes its own live cinfo, whose `err` is the manager built below.
    let code = unsafe { cinfo.err.as_ref().map_or(0, |e| e.msg_code) };
    if level < 0 && code == JWRN_JPEG_EOF as c_int {
        HIT_EOF.with(|f| f.set(true));
    }
}

extern "C-unwind" fn on_error(cinfo: &mut jpeg_common_struct) {
    // SAFETY: as above.
    let code = unsafe { cinfo.err.as_ref().map_or(0, |e| e.msg_code) };
    std::panic::resume_unwind(Box::new(format!("libjpeg error code {code}")));
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills every field of a zeroed manager.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(on_error);
    err.emit_message = Some(on_message);
    err
}

/// Decodes `data` to RGB as Pillow's `Image.open(f).convert("RGB")`. `Ok(None)` for a JPEG
/// colour space Pillow converts with its own formulas (CMYK, YCCK): the caller falls back.
pub fn decode(data: &[u8], what: &str) -> Result<Option<RgbImage>> {
    let bad = |m: String| Error::Image(format!("{what}: {m}"));
    HIT_EOF.with(|f| f.set(false));
    // libjpeg reports fatal errors by unwinding out of `on_error`; nothing here holds state
    // that the unwind could leave half-updated.
    let res = catch_unwind(AssertUnwindSafe(|| -> Result<Option<RgbImage>> {
        let d = mozjpeg::Decompress::with_err(error_manager())
            .from_mem(data)
            .map_err(|e| bad(e.to_string()))?;
        if matches!(
            d.color_space(),
            mozjpeg_sys::J_COLOR_SPACE::JCS_CMYK | mozjpeg_sys::J_COLOR_SPACE::JCS_YCCK
        ) {
            return Ok(None);
        }
        let (w, h) = (d.width(), d.height());
        check_decode_size(w, h, (w * h * 3) as u64).map_err(bad)?;
        let mut started = d.rgb().map_err(|e| bad(e.to_string()))?;
        let pixels = started
            .read_scanlines::<u8>()
            .map_err(|e| bad(e.to_string()))?;
        started.finish().map_err(|e| bad(e.to_string()))?;
        if pixels.len() != w * h * 3 {
            return Err(bad(format!(
                "decoded {} bytes for {w}x{h} RGB",
                pixels.len()
            )));
        }
        Ok(Some(RgbImage {
            width: w,
            height: h,
            data: pixels,
        }))
    }));
    let out = match res {
        Ok(r) => r?,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "corrupt JPEG data".into());
            return Err(bad(msg));
        }
    };
    if HIT_EOF.with(|f| f.get()) {
        // Pillow: "image file is truncated".
        return Err(bad("image file is truncated".into()));
    }
    Ok(out)
}
