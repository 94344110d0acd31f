//! Client authentication: which exchange a startup user gets, running it, and the one
//! place every failure goes ([`auth_failed`]).
//!
//! - A verified client certificate whose subject CN equals the user name and is listed
//!   under `identities.certificates` authenticates the session with no password.
//! - Local users (`identities.users`) do SCRAM-SHA-256.
//! - Any other name sends an OIDC token as a cleartext password when `identities.oidc`
//!   is configured; otherwise it gets SCRAM against a stand-in verifier and fails
//!   exactly like a wrong password.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::error::SessionError;
use super::io::read_message;
use super::tenant::Tenant;
use super::{client_read_err, Shared};
use crate::auth::failure::AuthFailure;
use crate::auth::{cert, Identity};
use crate::net::stream::{ClientStream, MaybeTls};
use crate::protocol::backend;
use crate::protocol::frame::{Direction, SMALL_MESSAGE_LIMIT};
use crate::protocol::frontend::{PasswordMessage, SaslInitialResponse};
use crate::protocol::scram::{ScramServer, MECHANISM};
use crate::protocol::sqlstate;

/// Tokens with many groups outgrow Postgres' 10 kB small-message limit.
const MAX_PASSWORD_MESSAGE: usize = 64 * 1024;

/// The single choke point for failed client authentication: the reason is logged
/// (never the credential), counted, and charged to the client's address for rate
/// limiting. The audit trail hooks in here.
pub fn auth_failed(
    shared: &Shared,
    tenant: Option<&Tenant>,
    peer: SocketAddr,
    user: &str,
    reason: &AuthFailure,
) {
    shared
        .metrics
        .auth_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tenant = shared.tenants.charged(tenant);
    let name = tenant.map(|t| t.name.as_str()).unwrap_or("");
    if *reason != AuthFailure::RateLimited {
        shared.auth_limiter.record(name, peer.ip());
    }
    tracing::warn!(%peer, %user, tenant = name, reason = reason.kind(), "client authentication failed: {reason}");
    // A failure nobody can place in a tenant (an unknown name, a token of no
    // tenant's issuer) goes to the log only: no tenant's trail is the right one.
    let Some(tenant) = tenant else { return };
    if tenant.audit.is_enabled() {
        // For the auditor only: the client is told nothing more than before.
        let event = crate::audit::Event::AuthFailure {
            user: user.to_owned(),
            client: peer.to_string(),
            reason: format!("{}: {reason}", reason.kind()),
        };
        let audit = tenant.audit.clone();
        tokio::spawn(async move {
            if let Err(e) = audit.record(None, event).await {
                tracing::error!("audit: auth_failure not recorded: {e}");
            }
        });
    }
}

/// What the client hears: generic, the same whatever part of the credential was wrong.
fn client_error(user: &str, reason: &AuthFailure) -> SessionError {
    match reason {
        AuthFailure::RateLimited => SessionError::refused(
            sqlstate::INVALID_AUTHORIZATION,
            "pgmoat: too many failed authentication attempts from this address; try again later",
        ),
        AuthFailure::Insecure => SessionError::refused(
            sqlstate::INVALID_AUTHORIZATION,
            "pgmoat: tokens are only accepted over TLS; connect with sslmode=require",
        ),
        _ => SessionError::refused(
            sqlstate::INVALID_PASSWORD,
            format!("password authentication failed for user \"{user}\""),
        ),
    }
}

/// Authenticate the startup user. `out` holds anything queued to send first. On
/// success the exchange is complete; AuthenticationOk follows once the server side is
/// ready.
pub async fn authenticate(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    out: &mut BytesMut,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(Identity, Arc<Tenant>), SessionError> {
    // A local user's or certificate's tenant is known by the name; a token's by its
    // issuer, once it arrives.
    let known = shared.tenants.of_identity(user).cloned();
    let fail = |reason: AuthFailure, tenant: Option<&Tenant>| {
        auth_failed(shared, tenant, peer, user, &reason);
        client_error(user, &reason)
    };
    // A password can be guessed, so an address locked out by failures is refused
    // before one is asked for. A verified certificate or a signed token cannot be:
    // they are checked first, and a locked-out address is refused only when they
    // fail (one client guessing behind a shared address must not lock out everyone
    // whose credentials are right).
    let certificate = certificate_identity(client, user, known.as_deref());
    let password =
        certificate.is_none() && (shared.users.is_local(user) || !shared.tenants.any_oidc());
    if password && locked_out(shared, known.as_deref(), peer).await {
        return Err(fail(AuthFailure::RateLimited, known.as_deref()));
    }
    let result = if let Some(id) = certificate {
        Ok((id, known.clone()))
    } else if password {
        scram(client, buf, user, out, shared)
            .await
            .map(|id| (id, known.clone()))
            .map_err(|e| (e, known.clone()))
    } else {
        token(client, buf, user, out, peer, shared)
            .await
            .map(|(id, t)| (id, Some(t)))
    };
    match result {
        Ok((id, Some(tenant))) => {
            shared.auth_limiter.clear(&tenant.name, peer.ip());
            Ok((id, tenant))
        }
        // Proven, but in no tenant: cannot happen with a validated config (every
        // local user and certificate is some tenant's); refuse rather than guess.
        Ok((_, None)) => Err(fail(AuthFailure::UnknownUser, None)),
        Err((Exchange::Failed(reason), tenant)) => {
            let reason = if !password && locked_out(shared, tenant.as_deref(), peer).await {
                AuthFailure::RateLimited
            } else {
                reason
            };
            Err(fail(reason, tenant.as_deref()))
        }
        Err((Exchange::Session(e), _)) => Err(e),
    }
}

/// Whether failures from this address have used up its attempts against this
/// tenant's names (or, with `cluster:`, on all nodes together).
pub(super) async fn locked_out(shared: &Shared, tenant: Option<&Tenant>, peer: SocketAddr) -> bool {
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

/// How an exchange ended without an identity.
enum Exchange {
    /// The credential was wrong: an authentication failure.
    Failed(AuthFailure),
    /// The exchange itself broke (I/O, protocol): not a credential failure.
    Session(SessionError),
}

impl From<SessionError> for Exchange {
    fn from(e: SessionError) -> Self {
        Exchange::Session(e)
    }
}

/// The identity of a verified client certificate, when it speaks for `user`.
fn certificate_identity(
    client: &ClientStream,
    user: &str,
    tenant: Option<&Tenant>,
) -> Option<Identity> {
    let MaybeTls::Tls(tls) = client else {
        return None;
    };
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    let cn = cert::subject_cn(leaf)?;
    if cn != user {
        tracing::debug!(%user, "client certificate names someone else; using the password exchange");
        return None;
    }
    let mapped = tenant?.certificates.iter().find(|c| c.name == cn)?;
    Some(Identity::new(cn, mapped.groups.clone()))
}

async fn send(client: &mut ClientStream, out: &mut BytesMut) -> Result<(), SessionError> {
    client
        .write_all(out)
        .await
        .map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)?;
    out.clear();
    Ok(())
}

/// Send what `out` holds and read the client's next password-family ('p') message.
async fn round(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    max: usize,
) -> Result<BytesMut, SessionError> {
    send(client, out).await?;
    let msg = read_message(client, buf, Direction::Frontend, max)
        .await
        .map_err(client_read_err)?;
    if msg[0] != b'p' {
        return Err(SessionError::Protocol(format!(
            "expected a password or SASL response, got message type '{}'",
            msg[0] as char
        )));
    }
    Ok(msg)
}

/// The token exchange: AuthenticationCleartextPassword, then the JWT as the password.
/// Refused before the client sends anything when the channel is neither TLS nor
/// loopback, so the token never crosses a network in the clear.
async fn token(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    out: &mut BytesMut,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(Identity, Arc<Tenant>), (Exchange, Option<Arc<Tenant>>)> {
    if !token_transport_ok(client.is_tls(), peer) {
        return Err((Exchange::Failed(AuthFailure::Insecure), None));
    }
    backend::auth_cleartext(out);
    let msg = round(client, buf, out, MAX_PASSWORD_MESSAGE)
        .await
        .map_err(|e| (Exchange::Session(e), None))?;
    let password = PasswordMessage::parse(&msg[5..])
        .ok()
        .and_then(|p| std::str::from_utf8(p.password).ok())
        .ok_or_else(|| {
            (
                Exchange::Session(SessionError::Protocol("malformed password message".into())),
                None,
            )
        })?;
    if password.is_empty() {
        return Err((Exchange::Failed(AuthFailure::NoPassword), None));
    }
    // The tenant whose issuer the token names; its verifier checks everything.
    let Some(tenant) = shared.tenants.of_token(password).cloned() else {
        return Err((Exchange::Failed(AuthFailure::Issuer), None));
    };
    let Some(oidc) = tenant.oidc.as_ref() else {
        return Err((Exchange::Failed(AuthFailure::UnknownUser), None));
    };
    match oidc.verify(password, user).await {
        Ok(id) => Ok((id, tenant)),
        Err(f) => Err((Exchange::Failed(f), Some(tenant))),
    }
}

/// Tokens travel only over TLS or on the local machine.
pub fn token_transport_ok(tls: bool, peer: SocketAddr) -> bool {
    tls || peer.ip().is_loopback()
}

/// SCRAM-SHA-256 with the client. On success the SASL final message has been sent.
async fn scram(
    client: &mut ClientStream,
    buf: &mut BytesMut,
    user: &str,
    out: &mut BytesMut,
    shared: &Shared,
) -> Result<Identity, Exchange> {
    // The detail goes to the debug log; the client and the failure record get one word.
    let failed = |e: &dyn std::fmt::Display| {
        tracing::debug!("SCRAM exchange refused: {e}");
        Exchange::Failed(AuthFailure::Scram)
    };
    let malformed = || {
        Exchange::Session(SessionError::Protocol(
            "malformed SASLInitialResponse".into(),
        ))
    };
    let (verifier, identity) = shared.users.lookup(user);
    let mut scram = ScramServer::new(verifier);
    backend::auth_sasl(out, &[MECHANISM]);
    let first = round(client, buf, out, SMALL_MESSAGE_LIMIT).await?;
    let initial = SaslInitialResponse::parse(&first[5..]).map_err(|_| malformed())?;
    if initial.mechanism != MECHANISM.as_bytes() {
        return Err(Exchange::Session(SessionError::Protocol(
            "client selected an invalid SASL authentication mechanism".into(),
        )));
    }
    // SCRAM's client-first message is required (length -1 means none was sent).
    let body = initial.data.ok_or_else(malformed)?;
    let server_first = scram.client_first(body).map_err(|e| failed(&e))?;
    backend::auth_sasl_data(out, 11, server_first.as_bytes());
    let last = round(client, buf, out, SMALL_MESSAGE_LIMIT).await?;
    let server_final = scram.client_final(&last[5..]).map_err(|e| failed(&e))?;
    let identity = identity.ok_or_else(|| failed(&"unknown user"))?;
    backend::auth_sasl_data(out, 12, server_final.as_bytes());
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_need_tls_or_loopback() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let far: SocketAddr = "192.0.2.10:5000".parse().unwrap();
        assert!(token_transport_ok(false, lo));
        assert!(token_transport_ok(false, lo6));
        assert!(token_transport_ok(true, far));
        assert!(!token_transport_ok(false, far));
    }
}
