//! DDL seen on one node makes every node read that database's catalog again before
//! the DDL's client hears it is done.
//!
//! Once the server has run a session's DDL, its node announces the database on
//! [`CATALOGS`] and waits (up to the cluster's deadline) until every other live node
//! has answered that it marked its caches of that database stale; only then does the
//! client get the DDL's ReadyForQuery (`catalog::peers`, `Relay::announcing`). So a
//! statement the client sends to another replica after seeing its DDL done is judged
//! over a catalog read after it. (A NOTIFY alone is not enough: Postgres delivers it
//! to the listeners after the notifying transaction has answered, and the other
//! replica may read the client's next statement first.)
//!
//! A node whose listening connection was lost may have missed notices: it marks every
//! cache stale when it listens again. A node that does not answer in time (the state
//! database away, the node dying) is logged; it sees the change at its next periodic
//! read (`limits.catalog_refresh`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Shared, StateError};
use crate::catalog::{Announcement, Peers};

/// The NOTIFY channel of catalog changes and their answers.
pub const CATALOGS: &str = "pgmoat_catalogs";

/// What travels on [`CATALOGS`], one field per line (node names come from the
/// config and ids are hex; a database name is last, so it may hold anything).
#[derive(Debug, PartialEq, Eq)]
enum Note<'a> {
    /// `node` changed `database`'s catalog; answer with `id`.
    Changed {
        node: &'a str,
        id: &'a str,
        database: &'a str,
    },
    /// `node` marked its caches stale for announcement `id`.
    Marked { node: &'a str, id: &'a str },
}

impl Note<'_> {
    fn write(&self) -> String {
        match self {
            Note::Changed { node, id, database } => format!("c\n{node}\n{id}\n{database}"),
            Note::Marked { node, id } => format!("m\n{node}\n{id}"),
        }
    }

    fn read(payload: &str) -> Option<Note<'_>> {
        let mut parts = payload.splitn(4, '\n');
        match (parts.next()?, parts.next()?, parts.next()?, parts.next()) {
            ("c", node, id, Some(database)) => Some(Note::Changed { node, id, database }),
            ("m", node, id, None) => Some(Note::Marked { node, id }),
            _ => None,
        }
    }
}

/// Announcements of this node still waiting for answers: id -> the nodes that have
/// not answered, and whom to tell when none is left.
type Waiting = Mutex<Pending>;
type Pending = HashMap<String, (HashSet<String>, oneshot::Sender<()>)>;

impl Shared {
    async fn notify_catalogs(&self, note: &Note<'_>) -> Result<(), StateError> {
        let payload = note.write();
        self.call(|c| async move {
            c.execute("SELECT pg_notify($1, $2)", &[&CATALOGS, &payload])
                .await
        })
        .await
        .map(|_| ())
    }

    /// Tell every live node that `database`'s catalog changed, and wait (within the
    /// deadline) until each has marked its caches stale.
    async fn announce_catalog(&self, waiting: &Waiting, database: &str) {
        let others: HashSet<String> = match self.nodes().await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| !n.lapsed && n.node != self.node)
                .map(|n| n.node)
                .collect(),
            Err(e) => {
                tracing::warn!(node = %self.node, %database, error = %e, "could not tell the other nodes of DDL: they see it at their next catalog refresh");
                return;
            }
        };
        if others.is_empty() {
            return;
        }
        let id = format!("{:016x}", rand::random::<u64>());
        let (done, answered) = oneshot::channel();
        lock(waiting).insert(id.clone(), (others, done));
        let note = Note::Changed {
            node: &self.node,
            id: &id,
            database,
        };
        let outcome = match self.notify_catalogs(&note).await {
            Ok(()) => tokio::time::timeout(self.timing.deadline, answered)
                .await
                .map_err(|_| "not every node answered in time".to_owned())
                .map(|_| ()),
            Err(e) => Err(e.to_string()),
        };
        if let Some((left, _)) = lock(waiting).remove(&id) {
            if let Err(e) = outcome {
                tracing::warn!(node = %self.node, %database, silent = ?left, error = %e, "other nodes did not confirm DDL: they see it at their next catalog refresh");
            }
        }
    }

    /// Carry this node's catalog changes to the others, and theirs to `peers`, for
    /// as long as `peers` lives.
    pub fn share_catalogs(self: &Arc<Self>, peers: &Arc<Peers>) {
        let waiting: Arc<Waiting> = Arc::default();
        let (announce, mut changed) = tokio::sync::mpsc::unbounded_channel::<Announcement>();
        peers.announce_through(announce);
        let me = Arc::clone(self);
        let w = Arc::clone(&waiting);
        tokio::spawn(async move {
            while let Some((database, told)) = changed.recv().await {
                // One at a time would queue every DDL's answer behind a node that
                // does not answer (up to the deadline each).
                let (me, w) = (Arc::clone(&me), Arc::clone(&w));
                tokio::spawn(async move {
                    me.announce_catalog(&w, &database).await;
                    let _ = told.send(());
                });
            }
        });
        let (tx, mut notes) = tokio::sync::mpsc::channel(256);
        self.spawn_listener_on(CATALOGS, tx);
        let peers = Arc::downgrade(peers);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(note) = notes.recv().await {
                let Some(peers) = peers.upgrade() else { return };
                let Some(payload) = note else {
                    // (Re)connected: notices may have been missed.
                    peers.mark_all();
                    continue;
                };
                match Note::read(&payload) {
                    Some(Note::Changed { node, .. }) if node == me.node => {}
                    Some(Note::Changed { id, database, .. }) => {
                        peers.mark(database);
                        // Marked: now the announcer may go on.
                        let (me, id) = (Arc::clone(&me), id.to_owned());
                        tokio::spawn(async move {
                            let note = Note::Marked {
                                node: &me.node,
                                id: &id,
                            };
                            if let Err(e) = me.notify_catalogs(&note).await {
                                tracing::debug!(error = %e, "could not confirm a catalog change");
                            }
                        });
                    }
                    Some(Note::Marked { node, id }) => {
                        let mut w = lock(&waiting);
                        if let Some((left, _)) = w.get_mut(id) {
                            left.remove(node);
                            if left.is_empty() {
                                if let Some((_, done)) = w.remove(id) {
                                    let _ = done.send(());
                                }
                            }
                        }
                    }
                    None => peers.mark_all(),
                }
            }
        });
    }
}

fn lock(w: &Waiting) -> std::sync::MutexGuard<'_, Pending> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_read_back_as_written() {
        for note in [
            Note::Changed {
                node: "gw-1",
                id: "00ff",
                database: "demo",
            },
            // A database name may hold a line break: it is the last field.
            Note::Changed {
                node: "gw-1",
                id: "00ff",
                database: "de\nmo",
            },
            Note::Marked {
                node: "gw-2",
                id: "00ff",
            },
        ] {
            assert_eq!(Note::read(&note.write()), Some(note));
        }
        assert_eq!(Note::read("x\ngw\n1"), None);
        assert_eq!(Note::read("m\ngw\n1\nextra"), None);
        assert_eq!(Note::read("no line break"), None);
    }
}
