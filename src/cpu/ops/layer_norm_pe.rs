//! The CPU side of `layer_norm_pe` (`kernels/layer_norm_pe.cu`): LayerNorm of fp32 rows in
//! place, and the rows plus a positional encoding that the next projections read.

use crate::cpu::ops::layer_norm::layer_norm;

/// Normalises `x` `[rows, dim]` in place; returns `x + pe[row % pe_rows]` when `pe` is given.
pub fn layer_norm_pe(
    x: &mut [f32],
    dim: usize,
    (gamma, beta, eps): (&[f32], &[f32], f32),
    pe: Option<(&[f32], usize)>,
) -> Option<Vec<f32>> {
    layer_norm(x, dim, gamma, beta, eps);
    pe.map(|(p, pe_rows)| {
        x.chunks(dim)
            .enumerate()
            .flat_map(|(r, row)| {
                let pr = &p[(r % pe_rows) * dim..(r % pe_rows + 1) * dim];
                row.iter().zip(pr).map(|(a, b)| a + b).collect::<Vec<_>>()
            })
            .collect()
    })
}
