//! `pgmoat login`: the OAuth 2.0 device authorization grant (RFC 8628) against the
//! organisation's IdP, ending in a libpq connection string and/or a `.pgpass` line, so
//! a person runs stock `psql` with a short-lived token and no static password.
//!
//! Hand-written over reqwest + serde rather than with the openidconnect crate: the
//! flow is three JSON calls, and that crate's dependency tree is several times ours
//! (and pulls `rsa` 0.9). Nothing here verifies the token: the gateway does, at login.
//!
//! Which token: the `id_token` when the IdP returns one (an OIDC JWT whose `aud` is
//! the client id, carrying the user's claims), else the `access_token`;
//! `--access-token` forces the latter for IdPs that issue JWT access tokens for an
//! API audience. The gateway's `identities.oidc.audience` must match that token's `aud`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use thiserror::Error;

use crate::auth::jwks::{get, url_allowed, JwksError};

#[derive(Debug, Error)]
pub enum LoginError {
    #[error("{0}")]
    Http(String),
    #[error("the identity provider: {0}")]
    Provider(String),
    #[error("the code expired before it was approved; run `pgmoat login` again")]
    Expired,
    #[error("the sign-in was denied")]
    Denied,
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl From<JwksError> for LoginError {
    fn from(e: JwksError) -> Self {
        LoginError::Http(e.to_string())
    }
}

/// What `pgmoat login` was asked for.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub issuer: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub use_access_token: bool,
    /// Claim of the token that names the Postgres user, when `user` is not given.
    pub username_claim: String,
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub user: Option<String>,
    pub pgpass: Option<PathBuf>,
}

/// How fast to poll: RFC 8628 §3.5 says add 5 s on `slow_down`; tests go faster.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    pub min_interval: Duration,
    pub slow_down_step: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            min_interval: Duration::from_secs(1),
            slow_down_step: Duration::from_secs(5),
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    device_authorization_endpoint: Option<String>,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    // Some IdPs still say `verification_url` (the draft's name).
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

#[derive(Deserialize)]
struct Tokens {
    access_token: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    error_description: Option<String>,
}

/// The outcome: the token, the user it names, and what to hand libpq.
pub struct Login {
    pub token: String,
    pub user: String,
    /// A libpq connection string; it carries the token only when no pgpass was written.
    pub conninfo: String,
}

fn http() -> Result<reqwest::Client, LoginError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| LoginError::Http(format!("cannot build an HTTP client: {e}")))
}

fn checked(url: &str) -> Result<&str, LoginError> {
    if url_allowed(url) {
        Ok(url)
    } else {
        Err(LoginError::Provider(format!(
            "endpoint {url:?} is not https (plain http only on loopback)"
        )))
    }
}

/// One line, printable, bounded: what an IdP says goes to a terminal.
fn tidy(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// Run the device flow. Instructions go to `tell` (stderr in the CLI).
pub async fn device_flow(
    req: &LoginRequest,
    pacing: Pacing,
    tell: &mut dyn Write,
) -> Result<Login, LoginError> {
    let http = http()?;
    let issuer = req.issuer.trim_end_matches('/');
    checked(issuer)?;
    let url = format!("{issuer}/.well-known/openid-configuration");
    let d: Discovery = serde_json::from_slice(&get(&http, &url).await?)
        .map_err(|e| LoginError::Provider(format!("{url}: not an OpenID configuration: {e}")))?;
    if d.issuer.trim_end_matches('/') != issuer {
        return Err(LoginError::Provider(format!(
            "{url} names issuer {:?}, not {issuer:?}",
            tidy(&d.issuer)
        )));
    }
    let device_url = d.device_authorization_endpoint.ok_or_else(|| {
        LoginError::Provider("it does not offer the device authorization flow".into())
    })?;
    let scope = if req.scopes.is_empty() {
        "openid email profile".to_string()
    } else {
        req.scopes.join(" ")
    };
    let resp = http
        .post(checked(&device_url)?)
        .form(&[("client_id", req.client_id.as_str()), ("scope", &scope)])
        .send()
        .await
        .map_err(|e| LoginError::Http(format!("{device_url}: {e}")))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| LoginError::Http(format!("{device_url}: {e}")))?;
    if !status.is_success() {
        return Err(provider_error(&body, status));
    }
    let auth: DeviceAuthorization = serde_json::from_slice(&body).map_err(|e| {
        LoginError::Provider(format!("unexpected device authorization answer: {e}"))
    })?;
    let _ = writeln!(
        tell,
        "To sign in, open {} and enter the code {}",
        tidy(&auth.verification_uri),
        tidy(&auth.user_code)
    );
    if let Some(c) = &auth.verification_uri_complete {
        let _ = writeln!(tell, "(or open {} directly)", tidy(c));
    }
    let token = poll(&http, &d.token_endpoint, req, &auth, pacing).await?;
    let user = match &req.user {
        Some(u) => u.clone(),
        None => claim(&token, &req.username_claim).ok_or_else(|| {
            LoginError::Provider(format!(
                "the token has no {:?} claim to name the user; pass --user",
                req.username_claim
            ))
        })?,
    };
    if let Some(path) = &req.pgpass {
        write_pgpass(path, &req.host, req.port, &req.dbname, &user, &token)?;
    }
    let conninfo = conninfo(req, &user, &token);
    Ok(Login {
        token,
        user,
        conninfo,
    })
}

async fn poll(
    http: &reqwest::Client,
    token_url: &str,
    req: &LoginRequest,
    auth: &DeviceAuthorization,
    pacing: Pacing,
) -> Result<String, LoginError> {
    let deadline = Instant::now() + Duration::from_secs(auth.expires_in.min(3600));
    // The provider's interval, within reason (a huge one must not overflow the clock).
    let mut interval =
        Duration::from_secs(auth.interval.unwrap_or(5).min(600)).max(pacing.min_interval);
    let url = checked(token_url)?;
    loop {
        if Instant::now() + interval > deadline {
            return Err(LoginError::Expired);
        }
        tokio::time::sleep(interval).await;
        let resp = http
            .post(url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", auth.device_code.as_str()),
                ("client_id", req.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|e| LoginError::Http(format!("{url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| LoginError::Http(format!("{url}: {e}")))?;
        if status.is_success() {
            let t: Tokens = serde_json::from_slice(&body)
                .map_err(|e| LoginError::Provider(format!("unexpected token answer: {e}")))?;
            let chosen = if req.use_access_token {
                t.access_token
            } else {
                t.id_token.or(t.access_token)
            };
            return chosen.ok_or_else(|| LoginError::Provider("no token in the answer".into()));
        }
        match serde_json::from_slice::<TokenError>(&body) {
            Ok(e) if e.error == "authorization_pending" => {}
            Ok(e) if e.error == "slow_down" => interval += pacing.slow_down_step,
            Ok(e) if e.error == "expired_token" => return Err(LoginError::Expired),
            Ok(e) if e.error == "access_denied" => return Err(LoginError::Denied),
            _ => return Err(provider_error(&body, status)),
        }
    }
}

fn provider_error(body: &[u8], status: reqwest::StatusCode) -> LoginError {
    match serde_json::from_slice::<TokenError>(body) {
        Ok(e) => LoginError::Provider(match e.error_description {
            Some(d) => format!("{}: {}", tidy(&e.error), tidy(&d)),
            None => tidy(&e.error),
        }),
        Err(_) => LoginError::Provider(format!("HTTP {status}")),
    }
}

/// A claim of a JWT, read without verification: only to name the user.
fn claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(name)?.as_str().map(str::to_owned)
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "::1")
}

/// libpq quoting: single quotes around values with spaces or quotes, `\` escapes.
fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains([' ', '\'', '\\']) {
        return v.to_owned();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn conninfo(req: &LoginRequest, user: &str, token: &str) -> String {
    // Tokens are only accepted over TLS off the local machine.
    let sslmode = if is_loopback(&req.host) {
        "prefer"
    } else {
        "require"
    };
    let mut s = format!(
        "host={} port={} dbname={} user={} sslmode={sslmode}",
        quote(&req.host),
        req.port,
        quote(&req.dbname),
        quote(user)
    );
    match &req.pgpass {
        Some(p) => s.push_str(&format!(" passfile={}", quote(&p.display().to_string()))),
        None => s.push_str(&format!(" password={}", quote(token))),
    }
    s
}

/// `.pgpass` field escaping: `:` and `\` are backslash-escaped.
fn pgpass_field(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

/// Write (or replace) the line for host:port:db:user, keeping the others; mode 0600,
/// which libpq insists on.
pub fn write_pgpass(
    path: &Path,
    host: &str,
    port: u16,
    db: &str,
    user: &str,
    token: &str,
) -> Result<(), LoginError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| LoginError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let prefix = format!(
        "{}:{port}:{}:{}:",
        pgpass_field(host),
        pgpass_field(db),
        pgpass_field(user)
    );
    let existing = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e)),
    };
    let mut text: String = existing
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{prefix}{}\n", pgpass_field(token)));
    // Write beside it and rename, so a crash never leaves half a file.
    let tmp = path.with_extension("pgmoat-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_are_escaped_and_replaced() {
        let dir = std::env::temp_dir().join(format!("pgmoat-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pgpass");
        std::fs::write(&p, "other:1:d:u:pw\n").unwrap();
        write_pgpass(&p, "h", 6432, "demo", "a:b", "t1").unwrap();
        write_pgpass(&p, "h", 6432, "demo", "a:b", "t2").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "other:1:d:u:pw\nh:6432:demo:a\\:b:t2\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn conninfo_quotes_and_picks_sslmode() {
        let req = LoginRequest {
            issuer: String::new(),
            client_id: String::new(),
            scopes: vec![],
            use_access_token: false,
            username_claim: "email".into(),
            host: "db.example.com".into(),
            port: 6432,
            dbname: "demo".into(),
            user: None,
            pgpass: None,
        };
        assert_eq!(
            conninfo(&req, "ann o'neil", "tok"),
            "host=db.example.com port=6432 dbname=demo user='ann o\\'neil' sslmode=require password=tok"
        );
        assert_eq!(
            claim("x.eyJlbWFpbCI6ImFAYi5jIn0.y", "email").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(claim("garbage", "email"), None);
    }
}
