//! DDL that would take masked columns out of their masks' names, wherever it runs:
//! at the top level, in a DO block, or in a function body the catalog folds into a
//! call (`SELECT mk()` whose body runs `ALTER TABLE people RENAME COLUMN ssn TO x`).
//! The top-level forms are also refused by the lineage analyzer; this reads the
//! resolved facts, so code pgmoat only sees as facts counts too. And code (a DO
//! block, a procedure) that copies masked values into a permanent table.

use std::sync::Arc;

use super::Masking;
use crate::classify::lineage::{Relations, SINK_FUNCTIONS};
use crate::classify::{Facts, Kind};

impl Masking {
    /// The mask a statement's DDL would dodge, if any: it alters (renames, moves to
    /// another schema, changes columns of) a relation with masked columns or a
    /// schema holding one, or it creates something on one (a rule, a trigger, a view
    /// replaced by another query), or code it runs (a DO block, a procedure, a
    /// function that makes relations) creates or alters something while reading one
    /// (a rule whose action copies it, a partition attached), or it gives a domain of
    /// masked columns a CHECK or default that calls code of users or extensions.
    /// The facts name the relations, not which DDL touched which one, so a statement
    /// that alters anything and writes such a relation is refused: an over-block of a
    /// rare form, for masked identities only, is the fail-closed side.
    pub fn ddl_unmasks(&self, f: &Facts) -> Option<Arc<str>> {
        if !self.has_column_masks() {
            return None;
        }
        if let Some(id) = self.domain_check_runs_code(f) {
            return Some(id);
        }
        let alters = f.kinds.contains(&Kind::Alter);
        if !alters && !f.kinds.contains(&Kind::Create) {
            return None;
        }
        // Code that may have run the DDL: what it read may be what the DDL copies.
        let code = f.kinds.contains(&Kind::Do)
            || f.kinds.contains(&Kind::Call)
            || f.unanalysable.is_some()
            || f.functions.iter().any(|n| self.may_make_relations(n));
        let mut places: Vec<&String> = f.tables_written.iter().collect();
        if code {
            places.extend(&f.tables_read);
        }
        for t in places {
            let (schema, name) = t.split_once('.').unwrap_or(("public", t));
            // A relation a single top-level CREATE makes is new where it is made (its
            // name may be a masked table's in another schema); in code, the facts
            // cannot tell which statement made what, so it counts as any other.
            if !code && f.created.iter().any(|c| c.rsplit('.').next() == Some(name)) {
                continue;
            }
            // `s.*` is a whole schema (ALTER SCHEMA s RENAME); `*` a schema or name
            // pgmoat could not tell; a bare name altered, or named by code, may be in
            // any schema on the path (a rule or trigger attaches to the relation the
            // path finds). A top-level CREATE's bare names are the lineage's to judge
            // (it knows which one the new relation is).
            let unqualified = (alters || code)
                && (f.unqualified_tables.contains(t) || f.unqualified_tables.contains(name));
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

    /// ALTER DOMAIN d ADD CONSTRAINT ... CHECK (f(VALUE)) or SET DEFAULT f(): the
    /// CHECK runs over every existing value of d's columns (and of domains over d).
    /// Refused when one of those columns is masked and the expression calls a
    /// function that is not the server's own (it could keep the value).
    fn domain_check_runs_code(&self, f: &Facts) -> Option<Arc<str>> {
        if f.domains_changed.is_empty()
            || f.functions
                .iter()
                .all(|n| self.catalog.is_built_in_function(n))
                && f.unanalysable.is_none()
        {
            return None;
        }
        for d in &f.domains_changed {
            let types = self.catalog.domain_type_oids(d);
            for (i, r) in self.catalog.relations.iter().enumerate() {
                for ((_, _, ty), t) in r.columns.iter().zip(self.rel_taints(i)) {
                    if types.contains(ty) && !t.is_clean() {
                        return Some(self.mask_id(*t));
                    }
                }
            }
        }
        None
    }

    /// A DO block or CALL whose code reads masked values and may keep them: it writes
    /// a relation that may be permanent (not masked whole as a temporary table is),
    /// notifies, changes a setting or a sequence, or cannot be analysed. Judged like
    /// a call of a function with that body. `message`: the message's statements,
    /// for the temporary tables earlier ones made.
    pub fn code_keeps(&self, f: &Facts, message: &[Facts], path_changed: bool) -> Option<Arc<str>> {
        if !self.has_column_masks()
            || !(f.kinds.contains(&Kind::Do) || f.kinds.contains(&Kind::Call))
        {
            return None;
        }
        let read = f
            .functions
            .iter()
            .fold(self.facts_taint(f), |t, n| t.join(self.function(n)));
        if read.is_clean() {
            return None;
        }
        let keeps = f.unanalysable.is_some()
            || f.rereads_sql.is_some()
            || f.kinds
                .iter()
                .any(|k| matches!(k, Kind::Execute | Kind::Other))
            || f.functions.iter().any(|g| {
                let bare = g.rsplit('.').next().unwrap_or(g);
                SINK_FUNCTIONS.contains(&bare.to_ascii_lowercase().as_str())
            })
            // COPY in code can only be to or from a server file or program (never
            // STDOUT): what it writes there outlives the mask (review s36 Y8).
            || f.kinds.contains(&Kind::CopyTo)
            || !f.copy.is_empty()
            || f.tables_written
                .iter()
                .any(|t| self.may_be_permanent(t, f, message, path_changed));
        keeps.then(|| self.mask_id(read))
    }

    /// Whether a relation code writes may be a permanent one. Temporary: named in
    /// pg_temp, or named bare where pg_temp comes first (the default path) and the
    /// only relations of that name are temporary ones (made by this message, or in
    /// the catalog) with no permanent one known or made: anything else, an unknown
    /// name included, may be permanent (fail closed).
    fn may_be_permanent(&self, t: &str, f: &Facts, message: &[Facts], path_changed: bool) -> bool {
        let (schema, name) = t.split_once('.').unwrap_or(("public", t));
        if schema.starts_with("pg_temp") {
            return false;
        }
        let unqualified = f.unqualified_tables.contains(t) || f.unqualified_tables.contains(name);
        if !unqualified || path_changed {
            return true;
        }
        let made = || message.iter().chain([f]).flat_map(|m| m.created.iter());
        let same_name = |c: &String| c.rsplit('.').next() == Some(name);
        if made()
            .filter(|c| same_name(c))
            .any(|c| !c.starts_with("pg_temp."))
        {
            return true;
        }
        // Other DDL on that name in the message (a rule or trigger on the temporary
        // table may write a permanent one): not a plain temporary table.
        let other_ddl = message.iter().any(|m| {
            (m.kinds.contains(&Kind::Create) || m.kinds.contains(&Kind::Alter))
                && m.tables_written.iter().any(same_name)
                && !m.created.iter().any(same_name)
        });
        if other_ddl {
            return true;
        }
        // Temporary tables the catalog knows (their triggers are folded into the
        // facts); a temporary view writes the relation it is over.
        let known = self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let temp_table = |i: &usize| {
            let r = &self.catalog.relations[*i];
            r.schema.starts_with("pg_temp") && matches!(r.kind, b'r' | b'p')
        };
        if !known.iter().all(temp_table) {
            return true;
        }
        let made_temp = made()
            .filter(|c| same_name(c))
            .any(|c| c.starts_with("pg_temp."));
        !made_temp && known.is_empty()
    }
}

/// Whether code that writing `table` runs (its triggers' and rules' facts) keeps
/// values of the row it is given: it calls a sink (pg_notify, set_config, ...), writes
/// another relation, or cannot be read.
pub(super) fn keeps_row(f: &Facts, table: &str) -> bool {
    f.unanalysable.is_some()
        || f.rereads_sql.is_some()
        || f.functions.iter().any(|g| {
            let bare = g.rsplit('.').next().unwrap_or(g);
            SINK_FUNCTIONS.contains(&bare.to_ascii_lowercase().as_str())
        })
        || f.tables_written.iter().any(|t| t != table)
}
