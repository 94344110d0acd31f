//! The tamper-evident audit trail (SPEC §6).
//!
//! - [`event`]: what is recorded; [`record`]: the line format and the hash chain.
//! - [`segment`]: segment files, streaming reads, crash recovery of the tail.
//! - [`queue`]: how sessions hand encoded records to the writer.
//! - [`writer`]: the one writer thread (group commit in `fsync` mode).
//! - [`sink`] (+ `http`, `syslog`): copies to stdout, a webhook, syslog.
//! - [`track`]: a session's statements and their completions; [`rows`]: kept rows.
//! - [`verify`], [`replay`]: what `pgmoat audit verify|sessions|replay` run.
//!
//! Sessions hold an [`Audit`] (one `Arc` inside, or nothing when no `audit:` section is
//! configured, so that costs nothing) and per session a [`SessionAudit`].

mod encode;
pub mod error;
pub mod event;
mod flushes;
mod http;
pub mod http_request;
pub mod journal;
mod plan;
mod queue;
pub mod record;
pub mod replay;
pub mod rows;
pub mod segment;
pub mod sink;
pub mod ssh;
mod syslog;
pub mod time;
pub mod track;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::config::{AuditConfig, AuditDurability};
use crate::metrics::Metrics;
pub use error::{AuditError, StoreError};
pub use event::Event;
use queue::Shared;
pub use record::Head;
pub use rows::RowRecorder;
pub use track::{SessionAudit, StatementFacts, Ticket, Waiting};
use writer::{State, Writer};

/// The handle sessions and the gateway write through. Cheap to clone.
#[derive(Clone, Default)]
pub struct Audit {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    shared: Arc<Shared>,
    state: Arc<State>,
    durability: AuditDurability,
    record_rows: usize,
    dir: PathBuf,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    sinks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Audit {
    /// No audit store: every call is a no-op.
    pub fn disabled() -> Audit {
        Audit { inner: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn record_rows(&self) -> usize {
        self.inner.as_ref().map(|i| i.record_rows).unwrap_or(0)
    }

    /// Open (or create) the store, repair a torn tail, start the writer thread and the
    /// sinks. Must run inside a tokio runtime (the sinks are tasks on it).
    pub fn open(config: &AuditConfig, metrics: Arc<Metrics>) -> Result<Audit, StoreError> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let key = config
            .hmac_key
            .as_ref()
            .map(|k| k.expose().as_bytes().to_vec());
        let journaled = journal::load(&dir, key.as_deref())?;
        let mut tail = segment::recover(&dir, key.as_deref(), &journaled)?;
        journal::replay(&dir, &mut tail, &journaled)?;
        let (sinks, sink_tasks) = sink::start(&config.sinks, &metrics)?;
        let state = Arc::new(State::default());
        let shared = Arc::new(Shared::new(dir.display().to_string()));
        let opts = writer::Options {
            dir: dir.clone(),
            durability: config.durability,
            segment_bytes: config.segment_bytes,
            segment_age: config.segment_age,
            flush_interval: config.flush_interval,
            head_interval: config.head_interval,
            parallel_flushes: config.parallel_flushes,
            key,
        };
        let repair = tail.repair.clone();
        let mut w = Writer::new(
            opts,
            tail,
            Arc::clone(&state),
            Arc::clone(&shared),
            metrics,
            sinks,
        )
        .map_err(|e| StoreError::io(&dir, e))?;
        if let Some(r) = repair {
            let repair = Event::Repair {
                segment: r.segment,
                offset: r.offset,
                bytes_cut: r.bytes_cut,
                reason: r.reason,
            };
            w.write_now(None, repair)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::io(&dir, e))?;
        let thread = std::thread::Builder::new()
            .name("pgmoat-audit".into())
            .spawn(move || rt.block_on(w.run()))
            .map_err(|e| StoreError::io(&dir, e))?;
        Ok(Audit {
            inner: Some(Arc::new(Inner {
                shared,
                state,
                durability: config.durability,
                record_rows: config.record_rows,
                dir,
                thread: Mutex::new(Some(thread)),
                sinks: Mutex::new(sink_tasks),
            })),
        })
    }

    /// A fresh session id (16 hex digits).
    pub fn new_session_id() -> Arc<str> {
        Arc::from(format!("{:016x}", rand::random::<u64>()))
    }

    /// Start a session's trail: write its `session_start` record durably.
    pub async fn start_session(
        &self,
        start: event::SessionStart,
    ) -> Result<Option<SessionAudit>, AuditError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let id = Audit::new_session_id();
        self.append(Some(&id), Event::SessionStart(start)).await?;
        Ok(Some(SessionAudit::new(self.clone(), id)))
    }

    /// Append and resolve once the record is durable as the mode promises: `fsync`,
    /// after an fdatasync that covers it; `batch`, once queued (flushed within
    /// `flush_interval`). Any error means the record is not in the store.
    pub async fn append(&self, session: Option<&Arc<str>>, event: Event) -> Result<(), AuditError> {
        self.append_ref(session, &event).await
    }

    /// [`Audit::append`] of a record the caller keeps (the HTTP gateway's `decided`
    /// record is its outcome record in the making: no copy of it is made).
    pub async fn append_ref(
        &self,
        session: Option<&Arc<str>>,
        event: &Event,
    ) -> Result<(), AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        match inner.durability {
            AuditDurability::Fsync => {
                let (ack, done) = oneshot::channel();
                self.send(inner, session, event, Some(ack)).await?;
                done.await.map_err(|_| AuditError::Closed)?
            }
            AuditDurability::Batch => {
                if inner.state.failing.load(Relaxed) {
                    return Err(AuditError::Io {
                        dir: inner.dir.display().to_string(),
                        message: "writing failed and is being retried".into(),
                    });
                }
                self.send(inner, session, event, None).await
            }
        }
    }

    /// Queue a record without waiting for the disk (it still waits for queue room,
    /// never dropping a record).
    pub async fn record(&self, session: Option<&Arc<str>>, event: Event) -> Result<(), AuditError> {
        match &self.inner {
            None => Ok(()),
            Some(inner) => self.send(inner, session, &event, None).await,
        }
    }

    /// Queue a record without waiting, when the queue has room (the common case): a
    /// front door that writes one record per request saves a task per record.
    /// None: the queue is full; [`Audit::record`] waits for room.
    pub fn try_record(
        &self,
        session: Option<&Arc<str>>,
        event: &Event,
    ) -> Option<Result<(), AuditError>> {
        let Some(inner) = &self.inner else {
            return Some(Ok(()));
        };
        // Nobody waits for it: the writer picks it up with the next record somebody
        // waits for, or on its interval.
        inner
            .shared
            .try_push(session.map(|s| &**s), event, None, false)
            .ok()
    }

    /// The session encodes, the writer seals: only bytes cross threads (see
    /// [`queue`]). In fsync mode a record somebody waits for wakes the writer (the
    /// first one starts the next group commit); otherwise its interval does.
    async fn send(
        &self,
        inner: &Inner,
        session: Option<&Arc<str>>,
        event: &Event,
        ack: Option<queue::Ack>,
    ) -> Result<(), AuditError> {
        let wake = inner.durability == AuditDurability::Fsync && ack.is_some();
        inner
            .shared
            .push(session.map(|s| &**s), event, ack, wake)
            .await
    }

    /// Write and fsync everything queued so far and send the head to the sinks.
    pub async fn flush(&self) -> Result<Option<Head>, AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let (ack, done) = oneshot::channel();
        inner.shared.request_flush(true, ack)?;
        Ok(Some(done.await.map_err(|_| AuditError::Closed)??))
    }

    /// The head once everything queued so far is written and synced, without sending
    /// it to the sinks (the cluster records it in the state database every heartbeat).
    pub async fn current_head(&self) -> Result<Option<Head>, AuditError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let (ack, done) = oneshot::channel();
        inner.shared.request_flush(false, ack)?;
        Ok(Some(done.await.map_err(|_| AuditError::Closed)??))
    }

    /// Graceful shutdown: flush, export the head, let the sinks drain (a few seconds
    /// at most). Records arriving later are still written.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        match self.flush().await {
            Ok(Some(head)) => tracing::info!(head = %head, "audit store flushed"),
            Ok(None) => {}
            Err(e) => tracing::error!("audit store: final flush failed: {e}"),
        }
        inner.shared.close_sinks();
        let tasks: Vec<_> = match inner.sinks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    /// fdatasyncs so far (tests check group commit with it).
    pub fn fsyncs(&self) -> u64 {
        self.inner
            .as_ref()
            .map(|i| i.state.fsyncs.load(Relaxed))
            .unwrap_or(0)
    }

    pub fn dir(&self) -> Option<&Path> {
        self.inner.as_ref().map(|i| i.dir.as_path())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle: the writer drains, fsyncs and ends.
        self.shared.close();
        if let Ok(mut t) = self.thread.lock() {
            if let Some(t) = t.take() {
                let _ = t.join();
            }
        }
    }
}
