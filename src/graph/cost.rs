//! What a node must do at least, from the schedule alone: its nominal FLOPs (the model's
//! arithmetic, SAM's own window padding included, not the kernel's tile padding) and its
//! compulsory bytes (every buffer and weight it touches, moved once). `samrt profile` sets
//! each kernel's roofline floor from these; on a GPU, where no counters exist, they are the
//! FLOPs and bytes it reports.

use crate::graph::buffer::BufId;
use crate::graph::fold_ops::{AttnFoldI2t, AttnFoldT2i};
use crate::graph::ops::{Op, OpDesc};
use crate::graph::schedule::{Graph, Node};
use crate::graph::weights::WeightId;

/// A node's nominal work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCost {
    /// Multiply-adds count two. Elementwise ops (LayerNorm, casts, preprocessing) count
    /// zero: their few operations per byte never set their floor.
    pub flops: u64,
    /// Bytes of the buffers and weights it reads, each once.
    pub read_bytes: u64,
    /// Bytes of the buffers it writes, each once.
    pub write_bytes: u64,
}

/// The weights `op` reads.
pub fn op_weights(op: &Op) -> Vec<WeightId> {
    match op {
        Op::PreprocessPatchify(_) | Op::CastRows(_) => vec![],
        Op::ResidualInit(r) => vec![r.pos_embed],
        Op::Gemm(g) => std::iter::once(g.weight).chain(g.bias).collect(),
        Op::LayerNorm(l) => vec![l.gamma, l.beta],
        Op::AttnRelpos(a) => vec![a.qkv_bias, a.rel_pos_h, a.rel_pos_w],
        Op::Conv3x3(c) => vec![c.weight],
        Op::DecoderTokens(d) => vec![d.gauss, d.table, d.prefix],
        Op::MaskDownscaling(m) => vec![m.packed],
        Op::ImageTokens(i) => vec![i.no_mask, i.pe],
        Op::TokenLinear(t) => t
            .jobs
            .iter()
            .flat_map(|j| [j.weight, j.bias])
            .chain(t.norm.iter().flat_map(|n| [n.gamma, n.beta]))
            .collect(),
        Op::LayerNormPe(l) => [l.gamma, l.beta].into_iter().chain(l.pe).collect(),
        Op::ConvTranspose2x2LnGelu(c) => vec![c.gamma, c.beta],
        Op::AttnFoldI2t(a) => vec![a.bias],
        Op::AttnDecoder(_)
        | Op::AttnDecoderCombine(_)
        | Op::AttnFoldT2i(_)
        | Op::AttnFoldT2iCombine(_)
        | Op::ConvTranspose2x2Masks(_) => vec![],
    }
}

/// Nominal FLOPs of `op` (see [`NodeCost::flops`]).
pub fn op_flops(op: &Op) -> u64 {
    let n = |x: usize| x as u64;
    match op {
        Op::Gemm(g) => 2 * n(g.m) * n(g.n) * n(g.k),
        Op::Conv3x3(c) => 2 * n(c.batch) * n(c.h) * n(c.w) * n(c.cout) * n(c.cin) * 9,
        Op::AttnRelpos(a) => {
            // Per window and head: q k^T and p v (2·T²·hd each) and the two decomposed
            // rel-pos products (2·T·S·hd each), over SAM's zero-padded windows.
            let side = n(a.window.max(1));
            let windows = n(a.grid).div_ceil(side).pow(2);
            let tokens = side * side;
            let hd = n(a.head_dim());
            n(a.batch) * windows * n(a.heads) * (4 * tokens * tokens * hd + 4 * tokens * side * hd)
        }
        Op::TokenLinear(t) => 2 * n(t.m) * n(t.n) * n(t.k) * n(t.jobs.len()),
        Op::AttnDecoder(a) => {
            // q k^T and p v per prompt and head.
            let s = &a.shape;
            n(s.batch) * n(s.heads) * 4 * n(s.lq) * n(s.lk) * n(s.head_dim)
        }
        // Two products of `rows x hw x dim` per prompt: the folded logits and p @ values.
        Op::AttnFoldT2i(AttnFoldT2i { shape: s, .. })
        | Op::AttnFoldI2t(AttnFoldI2t { shape: s, .. }) => {
            4 * n(s.batch) * n(s.rows()) * n(s.hw) * n(s.dim)
        }
        Op::ConvTranspose2x2Masks(c) => {
            // The hypernetwork product over the upscaled (2 grid)^2 pixels; the scatter
            // itself is data movement.
            2 * n(c.batch) * n(c.masks) * 4 * n(c.grid).pow(2) * n(c.channels)
        }
        Op::MaskDownscaling(m) => {
            // Per prompt, at the embedding grid g: conv 1->4 (2x2, stride 2) at 2g, conv
            // 4->16 (2x2, stride 2) at g, conv 16->dim (1x1) at g.
            let g2 = n(m.grid).pow(2);
            2 * n(m.batch) * g2 * (4 * 4 * 4 + 16 * 16 + 16 * n(m.dim))
        }
        Op::PreprocessPatchify(_)
        | Op::ResidualInit(_)
        | Op::LayerNorm(_)
        | Op::CastRows(_)
        | Op::DecoderTokens(_)
        | Op::ImageTokens(_)
        | Op::LayerNormPe(_)
        | Op::ConvTranspose2x2LnGelu(_)
        | Op::AttnDecoderCombine(_)
        | Op::AttnFoldT2iCombine(_) => 0,
    }
}

/// The nominal cost of `node` in `graph`.
pub fn node_cost(graph: &Graph<Op>, node: &Node<Op>) -> NodeCost {
    let buf_bytes = |ids: &[BufId]| -> u64 {
        ids.iter()
            .map(|&b| graph.get(b).bytes() as u64)
            .sum::<u64>()
    };
    let weight_bytes: u64 = op_weights(&node.op)
        .iter()
        .map(|w| {
            let e = &graph.weights.entries[w.0];
            (e.len * e.dtype.size()) as u64
        })
        .sum();
    NodeCost {
        flops: op_flops(&node.op),
        read_bytes: buf_bytes(&node.op.reads()) + weight_bytes,
        write_bytes: buf_bytes(&node.op.writes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::buffer::{DType, Role};
    use crate::graph::ops::{Gemm, GemmEpilogue};
    use crate::graph::weights::WeightRef;

    #[test]
    fn gemm_cost_is_2mnk_and_its_operands_once() {
        let mut g: Graph<Op> = Graph::default();
        let a = g.buffer("a", DType::F16, 64 * 32, Role::Intermediate);
        let out = g.buffer("out", DType::F16, 64 * 48, Role::Intermediate);
        g.weights.entries.push(WeightRef {
            name: "w".into(),
            dtype: DType::F16,
            len: 48 * 32,
        });
        g.weights.entries.push(WeightRef {
            name: "b".into(),
            dtype: DType::F32,
            len: 48,
        });
        g.add(
            "x",
            Op::Gemm(Gemm {
                a,
                weight: WeightId(0),
                bias: Some(WeightId(1)),
                out,
                epilogue: GemmEpilogue::Bias,
                m: 64,
                n: 48,
                k: 32,
                in_scale: 1.0,
                out_scale: 1.0,
                row_scale: None,
            }),
        );
        let c = node_cost(&g, &g.nodes[0]);
        assert_eq!(c.flops, 2 * 64 * 48 * 32);
        assert_eq!(c.read_bytes, 64 * 32 * 2 + 48 * 32 * 2 + 48 * 4);
        assert_eq!(c.write_bytes, 64 * 48 * 2);
    }
}
