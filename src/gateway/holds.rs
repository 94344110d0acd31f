//! `Prefer: respond-async` (SPEC section 9): a held request is answered 202 with its
//! approval id at once; once approved, the same request (same identity, target,
//! method, path, query and body) runs when the client sends it again, once. Until then
//! a repeat gets the same id; after a denial or expiry, one repeat gets the refusal
//! (for as long as the approval timeout, then the refusal is forgotten).
//!
//! What is remembered is bounded per tenant and per identity as well as in all, so
//! one caller's flood of distinct held requests cannot crowd out everyone else's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What makes two requests "the same request".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HoldKey {
    pub tenant: String,
    pub identity: String,
    pub target: String,
    pub method: String,
    pub path_and_query: String,
    pub body_sha256: [u8; 32],
}

impl HoldKey {
    pub fn body_hash(body: &[u8]) -> [u8; 32] {
        Sha256::digest(body).into()
    }
}

/// Where a held request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Pending(String),
    /// Runs once, if repeated before `until`.
    Approved {
        id: String,
        until: Instant,
    },
    /// Denied or expired: the message the next repeat gets, if it comes before
    /// `until`.
    Refused {
        id: String,
        message: String,
        until: Instant,
    },
}

/// What the handler does with a respond-async request.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Not held yet: ask.
    Ask,
    /// Still waiting: 202 again with this id.
    Waiting(String),
    /// Approved: run it now (the approval is used up).
    Run(String),
    /// 403 with this id and message.
    Refused(String, String),
}

#[derive(Default)]
pub struct Holds {
    map: Mutex<HashMap<HoldKey, Standing>>,
}

/// Why a request was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The caller has `MAX_PER_IDENTITY` requests remembered.
    Identity,
    /// The caller's tenant has `MAX_PER_TENANT`.
    Tenant,
    /// The gateway has `MAX_ENTRIES`.
    All,
}

/// How long an approved request may wait for the client to send it again.
pub const APPROVED_FOR: Duration = Duration::from_secs(15 * 60);
/// The most held requests remembered at once (a flood of distinct bodies from one
/// client must not grow memory without end).
const MAX_ENTRIES: usize = 10_000;
/// The most one tenant's callers may have remembered at once.
pub const MAX_PER_TENANT: usize = 2_000;
/// The most one caller may have remembered at once.
pub const MAX_PER_IDENTITY: usize = 100;

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HoldKey, Standing>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Look a request up; an approval or refusal found is consumed.
    pub fn next(&self, key: &HoldKey) -> Next {
        let mut m = self.lock();
        let now = Instant::now();
        match m.get(key).cloned() {
            None => Next::Ask,
            Some(Standing::Pending(id)) => Next::Waiting(id),
            Some(Standing::Approved { id, until }) => {
                m.remove(key);
                if now <= until {
                    Next::Run(id)
                } else {
                    Next::Ask
                }
            }
            Some(Standing::Refused { id, message, until }) => {
                m.remove(key);
                if now <= until {
                    Next::Refused(id, message)
                } else {
                    Next::Ask
                }
            }
        }
    }

    /// Remember a new pending request, unless its caller, its tenant or the gateway
    /// has as many remembered as allowed (lapsed approvals and refusals are evicted
    /// first).
    pub fn pending(&self, key: HoldKey, id: String) -> Result<(), Full> {
        let mut m = self.lock();
        let full = |m: &HashMap<HoldKey, Standing>| {
            if m.len() >= MAX_ENTRIES {
                return Some(Full::All);
            }
            let (mut tenant, mut identity) = (0, 0);
            for k in m.keys().filter(|k| k.tenant == key.tenant) {
                tenant += 1;
                identity += usize::from(k.identity == key.identity);
            }
            if identity >= MAX_PER_IDENTITY {
                Some(Full::Identity)
            } else if tenant >= MAX_PER_TENANT {
                Some(Full::Tenant)
            } else {
                None
            }
        };
        if full(&m).is_some() {
            evict_lapsed(&mut m, Instant::now());
            if let Some(f) = full(&m) {
                return Err(f);
            }
        }
        m.insert(key, Standing::Pending(id));
        Ok(())
    }

    /// The decision arrived (or the request lapsed: `None` forgets it).
    pub fn decided(&self, key: &HoldKey, standing: Option<Standing>) {
        let mut m = self.lock();
        match standing {
            Some(s) => {
                m.insert(key.clone(), s);
            }
            None => {
                m.remove(key);
            }
        }
    }
}

/// Forget approvals and refusals whose time is up (pending requests stay: the
/// approval timeout ends them, and `decided` then replaces them).
fn evict_lapsed(m: &mut HashMap<HoldKey, Standing>, now: Instant) {
    m.retain(|_, s| match s {
        Standing::Pending(_) => true,
        Standing::Approved { until, .. } | Standing::Refused { until, .. } => *until >= now,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &[u8]) -> HoldKey {
        HoldKey {
            tenant: String::new(),
            identity: "a".into(),
            target: "billing".into(),
            method: "POST".into(),
            path_and_query: "/invoices".into(),
            body_sha256: HoldKey::body_hash(body),
        }
    }

    #[test]
    fn an_approval_runs_the_same_request_once() {
        let h = Holds::default();
        assert_eq!(h.next(&key(b"x")), Next::Ask);
        assert!(h.pending(key(b"x"), "ap-1".into()).is_ok());
        assert_eq!(h.next(&key(b"x")), Next::Waiting("ap-1".into()));
        assert_eq!(
            h.next(&key(b"y")),
            Next::Ask,
            "another body is another request"
        );
        h.decided(
            &key(b"x"),
            Some(Standing::Approved {
                id: "ap-1".into(),
                until: Instant::now() + APPROVED_FOR,
            }),
        );
        assert_eq!(h.next(&key(b"x")), Next::Run("ap-1".into()));
        assert_eq!(h.next(&key(b"x")), Next::Ask, "used up");
        h.pending(key(b"x"), "ap-2".into()).unwrap();
        h.decided(
            &key(b"x"),
            Some(Standing::Refused {
                id: "ap-2".into(),
                message: "no".into(),
                until: Instant::now() + APPROVED_FOR,
            }),
        );
        assert_eq!(
            h.next(&key(b"x")),
            Next::Refused("ap-2".into(), "no".into())
        );
    }

    fn key_of(tenant: &str, identity: &str, n: usize) -> HoldKey {
        HoldKey {
            tenant: tenant.into(),
            identity: identity.into(),
            path_and_query: format!("/invoices/{n}"),
            ..key(b"")
        }
    }

    #[test]
    fn one_caller_or_tenant_cannot_fill_the_store_for_everyone() {
        let h = Holds::default();
        for n in 0..MAX_PER_IDENTITY {
            h.pending(key_of("", "flood", n), format!("ap-{n}"))
                .unwrap();
        }
        assert_eq!(
            h.pending(key_of("", "flood", MAX_PER_IDENTITY), "ap-x".into()),
            Err(Full::Identity)
        );
        // Another caller of the same tenant is still heard ...
        h.pending(key_of("", "other", 0), "ap-o".into()).unwrap();
        // ... until the tenant as a whole is at its limit.
        let per = MAX_PER_IDENTITY - 1;
        let mut n = 0;
        while h.lock().len() < MAX_PER_TENANT {
            h.pending(key_of("", &format!("u{}", n / per), n), "ap".into())
                .unwrap();
            n += 1;
        }
        assert_eq!(
            h.pending(key_of("", "fresh", 0), "ap-f".into()),
            Err(Full::Tenant)
        );
        // Another tenant is not affected.
        h.pending(key_of("acme", "flood", 0), "ap-a".into())
            .unwrap();
    }

    #[test]
    fn lapsed_refusals_and_approvals_are_forgotten_and_evicted() {
        let h = Holds::default();
        let past = Instant::now() - Duration::from_millis(1);
        for n in 0..MAX_PER_IDENTITY {
            let k = key_of("", "a", n);
            h.pending(k.clone(), format!("ap-{n}")).unwrap();
            let standing = if n % 2 == 0 {
                Standing::Refused {
                    id: format!("ap-{n}"),
                    message: "no".into(),
                    until: past,
                }
            } else {
                Standing::Approved {
                    id: format!("ap-{n}"),
                    until: past,
                }
            };
            h.decided(&k, Some(standing));
        }
        // A lapsed refusal is not told again: the request is asked anew.
        assert_eq!(h.next(&key_of("", "a", 0)), Next::Ask);
        // At the caller's limit, the lapsed entries make room.
        h.pending(key_of("", "a", 0), "ap-new".into()).unwrap();
        h.pending(key_of("", "a", MAX_PER_IDENTITY), "ap-more".into())
            .unwrap();
        assert_eq!(h.lock().len(), 2);
    }
}
