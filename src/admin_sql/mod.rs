//! The SQL admin console (SPEC 12), as PgBouncer's: `psql -d pgmoat` on the Postgres
//! listener. The session authenticates the caller exactly as for any target
//! (`session::establish`), then, for the virtual database [`DATABASE`], hands the
//! connection here instead of opening an upstream one. The `pgwire` crate speaks the
//! protocol from there on (result sets, command tags, errors); [`answer`] runs the
//! commands through the same functions as the admin API.

pub mod answer;
pub mod command;
mod extended;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, DefaultClient, NoopHandler, PgWireConnectionState};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{process_error, process_message, PgWireMessageServerCodec};
use tokio_util::codec::{Framed, FramedParts};

use tokio::io::AsyncWriteExt;

use crate::auth::Identity;
use crate::net::stream::ClientStream;
use crate::protocol::backend::{self, ErrorFields, Severity};
use crate::protocol::sqlstate;
use crate::session::error::SessionError;
use crate::session::tenant::{Seat, Tenant};
use crate::session::{registry, Shared};

/// The startup `database` that opens the console instead of a target.
pub const DATABASE: &str = "pgmoat";

/// Whether `identity` may open the console: a member of one of `admin.groups`.
/// Without `admin:` or with no groups, nobody may (fail closed).
pub fn admits(shared: &Shared, identity: &Identity) -> bool {
    shared.config.admin.as_ref().is_some_and(|a| {
        identity
            .groups
            .iter()
            .any(|g| a.groups.iter().any(|allowed| allowed == g))
    })
}

/// An admin let into the console, greeted and ready for commands.
pub struct Admitted {
    identity: Identity,
    tenant: Arc<Tenant>,
    /// What the client pipelined behind its authentication.
    leftover: BytesMut,
    /// The console counts against the tenant's connection budget like any session.
    _seat: Seat,
}

/// Let a proven identity into the console, or refuse it with 42501; on admission send
/// the greeting a server sends after authentication (`out` may already hold a
/// NegotiateProtocolVersion).
pub(crate) async fn open(
    client: &mut ClientStream,
    mut out: BytesMut,
    leftover: BytesMut,
    identity: Identity,
    tenant: Arc<Tenant>,
    seat: Seat,
    shared: &Shared,
) -> Result<Admitted, SessionError> {
    if !admits(shared, &identity) {
        tracing::warn!(identity = %identity.name, "refused the SQL admin console: not in admin.groups");
        return Err(SessionError::refused(
            sqlstate::INSUFFICIENT_PRIVILEGE,
            format!(
                "pgmoat: \"{}\" may not use the admin console (not a member of admin.groups)",
                identity.name
            ),
        ));
    }
    backend::auth_ok(&mut out);
    for (name, value) in [
        ("server_version", "16.0 (pgmoat admin console)"),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("application_name", "pgmoat"),
    ] {
        backend::parameter_status(&mut out, name, value);
    }
    backend::ready_for_query(&mut out, b'I');
    client
        .write_all(&out)
        .await
        .map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)?;
    tracing::info!(identity = %identity.name, tenant = %tenant.name, "SQL admin console opened");
    Ok(Admitted {
        identity,
        tenant,
        leftover,
        _seat: seat,
    })
}

/// Serve an admitted admin on `client` until it leaves, an operator terminates the
/// session, or the gateway shuts down.
pub async fn serve(
    client: ClientStream,
    admitted: Admitted,
    peer: SocketAddr,
    shared: Arc<Shared>,
) {
    let Admitted {
        identity,
        tenant,
        leftover,
        _seat,
    } = admitted;
    let registration = shared.sessions.register(registry::Entry {
        tenant: tenant.name.as_str().into(),
        identity: identity.name.as_str().into(),
        target: DATABASE.into(),
        client: peer,
        protocol: "postgres",
    });
    let mut terminated = registration.terminated();
    let mut shutdown = shared.shutdown.clone();
    let is_tls = client.is_tls();
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, is_tls));
    let mut parts = FramedParts::new(client, codec);
    parts.read_buf = leftover;
    let mut socket = Framed::from_parts(parts);
    socket.set_state(PgWireConnectionState::ReadyForQuery);

    let console = Arc::new(answer::Console {
        shared: Arc::clone(&shared),
        identity,
        tenant,
        registration,
    });
    let noop = Arc::new(NoopHandler);
    let ended_by_operator = loop {
        let msg = tokio::select! {
            m = socket.next() => m,
            _ = terminated.changed() => break true,
            _ = shutdown.changed() => break true,
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(%peer, "admin console: unreadable message: {e}");
                break false;
            }
            None => break false,
        };
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break false;
        }
        let extended = msg.is_extended_query();
        let result = process_message(
            msg,
            &mut socket,
            Arc::clone(&noop),
            Arc::clone(&console),
            Arc::clone(&console),
            Arc::clone(&noop),
            Arc::clone(&noop),
        )
        .await;
        let written = match result {
            Ok(()) => socket.flush().await,
            Err(e) => {
                let fatal = e.is_fatal();
                let w = process_error(&mut socket, e, extended).await;
                if fatal {
                    break false;
                }
                w
            }
        };
        if written.is_err() {
            break false;
        }
    };
    if ended_by_operator {
        // What Postgres says to pg_terminate_backend's victim and at shutdown.
        let mut out = BytesMut::new();
        backend::error_response(
            &mut out,
            &ErrorFields::new(
                Severity::Fatal,
                sqlstate::ADMIN_SHUTDOWN,
                "terminating connection due to administrator command",
            ),
        );
        let mut client = socket.into_inner();
        let _ = client.write_all(&out).await;
        let _ = client.shutdown().await;
    } else {
        let _ = socket.close().await;
    }
}
