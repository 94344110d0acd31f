//! One SSH client connection: who it is (`IDENTITY+TARGET` and a key or password),
//! which session channels it opens, and the refusal of everything else (port, X11 and
//! agent forwarding).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use super::upstream::{HeldKeys, Upstream};
use crate::audit::ssh::{SshSessionEnd, SshSessionStart};
use crate::audit::{Audit, Event};
use crate::config::{SshConfig, SshTarget};
use crate::session::guard::{rfc3339, SessionGuard};
use crate::session::tenant::Tenant;
use crate::session::Shared;

/// What every SSH connection shares.
pub struct Door {
    pub shared: Arc<Shared>,
    pub config: Arc<SshConfig>,
    pub held: Arc<HeldKeys>,
    /// Local users' groups and SSH keys, by name.
    pub keys: HashMap<String, (Vec<String>, Vec<PublicKey>)>,
}

/// One authenticated SSH session: shared by the connection and its channel tasks;
/// the last of them to finish writes `ssh_session_end`.
pub struct Ctx {
    pub door: Arc<Door>,
    pub peer: SocketAddr,
    pub identity: String,
    pub groups: Vec<String>,
    pub tenant: Arc<Tenant>,
    pub target: Arc<SshTarget>,
    /// The audit session id (also names the recordings).
    pub id: Arc<str>,
    pub audit: Audit,
    /// One upstream connection per session, opened with the first channel.
    upstream: tokio::sync::Mutex<Option<Arc<Upstream>>>,
    next_channel: AtomicU32,
    pub channels: AtomicU64,
    /// How the session ended, as the connection saw it.
    pub end: std::sync::Mutex<String>,
    /// Its entry in `GET /api/v1/sessions` (dropped with the session).
    pub registration: crate::session::registry::Registration,
    /// When the token that proved the identity lapses (OIDC logins, unless the tenant
    /// lets sessions outlive tokens): the connection ends then.
    pub lapse: SessionGuard,
    /// The session's seat among its tenant's `limits.max_connections` (given back when
    /// the session ends).
    _seat: crate::session::tenant::Seat,
}

impl Ctx {
    /// The upstream connection, opened (and the server's host key checked) on first use.
    pub async fn upstream(&self) -> Result<Arc<Upstream>, String> {
        let mut slot = self.upstream.lock().await;
        if let Some(u) = slot.as_ref().filter(|u| !u.is_closed()) {
            return Ok(Arc::clone(u));
        }
        let u = Arc::new(
            Upstream::connect(
                &self.target,
                &self.door.held,
                self.door.shared.config.limits.connect_timeout,
            )
            .await?,
        );
        *slot = Some(Arc::clone(&u));
        Ok(u)
    }

    pub fn next_channel(&self) -> u32 {
        self.next_channel.fetch_add(1, Relaxed)
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.door
            .shared
            .metrics
            .ssh
            .sessions_active
            .fetch_sub(1, Relaxed);
        let audit = self.audit.clone();
        let id = Arc::clone(&self.id);
        let end = SshSessionEnd {
            channels: self.channels.load(Relaxed),
            end: self
                .end
                .lock()
                .map(|e| e.clone())
                .unwrap_or_else(|_| "client closed".into()),
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = audit.record(Some(&id), Event::SshSessionEnd(end)).await {
                    tracing::error!(session = %id, "audit: ssh_session_end not recorded: {e}");
                }
            });
        }
    }
}

/// The russh handler of one connection.
pub struct Conn {
    door: Arc<Door>,
    peer: SocketAddr,
    ctx: Option<Arc<Ctx>>,
    /// Channels whose exec, shell or subsystem request has come: one per channel.
    started: std::collections::HashSet<ChannelId>,
}

impl Conn {
    pub fn new(door: Arc<Door>, peer: SocketAddr) -> Conn {
        door.shared
            .metrics
            .ssh
            .connections_total
            .fetch_add(1, Relaxed);
        Conn {
            door,
            peer,
            ctx: None,
            started: Default::default(),
        }
    }

    /// Refuse a login: count it against the address and write `auth_failure`.
    async fn fail(&self, user: &str, tenant: Option<&Arc<Tenant>>, reason: &str) -> Auth {
        self.refuse(user, tenant, reason, true).await
    }

    /// Refuse a login and write `auth_failure`; `count` it against the address's
    /// failed logins unless it proves nothing (a key offered without a signature).
    async fn refuse(
        &self,
        user: &str,
        tenant: Option<&Arc<Tenant>>,
        reason: &str,
        count: bool,
    ) -> Auth {
        let shared = &self.door.shared;
        shared.metrics.auth_failures.fetch_add(1, Relaxed);
        // As on the wire: a failure nobody can place in a tenant (an unknown name) is
        // counted against the address and logged, and goes into no tenant's trail.
        let tenant = shared.tenants.charged(tenant.map(|t| &**t));
        if count {
            shared.auth_limiter.record(
                tenant.map(|t| t.name.as_str()).unwrap_or(""),
                self.peer.ip(),
            );
        }
        if let Some(t) = tenant {
            let event = Event::AuthFailure {
                user: user.to_owned(),
                client: self.peer.to_string(),
                reason: format!("ssh: {reason}"),
            };
            if let Err(e) = t.audit.record(None, event).await {
                tracing::error!("audit: auth_failure not recorded: {e}");
            }
        }
        tracing::info!(peer = %self.peer, %user, "ssh login refused: {reason}");
        Auth::reject()
    }

    /// `IDENTITY+TARGET` -> the identity's tenant and groups and the target, or why not.
    fn resolve(&self, user: &str) -> Result<(String, Arc<Tenant>, Arc<SshTarget>), String> {
        let (identity, target) = user
            .rsplit_once('+')
            .ok_or_else(|| "the user name must be IDENTITY+TARGET".to_string())?;
        let tenant = self
            .door
            .shared
            .tenants
            .of_identity(identity)
            .ok_or_else(|| format!("unknown identity {identity:?}"))?;
        // The identity's own tenant's target, never another's.
        let target = self
            .door
            .config
            .targets
            .get(&crate::config::Config::door_key(&tenant.name, target))
            .ok_or_else(|| format!("unknown ssh target {target:?}"))?;
        Ok((
            identity.to_owned(),
            Arc::clone(tenant),
            Arc::new(target.clone()),
        ))
    }

    /// The identity is proven: write `ssh_session_start` (durably: a session the trail
    /// does not show does not start) and keep the session's context.
    async fn start(
        &mut self,
        identity: String,
        groups: Vec<String>,
        tenant: Arc<Tenant>,
        target: Arc<SshTarget>,
        how: &str,
        lapse: SessionGuard,
    ) -> Auth {
        // The tenant's `limits.max_connections` count SSH sessions as they count the
        // wire's (review L1): a full tenant turns the login away, as no failure.
        let Some(seat) = tenant.seat() else {
            tracing::warn!(peer = %self.peer, tenant = %tenant.name, "ssh login refused: tenant connection limit reached");
            return Auth::reject();
        };
        let id = Audit::new_session_id();
        let audit = tenant.audit.clone();
        let start = SshSessionStart {
            user: identity.clone(),
            groups: groups.clone(),
            target: target.name.clone(),
            client: self.peer.to_string(),
            auth: how.to_owned(),
        };
        if let Err(e) = audit.append(Some(&id), Event::SshSessionStart(start)).await {
            tracing::error!("audit: ssh_session_start not recorded, login refused: {e}");
            return Auth::reject();
        }
        self.door
            .shared
            .auth_limiter
            .clear(&tenant.name, self.peer.ip());
        self.door
            .shared
            .metrics
            .ssh
            .sessions_total
            .fetch_add(1, Relaxed);
        self.door
            .shared
            .metrics
            .ssh
            .sessions_active
            .fetch_add(1, Relaxed);
        tracing::info!(peer = %self.peer, %identity, target = %target.name, session = %id, "ssh session started");
        let registration = self
            .door
            .shared
            .sessions
            .register(crate::session::registry::Entry {
                tenant: tenant.name.as_str().into(),
                identity: identity.as_str().into(),
                target: target.name.as_str().into(),
                client: self.peer,
                protocol: "ssh",
            });
        self.ctx = Some(Arc::new(Ctx {
            door: Arc::clone(&self.door),
            peer: self.peer,
            identity,
            groups,
            tenant,
            target,
            id,
            audit,
            upstream: Default::default(),
            next_channel: AtomicU32::new(0),
            channels: AtomicU64::new(0),
            end: std::sync::Mutex::new("client closed".into()),
            registration,
            lapse,
            _seat: seat,
        }));
        Auth::Accept
    }
}

impl Conn {
    /// Answer a channel request (russh sends the reply only when one was asked for).
    fn answer(
        &self,
        channel: ChannelId,
        ok: bool,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

/// The lapse of a token login: its expiry, judged by the tenant's OIDC clock, unless
/// the tenant lets sessions outlive their tokens (as for the Postgres door).
fn lapse_of(tenant: &Tenant, expires_at: Option<std::time::SystemTime>) -> SessionGuard {
    let Some(oidc) = tenant.oidc.as_ref() else {
        return SessionGuard::default();
    };
    SessionGuard {
        expires_at: expires_at.filter(|_| !oidc.session_may_outlive_token()),
        clock: oidc.clock().clone(),
    }
}

/// Resolves with the expiry once `lapse`'s token has expired by its clock; never for a
/// login that does not lapse. The clock is read again at least every second: timers run
/// on the monotonic clock, expiry is wall-clock time (which can jump, or, in tests, be
/// moved ahead).
async fn lapsed(lapse: &SessionGuard) -> std::time::SystemTime {
    let Some(at) = lapse.expires_at else {
        return std::future::pending().await;
    };
    loop {
        let left = at.duration_since(lapse.clock.now()).unwrap_or_default();
        if left.is_zero() {
            return at;
        }
        tokio::time::sleep(left.min(std::time::Duration::from_secs(1))).await;
    }
}

/// Local users' SSH keys and groups, by name, from every tenant.
pub fn key_directory(shared: &Shared) -> HashMap<String, (Vec<String>, Vec<PublicKey>)> {
    let mut out = HashMap::new();
    for tc in shared.config.tenant_configs() {
        for u in &tc.users {
            let keys = u
                .ssh_keys
                .iter()
                .filter_map(|k| k.split_whitespace().nth(1))
                .filter_map(|b64| russh::keys::parse_public_key_base64(b64).ok())
                .collect();
            out.insert(u.name.clone(), (u.groups.clone(), keys));
        }
    }
    out
}

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    /// A key offered before it is used: only the keys configured for the named
    /// identity go on to a signature check. Another key is turned away here and
    /// audited, but not counted as a failed login: an offer proves nothing, and an
    /// agent holding many keys must not lock its owner out (review L2).
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let (identity, tenant, _) = match self.resolve(user) {
            Ok(r) => r,
            Err(why) => return Ok(self.fail(user, None, &why).await),
        };
        let known = self.door.keys.get(&identity).is_some_and(|(_, keys)| {
            keys.iter()
                .any(|k| k.key_data() == offer.public_key.key_data())
        });
        if known {
            return Ok(Auth::Accept);
        }
        Ok(self
            .refuse(user, Some(&tenant), "public key not accepted", false)
            .await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let (identity, tenant, target) = match self.resolve(user) {
            Ok(r) => r,
            Err(why) => return Ok(self.fail(user, None, &why).await),
        };
        if self
            .door
            .shared
            .auth_limiter
            .is_blocked_anywhere(&tenant.name, self.peer.ip())
            .await
        {
            return Ok(self
                .fail(
                    user,
                    Some(&tenant),
                    "too many failed logins from this address",
                )
                .await);
        }
        let known = self.door.keys.get(&identity).and_then(|(groups, keys)| {
            keys.iter()
                .any(|k| k.key_data() == key.public_key.key_data())
                .then(|| groups.clone())
        });
        match known {
            Some(groups) => Ok(self
                .start(
                    identity,
                    groups,
                    tenant,
                    target,
                    "publickey",
                    SessionGuard::default(),
                )
                .await),
            None => Ok(self
                .fail(user, Some(&tenant), "public key not accepted")
                .await),
        }
    }

    /// A local user's password, or an OIDC JWT as the password (the identity part of
    /// the name must be the token's user), checked, rate-limited and audited exactly
    /// as on the wire.
    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let Some((identity, target)) = user.rsplit_once('+') else {
            return Ok(self
                .fail(user, None, "the user name must be IDENTITY+TARGET")
                .await);
        };
        // Which tenant's target it must be is known once the password (or token)
        // proves who it is; whether another tenant has one of that name never shows.
        let known = |tenant: &str| {
            self.door
                .config
                .targets
                .get(&crate::config::Config::door_key(tenant, target))
                .cloned()
        };
        let shared = Arc::clone(&self.door.shared);
        match crate::session::credentials::by_password(&shared, self.peer, identity, password).await
        {
            Ok((id, tenant)) => {
                let Some(target) = known(&tenant.name) else {
                    let why = format!("unknown ssh target {target:?}");
                    return Ok(self.fail(user, Some(&tenant), &why).await);
                };
                let target = Arc::new(target);
                // For the record only: by_password has decided which it was.
                let how = if password.split('.').count() == 3 && !password.contains(' ') {
                    "token"
                } else {
                    "password"
                };
                let lapse = lapse_of(&tenant, id.expires_at);
                Ok(self
                    .start(id.name, id.groups, tenant, target, how, lapse)
                    .await)
            }
            // by_password has counted and recorded the failure.
            Err(_) => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(ctx) = self.ctx.clone().filter(|c| c.lapse.check().is_ok()) else {
            // Not logged in, or the token has lapsed and the watcher is about to end
            // the connection.
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let handle = session.handle();
        tokio::spawn(super::channel::run(ctx, channel, handle));
        Ok(())
    }

    /// An operator's terminate (`POST /api/v1/sessions/{id}/terminate`) or the lapse
    /// of the login's token ends the connection: a watcher per session, gone with the
    /// session.
    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(ctx) = &self.ctx else {
            return Ok(());
        };
        let mut terminated = ctx.registration.terminated();
        let lapse = ctx.lapse.clone();
        let weak = Arc::downgrade(ctx);
        let id = Arc::clone(&ctx.id);
        let handle = session.handle();
        tokio::spawn(async move {
            let why = tokio::select! {
                // (The watch guard is dropped inside: it must not live in a Send future.)
                stop = async { terminated.wait_for(|t| *t).await.is_ok() } => {
                    if !stop {
                        return; // the session ended first
                    }
                    "terminated by an operator".to_string()
                }
                at = lapsed(&lapse) => format!(
                    "the session's token expired at {}; reconnect with a fresh token",
                    rfc3339(at)
                ),
            };
            tracing::info!(session = %id, "ssh session ending: {why}");
            if let Some(ctx) = weak.upgrade() {
                if let Ok(mut e) = ctx.end.lock() {
                    e.clone_from(&why);
                }
            }
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    format!("pgmoat: {why}"),
                    String::new(),
                )
                .await;
        });
        Ok(())
    }

    // Channel requests are answered here, as they arrive, so each reply goes with its
    // own request (the channel's task judges and relays them afterwards).

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.answer(channel, !self.started.contains(&channel), session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let first = self.started.insert(channel);
        self.answer(channel, first, session)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let first = self.started.insert(channel);
        self.answer(channel, first, session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let first = self.started.insert(channel);
        self.answer(channel, first, session)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The upstream's environment is its own: not passed on.
        self.answer(channel, false, session)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, "ssh X11 forwarding refused");
        self.door
            .shared
            .metrics
            .ssh
            .forwards_refused
            .fetch_add(1, Relaxed);
        self.answer(channel, false, session)
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.started.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!(peer = %self.peer, %host, port, "ssh port forwarding refused");
        self.door
            .shared
            .metrics
            .ssh
            .forwards_refused
            .fetch_add(1, Relaxed);
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, %address, port = *port, "ssh remote forwarding refused");
        self.door
            .shared
            .metrics
            .ssh
            .forwards_refused
            .fetch_add(1, Relaxed);
        Ok(false)
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        tracing::info!(peer = %self.peer, "ssh agent forwarding refused");
        self.door
            .shared
            .metrics
            .ssh
            .forwards_refused
            .fetch_add(1, Relaxed);
        Ok(false)
    }
}
