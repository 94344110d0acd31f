//! `Prefer: respond-async` (SPEC section 9): a held request is answered 202 with its
//! approval id at once; once approved, the same request (same identity, target,
//! method, path, query and body) runs when the client sends it again, once. Until then
//! a repeat gets the same id; after a denial or expiry, one repeat gets the refusal.

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
    /// Denied or expired: the message the next repeat gets.
    Refused {
        id: String,
        message: String,
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

/// How long an approved request may wait for the client to send it again.
pub const APPROVED_FOR: Duration = Duration::from_secs(15 * 60);
/// The most held requests remembered at once (a flood of distinct bodies from one
/// client must not grow memory without end).
const MAX_ENTRIES: usize = 10_000;

impl Holds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<HoldKey, Standing>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Look a request up; an approval or refusal found is consumed.
    pub fn next(&self, key: &HoldKey) -> Next {
        let mut m = self.lock();
        match m.get(key).cloned() {
            None => Next::Ask,
            Some(Standing::Pending(id)) => Next::Waiting(id),
            Some(Standing::Approved { id, until }) => {
                m.remove(key);
                if Instant::now() <= until {
                    Next::Run(id)
                } else {
                    Next::Ask
                }
            }
            Some(Standing::Refused { id, message }) => {
                m.remove(key);
                Next::Refused(id, message)
            }
        }
    }

    /// Remember a new pending request; false when too many are remembered already.
    pub fn pending(&self, key: HoldKey, id: String) -> bool {
        let mut m = self.lock();
        if m.len() >= MAX_ENTRIES {
            let now = Instant::now();
            m.retain(|_, s| !matches!(s, Standing::Approved { until, .. } if *until < now));
            if m.len() >= MAX_ENTRIES {
                return false;
            }
        }
        m.insert(key, Standing::Pending(id));
        true
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
        assert!(h.pending(key(b"x"), "ap-1".into()));
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
        h.pending(key(b"x"), "ap-2".into());
        h.decided(
            &key(b"x"),
            Some(Standing::Refused {
                id: "ap-2".into(),
                message: "no".into(),
            }),
        );
        assert_eq!(
            h.next(&key(b"x")),
            Next::Refused("ap-2".into(), "no".into())
        );
    }
}
