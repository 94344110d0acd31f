//! Credentials that arrive whole, for the front doors that are not the Postgres wire
//! (MCP, the HTTP gateway, SSH passwords): a bearer token or a user name and password.
//! Checked exactly as the wire checks them (the same OIDC verifier, the same local
//! users), rate-limited per address the same way, and every failure goes through
//! [`auth_failed`] like the wire's, so it is counted and audited once.
//!
//! Transport is the caller's business: a door that accepts a token over plain TCP
//! from another machine must refuse it first (see [`super::authn::token_transport_ok`]).

use std::net::SocketAddr;
use std::sync::Arc;

use super::authn::auth_failed;
use super::tenant::Tenant;
use super::Shared;
use crate::auth::failure::AuthFailure;
use crate::auth::Identity;

/// Whether `token` has the shape of a JWT (three base64url parts), rather than a
/// local user's secret.
fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty())
}

/// `Authorization: Bearer <token>`: an OIDC JWT (its username claim names the
/// identity) or a local user's `token_env` secret.
pub async fn by_bearer(
    shared: &Shared,
    peer: SocketAddr,
    token: &str,
) -> Result<(Identity, Arc<Tenant>), AuthFailure> {
    let token = token.trim();
    let fail = |reason: AuthFailure, tenant: Option<&Tenant>, who: &str| {
        auth_failed(shared, tenant, peer, who, &reason);
        reason
    };
    if blocked(shared, None, peer).await {
        return Err(fail(AuthFailure::RateLimited, None, ""));
    }
    if token.is_empty() {
        return Err(fail(AuthFailure::NoToken, None, ""));
    }
    if let Some(id) = shared.users.by_token(token) {
        return match shared.tenants.of_identity(&id.name).cloned() {
            Some(tenant) => {
                shared.auth_limiter.clear(&tenant.name, peer.ip());
                Ok((id, tenant))
            }
            None => Err(fail(AuthFailure::UnknownUser, None, &id.name)),
        };
    }
    if !looks_like_jwt(token) {
        return Err(fail(AuthFailure::UnknownToken, None, ""));
    }
    let Some(tenant) = shared.tenants.of_token(token).cloned() else {
        return Err(fail(AuthFailure::Issuer, None, ""));
    };
    let Some(oidc) = tenant.oidc.as_ref() else {
        return Err(fail(AuthFailure::UnknownUser, Some(&tenant), ""));
    };
    match oidc.verify_bearer(token).await {
        Ok(id) => {
            shared.auth_limiter.clear(&tenant.name, peer.ip());
            Ok((id, tenant))
        }
        Err(reason) => Err(fail(reason, Some(&tenant), "")),
    }
}

/// A user name and password (HTTP Basic, SSH password): a local user's password, or,
/// for any other name when OIDC is configured, a JWT sent as the password for that
/// name, as on the wire.
pub async fn by_password(
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(Identity, Arc<Tenant>), AuthFailure> {
    let known = shared.tenants.of_identity(user).cloned();
    let fail = |reason: AuthFailure, tenant: Option<&Tenant>| {
        auth_failed(shared, tenant, peer, user, &reason);
        reason
    };
    if blocked(shared, known.as_deref(), peer).await {
        return Err(fail(AuthFailure::RateLimited, known.as_deref()));
    }
    if password.is_empty() {
        return Err(fail(AuthFailure::NoPassword, known.as_deref()));
    }
    if shared.users.is_local(user) || !shared.tenants.any_oidc() {
        // A SCRAM derivation (a few ms): doors that see the same password on every
        // request (HTTP Basic) should keep what it proved for their connection.
        return match (shared.users.check_password(user, password), known) {
            (Some(id), Some(tenant)) => {
                shared.auth_limiter.clear(&tenant.name, peer.ip());
                Ok((id, tenant))
            }
            (_, known) => {
                let reason = if shared.users.is_local(user) {
                    AuthFailure::Password
                } else {
                    AuthFailure::UnknownUser
                };
                Err(fail(reason, known.as_deref()))
            }
        };
    }
    let Some(tenant) = shared.tenants.of_token(password).cloned() else {
        return Err(fail(AuthFailure::Issuer, None));
    };
    let Some(oidc) = tenant.oidc.as_ref() else {
        return Err(fail(AuthFailure::UnknownUser, Some(&tenant)));
    };
    match oidc.verify(password, user).await {
        Ok(id) => {
            shared.auth_limiter.clear(&tenant.name, peer.ip());
            Ok((id, tenant))
        }
        Err(reason) => Err(fail(reason, Some(&tenant))),
    }
}

async fn blocked(shared: &Shared, tenant: Option<&Tenant>, peer: SocketAddr) -> bool {
    let bucket = shared
        .tenants
        .charged(tenant)
        .map(|t| t.name.as_str())
        .unwrap_or("");
    shared
        .auth_limiter
        .is_blocked_anywhere(bucket, peer.ip())
        .await
}
