//! `POST /v1/segment`: prompts in the CLI's `--prompts` schema (parsed by the library's
//! [`samrt::sam::prompt_json`], shared with `samrt segment`), masks out as COCO RLE in the
//! CLI's order and bbox convention.

use super::http::{base64_decode, base64_encode, json, parse_json, read_body, ApiError};
use super::state::App;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use samrt::amg::rle::Rle;
use samrt::sam::prompt_json::{parse_prompt_list, MaskField};
use samrt::Prediction;
use serde_json::{json, Value};
use std::sync::Arc;

/// Most prompts in one request. Each prompt's masks are held at the image's full size until
/// they are encoded, so this bounds a request's memory; send more in several requests.
pub const MAX_PROMPTS_PER_REQUEST: usize = 64;

const KEYS: [&str; 4] = ["image_id", "image", "prompts", "logits"];

pub async fn segment(app: &Arc<App>, req: Request<Body>) -> Result<Response, ApiError> {
    let _ticket = app.admit()?;
    let coming = app.batcher.coming();
    let data = read_body(req, app.limits.max_body).await?;
    let v = parse_json(&data)?;
    drop(data);
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad("expected a JSON object {\"image_id\", \"prompts\"}"))?;
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(ApiError::bad(format!(
            "unknown key `{k}`; expected {}",
            KEYS.join(", ")
        )));
    }
    let logits = match obj.get("logits") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad("`logits` must be true or false")),
    };
    let prompts = obj
        .get("prompts")
        .ok_or_else(|| ApiError::bad("`prompts` is missing: a list of prompt objects"))?;
    let entries = parse_prompt_list(prompts, true).map_err(ApiError::from_lib)?;
    if entries.len() > MAX_PROMPTS_PER_REQUEST {
        return Err(ApiError::bad(format!(
            "{} prompts; at most {MAX_PROMPTS_PER_REQUEST} per request",
            entries.len()
        )));
    }
    let side = app.sam.low_res_side();
    let mut list = Vec::with_capacity(entries.len());
    for (k, e) in entries.into_iter().enumerate() {
        let mut p = e.prompt;
        p.mask_input = match e.mask {
            None => None,
            Some(MaskField::Inline(v)) => Some(v),
            Some(MaskField::Text(s)) => {
                Some(npy_mask(&s, side).map_err(|m| prompt_error(k, samrt::Error::Prompt(m)))?)
            }
        };
        app.sam.check_prompt(&p).map_err(|e| prompt_error(k, e))?;
        list.push(p);
    }
    let given = |key: &str| obj.get(key).filter(|v| !v.is_null());
    let (id, entry) = match (given("image_id"), given("image")) {
        (Some(Value::String(id)), None) => (id.clone(), app.lookup(id)?),
        (None, Some(Value::String(b64))) => {
            let bytes = base64_decode(b64)
                .ok_or_else(|| ApiError::bad("`image` must be the base64 of an image file"))?;
            let (id, e, _) = app.embedding(bytes).await?;
            (id, e)
        }
        (Some(_), Some(_)) => return Err(ApiError::bad("give `image_id` or `image`, not both")),
        (None, None) => {
            return Err(ApiError::bad(
                "`image_id` (from POST /v1/embed) or `image` (base64 file bytes) is missing",
            ))
        }
        _ => return Err(ApiError::bad("`image_id` and `image` must be strings")),
    };
    // What depends on the image (the prompt in its input frame) is checked here too, so a
    // bad prompt is refused alone and never fails a batch it would share with others.
    for (k, p) in list.iter().enumerate() {
        app.sam
            .check_prompt_on(&entry.emb, p)
            .map_err(|e| prompt_error(k, e))?;
    }
    let preds = app.batcher.decode(coming, id.clone(), entry, list).await?;
    let body = tokio::task::spawn_blocking(move || response(&id, &preds, side, logits))
        .await
        .map_err(|e| ApiError::internal(format!("encoding masks: {e}")))??;
    Ok(json(StatusCode::OK, &body))
}

/// A refused prompt as a 400 naming it, worded as the prompt list's own errors
/// ("invalid prompt: prompt K: ...").
fn prompt_error(k: usize, e: samrt::Error) -> ApiError {
    match e {
        samrt::Error::Prompt(m) => {
            ApiError::bad(samrt::Error::Prompt(format!("prompt {k}: {m}")).to_string())
        }
        e => ApiError::bad(format!("prompt {k}: {e}")),
    }
}

/// A `mask_input` string: always the base64 of a float .npy holding one plane, `[S, S]` or
/// `[1, S, S]` with S = `side`. Never a path: the server reads no files for a client.
fn npy_mask(s: &str, side: usize) -> Result<Vec<f32>, String> {
    let not_npy = "`mask_input` as a string must be the base64 of a .npy file ([S, S] or [1, \
                   S, S] float32); the server reads no files, so a path is refused";
    let bytes = base64_decode(s).ok_or_else(|| not_npy.to_string())?;
    let arr = samrt::io::npy::parse(&bytes).map_err(|e| format!("{not_npy}: {e}"))?;
    match &arr.data {
        samrt::io::npy::NpyData::F32(_) | samrt::io::npy::NpyData::F64(_) => {}
        _ => {
            return Err(format!(
                "`mask_input` .npy has dtype {}, expected float32 (<f4) or float64 (<f8)",
                arr.descr()
            ))
        }
    }
    match arr.shape[..] {
        [a, b] | [1, a, b] if a == side && b == side => Ok(arr.to_f32()),
        _ => Err(format!(
            "`mask_input` .npy has shape {:?}, expected [{side}, {side}] or [1, {side}, \
             {side}] (this model's low-res masks)",
            arr.shape
        )),
    }
}

/// The response body: per prompt its masks (score, area, bbox, COCO RLE) in the decoder's
/// order, as `samrt segment` lists them, and with `logits` the low-res logits as .npy.
fn response(id: &str, preds: &[Prediction], side: usize, logits: bool) -> Result<Value, ApiError> {
    let lib = ApiError::from_lib;
    let mut prompts = Vec::with_capacity(preds.len());
    for p in preds {
        let mut masks = Vec::with_capacity(p.num_masks);
        for i in 0..p.num_masks {
            let s = p.stats(i).map_err(lib)?;
            let rle = Rle::from_mask(p.mask(i), p.height, p.width).map_err(lib)?;
            masks.push(json!({
                "score": p.scores[i],
                "area": s.area,
                "bbox": s.bbox,
                "rle": {"size": [p.height, p.width], "counts": rle.coco_string()},
            }));
        }
        let mut rec = json!({ "masks": masks });
        if logits {
            let npy = samrt::io::npy::f32_bytes(&[p.num_masks, side, side], &p.low_res_logits)
                .map_err(lib)?;
            rec["low_res_logits"] = Value::String(base64_encode(&npy));
        }
        prompts.push(rec);
    }
    Ok(json!({ "image_id": id, "prompts": prompts }))
}
