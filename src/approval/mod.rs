//! Just-in-time approval: a statement waits in its session until a person says yes.
//!
//! A pending request lives here with a oneshot channel to the waiting session. It is
//! resolved by an approver (API, CLI or Slack), expires, or is withdrawn when the
//! client goes away or cancels (dropping the [`Ticket`] withdraws). The requester
//! never approves their own request, and an approver must belong to one of the rule's
//! `approvers` groups. An approval may carry a grant: for a while, the same statement
//! shape by the same identity on the same target runs without asking again.

pub mod cli;
pub mod notify;
pub mod returned;
mod shared;
pub mod shown;
pub mod slack;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::oneshot;

/// Which front door a held request came through: shown to approvers (API, Slack),
/// and part of a grant's key, so approving an SSH command never lets a like-named
/// request through another door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FrontDoor {
    #[default]
    Postgres,
    Mcp,
    Ssh,
    Http,
}

impl FrontDoor {
    pub fn as_str(self) -> &'static str {
        match self {
            FrontDoor::Postgres => "postgres",
            FrontDoor::Mcp => "mcp",
            FrontDoor::Ssh => "ssh",
            FrontDoor::Http => "http",
        }
    }

    pub fn parse(s: &str) -> Option<FrontDoor> {
        [
            FrontDoor::Postgres,
            FrontDoor::Mcp,
            FrontDoor::Ssh,
            FrontDoor::Http,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }

    /// What is being asked, in words for a person: "a statement", "a command", ...
    pub fn noun(self) -> &'static str {
        match self {
            FrontDoor::Postgres | FrontDoor::Mcp => "a statement",
            FrontDoor::Ssh => "a command",
            FrontDoor::Http => "a request",
        }
    }
}

/// One held statement (or SSH command, or HTTP request).
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub id: String,
    pub front_door: FrontDoor,
    pub identity: String,
    pub groups: Vec<String>,
    pub target: String,
    /// What is asked: the SQL, an SSH command line, or `METHOD /path` for HTTP.
    pub sql: String,
    /// Bound parameters (extended protocol), as text.
    pub params: Vec<String>,
    pub rule: String,
    /// Groups whose members may approve.
    pub approvers: Vec<String>,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub requested_at: SystemTime,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub expires_at: SystemTime,
    /// The statement's literal-insensitive shape, for grants.
    #[serde(skip)]
    pub fingerprint: String,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// `grant_until`: the approval also grants the statement's shape until then.
    Approved {
        by: String,
        reason: String,
        grant_until: Option<SystemTime>,
    },
    Denied {
        by: String,
        reason: String,
    },
    Expired,
    Withdrawn,
}

/// Why an approve/deny call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no pending request {0}")]
    NotFound(String),
    #[error("{0} requested this statement and cannot approve it")]
    SelfApproval(String),
    #[error("{who} is not in the approvers of rule \"{rule}\" ({groups})")]
    NotAnApprover {
        who: String,
        rule: String,
        groups: String,
    },
    /// The shared state database (`cluster:`) did not answer: nothing was decided.
    #[error("approvals unavailable: {0}")]
    Unavailable(String),
    /// The tenant's `limits.max_held` statements are waiting already.
    #[error("too many statements are waiting for approval ({0} at most)")]
    TooMany(usize),
}

/// A standing permission from an approval `for` a while.
#[derive(Debug, Clone, Serialize)]
pub struct Grant {
    pub identity: String,
    pub target: String,
    pub rule: String,
    pub by: String,
    #[serde(serialize_with = "crate::audit::time::serialize_seconds")]
    pub expires_at: SystemTime,
    pub sql: String,
    /// The approval that made the grant.
    pub approval: String,
    #[serde(skip)]
    pub fingerprint: String,
}

struct Pending {
    request: Arc<Request>,
    reply: oneshot::Sender<Resolution>,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    grants: Vec<Grant>,
}

/// Pending requests and grants, shared by the sessions, the admin API and Slack.
pub struct Approvals {
    state: Mutex<State>,
    pub timeout: Duration,
    /// Identity name -> groups, to check approvers.
    directory: HashMap<String, Vec<String>>,
    events: tokio::sync::broadcast::Sender<Event>,
    /// With `cluster:`, the state database every node shares requests and decisions
    /// through (see [`shared`]); unset, everything stays in this process.
    shared: OnceLock<Shared>,
    /// The most requests held here at once (a tenant's `limits.max_held`).
    max_held: std::sync::atomic::AtomicUsize,
    /// Return-mode requests, kept for the retry of the call that asked.
    pub returned: returned::Returned,
}

/// This tenant's view of the cluster's state database.
struct Shared {
    db: Arc<crate::cluster::Shared>,
    tenant: String,
}

/// What happened, for notifiers and the audit trail.
#[derive(Debug, Clone)]
pub enum Event {
    Requested(Arc<Request>),
    Resolved(Arc<Request>, Resolution),
    /// Withdrawn because the node holding it stopped (`cluster:`); told by the node
    /// that noticed, since the holder cannot.
    Lapsed(Arc<Request>),
}

/// The waiting side of a request. Dropping it withdraws the request.
pub struct Ticket {
    pub request: Arc<Request>,
    rx: oneshot::Receiver<Resolution>,
    owner: Arc<Approvals>,
    done: bool,
}

impl Ticket {
    /// Wait for the decision, or until the request expires.
    pub async fn wait(&mut self) -> Resolution {
        let left = self
            .request
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let r = match tokio::time::timeout(left, &mut self.rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Resolution::Withdrawn,
            Err(_) => {
                self.owner.finish(&self.request.id, Resolution::Expired);
                Resolution::Expired
            }
        };
        self.done = true;
        r
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.owner.finish(&self.request.id, Resolution::Withdrawn);
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a grant for a SQL statement covers: the same statement with other literals,
/// or, `exact` (a literal's value decides what it does: a DO or function body, a
/// `set_config` name, a tautology's constants), that text alone.
pub fn sql_fingerprint(sql: &str, exact: bool) -> String {
    match exact {
        true => format!("exact\u{1}{sql}"),
        false => crate::classify::shape_key(sql).unwrap_or_else(|| format!("exact\u{1}{sql}")),
    }
}

impl Approvals {
    pub fn new(timeout: Duration, directory: HashMap<String, Vec<String>>) -> Arc<Approvals> {
        let (events, _) = tokio::sync::broadcast::channel(1024);
        Arc::new(Approvals {
            state: Mutex::new(State::default()),
            timeout,
            directory,
            events,
            shared: OnceLock::new(),
            max_held: std::sync::atomic::AtomicUsize::new(usize::MAX),
            returned: Default::default(),
        })
    }

    /// Bound the requests held at once (None: no bound of its own).
    pub fn set_max_held(&self, max: Option<usize>) {
        self.max_held.store(
            max.unwrap_or(usize::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// A grant that lets this statement run without asking, if one is in force.
    pub fn granted(&self, identity: &str, target: &str, fingerprint: &str) -> Option<Grant> {
        let now = SystemTime::now();
        let mut st = lock(&self.state);
        st.grants.retain(|g| g.expires_at > now);
        st.grants
            .iter()
            .find(|g| g.identity == identity && g.target == target && g.fingerprint == fingerprint)
            .cloned()
    }

    pub fn grants(&self) -> Vec<Grant> {
        let now = SystemTime::now();
        let mut st = lock(&self.state);
        st.grants.retain(|g| g.expires_at > now);
        st.grants.clone()
    }

    /// Hold a statement: a new pending request and the ticket to wait on. Nobody
    /// hears of it until [`Approvals::publish`] succeeds.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        self: &Arc<Self>,
        identity: &str,
        groups: &[String],
        target: &str,
        sql: &str,
        params: Vec<String>,
        rule: &str,
        approvers: &[String],
        door: FrontDoor,
        exact: bool,
    ) -> Ticket {
        let now = SystemTime::now();
        let id = new_id();
        // SQL from either SQL door shares grants by shape (unless `exact`); other
        // doors' requests are keyed by their exact text, under the door's name.
        let fingerprint = match door {
            FrontDoor::Postgres | FrontDoor::Mcp => sql_fingerprint(sql, exact),
            other => format!("{}\u{1}{sql}", other.as_str()),
        };
        let request = Arc::new(Request {
            id: id.clone(),
            front_door: door,
            identity: identity.to_owned(),
            groups: groups.to_vec(),
            target: target.to_owned(),
            sql: sql.to_owned(),
            params,
            rule: rule.to_owned(),
            approvers: approvers.to_vec(),
            requested_at: now,
            expires_at: now + self.timeout,
            fingerprint,
        });
        let (tx, rx) = oneshot::channel();
        lock(&self.state).pending.insert(
            id,
            Pending {
                request: Arc::clone(&request),
                reply: tx,
            },
        );
        Ticket {
            request,
            rx,
            owner: Arc::clone(self),
            done: false,
        }
    }

    pub fn pending(&self) -> Vec<Arc<Request>> {
        let mut v: Vec<Arc<Request>> = lock(&self.state)
            .pending
            .values()
            .map(|p| Arc::clone(&p.request))
            .collect();
        v.sort_by_key(|r| r.requested_at);
        v
    }

    pub fn get(&self, id: &str) -> Option<Arc<Request>> {
        lock(&self.state)
            .pending
            .get(id)
            .map(|p| Arc::clone(&p.request))
    }

    /// Whether `who` may decide on `req`.
    pub fn check_approver(&self, req: &Request, who: &str) -> Result<(), ResolveError> {
        self.check_approver_as(req, who, None)
    }

    /// As [`Approvals::check_approver`], with `groups` the approver's groups when they
    /// are known from how it signed in (an OIDC ID token) rather than from the
    /// configured users.
    pub fn check_approver_as(
        &self,
        req: &Request,
        who: &str,
        groups: Option<&[String]>,
    ) -> Result<(), ResolveError> {
        if same_person(who, &req.identity) {
            return Err(ResolveError::SelfApproval(who.to_owned()));
        }
        let groups =
            groups.unwrap_or_else(|| self.directory.get(who).map(Vec::as_slice).unwrap_or(&[]));
        if !groups.iter().any(|g| req.approvers.contains(g)) {
            return Err(ResolveError::NotAnApprover {
                who: who.to_owned(),
                rule: req.rule.clone(),
                groups: req.approvers.join(", "),
            });
        }
        Ok(())
    }

    /// Approve (optionally granting the same shape `for` a while) or deny a request
    /// held in this process. With `cluster:`, use [`Approvals::decide`], which also
    /// reaches requests held by other nodes.
    pub fn resolve(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: &str,
        grant_for: Option<Duration>,
    ) -> Result<Arc<Request>, ResolveError> {
        self.resolve_as(id, by, None, approve, reason, grant_for)
    }

    /// As [`Approvals::resolve`], with the approver's groups when known (see
    /// [`Approvals::check_approver_as`]).
    pub fn resolve_as(
        &self,
        id: &str,
        by: &str,
        groups: Option<&[String]>,
        approve: bool,
        reason: &str,
        grant_for: Option<Duration>,
    ) -> Result<Arc<Request>, ResolveError> {
        let req = self
            .get(id)
            .ok_or_else(|| ResolveError::NotFound(id.to_owned()))?;
        self.check_approver_as(&req, by, groups)?;
        let resolution = if approve {
            Resolution::Approved {
                by: by.to_owned(),
                reason: reason.to_owned(),
                grant_until: grant_for.map(|d| SystemTime::now() + d),
            }
        } else {
            Resolution::Denied {
                by: by.to_owned(),
                reason: reason.to_owned(),
            }
        };
        if self.deliver(&req, resolution) {
            Ok(req)
        } else {
            // Decided, expired or withdrawn between the lookup and now.
            Err(ResolveError::NotFound(id.to_owned()))
        }
    }

    /// End a request held here with `how`: the waiting session is told, an approval's
    /// grant recorded, the event sent. False when it was no longer pending here.
    fn deliver(&self, req: &Arc<Request>, how: Resolution) -> bool {
        let mut st = lock(&self.state);
        let Some(p) = st.pending.remove(&req.id) else {
            return false;
        };
        if let Resolution::Approved {
            by,
            grant_until: Some(until),
            ..
        } = &how
        {
            add_grant(&mut st.grants, req, by, *until);
        }
        drop(st);
        let _ = p.reply.send(how.clone());
        let _ = self.events.send(Event::Resolved(Arc::clone(req), how));
        true
    }

    /// Expired or withdrawn: gone, whoever was waiting is told.
    fn finish(&self, id: &str, how: Resolution) {
        let removed = lock(&self.state).pending.remove(id);
        if let Some(p) = removed {
            let _ = self
                .events
                .send(Event::Resolved(Arc::clone(&p.request), how.clone()));
            let _ = p.reply.send(how.clone());
            self.finish_shared(id, how);
        }
    }
}

/// Record a grant once (a decision may reach a node both directly and by NOTIFY).
fn add_grant(grants: &mut Vec<Grant>, req: &Request, by: &str, until: SystemTime) {
    if grants.iter().any(|g| g.approval == req.id) {
        return;
    }
    grants.push(Grant {
        identity: req.identity.clone(),
        target: req.target.clone(),
        rule: req.rule.clone(),
        by: by.to_owned(),
        expires_at: until,
        sql: req.sql.clone(),
        approval: req.id.clone(),
        fingerprint: req.fingerprint.clone(),
    });
}

/// A short random id, easy to type: `ap-` and 10 base32 characters.
fn new_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut out = String::from("ap-");
    let bytes: [u8; 10] = rand::random();
    for b in bytes {
        out.push(ALPHABET[(b & 31) as usize] as char);
    }
    out
}

/// RFC 3339, UTC, whole seconds (`2026-12-01T10:37:30Z`).
pub use crate::audit::time::format_seconds as format_time;

/// Whether the approver `who` may be the requester `identity` under another sign-in
/// (review L8): a local user `bob` signing in to the console through OIDC as
/// `Bob@corp.example`. Names are compared without case and without an `@domain`
/// part. This errs towards refusing: two different people whose names differ only
/// there cannot approve each other's requests, and another approver must.
pub fn same_person(who: &str, identity: &str) -> bool {
    fn base(name: &str) -> String {
        let local = name.split_once('@').map_or(name, |(l, _)| l);
        local.trim().to_lowercase()
    }
    who == identity || base(who) == base(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approvals() -> Arc<Approvals> {
        Approvals::new(
            Duration::from_secs(60),
            [
                ("alice".to_string(), vec!["dba".to_string()]),
                (
                    "agent-1".to_string(),
                    vec!["agents".to_string(), "dba".to_string()],
                ),
                ("bob".to_string(), vec!["dev".to_string()]),
            ]
            .into_iter()
            .collect(),
        )
    }

    fn ask(a: &Arc<Approvals>) -> Ticket {
        a.request(
            "agent-1",
            &["agents".into()],
            "demo",
            "UPDATE orders SET status = 'x' WHERE id = 1",
            vec![],
            "agent-writes",
            &["dba".into()],
            FrontDoor::Postgres,
            false,
        )
    }

    #[test]
    fn grants_are_keyed_by_front_door() {
        let a = approvals();
        let sql = ask(&a);
        let ssh = a.request(
            "agent-1",
            &["agents".into()],
            "web-1",
            "SELECT 1",
            vec![],
            "r",
            &["dba".into()],
            FrontDoor::Ssh,
            false,
        );
        assert_eq!(ssh.request.front_door.as_str(), "ssh");
        assert_eq!(ssh.request.fingerprint, "ssh\u{1}SELECT 1");
        assert_ne!(sql.request.fingerprint, ssh.request.fingerprint);
        let json = serde_json::to_value(&*ssh.request).unwrap();
        assert_eq!(json["front_door"], "ssh");
        assert_eq!(FrontDoor::parse("http"), Some(FrontDoor::Http));
        assert_eq!(FrontDoor::parse("telnet"), None);
    }

    #[tokio::test]
    async fn approve_deny_and_who_may() {
        let a = approvals();
        let mut t = ask(&a);
        let id = t.request.id.clone();
        assert_eq!(a.pending().len(), 1);
        assert_eq!(
            a.resolve(&id, "agent-1", true, "", None).unwrap_err(),
            ResolveError::SelfApproval("agent-1".into())
        );
        assert!(matches!(
            a.resolve(&id, "bob", true, "", None),
            Err(ResolveError::NotAnApprover { .. })
        ));
        assert!(matches!(
            a.resolve(&id, "mallory", true, "", None),
            Err(ResolveError::NotAnApprover { .. })
        ));
        a.resolve(&id, "alice", false, "not now", None).unwrap();
        assert_eq!(
            t.wait().await,
            Resolution::Denied {
                by: "alice".into(),
                reason: "not now".into()
            }
        );
        assert!(a.pending().is_empty());
        assert_eq!(
            a.resolve(&id, "alice", true, "", None).unwrap_err(),
            ResolveError::NotFound(id)
        );
    }

    #[tokio::test]
    async fn grants_cover_the_same_shape() {
        let a = approvals();
        let mut t = ask(&a);
        let id = t.request.id.clone();
        a.resolve(&id, "alice", true, "ok", Some(Duration::from_secs(1800)))
            .unwrap();
        assert!(matches!(t.wait().await, Resolution::Approved { .. }));
        let fp = crate::classify::shape_key("UPDATE orders SET status = 'y' WHERE id = 2").unwrap();
        assert!(
            a.granted("agent-1", "demo", &fp).is_some(),
            "other literals"
        );
        assert!(
            a.granted("agent-2", "demo", &fp).is_none(),
            "other identity"
        );
        assert!(a.granted("agent-1", "prod", &fp).is_none(), "other target");
    }

    #[tokio::test]
    async fn drop_withdraws_and_timeout_expires() {
        let a = approvals();
        let t = ask(&a);
        let mut events = a.subscribe();
        drop(t);
        assert!(a.pending().is_empty());
        assert!(matches!(
            events.recv().await.unwrap(),
            Event::Resolved(_, Resolution::Withdrawn)
        ));
        let short = Approvals::new(Duration::from_millis(50), HashMap::new());
        let mut t = ask(&short);
        assert_eq!(t.wait().await, Resolution::Expired);
        assert!(short.pending().is_empty());
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(format_time(t), "2026-11-18T11:06:40Z");
    }

    #[test]
    fn the_requester_under_another_sign_in_is_the_requester() {
        use super::same_person;
        assert!(same_person("bob", "bob"));
        assert!(same_person("Bob@corp.example", "bob"));
        assert!(same_person("bob", "BOB@other.example"));
        assert!(!same_person("alice", "bob"));
        assert!(!same_person("bobby@corp.example", "bob"));
    }
}
