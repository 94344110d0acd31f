//! CancelRequest routing. A client's BackendKeyData carries the server's real process
//! id (what `pg_backend_pid()` says, so `pg_terminate_backend(conn.info.backend_pid)`
//! and lookups in pg_stat_activity work as they do directly) with a secret of pgmoat's
//! own: the server's secret never reaches the client. Keys are looked up by both; a
//! CancelRequest whose pair is not one we issued (forged, or from a session that has
//! ended) cancels nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use rand::Rng;
use subtle::ConstantTimeEq;

use crate::config::Target;

#[derive(Clone)]
pub struct CancelTarget {
    pub target: Arc<Target>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub server_pid: i32,
    pub server_secret: i32,
    /// Wakes the session: a cancel withdraws a statement held for approval.
    pub signal: Arc<HoldSignal>,
}

/// How a CancelRequest reaches a session whose statement waits for approval.
#[derive(Default)]
pub struct HoldSignal {
    notify: tokio::sync::Notify,
    waiting: AtomicBool,
    cancelled: AtomicBool,
}

impl HoldSignal {
    /// A cancel arrived. True when it withdrew a held statement: that one never
    /// reached the server, so nothing is to be cancelled there (a cancel sent on
    /// could only hit the session's next statement).
    pub fn cancel(&self) -> bool {
        if !self.waiting.load(SeqCst) {
            return false;
        }
        self.cancelled.store(true, SeqCst);
        self.notify.notify_waiters();
        true
    }

    /// A statement starts (`true`) or stops waiting for approval.
    pub fn waiting(&self, on: bool) {
        self.cancelled.store(false, SeqCst);
        self.waiting.store(on, SeqCst);
    }

    /// Resolves once a cancel arrives while waiting (also one that came between two
    /// polls of this future's predecessors).
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.cancelled.load(SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

struct Entry {
    secret: i32,
    to: CancelTarget,
}

#[derive(Default)]
pub struct CancelRegistry {
    // Touched once per connect, disconnect and cancel: a plain mutex is enough. Sessions
    // on different servers can share a process id, so a pid has a list of entries.
    entries: Mutex<HashMap<i32, Vec<Entry>>>,
}

impl CancelRegistry {
    /// Issue a key for a session: the server's process id (a made-up one when the
    /// server sent none) and a fresh secret. Withdrawn when the guard drops.
    pub fn register(self: &Arc<Self>, to: CancelTarget) -> CancelKey {
        let mut rng = rand::thread_rng();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let pid = if to.server_pid > 0 {
            to.server_pid
        } else {
            loop {
                let pid = rng.gen_range(1..i32::MAX);
                if !entries.contains_key(&pid) {
                    break pid;
                }
            }
        };
        let list = entries.entry(pid).or_default();
        let secret = loop {
            let secret: i32 = rng.gen();
            if list.iter().all(|e| e.secret != secret) {
                break secret;
            }
        };
        list.push(Entry { secret, to });
        CancelKey {
            pid,
            secret,
            registry: Arc::clone(self),
        }
    }

    /// The server to cancel on, when the key is one we issued.
    pub fn lookup(&self, pid: i32, secret: i32) -> Option<CancelTarget> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = None;
        // Every entry of the pid is compared, in constant time each.
        for e in entries.get(&pid)? {
            if bool::from(e.secret.to_be_bytes().ct_eq(&secret.to_be_bytes())) {
                found = Some(e.to.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A key held by a live session.
pub struct CancelKey {
    pub pid: i32,
    pub secret: i32,
    registry: Arc<CancelRegistry>,
}

impl Drop for CancelKey {
    fn drop(&mut self) {
        let mut entries = self
            .registry
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(list) = entries.get_mut(&self.pid) {
            list.retain(|e| e.secret != self.secret);
            if list.is_empty() {
                entries.remove(&self.pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamTlsMode;

    fn to() -> CancelTarget {
        CancelTarget {
            signal: Default::default(),
            target: Arc::new(Target {
                name: "t".into(),
                host: "h".into(),
                port: 1,
                database: "d".into(),
                user: "u".into(),
                password: None,
                tls: UpstreamTlsMode::Disable,
                ca: None,
                roles: Vec::new(),
            }),
            tls: None,
            server_pid: 42,
            server_secret: 7,
        }
    }

    #[test]
    fn only_the_issued_key_finds_the_server() {
        let reg = Arc::new(CancelRegistry::default());
        let key = reg.register(to());
        assert_eq!(key.pid, 42, "the client sees the server's own pid");
        assert_ne!(key.secret, 7, "but not the server's secret");
        // Another server's session with the same pid gets its own secret.
        let other = reg.register(to());
        assert_eq!(other.pid, 42);
        assert_ne!(other.secret, key.secret);
        assert_eq!(reg.len(), 2);
        drop(other);
        assert_eq!(reg.lookup(key.pid, key.secret).unwrap().server_pid, 42);
        assert!(reg.lookup(key.pid, key.secret.wrapping_add(1)).is_none());
        assert!(reg.lookup(key.pid.wrapping_add(1), key.secret).is_none());
        let (pid, secret) = (key.pid, key.secret);
        drop(key);
        assert!(
            reg.lookup(pid, secret).is_none(),
            "stale keys cancel nothing"
        );
        assert!(reg.is_empty());
    }
}
