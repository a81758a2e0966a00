//! `samrt_predict` and `samrt_masks_free`: a C prompt checked and converted to a
//! [`Prompt`], and a [`samrt_core::Prediction`] handed out as a `samrt_masks`.

use crate::error::{guard, guard_void, non_null, slice, Result};
use crate::masks;
use crate::types::{samrt_masks, samrt_prompt};
use crate::{samrt_embedding, samrt_model, EMBEDDINGS, MODELS};
use samrt_core::predictor::MAX_POINTS_PER_PROMPT;
use samrt_core::{Prompt, Sam};
use std::os::raw::c_int;

/// The C prompt as a [`Prompt`] for `sam`. Only reads that the struct's contract allows
/// happen here (point count bounded first; mask input length from the model); the values
/// are checked by [`Sam::check_prompt`].
unsafe fn to_prompt(sam: &Sam, p: &samrt_prompt) -> Result<Prompt> {
    if p.n_points > MAX_POINTS_PER_PROMPT {
        return Err(format!(
            "{} points; at most {MAX_POINTS_PER_PROMPT} points per prompt",
            p.n_points
        ));
    }
    let points = slice(p.points, p.n_points, "points")?;
    let side = sam.low_res_side();
    let mask_input = if p.mask_input.is_null() {
        None
    } else {
        if let Some(got) = masks::mask_input_side(p.mask_input)? {
            if got != side {
                return Err(format!(
                    "mask_input is a {got}x{got} low-res plane, but this model's low-res masks \
                     are {side}x{side}"
                ));
            }
        }
        Some(slice(p.mask_input, side * side, "mask_input")?.to_vec())
    };
    let box_xyxy = match p.r#box.is_null() {
        true => None,
        false => {
            let b = slice(p.r#box, 4, "box")?;
            Some([b[0] as f64, b[1] as f64, b[2] as f64, b[3] as f64])
        }
    };
    Ok(Prompt {
        points: points.iter().map(|q| [q.x as f64, q.y as f64]).collect(),
        labels: points.iter().map(|q| q.label).collect(),
        box_xyxy,
        mask_input,
        multimask: p.multimask != 0,
    })
}

#[no_mangle]
pub unsafe extern "C" fn samrt_predict(
    m: *const samrt_model,
    e: *const samrt_embedding,
    p: *const samrt_prompt,
    out: *mut samrt_masks,
) -> c_int {
    guard("samrt_predict", || {
        let out = out.as_mut().ok_or("out is NULL")?;
        *out = samrt_masks::EMPTY;
        let model = MODELS.get(m, "model")?;
        let emb = EMBEDDINGS.get(e, "embedding")?;
        let sam = &model.sam;
        let (got, want) = (emb.emb.features.len(), sam.embedding_shape());
        if got != want.iter().product::<usize>() {
            return Err(format!(
                "the embedding has {got} values, but this model's embeddings are {want:?}: it \
                 was made by another model"
            ));
        }
        let prompt = to_prompt(sam, non_null(p, "prompt")?)?;
        sam.check_prompt(&prompt).map_err(|e| e.to_string())?;
        let pred = sam.predict(&emb.emb, &prompt).map_err(|e| e.to_string())?;
        // The original size came in as u32 (samrt_embed_rgb) or from a decoder capped at
        // MAX_IMAGE_SIDE, so it fits.
        let size = (pred.height as u32, pred.width as u32);
        let bytes = pred.masks.iter().map(|&b| b as u8).collect();
        *out = masks::publish(
            pred.num_masks,
            size,
            bytes,
            pred.scores,
            pred.low_res_logits,
            sam.low_res_side(),
        )?;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn samrt_masks_free(out: *mut samrt_masks) {
    guard_void("samrt_masks_free", || match out.as_mut() {
        Some(m) => masks::free(m),
        None => Ok(()),
    });
}
