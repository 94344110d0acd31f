//! FROM-clause items: what each relation, derived table or function in FROM brings
//! into a query's scope (its name, its columns and their taints; joins are merged in
//! `lineage_scope.rs`). Separate from the statement and SELECT structure (`lineage.rs`)
//! and from expressions (`lineage_expr.rs`): this is where the catalog's relations
//! enter the analysis.

use super::analyzer::*;
use super::lineage_scope::is_row;
use super::model::*;
use crate::classify::node::{list_items, name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

impl Analyzer<'_> {
    pub(super) fn range_item(&mut self, item: &Value, scope: &mut Scope<'_>) {
        let Some((ty, m)) = node(item) else {
            return;
        };
        match ty {
            NodeKind::RangeVar => {
                let rel = self.range_var(m, scope);
                scope.rels.push(rel);
            }
            NodeKind::RangeSubselect => {
                let (alias, names) = alias_of(m);
                let before = self.touched;
                let out = match m.get("subquery") {
                    Some(q) => self.query(q, scope),
                    None => Out { cols: None },
                };
                let cols = rename(out.cols, &names);
                let whole = match &cols {
                    Some(c) => whole_of(c),
                    None => self.touched.join(before).derive(),
                };
                scope.rels.push(Rel {
                    name: alias.unwrap_or_default(),
                    cols,
                    whole,
                    ..Rel::default()
                });
            }
            NodeKind::JoinExpr => self.join(m, scope),
            NodeKind::RangeTableSample => {
                // `t TABLESAMPLE ...`: t itself (with its alias), sampled.
                if let Some(r) = m.get("relation") {
                    self.range_item(r, scope);
                }
                for k in ["args", "repeatable"] {
                    if let Some(v) = m.get(k) {
                        self.expr(v, scope);
                    }
                }
            }
            NodeKind::RangeFunction => {
                let (alias, names) = alias_of(m);
                let mut t = Taint::CLEAN;
                let mut fname = String::new();
                for f in arr(m, "functions") {
                    if let Some(items) = list_items(f).and_then(Value::as_array) {
                        for it in items {
                            if fname.is_empty() {
                                if let Some((NodeKind::FuncCall, fc)) = node(it) {
                                    fname = name_list(fc.get("funcname"))
                                        .last()
                                        .cloned()
                                        .unwrap_or_default();
                                }
                            }
                            t = t.join(self.expr(it, scope));
                        }
                    }
                }
                let t = self.note(t.derive());
                // `json_each(row_to_json(u))`: the keys are u's column names, only the
                // values carry its data.
                if let Some(mut cols) = self.names_and_values(m, t, scope) {
                    if m.get("ordinality").and_then(Value::as_bool) == Some(true) {
                        cols.push(("ordinality".to_owned(), Taint::CLEAN));
                    }
                    scope.rels.push(Rel {
                        name: alias.unwrap_or(fname),
                        cols: rename(Some(cols), &names),
                        whole: t,
                        ..Rel::default()
                    });
                    return;
                }
                // A column definition list names every column; an alias list may
                // name fewer than the function returns (the rest keep names pgmoat
                // does not know), so then the columns are not known.
                let defs = coldef_names(arr(m, "coldeflist"));
                let cols = (!defs.is_empty())
                    .then(|| rename(Some(defs.into_iter().map(|n| (n, t)).collect()), &names))
                    .flatten();
                scope.rels.push(Rel {
                    name: alias.unwrap_or(fname),
                    cols,
                    whole: t,
                    ..Rel::default()
                });
            }
            _ => {
                // XMLTABLE, JSON_TABLE, TABLESAMPLE...: whatever they read, any column.
                let t = self.generic(m, scope).derive();
                let (alias, _) = alias_of(m);
                scope.rels.push(Rel {
                    name: alias.unwrap_or_default(),
                    cols: None,
                    whole: t,
                    ..Rel::default()
                });
            }
        }
    }

    /// The columns of a set-returning function in FROM that splits an object whose
    /// keys are names (a row's columns, literal keys) into keys and values: the keys
    /// are clean, the values carry `t`. None for anything else.
    fn names_and_values(&mut self, m: &Map, t: Taint, scope: &Scope<'_>) -> Option<Cols> {
        let [f] = arr(m, "functions") else {
            return None;
        };
        let items = list_items(f)?.as_array()?;
        let Some((NodeKind::FuncCall, fc)) = items.first().and_then(node) else {
            return None;
        };
        if items.iter().skip(1).any(|i| node(i).is_some()) {
            return None; // a column definition list
        }
        let full = name_list(fc.get("funcname"));
        if full.len() > 2 || self.rels.runs_user_code(&full.join(".")) {
            return None;
        }
        let name = full.last()?.to_ascii_lowercase();
        let keys_only = KEY_FUNCTIONS.contains(&name.as_str());
        if !keys_only && !KEY_VALUE_FUNCTIONS.contains(&name.as_str()) {
            return None;
        }
        let [arg] = arr(fc, "args") else {
            return None;
        };
        if !self.keys_are_names(arg, scope) {
            return None;
        }
        Some(if keys_only {
            vec![(name, Taint::CLEAN)]
        } else {
            vec![("key".to_owned(), Taint::CLEAN), ("value".to_owned(), t)]
        })
    }

    /// Whether the keys of this JSON or hstore value are names rather than data:
    /// `row_to_json(u)`, `to_jsonb(u)`, `hstore(u)` of a whole row or a ROW(...), or a
    /// `json_build_object` whose keys are literals.
    pub(super) fn keys_are_names(&self, v: &Value, scope: &Scope<'_>) -> bool {
        let Some((NodeKind::FuncCall, fc)) = node(v) else {
            return false;
        };
        if fc.get("agg_star").and_then(Value::as_bool) == Some(true)
            || fc.get("over").is_some_and(|o| !o.is_null())
            || name_list(fc.get("funcname")).len() > 2
        {
            return false;
        }
        let names = name_list(fc.get("funcname"));
        if self.rels.runs_user_code(&names.join(".")) {
            return false;
        }
        let name = names
            .last()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let args = arr(fc, "args");
        match name.as_str() {
            "row_to_json" | "to_json" | "to_jsonb" | "hstore" => {
                let pretty = name == "row_to_json" && args.len() == 2;
                (args.len() == 1 || pretty) && args.first().is_some_and(|a| is_row(a, scope))
            }
            "json_build_object" | "jsonb_build_object" => args
                .iter()
                .step_by(2)
                .all(|k| matches!(node(k), Some((NodeKind::AConst, _)))),
            _ => false,
        }
    }

    pub(super) fn range_var(&mut self, m: &Map, scope: &Scope<'_>) -> Rel {
        let schema = str_field(m, "schemaname");
        let name = str_field(m, "relname");
        let (alias, names) = alias_of(m);
        let shown = alias.unwrap_or_else(|| name.to_owned());
        if schema.is_empty() {
            if let Some((cols, whole)) = scope.cte(name) {
                return Rel {
                    name: shown,
                    cols: rename(cols, &names),
                    whole,
                    ..Rel::default()
                };
            }
        }
        if self.locals.trust && matches!(schema, "" | "pg_temp") {
            if let Some(cols) = self.locals.tables.get(name) {
                let cols = cols.iter().map(|c| (c.clone(), Taint::FRESH)).collect();
                return Rel {
                    name: shown,
                    cols: rename(Some(cols), &names),
                    // RowDescription names the table for a whole row too.
                    whole: Taint::FRESH,
                    ..Rel::default()
                };
            }
            if let Some((query, aliases)) = self.locals.views.get(name) {
                // A view the message made: what its query reads, traced as when it
                // was made (names made since resolve at least as strictly now).
                let before = self.touched;
                let out = self.query(query, &Scope::default());
                let cols = rename(out.cols, aliases).map(|c| {
                    c.into_iter()
                        .map(|(n, t)| (n, if t.is_clean() { Taint::FRESH } else { t }))
                        .collect::<Cols>()
                });
                let whole = match &cols {
                    Some(c) => whole_of(c),
                    None => self.touched.join(before).derive(),
                };
                return Rel {
                    name: shown,
                    cols: rename(cols, &names),
                    whole,
                    ..Rel::default()
                };
            }
        }
        // A relation an earlier statement of the message made or changed is not the
        // one the catalog describes (a temporary one shadows any table, system ones
        // included): pgmoat cannot tell what it holds.
        let shadowed = !self.ddl_target
            && !matches!(schema, "pg_catalog" | "information_schema")
            && (self.locals.made.contains(name)
                || (self.locals.code_ran && matches!(schema, "" | "pg_temp")));
        if shadowed {
            self.unknown_relation = true;
            self.note(Taint::UNKNOWN);
            return Rel {
                name: shown,
                whole: Taint::UNKNOWN,
                ..Rel::default()
            };
        }
        let schema = (!schema.is_empty()).then_some(schema);
        match self.rels.relation(schema, name) {
            Relation::Known(cols) => {
                if !self.ddl_target {
                    self.policies_run(schema, name, false);
                }
                let whole = whole_of(&cols);
                Rel {
                    name: shown,
                    cols: rename(Some(cols), &names),
                    whole,
                    ..Rel::default()
                }
            }
            Relation::System => Rel {
                name: shown,
                cols: None,
                whole: Taint::CLEAN,
                ..Rel::default()
            },
            r @ (Relation::Sensitive | Relation::Unknown) => {
                // Fail closed: anything read from it could be anything.
                if matches!(r, Relation::Unknown) {
                    self.unknown_relation = true;
                }
                self.note(Taint::UNKNOWN);
                Rel {
                    name: shown,
                    cols: None,
                    whole: Taint::UNKNOWN,
                    ..Rel::default()
                }
            }
        }
    }
}

/// Set-returning functions that split a JSON object or hstore into (key, value) rows.
const KEY_VALUE_FUNCTIONS: &[&str] = &[
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "each",
];

/// Functions that return the keys of a JSON object or hstore.
pub(super) const KEY_FUNCTIONS: &[&str] =
    &["json_object_keys", "jsonb_object_keys", "skeys", "akeys"];

fn coldef_names(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|c| match node(c) {
            Some((NodeKind::ColumnDef, d)) => Some(str_field(d, "colname").to_owned()),
            _ => None,
        })
        .collect()
}
