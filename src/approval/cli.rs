//! `pgmoat approvals list | approve ID | deny ID`: talk to a running gateway's admin
//! API, with the token from `PGMOAT_ADMIN_TOKEN`.

use super::shown::{any_suspicious, shown, WARNING};
use serde_json::{json, Value};

/// What to do.
pub enum Call {
    List,
    Decide {
        id: String,
        approve: bool,
        by: String,
        reason: String,
        grant_for: Option<String>,
    },
}

/// Run the call against `admin` (e.g. `http://127.0.0.1:9187`); the text to print.
pub async fn run(admin: &str, token: &str, call: Call) -> Result<String, String> {
    let http = super::notify::http_client();
    let base = admin.trim_end_matches('/');
    let (req, what) = match &call {
        Call::List => (
            http.get(format!("{base}/api/v1/approvals")),
            "listing approvals",
        ),
        Call::Decide {
            id,
            approve,
            by,
            reason,
            grant_for,
        } => {
            let verb = if *approve { "approve" } else { "deny" };
            let mut body = json!({"by": by, "reason": reason});
            if let Some(f) = grant_for {
                body["for"] = json!(f);
            }
            (
                http.post(format!("{base}/api/v1/approvals/{id}/{verb}"))
                    .json(&body),
                "deciding",
            )
        }
    };
    let resp = req.bearer_auth(token).send().await.map_err(|e| {
        format!(
            "{what}: cannot reach the admin API at {base}: {}",
            short(&e)
        )
    })?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| {
        format!(
            "{what}: the admin API sent something unexpected: {}",
            short(&e)
        )
    })?;
    if !status.is_success() {
        let msg = body.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(format!("{what}: {} {msg}", status.as_u16()));
    }
    Ok(match call {
        Call::List => render_list(&body),
        Call::Decide { id, approve, .. } => {
            format!("{id} {}", if approve { "approved" } else { "denied" })
        }
    })
}

fn short(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        e.to_string().lines().next().unwrap_or("").to_owned()
    }
}

fn render_list(body: &Value) -> String {
    let items = body.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no pending approvals".into();
    }
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let mut out = String::new();
    for r in items {
        out.push_str(&format!(
            "{}  {} on {}  rule {}  expires {}\n    {}\n",
            s(&r, "id"),
            s(&r, "identity"),
            s(&r, "target"),
            s(&r, "rule"),
            s(&r, "expires_at"),
            shown_text(&s(&r, "sql")).replace('\n', "\n    ")
        ));
        let params: Vec<&str> = r
            .get("params")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !params.is_empty() {
            out.push_str(&format!("    with {}\n", shown_text(&params.join(", "))));
        }
        let sql = s(&r, "sql");
        if any_suspicious(std::iter::once(sql.as_str()).chain(params.iter().copied())) {
            out.push_str(&format!("    WARNING: {WARNING}\n"));
        }
    }
    out.trim_end().to_owned()
}

/// A requester's text as the terminal shows it: no escape sequence reaches the
/// approver's terminal (review L8).
fn shown_text(text: &str) -> String {
    shown(text).text
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_list_shows_each_request_with_its_parameters() {
        let body = serde_json::json!([
            {"id": "ap-1", "identity": "agent-1", "target": "demo", "rule": "r",
             "expires_at": "2026-12-01T10:00:00Z", "sql": "UPDATE t SET a = $1\nWHERE id = $2",
             "params": ["$1 = 'x'", "$2 = 7"]},
            {"id": "ap-2", "identity": "agent-2", "target": "demo", "rule": "r",
             "expires_at": "2026-12-01T10:00:00Z", "sql": "DELETE FROM t WHERE id = 1", "params": []}
        ]);
        assert_eq!(
            super::render_list(&body),
            "ap-1  agent-1 on demo  rule r  expires 2026-12-01T10:00:00Z\n    UPDATE t SET a = $1\n    WHERE id = $2\n    with $1 = 'x', $2 = 7\n\
             ap-2  agent-2 on demo  rule r  expires 2026-12-01T10:00:00Z\n    DELETE FROM t WHERE id = 1"
        );
        assert_eq!(
            super::render_list(&serde_json::json!([])),
            "no pending approvals"
        );
    }
}
