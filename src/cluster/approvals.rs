//! Approvals in the state database: each request is one row, decided at most once.
//!
//! The row's `state` moves from `pending` to exactly one of `approved`, `denied`,
//! `expired` or `withdrawn`, always by an UPDATE conditional on `state = 'pending'`, so
//! two nodes deciding at once cannot both win, and nothing is decided after it expired
//! or after its node was declared gone. Every change notifies [`super::DECISIONS`] with
//! the id, from the same statement, so the notification is sent only if it committed.

use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use super::{Shared, StateError};
use crate::approval::{FrontDoor, Grant, Request, Resolution};

/// Where a request stands in the state database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Pending,
    Decided(Resolution),
}

/// A request as the state database has it.
#[derive(Debug, Clone)]
pub struct SharedRequest {
    pub request: Request,
    pub tenant: String,
    /// The node holding the statement.
    pub node: String,
    pub standing: Standing,
}

const COLUMNS: &str =
    "id, front_door, tenant, node, identity, groups, target, sql, params, rule, approvers, \
     fingerprint, requested_at, expires_at, state, decided_by, reason, grant_until";

/// Shape keys use control bytes as markers, which `text` cannot hold: they are stored
/// as `bytea`.
fn fingerprint(row: &Row, column: &str) -> Result<String, StateError> {
    let bytes: Vec<u8> = row
        .try_get(column)
        .map_err(|e| StateError::Db(format!("column {column}: {e}")))?;
    String::from_utf8(bytes).map_err(|_| StateError::Db(format!("column {column}: not UTF-8")))
}

fn from_row(row: &Row) -> Result<SharedRequest, StateError> {
    let get_text = |i: &str| -> Result<String, StateError> {
        row.try_get::<_, String>(i)
            .map_err(|e| StateError::Db(format!("column {i}: {e}")))
    };
    let by = row
        .try_get::<_, Option<String>>("decided_by")
        .ok()
        .flatten();
    let reason = row
        .try_get::<_, Option<String>>("reason")
        .ok()
        .flatten()
        .unwrap_or_default();
    let grant_until: Option<SystemTime> = row.try_get("grant_until").ok().flatten();
    let state = get_text("state")?;
    let standing = match state.as_str() {
        "pending" => Standing::Pending,
        "approved" => Standing::Decided(Resolution::Approved {
            by: by.unwrap_or_default(),
            reason,
            grant_until,
        }),
        "denied" => Standing::Decided(Resolution::Denied {
            by: by.unwrap_or_default(),
            reason,
        }),
        "expired" => Standing::Decided(Resolution::Expired),
        "withdrawn" => Standing::Decided(Resolution::Withdrawn),
        other => return Err(StateError::Db(format!("unknown approval state {other:?}"))),
    };
    let list = |i: &str| -> Result<Vec<String>, StateError> {
        row.try_get::<_, Vec<String>>(i)
            .map_err(|e| StateError::Db(format!("column {i}: {e}")))
    };
    let time = |i: &str| -> Result<SystemTime, StateError> {
        row.try_get::<_, SystemTime>(i)
            .map_err(|e| StateError::Db(format!("column {i}: {e}")))
    };
    Ok(SharedRequest {
        request: Request {
            id: get_text("id")?,
            // A door this build does not know (a newer replica's): shown as what it
            // most resembles rather than refused, since approvers still see the text.
            front_door: FrontDoor::parse(&get_text("front_door")?).unwrap_or_default(),
            identity: get_text("identity")?,
            groups: list("groups")?,
            target: get_text("target")?,
            sql: get_text("sql")?,
            params: list("params")?,
            rule: get_text("rule")?,
            approvers: list("approvers")?,
            requested_at: time("requested_at")?,
            expires_at: time("expires_at")?,
            fingerprint: fingerprint(row, "fingerprint")?,
        },
        tenant: get_text("tenant")?,
        node: get_text("node")?,
        standing,
    })
}

impl Shared {
    /// List a new pending request held on this node.
    pub async fn publish(&self, tenant: &str, r: &Request) -> Result<(), StateError> {
        let node = self.node.clone();
        // Parameters are shown to approvers; `text` cannot hold NUL.
        let params: Vec<String> = r
            .params
            .iter()
            .map(|p| p.replace('\0', "\u{FFFD}"))
            .collect();
        let fingerprint = r.fingerprint.as_bytes();
        self.call(|c| async move {
            c.execute(
                "INSERT INTO pgmoat.approvals (id, tenant, node, identity, groups, target, sql,
                     params, rule, approvers, fingerprint, requested_at, expires_at, front_door)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &r.id,
                    &tenant,
                    &node,
                    &r.identity,
                    &r.groups,
                    &r.target,
                    &r.sql,
                    &params,
                    &r.rule,
                    &r.approvers,
                    &fingerprint,
                    &r.requested_at,
                    &r.expires_at,
                    &r.front_door.as_str(),
                ],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// One request, in whatever state.
    pub async fn fetch(&self, id: &str) -> Result<Option<SharedRequest>, StateError> {
        let sql = format!("SELECT {COLUMNS} FROM pgmoat.approvals WHERE id = $1");
        let row = self
            .call(|c| async move { c.query_opt(&sql, &[&id]).await })
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Pending, unexpired requests (of one tenant, or all), oldest first.
    pub async fn pending(&self, tenant: Option<&str>) -> Result<Vec<SharedRequest>, StateError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM pgmoat.approvals
             WHERE state = 'pending' AND expires_at > now() AND ($1::text IS NULL OR tenant = $1)
             ORDER BY requested_at, id"
        );
        let rows = self
            .call(|c| async move { c.query(&sql, &[&tenant]).await })
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// Decide a pending request: approve (with a grant for `grant_for`) or deny. `None`
    /// when it was not pending any more (decided, expired, withdrawn) or never existed.
    /// Whether `by` may decide is the caller's to check first.
    pub async fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: &str,
        grant_for: Option<Duration>,
    ) -> Result<Option<SharedRequest>, StateError> {
        let state = if approve { "approved" } else { "denied" };
        let grant_secs: Option<f64> = grant_for.filter(|_| approve).map(|d| d.as_secs_f64());
        let sql = format!(
            "UPDATE pgmoat.approvals
             SET state = $2, decided_by = $3, reason = $4, decided_at = now(),
                 grant_until = now() + make_interval(secs => $5)
             WHERE id = $1 AND state = 'pending' AND expires_at > now()
             RETURNING {COLUMNS}, pg_notify('{}', id)",
            super::DECISIONS
        );
        let row = self
            .call(|c| async move {
                c.query_opt(&sql, &[&id, &state, &by, &reason, &grant_secs])
                    .await
            })
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The holder gave up on a request (it expired, or its client went away).
    pub async fn finish(&self, id: &str, how: &Resolution) -> Result<(), StateError> {
        let state = match how {
            Resolution::Expired => "expired",
            Resolution::Withdrawn => "withdrawn",
            // Approvals and denials go through `decide`.
            _ => return Ok(()),
        };
        let sql = format!(
            "UPDATE pgmoat.approvals SET state = $2, decided_at = now()
             WHERE id = $1 AND state = 'pending'
             RETURNING pg_notify('{}', id)",
            super::DECISIONS
        );
        self.call(|c| async move { c.execute(&sql, &[&id, &state]).await })
            .await
            .map(|_| ())
    }

    /// Grants in force (approved with a grant that has not run out).
    pub async fn grants(&self) -> Result<Vec<(String, Grant)>, StateError> {
        let rows = self
            .call(|c| async move {
                c.query(
                    "SELECT tenant, identity, target, rule, decided_by, grant_until, sql, id,
                            fingerprint
                     FROM pgmoat.approvals
                     WHERE state = 'approved' AND grant_until > now()",
                    &[],
                )
                .await
            })
            .await?;
        rows.iter()
            .map(|r| {
                let g = Grant {
                    identity: r.try_get(1).map_err(StateError::column)?,
                    target: r.try_get(2).map_err(StateError::column)?,
                    rule: r.try_get(3).map_err(StateError::column)?,
                    by: r
                        .try_get::<_, Option<String>>(4)
                        .map_err(StateError::column)?
                        .unwrap_or_default(),
                    expires_at: r.try_get(5).map_err(StateError::column)?,
                    sql: r.try_get(6).map_err(StateError::column)?,
                    approval: r.try_get(7).map_err(StateError::column)?,
                    fingerprint: fingerprint(r, "fingerprint")?,
                };
                Ok((r.try_get(0).map_err(StateError::column)?, g))
            })
            .collect()
    }

    /// Withdraw the pending requests of nodes whose heartbeat lapsed; their ids.
    pub async fn reap_lapsed(&self) -> Result<Vec<String>, StateError> {
        let lapse = self.timing.lapse.as_secs_f64();
        let sql = format!(
            "UPDATE pgmoat.approvals a
             SET state = 'withdrawn', decided_at = now(),
                 reason = 'node ' || a.node || ' stopped'
             FROM pgmoat.nodes n
             WHERE a.state = 'pending' AND a.node = n.node
               AND n.heartbeat_at < now() - make_interval(secs => $1)
             RETURNING a.id, pg_notify('{}', a.id)",
            super::DECISIONS
        );
        let rows = self
            .call(|c| async move { c.query(&sql, &[&lapse]).await })
            .await?;
        Ok(rows.iter().filter_map(|r| r.try_get(0).ok()).collect())
    }
}
