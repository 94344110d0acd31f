//! The server side of the relay: server messages framed, matched to the requests
//! they answer, masked, and forwarded in batches, with pgmoat's own responses
//! spliced in where they belong.

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::{client_io, runtime_setting_refusal, shrink, unsent, whole_batch, End, Pass, Relay};
use crate::metrics::BatchStats;
use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::sqlstate;
use crate::session::core::expect::Outcome;
use crate::session::error::SessionError;
use crate::session::masker;

/// Server messages the synchronous pass takes: the completions, rows, descriptions,
/// errors, notices and notifications, and ReadyForQuery. Not ParameterStatus (a
/// setting may have to be refused) nor anything of COPY (its own pacing).
fn plain_server_message(tag: u8) -> bool {
    matches!(
        tag,
        b'1' | b'2'
            | b'3'
            | b'C'
            | b'D'
            | b'E'
            | b'I'
            | b'n'
            | b's'
            | b'T'
            | b't'
            | b'Z'
            | b'N'
            | b'A'
    )
}

impl Relay {
    /// The interception point for whole result messages: masking. `before` is the
    /// unchanged stretch of server bytes that precedes `msg`; when `msg` is replaced,
    /// both are staged and true is returned.
    pub(super) fn inspect_server(&mut self, before: &[u8], msg: &[u8]) -> bool {
        let Some(m) = &mut self.masker else {
            return false;
        };
        // The replacement is built apart: copying `before` only when a message is
        // replaced keeps a batch of untouched rows linear, not quadratic.
        self.replacement.clear();
        let front = self.core.expect.front_mut();
        let replaced = match m.on_server(&mut self.core.names, front, msg, &mut self.replacement) {
            masker::Action::Replaced => {
                self.staged.extend_from_slice(before);
                self.staged.extend_from_slice(&self.replacement);
                true
            }
            masker::Action::Forward => false,
        };
        // Kept rows for replay: exactly what the client gets, after masking.
        if let Some(a) = self.audit.as_mut() {
            let answering = self.core.expect.statement().and_then(|e| e.audit.as_ref());
            if replaced {
                a.record_result_message(&self.replacement, answering);
            } else {
                a.record_result_message(msg, answering);
            }
        }
        replaced
    }

    /// The synchronous pass over the server bytes in `ubuf`: taken when every message
    /// in it is whole and of a kind whose handling never waits (results, completions,
    /// errors, notices, ReadyForQuery), and nothing is due that must be spliced in or
    /// swallowed (stand-ins, composed responses, pgmoat's own Syncs, holds) and no
    /// shutdown is under way. Masking and the audit trail do not make it decline:
    /// each message gets exactly the steps [`Self::scan_server`] gives it (the pace,
    /// the trail's note, the masker through [`Self::inspect_server`], then
    /// [`Self::server_plain`] or [`Self::ready`] and [`Self::answered`]), all
    /// synchronous, so a masked row is masked here as there and the two cannot leave
    /// different state. What the socket takes goes to the client with no await; a
    /// `completed` record the audit queue had no room for is queued (awaited) before
    /// any of it is written.
    pub(super) fn server_pass(&mut self) -> Result<Pass, SessionError> {
        if self.u_stream != 0
            || self.core.names.holds_active()
            || self.draining
            || !self.rewrites.is_empty()
            || !self.core.swallow.is_empty()
            || !self.injections.is_empty()
            || !self.staged.is_empty()
            || !self.unqueued.is_empty()
            || whole_batch(
                &self.ubuf,
                Direction::Backend,
                plain_server_message,
                usize::MAX,
            )
            .is_none()
        {
            return Ok(Pass::Declined);
        }
        let buf = std::mem::take(&mut self.ubuf);
        let result = self.server_pass_over(&buf);
        self.ubuf = buf;
        let (stats, fwd) = result?;
        self.count_masked();
        self.server_offset += stats.bytes_to_client;
        self.metrics.add(&stats);
        // Rewritten messages were staged with what came before them: the rest follows.
        let out = if self.staged.is_empty() {
            &mut self.ubuf
        } else {
            self.staged.extend_from_slice(&self.ubuf[fwd..]);
            self.ubuf.clear();
            shrink(&mut self.ubuf);
            &mut self.staged
        };
        // Records first: with one waiting for queue room (or DDL being announced)
        // nothing is written now.
        let sent = if self.unqueued.is_empty() && self.announcing.is_none() {
            self.client.send_now(out).map_err(client_io)?
        } else {
            0
        };
        Ok(unsent(out, sent))
    }

    /// Each message of `buf` through the scanner's steps; the stats, and where the
    /// bytes not staged (replaced messages and what preceded them) begin.
    fn server_pass_over(&mut self, buf: &[u8]) -> Result<(BatchStats, usize), SessionError> {
        let mut stats = BatchStats::default();
        let mut pos = 0;
        let mut fwd = 0;
        while pos < buf.len() {
            let tag = buf[pos];
            let total = frame::total_len(&buf[pos..]).unwrap_or(buf.len() - pos);
            let at = self.server_offset + pos as u64;
            if at >= self.server_paced {
                self.server_paced = at + 1;
                // CopyInResponse is not taken here: no Sync is ignored, so the
                // answer is always false.
                self.core.pace.server(tag, self.outstanding())?;
            }
            let msg = &buf[pos..pos + total];
            if self.audit_wants(tag) {
                self.note_for_audit(tag, msg);
            }
            match tag {
                b'Z' => {
                    self.mask_ready(msg);
                    self.answered(tag);
                    self.ready(msg.get(5).copied());
                }
                b'T' | b'D' | b'C' | b'E' | b'N' | b'n' | b's' | b'I' | b'A'
                    if self.hold_results =>
                {
                    if tag == b'E' {
                        stats.server_errors += 1;
                    }
                    if self.inspect_server(&buf[fwd..pos], msg) {
                        fwd = pos + total;
                    }
                    self.answered(tag);
                }
                _ => {
                    self.server_plain(tag, &mut stats);
                    self.answered(tag);
                }
            }
            pos += total;
        }
        stats.bytes_to_client = pos as u64;
        Ok((stats, fwd))
    }

    /// What a server message that is not held whole for anything does to the
    /// session: ParseComplete and CloseComplete change names, BindComplete gives a
    /// named portal to SQL's FETCH, an error is counted. Both passes run each such
    /// message through here.
    fn server_plain(&mut self, tag: u8, stats: &mut BatchStats) {
        match tag {
            b'E' => stats.server_errors += 1,
            b'1' => {
                if let Some(name) = self.core.names.parse_complete(self.core.seen + 1) {
                    if let Some(m) = &mut self.masker {
                        m.parse_taken(&self.core.names, &name);
                    }
                }
            }
            b'2' => {
                if let Some(m) = &mut self.masker {
                    m.on_bind_complete(self.core.expect.front());
                }
            }
            b'3' => self.core.names.close_complete(self.core.seen + 1),
            _ => {}
        }
    }

    /// A ReadyForQuery with transaction status `status` (after masking and the
    /// queue of expected answers read it): one more cycle answered, stand-ins of
    /// earlier cycles are stale, names settle. Returns its number.
    fn ready(&mut self, status: Option<u8>) -> u64 {
        self.tx_status = status.unwrap_or(b'I');
        self.core.seen += 1;
        let seen = self.core.seen;
        // Answered, and committed (or rolled back): pgmoat's own connection sees it.
        if self.ddl_cycle.is_some_and(|c| seen >= c) && self.tx_status == b'I' {
            self.ddl_done();
        }
        self.rewrites.retain(|r| r.due > seen);
        self.core.names.on_ready(seen, self.tx_status);
        seen
    }

    /// After a server message's consumers read the entry it answers: the core moves
    /// past what it ended, and the audit trail records what finished, with no await:
    /// a `completed` record the audit queue has no room for waits in
    /// `self.unqueued` for [`Self::settle_records`], which must run before anything
    /// is forwarded.
    fn answered(&mut self, tag: u8) {
        if !self.core.expect.answer(tag) {
            return;
        }
        let Some(a) = self.audit.as_mut() else {
            self.core.expect.take_answered().for_each(drop);
            return;
        };
        for (entry, outcome) in self.core.expect.take_answered() {
            let Some(ticket) = entry.audit else { continue };
            match outcome {
                Outcome::Finished => match a.completed_now(ticket) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!("audit: a statement's completion was not recorded: {e}")
                    }
                    Err(waiting) => self.unqueued.push(waiting),
                },
                Outcome::Skipped => a.skipped(ticket),
            }
        }
    }

    /// Queue the `completed` records the audit queue had no room for, in order,
    /// waiting for room (a full queue holds the session back, never drops a record).
    /// Before that, the other replicas hear of this session's DDL (see
    /// `Relay::announcing`), within the state database's deadline (the cluster's
    /// own bound on every call).
    pub(super) async fn settle_records(&mut self) {
        if let Some(told) = self.announcing.take() {
            // The sender is dropped, or answers, when the state database has answered
            // or given up: this never waits longer than the cluster's deadline.
            let _ = told.await;
        }
        if self.unqueued.is_empty() {
            return;
        }
        let Some(a) = self.audit.as_mut() else {
            self.unqueued.clear();
            return;
        };
        for waiting in self.unqueued.drain(..) {
            if let Err(e) = a.record_waiting(waiting).await {
                tracing::error!("audit: a statement's completion was not recorded: {e}");
            }
        }
    }

    /// Whether the audit trail reads server message `tag` whole: completions always
    /// (small), rows while some are kept and no masker rewrites them (with one,
    /// [`Self::inspect_server`] records them after masking).
    fn audit_wants(&self, tag: u8) -> bool {
        let Some(a) = self.audit.as_ref() else {
            return false;
        };
        let answering = self.core.expect.statement().and_then(|e| e.audit.as_ref());
        a.wants(tag) || (self.masker.is_none() && a.wants_rows(tag, answering))
    }

    /// The audit trail notes a whole server message it [`Self::audit_wants`]: kept
    /// rows (when unmasked), and the completion or error of the statement answered
    /// now, an error as the client sees it. Both passes run it.
    fn note_for_audit(&mut self, tag: u8, msg: &[u8]) {
        let Some(a) = self.audit.as_mut() else {
            return;
        };
        let answering = self.core.expect.statement().and_then(|e| e.audit.as_ref());
        if self.masker.is_none() {
            a.record_result_message(msg, answering);
        }
        // An error is recorded as the client sees it, scrubbed when masks apply (it
        // can quote the masked value it failed on).
        let shown = match &self.masker {
            Some(m) if tag == b'E' => m.shown_error(msg, self.core.expect.front()),
            _ => None,
        };
        let msg = shown.as_deref().unwrap_or(msg);
        a.server_message(msg, answering);
    }

    /// Masking's bookkeeping for a ReadyForQuery (nothing of it is rewritten).
    fn mask_ready(&mut self, msg: &[u8]) {
        if let Some(m) = &mut self.masker {
            let mut none = BytesMut::new();
            let front = self.core.expect.front_mut();
            m.on_server(&mut self.core.names, front, msg, &mut none);
        }
    }

    /// Metrics: the values the masker replaced since the last call.
    fn count_masked(&mut self) {
        if let Some(m) = &mut self.masker {
            let n = std::mem::take(&mut m.masked_values);
            if n > 0 {
                self.metrics
                    .values_masked
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Look at each server message in `buf` and forward it.
    pub(super) async fn scan_server(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<End>, SessionError> {
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
            if first_look && self.core.pace.server(h.tag, self.outstanding())? {
                self.core.sent -= 1;
                self.core.expect.sync_ignored();
            }
            if self.audit_wants(h.tag) {
                if have < h.total {
                    buf.reserve(h.total - have);
                    break;
                }
                self.note_for_audit(h.tag, &buf[pos..pos + h.total]);
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
                    self.mask_ready(&buf[pos..pos + h.total]);
                    self.answered(h.tag);
                    self.settle_records().await;
                    let seen = self.ready(body.first().copied());
                    // The DDL it ended is announced before it goes out.
                    self.settle_records().await;
                    if self.core.swallow.front() == Some(&seen) {
                        // The answer to pgmoat's own Sync (see `Pace::client`): not
                        // the client's to see.
                        self.core.swallow.pop_front();
                        self.write_client(&buf[fwd..pos]).await?;
                        fwd = pos + h.total;
                    }
                    pos += h.total;
                    while self
                        .injections
                        .front()
                        .is_some_and(|(at, _)| *at == self.core.seen)
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
                b't' if self.core.names.holds_active() => {
                    if have < h.total {
                        buf.reserve(h.total - have);
                        break;
                    }
                    self.core
                        .names
                        .on_parameter_description(&buf[pos + 5..pos + h.total], self.core.seen + 1);
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
                            let front = self.core.expect.front_mut();
                            m.on_server(
                                &mut self.core.names,
                                front,
                                &buf[pos..pos + h.total],
                                &mut ignored,
                            );
                        }
                        self.settle_records().await;
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
                    self.answered(h.tag);
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
                    self.answered(h.tag);
                    continue;
                }
                _ => self.server_plain(h.tag, &mut stats),
            }
            self.answered(h.tag);
            let n = h.total.min(have);
            pos += n;
            self.u_stream = h.total - n;
        }
        stats.bytes_to_client = pos as u64;
        self.count_masked();
        // Records before the bytes they describe go on (and a full queue holds the
        // session back).
        self.settle_records().await;
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
