//! The audit page: recorded sessions (filtered by identity, target and time, as
//! `pgmoat audit sessions`), one session's replay as a transcript (as `pgmoat audit
//! replay`: the rows are the masked ones the store kept), and the chain's verify
//! status (as `pgmoat audit verify`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{esc, layout, url_part};
use super::signin::SignIn;
use super::{html_response, ConsoleState};
use crate::admin::AuditAccess;
use crate::audit::{replay, time, verify};

/// The audit stores the sign-in may read: (tenant, store).
fn stores(st: &ConsoleState, who: &SignIn) -> Vec<(String, AuditAccess)> {
    st.admin
        .visible(who.scope)
        .filter_map(|t| Some((t.name.clone(), t.audit.clone()?)))
        .collect()
}

/// The store `?tenant=` names among the visible ones (the first without a name).
fn pick(
    st: &ConsoleState,
    who: &SignIn,
    q: &HashMap<String, String>,
) -> Option<(String, AuditAccess)> {
    let all = stores(st, who);
    match q.get("tenant").filter(|t| !t.is_empty()) {
        Some(name) => all.into_iter().find(|(n, _)| n == name),
        None => all.into_iter().next(),
    }
}

/// A time filter: RFC 3339, or a browser's `YYYY-MM-DDTHH:MM` read as UTC.
fn when(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    let Some(v) = q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    time::parse_rfc3339(v)
        .or_else(|_| time::parse_rfc3339(&format!("{v}:00Z")))
        .map(Some)
        .map_err(|e| format!("{key}: {e}"))
}

/// How long a chain's status is shown before the store is verified again: a page
/// load must not cost a read of the whole store (review L3).
const CHAIN_STATUS_FOR: Duration = Duration::from_secs(60);

/// A replay's transcript is cut past this many bytes (with a line that says so).
const TRANSCRIPT_MAX: usize = 1 << 20;

/// The chain's status, verified at most once a minute per store and never twice at
/// once: a caller that finds a verify running waits for it and shares its answer.
fn chain_status(a: &AuditAccess) -> String {
    static CHECKED: OnceLock<Mutex<HashMap<PathBuf, (Instant, String)>>> = OnceLock::new();
    let mut checked = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((at, status)) = checked.get(&a.dir) {
        if at.elapsed() < CHAIN_STATUS_FOR {
            return status.clone();
        }
    }
    let status = verify_now(a);
    checked.insert(a.dir.clone(), (Instant::now(), status.clone()));
    status
}

fn verify_now(a: &AuditAccess) -> String {
    let at = time::format_micros(time::now_micros());
    let status = verify_status(a);
    // Say when: the status is shown for a minute.
    status.replacen(
        "</p>",
        &format!(" <small>(checked {})</small></p>", esc(&at)),
        1,
    )
}

fn verify_status(a: &AuditAccess) -> String {
    let key = a.hmac_key.as_ref().map(|k| k.expose().as_bytes().to_vec());
    match verify::verify(&a.dir, key.as_deref(), None) {
        Ok(Ok(r)) => format!(
            r#"<p class="chain ok" role="status">Chain verified: {} records in {} segment{}{}.</p>"#,
            r.records,
            r.segments,
            if r.segments == 1 { "" } else { "s" },
            r.head
                .map(|h| format!(", head {}:{}", h.seq, esc(&h.hash)))
                .unwrap_or_default()
        ),
        Ok(Err(bad)) => format!(
            r#"<p class="chain err" role="alert">Chain BROKEN at record {} in {}: {}</p>"#,
            bad.seq,
            esc(&bad.segment),
            esc(&bad.reason)
        ),
        Err(e) => format!(
            r#"<p class="chain err" role="alert">Cannot verify the store: {}</p>"#,
            esc(&e.to_string())
        ),
    }
}

pub async fn list(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match st.viewer(&headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let all = stores(&st, &who);
    let Some((tenant, store)) = pick(&st, &who, &q) else {
        let body = "<p>No audit store is configured (no <code>audit:</code> section) that you may read.</p>";
        return html_response(StatusCode::OK, layout("Audit", "audit", Some(&who), body));
    };
    let get = |k: &str| q.get(k).map(|v| v.trim()).unwrap_or("").to_owned();
    let filter = (|| {
        Ok::<_, String>(replay::Filter {
            user: Some(get("identity")).filter(|v| !v.is_empty()),
            target: Some(get("target")).filter(|v| !v.is_empty()),
            since: when(&q, "since")?,
            until: when(&q, "until")?,
        })
    })();
    let dir = store.clone();
    let found = tokio::task::spawn_blocking(move || {
        let status = chain_status(&dir);
        let list = filter.and_then(|f| replay::sessions(&dir.dir, &f).map_err(|e| e.to_string()));
        (status, list)
    })
    .await;
    let Ok((status, list)) = found else {
        return html_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the audit store could not be read".into(),
        );
    };
    let mut tenants = String::new();
    if all.len() > 1 {
        tenants.push_str(r#"<label for="tenant">Tenant</label><select id="tenant" name="tenant">"#);
        for (n, _) in &all {
            let sel = if *n == tenant { " selected" } else { "" };
            let _ = write!(tenants, r#"<option{sel}>{}</option>"#, esc(n));
        }
        tenants.push_str("</select>");
    }
    let mut rows = String::new();
    let mut error = String::new();
    match list {
        Ok(list) => {
            // Newest first: what an operator looks for is usually recent.
            for s in list.iter().rev().take(500) {
                let _ = writeln!(
                    rows,
                    r#"<tr><td><a href="/ui/audit/{path}?tenant={tq}">{id}</a></td><td>{user}</td><td>{target}</td><td>{client}</td><td>{started}</td><td>{ended}</td><td>{n}</td><td>{blocked}</td></tr>"#,
                    path = url_part(&s.id),
                    tq = url_part(&tenant),
                    id = esc(&s.id),
                    user = esc(&s.start.user),
                    target = esc(&s.start.target),
                    client = esc(&s.start.client),
                    started = esc(&s.started),
                    ended = esc(s.ended.as_deref().unwrap_or("open")),
                    n = s.statements,
                    blocked = s.blocked,
                );
            }
            if list.is_empty() {
                rows.push_str(
                    r#"<tr class="empty"><td colspan="8">No recorded sessions match.</td></tr>"#,
                );
            }
        }
        Err(e) => {
            error = format!(r#"<p class="flash err" role="alert">{}</p>"#, esc(&e));
        }
    }
    let body = format!(
        r#"{status}
<form class="filters" method="get" action="/ui/audit" role="search" aria-label="Filter recorded sessions">
{tenants}
<label for="identity">Identity</label><input id="identity" name="identity" value="{identity}">
<label for="target">Target</label><input id="target" name="target" value="{target}">
<label for="since">Since <small>(RFC 3339, UTC)</small></label><input id="since" name="since" value="{since}" placeholder="2026-12-01T00:00:00Z">
<label for="until">Until</label><input id="until" name="until" value="{until}" placeholder="2026-12-31T23:59:59Z">
<button type="submit">Filter</button>
</form>
{error}
<table>
<caption class="visually-hidden">Recorded sessions</caption>
<thead><tr><th scope="col">Session</th><th scope="col">Identity</th><th scope="col">Target</th><th scope="col">Client</th><th scope="col">Started</th><th scope="col">Ended</th><th scope="col">Statements</th><th scope="col">Not allowed</th></tr></thead>
<tbody>
{rows}</tbody>
</table>"#,
        identity = esc(&get("identity")),
        target = esc(&get("target")),
        since = esc(&get("since")),
        until = esc(&get("until")),
    );
    html_response(StatusCode::OK, layout("Audit", "audit", Some(&who), &body))
}

pub async fn replay(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Path(session): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match st.viewer(&headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some((tenant, store)) = pick(&st, &who, &q) else {
        return html_response(
            StatusCode::NOT_FOUND,
            layout("Replay", "audit", Some(&who), "<p>No such audit store.</p>"),
        );
    };
    let id = session.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut text = Capped::default();
        replay::replay(&store.dir, &id, &mut text).map(|found| (found, text))
    })
    .await;
    let (status, body) = match out {
        Ok(Ok((true, text))) => (
            StatusCode::OK,
            format!(
                r#"<p><a href="/ui/audit?tenant={}">Back to the recorded sessions</a></p>
<p class="hint">Rows are shown as the store kept them: after masking.</p>
<pre class="transcript" tabindex="0" aria-label="Transcript">{}</pre>{}"#,
                url_part(&tenant),
                esc(&String::from_utf8_lossy(&text.bytes)),
                if text.cut > 0 {
                    format!(
                        r#"<p class="flash err" role="status">The transcript is cut here: {} more bytes. <code>pgmoat audit replay</code> prints it whole.</p>"#,
                        text.cut
                    )
                } else {
                    String::new()
                }
            ),
        ),
        Ok(Ok((false, _))) => (
            StatusCode::NOT_FOUND,
            format!("<p>No session {} in the store.</p>", esc(&session)),
        ),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("<p>{}</p>", esc(&e.to_string())),
        ),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "<p>failed</p>".into()),
    };
    html_response(
        status,
        layout(&format!("Replay of {session}"), "audit", Some(&who), &body),
    )
}

/// A transcript kept up to [`TRANSCRIPT_MAX`] bytes; the rest is only counted, so a
/// session of millions of statements cannot fill the memory (review L3).
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    cut: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = TRANSCRIPT_MAX.saturating_sub(self.bytes.len());
        let kept = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..kept]);
        self.cut += (buf.len() - kept) as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
