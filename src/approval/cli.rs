//! `pgmoat approvals list | approve ID | deny ID`: talk to a running gateway's admin
//! API, with the token from `PGMOAT_ADMIN_TOKEN`.

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
            s(&r, "sql").replace('\n', "\n    ")
        ));
    }
    out.trim_end().to_owned()
}
