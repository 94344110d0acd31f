//! The console's server-side sign-ins: a random 256-bit id in an `HttpOnly;
//! SameSite=Strict; Path=/ui` cookie names one, which holds who signed in, what the
//! sign-in may see (the admin token's scope) and its CSRF token. Nothing about the
//! sign-in lives in the browser but the id, so signing out (or idling) ends it here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::admin::Scope;

/// The cookie naming a sign-in.
pub const COOKIE: &str = "pgmoat_console";
/// The cookie a sign-in form's CSRF token is paired with before anyone signed in.
pub const PRE_COOKIE: &str = "pgmoat_console_pre";
/// A sign-in unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A sign-in ends this long after it started, however busy (console review L2): an
/// approvals page left open does not keep a stolen or forgotten sign-in alive forever,
/// and an OIDC user removed from `admin.groups` is out by the next working day.
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many sign-ins at once: a flood of sign-ins cannot grow memory forever.
const MAX_SIGN_INS: usize = 10_000;
/// At most this many under one name: one credential signing in in a loop replaces
/// only its own sign-ins, never evicts everyone else's (console review L1).
const MAX_SIGN_INS_PER_NAME: usize = 32;

/// Who is signed in and how.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The name decisions are made as (the API's `by`).
    pub who: String,
    /// With OIDC, the groups from the ID token (approvers are checked against them);
    /// None for the admin token, whose holder's groups come from the configured users.
    pub groups: Option<Vec<String>>,
    pub scope: Scope,
    /// Sent back in every form as a hidden field.
    pub csrf: String,
    /// How the sign-in was made, shown in the header.
    pub method: &'static str,
    started: Instant,
    last_seen: Instant,
}

impl SignIn {
    fn live(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) < IDLE && now.duration_since(self.started) < LIFETIME
    }
}

/// Every live sign-in of this process.
#[derive(Default)]
pub struct SignIns {
    live: Mutex<HashMap<String, SignIn>>,
}

/// 256 random bits, hex: sign-in ids, CSRF tokens, OIDC state and nonces.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal in constant time (tokens compared with a secret of the same kind).
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SignIns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SignIn>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a sign-in; returns its id (the cookie's value).
    pub fn start(
        &self,
        who: String,
        groups: Option<Vec<String>>,
        scope: Scope,
        method: &'static str,
    ) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut live = self.lock();
        live.retain(|_, s| s.live(now));
        let stalest = |live: &HashMap<String, SignIn>, who: Option<&str>| {
            live.iter()
                .filter(|(_, s)| who.is_none_or(|w| s.who == w))
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        };
        if live.values().filter(|s| s.who == who).count() >= MAX_SIGN_INS_PER_NAME {
            if let Some(k) = stalest(&live, Some(&who)) {
                live.remove(&k);
            }
        }
        if live.len() >= MAX_SIGN_INS {
            // Drop the stalest rather than refuse the person signing in now.
            if let Some(oldest) = stalest(&live, None) {
                live.remove(&oldest);
            }
        }
        live.insert(
            id.clone(),
            SignIn {
                who,
                groups,
                scope,
                csrf: random_token(),
                method,
                started: now,
                last_seen: now,
            },
        );
        id
    }

    /// The sign-in a request's cookie names, if it is live; using it resets its idle
    /// clock.
    pub fn current(&self, headers: &HeaderMap) -> Option<SignIn> {
        let id = cookie(headers, COOKIE)?;
        let now = Instant::now();
        let mut live = self.lock();
        let s = live.get_mut(&id)?;
        if !s.live(now) {
            live.remove(&id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Whether the request's sign-in is still live, without counting this as use (a
    /// page left open with its live updates does not keep a sign-in from idling out).
    pub fn is_live(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, COOKIE) else {
            return false;
        };
        self.lock().get(&id).is_some_and(|s| s.live(Instant::now()))
    }

    /// Sign out: the id names nothing any more.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(&id);
        }
    }

    #[cfg(test)]
    fn age(&self, id: &str, by: Duration) {
        if let Some(s) = self.lock().get_mut(id) {
            s.last_seen -= by;
        }
    }

    #[cfg(test)]
    fn started_ago(&self, id: &str, by: Duration) {
        if let Some(s) = self.lock().get_mut(id) {
            s.started -= by;
        }
    }
}

/// A cookie's value from the request's `Cookie` headers; None when it is missing or
/// sent more than once. Cookies are scoped by host, not port, so a service on
/// another port of the same host can plant a second `pgmoat_console` with a more
/// specific path, which browsers send first: taking either would let it fix the
/// operator's sign-in to one it knows (console review M2).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// A `Set-Cookie` value for the console: never readable by scripts, never sent
/// from another site, only under `/ui`; `Secure` when served over TLS.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/ui");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn sign_ins_expire_when_idle_and_end_on_sign_out() {
        let s = SignIns::default();
        let id = s.start("alice".into(), None, Scope::Global, "token");
        assert_eq!(id.len(), 64);
        let h = with_cookie(&format!("other=1; {COOKIE}={id}"));
        assert_eq!(s.current(&h).unwrap().who, "alice");
        s.age(&id, IDLE);
        assert!(s.current(&h).is_none(), "idle too long");
        let id = s.start("bob".into(), None, Scope::Global, "token");
        let h = with_cookie(&format!("{COOKIE}={id}"));
        assert!(s.current(&h).is_some());
        assert!(s.is_live(&h));
        s.end(&h);
        assert!(s.current(&h).is_none(), "signed out");
        assert!(!s.is_live(&h));
        assert!(s
            .current(&with_cookie(&format!("{COOKIE}=guess")))
            .is_none());
    }

    #[test]
    fn sign_ins_end_after_their_lifetime_however_busy() {
        let s = SignIns::default();
        let id = s.start("alice".into(), None, Scope::Global, "token");
        let h = with_cookie(&format!("{COOKIE}={id}"));
        s.started_ago(&id, LIFETIME - Duration::from_secs(60));
        assert!(s.current(&h).is_some(), "used within the hour: still live");
        s.started_ago(&id, Duration::from_secs(61));
        assert!(!s.is_live(&h));
        assert!(s.current(&h).is_none(), "past its lifetime");
    }

    #[test]
    fn one_name_signing_in_in_a_loop_replaces_only_its_own() {
        let s = SignIns::default();
        let alice = s.start("alice".into(), None, Scope::Global, "token");
        for _ in 0..3 * MAX_SIGN_INS_PER_NAME {
            s.start("mallory".into(), None, Scope::Global, "token");
        }
        assert!(s.is_live(&with_cookie(&format!("{COOKIE}={alice}"))));
        let mallorys = s.lock().values().filter(|v| v.who == "mallory").count();
        assert_eq!(mallorys, MAX_SIGN_INS_PER_NAME);
    }

    #[test]
    fn a_cookie_sent_twice_names_nothing() {
        let s = SignIns::default();
        let id = s.start("alice".into(), None, Scope::Global, "token");
        let planted = with_cookie(&format!("{COOKIE}=planted; {COOKIE}={id}"));
        assert!(s.current(&planted).is_none());
        assert_eq!(cookie(&planted, COOKIE), None);
        assert_eq!(cookie(&with_cookie("a=1; b=2"), "b").as_deref(), Some("2"));
    }

    #[test]
    fn cookies_are_http_only_strict_and_scoped() {
        assert_eq!(
            set_cookie(COOKIE, "x", false, None),
            "pgmoat_console=x; HttpOnly; SameSite=Strict; Path=/ui"
        );
        assert!(set_cookie(COOKIE, "x", true, Some(0)).ends_with("; Secure; Max-Age=0"));
    }
}
