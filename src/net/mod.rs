//! The listener: accept loop with backoff, the connection limit, graceful shutdown.

pub mod stream;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::audit::Audit;
use crate::auth::UserDirectory;
use crate::classify::Classifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::reload::{Reload, RulesHandle};
use crate::protocol::backend::{self, ErrorFields, Severity};
use crate::protocol::sqlstate;
use crate::session::{self, cancel::CancelRegistry, Shared};

/// A runtime of one thread for background chores: the rules watcher's poll. A timer
/// armed on the sessions' runtime makes every park of it read the clock once more
/// (tokio computes the sleep), ~20-40 ns per pgbench transaction on the
/// prepared protocol. Shut down without waiting when dropped. None when the thread
/// cannot be started: the chores then share the sessions' runtime.
struct Chores(Option<tokio::runtime::Runtime>);

impl Chores {
    fn start() -> Chores {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pgmoat-chores")
            .enable_all()
            .build();
        match rt {
            Ok(rt) => Chores(Some(rt)),
            Err(e) => {
                tracing::warn!(
                    "no thread for background chores ({e}); sharing the sessions' runtime"
                );
                Chores(None)
            }
        }
    }
}

impl Drop for Chores {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("rules do not validate:\n{}", .0.join("\n"))]
    Rules(Vec<String>),
    #[error("identities.oidc: {0}")]
    Oidc(#[from] crate::auth::jwks::JwksError),
    #[error("cannot open the audit store: {0}")]
    Audit(#[from] crate::audit::StoreError),
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::StateError),
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Join the cluster: share approvals and login failures through the state database,
/// beat, and withdraw what lapsed nodes held. A state database that is away at start
/// is not fatal (approvals fail closed until it is back); one whose schema is newer
/// than this build is.
async fn join_cluster(
    c: &crate::config::ClusterConfig,
    approvals: Option<&Arc<crate::approval::Approvals>>,
    metrics: &Arc<Metrics>,
    audit: &Audit,
) -> Result<Arc<crate::cluster::Shared>, GatewayError> {
    use crate::cluster::{Shared as StateDb, StateError, Timing};
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
    if let Some(a) = approvals {
        a.attach(Arc::clone(&db), "");
    }
    let m = Arc::clone(metrics);
    let a = approvals.cloned();
    db.spawn_heartbeat(
        move || {
            m.connections_active
                .load(std::sync::atomic::Ordering::Relaxed)
                .clamp(0, i32::MAX as i64) as i32
        },
        move |ids| {
            if let Some(a) = a.clone() {
                tokio::spawn(async move { a.announce_lapsed(&ids).await });
            }
        },
    );
    if audit.is_enabled() {
        spawn_head_recorder(Arc::clone(&db), audit.clone());
    }
    Ok(db)
}

/// Record this node's audit head in the state database each heartbeat it moved, so
/// `pgmoat audit verify --state-url` can tell a truncated or deleted store.
fn spawn_head_recorder(db: Arc<crate::cluster::Shared>, audit: Audit) {
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
            match db.record_audit_head("", head.seq as i64, &head.hash).await {
                Ok(()) => recorded = Some(head),
                Err(e) => tracing::debug!(error = %e, "audit head not recorded"),
            }
        }
    });
}

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    permits: Arc<Semaphore>,
}

impl Gateway {
    /// Bind the listeners and prepare TLS; nothing is accepted until [`Gateway::run`].
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        tls::install_default_provider();
        if !config.tenants.is_empty() {
            // Fail closed: validated, but serving tenants apart is not built yet.
            return Err(GatewayError::Unsupported(
                "`tenants:` validates (pgmoat check) but this build does not serve it yet",
            ));
        }
        let rules = RulesHandle::load(config.rules.as_deref()).map_err(GatewayError::Rules)?;
        if !rules.is_configured() {
            tracing::warn!("no `rules:` configured: statements are relayed without being judged");
        }
        let classifier = Classifier::start(
            config.workers.clamp(1, 4),
            config.limits.max_statement_bytes,
        );
        for section in config.inactive_sections() {
            tracing::warn!(
                "config section `{section}` is accepted but not enforced by this build yet"
            );
        }
        // The store first: its tail is checked (and a torn one repaired) before the
        // port accepts anyone, so a client (or a supervisor's health check) that got in
        // never finds a store still being repaired.
        let metrics = Arc::new(Metrics::default());
        let audit = match &config.audit {
            Some(a) => Audit::open(a, Arc::clone(&metrics))?,
            None => Audit::disabled(),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let admin =
            match &config.admin {
                Some(a) => Some(TcpListener::bind(a.listen).await.map_err(|source| {
                    GatewayError::Bind {
                        addr: a.listen,
                        source,
                    }
                })?),
                None => None,
            };
        let acceptor = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let mut upstream_tls = HashMap::new();
        for t in config.targets.values() {
            if let Some(c) = tls::client_config(t)? {
                upstream_tls.insert(t.name.clone(), c);
            }
        }
        let catalogs = config
            .targets
            .values()
            .map(|t| {
                let cache = crate::session::catalog::CatalogCache::new(
                    Arc::new(t.clone()),
                    upstream_tls.get(&t.name).cloned(),
                    config.limits.connect_timeout,
                );
                (t.name.clone(), Arc::new(cache))
            })
            .collect();
        let approvals = config.approvals.as_ref().map(|a| {
            let directory = config
                .users
                .iter()
                .map(|u| (u.name.clone(), u.groups.clone()))
                .collect();
            let approvals = crate::approval::Approvals::new(a.timeout, directory);
            let slack_webhook = a.slack.as_ref().map(|s| s.webhook.clone());
            if slack_webhook.is_some() || a.webhook.is_some() {
                crate::approval::notify::Notifier::new(slack_webhook, a.webhook.clone())
                    .spawn(&approvals);
            }
            approvals
        });
        let cluster = match &config.cluster {
            Some(c) => Some(join_cluster(c, approvals.as_ref(), &metrics, &audit).await?),
            None => None,
        };
        let oidc = match &config.oidc {
            Some(o) => Some(crate::auth::oidc::OidcVerifier::new(o)?),
            None => None,
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let shared = Arc::new(Shared {
            users: UserDirectory::new(&config.users),
            oidc,
            auth_limiter: crate::auth::failure::Limiter::new(
                config.limits.auth_failures,
                config.limits.auth_failure_window,
            ),
            targets: config
                .targets
                .iter()
                .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
                .collect(),
            tls: acceptor,
            upstream_tls,
            cancels: Arc::new(CancelRegistry::default()),
            metrics,
            shutdown: shutdown_rx,
            rules,
            classifier,
            catalogs,
            audit,
            masks: Default::default(),
            approvals,
            config: Arc::new(config),
        });
        if let Some(db) = cluster {
            shared.auth_limiter.attach(db);
        }
        if shared.oidc.is_some() {
            // Fetch discovered keys now, so the first login does not wait for the IdP
            // and a misconfigured issuer shows in the log at start.
            let s = Arc::clone(&shared);
            tokio::spawn(async move {
                if let Some(o) = &s.oidc {
                    o.warm().await;
                }
            });
        }
        Ok(Gateway {
            listener,
            admin,
            shared,
            shutdown,
            permits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn rules(&self) -> Arc<RulesHandle> {
        Arc::clone(&self.shared.rules)
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Accept clients until `stop` resolves; then stop accepting, end idle sessions,
    /// let running statements finish for up to `limits.shutdown_grace`, and return.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Gateway {
            listener,
            admin,
            shared,
            shutdown,
            permits,
        } = self;
        let max = shared.config.limits.max_connections;
        let grace = shared.config.limits.shutdown_grace;
        let admin_task = admin.map(|l| {
            let state = admin::AdminState {
                metrics: Arc::clone(&shared.metrics),
                rules: Arc::clone(&shared.rules),
                token: shared.config.admin.as_ref().and_then(|a| a.token.clone()),
                approvals: shared.approvals.clone(),
                slack: shared.config.approvals.as_ref().and_then(|a| {
                    let slack = a.slack.as_ref()?;
                    Some(admin::SlackCallback {
                        signing_secret: slack.signing_secret.clone(),
                        users: slack.approvers.clone().into_iter().collect(),
                        notifier: crate::approval::notify::Notifier::new(None, None),
                    })
                }),
            };
            tokio::spawn(admin::serve(l, state, shutdown.subscribe()))
        });
        let audit = shared.audit.clone();
        let chores = Chores::start();
        let watcher = {
            // Spawned onto the chores runtime when there is one.
            let _entered = chores.0.as_ref().map(|rt| rt.enter());
            shared
                .rules
                .watch(Duration::from_secs(1), move |r| audit_reload(&audit, r))
        };
        let hangup = reload_on_sighup(Arc::clone(&shared.rules), shared.audit.clone());
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "pgmoat is accepting connections");
        tokio::pin!(stop);
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => break,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    backoff = Duration::from_millis(5);
                    let _ = tcp.set_nodelay(true);
                    shared.metrics.connections_total.fetch_add(1, Relaxed);
                    match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => {
                            let shared = Arc::clone(&shared);
                            tokio::spawn(async move {
                                shared.metrics.connections_active.fetch_add(1, Relaxed);
                                session::serve(tcp, peer, Arc::clone(&shared)).await;
                                // The slot first: whoever sees the count fall (a test, an
                                // operator's script) can then connect.
                                drop(permit);
                                shared.metrics.connections_active.fetch_sub(1, Relaxed);
                            });
                        }
                        Err(_) => {
                            shared.metrics.connections_refused.fetch_add(1, Relaxed);
                            tracing::warn!(%peer, max, "connection limit reached; refusing");
                            tokio::spawn(refuse(
                                tcp,
                                sqlstate::TOO_MANY_CONNECTIONS,
                                "sorry, too many clients already",
                            ));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        drop(listener);
        if let Some(w) = watcher {
            w.abort();
        }
        drop(chores);
        hangup.abort();
        tracing::info!(
            "shutting down: no new connections; waiting up to {grace:?} for running statements"
        );
        let _ = shutdown.send(true);
        let all = u32::try_from(max).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("grace period over; closing the remaining sessions");
        }
        if let Some(t) = admin_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        shared.audit.shutdown().await;
    }
}

/// Record a rules reload, applied or refused, without holding up the reloader.
fn audit_reload(audit: &Audit, r: Reload) {
    let event = match r {
        Reload::Unchanged => return,
        Reload::Applied { rules } => crate::audit::Event::RulesReloaded {
            applied: true,
            rules: Some(rules),
            errors: Vec::new(),
        },
        Reload::Refused(errors) => crate::audit::Event::RulesReloaded {
            applied: false,
            rules: None,
            errors,
        },
    };
    if !audit.is_enabled() {
        return;
    }
    let audit = audit.clone();
    tokio::spawn(async move {
        if let Err(e) = audit.record(None, event).await {
            tracing::error!("audit: rules_reloaded not recorded: {e}");
        }
    });
}

/// SIGHUP reloads the rules at once.
fn reload_on_sighup(rules: Arc<RulesHandle>, audit: Audit) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            let r = Arc::clone(&rules);
            if let Ok(r) = tokio::task::spawn_blocking(move || r.reload()).await {
                audit_reload(&audit, r);
            }
        }
    })
}

/// Answer a connection pgmoat will not serve with a FATAL and close it.
async fn refuse(mut tcp: TcpStream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    backend::error_response(&mut out, &ErrorFields::new(Severity::Fatal, code, message));
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(&out)).await;
    let _ = tcp.shutdown().await;
}
