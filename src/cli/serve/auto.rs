//! `POST /v1/auto?points_per_side=…`: `samrt auto` on the posted image, answering the JSON
//! records `samrt auto` writes for it in an RLE mode (COCO RLE unless `output_mode` says
//! `uncompressed_rle`). The options are `samrt auto`'s AMG options in snake_case.

use super::http::{json, query_pairs, read_body, ApiError};
use super::state::App;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use samrt::amg::generator::AmgConfig;
use samrt::amg::output::record_json;
use serde_json::Value;
use std::sync::Arc;

/// Options that `samrt auto` takes but that belong to the server's start (the model, the
/// device, the input size) or to files (dataset jobs): refused with a pointer.
const SERVER_WIDE: [&str; 9] = [
    "model",
    "checkpoint",
    "model_type",
    "device",
    "image_size",
    "image",
    "out",
    "shard",
    "force",
];

/// The AMG configuration and whether masks are COCO RLE, from the query string.
fn options(query: &str) -> Result<(AmgConfig, bool), ApiError> {
    let mut c = AmgConfig::default();
    let mut coco = true;
    for (k, v) in query_pairs(query)? {
        let (k, v) = (k.as_str(), v.as_str());
        let int = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| ApiError::bad(format!("`{k}={v}`: expected a whole number")))
        };
        let num = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| ApiError::bad(format!("`{k}={v}`: expected a finite number")))
        };
        match k {
            "points_per_side" => c.points_per_side = int(v)?,
            "points_per_batch" => c.points_per_batch = int(v)?,
            "pred_iou_thresh" => c.pred_iou_thresh = num(v)?,
            "stability_score_thresh" => c.stability_score_thresh = num(v)?,
            "stability_score_offset" => c.stability_score_offset = num(v)?,
            "box_nms_thresh" => c.box_nms_thresh = num(v)?,
            "crop_n_layers" => c.crop_n_layers = int(v)?,
            "crop_nms_thresh" => c.crop_nms_thresh = num(v)?,
            "crop_overlap_ratio" => c.crop_overlap_ratio = num(v)?,
            "crop_n_points_downscale_factor" => c.crop_n_points_downscale_factor = int(v)?,
            "min_mask_region_area" => c.min_mask_region_area = int(v)?,
            "output_mode" => match v {
                "coco_rle" => coco = true,
                "uncompressed_rle" => coco = false,
                _ => {
                    return Err(ApiError::bad(format!(
                        "`output_mode={v}`: the server answers coco_rle or uncompressed_rle \
                         (binary_mask writes PNG files)"
                    )))
                }
            },
            "convert_to_rle" => match v {
                "" | "true" | "1" => coco = true,
                _ => {
                    return Err(ApiError::bad(format!(
                        "`convert_to_rle={v}`: expected true"
                    )))
                }
            },
            k if SERVER_WIDE.contains(&k) => {
                return Err(ApiError::bad(format!(
                    "`{k}` is set when the server starts (samrt serve) or concerns files; it \
                     cannot change per request"
                )))
            }
            _ => return Err(ApiError::bad(format!("unknown option `{k}`"))),
        }
    }
    c.validate().map_err(|e| match e {
        // AmgConfig's own wording, without the "model configuration" prefix: these are
        // the request's options.
        samrt::Error::Config(m) => ApiError::bad(format!("invalid option: {m}")),
        e => ApiError::bad(e.to_string()),
    })?;
    Ok((c, coco))
}

pub async fn auto(app: &Arc<App>, req: Request<Body>) -> Result<Response, ApiError> {
    let _ticket = app.admit()?;
    let query = req.uri().query().unwrap_or("").to_string();
    let data = read_body(req, app.limits.max_body).await?;
    let (cfg, coco) = options(&query)?;
    let _permit = app
        .heavy
        .acquire()
        .await
        .map_err(|_| ApiError::internal("the server is shutting down"))?;
    let sam = app.sam.clone();
    let records = tokio::task::spawn_blocking(move || {
        let img = samrt::io::image::decode_image(&data, "the posted image")
            .map_err(ApiError::from_lib)?;
        drop(data);
        // On the model's device decoder when it has one, as `samrt auto --device cuda`.
        let recs = samrt::amg::AutoGenerator::on_model(&sam).generate(&img, &cfg, &mut |_| {});
        super::state::release_freed_memory();
        let recs = recs.map_err(ApiError::from_lib)?;
        Ok::<Vec<Value>, ApiError>(recs.iter().map(|r| record_json(r, coco)).collect())
    })
    .await
    .map_err(|e| ApiError::internal(format!("automatic mask generation failed: {e}")))??;
    Ok(json(StatusCode::OK, &Value::Array(records)))
}
