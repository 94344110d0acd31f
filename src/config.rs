//! `pgmoat.yaml`: the raw serde form, checked as it is read (unknown keys and bad values
//! fail with their line and column), then validated into [`Config`], the only form the
//! rest of pgmoat sees.
//!
//! Secrets are read from the environment variables the file names, never from the file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

use crate::protocol::scram::Verifier;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}:{message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

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

/// How pgmoat talks TLS to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    Disable,
    /// Try TLS, fall back to plain when the server declines; no certificate checks.
    #[default]
    Prefer,
    /// TLS or nothing; no certificate checks (libpq's `require`).
    Require,
    /// TLS with the certificate chain checked against `ca` and the host name matched.
    VerifyFull,
}

// ---------- raw form ----------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    tls: Option<RawTls>,
    admin: Option<RawAdmin>,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    identities: RawIdentities,
    rules: Option<String>,
    approvals: Option<RawApprovals>,
    audit: Option<RawAudit>,
    limits: Option<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: String,
    key: String,
    #[serde(default)]
    require: bool,
    client_ca: Option<String>,
    #[serde(default)]
    require_client_cert: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: SocketAddr,
    token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    host: String,
    port: Option<u16>,
    database: Option<String>,
    user: String,
    password_env: Option<String>,
    #[serde(default)]
    tls: UpstreamTlsMode,
    ca: Option<String>,
    roles: Option<OrderedMap>,
}

/// A YAML mapping read in the order it was written (a `BTreeMap` would sort it, and
/// for `roles:` the first matching group in the file's order wins).
#[derive(Debug, Default)]
struct OrderedMap(Vec<(String, String)>);

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
struct RawIdentities {
    #[serde(default)]
    users: Vec<RawUser>,
    #[serde(default)]
    certificates: Vec<CertificateUser>,
    oidc: Option<RawOidc>,
}

/// A client-certificate identity: the certificate's subject CN names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateUser {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password_env: Option<String>,
    scram: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOidc {
    issuer: String,
    audience: String,
    jwks_file: Option<String>,
    username_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(default)]
    session_may_outlive_token: bool,
    leeway: Option<HumanDuration>,
    jwks_refresh: Option<HumanDuration>,
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    pub timeout: Option<HumanDuration>,
    pub slack: Option<SlackConfig>,
    pub webhook_url_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub webhook_url_env: String,
    pub signing_secret_env: String,
    #[serde(default)]
    pub approvers: BTreeMap<String, String>,
}

type RawApprovals = ApprovalsConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    dir: String,
    durability: Option<AuditDurability>,
    record_rows: Option<u32>,
    #[serde(default)]
    sinks: Vec<RawAuditSink>,
    /// Env var holding the key that makes record hashes HMAC-SHA-256.
    hmac_key_env: Option<String>,
    /// Start a new segment file past this size (bytes) ...
    segment_bytes: Option<u64>,
    /// ... or this age.
    segment_age: Option<HumanDuration>,
    /// `batch` durability: how often queued records are written and fsynced.
    flush_interval: Option<HumanDuration>,
    /// How often the head (seq + hash of the newest record) goes to the sinks.
    head_interval: Option<HumanDuration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDurability {
    Fsync,
    Batch,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawAuditSink {
    Stdout,
    Webhook { url_env: String },
    Syslog { address: String },
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
}

impl AuditConfig {
    /// Defaults for everything but the folder.
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
        }
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<usize>,
    max_message_bytes: Option<usize>,
    max_statement_bytes: Option<usize>,
    shutdown_grace: Option<HumanDuration>,
    connect_timeout: Option<HumanDuration>,
    startup_timeout: Option<HumanDuration>,
    auth_failures: Option<u32>,
    auth_failure_window: Option<HumanDuration>,
}

// ---------- validated form ----------

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
    /// The approvals section's secrets, read from the environment.
    pub approval_secrets: ApprovalSecrets,
    pub audit: Option<AuditConfig>,
    pub limits: Limits,
}

/// Webhook URLs and the Slack signing secret for approvals.
#[derive(Debug, Clone, Default)]
pub struct ApprovalSecrets {
    pub slack_webhook: Option<Secret>,
    pub slack_signing: Option<Secret>,
    pub webhook: Option<Secret>,
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
    pub verifier: Verifier,
    pub groups: Vec<String>,
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
}

impl Default for Limits {
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
        }
    }
}

/// Where environment lookups come from (the process environment, or a map in tests).
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Config {
    /// Read and validate a config file; relative paths in it are taken from its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml(&text, &path.display().to_string(), base, &ProcessEnv)
    }

    /// Validate a config file as `pgmoat check` does: secrets need not be present
    /// (CI pipelines rarely have them), so missing variables are returned, not errors.
    pub fn check(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let missing = std::cell::RefCell::new(Vec::new());
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| {
                    missing.borrow_mut().push(name.to_owned());
                    Some("unset".to_owned())
                })
        };
        let config = Config::from_yaml(&text, &path.display().to_string(), base, &env)?;
        let mut missing = missing.into_inner();
        missing.sort();
        missing.dedup();
        Ok((config, missing))
    }

    /// Sections this build accepts and checks but does not act on yet.
    pub fn inactive_sections(&self) -> Vec<&'static str> {
        // Every section is enforced now; kept for sections still to come.
        Vec::new()
    }

    /// Parse and validate YAML text. `name` labels errors; `base` resolves relative paths.
    pub fn from_yaml(
        text: &str,
        name: &str,
        base: &Path,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: name.to_owned(),
            message: one_line_yaml_error(&e.to_string()),
        })?;
        Validator { name, base, env }.config(raw)
    }
}

/// serde-saphyr says `error: line L column C: message` (sometimes with a snippet after);
/// make that `:L:C: message` on one line, so errors read `file:line:col: message`.
pub(crate) fn one_line_yaml_error(text: &str) -> String {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid YAML");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let located = first.strip_prefix("line ").and_then(|rest| {
        let (line, rest) = rest.split_once(" column ")?;
        let (col, message) = rest.split_once(": ")?;
        let (line, col) = (line.parse::<u32>().ok()?, col.parse::<u32>().ok()?);
        Some(format!("{line}:{col}: {message}"))
    });
    match located {
        Some(l) => l,
        None => format!(" {first}"),
    }
}

struct Validator<'a> {
    name: &'a str,
    base: &'a Path,
    env: &'a dyn Env,
}

impl Validator<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.name.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn secret(&self, field: &str, var: &str) -> Result<Secret, ConfigError> {
        match self.env.var(var) {
            Some(v) if !v.is_empty() => Ok(Secret(v)),
            _ => Err(self.err(field, format!("environment variable {var} is not set"))),
        }
    }

    fn approval_secrets(
        &self,
        a: Option<&ApprovalsConfig>,
    ) -> Result<ApprovalSecrets, ConfigError> {
        let Some(a) = a else {
            return Ok(ApprovalSecrets::default());
        };
        let mut out = ApprovalSecrets::default();
        if let Some(s) = &a.slack {
            out.slack_webhook =
                Some(self.secret("approvals.slack.webhook_url_env", &s.webhook_url_env)?);
            out.slack_signing =
                Some(self.secret("approvals.slack.signing_secret_env", &s.signing_secret_env)?);
        }
        if let Some(w) = &a.webhook_url_env {
            out.webhook = Some(self.secret("approvals.webhook_url_env", w)?);
        }
        Ok(out)
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let tls = match raw.tls {
            None => None,
            Some(t) => {
                if t.require_client_cert && t.client_ca.is_none() {
                    return Err(self.err(
                        "tls.require_client_cert",
                        "needs `client_ca:` (the CA bundle client certificates are checked against)",
                    ));
                }
                Some(TlsConfig {
                    cert: self.path(&t.cert),
                    key: self.path(&t.key),
                    require: t.require,
                    client_ca: t.client_ca.as_deref().map(|p| self.path(p)),
                    require_client_cert: t.require_client_cert,
                })
            }
        };
        let admin = match raw.admin {
            None => None,
            Some(a) => Some(AdminConfig {
                listen: a.listen,
                token: match a.token_env {
                    Some(var) => self.env.var(&var).filter(|v| !v.is_empty()).map(Secret),
                    None => None,
                },
            }),
        };
        if raw.targets.is_empty() {
            return Err(self.err("targets", "at least one target is required"));
        }
        let mut targets = BTreeMap::new();
        for (name, t) in raw.targets {
            let field = format!("targets.{name}");
            if name.is_empty() {
                return Err(self.err("targets", "target names must not be empty"));
            }
            if t.tls == UpstreamTlsMode::VerifyFull && t.ca.is_none() {
                return Err(self.err(
                    format!("{field}.tls"),
                    "verify-full needs `ca:` (a CA certificate file)",
                ));
            }
            let roles = t.roles.map(|r| r.0).unwrap_or_default();
            for (group, role) in &roles {
                if group.is_empty() || role.is_empty() || role.contains('\0') {
                    return Err(self.err(
                        format!("{field}.roles"),
                        "group and role names must be non-empty",
                    ));
                }
            }
            let password = match &t.password_env {
                Some(var) => Some(self.secret(&format!("{field}.password_env"), var)?),
                None => None,
            };
            targets.insert(
                name.clone(),
                Target {
                    database: t.database.unwrap_or_else(|| name.clone()),
                    name,
                    host: t.host,
                    port: t.port.unwrap_or(5432),
                    user: t.user,
                    password,
                    tls: t.tls,
                    ca: t.ca.as_deref().map(|p| self.path(p)),
                    roles,
                },
            );
        }
        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw.identities.users.into_iter().enumerate() {
            let field = format!("identities.users[{i}]");
            if u.name.is_empty() {
                return Err(self.err(field, "name must not be empty"));
            }
            if users.iter().any(|x| x.name == u.name) {
                return Err(self.err(field, format!("duplicate user {:?}", u.name)));
            }
            let verifier = match (&u.password_env, &u.scram) {
                (Some(var), None) => Verifier::from_password(
                    self.secret(&format!("{field}.password_env"), var)?.expose(),
                ),
                (None, Some(text)) => Verifier::parse(text)
                    .map_err(|e| self.err(format!("{field}.scram"), e.to_string()))?,
                _ => {
                    return Err(self.err(field, "give exactly one of password_env or scram"));
                }
            };
            users.push(User {
                name: u.name,
                verifier,
                groups: u.groups,
            });
        }
        let d = Limits::default();
        let limits = match raw.limits {
            None => d,
            Some(l) => Limits {
                max_connections: l.max_connections.unwrap_or(d.max_connections),
                max_message_bytes: l.max_message_bytes.unwrap_or(d.max_message_bytes),
                // Unset, it follows a smaller message cap down.
                max_statement_bytes: l.max_statement_bytes.unwrap_or(
                    d.max_statement_bytes
                        .min(l.max_message_bytes.unwrap_or(d.max_message_bytes)),
                ),
                shutdown_grace: l.shutdown_grace.map(|x| x.0).unwrap_or(d.shutdown_grace),
                connect_timeout: l.connect_timeout.map(|x| x.0).unwrap_or(d.connect_timeout),
                startup_timeout: l.startup_timeout.map(|x| x.0).unwrap_or(d.startup_timeout),
                auth_failures: l.auth_failures.unwrap_or(d.auth_failures),
                auth_failure_window: l
                    .auth_failure_window
                    .map(|x| x.0)
                    .unwrap_or(d.auth_failure_window),
            },
        };
        if limits.auth_failures == 0 {
            return Err(self.err("limits.auth_failures", "must be at least 1"));
        }
        let certificates = raw.identities.certificates;
        for (i, c) in certificates.iter().enumerate() {
            let field = format!("identities.certificates[{i}]");
            if c.name.is_empty() {
                return Err(self.err(field, "name must not be empty"));
            }
            if certificates[..i].iter().any(|x| x.name == c.name) {
                return Err(self.err(field, format!("duplicate certificate name {:?}", c.name)));
            }
        }
        if !certificates.is_empty() && tls.as_ref().is_none_or(|t| t.client_ca.is_none()) {
            return Err(self.err(
                "identities.certificates",
                "needs `tls.client_ca:` to verify client certificates against",
            ));
        }
        let oidc = match raw.identities.oidc {
            None => None,
            Some(o) => Some(self.oidc(o)?),
        };
        if limits.max_connections == 0 {
            return Err(self.err("limits.max_connections", "must be at least 1"));
        }
        if limits.max_message_bytes < 1024 {
            return Err(self.err("limits.max_message_bytes", "must be at least 1024"));
        }
        if limits.max_message_bytes > MAX_MESSAGE_BYTES {
            return Err(self.err(
                "limits.max_message_bytes",
                format!("must be at most {MAX_MESSAGE_BYTES} (1 GiB, the protocol's own limit)"),
            ));
        }
        if limits.max_statement_bytes == 0 || limits.max_statement_bytes > limits.max_message_bytes
        {
            return Err(self.err(
                "limits.max_statement_bytes",
                "must be between 1 and limits.max_message_bytes",
            ));
        }
        if limits.connect_timeout.is_zero() || limits.startup_timeout.is_zero() {
            return Err(self.err(
                "limits",
                "connect_timeout and startup_timeout must be at least 1ms",
            ));
        }
        if limits.auth_failure_window.is_zero() {
            return Err(self.err("limits.auth_failure_window", "must be at least 1ms"));
        }
        let workers = match raw.workers {
            Some(0) => return Err(self.err("workers", "must be at least 1")),
            Some(n) if n > MAX_WORKERS => {
                return Err(self.err("workers", format!("must be at most {MAX_WORKERS}")))
            }
            Some(n) => n,
            None => default_workers(),
        };
        Ok(Config {
            listen: raw
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6432))),
            workers,
            tls,
            admin,
            targets,
            users,
            certificates,
            oidc,
            rules: raw.rules.as_deref().map(|p| self.path(p)),
            approval_secrets: self.approval_secrets(raw.approvals.as_ref())?,
            approvals: raw.approvals,
            audit: match raw.audit {
                Some(a) => Some(self.audit(a)?),
                None => None,
            },
            limits,
        })
    }
}

impl Validator<'_> {
    fn oidc(&self, o: RawOidc) -> Result<OidcConfig, ConfigError> {
        let f = "identities.oidc";
        if !crate::auth::jwks::url_allowed(&o.issuer) {
            return Err(self.err(
                format!("{f}.issuer"),
                "must be an https:// URL (plain http is allowed only for a loopback issuer)",
            ));
        }
        if o.audience.is_empty() {
            return Err(self.err(format!("{f}.audience"), "must not be empty"));
        }
        let leeway = o.leeway.map(|d| d.0).unwrap_or(Duration::from_secs(30));
        if leeway > Duration::from_secs(300) {
            return Err(self.err(format!("{f}.leeway"), "at most 5m"));
        }
        let jwks_refresh = o
            .jwks_refresh
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(600));
        if jwks_refresh < Duration::from_secs(30) {
            return Err(self.err(format!("{f}.jwks_refresh"), "at least 30s"));
        }
        Ok(OidcConfig {
            issuer: o.issuer,
            audience: o.audience,
            jwks_file: o.jwks_file.as_deref().map(|p| self.path(p)),
            username_claim: o.username_claim.unwrap_or_else(|| "sub".into()),
            groups_claim: o.groups_claim.unwrap_or_else(|| "groups".into()),
            session_may_outlive_token: o.session_may_outlive_token,
            leeway,
            jwks_refresh,
            clock: crate::auth::clock::Clock::system(),
        })
    }

    fn audit(&self, a: RawAudit) -> Result<AuditConfig, ConfigError> {
        if a.dir.is_empty() {
            return Err(self.err("audit.dir", "must not be empty"));
        }
        let mut c = AuditConfig::new(self.path(&a.dir));
        if let Some(d) = a.durability {
            c.durability = d;
        }
        if let Some(n) = a.record_rows {
            if n > MAX_RECORD_ROWS {
                return Err(self.err(
                    "audit.record_rows",
                    format!("must be at most {MAX_RECORD_ROWS}"),
                ));
            }
            c.record_rows = n as usize;
        }
        if let Some(var) = &a.hmac_key_env {
            c.hmac_key = Some(self.secret("audit.hmac_key_env", var)?);
        }
        if let Some(n) = a.segment_bytes {
            if !(4096..=1 << 40).contains(&n) {
                return Err(self.err(
                    "audit.segment_bytes",
                    "must be between 4096 and 1099511627776 (1 TiB)",
                ));
            }
            c.segment_bytes = n;
        }
        if let Some(d) = a.segment_age {
            if d.0 < Duration::from_secs(1) {
                return Err(self.err("audit.segment_age", "must be at least 1s"));
            }
            c.segment_age = d.0;
        }
        if let Some(d) = a.flush_interval {
            if d.0.is_zero() || d.0 > Duration::from_secs(1) {
                return Err(self.err("audit.flush_interval", "must be between 1ms and 1s"));
            }
            c.flush_interval = d.0;
        }
        if let Some(d) = a.head_interval {
            if d.0 < Duration::from_secs(1) {
                return Err(self.err("audit.head_interval", "must be at least 1s"));
            }
            c.head_interval = d.0;
        }
        for (i, s) in a.sinks.into_iter().enumerate() {
            let field = format!("audit.sinks[{i}]");
            c.sinks.push(match s {
                RawAuditSink::Stdout => AuditSink::Stdout,
                RawAuditSink::Webhook { url_env } => AuditSink::Webhook {
                    url: self.secret(&format!("{field}.webhook.url_env"), &url_env)?,
                },
                RawAuditSink::Syslog { address } => {
                    let ok = ["udp://", "tcp://"].iter().any(|p| {
                        address.strip_prefix(p).is_some_and(|r| {
                            r.rsplit_once(':').is_some_and(|(h, port)| {
                                !h.is_empty() && port.parse::<u16>().is_ok()
                            })
                        })
                    });
                    if !ok {
                        return Err(self.err(
                            format!("{field}.syslog.address"),
                            format!("{address:?} must be udp://host:port or tcp://host:port"),
                        ));
                    }
                    AuditSink::Syslog { address }
                }
            });
        }
        Ok(c)
    }
}

/// Half the cores, at least one: the proxy usually shares its machine with the work it
/// fronts, and on two cores one worker measured faster than two.
/// The most result rows one statement's audit record may keep.
pub const MAX_RECORD_ROWS: u32 = 100_000;
/// The most tokio worker threads `workers:` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// The protocol's own cap on a message (Postgres refuses longer ones too).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    (cores / 2).max(1)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
