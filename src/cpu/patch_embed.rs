//! ViT patch embedding: `Conv2d(C -> D, kernel = stride = patch)` on a CHW image, returned
//! already permuted to the BHWC token map `[grid*grid, D]` the transformer blocks use.

use crate::cpu::conv2d::{conv2d, ConvGeom, Layout};
use crate::error::{Error, Result};

/// `image` is `[chans, size, size]`; `weight` `[dim, chans, patch, patch]`; `bias` `[dim]`.
pub fn patch_embed(
    image: &[f32],
    chans: usize,
    size: usize,
    patch: usize,
    weight: &[f32],
    bias: &[f32],
) -> Result<Vec<f32>> {
    if patch == 0 || !size.is_multiple_of(patch) {
        return Err(Error::Config(format!(
            "image size {size} is not a multiple of the patch size {patch}"
        )));
    }
    if image.len() != chans * size * size {
        return Err(Error::Shape {
            name: "image".into(),
            expected: vec![chans, size, size],
            got: vec![image.len()],
        });
    }
    let geom = ConvGeom {
        kernel: patch,
        stride: patch,
        pad: 0,
    };
    let (tokens, _, _) = conv2d(
        image,
        Layout::chw(chans, size, size),
        weight,
        bias.len(),
        geom,
        Some(bias),
    )?;
    Ok(tokens)
}
