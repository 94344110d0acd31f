//! When the catalog is read: [`CatalogCache`] holds the current [`Catalog`], marks it
//! stale after DDL or an unknown name, and lets one refresh run at a time. Separate
//! from the reading itself (`load.rs`); why a refresh never waits on users' locks is
//! in the `catalog` module comment.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use super::load::load;
use super::peers::Peers;
use super::Catalog;
use crate::config::Target;

/// A target's catalog, loaded on first use and after DDL seen through the gateway.
///
/// Reading the current catalog takes no async lock (a statement's hot path). One
/// refresh runs at a time; a session that needs a fresh catalog waits for it, and the
/// refresh itself never waits on users' locks (see the module comment), so it is
/// bounded: nothing one session does can hold up another's statements.
pub struct CatalogCache {
    target: Arc<Target>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    current: std::sync::RwLock<Option<Arc<Catalog>>>,
    /// Held while a load runs: later callers wait for that load instead of starting
    /// another.
    loading: tokio::sync::Mutex<()>,
    stale: AtomicBool,
    last_miss: std::sync::Mutex<Option<std::time::Instant>>,
    /// The gateway's other caches (and, through them, the other replicas).
    peers: Option<Arc<Peers>>,
}

impl CatalogCache {
    pub fn new(
        target: Arc<Target>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
        peers: Option<Arc<Peers>>,
    ) -> CatalogCache {
        CatalogCache {
            target,
            tls,
            timeout,
            current: std::sync::RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            stale: AtomicBool::new(false),
            last_miss: std::sync::Mutex::new(None),
            peers,
        }
    }

    /// The database this catalog is read from.
    pub fn database(&self) -> &str {
        &self.target.database
    }

    /// Whether a catalog has been read (a target nobody used has none).
    pub fn is_loaded(&self) -> bool {
        self.loaded().is_some()
    }

    /// DDL is about to be sent: this cache and every other cache of the database on
    /// this node read the catalog again before their next statement (one read while
    /// the DDL holds its lock marks the relations it changes as being changed).
    pub fn ddl_judged(&self) {
        self.mark_stale();
        if let Some(p) = &self.peers {
            p.mark(&self.target.database);
        }
    }

    /// DDL a session sent has run and is visible: this cache and every other cache of
    /// the same database, here and on the other replicas, read the catalog again
    /// before their next statement. The answer (with a cluster) says when the other
    /// replicas have been told; the DDL's ReadyForQuery waits for it.
    pub fn ddl_seen(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        self.mark_stale();
        self.peers.as_ref()?.changed(&self.target.database)
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Relaxed);
    }

    /// A statement named a relation the catalog does not know: read it again, but
    /// not more often than every few seconds (a typo must not reload it per query).
    pub fn mark_stale_soon(&self) {
        let now = std::time::Instant::now();
        let mut last = self.last_miss.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5)) {
            *last = Some(now);
            self.stale.store(true, Relaxed);
        }
    }

    fn loaded(&self) -> Option<Arc<Catalog>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// Whether `c` is the catalog [`Self::get`] would return now, with no wait: a
    /// pointer compare (a prepared statement's every Bind asks).
    pub fn is_current(&self, c: &Arc<Catalog>) -> bool {
        !self.stale.load(Relaxed)
            && (self.current.read().unwrap_or_else(|p| p.into_inner()))
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(l, c))
    }

    pub async fn get(&self) -> Result<Arc<Catalog>, String> {
        if !self.stale.load(Relaxed) {
            if let Some(c) = self.loaded() {
                return Ok(c);
            }
        }
        let _loading = self.loading.lock().await;
        // A load that finished while this caller waited cleared `stale` when it began;
        // had anything made the catalog stale since, `stale` would be set again.
        if !self.stale.load(Relaxed) {
            if let Some(c) = self.loaded() {
                return Ok(c);
            }
        }
        self.stale.store(false, Relaxed);
        self.load_now().await
    }

    /// Read the catalog again in the background (`limits.catalog_refresh`): statements
    /// go on with the current one meanwhile, and use the new one once it is read. One
    /// that cannot be read marks the cache stale (the next statement tries itself,
    /// and fails closed if it cannot either).
    pub async fn refresh(&self) {
        let _loading = self.loading.lock().await;
        if let Err(e) = self.load_now().await {
            tracing::warn!(target = %self.target.name, error = %e, "the periodic catalog read failed");
        }
    }

    /// Read the catalog now (the caller holds `loading`) and make it the current one.
    async fn load_now(&self) -> Result<Arc<Catalog>, String> {
        // Bounded whatever the server does: a catalog that cannot be read in time
        // fails this statement (closed), never the gateway.
        let limit = self.timeout.saturating_mul(2) + Duration::from_secs(30);
        let result = match tokio::time::timeout(
            limit,
            load(
                &self.target,
                self.tls.as_ref(),
                self.timeout,
                self.loaded().as_deref(),
            ),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("reading it took over {}s", limit.as_secs())),
        };
        match result {
            Ok(c) => {
                let c = Arc::new(c);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&c));
                Ok(c)
            }
            Err(e) => {
                self.stale.store(true, Relaxed);
                Err(e)
            }
        }
    }
}
