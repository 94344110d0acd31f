//! Approvals across replicas (`cluster:`): requests and decisions go through the
//! state database, so any node can decide what another holds.
//!
//! The holder keeps its waiting sessions here as without a cluster; what changes is
//! where a request is listed and decided. [`Approvals::publish`] lists it in the state
//! database before anyone hears of it (a hold the others cannot see is not offered:
//! 42501 `approvals unavailable`). [`Approvals::decide`] decides it there, on whichever
//! node the approver reached. The holder learns of the decision from NOTIFY, and
//! re-reads what it holds after a reconnect and every heartbeat while it holds
//! anything, so a lost notification delays a decision but never loses it; a statement
//! runs only once its node has read `approved` from the database.

use std::sync::Arc;
use std::time::Duration;

use super::{lock, Approvals, Event, Request, Resolution, ResolveError, Shared, Ticket};
use crate::cluster::approvals::{SharedRequest, Standing};
use crate::cluster::StateError;

impl From<StateError> for ResolveError {
    fn from(e: StateError) -> ResolveError {
        ResolveError::Unavailable(e.to_string())
    }
}

impl Approvals {
    /// Share requests and decisions through the cluster's state database, as `tenant`
    /// ("" without tenants). Call once, at start, inside the runtime.
    pub fn attach(self: &Arc<Self>, db: Arc<crate::cluster::Shared>, tenant: &str) {
        let heartbeat = db.timing.heartbeat;
        if self
            .shared
            .set(Shared {
                db: Arc::clone(&db),
                tenant: tenant.to_owned(),
            })
            .is_err()
        {
            return;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        db.spawn_listener(tx);
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(heartbeat);
            loop {
                let note = tokio::select! {
                    n = rx.recv() => match n {
                        Some(n) => n,
                        None => return,
                    },
                    _ = sweep.tick() => Some(String::new()),
                };
                let Some(me) = me.upgrade() else { return };
                match note {
                    // A reconnect: notifications may have been missed.
                    None => me.resync(true).await,
                    // The sweep: re-read what we hold, if anything.
                    Some(id) if id.is_empty() => me.resync(false).await,
                    Some(id) => me.on_decided(&id).await,
                }
            }
        });
    }

    /// Tell everyone who should hear of a new hold: the state database first (with
    /// `cluster:`), then the notifiers. An error means the hold must not be offered.
    pub async fn publish(&self, ticket: &Ticket) -> Result<(), ResolveError> {
        let max = self.max_held.load(std::sync::atomic::Ordering::Relaxed);
        // The ticket's own request is among those pending.
        if lock(&self.state).pending.len() > max {
            return Err(ResolveError::TooMany(max));
        }
        if let Some(s) = self.shared.get() {
            s.db.publish(&s.tenant, &ticket.request).await?;
        }
        let _ = self
            .events
            .send(Event::Requested(Arc::clone(&ticket.request)));
        Ok(())
    }

    /// Pending requests: this tenant's across the cluster, or those held here.
    pub async fn list(&self) -> Result<Vec<Arc<Request>>, ResolveError> {
        match self.shared.get() {
            Some(s) => Ok(s
                .db
                .pending(Some(&s.tenant))
                .await?
                .into_iter()
                .map(|r| Arc::new(r.request))
                .collect()),
            None => Ok(self.pending()),
        }
    }

    /// Approve or deny, wherever the request is held.
    pub async fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: &str,
        grant_for: Option<Duration>,
    ) -> Result<Arc<Request>, ResolveError> {
        self.decide_as(id, by, None, approve, reason, grant_for)
            .await
    }

    /// As [`Approvals::decide`], with the approver's groups when known from how it
    /// signed in (the console's OIDC sign-in).
    pub async fn decide_as(
        &self,
        id: &str,
        by: &str,
        groups: Option<&[String]>,
        approve: bool,
        reason: &str,
        grant_for: Option<Duration>,
    ) -> Result<Arc<Request>, ResolveError> {
        let Some(s) = self.shared.get() else {
            return self.resolve_as(id, by, groups, approve, reason, grant_for);
        };
        let found =
            s.db.fetch(id)
                .await?
                .filter(|r| r.tenant == s.tenant && r.standing == Standing::Pending)
                .ok_or_else(|| ResolveError::NotFound(id.to_owned()))?;
        self.check_approver_as(&found.request, by, groups)?;
        let decided =
            s.db.decide(id, by, approve, reason, grant_for)
                .await?
                .ok_or_else(|| ResolveError::NotFound(id.to_owned()))?;
        let req = Arc::new(decided.request.clone());
        // Held here: release it now rather than on the notification.
        self.apply(decided);
        Ok(req)
    }

    /// The holder let a request go (expired, withdrawn): mark it so in the state
    /// database, in the background (nothing waits on it; a failure leaves the row to
    /// expire or to be withdrawn when this node's heartbeat lapses).
    pub(super) fn finish_shared(&self, id: &str, how: Resolution) {
        let Some(s) = self.shared.get() else { return };
        let (db, id) = (Arc::clone(&s.db), id.to_owned());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = db.finish(&id, &how).await {
                    tracing::warn!(approval = %id, error = %e, "could not mark the request finished in the state database");
                }
            });
        }
    }

    /// Requests withdrawn because the node holding them stopped: tell the notifiers,
    /// since their holder cannot.
    pub async fn announce_lapsed(&self, ids: &[String]) {
        let Some(s) = self.shared.get() else { return };
        for id in ids {
            if let Ok(Some(r)) = s.db.fetch(id).await {
                if r.tenant == s.tenant {
                    let _ = self.events.send(Event::Lapsed(Arc::new(r.request)));
                }
            }
        }
    }

    async fn on_decided(&self, id: &str) {
        let Some(s) = self.shared.get() else { return };
        match s.db.fetch(id).await {
            Ok(Some(r)) if r.tenant == s.tenant => self.apply(r),
            Ok(_) => {}
            // The sweep will try again while we hold it.
            Err(e) => tracing::debug!(approval = %id, error = %e, "reading a decision failed"),
        }
    }

    /// Re-read the requests held here (and, after a reconnect, the grants in force).
    async fn resync(&self, grants_too: bool) {
        let Some(s) = self.shared.get() else { return };
        let held: Vec<String> = lock(&self.state).pending.keys().cloned().collect();
        for id in held {
            if let Ok(Some(r)) = s.db.fetch(&id).await {
                self.apply(r);
            }
        }
        if grants_too {
            match s.db.grants().await {
                Ok(all) => {
                    let mut st = lock(&self.state);
                    for (tenant, g) in all {
                        if tenant == s.tenant && !st.grants.iter().any(|h| h.approval == g.approval)
                        {
                            st.grants.push(g);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not load grants from the state database")
                }
            }
        }
    }

    /// What the state database says about a request: release it if held here, and
    /// keep an approval's grant (grants are honoured on every node).
    fn apply(&self, r: SharedRequest) {
        let Standing::Decided(how) = r.standing else {
            return;
        };
        let held = lock(&self.state)
            .pending
            .get(&r.request.id)
            .map(|p| Arc::clone(&p.request));
        match held {
            Some(req) => {
                self.deliver(&req, how);
            }
            None => {
                if let Resolution::Approved {
                    by,
                    grant_until: Some(until),
                    ..
                } = &how
                {
                    super::add_grant(&mut lock(&self.state).grants, &r.request, by, *until);
                }
            }
        }
    }
}
