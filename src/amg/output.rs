//! Output files in the conventions of the official `scripts/amg.py`: a JSON list of records
//! per image for the RLE modes, or one PNG per mask plus `metadata.csv` for binary masks.

use crate::amg::record::MaskRecord;
use crate::amg::rle::Rle;
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMode {
    BinaryMask,
    UncompressedRle,
    CocoRle,
}

/// `{"size": [h, w], "counts": [...]}` (uncompressed) or with the COCO string.
pub fn segmentation_json(rle: &Rle, coco: bool) -> Value {
    if coco {
        json!({"size": [rle.h, rle.w], "counts": rle.coco_string()})
    } else {
        json!({"size": [rle.h, rle.w], "counts": rle.counts})
    }
}

/// The official record dict for the RLE output modes.
pub fn record_json(r: &MaskRecord, coco: bool) -> Value {
    json!({
        "segmentation": segmentation_json(&r.segmentation, coco),
        "area": r.area,
        "bbox": r.bbox,
        "predicted_iou": r.predicted_iou as f64,
        "point_coords": [r.point_coords],
        "stability_score": r.stability_score as f64,
        "crop_box": r.crop_box,
    })
}

/// Python's `repr(float)`: shortest round-trip digits, fixed notation for exponents in
/// [-4, 16), otherwise `d.ddde+XX`; integral values keep a trailing `.0`.
pub fn py_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{v:e}"); // e.g. "-1.2345e-5", shortest round-trip digits
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    }
}

/// `metadata.csv` exactly as `write_masks_to_folder` writes it (rows joined by "\n", no
/// trailing newline).
pub fn metadata_csv(records: &[MaskRecord]) -> String {
    let mut lines = vec!["id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h".to_string()];
    for (i, r) in records.iter().enumerate() {
        let mut f = vec![i.to_string(), r.area.to_string()];
        f.extend(r.bbox.iter().map(|v| v.to_string()));
        f.extend(r.point_coords.iter().map(|&v| py_float(v)));
        f.push(py_float(r.predicted_iou as f64));
        f.push(py_float(r.stability_score as f64));
        f.extend(r.crop_box.iter().map(|v| v.to_string()));
        lines.push(f.join(","));
    }
    lines.join("\n")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Writes one image's results at `dest` (the JSON file for RLE modes, the folder for
/// binary masks) atomically: everything goes to a temporary sibling that is renamed into
/// place last, so an interrupted run never leaves something that looks finished.
pub fn write_outputs(dest: &Path, records: &[MaskRecord], mode: OutputMode) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.is_dir() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    match mode {
        OutputMode::BinaryMask => {
            std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
            for (i, r) in records.iter().enumerate() {
                let m = r.segmentation.to_mask()?;
                let px: Vec<u8> = m.iter().map(|&b| if b { 255 } else { 0 }).collect();
                let p = tmp.join(format!("{i}.png"));
                image::GrayImage::from_raw(r.segmentation.w as u32, r.segmentation.h as u32, px)
                    .ok_or_else(|| Error::Image("mask buffer size mismatch".into()))?
                    .save(&p)
                    .map_err(|e| Error::Image(format!("writing {}: {e}", p.display())))?;
            }
            let p = tmp.join("metadata.csv");
            std::fs::write(&p, metadata_csv(records)).map_err(io(&p))?;
        }
        OutputMode::UncompressedRle | OutputMode::CocoRle => {
            let coco = mode == OutputMode::CocoRle;
            let v: Vec<Value> = records.iter().map(|r| record_json(r, coco)).collect();
            let text = serde_json::to_string(&v)
                .map_err(|e| Error::Config(format!("serialising records: {e}")))?;
            std::fs::write(&tmp, text).map_err(io(&tmp))?;
        }
    }
    std::fs::rename(&tmp, dest).map_err(io(dest))?;
    Ok(())
}
