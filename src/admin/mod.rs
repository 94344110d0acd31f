//! The admin HTTP API: health, Prometheus metrics, and behind the bearer token the
//! rules validation and explain routes (approvals and sessions arrive with their work).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::policy::reload::RulesHandle;
use crate::policy::{RuleSet, Subject};

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub rules: Arc<RulesHandle>,
    /// Bearer token for `/api/*`; routes there refuse everything without one.
    pub token: Option<Secret>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/rules/validate", post(validate))
        .route("/api/v1/explain", post(explain))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        {
            use std::sync::atomic::Ordering::Relaxed;
            let mut text = state.metrics.render();
            text.push_str(&format!(
                "# HELP pgmoat_rules_reloads_total Rule reloads, by outcome.\n# TYPE pgmoat_rules_reloads_total counter\n\
                 pgmoat_rules_reloads_total{{outcome=\"applied\"}} {}\npgmoat_rules_reloads_total{{outcome=\"refused\"}} {}\n",
                state.rules.reloads.load(Relaxed),
                state.rules.reload_failures.load(Relaxed)
            ));
            text
        },
    )
}

/// `Authorization: Bearer <token>`, compared in constant time; no token configured
/// means every `/api/*` call is refused.
fn authorized(state: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.token, given) {
        (Some(token), Some(given))
            if bool::from(token.expose().as_bytes().ct_eq(given.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "missing or wrong bearer token"})),
            )
                .into_response(),
        )),
    }
}

/// Validate a rules YAML document (for CI/CD pipelines).
async fn validate(State(state): State<AdminState>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    match RuleSet::from_sources(&[("request".to_string(), body)]) {
        Ok(_) => (StatusCode::OK, Json(serde_json::json!({"ok": true}))).into_response(),
        Err(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({"ok": false, "errors": errors})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct ExplainRequest {
    sql: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    target: String,
}

/// What the live rules would do with some SQL: the same JSON as `pgmoat explain --json`.
async fn explain(State(state): State<AdminState>, headers: HeaderMap, body: String) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let req: ExplainRequest = match serde_json::from_str(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": format!("bad request body: {e}")})),
            )
                .into_response()
        }
    };
    let rules = state.rules.current();
    let report = tokio::task::spawn_blocking(move || {
        let who = Subject {
            user: &req.user,
            groups: &req.groups,
            target: &req.target,
            search_path_changed: false,
        };
        crate::explain::explain(&rules, &req.sql, &who)
    })
    .await;
    match report {
        Ok(r) => (StatusCode::OK, Json(r)).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serve until the gateway shuts down.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "admin API listening");
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("admin API stopped: {e}");
    }
}
