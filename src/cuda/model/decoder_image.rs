//! The mask decoder's per-image prep schedule: what every decode without mask inputs reads
//! and only the image decides (layer 0's image side), run once when the decoder's embedding
//! slot takes a new image rather than in every decode.

use super::mask_decoder::{
    image_gemm, layer0_externals, DecoderDims, Layer0Side, DENSE_PE, NO_MASK, T,
};
use crate::graph::buffer::{BufId, DType, Role};
use crate::graph::decoder_ops::ImageTokens;
use crate::graph::ops::{GemmEpilogue, Op};
use crate::graph::schedule::Graph;

/// The per-image prep schedule's buffers: the embedding slot and layer 0's image side, all
/// external.
#[derive(Clone, Copy, Debug)]
pub struct ImageIo {
    pub embedding: BufId,
    pub layer0: Layer0Side,
}

/// The executor key of the per-image prep schedule (`DecoderKey::pack` never gives 0: a
/// batch has at least one prompt).
pub const IMAGE_PREP_KEY: usize = 0;

/// The decoder's per-image prep: the image tokens (embedding + no-mask embedding) in fp16,
/// plain and plus the dense PE, and layer 0's image-side projections from them, which every
/// decode without mask inputs reads ([`DecoderIo::layer0`]). Run when the decoder's
/// embedding slot takes a new image.
pub fn build_image_graph(d: &DecoderDims) -> (Graph<Op>, ImageIo) {
    let (dim, hw) = (d.dim, d.hw());
    let c = dim / 2;
    let mut gr = Graph::default();
    let embedding = gr.buffer("embedding", DType::F32, dim * hw, Role::External);
    let layer0 = layer0_externals(&mut gr, d);
    let img16 = gr.buffer("image_tokens", DType::F16, hw * dim, Role::Intermediate);
    let imgpe16 = gr.buffer("image_tokens_pe", DType::F16, hw * dim, Role::Intermediate);
    let op = ImageTokens {
        embedding,
        dense: None,
        no_mask: gr.weights.id(NO_MASK, DType::F32, dim),
        pe: gr.weights.id(DENSE_PE, DType::F32, hw * dim),
        out32: None,
        out16: Some(img16),
        outpe16: Some(imgpe16),
        sides: 1,
        batch: 1,
        hw,
        dim,
    };
    gr.add("image_tokens", Op::ImageTokens(op));
    let t2i = format!("{T}.layers.0.cross_attn_token_to_image");
    let i2t = format!("{T}.layers.0.cross_attn_image_to_token");
    for (name, a, out) in [
        (format!("{t2i}.k_proj"), imgpe16, layer0.t2i_k),
        (format!("{t2i}.v_proj"), img16, layer0.t2i_v),
        (format!("{i2t}.q_proj"), imgpe16, layer0.i2t_q),
    ] {
        image_gemm(&mut gr, &name, (a, out), (hw, c, dim), GemmEpilogue::Bias);
    }
    (gr, ImageIo { embedding, layer0 })
}
