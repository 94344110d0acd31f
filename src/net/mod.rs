//! The listener: accept loop with backoff, the connection limit, graceful shutdown.

mod cluster;
pub mod stream;
mod tenants;
pub mod tls;

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
use crate::session::tenant::{Tenant, Tenants};
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
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("http gateway: {0}")]
    Http(#[from] crate::gateway::SetupError),
}

/// A bound gateway, ready to run.
pub struct Gateway {
    listener: TcpListener,
    admin: Option<TcpListener>,
    /// The HTTP gateway's listener (`http:`).
    http: Option<(TcpListener, crate::gateway::Prepared)>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    /// The MCP endpoint's listener (`mcp:`).
    mcp: Option<TcpListener>,
    /// The SSH front door, with `ssh:`.
    ssh: Option<crate::ssh::SshDoor>,
}

impl Gateway {
    /// Bind the listeners and prepare TLS; nothing is accepted until [`Gateway::run`].
    pub async fn bind(config: Config) -> Result<Gateway, GatewayError> {
        tls::install_default_provider();
        let classifier = Classifier::start(
            config.workers.clamp(1, 4),
            config.limits.max_statement_bytes,
        );
        for w in config.warnings() {
            tracing::warn!("config: {w}");
        }
        for section in config.inactive_sections() {
            tracing::warn!(
                "config section `{section}` is accepted but not enforced by this build yet"
            );
        }
        let metrics = Arc::new(Metrics::default());
        // Each tenant's audit store is opened (a torn tail repaired) here, before the
        // ports listen.
        let peers = crate::catalog::Peers::new();
        let built = tenants::build(&config, &metrics, &peers)?;
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
        let mcp =
            match &config.mcp {
                Some(m) => Some(TcpListener::bind(m.listen).await.map_err(|source| {
                    GatewayError::Bind {
                        addr: m.listen,
                        source,
                    }
                })?),
                None => None,
            };
        let ssh = match &config.ssh {
            Some(s) => Some(crate::ssh::SshDoor::bind(s).await?),
            None => None,
        };
        let http = match &config.http {
            Some(h) => {
                let prepared = crate::gateway::Prepared::new(h, config.limits.connect_timeout)?;
                let l = TcpListener::bind(h.listen)
                    .await
                    .map_err(|source| GatewayError::Bind {
                        addr: h.listen,
                        source,
                    })?;
                Some((l, prepared))
            }
            None => None,
        };
        let acceptor = match &config.tls {
            Some(t) => Some(TlsAcceptor::from(tls::server_config(t)?)),
            None => None,
        };
        let list: Vec<Arc<Tenant>> = built.iter().map(|(t, _)| Arc::clone(t)).collect();
        let cluster = match &config.cluster {
            Some(c) => Some(cluster::join(c, &list, &metrics, &peers).await?),
            None => None,
        };
        if !config.limits.catalog_refresh.is_zero() {
            peers.spawn_refresher(config.limits.catalog_refresh);
        }
        // Names are unique across tenants (config validation): one directory.
        let all_users: Vec<_> = built.iter().flat_map(|(_, tc)| tc.users.clone()).collect();
        let identities = built
            .iter()
            .map(|(_, tc)| {
                tc.users
                    .iter()
                    .map(|u| u.name.clone())
                    .chain(tc.certificates.iter().map(|c| c.name.clone()))
                    .collect()
            })
            .collect();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(config.limits.max_connections));
        let shared = Arc::new(Shared {
            users: UserDirectory::new(&all_users),
            auth_limiter: crate::auth::failure::Limiter::new(
                config.limits.auth_failures,
                config.limits.auth_failure_window,
            ),
            tls: acceptor,
            cancels: Arc::new(CancelRegistry::default()),
            metrics,
            shutdown: shutdown_rx,
            classifier,
            tenants: Tenants::new(list, identities),
            sessions: crate::session::registry::Registry::new(),
            config: Arc::new(config),
        });
        if let Some(db) = cluster {
            shared.auth_limiter.attach(db);
        }
        for t in &shared.tenants.list {
            if t.oidc.is_some() {
                // Fetch discovered keys now, so the first login does not wait for the
                // IdP and a misconfigured issuer shows in the log at start.
                let t = Arc::clone(t);
                tokio::spawn(async move {
                    if let Some(o) = &t.oidc {
                        o.warm().await;
                    }
                });
            }
        }
        Ok(Gateway {
            listener,
            admin,
            http,
            shared,
            shutdown,
            permits,
            mcp,
            ssh,
        })
    }

    /// Where the MCP endpoint listens (`mcp:`).
    pub fn mcp_addr(&self) -> Option<SocketAddr> {
        self.mcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The SSH listener's address, with `ssh:`.
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh.as_ref().and_then(|s| s.local_addr())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Where the HTTP gateway listens (`http:`).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The first tenant's rules (the only ones without `tenants:`).
    pub fn rules(&self) -> Arc<RulesHandle> {
        Arc::clone(&self.shared.tenants.list[0].rules)
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
            http,
            shared,
            shutdown,
            permits,
            mcp,
            ssh,
        } = self;
        let mcp_task = mcp.and_then(|l| {
            let config = shared.config.mcp.clone()?;
            Some(tokio::spawn(crate::mcp::serve(
                l,
                Arc::clone(&shared),
                config,
                shutdown.subscribe(),
            )))
        });
        let ssh_task = ssh.map(|door| tokio::spawn(door.run(Arc::clone(&shared))));
        let max = shared.config.limits.max_connections;
        let grace = shared.config.limits.shutdown_grace;
        let admin_task = admin.map(|l| {
            let state = admin::AdminState {
                shared: Arc::clone(&shared),
                listen: None,
                metrics: Arc::clone(&shared.metrics),
                sessions: Arc::clone(&shared.sessions),
                token: shared.config.admin.as_ref().and_then(|a| a.token.clone()),
                admin_groups: shared
                    .config
                    .admin
                    .as_ref()
                    .map(|a| a.groups.clone())
                    .unwrap_or_default(),
                tenants: shared
                    .tenants
                    .list
                    .iter()
                    .zip(shared.config.tenant_configs())
                    .map(|(t, tc)| admin::AdminTenant {
                        name: t.name.clone(),
                        token: t.admin_token.clone(),
                        rules: Arc::clone(&t.rules),
                        approvals: t.approvals.clone(),
                        slack: tc.approvals.as_ref().and_then(|a| {
                            let slack = a.slack.as_ref()?;
                            Some(admin::SlackCallback {
                                signing_secret: slack.signing_secret.clone(),
                                users: slack.approvers.clone().into_iter().collect(),
                                notifier: crate::approval::notify::Notifier::new(None, None),
                            })
                        }),
                        audit: tc.audit.as_ref().map(|a| admin::AuditAccess {
                            dir: a.dir.clone(),
                            hmac_key: a.hmac_key.clone(),
                        }),
                        oidc: t.oidc.is_some().then(|| Arc::clone(t)),
                    })
                    .collect(),
            };
            tokio::spawn(admin::serve(l, state, shutdown.subscribe()))
        });
        let http_task = http.map(|(l, prepared)| {
            tokio::spawn(crate::gateway::serve(
                l,
                prepared,
                Arc::clone(&shared),
                shutdown.subscribe(),
            ))
        });
        let chores = Chores::start();
        let watchers: Vec<_> = {
            // Spawned onto the chores runtime when there is one.
            let _entered = chores.0.as_ref().map(|rt| rt.enter());
            shared
                .tenants
                .list
                .iter()
                .filter_map(|t| {
                    let audit = t.audit.clone();
                    t.rules
                        .watch(Duration::from_secs(1), move |r| audit_reload(&audit, r))
                })
                .collect()
        };
        let hangup = reload_on_sighup(
            shared
                .tenants
                .list
                .iter()
                .map(|t| (Arc::clone(&t.rules), t.audit.clone()))
                .collect(),
        );
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
        for w in watchers {
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
        if let Some(t) = mcp_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(t) = ssh_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(t) = http_task {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        for t in &shared.tenants.list {
            t.audit.shutdown().await;
        }
    }
}

/// Record a rules reload, applied or refused, without holding up the reloader.
pub(crate) fn audit_reload(audit: &Audit, r: Reload) {
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

/// SIGHUP reloads every tenant's rules at once (each on its own: one tenant's broken
/// file leaves the others' reloads applied).
fn reload_on_sighup(tenants: Vec<(Arc<RulesHandle>, Audit)>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            for (rules, audit) in &tenants {
                let r = Arc::clone(rules);
                if let Ok(r) = tokio::task::spawn_blocking(move || r.reload()).await {
                    audit_reload(audit, r);
                }
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
