//! The client side of the relay: client messages framed, judged, held for approval
//! or replaced by a stand-in, and forwarded in batches.

use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::approval::{audit_refusal, too_many_held};
use super::{
    client_io, server_io, unsent, whole_batch, End, Inspected, Pass, Relay, Rewrite, Waited, SYNC,
    TERMINATE,
};
use crate::audit::Ticket;
use crate::metrics::BatchStats;
use crate::protocol::formats::ResultFormats;
use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::frontend::{Bind, Close, Describe, Execute};
use crate::protocol::{frontend, sqlstate};
use crate::session::core::expect::{Asked, Expected, MaskTicket};
use crate::session::core::slots::{MaskStatement, Shared, StatementSlot};
use crate::session::error::SessionError;
use crate::session::held;
use crate::session::judge::Judged;
use crate::session::masker::Masker;
use crate::session::verdict::{OwnCause, Refusal, Verdict};

/// Client messages the synchronous pass takes: Bind, Describe, Execute, Sync, Close,
/// Flush (each handled by [`Relay::client_plain`] alone when nothing makes it wait).
fn plain_client_message(tag: u8) -> bool {
    matches!(tag, b'B' | b'D' | b'E' | b'S' | b'C' | b'H')
}

impl Relay {
    /// Look at each client message in `buf`; forward, hold or refuse it.
    pub(super) async fn scan_client(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<End>, SessionError> {
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
            if matches!(h.tag, b'B' | b'Q') {
                self.check_prepared(false).await; // (when the catalog or path moved)
            }
            let at = self.client_offset + pos as u64;
            if at >= self.client_paced {
                self.client_paced = at + 1;
                if self.core.pace.client(h.tag)? {
                    // A Query or FunctionCall inside an unsynced batch: after an error
                    // in the batch the server would discard it, unanswered. pgmoat
                    // ends the batch with a Sync of its own first (pgjdbc sends
                    // `P B E` BEGIN then `Q` SAVEPOINT) and keeps that answer.
                    self.write_upstream(&buf[fwd..pos]).await?;
                    fwd = pos;
                    self.write_upstream(&SYNC).await?;
                    self.core.sent += 1;
                    self.core.expect.sync();
                    self.core.swallow.push_back(self.core.sent);
                }
            }
            match h.tag {
                b'Q' | b'P' | b'F' => {
                    if !self.held_whole(h.tag, h.total, have, buf)? {
                        break;
                    }
                    let mut statement = 0;
                    let mut mask = None;
                    if h.tag != b'F' {
                        let (mut verdict, n, ticket) =
                            self.decide_statement(&buf[pos..pos + h.total]).await;
                        statement = n;
                        mask = ticket;
                        if let Some(hold) = verdict.take_hold() {
                            // Everything before it goes now; the statement waits.
                            self.write_upstream(&buf[fwd..pos]).await?;
                            self.upstream.flush().await.map_err(server_io)?;
                            fwd = pos;
                            match self
                                .wait_for_approval(
                                    Arc::new(hold),
                                    Vec::new(),
                                    held::NO_PARAMS,
                                    statement,
                                    buf,
                                )
                                .await?
                            {
                                Waited::Approved => {}
                                Waited::Refused(r) => verdict.refuse(r),
                                Waited::ClientGone => {
                                    let _ = self.upstream.write_all(&TERMINATE).await;
                                    return Ok(Some(End::ClientClosed));
                                }
                            }
                        }
                        if let Verdict::Refuse(refusal) = verdict {
                            self.write_upstream(&buf[fwd..pos]).await?;
                            self.substitute(&buf[pos..pos + h.total], refusal).await?;
                            if h.tag == b'Q' {
                                stats.queries_simple += 1;
                                self.query_sent(statement, true, mask);
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
                                    self.core.sent += 1;
                                    self.query_sent(statement, false, mask);
                                }
                                b'F' => self.core.sent += 1,
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
                        || self.core.names.holds_active()
                        || self.binds_checked()
                        || self.judge.as_ref().is_some_and(|j| j.has_prepared_holds()) =>
                {
                    // Masking and approvals follow statements into portals: these are
                    // read whole.
                    if !self.held_whole(h.tag, h.total, have, buf)? {
                        break;
                    }
                    let cycle = self.core.sent + 1;
                    let mut refused = None;
                    match h.tag {
                        b'B' => {
                            if !self.track_bind(&buf[pos + 5..pos + h.total]) {
                                refused = Some(too_many_held("portals"));
                            } else {
                                refused = self.bind_refusal(&buf[pos + 5..pos + h.total]);
                            }
                        }
                        b'D' => self.track_describe(&buf[pos + 5..pos + h.total], cycle),
                        b'C' => self.track_close(&buf[pos + 5..pos + h.total], cycle),
                        _ => {
                            stats.queries_extended += 1;
                            let portal =
                                Execute::portal(&buf[pos + 5..pos + h.total]).unwrap_or_default();
                            let statement = self.statement_of(portal);
                            if let Some(ex) = held::on_execute(&self.core.names, portal) {
                                if let Some(g) = self.granted(&ex.hold) {
                                    refused = self.run_under_grant(&g, statement).await;
                                } else {
                                    // Everything before it goes now; the Execute waits.
                                    self.write_upstream(&buf[fwd..pos]).await?;
                                    self.upstream.flush().await.map_err(server_io)?;
                                    fwd = pos;
                                    match self
                                        .wait_for_approval(
                                            ex.hold,
                                            ex.params,
                                            ex.params_key,
                                            statement,
                                            buf,
                                        )
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
                            self.track_execute(&buf[pos + 5..pos + h.total], refused.is_some());
                        }
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
                b'X' => {
                    pos += have.min(h.total);
                    end = Some(End::ClientTerminated);
                    break;
                }
                _ => {
                    let body = &buf[pos + 5..pos + h.total.min(have)];
                    self.client_plain(h.tag, body, have >= h.total, &mut stats);
                }
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
        if let Some(r) = &self.registration {
            r.count(stats.queries_simple + stats.queries_extended);
        }
        Ok(end)
    }

    /// The synchronous pass over the client bytes in `cbuf`: taken when every message
    /// in it is whole, of a kind [`Self::client_plain`] handles alone, and nothing in the
    /// session makes such messages wait (holds read Bind/Execute whole and may ask for
    /// approval; masking only reads them, synchronously, as the scanner does). Each message gets exactly the steps [`Self::scan_client`]
    /// gives it (the guard, the pace, then [`Self::client_plain`]), so the two cannot
    /// leave different state; what the socket takes goes out with no await.
    pub(super) fn client_pass(&mut self) -> Result<Pass, SessionError> {
        // With masks, the scanner reads Bind, Describe, Execute and Close whole and
        // refuses one over the message limit: such a read is left to it.
        let limit = if self.masker.is_some() {
            self.max_message
        } else {
            usize::MAX
        };
        if self.c_stream != 0
            || self.core.pace.client_copy
            || self.core.names.holds_active()
            || self.judge.as_ref().is_some_and(|j| j.has_prepared_holds())
            || !self.prepared_in_step()
            || whole_batch(&self.cbuf, Direction::Frontend, plain_client_message, limit).is_none()
        {
            return Ok(Pass::Declined);
        }
        let buf = std::mem::take(&mut self.cbuf);
        let result = self.client_pass_over(&buf);
        self.cbuf = buf;
        let stats = result?;
        let sent = self.upstream.send_now(&self.cbuf).map_err(server_io)?;
        let done = unsent(&mut self.cbuf, sent);
        self.client_offset += stats.bytes_from_client;
        self.metrics.add(&stats);
        if let Some(r) = &self.registration {
            r.count(stats.queries_simple + stats.queries_extended);
        }
        Ok(done)
    }

    fn client_pass_over(&mut self, buf: &[u8]) -> Result<BatchStats, SessionError> {
        let mut stats = BatchStats::default();
        let mut pos = 0;
        while pos < buf.len() {
            let tag = buf[pos];
            let total = frame::total_len(&buf[pos..]).unwrap_or(buf.len() - pos);
            if tag == b'E' {
                self.guard.check()?;
            }
            let at = self.client_offset + pos as u64;
            if at >= self.client_paced {
                self.client_paced = at + 1;
                // Only a Query or FunctionCall asks for a Sync of pgmoat's first, and
                // neither is taken here.
                self.core.pace.client(tag)?;
            }
            self.client_plain(tag, &buf[pos + 5..pos + total], true, &mut stats);
            pos += total;
        }
        stats.bytes_from_client = pos as u64;
        Ok(stats)
    }

    /// What a client message that needs no judgment and no wait does to the session:
    /// Sync, an Execute or Bind read for their names (`body` may be only the start of
    /// the message, `whole` false, when it streams through), Close, and the rest
    /// (Describe, Flush, copy data) nothing. Both passes run each such message through
    /// here.
    pub(super) fn client_plain(
        &mut self,
        tag: u8,
        body: &[u8],
        whole: bool,
        stats: &mut BatchStats,
    ) {
        match tag {
            // (A Sync during COPY FROM STDIN never gets here: Pace refuses it.)
            b'S' => {
                self.core.sent += 1;
                self.core.expect.sync();
            }
            // Only their start is needed (portal and statement names): a large
            // Bind streams through.
            b'E' => {
                stats.queries_extended += 1;
                self.track_execute(body, false);
            }
            // Masking follows statements into portals: its scanner arm reads a Bind
            // and a Describe whole with the same functions, so only whole ones get
            // here while it is on.
            b'B' if self.audit.is_some() || self.masker.is_some() => {
                self.track_bind(body);
            }
            b'D' if whole => {
                let cycle = self.core.sent + 1;
                self.track_describe(body, cycle);
            }
            b'C' => {
                let cycle = self.core.sent + 1;
                if whole {
                    self.track_close(body, cycle);
                } else {
                    // Not seen whole: the name stays known (fail closed).
                    self.core.names.close_sent(cycle);
                }
            }
            _ => {}
        }
    }

    /// Judge a whole Query or Parse (`msg`) and settle everything about it that needs
    /// no wait: its audit record (durable before it goes on; if it cannot be, it does
    /// not run), the masker's and the holds' view of it, and a grant already in force.
    /// Returns what is left to act on (a hold to ask, a refusal, or allowed), the
    /// statement's number in the audit trail (0 without one), and for a Query the
    /// mask ticket of its entry in the core's queue of expected answers.
    async fn decide_statement(&mut self, msg: &[u8]) -> (Verdict, u64, Option<MaskTicket>) {
        // The text is read and checked as UTF-8 once, here, for the live sessions'
        // list, the judge and the audit record.
        let sql = frontend::sql_of(msg[0], &msg[5..]);
        let text = sql.ok().and_then(|s| std::str::from_utf8(s).ok());
        if let Some(r) = &self.registration {
            r.running(text);
        }
        if self.idle() && self.tx_status == b'I' && self.ddl_cycle.is_some() {
            // Nothing runs on the server and no transaction is open: DDL flagged for
            // a cycle that never went there (refused or denied) is not pending.
            self.ddl_done();
        }
        let mut judged = self.judge_message(sql.is_ok(), text).await;
        if msg[0] == b'Q' {
            self.query_judged(&mut judged, text).await;
        }
        let mut statement = 0;
        let mut audit_entry = None;
        let cycle = self.core.sent + 1;
        let ddl = self.judge.as_ref().and_then(|j| j.took_ddl());
        if let Some(a) = self.audit.as_mut() {
            // Durable before it is forwarded; if it cannot be, it does not run.
            let recorded = a
                .decided(msg, text, std::mem::take(&mut judged.facts))
                .await;
            audit_entry = Some((recorded.statement, recorded.refused));
            // A Bind of a name this Query PREPAREs runs this statement (if the
            // PREPARE failed, this statement's own record shows the error).
            for p in &recorded.prepares {
                self.core.names.statement_entry(p.as_bytes()).audit = audit_entry;
            }
            match recorded.result {
                Ok(()) => statement = recorded.statement,
                Err(e) => judged.verdict.refuse(audit_refusal(&e)),
            }
        }
        let ddl = ddl.filter(|_| !judged.verdict.is_refused());
        if let Some(made) = &ddl {
            self.ddl_in(cycle, made);
        }
        let (mask, query_mask) = self.track_masking(msg, &judged);
        if msg[0] == b'P' {
            let body = &msg[5..];
            let name = frontend::Parse::name(body).unwrap_or_default();
            let at = self.core.names.parse_sent(cycle);
            // A prepared statement waits at its Execute, where its parameters are
            // known; parsing it runs nothing.
            let hold = match judged.verdict.take_hold() {
                Some(_) if !held::may_hold_statement(&self.core.names, name) => {
                    judged.verdict.refuse(too_many_held("statements"));
                    None
                }
                hold => hold.map(Arc::new),
            };
            let types = if hold.is_some() {
                held::parse_types(body)
            } else {
                Vec::new()
            };
            let mut slot = StatementSlot::new(audit_entry, types, mask);
            slot.ddl = ddl.filter(|_| !judged.verdict.is_refused()).map(Arc::new);
            self.note_setting_params(&mut slot, &judged, body);
            if !judged.verdict.is_refused() {
                slot.judged = self.judgment_of(text).await;
            }
            let judgment = slot.judged.clone();
            self.core.names.on_parse(name, slot, hold, cycle, at);
            self.parse_judged(judgment).await;
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
        (judged.verdict, statement, query_mask)
    }

    /// DDL of this session that changes `made` runs in `cycle`: until its
    /// ReadyForQuery (and the end of its transaction), statements that a catalog
    /// without it could misjudge are refused (see `Judge::behind_ddl`); after it the
    /// catalog is read again.
    fn ddl_in(&mut self, cycle: u64, made: &crate::session::ddl::Made) {
        self.ddl_cycle = Some(self.ddl_cycle.map_or(cycle, |c| c.max(cycle)));
        if let Some(j) = &self.judge {
            j.ddl_sent(made);
        }
    }

    /// The server has answered the cycle that ran this session's DDL (or nothing was
    /// sent): the catalog is read again before the next statement.
    pub(super) fn ddl_done(&mut self) {
        self.ddl_cycle = None;
        if let Some(j) = &self.judge {
            if let Some(told) = j.ddl_answered() {
                self.announcing = Some(told);
            }
        }
    }

    /// A Query (or, `refused`, its stand-in) went upstream running audit statement
    /// `statement`: its entry in the core's queue of expected answers.
    fn query_sent(&mut self, statement: u64, refused: bool, mask: Option<MaskTicket>) {
        let audit = self
            .audit
            .is_some()
            .then(|| Ticket::query(statement, refused));
        self.core.expect.push(
            Expected::new(Asked::Query)
                .with_audit(audit)
                .with_mask(mask),
        );
    }

    /// A client message pgmoat reads whole: refused when over the limit; false (with
    /// room reserved) while the rest of it has not arrived.
    pub(super) fn held_whole(
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

    /// Keep the masking state in step with a judged Query or Parse: for a Parse, the
    /// mask field of its new slot, for a Query the mask ticket of its entry (None
    /// while the session masks nothing).
    pub(super) fn track_masking(
        &mut self,
        msg: &[u8],
        judged: &Judged,
    ) -> (Option<Shared<MaskStatement>>, Option<MaskTicket>) {
        if let Some(engine) = &judged.masking {
            match &mut self.masker {
                Some(m) => {
                    if !Arc::ptr_eq(&m.engine, engine) {
                        m.engine = Arc::clone(engine);
                    }
                }
                None => {
                    // Answers still due for earlier messages (a refused statement's
                    // stand-in) end with ReadyForQuerys the core must not take for
                    // this message's.
                    let outstanding = self.outstanding();
                    self.core.expect.follow(outstanding);
                    self.masker = Some(Masker::new(Arc::clone(engine)));
                    self.hold_results = true;
                }
            }
        }
        let Some(m) = self.masker.as_mut() else {
            return (None, None);
        };
        // A refused statement's stand-in yields an error and no rows.
        let (lineage, writes) = match judged.verdict.plan() {
            Some(plan) => (
                plan.lineage.as_deref().map(Vec::as_slice),
                plan.writes_masked,
            ),
            None => (None, 0),
        };
        if msg[0] == b'Q' {
            let ticket = m.on_query(&mut self.core.names, lineage, judged.statements, writes);
            (None, Some(ticket))
        } else {
            let name = frontend::Parse::name(&msg[5..]).unwrap_or_default();
            let slot = m.for_parse(&mut self.core.names, name, lineage, writes);
            (Some(slot), None)
        }
    }

    /// A Bind goes upstream (`body` whole, or only its start when it streams through):
    /// its portal's slot gets what each consumer knows of the statement it binds.
    /// False when it binds a held statement and the session has too many such portals
    /// open: then it must be refused.
    pub(super) fn track_bind(&mut self, body: &[u8]) -> bool {
        let Ok(names) = Bind::names(body) else {
            return true;
        };
        // None when cut short (streamed through) or malformed (the server refuses it).
        let bind = Bind::parse(body).ok();
        let cycle = self.core.sent + 1;
        let held = match &bind {
            Some(b)
                if self.core.names.holds_active()
                    || self.judge.as_ref().is_some_and(|j| j.has_prepared_holds()) =>
            {
                let judge = self.judge.as_ref();
                held::portal_for_bind(&self.core.names, body, b, cycle, |name| {
                    judge.and_then(|j| j.bind_hold(name))
                })
            }
            _ => None,
        };
        let may_hold = held.is_none() || held::may_hold_portal(&self.core.names, names.portal);
        // One look-up of the statement for both (ddl_in changes no name).
        let (made, audit) = match self.core.names.statement(names.statement) {
            Some(s) => (s.ddl.clone(), s.audit),
            None => (None, None),
        };
        if let Some(made) = made {
            self.ddl_in(cycle, &made);
        }
        let (mask, ticket) = match (&mut self.masker, &bind) {
            (Some(m), Some(b)) => {
                let (slot, ticket) = m.for_bind(
                    &self.core.names,
                    names.portal,
                    names.statement,
                    ResultFormats::from_bind(&b.result_formats),
                );
                (Some(slot), ticket)
            }
            _ => (None, None),
        };
        if ticket.is_some() {
            self.core
                .expect
                .push(Expected::new(Asked::Bind).with_mask(ticket));
        }
        self.bind_behind_ddl(names.statement, mask.as_ref());
        let slot = self.core.names.rebind(names.portal);
        slot.audit = audit;
        match &bind {
            Some(b) => slot.formats.extend(b.result_formats.iter()),
            // Kept rows are then hex, never misread.
            None => slot.formats.push(1),
        }
        slot.mask = mask;
        if let Some(h) = held.filter(|_| may_hold) {
            self.core.names.hold_portal(names.portal, h);
        }
        may_hold
    }

    /// An Execute (or, `refused`, its stand-in) goes upstream (`body` may be only
    /// its start): its entry in the core's queue of expected answers carries the
    /// statement its portal runs (for the audit trail) and the portal whose rows come
    /// back (for masking).
    pub(super) fn track_execute(&mut self, body: &[u8], refused: bool) {
        if !self.core.expect.followed() {
            return;
        }
        let portal = Execute::portal(body).unwrap_or_default();
        let audit = self.audit.is_some().then(|| {
            let slot = self.core.names.portal(portal);
            Ticket::execute(
                slot.and_then(|s| s.audit),
                slot.map(|s| s.formats.as_slice()),
                refused,
            )
        });
        let mask = self
            .masker
            .as_mut()
            .map(|m| m.on_execute(&mut self.core.names, portal));
        self.core.expect.push(
            Expected::new(Asked::Execute)
                .with_audit(audit)
                .with_mask(mask),
        );
    }

    /// A whole Describe goes upstream in `cycle`.
    pub(super) fn track_describe(&mut self, body: &[u8], cycle: u64) {
        if self.core.names.holds_active() {
            if let Ok(d) = Describe::parse(body) {
                self.core.names.on_describe(&d, cycle);
            }
        }
        if let Some(m) = &mut self.masker {
            let ticket = m.on_describe(&mut self.core.names, body);
            self.core
                .expect
                .push(Expected::new(Asked::Describe).with_mask(Some(ticket)));
        }
    }

    /// A whole Close goes upstream in `cycle`.
    pub(super) fn track_close(&mut self, body: &[u8], cycle: u64) {
        let at = self.core.names.close_sent(cycle);
        if let Ok(c) = Close::parse(body) {
            self.core.names.on_close(&c, cycle, at);
        }
    }

    /// The audit statement number portal `portal` runs (0 when unknown).
    pub(super) fn statement_of(&self, portal: &[u8]) -> u64 {
        self.core
            .names
            .portal(portal)
            .and_then(|p| p.audit)
            .map_or(0, |(n, _)| n)
    }

    /// Send the stand-in for a refused Query, Parse or Execute and remember whose error
    /// it is.
    pub(super) async fn substitute(
        &mut self,
        msg: &[u8],
        refusal: Refusal,
    ) -> Result<(), SessionError> {
        self.nonce_seed = self
            .nonce_seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let marker = format!("pgmoat_blocked_{:016x}", self.nonce_seed);
        let stand_in = format!("SELECT \"{marker}\"");
        let mut out = BytesMut::new();
        let due = if msg[0] == b'Q' {
            postgres_protocol::message::frontend::query(&stand_in, &mut out).map_err(server_io)?;
            self.core.sent += 1;
            self.core.sent
        } else if msg[0] == b'B' {
            // A refused Bind: binding a statement that does not exist fails at once.
            out.extend_from_slice(&[b'B', 0, 0, 0, 0, 0]);
            out.extend_from_slice(marker.as_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
            let len = (out.len() - 1) as u32;
            out[1..5].copy_from_slice(&len.to_be_bytes());
            self.core.sent + 1
        } else if msg[0] == b'E' {
            // A refused Execute: running a portal that does not exist fails at once,
            // and the server discards to Sync as for any error.
            postgres_protocol::message::frontend::execute(&marker, 0, &mut out)
                .map_err(server_io)?;
            self.core.sent + 1
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
            self.core.sent + 1
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
    pub(super) fn inspect_client(&mut self, msg: &[u8]) -> Inspected {
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
}
