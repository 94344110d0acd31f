//! Running one statement on an MCP session's upstream session, and reading what came
//! back as the `query` tool shows it.

use futures_util::StreamExt;
use serde_json::Value;
use tokio_postgres::types::ToSql;

use super::session::Conn;
use super::values::{column, to_json, JsonParam, Raw};
use crate::approval::returned::parse_pending;

/// A statement's result, cut at `max_rows`.
pub struct Rows {
    pub columns: Vec<Value>,
    pub rows: Vec<Value>,
    /// Rows returned, or rows affected for a statement that returns none.
    pub row_count: u64,
    pub truncated: bool,
}

/// Why a statement did not run.
pub enum Failure {
    /// Held for approval: ask again once `id` is approved.
    Pending { id: String, rule: String },
    /// Refused by pgmoat or failed in the server: the text the agent sees.
    Refused(String),
    /// The database session was ended by an operator (57P01) while the call ran.
    Terminated(String),
}

/// Run `sql` with `params` bound as real parameters (text format, any type).
pub async fn run(
    conn: &Conn,
    sql: &str,
    params: &[Value],
    max_rows: usize,
) -> Result<Rows, Failure> {
    let bound: Vec<JsonParam<'_>> = params.iter().map(JsonParam).collect();
    let stream = conn
        .client
        .query_raw(sql, bound.iter().map(|p| p as &(dyn ToSql + Sync)))
        .await
        .map_err(failure)?;
    let mut stream = std::pin::pin!(stream);
    let mut columns = None;
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(row) = stream.next().await {
        let row = row.map_err(failure)?;
        if rows.len() == max_rows {
            // The rest is read and dropped by the driver; the session stays usable.
            truncated = true;
            break;
        }
        let cols = row.columns();
        if columns.is_none() {
            columns = Some(cols.iter().map(|c| column(c.name(), c.type_())).collect());
        }
        let values: Vec<Value> = (0..cols.len())
            .map(|i| match row.try_get::<_, Option<Raw<'_>>>(i) {
                Ok(Some(Raw(bytes))) => to_json(cols[i].type_(), bytes),
                _ => Value::Null,
            })
            .collect();
        rows.push(Value::Array(values));
    }
    let row_count = if truncated || !rows.is_empty() {
        rows.len() as u64
    } else {
        stream.rows_affected().unwrap_or(0)
    };
    Ok(Rows {
        columns: columns.unwrap_or_default(),
        rows,
        row_count,
        truncated,
    })
}

/// An error as the agent reads it: the server's or pgmoat's message with its DETAIL
/// and HINT (a blocked statement's DETAIL holds the facts the rule matched), or a
/// pending approval.
pub fn failure(e: tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        return Failure::Refused(format!(
            "pgmoat: the database session ended ({e}); call the tool again to reconnect"
        ));
    };
    if db.code().code() == crate::protocol::sqlstate::INSUFFICIENT_PRIVILEGE {
        if let Some((id, rule)) = parse_pending(db.message()) {
            return Failure::Pending { id, rule };
        }
    }
    let mut text = db.message().to_owned();
    if let Some(d) = db.detail() {
        text.push_str("\nDETAIL: ");
        text.push_str(d);
    }
    if let Some(h) = db.hint() {
        text.push_str("\nHINT: ");
        text.push_str(h);
    }
    text.push_str("\nSQLSTATE: ");
    text.push_str(db.code().code());
    if db.code() == &tokio_postgres::error::SqlState::ADMIN_SHUTDOWN {
        return Failure::Terminated(text);
    }
    Failure::Refused(text)
}
