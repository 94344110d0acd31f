//! Catalog caches that read one database learn of each other's DDL.
//!
//! A session's DDL makes its own cache stale once the server has run it
//! (`Judge::ddl_answered`). Other caches of the same database would go on tracing
//! masks over what they read before: another tenant's target naming that database on
//! this node, and every cache of it on the other replicas (`cluster:`). A view
//! replaced through one replica (`CREATE OR REPLACE VIEW v AS SELECT ssn AS name ...`)
//! would be read through another as the clean view it was. So DDL through any of them
//! marks every cache of that database stale here, and, with a cluster, is announced
//! through the state database before the client sees the DDL's ReadyForQuery: by the
//! time the client can send anything to another replica, the notice is on its way
//! there (see `cluster::catalogs`).
//!
//! Databases are told apart by name only: two servers with a database of one name
//! cost each other a catalog read now and then, never a stale catalog.
//!
//! DDL made behind pgmoat's back (a migration run directly on the server) is seen by
//! the periodic read (`limits.catalog_refresh`, [`Peers::refresh_loaded`]).

use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{mpsc, oneshot};

use super::CatalogCache;

/// A database whose catalog changed, and who waits until the other replicas are told.
pub type Announcement = (String, oneshot::Sender<()>);

/// Every catalog cache of one gateway, and the way to the other replicas.
#[derive(Default)]
pub struct Peers {
    caches: Mutex<Vec<Weak<CatalogCache>>>,
    announce: OnceLock<mpsc::UnboundedSender<Announcement>>,
}

impl Peers {
    pub fn new() -> Arc<Peers> {
        Arc::new(Peers::default())
    }

    pub fn add(&self, cache: &Arc<CatalogCache>) {
        let mut caches = self.caches.lock().unwrap_or_else(|p| p.into_inner());
        caches.retain(|c| c.strong_count() > 0);
        caches.push(Arc::downgrade(cache));
    }

    /// Announce changes to the other replicas through `tx` (set once, when the
    /// gateway joins a cluster).
    pub fn announce_through(&self, tx: mpsc::UnboundedSender<Announcement>) {
        let _ = self.announce.set(tx);
    }

    fn live(&self) -> Vec<Arc<CatalogCache>> {
        self.caches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The catalog of `database` changed (DDL the server has run): every cache of it
    /// here is stale. With a cluster, the answer says when the other replicas have
    /// been told (or telling them failed); without one there is nobody to wait for.
    pub fn changed(&self, database: &str) -> Option<oneshot::Receiver<()>> {
        self.mark(database);
        let tx = self.announce.get()?;
        let (done, told) = oneshot::channel();
        tx.send((database.to_owned(), done)).ok()?;
        Some(told)
    }

    /// Another replica changed `database`: every cache of it here is stale.
    pub fn mark(&self, database: &str) {
        for c in self.live() {
            if c.database() == database {
                c.mark_stale();
            }
        }
    }

    /// Notices may have been missed (the listening connection was lost): every cache
    /// is read again before its next use.
    pub fn mark_all(&self) {
        for c in self.live() {
            c.mark_stale();
        }
    }

    /// Read again, in the background, every catalog that has been read at all (the
    /// statements meanwhile use the one they have). For DDL pgmoat did not see.
    pub fn refresh_loaded(&self) {
        for c in self.live() {
            if c.is_loaded() {
                tokio::spawn(async move { c.refresh().await });
            }
        }
    }

    /// Every `every`, [`Peers::refresh_loaded`], as long as the gateway runs.
    pub fn spawn_refresher(self: &Arc<Self>, every: std::time::Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { return };
                me.refresh_loaded();
            }
        });
    }
}
