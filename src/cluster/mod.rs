//! Scale-out: replicas that share their control plane through a Postgres database.
//!
//! Each node keeps its sessions, its audit store and its in-flight holds to itself;
//! what must be seen by every node lives in schema `pgmoat` of the state database
//! (SPEC section 11): pending approvals and their decisions, grants, failed-login
//! counters, node heartbeats and each node's audit head. Decisions travel by
//! LISTEN/NOTIFY on [`DECISIONS`], so an approval made through any node reaches the node
//! that holds the statement at once; a node that missed notifications (its listening
//! connection dropped) re-reads the state of everything it holds when it reconnects.
//!
//! Safety does not depend on the notifications: a held statement runs only when its
//! node has read the row's state `approved` from the database, and a decision only
//! lands on a row that is still `pending` and unexpired (one conditional UPDATE), so a
//! node cut off from the state database can never run anything unapproved.
//!
//! Every call has a deadline ([`Shared::deadline`]); a database that does not answer
//! is [`StateError::Unavailable`], which callers turn into "fail closed" for approvals
//! and "carry on locally" for everything else.

pub mod approvals;
pub mod catalogs;
pub mod nodes;
pub mod schema;
pub mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

type Connection =
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// The NOTIFY channel that carries decided approval ids.
pub const DECISIONS: &str = "pgmoat_decisions";

/// Why a state-database call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not reachable, or no answer before the deadline.
    #[error("state database unavailable: {0}")]
    Unavailable(String),
    /// It answered with an error.
    #[error("state database error: {0}")]
    Db(String),
    /// The schema could not be brought to this build's version.
    #[error("state database schema: {0}")]
    Schema(String),
}

impl StateError {
    /// A row's column could not be read as the schema says: the database answered.
    fn column(e: tokio_postgres::Error) -> StateError {
        StateError::Db(e.to_string())
    }

    fn db(e: tokio_postgres::Error) -> StateError {
        if e.is_closed() || e.as_db_error().is_none() {
            StateError::Unavailable(db_message(&e))
        } else {
            StateError::Db(db_message(&e))
        }
    }
}

/// The server's message when there is one (tokio-postgres's Display says only "db error").
fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Timing of the shared control plane.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How often a node says it is alive.
    pub heartbeat: Duration,
    /// A node silent this long is gone: its pending requests are withdrawn.
    pub lapse: Duration,
    /// The most any one state-database call may take.
    pub deadline: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_secs(1),
            lapse: Duration::from_secs(5),
            deadline: Duration::from_secs(2),
        }
    }
}

/// This node's handle on the state database.
pub struct Shared {
    pub node: String,
    config: tokio_postgres::Config,
    pub timing: Timing,
    client: Mutex<Option<Arc<Client>>>,
    /// Whether this process brought the schema to its version yet.
    migrated: AtomicBool,
}

impl Shared {
    /// A handle that connects (and migrates the schema) on first use, so a node can
    /// start while the state database is away: until it is back, approvals fail
    /// closed and everything else works.
    pub fn new(node: &str, url: &str, timing: Timing) -> Result<Arc<Shared>, StateError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            StateError::Schema(format!("the state database URL does not parse: {e}"))
        })?;
        Ok(Arc::new(Shared {
            node: node.to_owned(),
            config,
            timing,
            client: Mutex::new(None),
            migrated: AtomicBool::new(false),
        }))
    }

    /// Connect, migrate the schema, and register this node: [`Shared::new`] and a first
    /// heartbeat, failing if the state database cannot be reached.
    pub async fn open(node: &str, url: &str, timing: Timing) -> Result<Arc<Shared>, StateError> {
        let shared = Shared::new(node, url, timing)?;
        shared.heartbeat(0).await?;
        Ok(shared)
    }

    /// A new connection, within the deadline; the caller drives its `Connection`.
    async fn connect(&self) -> Result<(Client, Connection), StateError> {
        tokio::time::timeout(self.timing.deadline, self.config.connect(NoTls))
            .await
            .map_err(|_| StateError::Unavailable("connect timed out".into()))?
            .map_err(StateError::db)
    }

    /// The shared client, reconnecting if the last one was closed; the first
    /// connection that works migrates the schema.
    async fn client(&self) -> Result<Arc<Client>, StateError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
        }
        *slot = None;
        let (mut client, connection) = self.connect().await?;
        let node = self.node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(%node, error = %db_message(&e), "state database connection lost");
            }
        });
        if !self.migrated.load(Ordering::Acquire) {
            tokio::time::timeout(self.timing.deadline * 5, schema::migrate(&mut client))
                .await
                .map_err(|_| StateError::Unavailable("migration timed out".into()))??;
            self.migrated.store(true, Ordering::Release);
        }
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Run one call against the state database within the deadline.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, StateError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let work = async {
            let client = self.client().await?;
            f(client).await.map_err(StateError::db)
        };
        match tokio::time::timeout(self.timing.deadline, work).await {
            Ok(r) => r,
            Err(_) => {
                // A call that hangs may be a half-open connection: start afresh next time.
                *self.client.lock().await = None;
                Err(StateError::Unavailable(
                    "no answer before the deadline".into(),
                ))
            }
        }
    }

    /// A dedicated connection that LISTENs for decisions. Its notifications (approval
    /// ids) go to `tx`; `None` is sent after every (re)connect, meaning "you may have
    /// missed some: re-read what you hold". Runs until `tx` is closed.
    pub fn spawn_listener(self: &Arc<Self>, tx: tokio::sync::mpsc::Sender<Option<String>>) {
        self.spawn_listener_on(DECISIONS, tx);
    }

    /// [`Shared::spawn_listener`] for notifications on `channel`.
    fn spawn_listener_on(
        self: &Arc<Self>,
        channel: &'static str,
        tx: tokio::sync::mpsc::Sender<Option<String>>,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if tx.is_closed() {
                    return;
                }
                if let Err(e) = me.listen_once(channel, &tx).await {
                    tracing::warn!(node = %me.node, %channel, error = %e, "state database: listening failed; retrying");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    async fn listen_once(
        &self,
        channel: &str,
        tx: &tokio::sync::mpsc::Sender<Option<String>>,
    ) -> Result<(), StateError> {
        let (client, mut connection) = self.connect().await?;
        // The connection must be polled for the LISTEN to complete and for
        // notifications to arrive: one task does both.
        let (ids_tx, mut ids_rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                let msg = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match msg {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        if ids_tx.send(n.payload().to_owned()).is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        let listening = tokio::time::timeout(
            self.timing.deadline,
            client.batch_execute(&format!("LISTEN {channel}")),
        )
        .await;
        if !matches!(listening, Ok(Ok(()))) {
            driver.abort();
            return Err(StateError::Unavailable("LISTEN failed".into()));
        }
        if tx.send(None).await.is_err() {
            driver.abort();
            return Ok(());
        }
        // A silent half-open connection would starve us of decisions: ping it each
        // heartbeat, and reconnect when it does not answer.
        let mut ping = tokio::time::interval(self.timing.heartbeat);
        loop {
            tokio::select! {
                id = ids_rx.recv() => match id {
                    Some(id) => {
                        if tx.send(Some(id)).await.is_err() {
                            driver.abort();
                            return Ok(());
                        }
                    }
                    None => return Err(StateError::Unavailable("listening connection closed".into())),
                },
                _ = ping.tick() => {
                    let alive = tokio::time::timeout(self.timing.deadline, client.simple_query("")).await;
                    if !matches!(alive, Ok(Ok(_))) {
                        driver.abort();
                        return Err(StateError::Unavailable("listening connection stopped answering".into()));
                    }
                }
            }
        }
    }
}
