//! Verified credentials remembered for a few seconds, so a client that sends the same
//! `Authorization` on every request is not re-verified every time (a JWT's signature,
//! a Basic password's key derivation, the cluster's failure count).
//!
//! Only successes are kept; every failure still takes the full path, is rate-limited
//! and audited. The key is a SHA-256 of the whole header value, so the secret itself
//! is never stored, and a hit is confirmed with a constant-time comparison of that
//! digest. An entry lives `TTL` at most, never past the credential's own expiry (a
//! JWT's `exp`), so a revoked token or a changed password stops working within
//! seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::Identity;

/// How long a verified credential is trusted without checking it again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; a full cache drops its expired entries, then everything
/// (a flood of distinct tokens cannot grow memory, it only costs re-verification).
const MAX_ENTRIES: usize = 4096;

type Key = [u8; 32];

struct Entry<T> {
    key: Key,
    identity: Identity,
    /// What else the check found (the gateway: the caller's tenant).
    with: T,
    until: Instant,
}

/// Verified `Authorization` values -> who they proved.
pub struct AuthCache<T> {
    entries: Mutex<HashMap<Key, Entry<T>>>,
}

impl<T> Default for AuthCache<T> {
    fn default() -> Self {
        AuthCache {
            entries: Mutex::default(),
        }
    }
}

/// The cache's key for one header value.
pub fn key_of(authorization: &[u8]) -> Key {
    Sha256::digest(authorization).into()
}

impl<T: Clone> AuthCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity a header value proved within the last `TTL`, if still valid.
    pub fn get(&self, key: &Key, now: Instant) -> Option<(Identity, T)> {
        let map = self.lock();
        let e = map.get(key)?;
        // The map found the entry by hash; confirm it without a timing side channel.
        if !bool::from(e.key.ct_eq(key)) || now >= e.until {
            return None;
        }
        Some((e.identity.clone(), e.with.clone()))
    }

    /// Remember a success. `expires_at` of the identity bounds the entry's life.
    pub fn put(&self, key: Key, identity: &Identity, with: &T, now: Instant) {
        let mut until = now + TTL;
        if let Some(exp) = identity.expires_at {
            match exp.duration_since(SystemTime::now()) {
                Ok(left) => until = until.min(now + left),
                // Already expired (clock skew allowances): never cached.
                Err(_) => return,
            }
        }
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| now < e.until);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            key,
            Entry {
                key,
                identity: identity.clone(),
                with: with.clone(),
                until,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> &'static str {
        "tenant"
    }

    #[test]
    fn a_success_is_remembered_for_ttl_only() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        let k = key_of(b"Bearer abc");
        assert!(c.get(&k, now).is_none());
        c.put(k, &Identity::new("agent", vec!["g".into()]), &t, now);
        let (id, _) = c.get(&k, now + Duration::from_secs(1)).expect("cached");
        assert_eq!((id.name.as_str(), id.groups.len()), ("agent", 1));
        assert!(c.get(&key_of(b"Bearer abd"), now).is_none());
        assert!(c.get(&k, now + TTL).is_none(), "expired after TTL");
    }

    #[test]
    fn a_token_expiry_bounds_the_entry() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        let mut id = Identity::new("agent", vec![]);
        id.expires_at = Some(SystemTime::now() + Duration::from_secs(2));
        let k = key_of(b"Bearer jwt");
        c.put(k, &id, &t, now);
        assert!(c.get(&k, now + Duration::from_secs(1)).is_some());
        assert!(c.get(&k, now + Duration::from_secs(3)).is_none());
        id.expires_at = Some(SystemTime::now() - Duration::from_secs(1));
        let k2 = key_of(b"Bearer old");
        c.put(k2, &id, &t, now);
        assert!(
            c.get(&k2, now).is_none(),
            "an expired token is never cached"
        );
    }

    #[test]
    fn bounded() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(
                key_of(i.to_string().as_bytes()),
                &Identity::new("a", vec![]),
                &t,
                now,
            );
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
    }
}
