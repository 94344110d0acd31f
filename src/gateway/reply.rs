//! The answers pgmoat composes itself: JSON bodies with a one-line `error`.

use axum::body::Body;
use http::{header, HeaderValue, Response, StatusCode};

pub fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let body = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": message }))
}

/// 401 with the schemes pgmoat takes.
pub fn unauthorized(message: &str) -> Response<Body> {
    let mut r = error(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"pgmoat\", Basic realm=\"pgmoat\""),
    );
    r
}

/// 403 for a rule (SPEC section 9).
pub fn blocked(rule: &str, description: &str) -> Response<Body> {
    let why = if description.is_empty() {
        "request refused".to_string()
    } else {
        description.to_string()
    };
    json(
        StatusCode::FORBIDDEN,
        serde_json::json!({
            "error": format!("pgmoat: blocked by rule \"{rule}\": {why}"),
            "rule": rule,
        }),
    )
}
