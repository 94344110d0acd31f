//! Which rows an UPDATE or DELETE (or an upsert) can miss: the written table, the
//! names its row goes by (its alias, and a join partner or subquery that is the same
//! table read at the same row), and the verdict on its WHERE.
//!
//! A verdict is one of three: always true (`x OR NOT x`, `t.id = t2.id` where t2 is
//! the written table itself, `(SELECT true)`, a clause that names no column of the
//! written table at all); true for every row if some columns are NOT NULL (`id IS
//! NOT NULL`, `EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id)`): recorded in the facts
//! as [`IfNotNull`], and decided with the catalog (`Catalog::resolve`); or bounded.
//!
//! Split by concern: reads of the written table inside its WHERE (`tautology_reads`),
//! parameters read as any value a client could bind (`tautology_params`), and code
//! whose WHERE rests on its parameters or variables (`tautology_bodies`).

use std::collections::BTreeSet;

pub use bodies::{body_unbounded, plpgsql_unbounded};
use pg_query::protobuf::OnConflictAction;

use super::facts::IfNotNull;
use super::node::node;
use super::node_kind::NodeKind;
use super::tautology::{Assume, Ctx, Poss, Scope};
use super::tautology_fold::{res_target, Const};
use super::tree::{Map, Value};

/// Past this many columns the NOT NULL condition is not narrowed down (each try is
/// one more reading of the clause); it then asks for all of them.
const NARROW_MAX: usize = 12;

impl<'v> Scope<'v> {
    /// The table a statement writes, with the statement's CTEs.
    fn of_relation(rel: &Map, body: &'v Map) -> Scope<'v> {
        let name = text(rel, "relname").to_owned();
        let qual = alias(rel).unwrap_or_else(|| name.clone());
        Scope {
            schema: text(rel, "schemaname").to_owned(),
            name,
            selves: vec![qual],
            any: false,
            ctes: reads::ctes_of(body),
            params: &[],
        }
    }

    /// The target of an UPDATE/DELETE. A FROM/USING item that is the same table (a
    /// RangeVar, or a derived table or CTE that is a whole copy of it) can be that very
    /// row: reading its columns as the written row's own shows the clause true for
    /// every row whenever it is true for that pairing, whatever the other items' rows
    /// are (every row, or none when one of them is empty).
    fn of_write(body: &'v Map, enclosing: &'v [Map]) -> Option<Scope<'v>> {
        let rel = body.get("relation").and_then(Value::as_object)?;
        let mut scope = Scope::of_relation(rel, body);
        // Its own CTEs first, then the nearest enclosing statement's: names resolve
        // as the server resolves them, innermost first.
        scope.ctes.extend(enclosing.iter().rev());
        let from = body
            .get("from_clause")
            .or_else(|| body.get("using_clause"))
            .and_then(Value::as_array);
        scope.add_selves(from.into_iter().flatten());
        Some(scope)
    }

    /// The items (of FROM, USING, a MERGE source) that can be the written row. Whole
    /// copies are judged with nothing taken to be NOT NULL (`WHERE true` keeps every
    /// row, `WHERE id IS NOT NULL` is not taken to).
    fn add_selves<'i>(&mut self, items: impl Iterator<Item = &'i Value>) {
        let none = BTreeSet::new();
        let quals: Vec<String> = {
            let c = Ctx::new(self, Assume::Only(&none));
            items.filter_map(|i| c.source(i, &[], 0)).collect()
        };
        self.selves.extend(quals);
    }

    /// Whether the clause names the written row anywhere (a column that could be its
    /// own, `CURRENT OF`); a clause that does not is the same for every row.
    fn named_in(&self, v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                match node(v) {
                    Some((NodeKind::CurrentOfExpr, _)) => return true,
                    Some((NodeKind::ColumnRef, c)) if self.row_column(c, &[]).is_some() => {
                        return true
                    }
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
    params::verdict(scope, clause, |binding| {
        verdict_with(scope, clause, binding)
    })
}

/// The verdict with parameters read as `binding` (none: values unknown).
fn verdict_with(scope: &Scope, clause: &Value, binding: &[(i64, Const)]) -> Verdict {
    if !scope.named_in(clause) {
        // The same for every row: it bounds nothing unless it is plainly false (read
        // with nothing taken to be NOT NULL: `o.x IS NULL` may hold).
        let none = BTreeSet::new();
        let c = Ctx::new(scope, Assume::Only(&none)).binding(binding);
        let p = c.poss(clause, &[]);
        return Verdict {
            always: p.t,
            if_not_null: None,
            looked: c.looked.get(),
        };
    }
    let all = Ctx::new(scope, Assume::All).binding(binding);
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
        let c = Ctx::new(scope, Assume::Only(nn)).binding(binding);
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
pub fn judge_write(body: &Map, clause: &Value, enclosing: &[Map]) -> Verdict {
    match Scope::of_write(body, enclosing) {
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
    let mut scope = Scope::of_relation(rel, body);
    scope.add_selves(body.get("source_relation").into_iter());
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
    let scope = Scope::of_relation(rel, body);
    let Some((NodeKind::SelectStmt, sel)) = body.get("select_stmt").and_then(node) else {
        return Some((false, false));
    };
    let (whole, looked) = copies_table(&scope, sel, 0);
    if !whole {
        return Some((false, looked));
    }
    match oc.get("where_clause").filter(|w| !w.is_null()) {
        None => Some((true, looked)),
        Some(w) => {
            let (always, l) = is_tautology(w);
            Some((always, looked || l))
        }
    }
}

/// Whether an upsert's source gives every row of the table in its own columns: the
/// table itself (or a whole copy of it in a derived table or CTE), with no WHERE of
/// its own but one true for every row and nothing else that narrows; or a UNION
/// with such an arm, an INTERSECT of two. Whether a literal decided, too.
fn copies_table(scope: &Scope, sel: &Map, depth: usize) -> (bool, bool) {
    use pg_query::protobuf::SetOperation;
    if reads::narrows(sel) || depth > 8 {
        return (false, false);
    }
    let arm = |k: &str| {
        sel.get(k)
            .and_then(Value::as_object)
            .map_or((false, false), |a| copies_table(scope, a, depth + 1))
    };
    let op = sel.get("op").and_then(Value::as_i64).unwrap_or(0);
    if op == SetOperation::SetopUnion as i64 || op == SetOperation::SetopIntersect as i64 {
        let ((a, la), (b, lb)) = (arm("larg"), arm("rarg"));
        let both = op == SetOperation::SetopIntersect as i64;
        return (if both { a && b } else { a || b }, la || lb);
    }
    if op != SetOperation::SetopNone as i64 && op != 0 {
        return (false, false); // EXCEPT
    }
    let none = BTreeSet::new();
    let c = Ctx::new(scope, Assume::Only(&none));
    // One source: the table itself, or a whole copy of it (a derived table, a CTE).
    let from = sel.get("from_clause").and_then(Value::as_array);
    let Some([item]) = from.map(Vec::as_slice) else {
        return (false, false);
    };
    let Some(qual) = c.source(item, &reads::ctes_of(sel), 0) else {
        return (false, false);
    };
    let quals = [qual];
    // A WHERE of the source's own that keeps every row (`WHERE true`).
    if let Some(w) = sel.get("where_clause").filter(|w| !w.is_null()) {
        if c.poss(w, &quals) != Poss::TRUE {
            return (false, c.looked.get());
        }
    }
    // Its own columns (a permutation of them is taken to be the identity: fail closed).
    let own_columns = sel
        .get("target_list")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|t| {
            let val = res_target(t).and_then(|rt| rt.get("val"));
            match val.and_then(node) {
                Some((NodeKind::ColumnRef, col)) => scope.row_column(col, &quals).is_some(),
                _ => false,
            }
        });
    (own_columns, c.looked.get())
}

#[path = "tautology_bodies.rs"]
mod bodies;
#[path = "tautology_params.rs"]
mod params;
#[path = "tautology_reads.rs"]
mod reads;

#[cfg(test)]
#[path = "tautology_tests.rs"]
mod tests;
