//! Live sessions of every front door, for `GET /api/v1/sessions`, the console and
//! `pgmoat cluster status`: who, where to, from where, since when, what it runs now,
//! and a way for an operator to end one.
//!
//! A session registers once it is authenticated and its target is known, and the
//! [`Registration`] it gets back unregisters it when dropped, however the session
//! ends. Per statement a session pays one uncontended lock to note what it runs
//! (into a buffer it reuses) and one relaxed add per batch for its count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// The running statement is shown up to this many bytes.
const RUNNING_SHOWN: usize = 1024;

/// What a session is, fixed when it registers. Shared text: the HTTP gateway registers
/// every request, and its caller's and target's names are not copied for that.
#[derive(Debug, Clone)]
pub struct Entry {
    /// "" without `tenants:`.
    pub tenant: Arc<str>,
    pub identity: Arc<str>,
    pub target: Arc<str>,
    pub client: SocketAddr,
    /// The front door: "postgres", "mcp", "ssh" or "http".
    pub protocol: &'static str,
}

struct Live {
    entry: Entry,
    started_at: SystemTime,
    /// What the session runs now (a statement, a command): empty when idle.
    running: Mutex<String>,
    statements: AtomicU64,
    /// Set once an operator ends the session.
    ended: AtomicBool,
    /// Made when somebody first waits for the end (or the end comes): most HTTP
    /// requests never wait, and a channel per request was a visible cost.
    terminate: OnceLock<watch::Sender<bool>>,
}

impl Live {
    fn terminate(&self) -> &watch::Sender<bool> {
        self.terminate.get_or_init(|| watch::channel(false).0)
    }
}

/// One live session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub tenant: String,
    pub identity: String,
    pub target: String,
    pub client: String,
    pub protocol: &'static str,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub started_at: SystemTime,
    pub statements: u64,
    /// What it runs now; None when idle.
    pub running: Option<String>,
}

/// Every live session of this process.
#[derive(Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Live>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain data: still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Session ids as shown: `s-` and a number, unique in this process.
fn show_id(n: u64) -> String {
    format!("s-{n}")
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    /// List a session until the returned registration is dropped.
    pub fn register(self: &Arc<Self>, entry: Entry) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let live = Arc::new(Live {
            entry,
            started_at: SystemTime::now(),
            running: Mutex::new(String::new()),
            statements: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            terminate: OnceLock::new(),
        });
        lock(&self.live).insert(id, Arc::clone(&live));
        Registration {
            registry: Arc::clone(self),
            id,
            live,
        }
    }

    /// The live sessions, oldest first; only `tenant`'s when given.
    pub fn list(&self, tenant: Option<&str>) -> Vec<SessionView> {
        lock(&self.live)
            .iter()
            .filter(|(_, l)| tenant.is_none_or(|t| *l.entry.tenant == *t))
            .map(|(id, l)| {
                let running = lock(&l.running);
                SessionView {
                    id: show_id(*id),
                    tenant: l.entry.tenant.to_string(),
                    identity: l.entry.identity.to_string(),
                    target: l.entry.target.to_string(),
                    client: l.entry.client.to_string(),
                    protocol: l.entry.protocol,
                    started_at: l.started_at,
                    statements: l.statements.load(Ordering::Relaxed),
                    running: (!running.is_empty()).then(|| running.clone()),
                }
            })
            .collect()
    }

    /// How many sessions of `protocol` are live.
    pub fn count(&self, protocol: &str) -> usize {
        lock(&self.live)
            .values()
            .filter(|l| l.entry.protocol == protocol)
            .count()
    }

    /// Ask the session `id` (as shown, `s-N`) to end; only one of `tenant`'s when
    /// given. False when there is no such session (for that tenant).
    pub fn terminate(&self, id: &str, tenant: Option<&str>) -> bool {
        let Some(n) = id.strip_prefix("s-").and_then(|n| n.parse::<u64>().ok()) else {
            return false;
        };
        let live = lock(&self.live).get(&n).cloned();
        match live {
            Some(l) if tenant.is_none_or(|t| *l.entry.tenant == *t) => {
                l.ended.store(true, Ordering::Release);
                // Through the one sender (made now if nobody waits yet): a receiver
                // made before or after this sees `true`.
                l.terminate().send_replace(true);
                true
            }
            _ => false,
        }
    }
}

/// A session's place in the registry; dropping it unregisters the session.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
    live: Arc<Live>,
}

impl Registration {
    /// The id the API shows.
    pub fn id(&self) -> String {
        show_id(self.id)
    }

    /// Note what the session runs now (None: idle). Cut at a character boundary
    /// past [`RUNNING_SHOWN`] bytes; the buffer is reused, so no allocation once warm.
    pub fn running(&self, what: Option<&str>) {
        match what {
            Some(w) => self.running_parts(&[w]),
            None => lock(&self.live.running).clear(),
        }
    }

    /// Note what the session runs now, given in parts that are joined (`METHOD`,
    /// ` `, `/path`): no joined copy is made first. Cut as `running` cuts.
    pub fn running_parts(&self, parts: &[&str]) {
        let mut r = lock(&self.live.running);
        r.clear();
        r.reserve(
            parts
                .iter()
                .map(|p| p.len())
                .sum::<usize>()
                .min(RUNNING_SHOWN),
        );
        for p in parts {
            let room = RUNNING_SHOWN - r.len();
            let mut end = p.len().min(room);
            while !p.is_char_boundary(end) {
                end -= 1;
            }
            r.push_str(&p[..end]);
            if end < p.len() {
                break;
            }
        }
    }

    /// Count `n` more statements (or commands, or requests).
    pub fn count(&self, n: u64) {
        if n > 0 {
            self.live.statements.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A receiver that turns true when an operator terminates the session.
    pub fn terminated(&self) -> watch::Receiver<bool> {
        self.live.terminate().subscribe()
    }

    /// Whether an operator has terminated the session (without a receiver).
    pub fn is_terminated(&self) -> bool {
        self.live.ended.load(Ordering::Acquire)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.live).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, protocol: &'static str) -> Entry {
        Entry {
            tenant: tenant.into(),
            identity: "agent-1".into(),
            target: "demo".into(),
            client: "127.0.0.1:5000".parse().unwrap(),
            protocol,
        }
    }

    #[test]
    fn register_list_terminate_drop() {
        let r = Registry::new();
        let a = r.register(entry("acme", "postgres"));
        let b = r.register(entry("globex", "ssh"));
        a.running(Some("SELECT 1"));
        a.count(2);
        let all = r.list(None);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, a.id());
        assert_eq!(all[0].running.as_deref(), Some("SELECT 1"));
        assert_eq!(all[0].statements, 2);
        assert_eq!(all[1].running, None);
        assert_eq!(r.list(Some("globex")).len(), 1);
        assert_eq!(r.count("ssh"), 1);
        // Another tenant's admin cannot end it; the session hears its own end.
        let ended = b.terminated();
        assert!(!r.terminate(&b.id(), Some("acme")));
        assert!(!*ended.borrow());
        assert!(!b.is_terminated());
        assert!(r.terminate(&b.id(), Some("globex")));
        assert!(*ended.borrow());
        assert!(b.is_terminated());
        assert!(
            *b.terminated().borrow(),
            "a receiver made after the end sees it"
        );
        // Ended before anybody waited: the first receiver sees it too.
        let c = r.register(entry("", "http"));
        assert!(r.terminate(&c.id(), None));
        assert!(c.is_terminated() && *c.terminated().borrow());
        drop(c);
        assert!(!r.terminate("s-999", None));
        assert!(!r.terminate("nonsense", None));
        drop(b);
        assert_eq!(r.list(None).len(), 1);
        a.running(None);
        assert_eq!(r.list(None)[0].running, None);
    }

    #[test]
    fn running_is_cut_at_a_character_boundary() {
        let r = Registry::new();
        let a = r.register(entry("", "postgres"));
        let long = "é".repeat(RUNNING_SHOWN);
        a.running(Some(&long));
        let shown = r.list(None)[0].running.clone().unwrap();
        assert!(shown.len() <= RUNNING_SHOWN && long.starts_with(&shown));
        // In parts: joined, and cut the same way wherever the bound falls.
        a.running_parts(&["GET", " ", "/x"]);
        assert_eq!(r.list(None)[0].running.as_deref(), Some("GET /x"));
        a.running_parts(&["GET ", &long]);
        let shown = r.list(None)[0].running.clone().unwrap();
        assert!(shown.len() <= RUNNING_SHOWN);
        assert!(format!("GET {long}").starts_with(&shown));
        assert!(
            shown.len() > RUNNING_SHOWN - 4,
            "cut at the last boundary, not before"
        );
    }
}
