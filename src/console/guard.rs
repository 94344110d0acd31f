//! Guessing the admin token through the console's sign-in form is rate-limited like
//! every other credential (review note on the console): failures are charged to the
//! client's address in the gateway's own limiter (`limits.auth_failures` per
//! `limits.auth_failure_window`, shared with the wire and the other doors, and across
//! replicas with `cluster:`) and recorded as `auth_failure` audit records whose
//! reason starts `console:`.

use std::net::SocketAddr;

use crate::session::Shared;

/// The limiter's bucket for the console: a wrong admin token names no tenant, so it
/// is charged as the wire charges a failure it cannot place (the only tenant, or
/// none with `tenants:`).
fn bucket(shared: &Shared) -> &str {
    shared
        .tenants
        .charged(None)
        .map(|t| t.name.as_str())
        .unwrap_or("")
}

/// Whether the address has used up its failures for now.
pub async fn blocked(shared: &Shared, peer: SocketAddr) -> bool {
    shared
        .auth_limiter
        .is_blocked_anywhere(bucket(shared), peer.ip())
        .await
}

/// A refused sign-in: counted (unless it was refused for the limit itself), logged,
/// and recorded for the auditor. `why` never contains the token.
pub fn failed(shared: &Shared, peer: SocketAddr, name: &str, why: &str, counted: bool) {
    shared
        .metrics
        .auth_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if counted {
        shared.auth_limiter.record(bucket(shared), peer.ip());
    }
    tracing::warn!(%peer, who = %name, "console sign-in refused: {why}");
    let Some(tenant) = shared.tenants.charged(None) else {
        return;
    };
    if !tenant.audit.is_enabled() {
        return;
    }
    let event = crate::audit::Event::AuthFailure {
        user: name.chars().take(200).collect(),
        client: peer.to_string(),
        reason: format!("console: {why}"),
    };
    let audit = tenant.audit.clone();
    tokio::spawn(async move {
        if let Err(e) = audit.record(None, event).await {
            tracing::error!("audit: console auth_failure not recorded: {e}");
        }
    });
}

/// A right token: the address's count starts over, as on the wire.
pub fn succeeded(shared: &Shared, peer: SocketAddr) {
    shared.auth_limiter.clear(bucket(shared), peer.ip());
}
