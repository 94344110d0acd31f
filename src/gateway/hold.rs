//! Requests an `approve` rule holds: the response waits for the decision, or, with
//! `Prefer: respond-async`, is 202 with the approval id at once (see `holds`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::holds::{Full, HoldKey, Next, Standing, APPROVED_FOR};
use super::record::Trail;
use super::{reply, Door};
use crate::approval::{Approvals, Resolution, Ticket};
use crate::audit::event::{Approval, ApprovalState};
use crate::audit::Event;
use crate::auth::Identity;
use crate::policy::NormalPath;
use crate::session::tenant::Tenant;

/// What is being asked for.
pub struct Asked<'a> {
    pub tenant: &'a Arc<Tenant>,
    pub identity: &'a Identity,
    pub target: &'a str,
    pub method: &'a str,
    pub path: &'a NormalPath,
    pub query: Option<&'a str>,
    pub rule: &'a str,
    pub approvers: Vec<String>,
}

/// The most of a held request's body an approver is shown (its size and SHA-256
/// stand for the whole).
const BODY_PREVIEW: usize = 1024;

/// Request headers that change how the target reads the body: part of what is
/// approved and shown. (Method-overriding headers never reach a target.)
const INTERPRETING: [header::HeaderName; 2] = [header::CONTENT_TYPE, header::CONTENT_ENCODING];

impl Asked<'_> {
    /// What approvers see, and what makes two held requests the same: `METHOD
    /// /path?query`, the headers that say how to read the body, and the body (its
    /// size, SHA-256 and a bounded preview). The target is its own field.
    fn text(&self, h: &HeaderMap, body: &[u8], sha256: &[u8; 32]) -> String {
        let mut t = match self.query {
            Some(q) => format!("{} {}?{q}", self.method, self.path.encoded),
            None => format!("{} {}", self.method, self.path.encoded),
        };
        for name in &INTERPRETING {
            for v in h.get_all(name) {
                let v = String::from_utf8_lossy(v.as_bytes());
                t.push_str(&format!("\n{name}: {v}"));
            }
        }
        if body.is_empty() {
            return t;
        }
        t.push_str(&format!(
            "\nbody: {} bytes, sha256 {}",
            body.len(),
            crate::audit::record::hex(sha256)
        ));
        let shown = &body[..body.len().min(BODY_PREVIEW)];
        match std::str::from_utf8(shown) {
            Ok(text) => {
                t.push('\n');
                t.push_str(text);
            }
            // Cut inside a character: show what is whole.
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                t.push('\n');
                t.push_str(&String::from_utf8_lossy(&shown[..e.valid_up_to()]));
            }
            Err(_) => t.push_str(" (binary, not shown)"),
        }
        if body.len() > BODY_PREVIEW {
            t.push_str(&format!("\n... ({} more bytes)", body.len() - BODY_PREVIEW));
        }
        t
    }
}

/// Whether the client asked for `Prefer: respond-async` (RFC 7240).
fn respond_async(h: &HeaderMap) -> bool {
    h.get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("respond-async"))
        })
}

/// Hold the request. `Ok` carries the body to forward (approved); `Err` the answer.
pub async fn hold(
    door: &Door,
    asked: Asked<'_>,
    h: &HeaderMap,
    body: Incoming,
    trail: &mut Trail,
) -> Result<Body, Response<Body>> {
    let Some(approvals) = asked.tenant.approvals.clone() else {
        // Fail closed: nobody could ever approve it.
        return Err(reply::blocked(
            asked.rule,
            "approval is needed but approvals are not configured",
        ));
    };
    // The body is part of what is approved: read it (bounded) to show and hash it,
    // in both modes (what runs is what the approver saw).
    let limit = usize::try_from(door.config.max_masked_body).unwrap_or(usize::MAX);
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "pgmoat: a request held for approval must fit in max_masked_body",
            ))
        }
    };
    trail
        .bytes_in
        .store(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let body_sha256 = HoldKey::body_hash(&bytes);
    let text = asked.text(h, &bytes, &body_sha256);
    if !respond_async(h) {
        return wait(approvals, asked, &text, bytes, trail).await;
    }
    let key = HoldKey {
        tenant: asked.tenant.name.clone(),
        identity: asked.identity.name.clone(),
        target: asked.target.to_owned(),
        method: asked.method.to_owned(),
        path_and_query: text.clone(),
        body_sha256,
    };
    match door.holds.next(&key) {
        Next::Run(id) => {
            trail.rec.approval = Some(id);
            Ok(Body::from(bytes))
        }
        Next::Waiting(id) => {
            trail.rec.approval = Some(id.clone());
            Err(accepted(&id))
        }
        Next::Refused(id, message) => {
            trail.rec.approval = Some(id.clone());
            Err(refused(&id, asked.rule, &message))
        }
        Next::Ask => {
            let ticket = ask(&approvals, &asked, &text, trail).await?;
            let id = ticket.request.id.clone();
            if let Err(full) = door.holds.pending(key.clone(), id.clone()) {
                let whose = match full {
                    Full::Identity => "of yours are",
                    Full::Tenant => "of your tenant's are",
                    Full::All => "are",
                };
                return Err(reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("pgmoat: too many requests {whose} waiting for approval"),
                ));
            }
            let holds = Arc::clone(&door.holds);
            let refused_for = approvals.timeout;
            let (audit, session) = (trail.audit().clone(), Arc::clone(trail.session()));
            tokio::spawn(async move {
                let mut ticket = ticket;
                let r = ticket.wait().await;
                let id = ticket.request.id.clone();
                record(&audit, &session, &id, &r).await;
                let standing = match r {
                    Resolution::Approved { .. } => Some(Standing::Approved {
                        id,
                        until: Instant::now() + APPROVED_FOR,
                    }),
                    Resolution::Withdrawn => None,
                    // The refusal is told to one repeat within the approval
                    // timeout; then it is forgotten (and evicted when room is needed).
                    other => Some(Standing::Refused {
                        message: refusal_text(&id, &other),
                        id,
                        until: Instant::now() + refused_for,
                    }),
                };
                holds.decided(&key, standing);
            });
            Err(accepted(&id))
        }
    }
}

/// Wait for the decision with the client connected; dropping this future (the client
/// left) withdraws the request.
async fn wait(
    approvals: Arc<Approvals>,
    asked: Asked<'_>,
    text: &str,
    body: bytes::Bytes,
    trail: &mut Trail,
) -> Result<Body, Response<Body>> {
    let mut ticket = ask(&approvals, &asked, text, trail).await?;
    let mut terminated = trail.terminated();
    let held = ticket.request.id.clone();
    let r = tokio::select! {
        r = ticket.wait() => r,
        _ = async move {
            match terminated.as_mut() {
                Some(t) => { let _ = t.wait_for(|x| *x).await; }
                None => std::future::pending::<()>().await,
            }
        } => {
            // An operator ended the request (`POST /api/v1/sessions/{id}/terminate`).
            drop(ticket);
            record(trail.audit(), trail.session(), &held, &Resolution::Withdrawn).await;
            return Err(reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "pgmoat: the request was terminated by an operator",
            ));
        }
    };
    let id = ticket.request.id.clone();
    record(trail.audit(), trail.session(), &id, &r).await;
    match r {
        Resolution::Approved { .. } => Ok(Body::from(body)),
        other => Err(refused(&id, asked.rule, &refusal_text(&id, &other))),
    }
}

/// Make and publish the approval request, and record that it was asked.
async fn ask(
    approvals: &Arc<Approvals>,
    asked: &Asked<'_>,
    text: &str,
    trail: &mut Trail,
) -> Result<Ticket, Response<Body>> {
    let ticket = approvals.request(
        &asked.identity.name,
        &asked.identity.groups,
        asked.target,
        text,
        Vec::new(),
        asked.rule,
        &asked.approvers,
        crate::approval::FrontDoor::Http,
        true,
    );
    let id = ticket.request.id.clone();
    trail.rec.approval = Some(id.clone());
    if let Err(e) = approvals.publish(&ticket).await {
        tracing::warn!(rule = %asked.rule, "http request refused: it cannot be held: {e}");
        return Err(reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("pgmoat: approvals unavailable: {e}"),
        ));
    }
    tracing::info!(identity = %asked.identity.name, target = %asked.target, rule = %asked.rule, approval = %id, "http request held for approval");
    let event = Event::Approval(Approval {
        id: id.clone(),
        statement: 1,
        state: ApprovalState::Requested,
        by: None,
        reason: None,
        grant_until: None,
    });
    if let Err(e) = trail.audit().append(Some(trail.session()), event).await {
        // Fail closed: a hold the trail does not show is not offered.
        tracing::warn!("http request refused: its approval could not be recorded: {e}");
        return Err(reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "pgmoat: the request was not held because its audit record could not be written",
        ));
    }
    Ok(ticket)
}

async fn record(audit: &crate::audit::Audit, session: &Arc<str>, id: &str, r: &Resolution) {
    let (state, by, reason) = match r {
        Resolution::Approved { by, reason, .. } => (
            ApprovalState::Approved,
            Some(by.clone()),
            Some(reason.clone()),
        ),
        Resolution::Denied { by, reason } => (
            ApprovalState::Denied,
            Some(by.clone()),
            Some(reason.clone()),
        ),
        Resolution::Expired => (ApprovalState::Expired, None, None),
        Resolution::Withdrawn => (ApprovalState::Withdrawn, None, None),
    };
    let event = Event::Approval(Approval {
        id: id.to_owned(),
        statement: 1,
        state,
        by,
        reason: reason.filter(|r| !r.is_empty()),
        grant_until: None,
    });
    if let Err(e) = audit.record(Some(session), event).await {
        tracing::error!(approval = %id, "audit: approval outcome not recorded: {e}");
    }
}

fn refusal_text(id: &str, r: &Resolution) -> String {
    match r {
        Resolution::Denied { by, reason } if reason.is_empty() => {
            format!("pgmoat: approval {id} denied by {by}")
        }
        Resolution::Denied { by, reason } => {
            format!("pgmoat: approval {id} denied by {by}: {reason}")
        }
        Resolution::Expired => {
            format!("pgmoat: approval {id} timed out: nobody approved the request in time")
        }
        _ => format!("pgmoat: approval {id} withdrawn"),
    }
}

fn accepted(id: &str) -> Response<Body> {
    let mut r = reply::json(StatusCode::ACCEPTED, serde_json::json!({ "approval": id }));
    r.headers_mut().insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

fn refused(id: &str, rule: &str, message: &str) -> Response<Body> {
    reply::json(
        StatusCode::FORBIDDEN,
        serde_json::json!({ "error": message, "rule": rule, "approval": id }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header() {
        let mut h = HeaderMap::new();
        assert!(!respond_async(&h));
        h.insert(
            "prefer",
            HeaderValue::from_static("return=minimal, Respond-Async; wait=10"),
        );
        assert!(respond_async(&h));
        h.insert("prefer", HeaderValue::from_static("respond-asynchronously"));
        assert!(!respond_async(&h));
    }
}
