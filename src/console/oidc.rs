//! The console's OIDC sign-in: authorization code with PKCE (S256) against the
//! tenant's `identities.oidc` issuer, as a public client whose id is the configured
//! `audience` (the ID token's `aud` is the client it was issued to, so the verifier
//! the Postgres door uses checks it unchanged).
//!
//! `state` names one pending sign-in, kept here (never in the browser) with its PKCE
//! verifier and nonce, and is bound to the browser that started it by a short-lived
//! cookie; the ID token must carry the nonce. Only members of `admin.groups` may sign
//! in, and the ID token's groups are what its approvals are checked against.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::html::{esc, layout, url_part};
use super::signin::{self, cookie, random_token, same};
use super::{html_response, ConsoleState};
use crate::admin::Scope;

/// The cookie binding a pending sign-in to the browser that started it.
const STATE_COOKIE: &str = "pgmoat_console_oidc";
/// A sign-in not finished in this long is forgotten.
const PENDING_FOR: Duration = Duration::from_secs(10 * 60);
/// At most this many unfinished sign-ins: starting many cannot grow memory forever.
const MAX_PENDING: usize = 1_000;
/// At most this many of them from one address: one client starting sign-ins in a
/// loop evicts only its own (console review M5).
const MAX_PENDING_PER_ADDRESS: usize = 16;
/// How long an identity provider's discovery document is reused: a flood of
/// sign-in starts costs the IdP one fetch, not one each (console review M5).
const DISCOVERY_FOR: Duration = Duration::from_secs(10 * 60);

struct Started {
    from: IpAddr,
    tenant: usize,
    verifier: String,
    nonce: String,
    redirect_uri: String,
    token_endpoint: String,
    at: Instant,
}

/// Sign-ins sent to the IdP and not back yet, by `state`; and the identity
/// providers' discovery documents, by issuer.
#[derive(Default)]
pub struct Pending {
    started: Mutex<HashMap<String, Started>>,
    discovered: Mutex<HashMap<String, (Instant, Discovery)>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Started>> {
        self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, state: String, s: Started) {
        let mut m = self.lock();
        m.retain(|_, v| v.at.elapsed() < PENDING_FOR);
        let oldest = |m: &HashMap<String, Started>, from: Option<IpAddr>| {
            m.iter()
                .filter(|(_, v)| from.is_none_or(|ip| v.from == ip))
                .min_by_key(|(_, v)| v.at)
                .map(|(k, _)| k.clone())
        };
        if m.values().filter(|v| v.from == s.from).count() >= MAX_PENDING_PER_ADDRESS {
            if let Some(k) = oldest(&m, Some(s.from)) {
                m.remove(&k);
            }
        }
        if m.len() >= MAX_PENDING {
            if let Some(k) = oldest(&m, None) {
                m.remove(&k);
            }
        }
        m.insert(state, s);
    }

    /// The issuer's discovery document, fetched at most once per [`DISCOVERY_FOR`].
    async fn discovery(&self, http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
        let cached = |m: &HashMap<String, (Instant, Discovery)>| {
            m.get(issuer)
                .filter(|(at, _)| at.elapsed() < DISCOVERY_FOR)
                .map(|(_, d)| d.clone())
        };
        if let Some(d) = cached(&self.discovered.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(d);
        }
        let d = discover(http, issuer).await?;
        self.discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(issuer.to_owned(), (Instant::now(), d.clone()));
        Ok(d)
    }

    /// The sign-in `state` names, once: a replayed callback finds nothing.
    fn take(&self, state: &str) -> Option<Started> {
        self.lock()
            .remove(state)
            .filter(|s| s.at.elapsed() < PENDING_FOR)
    }
}

#[derive(Deserialize, Clone)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

fn refused(status: StatusCode, why: &str) -> Response {
    tracing::warn!("console OIDC sign-in refused: {why}");
    html_response(
        status,
        layout(
            "Sign-in refused",
            "",
            None,
            &format!(
                r#"<p class="flash err" role="alert">{}</p><p><a href="/ui/signin">Back to sign-in</a></p>"#,
                esc(why)
            ),
        ),
    )
}

fn http() -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()
}

async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Discovery, String> {
    let issuer = issuer.trim_end_matches('/');
    let url = format!("{issuer}/.well-known/openid-configuration");
    let body = http
        .get(&url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("{url}: {e}"))?
        .bytes()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let d: Discovery = serde_json::from_slice(&body)
        .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
    if d.issuer.trim_end_matches('/') != issuer {
        return Err(format!("{url} names another issuer"));
    }
    for u in [&d.authorization_endpoint, &d.token_endpoint] {
        if !crate::auth::jwks::url_allowed(u) {
            return Err(format!(
                "endpoint {u:?} is not https (plain http only on loopback)"
            ));
        }
    }
    Ok(d)
}

/// Where the IdP sends the browser back. Never taken from the request alone: a
/// forged `Host` would otherwise have the IdP deliver the code to another origin.
/// From `admin.public_url` when set; else the `Host` must name the admin listener
/// itself (its address, or `localhost` for a loopback listener).
fn redirect_uri(st: &ConsoleState, headers: &HeaderMap) -> Result<String, &'static str> {
    let configured = st.admin.shared.config.admin.as_ref();
    if let Some(base) = configured.and_then(|a| a.public_url.as_deref()) {
        return Ok(format!("{base}/ui/callback"));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let Some(listen) = st.admin.listen else {
        return Err("set admin.public_url to sign in through the identity provider");
    };
    if !names_listener(host, listen, st.secure) {
        return Err("the request's Host is not this console's address; set admin.public_url to reach it under another name");
    }
    Ok(format!(
        "{}://{host}/ui/callback",
        if st.secure { "https" } else { "http" }
    ))
}

/// Whether a `Host` header value names `listen`: the same port (the scheme's default
/// when none is given) and the listener's IP, or `localhost` for a loopback one. An
/// unspecified listener (0.0.0.0) has no address of its own to compare with.
fn names_listener(host: &str, listen: SocketAddr, secure: bool) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) => (ip, rest),
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, &host[name.len()..][..port.len() + 1]),
            None => (host, ""),
        },
    };
    let port = match port.strip_prefix(':') {
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
        None if port.is_empty() => {
            if secure {
                443
            } else {
                80
            }
        }
        None => return false,
    };
    if port != listen.port() || listen.ip().is_unspecified() {
        return false;
    }
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip == listen.ip(),
        Err(_) => listen.ip().is_loopback() && name.eq_ignore_ascii_case("localhost"),
    }
}

#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    tenant: String,
}

/// Send the browser to the IdP's authorization endpoint.
pub async fn start(
    State(st): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let found = st
        .admin
        .tenants
        .iter()
        .enumerate()
        .find(|(_, t)| t.oidc.is_some() && (q.tenant.is_empty() || t.name == q.tenant));
    let Some((index, Some(tenant))) = found.map(|(i, t)| (i, t.oidc.as_ref())) else {
        return refused(StatusCode::NOT_FOUND, "OIDC sign-in is not configured.");
    };
    let Some(verifier_cfg) = tenant.oidc.as_ref() else {
        return refused(StatusCode::NOT_FOUND, "OIDC sign-in is not configured.");
    };
    let redirect = match redirect_uri(&st, &headers) {
        Ok(r) => r,
        Err(why) => {
            tracing::warn!("console OIDC sign-in refused: {why}");
            return refused(
                StatusCode::BAD_REQUEST,
                &format!("OIDC sign-in is not available at this address: {why}."),
            );
        }
    };
    let Some(client) = http() else {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, "No HTTP client.");
    };
    let d = match st
        .oidc_pending
        .discovery(&client, verifier_cfg.issuer())
        .await
    {
        Ok(d) => d,
        Err(e) => {
            return refused(
                StatusCode::BAD_GATEWAY,
                &format!("The identity provider could not be reached: {e}"),
            )
        }
    };
    let (state, nonce, verifier) = (random_token(), random_token(), random_token());
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let client_id = verifier_cfg.audience();
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{sep}response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
        d.authorization_endpoint,
        url_part(client_id),
        url_part(&redirect),
        url_part("openid profile email groups"),
    );
    st.oidc_pending.put(
        state.clone(),
        Started {
            from: peer.ip(),
            tenant: index,
            verifier,
            nonce,
            redirect_uri: redirect,
            token_endpoint: d.token_endpoint,
            at: Instant::now(),
        },
    );
    let mut r = Redirect::to(&location).into_response();
    // SameSite=Lax, not Strict: the IdP's redirect back is a cross-site navigation,
    // which a Strict cookie would not come back with. It only names a pending state.
    let mut c = format!(
        "{STATE_COOKIE}={state}; HttpOnly; SameSite=Lax; Path=/ui/callback; Max-Age={}",
        PENDING_FOR.as_secs()
    );
    if st.secure {
        c.push_str("; Secure");
    }
    if let Ok(v) = c.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Tokens {
    id_token: Option<String>,
}

/// The IdP sent the browser back: check state, exchange the code (with the PKCE
/// verifier), verify the ID token and its nonce, and sign in.
pub async fn callback(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if !q.error.is_empty() {
        return refused(
            StatusCode::UNAUTHORIZED,
            &format!(
                "The identity provider said: {}",
                q.error.chars().take(100).collect::<String>()
            ),
        );
    }
    let bound = cookie(&headers, STATE_COOKIE).unwrap_or_default();
    if q.state.is_empty() || bound.is_empty() || !same(&q.state, &bound) {
        return refused(
            StatusCode::FORBIDDEN,
            "The sign-in's state does not match this browser's.",
        );
    }
    let Some(started) = st.oidc_pending.take(&q.state) else {
        return refused(
            StatusCode::FORBIDDEN,
            "Unknown or expired sign-in; start again.",
        );
    };
    let Some(tenant) = st
        .admin
        .tenants
        .get(started.tenant)
        .and_then(|t| t.oidc.clone())
    else {
        return refused(StatusCode::NOT_FOUND, "OIDC sign-in is not configured.");
    };
    let Some(verifier) = tenant.oidc.as_ref() else {
        return refused(StatusCode::NOT_FOUND, "OIDC sign-in is not configured.");
    };
    let Some(client) = http() else {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, "No HTTP client.");
    };
    let exchanged = client
        .post(&started.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", q.code.as_str()),
            ("redirect_uri", started.redirect_uri.as_str()),
            ("client_id", verifier.audience()),
            ("code_verifier", started.verifier.as_str()),
        ])
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let tokens: Tokens = match exchanged {
        Ok(r) => match r.json().await {
            Ok(t) => t,
            Err(e) => return refused(StatusCode::BAD_GATEWAY, &format!("token response: {e}")),
        },
        Err(e) => {
            return refused(
                StatusCode::UNAUTHORIZED,
                &format!("The code was not accepted: {e}"),
            )
        }
    };
    let Some(id_token) = tokens.id_token else {
        return refused(StatusCode::BAD_GATEWAY, "The IdP sent no ID token.");
    };
    let identity = match verifier.verify_bearer(&id_token).await {
        Ok(i) => i,
        Err(e) => return refused(StatusCode::UNAUTHORIZED, &format!("ID token: {e}")),
    };
    // The signature is checked: the payload is the IdP's word.
    if nonce_of(&id_token).is_none_or(|n| !same(&n, &started.nonce)) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "The ID token's nonce is not this sign-in's.",
        );
    }
    if !identity
        .groups
        .iter()
        .any(|g| st.admin.admin_groups.contains(g))
    {
        return refused(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not use the console (not a member of admin.groups).",
                identity.name
            ),
        );
    }
    tracing::info!(who = %identity.name, "console sign-in through OIDC");
    let id = st.sign_ins.start(
        identity.name,
        Some(identity.groups),
        Scope::Tenant(started.tenant),
        "OIDC",
    );
    // A page, not a redirect: the navigation here came from the IdP's site, and the
    // next one (same-site) is what carries the new SameSite=Strict cookie.
    let mut r = html_response(
        StatusCode::OK,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/ui/approvals"><title>Signed in · pgmoat console</title></head><body><main><p>Signed in. <a href="/ui/approvals">Continue to the console</a>.</p></main></body></html>"#.to_owned(),
    );
    for c in [
        signin::set_cookie(signin::COOKIE, &id, st.secure, None),
        format!("{STATE_COOKIE}=; HttpOnly; SameSite=Lax; Path=/ui/callback; Max-Age=0"),
    ] {
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

/// The `nonce` claim of a JWT whose signature was already verified.
fn nonce_of(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("nonce")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod host_tests {
    use super::names_listener;

    #[test]
    fn only_the_listeners_own_address_is_its_host() {
        let lo = "127.0.0.1:9187".parse().unwrap();
        assert!(names_listener("127.0.0.1:9187", lo, false));
        assert!(names_listener("localhost:9187", lo, false));
        assert!(names_listener("LOCALHOST:9187", lo, false));
        for forged in [
            "evil.example",
            "evil.example:9187",
            "127.0.0.1:9188",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:9187@evil.example",
            "127.0.0.1:9187/x",
            "[::1]:9187",
            "",
        ] {
            assert!(!names_listener(forged, lo, false), "{forged}");
        }
        let v6 = "[::1]:9187".parse().unwrap();
        assert!(names_listener("[::1]:9187", v6, false));
        assert!(names_listener("localhost:9187", v6, false));
        let public = "10.1.2.3:80".parse().unwrap();
        assert!(names_listener("10.1.2.3", public, false));
        assert!(!names_listener("localhost", public, false), "not loopback");
        let any = "0.0.0.0:9187".parse().unwrap();
        assert!(!names_listener("0.0.0.0:9187", any, false));
        assert!(!names_listener("localhost:9187", any, false));
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    fn started(from: &str) -> Started {
        Started {
            from: from.parse().unwrap(),
            tenant: 0,
            verifier: String::new(),
            nonce: String::new(),
            redirect_uri: String::new(),
            token_endpoint: String::new(),
            at: Instant::now(),
        }
    }

    #[test]
    fn one_address_starting_sign_ins_in_a_loop_evicts_only_its_own() {
        let p = Pending::default();
        p.put("alice".into(), started("192.0.2.1"));
        for i in 0..5 * MAX_PENDING {
            p.put(format!("flood-{i}"), started("198.51.100.9"));
        }
        assert!(
            p.take("alice").is_some(),
            "another address's sign-in survives"
        );
        let flood = p.lock().len();
        assert_eq!(flood, MAX_PENDING_PER_ADDRESS);
        assert!(p.take(&format!("flood-{}", 5 * MAX_PENDING - 1)).is_some());
        assert!(p.take("flood-0").is_none());
    }
}
