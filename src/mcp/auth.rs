//! `Authorization: Bearer <token>` on every request to `/mcp`: an OIDC JWT checked as
//! the wire checks it, or a local user's `token_env` secret (both through
//! [`crate::session::credentials::by_bearer`], which also rate-limits and audits
//! failures). Anything else is HTTP 401 with `WWW-Authenticate: Bearer`, before the
//! MCP layer sees the request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::session::Caller;
use super::Door;

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(challenge: &'static str, message: &str) -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

pub async fn require_bearer(
    State(door): State<Arc<Door>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = bearer(&req).map(str::to_owned) else {
        return unauthorized(
            "Bearer realm=\"pgmoat\"",
            "pgmoat: an Authorization: Bearer token is required",
        );
    };
    match crate::session::credentials::by_bearer(&door.shared, peer, &token).await {
        Ok((identity, tenant)) => {
            req.extensions_mut().insert(Caller {
                identity,
                tenant,
                peer,
            });
            next.run(req).await
        }
        Err(reason) => {
            tracing::info!(%peer, "mcp: bearer token refused: {reason}");
            unauthorized(
                "Bearer realm=\"pgmoat\", error=\"invalid_token\"",
                "pgmoat: the bearer token was not accepted",
            )
        }
    }
}
