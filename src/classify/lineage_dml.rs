//! Writes: INSERT, UPDATE, DELETE and MERGE (what they write, which may launder masked
//! values into a table, and what RETURNING yields), and COPY (to a client or to a file).
//! Separate from reads (`lineage.rs`), whose scopes and target lists it reuses.

use super::analyzer::*;
use super::model::*;
use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

impl Analyzer<'_> {
    /// INSERT / UPDATE / DELETE / MERGE: what they write, and what RETURNING yields.
    pub(super) fn dml(&mut self, ty: NodeKind, m: &Map, parent: &Scope<'_>) -> Option<Cols> {
        let mut scope = Scope {
            parent: Some(parent),
            ..Scope::default()
        };
        self.with(m, &mut scope);
        let mut target = Taint::CLEAN;
        if let Some(r) = m.get("relation").and_then(Value::as_object) {
            let local = self.locals.trust
                && matches!(str_field(r, "schemaname"), "" | "pg_temp")
                && self.locals.tables.contains_key(str_field(r, "relname"));
            // Writing any other table may fire its triggers and rules.
            self.runs_code |= !local;
            if !local {
                // What the catalog says writing it runs. Defaults and triggers the
                // message installs are judged where it installs them (`installs`).
                let relname = str_field(r, "relname");
                let schema = Some(str_field(r, "schemaname")).filter(|s| !s.is_empty());
                self.launder(
                    self.rels.write_taint(schema, relname),
                    "writing a table whose defaults, generated columns or triggers read \
                     masked values",
                );
                self.policies_run(schema, relname, true);
            }
            self.changes_path |= str_field(r, "relname") == "pg_settings";
            let rel = self.range_var(r, &scope);
            target = rel.whole;
            scope.rels.push(rel);
        }
        match ty {
            NodeKind::InsertStmt => {
                // `DEFAULT VALUES` has no source (null in the tree): the row is the
                // table's defaults, which read nothing the statement names.
                let mut inserted = Taint::CLEAN;
                if let Some(src) = m.get("select_stmt").filter(|v| !v.is_null()) {
                    let before = self.touched;
                    let out = self.query(src, &scope);
                    let t = join_all(&out.cols, self.touched).join(before);
                    let t = if out.cols.is_some() {
                        join_all(&out.cols, Taint::CLEAN)
                    } else {
                        t
                    };
                    self.launder(t, "INSERT of masked values");
                    inserted = t;
                }
                if let Some(oc) = m.get("on_conflict_clause").and_then(Value::as_object) {
                    // `EXCLUDED.c` is the row proposed for insertion (named only so).
                    scope.rels.push(Rel {
                        name: "excluded".to_owned(),
                        whole: inserted,
                        cols_hidden: true,
                        ..Rel::default()
                    });
                    let t = self.generic(oc, &scope);
                    self.launder(t, "INSERT ... ON CONFLICT DO UPDATE with masked values");
                }
            }
            NodeKind::UpdateStmt => {
                for f in arr(m, "from_clause") {
                    self.range_item(f, &mut scope);
                }
                let mut t = Taint::CLEAN;
                for target in arr(m, "target_list") {
                    t = t.join(self.expr(target, &scope));
                }
                self.launder(t, "UPDATE ... SET from masked values");
                if let Some(w) = m.get("where_clause") {
                    self.expr(w, &scope);
                }
            }
            NodeKind::DeleteStmt => {
                for f in arr(m, "using_clause") {
                    self.range_item(f, &mut scope);
                }
                if let Some(w) = m.get("where_clause") {
                    self.expr(w, &scope);
                }
            }
            _ => {
                // MERGE: the source joins the target; any value its actions write.
                if let Some(src) = m.get("source_relation") {
                    self.range_item(src, &mut scope);
                }
                if let Some(j) = m.get("join_condition") {
                    self.expr(j, &scope);
                }
                let mut t = Taint::CLEAN;
                for w in arr(m, "merge_when_clauses") {
                    t = t.join(self.expr(w, &scope));
                }
                self.launder(t, "MERGE of masked values");
            }
        }
        // Writing a table with masked columns touches them: the server's errors
        // quote its rows (`Failing row contains (...)`, a duplicate key's value).
        self.note(target);
        let returning = m
            .get("returning_clause")
            .and_then(Value::as_object)
            .map(|r| arr(r, "exprs"))
            .unwrap_or(&[]);
        if returning.is_empty() {
            return Some(Vec::new());
        }
        self.targets(returning, &scope)
    }

    pub(super) fn copy(&mut self, m: &Map, scope: &Scope<'_>, l: &mut Lineage) {
        if m.get("is_from").and_then(Value::as_bool).unwrap_or(false) {
            return;
        }
        let t = if let Some(q) = m.get("query") {
            let before = self.touched;
            let out = self.query(q, scope);
            join_all(&out.cols, self.touched.join(before))
        } else if let Some(r) = m.get("relation").and_then(Value::as_object) {
            let rel = self.range_var(r, scope);
            let wanted = name_list(Some(&Value::Array(arr(m, "attlist").to_vec())));
            match &rel.cols {
                Some(c) if !wanted.is_empty() => c
                    .iter()
                    .filter(|(n, _)| wanted.contains(n))
                    .fold(Taint::CLEAN, |a, (_, t)| a.join(*t)),
                Some(c) => c.iter().fold(Taint::CLEAN, |a, (_, t)| a.join(*t)),
                None => rel.whole,
            }
        } else {
            Taint::UNKNOWN
        };
        let t = self.note(t);
        let to_file = !str_field(m, "filename").is_empty()
            || m.get("is_program")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if to_file {
            self.launder(t, "COPY of masked columns to a file or program");
        } else {
            let binary = arr(m, "options").iter().any(|o| {
                matches!(node(o), Some((NodeKind::DefElem, d))
                if str_field(d, "defname") == "format"
                    && d.get("arg").and_then(node).is_some_and(|(_, s)| {
                        str_field(s, "sval").eq_ignore_ascii_case("binary")
                    }))
            });
            l.copy_out = Some(binary);
        }
    }
}
