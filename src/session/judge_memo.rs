//! The session's memo of its own judgments: a statement the session sends again (the
//! same text, or the same statement with other literals, which the classifier answers
//! with the very same classification) is not decided again while nothing the decision
//! read has changed. It skips the catalog's resolution, the rules' matching, the masks'
//! `may_touch` and the audit facts' sorting; the `decided` record is still written.
//!
//! Only the common, side-effect-free judgment is kept: allowed, nothing to trace for
//! masking, no hold, and no statement that changes the session's state (settings,
//! role, DDL, PREPARE or EXECUTE), whose judging does more than decide.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::Classified;
use crate::mask::Masking;
use crate::policy::RuleSet;

/// Kept judgments per session: a session repeats a handful of statements; a linear
/// look by pointer over a few entries costs less than hashing a text.
const ENTRIES: usize = 16;

/// Texts up to this size are remembered verbatim for the exact-repeat shortcut.
const TEXT_MAX: usize = 4 << 10;

/// What an allowed judgment was made from and what it said.
struct Entry {
    /// The classification (held, so its address is never another's while kept).
    classified: Arc<Classified>,
    rules: Arc<RuleSet>,
    catalog: Arc<Catalog>,
    search_path_changed: bool,
    masking: Option<Arc<Masking>>,
    statements: usize,
    facts: crate::audit::StatementFacts,
}

/// What a kept judgment gives back.
pub struct Remembered {
    pub masking: Option<Arc<Masking>>,
    pub statements: usize,
    pub facts: crate::audit::StatementFacts,
}

#[derive(Default)]
pub struct Memo {
    entries: Vec<Entry>,
    /// The next entry to replace once full.
    next: usize,
    /// The last text classified and its classification: an exact repeat skips the
    /// classifier's look-up (and its shape key) too. The buffer is reused.
    last_text: String,
    last: Option<Arc<Classified>>,
}

impl Memo {
    /// The classification of `sql` when it is byte for byte the last text classified.
    pub fn classified_again(&self, sql: &str) -> Option<Arc<Classified>> {
        let last = self.last.as_ref()?;
        (self.last_text.as_bytes() == sql.as_bytes()).then(|| Arc::clone(last))
    }

    /// Remember `sql`'s classification for [`Memo::classified_again`].
    pub fn classified(&mut self, sql: &str, c: &Arc<Classified>) {
        self.last_text.clear();
        if sql.len() <= TEXT_MAX {
            self.last_text.push_str(sql);
            self.last = Some(Arc::clone(c));
        } else {
            self.last = None;
        }
    }

    /// The judgment kept for this classification under exactly these rules, catalog
    /// and search_path state.
    pub fn get(
        &self,
        classified: &Arc<Classified>,
        rules: &Arc<RuleSet>,
        catalog: &Arc<Catalog>,
        search_path_changed: bool,
    ) -> Option<Remembered> {
        let e = self.entries.iter().find(|e| {
            Arc::ptr_eq(&e.classified, classified)
                && Arc::ptr_eq(&e.rules, rules)
                && Arc::ptr_eq(&e.catalog, catalog)
                && e.search_path_changed == search_path_changed
        })?;
        Some(Remembered {
            masking: e.masking.clone(),
            statements: e.statements,
            facts: e.facts.clone(),
        })
    }

    /// Keep an allowed, plain judgment (the caller checks that it is one).
    #[allow(clippy::too_many_arguments)]
    pub fn keep(
        &mut self,
        classified: &Arc<Classified>,
        rules: &Arc<RuleSet>,
        catalog: &Arc<Catalog>,
        search_path_changed: bool,
        masking: Option<Arc<Masking>>,
        statements: usize,
        facts: &crate::audit::StatementFacts,
    ) {
        let entry = Entry {
            classified: Arc::clone(classified),
            rules: Arc::clone(rules),
            catalog: Arc::clone(catalog),
            search_path_changed,
            masking,
            statements,
            facts: facts.clone(),
        };
        // Older rules or catalogs are never asked for again: drop what they made.
        self.entries
            .retain(|e| Arc::ptr_eq(&e.rules, rules) && Arc::ptr_eq(&e.catalog, catalog));
        if self.entries.len() < ENTRIES {
            self.entries.push(entry);
        } else {
            self.next %= ENTRIES;
            self.entries[self.next] = entry;
            self.next += 1;
        }
    }

    /// Forget every kept judgment (a statement changed the session's state).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether a judgment of these statements may be kept: only reads and row writes (and
/// transaction control), none of which changes what later statements are judged by.
pub fn plain(statements: &[crate::classify::Facts]) -> bool {
    use crate::classify::Kind;
    statements.iter().all(|f| {
        f.settings.is_empty()
            && f.prepares.is_empty()
            && f.executes.is_empty()
            && f.rereads_sql.is_none()
            && f.unanalysable.is_none()
            && f.kinds.iter().all(|k| {
                matches!(
                    k,
                    Kind::Select
                        | Kind::Insert
                        | Kind::Update
                        | Kind::Delete
                        | Kind::Merge
                        | Kind::Show
                        | Kind::Explain
                        | Kind::Transaction
                )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::StatementFacts;

    fn rules() -> Arc<RuleSet> {
        Arc::new(RuleSet::from_sources(&[("r.yaml".into(), "rules: []\n".into())]).unwrap())
    }

    fn classified(sql: &str) -> Arc<Classified> {
        Arc::new(crate::classify::classify_now(sql).unwrap())
    }

    fn facts(table: &str) -> StatementFacts {
        StatementFacts {
            kinds: vec!["select".into()],
            tables: vec![table.into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_kept_judgment_is_given_back_only_for_what_it_was_made_from() {
        let (c, r, cat) = (
            classified("SELECT 1"),
            rules(),
            Arc::new(Catalog::default()),
        );
        let mut m = Memo::default();
        assert!(m.get(&c, &r, &cat, false).is_none());
        m.keep(&c, &r, &cat, false, None, 1, &facts("t"));
        let got = m.get(&c, &r, &cat, false).expect("kept");
        assert_eq!(
            (got.statements, got.facts.tables),
            (1, vec!["t".to_string()])
        );
        // Equal in content is not enough: another classification, rule set or
        // catalog (a reload, a reread) or search_path state misses.
        assert!(m.get(&classified("SELECT 1"), &r, &cat, false).is_none());
        assert!(m.get(&c, &rules(), &cat, false).is_none());
        assert!(m
            .get(&c, &r, &Arc::new(Catalog::default()), false)
            .is_none());
        assert!(m.get(&c, &r, &cat, true).is_none());
        m.clear();
        assert!(m.get(&c, &r, &cat, false).is_none());
    }

    #[test]
    fn new_rules_drop_what_older_ones_made_and_the_memo_stays_small() {
        let (r1, r2, cat) = (rules(), rules(), Arc::new(Catalog::default()));
        let mut m = Memo::default();
        let old = classified("SELECT 1");
        m.keep(&old, &r1, &cat, false, None, 1, &facts("a"));
        let new = classified("SELECT 2");
        m.keep(&new, &r2, &cat, false, None, 1, &facts("b"));
        assert_eq!(m.len(), 1);
        assert!(m.get(&new, &r2, &cat, false).is_some());
        let many: Vec<_> = (0..40)
            .map(|i| classified(&format!("SELECT {i}")))
            .collect();
        for c in &many {
            m.keep(c, &r2, &cat, false, None, 1, &facts("c"));
        }
        assert_eq!(m.len(), ENTRIES);
        assert!(m.get(many.last().unwrap(), &r2, &cat, false).is_some());
        assert!(m.get(&many[0], &r2, &cat, false).is_none());
    }

    #[test]
    fn the_exact_repeat_shortcut_matches_every_byte() {
        let mut m = Memo::default();
        let c = classified("SELECT 1");
        assert!(m.classified_again("SELECT 1").is_none());
        m.classified("SELECT 1", &c);
        assert!(Arc::ptr_eq(&m.classified_again("SELECT 1").unwrap(), &c));
        for other in ["SELECT 2", "SELECT 1 ", "select 1", "SELECT 1;", ""] {
            assert!(m.classified_again(other).is_none(), "{other:?}");
        }
        // A text too long to keep forgets the last one rather than keep a stale pair.
        let long = format!("SELECT '{}'", "x".repeat(TEXT_MAX));
        m.classified(&long, &classified(&long));
        assert!(m.classified_again(&long).is_none());
        assert!(m.classified_again("SELECT 1").is_none());
    }

    #[test]
    fn only_reads_and_row_writes_are_plain() {
        let plain_sql = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1",
            "INSERT INTO t VALUES (1)",
            "UPDATE t SET a = 1 WHERE id = 2",
            "BEGIN",
            "SHOW work_mem",
        ];
        for sql in plain_sql {
            assert!(plain(&classified(sql).statements), "{sql}");
        }
        let not_plain = [
            "SET search_path = hr",
            "SELECT set_config('search_path', 'hr', false)",
            "SET ROLE postgres",
            "RESET ROLE",
            "DISCARD ALL",
            "CREATE TABLE t (a int)",
            "ALTER TABLE t ADD b int",
            "DROP TABLE t",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DO $$ BEGIN END $$",
            "COPY t TO STDOUT",
            "SELECT 1; SET search_path = hr",
        ];
        for sql in not_plain {
            assert!(!plain(&classified(sql).statements), "{sql}");
        }
    }
}
