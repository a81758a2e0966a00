//! The CPU side of `attn_decoder` (`kernels/attn_decoder.cu`): the decoder's bias-free
//! attention over a batch of prompts, one image side shared by all when a stride is 0.

use crate::cpu::ops::attention::attn_plain;
use crate::cpu::ops::gemm::Par;

/// q `[qn, lq, c]`, k/v `[kvn, lk, c]` with `qn`, `kvn` 1 (shared) or `batch`; returns
/// `[batch, lq, c]`, `c = heads * head_dim`.
pub fn attn_decoder(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (batch, lq, lk): (usize, usize, usize),
    (heads, head_dim): (usize, usize),
    (q_shared, kv_shared): (bool, bool),
) -> Vec<f32> {
    let c = heads * head_dim;
    let (qs, kvs) = (lq * c, lk * c);
    (0..batch)
        .flat_map(|b| {
            let (qb, kb) = (if q_shared { 0 } else { b }, if kv_shared { 0 } else { b });
            attn_plain(
                &q[qb * qs..(qb + 1) * qs],
                lq,
                &k[kb * kvs..(kb + 1) * kvs],
                &v[kb * kvs..(kb + 1) * kvs],
                lk,
                c,
                heads,
                Par::Seq,
            )
        })
        .collect()
}
