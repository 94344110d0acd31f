//! The relay's fast path: batches that need no judgment, masking, approval or audit.
//!
//! A transaction on a prepared statement is Bind/Execute/Sync one way and
//! BindComplete/DataRow/CommandComplete/ReadyForQuery the other. When nothing in the
//! session looks into such messages (no masks, holds, audit trail, or composed
//! responses waiting for their turn), the relay's bookkeeping for them is a few
//! counters. Doing it here, synchronously, skips the general scanners' async state
//! machines, which were most of pgmoat's own CPU per such transaction.
//!
//! A batch is taken only when every message in it is whole and of a kind listed below;
//! otherwise nothing is touched and the general path (`scan_client`, `scan_server`)
//! handles it. That path stays the reference: for the messages accepted here, this file
//! must leave exactly the state it would.

use bytes::BytesMut;

use super::{client_io, server_io, shrink, Fast, Relay};
use crate::metrics::BatchStats;
use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::frontend::Close;
use crate::session::error::SessionError;

/// Client messages the fast path takes: Bind, Describe, Execute, Sync, Close, Flush.
fn client_kind(tag: u8) -> bool {
    matches!(tag, b'B' | b'D' | b'E' | b'S' | b'C' | b'H')
}

/// Server messages the fast path takes: the completions, rows, descriptions, errors,
/// notices and notifications, and ReadyForQuery. Not ParameterStatus (a setting may
/// have to be refused) nor anything of COPY (its own pacing).
fn server_kind(tag: u8) -> bool {
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

/// Some when `buf` holds at least one message, every one whole and taken by `kind`;
/// None otherwise (an invalid header included: the general path reports that).
fn whole_batch(buf: &[u8], direction: Direction, kind: fn(u8) -> bool) -> Option<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let h = frame::check(&buf[pos..], direction, LARGE_MESSAGE_LIMIT).ok()??;
        if !kind(h.tag) || h.total > buf.len() - pos {
            return None;
        }
        pos += h.total;
    }
    (pos > 0).then_some(())
}

/// Empty `buf`, all of it handled and `sent` bytes of it written; what is left to write.
fn unsent(buf: &mut BytesMut, sent: usize) -> Fast {
    let done = if sent < buf.len() {
        Fast::Unsent(BytesMut::from(&buf[sent..]))
    } else {
        Fast::Done
    };
    buf.clear();
    shrink(buf);
    done
}

/// Length of the (already checked) message at the front of `buf`, tag included.
fn total(buf: &[u8]) -> usize {
    crate::protocol::frame::total_len(buf).unwrap_or(buf.len())
}

impl Relay {
    /// Handle the client bytes in `cbuf` if the fast path may; unsent bytes go upstream.
    pub(super) fn client_fast(&mut self) -> Result<Fast, SessionError> {
        if self.c_stream != 0
            || self.core.pace.client_copy
            || self.masker.is_some()
            || self.audit.is_some()
            || self.core.expect.followed()
            || self.core.names.holds_active()
            || self.judge.as_ref().is_some_and(|j| j.has_prepared_holds())
            || whole_batch(&self.cbuf, Direction::Frontend, client_kind).is_none()
        {
            return Ok(Fast::Declined);
        }
        let mut stats = BatchStats::default();
        let mut pos = 0;
        while pos < self.cbuf.len() {
            let tag = self.cbuf[pos];
            if tag == b'E' {
                self.guard.check()?;
            }
            let at = self.client_offset + pos as u64;
            if at >= self.client_paced {
                self.client_paced = at + 1;
                // Only a Query or FunctionCall asks for a Sync of pgmoat's first.
                self.core.pace.client(tag)?;
            }
            match tag {
                b'E' => stats.queries_extended += 1,
                b'S' => self.core.sent += 1,
                b'C' => {
                    let cycle = self.core.sent + 1;
                    let at = self.core.names.close_sent(cycle);
                    let end = pos + total(&self.cbuf[pos..]);
                    if let Ok(c) = Close::parse(&self.cbuf[pos + 5..end]) {
                        self.core.names.on_close(&c, cycle, at);
                    }
                }
                _ => {}
            }
            pos += total(&self.cbuf[pos..]);
        }
        stats.bytes_from_client = pos as u64;
        let sent = self.upstream.send_now(&self.cbuf).map_err(server_io)?;
        let done = unsent(&mut self.cbuf, sent);
        self.client_offset += pos as u64;
        self.metrics.add(&stats);
        if let Some(r) = &self.registration {
            r.count(stats.queries_simple + stats.queries_extended);
        }
        Ok(done)
    }

    /// Handle the server bytes in `ubuf` if the fast path may; unsent bytes go to the
    /// client.
    pub(super) fn server_fast(&mut self) -> Result<Fast, SessionError> {
        if self.u_stream != 0
            || self.hold_results
            || self.masker.is_some()
            || self.audit.is_some()
            || self.core.expect.followed()
            || self.core.names.holds_active()
            || self.draining
            || !self.rewrites.is_empty()
            || !self.core.swallow.is_empty()
            || !self.injections.is_empty()
            || !self.staged.is_empty()
            || whole_batch(&self.ubuf, Direction::Backend, server_kind).is_none()
        {
            return Ok(Fast::Declined);
        }
        let mut stats = BatchStats::default();
        let mut pos = 0;
        while pos < self.ubuf.len() {
            let tag = self.ubuf[pos];
            let len = total(&self.ubuf[pos..]);
            let at = self.server_offset + pos as u64;
            if at >= self.server_paced {
                self.server_paced = at + 1;
                // CopyInResponse never gets here (see `server_kind`): no Sync is
                // ignored, so the answer is always false.
                self.core.pace.server(tag, self.outstanding())?;
            }
            match tag {
                b'Z' => {
                    self.tx_status = if len > 5 { self.ubuf[pos + 5] } else { b'I' };
                    self.core.seen += 1;
                    self.core.names.on_ready(self.core.seen, self.tx_status);
                }
                b'E' => stats.server_errors += 1,
                // No masker here (see above): nothing else needs the name taken.
                b'1' => {
                    let _ = self.core.names.parse_complete(self.core.seen + 1);
                }
                b'3' => self.core.names.close_complete(self.core.seen + 1),
                _ => {}
            }
            pos += len;
        }
        stats.bytes_to_client = pos as u64;
        let sent = self.client.send_now(&self.ubuf).map_err(client_io)?;
        let done = unsent(&mut self.ubuf, sent);
        self.server_offset += pos as u64;
        self.metrics.add(&stats);
        Ok(done)
    }
}
