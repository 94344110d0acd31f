//! Which (identity, tenant) opened each MCP session (review finding M7).
//!
//! rmcp serves `GET /mcp` (resume a stream with `Last-Event-ID`, replaying cached
//! results) and `DELETE /mcp` (end the session) by session id alone, and the tools'
//! own owner check only runs inside a tool call. So the bearer check binds every
//! session id to whoever received it in the `initialize` answer, and a request that
//! names someone else's session gets exactly what an unknown session gets: 404.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

/// The header naming an MCP session (Streamable HTTP transport).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Who owns a session: identity name and tenant name.
pub type Owner = (String, String);

pub struct Owners {
    by_session: Mutex<HashMap<String, Owner>>,
    /// rmcp's live sessions: entries for sessions that ended (idle, closed) are
    /// pruned against it, so the map never outgrows `mcp.max_sessions` for long.
    sessions: Arc<LocalSessionManager>,
}

impl Owners {
    pub fn new(sessions: Arc<LocalSessionManager>) -> Owners {
        Owners {
            by_session: Mutex::new(HashMap::new()),
            sessions,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Owner>> {
        self.by_session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `owner` may use session `id`. A session id we never handed out (or
    /// one that ended) is nobody's: refused, as rmcp would refuse it.
    pub fn belongs_to(&self, id: &str, owner: &Owner) -> bool {
        self.lock().get(id).is_some_and(|o| o == owner)
    }

    /// Remember that `id`, just created, is `owner`'s; forget sessions that ended.
    pub async fn claim(&self, id: String, owner: Owner) {
        self.prune().await;
        self.lock().insert(id, owner);
    }

    /// Forget sessions rmcp no longer has (ended idle, closed).
    async fn prune(&self) {
        let live: std::collections::HashSet<String> = self
            .sessions
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        self.lock().retain(|k, _| live.contains(k));
    }

    /// MCP sessions that `tenant`'s identities hold open now.
    pub async fn open_in(&self, tenant: &str) -> usize {
        self.prune().await;
        self.lock().values().filter(|(_, t)| t == tenant).count()
    }

    /// The session was closed by its owner.
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The answer for a session that is unknown to this caller: byte for byte what rmcp
/// answers for a session that does not exist, so a prober learns nothing.
pub fn not_found() -> Response {
    let mut r = Response::new(Body::from("Not Found: Session not found"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}
