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
