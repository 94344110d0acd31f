//! `pgmoat.yaml` as written: the serde shapes, checked as they are read (unknown keys and
//! values of the wrong type fail with their line and column). Every key a user may leave
//! out is an `Option` here: what it means when absent is decided in `defaults`, and
//! applied once, in `validate`. Nothing outside `config` sees these types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::validated::{AuditDurability, UpstreamTlsMode};

/// A duration written `500ms`, `30s`, `5m` or `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

/// The longest duration pgmoat accepts anywhere (config, rule files, the admin API, the
/// CLI, Slack): ten years. Far past any sensible timeout or grant, and far below what
/// `Instant + duration` can hold, so no caller can overflow adding it.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Parses a duration; too large or malformed gives a one-line reason, never a panic.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {s:?} must start with a whole number"));
    }
    let too_long = || {
        format!(
            "duration {s:?} is too long (at most {}h)",
            MAX_DURATION.as_secs() / 3600
        )
    };
    // Digits only, so a parse failure is an overflow.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "duration {s:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ))
        }
    };
    let d = n
        .checked_mul(millis_per)
        .map(Duration::from_millis)
        .ok_or_else(too_long)?;
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<SocketAddr>,
    pub workers: Option<usize>,
    pub tls: Option<RawTls>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub identities: RawIdentities,
    pub rules: Option<String>,
    pub approvals: Option<RawApprovals>,
    pub audit: Option<RawAudit>,
    pub limits: Option<RawLimits>,
    pub cluster: Option<RawCluster>,
    pub tenants: Option<BTreeMap<String, RawTenant>>,
    pub mcp: Option<super::mcp::RawMcp>,
    pub ssh: Option<super::ssh::RawSsh>,
    pub http: Option<super::http_gateway::RawHttp>,
}

/// One tenant under `tenants:` (SPEC section 10).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub identities: RawIdentities,
    pub rules: Option<String>,
    pub approvals: Option<RawApprovals>,
    pub audit: Option<RawAudit>,
    pub admin_token_env: Option<String>,
    pub limits: Option<RawTenantLimits>,
    /// This tenant's SSH and HTTP targets (the listeners stay at the top level).
    pub ssh: Option<super::ssh::RawTenantSsh>,
    pub http: Option<super::http_gateway::RawTenantHttp>,
}

/// What one tenant may use of the shared gateway, so its flood leaves the others room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantLimits {
    pub max_connections: Option<usize>,
    pub max_held: Option<usize>,
}

/// `cluster:` (SPEC section 11).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub node: Option<String>,
    /// The node name from the environment, so one file serves every replica.
    pub node_env: Option<String>,
    pub state_url_env: String,
    pub heartbeat: Option<HumanDuration>,
    pub lapse: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: String,
    pub key: String,
    #[serde(default)]
    pub require: bool,
    pub client_ca: Option<String>,
    #[serde(default)]
    pub require_client_cert: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: SocketAddr,
    pub token_env: Option<String>,
    /// Groups whose members may open the SQL admin console (`psql -d pgmoat`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Where browsers reach this listener (the console's OIDC redirect base).
    pub public_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub host: String,
    pub port: Option<u16>,
    pub database: Option<String>,
    pub user: String,
    pub password_env: Option<String>,
    pub tls: Option<UpstreamTlsMode>,
    pub ca: Option<String>,
    pub roles: Option<OrderedMap>,
}

/// A YAML mapping read in the order it was written (a `BTreeMap` would sort it, and
/// for `roles:` the first matching group in the file's order wins).
#[derive(Debug, Default)]
pub(super) struct OrderedMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of group name to role name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<OrderedMap, A::Error> {
                let mut v: Vec<(String, String)> = Vec::new();
                while let Some((k, r)) = m.next_entry::<String, String>()? {
                    if v.iter().any(|(x, _)| *x == k) {
                        return Err(serde::de::Error::custom(format!("duplicate group {k:?}")));
                    }
                    v.push((k, r));
                }
                Ok(OrderedMap(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdentities {
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub certificates: Vec<RawCertificate>,
    pub oidc: Option<RawOidc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertificate {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: String,
    pub password_env: Option<String>,
    pub scram: Option<String>,
    /// A bearer secret for the HTTP-based front doors (MCP, HTTP gateway).
    pub token_env: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Public keys for the SSH front door (OpenSSH `authorized_keys` lines).
    #[serde(default)]
    pub ssh_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidc {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: Option<String>,
    pub username_claim: Option<String>,
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub session_may_outlive_token: bool,
    pub leeway: Option<HumanDuration>,
    pub jwks_refresh: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApprovals {
    pub timeout: Option<HumanDuration>,
    pub slack: Option<RawSlack>,
    pub webhook_url_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlack {
    pub webhook_url_env: String,
    pub signing_secret_env: String,
    #[serde(default)]
    pub approvers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub dir: String,
    pub durability: Option<AuditDurability>,
    pub record_rows: Option<u32>,
    #[serde(default)]
    pub sinks: Vec<RawAuditSink>,
    /// Env var holding the key that makes record hashes HMAC-SHA-256.
    pub hmac_key_env: Option<String>,
    /// Start a new segment file past this size (bytes) ...
    pub segment_bytes: Option<u64>,
    /// ... or this age.
    pub segment_age: Option<HumanDuration>,
    /// `batch` durability: how often queued records are written and fsynced.
    pub flush_interval: Option<HumanDuration>,
    /// How often the head (seq + hash of the newest record) goes to the sinks.
    pub head_interval: Option<HumanDuration>,
    /// `fsync` durability: journal flushes that may run at once.
    pub parallel_flushes: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawAuditSink {
    Stdout,
    Webhook { url_env: String },
    Syslog { address: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_connections: Option<usize>,
    pub max_message_bytes: Option<usize>,
    pub max_statement_bytes: Option<usize>,
    pub shutdown_grace: Option<HumanDuration>,
    pub connect_timeout: Option<HumanDuration>,
    pub startup_timeout: Option<HumanDuration>,
    pub auth_failures: Option<u32>,
    pub auth_failure_window: Option<HumanDuration>,
    pub catalog_refresh: Option<HumanDuration>,
}
