//! Routing and the handlers. Every request runs in its own task, so a panic in a handler
//! becomes a 500 for that request while the server goes on; every answer is counted in the
//! metrics by route and status.

use super::http::{bytes, json, read_body, ApiError};
use super::state::App;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// The click-to-segment page: one self-contained file, served as is.
const PAGE: &str = include_str!("page.html");

/// The route a path belongs to (a metrics label), and the methods it takes.
fn route_of(path: &str) -> Option<(&'static str, &'static [Method])> {
    const GET: &[Method] = &[Method::GET];
    const POST: &[Method] = &[Method::POST];
    Some(match path {
        "/" => ("/", GET),
        "/health" => ("/health", GET),
        "/metrics" => ("/metrics", GET),
        "/v1/embed" => ("/v1/embed", POST),
        "/v1/segment" => ("/v1/segment", POST),
        "/v1/auto" => ("/v1/auto", POST),
        "/__test/panic" => ("/__test/panic", GET),
        p if p
            .strip_prefix("/v1/embed/")
            .is_some_and(|id| !id.contains('/')) =>
        {
            ("/v1/embed/{image_id}", GET)
        }
        _ => return None,
    })
}

pub async fn dispatch(State(app): State<Arc<App>>, req: Request<Body>) -> Response {
    let start = Instant::now();
    let route = route_of(req.uri().path());
    let label = route.map_or("other", |r| r.0);
    let app2 = app.clone();
    let task = tokio::spawn(async move {
        let res = match route {
            Some(("/__test/panic", _)) if !app2.test_hooks => Err(not_found_route()),
            None => Err(not_found_route()),
            Some((_, methods)) if !allows(methods, req.method()) => {
                Err(method_not_allowed(methods))
            }
            Some((name, _)) => handle(&app2, name, req).await,
        };
        res.unwrap_or_else(IntoResponse::into_response)
    });
    let resp = match task.await {
        Ok(r) => r,
        Err(e) => ApiError::internal(if e.is_panic() {
            "internal error: the handler panicked (please report this); the server goes on"
        } else {
            "internal error: the handler was cancelled"
        })
        .into_response(),
    };
    app.metrics
        .request(label, resp.status().as_u16(), start.elapsed());
    resp
}

/// HEAD is answered wherever GET is (health probes use it); hyper sends the headers only.
fn allows(methods: &[Method], m: &Method) -> bool {
    methods.contains(m) || (m == Method::HEAD && methods.contains(&Method::GET))
}

fn not_found_route() -> Response {
    ApiError::not_found("no such route; see GET / and the README's Serve section").into_response()
}

fn method_not_allowed(methods: &[Method]) -> Response {
    let mut allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) {
        allow.push("HEAD");
    }
    let allow = allow.join(", ");
    let mut r = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed here; use {allow}"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

async fn handle(app: &Arc<App>, route: &str, req: Request<Body>) -> Result<Response, Response> {
    let err = IntoResponse::into_response;
    match route {
        "/" => {
            let mut r = (StatusCode::OK, PAGE).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            Ok(r)
        }
        "/health" => Ok(json(
            StatusCode::OK,
            &json!({"status": "ok", "model": app.model_name, "device": app.device}),
        )),
        "/metrics" => {
            let mut r = (StatusCode::OK, app.metrics.render()).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        "/__test/panic" => panic!("SAMRT_SERVE_TEST_HOOKS: /__test/panic asked for a panic"),
        "/v1/embed" => embed(app, req).await.map_err(err),
        "/v1/embed/{image_id}" => embedding_npy(app, req.uri().path()).map_err(err),
        "/v1/segment" => super::segment::segment(app, req).await.map_err(err),
        "/v1/auto" => super::auto::auto(app, req).await.map_err(err),
        _ => Err(not_found_route()),
    }
}

async fn embed(app: &Arc<App>, req: Request<Body>) -> Result<Response, ApiError> {
    let _ticket = app.admit()?;
    let data = read_body(req, app.limits.max_body).await?;
    if data.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body is empty; POST the image file's bytes",
        ));
    }
    let (id, e, cached) = app.embedding(data).await?;
    let (h, w) = e.emb.original_size;
    Ok(json(
        StatusCode::OK,
        &json!({"image_id": id, "width": w, "height": h, "cached": cached}),
    ))
}

fn embedding_npy(app: &App, path: &str) -> Result<Response, ApiError> {
    let id = path.trim_start_matches("/v1/embed/");
    let e = app.lookup(id)?;
    let [c, h, w] = app.sam.embedding_shape();
    let data = samrt::io::npy::f32_bytes(&[1, c, h, w], &e.emb.features)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(bytes("application/octet-stream", data))
}
