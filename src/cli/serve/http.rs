//! The HTTP edge: JSON error bodies with their status, bounded body reading (with the
//! 413 drain), and response builders.

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::BodyExt;
use std::time::Duration;

/// What a client is told when a request fails: `{"error": msg}` with `status`.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub msg: String,
    /// Seconds for `Retry-After` (busy answers).
    pub retry_after: Option<u32>,
    /// Close the connection after answering: the rest of the body was not read.
    pub close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
            retry_after: None,
            close: false,
        }
    }
    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, msg)
    }
    pub fn internal(msg: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, msg)
    }
    /// A library error from a computation the request asked for: a bad prompt is the
    /// client's (400), an undecodable image too (415); anything else is ours (500).
    pub fn from_lib(e: samrt::Error) -> ApiError {
        match e {
            samrt::Error::Prompt(_) => ApiError::bad(e.to_string()),
            samrt::Error::Image(_) => {
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string())
            }
            _ => ApiError::internal(e.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json(self.status, &serde_json::json!({ "error": self.msg }));
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

pub fn json(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn bytes(content_type: &'static str, data: Vec<u8>) -> Response {
    let mut r = (StatusCode::OK, data).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Bytes past the limit that are still read and dropped before a 413, so that a client
/// that sends its whole body sees the answer instead of a reset connection. Beyond this the
/// server answers at once and closes, which bounds the time an oversized upload can hold.
const DRAIN_LIMIT: u64 = 64 << 20;
/// A body that stalls this long is dropped (408): a stuck upload must not hold a queue
/// place forever. Slow is fine; silent is not.
const BODY_IDLE: Duration = Duration::from_secs(30);

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(req: Request<Body>, limit: usize) -> Result<Vec<u8>, ApiError> {
    let limit = limit as u64;
    let too_large = |close: bool| ApiError {
        close,
        ..ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes (--max-body-mb)"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A client waiting for `100 Continue` has sent no body yet: refuse at once, without
    // asking it to upload what would be dropped.
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if declared.is_some_and(|n| n > limit + DRAIN_LIMIT || (n > limit && expects_continue)) {
        return Err(too_large(true));
    }
    let mut body = req.into_body();
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    let mut total = 0u64;
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE, body.frame()).await {
            Err(_) => {
                return Err(ApiError {
                    close: true,
                    ..ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!("no body bytes for {} s", BODY_IDLE.as_secs()),
                    )
                })
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(ApiError {
                    close: true,
                    ..ApiError::bad(format!("reading the request body: {e}"))
                })
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit + DRAIN_LIMIT {
            return Err(too_large(true));
        }
        if total <= limit {
            buf.extend_from_slice(&data);
        }
    }
    if total > limit {
        return Err(too_large(false));
    }
    Ok(buf)
}

/// Standard base64 with or without padding (and the URL-safe alphabet), as clients write it:
/// line-wrapped (`base64` without `-w0`, MIME) or as a `data:...;base64,` URL (a browser's
/// `FileReader.readAsDataURL`).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut s = s.trim();
    if let Some(rest) = s.strip_prefix("data:") {
        s = rest.split_once(";base64,")?.1;
    }
    let joined: String;
    if s.bytes().any(|b| b.is_ascii_whitespace()) {
        joined = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        s = &joined;
    }
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// The request body as JSON (400 when it is not).
pub fn parse_json(data: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(data)
        .map_err(|e| ApiError::bad(format!("the body is not valid JSON: {e}")))
}

/// A query string's `key=value` pairs, percent-decoded as `curl --data-urlencode -G` and
/// `encodeURIComponent` write them; a `+` stays a plus (no option takes a space, and
/// `1e+0` or `+0.5` are numbers). A bad escape or a non-UTF-8 result is a 400.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |t: &str| -> Result<String, ApiError> {
        let b = t.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            ApiError::bad(format!("the query has a bad %-escape in `{t}`"))
                        })?;
                    out.push(hex);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out)
            .map_err(|_| ApiError::bad(format!("the query's `{t}` is not UTF-8 once decoded")))
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}
