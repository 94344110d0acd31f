//! Running the console's commands: each one through the function the admin API uses
//! (the session registry, `Approvals::list`/`decide`, `RulesHandle::reload`,
//! `explain::explain`, the metrics text), answered as a result set or a command tag.
//! Everything is scoped to the admin's own tenant.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures_util::Sink;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::command::{self, Command};
use crate::approval::{Approvals, ResolveError};
use crate::auth::Identity;
use crate::policy::reload::Reload;
use crate::policy::Subject;
use crate::protocol::sqlstate;
use crate::session::registry::Registration;
use crate::session::tenant::Tenant;
use crate::session::Shared;

// The result columns of each command that answers with rows.
const SESSIONS: &[(&str, Type)] = &[
    ("id", Type::TEXT),
    ("identity", Type::TEXT),
    ("target", Type::TEXT),
    ("client", Type::TEXT),
    ("protocol", Type::TEXT),
    ("started_at", Type::TEXT),
    ("statements", Type::INT8),
    ("running", Type::TEXT),
];
const APPROVALS: &[(&str, Type)] = &[
    ("id", Type::TEXT),
    ("front_door", Type::TEXT),
    ("identity", Type::TEXT),
    ("target", Type::TEXT),
    ("sql", Type::TEXT),
    ("rule", Type::TEXT),
    ("approvers", Type::TEXT),
    ("requested_at", Type::TEXT),
    ("age", Type::TEXT),
    ("expires_at", Type::TEXT),
];
const RULES: &[(&str, Type)] = &[
    ("id", Type::TEXT),
    ("action", Type::TEXT),
    ("approvers", Type::TEXT),
    ("description", Type::TEXT),
    ("source", Type::TEXT),
];
const EXPLAIN: &[(&str, Type)] = &[
    ("action", Type::TEXT),
    ("rules", Type::TEXT),
    ("reason", Type::TEXT),
    ("kinds", Type::TEXT),
    ("tables_read", Type::TEXT),
    ("tables_written", Type::TEXT),
    ("functions", Type::TEXT),
    ("where", Type::TEXT),
    ("masked_columns", Type::TEXT),
];
const STATS: &[(&str, Type)] = &[("name", Type::TEXT), ("value", Type::TEXT)];

/// The result columns `cmd` answers with; empty for those answered by a command tag.
pub fn columns(cmd: &Command) -> &'static [(&'static str, Type)] {
    match cmd {
        Command::ShowSessions => SESSIONS,
        Command::ShowApprovals => APPROVALS,
        Command::ShowRules => RULES,
        Command::ShowStats => STATS,
        Command::Explain { .. } => EXPLAIN,
        Command::Approve { .. } | Command::Deny { .. } | Command::Reload => &[],
    }
}

/// One admin's console session.
pub struct Console {
    pub shared: Arc<Shared>,
    pub identity: Identity,
    pub tenant: Arc<Tenant>,
    /// Its own line in `SHOW SESSIONS`.
    pub registration: Registration,
}

/// A cell of a result row: the console's answers are text and counts.
enum Cell {
    Text(Option<String>),
    Int(i64),
}

fn text(s: impl Into<String>) -> Cell {
    Cell::Text(Some(s.into()))
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

/// The columns of a command's result set, in the formats the client asked for (text
/// for the simple protocol; a driver's Bind may ask for binary).
pub fn fields(columns: &[(&str, Type)], format: &Format) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| {
            FieldInfo::new((*name).into(), None, None, ty.clone(), format.format_for(i))
        })
        .collect()
}

/// A result set with these columns and rows.
fn table(
    columns: &[(&str, Type)],
    format: &Format,
    rows: Vec<Vec<Cell>>,
) -> PgWireResult<Response> {
    let fields: Arc<Vec<FieldInfo>> = Arc::new(fields(columns, format));
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let mut encoded = Vec::with_capacity(rows.len());
    for row in rows {
        for cell in row {
            match cell {
                Cell::Text(t) => encoder.encode_field(&t)?,
                Cell::Int(n) => encoder.encode_field(&n)?,
            }
        }
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(Response::Query(QueryResponse::new(
        fields,
        futures_util::stream::iter(encoded),
    )))
}

fn since(t: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}s")
}

/// What an approval decision's failure means to a SQL client.
fn resolve_error(e: ResolveError) -> PgWireError {
    let code = match &e {
        ResolveError::NotFound(_) => "42704",
        ResolveError::SelfApproval(_) | ResolveError::NotAnApprover { .. } => {
            sqlstate::INSUFFICIENT_PRIVILEGE
        }
        ResolveError::Unavailable(_) | ResolveError::TooMany(_) => sqlstate::CANNOT_CONNECT_NOW,
    };
    user_error(code, e.to_string())
}

impl Console {
    /// Show a driver's prepared command as running (the simple protocol shows the
    /// query text itself).
    pub(super) fn note_running(&self, cmd: &Command) {
        self.registration.running(Some(&format!("{cmd:?}")));
        self.registration.count(1);
    }

    pub(super) fn note_running_done(&self) {
        self.registration.running(None);
    }

    /// The tenant scope for registry lookups (every session's tenant is "" without
    /// `tenants:`, so this is exact either way).
    fn tenant_name(&self) -> Option<&str> {
        Some(self.tenant.name.as_str())
    }

    fn approvals(&self) -> PgWireResult<&Arc<Approvals>> {
        self.tenant.approvals.as_ref().ok_or_else(|| {
            user_error(
                "55000",
                "approvals are not configured (no `approvals:` section)",
            )
        })
    }

    pub async fn run(&self, cmd: Command, format: &Format) -> PgWireResult<Response> {
        match cmd {
            Command::ShowSessions => self.show_sessions(format),
            Command::ShowApprovals => self.show_approvals(format).await,
            Command::ShowRules => self.show_rules(format),
            Command::ShowStats => self.show_stats(format),
            Command::Approve { id, reason, grant } => {
                self.approvals()?
                    .decide(&id, &self.identity.name, true, &reason, grant)
                    .await
                    .map_err(resolve_error)?;
                Ok(Response::Execution(Tag::new("APPROVE")))
            }
            Command::Deny { id, reason } => {
                self.approvals()?
                    .decide(&id, &self.identity.name, false, &reason, None)
                    .await
                    .map_err(resolve_error)?;
                Ok(Response::Execution(Tag::new("DENY")))
            }
            Command::Reload => self.reload().await,
            Command::Explain { identity, sql } => self.explain(identity, sql, format).await,
        }
    }

    fn show_sessions(&self, format: &Format) -> PgWireResult<Response> {
        let rows = self
            .shared
            .sessions
            .list(self.tenant_name())
            .into_iter()
            .map(|s| {
                vec![
                    text(s.id),
                    text(s.identity),
                    text(s.target),
                    text(s.client),
                    text(s.protocol),
                    text(crate::audit::time::format_seconds(s.started_at)),
                    Cell::Int(i64::try_from(s.statements).unwrap_or(i64::MAX)),
                    Cell::Text(s.running),
                ]
            })
            .collect();
        table(SESSIONS, format, rows)
    }

    async fn show_approvals(&self, format: &Format) -> PgWireResult<Response> {
        let mut list = self.approvals()?.list().await.map_err(resolve_error)?;
        list.sort_by_key(|r| r.requested_at);
        let rows = list
            .iter()
            .map(|r| {
                vec![
                    text(&r.id),
                    text(r.front_door.as_str()),
                    text(&r.identity),
                    text(&r.target),
                    text(&r.sql),
                    text(&r.rule),
                    text(r.approvers.join(",")),
                    text(crate::audit::time::format_seconds(r.requested_at)),
                    text(since(r.requested_at)),
                    text(crate::audit::time::format_seconds(r.expires_at)),
                ]
            })
            .collect();
        table(APPROVALS, format, rows)
    }

    fn show_rules(&self, format: &Format) -> PgWireResult<Response> {
        let set = self.tenant.rules.current();
        let mut rows: Vec<Vec<Cell>> = set
            .rules
            .iter()
            .map(|r| {
                vec![
                    text(&r.id),
                    text(r.action.as_str()),
                    text(r.approvers.join(",")),
                    text(&r.description),
                    text(&r.source),
                ]
            })
            .collect();
        rows.push(vec![
            text("default"),
            text(set.default.as_str()),
            text(""),
            text("what applies when no rule matches"),
            text(""),
        ]);
        table(RULES, format, rows)
    }

    /// The Prometheus counters `GET /metrics` shows, one row each, plus this tenant's
    /// pending approvals and live sessions.
    fn show_stats(&self, format: &Format) -> PgWireResult<Response> {
        let rendered = self.shared.metrics.render();
        let mut rows: Vec<Vec<Cell>> = rendered
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(name, value)| vec![text(name), text(value)])
            .collect();
        rows.push(vec![
            text("sessions_live"),
            text(
                self.shared
                    .sessions
                    .list(self.tenant_name())
                    .len()
                    .to_string(),
            ),
        ]);
        if let Some(a) = &self.tenant.approvals {
            rows.push(vec![
                text("approvals_pending_here"),
                text(a.pending().len().to_string()),
            ]);
        }
        table(STATS, format, rows)
    }

    async fn reload(&self) -> PgWireResult<Response> {
        let rules = Arc::clone(&self.tenant.rules);
        let outcome = tokio::task::spawn_blocking(move || rules.reload())
            .await
            .map_err(|_| user_error(sqlstate::INTERNAL_ERROR, "the reload did not finish"))?;
        let refused = match &outcome {
            Reload::Refused(errors) => Some(errors.join("; ")),
            Reload::Unchanged | Reload::Applied { .. } => None,
        };
        // Recorded as a SIGHUP's reload is: applied or refused, in the tenant's chain.
        crate::net::audit_reload(&self.tenant.audit, outcome);
        match refused {
            Some(errors) => Err(user_error(
                "F0000",
                format!("rules not reloaded, the old rules stay in force: {errors}"),
            )),
            None => Ok(Response::Execution(Tag::new("RELOAD"))),
        }
    }

    /// The groups of the identity `EXPLAIN AS` names: a local user or a certificate
    /// user of this tenant (a token's groups are only known when it is presented).
    fn groups_of(&self, name: &str) -> PgWireResult<Vec<String>> {
        let ours = self
            .shared
            .tenants
            .of_identity(name)
            .is_some_and(|t| t.name == self.tenant.name);
        if ours {
            if let (_, Some(id)) = self.shared.users.lookup(name) {
                return Ok(id.groups);
            }
            if let Some(c) = self.tenant.certificates.iter().find(|c| c.name == name) {
                return Ok(c.groups.clone());
            }
        }
        Err(user_error(
            "42704",
            format!("no local identity \"{name}\" (EXPLAIN AS knows users and certificates of the config)"),
        ))
    }

    async fn explain(
        &self,
        identity: Option<String>,
        sql: String,
        format: &Format,
    ) -> PgWireResult<Response> {
        let (user, groups) = match identity {
            Some(name) => {
                let groups = self.groups_of(&name)?;
                (name, groups)
            }
            None => (self.identity.name.clone(), self.identity.groups.clone()),
        };
        let rules = self.tenant.rules.current();
        let report = tokio::task::spawn_blocking(move || {
            let who = Subject {
                user: &user,
                groups: &groups,
                target: "",
                search_path_changed: false,
            };
            crate::explain::explain(&rules, &sql, &who)
        })
        .await
        .map_err(|_| user_error(sqlstate::INTERNAL_ERROR, "explain did not finish"))?;
        let reason = match (&report.error, report.description.is_empty()) {
            (Some(e), _) => e.clone(),
            (None, true) => format!("rule \"{}\"", report.deciding),
            (None, false) => format!("rule \"{}\": {}", report.deciding, report.description),
        };
        let head =
            |kinds: String, read: String, written: String, functions: String, where_: String| {
                vec![
                    text(report.action),
                    text(report.rules.join(",")),
                    text(&reason),
                    text(kinds),
                    text(read),
                    text(written),
                    text(functions),
                    text(where_),
                    text(report.masked_columns.join(",")),
                ]
            };
        let mut rows: Vec<Vec<Cell>> = report
            .statements
            .iter()
            .map(|s| {
                head(
                    s.kinds.join(","),
                    s.tables_read.join(","),
                    s.tables_written.join(","),
                    s.functions.join(","),
                    s.where_.to_owned(),
                )
            })
            .collect();
        if rows.is_empty() {
            rows.push(head(
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ));
        }
        table(EXPLAIN, format, rows)
    }
}

#[async_trait]
impl SimpleQueryHandler for Console {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let commands =
            command::parse(query).map_err(|e| user_error(sqlstate::SYNTAX_ERROR, e.0))?;
        self.registration.running(Some(query));
        self.registration.count(commands.len() as u64);
        let mut out = Vec::with_capacity(commands.len());
        for cmd in commands {
            match self.run(cmd, &Format::UnifiedText).await {
                Ok(r) => out.push(r),
                // Postgres stops a multi-statement query at its first error, and so
                // does the console: earlier answers stand, later commands do not run.
                Err(PgWireError::UserError(info)) => {
                    out.push(Response::Error(info));
                    break;
                }
                Err(e) => {
                    self.registration.running(None);
                    return Err(e);
                }
            }
        }
        self.registration.running(None);
        Ok(out)
    }
}
