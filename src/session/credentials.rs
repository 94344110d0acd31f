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

use super::authn::{auth_failed, locked_out};
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
///
/// A right token gets through even from an address locked out by failures: a bearer
/// token is a signed JWT or a secret of at least 16 characters, which no number of
/// windows lets anyone guess, so the lockout (there for passwords) would only let one
/// bad client lock out everyone behind the same address (a NAT, a load balancer, the
/// MCP door's loopback). A wrong token from a locked-out address is refused as
/// rate-limited and not counted again.
pub async fn by_bearer(
    shared: &Shared,
    peer: SocketAddr,
    token: &str,
) -> Result<(Identity, Arc<Tenant>), AuthFailure> {
    match bearer(shared, token.trim()).await {
        Ok((id, tenant)) => {
            shared.auth_limiter.clear(&tenant.name, peer.ip());
            Ok((id, tenant))
        }
        Err((reason, tenant, who)) => {
            let reason = if locked_out(shared, tenant.as_deref(), peer).await {
                AuthFailure::RateLimited
            } else {
                reason
            };
            auth_failed(shared, tenant.as_deref(), peer, &who, &reason);
            Err(reason)
        }
    }
}

/// Why a bearer token was refused: the reason, its tenant when known, and the name
/// it claimed (empty when none).
type BearerRefusal = (AuthFailure, Option<Arc<Tenant>>, String);

async fn bearer(shared: &Shared, token: &str) -> Result<(Identity, Arc<Tenant>), BearerRefusal> {
    if token.is_empty() {
        return Err((AuthFailure::NoToken, None, String::new()));
    }
    if let Some(id) = shared.users.by_token(token) {
        return match shared.tenants.of_identity(&id.name).cloned() {
            Some(tenant) => Ok((id, tenant)),
            None => Err((AuthFailure::UnknownUser, None, id.name)),
        };
    }
    if !looks_like_jwt(token) {
        return Err((AuthFailure::UnknownToken, None, String::new()));
    }
    let Some(tenant) = shared.tenants.of_token(token).cloned() else {
        return Err((AuthFailure::Issuer, None, String::new()));
    };
    let Some(oidc) = tenant.oidc.as_ref() else {
        return Err((AuthFailure::UnknownUser, Some(tenant), String::new()));
    };
    match oidc.verify_bearer(token).await {
        Ok(id) => Ok((id, tenant)),
        Err(reason) => Err((reason, Some(tenant), String::new())),
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
    let local = shared.users.is_local(user) || !shared.tenants.any_oidc();
    // Passwords can be guessed: a locked-out address is refused before one is
    // checked. A JWT sent as the password cannot, so it is checked first (see
    // [`by_bearer`]).
    if local && locked_out(shared, known.as_deref(), peer).await {
        return Err(fail(AuthFailure::RateLimited, known.as_deref()));
    }
    if password.is_empty() {
        return Err(fail(AuthFailure::NoPassword, known.as_deref()));
    }
    if local {
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
    let verified = match shared.tenants.of_token(password).cloned() {
        None => Err((AuthFailure::Issuer, None)),
        Some(tenant) => match tenant.oidc.as_ref() {
            None => Err((AuthFailure::UnknownUser, Some(tenant))),
            Some(oidc) => match oidc.verify(password, user).await {
                Ok(id) => Ok((id, tenant)),
                Err(reason) => Err((reason, Some(tenant))),
            },
        },
    };
    match verified {
        Ok((id, tenant)) => {
            shared.auth_limiter.clear(&tenant.name, peer.ip());
            Ok((id, tenant))
        }
        Err((reason, tenant)) => {
            let reason = if locked_out(shared, tenant.as_deref(), peer).await {
                AuthFailure::RateLimited
            } else {
                reason
            };
            Err(fail(reason, tenant.as_deref()))
        }
    }
}
