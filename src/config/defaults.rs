//! What a key means when `pgmoat.yaml` leaves it out: every default in one place.
//! `validate` is the only code that applies them; nothing downstream of [`Config`]
//! picks a value of its own for something the file could have said.
//!
//! [`Config`]: super::Config

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use super::validated::{AuditConfig, AuditDurability, Limits, UpstreamTlsMode};

/// `listen:`: loopback, so a fresh install is not reachable from the network.
pub const LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6432));

/// `targets.*.port:`.
pub const TARGET_PORT: u16 = 5432;
/// `targets.*.tls:`: what libpq does by default.
pub const UPSTREAM_TLS: UpstreamTlsMode = UpstreamTlsMode::Prefer;

/// `cluster.heartbeat:` and `cluster.lapse:`: a dead node's holds are withdrawn within
/// about five seconds; a node must miss four beats in a row to be declared gone.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const LAPSE: Duration = Duration::from_secs(5);

/// `approvals.timeout:`: long enough for a human to answer a Slack message.
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// `identities.oidc.username_claim:` and `groups_claim:`.
pub const OIDC_USERNAME_CLAIM: &str = "sub";
pub const OIDC_GROUPS_CLAIM: &str = "groups";
/// `identities.oidc.leeway:`: clock skew allowed on `exp` and `nbf`.
pub const OIDC_LEEWAY: Duration = Duration::from_secs(30);
/// `identities.oidc.jwks_refresh:`.
pub const OIDC_JWKS_REFRESH: Duration = Duration::from_secs(600);

/// `workers:`: half the cores, at least one. The proxy usually shares its machine with
/// the work it fronts, and on two cores one worker measured faster than two.
pub fn workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / 2).max(1)
}

impl Default for Limits {
    /// `limits:` left out, or each of its keys left out. (`max_statement_bytes` left
    /// out also follows a smaller `max_message_bytes` down: see `validate`.)
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_message_bytes: 64 << 20,
            max_statement_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(60),
            auth_failures: 10,
            auth_failure_window: Duration::from_secs(60),
            catalog_refresh: Duration::from_secs(60),
        }
    }
}

impl AuditConfig {
    /// Defaults for every `audit:` key but the folder.
    pub fn new(dir: impl Into<PathBuf>) -> AuditConfig {
        AuditConfig {
            dir: dir.into(),
            durability: AuditDurability::Fsync,
            record_rows: 100,
            sinks: Vec::new(),
            hmac_key: None,
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(24 * 3600),
            flush_interval: Duration::from_millis(10),
            head_interval: Duration::from_secs(60),
            parallel_flushes: 1,
        }
    }
}
