//! Tenants (SPEC section 10): what one team owns on a shared gateway, and how a login
//! finds its team.
//!
//! Everything a session consults about its caller's world lives in its [`Tenant`]:
//! the targets it may name, the rules and masks it is judged by, where approvals wait
//! and where the trail goes. A session gets exactly one tenant, at authentication,
//! and never looks at another's: a target another tenant declares is, for this
//! session, a target that does not exist. Without `tenants:` the whole configuration
//! is one unnamed tenant, so there is one code path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;

use crate::config::{CertificateUser, Secret, Target, TenantLimits};

/// One tenant's share of the gateway.
pub struct Tenant {
    /// "" without `tenants:`.
    pub name: String,
    pub targets: HashMap<String, Arc<Target>>,
    pub upstream_tls: HashMap<String, Arc<rustls::ClientConfig>>,
    /// Per target: user operators, casts, domains and function bodies.
    pub catalogs: HashMap<String, Arc<crate::catalog::CatalogCache>>,
    pub certificates: Vec<CertificateUser>,
    /// Bearer-token verification; None without this tenant's `identities.oidc`.
    pub oidc: Option<crate::auth::oidc::OidcVerifier>,
    pub rules: Arc<crate::policy::reload::RulesHandle>,
    /// This tenant's own trail (disabled without its `audit:`).
    pub audit: crate::audit::Audit,
    /// Compiled masks, shared by this tenant's sessions.
    pub masks: Arc<super::judge::MaskCache>,
    /// None without `approvals:` (then an `approve` rule refuses: fail closed).
    pub approvals: Option<Arc<crate::approval::Approvals>>,
    /// Sees and decides this tenant's approvals only.
    pub admin_token: Option<Secret>,
    pub limits: TenantLimits,
    /// Sessions of this tenant now (authenticated ones).
    sessions: AtomicUsize,
}

/// A session's seat in its tenant's connection budget; dropping it frees the seat.
pub struct Seat(Arc<Tenant>);

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tenant {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        targets: HashMap<String, Arc<Target>>,
        upstream_tls: HashMap<String, Arc<rustls::ClientConfig>>,
        catalogs: HashMap<String, Arc<crate::catalog::CatalogCache>>,
        certificates: Vec<CertificateUser>,
        oidc: Option<crate::auth::oidc::OidcVerifier>,
        rules: Arc<crate::policy::reload::RulesHandle>,
        audit: crate::audit::Audit,
        approvals: Option<Arc<crate::approval::Approvals>>,
        admin_token: Option<Secret>,
        limits: TenantLimits,
    ) -> Tenant {
        Tenant {
            name,
            targets,
            upstream_tls,
            catalogs,
            certificates,
            oidc,
            rules,
            audit,
            masks: Default::default(),
            approvals,
            admin_token,
            limits,
            sessions: AtomicUsize::new(0),
        }
    }

    /// Take a seat for a session, unless the tenant's `limits.max_connections` are
    /// all taken.
    pub fn seat(self: &Arc<Self>) -> Option<Seat> {
        let max = self.limits.max_connections.unwrap_or(usize::MAX);
        let taken = self.sessions.fetch_add(1, Ordering::AcqRel);
        let seat = Seat(Arc::clone(self));
        (taken < max).then_some(seat)
    }
}

/// Every tenant, and who belongs to which.
pub struct Tenants {
    pub list: Vec<Arc<Tenant>>,
    /// Local user and certificate names (unique across tenants: config validation).
    by_identity: HashMap<String, usize>,
}

impl Tenants {
    /// `identities` lists, per tenant (in `list`'s order), its user and certificate
    /// names.
    pub fn new(list: Vec<Arc<Tenant>>, identities: Vec<Vec<String>>) -> Tenants {
        let mut by_identity = HashMap::new();
        for (i, names) in identities.into_iter().enumerate() {
            for n in names {
                by_identity.insert(n, i);
            }
        }
        Tenants { list, by_identity }
    }

    /// The tenant of a local user or certificate name.
    pub fn of_identity(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.by_identity.get(name).map(|&i| &self.list[i])
    }

    /// Whether any tenant takes tokens.
    pub fn any_oidc(&self) -> bool {
        self.list.iter().any(|t| t.oidc.is_some())
    }

    /// The tenant whose issuer (and audience) a token names. The claims are read
    /// without checking the signature: only to pick the verifier, which then checks
    /// everything. With one tenant taking tokens, that one (its verifier reports a
    /// wrong issuer as such).
    pub fn of_token(&self, token: &str) -> Option<&Arc<Tenant>> {
        let mut takers = self.list.iter().filter(|t| t.oidc.is_some());
        let first = takers.next()?;
        if takers.next().is_none() {
            return Some(first);
        }
        let (iss, aud) = unverified_issuer(token)?;
        self.list.iter().find(|t| {
            t.oidc
                .as_ref()
                .is_some_and(|o| o.issuer() == iss && aud.iter().any(|a| a == o.audience()))
        })
    }

    /// The one tenant when there are no `tenants:`.
    pub fn only(&self) -> Option<&Arc<Tenant>> {
        (self.list.len() == 1).then(|| &self.list[0])
    }

    /// Whom a login's failures are charged to: the tenant it names, else the only
    /// tenant; None when it names none of several.
    pub fn charged<'t>(&'t self, named: Option<&'t Tenant>) -> Option<&'t Tenant> {
        named.or_else(|| self.only().map(|t| &**t))
    }
}

/// `iss` and `aud` of a JWT, unverified (`aud` may be a string or an array).
fn unverified_issuer(token: &str) -> Option<(String, Vec<String>)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let iss = v.get("iss")?.as_str()?.to_owned();
    let aud = match v.get("aud")? {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => return None,
    };
    Some((iss, aud))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_issuer_and_audience() {
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let t = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"RS256"}"#),
            enc(r#"{"iss":"https://idp.acme","aud":["pgmoat","x"]}"#)
        );
        assert_eq!(
            unverified_issuer(&t),
            Some(("https://idp.acme".into(), vec!["pgmoat".into(), "x".into()]))
        );
        let t = format!("a.{}.b", enc(r#"{"iss":"i","aud":"one"}"#));
        assert_eq!(
            unverified_issuer(&t),
            Some(("i".into(), vec!["one".into()]))
        );
        assert_eq!(unverified_issuer("not a token"), None);
        assert_eq!(unverified_issuer("a.!!!.b"), None);
        assert_eq!(
            unverified_issuer(&format!("a.{}.b", enc(r#"{"aud":"x"}"#))),
            None
        );
    }
}
