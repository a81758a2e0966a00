//! The CPU side of `image_tokens` (`kernels/image_tokens.cu`): the mask decoder's image
//! tokens, image embedding plus dense prompt embedding, token-major.

use crate::cpu::ops::layer_norm::transpose;

/// `emb` `[dim, hw]` plus `dense` `[sides, dim, hw]` (or `no_mask` `[dim]` broadcast, one
/// side) -> `[sides, hw, dim]`.
pub fn image_tokens(
    emb: &[f32],
    dense: Option<&[f32]>,
    no_mask: &[f32],
    (sides, hw, dim): (usize, usize, usize),
) -> Vec<f32> {
    (0..sides)
        .flat_map(|s| {
            let summed: Vec<f32> = match dense {
                Some(d) => emb
                    .iter()
                    .zip(&d[s * dim * hw..(s + 1) * dim * hw])
                    .map(|(a, b)| a + b)
                    .collect(),
                None => emb
                    .iter()
                    .enumerate()
                    .map(|(i, a)| a + no_mask[i / hw])
                    .collect(),
            };
            transpose(&summed, dim, hw)
        })
        .collect()
}
