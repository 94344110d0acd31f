//! The HTTP gateway's counters, rendered with the rest of `GET /metrics`: which path
//! served each request (the lean HTTP/1.1 one, `h1`, or hyper's), so an operator and
//! the tests can see that the common case takes the lean one.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// Requests served end to end by the lean HTTP/1.1 path.
    pub lean_requests: AtomicU64,
    /// Requests served by hyper (HTTP/2, TLS clients, masks, holds, upgrades, ...).
    pub hyper_requests: AtomicU64,
    /// Client connections the lean path handed to hyper.
    pub lean_fallbacks: AtomicU64,
    /// Requests or responses refused for their framing (400 / 502, connection closed).
    pub framing_refused: AtomicU64,
    /// Client connections closed on accept: `http.max_connections` were open.
    pub connections_refused: AtomicU64,
}

impl HttpMetrics {
    /// A request or response refused for its framing.
    pub fn refused_framing(&self) {
        self.framing_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP pgmoat_http_requests_total HTTP gateway requests, by the path that served them.\n\
             # TYPE pgmoat_http_requests_total counter\n\
             pgmoat_http_requests_total{{path=\"lean\"}} {}\n\
             pgmoat_http_requests_total{{path=\"hyper\"}} {}",
            g(&self.lean_requests),
            g(&self.hyper_requests)
        );
        let _ = writeln!(
            out,
            "# HELP pgmoat_http_lean_fallbacks_total HTTP/1.1 client connections the lean path handed to hyper.\n\
             # TYPE pgmoat_http_lean_fallbacks_total counter\n\
             pgmoat_http_lean_fallbacks_total {}",
            g(&self.lean_fallbacks)
        );
        let _ = writeln!(
            out,
            "# HELP pgmoat_http_framing_refused_total HTTP messages refused for ambiguous or invalid framing.\n\
             # TYPE pgmoat_http_framing_refused_total counter\n\
             pgmoat_http_framing_refused_total {}",
            g(&self.framing_refused)
        );
        let _ = writeln!(
            out,
            "# HELP pgmoat_http_connections_refused_total HTTP client connections closed on accept because http.max_connections were open.\n\
             # TYPE pgmoat_http_connections_refused_total counter\n\
             pgmoat_http_connections_refused_total {}",
            g(&self.connections_refused)
        );
    }
}
