//! Image input: decoding ([`decode`], with the Pillow-exact JPEG path in [`jpeg`]), the
//! shared [`RgbImage`] ([`rgb`]) and the official `ResizeLongestSide` ([`resize`]).
//! SAM's normalisation and padding live with the op that computes them,
//! [`crate::cpu::ops::preprocess_patchify`].

pub mod decode;
pub mod jpeg;
pub mod resize;
pub mod rgb;

pub use decode::{decode_image, load_image};
pub use resize::{
    resize_bilinear_pillow, resize_shape, transform_box, transform_coords, transform_coords_f64,
};
pub use rgb::{from_rgb, RgbImage, MAX_DECODE_ALLOC, MAX_IMAGE_SIDE};
