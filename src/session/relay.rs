//! The relay loop: one task per session, reading both sockets.
//!
//! Most bytes are forwarded exactly as they arrived: each read is scanned header by
//! header (no copy), and everything complete is written on in one write. Only the
//! messages pgmoat must look into are held until whole: Query, Parse and FunctionCall
//! from the client; ReadyForQuery and ParameterStatus from the server. Any other
//! message, however large, streams through as it arrives, so a 100 MB row or COPY chunk
//! costs no buffering.
//!
//! Batches that nothing in the session needs to look into (prepared-statement cycles
//! with no masks, holds or audit trail) take a synchronous fast path, [`fast`].
//!
//! Responses pgmoat composes itself (a refused message) must reach the client in
//! protocol order, after the results of everything sent before them. Every Query,
//! FunctionCall and Sync produces exactly one ReadyForQuery, so counting those sent and
//! seen tells where in the server's stream a composed response belongs.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

mod fast;

use self::fast::Fast;
use super::error::SessionError;
use super::judge::{Judge, Judged};
use super::masker::{self, Masker};
use super::params;
use super::verdict::{Hold, OwnCause, Refusal, Verdict};
use crate::metrics::{BatchStats, Metrics};
use crate::net::stream::{ClientStream, UpstreamStream};
use crate::protocol::backend::{self, parse_parameter_status};
use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::frontend;
use crate::protocol::sqlstate;

/// Read buffers start this big and go back to it after a large message.
const BUF_START: usize = 8 * 1024;
/// An idle session keeps at most this much buffer per direction.
const BUF_KEEP: usize = 64 * 1024;
const TERMINATE: [u8; 5] = [b'X', 0, 0, 0, 4];
/// A Sync message, for the one pgmoat sends itself (see `Pace::client`).
const SYNC: [u8; 5] = [b'S', 0, 0, 0, 4];

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
    /// ReadyForQuery-producing messages sent upstream, and ReadyForQuerys seen back.
    sent_syncs: u64,
    seen_rfq: u64,
    /// How the server counts ReadyForQuerys, which the counts above must follow.
    pace: Pace,
    /// ReadyForQuery numbers answering Syncs pgmoat sent itself.
    swallow: VecDeque<u64>,
    /// Stream offsets of the client and server bytes at the buffers' starts, and of
    /// the next message [`Pace`] has not seen (a message not yet whole is scanned
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
    cancel_signal: Arc<super::cancel::HoldSignal>,
    /// Server bytes to send with masked messages spliced in: a batch of rewritten
    /// rows goes out in one write, not two per row.
    staged: BytesMut,
    /// Scratch for one replaced message.
    replacement: BytesMut,
    /// The session's audit trail; None without an `audit:` section.
    audit: Option<crate::audit::SessionAudit>,
    /// Prepared statements that wait for approval at their Execute.
    held: super::held::HeldStatements,
    /// Where each Parse and Close stands in its cycle, to match the server's answers.
    parses: crate::protocol::answers::Positions,
    closes: crate::protocol::answers::Positions,
}

/// What the relay must know to count ReadyForQuerys as the server sends them. Two
/// server rules break "one per Query or Sync": after an error in an extended-protocol
/// batch the server discards everything up to Sync (a Query among it included), and
/// in COPY FROM STDIN it ignores Sync. Miscounting would pair later results with the
/// wrong statements (their masks, approvals and audit records). So a Query or
/// FunctionCall inside an unsynced batch gets a Sync of pgmoat's in front (its answer
/// is kept from the client), and sequences that would need the server's outcome to
/// count are refused: messages pipelined behind a COPY, and anything but copy data,
/// Flush, CopyDone or CopyFail during one. No driver sends those (they wait for
/// CopyInResponse).
#[derive(Default)]
struct Pace {
    /// Extended-protocol messages sent since the last Sync.
    in_batch: bool,
    /// Executes in the open batch, and whether one is its last message so far.
    batch_executes: u32,
    batch_ends_with_execute: bool,
    /// The same of the batch the last Sync closed.
    synced_executes: u32,
    synced_ends_with_execute: bool,
    /// The last Query, Sync or FunctionCall sent.
    last_terminator: u8,
    /// Executes (and simple statements) the server finished in the current cycle.
    executes_done: u32,
    /// The server is in COPY FROM STDIN and the client has not ended it.
    client_copy: bool,
}

fn pipelining(what: &str) -> SessionError {
    SessionError::refused(
        sqlstate::PROTOCOL_VIOLATION,
        format!("pgmoat: {what} is not supported (the server's replies could not be matched)"),
    )
}

impl Pace {
    /// A client message, before it goes on. True: a Sync of pgmoat's must go first.
    fn client(&mut self, tag: u8) -> Result<bool, SessionError> {
        if self.client_copy {
            return match tag {
                b'd' | b'H' => Ok(false),
                b'c' | b'f' => {
                    self.client_copy = false;
                    Ok(false)
                }
                _ => Err(pipelining(
                    "a message other than copy data during COPY FROM STDIN",
                )),
            };
        }
        match tag {
            b'P' | b'B' | b'D' | b'C' => {
                self.in_batch = true;
                self.batch_ends_with_execute = false;
            }
            b'E' => {
                self.in_batch = true;
                self.batch_executes += 1;
                self.batch_ends_with_execute = true;
            }
            b'S' => self.synced(),
            b'Q' | b'F' if self.in_batch => {
                self.synced();
                self.last_terminator = tag;
                return Ok(true);
            }
            b'Q' | b'F' => self.last_terminator = tag,
            _ => {}
        }
        Ok(false)
    }

    fn synced(&mut self) {
        self.synced_executes = std::mem::take(&mut self.batch_executes);
        self.synced_ends_with_execute = std::mem::take(&mut self.batch_ends_with_execute);
        self.in_batch = false;
        self.last_terminator = b'S';
    }

    /// CopyInResponse. Whether the Sync that closed the COPY's batch was already sent
    /// (the server ignores it); an error when other messages are queued behind the COPY.
    fn copy_in_started(&mut self, outstanding: u64) -> Result<bool, SessionError> {
        let behind = || Err(pipelining("pipelining messages behind COPY FROM STDIN"));
        let ignored = match outstanding {
            // `P B E H`: the COPY's batch is still open.
            0 if self.batch_ends_with_execute && self.executes_done + 1 == self.batch_executes => {
                false
            }
            1 if self.in_batch => return behind(),
            // A Query's COPY: its ReadyForQuery comes after the copy.
            1 if self.last_terminator == b'Q' => false,
            // `P B E S`, as tokio-postgres and libpq send it.
            1 if self.last_terminator == b'S'
                && self.synced_ends_with_execute
                && self.executes_done + 1 == self.synced_executes =>
            {
                true
            }
            _ => return behind(),
        };
        self.client_copy = true;
        Ok(ignored)
    }
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
        Relay {
            client: p.client,
            upstream: p.upstream,
            cbuf,
            ubuf,
            c_stream: 0,
            u_stream: 0,
            sent_syncs: 0,
            pace: Pace::default(),
            swallow: VecDeque::new(),
            client_offset: 0,
            client_paced: 0,
            server_offset: 0,
            server_paced: 0,
            seen_rfq: 0,
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
            cancel_signal: p.cancel_signal,
            staged: BytesMut::new(),
            replacement: BytesMut::new(),
            audit: p.audit,
            held: Default::default(),
            parses: Default::default(),
            closes: Default::default(),
        }
    }

    /// Nothing in flight: no cycle unanswered, no batch open, no COPY running.
    fn idle(&self) -> bool {
        self.outstanding() == 0 && !self.pace.in_batch && !self.pace.client_copy
    }

    fn outstanding(&self) -> u64 {
        self.sent_syncs.saturating_sub(self.seen_rfq)
    }

    /// The session's audit trail, to write its `session_end`.
    pub fn take_audit(&mut self) -> Option<crate::audit::SessionAudit> {
        self.audit.take()
    }

    pub fn into_streams(self) -> (ClientStream, UpstreamStream) {
        (self.client, self.upstream)
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
        let mut shutdown = self.shutdown.clone();
        let peek = self.shutdown.clone();
        let shutdown_signal = tokio::task::coop::unconstrained(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
        tokio::pin!(shutdown_signal);
        let mut registered = false;
        let mut stop_requested = std::future::poll_fn(move |cx| {
            if registered && !peek.has_changed().unwrap_or(true) {
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
                Event::Client(Ok(_)) => match self.client_fast()? {
                    Fast::Declined => self.on_client_bytes().await?,
                    Fast::Done => None,
                    Fast::Unsent(rest) => {
                        self.write_upstream(&rest).await?;
                        if self.upstream.is_tls() {
                            self.upstream.flush().await.map_err(server_io)?;
                        }
                        None
                    }
                },
                Event::Client(Err(e)) => return Err(client_io(e)),
                Event::Server(Ok(0)) => return Ok(End::ServerClosed),
                Event::Server(Ok(_)) => match self.server_fast()? {
                    Fast::Declined => self.on_server_bytes().await?,
                    Fast::Done => None,
                    Fast::Unsent(rest) => {
                        self.write_client(&rest).await?;
                        if self.client.is_tls() {
                            self.client.flush().await.map_err(client_io)?;
                        }
                        None
                    }
                },
                Event::Server(Err(e)) => return Err(server_io(e)),
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

    /// Look at each client message in `buf`; forward, hold or refuse it.
    async fn scan_client(&mut self, buf: &mut BytesMut) -> Result<Option<End>, SessionError> {
        let mut stats = BatchStats::default();
        let mut pos = 0;
        let mut fwd = 0;
        let mut end = None;
        while pos < buf.len() {
            if self.c_stream > 0 {
                let n = self.c_stream.min(buf.len() - pos);
                pos += n;
                self.c_stream -= n;
                continue;
            }
            let Some(h) = frame::check(&buf[pos..], Direction::Frontend, LARGE_MESSAGE_LIMIT)?
            else {
                break;
            };
            let have = buf.len() - pos;
            if matches!(h.tag, b'Q' | b'P' | b'F' | b'E') {
                self.guard.check()?;
            }
            let at = self.client_offset + pos as u64;
            if at >= self.client_paced {
                self.client_paced = at + 1;
                if self.pace.client(h.tag)? {
                    // A Query or FunctionCall inside an unsynced batch: after an error
                    // in the batch the server would discard it, unanswered. pgmoat
                    // ends the batch with a Sync of its own first (pgjdbc sends
                    // `P B E` BEGIN then `Q` SAVEPOINT) and keeps that answer.
                    self.write_upstream(&buf[fwd..pos]).await?;
                    fwd = pos;
                    self.write_upstream(&SYNC).await?;
                    self.sent_syncs += 1;
                    if let Some(m) = &mut self.masker {
                        m.on_client(&SYNC);
                    }
                    self.swallow.push_back(self.sent_syncs);
                }
            }
            match h.tag {
                b'Q' | b'P' | b'F' => {
                    if !self.held_whole(h.tag, h.total, have, buf)? {
                        break;
                    }
                    let mut statement = 0;
                    if h.tag != b'F' {
                        let mut judged = self.judge_message(&buf[pos..pos + h.total]).await;
                        let msg = &buf[pos..pos + h.total];
                        let cycle = self.sent_syncs + 1;
                        let at = if h.tag == b'P' {
                            self.parses.sent(cycle)
                        } else {
                            0
                        };
                        if let Some(a) = self.audit.as_mut() {
                            // Durable before it is forwarded; if it cannot be, it does not run.
                            let parse_at = (h.tag == b'P').then_some((cycle, at));
                            match a
                                .decided(msg, std::mem::take(&mut judged.facts), parse_at)
                                .await
                            {
                                Ok(n) => statement = n,
                                Err(e) => judged.verdict.refuse(audit_refusal(&e)),
                            }
                        }
                        self.track_masking(msg, &judged, cycle, at);
                        if h.tag == b'P' {
                            // A prepared statement waits at its Execute, where its
                            // parameters are known; parsing it runs nothing.
                            let hold = judged.verdict.take_hold();
                            if !self.held.on_parse(&msg[5..], hold, cycle, at) {
                                judged.verdict.refuse(too_many_held("statements"));
                                self.held.on_parse(&msg[5..], None, cycle, at);
                            }
                        }
                        let grant = match &judged.verdict {
                            Verdict::Hold(hold, _) => self.granted(hold),
                            _ => None,
                        };
                        if let Some(g) = grant {
                            judged.verdict.take_hold();
                            if let Some(r) = self.run_under_grant(&g, statement).await {
                                judged.verdict.refuse(r);
                            }
                        }
                        if let Some(hold) = judged.verdict.take_hold() {
                            // Everything before it goes now; the statement waits.
                            self.write_upstream(&buf[fwd..pos]).await?;
                            self.upstream.flush().await.map_err(server_io)?;
                            fwd = pos;
                            match self
                                .wait_for_approval(Arc::new(hold), Vec::new(), statement, buf)
                                .await?
                            {
                                Waited::Approved => {}
                                Waited::Refused(r) => judged.verdict.refuse(r),
                                Waited::ClientGone => {
                                    let _ = self.upstream.write_all(&TERMINATE).await;
                                    return Ok(Some(End::ClientClosed));
                                }
                            }
                        }
                        if let Verdict::Refuse(refusal) = judged.verdict {
                            self.write_upstream(&buf[fwd..pos]).await?;
                            self.substitute(&buf[pos..pos + h.total], refusal).await?;
                            if h.tag == b'Q' {
                                stats.queries_simple += 1;
                                if let Some(a) = self.audit.as_mut() {
                                    a.query_sent(statement, self.sent_syncs, true);
                                }
                            }
                            pos += h.total;
                            fwd = pos;
                            continue;
                        }
                    }
                    match self.inspect_client(&buf[pos..pos + h.total]) {
                        Inspected::Forward => {
                            match h.tag {
                                b'Q' => {
                                    stats.queries_simple += 1;
                                    self.sent_syncs += 1;
                                    if let Some(a) = self.audit.as_mut() {
                                        a.query_sent(statement, self.sent_syncs, false);
                                    }
                                }
                                b'F' => self.sent_syncs += 1,
                                _ => {}
                            }
                            pos += h.total;
                        }
                        Inspected::Refuse(response) => {
                            self.write_upstream(&buf[fwd..pos]).await?;
                            pos += h.total;
                            fwd = pos;
                            self.respond(response).await?;
                        }
                    }
                    continue;
                }
                b'B' | b'D' | b'E' | b'C'
                    if self.masker.is_some()
                        || self.held.active()
                        || self.judge.as_ref().is_some_and(|j| j.has_prepared_holds()) =>
                {
                    // Masking and approvals follow statements into portals: these are
                    // read whole.
                    if !self.held_whole(h.tag, h.total, have, buf)? {
                        break;
                    }
                    let body = &buf[pos + 5..pos + h.total];
                    let mut refused = None;
                    match h.tag {
                        b'B' => {
                            let judge = self.judge.as_ref();
                            let sql_hold = |name: &[u8]| judge.and_then(|j| j.bind_hold(name));
                            if !self.held.on_bind(body, self.sent_syncs + 1, sql_hold) {
                                refused = Some(too_many_held("portals"));
                            }
                        }
                        b'D' => self.held.on_describe(body, self.sent_syncs + 1),
                        b'C' => {
                            let cycle = self.sent_syncs + 1;
                            let at = self.closes.sent(cycle);
                            self.held.on_close(body, cycle, at);
                        }
                        _ => {
                            stats.queries_extended += 1;
                            if let Some(ex) = self.held.on_execute(body) {
                                if let Some(g) = self.granted(&ex.hold) {
                                    let statement = self
                                        .audit
                                        .as_ref()
                                        .map(|a| a.statement_of_execute(body))
                                        .unwrap_or(0);
                                    refused = self.run_under_grant(&g, statement).await;
                                } else {
                                    // Everything before it goes now; the Execute waits.
                                    self.write_upstream(&buf[fwd..pos]).await?;
                                    self.upstream.flush().await.map_err(server_io)?;
                                    fwd = pos;
                                    let statement = self
                                        .audit
                                        .as_ref()
                                        .map(|a| a.statement_of_execute(body))
                                        .unwrap_or(0);
                                    match self
                                        .wait_for_approval(ex.hold, ex.params, statement, buf)
                                        .await?
                                    {
                                        Waited::Approved => {}
                                        Waited::Refused(r) => refused = Some(r),
                                        Waited::ClientGone => {
                                            let _ = self.upstream.write_all(&TERMINATE).await;
                                            return Ok(Some(End::ClientClosed));
                                        }
                                    }
                                }
                            }
                        }
                    }
                    self.audit_client(h.tag, &buf[pos + 5..pos + h.total], refused.is_some());
                    if let Some(m) = &mut self.masker {
                        m.on_client(&buf[pos..pos + h.total]);
                    }
                    if let Some(r) = refused {
                        self.write_upstream(&buf[fwd..pos]).await?;
                        self.substitute(&buf[pos..pos + h.total], r).await?;
                        pos += h.total;
                        fwd = pos;
                        continue;
                    }
                    pos += h.total;
                    continue;
                }
                // (A Sync during COPY FROM STDIN never gets here: Pace refuses it.)
                b'S' => {
                    self.sent_syncs += 1;
                    if let Some(m) = &mut self.masker {
                        m.on_client(&[b'S', 0, 0, 0, 4]);
                    }
                }
                b'E' => {
                    stats.queries_extended += 1;
                    self.audit_client(h.tag, &buf[pos + 5..pos + h.total.min(have)], false);
                }
                b'B' => self.audit_client(h.tag, &buf[pos + 5..pos + h.total.min(have)], false),
                b'C' => {
                    self.closes.sent(self.sent_syncs + 1);
                }
                b'X' => {
                    pos += have.min(h.total);
                    end = Some(End::ClientTerminated);
                    break;
                }
                _ => {}
            }
            let n = h.total.min(have);
            pos += n;
            self.c_stream = h.total - n;
        }
        stats.bytes_from_client = pos as u64;
        if fwd < pos {
            self.write_upstream(&buf[fwd..pos]).await?;
        }
        buf.advance(pos);
        self.client_offset += pos as u64;
        // Plain TCP has nothing to flush; TLS may hold a record back.
        if self.upstream.is_tls() {
            self.upstream.flush().await.map_err(server_io)?;
        }
        if self.client.is_tls() {
            self.client.flush().await.map_err(client_io)?;
        }
        self.metrics.add(&stats);
        Ok(end)
    }

    /// Hold a statement until an approver decides, it expires, or the client cancels
    /// or leaves. Client bytes that arrive meanwhile are kept in `buf` for later.
    async fn wait_for_approval(
        &mut self,
        hold: Arc<Hold>,
        params: Vec<String>,
        statement: u64,
        buf: &mut BytesMut,
    ) -> Result<Waited, SessionError> {
        let (name, groups, target) = match &self.judge {
            Some(j) => (
                j.identity.name.clone(),
                j.identity.groups.clone(),
                j.target.clone(),
            ),
            None => return Ok(Waited::Approved),
        };
        // Waiting starts before the request is listed: a cancel sent as soon as the
        // request shows (in the API, or the notice below) must withdraw it, not go
        // to the server, which has nothing running to cancel.
        let signal = Arc::clone(&self.cancel_signal);
        signal.waiting(true);
        let mut ticket = hold.approvals.request(
            &name,
            &groups,
            &target,
            &hold.sql,
            params,
            &hold.rule,
            &hold.approvers,
        );
        let id = ticket.request.id.clone();
        tracing::info!(identity = %name, %target, rule = %hold.rule, approval = %id, "statement held for approval");
        use crate::audit::event::ApprovalState;
        if let Some(a) = &self.audit {
            if let Err(e) = a
                .approval(&id, statement, ApprovalState::Requested, None, None, None)
                .await
            {
                // Fail closed: a hold the trail does not show is not offered.
                signal.waiting(false);
                return Ok(Waited::Refused(audit_refusal(&e)));
            }
        }
        let mut notice = BytesMut::new();
        backend::notice_response(
            &mut notice,
            "00000",
            &format!("pgmoat: waiting for approval {id} (rule \"{}\")", hold.rule),
        );
        let sent = async {
            self.client.write_all(&notice).await?;
            self.client.flush().await
        };
        if let Err(e) = sent.await {
            signal.waiting(false);
            return Err(client_io(e));
        }
        let mut shutdown = self.shutdown.clone();
        let refuse = |code: &'static str, message: String, detail: Option<String>| {
            Waited::Refused(Refusal::rule(hold.rule.clone(), code, message).with_detail(detail))
        };
        let mut grant_until = None;
        let waited = loop {
            tokio::select! {
                r = ticket.wait() => {
                    use crate::approval::Resolution;
                    break match r {
                        Resolution::Approved { by, reason, grant_until: until } => {
                            tracing::info!(approval = %id, %by, "approved");
                            grant_until = until.map(crate::approval::format_time);
                            (ApprovalState::Approved, Some(by), Some(reason), Waited::Approved)
                        }
                        Resolution::Denied { by, reason } => (ApprovalState::Denied, Some(by.clone()), Some(reason.clone()), refuse(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            if reason.is_empty() {
                                format!("pgmoat: approval {id} denied by {by}")
                            } else {
                                format!("pgmoat: approval {id} denied by {by}: {reason}")
                            },
                            Some(format!("rule \"{}\"", hold.rule)),
                        )),
                        Resolution::Expired => (ApprovalState::Expired, None, None, refuse(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            format!("pgmoat: approval {id} timed out: nobody approved the statement in time"),
                            Some(format!("rule \"{}\"", hold.rule)),
                        )),
                        Resolution::Withdrawn => (ApprovalState::Withdrawn, None, None, refuse(
                            sqlstate::QUERY_CANCELED,
                            "canceling statement due to user request".into(),
                            None,
                        )),
                    };
                }
                _ = signal.cancelled() => {
                    break (ApprovalState::Withdrawn, None, Some("cancelled by the client".to_string()), refuse(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to user request".into(),
                        Some(format!("pgmoat withdrew approval request {id}")),
                    ));
                }
                n = self.client.read_buf(buf) => match n {
                    Ok(0) | Err(_) => break (ApprovalState::Withdrawn, None, Some("the client disconnected".to_string()), Waited::ClientGone),
                    Ok(_) => {}
                },
                _ = shutdown.wait_for(|s| *s) => {
                    break (ApprovalState::Withdrawn, None, Some("gateway shutting down".to_string()), refuse(
                        sqlstate::ADMIN_SHUTDOWN,
                        format!("pgmoat: the gateway is shutting down; approval {id} withdrawn"),
                        None,
                    ));
                }
            }
        };
        signal.waiting(false);
        drop(ticket);
        let (state, by, reason, outcome) = waited;
        if let Some(a) = &self.audit {
            if let Err(e) = a
                .approval(
                    &id,
                    statement,
                    state,
                    by,
                    reason.filter(|r| !r.is_empty()),
                    grant_until,
                )
                .await
            {
                tracing::error!(approval = %id, "audit: approval outcome not recorded: {e}");
                if matches!(outcome, Waited::Approved) {
                    return Ok(Waited::Refused(audit_refusal(&e)));
                }
            }
        }
        Ok(outcome)
    }

    /// A held statement runs under a grant: the trail records whose approval covers
    /// it (and the statement does not run if that record cannot be written).
    async fn run_under_grant(
        &mut self,
        g: &crate::approval::Grant,
        statement: u64,
    ) -> Option<Refusal> {
        tracing::info!(rule = %g.rule, by = %g.by, approval = %g.approval, "statement runs under an approval grant");
        let a = self.audit.as_ref()?;
        let until = crate::approval::format_time(g.expires_at);
        a.approval(
            &g.approval,
            statement,
            crate::audit::event::ApprovalState::Approved,
            Some(g.by.clone()),
            Some(format!(
                "under the grant of approval {} until {until}",
                g.approval
            )),
            Some(until),
        )
        .await
        .err()
        .map(|e| audit_refusal(&e))
    }

    /// A grant in force for a held statement (approved `for` a while, perhaps from
    /// another session), by the statement's shape.
    fn granted(&self, hold: &Hold) -> Option<crate::approval::Grant> {
        let j = self.judge.as_ref()?;
        let fingerprint = crate::classify::shape_key(&hold.sql).unwrap_or_else(|| hold.sql.clone());
        hold.approvals
            .granted(&j.identity.name, &j.target, &fingerprint)
    }

    /// A client message pgmoat reads whole: refused when over the limit; false (with
    /// room reserved) while the rest of it has not arrived.
    fn held_whole(
        &self,
        tag: u8,
        total: usize,
        have: usize,
        buf: &mut BytesMut,
    ) -> Result<bool, SessionError> {
        if total > self.max_message {
            return Err(SessionError::Protocol(format!(
                "message of type '{}' is too long ({total} bytes, at most {})",
                tag as char, self.max_message
            )));
        }
        if have < total {
            buf.reserve(total - have);
            return Ok(false);
        }
        Ok(true)
    }

    /// Keep the masking state in step with a judged Query or Parse.
    /// `cycle` and `at`: where a Parse stands, to match its ParseComplete.
    fn track_masking(&mut self, msg: &[u8], judged: &Judged, cycle: u64, at: u64) {
        if let Some(engine) = &judged.masking {
            match &mut self.masker {
                Some(m) => {
                    if !Arc::ptr_eq(&m.engine, engine) {
                        m.engine = Arc::clone(engine);
                    }
                }
                None => {
                    let mut m = Masker::new(Arc::clone(engine));
                    // Answers still due for earlier messages (a refused statement's
                    // stand-in) end with ReadyForQuerys this masker must not take
                    // for this message's.
                    m.cycles_pending(self.outstanding());
                    self.masker = Some(m);
                    self.hold_results = true;
                }
            }
        }
        let Some(m) = &mut self.masker else { return };
        // A refused statement's stand-in yields an error and no rows.
        let (lineage, writes) = match judged.verdict.plan() {
            Some(plan) => (
                plan.lineage.as_deref().map(Vec::as_slice),
                plan.writes_masked,
            ),
            None => (None, 0),
        };
        if msg[0] == b'Q' {
            m.on_query(lineage, judged.statements, writes);
        } else {
            let name = frontend::Parse::name(&msg[5..]).unwrap_or_default();
            m.on_parse(&String::from_utf8_lossy(name), lineage, writes, cycle, at);
        }
    }

    /// Classify and decide a Query or Parse; a refusal when it must not run.
    async fn judge_message(&self, msg: &[u8]) -> Judged {
        let Some(judge) = self.judge.as_ref() else {
            let mut judged = Judged::allowed(None, 1);
            judged.facts = crate::audit::StatementFacts::unjudged();
            return judged;
        };
        let Ok(sql) = frontend::sql_of(msg[0], &msg[5..]) else {
            // A Query or Parse that is not what its tag says: refuse rather than guess.
            return Judged::refused(Refusal::own(
                OwnCause::Malformed,
                sqlstate::PROTOCOL_VIOLATION,
                "pgmoat: malformed message",
            ));
        };
        let mut judged = judge.judge(sql).await;
        if msg[0] == b'Q' && matches!(judged.verdict, Verdict::Allow(_)) {
            // SQL's EXECUTE and Parse share the server's namespace: an EXECUTE of a
            // held Parse's name runs that statement, and asks.
            let hold = judged
                .executes
                .iter()
                .find_map(|n| self.held.statement_hold(n.as_bytes()))
                .map(|held| Hold {
                    sql: format!("{}\n-- runs: {}", String::from_utf8_lossy(sql), held.sql),
                    ..(*held).clone()
                });
            if let Some(hold) = hold {
                judged.facts.action = crate::policy::Action::Approve;
                judged.facts.rules.insert(0, hold.rule.clone());
                judged.verdict.hold(hold);
            }
        }
        judged
    }

    /// Bind and Execute tell the audit trail which statement a completion belongs to
    /// (only their start is needed: portal and statement names).
    fn audit_client(&mut self, tag: u8, body: &[u8], refused: bool) {
        if let Some(a) = self.audit.as_mut() {
            match tag {
                b'B' => a.bind(body),
                b'E' => a.execute(body, self.sent_syncs + 1, refused),
                _ => {}
            }
        }
    }

    /// Send the stand-in for a refused Query, Parse or Execute and remember whose error
    /// it is.
    async fn substitute(&mut self, msg: &[u8], refusal: Refusal) -> Result<(), SessionError> {
        self.nonce_seed = self
            .nonce_seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let marker = format!("pgmoat_blocked_{:016x}", self.nonce_seed);
        let stand_in = format!("SELECT \"{marker}\"");
        let mut out = BytesMut::new();
        let due = if msg[0] == b'Q' {
            postgres_protocol::message::frontend::query(&stand_in, &mut out).map_err(server_io)?;
            self.sent_syncs += 1;
            self.sent_syncs
        } else if msg[0] == b'B' {
            // A refused Bind: binding a statement that does not exist fails at once.
            out.extend_from_slice(&[b'B', 0, 0, 0, 0, 0]);
            out.extend_from_slice(marker.as_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
            let len = (out.len() - 1) as u32;
            out[1..5].copy_from_slice(&len.to_be_bytes());
            self.sent_syncs + 1
        } else if msg[0] == b'E' {
            // A refused Execute: running a portal that does not exist fails at once,
            // and the server discards to Sync as for any error.
            postgres_protocol::message::frontend::execute(&marker, 0, &mut out)
                .map_err(server_io)?;
            self.sent_syncs + 1
        } else {
            let name = frontend::Parse::name(&msg[5..]).unwrap_or_default();
            let name = std::str::from_utf8(name).unwrap_or("");
            postgres_protocol::message::frontend::parse(
                name,
                &stand_in,
                std::iter::empty(),
                &mut out,
            )
            .map_err(server_io)?;
            self.sent_syncs + 1
        };
        self.write_upstream(&out).await?;
        self.metrics
            .messages_blocked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(j) = &self.judge {
            tracing::info!(identity = %j.identity.name, target = %j.target, rule = %refusal.cause, "statement blocked");
        }
        self.rewrites.push_back(Rewrite {
            marker,
            refusal,
            due,
        });
        Ok(())
    }

    /// The interception point for whole client messages the rules do not judge.
    fn inspect_client(&mut self, msg: &[u8]) -> Inspected {
        match msg[0] {
            b'F' => {
                self.metrics
                    .messages_blocked
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Inspected::Refuse(
                    Refusal::own(
                        OwnCause::FunctionCall,
                        sqlstate::INSUFFICIENT_PRIVILEGE,
                        "pgmoat: FunctionCall messages are blocked",
                    )
                    .with_detail(Some(
                        "The fast-path interface calls a function by OID with no SQL, so no rule could judge it.".into(),
                    )),
                )
            }
            _ => Inspected::Forward,
        }
    }

    /// Send a refusal now, or queue it behind the results still due.
    async fn respond(&mut self, response: Refusal) -> Result<(), SessionError> {
        if self.outstanding() == 0 {
            self.emit(response).await
        } else {
            self.injections.push_back((self.sent_syncs, response));
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

    /// The interception point for whole result messages: masking. `before` is the
    /// unchanged stretch of server bytes that precedes `msg`; when `msg` is replaced,
    /// both are staged and true is returned.
    fn inspect_server(&mut self, before: &[u8], msg: &[u8]) -> bool {
        let Some(m) = &mut self.masker else {
            return false;
        };
        // The replacement is built apart: copying `before` only when a message is
        // replaced keeps a batch of untouched rows linear, not quadratic.
        self.replacement.clear();
        let replaced = match m.on_server(msg, &mut self.replacement) {
            masker::Action::Replaced => {
                self.staged.extend_from_slice(before);
                self.staged.extend_from_slice(&self.replacement);
                true
            }
            masker::Action::Forward => false,
        };
        // Kept rows for replay: exactly what the client gets, after masking.
        if let Some(a) = self.audit.as_mut() {
            if replaced {
                a.record_result_message(&self.replacement);
            } else {
                a.record_result_message(msg);
            }
        }
        replaced
    }

    /// Look at each server message in `buf` and forward it.
    async fn scan_server(&mut self, buf: &mut BytesMut) -> Result<Option<End>, SessionError> {
        let mut stats = BatchStats::default();
        let mut pos = 0;
        let mut fwd = 0;
        let mut end = None;
        while pos < buf.len() {
            if self.u_stream > 0 {
                let n = self.u_stream.min(buf.len() - pos);
                pos += n;
                self.u_stream -= n;
                continue;
            }
            let Some(h) = frame::check(&buf[pos..], Direction::Backend, LARGE_MESSAGE_LIMIT)
                .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?
            else {
                break;
            };
            let have = buf.len() - pos;
            let at = self.server_offset + pos as u64;
            let first_look = at >= self.server_paced;
            self.server_paced = self.server_paced.max(at + 1);
            match h.tag {
                _ if !first_look => {}
                b'C' | b's' | b'I' => self.pace.executes_done += 1,
                // The Sync sent behind the COPY's Execute is ignored by the server in
                // copy mode: the one after CopyDone is answered.
                b'G' if self.pace.copy_in_started(self.outstanding())? => {
                    self.sent_syncs -= 1;
                    if let Some(m) = &mut self.masker {
                        m.sync_ignored();
                    }
                }
                // The server left copy mode (the data failed): Syncs count again.
                b'E' => self.pace.client_copy = false,
                b'Z' => self.pace.executes_done = 0,
                _ => {}
            }
            let unmasked = self.masker.is_none();
            if let Some(a) = self.audit.as_mut() {
                // Completions (small messages) are held whole and matched to statements;
                // rows too while some are kept and no masker rewrites them (with one,
                // inspect_server records them after masking).
                if a.wants(h.tag) || (unmasked && a.wants_rows(h.tag)) {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    let msg = &buf[pos..pos + h.total];
                    if unmasked {
                        a.record_result_message(msg);
                    }
                    if let Err(e) = a.server_message(msg).await {
                        tracing::error!("audit: a statement's completion was not recorded: {e}");
                    }
                }
            }
            match h.tag {
                b'Z' | b'S' => {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    let body = &buf[pos + 5..pos + h.total];
                    if h.tag == b'S' {
                        if let Some(refusal) = runtime_setting_refusal(body) {
                            self.write_client(&buf[fwd..pos]).await?;
                            buf.advance(pos);
                            return Err(SessionError::Refused {
                                code: sqlstate::INSUFFICIENT_PRIVILEGE,
                                message: refusal,
                                detail: None,
                            });
                        }
                        // A reported setting (application_name) carries whatever text
                        // a statement set: the detectors see it like a result.
                        if self.hold_results
                            && self.inspect_server(&buf[fwd..pos], &buf[pos..pos + h.total])
                        {
                            fwd = pos + h.total;
                        }
                        pos += h.total;
                        continue;
                    }
                    self.tx_status = body.first().copied().unwrap_or(b'I');
                    self.seen_rfq += 1;
                    if let Some(m) = &mut self.masker {
                        let mut none = BytesMut::new();
                        m.on_server(&buf[pos..pos + h.total], &mut none);
                        m.cycle_ended(self.seen_rfq);
                    }
                    let seen = self.seen_rfq;
                    self.rewrites.retain(|r| r.due > seen);
                    self.held.on_ready(seen, self.tx_status);
                    if let Some(a) = self.audit.as_mut() {
                        a.cycle_ended(seen);
                    }
                    if self.swallow.front() == Some(&seen) {
                        // The answer to pgmoat's own Sync (see `Pace::client`): not
                        // the client's to see.
                        self.swallow.pop_front();
                        self.write_client(&buf[fwd..pos]).await?;
                        fwd = pos + h.total;
                    }
                    pos += h.total;
                    while self
                        .injections
                        .front()
                        .is_some_and(|(at, _)| *at == self.seen_rfq)
                    {
                        self.write_client(&buf[fwd..pos]).await?;
                        fwd = pos;
                        if let Some((_, response)) = self.injections.pop_front() {
                            self.emit(response).await?;
                        }
                    }
                    if self.draining && self.idle() {
                        end = Some(End::Shutdown);
                        break;
                    }
                    continue;
                }
                b't' if self.held.active() => {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    self.held
                        .on_parameter_description(&buf[pos + 5..pos + h.total], self.seen_rfq + 1);
                    pos += h.total;
                    continue;
                }
                b'E' if !self.rewrites.is_empty() => {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    stats.server_errors += 1;
                    let fields =
                        crate::protocol::backend::parse_fields(&buf[pos + 5..pos + h.total]);
                    let message = crate::protocol::backend::field(&fields, b'M');
                    let ours = self
                        .rewrites
                        .iter()
                        .position(|r| message.contains(&r.marker));
                    if let Some(i) = ours {
                        if let Some(m) = &mut self.masker {
                            // Only for its bookkeeping: the response is pgmoat's own.
                            let mut ignored = BytesMut::new();
                            m.on_server(&buf[pos..pos + h.total], &mut ignored);
                        }
                        self.write_client(&buf[fwd..pos]).await?;
                        if let Some(r) = self.rewrites.remove(i) {
                            let mut response = BytesMut::new();
                            r.refusal.encode(&mut response);
                            self.write_client(&response).await?;
                        }
                        pos += h.total;
                        fwd = pos;
                    } else if self.hold_results {
                        if self.inspect_server(&buf[fwd..pos], &buf[pos..pos + h.total]) {
                            fwd = pos + h.total;
                        }
                        pos += h.total;
                    } else {
                        pos += h.total;
                    }
                    continue;
                }
                b'T' | b'D' | b'd' | b'C' | b'E' | b'N' | b'n' | b's' | b'I' | b'A'
                    if self.hold_results =>
                {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    if h.tag == b'E' {
                        stats.server_errors += 1;
                    }
                    if self.inspect_server(&buf[fwd..pos], &buf[pos..pos + h.total]) {
                        fwd = pos + h.total;
                    }
                    pos += h.total;
                    continue;
                }
                b'E' => stats.server_errors += 1,
                b'1' => {
                    let cycle = self.seen_rfq + 1;
                    let at = self.parses.seen(cycle);
                    self.held.on_parse_complete(cycle, at);
                    if let Some(m) = &mut self.masker {
                        m.on_parse_complete(cycle, at);
                    }
                    if let Some(a) = self.audit.as_mut() {
                        a.parse_complete(cycle, at);
                    }
                }
                b'2' => {
                    if let Some(m) = &mut self.masker {
                        m.on_bind_complete();
                    }
                }
                b'3' => {
                    let cycle = self.seen_rfq + 1;
                    let at = self.closes.seen(cycle);
                    self.held.on_close_complete(cycle, at);
                }
                _ => {}
            }
            let n = h.total.min(have);
            pos += n;
            self.u_stream = h.total - n;
        }
        stats.bytes_to_client = pos as u64;
        if let Some(m) = &mut self.masker {
            let n = std::mem::take(&mut m.masked_values);
            if n > 0 {
                self.metrics
                    .values_masked
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.write_client(&buf[fwd..pos]).await?;
        buf.advance(pos);
        self.server_offset += pos as u64;
        if self.client.is_tls() {
            self.client.flush().await.map_err(client_io)?;
        }
        self.metrics.add(&stats);
        Ok(end)
    }
}

/// A session may hold only so many statements (and portals) for approval at once.
fn too_many_held(what: &str) -> Refusal {
    Refusal::own(
        OwnCause::Approval,
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "pgmoat: this session already has {} prepared {what} that need approval",
            super::held::MAX_HELD
        ),
    )
    .with_detail(Some(
        "Close (DEALLOCATE) some of them, or end the transaction, first.".into(),
    ))
}

/// The statement is not run when its audit record cannot be written (fail closed).
fn audit_refusal(e: &crate::audit::AuditError) -> super::verdict::Refusal {
    tracing::warn!("statement refused: its audit record could not be written: {e}");
    Refusal::own(
        OwnCause::Audit,
        sqlstate::IO_ERROR,
        "pgmoat: the statement was not run because its audit record could not be written",
    )
    .with_detail(Some(
        "The gateway's audit store is failing; see the gateway log.".into(),
    ))
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
