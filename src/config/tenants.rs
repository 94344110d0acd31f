//! `tenants:` (SPEC section 10): each tenant's targets, identities, rules, approvals,
//! audit store and admin token, checked on their own and against each other.
//!
//! With `tenants:`, the top level holds no targets, identities, rules, approvals or
//! audit store: everything a tenant owns is declared inside it, so nothing is shared
//! by accident. Across tenants, an identity name (user or certificate) and an OIDC
//! issuer/audience pair belong to one tenant only, and no two tenants share an audit
//! store: a login names exactly one tenant, and each chain is one tenant's.

use std::collections::{BTreeMap, HashMap};

use super::raw::{RawIdentities, RawTarget, RawTenant, RawTenantLimits};
use super::validate::Validator;
use super::validated::{
    CertificateUser, OidcConfig, Target, TenantConfig, TenantLimits, TlsConfig, User,
};
use super::ConfigError;

/// Targets and identities of one scope: the top level, or a tenant.
#[derive(Debug, Default)]
pub(super) struct Scope {
    pub targets: BTreeMap<String, Target>,
    pub users: Vec<User>,
    pub certificates: Vec<CertificateUser>,
    pub oidc: Option<OidcConfig>,
}

/// Give an error found inside a tenant the tenant's path (`tenants.acme.targets.db`).
fn within(tenant: &str, e: ConfigError) -> ConfigError {
    match e {
        ConfigError::Invalid {
            path,
            field,
            message,
        } => ConfigError::Invalid {
            path,
            field: format!("tenants.{tenant}.{field}"),
            message,
        },
        other => other,
    }
}

impl Validator<'_> {
    /// With `tenants:`, what the top level must not hold.
    pub(super) fn no_top_level_scope(
        &self,
        targets: &BTreeMap<String, RawTarget>,
        identities: &RawIdentities,
        others: [(&str, bool); 3],
    ) -> Result<(), ConfigError> {
        let scope = [
            ("targets", !targets.is_empty()),
            (
                "identities",
                !identities.users.is_empty()
                    || !identities.certificates.is_empty()
                    || identities.oidc.is_some(),
            ),
        ];
        for (key, present) in scope.into_iter().chain(others) {
            if present {
                return Err(self.err(
                    key,
                    format!("with `tenants:`, `{key}:` belongs inside each tenant, not at the top level"),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn tenants(
        &self,
        raw: BTreeMap<String, RawTenant>,
        tls: Option<&TlsConfig>,
    ) -> Result<Vec<TenantConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err("tenants", "declare at least one tenant"));
        }
        let mut out: Vec<TenantConfig> = Vec::with_capacity(raw.len());
        // Who already claimed a name, an issuer/audience pair, an audit folder.
        let mut identities: HashMap<String, String> = HashMap::new();
        let mut issuers: HashMap<(String, String), String> = HashMap::new();
        let mut stores: HashMap<std::path::PathBuf, String> = HashMap::new();
        for (name, t) in raw {
            if name.is_empty()
                || name.len() > 63
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(self.err(
                    "tenants",
                    format!("tenant name {name:?}: use 1-63 lowercase letters, digits, '-' or '_'"),
                ));
            }
            let tenant = self.tenant(&name, t, tls).map_err(|e| within(&name, e))?;
            let names = tenant
                .users
                .iter()
                .map(|u| u.name.as_str())
                .chain(tenant.certificates.iter().map(|c| c.name.as_str()));
            for id in names {
                if let Some(other) = identities.insert(id.to_owned(), name.clone()) {
                    if other != name {
                        return Err(self.err(
                            format!("tenants.{name}.identities"),
                            format!("identity {id:?} is also declared by tenant {other:?}: an identity belongs to one tenant"),
                        ));
                    }
                }
            }
            if let Some(o) = &tenant.oidc {
                let key = (o.issuer.clone(), o.audience.clone());
                if let Some(other) = issuers.insert(key, name.clone()) {
                    return Err(self.err(
                        format!("tenants.{name}.identities.oidc"),
                        format!("issuer {:?} with audience {:?} is also tenant {other:?}'s: tokens must name one tenant", o.issuer, o.audience),
                    ));
                }
            }
            if let Some(a) = &tenant.audit {
                if let Some(other) = stores.insert(a.dir.clone(), name.clone()) {
                    return Err(self.err(
                        format!("tenants.{name}.audit.dir"),
                        format!(
                            "{} is also tenant {other:?}'s store: each tenant has its own chain",
                            a.dir.display()
                        ),
                    ));
                }
            }
            out.push(tenant);
        }
        Ok(out)
    }

    fn tenant(
        &self,
        name: &str,
        t: RawTenant,
        tls: Option<&TlsConfig>,
    ) -> Result<TenantConfig, ConfigError> {
        let scope = self.scope(t.targets, t.identities, tls)?;
        let admin_token = match &t.admin_token_env {
            Some(var) => Some(self.secret("admin_token_env", var)?),
            None => None,
        };
        Ok(TenantConfig {
            name: name.to_owned(),
            targets: scope.targets,
            users: scope.users,
            certificates: scope.certificates,
            oidc: scope.oidc,
            rules: t.rules.as_deref().map(|p| self.path(p)),
            approvals: match t.approvals {
                Some(a) => Some(self.approvals(a)?),
                None => None,
            },
            audit: match t.audit {
                Some(a) => Some(self.audit(a)?),
                None => None,
            },
            admin_token,
            limits: self.tenant_limits(t.limits)?,
            ssh_targets: match t.ssh {
                Some(s) => self.ssh_targets(s.targets)?,
                None => BTreeMap::new(),
            },
            http_targets: match t.http {
                Some(h) => self.http_targets(h.targets)?,
                None => BTreeMap::new(),
            },
        })
    }

    /// SSH and HTTP targets sit where the Postgres targets do: at the top level, or
    /// (with `tenants:`) in the tenants, where another tenant's do not exist for a
    /// caller. A tenant's need the top level's listener.
    pub(super) fn door_targets(&self, mut c: super::Config) -> Result<super::Config, ConfigError> {
        let tenanted = !c.tenants.is_empty();
        for (door, top, any_in_tenants, listener) in [
            (
                "ssh",
                c.ssh.as_ref().map_or(0, |s| s.targets.len()),
                c.tenants.iter().any(|t| !t.ssh_targets.is_empty()),
                c.ssh.is_some(),
            ),
            (
                "http",
                c.http.as_ref().map_or(0, |h| h.targets.len()),
                c.tenants.iter().any(|t| !t.http_targets.is_empty()),
                c.http.is_some(),
            ),
        ] {
            if tenanted && top > 0 {
                return Err(self.err(
                    format!("{door}.targets"),
                    format!("with `tenants:`, {door} targets belong to a tenant (tenants.<name>.{door}.targets)"),
                ));
            }
            if any_in_tenants && !listener {
                return Err(self.err(
                    "tenants",
                    format!("a tenant has {door} targets but there is no top-level `{door}:` section (its listener)"),
                ));
            }
            if door == "http" && listener && top == 0 && !any_in_tenants {
                return Err(self.err("http.targets", "at least one target is required"));
            }
        }
        for t in &c.tenants {
            if let Some(ssh) = c.ssh.as_mut() {
                for (name, target) in &t.ssh_targets {
                    let mut target = target.clone();
                    target.tenant = t.name.clone();
                    ssh.targets
                        .insert(super::Config::door_key(&t.name, name), target);
                }
            }
            if let Some(http) = c.http.as_mut() {
                for (name, target) in &t.http_targets {
                    let mut target = target.clone();
                    target.tenant = t.name.clone();
                    http.targets
                        .insert(super::Config::door_key(&t.name, name), target);
                }
            }
        }
        Ok(c)
    }

    fn tenant_limits(&self, raw: Option<RawTenantLimits>) -> Result<TenantLimits, ConfigError> {
        let Some(l) = raw else {
            return Ok(TenantLimits::default());
        };
        for (key, v) in [
            ("max_connections", l.max_connections),
            ("max_held", l.max_held),
        ] {
            if v == Some(0) {
                return Err(self.err(format!("limits.{key}"), "must be at least 1"));
            }
        }
        Ok(TenantLimits {
            max_connections: l.max_connections,
            max_held: l.max_held,
        })
    }
}
