//! Counters for `GET /metrics`, kept as relaxed atomics: sessions add to them once per
//! batch of messages, not once per message.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    pub connections_active: AtomicI64,
    pub connections_refused: AtomicU64,
    pub auth_failures: AtomicU64,
    pub bytes_from_clients: AtomicU64,
    pub bytes_to_clients: AtomicU64,
    pub queries_simple: AtomicU64,
    pub queries_extended: AtomicU64,
    pub server_errors: AtomicU64,
    pub messages_blocked: AtomicU64,
    pub values_masked: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub cancel_requests: AtomicU64,
    /// Audit: records formatted, write/fsync failures, fdatasyncs, and sink copies
    /// queued but not yet delivered (lag) or dropped.
    pub audit_records: AtomicU64,
    pub audit_write_failures: AtomicU64,
    pub audit_fsyncs: AtomicU64,
    pub audit_fsync_micros: AtomicU64,
    pub audit_sink_lag: AtomicI64,
    pub audit_sink_dropped: AtomicU64,
    /// The SSH front door's counters.
    pub ssh: crate::ssh::metrics::SshMetrics,
    /// The HTTP gateway's counters.
    pub http: crate::gateway::metrics::HttpMetrics,
}

/// What one batch of relayed messages adds to the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchStats {
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    pub queries_simple: u64,
    pub queries_extended: u64,
    pub server_errors: u64,
}

impl Metrics {
    pub fn add(&self, s: &BatchStats) {
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Relaxed);
            }
        };
        add(&self.bytes_from_clients, s.bytes_from_client);
        add(&self.bytes_to_clients, s.bytes_to_client);
        add(&self.queries_simple, s.queries_simple);
        add(&self.queries_extended, s.queries_extended);
        add(&self.server_errors, s.server_errors);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, i64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let g = |c: &AtomicU64| c.load(Relaxed) as i64;
        metric(
            "pgmoat_connections_total",
            "counter",
            "Client connections accepted.",
            &[("", g(&self.connections_total))],
        );
        metric(
            "pgmoat_connections_active",
            "gauge",
            "Client sessions open now.",
            &[("", self.connections_active.load(Relaxed))],
        );
        metric(
            "pgmoat_connections_refused_total",
            "counter",
            "Connections refused at the connection limit or during shutdown.",
            &[("", g(&self.connections_refused))],
        );
        metric(
            "pgmoat_auth_failures_total",
            "counter",
            "Client authentication failures.",
            &[("", g(&self.auth_failures))],
        );
        metric(
            "pgmoat_bytes_total",
            "counter",
            "Bytes relayed, by direction.",
            &[
                (
                    "{direction=\"client_to_server\"}",
                    g(&self.bytes_from_clients),
                ),
                (
                    "{direction=\"server_to_client\"}",
                    g(&self.bytes_to_clients),
                ),
            ],
        );
        metric(
            "pgmoat_statements_total",
            "counter",
            "Statements sent by clients: simple Query messages and extended-protocol Executes.",
            &[
                ("{protocol=\"simple\"}", g(&self.queries_simple)),
                ("{protocol=\"extended\"}", g(&self.queries_extended)),
            ],
        );
        metric(
            "pgmoat_server_errors_total",
            "counter",
            "ErrorResponses relayed from servers.",
            &[("", g(&self.server_errors))],
        );
        metric(
            "pgmoat_blocked_total",
            "counter",
            "Client messages refused by pgmoat.",
            &[("", g(&self.messages_blocked))],
        );
        metric(
            "pgmoat_masked_values_total",
            "counter",
            "Result values masked (column masks and detectors).",
            &[("", g(&self.values_masked))],
        );
        metric(
            "pgmoat_protocol_errors_total",
            "counter",
            "Sessions ended for malformed or oversized messages.",
            &[("", g(&self.protocol_errors))],
        );
        metric(
            "pgmoat_cancel_requests_total",
            "counter",
            "CancelRequests received.",
            &[("", g(&self.cancel_requests))],
        );
        metric(
            "pgmoat_audit_records_total",
            "counter",
            "Audit records written.",
            &[("", g(&self.audit_records))],
        );
        metric(
            "pgmoat_audit_write_failures_total",
            "counter",
            "Audit writes or fsyncs that failed (statements were refused).",
            &[("", g(&self.audit_write_failures))],
        );
        metric(
            "pgmoat_audit_fsyncs_total",
            "counter",
            "fdatasync calls on the audit store (one covers many records).",
            &[("", g(&self.audit_fsyncs))],
        );
        metric(
            "pgmoat_audit_fsync_microseconds_total",
            "counter",
            "Time spent in fdatasync on the audit store (divide by fsyncs for the mean).",
            &[("", g(&self.audit_fsync_micros))],
        );
        metric(
            "pgmoat_audit_sink_lag",
            "gauge",
            "Audit records queued for sinks and not yet delivered.",
            &[("", self.audit_sink_lag.load(Relaxed))],
        );
        metric(
            "pgmoat_audit_sink_dropped_total",
            "counter",
            "Audit record copies a sink dropped (queue full or delivery failed); the local store keeps them.",
            &[("", g(&self.audit_sink_dropped))],
        );
        self.ssh.render(&mut out);
        self.http.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::default();
        m.add(&BatchStats {
            bytes_from_client: 10,
            queries_simple: 2,
            ..Default::default()
        });
        let text = m.render();
        assert!(
            text.contains("pgmoat_statements_total{protocol=\"simple\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("pgmoat_bytes_total{direction=\"client_to_server\"} 10\n"));
        assert!(text.contains("# TYPE pgmoat_connections_active gauge\n"));
    }
}
