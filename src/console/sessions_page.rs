//! The sessions page: live sessions of every front door with what each runs now, and
//! a terminate button (the session's client hears 57P01, as from the API).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::approvals::age;
use super::html::{csrf_field, esc, flash_from, layout, url_part};
use super::{back, html_response, ConsoleState, Fields};
use crate::admin::tenant_of;

pub async fn page(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match st.viewer(&headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let list = st.admin.sessions.list(tenant_of(&st.admin, who.scope));
    let now = SystemTime::now();
    let mut rows = String::new();
    for s in &list {
        let running = match &s.running {
            Some(r) => format!(r#"<pre class="sql">{}</pre>"#, esc(r)),
            None => r#"<span class="idle">idle</span>"#.to_owned(),
        };
        let tenant = if s.tenant.is_empty() {
            String::new()
        } else {
            format!(r#" <small class="tenant">({})</small>"#, esc(&s.tenant))
        };
        let _ = write!(
            rows,
            r#"<tr id="session-{id}"><td>{id}</td><td>{identity}{tenant}</td><td>{target}</td><td>{door}</td><td>{client}</td><td>{age}</td><td>{n}</td><td>{running}</td>
<td><form method="post" action="/ui/sessions/{path}/terminate">{csrf}<button type="submit" class="deny" aria-label="Terminate session {id}">Terminate</button></form></td></tr>
"#,
            id = esc(&s.id),
            path = url_part(&s.id),
            identity = esc(&s.identity),
            target = esc(&s.target),
            door = esc(s.protocol),
            client = esc(&s.client),
            age = esc(&age(s.started_at, now)),
            n = s.statements,
            csrf = csrf_field(&who),
        );
    }
    if list.is_empty() {
        rows.push_str(r#"<tr class="empty"><td colspan="9">No live sessions.</td></tr>"#);
    }
    let body = format!(
        r#"{flash}<p class="hint">Live sessions of every front door. <a href="/ui/sessions">Refresh</a></p>
<table>
<caption class="visually-hidden">Live sessions</caption>
<thead><tr><th scope="col">Session</th><th scope="col">Identity</th><th scope="col">Target</th><th scope="col">Front door</th><th scope="col">Client</th><th scope="col">Connected</th><th scope="col">Statements</th><th scope="col">Running now</th><th scope="col"><span class="visually-hidden">Action</span></th></tr></thead>
<tbody>
{rows}</tbody>
</table>"#,
        flash = flash_from(&q),
    );
    html_response(
        StatusCode::OK,
        layout("Sessions", "sessions", Some(&who), &body),
    )
}

/// The same `Registry::terminate` as `POST /api/v1/sessions/{id}/terminate`.
pub async fn terminate(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    fields: Fields,
) -> Response {
    let who = match st.changer(&headers, &fields) {
        Ok(w) => w,
        Err(r) => return r,
    };
    if st
        .admin
        .sessions
        .terminate(&id, tenant_of(&st.admin, who.scope))
    {
        tracing::info!(session = %id, by = %who.who, "session terminated in the console");
        back("/ui/sessions", Ok(format!("Session {id} terminated.")))
    } else {
        back("/ui/sessions", Err(format!("No live session {id}.")))
    }
}
