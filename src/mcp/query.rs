//! Running one statement on an MCP session's upstream session, and reading what came
//! back as the `query` tool shows it.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_postgres::types::ToSql;

use super::session::Conn;
use super::values::{column, to_json, JsonParam, Raw};
use crate::approval::returned::parse_pending;

/// A statement's result, cut at `max_rows` rows or `max_bytes` bytes of values.
pub struct Rows {
    pub columns: Vec<Value>,
    pub rows: Vec<Value>,
    /// Rows returned, or rows affected for a statement that returns none.
    pub row_count: u64,
    pub truncated: bool,
    /// Values cut short because one alone was larger than the byte budget:
    /// `{row, column, bytes}` (bytes: the value's size as the server sent it).
    pub cut_values: Vec<Value>,
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

/// How much may be read into one result.
#[derive(Clone, Copy)]
pub struct Budget {
    pub max_rows: usize,
    /// Bytes of JSON values, roughly as they will be sent.
    pub max_bytes: usize,
}

/// Run `sql` with `params` bound as real parameters (text format, any type).
///
/// Rows are read one at a time from the driver's stream (which asks the server for
/// more only as they are taken), and reading stops at the budget: a result larger
/// than it is never held whole. The first row is always returned, its values cut to
/// fit; a later row that does not fit whole ends the result (`truncated`).
pub async fn run(
    conn: &Conn,
    sql: &str,
    params: &[Value],
    budget: Budget,
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
    let mut cut_values = Vec::new();
    let mut used = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.map_err(failure)?;
        if rows.len() == budget.max_rows {
            // The rest is read and dropped by the driver; the session stays usable.
            truncated = true;
            break;
        }
        let cols = row.columns();
        if columns.is_none() {
            columns = Some(cols.iter().map(|c| column(c.name(), c.type_())).collect());
        }
        let first = rows.is_empty();
        let mut values = Vec::with_capacity(cols.len());
        let mut row_bytes = 0usize;
        let mut fits = true;
        for (i, col) in cols.iter().enumerate() {
            let left = budget.max_bytes.saturating_sub(used + row_bytes);
            let value = match row.try_get::<_, Option<Raw<'_>>>(i) {
                Ok(Some(Raw(bytes))) => {
                    // Compared before decoding: a value far past the budget is never
                    // turned into a (larger) JSON string at all.
                    let whole = (bytes.len() <= left)
                        .then(|| to_json(col.type_(), bytes))
                        .filter(|v| json_size(v) <= left);
                    match whole {
                        Some(v) => v,
                        None if first => {
                            cut_values.push(json!({
                                "row": 0, "column": col.name(), "bytes": bytes.len(),
                            }));
                            Value::String(prefix(bytes, left))
                        }
                        None => {
                            fits = false;
                            break;
                        }
                    }
                }
                _ => Value::Null,
            };
            row_bytes += json_size(&value);
            values.push(value);
        }
        if !fits {
            truncated = true;
            break;
        }
        used += row_bytes;
        rows.push(Value::Array(values));
        if !cut_values.is_empty() {
            // The first row alone filled the budget: nothing more fits.
            truncated = true;
            break;
        }
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
        cut_values,
    })
}

/// About how many bytes `v` takes as JSON (string escapes aside): what the budget
/// counts. Cheap for the large case, a string.
fn json_size(v: &Value) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(_) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| json_size(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + json_size(x))
                .sum::<usize>()
        }
    }
}

/// The start of a value that did not fit, as text of at most `limit` bytes (JSON
/// quotes included), cut on a character boundary.
fn prefix(bytes: &[u8], limit: usize) -> String {
    let limit = limit.saturating_sub(2);
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
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

#[cfg(test)]
mod tests {
    use super::{json_size, prefix};
    use serde_json::json;

    #[test]
    fn json_size_counts_what_is_sent() {
        for v in [
            json!(null),
            json!(true),
            json!(12.5),
            json!("abc"),
            json!([1, "x"]),
            json!({"a": [1]}),
        ] {
            assert!(json_size(&v) >= v.to_string().len(), "{v}");
        }
    }

    #[test]
    fn a_cut_value_fits_its_limit_and_keeps_whole_characters() {
        assert_eq!(prefix(b"hello world", 7), "hello");
        // "é" is two bytes: never split.
        assert_eq!(prefix("aé".as_bytes(), 4), "a");
        assert_eq!(prefix(b"abc", 0), "");
        // Invalid UTF-8 becomes replacement characters, still within the limit.
        assert!(prefix(&[0xff; 10], 8).len() <= 6);
    }
}
