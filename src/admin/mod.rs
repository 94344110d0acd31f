//! The admin HTTP API: health, Prometheus metrics, and behind the bearer token the
//! rules validation and explain routes (approvals and sessions arrive with their work).

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::approval::notify::Notifier;
use crate::approval::{slack, Approvals, ResolveError};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::policy::reload::RulesHandle;
use crate::policy::{RuleSet, Subject};

#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// The global bearer token for `/api/*`: sees every tenant. Without it and
    /// without tenant tokens, every `/api/*` call is refused.
    pub token: Option<Secret>,
    /// One entry (unnamed, no token of its own) without `tenants:`.
    pub tenants: Vec<AdminTenant>,
    /// Live sessions of every front door and tenant.
    pub sessions: Arc<crate::session::registry::Registry>,
    /// `admin.groups`: who may sign in to the web console through OIDC (as to the
    /// SQL console); empty: nobody.
    pub admin_groups: Vec<String>,
    /// The gateway's shared state: the console's sign-in form uses its
    /// authentication-failure limiter and audit stores.
    pub shared: Arc<crate::session::Shared>,
    /// The address the listener is bound to (set by [`serve`]): the console's OIDC
    /// redirect is only built from a `Host` naming it.
    pub listen: Option<std::net::SocketAddr>,
}

/// What the API may reach of one tenant.
#[derive(Clone)]
pub struct AdminTenant {
    pub name: String,
    /// This tenant's token: sees and decides this tenant's approvals only.
    pub token: Option<Secret>,
    pub rules: Arc<RulesHandle>,
    pub approvals: Option<Arc<Approvals>>,
    pub slack: Option<SlackCallback>,
    /// This tenant's audit store, for the console's audit page.
    pub audit: Option<AuditAccess>,
    /// The tenant itself when it has `identities.oidc`: its verifier checks the ID
    /// tokens of the console's OIDC sign-in.
    pub oidc: Option<Arc<crate::session::tenant::Tenant>>,
}

/// Where a tenant's audit store is and the key its chain is checked with.
#[derive(Clone)]
pub struct AuditAccess {
    pub dir: std::path::PathBuf,
    pub hmac_key: Option<Secret>,
}

/// Whose token a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Tenant(usize),
}

impl AdminState {
    /// The tenants a scope may see.
    pub(crate) fn visible(&self, scope: Scope) -> impl Iterator<Item = &AdminTenant> {
        self.tenants
            .iter()
            .enumerate()
            .filter(move |(i, _)| scope == Scope::Global || scope == Scope::Tenant(*i))
            .map(|(_, t)| t)
    }
}

/// What the Slack callback needs: the signing secret and who is who.
#[derive(Clone)]
pub struct SlackCallback {
    pub signing_secret: Secret,
    /// Slack user id -> identity name.
    pub users: std::collections::HashMap<String, String>,
    pub notifier: Notifier,
}

pub fn router(state: AdminState) -> Router {
    let api = Router::new()
        .route("/api/v1/rules/validate", post(validate))
        .route("/api/v1/explain", post(explain))
        .route("/api/v1/approvals", get(list_approvals))
        .route("/api/v1/approvals/grants", get(list_grants))
        .route("/api/v1/approvals/{id}/{decision}", post(decide))
        .route("/api/v1/sessions", get(list_sessions))
        .route("/api/v1/sessions/{id}/terminate", post(terminate_session))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard_api,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(api)
        .route("/slack/interactions", post(slack_interaction))
        .merge(crate::console::router(state.clone()))
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
            // Summed over tenants: metrics carry no tenant's name.
            let (applied, refused) = state.tenants.iter().fold((0, 0), |(a, r), t| {
                (
                    a + t.rules.reloads.load(Relaxed),
                    r + t.rules.reload_failures.load(Relaxed),
                )
            });
            text.push_str(&format!(
                "# HELP pgmoat_rules_reloads_total Rule reloads, by outcome.\n# TYPE pgmoat_rules_reloads_total counter\n\
                 pgmoat_rules_reloads_total{{outcome=\"applied\"}} {applied}\npgmoat_rules_reloads_total{{outcome=\"refused\"}} {refused}\n"
            ));
            text
        },
    )
}

/// The tenant a scope is limited to: None for the global token.
pub(crate) fn tenant_of(state: &AdminState, scope: Scope) -> Option<&str> {
    match scope {
        Scope::Global => None,
        Scope::Tenant(i) => Some(state.tenants[i].name.as_str()),
    }
}

async fn list_sessions(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    Json(state.sessions.list(tenant_of(&state, scope))).into_response()
}

/// End a live session, as `pg_terminate_backend` would: its client hears 57P01.
async fn terminate_session(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if state.sessions.terminate(&id, tenant_of(&state, scope)) {
        tracing::info!(session = %id, "session terminated through the admin API");
        Json(serde_json::json!({"ok": true, "id": id})).into_response()
    } else {
        error(StatusCode::NOT_FOUND, format!("no live session {id}"))
    }
}

/// Every `/api/*` call: an address that has used up its failures is refused (429)
/// before its token is looked at, and a wrong token is counted and audited, in the
/// admin listener's own bucket (see `console::guard`). The handlers then find the
/// caller's scope with [`authorized`].
async fn guard_api(
    State(state): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::console::guard;
    let shared = &state.shared;
    if guard::blocked(shared, peer).await {
        guard::failed(
            shared,
            guard::Door::Api,
            peer,
            "",
            "too many failed calls from this address",
            false,
        );
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed calls from this address; try again later",
        );
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if scope_of_token(&state, given).is_none() {
        let why = if given.is_some() {
            "wrong bearer token"
        } else {
            "no bearer token"
        };
        // Asking without a token is not a guess: not counted (as on the other doors).
        guard::failed(shared, guard::Door::Api, peer, "", why, given.is_some());
    } else {
        guard::succeeded(shared, peer);
    }
    next.run(req).await
}

/// `Authorization: Bearer <token>`, compared in constant time against the global
/// token and every tenant's; no token configured means every `/api/*` call is refused.
fn authorized(state: &AdminState, headers: &HeaderMap) -> Result<Scope, Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match scope_of_token(state, given) {
        Some(s) => Ok(s),
        None => Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error": "missing or wrong bearer token"})),
            )
                .into_response(),
        )),
    }
}

/// Whose token `given` is (the API's bearer and the console's sign-in form alike).
pub(crate) fn scope_of_token(state: &AdminState, given: Option<&str>) -> Option<Scope> {
    let matches = |t: &Option<Secret>| match (t, given) {
        (Some(token), Some(given)) => bool::from(token.expose().as_bytes().ct_eq(given.as_bytes())),
        _ => false,
    };
    // Every token is compared, so the time taken does not say which one matched.
    let mut scope = None;
    if matches(&state.token) {
        scope = Some(Scope::Global);
    }
    for (i, t) in state.tenants.iter().enumerate() {
        if matches(&t.token) && scope.is_none() {
            scope = Some(Scope::Tenant(i));
        }
    }
    scope
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
    /// Whose rules (with `tenants:` and the global token; a tenant's token means its own).
    #[serde(default)]
    tenant: Option<String>,
}

/// What the live rules would do with some SQL: the same JSON as `pgmoat explain --json`.
async fn explain(State(state): State<AdminState>, headers: HeaderMap, body: String) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
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
    let mut visible = state.visible(scope);
    let tenant = match &req.tenant {
        Some(name) => visible.find(|t| &t.name == name),
        None => {
            let first = visible.next();
            if visible.next().is_some() {
                return error(
                    StatusCode::BAD_REQUEST,
                    "name the tenant whose rules to explain with (\"tenant\")",
                );
            }
            first
        }
    };
    // Another tenant's name gets the same answer as a name nobody has.
    let Some(tenant) = tenant else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no tenant {:?}", req.tenant.as_deref().unwrap_or("")),
        );
    };
    let rules = tenant.rules.current();
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

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

/// The approvals a scope may see; an error when no tenant in it has `approvals:`.
pub(crate) fn approvals_in(
    state: &AdminState,
    scope: Scope,
) -> Result<Vec<Arc<Approvals>>, Box<Response>> {
    let found: Vec<_> = state
        .visible(scope)
        .filter_map(|t| t.approvals.clone())
        .collect();
    if found.is_empty() {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "approvals are not configured (no `approvals:` section)",
        )));
    }
    Ok(found)
}

async fn list_approvals(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let all = match approvals_in(&state, scope) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let mut out = Vec::new();
    for a in all {
        match a.list().await {
            Ok(list) => out.extend(list.iter().map(|r| (**r).clone())),
            Err(e) => return error(resolve_status(&e), e.to_string()),
        }
    }
    out.sort_by_key(|r| r.requested_at);
    Json(out).into_response()
}

async fn list_grants(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match approvals_in(&state, scope) {
        Ok(all) => Json(all.iter().flat_map(|a| a.grants()).collect::<Vec<_>>()).into_response(),
        Err(r) => *r,
    }
}

/// What `POST /api/v1/approvals/{id}/approve|deny` asks for, checked.
#[derive(Debug)]
pub struct Decision {
    pub by: String,
    pub reason: String,
    pub grant: Option<std::time::Duration>,
}

/// The decision a request body asks for, or the one-line reason it is a bad request.
/// Pure, so the fuzzer can give it any bytes (`fuzz/fuzz_targets/admin_inputs.rs`).
pub fn parse_decision(body: &[u8], approve: bool) -> Result<Decision, String> {
    let b: DecisionBody =
        serde_json::from_slice(body).map_err(|e| format!("bad request body: {e}"))?;
    let grant = match (&b.grant_for, approve) {
        (None, _) => None,
        (Some(_), false) => return Err("`for` only applies to approve".into()),
        (Some(d), true) => Some(crate::config::parse_duration(d).map_err(|e| format!("for: {e}"))?),
    };
    Ok(Decision {
        by: b.by,
        reason: b.reason,
        grant,
    })
}

#[derive(Deserialize)]
struct DecisionBody {
    by: String,
    #[serde(default)]
    reason: String,
    /// A grant for the same statement shape, e.g. `30m` (approve only).
    #[serde(default, rename = "for")]
    grant_for: Option<String>,
}

fn resolve_status(e: &ResolveError) -> StatusCode {
    match e {
        ResolveError::NotFound(_) => StatusCode::NOT_FOUND,
        ResolveError::SelfApproval(_) | ResolveError::NotAnApprover { .. } => StatusCode::FORBIDDEN,
        ResolveError::Unavailable(_) | ResolveError::TooMany(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn decide(
    State(state): State<AdminState>,
    Path((id, decision)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let scope = match authorized(&state, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let all = match approvals_in(&state, scope) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return error(StatusCode::NOT_FOUND, "use .../approve or .../deny"),
    };
    let b = match parse_decision(body.as_bytes(), approve) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match decide_in(&all, &id, &b.by, None, approve, &b.reason, b.grant).await {
        Ok(r) => Json(serde_json::json!({
            "ok": true,
            "id": r.id,
            "decision": if approve { "approved" } else { "denied" },
            "by": b.by,
        }))
        .into_response(),
        Err(e) => error(resolve_status(&e), e.to_string()),
    }
}

/// Decide in whichever of `all` holds the request: one the scope cannot see is, to the
/// caller, one that does not exist.
pub(crate) async fn decide_in(
    all: &[Arc<Approvals>],
    id: &str,
    by: &str,
    groups: Option<&[String]>,
    approve: bool,
    reason: &str,
    grant: Option<std::time::Duration>,
) -> Result<Arc<crate::approval::Request>, ResolveError> {
    for a in all {
        match a.decide_as(id, by, groups, approve, reason, grant).await {
            Err(ResolveError::NotFound(_)) => continue,
            other => return other,
        }
    }
    Err(ResolveError::NotFound(id.to_owned()))
}

fn ephemeral(text: &str) -> Response {
    Json(serde_json::json!({
        "response_type": "ephemeral",
        "replace_original": false,
        "text": text,
    }))
    .into_response()
}

/// Slack's interactive-button callback (form-encoded `payload=`), signed with the
/// app's signing secret.
async fn slack_interaction(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let with_slack: Vec<_> = state
        .tenants
        .iter()
        .filter_map(|t| Some((t.slack.as_ref()?, t.approvals.as_ref()?)))
        .collect();
    if with_slack.is_empty() {
        return error(StatusCode::NOT_FOUND, "Slack approvals are not configured");
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Each tenant has its own Slack app: the secret that signed the call names the
    // tenant, and only that tenant's requests and approvers are reachable from it.
    let signed_by = with_slack.into_iter().find(|(cb, _)| {
        slack::verify(
            cb.signing_secret.expose().as_bytes(),
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            &body,
            now,
        )
    });
    let Some((cb, a)) = signed_by else {
        tracing::warn!("Slack callback with a bad or stale signature refused");
        return error(StatusCode::UNAUTHORIZED, "bad or stale Slack signature");
    };
    let i = match slack::parse_interaction(&body) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(who) = cb.users.get(&i.slack_user) else {
        tracing::warn!(slack_user = %i.slack_user, "Slack user not mapped to an identity");
        return ephemeral("pgmoat: your Slack user is not one of the configured approvers.");
    };
    match a
        .decide(&i.request_id, who, i.approve, "via Slack", None)
        .await
    {
        Ok(r) => {
            if let Some(url) = i.response_url {
                let outcome = if i.approve {
                    format!("approved by {who}")
                } else {
                    format!("denied by {who}")
                };
                cb.notifier
                    .update_slack(url, slack::resolved_message(&r, &outcome));
            }
            StatusCode::OK.into_response()
        }
        Err(e) => ephemeral(&format!("pgmoat: {e}")),
    }
}

/// Serve until the gateway shuts down.
pub async fn serve(
    listener: TcpListener,
    mut state: AdminState,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    state.listen = addr;
    tracing::info!(?addr, "admin API listening");
    // With the client's address: the console's sign-in is rate-limited per address.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("admin API stopped: {e}");
    }
}

#[cfg(test)]
mod decision_tests {
    use super::parse_decision;
    use rand::{Rng, SeedableRng};

    #[test]
    fn durations_in_bodies_are_range_checked() {
        let ok = parse_decision(br#"{"by":"alice","for":"30m"}"#, true).unwrap();
        assert_eq!(ok.grant, Some(std::time::Duration::from_secs(1800)));
        for bad in [
            r#"{"by":"alice","for":"5000000000000000h"}"#,
            r#"{"by":"alice","for":"18446744073709551616ms"}"#,
            r#"{"by":"alice","for":12}"#,
            r#"{"by":"alice","for":"30m"}x"#,
            r#"{"by":1}"#,
            "",
        ] {
            let e = parse_decision(bad.as_bytes(), true).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert!(parse_decision(br#"{"by":"a","for":"1m"}"#, false).is_err());
    }

    /// A cheap stand-in for the fuzzer in every test run: random bodies built from the
    /// pieces that broke before (huge numbers, units, JSON punctuation).
    #[test]
    fn random_bodies_never_panic() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let pieces = [
            "{",
            "}",
            "\"",
            ":",
            ",",
            "by",
            "for",
            "reason",
            "9",
            "99999999999999999999",
            "h",
            "ms",
            "s",
            "m",
            "-",
            ".",
            "\\u0000",
            " ",
            "null",
            "[",
            "]",
        ];
        for _ in 0..20_000 {
            let n = rng.gen_range(0..24);
            let body: String = (0..n)
                .map(|_| pieces[rng.gen_range(0..pieces.len())])
                .collect();
            let _ = parse_decision(body.as_bytes(), rng.gen());
            let dur: String = (0..rng.gen_range(0..6))
                .map(|_| pieces[rng.gen_range(8..14)])
                .collect();
            if let Ok(d) = crate::config::parse_duration(&dur) {
                let _ = std::time::Instant::now() + d;
            }
        }
    }
}
