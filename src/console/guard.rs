//! Guessing the admin token, through the console's sign-in form or as the JSON API's
//! bearer token, is rate-limited like every other credential (console review M3):
//! failures are charged to the client's address (`limits.auth_failures` per
//! `limits.auth_failure_window`, across replicas with `cluster:`) and recorded as
//! `auth_failure` audit records whose reason starts `console:` or `admin api:`.
//!
//! The admin listener has a bucket of its own (review L6): a wrong admin token does
//! not count against the address's logins on the wire and the other doors, nor their
//! failures against it, so a browser page that posts wrong tokens to a loopback
//! console cannot lock the machine's database users out. An admin token can be short
//! and so guessed: a locked-out address is refused even the right one.

use std::net::SocketAddr;

use crate::session::Shared;

/// The limiter's bucket for admin-token failures: a name no tenant can have (tenant
/// names are identifiers), so it shares nothing with any tenant's logins.
const BUCKET: &str = "#admin";

/// Where a failure came from, for the audit record's reason.
#[derive(Clone, Copy)]
pub enum Door {
    Console,
    Api,
}

impl Door {
    fn prefix(self) -> &'static str {
        match self {
            Door::Console => "console",
            Door::Api => "admin api",
        }
    }
}

/// Whether the address has used up its failures for now.
pub async fn blocked(shared: &Shared, peer: SocketAddr) -> bool {
    shared
        .auth_limiter
        .is_blocked_anywhere(BUCKET, peer.ip())
        .await
}

/// A refused sign-in or API call: counted (unless it was refused for the limit
/// itself), logged, and recorded for the auditor. `why` never contains the token.
pub fn failed(shared: &Shared, door: Door, peer: SocketAddr, name: &str, why: &str, counted: bool) {
    shared
        .metrics
        .auth_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if counted {
        shared.auth_limiter.record(BUCKET, peer.ip());
    }
    let prefix = door.prefix();
    let who: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    tracing::warn!(%peer, %who, "{prefix}: admin token refused: {why}");
    let Some(tenant) = shared.tenants.charged(None) else {
        return;
    };
    if !tenant.audit.is_enabled() {
        return;
    }
    let event = crate::audit::Event::AuthFailure {
        user: name.chars().filter(|c| !c.is_control()).take(200).collect(),
        client: peer.to_string(),
        reason: format!("{prefix}: {why}"),
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
    shared.auth_limiter.clear(BUCKET, peer.ip());
}
