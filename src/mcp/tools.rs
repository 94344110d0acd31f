//! The five tools. Each resolves the caller (proven by [`super::auth`]), reaches the
//! target through the MCP session's upstream session and shows the result as JSON.
//! Catalog lookups (`list_tables`, `describe_table`) are ordinary statements on that
//! session too: the rules see them like any other.

use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use super::query::{self, Failure};
use super::session::{Caller, McpSession};
use super::Door;
use crate::policy::Subject;

/// The longest a `query` waits for an approver when asked to (`wait`).
const MAX_WAIT: Duration = Duration::from_secs(600);

const INSTRUCTIONS: &str = "pgmoat is a database firewall. Every statement you send is parsed \
and judged by the DBAs' rules before it reaches the database: it may be blocked (the tool \
result says which rule and why), held for a human's approval (the result says \
pending_approval with an id: call the same tool again with the same SQL and parameters once \
it is approved, and it runs once), or allowed. Sensitive columns come back masked. Every \
call is recorded in a tamper-evident audit trail. Database credentials stay in the gateway.";

const QUERY: &str = "Run one SQL statement on a target through the pgmoat gateway. The \
statement is judged by the gateway's rules exactly as if sent by a Postgres driver: blocked \
statements are never sent to the database (an error result names the rule); statements that \
need a human's approval return {status: pending_approval, approval, rule} at once (or after \
`wait`, e.g. \"30s\"): call again with the same SQL and params once approved to run it once; \
masked columns come back masked. Pass values as `params` ($1, $2, ...): they are bound as \
real parameters, never spliced into the SQL. Returns {columns, rows, row_count, truncated, \
masked_columns, notices}; at most max_rows rows and the gateway's \
max_result_bytes of values (then truncated: true; a single value larger than that is cut \
and listed in cut_values).";

const EXPLAIN: &str = "Show what the gateway would do with some SQL for you (action, the \
rules that matched, the facts the rules saw per statement, the columns that would be \
masked) and, when the gateway would allow it, the database's EXPLAIN (FORMAT JSON) plan. The \
statement is never executed (no ANALYZE), and nothing the gateway would refuse is sent.";

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TargetArgs {
    /// The target name (see list_targets).
    pub target: String,
    /// Only this schema.
    pub schema: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TableArgs {
    /// The target name (see list_targets).
    pub target: String,
    /// The table, optionally schema-qualified: `users`, `public.users`.
    pub table: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryArgs {
    /// The target name (see list_targets).
    pub target: String,
    /// One SQL statement; use $1, $2, ... for values.
    pub sql: String,
    /// Values for $1, $2, ...: bound as parameters, never spliced into the SQL.
    #[serde(default)]
    pub params: Vec<Value>,
    /// Return at most this many rows (the gateway's mcp.max_rows at most).
    pub max_rows: Option<usize>,
    /// Wait this long for a human approval before answering pending_approval ("30s").
    pub wait: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExplainArgs {
    /// The target name (see list_targets).
    pub target: String,
    /// The SQL to explain.
    pub sql: String,
}

/// One MCP session's tool handler (rmcp makes one per session).
#[derive(Clone)]
pub struct Tools {
    door: Arc<Door>,
    session: Arc<McpSession>,
    tool_router: ToolRouter<Tools>,
}

impl Tools {
    pub fn new(door: &Arc<Door>) -> Result<Tools, std::io::Error> {
        let session = McpSession::open(door).ok_or_else(|| {
            tracing::warn!("mcp: mcp.max_sessions reached; refusing a new session");
            std::io::Error::other("too many MCP sessions")
        })?;
        Ok(Tools {
            door: Arc::clone(door),
            session: Arc::new(session),
            tool_router: Self::tool_router(),
        })
    }
}

fn caller(parts: &Parts) -> Result<Caller, ErrorData> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))
}

fn refused(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text.into())])
}

fn who<'a>(c: &'a Caller, target: &'a str) -> Subject<'a> {
    Subject {
        user: &c.identity.name,
        groups: &c.identity.groups,
        target,
        search_path_changed: false,
    }
}

/// Quote an identifier as the server would need it.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Tools {
    /// Run one statement for `c` on `target`; a refusal is the tool's error result.
    async fn rows(
        &self,
        c: &Caller,
        target: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<(query::Rows, Vec<String>), CallToolResult> {
        let conn = self
            .session
            .conn(c, target)
            .await
            .map_err(|e| refused(format!("pgmoat: {e}")))?;
        let budget = query::Budget {
            max_rows: self.door.config.max_rows,
            max_bytes: self.door.config.max_result_bytes,
        };
        let out = query::run(&conn, sql, params, budget).await;
        let notices = conn.take_notices();
        match out {
            Ok(rows) => Ok((rows, notices)),
            Err(f) => Err(failed(&conn, f)),
        }
    }

    /// Columns the caller's masks cover among those `sql` reads, as explain shows them.
    async fn masked_columns(&self, c: &Caller, target: &str, sql: &str) -> Vec<String> {
        let rules = c.tenant.rules.current();
        let who = who(c, target);
        let masks = rules.masks_for(&who);
        if masks.is_empty() {
            return Vec::new();
        }
        let Ok(classified) = self.door.shared.classifier.classify(sql).await else {
            return Vec::new();
        };
        let mut masked: Vec<String> = classified
            .statements
            .iter()
            .flat_map(|f| f.columns.iter())
            .filter(|col| {
                masks
                    .iter()
                    .any(|m| m.columns.iter().any(|g| g.matches(col)))
            })
            .cloned()
            .collect();
        masked.sort();
        masked.dedup();
        masked
    }
}

/// What a call that did not run shows; an operator's termination also ends the
/// MCP session's use of that database session.
fn failed(conn: &super::session::Conn, f: Failure) -> CallToolResult {
    match f {
        Failure::Pending { id, rule } => pending(&id, &rule),
        Failure::Refused(text) => refused(text),
        Failure::Terminated(text) => {
            conn.mark_terminated();
            refused(text)
        }
    }
}

fn pending(id: &str, rule: &str) -> CallToolResult {
    CallToolResult::structured(json!({
        "status": "pending_approval",
        "approval": id,
        "rule": rule,
        "message": format!(
            "Held for approval {id} (rule \"{rule}\"): not run. Call the tool again with the same SQL and params once it is approved; it then runs once."
        ),
    }))
}

#[tool_router]
impl Tools {
    #[tool(
        description = "List the database targets this gateway lets you reach (names only; credentials stay in the gateway)."
    )]
    async fn list_targets(
        &self,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = caller(&parts)?;
        let mut names: Vec<&String> = c.tenant.targets.keys().collect();
        names.sort();
        let targets: Vec<Value> = names.into_iter().map(|n| json!({ "name": n })).collect();
        Ok(CallToolResult::structured(json!({ "targets": targets })))
    }

    #[tool(
        description = "List the tables and views of a target (optionally of one schema). Runs a catalog query through the gateway's rules like any statement."
    )]
    async fn list_tables(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<TargetArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = caller(&parts)?;
        let sql = "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                   WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
                   AND ($1::text IS NULL OR table_schema = $1::text) ORDER BY 1, 2";
        let schema = args.schema.map(Value::String).unwrap_or(Value::Null);
        Ok(match self.rows(&c, &args.target, sql, &[schema]).await {
            Err(r) => r,
            Ok((rows, _)) => {
                let tables: Vec<Value> = rows
                    .rows
                    .iter()
                    .filter_map(|r| match r {
                        Value::Array(v) if v.len() == 3 => Some(json!({
                            "schema": v[0], "name": v[1], "type": v[2],
                        })),
                        _ => None,
                    })
                    .collect();
                CallToolResult::structured(json!({ "tables": tables, "truncated": rows.truncated }))
            }
        })
    }

    #[tool(
        description = "Describe a table's columns and types, and which columns the gateway masks for you (their values come back masked from query)."
    )]
    async fn describe_table(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<TableArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = caller(&parts)?;
        let sql = "SELECT n.nspname, c.relname, a.attname, \
                   pg_catalog.format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
                   FROM pg_catalog.pg_class c \
                   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
                   WHERE c.oid = pg_catalog.to_regclass($1::text) \
                   AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum";
        let (rows, _) = match self
            .rows(&c, &args.target, sql, &[Value::String(args.table.clone())])
            .await
        {
            Err(r) => return Ok(r),
            Ok(r) => r,
        };
        let Some(Value::Array(first)) = rows.rows.first() else {
            return Ok(refused(format!(
                "pgmoat: no table \"{}\" on target \"{}\"",
                args.table, args.target
            )));
        };
        let (schema, table) = (
            first[0].as_str().unwrap_or_default().to_owned(),
            first[1].as_str().unwrap_or_default().to_owned(),
        );
        let ruleset = c.tenant.rules.current();
        let subject = who(&c, &args.target);
        let masks = ruleset.masks_for(&subject);
        let columns: Vec<Value> = rows
            .rows
            .iter()
            .filter_map(|r| match r {
                Value::Array(v) if v.len() == 5 => {
                    let name = v[2].as_str().unwrap_or_default();
                    let full = format!("{schema}.{table}.{name}");
                    let mask = masks
                        .iter()
                        .find(|m| m.columns.iter().any(|g| g.matches(&full)));
                    Some(json!({
                        "name": name,
                        "type": v[3],
                        "nullable": v[4],
                        "masked": mask.is_some(),
                        "mask": mask.map(|m| m.id.clone()),
                    }))
                }
                _ => None,
            })
            .collect();
        Ok(CallToolResult::structured(json!({
            "table": format!("{}.{}", ident(&schema), ident(&table)),
            "columns": columns,
            "detectors": !ruleset.detectors_for(&subject).is_empty(),
        })))
    }

    #[tool(description = QUERY)]
    async fn query(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<QueryArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = caller(&parts)?;
        let wait = match args.wait.as_deref().map(crate::config::parse_duration) {
            None => None,
            Some(Ok(d)) => Some(d.min(MAX_WAIT)),
            Some(Err(e)) => return Err(ErrorData::invalid_params(format!("wait: {e}"), None)),
        };
        let conn = match self.session.conn(&c, &args.target).await {
            Ok(conn) => conn,
            Err(e) => return Ok(refused(format!("pgmoat: {e}"))),
        };
        let max = query::Budget {
            max_rows: args
                .max_rows
                .unwrap_or(self.door.config.max_rows)
                .clamp(1, self.door.config.max_rows),
            max_bytes: self.door.config.max_result_bytes,
        };
        let mut out = query::run(&conn, &args.sql, &args.params, max).await;
        if let (Err(Failure::Pending { id, .. }), Some(wait), Some(approvals)) =
            (&out, wait, c.tenant.approvals.as_ref())
        {
            let until = tokio::time::Instant::now() + wait;
            if approvals.returned.wait_settled(id, until).await {
                out = query::run(&conn, &args.sql, &args.params, max).await;
            }
        }
        let notices = conn.take_notices();
        Ok(match out {
            Err(f) => failed(&conn, f),
            Ok(rows) => {
                let mut out = json!({
                    "columns": rows.columns,
                    "rows": rows.rows,
                    "row_count": rows.row_count,
                    "truncated": rows.truncated,
                    "masked_columns": self.masked_columns(&c, &args.target, &args.sql).await,
                    "notices": notices,
                });
                if !rows.cut_values.is_empty() {
                    // Say so: the agent must not take a cut value for the whole one.
                    out["cut_values"] = Value::Array(rows.cut_values);
                    out["max_result_bytes"] = json!(self.door.config.max_result_bytes);
                }
                CallToolResult::structured(out)
            }
        })
    }

    #[tool(description = EXPLAIN)]
    async fn explain(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ExplainArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let c = caller(&parts)?;
        if !c.tenant.targets.contains_key(&args.target) {
            return Ok(refused(format!(
                "pgmoat: pgmoat has no target named \"{}\" for you",
                args.target
            )));
        }
        let rules = c.tenant.rules.current();
        let (identity, target, sql) = (c.identity.clone(), args.target.clone(), args.sql.clone());
        let report = tokio::task::spawn_blocking(move || {
            let who = Subject {
                user: &identity.name,
                groups: &identity.groups,
                target: &target,
                search_path_changed: false,
            };
            crate::explain::explain(&rules, &sql, &who)
        })
        .await
        .map_err(|e| ErrorData::internal_error(format!("explain failed: {e}"), None))?;
        let mut out = serde_json::to_value(&report)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        // Only a single statement the gateway allows outright is planned, and never
        // one that is itself an EXPLAIN (which could ask for ANALYZE).
        let plannable = report.action == "allow"
            && report.statements.len() == 1
            && !report.statements[0].kinds.contains(&"explain");
        if plannable {
            let sql = format!("EXPLAIN (FORMAT JSON) {}", args.sql);
            match self.rows(&c, &args.target, &sql, &[]).await {
                Ok((rows, _)) => {
                    let plan = match rows.rows.first() {
                        Some(Value::Array(v)) => v.first().cloned().unwrap_or(Value::Null),
                        _ => Value::Null,
                    };
                    out["plan"] = plan;
                }
                Err(r) => {
                    let text = r
                        .content
                        .first()
                        .and_then(|b| b.as_text().map(|t| t.text.clone()))
                        .unwrap_or_default();
                    out["plan_error"] = Value::String(text);
                }
            }
        }
        Ok(CallToolResult::structured(out))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions(INSTRUCTIONS)
    }
}
