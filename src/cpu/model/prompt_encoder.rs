//! SAM's prompt encoder (official `modeling/prompt_encoder.py`), f32 on CPU.
//!
//! Float details that the official code fixes and we copy: the Fourier features are
//! `sin/cos(f32(2*pi) * ((2u-1)*G0 + (2v-1)*G1))` all in f32; points are shifted by +0.5
//! before being divided by the 1024 input size; a pad point (label -1, zero PE replaced by
//! `not_a_point_embed`) is appended only when points come without a box; the mask path
//! uses LayerNorm2d eps 1e-6 and exact GELU.

use crate::cpu::ops::gelu::gelu;
use crate::cpu::ops::gemm::{matmul, MatRef, Par};
use crate::cpu::ops::layer_norm::layer_norm_2d;
use crate::cpu::ops::prompt_encoder::check_sparse;
use crate::cpu::ops::strided_conv2d::strided_conv2d;
use crate::error::{Error, Result};
use crate::io::config::SamConfig;
use crate::io::weights::WeightSource;

const P: &str = "prompt_encoder";
/// LayerNorm2d's eps (common.py).
const LN2D_EPS: f32 = 1e-6;
/// `2 * np.pi * coords` multiplies a float32 tensor by a Python float, which PyTorch rounds
/// to float32 first.
const TWO_PI_F32: f32 = (2.0 * std::f64::consts::PI) as f32;

/// The random Fourier positional encoding (`PositionEmbeddingRandom`).
#[derive(Clone)]
pub struct FourierPe {
    /// `[2, feats]`: row 0 multiplies x, row 1 y.
    gauss: Vec<f32>,
    feats: usize,
}

impl FourierPe {
    pub fn new(gauss: Vec<f32>) -> Result<Self> {
        if gauss.is_empty() || !gauss.len().is_multiple_of(2) {
            return Err(Error::Config("Fourier PE matrix must be [2, n]".into()));
        }
        let feats = gauss.len() / 2;
        Ok(FourierPe { gauss, feats })
    }

    /// Encodes a point normalised to [0, 1]^2 into `out` (`2 * feats` values: sines then
    /// cosines).
    pub fn encode(&self, u: f32, v: f32, out: &mut [f32]) {
        let a = 2.0 * u - 1.0;
        let b = 2.0 * v - 1.0;
        let (g0, g1) = self.gauss.split_at(self.feats);
        let (s, c) = out.split_at_mut(self.feats);
        for k in 0..self.feats {
            let t = TWO_PI_F32 * (a * g0[k] + b * g1[k]);
            s[k] = t.sin();
            c[k] = t.cos();
        }
    }

    /// PE of every cell centre of an `h x w` grid, CHW `[2*feats, h, w]`.
    pub fn grid(&self, h: usize, w: usize) -> Vec<f32> {
        let d = 2 * self.feats;
        let mut hwc = vec![0.0f32; h * w * d];
        for i in 0..h {
            for j in 0..w {
                let u = (j as f32 + 0.5) / w as f32;
                let v = (i as f32 + 0.5) / h as f32;
                self.encode(u, v, &mut hwc[(i * w + j) * d..(i * w + j + 1) * d]);
            }
        }
        crate::cpu::ops::layer_norm::transpose(&hwc, h * w, d)
    }
}

struct ConvW {
    w: Vec<f32>,
    b: Vec<f32>,
}

pub struct PromptEncoder {
    pe: FourierPe,
    /// Label 0 (negative) point, label 1 (positive) point, box corner 0, box corner 1.
    point_embeddings: Vec<Vec<f32>>,
    not_a_point: Vec<f32>,
    no_mask: Vec<f32>,
    conv0: ConvW,
    ln1: ConvW,
    conv3: ConvW,
    ln4: ConvW,
    conv6: ConvW,
    dim: usize,
    mask_in_chans: usize,
    /// Image embedding side (64).
    grid: usize,
    /// Padded input image side (1024) that point coordinates are given in.
    input_size: usize,
    dense_pe: Vec<f32>,
}

impl PromptEncoder {
    pub fn load(w: &dyn WeightSource, cfg: &SamConfig) -> Result<Self> {
        let dim = cfg.prompt_embed_dim;
        let mic = cfg.mask_in_chans;
        if dim == 0 || !dim.is_multiple_of(2) || mic == 0 || !mic.is_multiple_of(4) {
            return Err(Error::Config(format!(
                "prompt encoder needs an even embed dim and mask_in_chans divisible by 4, got {dim} and {mic}"
            )));
        }
        let t = |name: &str, shape: &[usize]| w.f32(&format!("{P}.{name}"), shape);
        let conv = |i: usize, shape: &[usize]| -> Result<ConvW> {
            Ok(ConvW {
                w: t(&format!("mask_downscaling.{i}.weight"), shape)?,
                b: t(&format!("mask_downscaling.{i}.bias"), &[shape[0]])?,
            })
        };
        let pe = FourierPe::new(t(
            "pe_layer.positional_encoding_gaussian_matrix",
            &[2, dim / 2],
        )?)?;
        let grid = cfg.encoder.grid();
        let dense_pe = pe.grid(grid, grid);
        Ok(PromptEncoder {
            point_embeddings: (0..4)
                .map(|i| t(&format!("point_embeddings.{i}.weight"), &[1, dim]))
                .collect::<Result<_>>()?,
            not_a_point: t("not_a_point_embed.weight", &[1, dim])?,
            no_mask: t("no_mask_embed.weight", &[1, dim])?,
            conv0: conv(0, &[mic / 4, 1, 2, 2])?,
            ln1: conv(1, &[mic / 4])?,
            conv3: conv(3, &[mic, mic / 4, 2, 2])?,
            ln4: conv(4, &[mic])?,
            conv6: conv(6, &[dim, mic, 1, 1])?,
            pe,
            dim,
            mask_in_chans: mic,
            grid,
            input_size: cfg.encoder.img_size,
            dense_pe,
        })
    }

    pub fn embed_dim(&self) -> usize {
        self.dim
    }

    /// Side of the low-res mask input (256).
    pub fn mask_input_size(&self) -> usize {
        4 * self.grid
    }

    /// Dense positional encoding of the 64x64 grid, [256, 64, 64] CHW.
    pub fn dense_pe(&self) -> Vec<f32> {
        self.dense_pe.clone()
    }

    /// PE of a point in the input frame after the official +0.5 pixel-centre shift.
    /// What the GPU sparse-embedding kernel needs: the Fourier matrix `[2, feats]`, the
    /// embeddings table `[5, dim]` (not-a-point, negative, positive, box corner 0, corner 1)
    /// and the input side the coordinates are normalised by.
    pub fn sparse_tables(&self) -> (Vec<f32>, Vec<f32>, usize) {
        let mut table = self.not_a_point.clone();
        for e in &self.point_embeddings {
            table.extend_from_slice(e);
        }
        (self.pe.gauss.clone(), table, self.input_size)
    }

    /// The mask_downscaling weights packed as the GPU kernel reads them (of
    /// [`crate::cpu::ops::prompt_encoder::mask_packed_len`] values): conv1 w, b, ln1 w, b,
    /// conv2 w, b, ln2 w, b, conv3 w `[dim, mask_in_chans]`, b (official layouts).
    pub fn mask_downscaling_packed(&self) -> Vec<f32> {
        [
            &self.conv0.w,
            &self.conv0.b,
            &self.ln1.w,
            &self.ln1.b,
            &self.conv3.w,
            &self.conv3.b,
            &self.ln4.w,
            &self.ln4.b,
            &self.conv6.w,
            &self.conv6.b,
        ]
        .iter()
        .flat_map(|v| v.iter().copied())
        .collect()
    }

    /// Channels after the second mask conv (16 in every SAM).
    pub fn mask_in_chans(&self) -> usize {
        self.mask_in_chans
    }

    /// Side of the image embedding grid (64).
    pub fn grid(&self) -> usize {
        self.grid
    }

    fn point_pe(&self, x: f32, y: f32, out: &mut [f32]) {
        let s = self.input_size as f32;
        self.pe.encode((x + 0.5) / s, (y + 0.5) / s, out);
    }

    /// points: coordinates already transformed to the 1024 input frame, labels in {-1,0,1};
    /// box_xyxy in the same frame; mask: low-res logits [256*256].
    /// Returns (sparse [N, 256] as Vec with N, dense [256, 64, 64]).
    /// An empty `points` means no points (the official `points=None`), so no pad is added.
    pub fn encode(
        &self,
        points: &[[f32; 2]],
        labels: &[i32],
        box_xyxy: Option<[f32; 4]>,
        mask: Option<&[f32]>,
    ) -> Result<(Vec<f32>, usize, Vec<f32>)> {
        let (sparse, n) = self.encode_sparse(points, labels, box_xyxy)?;
        let dense = match mask {
            Some(m) => self.embed_mask(m)?,
            None => self.no_mask_dense(),
        };
        Ok((sparse, n, dense))
    }

    /// The sparse half of [`Self::encode`]: `(sparse [N, 256], N)`. Callers that decode
    /// mask-less prompts add [`Self::no_mask_embed`] per channel instead of building a 4 MB
    /// dense plane per prompt.
    pub fn encode_sparse(
        &self,
        points: &[[f32; 2]],
        labels: &[i32],
        box_xyxy: Option<[f32; 4]>,
    ) -> Result<(Vec<f32>, usize)> {
        check_sparse(points, labels, box_xyxy)?;
        let d = self.dim;
        let pad = !points.is_empty() && box_xyxy.is_none();
        let n = points.len() + pad as usize + if box_xyxy.is_some() { 2 } else { 0 };
        let mut sparse = vec![0.0f32; n * d];
        let mut rows = sparse.chunks_mut(d);
        for (p, &l) in points.iter().zip(labels) {
            let row = rows.next().expect("row count");
            if l == -1 {
                row.copy_from_slice(&self.not_a_point);
            } else {
                self.point_pe(p[0], p[1], row);
                let e = &self.point_embeddings[l as usize];
                row.iter_mut().zip(e).for_each(|(r, e)| *r += e);
            }
        }
        if pad {
            rows.next()
                .expect("row count")
                .copy_from_slice(&self.not_a_point);
        }
        if let Some(b) = box_xyxy {
            for (corner, xy) in [[b[0], b[1]], [b[2], b[3]]].iter().enumerate() {
                let row = rows.next().expect("row count");
                self.point_pe(xy[0], xy[1], row);
                let e = &self.point_embeddings[2 + corner];
                row.iter_mut().zip(e).for_each(|(r, e)| *r += e);
            }
        }
        Ok((sparse, n))
    }

    /// `no_mask_embed`, `[dim]`: the dense embedding's value at every cell when a prompt
    /// has no mask input.
    pub fn no_mask_embed(&self) -> &[f32] {
        &self.no_mask
    }

    /// `no_mask_embed` broadcast over the grid, [256, 64, 64].
    pub fn no_mask_dense(&self) -> Vec<f32> {
        let hw = self.grid * self.grid;
        self.no_mask
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, hw))
            .collect()
    }

    /// The mask_downscaling stack on low-res logits `[256, 256]` -> `[256, 64, 64]`.
    pub fn embed_mask(&self, mask: &[f32]) -> Result<Vec<f32>> {
        let s = self.mask_input_size();
        if mask.len() != s * s {
            return Err(Error::Prompt(format!(
                "mask input has {} values, expected {s}x{s}",
                mask.len()
            )));
        }
        if mask.iter().any(|v| !v.is_finite()) {
            return Err(Error::Prompt("mask input is not finite".into()));
        }
        let c1 = self.mask_in_chans / 4;
        let mut x = strided_conv2d(mask, 1, s, s, &self.conv0.w, &self.conv0.b, 2)?;
        layer_norm_2d(&mut x, c1, &self.ln1.w, &self.ln1.b, LN2D_EPS);
        gelu(&mut x);
        let h = s / 2;
        let mut x = strided_conv2d(&x, c1, h, h, &self.conv3.w, &self.conv3.b, 2)?;
        layer_norm_2d(
            &mut x,
            self.mask_in_chans,
            &self.ln4.w,
            &self.ln4.b,
            LN2D_EPS,
        );
        gelu(&mut x);
        let hw = (h / 2) * (h / 2);
        // 1x1 conv: [dim, mic] @ [mic, hw], bias added after the sum as a conv does.
        let mut out = vec![0.0f32; self.dim * hw];
        matmul(
            MatRef::rows(&self.conv6.w, self.dim, self.mask_in_chans),
            MatRef::rows(&x, self.mask_in_chans, hw),
            &mut out,
            hw,
            0.0,
            Par::Threads,
        );
        for (plane, b) in out.chunks_mut(hw).zip(&self.conv6.b) {
            plane.iter_mut().for_each(|v| *v += b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourier_pe_matches_hand_computation() {
        // G = [[1, 0.5], [-2, 0.25]]: feature k uses (G[0,k], G[1,k]).
        let pe = FourierPe::new(vec![1.0, 0.5, -2.0, 0.25]).unwrap();
        let mut out = [0.0f32; 4];
        // Point (255.5, 767.5) in a 1024 frame: +0.5 gives u = 0.25, v = 0.75, so
        // a = -0.5, b = 0.5; t0 = -0.5*1 + 0.5*-2 = -1.5, t1 = -0.25 + 0.125 = -0.125.
        pe.encode(256.0 / 1024.0, 768.0 / 1024.0, &mut out);
        let two_pi = 2.0 * std::f64::consts::PI;
        let want = [
            (two_pi * -1.5).sin(),
            (two_pi * -0.125).sin(),
            (two_pi * -1.5).cos(),
            (two_pi * -0.125).cos(),
        ];
        for (g, w) in out.iter().zip(want) {
            // f32 argument rounding of 2*pi*t with |t| <= 1.5 moves sin/cos by < 1e-6.
            assert!((*g as f64 - w).abs() < 2e-6, "{g} vs {w}");
        }
    }
}
