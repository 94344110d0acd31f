//! The operator console at `/ui/` on the admin listener (SPEC section 12): approvals,
//! sessions, audit and rules as server-rendered pages, with a little JavaScript for
//! live updates. Every page calls the functions the JSON API calls (`crate::admin`),
//! so the console and the API cannot disagree on who may see or decide what.
//!
//! Sign-in is with an admin token (a tenant's token sees only its tenant) or through
//! OIDC; either way the browser holds only a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, and every POST carries the sign-in's CSRF token.

mod approvals;
mod audit_page;
pub(crate) mod guard;
mod html;
mod oidc;
mod rules_page;
mod sessions_page;
mod signin;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};

use crate::admin::{scope_of_token, AdminState};
use html::{esc, flash, layout};
use signin::{SignIn, SignIns};

/// What every console handler reaches.
#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    pub sign_ins: Arc<SignIns>,
    /// Cookies get `Secure` when browsers reach the console over HTTPS, i.e. when
    /// `admin.public_url` is an `https://` URL (the listener itself is plain HTTP,
    /// usually bound to localhost or behind a TLS-terminating proxy).
    pub secure: bool,
    /// OIDC sign-ins sent to the IdP and not back yet.
    oidc_pending: Arc<oidc::Pending>,
}

/// A form's fields; a body that is not a form reads as no fields (and so as a POST
/// without its CSRF token).
pub type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

fn field<'a>(f: &'a Fields, name: &str) -> &'a str {
    f.as_ref()
        .ok()
        .and_then(|Form(m)| m.get(name))
        .map(String::as_str)
        .unwrap_or("")
}

/// The console's routes, merged into the admin router.
pub fn router<S: Clone + Send + Sync + 'static>(admin: AdminState) -> Router<S> {
    // Console review M1: behind a TLS proxy the sign-in cookie must never be sent
    // over plain HTTP, where a network attacker could read it.
    let secure = admin
        .shared
        .config
        .admin
        .as_ref()
        .and_then(|a| a.public_url.as_deref())
        .is_some_and(|u| u.starts_with("https://"));
    let state = ConsoleState {
        admin,
        sign_ins: Arc::new(SignIns::default()),
        secure,
        oidc_pending: Arc::default(),
    };
    Router::new()
        .route("/ui", get(home))
        .route("/ui/", get(home))
        .route("/ui/assets/console.css", get(css))
        .route("/ui/assets/console.js", get(js))
        .route("/ui/signin", get(signin_page).post(signin_token))
        .route("/ui/signout", post(signout))
        .route("/ui/oidc/start", get(oidc::start))
        .route("/ui/callback", get(oidc::callback))
        .route("/ui/approvals", get(approvals::page))
        .route("/ui/approvals/rows", get(approvals::rows))
        .route("/ui/approvals/events", get(approvals::events))
        .route("/ui/approvals/{id}/{decision}", post(approvals::decide))
        .route("/ui/sessions", get(sessions_page::page))
        .route(
            "/ui/sessions/{id}/terminate",
            post(sessions_page::terminate),
        )
        .route("/ui/audit", get(audit_page::list))
        .route("/ui/audit/{session}", get(audit_page::replay))
        .route("/ui/rules", get(rules_page::page))
        .route("/ui/rules/validate", post(rules_page::validate))
        .route("/ui/rules/explain", post(rules_page::explain))
        .with_state(state)
}

impl ConsoleState {
    /// The sign-in behind a page request, or a redirect to the sign-in page.
    #[allow(clippy::result_large_err)]
    fn viewer(&self, headers: &HeaderMap) -> Result<SignIn, Response> {
        self.sign_ins
            .current(headers)
            .ok_or_else(|| Redirect::to("/ui/signin").into_response())
    }

    /// The sign-in behind a POST, with its CSRF token checked in constant time; 403
    /// without either.
    #[allow(clippy::result_large_err)]
    fn changer(&self, headers: &HeaderMap, fields: &Fields) -> Result<SignIn, Response> {
        let refused = |why: &str| {
            tracing::warn!("console POST refused: {why}");
            (StatusCode::FORBIDDEN, format!("403 Forbidden: {why}\n")).into_response()
        };
        let Some(s) = self.sign_ins.current(headers) else {
            return Err(refused("not signed in"));
        };
        let given = field(fields, "csrf");
        if given.is_empty() || !signin::same(given, &s.csrf) {
            return Err(refused("missing or wrong CSRF token"));
        }
        Ok(s)
    }
}

/// Where a POST sends the browser back to, with a one-line outcome.
fn back(path: &str, ok: Result<String, String>) -> Response {
    let (k, v) = match ok {
        Ok(m) => ("ok", m),
        Err(m) => ("err", m),
    };
    Redirect::to(&format!("{path}?{k}={}", html::url_part(&v))).into_response()
}

fn html_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Nothing but our own files; no framing (clickjacking).
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Session ids and approval ids in URLs stay on this origin.
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn home(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    match st.viewer(&headers) {
        Ok(_) => Redirect::to("/ui/approvals").into_response(),
        Err(r) => r,
    }
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/console.css"),
    )
        .into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/console.js"),
    )
        .into_response()
}

/// The sign-in form. Nobody is signed in yet, so its CSRF token is paired with a
/// short-lived cookie of its own (a login from another site cannot be forged).
async fn signin_page(
    State(st): State<ConsoleState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    signin_form(&st, q.get("err").map(String::as_str), StatusCode::OK)
}

fn signin_form(st: &ConsoleState, err: Option<&str>, status: StatusCode) -> Response {
    let pre = signin::random_token();
    let mut oidc = String::new();
    for t in st.admin.tenants.iter().filter(|t| t.oidc.is_some()) {
        let of = if t.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", esc(&t.name))
        };
        oidc.push_str(&format!(
            r#"<p><a class="button" href="/ui/oidc/start?tenant={}">Sign in with your identity provider{of}</a></p>"#,
            html::url_part(&t.name)
        ));
    }
    if !oidc.is_empty() {
        oidc.insert_str(0, r#"<p class="or">or</p>"#);
    }
    let body = format!(
        r#"{flash}<section class="card narrow" aria-labelledby="token-h">
<h2 id="token-h">With the admin token</h2>
<form method="post" action="/ui/signin">
<input type="hidden" name="csrf" value="{pre}">
<label for="token">Admin token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<label for="name">Your name <small>(approvals and denials are recorded as it)</small></label>
<input id="name" name="name" type="text" autocomplete="username" required>
<button type="submit">Sign in</button>
</form>
{oidc}
</section>"#,
        flash = flash(None, err),
        pre = esc(&pre),
    );
    let mut r = html_response(status, layout("Sign in", "", None, &body));
    if let Ok(v) = signin::set_cookie(signin::PRE_COOKIE, &pre, st.secure, Some(600)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn signin_token(
    State(st): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    fields: Fields,
) -> Response {
    let pre = signin::cookie(&headers, signin::PRE_COOKIE).unwrap_or_default();
    let given = field(&fields, "csrf");
    if pre.is_empty() || given.is_empty() || !signin::same(given, &pre) {
        return (
            StatusCode::FORBIDDEN,
            "403 Forbidden: missing or wrong CSRF token\n",
        )
            .into_response();
    }
    let name = field(&fields, "name").trim();
    let shared = &st.admin.shared;
    // Checked before the token is: a blocked address learns nothing, right or wrong.
    if guard::blocked(shared, peer).await {
        guard::failed(
            shared,
            guard::Door::Console,
            peer,
            name,
            "too many failed sign-ins from this address",
            false,
        );
        return signin_form(
            &st,
            Some("Too many failed sign-ins from this address; try again later."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let Some(scope) = scope_of_token(&st.admin, Some(field(&fields, "token"))) else {
        guard::failed(
            shared,
            guard::Door::Console,
            peer,
            name,
            "wrong admin token",
            true,
        );
        return signin_form(&st, Some("Wrong admin token."), StatusCode::UNAUTHORIZED);
    };
    guard::succeeded(shared, peer);
    if name.is_empty() || name.len() > 200 {
        return signin_form(
            &st,
            Some("Give your name (up to 200 characters)."),
            StatusCode::BAD_REQUEST,
        );
    }
    tracing::info!(who = %name, "console sign-in with the admin token");
    let id = st
        .sign_ins
        .start(name.to_owned(), None, scope, "admin token");
    signed_in(&st, &id)
}

/// Set the sign-in's cookie (and drop the sign-in form's) and go to the approvals.
fn signed_in(st: &ConsoleState, id: &str) -> Response {
    let mut r = Redirect::to("/ui/approvals").into_response();
    for c in [
        signin::set_cookie(signin::COOKIE, id, st.secure, None),
        signin::set_cookie(signin::PRE_COOKIE, "", st.secure, Some(0)),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn signout(State(st): State<ConsoleState>, headers: HeaderMap, fields: Fields) -> Response {
    if let Err(r) = st.changer(&headers, &fields) {
        return r;
    }
    st.sign_ins.end(&headers);
    let mut r = Redirect::to("/ui/signin").into_response();
    if let Ok(v) = signin::set_cookie(signin::COOKIE, "", st.secure, Some(0)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
