//! The mask decoder's output stage (official `output_upscaling` then `hyper_in @
//! upscaled`), fused and tiled over rows of the image-token grid.
//!
//! Unfused, one prompt materialises 4 MB after the first transposed conv and 8 MB after the
//! second, each written, normalised, passed through GELU and read again, before a 4x32 dot
//! product per pixel reduces them to the mask logits. Per tile of `TILE_ROWS` grid rows
//! everything stays in L2: conv 1, LayerNorm2d, GELU, conv 2, GELU, the hypernetwork
//! product, and a scatter from the sub-pixel blocked order into the tile's rows of the
//! row-major `[masks, 4g, 4g]` logits. Each output value sees the same operations in the
//! same order as the unfused layers (the products are per pixel, over the full channel
//! depth), so tiling changes no result.

use crate::cpu::ops::conv_transpose2d::ConvTranspose2d;
use crate::cpu::ops::gelu::gelu_seq;
use crate::cpu::ops::gemm::{matmul, MatRef, Par};
use crate::cpu::ops::layer_norm::layer_norm;
use rayon::prelude::*;

/// Grid rows per tile: 2 rows of a 64-wide grid are 128 image tokens, 512 pixels after
/// conv 1 (128 KB at 64 channels) and 2048 after conv 2 (256 KB at 32 channels).
const TILE_ROWS: usize = 2;

pub struct OutputUpscaling<'a> {
    /// ConvTranspose2d(dim, dim/4, k2, s2).
    pub up1: &'a ConvTranspose2d,
    /// LayerNorm2d over up1's channels.
    pub ln_w: &'a [f32],
    pub ln_b: &'a [f32],
    pub ln_eps: f32,
    /// ConvTranspose2d(dim/4, dim/8, k2, s2).
    pub up2: &'a ConvTranspose2d,
}

impl OutputUpscaling<'_> {
    /// `src` is the transformer's image tokens `[g*g, dim]` (row-major grid), `hyper` the
    /// hypernetwork outputs `[nm, dim/8]`. Returns the mask logits `[nm, 4g, 4g]`.
    pub fn masks(&self, src: &[f32], grid: usize, hyper: &[f32], nm: usize, par: Par) -> Vec<f32> {
        let (cin, c1, c2) = (self.up1.cin(), self.up1.cout(), self.up2.cout());
        assert!(
            self.up1.kernel() == 2 && self.up2.kernel() == 2,
            "k2 s2 upscaling"
        );
        assert_eq!(self.up2.cin(), c1, "conv 2 input channels");
        assert_eq!(src.len(), grid * grid * cin, "image tokens size");
        assert_eq!(hyper.len(), nm * c2, "hypernetwork outputs size");
        let side = 4 * grid;
        let tiles: Vec<usize> = (0..grid).step_by(TILE_ROWS).collect();
        let tile = |&y0: &usize| -> Vec<f32> {
            let rows = TILE_ROWS.min(grid - y0);
            let px = rows * grid;
            let mut u1 = vec![0.0f32; px * 4 * c1];
            self.up1.forward_into(
                &src[y0 * grid * cin..(y0 + rows) * grid * cin],
                px,
                &mut u1,
                Par::Seq,
            );
            layer_norm(&mut u1, c1, self.ln_w, self.ln_b, self.ln_eps);
            gelu_seq(&mut u1);
            let mut u2 = vec![0.0f32; px * 16 * c2];
            self.up2.forward_into(&u1, px * 4, &mut u2, Par::Seq);
            gelu_seq(&mut u2);
            // Blocked logits [nm, px*16] = hyper [nm, c2] @ u2^T.
            let npix = px * 16;
            let mut blocked = vec![0.0f32; nm * npix];
            matmul(
                MatRef::rows(hyper, nm, c2),
                MatRef::transposed(&u2, c2, npix),
                &mut blocked,
                npix,
                0.0,
                Par::Seq,
            );
            // Blocked index ((y*g + x)*4 + d1)*4 + d2, d = 2*dy + dx, is output pixel
            // (4y + 2*dy1 + dy2, 4x + 2*dx1 + dx2); the tile owns output rows 4*y0...
            let mut out = vec![0.0f32; nm * 4 * rows * side];
            for (dst, b) in out.chunks_mut(4 * rows * side).zip(blocked.chunks(npix)) {
                let mut i = 0;
                for y in 0..rows {
                    for x in 0..grid {
                        for d1 in 0..4 {
                            for d2 in 0..4 {
                                let yy = 4 * y + 2 * (d1 / 2) + d2 / 2;
                                let xx = 4 * x + 2 * (d1 % 2) + d2 % 2;
                                dst[yy * side + xx] = b[i];
                                i += 1;
                            }
                        }
                    }
                }
            }
            out
        };
        let parts: Vec<Vec<f32>> = match par {
            Par::Threads => tiles.par_iter().map(tile).collect(),
            Par::Seq => tiles.iter().map(tile).collect(),
        };
        let mut low_res = vec![0.0f32; nm * side * side];
        for (&y0, part) in tiles.iter().zip(&parts) {
            let n = part.len() / nm.max(1);
            for (m, p) in part.chunks(n).enumerate() {
                let at = m * side * side + 4 * y0 * side;
                low_res[at..at + n].copy_from_slice(p);
            }
        }
        low_res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::weights::Rng;

    fn rand(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| rng.uniform_pm1() * scale).collect()
    }

    /// The layers one after another on whole tensors, then a direct per-pixel scatter.
    fn unfused(s: &OutputUpscaling, src: &[f32], g: usize, hyper: &[f32], nm: usize) -> Vec<f32> {
        let (c1, c2) = (s.up1.cout(), s.up2.cout());
        let mut u1 = s.up1.forward(src, g * g, Par::Seq);
        layer_norm(&mut u1, c1, s.ln_w, s.ln_b, s.ln_eps);
        gelu_seq(&mut u1);
        let mut u2 = s.up2.forward(&u1, g * g * 4, Par::Seq);
        gelu_seq(&mut u2);
        let side = 4 * g;
        let mut out = vec![0.0f32; nm * side * side];
        for (i, px) in u2.chunks(c2).enumerate() {
            let (d2, d1, x, y) = (i % 4, (i / 4) % 4, (i / 16) % g, i / (16 * g));
            let yy = 4 * y + 2 * (d1 / 2) + d2 / 2;
            let xx = 4 * x + 2 * (d1 % 2) + d2 % 2;
            for m in 0..nm {
                let h = &hyper[m * c2..(m + 1) * c2];
                out[(m * side + yy) * side + xx] = h.iter().zip(px).map(|(a, b)| a * b).sum();
            }
        }
        out
    }

    #[test]
    fn tiled_equals_unfused_layers() {
        let mut rng = Rng::new(5);
        // vit_b's 256 channels on a 64 grid, and an odd grid (last tile has one row).
        for (dim, g, nm) in [(256, 64, 4), (32, 7, 3)] {
            let (c1, c2) = (dim / 4, dim / 8);
            let up1 = ConvTranspose2d::new(
                &rand(&mut rng, dim * c1 * 4, 0.1),
                &rand(&mut rng, c1, 0.1),
                dim,
                c1,
                2,
            )
            .unwrap();
            let up2 = ConvTranspose2d::new(
                &rand(&mut rng, c1 * c2 * 4, 0.2),
                &rand(&mut rng, c2, 0.1),
                c1,
                c2,
                2,
            )
            .unwrap();
            let (ln_w, ln_b) = (rand(&mut rng, c1, 1.0), rand(&mut rng, c1, 0.5));
            let s = OutputUpscaling {
                up1: &up1,
                ln_w: &ln_w,
                ln_b: &ln_b,
                ln_eps: 1e-6,
                up2: &up2,
            };
            let src = rand(&mut rng, g * g * dim, 2.0);
            let hyper = rand(&mut rng, nm * c2, 1.0);
            let want = unfused(&s, &src, g, &hyper, nm);
            for par in [Par::Seq, Par::Threads] {
                let got = s.masks(&src, g, &hyper, nm, par);
                // Outputs O(1); only the 32-long hypernetwork dot product may sum in
                // another order (gemm vs this loop).
                let d = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(d < 1e-5, "dim {dim} grid {g}: {d}");
            }
        }
    }
}
