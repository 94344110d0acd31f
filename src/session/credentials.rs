//! INTERIM (door-http): a stand-in for the lead's `session::credentials` until it lands
//! on main; the merge takes main's file. Same signatures: the HTTP gateway calls these.

use std::net::SocketAddr;
use std::sync::Arc;

use super::tenant::Tenant;
use super::Shared;
use crate::auth::failure::AuthFailure;
use crate::auth::Identity;

/// A bearer secret: not supported by this stand-in (no `token_env` yet).
pub async fn by_bearer(
    shared: &Shared,
    peer: SocketAddr,
    _token: &str,
) -> Result<(Identity, Arc<Tenant>), AuthFailure> {
    let reason = AuthFailure::UnknownUser;
    super::authn::auth_failed(shared, None, peer, "(bearer)", &reason);
    Err(reason)
}

/// A local user's password (HTTP Basic), rate-limited and audited like the wire.
pub async fn by_password(
    shared: &Shared,
    peer: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(Identity, Arc<Tenant>), AuthFailure> {
    let known = shared.tenants.of_identity(user).cloned();
    let bucket = shared
        .tenants
        .charged(known.as_deref())
        .map(|t| t.name.clone())
        .unwrap_or_default();
    let fail = |reason: AuthFailure| {
        super::authn::auth_failed(shared, known.as_deref(), peer, user, &reason);
        Err(reason)
    };
    if shared
        .auth_limiter
        .is_blocked_anywhere(&bucket, peer.ip())
        .await
    {
        return fail(AuthFailure::RateLimited);
    }
    let (verifier, identity) = shared.users.lookup(user);
    let ok = verifier.check_password(password);
    match (ok, identity, known.clone()) {
        (true, Some(id), Some(t)) => {
            shared.auth_limiter.clear(&t.name, peer.ip());
            Ok((id, t))
        }
        (true, _, _) => fail(AuthFailure::UnknownUser),
        (false, _, _) => fail(AuthFailure::Scram),
    }
}
