//! Joining the cluster (`cluster:`): every tenant's approvals and the login-failure
//! counts go through the state database, the node beats, withdraws what lapsed nodes
//! held, records each tenant's audit head, and tells the others of DDL it saw (and
//! hears of theirs).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::GatewayError;
use crate::audit::Audit;
use crate::cluster::{Shared as StateDb, StateError, Timing};
use crate::config::ClusterConfig;
use crate::metrics::Metrics;
use crate::session::tenant::Tenant;

/// A state database that is away at start is not fatal (approvals fail closed until
/// it is back); one whose schema is newer than this build is.
pub(super) async fn join(
    c: &ClusterConfig,
    tenants: &[Arc<Tenant>],
    metrics: &Arc<Metrics>,
    peers: &Arc<crate::catalog::Peers>,
) -> Result<Arc<StateDb>, GatewayError> {
    let timing = Timing {
        heartbeat: c.heartbeat,
        lapse: c.lapse,
        ..Timing::default()
    };
    let db = StateDb::new(&c.node, c.state_url.expose(), timing)?;
    match db.heartbeat(0).await {
        Ok(()) => tracing::info!(node = %c.node, "joined the cluster"),
        Err(e @ StateError::Schema(_)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(node = %c.node, error = %e, "state database unavailable at start: approvals fail closed until it is back")
        }
    }
    db.share_catalogs(peers);
    for t in tenants {
        if let Some(a) = &t.approvals {
            a.attach(Arc::clone(&db), &t.name);
        }
        if t.audit.is_enabled() {
            spawn_head_recorder(Arc::clone(&db), t.name.clone(), t.audit.clone());
        }
    }
    let m = Arc::clone(metrics);
    let holders: Vec<_> = tenants.iter().filter_map(|t| t.approvals.clone()).collect();
    db.spawn_heartbeat(
        move || m.connections_active.load(Relaxed).clamp(0, i32::MAX as i64) as i32,
        move |ids| {
            // Each tenant's approvals announce only their own requests.
            for a in holders.clone() {
                let ids = ids.clone();
                tokio::spawn(async move { a.announce_lapsed(&ids).await });
            }
        },
    );
    Ok(db)
}

/// Record a tenant's audit head in the state database each heartbeat it moved, so
/// `pgmoat audit verify --state-url` can tell a truncated or deleted store.
fn spawn_head_recorder(db: Arc<StateDb>, tenant: String, audit: Audit) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(db.timing.heartbeat);
        let mut recorded: Option<crate::audit::Head> = None;
        loop {
            tick.tick().await;
            let head = match audit.current_head().await {
                Ok(Some(h)) => h,
                Ok(None) | Err(crate::audit::AuditError::Closed) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "audit head not available");
                    continue;
                }
            };
            if recorded.as_ref() == Some(&head) {
                continue;
            }
            match db
                .record_audit_head(&tenant, head.seq as i64, &head.hash)
                .await
            {
                Ok(()) => recorded = Some(head),
                Err(e) => tracing::debug!(error = %e, "audit head not recorded"),
            }
        }
    });
}
