//! `Authorization: Bearer <token>` on every request to `/mcp`: an OIDC JWT checked as
//! the wire checks it, or a local user's `token_env` secret (both through
//! [`crate::session::credentials::by_bearer`], which also rate-limits and audits
//! failures). Anything else is HTTP 401 with `WWW-Authenticate: Bearer`, before the
//! MCP layer sees the request. A request naming an MCP session must come from the
//! identity (and tenant) that opened it (see [`super::owners`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::owners::{not_found, SESSION_HEADER};
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

/// HTTP 503 for a new MCP session past the tenant's limit.
fn too_many(max: usize) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({
            "error": format!(
                "pgmoat: this tenant has {max} MCP sessions open (limits.max_connections); close one first"
            )
        })),
    )
        .into_response()
}

pub async fn require_bearer(
    State(door): State<Arc<Door>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    // The endpoint has no TLS of its own: as on the wire, a token crosses only the
    // local machine (a TLS-terminating proxy on this host forwards from loopback).
    if !crate::session::authn::token_transport_ok(false, peer) {
        tracing::warn!(%peer, "mcp: refused a request from another machine over plain HTTP");
        return unauthorized(
            "Bearer realm=\"pgmoat\"",
            "pgmoat: bearer tokens are accepted only from this machine; put a TLS proxy in front",
        );
    }
    let Some(token) = bearer(&req).map(str::to_owned) else {
        return unauthorized(
            "Bearer realm=\"pgmoat\"",
            "pgmoat: an Authorization: Bearer token is required",
        );
    };
    match crate::session::credentials::by_bearer(&door.shared, peer, &token).await {
        Ok((identity, tenant)) => {
            let owner = (identity.name.clone(), tenant.name.clone());
            let named = req
                .headers()
                .get(SESSION_HEADER)
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            if let Some(id) = &named {
                if !door.owners.belongs_to(id, &owner) {
                    tracing::info!(%peer, identity = %owner.0, "mcp: a request named a session that is not the caller's");
                    return not_found();
                }
            }
            // A tenant's `limits.max_connections` bounds its MCP sessions too, so that
            // one tenant's agents cannot take every one of `mcp.max_sessions` (review
            // L1). (Each session's database sessions take the tenant's seats besides.)
            if let (None, Some(max)) = (&named, tenant.limits.max_connections) {
                if door.owners.open_in(&tenant.name).await >= max {
                    tracing::warn!(%peer, tenant = %tenant.name, "mcp: the tenant's MCP sessions are all taken; refusing a new one");
                    return too_many(max);
                }
            }
            let closing = req.method() == Method::DELETE;
            req.extensions_mut().insert(Caller {
                identity,
                tenant,
                peer,
            });
            let response = next.run(req).await;
            match named {
                // A new session (the initialize answer names it): it is the caller's.
                None => {
                    if let Some(id) = response
                        .headers()
                        .get(SESSION_HEADER)
                        .and_then(|v| v.to_str().ok())
                    {
                        door.owners.claim(id.to_owned(), owner).await;
                    }
                }
                Some(id) if closing && response.status().is_success() => door.owners.forget(&id),
                Some(_) => {}
            }
            response
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
