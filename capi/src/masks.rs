//! The arrays of a `samrt_masks`, owned here until `samrt_masks_free`.
//!
//! The C struct carries only pointers and counts, which the caller can overwrite; freeing by
//! the recorded lengths instead keeps `samrt_masks_free` safe on a struct that was edited,
//! freed twice or never filled. The record of each low-res logit buffer also lets
//! `samrt_predict` check a mask input that points into one: the prompt struct has no length
//! field, so a plane of another model's side would otherwise be read past its end.

use crate::error::Result;
use crate::types::samrt_masks;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

struct Arrays {
    masks: Box<[u8]>,
    scores: Box<[f32]>,
    low_res: Box<[f32]>,
    side: usize,
}

/// Every live prediction's arrays, by the address of its low-res logits.
static LIVE: Mutex<BTreeMap<usize, Arrays>> = Mutex::new(BTreeMap::new());

/// The map, also after a poisoning panic (each change to it is one insert or remove).
fn live() -> MutexGuard<'static, BTreeMap<usize, Arrays>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// One prediction as a `samrt_masks` whose arrays stay here until [`free`].
pub fn publish(
    n_masks: usize,
    (height, width): (u32, u32),
    masks: Vec<u8>,
    scores: Vec<f32>,
    low_res: Vec<f32>,
    side: usize,
) -> Result<samrt_masks> {
    if low_res.is_empty() {
        return Err("the prediction has no low-res logits".into());
    }
    let mut a = Arrays {
        masks: masks.into_boxed_slice(),
        scores: scores.into_boxed_slice(),
        low_res: low_res.into_boxed_slice(),
        side,
    };
    let out = samrt_masks {
        n_masks,
        width,
        height,
        masks: a.masks.as_mut_ptr(),
        scores: a.scores.as_mut_ptr(),
        low_res_logits: a.low_res.as_mut_ptr(),
        low_res_side: u32::try_from(side).map_err(|_| format!("low-res side {side}"))?,
    };
    // Moving the boxes into the map leaves their heap buffers, and so the pointers, in place.
    live().insert(out.low_res_logits as usize, a);
    Ok(out)
}

/// Releases the arrays `m` points to and empties it. An empty struct is a no-op; pointers
/// that are not a live prediction's are an error, and nothing is freed.
pub fn free(m: &mut samrt_masks) -> Result<()> {
    if m.low_res_logits.is_null() && m.masks.is_null() && m.scores.is_null() {
        *m = samrt_masks::EMPTY;
        return Ok(());
    }
    let removed = live().remove(&(m.low_res_logits as usize));
    match removed {
        Some(a) if std::ptr::eq(a.masks.as_ptr(), m.masks) => {
            *m = samrt_masks::EMPTY;
            drop(a);
            Ok(())
        }
        Some(a) => {
            // Another prediction's logits with these masks: keep both alive as they were.
            live().insert(a.low_res.as_ptr() as usize, a);
            Err("its masks and low_res_logits belong to different predictions".into())
        }
        None => Err(
            "not a samrt_masks filled by samrt_predict: freed already, or its pointers were \
             changed"
                .into(),
        ),
    }
}

/// Where `ptr` lies in a live prediction's low-res logits: `Some(side of that buffer)` when
/// it is the start of one of its planes, an error when it lies inside one elsewhere, None when
/// the pointer is not ours (then nothing can be checked).
pub fn mask_input_side(ptr: *const f32) -> Result<Option<usize>> {
    let addr = ptr as usize;
    let map = live();
    let Some((&base, a)) = map.range(..=addr).next_back() else {
        return Ok(None);
    };
    let bytes = addr - base;
    if bytes >= std::mem::size_of_val(&*a.low_res) {
        return Ok(None);
    }
    let plane = a.side * a.side * std::mem::size_of::<f32>();
    if !bytes.is_multiple_of(plane) {
        let floats = samrt_core::error::count(bytes / std::mem::size_of::<f32>(), "float");
        return Err(format!(
            "mask_input points {floats} into the low_res_logits of a prediction, not at the \
             start of one of its {}x{} planes",
            a.side, a.side
        ));
    }
    Ok(Some(a.side))
}
