//! Node heartbeats, failed-login counters and audit heads in the state database.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Shared, StateError};

/// One node as `pgmoat cluster status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeStatus {
    pub node: String,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub started_at: SystemTime,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub heartbeat_at: SystemTime,
    /// Seconds since the last heartbeat, by the state database's clock.
    pub silent_for: f64,
    /// Whether the heartbeat lapsed (the node is considered gone).
    pub lapsed: bool,
    pub sessions: i32,
}

/// The last audit record a node wrote for a tenant ("" without tenants).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditHead {
    pub node: String,
    pub tenant: String,
    pub seq: i64,
    pub hash: String,
}

impl Shared {
    /// Say this node is alive (and how many sessions it has).
    pub async fn heartbeat(&self, sessions: i32) -> Result<(), StateError> {
        let node = self.node.clone();
        self.call(|c| async move {
            c.execute(
                "INSERT INTO pgmoat.nodes (node, sessions) VALUES ($1, $2)
                 ON CONFLICT (node) DO UPDATE SET heartbeat_at = now(), sessions = $2",
                &[&node, &sessions],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Beat every `timing.heartbeat` and withdraw what lapsed nodes held, until the
    /// process ends. `sessions` reports the node's live session count.
    /// `on_reaped` gets the ids this node withdrew (to tell the notifiers).
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        sessions: impl Fn() -> i32 + Send + 'static,
        on_reaped: impl Fn(Vec<String>) + Send + 'static,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.timing.heartbeat);
            let mut failing = false;
            loop {
                tick.tick().await;
                let beat = match me.heartbeat(sessions()).await {
                    Ok(()) => me.reap_lapsed().await.map(|ids| {
                        let n = ids.len();
                        if n > 0 {
                            on_reaped(ids);
                        }
                        n
                    }),
                    Err(e) => Err(e),
                };
                match beat {
                    Ok(n) => {
                        if failing {
                            tracing::info!(node = %me.node, "state database reachable again");
                        }
                        failing = false;
                        if n > 0 {
                            tracing::info!(node = %me.node, withdrawn = n, "withdrew requests held by nodes that stopped");
                        }
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(node = %me.node, error = %e, "state database heartbeat failed");
                        }
                        failing = true;
                    }
                }
            }
        });
    }

    /// Every node the state database knows, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, StateError> {
        let lapse = self.timing.lapse.as_secs_f64();
        let rows = self
            .call(|c| async move {
                c.query(
                    "SELECT node, started_at, heartbeat_at,
                            extract(epoch FROM now() - heartbeat_at)::float8,
                            heartbeat_at < now() - make_interval(secs => $1), sessions
                     FROM pgmoat.nodes ORDER BY node",
                    &[&lapse],
                )
                .await
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeStatus {
                    node: r.try_get(0).map_err(StateError::column)?,
                    started_at: r.try_get(1).map_err(StateError::column)?,
                    heartbeat_at: r.try_get(2).map_err(StateError::column)?,
                    silent_for: r.try_get(3).map_err(StateError::column)?,
                    lapsed: r.try_get(4).map_err(StateError::column)?,
                    sessions: r.try_get(5).map_err(StateError::column)?,
                })
            })
            .collect()
    }

    /// Count one failed login from `address`; the failures in the current window.
    pub async fn record_login_failure(
        &self,
        tenant: &str,
        address: IpAddr,
        window: Duration,
    ) -> Result<i32, StateError> {
        let secs = window.as_secs_f64();
        let row = self
            .call(|c| async move {
                c.query_one(
                    "INSERT INTO pgmoat.login_failures AS f (tenant, address, window_start, failures)
                     VALUES ($1, $2, now(), 1)
                     ON CONFLICT (tenant, address) DO UPDATE SET
                       failures = CASE WHEN f.window_start < now() - make_interval(secs => $3)
                                       THEN 1 ELSE f.failures + 1 END,
                       window_start = CASE WHEN f.window_start < now() - make_interval(secs => $3)
                                           THEN now() ELSE f.window_start END
                     RETURNING failures",
                    &[&tenant, &address, &secs],
                )
                .await
            })
            .await?;
        row.try_get(0).map_err(StateError::column)
    }

    /// Failures from `address` in the current window.
    pub async fn login_failures(
        &self,
        tenant: &str,
        address: IpAddr,
        window: Duration,
    ) -> Result<i32, StateError> {
        let secs = window.as_secs_f64();
        let row = self
            .call(|c| async move {
                c.query_opt(
                    "SELECT failures FROM pgmoat.login_failures
                     WHERE tenant = $1 AND address = $2
                       AND window_start >= now() - make_interval(secs => $3)",
                    &[&tenant, &address, &secs],
                )
                .await
            })
            .await?;
        match row {
            Some(r) => r.try_get(0).map_err(StateError::column),
            None => Ok(0),
        }
    }

    /// A successful login forgets the address's failures.
    pub async fn clear_login_failures(
        &self,
        tenant: &str,
        address: IpAddr,
    ) -> Result<(), StateError> {
        self.call(|c| async move {
            c.execute(
                "DELETE FROM pgmoat.login_failures WHERE tenant = $1 AND address = $2",
                &[&tenant, &address],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Record this node's audit head for a tenant. Heads only move forward: a lower
    /// sequence number (a stale writer) never overwrites a higher one.
    pub async fn record_audit_head(
        &self,
        tenant: &str,
        seq: i64,
        hash: &str,
    ) -> Result<(), StateError> {
        let node = self.node.clone();
        self.call(|c| async move {
            c.execute(
                "INSERT INTO pgmoat.audit_heads AS h (node, tenant, seq, hash) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node, tenant) DO UPDATE SET seq = $3, hash = $4, updated_at = now()
                 WHERE h.seq <= $3",
                &[&node, &tenant, &seq, &hash],
            )
            .await
        })
        .await
        .map(|_| ())
    }

    /// Every node's recorded audit heads.
    pub async fn audit_heads(&self) -> Result<Vec<AuditHead>, StateError> {
        let rows = self
            .call(|c| async move {
                c.query(
                    "SELECT node, tenant, seq, hash FROM pgmoat.audit_heads ORDER BY node, tenant",
                    &[],
                )
                .await
            })
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditHead {
                    node: r.try_get(0).map_err(StateError::column)?,
                    tenant: r.try_get(1).map_err(StateError::column)?,
                    seq: r.try_get(2).map_err(StateError::column)?,
                    hash: r.try_get(3).map_err(StateError::column)?,
                })
            })
            .collect()
    }
}
