//! The SSH door's counters, rendered with the rest of `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::policy::Action;

#[derive(Debug, Default)]
pub struct SshMetrics {
    pub connections_total: AtomicU64,
    pub sessions_total: AtomicU64,
    pub sessions_active: AtomicI64,
    pub channels_allowed: AtomicU64,
    pub channels_blocked: AtomicU64,
    pub channels_held: AtomicU64,
    pub forwards_refused: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl SshMetrics {
    pub fn channel(&self, action: Action) {
        match action {
            Action::Allow => &self.channels_allowed,
            Action::Block => &self.channels_blocked,
            Action::Approve => &self.channels_held,
        }
        .fetch_add(1, Relaxed);
    }

    pub fn render(&self, out: &mut String) {
        let g = |c: &AtomicU64| c.load(Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, i64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        metric(
            "pgmoat_ssh_connections_total",
            "counter",
            "SSH client connections accepted.",
            &[("", g(&self.connections_total) as i64)],
        );
        metric(
            "pgmoat_ssh_sessions_total",
            "counter",
            "Authenticated SSH sessions.",
            &[("", g(&self.sessions_total) as i64)],
        );
        metric(
            "pgmoat_ssh_sessions_active",
            "gauge",
            "SSH sessions open now.",
            &[("", self.sessions_active.load(Relaxed))],
        );
        metric(
            "pgmoat_ssh_channels_total",
            "counter",
            "SSH exec, shell and subsystem requests, by action.",
            &[
                ("{action=\"allow\"}", g(&self.channels_allowed) as i64),
                ("{action=\"block\"}", g(&self.channels_blocked) as i64),
                ("{action=\"approve\"}", g(&self.channels_held) as i64),
            ],
        );
        metric(
            "pgmoat_ssh_forwarding_refused_total",
            "counter",
            "Port, X11 and agent forwarding requests refused.",
            &[("", g(&self.forwards_refused) as i64)],
        );
        metric(
            "pgmoat_ssh_bytes_total",
            "counter",
            "SSH channel bytes relayed, by direction.",
            &[
                ("{direction=\"client_to_server\"}", g(&self.bytes_in) as i64),
                (
                    "{direction=\"server_to_client\"}",
                    g(&self.bytes_out) as i64,
                ),
            ],
        );
    }
}
