//! What the store records (SPEC §6). The session builds these; the writer frames them
//! with `seq`, `ts`, `session`, `prev` and `hash` (see [`super::record`]).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// One event, serialised as the body of a record: `{"type":"statement",...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    SessionStart(SessionStart),
    Statement(Statement),
    Approval(Approval),
    AuthFailure {
        user: String,
        client: String,
        reason: String,
    },
    RulesReloaded {
        /// false: the new files did not validate and the old rules stay in force.
        applied: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rules: Option<usize>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        errors: Vec<String>,
    },
    SessionEnd {
        statements: u64,
        /// How it ended: `client closed`, `terminated`, `server closed`, `shutdown`, or
        /// the error.
        end: String,
    },
    /// One request through the HTTP gateway (`super::http_request`).
    HttpRequest(super::http_request::HttpRequest),
    /// Written on open when a torn final line (never acknowledged) was cut off.
    Repair {
        segment: String,
        offset: u64,
        bytes_cut: u64,
        reason: String,
    },
    /// The SSH front door's records (see [`super::ssh`]).
    SshSessionStart(super::ssh::SshSessionStart),
    SshChannel(super::ssh::SshChannel),
    SshSessionEnd(super::ssh::SshSessionEnd),
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::SessionStart(_) => "session_start",
            Event::Statement(_) => "statement",
            Event::Approval(_) => "approval",
            Event::AuthFailure { .. } => "auth_failure",
            Event::RulesReloaded { .. } => "rules_reloaded",
            Event::SessionEnd { .. } => "session_end",
            Event::Repair { .. } => "repair",
            Event::SshSessionStart(_) => "ssh_session_start",
            Event::SshChannel(_) => "ssh_channel",
            Event::SshSessionEnd(_) => "ssh_session_end",
            Event::HttpRequest(_) => "http_request",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub user: String,
    pub groups: Vec<String>,
    pub target: String,
    pub client: String,
    pub tls: bool,
    #[serde(default)]
    pub application_name: Option<String>,
    /// The front door, when it is not the Postgres wire (`"mcp"`); absent for the wire,
    /// so its records read as they always have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A statement is recorded twice: `decided` before it is forwarded (what it is and
/// what pgmoat decided; durable first, so nothing runs unrecorded) and `completed`
/// when its result is known. Both carry the session's statement number; replay joins
/// them. An extended-protocol statement parsed once and executed many times has one
/// `decided` record and one `completed` record per execution.
///
/// In `batch` mode, where nothing waits for the disk, a `decided` record whose
/// `completed` arrives before the next flush (nothing else of that session between
/// them) is written as one `whole` record instead: the same fields, half the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Statement {
    Decided(Decided),
    Completed(Completed),
    Whole(Whole),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Decided {
    pub statement: u64,
    /// `simple` (Query) or `extended` (Parse). (Borrowed when written: no allocation
    /// per statement for a constant.)
    pub protocol: Cow<'static, str>,
    pub sql: String,
    pub kinds: Vec<String>,
    pub tables: Vec<String>,
    /// `allow`, `block` or `approve`.
    pub action: Cow<'static, str>,
    pub rules: Vec<String>,
    pub masked_columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Completed {
    pub statement: u64,
    pub duration_ms: f64,
    /// Rows from the CommandComplete tags (summed over a multi-statement Query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The last CommandComplete tag, e.g. `SELECT 3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StatementError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Up to `record_rows` result rows, as the client saw them (after masking).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorded_rows: Vec<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rows_truncated: bool,
}

/// A statement's `decided` and first `completed` record in one (see [`Statement`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Whole {
    pub statement: u64,
    pub protocol: Cow<'static, str>,
    pub sql: String,
    pub kinds: Vec<String>,
    pub tables: Vec<String>,
    pub action: Cow<'static, str>,
    pub rules: Vec<String>,
    pub masked_columns: Vec<String>,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StatementError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorded_rows: Vec<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rows_truncated: bool,
}

impl Whole {
    pub fn join(d: Decided, c: Completed) -> Whole {
        Whole {
            statement: d.statement,
            protocol: d.protocol,
            sql: d.sql,
            kinds: d.kinds,
            tables: d.tables,
            action: d.action,
            rules: d.rules,
            masked_columns: d.masked_columns,
            duration_ms: c.duration_ms,
            rows: c.rows,
            command: c.command,
            error: c.error,
            columns: c.columns,
            recorded_rows: c.recorded_rows,
            rows_truncated: c.rows_truncated,
        }
    }

    pub fn split(self) -> (Decided, Completed) {
        (
            Decided {
                statement: self.statement,
                protocol: self.protocol,
                sql: self.sql,
                kinds: self.kinds,
                tables: self.tables,
                action: self.action,
                rules: self.rules,
                masked_columns: self.masked_columns,
            },
            Completed {
                statement: self.statement,
                duration_ms: self.duration_ms,
                rows: self.rows,
                command: self.command,
                error: self.error,
                columns: self.columns,
                recorded_rows: self.recorded_rows,
                rows_truncated: self.rows_truncated,
            },
        )
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub statement: u64,
    pub state: ApprovalState,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// An approval that also granted the statement's shape: until when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_until: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Requested,
    Approved,
    Denied,
    Expired,
    Withdrawn,
}
