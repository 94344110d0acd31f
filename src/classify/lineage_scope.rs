//! How names in a query reach relations and columns, as the server resolves them
//! (src/backend/parser/parse_relation.c, parse_clause.c): an unqualified column is
//! looked for in every visible relation of the innermost level first, then outward;
//! only when no level has it is it a whole row; a join's columns are the USING /
//! NATURAL merged ones first, then the rest of each side, and they hide the tables
//! inside it (all of them, by name too, when the join has an alias). Anything pgmoat
//! cannot resolve is [`Taint::UNKNOWN`]: the server resolves it to something.

use super::analyzer::*;
use super::lineage_names::UNKNOWN_NAME;
use super::model::*;
use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// The taint of the column(s) `c` of a relation: every column of that name (the
/// server refuses a reference that is ambiguous, so joining them costs nothing), else
/// any column whose name pgmoat could not tell. None when it has none.
pub(super) fn find_col(cols: &[(String, Taint)], c: &str) -> Option<Taint> {
    let pick = |name: &str| {
        cols.iter()
            .filter(|(n, _)| n == name)
            .fold(None::<Taint>, |a, (_, t)| add(a, *t))
    };
    pick(c).or_else(|| pick(UNKNOWN_NAME))
}

/// `a` joined with `t` (`t` when there is no `a`: joining with CLEAN would drop
/// [`Taint::fresh`]).
fn add(a: Option<Taint>, t: Taint) -> Option<Taint> {
    Some(a.map_or(t, |a| a.join(t)))
}

/// A relation named `name` that a qualified reference reaches, innermost level first.
fn named<'s>(scope: &'s Scope<'s>, name: &str) -> Option<&'s Rel> {
    let mut s = Some(scope);
    while let Some(sc) = s {
        if let Some(r) = sc.rels.iter().find(|r| !r.name_hidden && r.name == name) {
            return Some(r);
        }
        s = sc.parent;
    }
    None
}

impl Analyzer<'_> {
    /// A column reference: `c`, `t.c`, `s.t.c`, or a whole row `t`.
    pub(super) fn column(&mut self, fields: &[String], scope: &Scope<'_>) -> Taint {
        match fields {
            [c] => self.bare_column(c, scope),
            // `t.c`, `schema.t.c`, `db.schema.t.c` (the server refuses another db).
            [.., t, c] if fields.len() <= 4 => {
                let Some(r) = named(scope, t) else {
                    return Taint::UNKNOWN;
                };
                if c == "*" {
                    return r.whole;
                }
                match &r.cols {
                    Some(cols) => find_col(cols, c).unwrap_or_else(|| {
                        if SYSTEM_COLUMNS.contains(&c.as_str()) {
                            Taint::CLEAN
                        } else {
                            // Not a column: `u.f` is the call `f(u)` (attribute
                            // notation, `u.row_to_json`), which sees the whole row.
                            r.whole.join(self.rels.function(c)).derive()
                        }
                    }),
                    None => r.whole,
                }
            }
            _ => Taint::UNKNOWN,
        }
    }

    /// An unqualified name: a column of the innermost level that has one, else a
    /// whole row, else (in ORDER BY, GROUP BY, DISTINCT ON) an output column. A
    /// relation whose columns pgmoat does not know (a function, a catalog) may or may
    /// not have it: then it is that relation's, or whatever an outer level gives.
    fn bare_column(&mut self, c: &str, scope: &Scope<'_>) -> Taint {
        let mut maybe = None::<Taint>;
        let mut s = Some(scope);
        while let Some(sc) = s {
            let mut found = None::<Taint>;
            let mut here = None::<Taint>;
            for r in sc.rels.iter().filter(|r| !r.cols_hidden) {
                match &r.cols {
                    Some(cols) => {
                        if let Some(t) = find_col(cols, c) {
                            found = add(found, t);
                        }
                    }
                    None => here = add(here, r.whole),
                }
            }
            // Found at this level: a relation of the same level that had it too would
            // make the reference ambiguous (refused); an inner one would have won.
            if let Some(t) = found {
                return maybe.map_or(t, |m| m.join(t));
            }
            if let Some(h) = here {
                maybe = add(maybe, h);
            }
            s = sc.parent;
        }
        let row = named(scope, c).map(|r| r.whole);
        let output = self.output_names.as_deref().and_then(|o| find_col(o, c));
        match (maybe, row.or(output)) {
            (Some(m), Some(t)) => m.join(t),
            (Some(t), None) | (None, Some(t)) => t,
            // The server resolves it to something pgmoat does not see.
            (None, None) => Taint::UNKNOWN,
        }
    }

    /// `*` or `t.*` in a target list.
    pub(super) fn star(&mut self, qual: &[String], scope: &Scope<'_>) -> Option<Cols> {
        let mut out = Vec::new();
        let mut known = true;
        let rels: Vec<&Rel> = match qual.last() {
            None => scope.rels.iter().filter(|r| !r.cols_hidden).collect(),
            Some(q) => named(scope, q).into_iter().collect(),
        };
        if rels.is_empty() && qual.last().is_some() {
            self.note(Taint::UNKNOWN);
            return None;
        }
        for r in rels {
            match &r.cols {
                Some(c) => {
                    for (_, t) in c {
                        self.note(*t);
                    }
                    out.extend(c.iter().cloned());
                }
                None => {
                    self.note(r.whole);
                    known = false;
                }
            }
        }
        known.then_some(out)
    }

    /// `a JOIN b`: its columns as the server lists them (merged USING / NATURAL
    /// columns, then each side's others), renamed by an alias list, hiding the tables
    /// inside it.
    pub(super) fn join(&mut self, m: &Map, scope: &mut Scope<'_>) {
        let first = scope.rels.len();
        if let Some(l) = m.get("larg") {
            self.range_item(l, scope);
        }
        let mid = scope.rels.len();
        if let Some(r) = m.get("rarg") {
            self.range_item(r, scope);
        }
        if let Some(q) = m.get("quals") {
            self.expr(q, scope);
        }
        let left = side_cols(&scope.rels[first..mid]);
        let right = side_cols(&scope.rels[mid..]);
        let whole = scope.rels[first..]
            .iter()
            .fold(Taint::CLEAN, |a, r| a.join(r.whole));
        let natural = m.get("is_natural").and_then(Value::as_bool) == Some(true);
        let using: Option<Vec<String>> = if natural {
            match (&left, &right) {
                (Some(l), Some(r)) => Some(
                    l.iter()
                        .filter(|(n, _)| r.iter().any(|(rn, _)| rn == n))
                        .map(|(n, _)| n.clone())
                        .collect(),
                ),
                _ => None,
            }
        } else {
            Some(name_list(Some(&Value::Array(
                arr(m, "using_clause").to_vec(),
            ))))
        };
        // A merged column is the left value, the right one, or either (outer joins):
        // an equi-join's sides are equal where both exist, so it carries both.
        let (cols, merged) = match (left, right, using) {
            (Some(l), Some(r), Some(using)) => {
                let merged: Cols = using
                    .iter()
                    .map(|u| {
                        let t = match (find_col(&l, u), find_col(&r, u)) {
                            (Some(a), Some(b)) => a.join(b),
                            _ => Taint::UNKNOWN,
                        };
                        (u.clone(), t)
                    })
                    .collect();
                let rest = |side: Cols| side.into_iter().filter(|(n, _)| !using.contains(n));
                let mut cols = merged.clone();
                cols.extend(rest(l));
                cols.extend(rest(r));
                (Some(cols), Some(merged))
            }
            _ => (None, None),
        };
        let (alias, names) = alias_of(m);
        // A side whose columns pgmoat does not know (a function in FROM): the join's
        // column list is not known either. Without USING or NATURAL each column is
        // still exactly one side's (a name both had would be ambiguous), so they stay
        // reachable through the sides; with them, only the join (unknown) answers.
        let merges = natural || !arr(m, "using_clause").is_empty();
        // (An alias list renames the join's columns: then too only the join answers.)
        let through_join = cols.is_some() || merges || !names.is_empty();
        for r in &mut scope.rels[first..] {
            r.cols_hidden |= through_join;
            r.name_hidden |= alias.is_some();
        }
        // `JOIN ... USING (id) AS x`: x names the merged columns only.
        if let Some(a) = m.get("join_using_alias").and_then(Value::as_object) {
            let name = str_field(a, "aliasname").to_owned();
            if !name.is_empty() {
                scope.rels.push(Rel {
                    name,
                    cols: merged,
                    whole,
                    cols_hidden: true,
                    name_hidden: false,
                });
            }
        }
        scope.rels.push(Rel {
            name_hidden: alias.is_none(),
            name: alias.unwrap_or_default(),
            cols: rename(cols, &names),
            whole,
            cols_hidden: !through_join,
        });
    }
}

/// The columns one side of a join shows (its visible relations' in order), None
/// when any is not known.
fn side_cols(rels: &[Rel]) -> Option<Cols> {
    let mut out = Vec::new();
    for r in rels.iter().filter(|r| !r.cols_hidden) {
        out.extend(r.cols.as_ref()?.iter().cloned());
    }
    Some(out)
}

/// A whole row: `ROW(...)`, `u.*`, or `u` naming a relation in scope and no column
/// (a relation whose columns are not known may have a column of that name).
pub(super) fn is_row(v: &Value, scope: &Scope<'_>) -> bool {
    match node(v) {
        Some((NodeKind::RowExpr, _)) => true,
        Some((NodeKind::ColumnRef, c)) => {
            let fields = name_list(c.get("fields"));
            let name = match fields.as_slice() {
                [n] => n,
                [n, star] if star == "*" => return named(scope, n).is_some(),
                _ => return false,
            };
            let mut s = Some(scope);
            while let Some(sc) = s {
                for r in sc.rels.iter().filter(|r| !r.cols_hidden) {
                    match &r.cols {
                        Some(cols) if find_col(cols, name).is_some() => return false,
                        None => return false,
                        Some(_) => {}
                    }
                }
                s = sc.parent;
            }
            named(scope, name).is_some()
        }
        _ => false,
    }
}
