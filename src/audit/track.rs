//! One session's side of the trail: numbers statements, writes their `decided`
//! records before they are forwarded, and matches the server's completions back to
//! them in protocol order.
//!
//! Which statement a name runs, and which request each server reply answers, are the
//! session core's to know (`crate::session::core`: its slots carry the number of the
//! `decided` record, its queue of expected answers matches replies to requests). This
//! file only makes the [`Ticket`] each forwarded Query and Execute carries in that
//! queue, notes what the server says of the statement answered now (its tag, rows,
//! error), and writes the `completed` record when the core hands the ticket back
//! finished (a Query's completions are collected until its ReadyForQuery); a ticket
//! handed back skipped (after an error earlier in its batch) records nothing.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use super::error::AuditError;
use super::event::{Approval, ApprovalState, Completed, Decided, Event, Statement, StatementError};
use super::rows::{lossy, RowRecorder};
use super::Audit;
use crate::protocol::backend_view::CommandComplete;
use crate::protocol::formats::ResultFormats;
use crate::protocol::frontend::StatementText;

/// What the judge knew about a message: the facts the `decided` record holds.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementFacts {
    pub kinds: Vec<String>,
    pub tables: Vec<String>,
    /// Recorded as `allow`, `block`, or `approve`.
    pub action: crate::policy::Action,
    pub rules: Vec<String>,
    pub masked_columns: Vec<String>,
    /// Names a SQL `PREPARE` in it defines. Not recorded: the server keeps them in the
    /// same namespace as Parse's, so a Bind of one runs this statement's SQL.
    pub prepares: Vec<String>,
}

impl Default for StatementFacts {
    fn default() -> StatementFacts {
        StatementFacts {
            kinds: Vec::new(),
            tables: Vec::new(),
            action: crate::policy::Action::Allow,
            rules: Vec::new(),
            masked_columns: Vec::new(),
            prepares: Vec::new(),
        }
    }
}

impl StatementFacts {
    /// No rules configured: allowed, nothing parsed.
    pub fn unjudged() -> StatementFacts {
        StatementFacts {
            action: crate::policy::Action::Allow,
            ..Default::default()
        }
    }
}

/// What the trail knows of one Query or Execute the server will answer: carried by
/// the session core's queue of expected answers (which matches the server's replies
/// to requests), and handed back here when the server finished or skipped it.
#[derive(Debug)]
pub struct Ticket {
    statement: u64,
    /// Refused: the `decided` record says so; the stand-in's error is not the result.
    refused: bool,
    started: Instant,
    /// Extended protocol: the result formats Bind asked for (`[1]`, all binary, when
    /// the Bind was not seen whole: kept rows are then hex, never misread).
    formats: Option<ResultFormats>,
}

impl Ticket {
    /// The `decided` record the request runs (0: unknown).
    pub fn statement(&self) -> u64 {
        self.statement
    }

    pub fn refused(&self) -> bool {
        self.refused
    }

    /// A Query (or its stand-in) goes upstream running statement `statement`.
    pub fn query(statement: u64, refused: bool) -> Ticket {
        Ticket {
            statement,
            refused,
            started: Instant::now(),
            formats: None,
        }
    }

    /// An Execute (or, `refused_now`, its stand-in) goes upstream; its portal runs
    /// `entry` (None: unknown, statement 0) with result `formats` (None: not seen).
    pub fn execute(
        entry: Option<(u64, bool)>,
        formats: Option<&[i16]>,
        refused_now: bool,
    ) -> Ticket {
        let (statement, refused) = entry.unwrap_or((0, false));
        Ticket {
            statement,
            refused: refused || refused_now,
            started: Instant::now(),
            formats: Some(match formats {
                Some(f) => ResultFormats::from_slice(f),
                None => ResultFormats::All(Some(1)),
            }),
        }
    }
}

/// What the server said so far of the statement it answers now.
#[derive(Default)]
struct Outcome {
    rows: Option<u64>,
    command: Option<String>,
    error: Option<StatementError>,
}

/// What [`SessionAudit::decided`] recorded: the statement's number, whether names
/// that run it run a refused statement (not recorded counts as refused: it does not
/// run), the SQL `PREPARE` names it defines, and whether the record was written.
pub struct Recorded {
    pub statement: u64,
    pub refused: bool,
    pub prepares: Vec<String>,
    pub result: Result<(), AuditError>,
}

/// A `completed` record the audit queue had no room for (see
/// [`SessionAudit::completed_now`]).
pub struct Waiting(Box<Event>);

pub struct SessionAudit {
    audit: Audit,
    id: Arc<str>,
    statements: u64,
    /// The answers so far to the statement the server answers now.
    current: Outcome,
    rows: Option<RowRecorder>,
}

/// Rows from a CommandComplete tag: the last word of `SELECT 3`, `INSERT 0 5`, ...
fn tag_rows(tag: &str) -> Option<u64> {
    let mut words = tag.split_whitespace();
    let first = words.next()?;
    let last = words.last()?;
    (first != "CREATE").then(|| last.parse().ok()).flatten()
}

impl SessionAudit {
    pub(crate) fn new(audit: Audit, id: Arc<str>) -> SessionAudit {
        let limit = audit.record_rows();
        SessionAudit {
            audit,
            id,
            statements: 0,
            current: Outcome::default(),
            rows: (limit > 0).then(|| RowRecorder::new(limit)),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// An `approval` record about statement number `statement`.
    pub async fn approval(
        &self,
        id: &str,
        statement: u64,
        state: ApprovalState,
        by: Option<String>,
        reason: Option<String>,
        grant_until: Option<String>,
    ) -> Result<(), AuditError> {
        let event = Event::Approval(Approval {
            id: id.to_owned(),
            statement,
            state,
            by,
            reason,
            grant_until,
        });
        self.audit.append(Some(&self.id), event).await
    }

    /// Record a Query or Parse (the whole message) and what was decided, durably
    /// (per the store's mode) before it is forwarded. `checked`: the message's SQL
    /// text when the caller already read it and found it valid UTF-8 (the judge
    /// does), so it is not checked again; None reads it here.
    pub async fn decided(
        &mut self,
        msg: &[u8],
        checked: Option<&str>,
        facts: StatementFacts,
    ) -> Recorded {
        let text = StatementText::read(
            msg.first().copied().unwrap_or(0),
            msg.get(5..).unwrap_or(&[]),
        );
        debug_assert!(checked.is_none_or(|c| c.as_bytes() == text.sql));
        let (name, sql) = (text.name, text.sql);
        self.statements += 1;
        let n = self.statements;
        // Held for approval counts as run: if it is refused later, that Execute or
        // Query is marked refused then.
        let refused = facts.action == crate::policy::Action::Block;
        let prepares = facts.prepares;
        let event = Event::Statement(Statement::Decided(Decided {
            statement: n,
            protocol: Cow::Borrowed(if name.is_some() { "extended" } else { "simple" }),
            sql: checked.map_or_else(|| lossy(sql), str::to_owned),
            kinds: facts.kinds,
            tables: facts.tables,
            action: Cow::Borrowed(facts.action.as_str()),
            rules: facts.rules,
            masked_columns: facts.masked_columns,
        }));
        let result = self.audit.append(Some(&self.id), event).await;
        Recorded {
            statement: n,
            // Not recorded means not run: its executions are the stand-in's.
            refused: refused || result.is_err(),
            prepares,
            result,
        }
    }

    /// Server messages the tracker must see whole (all small, except rows when kept).
    pub fn wants(&self, tag: u8) -> bool {
        matches!(tag, b'C' | b'I' | b's' | b'E')
    }

    /// RowDescription and DataRow are wanted whole while rows are being kept for the
    /// statement answered now, `answering` (past `record_rows`, rows stream untouched
    /// again).
    pub fn wants_rows(&self, tag: u8, answering: Option<&Ticket>) -> bool {
        let Some(rec) = &self.rows else { return false };
        match tag {
            // Also a statement Describe's, before its Execute: it names the columns.
            b'T' => answering.is_none_or(|p| !p.refused),
            b'D' => answering.is_some_and(|p| !p.refused) && !rec.full(),
            _ => false,
        }
    }

    /// The hook for kept result rows: RowDescription ('T') and DataRow ('D') messages
    /// exactly as sent to the client, that is after masking, for the statement
    /// answered now. Call it only with what the client receives; rows of a refused
    /// statement are never recorded.
    pub fn record_result_message(&mut self, msg: &[u8], answering: Option<&Ticket>) {
        let Some(rec) = self.rows.as_mut() else {
            return;
        };
        match msg.first() {
            Some(b'T') if answering.is_none_or(|p| !p.refused) => rec.row_description(msg),
            Some(b'D') => {
                if let Some(p) = answering.filter(|p| !p.refused) {
                    rec.data_row_in(msg, p.formats.as_ref().map(ResultFormats::as_slice));
                }
            }
            _ => {}
        }
    }

    /// A whole server message of a kind [`SessionAudit::wants`], about the statement
    /// answered now (`answering`; None: between statements, nothing is noted).
    pub fn server_message(&mut self, msg: &[u8], answering: Option<&Ticket>) {
        if answering.is_none() {
            return;
        }
        let body = msg.get(5..).unwrap_or(&[]);
        let p = &mut self.current;
        match msg.first() {
            Some(b'C') => {
                let tag = lossy(CommandComplete::parse(body).map(|c| c.tag).unwrap_or(body));
                if let Some(r) = tag_rows(&tag) {
                    p.rows = Some(p.rows.unwrap_or(0) + r);
                }
                p.command = Some(tag);
            }
            Some(b'E') if p.error.is_none() => {
                let fields = crate::protocol::backend::parse_fields(body);
                p.error = Some(StatementError {
                    code: crate::protocol::backend::field(&fields, b'C').to_owned(),
                    message: crate::protocol::backend::field(&fields, b'M').to_owned(),
                });
            }
            _ => {}
        }
    }

    /// The server skipped the request of `ticket` (an earlier error in its batch).
    pub fn skipped(&mut self, _ticket: Ticket) {
        self.current = Outcome::default();
    }

    /// The server finished answering the request of `ticket`: its `completed` record.
    /// Completed records do not wait for the disk: the statement already ran, and its
    /// `decided` record is.
    pub async fn completed(&mut self, ticket: Ticket) -> Result<(), AuditError> {
        match self.completed_now(ticket) {
            Ok(result) => result,
            Err(waiting) => self.record_waiting(waiting).await,
        }
    }

    /// [`SessionAudit::completed`] with no await: the record is queued now when the
    /// queue has room (the common case, in either durability mode: nobody waits for
    /// a `completed` record's disk write). `Err`: the queue is full; the record must be
    /// handed to [`SessionAudit::record_waiting`] before anything the session does
    /// next, so the trail keeps its order and a full queue still holds the session
    /// back.
    pub fn completed_now(&mut self, ticket: Ticket) -> Result<Result<(), AuditError>, Waiting> {
        let Some(event) = self.completed_event(ticket) else {
            return Ok(Ok(()));
        };
        match self.audit.try_record(Some(&self.id), &event) {
            Some(result) => {
                // Encoded: its columns and rows' memory serve the next record.
                if let (Some(rec), Event::Statement(Statement::Completed(c))) =
                    (self.rows.as_mut(), event)
                {
                    rec.give_back(c.columns, c.recorded_rows);
                }
                Ok(result)
            }
            None => Err(Waiting(Box::new(event))),
        }
    }

    /// Queue a record [`SessionAudit::completed_now`] found no room for, waiting for
    /// room.
    pub async fn record_waiting(&mut self, waiting: Waiting) -> Result<(), AuditError> {
        self.audit.record(Some(&self.id), *waiting.0).await
    }

    /// The `completed` event of `ticket` (None for a refused statement: its stand-in's
    /// error is not its result); the outcome noted so far is taken either way.
    fn completed_event(&mut self, ticket: Ticket) -> Option<Event> {
        let p = std::mem::take(&mut self.current);
        let (columns, recorded_rows, rows_truncated) = match self.rows.as_mut() {
            Some(r) => r.take(),
            None => Default::default(),
        };
        if ticket.refused {
            if let Some(r) = self.rows.as_mut() {
                r.give_back(columns, recorded_rows);
            }
            return None;
        }
        // Columns alone (a Describe whose statement returned nothing here) say nothing.
        let columns = if recorded_rows.is_empty() {
            Vec::new()
        } else {
            columns
        };
        // Rows past the limit stream by unseen; the tag's count says they were there.
        let rows_truncated = rows_truncated
            || (!columns.is_empty() && p.rows.is_some_and(|r| r as usize > recorded_rows.len()));
        Some(Event::Statement(Statement::Completed(Completed {
            statement: ticket.statement,
            duration_ms: (ticket.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            rows: p.rows,
            command: p.command,
            error: p.error,
            columns,
            recorded_rows,
            rows_truncated,
        })))
    }

    /// The `session_end` record.
    pub async fn end(&mut self, how: &str) -> Result<(), AuditError> {
        let event = Event::SessionEnd {
            statements: self.statements,
            end: how.to_owned(),
        };
        self.audit.record(Some(&self.id), event).await
    }
}

#[cfg(test)]
mod tests {
    use super::tag_rows;

    #[test]
    fn rows_from_tags() {
        assert_eq!(tag_rows("SELECT 3"), Some(3));
        assert_eq!(tag_rows("INSERT 0 5"), Some(5));
        assert_eq!(tag_rows("BEGIN"), None);
        assert_eq!(tag_rows("CREATE TABLE"), None);
    }
}
