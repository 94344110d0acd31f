//! Expressions and target lists: the taint of any value a query computes (column
//! references, casts, sub-selects, function and operator calls). Separate from the
//! query structure (`lineage.rs`) and FROM items (`lineage_from.rs`), which call it
//! for every expression they hold.

use super::analyzer::*;
use super::lineage_from::KEY_FUNCTIONS;
use super::lineage_names::output_name;
use super::lineage_scope::is_row;
use super::model::*;
use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// Functions that carry a value out of the result, where masking never sees it: a
/// notification's payload, a setting anyone can read back, a sequence's value
/// (`currval`, `nextval` read it back clean), an advisory lock's key (`pg_locks`).
pub(crate) const SINK_FUNCTIONS: &[&str] = &[
    "pg_notify",
    "set_config",
    "setval",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_advisory_xact_lock",
    "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
    "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared",
    // A value written to the WAL (read back through logical decoding), to a server
    // file (adminpack), or a large object exported to a server file.
    "pg_logical_emit_message",
    "pg_file_write",
    "lo_export",
    // Names the server keeps and shows to anyone (pg_replication_origin,
    // pg_replication_slots, the WAL's restore points, a backup's label; review s37-vfix
    // U4).
    "pg_replication_origin_create",
    "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot",
    "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot",
    "pg_create_restore_point",
    "pg_backup_start",
    "pg_start_backup",
];

const TEXT_TYPES: &[&str] = &[
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "citext",
    "character varying",
];

impl Analyzer<'_> {
    /// A target list (SELECT's or RETURNING's): per output column, name and taint.
    pub(super) fn targets(&mut self, list: &[Value], scope: &Scope<'_>) -> Option<Cols> {
        let mut cols: Cols = Vec::new();
        let mut shape_known = true;
        for t in list {
            let Some((NodeKind::ResTarget, rt)) = node(t) else {
                shape_known = false;
                continue;
            };
            let Some(val) = rt.get("val") else { continue };
            if let Some((NodeKind::ColumnRef, cr)) = node(val) {
                let fields = name_list(cr.get("fields"));
                if fields.last().map(String::as_str) == Some("*") {
                    match self.star(&fields[..fields.len() - 1], scope) {
                        Some(expanded) => cols.extend(expanded),
                        None => shape_known = false,
                    }
                    continue;
                }
            }
            let taint = self.expr(val, scope);
            let name = match str_field(rt, "name") {
                "" => output_name(val),
                n => n.to_owned(),
            };
            cols.push((name, taint));
        }
        shape_known.then_some(cols)
    }

    /// Any expression: its taint, noting every masked reference on the way.
    pub(super) fn expr(&mut self, v: &Value, scope: &Scope<'_>) -> Taint {
        match v {
            Value::Array(items) => items
                .iter()
                .fold(Taint::CLEAN, |acc, i| acc.join(self.expr(i, scope))),
            Value::Object(obj) => match node(v) {
                Some((ty, m)) => self.node(ty, m, scope),
                None => self.generic(obj, scope).derive(),
            },
            _ => Taint::CLEAN,
        }
    }

    fn node(&mut self, ty: NodeKind, m: &Map, scope: &Scope<'_>) -> Taint {
        match ty {
            NodeKind::ColumnRef => {
                let fields = name_list(m.get("fields"));
                let t = self.column(&fields, scope);
                self.note(t)
            }
            NodeKind::TypeCast => {
                let inner = m.get("arg").map_or(Taint::CLEAN, |a| self.expr(a, scope));
                let tn = m.get("type_name").and_then(Value::as_object);
                let to = tn
                    .map(|tn| name_list(tn.get("names")))
                    .and_then(|n| n.last().cloned())
                    .unwrap_or_default();
                // A length (`::char(5)`) cuts the value: no longer the column itself.
                let sized = tn.is_some_and(|tn| !arr(tn, "typmods").is_empty());
                // A user-defined cast runs a function, which may read anything.
                let via = self.note(self.rels.cast(&to));
                self.runs_code |= self.rels.cast_runs_code(&to);
                if !sized
                    && via.is_clean()
                    && TEXT_TYPES.contains(&to.to_ascii_lowercase().as_str())
                {
                    inner
                } else {
                    inner.join(via).derive()
                }
            }
            NodeKind::ResTarget => m.get("val").map_or(Taint::CLEAN, |v| self.expr(v, scope)),
            NodeKind::SubLink => {
                if let Some(t) = m.get("testexpr") {
                    self.expr(t, scope);
                }
                let before = self.touched;
                self.touched = Taint::CLEAN;
                let out = match m.get("subselect") {
                    Some(q) => self.query(q, scope),
                    None => Out { cols: None },
                };
                let inside = self.touched;
                self.touched = before.join(inside);
                let scalar = m.get("sub_link_type").and_then(Value::as_i64) == Some(5);
                match &out.cols {
                    // `(SELECT ssn FROM users LIMIT 1)` is the column's value itself.
                    Some(c) if scalar && c.len() == 1 => c[0].1,
                    Some(c) => join_all(&Some(c.clone()), inside).derive(),
                    None => inside.derive(),
                }
            }
            NodeKind::SelectStmt => {
                let out = self.select(m, scope);
                join_all(&out.cols, self.touched).derive()
            }
            NodeKind::FuncCall => {
                let names = name_list(m.get("funcname"));
                let name = names.join(".");
                let bare = names.last().map(|n| n.to_ascii_lowercase());
                if bare.as_deref().is_some_and(|b| KEY_FUNCTIONS.contains(&b))
                    && names.len() <= 2
                    && !self.rels.runs_user_code(&name)
                    && matches!(arr(m, "args"), [a] if self.keys_are_names(a, scope))
                {
                    // `jsonb_object_keys(to_jsonb(u))`: u's column names.
                    self.generic(m, scope);
                    return Taint::CLEAN;
                }
                // `pg_temp.f()` of a function the message made without parameters is
                // that function: no overload or other schema can be called instead.
                let nullary = names.len() == 2
                    && arr(m, "args").is_empty()
                    && m.get("agg_star").and_then(Value::as_bool) != Some(true)
                    && self.locals.nullary.contains(&name.to_ascii_lowercase());
                let mut stores = false;
                let f = match self.locals.function(&name) {
                    Some(true)
                        if self.locals.trust
                            && (nullary
                                || self
                                    .rels
                                    .function_named(bare.as_deref().unwrap_or_default())
                                    .is_none_or(|t| t.is_clean())) =>
                    {
                        Taint::CLEAN
                    }
                    Some(_) => {
                        self.runs_code = true;
                        self.makes_relations = true;
                        Taint::UNKNOWN
                    }
                    None => {
                        let f = self.rels.function(&name);
                        self.runs_code |= !f.is_clean() || self.rels.runs_user_code(&name);
                        self.makes_relations |= self.rels.may_make_relations(&name);
                        stores = self.rels.may_store(&name);
                        f
                    }
                };
                self.forgets_cursors |= self.rels.runs_user_code(&name);
                let args = self.generic(m, scope);
                if stores {
                    // What its body reads, or what it is given: both can be kept.
                    self.launder(
                        f.join(args),
                        "calling a function that reads or is given masked values and keeps \
                         values (writes a table, notifies, changes a setting or a sequence)",
                    );
                }
                self.changes_path |= bare.as_deref() == Some("set_config");
                if bare.is_some_and(|b| SINK_FUNCTIONS.contains(&b.as_str())) {
                    self.launder(args, "passing masked values to a function that keeps them (a notification, a setting, a sequence, a lock key)");
                }
                self.note(f).join(args).derive()
            }
            NodeKind::AExpr => {
                // A user-defined operator runs its function.
                let op = name_list(m.get("name")).join(".");
                let f = self.rels.operator(&op);
                self.runs_code |= self.rels.operator_runs_code(&op);
                let args = self.generic(m, scope);
                self.note(f).join(args).derive()
            }
            NodeKind::AIndirection => {
                // `(s).a`, s a row in scope: that row's column a, as `s.a` is.
                let ind = arr(m, "indirection");
                if let (Some(arg), [field]) = (m.get("arg"), ind) {
                    if let (Some((NodeKind::ColumnRef, c)), Some((NodeKind::String, f))) =
                        (node(arg), node(field))
                    {
                        let row = name_list(c.get("fields"));
                        if row.len() == 1 && is_row(arg, scope) {
                            let path = [row[0].clone(), str_field(f, "sval").to_owned()];
                            let t = self.column(&path, scope);
                            return self.note(t);
                        }
                    }
                }
                self.generic(m, scope).derive()
            }
            NodeKind::AConst | NodeKind::ParamRef | NodeKind::SqlvalueFunction => Taint::CLEAN,
            _ => self.generic(m, scope).derive(),
        }
    }

    /// Every value inside a message, joined.
    pub(super) fn generic(&mut self, m: &Map, scope: &Scope<'_>) -> Taint {
        let mut t = Taint::CLEAN;
        for (k, v) in m {
            if matches!(v, Value::Object(_) | Value::Array(_)) && k != "type_name" {
                t = t.join(self.expr(v, scope));
            }
        }
        t
    }
}
