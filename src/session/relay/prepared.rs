//! The relay's side of [`crate::session::stale`]: prepared statements are checked
//! when the catalog or the session's search path moved, and a Bind or SQL EXECUTE of
//! a stale one is refused before it reaches the server.

use super::Relay;
use crate::classify::Kind;
use crate::mask::wire::Origin;
use crate::protocol::frontend::Bind;
use crate::session::core::slots::{lock, MaskPortal, Shared};
use crate::session::judge::Judged;
use crate::session::stale::{refusal, Judgment};
use crate::session::verdict::Refusal;

impl Relay {
    /// Whether the synchronous pass may take Binds: nothing moved since the prepared
    /// statements were checked, and none is stale (pointer compares).
    pub(super) fn prepared_in_step(&self) -> bool {
        !self.freshness.any_stale
            && self
                .judge
                .as_ref()
                .is_none_or(|j| self.freshness.in_step(j))
    }

    /// Whether DDL of this session the catalog does not show yet (sent and not
    /// answered, or in this message: `here`) could change what `judgment` reads.
    fn behind_own_ddl(&self, judgment: &Judgment, here: bool) -> bool {
        let Some(j) = &self.judge else { return false };
        let running = lock(&j.ddl_running).clone();
        let this = here.then(|| lock(&j.judged_ddl).clone()).flatten();
        running.iter().chain(this.iter()).any(|m| {
            judgment
                .statements()
                .any(|f| m.could_misjudge(f, judgment.catalog()))
        })
    }

    /// A Bind of `statement` (a portal masked by `mask`) behind this session's own
    /// unanswered DDL that could change what it reads: the server may run it after
    /// the DDL, so its rows are masked whole and its errors withheld. (Only masks are
    /// at stake, as for new statements, see `Judge::behind_ddl`; the Bind may be in
    /// the synchronous pass, which cannot refuse.)
    pub(super) fn bind_behind_ddl(&self, statement: &[u8], mask: Option<&Shared<MaskPortal>>) {
        let (Some(m), Some(_)) = (mask, self.ddl_cycle) else {
            return;
        };
        let judged = self
            .core
            .names
            .statement(statement)
            .and_then(|s| s.judged.as_ref());
        if judged.is_some_and(|g| self.behind_own_ddl(g, false)) {
            lock(m).origin = Origin::unknown();
        }
    }

    /// Check the prepared statements against the catalog current now when it (or the
    /// search path) moved since they were (`force`: check anyway).
    pub(super) async fn check_prepared(&mut self, force: bool) {
        let Some(j) = &self.judge else { return };
        if !force && self.freshness.in_step(j) {
            return;
        }
        match j.catalog.get().await {
            Ok(now) => self.freshness.check(j, &mut self.core.names, &now),
            Err(_) => self.freshness.all_stale(&mut self.core.names),
        }
    }

    /// A whole Bind: refused when the statement it binds is stale.
    pub(super) fn stale_bind(&self, body: &[u8]) -> Option<Refusal> {
        let names = Bind::names(body).ok()?;
        let slot = self.core.names.statement(names.statement)?;
        slot.judged
            .as_ref()
            .filter(|j| j.stale)
            .map(|_| refusal(names.statement))
    }

    /// What an allowed Parse or Query (`text`) was judged under, with its
    /// classification (the judge's last, or classified again).
    pub(super) async fn judgment_of(&self, text: Option<&str>) -> Option<Judgment> {
        let (j, text) = (self.judge.as_ref()?, text?);
        let again = crate::session::core::slots::lock(&j.memo).classified_again(text);
        let classified = match again {
            Some(c) => c,
            None => j.classifier.classify(text).await.ok()?,
        };
        Judgment::of(j, classified)
    }

    /// A Parse's judgment was recorded in its slot: the others are checked if it was
    /// judged under another catalog or path state than theirs.
    pub(super) async fn parse_judged(&mut self, judgment: Option<Judgment>) {
        let Some(j) = &self.judge else { return };
        let force = judgment.is_some_and(|g| !self.freshness.judged_in_step(j, g.catalog()));
        self.check_prepared(force).await;
    }

    /// A Query's SQL EXECUTEs, PREPAREs, DEALLOCATEs: refused when it EXECUTEs a
    /// stale statement; otherwise what it PREPAREs is recorded under its names.
    pub(super) async fn query_judged(&mut self, judged: &mut Judged, text: Option<&str>) {
        if self.judge.is_none() || judged.verdict.is_refused() {
            return;
        }
        // Stale, or it may run after DDL of this session (before it in this message,
        // or sent and unanswered) that changes what it reads.
        let stale = judged.executes.iter().find(|n| {
            let slot = self.core.names.statement(n.as_bytes());
            slot.and_then(|s| s.judged.as_ref())
                .is_some_and(|j| j.stale || self.behind_own_ddl(j, true))
        });
        if let Some(n) = stale {
            *judged = Judged::refused(refusal(n.as_bytes()));
            return;
        }
        // Only a message that could PREPARE, DEALLOCATE or DISCARD is looked at again.
        let text_ = text.unwrap_or_default();
        if ![&b"prepare"[..], b"deallocate", b"discard"]
            .iter()
            .any(|w| mentions(text_, w))
        {
            return;
        }
        let Some(judgment) = self.judgment_of(text).await else {
            return;
        };
        if judgment
            .statements()
            .any(|f| f.kinds.contains(&Kind::Deallocate) || f.kinds.contains(&Kind::Discard))
        {
            crate::session::stale::Freshness::freed(&mut self.core.names);
        }
        let mut any = false;
        for name in judgment.statements().flat_map(|f| f.prepares.iter()) {
            let slot = self.core.names.statement_entry(name.as_bytes());
            slot.judged = Some(judgment.clone().merged(slot.judged.take()));
            any = true;
        }
        if any {
            self.parse_judged(Some(judgment)).await;
        }
    }
}

/// Whether `text` has `word` in it, any case (no copy: this runs per Query).
fn mentions(text: &str, word: &[u8]) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word))
}
