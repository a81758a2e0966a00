//! The C ABI of samrt: `libsamrt.so` with the functions and structs of `include/samrt.h`.
//!
//! A crate of its own (package `samrt-capi`, library name `samrt`, a cdylib only) rather than
//! a `cdylib` crate type on the samrt crate: that would link a shared library on every build
//! of samrt (each `cargo test`, the CLI, the Python extension), and put the exported C symbols
//! into every binary built on samrt. Here the library is linked only when this package is
//! built, as `cargo build --release --workspace` does.
//!
//! Every entry point runs its body in [`error::guard`]: no panic crosses into C, and every
//! failure is -1 plus a thread-local message. Models and embeddings are handles in
//! registries ([`handles`]), so that they can be shared by threads and freed while in use;
//! the arrays of a prediction stay in [`masks`] until the caller frees them.
#![allow(non_camel_case_types)]
// Each entry point dereferences C pointers; its contract is in include/samrt.h.
#![allow(clippy::missing_safety_doc)]

mod error;
mod handles;
mod masks;
mod predict;
mod types;

pub use predict::{samrt_masks_free, samrt_predict};
pub use types::{samrt_masks, samrt_point, samrt_prompt};

use error::{c_str, guard, guard_void, Result};
use handles::Registry;
use samrt_core::io::image::decode::load_image;
use samrt_core::io::image::rgb::{from_rgb, RgbImage, MAX_IMAGE_SIDE};
use samrt_core::sam::backend::{probe_cuda, CUDA_BUILT};
use samrt_core::{ComputeDevice, ImageEmbedding, LoadOptions, Sam};
use std::ffi::c_char;
use std::os::raw::c_int;
use std::path::PathBuf;

/// A loaded model (opaque in C).
pub struct samrt_model {
    sam: Sam,
}

/// One image's embedding (opaque in C).
pub struct samrt_embedding {
    emb: ImageEmbedding,
}

static MODELS: Registry<samrt_model> = Registry::new("samrt_model");
static EMBEDDINGS: Registry<samrt_embedding> = Registry::new("samrt_embedding");

/// The library's version, e.g. "0.1.0". The one entry point without a guard: it returns a
/// constant and cannot panic.
#[no_mangle]
pub extern "C" fn samrt_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The message of the last call that failed on this thread ("" before any failure).
#[no_mangle]
pub extern "C" fn samrt_last_error() -> *const c_char {
    std::panic::catch_unwind(error::last_error_ptr).unwrap_or(c"".as_ptr())
}

/// A path argument: any bytes on Unix, where paths need not be UTF-8.
unsafe fn c_path(p: *const c_char, name: &str) -> Result<PathBuf> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        if p.is_null() {
            return Err(format!("{name} is NULL"));
        }
        let bytes = std::ffi::CStr::from_ptr(p).to_bytes();
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }
    #[cfg(not(unix))]
    {
        c_str(p, name).map(PathBuf::from)
    }
}

/// "cpu", "cuda" (device 0, an error when unusable) or "auto" (CUDA when usable, else CPU).
fn parse_device(device: &str) -> Result<ComputeDevice> {
    match device {
        "cpu" => Ok(ComputeDevice::Cpu),
        "cuda" => cuda_device(),
        "auto" => Ok(cuda_device().unwrap_or(ComputeDevice::Cpu)),
        other => Err(format!(
            "unknown device {other:?}: expected \"cpu\", \"cuda\" or \"auto\""
        )),
    }
}

/// CUDA device 0, or what is missing: the feature, the driver or a device.
fn cuda_device() -> Result<ComputeDevice> {
    if !CUDA_BUILT {
        return Err(
            "device \"cuda\": this libsamrt was built without the `cuda` feature; \
                    rebuild it with `cargo build --release -p samrt-capi --features cuda`, or \
                    use \"cpu\""
                .into(),
        );
    }
    probe_cuda().map_err(|e| format!("device \"cuda\": {e}"))
}

/// Clears `*out` first, so that a failed call leaves NULL there.
unsafe fn clear_out<T>(out: *mut *mut T) -> Result<&'static mut *mut T> {
    let out = out.as_mut().ok_or("out is NULL")?;
    *out = std::ptr::null_mut();
    Ok(out)
}

#[no_mangle]
pub unsafe extern "C" fn samrt_model_load(
    path: *const c_char,
    device: *const c_char,
    out: *mut *mut samrt_model,
) -> c_int {
    guard("samrt_model_load", || {
        let out = clear_out(out)?;
        let path = c_path(path, "path")?;
        let device = parse_device(c_str(device, "device")?)?;
        let opts = LoadOptions::on(device);
        let (sam, _cache_message) = Sam::load_with(&path, opts).map_err(|e| e.to_string())?;
        *out = MODELS.insert(samrt_model { sam });
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn samrt_model_free(m: *mut samrt_model) {
    guard_void("samrt_model_free", || MODELS.remove(m));
}

/// Embeds `img` with the model behind `m` into a new handle at `*out`.
fn embed_into(
    m: *const samrt_model,
    out: &mut *mut samrt_embedding,
    img: impl FnOnce() -> Result<RgbImage>,
) -> Result<()> {
    let model = MODELS.get(m, "model")?;
    let img = img()?;
    let emb = model.sam.embed(&img).map_err(|e| e.to_string())?;
    *out = EMBEDDINGS.insert(samrt_embedding { emb });
    Ok(())
}

#[no_mangle]
pub unsafe extern "C" fn samrt_embed_rgb(
    m: *const samrt_model,
    rgb: *const u8,
    width: u32,
    height: u32,
    out: *mut *mut samrt_embedding,
) -> c_int {
    guard("samrt_embed_rgb", || {
        let out = clear_out(out)?;
        if rgb.is_null() {
            return Err("rgb is NULL".into());
        }
        embed_into(m, out, || {
            // Checked before the buffer is read: its length is width * height * 3.
            if width == 0 || height == 0 || width.max(height) > MAX_IMAGE_SIDE {
                return Err(format!(
                    "image {width}x{height}: width and height must be 1 to {MAX_IMAGE_SIDE}"
                ));
            }
            let (w, h) = (width as usize, height as usize);
            let data = std::slice::from_raw_parts(rgb, w * h * 3).to_vec();
            from_rgb(w, h, data).map_err(|e| e.to_string())
        })
    })
}

#[no_mangle]
pub unsafe extern "C" fn samrt_embed_file(
    m: *const samrt_model,
    image_path: *const c_char,
    out: *mut *mut samrt_embedding,
) -> c_int {
    guard("samrt_embed_file", || {
        let out = clear_out(out)?;
        let path = c_path(image_path, "image_path")?;
        embed_into(m, out, || load_image(&path).map_err(|e| e.to_string()))
    })
}

#[no_mangle]
pub unsafe extern "C" fn samrt_embedding_free(e: *mut samrt_embedding) {
    guard_void("samrt_embedding_free", || EMBEDDINGS.remove(e));
}
