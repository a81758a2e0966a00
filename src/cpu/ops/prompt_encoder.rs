//! The CPU side of the prompt encoder kernel family (`kernels/prompt_encoder.cu`): what
//! both the CPU prompt encoder and the GPU token builder accept as a sparse prompt.

use crate::error::{Error, Result};

/// What the official prompt encoder accepts as sparse input: one label per point, labels
/// in {-1, 0, 1}, finite coordinates. Shared by the CPU encoder and the GPU token builder.
pub fn check_sparse(points: &[[f32; 2]], labels: &[i32], box_xyxy: Option<[f32; 4]>) -> Result<()> {
    if points.len() != labels.len() {
        return Err(Error::Prompt(format!(
            "{} points but {} labels",
            points.len(),
            labels.len()
        )));
    }
    if let Some(l) = labels.iter().find(|l| !(-1..=1).contains(*l)) {
        return Err(Error::Prompt(format!("point label {l} is not -1, 0 or 1")));
    }
    if points
        .iter()
        .flatten()
        .chain(box_xyxy.iter().flatten())
        .any(|v| !v.is_finite())
    {
        return Err(Error::Prompt(
            "point or box coordinate is not finite".into(),
        ));
    }
    Ok(())
}

/// Token kinds, as the GPU kernel's table rows: not-a-point (label -1, and the official pad
/// point), negative point, positive point, box corner 0, box corner 1.
pub const KIND_NOT_A_POINT: i32 = 0;
pub const KIND_BOX_CORNER0: i32 = 3;
pub const KIND_BOX_CORNER1: i32 = 4;

/// One prompt's sparse tokens in the official order, as the GPU token builder takes them:
/// points, the pad point when there is no box, then the two box corners; coordinates in
/// the input frame, with their kinds.
pub fn sparse_tokens(
    points: &[[f32; 2]],
    labels: &[i32],
    box_xyxy: Option<[f32; 4]>,
) -> Result<Vec<([f32; 2], i32)>> {
    check_sparse(points, labels, box_xyxy)?;
    let mut t = Vec::with_capacity(points.len() + 2);
    for (p, &l) in points.iter().zip(labels) {
        t.push((*p, l + 1));
    }
    match box_xyxy {
        None if !points.is_empty() => t.push(([0.0, 0.0], KIND_NOT_A_POINT)),
        None => {}
        Some(b) => {
            t.push(([b[0], b[1]], KIND_BOX_CORNER0));
            t.push(([b[2], b[3]], KIND_BOX_CORNER1));
        }
    }
    Ok(t)
}

/// Length of `PromptEncoder::mask_downscaling_packed` for `dim` output channels and the
/// 16 mask_in_chans of every SAM (the GPU kernel's fixed channel counts).
pub fn mask_packed_len(dim: usize) -> usize {
    let (c1, c2) = (4, 16);
    c1 * 4 + 3 * c1 + c2 * c1 * 4 + 3 * c2 + dim * c2 + dim
}
