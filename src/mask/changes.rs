//! DDL that would take masked columns out of their masks' names, wherever it runs:
//! at the top level, in a DO block, or in a function body the catalog folds into a
//! call (`SELECT mk()` whose body runs `ALTER TABLE people RENAME COLUMN ssn TO x`).
//! The top-level forms are also refused by the lineage analyzer; this reads the
//! resolved facts, so code pgmoat only sees as facts counts too.

use std::sync::Arc;

use super::Masking;
use crate::classify::{Facts, Kind};

impl Masking {
    /// The mask a statement's DDL would dodge, if any: it alters (renames, moves to
    /// another schema, changes columns of) a relation with masked columns or a
    /// schema holding one, or it runs code (a DO block, a function or procedure)
    /// that creates something on one (a rule, a trigger, a view replaced by another
    /// query). The facts name the relations, not which DDL touched which one, so a
    /// statement that alters anything and writes such a relation is refused: an
    /// over-block of a rare form, for masked identities only, is the fail-closed side.
    pub fn ddl_unmasks(&self, f: &Facts) -> Option<Arc<str>> {
        if !self.has_column_masks() {
            return None;
        }
        let runs_code = [Kind::Do, Kind::Call, Kind::Select]
            .iter()
            .any(|k| f.kinds.contains(k));
        let alters = f.kinds.contains(&Kind::Alter);
        let changes = alters || (f.kinds.contains(&Kind::Create) && runs_code);
        if !changes {
            return None;
        }
        for t in &f.tables_written {
            let (schema, name) = t.split_once('.').unwrap_or(("public", t));
            // `s.*` is a whole schema (ALTER SCHEMA s RENAME); `*` a schema or name
            // pgmoat could not tell; a bare name altered may be in any schema on the
            // path (one created is new where it is made: `public.name` stands).
            let unqualified =
                alters && (f.unqualified_tables.contains(t) || f.unqualified_tables.contains(name));
            let found: Vec<usize> = self
                .by_qual
                .iter()
                .filter(|((s, n), _)| {
                    (schema == "*" || unqualified || s == schema) && (name == "*" || n == name)
                })
                // The catalog's own relations (pg_stats) and sessions' temporary ones
                // (traced by their definition, not their name; another session's
                // cannot be changed): a bare name of theirs that a message creates
                // is a new relation, a shadow the lineage traces where it is read.
                .filter(|((s, _), _)| {
                    !(matches!(s.as_str(), "pg_catalog" | "information_schema")
                        || s.starts_with("pg_temp")
                        || s.starts_with("pg_toast"))
                })
                .map(|(_, i)| *i)
                .collect();
            for i in found {
                if let Some(t) = self.rel_taints(i).iter().find(|t| !t.is_clean()) {
                    return Some(self.mask_id(*t));
                }
            }
        }
        None
    }
}
