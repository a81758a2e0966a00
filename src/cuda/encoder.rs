//! The image encoder as a scheduled graph of kernels (`crate::graph`), mirroring
//! `ImageEncoderViT.forward`: preprocessing, patch embedding, blocks, neck.
//!
//! Numerics: the residual stream is fp32; every fp16 tensor that could exceed the fp16 range
//! on some checkpoint is stored scaled by a power of two chosen at load time from a bound on
//! its magnitude (so real checkpoints, whose bounds are far below 65504, run unscaled and
//! lose nothing), and the consumer multiplies the scale back: the qkv output (undone in the
//! attention's q scale and softmax scale, and in the proj GEMM), the MLP hidden activation
//! (undone in lin2), the neck convolutions (undone in their LayerNorm2d's eps, since LayerNorm
//! is scale-invariant apart from eps). The residual stream itself is cast to fp16 for the neck
//! with an exact per-row power-of-two scale.

use crate::config::EncoderConfig;
use crate::graph::{BufId, DType, Graph, Role};
use crate::weights::WeightSource;
use crate::Result;

use super::weights::HostTensor;

/// LayerNorm eps of the blocks and of the neck's LayerNorm2d (official: 1e-6 both).
pub const EPS: f32 = 1e-6;
/// Largest magnitude a scaled fp16 tensor may reach by its bound (half the fp16 range).
const F16_LIMIT: f64 = 32768.0;

/// Where a LayerNorm writes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LnOut {
    /// fp16 token-major `[rows, dim]`.
    F16,
    /// fp32 channel-first `[batch, dim, tokens]` (the image embedding).
    F32ChannelFirst { tokens: usize },
}

/// GEMM epilogues, as in `kernels/gemm.cu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epi {
    Bias,
    BiasGelu,
    BiasResidual,
}

/// One node's work. Weight names are the official tensor names (plus derived ones such as
/// `...qkv.bias.scaled`), resolved in the device weight block at run time.
#[derive(Clone, Debug, PartialEq)]
pub enum EncOp {
    /// Resized uint8 images -> normalised, zero-padded, patch-major fp16 rows.
    Patchify { img_size: usize, patch: usize },
    /// res[b] = pos_embed for every image.
    ResidualInit {
        name: String,
        tokens: usize,
        dim: usize,
    },
    Linear {
        weight: String,
        bias: Option<String>,
        m: usize,
        n: usize,
        k: usize,
        epi: Epi,
        in_scale: f32,
        out_scale: f32,
        /// Multiply output row r by the `row_scale` buffer (the graph's second read).
        row_scale: bool,
    },
    LayerNorm {
        gamma: String,
        beta: String,
        rows: usize,
        dim: usize,
        f32_input: bool,
        /// True input = stored * in_scale (* row_scale[row] when `row_scale`).
        in_scale: f32,
        row_scale: bool,
        out: LnOut,
    },
    Attention {
        block: usize,
        grid: usize,
        window: usize,
        heads: usize,
        dim: usize,
        /// q scale (1/alpha) and the softmax scale divided by alpha (k is scaled too).
        q_scale: f32,
        softmax_scale: f32,
        /// Bias standing in for padding tokens, scaled like the stored qkv.
        qkv_bias: String,
    },
    /// fp32 rows -> fp16 rows with exact per-row power-of-two scales.
    CastRows { rows: usize, dim: usize },
    Conv3x3 {
        weight: String,
        batch: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        out_scale: f32,
    },
}

/// Power-of-two storage scales chosen from the weights (1.0 on real checkpoints).
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderScales {
    /// Per block: the qkv output scale and the MLP hidden scale.
    pub qkv: Vec<f32>,
    pub mlp: Vec<f32>,
    pub neck0: f32,
    pub neck2: f32,
}

/// Largest power of two <= 1 that keeps `bound * scale <= F16_LIMIT`.
fn pow2_scale(bound: f64) -> f32 {
    let mut s = 1.0f64;
    while bound * s > F16_LIMIT && s > 1e-30 {
        s *= 0.5;
    }
    s as f32
}

/// Bound on |LayerNorm output| per input channel: a normalised value is at most sqrt(dim)
/// in magnitude, then the affine map.
fn ln_bound(gamma: &[f32], beta: &[f32]) -> Vec<f64> {
    let r = (gamma.len() as f64).sqrt();
    gamma
        .iter()
        .zip(beta)
        .map(|(&g, &b)| g.abs() as f64 * r + b.abs() as f64)
        .collect()
}

/// max over output rows of sum_i |W[j][i]| * xbound[i] + |b[j]|.
fn linear_bound(w: &[f32], bias: Option<&[f32]>, n: usize, xbound: &[f64]) -> f64 {
    let k = xbound.len();
    (0..n)
        .map(|j| {
            let row = &w[j * k..(j + 1) * k];
            row.iter()
                .zip(xbound)
                .map(|(&a, &x)| a.abs() as f64 * x)
                .sum::<f64>()
                + bias.map_or(0.0, |b| b[j].abs() as f64)
        })
        .fold(0.0, f64::max)
}

/// Everything the encoder needs on the device, converted on the host, plus the scales.
pub fn prepare_weights(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
) -> Result<(Vec<HostTensor>, EncoderScales)> {
    let (d, g, p, m, oc) = (
        cfg.embed_dim,
        cfg.grid(),
        cfg.patch_size,
        cfg.mlp_dim,
        cfg.out_chans,
    );
    let pre = "image_encoder";
    let mut t = Vec::new();
    let pw = w.f32(&format!("{pre}.patch_embed.proj.weight"), &[d, 3, p, p])?;
    t.push(HostTensor::f16(
        format!("{pre}.patch_embed.proj.weight"),
        &pw,
    )?);
    let pb = w.f32(&format!("{pre}.patch_embed.proj.bias"), &[d])?;
    t.push(HostTensor::f32(format!("{pre}.patch_embed.proj.bias"), &pb));
    let pos = w.f32(&format!("{pre}.pos_embed"), &[1, g, g, d])?;
    t.push(HostTensor::f16(format!("{pre}.pos_embed"), &pos)?);
    let mut scales = EncoderScales {
        qkv: Vec::new(),
        mlp: Vec::new(),
        neck0: 1.0,
        neck2: 1.0,
    };
    for i in 0..cfg.depth {
        let b = format!("{pre}.blocks.{i}");
        let side = if cfg.global_attn_indexes.contains(&i) {
            g
        } else {
            cfg.window_size
        };
        let rel = [2 * side - 1, cfg.head_dim];
        let n1w = w.f32(&format!("{b}.norm1.weight"), &[d])?;
        let n1b = w.f32(&format!("{b}.norm1.bias"), &[d])?;
        let qw = w.f32(&format!("{b}.attn.qkv.weight"), &[3 * d, d])?;
        let qb = w.f32(&format!("{b}.attn.qkv.bias"), &[3 * d])?;
        let aq = pow2_scale(linear_bound(&qw, Some(&qb), 3 * d, &ln_bound(&n1w, &n1b)));
        let qbs: Vec<f32> = qb.iter().map(|&x| x * aq).collect();
        let n2w = w.f32(&format!("{b}.norm2.weight"), &[d])?;
        let n2b = w.f32(&format!("{b}.norm2.bias"), &[d])?;
        let l1w = w.f32(&format!("{b}.mlp.lin1.weight"), &[m, d])?;
        let l1b = w.f32(&format!("{b}.mlp.lin1.bias"), &[m])?;
        // GELU(y) <= max(y, 0) <= |y|.
        let am = pow2_scale(linear_bound(&l1w, Some(&l1b), m, &ln_bound(&n2w, &n2b)));
        scales.qkv.push(aq);
        scales.mlp.push(am);
        t.push(HostTensor::f32(format!("{b}.norm1.weight"), &n1w));
        t.push(HostTensor::f32(format!("{b}.norm1.bias"), &n1b));
        t.push(HostTensor::f16(format!("{b}.attn.qkv.weight"), &qw)?);
        t.push(HostTensor::f32(format!("{b}.attn.qkv.bias"), &qb));
        t.push(HostTensor::f32(format!("{b}.attn.qkv.bias.scaled"), &qbs));
        for name in ["rel_pos_h", "rel_pos_w"] {
            let r = w.f32(&format!("{b}.attn.{name}"), &rel)?;
            t.push(HostTensor::f16(format!("{b}.attn.{name}"), &r)?);
        }
        t.push(HostTensor::f16(
            format!("{b}.attn.proj.weight"),
            &w.f32(&format!("{b}.attn.proj.weight"), &[d, d])?,
        )?);
        t.push(HostTensor::f32(
            format!("{b}.attn.proj.bias"),
            &w.f32(&format!("{b}.attn.proj.bias"), &[d])?,
        ));
        t.push(HostTensor::f32(format!("{b}.norm2.weight"), &n2w));
        t.push(HostTensor::f32(format!("{b}.norm2.bias"), &n2b));
        t.push(HostTensor::f16(format!("{b}.mlp.lin1.weight"), &l1w)?);
        t.push(HostTensor::f32(format!("{b}.mlp.lin1.bias"), &l1b));
        t.push(HostTensor::f16(
            format!("{b}.mlp.lin2.weight"),
            &w.f32(&format!("{b}.mlp.lin2.weight"), &[d, m])?,
        )?);
        t.push(HostTensor::f32(
            format!("{b}.mlp.lin2.bias"),
            &w.f32(&format!("{b}.mlp.lin2.bias"), &[d])?,
        ));
    }
    // Neck. conv1x1 reads the residual cast to fp16 rows with |x| <= 2^14.
    let n0 = w.f32(&format!("{pre}.neck.0.weight"), &[oc, d, 1, 1])?;
    scales.neck0 = pow2_scale(linear_bound(&n0, None, oc, &vec![16384.0; d]));
    t.push(HostTensor::f16(format!("{pre}.neck.0.weight"), &n0)?);
    let n1w = w.f32(&format!("{pre}.neck.1.weight"), &[oc])?;
    let n1b = w.f32(&format!("{pre}.neck.1.bias"), &[oc])?;
    let n2 = w.f32(&format!("{pre}.neck.2.weight"), &[oc, oc, 3, 3])?;
    // Per output channel the 3x3 window sees each input channel 9 times.
    let xb: Vec<f64> = ln_bound(&n1w, &n1b).iter().flat_map(|&x| [x; 9]).collect();
    let n2_kmajor = super::gemm::conv3x3_weight_layout(&n2, oc, oc);
    scales.neck2 = pow2_scale(linear_bound(&n2_kmajor, None, oc, &reorder_bound(&xb, oc)));
    t.push(HostTensor::f32(format!("{pre}.neck.1.weight"), &n1w));
    t.push(HostTensor::f32(format!("{pre}.neck.1.bias"), &n1b));
    t.push(HostTensor::f16(format!("{pre}.neck.2.weight"), &n2_kmajor)?);
    t.push(HostTensor::f32(
        format!("{pre}.neck.3.weight"),
        &w.f32(&format!("{pre}.neck.3.weight"), &[oc])?,
    ));
    t.push(HostTensor::f32(
        format!("{pre}.neck.3.bias"),
        &w.f32(&format!("{pre}.neck.3.bias"), &[oc])?,
    ));
    Ok((t, scales))
}

/// The bound vector in the conv weight's [ky][kx][cin] order (it is the same for every
/// tap, so only the length and channel period matter).
fn reorder_bound(xb_c9: &[f64], cin: usize) -> Vec<f64> {
    (0..9 * cin).map(|k| xb_c9[(k % cin) * 9]).collect()
}

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

/// The encoder schedule for `batch` images.
pub fn build_graph(
    cfg: &EncoderConfig,
    scales: &EncoderScales,
    batch: usize,
) -> (Graph<EncOp>, EncoderIo) {
    let (d, g, p, m, oc) = (
        cfg.embed_dim,
        cfg.grid(),
        cfg.patch_size,
        cfg.mlp_dim,
        cfg.out_chans,
    );
    let img = cfg.img_size;
    let t = g * g;
    let rows = batch * t;
    let pre = "image_encoder";
    let mut gr: Graph<EncOp> = Graph::default();
    let image = gr.buffer("image", DType::U8, batch * img * img * 3, Role::Input);
    let sizes = gr.buffer("image_sizes", DType::I32, batch * 2, Role::Input);
    let embedding = gr.buffer("embedding", DType::F32, batch * oc * t, Role::Output);
    let patches = gr.buffer("patches", DType::F16, rows * 3 * p * p, Role::Intermediate);
    let res = gr.buffer("residual", DType::F32, rows * d, Role::Intermediate);
    gr.node(
        "preprocess_patchify",
        "preprocess",
        &[image, sizes],
        &[patches],
        EncOp::Patchify {
            img_size: img,
            patch: p,
        },
    );
    gr.node(
        "residual_init_f32",
        "pos_embed",
        &[],
        &[res],
        EncOp::ResidualInit {
            name: format!("{pre}.pos_embed"),
            tokens: t,
            dim: d,
        },
    );
    let lin = |w: String,
               b: Option<String>,
               n: usize,
               k: usize,
               epi: Epi,
               in_scale: f32,
               out_scale: f32| EncOp::Linear {
        weight: w,
        bias: b,
        m: rows,
        n,
        k,
        epi,
        in_scale,
        out_scale,
        row_scale: false,
    };
    gr.node(
        "gemm_bias_residual_f16",
        "patch_embed",
        &[patches, res],
        &[res],
        lin(
            format!("{pre}.patch_embed.proj.weight"),
            Some(format!("{pre}.patch_embed.proj.bias")),
            d,
            3 * p * p,
            Epi::BiasResidual,
            1.0,
            1.0,
        ),
    );
    let ln = |gamma: String,
              beta: String,
              dim: usize,
              f32_input: bool,
              in_scale: f32,
              row_scale: bool,
              out: LnOut| EncOp::LayerNorm {
        gamma,
        beta,
        rows,
        dim,
        f32_input,
        in_scale,
        row_scale,
        out,
    };
    for i in 0..cfg.depth {
        let b = format!("{pre}.blocks.{i}");
        let (aq, am) = (scales.qkv[i], scales.mlp[i]);
        let window = if cfg.global_attn_indexes.contains(&i) {
            g
        } else {
            cfg.window_size
        };
        let x = gr.buffer(
            format!("blocks.{i}.norm1"),
            DType::F16,
            rows * d,
            Role::Intermediate,
        );
        gr.node(
            "layer_norm_f32_f16",
            format!("blocks.{i}.norm1"),
            &[res],
            &[x],
            ln(
                format!("{b}.norm1.weight"),
                format!("{b}.norm1.bias"),
                d,
                true,
                1.0,
                false,
                LnOut::F16,
            ),
        );
        let qkv = gr.buffer(
            format!("blocks.{i}.qkv"),
            DType::F16,
            rows * 3 * d,
            Role::Intermediate,
        );
        gr.node(
            "gemm_bias_f16",
            format!("blocks.{i}.attn.qkv"),
            &[x],
            &[qkv],
            lin(
                format!("{b}.attn.qkv.weight"),
                Some(format!("{b}.attn.qkv.bias")),
                3 * d,
                d,
                Epi::Bias,
                1.0,
                aq,
            ),
        );
        let a = gr.buffer(
            format!("blocks.{i}.attn"),
            DType::F16,
            rows * d,
            Role::Intermediate,
        );
        let hd = cfg.head_dim as f32;
        gr.node(
            "attn_relpos",
            format!("blocks.{i}.attn"),
            &[qkv],
            &[a],
            EncOp::Attention {
                block: i,
                grid: g,
                window,
                heads: cfg.num_heads,
                dim: d,
                q_scale: 1.0 / aq,
                softmax_scale: hd.powf(-0.5) / aq,
                qkv_bias: format!("{b}.attn.qkv.bias.scaled"),
            },
        );
        gr.node(
            "gemm_bias_residual_f16",
            format!("blocks.{i}.attn.proj"),
            &[a, res],
            &[res],
            lin(
                format!("{b}.attn.proj.weight"),
                Some(format!("{b}.attn.proj.bias")),
                d,
                d,
                Epi::BiasResidual,
                1.0 / aq,
                1.0,
            ),
        );
        let x2 = gr.buffer(
            format!("blocks.{i}.norm2"),
            DType::F16,
            rows * d,
            Role::Intermediate,
        );
        gr.node(
            "layer_norm_f32_f16",
            format!("blocks.{i}.norm2"),
            &[res],
            &[x2],
            ln(
                format!("{b}.norm2.weight"),
                format!("{b}.norm2.bias"),
                d,
                true,
                1.0,
                false,
                LnOut::F16,
            ),
        );
        let h = gr.buffer(
            format!("blocks.{i}.mlp"),
            DType::F16,
            rows * m,
            Role::Intermediate,
        );
        gr.node(
            "gemm_bias_gelu_f16",
            format!("blocks.{i}.mlp.lin1"),
            &[x2],
            &[h],
            lin(
                format!("{b}.mlp.lin1.weight"),
                Some(format!("{b}.mlp.lin1.bias")),
                m,
                d,
                Epi::BiasGelu,
                1.0,
                am,
            ),
        );
        gr.node(
            "gemm_bias_residual_f16",
            format!("blocks.{i}.mlp.lin2"),
            &[h, res],
            &[res],
            lin(
                format!("{b}.mlp.lin2.weight"),
                Some(format!("{b}.mlp.lin2.bias")),
                d,
                m,
                Epi::BiasResidual,
                1.0 / am,
                1.0,
            ),
        );
    }
    let x16 = gr.buffer("neck.input", DType::F16, rows * d, Role::Intermediate);
    let rs = gr.buffer("neck.row_scale", DType::F32, rows, Role::Intermediate);
    gr.node(
        "cast_rows_f16",
        "neck.cast",
        &[res],
        &[x16, rs],
        EncOp::CastRows { rows, dim: d },
    );
    let n0 = gr.buffer("neck.0", DType::F16, rows * oc, Role::Intermediate);
    gr.node(
        "gemm_bias_f16",
        "neck.0",
        &[x16],
        &[n0],
        lin(
            format!("{pre}.neck.0.weight"),
            None,
            oc,
            d,
            Epi::Bias,
            1.0,
            scales.neck0,
        ),
    );
    let n1 = gr.buffer("neck.1", DType::F16, rows * oc, Role::Intermediate);
    gr.node(
        "layer_norm_f16",
        "neck.1",
        &[n0, rs],
        &[n1],
        ln(
            format!("{pre}.neck.1.weight"),
            format!("{pre}.neck.1.bias"),
            oc,
            false,
            1.0 / scales.neck0,
            true,
            LnOut::F16,
        ),
    );
    let n2 = gr.buffer("neck.2", DType::F16, rows * oc, Role::Intermediate);
    gr.node(
        "conv3x3_f16",
        "neck.2",
        &[n1],
        &[n2],
        EncOp::Conv3x3 {
            weight: format!("{pre}.neck.2.weight"),
            batch,
            h: g,
            w: g,
            cin: oc,
            cout: oc,
            out_scale: scales.neck2,
        },
    );
    gr.node(
        "layer_norm_f16",
        "neck.3",
        &[n2],
        &[embedding],
        ln(
            format!("{pre}.neck.3.weight"),
            format!("{pre}.neck.3.bias"),
            oc,
            false,
            1.0 / scales.neck2,
            false,
            LnOut::F32ChannelFirst { tokens: t },
        ),
    );
    (
        gr,
        EncoderIo {
            image,
            sizes,
            embedding,
        },
    )
}

/// Device memory of the encoder at `batch`, before anything runs: (weight block bytes,
/// planned arena bytes). The peak is their sum (plus the driver's own context memory).
pub fn memory_plan(
    w: &dyn WeightSource,
    cfg: &EncoderConfig,
    batch: usize,
) -> Result<(usize, usize)> {
    let (tensors, scales) = prepare_weights(w, cfg)?;
    let weights = super::weights::block_bytes(&tensors);
    let (g, _) = build_graph(cfg, &scales, batch);
    Ok((weights, crate::graph::planner::plan(&g).arena_bytes))
}
