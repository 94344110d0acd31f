//! Return-mode holds (SPEC section 7): the asking call is answered at once with the
//! request's id, and the decision waits here for the same call to come back. The
//! same call is the same identity, target, statement (by parse tree, literals
//! included: [`crate::classify::tree_key`]) and parameter values. An approval lets
//! one retry run and is then spent, so the next retry asks again; a denial is what
//! every retry gets until the request would have expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{Approvals, Resolution, Ticket};

/// How a return-mode refusal's message begins (SQLSTATE 42501): the request id
/// follows, then ` (rule "<id>")`. The MCP endpoint reads them back from it.
pub const PENDING_PREFIX: &str = "pgmoat: waiting for approval ";

/// The request id and rule of a return-mode refusal's message, if it is one.
pub fn parse_pending(message: &str) -> Option<(String, String)> {
    let rest = message.strip_prefix(PENDING_PREFIX)?;
    let (id, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix("(rule \"")?;
    let (rule, _) = rest.rsplit_once("\")")?;
    Some((id.to_owned(), rule.to_owned()))
}

/// What makes a retry "the same call".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReturnKey {
    pub identity: String,
    pub target: String,
    /// The deparsed parse tree, or the exact text when it has none.
    pub statement: String,
    /// SHA-256 of the bound parameters (formats, types and bytes); zeros for none.
    pub params: [u8; 32],
}

/// Where a return-mode request stands, as a retry finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing asked yet (or spent, or expired): ask.
    Nothing,
    Pending {
        id: String,
        rule: String,
    },
    /// Approved: this retry runs (the approval is spent by finding it).
    Approved {
        id: String,
        by: String,
        reason: String,
    },
    Denied {
        id: String,
        rule: String,
        by: String,
        reason: String,
    },
}

enum State {
    Pending,
    Approved { by: String, reason: String },
    Denied { by: String, reason: String },
}

struct Entry {
    id: String,
    rule: String,
    state: State,
    /// The request's own expiry: past it an unspent approval or a denial is forgotten.
    expires_at: SystemTime,
}

/// Return-mode requests of one tenant, by the call that asked.
#[derive(Default)]
pub struct Returned {
    entries: Mutex<HashMap<ReturnKey, Entry>>,
    /// Woken whenever a request here is decided, expires or is withdrawn.
    settled: tokio::sync::Notify,
}

fn lock(
    m: &Mutex<HashMap<ReturnKey, Entry>>,
) -> std::sync::MutexGuard<'_, HashMap<ReturnKey, Entry>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Returned {
    /// Look the call up; an approval found is spent.
    pub fn take(&self, key: &ReturnKey) -> Found {
        let now = SystemTime::now();
        let mut entries = lock(&self.entries);
        entries.retain(|_, e| e.expires_at > now);
        let Some(e) = entries.get(key) else {
            return Found::Nothing;
        };
        match &e.state {
            State::Pending => Found::Pending {
                id: e.id.clone(),
                rule: e.rule.clone(),
            },
            State::Denied { by, reason } => Found::Denied {
                id: e.id.clone(),
                rule: e.rule.clone(),
                by: by.clone(),
                reason: reason.clone(),
            },
            State::Approved { .. } => {
                let Some(Entry {
                    id,
                    state: State::Approved { by, reason },
                    ..
                }) = entries.remove(key)
                else {
                    return Found::Nothing;
                };
                Found::Approved { id, by, reason }
            }
        }
    }

    /// Whether the request `id` is still waiting for a decision here.
    pub fn is_pending(&self, id: &str) -> bool {
        lock(&self.entries)
            .values()
            .any(|e| e.id == id && matches!(e.state, State::Pending))
    }

    /// Wait until the request `id` is no longer pending, or `until`; true when it
    /// was decided (or is gone) in time.
    pub async fn wait_settled(&self, id: &str, until: tokio::time::Instant) -> bool {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_pending(id) {
                return true;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return !self.is_pending(id);
            }
        }
    }

    fn settle(&self, key: &ReturnKey, id: &str, how: Resolution) {
        {
            let mut entries = lock(&self.entries);
            let Some(e) = entries.get_mut(key).filter(|e| e.id == id) else {
                return;
            };
            match how {
                Resolution::Approved { by, reason, .. } => e.state = State::Approved { by, reason },
                Resolution::Denied { by, reason } => e.state = State::Denied { by, reason },
                Resolution::Expired | Resolution::Withdrawn => {
                    entries.remove(key);
                }
            }
        }
        self.settled.notify_waiters();
    }
}

impl Approvals {
    /// Keep a published request's ticket for a return-mode call: the call returns
    /// now, and the decision is kept for its retry (found with [`Returned::take`]).
    pub fn keep_for_retry(self: &Arc<Self>, key: ReturnKey, mut ticket: Ticket) {
        let id = ticket.request.id.clone();
        lock(&self.returned.entries).insert(
            key.clone(),
            Entry {
                id: id.clone(),
                rule: ticket.request.rule.clone(),
                state: State::Pending,
                expires_at: ticket.request.expires_at,
            },
        );
        let owner = Arc::clone(self);
        tokio::spawn(async move {
            let how = ticket.wait().await;
            owner.returned.settle(&key, &id, how);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(params: u8) -> ReturnKey {
        ReturnKey {
            identity: "agent-1".into(),
            target: "demo".into(),
            statement: "DELETE FROM orders WHERE id = 7".into(),
            params: [params; 32],
        }
    }

    fn approvals(timeout: Duration) -> Arc<Approvals> {
        Approvals::new(
            timeout,
            [("alice".to_string(), vec!["dba".to_string()])]
                .into_iter()
                .collect(),
        )
    }

    fn ask(a: &Arc<Approvals>) -> String {
        let t = a.request(
            "agent-1",
            &["agents".into()],
            "demo",
            "DELETE FROM orders WHERE id = 7",
            vec![],
            "agent-writes",
            &["dba".into()],
            super::super::FrontDoor::Mcp,
            false,
        );
        let id = t.request.id.clone();
        a.keep_for_retry(key(0), t);
        id
    }

    /// The decision for `id`, once the waiting task has kept it.
    async fn settled(a: &Approvals, id: &str) -> Found {
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        assert!(a.returned.wait_settled(id, until).await, "{id} settled");
        a.returned.take(&key(0))
    }

    #[tokio::test]
    async fn approved_runs_once_then_asks_again() {
        let a = approvals(Duration::from_secs(60));
        let id = ask(&a);
        assert_eq!(
            a.returned.take(&key(0)),
            Found::Pending {
                id: id.clone(),
                rule: "agent-writes".into()
            }
        );
        assert_eq!(a.returned.take(&key(1)), Found::Nothing, "other parameters");
        a.resolve(&id, "alice", true, "ok", None).unwrap();
        assert_eq!(
            settled(&a, &id).await,
            Found::Approved {
                id,
                by: "alice".into(),
                reason: "ok".into()
            }
        );
        assert_eq!(a.returned.take(&key(0)), Found::Nothing, "spent");
    }

    #[test]
    fn pending_messages_read_back() {
        assert_eq!(
            parse_pending("pgmoat: waiting for approval ap-abc (rule \"a \"b\"\"): not run"),
            Some(("ap-abc".into(), "a \"b\"".into()))
        );
        assert_eq!(parse_pending("pgmoat: blocked by rule \"x\""), None);
    }

    #[tokio::test]
    async fn waiting_ends_at_the_decision() {
        let a = approvals(Duration::from_secs(60));
        let id = ask(&a);
        let soon = tokio::time::Instant::now() + Duration::from_millis(30);
        assert!(!a.returned.wait_settled(&id, soon).await, "nobody decided");
        let (a2, id2) = (Arc::clone(&a), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            a2.resolve(&id2, "alice", true, "", None).unwrap();
        });
        let later = tokio::time::Instant::now() + Duration::from_secs(5);
        assert!(a.returned.wait_settled(&id, later).await);
        assert!(matches!(a.returned.take(&key(0)), Found::Approved { .. }));
    }

    #[tokio::test]
    async fn denial_stays_and_expiry_forgets() {
        let a = approvals(Duration::from_secs(60));
        let id = ask(&a);
        a.resolve(&id, "alice", false, "no", None).unwrap();
        let denied = settled(&a, &id).await;
        assert!(matches!(denied, Found::Denied { ref by, .. } if by == "alice"));
        assert_eq!(a.returned.take(&key(0)), denied, "every retry gets it");

        let short = approvals(Duration::from_millis(30));
        ask(&short);
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(short.returned.take(&key(0)), Found::Nothing);
        assert!(short.pending().is_empty());
    }
}
