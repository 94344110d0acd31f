//! The relay loop: one task per session, reading both sockets.
//!
//! Most bytes are forwarded exactly as they arrived: each read is scanned header by
//! header (no copy), and everything complete is written on in one write. Only the
//! messages pgmoat must look into are held until whole: Query, Parse and FunctionCall
//! from the client; ReadyForQuery and ParameterStatus from the server. Any other
//! message, however large, streams through as it arrives, so a 100 MB row or COPY chunk
//! costs no buffering.
//!
//! Each read goes first through the synchronous pass (`client_pass`, `server_pass`):
//! when every message in it is whole and needs no judgment, hold or awaited audit
//! record (prepared-statement cycles, the common case, with masks and an audit trail
//! too), each message gets the same per-message steps the scanners give it
//! (`client_plain`; the trail's note, the masker, `server_plain`, `ready`,
//! `answered`) and the bytes go out with no await. Otherwise nothing was touched and
//! the scanners take the read, awaiting what they must. One set of per-message
//! functions serves both, so they cannot leave different state, and masking runs the
//! same on either path.
//!
//! Where each part lives: this file owns the session's state, the select loop and the
//! socket writes; [`client`] scans client messages (judging, holds, stand-ins for
//! refusals), [`server`] scans server messages (matching answers, masking, splicing
//! pgmoat's responses in), [`approval`] waits for approvers and runs under grants,
//! and the session core ([`super::core`]) holds the protocol state both paths feed:
//! the one table of statement and portal names and the ReadyForQuery counting.
//!
//! Responses pgmoat composes itself (a refused message) must reach the client in
//! protocol order, after the results of everything sent before them. Every Query,
//! FunctionCall and Sync produces exactly one ReadyForQuery, so counting those sent and
//! seen tells where in the server's stream a composed response belongs.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

mod approval;
mod client;
mod judging;
#[cfg(test)]
mod pass_tests;
mod prepared;
mod returned;
mod server;
#[cfg(test)]
mod tests;

use super::core::Core;
use super::error::SessionError;
use super::judge::Judge;
use super::masker::Masker;
use super::params;
use super::verdict::Refusal;
use crate::metrics::Metrics;
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, parse_parameter_status};
use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};

/// Read buffers start this big and go back to it after a large message.
const BUF_START: usize = 8 * 1024;
/// An idle session keeps at most this much buffer per direction.
const BUF_KEEP: usize = 64 * 1024;
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];
/// How long a session whose client left waits for its unanswered DDL to end.
const DDL_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);
/// A Sync message, for the one pgmoat sends itself (see `Pace::client`).
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

/// What the synchronous pass did with a read.
enum Pass {
    /// Not taken: nothing was done or consumed.
    Declined,
    /// Handled and forwarded.
    Done,
    /// Handled; these bytes of it (the socket took the rest) still have to be written.
    Unsent(BytesMut),
}

/// How waiting for an approval ended.
enum Waited {
    Approved,
    Refused(Refusal),
    ClientGone,
}

/// How a session ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed its socket.
    ClientClosed,
    /// The server closed its socket (after relaying whatever it said last).
    ServerClosed,
    /// The gateway is shutting down and this session had nothing running.
    Shutdown,
    /// An operator terminated the session (admin API, console).
    Terminated,
}

/// What pgmoat does with a client message the rules do not judge.
enum Inspected {
    Forward,
    /// Answer the client with this refusal (ReadyForQuery is added in order).
    Refuse(Refusal),
}

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
    Shutdown,
}

pub struct Relay {
    client: ClientStream,
    upstream: UpstreamStream,
    cbuf: BytesMut,
    ubuf: BytesMut,
    /// Bytes still to come of a client message being streamed through.
    c_stream: usize,
    u_stream: usize,
    /// The protocol state: cycles counted, names and what they carry.
    core: Core,
    /// Stream offsets of the client and server bytes at the buffers' starts, and of
    /// the next message the core's `Pace` has not seen (a message not yet whole is scanned
    /// again when the rest arrives).
    client_offset: u64,
    client_paced: u64,
    server_offset: u64,
    server_paced: u64,
    /// Refusals pgmoat answers itself, each due right after the ReadyForQuery with
    /// that number.
    injections: VecDeque<(u64, Refusal)>,
    tx_status: u8,
    max_message: usize,
    /// Whether result messages (RowDescription, DataRow, CopyData, CommandComplete,
    /// ErrorResponse, NoticeResponse) must be held whole for [`Relay::inspect_server`].
    /// Off unless something (masking, detectors) needs them: then they stream untouched.
    hold_results: bool,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    draining: bool,
    /// The rule engine; None when no rules are configured (a pure relay).
    judge: Option<Judge>,
    guard: super::guard::SessionGuard,
    /// Refused statements whose stand-in error is still to come back from the server.
    rewrites: VecDeque<Rewrite>,
    nonce_seed: u64,
    /// Masking state, once a statement of this session was judged under masks.
    masker: Option<Masker>,
    /// The last cycle that runs DDL of this session, until its ReadyForQuery.
    ddl_cycle: Option<u64>,
    /// A statement of this session names a setting by a Bind parameter: every Bind is
    /// read whole and checked (see `prepared::setting_bind`).
    setting_binds: bool,
    /// What the session's prepared statements are known good under.
    freshness: super::stale::Freshness,
    cancel_signal: Arc<super::cancel::HoldSignal>,
    /// Server bytes to send with masked messages spliced in: a batch of rewritten
    /// rows goes out in one write, not two per row.
    staged: BytesMut,
    /// Scratch for one replaced message.
    replacement: BytesMut,
    /// The session's audit trail; None without an `audit:` section.
    audit: Option<crate::audit::SessionAudit>,
    /// `completed` records the audit queue had no room for: queued (awaiting room)
    /// before the next bytes go to the client.
    unqueued: Vec<crate::audit::Waiting>,
    /// This session's DDL is being announced to the other replicas (`cluster:`):
    /// nothing more goes to the client until they have heard (or the state database
    /// did not answer in time), so no replica can misjudge a statement the client
    /// sends after seeing the DDL done.
    announcing: Option<tokio::sync::oneshot::Receiver<()>>,
    /// The session's entry among the live sessions.
    registration: Option<super::registry::Registration>,
    /// Turns true when an operator terminates the session.
    terminate: watch::Receiver<bool>,
}

/// A refused Query or Parse is replaced, on its way to the server, by a stand-in
/// that fails at once naming a one-off identifier (`SELECT "pgmoat_blocked_..."`). The
/// server then does exactly what it does for any failed statement (aborts the
/// transaction or implicit transaction, discards extended-protocol messages up to Sync,
/// reports the true status) and pgmoat swaps the server's error for its own. The
/// refused SQL itself never reaches the server.
struct Rewrite {
    marker: String,
    refusal: Refusal,
    /// The ReadyForQuery number that closes the cycle; past it the entry is stale
    /// (an earlier error made the server skip the stand-in).
    due: u64,
}

pub struct RelayParts {
    pub client: ClientStream,
    pub upstream: UpstreamStream,
    /// Client bytes that arrived after the startup exchange.
    pub client_leftover: BytesMut,
    pub server_leftover: BytesMut,
    pub tx_status: u8,
    pub max_message: usize,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
    pub judge: Option<Judge>,
    pub guard: super::guard::SessionGuard,
    /// Notified when the client's CancelRequest arrives.
    pub cancel_signal: Arc<super::cancel::HoldSignal>,
    pub audit: Option<crate::audit::SessionAudit>,
    pub registration: Option<super::registry::Registration>,
}

fn client_io(e: std::io::Error) -> SessionError {
    SessionError::ClientIo(e)
}

fn server_io(e: std::io::Error) -> SessionError {
    SessionError::UpstreamIo(e)
}

fn ensure_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUF_START);
    }
}

/// Some when `buf` holds at least one message, every one whole, at most `limit`
/// bytes and taken by `kind`; None otherwise (an invalid header or an oversized
/// message included: the scanners report those).
fn whole_batch(buf: &[u8], direction: Direction, kind: fn(u8) -> bool, limit: usize) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let h = frame::check(&buf[pos..], direction, LARGE_MESSAGE_LIMIT).ok()??;
        if !kind(h.tag) || h.total > buf.len() - pos || h.total > limit {
            return None;
        }
        pos += h.total;
    }
    (pos > 0).then_some(())
}

/// Empty `buf`, all of it handled and `sent` bytes of it written; what is left to write.
fn unsent(buf: &mut BytesMut, sent: usize) -> Pass {
    let done = if sent < buf.len() {
        Pass::Unsent(BytesMut::from(&buf[sent..]))
    } else {
        Pass::Done
    };
    buf.clear();
    shrink(buf);
    done
}

/// After a large message, give the memory back rather than holding it while idle.
fn shrink(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > BUF_KEEP {
        *buf = BytesMut::with_capacity(BUF_START);
    }
}

impl Relay {
    pub fn new(p: RelayParts) -> Relay {
        let mut cbuf = p.client_leftover;
        cbuf.reserve(BUF_START);
        let mut ubuf = p.server_leftover;
        ubuf.reserve(BUF_START);
        let mut core = Core::default();
        if p.audit.is_some() {
            // The trail reads which request each answer belongs to from the start.
            core.expect.follow(0);
        }
        Relay {
            client: p.client,
            upstream: p.upstream,
            cbuf,
            ubuf,
            c_stream: 0,
            u_stream: 0,
            core,
            client_offset: 0,
            client_paced: 0,
            server_offset: 0,
            server_paced: 0,
            injections: VecDeque::new(),
            tx_status: p.tx_status,
            max_message: p.max_message,
            hold_results: false,
            metrics: p.metrics,
            shutdown: p.shutdown,
            draining: false,
            judge: p.judge,
            guard: p.guard,
            rewrites: VecDeque::new(),
            nonce_seed: rand::random(),
            masker: None,
            ddl_cycle: None,
            setting_binds: false,
            freshness: Default::default(),
            cancel_signal: p.cancel_signal,
            staged: BytesMut::new(),
            replacement: BytesMut::new(),
            audit: p.audit,
            unqueued: Vec::new(),
            announcing: None,
            terminate: match &p.registration {
                Some(r) => r.terminated(),
                // Nobody can terminate it: a channel whose sender is gone never
                // turns true.
                None => watch::channel(false).1,
            },
            registration: p.registration,
        }
    }

    /// Nothing in flight: no cycle unanswered, no batch open, no COPY running.
    fn idle(&self) -> bool {
        self.outstanding() == 0 && !self.core.pace.in_batch && !self.core.pace.client_copy
    }

    fn outstanding(&self) -> u64 {
        self.core.outstanding()
    }

    /// The session's audit trail, to write its `session_end`.
    pub fn take_audit(&mut self) -> Option<crate::audit::SessionAudit> {
        self.audit.take()
    }

    pub fn into_streams(self) -> (ClientStream, UpstreamStream) {
        (self.client, self.upstream)
    }

    /// The session ended (`end`) while its DDL was unanswered: the server still runs
    /// it (it reads a Terminate only after the statement before it), and may commit
    /// it. Every catalog of the database must learn of it as if the answer had come:
    /// the client's own leaving is the DDL's ReadyForQuery. So the server is told to
    /// end and, when the client left (not on shutdown), waited for until it closes
    /// (at most [`DDL_DRAIN_LIMIT`]); then the catalogs are told, as `ddl_done` does.
    pub async fn after_end(&mut self, end: &Result<End, SessionError>) {
        if self.ddl_cycle.is_none() {
            return;
        }
        let _ = self.upstream.write_all(&TERMINATE).await;
        if !matches!(end, Ok(End::Shutdown | End::Terminated)) {
            let drained = async {
                let mut scratch = BytesMut::with_capacity(BUF_START);
                while let Ok(n) = self.upstream.read_buf(&mut scratch).await {
                    if n == 0 {
                        break;
                    }
                    scratch.clear();
                }
            };
            let _ = tokio::time::timeout(DDL_DRAIN_LIMIT, drained).await;
        }
        self.ddl_done();
        self.settle_records().await;
    }

    pub async fn run(&mut self) -> Result<End, SessionError> {
        if *self.shutdown.borrow() {
            self.draining = true;
        }
        // Bytes that came in with the startup exchange are processed first.
        if !self.cbuf.is_empty() {
            if let Some(end) = self.on_client_bytes().await? {
                return Ok(end);
            }
        }
        if !self.ubuf.is_empty() {
            if let Some(end) = self.on_server_bytes().await? {
                return Ok(end);
            }
        }
        // One future for the whole session: re-creating it per loop would register and
        // unregister a waiter on every message batch. And it is polled once to register
        // the task's waker (a spawned task's waker is the same at every poll), then only
        // after the value changed: polling a registered waiter takes the channel's lock,
        // ~0.2 µs per pgbench transaction. `unconstrained`: the coop budget must not
        // turn that first poll away unregistered.
        // The same for an operator's terminate: one more atomic load per wake-up.
        let mut shutdown = self.shutdown.clone();
        let peek = self.shutdown.clone();
        let mut terminate = self.terminate.clone();
        let peek_terminate = self.terminate.clone();
        let shutdown_signal = tokio::task::coop::unconstrained(async move {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => {}
                Ok(_) = terminate.wait_for(|stop| *stop) => {}
            }
        });
        tokio::pin!(shutdown_signal);
        let mut registered = false;
        let mut stop_requested = std::future::poll_fn(move |cx| {
            if registered
                && !peek.has_changed().unwrap_or(true)
                && !peek_terminate.has_changed().unwrap_or(false)
            {
                return std::task::Poll::Pending;
            }
            registered = true;
            shutdown_signal.as_mut().poll(cx)
        });
        loop {
            if self.draining && self.idle() {
                return Ok(End::Shutdown);
            }
            ensure_room(&mut self.cbuf);
            ensure_room(&mut self.ubuf);
            let draining = self.draining;
            let event = tokio::select! {
                // Fixed order: no per-poll random draw; both sockets get served since
                // each read drains what is there.
                biased;
                r = self.upstream.read_buf(&mut self.ubuf) => Event::Server(r),
                r = self.client.read_buf(&mut self.cbuf) => Event::Client(r),
                _ = &mut stop_requested, if !draining => Event::Shutdown,
            };
            let end = match event {
                Event::Client(Ok(0)) => {
                    let _ = self.upstream.write_all(&TERMINATE).await;
                    return Ok(End::ClientClosed);
                }
                Event::Client(Ok(_)) => match self.client_pass()? {
                    Pass::Declined => self.on_client_bytes().await?,
                    Pass::Done => None,
                    Pass::Unsent(rest) => {
                        self.write_upstream(&rest).await?;
                        if self.upstream.is_tls() {
                            self.upstream.flush().await.map_err(server_io)?;
                        }
                        None
                    }
                },
                Event::Client(Err(e)) => return Err(client_io(e)),
                Event::Server(Ok(0)) => return Ok(End::ServerClosed),
                Event::Server(Ok(_)) => match self.server_pass()? {
                    Pass::Declined => self.on_server_bytes().await?,
                    Pass::Done => None,
                    Pass::Unsent(rest) => {
                        self.settle_records().await;
                        self.write_client(&rest).await?;
                        if self.client.is_tls() {
                            self.client.flush().await.map_err(client_io)?;
                        }
                        None
                    }
                },
                Event::Server(Err(e)) => return Err(server_io(e)),
                Event::Shutdown if *self.terminate.borrow() => {
                    let _ = self.upstream.write_all(&TERMINATE).await;
                    return Ok(End::Terminated);
                }
                Event::Shutdown => {
                    self.draining = true;
                    None
                }
            };
            if let Some(end) = end {
                return Ok(end);
            }
        }
    }

    async fn on_client_bytes(&mut self) -> Result<Option<End>, SessionError> {
        let mut buf = std::mem::take(&mut self.cbuf);
        let result = self.scan_client(&mut buf).await;
        shrink(&mut buf);
        self.cbuf = buf;
        result
    }

    async fn on_server_bytes(&mut self) -> Result<Option<End>, SessionError> {
        let mut buf = std::mem::take(&mut self.ubuf);
        let result = self.scan_server(&mut buf).await;
        shrink(&mut buf);
        self.ubuf = buf;
        result
    }

    /// Send a refusal now, or queue it behind the results still due.
    async fn respond(&mut self, response: Refusal) -> Result<(), SessionError> {
        if self.outstanding() == 0 {
            self.emit(response).await
        } else {
            self.injections.push_back((self.core.sent, response));
            Ok(())
        }
    }

    /// A refusal and the ReadyForQuery after it, to the client.
    async fn emit(&mut self, refusal: Refusal) -> Result<(), SessionError> {
        let mut response = BytesMut::new();
        refusal.encode(&mut response);
        backend::ready_for_query(&mut response, self.tx_status);
        self.client.write_all(&response).await.map_err(client_io)?;
        self.metrics
            .bytes_to_clients
            .fetch_add(response.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Write to the server: at once when the socket takes it all (nearly always, and
    /// then no write future is set up), the rest as the socket drains.
    async fn write_upstream(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let sent = self.upstream.send_now(bytes).map_err(server_io)?;
        if sent < bytes.len() {
            self.upstream
                .write_all(&bytes[sent..])
                .await
                .map_err(server_io)?;
        }
        Ok(())
    }

    /// Write to the client, after anything staged (so order is kept).
    async fn write_client(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        if !self.staged.is_empty() {
            self.staged.extend_from_slice(bytes);
            let r = self.client.write_all(&self.staged).await.map_err(client_io);
            self.staged.clear();
            if self.staged.capacity() > BUF_KEEP {
                self.staged = BytesMut::new();
            }
            return r;
        }
        let sent = self.client.send_now(bytes).map_err(client_io)?;
        if sent < bytes.len() {
            self.client
                .write_all(&bytes[sent..])
                .await
                .map_err(client_io)?;
        }
        Ok(())
    }
}

/// A ParameterStatus that says the session now reads SQL differently from our parser.
pub fn runtime_setting_refusal(body: &[u8]) -> Option<String> {
    let (name, value) = parse_parameter_status(body)?;
    let name = String::from_utf8_lossy(name);
    let value = String::from_utf8_lossy(value);
    let bad = match name.as_ref() {
        "standard_conforming_strings" => !value.eq_ignore_ascii_case("on"),
        "client_encoding" => !params::encoding_is_safe(&value),
        _ => false,
    };
    bad.then(|| {
        format!(
            "pgmoat: this session set {name} to {value}, so the server would read SQL differently from pgmoat's parser; the session is ended"
        )
    })
}
