//! `pgmoat.yaml`, in two forms: `raw.rs`, the serde shapes of the file, checked as they
//! are read (unknown keys and bad values fail with their line and column); and
//! `validated.rs`, the typed [`Config`] the rest of pgmoat sees. `validate.rs` turns one
//! into the other, applying the defaults `defaults.rs` defines: the one place a key the
//! file left out gets its value.
//!
//! Secrets are read from the environment variables the file names, never from the file.

mod admin_url;
mod defaults;
mod http_gateway;
mod mcp;
mod raw;
mod ssh;
mod tenants;
mod validate;
mod validated;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use thiserror::Error;

pub use defaults::workers as default_workers;
pub use http_gateway::{parse_bytes, HttpConfig, HttpTarget};
pub use mcp::McpConfig;
pub use raw::{parse_duration, HumanDuration, MAX_DURATION};
pub use ssh::{SshConfig, SshTarget, SshUpstreamAuth};
pub use validate::{MAX_MESSAGE_BYTES, MAX_RECORD_ROWS, MAX_WORKERS};
pub use validated::{
    AdminConfig, ApprovalsConfig, AuditConfig, AuditDurability, AuditSink, CertificateUser,
    ClusterConfig, Config, Limits, OidcConfig, SlackApprovals, Target, TenantConfig, TenantLimits,
    TlsConfig, UpstreamTlsMode, User,
};

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
    /// The tenants to serve: `tenants:`, or the top level as one unnamed tenant (whose
    /// admin token is the global one).
    /// Where the SSH and HTTP doors keep a tenant's target: `tenant/name` (tenant
    /// names have no `/`), or the bare name without `tenants:` (top-level targets
    /// exist only then). A caller's lookup always goes through its own tenant's name,
    /// so another tenant's target does not exist for it.
    pub fn door_key(tenant: &str, name: &str) -> String {
        if tenant.is_empty() {
            name.to_owned()
        } else {
            format!("{tenant}/{name}")
        }
    }

    pub fn tenant_configs(&self) -> Vec<TenantConfig> {
        if !self.tenants.is_empty() {
            return self.tenants.clone();
        }
        vec![TenantConfig {
            name: String::new(),
            targets: self.targets.clone(),
            users: self.users.clone(),
            certificates: self.certificates.clone(),
            oidc: self.oidc.clone(),
            rules: self.rules.clone(),
            approvals: self.approvals.clone(),
            audit: self.audit.clone(),
            admin_token: None,
            limits: TenantLimits::default(),
            // The doors' targets are in `ssh`/`http` (see `door_key`).
            ssh_targets: Default::default(),
            http_targets: Default::default(),
        }]
    }

    /// Warnings about what the config allows without being wrong: tenants whose targets
    /// log in to the same server, database and user. Their sessions are one role to
    /// the server, which shows each other's SQL text (`pg_stat_activity`) and lets
    /// each signal the other's backends (`pg_terminate_backend`) unless a rule blocks
    /// it: the server does not isolate them (review s37 W4).
    pub fn warnings(&self) -> Vec<String> {
        let mut seen: BTreeMap<(String, u16, String, String), String> = BTreeMap::new();
        let mut out = Vec::new();
        for t in &self.tenants {
            for target in t.targets.values() {
                let key = (
                    target.host.to_ascii_lowercase(),
                    target.port,
                    target.database.clone(),
                    target.user.clone(),
                );
                match seen.get(&key) {
                    Some(other) if *other != t.name => out.push(format!(
                        "tenants {other:?} and {:?} both log in to {}:{} database {:?} as {:?}: \
                         the server sees one role and does not keep their sessions apart \
                         (pg_stat_activity, pg_terminate_backend); give each tenant its own login",
                        t.name, target.host, target.port, target.database, target.user
                    )),
                    Some(_) => {}
                    None => {
                        seen.insert(key, t.name.clone());
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

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
        let raw: raw::RawConfig =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
                path: name.to_owned(),
                message: one_line_yaml_error(&e.to_string()),
            })?;
        validate::Validator { name, base, env }.config(raw)
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

#[cfg(test)]
mod tests;
