//! Why an authentication failed, and the per-address brake on repeated failures.
//!
//! The reason is for the log (and the audit trail); the client only ever hears a
//! generic 28P01/28000, so it cannot learn which part of a credential was wrong.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use thiserror::Error;

/// One failed authentication, by cause. Never holds the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthFailure {
    #[error("wrong SCRAM password")]
    Scram,
    /// Neither a local user nor, without `identities.oidc`, anyone pgmoat could know.
    #[error("unknown user")]
    UnknownUser,
    #[error("the token is not a well-formed JWT: {0}")]
    MalformedToken(String),
    #[error("the token's algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key with the token's kid is known")]
    UnknownKey,
    #[error("the token's key does not fit its algorithm")]
    KeyMismatch,
    #[error("bad token signature")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong token issuer")]
    Issuer,
    #[error("wrong token audience")]
    Audience,
    #[error("the token lacks a required claim: {0}")]
    MissingClaim(String),
    #[error("the token's {claim} claim ({found:?}) is not the user name")]
    UserMismatch { claim: String, found: String },
    #[error("the signing keys could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error("a token was sent over an unencrypted, non-loopback connection")]
    Insecure,
    #[error("the client did not send a password")]
    NoPassword,
    #[error("the client certificate has no usable subject CN")]
    BadCertificate,
    #[error("too many failed attempts from this address")]
    RateLimited,
    #[error("no bearer token was sent")]
    NoToken,
    #[error("the bearer token is no user's secret and not a JWT")]
    UnknownToken,
    #[error("wrong password")]
    Password,
}

impl AuthFailure {
    /// A short stable name for metrics, logs and audit records.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthFailure::Scram => "scram",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::MalformedToken(_) => "malformed_token",
            AuthFailure::Algorithm(_) => "algorithm",
            AuthFailure::UnknownKey => "unknown_kid",
            AuthFailure::KeyMismatch => "key_mismatch",
            AuthFailure::Signature => "signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::Issuer => "issuer",
            AuthFailure::Audience => "audience",
            AuthFailure::MissingClaim(_) => "missing_claim",
            AuthFailure::UserMismatch { .. } => "user_mismatch",
            AuthFailure::KeysUnavailable(_) => "keys_unavailable",
            AuthFailure::Insecure => "insecure_transport",
            AuthFailure::NoPassword => "no_password",
            AuthFailure::BadCertificate => "bad_certificate",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::NoToken => "no_token",
            AuthFailure::UnknownToken => "unknown_token",
            AuthFailure::Password => "password",
        }
    }
}

/// Counts failures per client IP in a fixed window. Bounded: when the map is full,
/// entries whose window has passed are dropped, and if none has, the oldest goes, so a
/// flood of addresses costs memory once, not without end.
pub struct Limiter {
    max: u32,
    window: Duration,
    entries: Mutex<HashMap<(String, IpAddr), (Instant, u32)>>,
    /// With `cluster:`, failures are also counted in the state database, so an
    /// address cannot spread its guesses over the replicas.
    shared: OnceLock<Arc<crate::cluster::Shared>>,
}

const MAX_TRACKED: usize = 16_384;

impl Limiter {
    pub fn new(max: u32, window: Duration) -> Limiter {
        Limiter {
            max: max.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
            shared: OnceLock::new(),
        }
    }

    /// Count failures across the cluster too.
    pub fn attach(&self, shared: Arc<crate::cluster::Shared>) {
        let _ = self.shared.set(shared);
    }

    /// Whether this address has used up its failures, here or (with `cluster:`) on
    /// all nodes together. A state database that does not answer leaves the local
    /// count in charge: logins keep working while it is away.
    pub async fn is_blocked_anywhere(&self, tenant: &str, ip: IpAddr) -> bool {
        if self.is_blocked(tenant, ip) {
            return true;
        }
        match self.shared.get() {
            Some(s) => match s.login_failures(tenant, ip, self.window).await {
                Ok(n) => n >= 0 && n as u32 >= self.max,
                Err(e) => {
                    tracing::debug!(error = %e, "shared login-failure count unavailable");
                    false
                }
            },
            None => false,
        }
    }

    /// Charge the state database with a failure (or forget them), in the background.
    fn share(&self, tenant: &str, ip: IpAddr, failed: bool) {
        let Some(s) = self.shared.get() else { return };
        let (s, window, tenant) = (Arc::clone(s), self.window, tenant.to_owned());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let r = if failed {
                    s.record_login_failure(&tenant, ip, window)
                        .await
                        .map(|_| ())
                } else {
                    s.clear_login_failures(&tenant, ip).await
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, "shared login-failure count not updated");
                }
            });
        }
    }

    /// Whether this address has used up its failures (against this tenant's names)
    /// for the current window.
    pub fn is_blocked(&self, tenant: &str, ip: IpAddr) -> bool {
        let now = Instant::now();
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(tenant.to_owned(), ip))
            .is_some_and(|(start, n)| now.duration_since(*start) < self.window && *n >= self.max)
    }

    /// Count one failure.
    pub fn record(&self, tenant: &str, ip: IpAddr) {
        let now = Instant::now();
        let key = (tenant.to_owned(), ip);
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            map.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if map.len() >= MAX_TRACKED {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(key).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        drop(map);
        self.share(tenant, ip, true);
    }

    /// A successful login from an address forgets its failures.
    pub fn clear(&self, tenant: &str, ip: IpAddr) {
        let removed = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant.to_owned(), ip))
            .is_some();
        // Forget the cluster's count only when this node had counted failures: a
        // success costs no state-database write otherwise (failures counted on other
        // nodes then run out with their window).
        if removed {
            self.share(tenant, ip, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let l = Limiter::new(3, Duration::from_millis(200));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for _ in 0..2 {
            l.record("", ip);
        }
        assert!(!l.is_blocked("", ip));
        l.record("", ip);
        assert!(l.is_blocked("", ip));
        assert!(!l.is_blocked("", other), "other addresses are not affected");
        assert!(!l.is_blocked("acme", ip), "nor other tenants' names");
        std::thread::sleep(Duration::from_millis(250));
        assert!(!l.is_blocked("", ip));
        l.record("", ip);
        assert!(!l.is_blocked("", ip), "a new window starts from zero");
        l.clear("", ip);
        assert!(!l.is_blocked("", ip));
    }

    #[test]
    fn the_map_stays_bounded() {
        let l = Limiter::new(1, Duration::from_secs(60));
        for i in 0..(MAX_TRACKED as u32 + 10) {
            l.record("", IpAddr::from(i.to_be_bytes()));
        }
        assert!(l.entries.lock().unwrap().len() <= MAX_TRACKED);
    }
}
