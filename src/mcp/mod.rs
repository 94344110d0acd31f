//! The MCP endpoint for agents (SPEC section 7): the Streamable HTTP transport at
//! `/mcp` (rmcp, the official Rust SDK, does the protocol: sessions, notifications,
//! JSON-RPC errors), a bearer-token check in front of it, and five tools.
//!
//! Every statement a tool runs goes through a real Postgres front-door session for
//! the caller ([`crate::session::serve_proven`] over a loopback socket), so it is
//! judged, masked, held and audited by the wire's own code; the audit trail shows
//! it as a session with `protocol: "mcp"`. Those sessions run in return mode: a
//! statement held for approval answers at once (`pending_approval`), and the same
//! call made again runs once approved.

mod auth;
mod owners;
mod pipe;
mod query;
mod session;
mod tools;
mod values;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::McpConfig;
use crate::session::Shared;

/// What every MCP session shares.
pub struct Door {
    pub shared: Arc<Shared>,
    pub config: McpConfig,
    pipe: pipe::Pipe,
    /// MCP sessions open now (bounded by `mcp.max_sessions`).
    live: AtomicUsize,
    /// Whose each MCP session is, checked on every request that names one.
    owners: owners::Owners,
}

/// Serve `/mcp` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    config: McpConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let pipe = match pipe::Pipe::bind().await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                "mcp: cannot bind the internal loopback port: {e}; the MCP endpoint is off"
            );
            return;
        }
    };
    let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    if !config.listen.ip().is_unspecified() {
        hosts.push(config.listen.ip().to_string());
    }
    hosts.extend(config.allowed_hosts.iter().cloned());
    let mut sessions = LocalSessionManager::default();
    // An idle MCP session ends, and with it its upstream sessions.
    sessions.session_config.keep_alive = Some(config.idle_timeout);
    let sessions = Arc::new(sessions);
    let door = Arc::new(Door {
        shared,
        config,
        pipe,
        live: AtomicUsize::new(0),
        owners: owners::Owners::new(Arc::clone(&sessions)),
    });
    let http_config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    let cancel = http_config.cancellation_token.clone();
    let factory_door = Arc::clone(&door);
    let service = StreamableHttpService::new(
        move || tools::Tools::new(&factory_door),
        sessions,
        http_config,
    );
    let app = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn_with_state(Arc::clone(&door), auth::require_bearer),
    );
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "MCP endpoint listening at /mcp");
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
        cancel.cancel();
    };
    // Responses go out in several writes (headers, then the event stream): without
    // TCP_NODELAY, Nagle and the client's delayed ACK add ~40 ms to every call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    if let Err(e) = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    {
        tracing::error!("mcp: the endpoint stopped: {e}");
    }
}
