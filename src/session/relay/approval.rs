//! Holding a statement for an approver, running one under a grant, and the refusals
//! pgmoat makes when it cannot follow a hold or record one.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{client_io, Relay, Waited};
use crate::protocol::{backend, sqlstate};
use crate::session::error::SessionError;
use crate::session::verdict::{Hold, OwnCause, Refusal};

impl Relay {
    /// Hold a statement until an approver decides, it expires, or the client cancels
    /// or leaves. Client bytes that arrive meanwhile are kept in `buf` for later.
    pub(super) async fn wait_for_approval(
        &mut self,
        hold: Arc<Hold>,
        params: Vec<String>,
        params_key: [u8; 32],
        statement: u64,
        buf: &mut BytesMut,
    ) -> Result<Waited, SessionError> {
        if self.judge.as_ref().is_some_and(|j| j.approval_return) {
            return Ok(self
                .hold_returned(hold, params, params_key, statement)
                .await);
        }
        let (name, groups, target) = match &self.judge {
            Some(j) => (
                j.identity.name.clone(),
                j.identity.groups.clone(),
                j.target.clone(),
            ),
            None => return Ok(Waited::Approved),
        };
        // Waiting starts before the request is listed: a cancel sent as soon as the
        // request shows (in the API, or the notice below) must withdraw it, not go
        // to the server, which has nothing running to cancel.
        let signal = Arc::clone(&self.cancel_signal);
        signal.waiting(true);
        let mut ticket = hold.approvals.request(
            &name,
            &groups,
            &target,
            &hold.sql,
            params,
            &hold.rule,
            &hold.approvers,
            self.judge.as_ref().map(|j| j.door).unwrap_or_default(),
            hold.exact,
        );
        let id = ticket.request.id.clone();
        if let Err(e) = hold.approvals.publish(&ticket).await {
            tracing::warn!(identity = %name, %target, rule = %hold.rule, error = %e, "statement refused: it cannot be held");
            signal.waiting(false);
            return Ok(Waited::Refused(unpublished(&e)));
        }
        tracing::info!(identity = %name, %target, rule = %hold.rule, approval = %id, "statement held for approval");
        use crate::audit::event::ApprovalState;
        if let Some(a) = &self.audit {
            if let Err(e) = a
                .approval(&id, statement, ApprovalState::Requested, None, None, None)
                .await
            {
                // Fail closed: a hold the trail does not show is not offered.
                signal.waiting(false);
                return Ok(Waited::Refused(audit_refusal(&e)));
            }
        }
        let mut notice = BytesMut::new();
        backend::notice_response(
            &mut notice,
            "00000",
            &format!("pgmoat: waiting for approval {id} (rule \"{}\")", hold.rule),
        );
        let sent = async {
            self.client.write_all(&notice).await?;
            self.client.flush().await
        };
        if let Err(e) = sent.await {
            signal.waiting(false);
            return Err(client_io(e));
        }
        let mut shutdown = self.shutdown.clone();
        let mut terminate = self.terminate.clone();
        let refuse = |code: &'static str, message: String, detail: Option<String>| {
            Waited::Refused(Refusal::rule(hold.rule.clone(), code, message).with_detail(detail))
        };
        let mut grant_until = None;
        let waited = loop {
            tokio::select! {
                r = ticket.wait() => {
                    use crate::approval::Resolution;
                    break match r {
                        Resolution::Approved { by, reason, grant_until: until } => {
                            tracing::info!(approval = %id, %by, "approved");
                            grant_until = until.map(crate::approval::format_time);
                            (ApprovalState::Approved, Some(by), Some(reason), Waited::Approved)
                        }
                        Resolution::Denied { by, reason } => (ApprovalState::Denied, Some(by.clone()), Some(reason.clone()), refuse(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            if reason.is_empty() {
                                format!("pgmoat: approval {id} denied by {by}")
                            } else {
                                format!("pgmoat: approval {id} denied by {by}: {reason}")
                            },
                            Some(format!("rule \"{}\"", hold.rule)),
                        )),
                        Resolution::Expired => (ApprovalState::Expired, None, None, refuse(
                            sqlstate::INSUFFICIENT_PRIVILEGE,
                            format!("pgmoat: approval {id} timed out: nobody approved the statement in time"),
                            Some(format!("rule \"{}\"", hold.rule)),
                        )),
                        Resolution::Withdrawn => (ApprovalState::Withdrawn, None, None, refuse(
                            sqlstate::QUERY_CANCELED,
                            "canceling statement due to user request".into(),
                            None,
                        )),
                    };
                }
                _ = signal.cancelled() => {
                    break (ApprovalState::Withdrawn, None, Some("cancelled by the client".to_string()), refuse(
                        sqlstate::QUERY_CANCELED,
                        "canceling statement due to user request".into(),
                        Some(format!("pgmoat withdrew approval request {id}")),
                    ));
                }
                n = self.client.read_buf(buf) => match n {
                    Ok(0) | Err(_) => break (ApprovalState::Withdrawn, None, Some("the client disconnected".to_string()), Waited::ClientGone),
                    Ok(_) => {}
                },
                Ok(_) = terminate.wait_for(|s| *s) => {
                    break (ApprovalState::Withdrawn, None, Some("session terminated by an operator".to_string()), refuse(
                        sqlstate::ADMIN_SHUTDOWN,
                        format!("pgmoat: the session was terminated; approval {id} withdrawn"),
                        None,
                    ));
                }
                _ = shutdown.wait_for(|s| *s) => {
                    break (ApprovalState::Withdrawn, None, Some("gateway shutting down".to_string()), refuse(
                        sqlstate::ADMIN_SHUTDOWN,
                        format!("pgmoat: the gateway is shutting down; approval {id} withdrawn"),
                        None,
                    ));
                }
            }
        };
        signal.waiting(false);
        drop(ticket);
        let (state, by, reason, outcome) = waited;
        if let Some(a) = &self.audit {
            if let Err(e) = a
                .approval(
                    &id,
                    statement,
                    state,
                    by,
                    reason.filter(|r| !r.is_empty()),
                    grant_until,
                )
                .await
            {
                tracing::error!(approval = %id, "audit: approval outcome not recorded: {e}");
                if matches!(outcome, Waited::Approved) {
                    return Ok(Waited::Refused(audit_refusal(&e)));
                }
            }
        }
        Ok(outcome)
    }

    /// A held statement runs under a grant: the trail records whose approval covers
    /// it (and the statement does not run if that record cannot be written).
    pub(super) async fn run_under_grant(
        &mut self,
        g: &crate::approval::Grant,
        statement: u64,
    ) -> Option<Refusal> {
        tracing::info!(rule = %g.rule, by = %g.by, approval = %g.approval, "statement runs under an approval grant");
        let a = self.audit.as_ref()?;
        let until = crate::approval::format_time(g.expires_at);
        a.approval(
            &g.approval,
            statement,
            crate::audit::event::ApprovalState::Approved,
            Some(g.by.clone()),
            Some(format!(
                "under the grant of approval {} until {until}",
                g.approval
            )),
            Some(until),
        )
        .await
        .err()
        .map(|e| audit_refusal(&e))
    }

    /// A grant in force for a held statement (approved `for` a while, perhaps from
    /// another session), by the statement's shape.
    pub(super) fn granted(&self, hold: &Hold) -> Option<crate::approval::Grant> {
        let j = self.judge.as_ref()?;
        let fingerprint = crate::approval::sql_fingerprint(&hold.sql, hold.exact);
        hold.approvals
            .granted(&j.identity.name, &j.target, &fingerprint)
    }
}

/// A session may hold only so many statements (and portals) for approval at once.
pub(super) fn too_many_held(what: &str) -> Refusal {
    Refusal::own(
        OwnCause::Approval,
        sqlstate::PROGRAM_LIMIT_EXCEEDED,
        format!(
            "pgmoat: this session already has {} prepared {what} that need approval",
            crate::session::held::MAX_HELD
        ),
    )
    .with_detail(Some(
        "Close (DEALLOCATE) some of them, or end the transaction, first.".into(),
    ))
}

/// The statement is not run when its audit record cannot be written (fail closed).
pub(super) fn audit_refusal(e: &crate::audit::AuditError) -> Refusal {
    tracing::warn!("statement refused: its audit record could not be written: {e}");
    Refusal::own(
        OwnCause::Audit,
        sqlstate::IO_ERROR,
        "pgmoat: the statement was not run because its audit record could not be written",
    )
    .with_detail(Some(
        "The gateway's audit store is failing; see the gateway log.".into(),
    ))
}

/// A hold that could not be listed is refused: too many held, or (fail closed) a hold
/// the other replicas cannot see, which nobody could decide.
pub(super) fn unpublished(e: &crate::approval::ResolveError) -> Refusal {
    match e {
        crate::approval::ResolveError::TooMany(_) => Refusal::own(
            OwnCause::Approval,
            sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
            format!("pgmoat: {e}; try again later"),
        ),
        _ => Refusal::own(
            OwnCause::ApprovalsUnavailable,
            sqlstate::INSUFFICIENT_PRIVILEGE,
            "pgmoat: approvals unavailable",
        ),
    }
}
