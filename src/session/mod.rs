//! One task per client: negotiate TLS, authenticate the caller, open pgmoat's own
//! server connection with the held credentials, then relay.

pub mod approval_mode;
pub mod authn;
pub mod cancel;
pub mod core;
pub mod credentials;
pub mod ddl;
pub mod error;
pub mod guard;
mod held;
mod io;
pub mod judge;
mod judge_facts;
mod judge_memo;
mod masker;
pub mod params;
pub mod registry;
pub mod relay;
mod roles;
pub mod stale;
pub mod tenant;
pub mod upstream;
pub mod verdict;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Identity, UserDirectory};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::net::stream::{ClientStream, MaybeTls};
use crate::protocol::backend::{self, ErrorFields, Severity};
use crate::protocol::sqlstate;
use crate::protocol::startup::{self, Initial, Startup};
use cancel::{CancelRegistry, CancelTarget};
use error::SessionError;
use io::ReadError;
use relay::{End, Relay, RelayParts};

/// What every session shares: built once by the gateway.
pub struct Shared {
    pub config: Arc<Config>,
    /// Local users of every tenant (names are unique across tenants).
    pub users: UserDirectory,
    /// Failed authentications per tenant and client address.
    pub auth_limiter: crate::auth::failure::Limiter,
    pub tls: Option<TlsAcceptor>,
    pub cancels: Arc<CancelRegistry>,
    pub metrics: Arc<Metrics>,
    pub shutdown: watch::Receiver<bool>,
    pub classifier: Arc<crate::classify::Classifier>,
    /// Targets, rules, masks, approvals and audit, per tenant (one, unnamed, without
    /// `tenants:`).
    pub tenants: tenant::Tenants,
    /// Live sessions of every front door (`GET /api/v1/sessions`).
    pub sessions: Arc<registry::Registry>,
}

/// Serve one client connection to the end. Never panics on client input; every way it
/// can end is logged once.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    serve_as(tcp, peer, shared, None).await;
}

/// A caller another front door has already authenticated (the MCP endpoint checked its
/// bearer token): its session skips the wire's password exchange and is otherwise
/// the wire's own, so rules, masks, holds and audit are the same by construction.
pub struct Proven {
    pub identity: Identity,
    pub tenant: Arc<tenant::Tenant>,
    /// The front door: recorded in `session_start` (`"protocol": "mcp"`) and shown
    /// with every approval request the session makes.
    pub door: crate::approval::FrontDoor,
}

/// How a served session ended, for a front door that drives it: the FATAL a
/// terminated session writes can be lost when the door's next message races the
/// close, so the door asks the session itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// An operator terminated it (`POST /api/v1/sessions/{id}/terminate`).
    Terminated,
    /// Any other ending: the client left, the server closed, startup failed.
    Ended,
}

/// Serve a session for a [`Proven`] caller over `tcp` (a loopback socket the front
/// door drives); `peer` is the caller's own address, for the audit trail.
pub async fn serve_proven(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    proven: Proven,
) -> Served {
    serve_as(tcp, peer, shared, Some(proven)).await
}

async fn serve_as(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    proven: Option<Proven>,
) -> Served {
    let startup_timeout = shared.config.limits.startup_timeout;
    let negotiated = match tokio::time::timeout(startup_timeout, negotiate(tcp, &shared)).await {
        Err(_) => {
            tracing::debug!(%peer, "client did not finish startup in time");
            return Served::Ended;
        }
        Ok(Ok(Some(n))) => n,
        Ok(Ok(None)) => return Served::Ended,
        Ok(Err((stream, e))) => {
            finish(stream, peer, &shared, Err(e)).await;
            return Served::Ended;
        }
    };
    let (mut client, startup, leftover) = negotiated;
    let established = tokio::time::timeout(
        startup_timeout,
        establish(&mut client, startup, leftover, peer, &shared, proven),
    )
    .await;
    let est = match established {
        Err(_) => {
            let e =
                SessionError::refused(sqlstate::CONNECTION_FAILURE, "pgmoat: startup timed out");
            finish(Some(client), peer, &shared, Err(e)).await;
            return Served::Ended;
        }
        Ok(Err(e)) => {
            finish(Some(client), peer, &shared, Err(e)).await;
            return Served::Ended;
        }
        Ok(Ok(Opened::Console(admitted))) => {
            crate::admin_sql::serve(client, *admitted, peer, Arc::clone(&shared)).await;
            return Served::Ended;
        }
        Ok(Ok(Opened::Relay(established))) => *established,
    };
    let registration = shared.sessions.register(registry::Entry {
        tenant: est.tenant.name.as_str().into(),
        identity: est.identity.name.as_str().into(),
        target: est.target.as_str().into(),
        client: peer,
        protocol: est.door.as_str(),
    });
    let mut relay = Relay::new(RelayParts {
        client,
        upstream: est.upstream,
        client_leftover: est.client_leftover,
        server_leftover: est.server_leftover,
        tx_status: est.tx_status,
        max_message: shared.config.limits.max_message_bytes,
        metrics: Arc::clone(&shared.metrics),
        shutdown: shared.shutdown.clone(),
        guard: est.guard,
        cancel_signal: Arc::clone(&est.cancel_signal),
        // A pinned role needs the judge even without rules, to refuse role changes.
        judge: (est.tenant.rules.is_configured() || est.role.is_some()).then(|| judge::Judge {
            classifier: Arc::clone(&shared.classifier),
            rules: Arc::clone(&est.tenant.rules),
            identity: est.identity.clone(),
            target: est.target.clone(),
            search_path_changed: est.search_path_at_startup.into(),
            catalog: Arc::clone(&est.tenant.catalogs[&est.target]),
            pinned_role: est.role.clone(),
            masks: Arc::clone(&est.tenant.masks),
            masking: std::sync::Mutex::new(None),
            prepared_holds: Default::default(),
            any_prepared_holds: Default::default(),
            approvals: est.tenant.approvals.clone(),
            audited: est.audit.is_some(),
            approval_return: est.approval_mode == approval_mode::ApprovalMode::Return,
            door: est.door,
            memo: Default::default(),
            judged_ddl: Default::default(),
            ddl_running: Default::default(),
            judged_under: Default::default(),
        }),
        audit: est.audit,
        registration: Some(registration),
    });
    let result = relay.run().await;
    relay.after_end(&result).await;
    if let Some(mut audit) = relay.take_audit() {
        let how = match &result {
            Ok(End::ClientTerminated) => "terminated".to_string(),
            Ok(End::ClientClosed) => "client closed".to_string(),
            Ok(End::ServerClosed) => "server closed".to_string(),
            Ok(End::Shutdown) => "gateway shutdown".to_string(),
            Ok(End::Terminated) => "terminated by an operator".to_string(),
            Err(e) => format!("error: {e}"),
        };
        if let Err(e) = audit.end(&how).await {
            tracing::error!(session = audit.id(), "audit: session_end not recorded: {e}");
        }
    }
    let (client, mut upstream) = relay.into_streams();
    if let Ok(End::Shutdown) = result {
        let _ = upstream.write_all(&[b'X', 0, 0, 0, 4]).await;
    }
    let _ = upstream.shutdown().await;
    tracing::debug!(%peer, identity = %est.identity.name, "session ended: {result:?}");
    let served = match result {
        Ok(End::Terminated) => Served::Terminated,
        _ => Served::Ended,
    };
    finish(Some(client), peer, &shared, result.map(Some)).await;
    drop(est.cancel_key);
    served
}

/// Write the client's FATAL, if the ending calls for one, and close.
async fn finish(
    client: Option<ClientStream>,
    peer: SocketAddr,
    shared: &Shared,
    result: Result<Option<End>, SessionError>,
) {
    let Some(mut client) = client else { return };
    let fatal = match &result {
        Ok(Some(End::Shutdown | End::Terminated)) => Some((
            sqlstate::ADMIN_SHUTDOWN.to_string(),
            "terminating connection due to administrator command".to_string(),
            None,
        )),
        Ok(_) => None,
        Err(e) => {
            if e.is_protocol_violation() {
                shared
                    .metrics
                    .protocol_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match e {
                SessionError::ClientIo(_) | SessionError::ClientGone => {
                    tracing::debug!(%peer, "{e}")
                }
                _ => tracing::info!(%peer, "session refused or ended: {e}"),
            }
            e.client_fatal()
        }
    };
    if let Some((code, message, detail)) = fatal {
        let mut out = BytesMut::new();
        let mut f = ErrorFields::new(Severity::Fatal, &code, &message);
        if let Some(d) = detail.as_deref() {
            f = f.detail(d);
        }
        backend::error_response(&mut out, &f);
        let _ = client.write_all(&out).await;
        let _ = client.flush().await;
    }
    let _ = client.shutdown().await;
}

type Negotiated = (ClientStream, Startup, BytesMut);
type NegotiateError = (Option<ClientStream>, SessionError);

/// Read the opening packets: SSLRequest (answered 'S' with TLS configured, else 'N'),
/// GSSENCRequest ('N'), CancelRequest (routed, then closed), and finally the
/// StartupMessage. `Ok(None)` means the connection is done with nothing to say.
async fn negotiate(tcp: TcpStream, shared: &Shared) -> Result<Option<Negotiated>, NegotiateError> {
    let mut stream: ClientStream = MaybeTls::Plain(tcp);
    let mut buf = BytesMut::with_capacity(1024);
    // Postgres 17 clients may open with a TLS ClientHello instead of SSLRequest.
    if let (Some(acceptor), MaybeTls::Plain(tcp)) = (&shared.tls, &stream) {
        let mut first = [0u8; 1];
        if matches!(tcp.peek(&mut first).await, Ok(1)) && first[0] == 0x16 {
            let MaybeTls::Plain(tcp) = stream else {
                unreachable!()
            };
            match acceptor.accept(tcp).await {
                Ok(tls) => stream = MaybeTls::Tls(Box::new(tls)),
                Err(e) => {
                    tracing::debug!("direct TLS handshake failed: {e}");
                    return Ok(None);
                }
            }
        }
    }
    loop {
        let packet = match read_startup_packet(&mut stream, &mut buf).await {
            Ok(p) => p,
            Err(SessionError::ClientGone) | Err(SessionError::ClientIo(_)) => return Ok(None),
            Err(e @ SessionError::NotAStartupPacket) => {
                // Postgres logs this and closes without a word (COMMERROR), and drivers
                // rely on that: node-postgres's `connect()` then `end()` puts its
                // Terminate on the wire ahead of the StartupMessage, and a FATAL in reply
                // reaches a client that has ended as an unhandled error event.
                shared
                    .metrics
                    .protocol_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!("connection closed: {e}");
                return Ok(None);
            }
            Err(e) => return Err((Some(stream), e)),
        };
        let initial = match startup::parse(&packet) {
            Ok(i) => i,
            Err(e) => return Err((Some(stream), SessionError::Protocol(e.to_string()))),
        };
        match initial {
            Initial::Ssl | Initial::GssEnc => {
                // Bytes sent behind the request would be read as if they had come over
                // the encrypted channel (CVE-2021-23222): refuse them.
                if !buf.is_empty() {
                    return Err((
                        Some(stream),
                        SessionError::Protocol("unencrypted data after SSL or GSS request".into()),
                    ));
                }
                let offer_tls = matches!(initial, Initial::Ssl) && !stream.is_tls();
                match (&shared.tls, stream, offer_tls) {
                    (Some(acceptor), MaybeTls::Plain(mut tcp), true) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return Ok(None);
                        }
                        match acceptor.accept(tcp).await {
                            Ok(tls) => stream = MaybeTls::Tls(Box::new(tls)),
                            Err(e) => {
                                tracing::debug!("TLS handshake failed: {e}");
                                return Ok(None);
                            }
                        }
                    }
                    (_, mut s, _) => {
                        if s.write_all(b"N").await.is_err() {
                            return Ok(None);
                        }
                        stream = s;
                    }
                }
            }
            Initial::Cancel { pid, secret } => {
                shared
                    .metrics
                    .cancel_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(to) = shared.cancels.lookup(pid, secret) {
                    // Nothing stored: only a statement waiting right now is withdrawn,
                    // and then the server has nothing of it to cancel.
                    if to.signal.cancel() {
                        return Ok(None);
                    }
                    let timeout = shared.config.limits.connect_timeout;
                    if let Err(e) = upstream::cancel(
                        &to.target,
                        to.tls.as_ref(),
                        to.server_pid,
                        to.server_secret,
                        timeout,
                    )
                    .await
                    {
                        tracing::warn!(target = %to.target.name, "could not forward a cancel request: {e}");
                    }
                } else {
                    tracing::debug!("cancel request with a key pgmoat did not issue: ignored");
                }
                return Ok(None);
            }
            Initial::Startup(s) => return Ok(Some((stream, s, buf))),
        }
    }
}

async fn read_startup_packet(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(len) = startup::packet_len(buf).map_err(|e| match e {
            startup::StartupError::BadLength => SessionError::NotAStartupPacket,
            e => SessionError::Protocol(e.to_string()),
        })? {
            if buf.len() >= len {
                return Ok(buf.split_to(len));
            }
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err(SessionError::ClientGone),
            Ok(_) => {}
            Err(e) => return Err(SessionError::ClientIo(e)),
        }
    }
}

struct Established {
    upstream: crate::net::stream::UpstreamStream,
    server_leftover: BytesMut,
    tx_status: u8,
    client_leftover: BytesMut,
    identity: Identity,
    target: String,
    /// The client set search_path in its startup packet.
    search_path_at_startup: bool,
    cancel_key: cancel::CancelKey,
    cancel_signal: Arc<cancel::HoldSignal>,
    /// The role pgmoat SET for the identity's group, if the target names one.
    role: Option<String>,
    guard: guard::SessionGuard,
    audit: Option<crate::audit::SessionAudit>,
    tenant: Arc<tenant::Tenant>,
    /// Held for the session's life: its place in the tenant's connection budget.
    _seat: tenant::Seat,
    approval_mode: approval_mode::ApprovalMode,
    door: crate::approval::FrontDoor,
}

/// What an authenticated client goes on to: a target through the relay, or the SQL
/// admin console (the virtual database `pgmoat`).
enum Opened {
    Relay(Box<Established>),
    Console(Box<crate::admin_sql::Admitted>),
}

/// Authenticate the client, check its settings and target, connect upstream and send
/// the client the server's greeting with pgmoat's own cancel key.
async fn establish(
    client: &mut ClientStream,
    startup: Startup,
    mut buf: BytesMut,
    peer: SocketAddr,
    shared: &Shared,
    proven: Option<Proven>,
) -> Result<Opened, SessionError> {
    // A proven caller's transport (its own HTTPS or loopback) was the front door's to
    // check; the socket here is pgmoat's own loopback.
    let protocol = proven.as_ref().map(|p| p.door.as_str().to_owned());
    let door = proven.as_ref().map(|p| p.door).unwrap_or_default();
    if proven.is_none() && shared.config.tls.as_ref().is_some_and(|t| t.require) && !client.is_tls()
    {
        return Err(SessionError::refused(
            sqlstate::INVALID_AUTHORIZATION,
            "pgmoat: this gateway requires TLS (connect with sslmode=require)",
        ));
    }
    let mut out = BytesMut::with_capacity(1024);
    let unrecognised: Vec<String> = startup
        .params
        .iter()
        .filter(|(k, _)| k.starts_with("_pq_."))
        .map(|(k, _)| k.clone())
        .collect();
    if startup.minor > 0 || !unrecognised.is_empty() {
        backend::negotiate_protocol_version(&mut out, 0, &unrecognised);
    }
    let user = startup
        .get("user")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            SessionError::refused(
                sqlstate::INVALID_AUTHORIZATION,
                "no PostgreSQL user name specified in startup packet",
            )
        })?
        .to_owned();
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&user)
        .to_owned();

    let (identity, tenant) = match proven {
        Some(p) => (p.identity, p.tenant),
        None => authn::authenticate(client, &mut buf, &user, &mut out, peer, shared).await?,
    };
    let seat = tenant.seat().ok_or_else(|| {
        tracing::warn!(%peer, tenant = %tenant.name, "tenant connection limit reached; refusing");
        SessionError::refused(
            sqlstate::TOO_MANY_CONNECTIONS,
            "sorry, too many clients already",
        )
    })?;

    // Only a client of the Postgres listener itself reaches the console; another front
    // door's caller naming it gets 3D000 like any unknown target.
    if protocol.is_none() && database == crate::admin_sql::DATABASE {
        let admitted =
            crate::admin_sql::open(client, out, buf, identity, tenant, seat, shared).await?;
        return Ok(Opened::Console(Box::new(admitted)));
    }

    let target = tenant
        .targets
        .get(&database)
        .cloned()
        .ok_or_else(|| SessionError::Refused {
            code: sqlstate::INVALID_CATALOG_NAME,
            message: format!("database \"{database}\" does not exist"),
            detail: Some(format!("pgmoat has no target named \"{database}\".")),
        })?;
    params::check_startup(&startup.params)
        .map_err(|m| SessionError::refused(sqlstate::INSUFFICIENT_PRIVILEGE, m))?;
    let approval_mode = approval_mode::requested(&startup.params)
        .map_err(|m| SessionError::refused(sqlstate::INSUFFICIENT_PRIVILEGE, m))?;
    startup_settings_allowed(&tenant, &identity, &database, &startup.params)?;

    let mut upstream_params: Vec<(String, String)> = startup
        .params
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "user" | "database" | "replication" | "application_name"
            ) && !k.starts_with("_pq_.")
        })
        .cloned()
        .collect();
    upstream_params = approval_mode::without_own(upstream_params);
    upstream_params.push((
        "application_name".into(),
        params::upstream_application_name(startup.get("application_name"), &identity.name),
    ));

    let tls = tenant.upstream_tls.get(&target.name);
    let stream = upstream::connect(&target, tls, shared.config.limits.connect_timeout).await?;
    let mut ready = upstream::start(stream, &target, &upstream_params).await?;
    let role = target.role_for(&identity.groups).map(str::to_owned);
    if let Some(r) = &role {
        roles::pin_role(&mut ready, r).await?;
    }

    // A role or database default (ALTER ROLE ... SET) could already have changed how
    // the server reads SQL.
    let mut greeting = &ready.for_client[..];
    while greeting.len() >= 5 {
        let len = crate::protocol::frame::total_len(greeting).unwrap_or(greeting.len());
        let (msg, rest) = greeting.split_at(len.min(greeting.len()));
        if msg[0] == b'S' {
            if let Some(refusal) = relay::runtime_setting_refusal(&msg[5..]) {
                return Err(SessionError::refused(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    refusal,
                ));
            }
        }
        greeting = rest;
    }

    let cancel_signal = Arc::new(cancel::HoldSignal::default());
    // The session exists for the auditor before the client can send anything.
    let audit = tenant
        .audit
        .start_session(crate::audit::event::SessionStart {
            user: identity.name.clone(),
            groups: identity.groups.clone(),
            target: target.name.clone(),
            client: peer.to_string(),
            tls: client.is_tls(),
            application_name: startup.get("application_name").map(str::to_owned),
            protocol,
        })
        .await
        .map_err(|e| {
            tracing::error!(%peer, "session refused: its audit record could not be written: {e}");
            SessionError::refused(
                sqlstate::IO_ERROR,
                "pgmoat: the session was refused because its audit record could not be written",
            )
        })?;

    let cancel_key = shared.cancels.register(CancelTarget {
        signal: Arc::clone(&cancel_signal),
        target: Arc::clone(&target),
        tls: tls.cloned(),
        server_pid: ready.server_pid,
        server_secret: ready.server_secret,
    });
    backend::auth_ok(&mut out);
    out.extend_from_slice(&ready.for_client);
    backend::backend_key_data(&mut out, cancel_key.pid, cancel_key.secret);
    backend::ready_for_query(&mut out, ready.status);
    client
        .write_all(&out)
        .await
        .map_err(SessionError::ClientIo)?;
    client.flush().await.map_err(SessionError::ClientIo)?;
    tracing::info!(%peer, tenant = %tenant.name, identity = %identity.name, target = %target.name, tls = client.is_tls(), role = role.as_deref().unwrap_or(""), "session started");

    let outlives = tenant
        .oidc
        .as_ref()
        .is_some_and(|o| o.session_may_outlive_token());
    let guard = guard::SessionGuard {
        expires_at: identity.expires_at.filter(|_| !outlives),
        clock: tenant
            .oidc
            .as_ref()
            .map(|o| o.clock().clone())
            .unwrap_or_default(),
    };
    Ok(Opened::Relay(Box::new(Established {
        upstream: ready.stream,
        server_leftover: ready.leftover,
        tx_status: ready.status,
        client_leftover: buf,
        identity,
        target: target.name.clone(),
        search_path_at_startup: startup.params.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("search_path")
                || (k == "options"
                    && params::parse_options(v)
                        .map(|o| o.iter().any(|(n, _)| n == "search_path"))
                        .unwrap_or(true))
        }),
        cancel_key,
        cancel_signal,
        role,
        guard,
        audit,
        tenant,
        _seat: seat,
        approval_mode,
        door,
    })))
}

pub(crate) fn client_read_err(e: ReadError) -> SessionError {
    match e {
        ReadError::Io(e) => SessionError::ClientIo(e),
        ReadError::Eof => SessionError::ClientGone,
        ReadError::Frame(f) => SessionError::Protocol(f.to_string()),
    }
}

/// Startup settings are judged by the rules' `settings` conditions like a SET would
/// be (application_name aside, which pgmoat rewrites): what a rule with a `settings`
/// condition blocks in the session cannot come in through the startup packet instead.
/// A rule that would hold such a SET for approval refuses it here (nobody can approve
/// a startup packet).
fn startup_settings_allowed(
    tenant: &tenant::Tenant,
    identity: &crate::auth::Identity,
    target: &str,
    params: &[(String, String)],
) -> Result<(), SessionError> {
    if !tenant.rules.is_configured() {
        return Ok(());
    }
    let names: Vec<String> = params::startup_settings(params)
        .into_iter()
        .filter(|n| n != "application_name")
        .collect();
    if names.is_empty() {
        return Ok(());
    }
    let rules = tenant.rules.current();
    let who = crate::policy::Subject {
        user: &identity.name,
        groups: &identity.groups,
        target,
        search_path_changed: false,
    };
    for name in names {
        if let Some(rule) = rules.refuses_startup_setting(&name, &who) {
            return Err(SessionError::refused(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                format!("pgmoat: setting {name} at connection start is blocked by rule \"{rule}\""),
            ));
        }
    }
    Ok(())
}
