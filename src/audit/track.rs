//! One session's side of the trail: numbers statements, writes their `decided`
//! records before they are forwarded, and matches the server's completions back to
//! them in protocol order.
//!
//! Which statement a name runs is the session core's to know (its statement and
//! portal slots carry the number of the `decided` record, see
//! `crate::session::core`); this file is told it at each Execute. Completions are
//! matched in protocol order: every forwarded Query and every Execute is queued with
//! the ReadyForQuery number that closes its cycle.
//! CommandComplete / EmptyQueryResponse / PortalSuspended / ErrorResponse complete the
//! oldest Execute; a Query (which may hold several statements) collects its
//! completions until its ReadyForQuery. Executes the server skipped after an error
//! are dropped when their cycle closes.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::error::AuditError;
use super::event::{Approval, ApprovalState, Completed, Decided, Event, Statement, StatementError};
use super::rows::{lossy, RowRecorder};
use super::Audit;
use crate::protocol::backend_view::CommandComplete;
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

struct Pending {
    statement: u64,
    /// ReadyForQuery number that closes this cycle.
    due: u64,
    simple: bool,
    /// Refused: the `decided` record says so; the stand-in's error is not the result.
    refused: bool,
    started: Instant,
    rows: Option<u64>,
    command: Option<String>,
    error: Option<StatementError>,
    /// Extended protocol: the result formats Bind asked for (`[1]`, all binary, when
    /// the Bind was not seen whole: kept rows are then hex, never misread).
    formats: Option<Vec<i16>>,
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

pub struct SessionAudit {
    audit: Audit,
    id: Arc<str>,
    statements: u64,
    pending: VecDeque<Pending>,
    rfq: u64,
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
            pending: VecDeque::new(),
            rfq: 0,
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
    /// (per the store's mode) before it is forwarded.
    pub async fn decided(&mut self, msg: &[u8], facts: StatementFacts) -> Recorded {
        let text = StatementText::read(
            msg.first().copied().unwrap_or(0),
            msg.get(5..).unwrap_or(&[]),
        );
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
            sql: lossy(sql),
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

    /// A Query (or its stand-in) went upstream; `due` is the ReadyForQuery that ends it.
    pub fn query_sent(&mut self, statement: u64, due: u64, refused: bool) {
        self.push(statement, due, true, refused);
    }

    /// An Execute (or, `refused_now`, its stand-in) went upstream; its portal runs
    /// `entry` (None: unknown, statement 0) with result `formats`, and its cycle ends at
    /// ReadyForQuery number `due`.
    pub fn execute(
        &mut self,
        entry: Option<(u64, bool)>,
        formats: Option<&[i16]>,
        due: u64,
        refused_now: bool,
    ) {
        let (n, refused) = entry.unwrap_or((0, false));
        self.push(n, due, false, refused || refused_now);
        if let Some(p) = self.pending.back_mut() {
            p.formats = Some(match formats {
                Some(f) => f.to_vec(),
                None => vec![1],
            });
        }
    }

    fn push(&mut self, statement: u64, due: u64, simple: bool, refused: bool) {
        self.pending.push_back(Pending {
            statement,
            due,
            simple,
            refused,
            started: Instant::now(),
            rows: None,
            command: None,
            error: None,
            formats: None,
        });
    }

    /// Server messages the tracker must see whole (all small, except rows when kept).
    pub fn wants(&self, tag: u8) -> bool {
        matches!(tag, b'C' | b'I' | b's' | b'E' | b'Z')
    }

    /// RowDescription and DataRow are wanted whole while rows are being kept for the
    /// oldest pending statement (past `record_rows`, rows stream untouched again).
    pub fn wants_rows(&self, tag: u8) -> bool {
        let Some(rec) = &self.rows else { return false };
        let front = self.pending.front();
        match tag {
            // Also a statement Describe's, before its Execute: it names the columns.
            b'T' => front.is_none_or(|p| !p.refused),
            b'D' => front.is_some_and(|p| !p.refused) && !rec.full(),
            _ => false,
        }
    }

    /// The hook for kept result rows: RowDescription ('T') and DataRow ('D') messages
    /// exactly as sent to the client, that is after masking. Call it only with what
    /// the client receives; rows of a refused statement are never recorded.
    pub fn record_result_message(&mut self, msg: &[u8]) {
        let Some(rec) = self.rows.as_mut() else {
            return;
        };
        let front = self.pending.front();
        match msg.first() {
            Some(b'T') if front.is_none_or(|p| !p.refused) => rec.row_description(msg),
            Some(b'D') => {
                if let Some(p) = front.filter(|p| !p.refused) {
                    rec.data_row_in(msg, p.formats.as_deref());
                }
            }
            _ => {}
        }
    }

    /// A whole server message of a kind [`SessionAudit::wants`]. Completed records do
    /// not wait for the disk: the statement already ran, and its `decided` record is.
    pub async fn server_message(&mut self, msg: &[u8]) -> Result<(), AuditError> {
        let body = msg.get(5..).unwrap_or(&[]);
        match msg.first() {
            Some(b'C') => {
                let tag = lossy(CommandComplete::parse(body).map(|c| c.tag).unwrap_or(body));
                if let Some(p) = self.pending.front_mut() {
                    if let Some(r) = tag_rows(&tag) {
                        p.rows = Some(p.rows.unwrap_or(0) + r);
                    }
                    p.command = Some(tag);
                    if !p.simple {
                        return self.complete_front().await;
                    }
                }
            }
            Some(b'I') | Some(b's') if self.pending.front().is_some_and(|p| !p.simple) => {
                return self.complete_front().await;
            }
            Some(b'E') => {
                if let Some(p) = self.pending.front_mut() {
                    if p.error.is_none() {
                        let fields = crate::protocol::backend::parse_fields(body);
                        p.error = Some(StatementError {
                            code: crate::protocol::backend::field(&fields, b'C').to_owned(),
                            message: crate::protocol::backend::field(&fields, b'M').to_owned(),
                        });
                    }
                    if !p.simple {
                        return self.complete_front().await;
                    }
                }
            }
            Some(b'Z') => {
                self.rfq += 1;
                while self.pending.front().is_some_and(|p| p.due <= self.rfq) {
                    if self.pending.front().is_some_and(|p| p.simple) {
                        self.complete_front().await?;
                    } else {
                        // Skipped by the server after an earlier error in the cycle.
                        self.pending.pop_front();
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn complete_front(&mut self) -> Result<(), AuditError> {
        let Some(p) = self.pending.pop_front() else {
            return Ok(());
        };
        let (columns, recorded_rows, rows_truncated) = match self.rows.as_mut() {
            Some(r) => r.take(),
            None => Default::default(),
        };
        if p.refused {
            return Ok(());
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
        let event = Event::Statement(Statement::Completed(Completed {
            statement: p.statement,
            duration_ms: (p.started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
            rows: p.rows,
            command: p.command,
            error: p.error,
            columns,
            recorded_rows,
            rows_truncated,
        }));
        self.audit.record(Some(&self.id), event).await
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
