//! Which rows an UPDATE or DELETE (or an upsert) can miss: the written table, the
//! names its row goes by (its alias, and a join partner or subquery that is the same
//! table read at the same row), and the verdict on its WHERE.
//!
//! A verdict is one of three: always true (`x OR NOT x`, `t.id = t2.id` where t2 is
//! the written table itself, `(SELECT true)`, a clause that names no column of the
//! written table at all); true for every row if some columns are NOT NULL (`id IS
//! NOT NULL`, `EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id)`): recorded in the facts
//! as [`IfNotNull`], and decided with the catalog (`Catalog::resolve`); or bounded.

use std::collections::BTreeSet;

use pg_query::protobuf::{OnConflictAction, SubLinkType};

use super::facts::IfNotNull;
use super::tautology::{Abs, Assume, Ctx, Poss};
use super::tautology_fold::column_fields;
use super::tree::{Map, Value};
use super::walk::{name_list, unwrap_node};

/// Past this many columns the NOT NULL condition is not narrowed down (each try is
/// one more reading of the clause); it then asks for all of them.
const NARROW_MAX: usize = 12;

/// The written table, as its WHERE names it.
pub struct Scope {
    schema: String,
    name: String,
    /// Qualifiers naming the written row: its alias (or name), and those of a join
    /// partner that is the same table (read at the same row, see [`Scope::of_write`]).
    selves: Vec<String>,
    /// Without a written table (an upsert's DO UPDATE WHERE): every column is the row's.
    any: bool,
}

impl Scope {
    /// No table known: every column counts as the written row's.
    pub fn anything() -> Scope {
        Scope {
            schema: String::new(),
            name: String::new(),
            selves: Vec::new(),
            any: true,
        }
    }

    /// Whether this is [`Scope::anything`].
    pub(super) fn knows_nothing(&self) -> bool {
        self.any
    }

    fn of_relation(rel: &Map) -> Scope {
        let name = text(rel, "relname").to_owned();
        let qual = alias(rel).unwrap_or_else(|| name.clone());
        Scope {
            schema: text(rel, "schemaname").to_owned(),
            name,
            selves: vec![qual],
            any: false,
        }
    }

    /// The target of an UPDATE/DELETE. A FROM/USING item that is the same table (a
    /// RangeVar, or a derived table or CTE that is a whole copy of it) can be that very
    /// row: reading its
    /// columns as the written row's own shows the clause true for every row whenever
    /// it is true for that pairing, whatever the other items' rows are (every row,
    /// or none when one of them is empty).
    fn of_write(body: &Map) -> Option<Scope> {
        let rel = body.get("relation").and_then(Value::as_object)?;
        let mut scope = Scope::of_relation(rel);
        let from = body
            .get("from_clause")
            .or_else(|| body.get("using_clause"))
            .and_then(Value::as_array);
        scope.add_selves(body, from.into_iter().flatten());
        Some(scope)
    }

    /// The items (of FROM, USING, a MERGE source) that can be the written row.
    fn add_selves<'v>(&mut self, body: &Map, items: impl Iterator<Item = &'v Value>) {
        // The statement's own CTEs: a name in FROM is one of them before any table.
        let ctes: Vec<&Map> = body
            .get("with_clause")
            .and_then(|w| w.get("ctes"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| match unwrap_node(c) {
                Some(("CommonTableExpr", m)) => Some(m),
                _ => None,
            })
            .collect();
        for item in items {
            let qual = match unwrap_node(item) {
                Some(("RangeVar", r)) => {
                    let name = text(r, "relname");
                    let cte = ctes
                        .iter()
                        .find(|c| text(r, "schemaname").is_empty() && text(c, "ctename") == name);
                    let whole = match cte {
                        Some(c) => self.whole_copy(c.get("ctequery"), c.get("aliascolnames")),
                        None => self.same_table(r),
                    };
                    whole.then(|| alias(r).unwrap_or_else(|| name.to_owned()))
                }
                Some(("RangeSubselect", sub)) => {
                    let renames = sub.get("alias").and_then(|a| a.get("colnames"));
                    alias(sub).filter(|_| self.whole_copy(sub.get("subquery"), renames))
                }
                _ => None,
            };
            self.selves.extend(qual);
        }
    }

    /// `SELECT * FROM t`, `SELECT id, code FROM t`: every row of the written table,
    /// its columns under their own names (no WHERE, renames or expressions), so what
    /// it is the query of can be the written row itself.
    fn whole_copy(&self, query: Option<&Value>, renames: Option<&Value>) -> bool {
        if renames
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty())
        {
            return false;
        }
        let Some(("SelectStmt", sel)) = query.and_then(unwrap_node) else {
            return false;
        };
        if present(sel, "where_clause") || self_subquery(sel, self, &[]).is_none() {
            return false;
        }
        let Some(targets) = sel.get("target_list").and_then(Value::as_array) else {
            return false;
        };
        targets.iter().all(|t| {
            let Some(rt) = t.get("node").and_then(|n| n.get("ResTarget")) else {
                return false;
            };
            let Some(("ColumnRef", c)) = rt.get("val").and_then(unwrap_node) else {
                return false;
            };
            let Some((f, n)) = column_fields(c) else {
                return false;
            };
            let name = rt.get("name").and_then(Value::as_str).unwrap_or("");
            n > 0 && (name.is_empty() || name == f[n - 1])
        })
    }

    fn same_table(&self, r: &Map) -> bool {
        let (schema, name) = (text(r, "schemaname"), text(r, "relname"));
        name == self.name && (schema == self.schema || schema.is_empty() || self.schema.is_empty())
    }

    /// The written row's column a reference names (`id`, `t.id`, `s.t.id`, a system
    /// column), reading `extra` qualifiers as the row too.
    pub(super) fn row_column<'v>(&self, c: &'v Map, extra: &[String]) -> Option<&'v str> {
        let (f, n) = column_fields(c)?;
        let is_self = |q: &str| self.selves.iter().chain(extra).any(|s| s == q);
        match &f[..n] {
            [c] => Some(c),
            [.., c] if self.any => Some(c),
            [q, c] => is_self(q).then_some(*c),
            // `s.t.id`, `db.s.t.id`: the table itself, when not under an alias.
            [.., s, t, c] => {
                let schema = s.is_empty() || self.schema.is_empty() || *s == self.schema;
                (*t == self.name && schema && self.selves.first() == Some(&self.name)).then_some(*c)
            }
            [] => None,
        }
    }

    /// Whether the clause names the written row anywhere (a column that could be its
    /// own, `CURRENT OF`); a clause that does not is the same for every row.
    fn named_in(&self, v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                match unwrap_node(v) {
                    Some(("CurrentOfExpr", _)) => return true,
                    Some(("ColumnRef", c)) if self.row_column(c, &[]).is_some() => return true,
                    _ => {}
                }
                m.iter().any(|(_, child)| self.named_in(child))
            }
            Value::Array(items) => items.iter().any(|i| self.named_in(i)),
            _ => false,
        }
    }
}

fn text<'v>(m: &'v Map, key: &str) -> &'v str {
    m.get(key).and_then(Value::as_str).unwrap_or("")
}

fn alias(m: &Map) -> Option<String> {
    m.get("alias")
        .and_then(Value::as_object)
        .map(|a| text(a, "aliasname").to_owned())
        .filter(|a| !a.is_empty())
}

fn present(m: &Map, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

/// Whether a SELECT has something that drops rows besides its WHERE (or reads a CTE of
/// its own, or is a set operation or VALUES).
fn narrowed(sel: &Map) -> bool {
    [
        "having_clause",
        "limit_count",
        "limit_offset",
        "with_clause",
        "group_clause",
        "values_lists",
        "larg",
    ]
    .iter()
    .any(|k| present(sel, k))
}

/// A subquery over the written table alone, with nothing that drops rows but its
/// WHERE: the qualifiers its row goes by (with `extra`, those of enclosing ones).
pub(super) fn self_subquery(sel: &Map, scope: &Scope, extra: &[String]) -> Option<Vec<String>> {
    if scope.any || narrowed(sel) {
        return None;
    }
    let from = sel.get("from_clause").and_then(Value::as_array)?;
    let [item] = from.as_slice() else { return None };
    let Some(("RangeVar", r)) = unwrap_node(item) else {
        return None;
    };
    if !scope.same_table(r) {
        return None;
    }
    let mut quals = extra.to_vec();
    quals.push(alias(r).unwrap_or_else(|| text(r, "relname").to_owned()));
    Some(quals)
}

impl Ctx<'_> {
    /// `EXISTS (...)`, `x IN (SELECT ...)`, `(SELECT ...)`. A subquery over the written
    /// table alone is read at the written row itself: `EXISTS (SELECT 1 FROM t t2
    /// WHERE t2.id = t.id)` holds for every row the inner WHERE holds for when t2 is
    /// that row, and `id IN (SELECT id FROM t)` for every row whose id is not NULL.
    pub(super) fn sublink(&self, body: &Map, extra: &[String]) -> Abs {
        let t = body
            .get("sub_link_type")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let Some(("SelectStmt", sel)) = body.get("subselect").and_then(unwrap_node) else {
            return Abs::Value { nullable: true };
        };
        let inner = self_subquery(sel, self.scope, extra);
        if t == SubLinkType::ExistsSublink as i64 {
            let holds = match (&inner, sel.get("from_clause")) {
                (Some(quals), _) => sel
                    .get("where_clause")
                    .filter(|w| !w.is_null())
                    .is_none_or(|w| self.poss(w, quals) == Poss::TRUE),
                // `EXISTS (SELECT)`: one row.
                (None, None) => sel.get("where_clause").is_none_or(Value::is_null),
                (None, Some(_)) => false,
            };
            return Abs::Bool(if holds {
                Poss::TRUE
            } else {
                Poss::unknown(false)
            });
        }
        if t == SubLinkType::AnySublink as i64 {
            let op = name_list(body.get("oper_name"));
            let eq = op.is_empty() || op.last().map(String::as_str) == Some("=");
            let unfiltered = sel.get("where_clause").is_none_or(Value::is_null);
            if let (true, true, Some(quals), Some(test)) =
                (eq, unfiltered, &inner, body.get("testexpr"))
            {
                let outs = sel.get("target_list").and_then(Value::as_array);
                if let (Some(("ColumnRef", a)), Some([out])) =
                    (unwrap_node(test), outs.map(Vec::as_slice))
                {
                    let b = match out.get("node").and_then(|n| n.get("ResTarget")) {
                        Some(rt) => rt.get("val").and_then(unwrap_node),
                        None => None,
                    };
                    if let Some(("ColumnRef", b)) = b {
                        let x = self.row_column(a, extra);
                        let y = self.row_column(b, quals);
                        if x.is_some() && x == y && x != Some("*") {
                            let nullable = self.eval(test, extra).nullable();
                            return Abs::Bool(Poss {
                                n: nullable,
                                ..Poss::TRUE
                            });
                        }
                    }
                }
            }
            return Abs::Bool(Poss::ANY);
        }
        if t == SubLinkType::ExprSublink as i64 && inner.is_none() {
            // `(SELECT true)`: a constant when it reads nothing.
            let outs = sel.get("target_list").and_then(Value::as_array);
            let from = sel.get("from_clause").is_some_and(|f| !f.is_null());
            let filtered = sel.get("where_clause").is_some_and(|w| !w.is_null());
            if let (false, false, Some([out])) = (from, filtered, outs.map(Vec::as_slice)) {
                if let Some(val) = out
                    .get("node")
                    .and_then(|n| n.get("ResTarget"))
                    .and_then(|rt| rt.get("val"))
                {
                    return self.eval(val, extra);
                }
            }
        }
        Abs::Value { nullable: true }
    }
}

/// The verdict on a WHERE (or condition).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// True for every row, whatever the schema.
    pub always: bool,
    /// True for every row if these columns of the written table are NOT NULL.
    pub if_not_null: Option<IfNotNull>,
    /// A literal's value decided it: no answer holds for the statement's shape.
    pub looked: bool,
}

fn verdict(scope: &Scope, clause: &Value) -> Verdict {
    if !scope.named_in(clause) {
        // The same for every row: it bounds nothing unless it is plainly false (read
        // with nothing taken to be NOT NULL: `o.x IS NULL` may hold).
        let none = BTreeSet::new();
        let c = Ctx::new(scope, Assume::Only(&none));
        let p = c.poss(clause, &[]);
        return Verdict {
            always: p.t,
            if_not_null: None,
            looked: c.looked.get(),
        };
    }
    let all = Ctx::new(scope, Assume::All);
    let p_all = all.poss(clause, &[]);
    let mut looked = all.looked.get();
    if p_all != Poss::TRUE {
        return Verdict {
            looked,
            ..Verdict::default()
        };
    }
    // Never false, even where every column may be NULL: a tautology outright.
    let mut needed: BTreeSet<String> = all.row_columns.take();
    let false_with = |nn: &BTreeSet<String>, looked: &mut bool| {
        let c = Ctx::new(scope, Assume::Only(nn));
        let p = c.poss(clause, &[]);
        *looked |= c.looked.get();
        p.f
    };
    if !false_with(&BTreeSet::new(), &mut looked) {
        return Verdict {
            always: true,
            if_not_null: None,
            looked,
        };
    }
    if scope.any || false_with(&needed, &mut looked) {
        return Verdict {
            looked,
            ..Verdict::default()
        };
    }
    // The fewest columns that must be NOT NULL (each left out in turn).
    if needed.len() <= NARROW_MAX {
        for c in needed.clone() {
            needed.remove(&c);
            if false_with(&needed, &mut looked) {
                needed.insert(c);
            }
        }
    }
    Verdict {
        always: false,
        if_not_null: Some(IfNotNull {
            schema: scope.schema.clone(),
            table: scope.name.clone(),
            columns: needed.into_iter().collect(),
        }),
        looked,
    }
}

/// The verdict on an UPDATE's or DELETE's WHERE.
pub fn judge_write(body: &Map, clause: &Value) -> Verdict {
    match Scope::of_write(body) {
        Some(scope) => verdict(&scope, clause),
        None => Verdict::default(),
    }
}

/// Whether a clause is always true without knowing its table, and whether the answer
/// looked at a literal's value.
pub fn is_tautology(clause: &Value) -> (bool, bool) {
    let v = verdict(&Scope::anything(), clause);
    (v.always, v.looked)
}

/// The verdict on a MERGE's ON or WHEN condition, for its target. A source that is
/// the target table itself (`USING t AS s`, a whole copy of it in a derived table or
/// CTE) can be the target's own row.
pub fn merge_condition(body: &Map, clause: &Value) -> Verdict {
    let Some(rel) = body.get("relation").and_then(Value::as_object) else {
        return Verdict::default();
    };
    let mut scope = Scope::of_relation(rel);
    scope.add_selves(body, body.get("source_relation").into_iter());
    verdict(&scope, clause)
}

/// Both conditions on the same table: every column either needs.
pub fn both(a: Option<IfNotNull>, b: Option<IfNotNull>) -> Option<IfNotNull> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            for c in b.columns {
                if !a.columns.contains(&c) {
                    a.columns.push(c);
                }
            }
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

/// `INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE ...`: every row of `t`
/// conflicts with itself, so the upsert updates every row. The source must be the
/// table itself (or a whole copy of it in a derived table or CTE), unfiltered, and
/// give its own columns (`*`, or plain columns of it;
/// a permutation of them is taken to be the identity, failing closed), and the
/// DO UPDATE must have no WHERE of its own that bounds it. None when the INSERT has
/// no DO UPDATE; else whether it touches every row, and whether a literal decided.
pub fn upsert_unbounded(body: &Map) -> Option<(bool, bool)> {
    let oc = body.get("on_conflict_clause").and_then(Value::as_object)?;
    let action = oc.get("action").and_then(Value::as_i64).unwrap_or(0);
    if action != OnConflictAction::OnconflictUpdate as i64 {
        return None;
    }
    let rel = body.get("relation").and_then(Value::as_object)?;
    let mut scope = Scope::of_relation(rel);
    let Some(("SelectStmt", sel)) = body.get("select_stmt").and_then(unwrap_node) else {
        return Some((false, false));
    };
    if present(sel, "where_clause") || narrowed(sel) {
        return Some((false, false));
    }
    // One source: the table itself, or a whole copy of it (a derived table, a CTE).
    let from = sel.get("from_clause").and_then(Value::as_array);
    let Some([item]) = from.map(Vec::as_slice) else {
        return Some((false, false));
    };
    let before = scope.selves.len();
    scope.add_selves(body, std::iter::once(item));
    let quals = scope.selves.split_off(before);
    if quals.is_empty() {
        return Some((false, false));
    }
    let own_columns = sel
        .get("target_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|t| {
            let val = t
                .get("node")
                .and_then(|n| n.get("ResTarget"))
                .and_then(|rt| rt.get("val"));
            match val.and_then(unwrap_node) {
                Some(("ColumnRef", c)) => scope.row_column(c, &quals).is_some(),
                _ => false,
            }
        });
    if !own_columns {
        return Some((false, false));
    }
    match oc.get("where_clause").filter(|w| !w.is_null()) {
        None => Some((true, false)),
        Some(w) => Some(is_tautology(w)),
    }
}

#[cfg(test)]
#[path = "tautology_tests.rs"]
mod tests;
