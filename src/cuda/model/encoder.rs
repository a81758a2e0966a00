//! The image encoder as one schedule of named ops (`crate::graph::ops`), mirroring
//! `ImageEncoderViT.forward`: preprocessing, patch embedding, blocks, neck. Storage scales
//! come from [`super::scales`]; the executor (`crate::cuda::runtime::executor`) runs it.

use crate::graph::buffer::{BufId, DType, Role};
use crate::graph::ops::{
    AttnRelpos, CastRows, Conv3x3, Gemm, GemmEpilogue, LayerNorm, LnIn, LnOut, Op,
    PreprocessPatchify, ResidualInit,
};
use crate::graph::schedule::Graph;
use crate::graph::weights::{HostTensor, WeightId};
use crate::io::config::EncoderConfig;
use crate::io::weights::WeightSource;
use crate::Result;

use super::scales::{prepare_weights, EncoderScales, EPS};

/// Largest batch one call may run (arena and capture per batch size).
pub const MAX_BATCH: usize = 64;

const PRE: &str = "image_encoder";

/// Buffers the caller fills before a run and reads after it.
#[derive(Clone, Copy, Debug)]
pub struct EncoderIo {
    /// `[batch, img, img, 3]` uint8: each resized image at the top-left of its slot.
    pub image: BufId,
    /// `[batch, 2]` i32: (h, w) of each resized image.
    pub sizes: BufId,
    /// `[batch, out_chans, grid, grid]` fp32.
    pub embedding: BufId,
}

/// A Linear layer `{PRE}.{name}`: `[n, k]` fp16 weight, optional fp32 bias, storage scales.
struct Linear<'a> {
    name: &'a str,
    has_bias: bool,
    n: usize,
    k: usize,
    epilogue: GemmEpilogue,
    in_scale: f32,
    out_scale: f32,
}

/// Builds the schedule: the graph so far and what every node of it shares.
struct Builder<'a> {
    gr: Graph<Op>,
    cfg: &'a EncoderConfig,
    scales: &'a EncoderScales,
    batch: usize,
    /// Token rows over the batch: `batch * grid^2`.
    rows: usize,
}

impl Builder<'_> {
    /// Registers the official tensor `{PRE}.{name}` as a graph input.
    fn weight(&mut self, name: &str, dtype: DType, len: usize) -> WeightId {
        self.gr.weights.id(format!("{PRE}.{name}"), dtype, len)
    }

    /// A buffer that lives from its first write to its last read.
    fn scratch(&mut self, name: String, dtype: DType, len: usize) -> BufId {
        self.gr.buffer(name, dtype, len, Role::Intermediate)
    }

    fn linear(&mut self, a: BufId, out: BufId, l: Linear) {
        let weight = self.weight(&format!("{}.weight", l.name), DType::F16, l.n * l.k);
        let bias = l
            .has_bias
            .then(|| self.weight(&format!("{}.bias", l.name), DType::F32, l.n));
        let gemm = Gemm {
            a,
            weight,
            bias,
            out,
            epilogue: l.epilogue,
            m: self.rows,
            n: l.n,
            k: l.k,
            in_scale: l.in_scale,
            out_scale: l.out_scale,
            row_scale: None,
        };
        self.gr.add(l.name, Op::Gemm(gemm));
    }

    /// LayerNorm `{name}` (fp32 gamma and beta) of `x` into `out`: `input` and `output`
    /// give the dtypes and layout, `in_scale` and `row_scale` the storage scale to undo.
    fn layer_norm(
        &mut self,
        name: &str,
        x: BufId,
        (input, in_scale, row_scale): (LnIn, f32, Option<BufId>),
        out: BufId,
        output: LnOut,
        dim: usize,
    ) {
        let gamma = self.weight(&format!("{name}.weight"), DType::F32, dim);
        let beta = self.weight(&format!("{name}.bias"), DType::F32, dim);
        let ln = LayerNorm {
            x,
            input,
            in_scale,
            row_scale,
            gamma,
            beta,
            out,
            output,
            rows: self.rows,
            dim,
            eps: EPS,
        };
        self.gr.add(name, Op::LayerNorm(ln));
    }

    /// LayerNorm of the fp32 residual into a fresh fp16 buffer.
    fn norm_residual(&mut self, res: BufId, name: &str) -> BufId {
        let d = self.cfg.embed_dim;
        let x = self.scratch(name.to_string(), DType::F16, self.rows * d);
        self.layer_norm(name, res, (LnIn::F32, 1.0, None), x, LnOut::F16, d);
        x
    }

    /// Block `i`: `x += proj(attn(norm1(x)))`, `x += lin2(gelu(lin1(norm2(x))))`.
    fn block(&mut self, i: usize, res: BufId) {
        let cfg = self.cfg;
        let (d, g, m, rows) = (cfg.embed_dim, cfg.grid(), cfg.mlp_dim, self.rows);
        let b = format!("blocks.{i}");
        let (aq, am) = (self.scales.qkv[i], self.scales.mlp[i]);
        let window = if cfg.global_attn_indexes.contains(&i) {
            g
        } else {
            cfg.window_size
        };
        let x = self.norm_residual(res, &format!("{b}.norm1"));
        let qkv = self.scratch(format!("{b}.qkv"), DType::F16, rows * 3 * d);
        let layer = |name, n, k, epilogue, in_scale, out_scale| Linear {
            name,
            has_bias: true,
            n,
            k,
            epilogue,
            in_scale,
            out_scale,
        };
        let qkv_name = format!("{b}.attn.qkv");
        self.linear(
            x,
            qkv,
            layer(&qkv_name, 3 * d, d, GemmEpilogue::Bias, 1.0, aq),
        );
        let a = self.scratch(format!("{b}.attn"), DType::F16, rows * d);
        let rel = (2 * window - 1) * cfg.head_dim;
        let attn = AttnRelpos {
            qkv,
            qkv_bias: self.weight(&format!("{b}.attn.qkv.bias.scaled"), DType::F32, 3 * d),
            rel_pos_h: self.weight(&format!("{b}.attn.rel_pos_h"), DType::F16, rel),
            rel_pos_w: self.weight(&format!("{b}.attn.rel_pos_w"), DType::F16, rel),
            out: a,
            batch: self.batch,
            grid: g,
            window,
            heads: cfg.num_heads,
            dim: d,
            q_scale: 1.0 / aq,
            softmax_scale: (cfg.head_dim as f32).powf(-0.5) / aq,
        };
        self.gr.add(format!("{b}.attn"), Op::AttnRelpos(attn));
        let proj = format!("{b}.attn.proj");
        let residual = GemmEpilogue::BiasResidual;
        self.linear(a, res, layer(&proj, d, d, residual, 1.0 / aq, 1.0));
        let x2 = self.norm_residual(res, &format!("{b}.norm2"));
        let h = self.scratch(format!("{b}.mlp"), DType::F16, rows * m);
        let (lin1, lin2) = (format!("{b}.mlp.lin1"), format!("{b}.mlp.lin2"));
        self.linear(x2, h, layer(&lin1, m, d, GemmEpilogue::BiasGelu, 1.0, am));
        self.linear(h, res, layer(&lin2, d, m, residual, 1.0 / am, 1.0));
    }

    /// The neck: conv1x1 (as a GEMM on the residual cast to fp16 rows), LayerNorm2d,
    /// conv3x3, LayerNorm2d into the fp32 channel-first embedding.
    fn neck(&mut self, res: BufId, embedding: BufId) {
        let (d, g, oc, rows) = (
            self.cfg.embed_dim,
            self.cfg.grid(),
            self.cfg.out_chans,
            self.rows,
        );
        let (neck0, neck2) = (self.scales.neck0, self.scales.neck2);
        let x16 = self.scratch("neck.input".into(), DType::F16, rows * d);
        let rs = self.scratch("neck.row_scale".into(), DType::F32, rows);
        let cast = CastRows {
            x: res,
            out: x16,
            row_scale: rs,
            rows,
            dim: d,
        };
        self.gr.add("neck.cast", Op::CastRows(cast));
        let n0 = self.scratch("neck.0".into(), DType::F16, rows * oc);
        let conv1x1 = Linear {
            name: "neck.0",
            has_bias: false,
            n: oc,
            k: d,
            epilogue: GemmEpilogue::Bias,
            in_scale: 1.0,
            out_scale: neck0,
        };
        self.linear(x16, n0, conv1x1);
        let n1 = self.scratch("neck.1".into(), DType::F16, rows * oc);
        let scaled = (LnIn::F16, 1.0 / neck0, Some(rs));
        self.layer_norm("neck.1", n0, scaled, n1, LnOut::F16, oc);
        let n2 = self.scratch("neck.2".into(), DType::F16, rows * oc);
        let conv = Conv3x3 {
            x: n1,
            weight: self.weight("neck.2.weight", DType::F16, oc * oc * 9),
            out: n2,
            batch: self.batch,
            h: g,
            w: g,
            cin: oc,
            cout: oc,
            out_scale: neck2,
        };
        self.gr.add("neck.2", Op::Conv3x3(conv));
        let cf = LnOut::F32ChannelFirst { tokens: g * g };
        self.layer_norm(
            "neck.3",
            n2,
            (LnIn::F16, 1.0 / neck2, None),
            embedding,
            cf,
            oc,
        );
    }
}

/// The encoder schedule for `batch` images.
pub fn build_graph(
    cfg: &EncoderConfig,
    scales: &EncoderScales,
    batch: usize,
) -> (Graph<Op>, EncoderIo) {
    let (d, g, p, oc) = (cfg.embed_dim, cfg.grid(), cfg.patch_size, cfg.out_chans);
    let (img, t) = (cfg.img_size, g * g);
    let rows = batch * t;
    let mut b = Builder {
        gr: Graph::default(),
        cfg,
        scales,
        batch,
        rows,
    };
    let image =
        b.gr.buffer("image", DType::U8, batch * img * img * 3, Role::Input);
    let sizes =
        b.gr.buffer("image_sizes", DType::I32, batch * 2, Role::Input);
    let embedding =
        b.gr.buffer("embedding", DType::F32, batch * oc * t, Role::Output);
    let patches = b.scratch("patches".into(), DType::F16, rows * 3 * p * p);
    let res = b.scratch("residual".into(), DType::F32, rows * d);
    let pre = PreprocessPatchify {
        image,
        sizes,
        patches,
        batch,
        img_size: img,
        patch: p,
    };
    b.gr.add("preprocess", Op::PreprocessPatchify(pre));
    let pos_embed = b.weight("pos_embed", DType::F16, t * d);
    let init = ResidualInit {
        pos_embed,
        residual: res,
        batch,
        tokens: t,
        dim: d,
    };
    b.gr.add("pos_embed", Op::ResidualInit(init));
    let patch_embed = Linear {
        name: "patch_embed.proj",
        has_bias: true,
        n: d,
        k: 3 * p * p,
        epilogue: GemmEpilogue::BiasResidual,
        in_scale: 1.0,
        out_scale: 1.0,
    };
    b.linear(patches, res, patch_embed);
    for i in 0..cfg.depth {
        b.block(i, res);
    }
    b.neck(res, embedding);
    (
        b.gr,
        EncoderIo {
            image,
            sizes,
            embedding,
        },
    )
}

/// The encoder's schedule for `batch` with its plan and weight bytes, before anything runs
/// (host-only: `samrt info --graph` and the device memory plan).
pub struct EncoderPlan {
    pub graph: Graph<Op>,
    pub plan: crate::graph::planner::Plan,
    pub weight_bytes: usize,
}

impl EncoderPlan {
    /// The plan in words (`samrt info --graph`).
    pub fn describe(&self) -> String {
        crate::graph::describe::describe(&self.graph, &self.plan, self.weight_bytes)
    }
}

impl EncoderPlan {
    /// Plans `graph` after checking that it reads exactly `tensors` (the decoder's schedule
    /// is planned the same way).
    pub fn new(graph: Graph<Op>, tensors: &[HostTensor]) -> Result<Self> {
        graph.weights.check(tensors)?;
        let plan = crate::graph::planner::plan(&graph);
        Ok(EncoderPlan {
            plan,
            graph,
            weight_bytes: crate::graph::weights::block_bytes(tensors),
        })
    }
}

pub fn plan_encoder(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
    batch: usize,
) -> Result<EncoderPlan> {
    let (tensors, scales) = prepare_weights(w, cfg)?;
    EncoderPlan::new(build_graph(cfg, &scales, batch).0, &tensors)
}

/// Device memory of the encoder at `batch`, before anything runs: (weight block bytes,
/// planned arena bytes). The peak is their sum (plus the driver's own context memory).
pub fn memory_plan(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
    batch: usize,
) -> Result<(usize, usize)> {
    let p = plan_encoder(w, cfg, batch)?;
    Ok((p.weight_bytes, p.plan.arena_bytes))
}
