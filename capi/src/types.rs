//! The structs of include/samrt.h, field for field. They use no item of samrt, so that
//! capi/tests/header.rs can compile this file on its own and check the header's layout
//! against the sizes and offsets Rust gives them.
//!
//! The names are the C names: this file is read next to the header, and the drift test maps
//! types one to one instead of through a renaming rule.
#![allow(non_camel_case_types)]

use std::os::raw::c_int;

/// One point prompt, in original-image pixels; `label` 1 foreground, 0 background.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct samrt_point {
    pub x: f32,
    pub y: f32,
    pub label: i32,
}

/// A prompt: points, an optional box and an optional low-res mask input.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct samrt_prompt {
    pub points: *const samrt_point,
    pub n_points: usize,
    /// NULL or x0, y0, x1, y1.
    pub r#box: *const f32,
    /// NULL or one low-res logit plane, `low_res_side * low_res_side` floats.
    pub mask_input: *const f32,
    pub multimask: c_int,
}

/// A prediction. Its three arrays are owned by samrt until `samrt_masks_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct samrt_masks {
    pub n_masks: usize,
    pub width: u32,
    pub height: u32,
    /// n_masks * height * width bytes, 0 or 1.
    pub masks: *mut u8,
    /// n_masks scores.
    pub scores: *mut f32,
    /// n_masks * low_res_side * low_res_side logits.
    pub low_res_logits: *mut f32,
    pub low_res_side: u32,
}

impl samrt_masks {
    /// What a failed `samrt_predict` leaves and `samrt_masks_free` restores: freeing it again
    /// does nothing.
    pub const EMPTY: samrt_masks = samrt_masks {
        n_masks: 0,
        width: 0,
        height: 0,
        masks: std::ptr::null_mut(),
        scores: std::ptr::null_mut(),
        low_res_logits: std::ptr::null_mut(),
        low_res_side: 0,
    };
}
