//! One MCP session's state: whom it belongs to and its upstream sessions, one per
//! target it has used, each a real Postgres front-door session (see [`super::pipe`])
//! reused across the MCP session's calls and closed with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use super::Door;
use crate::auth::Identity;
use crate::session::tenant::Tenant;
use crate::session::Served;

/// How long a call waits for a closed session to say how it ended (it writes its
/// audit record first) before opening another.
const SERVED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who is calling: proven by the bearer token of this HTTP request.
#[derive(Clone)]
pub struct Caller {
    pub identity: Identity,
    pub tenant: Arc<Tenant>,
    pub peer: SocketAddr,
}

/// Why a call could not reach its target.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("pgmoat has no target named \"{0}\" for you")]
    UnknownTarget(String),
    #[error("this MCP session belongs to another identity; start a new session")]
    NotYourSession,
    #[error("an operator ended this MCP session's database session; start a new MCP session")]
    Terminated,
    #[error("could not open a session to target \"{target}\": {message}")]
    Refused { target: String, message: String },
}

/// An upstream session: the driver's client and the notices the server sent it.
pub struct Conn {
    pub client: tokio_postgres::Client,
    notices: Arc<Mutex<Vec<String>>>,
    /// An operator terminated the database session (57P01): the MCP session does
    /// not quietly open another one.
    terminated: Arc<AtomicBool>,
    /// How the session behind it ended, once it has: a closed client whose session
    /// an operator terminated stays terminated even when the FATAL never arrived.
    served: watch::Receiver<Option<Served>>,
}

impl Conn {
    pub fn mark_terminated(&self) {
        self.terminated.store(true, Ordering::Release);
    }

    /// Notices that arrived since the last call.
    pub fn take_notices(&self) -> Vec<String> {
        std::mem::take(&mut *self.notices.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

pub struct McpSession {
    door: Arc<Door>,
    /// The identity (and tenant) that opened it: every later call must be theirs.
    owner: OnceLock<(String, String)>,
    conns: tokio::sync::Mutex<HashMap<String, Arc<Conn>>>,
}

impl McpSession {
    /// A new session, counted against `mcp.max_sessions` (None when full).
    pub fn open(door: &Arc<Door>) -> Option<McpSession> {
        let max = door.config.max_sessions;
        let mut live = door.live.load(Ordering::Acquire);
        loop {
            if live >= max {
                return None;
            }
            match door
                .live
                .compare_exchange(live, live + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => live = now,
            }
        }
        Some(McpSession {
            door: Arc::clone(door),
            owner: OnceLock::new(),
            conns: Default::default(),
        })
    }

    /// The upstream session for `target`, opened on first use (or again, after the
    /// last one ended: a lapsed token, a server restart).
    pub async fn conn(&self, caller: &Caller, target: &str) -> Result<Arc<Conn>, ConnectError> {
        let me = (caller.identity.name.clone(), caller.tenant.name.clone());
        if self.owner.get_or_init(|| me.clone()) != &me {
            return Err(ConnectError::NotYourSession);
        }
        if !caller.tenant.targets.contains_key(target) {
            return Err(ConnectError::UnknownTarget(target.to_owned()));
        }
        let mut conns = self.conns.lock().await;
        if let Some(c) = conns.get(target) {
            if c.terminated.load(Ordering::Acquire) {
                return Err(ConnectError::Terminated);
            }
            if !c.client.is_closed() {
                return Ok(Arc::clone(c));
            }
            let mut served = c.served.clone();
            let ended = tokio::time::timeout(SERVED_WAIT, served.wait_for(Option::is_some)).await;
            if let Ok(Ok(how)) = ended {
                if *how == Some(Served::Terminated) {
                    c.mark_terminated();
                    return Err(ConnectError::Terminated);
                }
            }
        }
        let conn = Arc::new(connect(&self.door, caller, target).await?);
        conns.insert(target.to_owned(), Arc::clone(&conn));
        Ok(conn)
    }
}

impl Drop for McpSession {
    fn drop(&mut self) {
        self.door.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Open a front-door session for the caller and drive it with tokio-postgres. The
/// session runs in return mode: a statement held for approval answers at once.
async fn connect(door: &Arc<Door>, caller: &Caller, target: &str) -> Result<Conn, ConnectError> {
    let refused = |message: String| ConnectError::Refused {
        target: target.to_owned(),
        message,
    };
    let (ours, theirs) = door
        .pipe
        .pair()
        .await
        .map_err(|e| refused(format!("internal loopback: {e}")))?;
    let proven = crate::session::Proven {
        identity: caller.identity.clone(),
        tenant: Arc::clone(&caller.tenant),
        door: crate::approval::FrontDoor::Mcp,
    };
    let (ended_as, served) = watch::channel(None);
    let shared = Arc::clone(&door.shared);
    let peer = caller.peer;
    tokio::spawn(async move {
        let how = crate::session::serve_proven(theirs, peer, shared, proven).await;
        let _ = ended_as.send(Some(how));
    });
    let mut config = tokio_postgres::Config::new();
    config
        .user(&caller.identity.name)
        .dbname(target)
        .application_name("pgmoat-mcp")
        .options(format!(
            "-c {}=return",
            crate::session::approval_mode::SETTING
        ))
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, mut connection) = config.connect_raw(ours, NoTls).await.map_err(|e| {
        refused(match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
    })?;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&notices);
    let terminated = Arc::new(AtomicBool::new(false));
    let ended = Arc::clone(&terminated);
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let mut v = sink.lock().unwrap_or_else(|p| p.into_inner());
                    // Kept until the next call reads them; a flood is cut, not hoarded.
                    if v.len() < 100 {
                        v.push(n.message().to_owned());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if e.code() == Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN) {
                        ended.store(true, Ordering::Release);
                    }
                    break;
                }
            }
        }
    });
    Ok(Conn {
        client,
        notices,
        terminated,
        served,
    })
}
