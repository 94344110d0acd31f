//! The approvals page: pending requests of every tenant the sign-in may see, each
//! with approve/deny (reason, grant duration), kept current by server-sent events
//! from the approvals' own event channel.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};

use super::html::{csrf_field, esc, flash_from, layout};
use super::signin::SignIn;
use super::{back, field, html_response, ConsoleState, Fields};
use crate::approval::shown::{any_suspicious, shown, WARNING};
use crate::approval::{Approvals, Request};

/// "42s", "3m 05s", "1h 02m": how long a request has waited.
pub fn age(since: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(since).unwrap_or_default().as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The approvals the sign-in may see, with their tenant's name.
fn visible(st: &ConsoleState, who: &SignIn) -> Vec<(String, Arc<Approvals>)> {
    st.admin
        .visible(who.scope)
        .filter_map(|t| Some((t.name.clone(), t.approvals.clone()?)))
        .collect()
}

/// The pending requests as table rows (also what the live update fetches).
async fn render_rows(st: &ConsoleState, who: &SignIn) -> Result<String, String> {
    let mut all: Vec<(String, Arc<Request>)> = Vec::new();
    for (tenant, a) in visible(st, who) {
        let list = a.list().await.map_err(|e| e.to_string())?;
        all.extend(list.into_iter().map(|r| (tenant.clone(), r)));
    }
    all.sort_by_key(|(_, r)| r.requested_at);
    if all.is_empty() {
        return Ok(
            r#"<tr class="empty"><td colspan="7">Nothing is waiting for approval.</td></tr>"#
                .to_owned(),
        );
    }
    let now = SystemTime::now();
    let mut out = String::new();
    for (tenant, r) in all {
        let id = esc(&r.id);
        let params = if r.params.is_empty() {
            String::new()
        } else {
            format!(
                r#"<div class="params">parameters: {}</div>"#,
                esc(&shown(&r.params.join(", ")).text)
            )
        };
        // Review L8: invisible, control and direction-changing characters escaped,
        // long blank runs counted, and a warning when any of that happened.
        let sql = shown(&r.sql);
        let warning =
            if any_suspicious(std::iter::once(&r.sql).chain(&r.params).map(String::as_str)) {
                format!(
                    r#"<p class="warning" role="alert">Look closely: {}.</p>"#,
                    esc(WARNING)
                )
            } else {
                String::new()
            };
        let tenant = if tenant.is_empty() {
            String::new()
        } else {
            format!(r#" <small class="tenant">({})</small>"#, esc(&tenant))
        };
        let _ = write!(
            out,
            r#"<tr id="row-{id}" data-id="{id}">
<td>{identity}{tenant}</td><td>{target}</td><td>{door}</td>
<td><pre class="sql">{sql}</pre>{warning}{params}</td><td>{rule}</td><td>{age}</td>
<td><form class="decide" method="post" action="/ui/approvals/{id}/approve">{csrf}
<label for="reason-{id}">Reason</label><input id="reason-{id}" name="reason" type="text">
<label for="for-{id}">Grant for <small>(optional, e.g. 30m)</small></label><input id="for-{id}" name="for" type="text" inputmode="text" size="6">
<div class="buttons"><button type="submit" class="approve">Approve</button>
<button type="submit" class="deny" formaction="/ui/approvals/{id}/deny">Deny</button></div>
</form></td></tr>
"#,
            identity = esc(&r.identity),
            target = esc(&r.target),
            door = esc(r.front_door.as_str()),
            sql = esc(&sql.text),
            rule = esc(&r.rule),
            age = esc(&age(r.requested_at, now)),
            csrf = csrf_field(who),
        );
    }
    Ok(out)
}

pub async fn page(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let who = match st.viewer(&headers) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let flash = flash_from(&q);
    if visible(&st, &who).is_empty() {
        let body = format!(
            "{flash}<p>Approvals are not configured (no <code>approvals:</code> section).</p>"
        );
        return html_response(
            StatusCode::OK,
            super::html::layout("Approvals", "approvals", Some(&who), &body),
        );
    }
    let rows = match render_rows(&st, &who).await {
        Ok(r) => r,
        Err(e) => format!(
            r#"<tr class="empty"><td colspan="7">Cannot list the approvals: {}</td></tr>"#,
            esc(&e)
        ),
    };
    let body = format!(
        r#"{flash}<p class="hint" id="live-status" aria-live="polite">Statements held for approval. This list updates by itself.</p>
<table class="approvals" data-live="/ui/approvals/events" data-rows="/ui/approvals/rows">
<caption class="visually-hidden">Pending approval requests</caption>
<thead><tr><th scope="col">Identity</th><th scope="col">Target</th><th scope="col">Front door</th><th scope="col">SQL or command</th><th scope="col">Rule</th><th scope="col">Waiting</th><th scope="col">Decision</th></tr></thead>
<tbody id="pending">
{rows}</tbody>
</table>"#
    );
    html_response(
        StatusCode::OK,
        layout("Approvals", "approvals", Some(&who), &body),
    )
}

/// Just the rows, for the live update.
pub async fn rows(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(who) = st.sign_ins.current(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match render_rows(&st, &who).await {
        Ok(r) => html_response(StatusCode::OK, r),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}

/// `changed` whenever a request is held, decided, expires or is withdrawn, from every
/// tenant the sign-in sees.
pub async fn events(State(st): State<ConsoleState>, headers: HeaderMap) -> Response {
    let Some(who) = st.sign_ins.current(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let receivers = visible(&st, &who)
        .into_iter()
        .map(|(_, a)| {
            stream::unfold(a.subscribe(), |mut rx| async move {
                use tokio::sync::broadcast::error::RecvError;
                match rx.recv().await {
                    // Missed some: the page refetches everything anyway.
                    Ok(_) | Err(RecvError::Lagged(_)) => Some((
                        Ok::<_, Infallible>(Event::default().event("changed").data("approvals")),
                        rx,
                    )),
                    Err(RecvError::Closed) => None,
                }
            })
            .boxed()
        })
        .collect::<Vec<_>>();
    if receivers.is_empty() {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The stream ends with the sign-in (signed out, idled out): the next event after
    // that closes it rather than telling a signed-out page anything.
    let sign_ins = Arc::clone(&st.sign_ins);
    let live = stream::select_all(receivers)
        .take_while(move |_| std::future::ready(sign_ins.is_live(&headers)));
    Sse::new(live)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// Approve or deny, through the same `decide_in` as the API (the requester cannot
/// approve its own request; the approver must be in the rule's approvers).
pub async fn decide(
    State(st): State<ConsoleState>,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
    fields: Fields,
) -> Response {
    let who = match st.changer(&headers, &fields) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let reason = field(&fields, "reason").trim();
    let grant = match field(&fields, "for").trim() {
        "" => None,
        _ if !approve => None,
        d => match crate::config::parse_duration(d) {
            Ok(d) => Some(d),
            Err(e) => return back("/ui/approvals", Err(format!("Grant for: {e}"))),
        },
    };
    let all = match crate::admin::approvals_in(&st.admin, who.scope) {
        Ok(a) => a,
        Err(_) => return back("/ui/approvals", Err("approvals are not configured".into())),
    };
    let outcome = crate::admin::decide_in(
        &all,
        &id,
        &who.who,
        who.groups.as_deref(),
        approve,
        reason,
        grant,
    )
    .await;
    match outcome {
        Ok(r) => {
            tracing::info!(id = %r.id, by = %who.who, approve, "decided in the console");
            let verb = if approve { "Approved" } else { "Denied" };
            back(
                "/ui/approvals",
                Ok(format!("{verb} {} ({} on {}).", r.id, r.identity, r.target)),
            )
        }
        Err(e) => back("/ui/approvals", Err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::age;
    use std::time::{Duration, SystemTime};

    #[test]
    fn ages_read_as_a_person_would() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(age(t, t + Duration::from_secs(42)), "42s");
        assert_eq!(age(t, t + Duration::from_secs(185)), "3m 05s");
        assert_eq!(age(t, t + Duration::from_secs(3720)), "1h 02m");
        assert_eq!(age(t, t - Duration::from_secs(5)), "0s");
    }
}
