//! The SAM image encoder, `ImageEncoderViT` (spec §2), in f32 on the CPU.
//!
//! Token maps are kept channels-last `[grid*grid, D]` (the official BHWC with B = 1) from
//! the patch embedding to the neck, so every Linear is one dense GEMM and the neck's
//! LayerNorm2d is a plain row LayerNorm; only the final output is transposed to CHW.
//! Row-wise work (LayerNorm, QKV, projection, MLP) runs in parallel blocks of rows with
//! single-threaded GEMMs, which keeps each block's activations in cache and avoids
//! fork/join inside the GEMMs.

use crate::cpu::ops::attention::AttnRelpos;
use crate::cpu::ops::conv2d::{conv2d, ConvGeom, Layout};
use crate::cpu::ops::gelu::gelu_seq;
use crate::cpu::ops::gemm::{conv3x3, split_taps, Linear, Par, WeightLayout};
use crate::cpu::ops::interpolate::{bicubic_hwc, linear_rows};
use crate::cpu::ops::layer_norm::{transpose, LayerNorm};
use crate::cpu::ops::preprocess_patchify::{patchify_chw, PatchGeom};
use crate::cpu::ops::residual_init::residual_init;
use crate::error::{Error, Result};
use crate::io::config::EncoderConfig;
use crate::io::weights::WeightSource;
use rayon::prelude::*;

/// Encoder LayerNorm and neck LayerNorm2d epsilon (spec traps: not torch's 1e-5 default).
const EPS: f32 = 1e-6;
const IN_CHANS: usize = 3;
/// Token rows per parallel task in the row-wise parts of a block.
const ROWS: usize = 512;

struct Block {
    norm1: LayerNorm,
    qkv: Linear,
    proj: Linear,
    rel_pos_h: Vec<f32>,
    rel_pos_w: Vec<f32>,
    /// Window side, 0 for global attention.
    window: usize,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
}

/// `ImageEncoderViT` with f32 weights.
pub struct ImageEncoder {
    cfg: EncoderConfig,
    patch_w: Vec<f32>,
    patch_b: Vec<f32>,
    pos_embed: Vec<f32>,
    blocks: Vec<Block>,
    neck0: Vec<f32>,
    neck1: LayerNorm,
    /// neck.2 (3x3, `[oc, oc, 3, 3]`) split per tap: 9 `[in, out]` matrices, (ky, kx) order.
    neck2: Vec<Vec<f32>>,
    neck3: LayerNorm,
}

/// Rejects configurations the official module could not be built with.
fn check_config(c: &EncoderConfig) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    if c.embed_dim == 0 || c.num_heads == 0 || c.head_dim * c.num_heads != c.embed_dim {
        return bad(format!(
            "embed_dim {} is not num_heads {} x head_dim {}",
            c.embed_dim, c.num_heads, c.head_dim
        ));
    }
    if c.patch_size == 0 || c.img_size == 0 || !c.img_size.is_multiple_of(c.patch_size) {
        return bad(format!(
            "img_size {} is not a positive multiple of patch_size {}",
            c.img_size, c.patch_size
        ));
    }
    if c.mlp_dim == 0 || c.out_chans == 0 {
        return bad("mlp_dim and out_chans must be positive".into());
    }
    if let Some(&i) = c.global_attn_indexes.iter().find(|&&i| i >= c.depth) {
        return bad(format!("global block {i} >= depth {}", c.depth));
    }
    let windowed = (0..c.depth).any(|i| !c.global_attn_indexes.contains(&i));
    if windowed && c.window_size == 0 {
        return bad("window_size 0 with windowed blocks".into());
    }
    Ok(())
}

/// A block's rel-pos table (`name`) for attention over `side` tokens per axis, `[2*side-1,
/// hd]`: as stored when it has that many rows, else resized linearly as the official
/// `get_rel_pos` does at every forward (a global block of a checkpoint made for another
/// grid, or one run at another `--image-size`).
pub fn load_rel_pos(w: &dyn WeightSource, name: &str, side: usize, hd: usize) -> Result<Vec<f32>> {
    let want = 2 * side - 1;
    let rows = match w.shape(name).as_deref() {
        Some(&[r, h]) if h == hd && r > 0 => r,
        _ => return w.f32(name, &[want, hd]), // missing or misshapen: its error names both
    };
    let t = w.f32(name, &[rows, hd])?;
    Ok(if rows == want {
        t
    } else {
        linear_rows(&t, rows, hd, want)
    })
}

/// `pos_embed` for the configured grid, `[1, G, G, D]`: as stored when the checkpoint was
/// made for this grid, else resized bicubically from the stored grid (see
/// [`crate::cpu::ops::interpolate`]: the official encoder has no such resize).
pub fn load_pos_embed(w: &dyn WeightSource, cfg: &EncoderConfig) -> Result<Vec<f32>> {
    let (d, g) = (cfg.embed_dim, cfg.grid());
    let name = "image_encoder.pos_embed";
    let stored = match w.shape(name).as_deref() {
        Some(&[1, a, b, c]) if a == b && c == d && a > 0 => a,
        _ => return w.f32(name, &[1, g, g, d]),
    };
    let t = w.f32(name, &[1, stored, stored, d])?;
    Ok(if stored == g {
        t
    } else {
        bicubic_hwc(&t, stored, d, g)
    })
}

impl ImageEncoder {
    /// Loads `image_encoder.*` tensors; shapes are checked by `WeightSource::f32`, and the
    /// position tables fitted to the configured grid ([`load_pos_embed`], [`load_rel_pos`]).
    pub fn load(w: &dyn WeightSource, cfg: &EncoderConfig) -> Result<Self> {
        check_config(cfg)?;
        let (d, g, p) = (cfg.embed_dim, cfg.grid(), cfg.patch_size);
        let pre = "image_encoder";
        let blocks = (0..cfg.depth)
            .map(|i| {
                let b = format!("{pre}.blocks.{i}");
                let window = if cfg.global_attn_indexes.contains(&i) {
                    0
                } else {
                    cfg.window_size
                };
                let side = if window == 0 { g } else { window };
                let rel = |n: &str| load_rel_pos(w, &format!("{b}.attn.{n}"), side, cfg.head_dim);
                Ok(Block {
                    norm1: LayerNorm::load(w, &format!("{b}.norm1"), d, EPS)?,
                    qkv: Linear::load(w, &format!("{b}.attn.qkv"), d, 3 * d, WeightLayout::InOut)?,
                    proj: Linear::load(w, &format!("{b}.attn.proj"), d, d, WeightLayout::InOut)?,
                    rel_pos_h: rel("rel_pos_h")?,
                    rel_pos_w: rel("rel_pos_w")?,
                    window,
                    norm2: LayerNorm::load(w, &format!("{b}.norm2"), d, EPS)?,
                    lin1: Linear::load(
                        w,
                        &format!("{b}.mlp.lin1"),
                        d,
                        cfg.mlp_dim,
                        WeightLayout::InOut,
                    )?,
                    lin2: Linear::load(
                        w,
                        &format!("{b}.mlp.lin2"),
                        cfg.mlp_dim,
                        d,
                        WeightLayout::InOut,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let oc = cfg.out_chans;
        Ok(ImageEncoder {
            cfg: cfg.clone(),
            patch_w: w.f32(
                &format!("{pre}.patch_embed.proj.weight"),
                &[d, IN_CHANS, p, p],
            )?,
            patch_b: w.f32(&format!("{pre}.patch_embed.proj.bias"), &[d])?,
            pos_embed: load_pos_embed(w, cfg)?,
            blocks,
            neck0: w.f32(&format!("{pre}.neck.0.weight"), &[oc, d, 1, 1])?,
            neck1: LayerNorm::load(w, &format!("{pre}.neck.1"), oc, EPS)?,
            neck2: split_taps(
                &w.f32(&format!("{pre}.neck.2.weight"), &[oc, oc, 3, 3])?,
                oc,
                oc,
            ),
            neck3: LayerNorm::load(w, &format!("{pre}.neck.3"), oc, EPS)?,
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.cfg
    }

    /// x: normalised, padded image `[3, img, img]` (CHW). Returns `[out_chans, grid, grid]`
    /// (CHW), i.e. `[256, 64, 64]` at 1024.
    pub fn forward(&self, x: &[f32]) -> Result<Vec<f32>> {
        // The official CHW input is already normalised: only the patch matrix is made.
        self.forward_patches(&patchify_chw(x, IN_CHANS, self.patch_geom())?)
    }

    /// The patch geometry of the input.
    pub fn patch_geom(&self) -> PatchGeom {
        PatchGeom {
            img_size: self.cfg.img_size,
            patch: self.cfg.patch_size,
        }
    }

    /// From the patch matrix `[grid^2, 3*patch^2]` (as `preprocess_patchify` writes it) to
    /// `[out_chans, grid, grid]`.
    pub fn forward_patches(&self, patches: &[f32]) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (d, g, geom) = (c.embed_dim, c.grid(), self.patch_geom());
        if patches.len() != geom.len() {
            return Err(Error::Shape {
                name: "patch matrix".into(),
                expected: vec![geom.rows(), geom.cols()],
                got: vec![patches.len()],
            });
        }
        // The patch embedding (a kernel = stride = patch conv) as the GPU computes it: the
        // patch matrix through conv2d's 1x1 path, one GEMM per 256 patches onto the bias.
        let one = ConvGeom {
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        let hwc = Layout::hwc(geom.cols(), g, g);
        let (tokens, _, _) = conv2d(patches, hwc, &self.patch_w, d, one, Some(&self.patch_b))?;
        // The residual stream starts as pos_embed and the patch embedding is added onto it.
        let mut t = residual_init(&self.pos_embed, 1);
        t.par_chunks_mut(d)
            .zip(tokens.par_chunks(d))
            .for_each(|(a, p)| a.iter_mut().zip(p).for_each(|(a, p)| *a += p));
        let mut ws = Workspace::default();
        for i in 0..self.blocks.len() {
            self.block(i, &mut t, &mut ws)?;
        }
        drop(ws);
        self.neck(&t)
    }

    /// Neck on the channels-last map: conv1x1, LayerNorm2d, conv3x3, LayerNorm2d; CHW out.
    fn neck(&self, t: &[f32]) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (d, g, oc) = (c.embed_dim, c.grid(), c.out_chans);
        let one = ConvGeom {
            kernel: 1,
            stride: 1,
            pad: 0,
        };
        let (mut y, _, _) = conv2d(t, Layout::hwc(d, g, g), &self.neck0, oc, one, None)?;
        self.neck1.forward(&mut y);
        let mut z = conv3x3(&y, g, oc, &self.neck2, oc);
        self.neck3.forward(&mut z);
        Ok(transpose(&z, g * g, oc))
    }

    /// One transformer block on a BHWC token map `[grid*grid, D]`, in place.
    pub fn block_forward(&self, i: usize, x: &mut [f32]) -> Result<()> {
        self.block(i, x, &mut Workspace::default())
    }

    fn block(&self, i: usize, x: &mut [f32], ws: &mut Workspace) -> Result<()> {
        let c = &self.cfg;
        let (d, g) = (c.embed_dim, c.grid());
        let b = self.blocks.get(i).ok_or_else(|| {
            Error::Config(format!(
                "block {i} of an encoder with {}",
                self.blocks.len()
            ))
        })?;
        if x.len() != g * g * d {
            return Err(Error::Shape {
                name: "encoder token map".into(),
                expected: vec![g * g, d],
                got: vec![x.len()],
            });
        }
        // norm1 + qkv.
        let Workspace { qkv, attn } = ws;
        qkv.resize(g * g * 3 * d, 0.0);
        attn.resize(g * g * d, 0.0);
        x.par_chunks(ROWS * d)
            .zip(qkv.par_chunks_mut(ROWS * 3 * d))
            .for_each_init(
                || vec![0.0f32; ROWS * d],
                |xn, (xc, qc)| {
                    b.norm1.forward_seq_into(xc, xn);
                    b.qkv.forward_into(&xn[..xc.len()], qc, Par::Seq);
                },
            );
        AttnRelpos {
            grid: g,
            heads: c.num_heads,
            head_dim: c.head_dim,
            window: b.window,
            rel_pos_h: &b.rel_pos_h,
            rel_pos_w: &b.rel_pos_w,
        }
        .forward(qkv, &b.qkv.b, attn)?;
        // x = x + proj(attn); x = x + lin2(gelu(lin1(norm2(x)))).
        let m = c.mlp_dim;
        x.par_chunks_mut(ROWS * d)
            .zip(attn.par_chunks(ROWS * d))
            .for_each_init(
                || (vec![0.0f32; ROWS * d], vec![0.0f32; ROWS * m]),
                |(tmp, hid), (xc, ac)| {
                    let rows = xc.len() / d;
                    let tmp = &mut tmp[..rows * d];
                    b.proj.forward_into(ac, tmp, Par::Seq);
                    add_assign(xc, tmp);
                    b.norm2.forward_seq_into(xc, tmp);
                    let hid = &mut hid[..rows * m];
                    b.lin1.forward_into(tmp, hid, Par::Seq);
                    gelu_seq(hid);
                    b.lin2.forward_into(hid, tmp, Par::Seq);
                    add_assign(xc, tmp);
                },
            );
        Ok(())
    }
}

/// Block activations reused from one block to the next: the qkv map alone is 37 MB for
/// vit_b, which glibc would otherwise mmap and page-fault afresh every block.
#[derive(Default)]
struct Workspace {
    qkv: Vec<f32>,
    attn: Vec<f32>,
}

fn add_assign(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

pub use crate::cpu::model::random_weights::random_encoder_weights;
