//! The relay's side of [`crate::session::stale`]: prepared statements are checked
//! when the catalog or the session's search path moved, and a Bind or SQL EXECUTE of
//! a stale one is refused before it reaches the server.

use super::Relay;
use crate::classify::Kind;
use crate::mask::wire::Origin;
use crate::protocol::frontend::Bind;
use crate::protocol::sqlstate;
use crate::session::core::slots::{lock, MaskPortal, Shared, StatementSlot};
use crate::session::judge::Judged;
use crate::session::stale::{refusal, Judgment};
use crate::session::verdict::{OwnCause, Refusal};

impl Relay {
    /// Whether the synchronous pass may take Binds: nothing moved since the prepared
    /// statements were checked, none is stale (pointer compares), and no statement
    /// names a setting by a parameter.
    pub(super) fn prepared_in_step(&self) -> bool {
        !self.binds_checked()
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

    /// Whether each Bind must be read whole and checked by [`Self::bind_refusal`].
    pub(super) fn binds_checked(&self) -> bool {
        self.freshness.any_stale || self.setting_binds
    }

    /// A whole Bind: refused when the statement it binds is stale, or when a parameter
    /// naming the setting its set_config changes names one that makes the server read
    /// SQL differently (or cannot be read as a name).
    pub(super) fn bind_refusal(&self, body: &[u8]) -> Option<Refusal> {
        let names = Bind::names(body).ok()?;
        let slot = self.core.names.statement(names.statement)?;
        if slot.judged.as_ref().is_some_and(|j| j.stale) {
            return Some(refusal(names.statement));
        }
        // `EXECUTE s1(...)` parsed before `s1` was (review s37-vfix U7).
        if let Some(r) = self.executes_setting_params(&slot.executes) {
            return Some(r);
        }
        if slot.setting_params.is_empty() {
            return None;
        }
        let Ok(bind) = Bind::parse(body) else {
            // The server refuses a malformed Bind itself.
            return None;
        };
        let values: Vec<Option<&[u8]>> = bind.params.iter().collect();
        for &(n, text_typed) in &slot.setting_params {
            if !text_typed {
                // bpchar drops trailing blanks, a domain or another type converts:
                // the Bind's bytes are not what set_config gets (review s37 V2).
                return Some(setting_refusal(&format!(
                    "set_config's setting name (parameter ${n}) must be declared text or \
                     left to the server: pgmoat checks it before the statement runs"
                )));
            }
            // Text and binary alike: a text parameter's binary form is its UTF-8
            // bytes (tokio-postgres sends binary). A value that is not text without
            // NULs cannot be told from a setting's name: refused.
            let name = values
                .get(usize::from(n) - 1)
                .copied()
                .flatten()
                .filter(|v| !v.contains(&0))
                .and_then(|v| std::str::from_utf8(v).ok());
            match name {
                Some(name) if !crate::classify::rereads_sql_setting(name) => {}
                Some(name) => {
                    return Some(setting_refusal(&format!(
                        "set_config may not change {} through pgmoat: the server would read \
                     the SQL after it differently from pgmoat's parser",
                        name.to_ascii_lowercase()
                    )))
                }
                None => {
                    return Some(setting_refusal(&format!(
                        "set_config's setting name (parameter ${n}) must be text: pgmoat \
                     checks it before the statement runs"
                    )))
                }
            }
        }
        None
    }

    /// A Parse's statement names a setting by a parameter, or SQL-`EXECUTE`s names:
    /// from now on every Bind is read whole and checked.
    pub(super) fn note_setting_params(
        &mut self,
        slot: &mut StatementSlot,
        judged: &Judged,
        parse: &[u8],
    ) {
        if judged.verdict.is_refused() {
            return;
        }
        if !judged.executes.is_empty() {
            slot.executes = judged.executes.clone();
            self.setting_binds = true;
        }
        if judged.setting_params.is_empty() {
            return;
        }
        let declared = crate::session::held::parse_types(parse);
        slot.setting_params = judged
            .setting_params
            .iter()
            .map(|&n| {
                let ty = declared.get(usize::from(n) - 1).copied().unwrap_or(0);
                // unspecified, text, varchar
                (n, matches!(ty, 0 | 25 | 1043))
            })
            .collect();
        self.setting_binds = true;
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

/// A Bind refused for the setting its parameter names (42501, like the same
/// set_config with the name written out).
pub(super) fn setting_refusal(message: &str) -> Refusal {
    Refusal::own(
        OwnCause::ParserSettings,
        sqlstate::INSUFFICIENT_PRIVILEGE,
        format!("pgmoat: {message}"),
    )
}
