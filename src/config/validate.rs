//! Raw form -> validated form: every check that needs more than serde (ranges, keys
//! that need each other, names that must be unique), secrets read from the
//! environment, relative paths resolved, and the defaults of `defaults` applied. This
//! is the one place a missing key gets its value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults;
use super::raw::{
    RawApprovals, RawAudit, RawAuditSink, RawCluster, RawConfig, RawIdentities, RawLimits, RawOidc,
    RawTarget, RawUser,
};
use super::tenants::Scope;
use super::validated::{
    AdminConfig, ApprovalsConfig, AuditConfig, AuditSink, CertificateUser, ClusterConfig, Config,
    Limits, OidcConfig, SlackApprovals, Target, TlsConfig, UpstreamTlsMode, User,
};
use super::{ConfigError, Env, Secret};
use crate::protocol::scram::Verifier;

/// The most result rows one statement's audit record may keep.
pub const MAX_RECORD_ROWS: u32 = 100_000;
/// The most tokio worker threads `workers:` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// The protocol's own cap on a message (Postgres refuses longer ones too).
pub const MAX_MESSAGE_BYTES: usize = 1 << 30;

pub(super) struct Validator<'a> {
    pub name: &'a str,
    pub base: &'a Path,
    pub env: &'a dyn Env,
}

impl Validator<'_> {
    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.name.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn secret(&self, field: &str, var: &str) -> Result<Secret, ConfigError> {
        match self.env.var(var) {
            Some(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(self.err(field, format!("environment variable {var} is not set"))),
        }
    }

    pub(super) fn approvals(&self, a: RawApprovals) -> Result<ApprovalsConfig, ConfigError> {
        let slack = match a.slack {
            None => None,
            Some(s) => Some(SlackApprovals {
                webhook: self.secret("approvals.slack.webhook_url_env", &s.webhook_url_env)?,
                signing_secret: self
                    .secret("approvals.slack.signing_secret_env", &s.signing_secret_env)?,
                approvers: s.approvers,
            }),
        };
        let webhook = match &a.webhook_url_env {
            Some(w) => Some(self.secret("approvals.webhook_url_env", w)?),
            None => None,
        };
        Ok(ApprovalsConfig {
            timeout: a.timeout.map(|t| t.0).unwrap_or(defaults::APPROVAL_TIMEOUT),
            slack,
            webhook,
        })
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
                    Some(var) => self
                        .env
                        .var(&var)
                        .filter(|v| !v.is_empty())
                        .map(Secret::new),
                    None => None,
                },
                groups: a.groups,
                public_url: match &a.public_url {
                    Some(u) => Some(self.admin_public_url(u)?),
                    None => None,
                },
            }),
        };
        let limits = Self::limits(raw.limits);
        if limits.auth_failures == 0 {
            return Err(self.err("limits.auth_failures", "must be at least 1"));
        }
        let has_tenants = raw.tenants.is_some();
        let scope = if has_tenants {
            self.no_top_level_scope(
                &raw.targets,
                &raw.identities,
                [
                    ("rules", raw.rules.is_some()),
                    ("approvals", raw.approvals.is_some()),
                    ("audit", raw.audit.is_some()),
                ],
            )?;
            Scope::default()
        } else {
            self.scope(raw.targets, raw.identities, tls.as_ref())?
        };
        let tenants = match raw.tenants {
            Some(t) => self.tenants(t, tls.as_ref())?,
            None => Vec::new(),
        };
        self.check_limits(&limits)?;
        let workers = match raw.workers {
            Some(0) => return Err(self.err("workers", "must be at least 1")),
            Some(n) if n > MAX_WORKERS => {
                return Err(self.err("workers", format!("must be at most {MAX_WORKERS}")))
            }
            Some(n) => n,
            None => defaults::workers(),
        };
        Ok(Config {
            listen: raw.listen.unwrap_or(defaults::LISTEN),
            workers,
            tls,
            admin,
            targets: scope.targets,
            users: scope.users,
            certificates: scope.certificates,
            oidc: scope.oidc,
            rules: raw.rules.as_deref().map(|p| self.path(p)),
            approvals: match raw.approvals {
                Some(a) => Some(self.approvals(a)?),
                None => None,
            },
            audit: match raw.audit {
                Some(a) => Some(self.audit(a)?),
                None => None,
            },
            limits,
            cluster: match raw.cluster {
                Some(c) => Some(self.cluster(c)?),
                None => None,
            },
            tenants,
            mcp: match raw.mcp {
                Some(m) => Some(self.mcp(m)?),
                None => None,
            },
            ssh: match raw.ssh {
                Some(s) => Some(self.ssh(s)?),
                None => None,
            },
            http: match raw.http {
                Some(h) => Some(self.http(h)?),
                None => None,
            },
        })
        .and_then(|c| self.door_targets(c))
    }

    /// Targets and identities: the top level's, or one tenant's.
    pub(super) fn scope(
        &self,
        raw_targets: BTreeMap<String, RawTarget>,
        identities: RawIdentities,
        tls: Option<&TlsConfig>,
    ) -> Result<Scope, ConfigError> {
        if raw_targets.is_empty() {
            return Err(self.err("targets", "at least one target is required"));
        }
        let mut targets = BTreeMap::new();
        for (name, t) in raw_targets {
            // `dbname=pgmoat` is the SQL admin console (SPEC 12): a target of that
            // name could never be reached.
            if name == "pgmoat" {
                return Err(self.err(
                    "targets.pgmoat",
                    "the name pgmoat is reserved for the SQL admin console (dbname=pgmoat)",
                ));
            }
            let target = self.target(name, t)?;
            targets.insert(target.name.clone(), target);
        }
        let users = self.users(identities.users)?;
        let certificates: Vec<CertificateUser> = identities
            .certificates
            .into_iter()
            .map(|c| CertificateUser {
                name: c.name,
                groups: c.groups,
            })
            .collect();
        for (i, c) in certificates.iter().enumerate() {
            let field = format!("identities.certificates[{i}]");
            if c.name.is_empty() {
                return Err(self.err(field, "name must not be empty"));
            }
            if certificates[..i].iter().any(|x| x.name == c.name) {
                return Err(self.err(field, format!("duplicate certificate name {:?}", c.name)));
            }
        }
        if !certificates.is_empty() && tls.is_none_or(|t| t.client_ca.is_none()) {
            return Err(self.err(
                "identities.certificates",
                "needs `tls.client_ca:` to verify client certificates against",
            ));
        }
        let oidc = match identities.oidc {
            None => None,
            Some(o) => Some(self.oidc(o)?),
        };
        Ok(Scope {
            targets,
            users,
            certificates,
            oidc,
        })
    }

    fn cluster(&self, c: RawCluster) -> Result<ClusterConfig, ConfigError> {
        let node = match (c.node, c.node_env) {
            (Some(n), None) => n,
            (None, Some(var)) => match self.env.var(&var) {
                Some(v) if !v.is_empty() => v,
                _ => {
                    return Err(self.err(
                        "cluster.node_env",
                        format!("environment variable {var} is not set"),
                    ))
                }
            },
            _ => {
                return Err(self.err(
                    "cluster",
                    "give the node's name as exactly one of `node:` or `node_env:`",
                ))
            }
        };
        if node.is_empty()
            || node.len() > 63
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(self.err(
                "cluster.node",
                format!("{node:?}: use 1-63 letters, digits, '-', '_' or '.'"),
            ));
        }
        let heartbeat = c.heartbeat.map(|d| d.0).unwrap_or(defaults::HEARTBEAT);
        let lapse = c.lapse.map(|d| d.0).unwrap_or(defaults::LAPSE);
        if heartbeat.is_zero() {
            return Err(self.err("cluster.heartbeat", "must be more than 0"));
        }
        if lapse < heartbeat * 2 {
            return Err(self.err(
                "cluster.lapse",
                "must be at least twice the heartbeat (one late beat must not end a node)",
            ));
        }
        Ok(ClusterConfig {
            node,
            state_url: self.secret("cluster.state_url_env", &c.state_url_env)?,
            heartbeat,
            lapse,
        })
    }
}

impl Validator<'_> {
    fn target(&self, name: String, t: RawTarget) -> Result<Target, ConfigError> {
        let field = format!("targets.{name}");
        if name.is_empty() {
            return Err(self.err("targets", "target names must not be empty"));
        }
        let tls = t.tls.unwrap_or(defaults::UPSTREAM_TLS);
        if tls == UpstreamTlsMode::VerifyFull && t.ca.is_none() {
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
        Ok(Target {
            database: t.database.unwrap_or_else(|| name.clone()),
            name,
            host: t.host,
            port: t.port.unwrap_or(defaults::TARGET_PORT),
            user: t.user,
            password,
            tls,
            ca: t.ca.as_deref().map(|p| self.path(p)),
            roles,
        })
    }

    fn users(&self, raw_users: Vec<RawUser>) -> Result<Vec<User>, ConfigError> {
        let mut users: Vec<User> = Vec::new();
        for (i, u) in raw_users.into_iter().enumerate() {
            let field = format!("identities.users[{i}]");
            if u.name.is_empty() {
                return Err(self.err(field, "name must not be empty"));
            }
            if users.iter().any(|x| x.name == u.name) {
                return Err(self.err(field, format!("duplicate user {:?}", u.name)));
            }
            let verifier = match (&u.password_env, &u.scram) {
                (Some(var), None) => Some(Verifier::from_password(
                    self.secret(&format!("{field}.password_env"), var)?.expose(),
                )),
                (None, Some(text)) => Some(
                    Verifier::parse(text)
                        .map_err(|e| self.err(format!("{field}.scram"), e.to_string()))?,
                ),
                // A user of the HTTP-based doors only: no password opens the wire.
                (None, None) if u.token_env.is_some() => None,
                _ => {
                    return Err(self.err(
                        field,
                        "give exactly one of password_env or scram (or only token_env)",
                    ));
                }
            };
            let token = match &u.token_env {
                Some(var) => {
                    let secret = self.secret(&format!("{field}.token_env"), var)?;
                    // Short secrets can be guessed through the rate limit's window.
                    if secret.expose().len() < 16 {
                        return Err(self.err(
                            format!("{field}.token_env"),
                            format!("${var} must hold at least 16 characters"),
                        ));
                    }
                    Some(secret)
                }
                None => None,
            };
            let ssh_keys = self.ssh_keys(&field, &u.ssh_keys)?;
            users.push(User {
                name: u.name,
                verifier,
                token,
                groups: u.groups,
                ssh_keys,
            });
        }
        Ok(users)
    }

    /// `limits:` with a default for every key left out.
    fn limits(raw: Option<RawLimits>) -> Limits {
        let d = Limits::default();
        match raw {
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
                catalog_refresh: l.catalog_refresh.map(|x| x.0).unwrap_or(d.catalog_refresh),
            },
        }
    }

    fn check_limits(&self, limits: &Limits) -> Result<(), ConfigError> {
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
        // Each read queries the target's catalog: not a busy loop.
        let refresh = limits.catalog_refresh;
        if !refresh.is_zero() && refresh < std::time::Duration::from_secs(1) {
            return Err(self.err(
                "limits.catalog_refresh",
                "must be 0s (never) or at least 1s",
            ));
        }
        Ok(())
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
        let leeway = o.leeway.map(|d| d.0).unwrap_or(defaults::OIDC_LEEWAY);
        if leeway > Duration::from_secs(300) {
            return Err(self.err(format!("{f}.leeway"), "at most 5m"));
        }
        let jwks_refresh = o
            .jwks_refresh
            .map(|d| d.0)
            .unwrap_or(defaults::OIDC_JWKS_REFRESH);
        if jwks_refresh < Duration::from_secs(30) {
            return Err(self.err(format!("{f}.jwks_refresh"), "at least 30s"));
        }
        Ok(OidcConfig {
            issuer: o.issuer,
            audience: o.audience,
            jwks_file: o.jwks_file.as_deref().map(|p| self.path(p)),
            username_claim: o
                .username_claim
                .unwrap_or_else(|| defaults::OIDC_USERNAME_CLAIM.into()),
            groups_claim: o
                .groups_claim
                .unwrap_or_else(|| defaults::OIDC_GROUPS_CLAIM.into()),
            session_may_outlive_token: o.session_may_outlive_token,
            leeway,
            jwks_refresh,
            clock: crate::auth::clock::Clock::system(),
        })
    }

    pub(super) fn audit(&self, a: RawAudit) -> Result<AuditConfig, ConfigError> {
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
        if let Some(n) = a.parallel_flushes {
            if !(1..=4).contains(&n) {
                return Err(self.err("audit.parallel_flushes", "must be between 1 and 4"));
            }
            c.parallel_flushes = n as usize;
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
