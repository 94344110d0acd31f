//! Building each tenant's runtime from its configuration: rules, audit store, upstream
//! TLS, catalogs, approvals and token verification, one tenant at a time. A tenant
//! whose rules do not validate stops the start (the gateway never serves a tenant
//! unjudged); at runtime a broken reload leaves that tenant's old rules in force and
//! touches no other tenant.

use std::collections::HashMap;
use std::sync::Arc;

use super::{tls, GatewayError};
use crate::audit::Audit;
use crate::catalog::Peers;
use crate::config::{Config, TenantConfig};
use crate::metrics::Metrics;
use crate::policy::reload::RulesHandle;
use crate::session::tenant::Tenant;

/// Every tenant's runtime, in config order.
/// Every catalog cache joins `peers`, so DDL through one makes the others of its
/// database stale.
pub(super) fn build(
    config: &Config,
    metrics: &Arc<Metrics>,
    peers: &Arc<Peers>,
) -> Result<Vec<(Arc<Tenant>, TenantConfig)>, GatewayError> {
    config
        .tenant_configs()
        .into_iter()
        .map(|tc| Ok((Arc::new(one(config, &tc, metrics, peers)?), tc)))
        .collect()
}

fn one(
    config: &Config,
    tc: &TenantConfig,
    metrics: &Arc<Metrics>,
    peers: &Arc<Peers>,
) -> Result<Tenant, GatewayError> {
    let named = |what: &str| {
        if tc.name.is_empty() {
            what.to_owned()
        } else {
            format!("tenant {}: {what}", tc.name)
        }
    };
    let rules = RulesHandle::load(tc.rules.as_deref())
        .map_err(|errors| GatewayError::Rules(errors.into_iter().map(|e| named(&e)).collect()))?;
    if !rules.is_configured() {
        tracing::warn!(
            tenant = %tc.name,
            "no `rules:` configured: statements are relayed without being judged"
        );
    }
    // The store first: its tail is checked (and a torn one repaired) before the port
    // accepts anyone, so a client that got in never finds a store still being repaired.
    let audit = match &tc.audit {
        Some(a) => Audit::open(a, Arc::clone(metrics))?,
        None => Audit::disabled(),
    };
    let mut upstream_tls = HashMap::new();
    for t in tc.targets.values() {
        if let Some(c) = tls::client_config(t)? {
            upstream_tls.insert(t.name.clone(), c);
        }
    }
    let catalogs = tc
        .targets
        .values()
        .map(|t| {
            let cache = Arc::new(crate::catalog::CatalogCache::new(
                Arc::new(t.clone()),
                upstream_tls.get(&t.name).cloned(),
                config.limits.connect_timeout,
                Some(Arc::clone(peers)),
            ));
            peers.add(&cache);
            (t.name.clone(), cache)
        })
        .collect();
    let approvals = tc.approvals.as_ref().map(|a| {
        // Approvers come from this tenant only.
        let directory = tc
            .users
            .iter()
            .map(|u| (u.name.clone(), u.groups.clone()))
            .collect();
        let approvals = crate::approval::Approvals::new(a.timeout, directory);
        approvals.set_max_held(tc.limits.max_held);
        let slack_webhook = a.slack.as_ref().map(|s| s.webhook.clone());
        if slack_webhook.is_some() || a.webhook.is_some() {
            crate::approval::notify::Notifier::new(slack_webhook, a.webhook.clone())
                .spawn(&approvals);
        }
        approvals
    });
    let oidc = match &tc.oidc {
        Some(o) => Some(crate::auth::oidc::OidcVerifier::new(o)?),
        None => None,
    };
    Ok(Tenant::new(
        tc.name.clone(),
        tc.targets
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect(),
        upstream_tls,
        catalogs,
        tc.certificates.clone(),
        oidc,
        rules,
        audit,
        approvals,
        tc.admin_token.clone(),
        tc.limits.clone(),
    ))
}
