//! The CPU side of the `conv_transpose2x2` kernel family: the GEMM weight layout the device
//! upscaling runs on, and the references of its two scatter kernels (what the mask decoder's
//! output upscaling computes, in image order).

use crate::cpu::ops::conv_transpose2d::ConvTranspose2d;
use crate::cpu::ops::gelu::gelu_seq;
use crate::cpu::ops::gemm::Par;
use crate::cpu::ops::layer_norm::layer_norm;
use crate::error::Result;

/// ConvTranspose2d(k=2, s=2) as a GEMM weight in nn.Linear layout: `w` `[4*cout, cin]`, row
/// `(dy*2 + dx)*cout + o` = official `W[:, o, dy, dx]`, and the bias repeated per sub-pixel
/// `[4*cout]`. The GEMM's output row for input pixel p then holds its 2x2 output pixels one
/// after the other, each with `cout` contiguous channels.
pub fn gemm_layout(weight: &[f32], bias: &[f32], cin: usize, cout: usize) -> (Vec<f32>, Vec<f32>) {
    let mut w = vec![0.0f32; 4 * cout * cin];
    for i in 0..cin {
        for o in 0..cout {
            for d in 0..4 {
                w[(d * cout + o) * cin + i] = weight[(i * cout + o) * 4 + d];
            }
        }
    }
    let b = (0..4).flat_map(|_| bias.iter().copied()).collect();
    (w, b)
}

/// Sub-pixel-blocked rows `[batch*g*g*4, c]` (as [`ConvTranspose2d`] and the GEMM produce
/// them) to NHWC `[batch, 2g, 2g, c]`.
pub fn unblock(x: &[f32], batch: usize, g: usize, c: usize) -> Vec<f32> {
    let side = 2 * g;
    let mut out = vec![0.0f32; x.len()];
    for b in 0..batch {
        for y in 0..g {
            for xx in 0..g {
                for d in 0..4 {
                    let src = ((b * g * g + y * g + xx) * 4 + d) * c;
                    let (yy, xo) = (2 * y + d / 2, 2 * xx + d % 2);
                    let dst = ((b * side + yy) * side + xo) * c;
                    out[dst..dst + c].copy_from_slice(&x[src..src + c]);
                }
            }
        }
    }
    out
}

/// Reference of `conv_transpose2x2_ln_gelu` after its GEMM: `x` `[batch*g*g, cin]` through
/// ConvTranspose2d(k=2, s=2), LayerNorm2d and GELU, as NHWC `[batch, 2g, 2g, cout]`.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2x2_ln_gelu(
    x: &[f32],
    (batch, g): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    (cin, cout): (usize, usize),
    ln: (&[f32], &[f32]),
    eps: f32,
) -> Result<Vec<f32>> {
    let ct = ConvTranspose2d::new(weight, bias, cin, cout, 2)?;
    let mut y = ct.forward(x, batch * g * g, Par::Seq);
    layer_norm(&mut y, cout, ln.0, ln.1, eps);
    gelu_seq(&mut y);
    Ok(unblock(&y, batch, g, cout))
}

/// Reference of `conv_transpose2x2_masks`: `up` NHWC `[batch, side, side, c]` (the second
/// upscaling's output in image order), `hyper` `[batch, masks, c]` -> `[batch, masks, side,
/// side]`.
pub fn conv_transpose2x2_masks(
    up: &[f32],
    hyper: &[f32],
    (batch, side, c, masks): (usize, usize, usize, usize),
) -> Vec<f32> {
    let plane = side * side;
    let mut out = vec![0.0f32; batch * masks * plane];
    for b in 0..batch {
        for m in 0..masks {
            let h = &hyper[(b * masks + m) * c..(b * masks + m + 1) * c];
            for p in 0..plane {
                let px = &up[(b * plane + p) * c..(b * plane + p + 1) * c];
                out[(b * masks + m) * plane + p] = h.iter().zip(px).map(|(a, v)| a * v).sum();
            }
        }
    }
    out
}
