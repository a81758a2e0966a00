//! The prompt encoder and mask decoder as one schedule of named ops (`crate::graph::ops`),
//! mirroring `MaskDecoder.predict_masks` and `TwoWayTransformer.forward` for a batch of
//! prompts that share one image embedding, the same token count and the same kind of dense
//! input (all with a mask input, or none). Labels name the official modules.
//!
//! Numerics: the prompt-token side (a few rows per prompt) runs in fp32 (`token_linear`,
//! which also runs the post-norms on the rows it reads, and `attn_decoder`); the image side (4096 tokens per prompt) runs its
//! projections and the output upscaling on the fp16 tensor-core `gemm` with fp32
//! accumulation, while the image tokens' residual stream stays fp32. Where a prompt has its
//! own image side (every layer after 0, and layer 0 with mask inputs) the cross attentions
//! are folded as the CPU's `cpu/ops/folded_attention.rs` folds them (`graph::fold_ops`):
//! the image-side projections are reassociated onto the few token rows (token Linears with
//! weights derived at load, `decoder_fold`), and one fused kernel per attention runs the
//! logits, softmax and product over the image rows, so no per-prompt image-side GEMM runs
//! in the transformer. They fold only where that is less work (`AttnFoldShape::pays`: few
//! tokens on a large image, e.g. one point at 1024 px but not at 128 px); elsewhere the
//! image side is projected per prompt as the official module does. What does not depend on the prompt is not redone per prompt: the dense positional encoding is a weight (computed on the host
//! at load), and without mask inputs layer 0's image tokens and their token->image keys and
//! values and image->token queries are computed once per image by the per-image prep
//! (`decoder_image::build_image_graph`, run when the decoder's embedding slot takes a new
//! image) and
//! shared by every prompt and every decode on that image (batch stride 0 in the attention
//! kernels). With mask inputs the dense prompt differs per prompt, so each prompt has its
//! own layer-0 image side.
//!
//! Launch count decides one prompt's latency (docs/kernels.md, "Token side"), so same-shape
//! token Linears share a launch (`Builder::linears`) and a post-norm is left pending
//! (`Builder::post_norm`) for the next Linear that reads the token stream to apply.

pub(crate) use super::decoder_dims::{image_gemm, layer0_externals};
pub use super::decoder_dims::{DecoderDims, Layer0Side};
use super::decoder_fold::fold_job;
pub use super::decoder_prompts::{
    plan_batches, requested_masks, DecodedMasks, DecoderKey, DevicePrompt, OwnedPrompt, PostFrame,
    PredictedMasks, MAX_DECODE_BATCH,
};
use super::token_groups::{group_label, Head, Job, LinearGroup};
use crate::graph::buffer::{BufId, DType, Role};
use crate::graph::decoder_ops::{
    AttnDecoder, AttnDecoderCombine, AttnDecoderKind, AttnDecoderShape, ConvTranspose2x2LnGelu,
    ConvTranspose2x2Masks, DecoderTokens, ImageTokens, LayerNormPe, LinearJob, MaskDownscaling,
    TokenLinear, TokenNorm, TL_MAX_JOBS,
};
use crate::graph::fold_ops::{AttnFoldI2t, AttnFoldShape, AttnFoldT2i, AttnFoldT2iCombine};
use crate::graph::ops::{GemmEpilogue, Op};
use crate::graph::schedule::Graph;
use crate::graph::weights::WeightId;

pub(crate) const P: &str = "mask_decoder";
pub(crate) const T: &str = "mask_decoder.transformer";
/// nn.LayerNorm's default eps (the transformer's norms).
const LN_EPS: f32 = 1e-5;
/// LayerNorm2d's eps (the output upscaling).
const LN2D_EPS: f32 = 1e-6;

/// Derived tensors the schedule reads besides the official ones.
pub(crate) const OUTPUT_TOKENS: &str = "mask_decoder.output_tokens";
pub(crate) const GAUSS: &str = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix";
pub(crate) const SPARSE_TABLE: &str = "prompt_encoder.sparse_table";
pub(crate) const NO_MASK: &str = "prompt_encoder.no_mask_embed.weight";
pub(crate) const MASK_PACKED: &str = "prompt_encoder.mask_downscaling.packed";
pub(crate) const DENSE_PE: &str = "prompt_encoder.dense_pe.token_major";

/// Buffers the caller fills before a run and reads after it.
#[derive(Clone, Copy, Debug)]
pub struct DecoderIo {
    /// fp32 `[dim, grid, grid]`: the image embedding, an external buffer (the decoder's
    /// embedding slot).
    pub embedding: BufId,
    /// fp32 `[batch * sparse, 2]` and i32 `[batch * sparse]`: token coordinates in the input
    /// frame and kinds (`cuda::ops::prompt_encoder::prompt_tokens`).
    pub coords: BufId,
    pub kinds: BufId,
    /// fp32 `[batch, 4 grid, 4 grid]` mask inputs, when the key has them.
    pub masks: Option<BufId>,
    /// fp32 `[batch, masks, 4 grid, 4 grid]` and `[batch, masks]`: every mask token's output.
    pub low_res: BufId,
    pub iou: BufId,
    /// Without mask inputs: layer 0's image side, external buffers that the decoder's
    /// per-image prep (`decoder_image::build_image_graph`) fills when its embedding slot
    /// changes.
    pub layer0: Option<Layer0Side>,
}

/// The image side a layer reads: fp16 image tokens and tokens + PE of `sides` images (1:
/// shared by every prompt, or one per prompt), or layer 0's projections precomputed.
#[derive(Clone, Copy, Debug)]
enum Side {
    Tokens(BufId, BufId, usize),
    Layer0(Layer0Side),
}

struct Builder<'a> {
    gr: Graph<Op>,
    d: &'a DecoderDims,
    batch: usize,
    /// Tokens per prompt.
    t: usize,
    /// The token residual stream's two buffers: a LayerNorm fused into a Linear writes the
    /// normalised rows into the other one, which becomes the stream.
    stream: [BufId; 2],
    cur: usize,
    /// A post-norm not applied yet: the next Linear that reads the stream runs it on its
    /// input rows (`token_linear`'s fused LayerNorm), so it costs no launch of its own.
    pending: Option<String>,
}

impl Builder<'_> {
    fn w(&mut self, name: &str, dtype: DType, len: usize) -> WeightId {
        self.gr.weights.id(name, dtype, len)
    }

    /// A scratch buffer, named after its module without the common prefixes.
    fn scratch(&mut self, name: String, dtype: DType, len: usize) -> BufId {
        let short = name.trim_start_matches("mask_decoder.");
        let short = short.trim_start_matches("transformer.");
        self.gr.buffer(short, dtype, len, Role::Intermediate)
    }

    fn f32s(&mut self, name: String, len: usize) -> BufId {
        self.scratch(name, DType::F32, len)
    }

    fn f16s(&mut self, name: String, len: usize) -> BufId {
        self.scratch(name, DType::F16, len)
    }

    /// The token residual stream.
    fn queries(&self) -> BufId {
        self.stream[self.cur]
    }

    /// Post-norm `name` of the stream, left for the next Linear that reads it.
    fn post_norm(&mut self, name: &str) {
        assert!(self.pending.is_none(), "two post-norms in a row");
        self.pending = Some(name.to_string());
    }

    /// The stream as the next Linear reads it, with the pending post-norm that Linear must
    /// apply; when `keep`, its normalised rows become the stream (later residual adds go
    /// there).
    fn take_norm(&mut self, keep: bool) -> (BufId, Option<TokenNorm>) {
        let src = self.queries();
        let Some(name) = self.pending.take() else {
            return (src, None);
        };
        let dim = self.d.dim;
        let out = keep.then(|| {
            self.cur = 1 - self.cur;
            self.queries()
        });
        let norm = TokenNorm {
            gamma: self.w(&format!("{name}.weight"), DType::F32, dim),
            beta: self.w(&format!("{name}.bias"), DType::F32, dim),
            eps: LN_EPS,
            out,
        };
        (src, Some(norm))
    }

    /// fp32 Linears of one shape on rows of `a` (strided `lda`, plus `a2` for the jobs that
    /// ask for it, after `norm` when given), one launch per [`TL_MAX_JOBS`]:
    /// `out (+)= act(..)`.
    fn linears(
        &mut self,
        a: (BufId, usize, Option<BufId>),
        g: LinearGroup,
        norm: Option<TokenNorm>,
        jobs: Vec<Job>,
    ) {
        let (a, lda, a2) = a;
        for (i, chunk) in jobs.chunks(TL_MAX_JOBS).enumerate() {
            // Every launch normalises its rows; the first keeps them.
            let norm = norm.clone().map(|n| TokenNorm {
                out: n.out.filter(|_| i == 0),
                ..n
            });
            let names: Vec<&str> = chunk.iter().map(|j| j.name.as_str()).collect();
            let label = group_label(&names);
            let jobs = chunk
                .iter()
                .map(|j| LinearJob {
                    a_offset: j.a_offset,
                    with_a2: j.pe,
                    weight: self.w(&format!("{}.weight", j.name), DType::F32, g.n * g.k),
                    bias: self.w(&format!("{}.bias", j.name), DType::F32, g.n),
                    out: j.out,
                    out_offset: j.out_offset,
                })
                .collect();
            let op = TokenLinear {
                a,
                lda,
                a2,
                ldo: g.ldo,
                m: g.m,
                n: g.n,
                k: g.k,
                relu: g.relu,
                accumulate: g.accumulate,
                norm,
                jobs,
            };
            self.gr.add(label, Op::TokenLinear(op));
        }
    }

    /// fp32 Linear on every token row (`a` and `out` contiguous).
    fn tokens_linear(
        &mut self,
        name: &str,
        a: BufId,
        a2: Option<BufId>,
        out: BufId,
        nk: (usize, usize),
        acc: bool,
    ) {
        let (n, k) = nk;
        let g = self.token_rows(n, k, false, acc);
        self.linears((a, k, a2), g, None, vec![Job::new(name, a2.is_some(), out)]);
    }

    /// The shape of Linears `k -> n` on every token row, contiguous.
    fn token_rows(&self, n: usize, k: usize, relu: bool, accumulate: bool) -> LinearGroup {
        LinearGroup {
            m: self.batch * self.t,
            n,
            k,
            ldo: n,
            relu,
            accumulate,
        }
    }

    /// The folded per-head token Linears `dim -> dim`, head `h` writing columns
    /// `h * dim..` of each `[heads * dim]` row (`graph::fold_ops` layout).
    fn per_head_rows(&self) -> LinearGroup {
        let dim = self.d.dim;
        LinearGroup {
            ldo: self.d.heads * dim,
            ..self.token_rows(dim, dim, false, false)
        }
    }

    /// One job per head of the folded weight `{attn}.fold.{part}.{h}` into `out`.
    fn per_head_jobs(&self, attn: &str, part: &str, pe: bool, out: BufId) -> Vec<Job> {
        (0..self.d.heads)
            .map(|h| Job {
                out_offset: h * self.d.dim,
                ..Job::new(&fold_job(attn, part, Some(h)), pe, out)
            })
            .collect()
    }

    /// fp16 tensor-core Linear `{name}` on image rows.
    fn image_linear(
        &mut self,
        name: &str,
        a: BufId,
        out: BufId,
        mnk: (usize, usize, usize),
        epilogue: GemmEpilogue,
    ) {
        image_gemm(&mut self.gr, name, (a, out), mnk, epilogue);
    }

    fn norm(&mut self, name: &str, x: BufId, rows: usize, copies: Option<(BufId, BufId)>) {
        let dim = self.d.dim;
        let gamma = self.w(&format!("{name}.weight"), DType::F32, dim);
        let beta = self.w(&format!("{name}.bias"), DType::F32, dim);
        let hw = self.d.hw();
        let pe = copies.map(|_| self.w(DENSE_PE, DType::F32, hw * dim));
        let op = LayerNormPe {
            x,
            gamma,
            beta,
            pe,
            out16: copies.map(|c| c.0),
            outpe16: copies.map(|c| c.1),
            rows,
            dim,
            pe_rows: hw,
            eps: LN_EPS,
        };
        self.gr.add(name, Op::LayerNormPe(op));
    }

    fn attn(
        &mut self,
        label: &str,
        kind: AttnDecoderKind,
        (q, k, v, out): (BufId, BufId, BufId, BufId),
        (lq, lk, width): (usize, usize, usize),
        shared: (bool, bool),
    ) {
        let heads = self.d.heads;
        let shape = AttnDecoderShape {
            kind,
            batch: self.batch,
            lq,
            lk,
            heads,
            head_dim: width / heads,
            q_shared: shared.0,
            kv_shared: shared.1,
        };
        if kind != AttnDecoderKind::TokenToImageSplit {
            let op = AttnDecoder {
                q,
                k,
                v,
                out,
                shape,
            };
            self.gr.add(label, Op::AttnDecoder(op));
            return;
        }
        // Split over the keys: the chunks' softmax states go through planned scratch.
        let partial = self.f32s(format!("{label}.partial"), shape.partial_len());
        let op = AttnDecoder {
            q,
            k,
            v,
            out: partial,
            shape,
        };
        self.gr.add(label, Op::AttnDecoder(op));
        let combine = AttnDecoderCombine {
            partial,
            out,
            shape,
        };
        let label = format!("{label}.combine");
        self.gr.add(&label, Op::AttnDecoderCombine(combine));
    }

    /// Token->image cross attention `{name}` of the queries (PE `tokens` added) on the image
    /// side (`sides` of them; its keys and values precomputed in `pre`, if given), residual
    /// added into the stream.
    fn token_to_image(&mut self, name: &str, tokens: BufId, img: Side) {
        if let Side::Tokens(img16, imgpe16, sides) = img {
            let shape = self.fold_shape(sides);
            if shape.t2i_fits() && shape.pays() {
                return self.token_to_image_folded(name, tokens, (img16, imgpe16), shape);
            }
        }
        let (dim, hw) = (self.d.dim, self.d.hw());
        let c = dim / 2;
        let rows = self.batch * self.t;
        let q = self.f32s(format!("{name}.q"), rows * c);
        let (src, norm) = self.take_norm(true);
        let g = self.token_rows(c, dim, false, false);
        let q_proj = Job::new(&format!("{name}.q_proj"), true, q);
        self.linears((src, dim, Some(tokens)), g, norm, vec![q_proj]);
        let (k, v, sides) = match img {
            Side::Layer0(l) => (l.t2i_k, l.t2i_v, 1),
            Side::Tokens(img16, imgpe16, sides) => {
                let k = self.f16s(format!("{name}.k"), sides * hw * c);
                let gemm = (sides * hw, c, dim);
                self.image_linear(
                    &format!("{name}.k_proj"),
                    imgpe16,
                    k,
                    gemm,
                    GemmEpilogue::Bias,
                );
                let v = self.f16s(format!("{name}.v"), sides * hw * c);
                self.image_linear(
                    &format!("{name}.v_proj"),
                    img16,
                    v,
                    gemm,
                    GemmEpilogue::Bias,
                );
                (k, v, sides)
            }
        };
        let a = self.f32s(format!("{name}.attn"), rows * c);
        let shared = (false, sides == 1);
        let kind = AttnDecoderKind::token_to_image(hw);
        self.attn(name, kind, (q, k, v, a), (self.t, hw, c), shared);
        let queries = self.queries();
        self.tokens_linear(
            &format!("{name}.out_proj"),
            a,
            None,
            queries,
            (dim, c),
            true,
        );
    }

    /// The folded attentions' shape on `sides` image sides (1: shared by every prompt).
    fn fold_shape(&self, sides: usize) -> AttnFoldShape {
        AttnFoldShape {
            batch: self.batch,
            tokens: self.t,
            heads: self.d.heads,
            hw: self.d.hw(),
            dim: self.d.dim,
            head_dim: self.d.dim / 2 / self.d.heads,
            image_shared: sides == 1,
        }
    }

    /// Token->image folded (`graph::fold_ops`): per head `q'_h = (q_proj(x + pe))_h Wk_h`,
    /// one token Linear per head with the product `Wq_h^T Wk_h` as its weight; the
    /// attention over the fp16 image rows (+ PE for the logits) into `y`; then value and
    /// output projections as one Linear on each token's `heads * dim` row (weight
    /// `[Wo_h Wv_h]_h`, bias `Wo bv + bo`, softmax rows summing to one), residual added.
    fn token_to_image_folded(
        &mut self,
        name: &str,
        tokens: BufId,
        (img16, imgpe16): (BufId, BufId),
        shape: AttnFoldShape,
    ) {
        let (dim, heads) = (self.d.dim, self.d.heads);
        let qf = self.f32s(format!("{name}.q_folded"), shape.folded_len());
        let (src, norm) = self.take_norm(true);
        let g = self.per_head_rows();
        let jobs = self.per_head_jobs(name, "q", true, qf);
        self.linears((src, dim, Some(tokens)), g, norm, jobs);
        let partial = self.f32s(format!("{name}.partial"), shape.partial_len());
        let op = AttnFoldT2i {
            qf,
            xpe: imgpe16,
            x: img16,
            partial,
            shape,
        };
        self.gr.add(name, Op::AttnFoldT2i(op));
        let y = self.f32s(format!("{name}.y_folded"), shape.folded_len());
        let op = AttnFoldT2iCombine { partial, y, shape };
        self.gr
            .add(format!("{name}.combine"), Op::AttnFoldT2iCombine(op));
        let g = self.token_rows(dim, heads * dim, false, true);
        let out = Job::new(&fold_job(name, "out", None), false, self.queries());
        self.linears((y, heads * dim, None), g, None, vec![out]);
    }

    /// Image->token folded into the image stream `keys` (`graph::fold_ops`): per head
    /// `k'_h = Wq_h^T k_h` and `v''_h = Wo_h v_h` as token Linears on the normed queries
    /// (weights `Wq_h^T Wk_h`, `Wo_h Wv_h`), the logit bias `bq_h . k_h` as one more, then
    /// one kernel for the logits, the softmax over each head's tokens, the product and the
    /// residual add. Replaces the image-side q_proj and out_proj GEMMs.
    fn image_to_token_folded(
        &mut self,
        it: &str,
        tokens: BufId,
        keys: BufId,
        xpe: BufId,
        shape: AttnFoldShape,
    ) {
        let (dim, heads) = (self.d.dim, self.d.heads);
        let rows = self.batch * self.t;
        let kf = self.f32s(format!("{it}.k_folded"), shape.folded_len());
        let vf = self.f32s(format!("{it}.v_folded"), shape.folded_len());
        let cb = self.f32s(format!("{it}.logit_bias"), rows * heads);
        let (src, norm) = self.take_norm(true);
        let g = self.per_head_rows();
        let mut jobs = self.per_head_jobs(it, "k", true, kf);
        jobs.extend(self.per_head_jobs(it, "v", false, vf));
        self.linears((src, dim, Some(tokens)), g, norm.clone(), jobs);
        // The same normalised rows again; the first launch stored them already.
        let norm = norm.map(|n| TokenNorm { out: None, ..n });
        let g = self.token_rows(heads, dim, false, false);
        let logit_bias = Job::new(&fold_job(it, "logit_bias", None), true, cb);
        self.linears((src, dim, Some(tokens)), g, norm, vec![logit_bias]);
        let op = AttnFoldI2t {
            xpe,
            kf,
            cb,
            vf,
            bias: self.w(&format!("{it}.out_proj.bias"), DType::F32, dim),
            keys,
            shape,
        };
        self.gr.add(it, Op::AttnFoldI2t(op));
    }

    /// Layer `i` of the two-way transformer; returns the image side after it.
    fn layer(&mut self, i: usize, (tokens, keys): (BufId, BufId), img: Side) -> Side {
        let (dim, hw, b) = (self.d.dim, self.d.hw(), self.batch);
        let c = dim / 2;
        let rows = b * self.t;
        let p = format!("{T}.layers.{i}");
        // Self attention: layer 0 replaces the queries (no PE, no residual).
        let (src, pe, norm) = if i == 0 {
            (tokens, None, None)
        } else {
            let (src, norm) = self.take_norm(true);
            (src, Some(tokens), norm)
        };
        let sa = format!("{p}.self_attn");
        let [q, k, v, a] =
            ["q", "k", "v", "attn"].map(|s| self.f32s(format!("{sa}.{s}"), rows * dim));
        let g = self.token_rows(dim, dim, false, false);
        let with_pe = pe.is_some();
        let jobs = vec![
            Job::new(&format!("{sa}.q_proj"), with_pe, q),
            Job::new(&format!("{sa}.k_proj"), with_pe, k),
            Job::new(&format!("{sa}.v_proj"), false, v),
        ];
        self.linears((src, dim, pe), g, norm, jobs);
        self.attn(
            &sa,
            AttnDecoderKind::SelfAttn,
            (q, k, v, a),
            (self.t, self.t, dim),
            (false, false),
        );
        let queries = self.queries();
        self.tokens_linear(
            &format!("{sa}.out_proj"),
            a,
            None,
            queries,
            (dim, dim),
            i > 0,
        );
        self.post_norm(&format!("{p}.norm1"));
        // Tokens attend to the image.
        self.token_to_image(&format!("{p}.cross_attn_token_to_image"), tokens, img);
        self.post_norm(&format!("{p}.norm2"));
        // MLP (ReLU).
        let h = self.f32s(format!("{p}.mlp"), rows * self.d.mlp);
        let g = self.token_rows(self.d.mlp, dim, true, false);
        let lin1 = Job::new(&format!("{p}.mlp.lin1"), false, h);
        let (src, norm) = self.take_norm(true);
        self.linears((src, dim, None), g, norm, vec![lin1]);
        let queries = self.queries();
        self.tokens_linear(
            &format!("{p}.mlp.lin2"),
            h,
            None,
            queries,
            (dim, self.d.mlp),
            true,
        );
        self.post_norm(&format!("{p}.norm3"));
        // The image attends to the tokens: new queries, the image side from before.
        let it = format!("{p}.cross_attn_image_to_token");

        if let Side::Tokens(_, imgpe16, sides) = img {
            let shape = self.fold_shape(sides);
            if shape.i2t_fits() && shape.pays() {
                self.image_to_token_folded(&it, tokens, keys, imgpe16, shape);
                return self.layer_end(&p, keys);
            }
        }
        let k = self.f32s(format!("{it}.k"), rows * c);
        let v = self.f32s(format!("{it}.v"), rows * c);
        let g = self.token_rows(c, dim, false, false);
        let jobs = vec![
            Job::new(&format!("{it}.k_proj"), true, k),
            Job::new(&format!("{it}.v_proj"), false, v),
        ];
        let (src, norm) = self.take_norm(true);
        self.linears((src, dim, Some(tokens)), g, norm, jobs);
        let (q, sides) = match img {
            Side::Layer0(l) => (l.i2t_q, 1),
            Side::Tokens(_, imgpe16, sides) => {
                let q = self.f16s(format!("{it}.q"), sides * hw * c);
                self.image_linear(
                    &format!("{it}.q_proj"),
                    imgpe16,
                    q,
                    (sides * hw, c, dim),
                    GemmEpilogue::Bias,
                );
                (q, sides)
            }
        };
        let a = self.f16s(format!("{it}.attn"), b * hw * c);
        self.attn(
            &it,
            AttnDecoderKind::ImageToToken,
            (q, k, v, a),
            (hw, self.t, c),
            (sides == 1, false),
        );
        self.image_linear(
            &format!("{it}.out_proj"),
            a,
            keys,
            (b * hw, dim, c),
            GemmEpilogue::BiasResidual,
        );
        self.layer_end(&p, keys)
    }

    /// norm4 on the image stream, with the fp16 copies the next layer reads.
    fn layer_end(&mut self, p: &str, keys: BufId) -> Side {
        let (dim, hw, b) = (self.d.dim, self.d.hw(), self.batch);
        let n16 = self.f16s(format!("{p}.keys"), b * hw * dim);
        let npe16 = self.f16s(format!("{p}.keys_pe"), b * hw * dim);
        self.norm(&format!("{p}.norm4"), keys, b * hw, Some((n16, npe16)));
        Side::Tokens(n16, npe16, b)
    }

    /// The MLP heads, each on one token row per prompt, layer by layer: a head's layer `l`
    /// runs in one launch with every other head's layer `l` of the same shape that reads the
    /// same buffer (the IoU head and the hypernetworks share their hidden layers' shapes), and
    /// such a launch writes its hidden rows side by side into one buffer, so that the next
    /// layer groups the same way.
    fn heads(&mut self, heads: &[Head]) {
        let b = self.batch;
        // The final post-norm runs in each launch that reads the stream; nothing reads
        // the normalised stream after the heads.
        let (queries, norm) = self.take_norm(false);
        let depth = heads.iter().map(|h| h.dims.len() - 1).max().unwrap_or(0);
        // Each head's current input: (buffer, offset, row stride).
        let mut inputs: Vec<(BufId, usize, usize)> = heads
            .iter()
            .map(|h| (queries, h.token * self.d.dim, self.t * self.d.dim))
            .collect();
        for l in 0..depth {
            // Heads with a layer l, grouped by what one launch must share.
            type Key = (BufId, usize, usize, usize, Option<usize>);
            let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
            for (i, h) in heads.iter().enumerate() {
                let Some(w) = h.dims.get(l..l + 2) else {
                    continue;
                };
                // Last layers also share their output's row stride.
                let last = (l + 2 == h.dims.len()).then_some(h.out.2);
                let key = (inputs[i].0, inputs[i].2, w[1], w[0], last);
                match groups.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((key, vec![i])),
                }
            }
            for ((a, lda, n, k, last_ld), members) in groups {
                let last = last_ld.is_some();
                let hidden = (!last).then(|| {
                    let name = match members[..] {
                        [one] => format!("{}.layers.{l}.out", heads[one].name),
                        _ => format!("heads.layers.{l}.out"),
                    };
                    self.f32s(name, b * members.len() * n)
                });
                let ldo = last_ld.unwrap_or(members.len() * n);
                let mut jobs = Vec::with_capacity(members.len());
                for (slot, &i) in members.iter().enumerate() {
                    let (out, out_offset) = match hidden {
                        Some(buf) => (buf, slot * n),
                        None => (heads[i].out.0, heads[i].out.1),
                    };
                    jobs.push(Job {
                        name: format!("{}.layers.{l}", heads[i].name),
                        a_offset: inputs[i].1,
                        pe: false,
                        out,
                        out_offset,
                    });
                    inputs[i] = (out, out_offset, ldo);
                }
                let g = LinearGroup {
                    m: b,
                    n,
                    k,
                    ldo,
                    relu: !last,
                    accumulate: false,
                };
                let norm = norm.clone().filter(|_| a == queries);
                self.linears((a, lda, None), g, norm, jobs);
            }
        }
    }
}

/// The decoder schedule for `key`.
pub fn build_graph(d: &DecoderDims, key: DecoderKey) -> (Graph<Op>, DecoderIo) {
    let DecoderKey {
        batch,
        sparse,
        mask_input,
    } = key;
    let (dim, hw, prefix) = (d.dim, d.hw(), d.prefix());
    let t = prefix + sparse;
    let mut gr = Graph::default();
    let stream = ["queries", "queries_normed"]
        .map(|n| gr.buffer(n, DType::F32, batch * t * dim, Role::Intermediate));
    let mut b = Builder {
        gr,
        d,
        batch,
        t,
        stream,
        cur: 0,
        pending: None,
    };
    let side = d.low_res();
    // External: the decoder's embedding slot, bound once, so that every captured bucket
    // reads whichever embedding the slot holds without a copy into each arena.
    let embedding =
        b.gr.buffer("embedding", DType::F32, dim * hw, Role::External);
    let coords =
        b.gr.buffer("coords", DType::F32, batch * sparse * 2, Role::Input);
    let kinds =
        b.gr.buffer("kinds", DType::I32, batch * sparse, Role::Input);
    let masks = mask_input.then(|| {
        b.gr.buffer("mask_inputs", DType::F32, batch * side * side, Role::Input)
    });
    let low_res = b.gr.buffer(
        "low_res_masks",
        DType::F32,
        batch * d.masks * side * side,
        Role::Output,
    );
    let iou =
        b.gr.buffer("iou_predictions", DType::F32, batch * d.masks, Role::Output);
    // Prompt encoder: the token matrix, and the dense embedding of mask inputs.
    let tokens = b.f32s("tokens".into(), batch * t * dim);
    let op = DecoderTokens {
        coords,
        kinds,
        gauss: b.w(GAUSS, DType::F32, dim),
        table: b.w(SPARSE_TABLE, DType::F32, 5 * dim),
        prefix: b.w(OUTPUT_TOKENS, DType::F32, prefix * dim),
        out: tokens,
        batch,
        sparse,
        prefix_rows: prefix,
        dim,
        input_size: d.input_size,
    };
    b.gr.add("prompt_encoder.sparse", Op::DecoderTokens(op));
    let dense = masks.map(|m| {
        let out = b.f32s("dense".into(), batch * dim * hw);
        let op = MaskDownscaling {
            masks: m,
            packed: b.w(
                MASK_PACKED,
                DType::F32,
                crate::cpu::ops::prompt_encoder::mask_packed_len(dim),
            ),
            out,
            batch,
            grid: d.grid,
            dim,
        };
        b.gr.add("prompt_encoder.mask_downscaling", Op::MaskDownscaling(op));
        out
    });
    let sides = if mask_input { batch } else { 1 };
    let keys = b.f32s("keys".into(), batch * hw * dim);
    // Without mask inputs layer 0's image side comes from the per-image prep, and the fp16
    // image tokens are not needed here (with at least one layer: layer 0 reads them).
    let layer0 = (!mask_input && d.depth > 0).then(|| layer0_externals(&mut b.gr, d));
    let mut img = match layer0 {
        Some(l) => Side::Layer0(l),
        None => Side::Tokens(
            b.f16s("image_tokens".into(), sides * hw * dim),
            b.f16s("image_tokens_pe".into(), sides * hw * dim),
            sides,
        ),
    };
    let copies = match img {
        Side::Tokens(t16, tpe16, _) => Some((t16, tpe16)),
        Side::Layer0(_) => None,
    };
    let op = ImageTokens {
        embedding,
        dense,
        no_mask: b.w(NO_MASK, DType::F32, dim),
        pe: b.w(DENSE_PE, DType::F32, hw * dim),
        out32: Some(keys),
        out16: copies.map(|c| c.0),
        outpe16: copies.map(|c| c.1),
        sides,
        batch,
        hw,
        dim,
    };
    b.gr.add("image_tokens", Op::ImageTokens(op));
    // The two-way transformer.
    for i in 0..d.depth {
        img = b.layer(i, (tokens, keys), img);
    }
    b.token_to_image(&format!("{T}.final_attn_token_to_image"), tokens, img);
    b.post_norm(&format!("{T}.norm_final_attn"));
    // Heads: IoU, hypernetworks, output upscaling and the mask product.
    let (nm, hid) = (d.masks, d.iou_hidden);
    let (c1, c2) = (dim / 4, dim / 8);
    let hyper = b.f32s("hyper_in".into(), batch * nm * c2);
    let mut heads = vec![Head {
        name: format!("{P}.iou_prediction_head"),
        token: 0,
        dims: vec![dim, hid, hid, nm],
        out: (iou, 0, nm),
    }];
    heads.extend((0..nm).map(|m| Head {
        name: format!("{P}.output_hypernetworks_mlps.{m}"),
        token: 1 + m,
        dims: vec![dim, dim, dim, c2],
        out: (hyper, m * c2, nm * c2),
    }));
    b.heads(&heads);
    let u1 = b.f16s("output_upscaling.0".into(), batch * hw * 4 * c1);
    let up0 = format!("{P}.output_upscaling.0.gemm");
    // After at least one layer the image side is every prompt's own tokens.
    let Side::Tokens(up_in, ..) = img else {
        unreachable!("layer 0's precomputed side only exists with a layer after it")
    };
    b.image_linear(
        &up0,
        up_in,
        u1,
        (batch * hw, 4 * c1, dim),
        GemmEpilogue::Bias,
    );
    let u1n = b.f16s("output_upscaling.2".into(), batch * 4 * hw * c1);
    let op = ConvTranspose2x2LnGelu {
        u: u1,
        gamma: b.w(&format!("{P}.output_upscaling.1.weight"), DType::F32, c1),
        beta: b.w(&format!("{P}.output_upscaling.1.bias"), DType::F32, c1),
        out: u1n,
        batch,
        grid: d.grid,
        channels: c1,
        eps: LN2D_EPS,
    };
    b.gr.add(
        format!("{P}.output_upscaling.1"),
        Op::ConvTranspose2x2LnGelu(op),
    );
    let u2 = b.f16s("output_upscaling.4".into(), batch * 4 * hw * 4 * c2);
    let up3 = format!("{P}.output_upscaling.3.gemm");
    b.image_linear(
        &up3,
        u1n,
        u2,
        (batch * 4 * hw, 4 * c2, c1),
        GemmEpilogue::BiasGelu,
    );
    let op = ConvTranspose2x2Masks {
        u: u2,
        hyper,
        out: low_res,
        batch,
        grid: 2 * d.grid,
        channels: c2,
        masks: nm,
    };
    b.gr.add(format!("{P}.masks"), Op::ConvTranspose2x2Masks(op));
    let io = DecoderIo {
        embedding,
        coords,
        kinds,
        masks,
        low_res,
        iou,
        layer0,
    };
    (b.gr, io)
}
