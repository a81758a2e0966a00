//! The CPU side of `image_tokens` (`kernels/image_tokens.cu`): the mask decoder's image
//! tokens, image embedding plus dense prompt embedding, token-major.
//!
//! Every prompt decode starts here, so the add and the transpose are one pass, split over
//! blocks of tokens on the rayon pool: read a block's columns of each channel row
//! contiguously, write the block's token rows (a few KB, cache-resident).

use rayon::prelude::*;

/// Tokens per parallel block: 32 rows of 256 channels are 32 KB of output.
const TOKENS_PER_BLOCK: usize = 32;

/// `emb` `[dim, hw]` plus `dense` `[sides, dim, hw]` (or `no_mask` `[dim]` broadcast to
/// every side) -> `[sides, hw, dim]`. Each value is the one f32 add `emb + dense`.
pub fn image_tokens(
    emb: &[f32],
    dense: Option<&[f32]>,
    no_mask: &[f32],
    (sides, hw, dim): (usize, usize, usize),
) -> Vec<f32> {
    assert_eq!(emb.len(), dim * hw, "image embedding size");
    match dense {
        Some(d) => assert_eq!(d.len(), sides * dim * hw, "dense embedding size"),
        None => assert_eq!(no_mask.len(), dim, "no-mask embedding size"),
    }
    let mut out = vec![0.0f32; sides * hw * dim];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(hw * dim)
        .enumerate()
        .for_each(|(s, side)| {
            let dense_s = dense.map(|d| &d[s * dim * hw..(s + 1) * dim * hw]);
            side.par_chunks_mut(TOKENS_PER_BLOCK * dim)
                .enumerate()
                .for_each(|(b, dst)| {
                    let j0 = b * TOKENS_PER_BLOCK;
                    let n = dst.len() / dim;
                    for c in 0..dim {
                        let src = &emb[c * hw + j0..c * hw + j0 + n];
                        match dense_s {
                            Some(d) => {
                                let add = &d[c * hw + j0..c * hw + j0 + n];
                                for (t, (a, b)) in src.iter().zip(add).enumerate() {
                                    dst[t * dim + c] = a + b;
                                }
                            }
                            None => {
                                let b = no_mask[c];
                                for (t, a) in src.iter().enumerate() {
                                    dst[t * dim + c] = a + b;
                                }
                            }
                        }
                    }
                });
        });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) ^ seed) as f32 / 4e9 - 0.5)
            .collect()
    }

    /// Against the definition, for token counts that leave a partial last block (hw = 7x7,
    /// 5x13), two sides of dense embeddings and the broadcast no-mask embedding.
    #[test]
    fn matches_add_then_transpose() {
        for (hw, dim, sides) in [(49, 24, 2), (65, 8, 1), (32, 3, 3), (1, 5, 1)] {
            let emb = values(dim * hw, 1);
            let dense = values(sides * dim * hw, 2);
            let got = image_tokens(&emb, Some(&dense), &[], (sides, hw, dim));
            for s in 0..sides {
                for j in 0..hw {
                    for c in 0..dim {
                        let want = emb[c * hw + j] + dense[(s * dim + c) * hw + j];
                        assert_eq!(got[(s * hw + j) * dim + c].to_bits(), want.to_bits());
                    }
                }
            }
            let no_mask = values(dim, 3);
            let got = image_tokens(&emb, None, &no_mask, (sides, hw, dim));
            for s in 0..sides {
                for j in 0..hw {
                    for c in 0..dim {
                        let want = emb[c * hw + j] + no_mask[c];
                        assert_eq!(got[(s * hw + j) * dim + c].to_bits(), want.to_bits());
                    }
                }
            }
        }
    }
}
