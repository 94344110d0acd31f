//! Who is calling: `Authorization: Bearer` (an OIDC JWT or a local user's token
//! secret) or `Basic` with a local user's password. Checking, rate limiting and the
//! `auth_failure` record are the shared credentials code's; this reads the header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use base64::Engine as _;
use http::Response;

use super::auth_cache::AuthCache;
use super::reply;
use crate::auth::failure::AuthFailure;
use crate::auth::Identity;
use crate::session::tenant::Tenant;
use crate::session::{credentials, Shared};

/// Who is calling, as a verified credential proved it: made once per verification
/// and shared by every request that presents the same credential (through the
/// cache), so a request copies none of it. `user` and `groups` are the identity's,
/// in the shared forms its records and the session list take, as is
/// `tenant_name`.
pub(crate) struct Caller {
    pub identity: Identity,
    pub tenant: Arc<Tenant>,
    pub user: Arc<str>,
    pub groups: Arc<[String]>,
    pub tenant_name: Arc<str>,
}

impl Caller {
    fn new(identity: Identity, tenant: Arc<Tenant>) -> Arc<Caller> {
        Arc::new(Caller {
            user: identity.name.as_str().into(),
            groups: identity.groups.as_slice().into(),
            tenant_name: tenant.name.as_str().into(),
            identity,
            tenant,
        })
    }
}

/// What the client presented.
#[derive(Debug, PartialEq, Eq)]
enum Credential {
    Bearer(String),
    Basic { user: String, password: String },
}

/// The credential in an `Authorization` value (the request's first such field, as
/// `HeaderMap::get` gives it); a value that is not visible text is none.
fn credential(authorization: Option<&[u8]>) -> Option<Credential> {
    let v = authorization.filter(|v| super::headers::visible(v))?;
    let v = std::str::from_utf8(v).ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Some(Credential::Bearer(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        if user.is_empty() {
            return None;
        }
        return Some(Credential::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        });
    }
    None
}

/// The caller (identity and tenant), or the 401 to send. A credential verified in
/// the last seconds is taken from `cache` (see `auth_cache`), unless its address is
/// locked out by failures since. `authorization` is the request's first
/// `Authorization` field's value: it is all this reads of the request. `now` is
/// when the request's handling began (one clock read per request, not one each).
pub async fn identify(
    shared: &Shared,
    cache: &AuthCache<Arc<Caller>>,
    peer: SocketAddr,
    tls: bool,
    authorization: Option<&[u8]>,
    now: Instant,
) -> Result<Arc<Caller>, Response<Body>> {
    let presented = authorization;
    if let Some(presented) = presented {
        // The transport rule holds for cached credentials too.
        if crate::session::authn::token_transport_ok(tls, peer) {
            if let Some(c) = cache.get(presented, now) {
                if !lapsed(&c.identity, &c.tenant) && !locked_out(shared, &c.tenant, peer) {
                    return Ok(c);
                }
            }
        }
    }
    // No credentials is no guess: HTTP clients ask first and answer the challenge
    // (browsers, curl --anyauth), so it is neither counted against the address (which
    // would lock out everyone behind one NAT, Postgres logins included) nor recorded.
    let Some(cred) = credential(authorization) else {
        return Err(reply::unauthorized(
            "pgmoat: authentication required (Authorization: Bearer or Basic)",
        ));
    };
    // Secrets cross a network only inside TLS.
    if !crate::session::authn::token_transport_ok(tls, peer) {
        let reason = AuthFailure::Insecure;
        crate::session::authn::auth_failed(shared, None, peer, "", &reason);
        return Err(reply::unauthorized(
            "pgmoat: credentials are only accepted over TLS",
        ));
    }
    let result = match &cred {
        Credential::Bearer(token) => credentials::by_bearer(shared, peer, token).await,
        Credential::Basic { user, password } => {
            credentials::by_password(shared, peer, user, password).await
        }
    };
    let result = result.map(|(id, tenant)| Caller::new(id, tenant));
    if let (Ok(c), Some(presented)) = (&result, presented) {
        cache.put(presented, c.identity.expires_at, c, now);
    }
    result.map_err(|f| match f {
        AuthFailure::RateLimited => reply::unauthorized(
            "pgmoat: too many failed authentication attempts from this address; try again later",
        ),
        _ => reply::unauthorized("pgmoat: authentication failed"),
    })
}

/// Whether a token has expired by the clock its tenant judges tokens with (the
/// cache's own bound is the system clock's).
fn lapsed(id: &Identity, tenant: &Tenant) -> bool {
    let Some(exp) = id.expires_at else {
        return false;
    };
    let now = tenant
        .oidc
        .as_ref()
        .map_or_else(std::time::SystemTime::now, |o| o.clock().now());
    now >= exp
}

/// Whether failures from this address have used up its attempts (counted on this
/// node), for the caller's tenant or for logins that named none: then the full
/// check runs and refuses as it would without the cache.
fn locked_out(shared: &Shared, tenant: &Tenant, peer: SocketAddr) -> bool {
    let ip = peer.ip();
    let unnamed = shared.tenants.charged(None).map_or("", |t| t.name.as_str());
    shared.auth_limiter.is_blocked(&tenant.name, ip) || shared.auth_limiter.is_blocked(unnamed, ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &'static str) -> Option<Credential> {
        credential(Some(v.as_bytes()))
    }

    #[test]
    fn schemes() {
        assert_eq!(of("Bearer abc"), Some(Credential::Bearer("abc".into())));
        assert_eq!(of("bearer  abc "), Some(Credential::Bearer("abc".into())));
        // "agent-1:pw:x" -> the password may hold colons.
        assert_eq!(
            of("Basic YWdlbnQtMTpwdzp4"),
            Some(Credential::Basic {
                user: "agent-1".into(),
                password: "pw:x".into()
            })
        );
        assert_eq!(of("Basic !!!"), None);
        assert_eq!(of("Digest x"), None);
        assert_eq!(of("Bearer"), None);
        assert_eq!(credential(None), None);
        // Not visible text: no credential (as `HeaderValue::to_str` refused it).
        assert_eq!(credential(Some(b"Bearer caf\xc3\xa9")), None);
    }
}
