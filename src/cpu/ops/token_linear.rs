//! The CPU side of `token_linear` (`kernels/token_linear.cu`): nn.Linear on strided token
//! rows with an optional added input (the query PE), ReLU and residual add.

use crate::cpu::ops::gemm::{linear, Par};

/// `out[r * ldo..][..n] (+)= act((a[r * lda..][..k] + a2[..]) @ w^T + bias)` for `m` rows.
#[allow(clippy::too_many_arguments)]
pub fn token_linear(
    a: &[f32],
    a2: Option<&[f32]>,
    (m, n, k): (usize, usize, usize),
    (lda, ldo): (usize, usize),
    w: &[f32],
    bias: &[f32],
    (relu, accumulate): (bool, bool),
    out: &mut [f32],
) {
    let x: Vec<f32> = (0..m)
        .flat_map(|r| (0..k).map(move |c| (r, c)))
        .map(|(r, c)| a[r * lda + c] + a2.map_or(0.0, |p| p[r * lda + c]))
        .collect();
    let y = linear(&x, m, w, Some(bias), n, Par::Seq);
    for r in 0..m {
        for c in 0..n {
            let mut v = y[r * n + c];
            if relu && v < 0.0 {
                v = 0.0;
            }
            let o = &mut out[r * ldo + c];
            *o = if accumulate { *o + v } else { v };
        }
    }
}
