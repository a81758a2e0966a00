//! Prompt inputs of `samrt segment`: `--point`/`--box` strings, `--mask-input FILE.npy[:K]`
//! and `--prompts FILE.json`. Mask inputs are only described here (path + mask index, or
//! inline values) and read when their chunk is decoded, so a prompts file naming thousands
//! of mask files does not hold them all in memory.
//!
//! Mask inputs are `[S, S]` low-res logits, S = 4x the model's embedding side (256 for the
//! official 1024 models, 64 for a model built for 256). Prompts are read before the model
//! is loaded, so every square side is taken then and each prompt remembers its side;
//! [`check_mask_sides`] holds them to the model's once it is loaded.

use super::common::{CliError, Context};
use samrt::sam::predictor::Prompt;
use samrt::sam::prompt_json::MaskField;
use std::path::{Path, PathBuf};

/// Largest mask-input side: the low-res side of a 4096-pixel model.
const MAX_MASK_SIDE: usize = 1024;
/// Largest .npy accepted as a mask input: [C, S, S] float64 with C up to 16 and S up to
/// [`MAX_MASK_SIDE`].
const MAX_MASK_FILE: u64 = 16 * 8 * (MAX_MASK_SIDE * MAX_MASK_SIDE) as u64 + 4096;
/// Scores of the masks in a `low_res_logits.npy`, written beside it by `segment`.
pub const SCORES_FILE: &str = "iou_predictions.npy";

/// Where a prompt's mask input comes from.
#[derive(Clone, Debug)]
pub enum MaskSource {
    /// A .npy file and, for a [C, 256, 256] stack, which mask (`FILE.npy:K`); without K the
    /// best-scoring one, by the `iou_predictions.npy` beside it.
    File(PathBuf, Option<usize>),
    Inline(Vec<f32>),
}

/// A prompt whose mask input is still to be read.
#[derive(Clone, Debug)]
pub struct PromptSpec {
    pub prompt: Prompt,
    pub mask: Option<MaskSource>,
    /// The mask input's side as first read (before the model was known); None without one.
    pub mask_side: Option<usize>,
}

impl PromptSpec {
    /// The library prompt, reading its mask input now; `side` is the model's low-res side
    /// (None before the model is known: any square side).
    pub fn load(&self, side: Option<usize>) -> Result<Prompt, CliError> {
        Ok(self.load_sized(side)?.0)
    }

    /// [`PromptSpec::load`] and the mask input's side (None without one).
    pub fn load_sized(&self, side: Option<usize>) -> Result<(Prompt, Option<usize>), CliError> {
        let mut p = self.prompt.clone();
        let (mask, got) = match &self.mask {
            None => (None, None),
            // Inline values were held to the model's side by `check_mask_sides` (they
            // cannot change since); a file is read again and checked here.
            Some(MaskSource::Inline(v)) => (Some(v.clone()), Some(v.len().isqrt())),
            Some(MaskSource::File(path, k)) => {
                let (m, s) = read_mask_file(path, *k, side)?;
                (Some(m), Some(s))
            }
        };
        p.mask_input = mask;
        Ok((p, got))
    }
}

/// Holds every prompt's mask input (`sides[k]`, as read before the model was loaded) to the
/// model's low-res side, before anything is decoded.
pub fn check_mask_sides(sides: &[Option<usize>], side: usize, what: &str) -> Result<(), CliError> {
    for (k, got) in sides.iter().enumerate() {
        if let Some(s) = got.filter(|&s| s != side) {
            let which = if sides.len() == 1 {
                what.to_string()
            } else {
                format!("{what}: prompt {k}")
            };
            return Err(CliError::msg(format!(
                "{which}: mask input has shape [{s}, {s}], expected [{side}, {side}] (or [1, \
                 {side}, {side}], [C, {side}, {side}]): this model's low-res masks are 4x its \
                 {e}x{e} embedding",
                e = side / 4
            )));
        }
    }
    Ok(())
}

fn parse_floats(s: &str, what: &str) -> Result<Vec<f64>, CliError> {
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .map_err(|_| CliError::msg(format!("{what} `{s}`: `{t}` is not a number")))
        })
        .collect()
}

/// "X,Y" or "X,Y,LABEL".
pub fn parse_point(s: &str) -> Result<([f64; 2], i32), CliError> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 2 && parts.len() != 3 {
        return Err(CliError::msg(format!(
            "--point `{s}`: expected X,Y or X,Y,LABEL"
        )));
    }
    let xy = parse_floats(&parts[..2].join(","), "--point")?;
    let label = match parts.get(2) {
        None => 1,
        Some(l) => l
            .trim()
            .parse::<i32>()
            .map_err(|_| CliError::msg(format!("--point `{s}`: label `{l}` must be 0 or 1")))?,
    };
    Ok(([xy[0], xy[1]], label))
}

pub fn parse_box(s: &str) -> Result<[f64; 4], CliError> {
    let v = parse_floats(s, "--box")?;
    if v.len() != 4 {
        return Err(CliError::msg(format!("--box `{s}`: expected X0,Y0,X1,Y1")));
    }
    Ok([v[0], v[1], v[2], v[3]])
}

/// `FILE.npy` or `FILE.npy:K`. A name that exists as given is taken whole, so a file whose
/// name ends in `:2` still works.
pub fn parse_mask_spec(s: &str, base: &Path) -> Result<MaskSource, CliError> {
    let whole = base.join(s);
    if !whole.exists() {
        if let Some((file, k)) = s.rsplit_once(':') {
            if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
                let k = k.parse::<usize>().map_err(|_| {
                    CliError::msg(format!("mask input `{s}`: mask index `{k}` is too large"))
                })?;
                return Ok(MaskSource::File(base.join(file), Some(k)));
            }
        }
    }
    Ok(MaskSource::File(whole, None))
}

/// Index of the first highest score, as `np.argmax` picks it.
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Reads one [S, S] mask from a float32 or float64 .npy of shape [S, S], [1, S, S],
/// [C, S, S] or [1, C, S, S], with S = `side` when the model is known, else any square side
/// up to [`MAX_MASK_SIDE`]; returns it and S.
pub fn read_mask_file(
    path: &Path,
    k: Option<usize>,
    side: Option<usize>,
) -> Result<(Vec<f32>, usize), CliError> {
    let shown = match k {
        Some(k) => format!("{}:{k}", path.display()),
        None => path.display().to_string(),
    };
    let fail = |m: String| CliError::msg(format!("mask input {shown}: {m}"));
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > MAX_MASK_FILE {
        return Err(fail(format!(
            "file is {len} bytes; a [C, S, S] mask stack is at most {MAX_MASK_FILE}"
        )));
    }
    let arr = samrt::io::npy::read(path).map_err(|e| fail(e.to_string()))?;
    let data = match &arr.data {
        samrt::io::npy::NpyData::F32(_) | samrt::io::npy::NpyData::F64(_) => arr.to_f32(),
        _ => {
            return Err(fail(format!(
                "dtype {}, expected float32 (<f4) or float64 (<f8)",
                arr.descr()
            )))
        }
    };
    let fits =
        |a: usize, b: usize| a == b && side.map_or((1..=MAX_MASK_SIDE).contains(&a), |s| a == s);
    let (c, s) = match arr.shape.as_slice() {
        [a, b] if fits(*a, *b) => (1, *a),
        [c, a, b] | [1, c, a, b] if fits(*a, *b) && *c >= 1 => (*c, *a),
        other => {
            return Err(fail(match side {
                Some(s) => format!(
                    "shape {other:?}, expected [{s}, {s}], [1, {s}, {s}] or [C, {s}, {s}] \
                     (this model's low-res masks)"
                ),
                None => format!(
                    "shape {other:?}, expected [S, S], [1, S, S] or [C, S, S] with S the \
                     model's low-res side (256 for the official models; at most \
                     {MAX_MASK_SIDE})"
                ),
            }))
        }
    };
    let pick = match k {
        Some(k) if k < c => k,
        Some(k) => {
            return Err(fail(format!(
                "mask {k} asked for, the file holds {c} mask{}",
                if c == 1 { "" } else { "s" }
            )))
        }
        None if c == 1 => 0,
        None => {
            let scores_path = path.with_file_name(SCORES_FILE);
            let scores = samrt::io::npy::read(&scores_path)
                .ok()
                .filter(|a| a.shape == [c])
                .map(|a| a.to_f32())
                .ok_or_else(|| {
                    fail(format!(
                        "the file holds {c} masks and no {SCORES_FILE} with {c} scores is \
                         beside it; pick one with FILE.npy:K (0..{c})"
                    ))
                })?;
            argmax(&scores)
        }
    };
    let n = s * s;
    let out = data[pick * n..(pick + 1) * n].to_vec();
    if let Some(v) = out.iter().find(|v| !v.is_finite()) {
        return Err(fail(format!("holds {v}, which is not finite in float32")));
    }
    Ok((out, s))
}

/// Largest --prompts file read.
const MAX_PROMPTS_FILE: u64 = 64 << 20;

/// Parses a --prompts file into prompt specs, validating every prompt (and reading every
/// mask file once, then dropping it) before anything runs.
pub fn read_prompts(path: &Path, default_multimask: bool) -> Result<Vec<PromptSpec>, CliError> {
    let bad = |m: String| CliError::msg(format!("--prompts {}: {m}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    if len > MAX_PROMPTS_FILE {
        return Err(bad(format!(
            "file is {len} bytes; refusing more than 64 MiB"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    // Editors on Windows save UTF-8 with a byte-order mark, which JSON parsers reject.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    // The schema is the library's, shared with `samrt serve`; a string mask input is a
    // path relative to this file here.
    let entries =
        samrt::sam::prompt_json::parse_prompt_list(&v, default_multimask).map_err(|e| match e {
            samrt::Error::Prompt(m) => bad(m),
            other => bad(other.to_string()),
        })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::with_capacity(entries.len());
    for (k, entry) in entries.into_iter().enumerate() {
        let p = entry.prompt;
        let mask = match entry.mask {
            None => None,
            Some(MaskField::Text(f)) => Some(parse_mask_spec(&f, base)?),
            Some(MaskField::Inline(v)) => Some(MaskSource::Inline(v)),
        };
        let mut spec = PromptSpec {
            prompt: p,
            mask,
            mask_side: None,
        };
        let (loaded, side) = spec
            .load_sized(None)
            .map_err(|e| bad(format!("prompt {k}: {e}")))?;
        spec.mask_side = side;
        loaded
            .validate()
            .context(|| format!("--prompts {}: prompt {k}", path.display()))?;
        out.push(spec);
    }
    Ok(out)
}
