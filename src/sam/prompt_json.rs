//! Prompts as JSON objects: `{"points", "labels", "box", "mask_input", "multimask"}`, the
//! one schema of `samrt segment --prompts FILE` and the server's `/v1/segment`, parsed and
//! checked here so both give the same answer to the same list.
//!
//! A `mask_input` may be inline numbers (`[S, S]` or `[1, S, S]`) or a string. What a string
//! means is the caller's business (a .npy path for the CLI, base64 .npy bytes for the
//! server, which reads no files for a client), so it is handed back as text.

use crate::error::{Error, Result};
use crate::sam::predictor::{Prompt, MAX_POINTS_PER_PROMPT};
use serde_json::Value;

/// The keys a prompt object may have.
pub const PROMPT_KEYS: [&str; 5] = ["points", "labels", "box", "mask_input", "multimask"];

/// A prompt's `mask_input` before the caller resolves it.
#[derive(Clone, Debug)]
pub enum MaskField {
    /// Row-major values of a square plane; any side (the model checks it).
    Inline(Vec<f32>),
    /// A string, for the caller to interpret.
    Text(String),
}

/// One parsed prompt: everything but the mask input is in `prompt`.
#[derive(Clone, Debug)]
pub struct PromptEntry {
    pub prompt: Prompt,
    pub mask: Option<MaskField>,
}

/// Parses a JSON list of prompt objects; `default_multimask` applies where `multimask` is
/// absent. Errors are [`Error::Prompt`] naming the prompt ("prompt 2: ..."). The prompts
/// are not yet [`Prompt::validate`]d: a mask given as text is only known once resolved.
pub fn parse_prompt_list(v: &Value, default_multimask: bool) -> Result<Vec<PromptEntry>> {
    let bad = |m: String| Error::Prompt(m);
    let list = v
        .as_array()
        .ok_or_else(|| bad("expected a JSON list of prompt objects".into()))?;
    if list.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    list.iter()
        .enumerate()
        .map(|(k, item)| parse_prompt(item, k, default_multimask))
        .collect()
}

/// One prompt object, the `k`-th of its list.
pub fn parse_prompt(item: &Value, k: usize, default_multimask: bool) -> Result<PromptEntry> {
    let bad = |m: String| Error::Prompt(format!("prompt {k}: {m}"));
    let nums = |x: &Value, what: &str| -> Result<Vec<f64>> {
        x.as_array()
            .ok_or_else(|| bad(format!("`{what}` must be a list of numbers")))?
            .iter()
            .map(|n| {
                n.as_f64()
                    .ok_or_else(|| bad(format!("`{what}` must be a list of numbers")))
            })
            .collect()
    };
    let obj = item
        .as_object()
        .ok_or_else(|| Error::Prompt(format!("prompt {k} is not an object")))?;
    if let Some(key) = obj.keys().find(|key| !PROMPT_KEYS.contains(&key.as_str())) {
        return Err(bad(format!("unknown key `{key}`")));
    }
    let mut p = Prompt {
        multimask: default_multimask,
        ..Default::default()
    };
    if let Some(pts) = obj.get("points").filter(|x| !x.is_null()) {
        let pts = pts
            .as_array()
            .ok_or_else(|| bad("`points` must be a list of [x, y]".into()))?;
        if pts.len() > MAX_POINTS_PER_PROMPT {
            return Err(bad(format!(
                "{} points; at most {MAX_POINTS_PER_PROMPT} points per prompt",
                pts.len()
            )));
        }
        for pt in pts {
            let xy = nums(pt, "points")?;
            if xy.len() != 2 {
                return Err(bad("each point must be [x, y]".into()));
            }
            p.points.push([xy[0], xy[1]]);
        }
    }
    match obj.get("labels").filter(|x| !x.is_null()) {
        Some(l) => {
            for x in nums(l, "labels")? {
                if x.fract() != 0.0 {
                    return Err(bad(format!("label {x} must be 0 or 1")));
                }
                p.labels.push(x as i32);
            }
        }
        // Labels default to foreground, as --point does.
        None => p.labels = vec![1; p.points.len()],
    }
    if let Some(b) = obj.get("box").filter(|x| !x.is_null()) {
        let b = nums(b, "box")?;
        if b.len() != 4 {
            return Err(bad("`box` must be [x0, y0, x1, y1]".into()));
        }
        p.box_xyxy = Some([b[0], b[1], b[2], b[3]]);
    }
    let mask = match obj.get("mask_input").filter(|x| !x.is_null()) {
        None => None,
        Some(Value::String(f)) => Some(MaskField::Text(f.clone())),
        Some(m @ Value::Array(_)) => Some(MaskField::Inline(
            inline_mask(m).map_err(|e| bad(format!("`mask_input` {e}")))?,
        )),
        Some(_) => {
            return Err(bad(
                "`mask_input` must be a string (for the CLI a .npy path, for the server the \
                 base64 of a .npy) or an SxS array of numbers (256x256 for the official models)"
                    .into(),
            ))
        }
    };
    if let Some(mm) = obj.get("multimask").filter(|x| !x.is_null()) {
        p.multimask = mm
            .as_bool()
            .ok_or_else(|| bad("`multimask` must be true or false".into()))?;
    }
    Ok(PromptEntry { prompt: p, mask })
}

/// An inline `mask_input`: nested JSON arrays of shape [S, S] or [1, S, S] (the official
/// `mask_input` layout), numbers only, row-major; any square side (the model checks it).
fn inline_mask(v: &Value) -> std::result::Result<Vec<f32>, String> {
    fn walk(
        v: &Value,
        depth: usize,
        shape: &mut Vec<usize>,
        out: &mut Vec<f32>,
    ) -> std::result::Result<(), String> {
        match v {
            Value::Array(items) => {
                if depth > 2 {
                    return Err("is nested deeper than [1, S, S]".into());
                }
                if shape.len() == depth {
                    shape.push(items.len());
                } else if shape[depth] != items.len() {
                    return Err("is ragged (rows of different lengths)".into());
                }
                items
                    .iter()
                    .try_for_each(|x| walk(x, depth + 1, shape, out))
            }
            Value::Number(n) => {
                if depth != shape.len() {
                    return Err("mixes numbers and arrays at one level".into());
                }
                let x = n.as_f64().ok_or("holds a number out of range")? as f32;
                if !x.is_finite() {
                    return Err("holds a value that is not finite in float32".into());
                }
                out.push(x);
                Ok(())
            }
            _ => Err("must hold numbers only".into()),
        }
    }
    let (mut shape, mut out) = (Vec::new(), Vec::new());
    walk(v, 0, &mut shape, &mut out)?;
    let square = match shape[..] {
        [a, b] | [1, a, b] => a == b && a >= 1,
        _ => false,
    };
    if !square {
        return Err(format!(
            "has shape {shape:?}, expected [S, S] or [1, S, S] with S the model's low-res \
             side (256 for the official models)"
        ));
    }
    Ok(out)
}
