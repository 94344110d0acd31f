//! Return-mode holds on the wire (`pgmoat.approval_mode=return`, SPEC section 7): a
//! held statement is answered at once with 42501 naming the approval request, and the
//! same statement sent again (same identity, target, parse tree and parameters) runs
//! once it is approved, without asking again. The MCP endpoint's sessions run in this
//! mode, so agents never wait on a tool call for a person.

use std::sync::Arc;

use super::approval::audit_refusal;
use super::{Relay, Waited};
use crate::approval::returned::{Found, ReturnKey, PENDING_PREFIX};
use crate::audit::event::ApprovalState;
use crate::protocol::sqlstate;
use crate::session::verdict::{Hold, Refusal};

/// The 42501 a held call gets while its request is pending.
pub fn pending_refusal(id: &str, rule: &str) -> Refusal {
    Refusal::rule(
        rule.to_owned(),
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("{PENDING_PREFIX}{id} (rule \"{rule}\"): the statement was not run"),
    )
    .with_detail(Some(
        "Send the same statement again once the request is approved; it then runs once.".into(),
    ))
}

impl Relay {
    pub(super) async fn hold_returned(
        &mut self,
        hold: Arc<Hold>,
        params: Vec<String>,
        params_key: [u8; 32],
        statement: u64,
    ) -> Waited {
        let Some(j) = self.judge.as_ref() else {
            return Waited::Approved;
        };
        // The tree is read on a parse thread (deep trees need its stack); the exact
        // text stands in when it cannot be read, which only matches itself.
        let sql = hold.sql.clone();
        let tree = j
            .classifier
            .on_parse_thread(move || crate::classify::tree_key(&sql))
            .await
            .ok()
            .flatten();
        let key = ReturnKey {
            identity: j.identity.name.clone(),
            target: j.target.clone(),
            statement: tree.unwrap_or_else(|| hold.sql.clone()),
            params: params_key,
        };
        let (name, groups, target, door) = (
            j.identity.name.clone(),
            j.identity.groups.clone(),
            j.target.clone(),
            j.door,
        );
        match hold.approvals.returned.take(&key) {
            Found::Approved { id, by, reason } => {
                tracing::info!(approval = %id, %by, "approved statement retried: it runs once");
                if let Some(a) = &self.audit {
                    let reason = Some(if reason.is_empty() {
                        "retry of the approved call".to_owned()
                    } else {
                        reason
                    });
                    if let Err(e) = a
                        .approval(
                            &id,
                            statement,
                            ApprovalState::Approved,
                            Some(by),
                            reason,
                            None,
                        )
                        .await
                    {
                        return Waited::Refused(audit_refusal(&e));
                    }
                }
                Waited::Approved
            }
            Found::Denied {
                id,
                rule,
                by,
                reason,
            } => Waited::Refused(
                Refusal::rule(
                    rule.clone(),
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    if reason.is_empty() {
                        format!("pgmoat: approval {id} denied by {by}")
                    } else {
                        format!("pgmoat: approval {id} denied by {by}: {reason}")
                    },
                )
                .with_detail(Some(format!("rule \"{rule}\""))),
            ),
            Found::Pending { id, rule } => Waited::Refused(pending_refusal(&id, &rule)),
            Found::Nothing => {
                let ticket = hold.approvals.request(
                    &name,
                    &groups,
                    &target,
                    &hold.sql,
                    params,
                    &hold.rule,
                    &hold.approvers,
                    door,
                    hold.exact,
                );
                let id = ticket.request.id.clone();
                if let Err(e) = hold.approvals.publish(&ticket).await {
                    tracing::warn!(identity = %name, %target, rule = %hold.rule, error = %e, "statement refused: it cannot be held");
                    return Waited::Refused(super::approval::unpublished(&e));
                }
                if let Some(a) = &self.audit {
                    if let Err(e) = a
                        .approval(&id, statement, ApprovalState::Requested, None, None, None)
                        .await
                    {
                        // Dropping the ticket withdraws the request nobody can see.
                        return Waited::Refused(audit_refusal(&e));
                    }
                }
                tracing::info!(identity = %name, %target, rule = %hold.rule, approval = %id, "statement held for approval (return mode)");
                hold.approvals.keep_for_retry(key, ticket);
                Waited::Refused(pending_refusal(&id, &hold.rule))
            }
        }
    }
}
