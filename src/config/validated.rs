//! The validated configuration: the only form the rest of pgmoat sees. Every value is
//! here, defaults applied (see `defaults`), secrets read from the environment, paths
//! resolved against the config file's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Secret;
use crate::protocol::scram::Verifier;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Tokio worker threads.
    pub workers: usize,
    pub tls: Option<TlsConfig>,
    pub admin: Option<AdminConfig>,
    pub targets: BTreeMap<String, Target>,
    pub users: Vec<User>,
    pub certificates: Vec<CertificateUser>,
    pub oidc: Option<OidcConfig>,
    pub rules: Option<PathBuf>,
    pub approvals: Option<ApprovalsConfig>,
    pub audit: Option<AuditConfig>,
    pub limits: Limits,
    pub cluster: Option<ClusterConfig>,
    /// `tenants:`; empty without it (then the top level is the one, unnamed tenant).
    pub tenants: Vec<TenantConfig>,
    /// `mcp:`: the MCP endpoint for agents (SPEC section 7).
    pub mcp: Option<super::mcp::McpConfig>,
    /// `ssh:`, the SSH front door (SPEC section 8).
    pub ssh: Option<super::SshConfig>,
    /// `http:`, the HTTP gateway (SPEC section 9); None: not served.
    pub http: Option<super::http_gateway::HttpConfig>,
}

/// One tenant: its own targets, identities, rules, approvals, audit store and admin
/// token (SPEC section 10).
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub targets: BTreeMap<String, Target>,
    pub users: Vec<User>,
    pub certificates: Vec<CertificateUser>,
    pub oidc: Option<OidcConfig>,
    pub rules: Option<PathBuf>,
    pub approvals: Option<ApprovalsConfig>,
    pub audit: Option<AuditConfig>,
    /// Sees and decides this tenant's approvals, sessions and audit only.
    pub admin_token: Option<Secret>,
    pub limits: TenantLimits,
    /// Its SSH and HTTP targets, as validated; the doors find them in `ssh.targets`
    /// and `http.targets` under [`super::door_key`].
    pub ssh_targets: BTreeMap<String, super::ssh::SshTarget>,
    pub http_targets: BTreeMap<String, super::http_gateway::HttpTarget>,
}

/// A tenant's share of the gateway; `None`: only the gateway's own limits apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantLimits {
    pub max_connections: Option<usize>,
    /// Statements of this tenant waiting for approval at once.
    pub max_held: Option<usize>,
}

/// `cluster:`: this replica's name and the state database shared with the others.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub node: String,
    pub state_url: Secret,
    /// How often this node says it is alive.
    pub heartbeat: std::time::Duration,
    /// A node silent this long is gone: its held requests are withdrawn.
    pub lapse: std::time::Duration,
}

/// How pgmoat talks TLS to a target. (A plain value: the YAML names it directly.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Disable,
    /// Try TLS, fall back to plain when the server declines; no certificate checks.
    Prefer,
    /// TLS or nothing; no certificate checks (libpq's `require`).
    Require,
    /// TLS with the certificate chain checked against `ca` and the host name matched.
    VerifyFull,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub require: bool,
    /// CA bundle that client certificates are verified against; None: not asked for.
    pub client_ca: Option<PathBuf>,
    /// Refuse the TLS handshake of a client without a valid certificate.
    pub require_client_cert: bool,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for `/api/*`; without one, every `/api/*` call is refused.
    pub token: Option<Secret>,
    /// Groups whose members may open the SQL admin console (`psql -d pgmoat`); empty:
    /// nobody may.
    pub groups: Vec<String>,
    /// `admin.public_url`, without a trailing `/`: the console's OIDC redirect URI is
    /// built from it (without it, only a request to the listener's own address may
    /// start an OIDC sign-in).
    pub public_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: UpstreamTlsMode,
    pub ca: Option<PathBuf>,
    /// Group -> upstream role, in the config's order: pgmoat runs `SET ROLE` for the
    /// first group the identity has, and then refuses any change of role.
    pub roles: Vec<(String, String)>,
}

impl Target {
    /// The role an identity with these groups runs as, if the target says so.
    pub fn role_for(&self, groups: &[String]) -> Option<&str> {
        self.roles
            .iter()
            .find(|(g, _)| groups.iter().any(|x| x == g))
            .map(|(_, r)| r.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// None for a user with only a bearer secret (`token_env`): the wire refuses it.
    pub verifier: Option<Verifier>,
    /// The bearer secret for the HTTP-based front doors.
    pub token: Option<Secret>,
    pub groups: Vec<String>,
    /// SSH public keys as `algorithm base64`.
    pub ssh_keys: Vec<String>,
}

/// A client-certificate identity: the certificate's subject CN names it.
#[derive(Debug, Clone)]
pub struct CertificateUser {
    pub name: String,
    pub groups: Vec<String>,
}

/// Bearer tokens (JWT) sent as the Postgres password.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Compared exactly with the token's `iss` (no trailing-slash games).
    pub issuer: String,
    pub audience: String,
    /// Keys read from this file instead of discovered from the issuer.
    pub jwks_file: Option<PathBuf>,
    /// The claim the Postgres user name must equal (default `sub`).
    pub username_claim: String,
    /// The claim holding the groups, a string or an array of strings (default `groups`).
    pub groups_claim: String,
    pub session_may_outlive_token: bool,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// How often discovered keys are fetched again even when no unknown `kid` asks for it.
    pub jwks_refresh: Duration,
    /// What `exp` and `nbf` are compared with: the system clock (tests move their own).
    pub clock: crate::auth::clock::Clock,
}

/// Approvals (SPEC §2), with their secrets read.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// How long a held statement waits for a decision before it is denied.
    pub timeout: Duration,
    pub slack: Option<SlackApprovals>,
    /// The generic JSON webhook's URL (it may carry a token: kept as a secret).
    pub webhook: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct SlackApprovals {
    pub webhook: Secret,
    /// Verifies Slack's interactive callbacks.
    pub signing_secret: Secret,
    /// Slack user id -> identity name.
    pub approvers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDurability {
    Fsync,
    Batch,
}

/// The audit store (SPEC §6).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub durability: AuditDurability,
    /// Result rows kept per statement (after masking).
    pub record_rows: usize,
    pub sinks: Vec<AuditSink>,
    pub hmac_key: Option<Secret>,
    pub segment_bytes: u64,
    pub segment_age: Duration,
    pub flush_interval: Duration,
    pub head_interval: Duration,
    /// `fsync` durability: journal flushes that may run at once (1: on the writer
    /// thread, one after another).
    pub parallel_flushes: usize,
}

#[derive(Debug, Clone)]
pub enum AuditSink {
    Stdout,
    /// The URL may carry a token: kept as a secret.
    Webhook {
        url: Secret,
    },
    /// `udp://host:port` or `tcp://host:port`.
    Syslog {
        address: String,
    },
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Cap on any one message pgmoat must hold whole (queries, Parse, FunctionCall);
    /// data messages are streamed and only bound by the protocol's own limits.
    pub max_message_bytes: usize,
    /// Statements longer than this are refused before parsing.
    pub max_statement_bytes: usize,
    pub shutdown_grace: Duration,
    pub connect_timeout: Duration,
    pub startup_timeout: Duration,
    /// Failed authentications one client address may have within `auth_failure_window`
    /// before further attempts from it are refused without being checked.
    pub auth_failures: u32,
    pub auth_failure_window: Duration,
    /// How often every catalog in use is read again, for DDL pgmoat did not see (run
    /// on the server directly); zero: never.
    pub catalog_refresh: Duration,
}
