//! DDL a session sends, followed until pgmoat's catalog can show what it made.
//!
//! The catalog is read on pgmoat's own connection. It cannot show a statement's DDL
//! before the server has run it (a read pipelined behind it is judged first), nor,
//! inside a transaction block, before that transaction ends (the DDL is not committed).
//! Until then a masked identity's statements that could read what the DDL changed are
//! refused ([`Made::could_misjudge`]); once the server has answered and the transaction
//! ended, the catalog is read again.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::{Facts, Kind};
use crate::protocol::sqlstate;
use crate::session::core::slots::lock;
use crate::session::verdict::{OwnCause, Refusal};

mod unseen;

/// What unanswered or uncommitted DDL of a session may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Made {
    /// Bare names of the relations it creates, alters or drops.
    pub relations: BTreeSet<String>,
    /// It creates or changes something other than a relation (a function, an
    /// operator, a cast, a type or domain, an extension): any code could differ.
    pub code: bool,
    /// It makes an object that runs functions named in its options (see
    /// `Facts::defines_code`).
    pub defines: bool,
}

impl Made {
    /// What these statements' DDL changes; None when they run no DDL.
    pub fn of(statements: &[Facts]) -> Option<Made> {
        let mut made = Made::default();
        let mut any = false;
        for f in statements {
            if f.two_phase {
                // Whatever the prepared transaction changed: anything.
                any = true;
                made.code = true;
                made.relations.insert("*".to_owned());
                continue;
            }
            let ddl = f
                .kinds
                .iter()
                .any(|k| matches!(k, Kind::Create | Kind::Alter | Kind::Drop | Kind::Extension));
            if !ddl {
                continue;
            }
            any = true;
            made.defines |= f.defines_code;
            // `s.*`: a whole schema renamed, or a relation pgmoat could not name.
            let wide = f.tables_written.iter().any(|t| t.contains('*'));
            if f.tables_written.is_empty() || wide || f.kinds.contains(&Kind::Extension) {
                made.code = true;
            }
            for t in &f.tables_written {
                made.relations.insert(bare(t).to_owned());
            }
        }
        any.then_some(made)
    }

    pub fn add(&mut self, other: &Made) {
        self.relations.extend(other.relations.iter().cloned());
        self.code |= other.code;
        self.defines |= other.defines;
    }

    /// Whether a statement's masks could be traced wrong over a catalog without this
    /// DDL: it reads a relation of a name the DDL changed that the catalog knows (a
    /// name it does not know is masked whole anyway), or, when the DDL changed code,
    /// it runs functions, operators, casts or domains.
    pub fn could_misjudge(&self, f: &Facts, catalog: &Catalog) -> bool {
        if f.kinds.contains(&Kind::Execute) {
            return true;
        }
        let known = |t: &String| {
            let name = bare(t);
            (self.relations.contains(name) || self.relations.contains("*"))
                && catalog.relations.iter().any(|r| r.name == name)
        };
        if f.tables_read.iter().chain(&f.tables_written).any(known) {
            return true;
        }
        self.code
            && (f.functions.iter().any(|g| !catalog.is_native_function(g))
                || !f.operators.is_empty()
                || !f.type_casts.is_empty()
                || !f.literal_types.is_empty())
    }
}

impl super::judge::Judge {
    /// What the DDL of the message judged last changes, if it has any (and forget it).
    pub fn took_ddl(&self) -> Option<Made> {
        lock(&self.judged_ddl).take()
    }

    /// DDL that changes `made` went to the server.
    pub fn ddl_sent(&self, made: &Made) {
        lock(&self.ddl_running)
            .get_or_insert_with(Default::default)
            .add(made);
    }

    /// The server answered the cycle that ran it: what it made is in the catalog now,
    /// so the next statement reads the catalog again. (Marking it stale when the DDL
    /// is judged is not enough: a statement pipelined behind it reloads the catalog
    /// before the server has run the DDL, and that snapshot would then stay.)
    /// Every other cache of this database, here and on the other replicas, is told
    /// too: the answer, when there is one, says when the other replicas have heard,
    /// and the DDL's ReadyForQuery waits for it (`Relay::settle_records`).
    pub fn ddl_answered(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        lock(&self.ddl_running).take()?;
        self.catalog.ddl_seen()
    }

    /// A statement judged while this session's DDL is not yet visible to the catalog
    /// (sent and unanswered, or in a transaction that has not ended), for an identity
    /// with column masks, that could read what the DDL changed: its masks would be
    /// traced over a catalog without it (`CREATE TEMP VIEW t AS SELECT ssn ...`
    /// shadowing a clean `public.t`, then `SELECT * FROM t`). Refused; sent after the
    /// answer (and the transaction's end) it is judged as usual.
    pub(super) fn behind_ddl(
        &self,
        statements: &[crate::classify::Facts],
        rules: &Arc<crate::policy::RuleSet>,
        catalog: &Arc<crate::catalog::Catalog>,
    ) -> Option<Refusal> {
        let running = lock(&self.ddl_running).clone()?;
        if !statements
            .iter()
            .any(|f| running.could_misjudge(f, catalog))
        {
            return None;
        }
        if !self
            .masking(rules, catalog)
            .is_some_and(|m| m.has_column_masks())
        {
            return None;
        }
        Some(Refusal::own(
            OwnCause::Catalog,
            sqlstate::OBJECT_NOT_IN_PREREQUISITE_STATE,
            "pgmoat: an earlier statement of this session changes what this one reads, and \
             pgmoat cannot see that change yet; send this statement after its answer (and \
             after its transaction ends)",
        ))
    }
}

/// `schema.name` -> `name`.
fn bare(t: &str) -> &str {
    t.rsplit('.').next().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::classify_now;

    fn made(sql: &str) -> Option<Made> {
        Made::of(&classify_now(sql).unwrap().statements)
    }

    #[test]
    fn what_ddl_changes() {
        assert_eq!(made("SELECT 1"), None);
        let m = made("CREATE TEMP VIEW tt AS SELECT ssn AS x FROM users").unwrap();
        assert!(m.relations.contains("tt") && !m.code, "{m:?}");
        let m = made("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").unwrap();
        assert!(m.code, "{m:?}");
        let m =
            made("CREATE OPERATOR ### (FUNCTION = f, LEFTARG = text, RIGHTARG = text)").unwrap();
        assert!(m.code, "{m:?}");
    }

    #[test]
    fn reads_of_what_it_changed_could_be_misjudged() {
        let catalog = Catalog::default();
        let view = made("CREATE TEMP VIEW tt AS SELECT 1 AS x").unwrap();
        let other = &classify_now("SELECT name FROM people").unwrap().statements[0];
        assert!(!view.could_misjudge(other, &catalog));
        // A name the catalog does not know is masked whole: nothing to refuse.
        let tt = &classify_now("SELECT upper(x) FROM tt").unwrap().statements[0];
        assert!(!view.could_misjudge(tt, &catalog));
        let code = made("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'").unwrap();
        let op = &classify_now("SELECT 'a' ### 'b'").unwrap().statements[0];
        assert!(code.could_misjudge(op, &catalog));
        assert!(!code.could_misjudge(other, &catalog));
    }
}
