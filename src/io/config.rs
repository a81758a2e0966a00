//! Model configuration. Never read from a side file: it is inferred from tensor shapes
//! (spec §1), so any checkpoint with official names describes itself.

use crate::error::{Error, Result};
use crate::io::weights::{check_shape, WeightSource};
use std::collections::{BTreeSet, HashSet};

/// Image encoder (ViT) hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub mlp_dim: usize,
    /// Side of the windows of the windowed blocks (14 in every official model). A grid that
    /// is not a multiple of it is zero-padded up to one (`window_partition`), so a window
    /// larger than the grid (img_size 128: grid 8, window 14) is one padded window.
    pub window_size: usize,
    /// Blocks that attend over the whole `grid x grid` map (64x64 at img_size 1024); every
    /// other block is windowed.
    pub global_attn_indexes: Vec<usize>,
    /// Input side in pixels (1024 for the official models); the patch grid is
    /// `img_size / patch_size`, as `pos_embed` `[1, grid, grid, D]` records it.
    pub img_size: usize,
    pub patch_size: usize,
    pub out_chans: usize,
}

impl EncoderConfig {
    /// Side of the patch grid (64 for 1024/16, 16 for 256/16).
    pub fn grid(&self) -> usize {
        self.img_size / self.patch_size
    }

    pub fn vit_b() -> Self {
        Self::standard(768, 12, 12, vec![2, 5, 8, 11])
    }
    pub fn vit_l() -> Self {
        Self::standard(1024, 24, 16, vec![5, 11, 17, 23])
    }
    pub fn vit_h() -> Self {
        Self::standard(1280, 32, 16, vec![7, 15, 23, 31])
    }

    pub fn standard(embed_dim: usize, depth: usize, num_heads: usize, global: Vec<usize>) -> Self {
        EncoderConfig {
            embed_dim,
            depth,
            num_heads,
            head_dim: embed_dim / num_heads,
            mlp_dim: embed_dim * 4,
            window_size: 14,
            global_attn_indexes: global,
            img_size: 1024,
            patch_size: 16,
            out_chans: 256,
        }
    }
}

/// Whole-model configuration. The prompt encoder and mask decoder sizes are fixed by the
/// official architecture and checked against the shapes at load.
#[derive(Debug, Clone, PartialEq)]
pub struct SamConfig {
    pub encoder: EncoderConfig,
    /// Prompt embedding / transformer dim (256).
    pub prompt_embed_dim: usize,
    /// Channels of the mask-downscaling hidden layer (16).
    pub mask_in_chans: usize,
    /// Mask tokens = multimask outputs + 1 (4).
    pub num_mask_tokens: usize,
    pub transformer_depth: usize,
    pub transformer_mlp_dim: usize,
    pub transformer_heads: usize,
    pub iou_head_hidden_dim: usize,
}

impl SamConfig {
    pub fn with_encoder(encoder: EncoderConfig) -> Self {
        SamConfig {
            encoder,
            prompt_embed_dim: 256,
            mask_in_chans: 16,
            num_mask_tokens: 4,
            transformer_depth: 2,
            transformer_mlp_dim: 2048,
            transformer_heads: 8,
            iou_head_hidden_dim: 256,
        }
    }

    /// This model run at input side `img_size` (a multiple of the patch size) instead of the
    /// size its checkpoint was made for, as the official `ImageEncoderViT(img_size=..)`
    /// would be built: the patch grid becomes `img_size / patch`, windowed blocks keep their
    /// window, and the loaders resize what depends on the grid (`pos_embed`, the global
    /// blocks' rel-pos tables; see `cpu::model::image_encoder::load_pos_embed`).
    pub fn at_image_size(&self, img_size: usize) -> Result<SamConfig> {
        let p = self.encoder.patch_size;
        if img_size == 0 || !img_size.is_multiple_of(p) || img_size / p > MAX_GRID {
            return Err(Error::Config(format!(
                "image size {img_size}: it must be a positive multiple of the patch size {p} \
                 and at most {}",
                MAX_GRID * p
            )));
        }
        let mut c = self.clone();
        c.encoder.img_size = img_size;
        Ok(c)
    }

    /// Named official configuration: "vit_b", "vit_l" or "vit_h".
    pub fn by_name(name: &str) -> Option<Self> {
        let e = match name {
            "vit_b" => EncoderConfig::vit_b(),
            "vit_l" => EncoderConfig::vit_l(),
            "vit_h" => EncoderConfig::vit_h(),
            _ => return None,
        };
        Some(Self::with_encoder(e))
    }
}

/// Bounds beyond which a shape is corrupt rather than a model we should try to build.
const MAX_EMBED_DIM: usize = 16384;
const MAX_DEPTH: usize = 256;
const MAX_MLP_DIM: usize = 1 << 17;
/// Largest patch grid (and window) side: img_size 8192 at 16x16 patches.
const MAX_GRID: usize = 512;
/// The prompt encoder's random Fourier matrix is a registered buffer, not a parameter.
const PE_GAUSSIAN: &str = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix";

fn named_shapes(prefix: &str, items: &[(&str, Vec<usize>)], out: &mut Vec<(String, Vec<usize>)>) {
    out.extend(
        items
            .iter()
            .map(|(n, s)| (format!("{prefix}{n}"), s.clone())),
    );
}

/// Every `image_encoder.*` tensor under `e`, with its shape, in official state-dict order
/// (spec §2). Global blocks have `[2*grid-1, head_dim]` rel-pos tables, windowed blocks
/// `[2*window_size-1, head_dim]`.
pub fn expected_encoder_shapes(e: &EncoderConfig) -> Vec<(String, Vec<usize>)> {
    let (d, g) = (e.embed_dim, e.grid());
    let mut out = Vec::new();
    named_shapes(
        "image_encoder.",
        &[
            ("pos_embed", vec![1, g, g, d]),
            (
                "patch_embed.proj.weight",
                vec![d, 3, e.patch_size, e.patch_size],
            ),
            ("patch_embed.proj.bias", vec![d]),
        ],
        &mut out,
    );
    for i in 0..e.depth {
        let side = if e.global_attn_indexes.contains(&i) {
            g
        } else {
            e.window_size
        };
        let rows = 2 * side - 1;
        named_shapes(
            &format!("image_encoder.blocks.{i}."),
            &[
                ("norm1.weight", vec![d]),
                ("norm1.bias", vec![d]),
                ("attn.rel_pos_h", vec![rows, e.head_dim]),
                ("attn.rel_pos_w", vec![rows, e.head_dim]),
                ("attn.qkv.weight", vec![3 * d, d]),
                ("attn.qkv.bias", vec![3 * d]),
                ("attn.proj.weight", vec![d, d]),
                ("attn.proj.bias", vec![d]),
                ("norm2.weight", vec![d]),
                ("norm2.bias", vec![d]),
                ("mlp.lin1.weight", vec![e.mlp_dim, d]),
                ("mlp.lin1.bias", vec![e.mlp_dim]),
                ("mlp.lin2.weight", vec![d, e.mlp_dim]),
                ("mlp.lin2.bias", vec![d]),
            ],
            &mut out,
        );
    }
    let oc = e.out_chans;
    named_shapes(
        "image_encoder.neck.",
        &[
            ("0.weight", vec![oc, d, 1, 1]),
            ("1.weight", vec![oc]),
            ("1.bias", vec![oc]),
            ("2.weight", vec![oc, oc, 3, 3]),
            ("3.weight", vec![oc]),
            ("3.bias", vec![oc]),
        ],
        &mut out,
    );
    out
}

/// Every tensor the model reads, with its shape under `cfg`, in official state-dict order
/// (spec §2–4). A checkpoint for `cfg` holds exactly these.
pub fn expected_shapes(cfg: &SamConfig) -> Vec<(String, Vec<usize>)> {
    let c = cfg.prompt_embed_dim;
    let mut out = expected_encoder_shapes(&cfg.encoder);
    let (m4, m) = (cfg.mask_in_chans / 4, cfg.mask_in_chans);
    out.push((PE_GAUSSIAN.to_string(), vec![2, c / 2]));
    for i in 0..4 {
        out.push((
            format!("prompt_encoder.point_embeddings.{i}.weight"),
            vec![1, c],
        ));
    }
    named_shapes(
        "prompt_encoder.",
        &[
            ("not_a_point_embed.weight", vec![1, c]),
            ("mask_downscaling.0.weight", vec![m4, 1, 2, 2]),
            ("mask_downscaling.0.bias", vec![m4]),
            ("mask_downscaling.1.weight", vec![m4]),
            ("mask_downscaling.1.bias", vec![m4]),
            ("mask_downscaling.3.weight", vec![m, m4, 2, 2]),
            ("mask_downscaling.3.bias", vec![m]),
            ("mask_downscaling.4.weight", vec![m]),
            ("mask_downscaling.4.bias", vec![m]),
            ("mask_downscaling.6.weight", vec![c, m, 1, 1]),
            ("mask_downscaling.6.bias", vec![c]),
            ("no_mask_embed.weight", vec![1, c]),
        ],
        &mut out,
    );

    // Cross attentions downsample the internal dim by 2 (attention_downsample_rate).
    let attn = |prefix: String, inner: usize, out: &mut Vec<(String, Vec<usize>)>| {
        named_shapes(
            &prefix,
            &[
                ("q_proj.weight", vec![inner, c]),
                ("q_proj.bias", vec![inner]),
                ("k_proj.weight", vec![inner, c]),
                ("k_proj.bias", vec![inner]),
                ("v_proj.weight", vec![inner, c]),
                ("v_proj.bias", vec![inner]),
                ("out_proj.weight", vec![c, inner]),
                ("out_proj.bias", vec![c]),
            ],
            out,
        )
    };
    let norm = |prefix: String, out: &mut Vec<(String, Vec<usize>)>| {
        named_shapes(&prefix, &[("weight", vec![c]), ("bias", vec![c])], out)
    };
    let t = "mask_decoder.transformer.";
    for l in 0..cfg.transformer_depth {
        let p = format!("{t}layers.{l}.");
        attn(format!("{p}self_attn."), c, &mut out);
        norm(format!("{p}norm1."), &mut out);
        attn(format!("{p}cross_attn_token_to_image."), c / 2, &mut out);
        norm(format!("{p}norm2."), &mut out);
        let mlp = cfg.transformer_mlp_dim;
        named_shapes(
            &format!("{p}mlp."),
            &[
                ("lin1.weight", vec![mlp, c]),
                ("lin1.bias", vec![mlp]),
                ("lin2.weight", vec![c, mlp]),
                ("lin2.bias", vec![c]),
            ],
            &mut out,
        );
        norm(format!("{p}norm3."), &mut out);
        norm(format!("{p}norm4."), &mut out);
        attn(format!("{p}cross_attn_image_to_token."), c / 2, &mut out);
    }
    attn(format!("{t}final_attn_token_to_image."), c / 2, &mut out);
    norm(format!("{t}norm_final_attn."), &mut out);

    let (nm, h) = (cfg.num_mask_tokens, cfg.iou_head_hidden_dim);
    named_shapes(
        "mask_decoder.",
        &[
            ("iou_token.weight", vec![1, c]),
            ("mask_tokens.weight", vec![nm, c]),
            ("output_upscaling.0.weight", vec![c, c / 4, 2, 2]),
            ("output_upscaling.0.bias", vec![c / 4]),
            ("output_upscaling.1.weight", vec![c / 4]),
            ("output_upscaling.1.bias", vec![c / 4]),
            ("output_upscaling.3.weight", vec![c / 4, c / 8, 2, 2]),
            ("output_upscaling.3.bias", vec![c / 8]),
        ],
        &mut out,
    );
    let mlp3 = |prefix: String, dims: [(usize, usize); 3], out: &mut Vec<(String, Vec<usize>)>| {
        for (i, (o, inp)) in dims.into_iter().enumerate() {
            out.push((format!("{prefix}layers.{i}.weight"), vec![o, inp]));
            out.push((format!("{prefix}layers.{i}.bias"), vec![o]));
        }
    };
    for k in 0..nm {
        let p = format!("mask_decoder.output_hypernetworks_mlps.{k}.");
        mlp3(p, [(c, c), (c, c), (c / 8, c)], &mut out);
    }
    let p = "mask_decoder.iou_prediction_head.".to_string();
    mlp3(p, [(h, c), (h, h), (nm, h)], &mut out);
    out
}

fn shape_of(w: &dyn WeightSource, name: &str) -> Result<Vec<usize>> {
    w.shape(name)
        .ok_or_else(|| Error::MissingTensor(name.to_string()))
}

/// The image encoder's configuration from the `image_encoder.*` tensor shapes alone (spec
/// §1), as the official `ImageEncoderViT` constructor that made them was called:
///
/// - embed_dim and patch size from `patch_embed.proj.weight` `[D, 3, 16, 16]`;
/// - the patch grid G, hence `img_size = 16 * G`, from `pos_embed` `[1, G, G, D]`;
/// - per block, the side S its attention covers from `attn.rel_pos_h` `[2S-1, head_dim]`:
///   S == G is a global block (in `global_attn_indexes`), any other S a windowed block of
///   window S. Windows may be smaller than the grid (padded up to a multiple, 64 -> 70 at
///   1024) or larger (one padded window, 8 -> 14 at img_size 128); every windowed block must
///   have the same S, as the constructor has one `window_size`;
/// - out_chans from `neck.0.weight`.
///
/// The one ambiguous case is a window equal to the grid (window 14 at img_size 224): the
/// weights cannot tell a windowed block from a global one. Both compute the same thing
/// there (one window, no padding, the same `[2G-1, hd]` tables), so such blocks are
/// reported global. With no windowed block the window size is unused and reported as 14.
///
/// Global blocks whose tables were made for another grid are recognised as in
/// [`classify_blocks`] and resized at load. Tensors outside `image_encoder.` are ignored; unknown ones inside it are
/// rejected.
pub fn infer_encoder_config(w: &dyn WeightSource) -> Result<EncoderConfig> {
    let pe_name = "image_encoder.patch_embed.proj.weight";
    let pe = shape_of(w, pe_name)?;
    let [d, 3, p, q] = pe[..] else {
        return Err(Error::Config(format!(
            "{pe_name} has shape {pe:?}, expected [embed_dim, 3, 16, 16]"
        )));
    };
    if p != 16 || q != 16 {
        return Err(Error::Config(format!(
            "patch size {p}x{q}; SAM uses 16x16 patches"
        )));
    }
    if d == 0 || d > MAX_EMBED_DIM {
        return Err(Error::Config(format!(
            "embed_dim {d} is outside 1..={MAX_EMBED_DIM}"
        )));
    }

    let names = w.names();
    let mut blocks = BTreeSet::new();
    for n in &names {
        let Some(rest) = n.strip_prefix("image_encoder.blocks.") else {
            continue;
        };
        let Some(Ok(i)) = rest.split('.').next().map(str::parse::<usize>) else {
            continue; // not a block index: reported below as an unknown tensor
        };
        if i >= MAX_DEPTH {
            return Err(Error::Config(format!(
                "encoder block {i}: more than {MAX_DEPTH} blocks"
            )));
        }
        blocks.insert(i);
    }
    let depth = blocks.len();
    if depth == 0 {
        return Err(Error::Config("no image_encoder.blocks.* tensors".into()));
    }
    if let Some(missing) = (0..depth).find(|i| !blocks.contains(i)) {
        return Err(Error::Config(format!(
            "encoder blocks are not numbered 0..{depth}: block {missing} is missing"
        )));
    }

    let pos_name = "image_encoder.pos_embed";
    let pos = shape_of(w, pos_name)?;
    let grid = match pos[..] {
        [1, gh, gw, pd] if gh == gw && pd == d && (1..=MAX_GRID).contains(&gh) => gh,
        _ => {
            return Err(Error::Config(format!(
                "{pos_name} has shape {pos:?}, expected [1, grid, grid, {d}] with grid = \
                 img_size / {p} in 1..={MAX_GRID}"
            )))
        }
    };

    let rel0 = shape_of(w, "image_encoder.blocks.0.attn.rel_pos_h")?;
    let [_, hd] = rel0[..] else {
        return Err(Error::Config(format!(
            "image_encoder.blocks.0.attn.rel_pos_h has shape {rel0:?}, expected [rows, head_dim]"
        )));
    };
    if hd == 0 || d % hd != 0 {
        return Err(Error::Config(format!(
            "head_dim {hd} (from rel_pos_h) does not divide embed_dim {d}"
        )));
    }
    let mut rows_of = Vec::with_capacity(depth);
    for i in 0..depth {
        let name = format!("image_encoder.blocks.{i}.attn.rel_pos_h");
        let s = shape_of(w, &name)?;
        let rows = match s[..] {
            [rows, h] if h == hd && (1..=2 * MAX_GRID).contains(&rows) => rows,
            _ => {
                return Err(Error::Shape {
                    name,
                    expected: vec![s.first().copied().unwrap_or(0), hd],
                    got: s,
                })
            }
        };
        // The official constructor sizes both tables alike ([2S-1, hd]).
        check_shape(
            w,
            &format!("image_encoder.blocks.{i}.attn.rel_pos_w"),
            &[rows, hd],
        )?;
        rows_of.push(rows);
    }
    let (window, global) = classify_blocks(&rows_of, grid, p)?;
    let lin1 = shape_of(w, "image_encoder.blocks.0.mlp.lin1.weight")?;
    let mlp_dim = lin1.first().copied().unwrap_or(0);
    if mlp_dim == 0 || mlp_dim > MAX_MLP_DIM {
        return Err(Error::Config(format!(
            "MLP hidden dim {mlp_dim} is outside 1..={MAX_MLP_DIM}"
        )));
    }
    let neck = shape_of(w, "image_encoder.neck.0.weight")?;
    let out_chans = neck.first().copied().unwrap_or(0);
    if out_chans == 0 || out_chans > MAX_EMBED_DIM {
        return Err(Error::Config(format!(
            "neck output channels {out_chans} are outside 1..={MAX_EMBED_DIM}"
        )));
    }

    let e = EncoderConfig {
        embed_dim: d,
        depth,
        num_heads: d / hd,
        head_dim: hd,
        mlp_dim,
        // With every block global the window size is never used; keep the official value.
        window_size: window.unwrap_or(14),
        global_attn_indexes: global,
        img_size: grid * p,
        patch_size: p,
        out_chans,
    };
    let expected = with_stored_rel_pos(w, expected_encoder_shapes(&e));
    for (name, shape) in &expected {
        check_shape(w, name, shape)?;
    }
    let encoder_names = names.iter().filter(|n| n.starts_with("image_encoder."));
    reject_unused(encoder_names, &expected)?;
    Ok(e)
}

/// Which blocks are windowed (and their window side) and which global, from each block's
/// rel-pos rows (`rows[i]`) and the patch grid:
///
/// - `2*grid-1` rows: a global block whose table spans the grid;
/// - of the other row counts, the one most blocks have (the smaller on a tie) is the window
///   (`2*window-1`; the official constructor has one window size, and 3 in 4 of its blocks
///   are windowed);
/// - a second count marks global blocks whose tables were made for another grid (a
///   checkpoint trained at another size): the official `get_rel_pos` resizes such a table
///   linearly to `2*grid-1` rows at run time, and so do we;
/// - a third count cannot come from the official constructor and is refused.
fn classify_blocks(
    rows: &[usize],
    grid: usize,
    patch: usize,
) -> Result<(Option<usize>, Vec<usize>)> {
    let global_rows = 2 * grid - 1;
    let mut counts: Vec<(usize, usize, usize)> = Vec::new(); // (rows, blocks, first block)
    for (i, &r) in rows.iter().enumerate().filter(|(_, &r)| r != global_rows) {
        match counts.iter_mut().find(|c| c.0 == r) {
            Some(c) => c.1 += 1,
            None => counts.push((r, 1, i)),
        }
    }
    if counts.len() > 2 {
        let (r0, r1, r2) = (counts[0], counts[1], counts[2]);
        return Err(Error::Config(format!(
            "encoder blocks {}, {} and {} have rel_pos tables of {}, {} and {} rows: the \
             official encoder has one window size (2*window-1 rows), and global blocks span \
             the {grid}x{grid} grid (img_size {}) that pos_embed gives (2*{grid}-1 = \
             {global_rows} rows, or one other size that the official code would resize)",
            r0.2,
            r1.2,
            r2.2,
            r0.0,
            r1.0,
            r2.0,
            grid * patch
        )));
    }
    // Most blocks first, then fewer rows.
    counts.sort_by_key(|&(r, n, _)| (std::cmp::Reverse(n), r));
    let window = match counts.first() {
        None => None,
        Some(&(r, _, first)) => {
            if r.is_multiple_of(2) {
                return Err(Error::Config(format!(
                    "image_encoder.blocks.{first}.attn.rel_pos_h has {r} rows: neither \
                     2*window-1 for a window of at most {MAX_GRID} nor 2*{grid}-1 = \
                     {global_rows} for global attention over the {grid}x{grid} grid that \
                     pos_embed gives"
                )));
            }
            Some(r.div_ceil(2))
        }
    };
    let window_rows = window.map(|ws| 2 * ws - 1);
    let global = (0..rows.len())
        .filter(|&i| Some(rows[i]) != window_rows)
        .collect();
    Ok((window, global))
}

/// `expected` with each rel-pos table at the rows it is stored with (a global block's table
/// made for another grid is resized at load, as the official `get_rel_pos` does).
fn with_stored_rel_pos(
    w: &dyn WeightSource,
    mut expected: Vec<(String, Vec<usize>)>,
) -> Vec<(String, Vec<usize>)> {
    for (name, shape) in &mut expected {
        if !(name.ends_with(".attn.rel_pos_h") || name.ends_with(".attn.rel_pos_w")) {
            continue;
        }
        if let Some(stored) = w.shape(name) {
            if stored.len() == 2 && stored[1] == shape[1] {
                *shape = stored;
            }
        }
    }
    expected
}

/// Fails naming (up to 5 of) the tensors among `names` that `expected` does not list.
fn reject_unused<'a>(
    names: impl Iterator<Item = &'a String>,
    expected: &[(String, Vec<usize>)],
) -> Result<()> {
    let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<&String> = names.filter(|n| !known.contains(n.as_str())).collect();
    if extra.is_empty() {
        return Ok(());
    }
    let shown: Vec<&str> = extra.iter().take(5).map(|s| s.as_str()).collect();
    let more = extra.len().saturating_sub(shown.len());
    Err(Error::Config(format!(
        "{} the model does not use: {}{}",
        crate::error::count(extra.len(), "tensor"),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

/// Infers the configuration from tensor shapes (spec §1; the encoder as
/// [`infer_encoder_config`] does), then checks the shape of every tensor the model uses and
/// rejects tensors it would ignore, so a checkpoint that loads is one the model can run.
pub fn infer_config(w: &dyn WeightSource) -> Result<SamConfig> {
    let encoder = infer_encoder_config(w)?;
    let cfg = SamConfig::with_encoder(encoder);
    if cfg.encoder.out_chans != cfg.prompt_embed_dim {
        // The mask decoder reads the embedding with prompt_embed_dim channels.
        let e = &cfg.encoder;
        return Err(Error::Shape {
            name: "image_encoder.neck.0.weight".into(),
            expected: vec![cfg.prompt_embed_dim, e.embed_dim, 1, 1],
            got: vec![e.out_chans, e.embed_dim, 1, 1],
        });
    }
    let expected = with_stored_rel_pos(w, expected_shapes(&cfg));
    for (name, shape) in &expected {
        check_shape(w, name, shape)?;
    }
    reject_unused(w.names().iter(), &expected)?;
    Ok(cfg)
}

/// Number of learnable parameters, as `sum(p.numel() for p in sam.parameters())` counts
/// them: every tensor except the prompt encoder's Gaussian matrix, which is a buffer.
pub fn param_count(w: &dyn WeightSource) -> usize {
    w.names()
        .iter()
        .filter(|n| n.as_str() != PE_GAUSSIAN)
        .filter_map(|n| w.shape(n))
        .map(|s| {
            s.iter()
                .try_fold(1usize, |a, &x| a.checked_mul(x))
                .unwrap_or(usize::MAX)
        })
        .fold(0usize, usize::saturating_add)
}
