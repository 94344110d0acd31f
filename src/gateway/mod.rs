//! The HTTP gateway (SPEC section 9): internal HTTP APIs behind pgmoat's identities,
//! rules, masks, approvals and audit trail.
//!
//! `http://gateway/<target>/<path>?<query>` goes to the target's URL with the held
//! credentials, never the client's. Connections are served by hyper (HTTP/1.1, and
//! HTTP/2 through ALPN when `http.tls` is set), which also lets one accept loop do
//! TLS; responses are axum bodies. An HTTP/1 client connection reaches plain `http`
//! targets on upstream connections of its own, driven in its task (`own_upstream`);
//! HTTP/2 clients and `https` targets through one pooled hyper client per target
//! (`upstream`).
//!
//! - `auth`: the caller's identity from `Authorization`; `auth_cache` remembers
//!   verified credentials for a few seconds.
//! - `handler`: route, judge, hold, forward, mask, record.
//! - `judged`: the rules' decision and masks per caller and request, cached.
//! - `hold` / `holds`: approvals, waiting or `Prefer: respond-async`.
//! - `body_mask`: `json:` masks and detectors over JSON and text bodies;
//!   `json_splice` writes a masked JSON body in the target's own key order;
//!   `masked` masks a whole response the same way for hyper and the lean path.
//! - `headers`: hop-by-hop fields, `Forwarded`, held credentials.
//! - `upstream` / `own_upstream`: the targets' pooled clients, and the HTTP/1.1
//!   connections a client connection keeps to plain `http` targets, driven in its
//!   own task.
//! - `record`: the `http_request` audit record and the counting bodies.
//! - `h1`: the lean HTTP/1.1 path for plain client connections (the common case
//!   without hyper; the rest handed to hyper).
//! - `metrics`: which path served each request.

mod auth;
mod auth_cache;
mod body_mask;
pub mod explain;
mod h1;
mod handler;
mod headers;
mod hold;
mod holds;
mod json_every;
mod json_splice;
mod json_stream;
mod judged;
mod masked;
pub mod metrics;
mod own_upstream;
mod peer;
mod record;
mod reply;
mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::HttpConfig;
use crate::session::Shared;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamSetupError),
    #[error("http.tls: {0}")]
    Tls(#[from] crate::net::tls::TlsError),
}

/// What can be prepared before the gateway runs (so a bad CA file or certificate
/// stops `serve` at start, not at the first request).
pub struct Prepared {
    routes: std::collections::HashMap<String, upstream::Route>,
    tls: Option<TlsAcceptor>,
}

impl Prepared {
    pub fn new(config: &HttpConfig, connect_timeout: Duration) -> Result<Prepared, SetupError> {
        let routes = upstream::routes(&config.targets, connect_timeout)?;
        let tls = match &config.tls {
            Some(t) => {
                let mut c = (*crate::net::tls::server_config(t)?).clone();
                c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Some(TlsAcceptor::from(Arc::new(c)))
            }
            None => None,
        };
        Ok(Prepared { routes, tls })
    }
}

/// Everything a request needs.
pub(crate) struct Door {
    shared: Arc<Shared>,
    config: HttpConfig,
    routes: std::collections::HashMap<String, upstream::Route>,
    holds: Arc<holds::Holds>,
    /// Credentials verified in the last seconds.
    verified: auth_cache::AuthCache<Arc<auth::Caller>>,
    /// The rules' judgements of recent requests.
    judged: judged::Judgements,
    /// Clients reach this door over TLS.
    tls: bool,
}

impl Door {
    /// A tenant's target by name (keys are `Config::door_key`s; no allocation for the
    /// tenant-less common case).
    fn target(&self, tenant: &str, name: &str) -> Option<&crate::config::HttpTarget> {
        if tenant.is_empty() {
            self.config.targets.get(name)
        } else {
            let key = crate::config::Config::door_key(tenant, name);
            self.config.targets.get(&key)
        }
    }

    fn route(&self, tenant: &str, name: &str) -> Option<&upstream::Route> {
        if tenant.is_empty() {
            self.routes.get(name)
        } else {
            let key = crate::config::Config::door_key(tenant, name);
            self.routes.get(&key)
        }
    }
}

/// Accept HTTP clients until shutdown; then stop accepting and let each connection
/// finish its requests in flight.
pub async fn serve(
    listener: TcpListener,
    prepared: Prepared,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(config) = shared.config.http.clone() else {
        return;
    };
    let acceptor = prepared.tls;
    let door = Arc::new(Door {
        tls: acceptor.is_some(),
        shared,
        config,
        routes: prepared.routes,
        holds: Arc::default(),
        verified: auth_cache::AuthCache::default(),
        judged: judged::Judgements::default(),
    });
    // Each client connection holds a permit while it is open: past the cap a new
    // connection is closed at once (counted), so a flood of idle sockets cannot take
    // every descriptor and task (review M2).
    let open = Arc::new(tokio::sync::Semaphore::new(door.config.max_connections));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                        door.shared.metrics.http.connections_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::debug!(%peer, "http gateway: max_connections open, connection closed");
                        drop(tcp);
                        continue;
                    };
                    let (door, acceptor, stop) = (Arc::clone(&door), acceptor.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        connection(door, acceptor, tcp, peer, stop).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!("http gateway: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
}

async fn connection(
    door: Arc<Door>,
    acceptor: Option<TlsAcceptor>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    match acceptor {
        // Plain HTTP/1.1 clients take the lean path (which hands what it does not
        // serve to hyper); TLS clients go to hyper.
        None => h1::serve(door, tcp, peer, stop).await,
        Some(a) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, a.accept(tcp)).await {
            Ok(Ok(tls)) => serve_io(door, tls, peer, stop).await,
            Ok(Err(e)) => tracing::debug!(%peer, "http gateway: TLS handshake failed: {e}"),
            Err(_) => tracing::debug!(%peer, "http gateway: TLS handshake timed out"),
        },
    }
}

async fn serve_io<I>(door: Arc<Door>, io: I, peer: SocketAddr, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The client connection's own upstream connections, polled below beside the
    // server connection, in this one task.
    let (own, driver) = own_upstream::pair();
    let own = Arc::new(own);
    let client = Arc::new(peer::Peer::new(peer));
    let service = hyper::service::service_fn(move |req| {
        let (door, own, client) = (Arc::clone(&door), Arc::clone(&own), Arc::clone(&client));
        async move { Ok::<_, Infallible>(handler::handle(door, client, own, req).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // A head must arrive whole within its time (slowloris), as on the lean path.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn, driver);
    tokio::select! {
        biased;
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, "http gateway connection ended: {e}");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            // Responses in flight still read from the upstream connections.
            tokio::select! {
                _ = conn.as_mut() => {}
                never = driver.as_mut() => match never {},
            }
        }
        never = driver.as_mut() => match never {},
    }
}

/// Resolves once shutdown is asked for (the watch's guard is not held across awaits).
async fn stopped(w: &mut watch::Receiver<bool>) {
    let _ = w.wait_for(|s| *s).await.map(|_| ());
}
