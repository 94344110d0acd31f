//! `pgmoat cluster status`: nodes, heartbeats, sessions, audit heads and pending
//! approvals, read from the state database.

use std::fmt::Write;

use super::{Shared, StateError};

/// The status report as printed (plain text, one section per table).
pub async fn report(shared: &Shared) -> Result<String, StateError> {
    let nodes = shared.nodes().await?;
    let heads = shared.audit_heads().await?;
    let pending = shared.pending(None).await?;
    let mut out = String::new();
    let _ = writeln!(out, "nodes ({}):", nodes.len());
    for n in &nodes {
        let _ = writeln!(
            out,
            "  {:<16} {:<7} last heartbeat {:.1}s ago, {} session{}, up since {}",
            n.node,
            if n.lapsed { "LAPSED" } else { "alive" },
            n.silent_for,
            n.sessions,
            if n.sessions == 1 { "" } else { "s" },
            crate::audit::time::format_seconds(n.started_at),
        );
    }
    let _ = writeln!(out, "audit heads ({}):", heads.len());
    for h in &heads {
        let tenant = if h.tenant.is_empty() {
            String::new()
        } else {
            format!(" tenant {}", h.tenant)
        };
        let _ = writeln!(out, "  {}{tenant}: {}:{}", h.node, h.seq, h.hash);
    }
    let _ = writeln!(out, "pending approvals ({}):", pending.len());
    for p in &pending {
        let tenant = if p.tenant.is_empty() {
            String::new()
        } else {
            format!(" tenant {}", p.tenant)
        };
        let _ = writeln!(
            out,
            "  {} on {}{tenant}: {} on {} (rule \"{}\"): {}",
            p.request.id,
            p.node,
            p.request.identity,
            p.request.target,
            p.request.rule,
            one_line(&p.request.sql),
        );
    }
    Ok(out)
}

/// SQL on one line, shortened for a terminal.
fn one_line(sql: &str) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 80 {
        let mut s: String = flat.chars().take(77).collect();
        s.push_str("...");
        s
    } else {
        flat
    }
}
