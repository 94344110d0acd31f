//! Verified credentials remembered for a few seconds, so a client that sends the same
//! `Authorization` on every request is not re-verified every time (a JWT's signature,
//! a Basic password's key derivation, the cluster's failure count).
//!
//! Only successes are kept; every failure still takes the full path, is rate-limited
//! and audited. The map's key is a keyed hash (SipHash with this process's random
//! keys) of the whole header value: cheap on every request (SHA-256 was 2.7% of the
//! gateway's CPU), and not predictable from outside, so nobody can aim collisions at
//! an entry. A hash only finds the entry: the entry holds the whole header value and
//! a hit is confirmed by comparing it in constant time, so two credentials that hash
//! alike never share an identity (the second is a miss, verified in full). An entry
//! lives `TTL` at most, never past the credential's own expiry (a JWT's `exp`), so a
//! revoked token or a changed password stops working within seconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use subtle::ConstantTimeEq;

/// How long a verified credential is trusted without checking it again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries kept at most; a full cache drops its expired entries, then everything
/// (a flood of distinct tokens cannot grow memory, it only costs re-verification).
const MAX_ENTRIES: usize = 4096;

struct Entry<T> {
    /// The whole `Authorization` value this entry proved (kept in memory for `TTL`
    /// at most, as the verifier's own caches keep tokens).
    credential: Box<[u8]>,
    /// What the check found (the gateway: the caller, identity and tenant, shared so
    /// a hit copies nothing).
    with: T,
    until: Instant,
}

/// Verified `Authorization` values -> who they proved.
pub struct AuthCache<T> {
    entries: Mutex<HashMap<u64, Entry<T>>>,
    /// This process's random SipHash keys.
    keys: std::collections::hash_map::RandomState,
}

impl<T> Default for AuthCache<T> {
    fn default() -> Self {
        AuthCache {
            entries: Mutex::default(),
            keys: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl<T: Clone> AuthCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The map's key for one header value.
    fn hash(&self, authorization: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write(authorization);
        h.finish()
    }

    /// What a header value proved within the last `TTL`, if still valid.
    pub fn get(&self, authorization: &[u8], now: Instant) -> Option<T> {
        let hash = self.hash(authorization);
        let map = self.lock();
        let e = map.get(&hash)?;
        // The map found the entry by hash; confirm it is this very credential,
        // without a timing side channel (a length difference alone is told apart).
        if !bool::from(e.credential.ct_eq(authorization)) || now >= e.until {
            return None;
        }
        Some(e.with.clone())
    }

    /// Remember a success. `expires_at` (the identity's: a token's `exp`) bounds the
    /// entry's life.
    pub fn put(
        &self,
        authorization: &[u8],
        expires_at: Option<SystemTime>,
        with: &T,
        now: Instant,
    ) {
        let mut until = now + TTL;
        if let Some(exp) = expires_at {
            match exp.duration_since(SystemTime::now()) {
                Ok(left) => until = until.min(now + left),
                // Already expired (clock skew allowances): never cached.
                Err(_) => return,
            }
        }
        let hash = self.hash(authorization);
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| now < e.until);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(
            hash,
            Entry {
                credential: authorization.into(),
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
        let k = b"Bearer abc";
        assert!(c.get(k, now).is_none());
        c.put(k, None, &t, now);
        let got = c.get(k, now + Duration::from_secs(1)).expect("cached");
        assert_eq!(got, "tenant");
        assert!(c.get(b"Bearer abd", now).is_none());
        assert!(c.get(b"Bearer ab", now).is_none());
        assert!(c.get(k, now + TTL).is_none(), "expired after TTL");
    }

    #[test]
    fn a_credential_that_hashes_alike_is_a_miss_not_a_hit() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        c.put(b"Bearer right", None, &t, now);
        // Move the entry under the hash of other credentials (SipHash with random
        // keys gives no way to find a real collision): they still do not get it.
        for other in [&b"Bearer wrong"[..], b"Bearer right2", b"Bearer righ"] {
            let mut map = c.lock();
            let e = map.remove(&c.hash(b"Bearer right")).expect("cached");
            map.insert(c.hash(other), e);
            drop(map);
            assert!(c.get(other, now).is_none(), "{other:?}");
            let mut map = c.lock();
            let e = map.remove(&c.hash(other)).expect("still there");
            map.insert(c.hash(b"Bearer right"), e);
        }
        assert!(c.get(b"Bearer right", now).is_some());
        // Another cache (another process) keys its hash differently.
        let d = AuthCache::<&str>::default();
        assert_ne!(d.hash(b"Bearer right"), c.hash(b"Bearer right"));
    }

    #[test]
    fn a_token_expiry_bounds_the_entry() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        let exp = Some(SystemTime::now() + Duration::from_secs(2));
        c.put(b"Bearer jwt", exp, &t, now);
        assert!(c.get(b"Bearer jwt", now + Duration::from_secs(1)).is_some());
        assert!(c.get(b"Bearer jwt", now + Duration::from_secs(3)).is_none());
        let exp = Some(SystemTime::now() - Duration::from_secs(1));
        c.put(b"Bearer old", exp, &t, now);
        assert!(
            c.get(b"Bearer old", now).is_none(),
            "an expired token is never cached"
        );
    }

    #[test]
    fn bounded() {
        let c = AuthCache::<&str>::default();
        let (t, now) = (tenant(), Instant::now());
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(i.to_string().as_bytes(), None, &t, now);
        }
        assert!(c.lock().len() <= MAX_ENTRIES);
    }
}
