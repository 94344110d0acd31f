//! Reads of the written table inside its own WHERE. A query over the table that keeps
//! every row of it (no WHERE of its own that narrows, no HAVING, no LIMIT, no DISTINCT
//! ON) holds the written row itself: `id IN (SELECT id FROM t)` is true for every row
//! whose id is not NULL, `EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id)` likewise.
//!
//! The wrappers that keep every row are followed, not listed case by case: a UNION
//! with anything (one arm is enough), an INTERSECT of such reads, OFFSET (it drops a
//! count from the front, whatever is behind it stays), LIMIT ALL, GROUP BY without
//! HAVING, plain DISTINCT, TABLESAMPLE (chance, not a choice of rows), a derived
//! table or CTE that is itself a whole copy of the table, `= ANY (ARRAY(...))`,
//! `unnest(array_agg(x))`, `unnest(ARRAY(...))` (as an output or in FROM), and a row
//! of columns `(a, b) IN (SELECT a, b ...)`. What
//! narrows: a WHERE not true for the written row itself, HAVING, LIMIT with a count
//! (a parameter too: a count pgmoat cannot judge anyway, see rules/README.md),
//! DISTINCT ON, EXCEPT, VALUES, a join with another table in the read.

use pg_query::protobuf::{SetOperation, SubLinkType};

use super::{alias, present, text};
use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tautology::{Abs, Ctx, Poss};
use crate::classify::tautology_fold::{column_fields, res_target};
use crate::classify::tree::{Map, Value};

/// Derived tables and CTEs over derived tables: past this, a read is taken to narrow.
const MAX_DEPTH: usize = 8;

/// What a read of the table must give for the written row to count as always found.
#[derive(Clone, Copy)]
pub(in crate::classify) enum Want<'a> {
    /// Some row (`EXISTS`).
    Row,
    /// A row whose outputs are these expressions of the written row (`IN`, `= ANY`);
    /// with `array`, each output is an `array_agg` of one (`= ANY ((SELECT
    /// array_agg(id) FROM t))`).
    Values(&'a [&'a Value], bool),
    /// The table's row itself, its columns under their own names (a derived table, a
    /// CTE, a MERGE or upsert source standing for the table).
    Copy,
}

impl Ctx<'_> {
    /// Whether query `q` yields, for the written row, what `want` asks; `outer`: the
    /// qualifiers the written row goes by around it.
    pub(in crate::classify) fn self_read(
        &self,
        q: &Value,
        outer: &[String],
        want: Want,
        depth: usize,
    ) -> bool {
        if self.scope.knows_nothing() || depth > MAX_DEPTH {
            return false;
        }
        match node(q) {
            Some((NodeKind::SelectStmt, sel)) => self.self_select(sel, outer, want, depth),
            _ => false,
        }
    }

    /// [`Ctx::self_read`] of a SELECT (the arms of a set operation are bare ones).
    fn self_select(&self, sel: &Map, outer: &[String], want: Want, depth: usize) -> bool {
        if narrows(sel) || depth > MAX_DEPTH {
            return false;
        }
        let op = sel.get("op").and_then(Value::as_i64).unwrap_or(0);
        let read = |k: &str| {
            sel.get(k)
                .and_then(Value::as_object)
                .is_some_and(|a| self.self_select(a, outer, want, depth + 1))
        };
        if op == SetOperation::SetopUnion as i64 {
            // A superset of either arm (the column names are the left one's).
            return read("larg") || (!matches!(want, Want::Copy) && read("rarg"));
        }
        if op == SetOperation::SetopIntersect as i64 {
            return read("larg") && read("rarg");
        }
        if op != SetOperation::SetopNone as i64 && op != 0 {
            return false; // EXCEPT
        }
        let local: Vec<&Map> = ctes_of(sel);
        let from = sel.get("from_clause").and_then(Value::as_array);
        if let (Want::Values([test], false), None | Some([])) = (want, from.map(Vec::as_slice)) {
            // `SELECT unnest(ARRAY(SELECT id FROM t))`: the values of the read inside.
            return !present(sel, "where_clause") && self.unnest_of_read(sel, test, outer);
        }
        let Some([item]) = from.map(Vec::as_slice) else {
            return false;
        };
        if let (Want::Values([test], false), Some((NodeKind::RangeFunction, rf))) =
            (want, node(item))
        {
            // `SELECT u FROM unnest(ARRAY(SELECT id FROM t)) u`.
            return !present(sel, "where_clause") && self.unnest_from(rf, sel, test, outer);
        }
        let Some(qual) = self.source(item, &local, depth) else {
            return false;
        };
        let mut quals = outer.to_vec();
        quals.push(qual);
        if let Some(w) = sel.get("where_clause").filter(|w| !w.is_null()) {
            if self.poss(w, &quals) != Poss::TRUE {
                return false;
            }
        }
        let targets = || {
            sel.get("target_list")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| {
                    let rt = res_target(t);
                    (
                        rt.and_then(|r| r.get("val")),
                        rt.and_then(|r| r.get("name")).and_then(Value::as_str),
                    )
                })
        };
        match want {
            Want::Row => true,
            Want::Values(tests, array) => {
                let outs: Vec<_> = targets().collect();
                outs.len() == tests.len()
                    && tests.iter().zip(outs).all(|(test, (out, _))| {
                        let out = out.map(|o| {
                            if array {
                                call_arg(o, "array_agg")
                            } else {
                                Some(elements(o))
                            }
                        });
                        match out.flatten() {
                            Some(o) => self.same_value(test, o, &quals),
                            None => false,
                        }
                    })
            }
            Want::Copy => {
                let mut any = false;
                let own = targets().all(|(val, name)| {
                    any = true;
                    let Some((NodeKind::ColumnRef, c)) = val.and_then(node) else {
                        return false;
                    };
                    let Some((f, n)) = column_fields(c) else {
                        return false;
                    };
                    let name = name.unwrap_or("");
                    self.scope.row_column(c, &quals).is_some()
                        && n > 0
                        && (name.is_empty() || name == f[n - 1])
                });
                any && own
            }
        }
    }

    /// The qualifier a FROM item's row goes by when that row can be the written row:
    /// the table itself, or a derived table or CTE that is a whole copy of it.
    pub(in crate::classify) fn source(
        &self,
        item: &Value,
        local: &[&Map],
        depth: usize,
    ) -> Option<String> {
        match node(item)? {
            (NodeKind::RangeVar, r) => {
                let name = text(r, "relname");
                let qual = alias(r).unwrap_or_else(|| name.to_owned());
                let cte = text(r, "schemaname")
                    .is_empty()
                    .then(|| {
                        local
                            .iter()
                            .chain(self.scope.ctes.iter())
                            .find(|c| text(c, "ctename") == name)
                    })
                    .flatten();
                let whole = match cte {
                    Some(c) => {
                        !renamed(c.get("aliascolnames"))
                            && c.get("ctequery")
                                .is_some_and(|q| self.self_read(q, &[], Want::Copy, depth + 1))
                    }
                    None => self.scope.same_table(r),
                };
                whole.then_some(qual)
            }
            (NodeKind::RangeSubselect, s) => {
                let renames = s.get("alias").and_then(|a| a.get("colnames"));
                let whole = !renamed(renames)
                    && s.get("subquery")
                        .is_some_and(|q| self.self_read(q, &[], Want::Copy, depth + 1));
                alias(s).filter(|_| whole)
            }
            // A sample is rows picked by chance, not by what they hold.
            (NodeKind::RangeTableSample, s) => self.source(s.get("relation")?, local, depth),
            _ => None,
        }
    }

    /// `EXISTS (...)`, `x IN (SELECT ...)`, `(SELECT ...)`.
    pub(in crate::classify) fn sublink(&self, body: &Map, extra: &[String]) -> Abs {
        let t = body
            .get("sub_link_type")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let Some(sub) = body.get("subselect") else {
            return Abs::Value { nullable: true };
        };
        let Some((NodeKind::SelectStmt, sel)) = node(sub) else {
            return Abs::Value { nullable: true };
        };
        if t == SubLinkType::ExistsSublink as i64 {
            let holds = if one_row(sel) {
                true // `EXISTS (SELECT count(*) FROM o WHERE ...)`
            } else if present(sel, "from_clause") {
                self.self_read(sub, extra, Want::Row, 0)
            } else {
                // `EXISTS (SELECT)`: one row.
                !present(sel, "where_clause") && !narrows(sel)
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
            if let (true, Some(test)) = (eq, body.get("testexpr")) {
                // `(a, b) IN (SELECT a, b ...)`: each of the row's columns.
                let tests: Vec<&Value> = match node(test) {
                    Some((NodeKind::RowExpr, r)) => r
                        .get("args")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().collect())
                        .unwrap_or_default(),
                    _ => vec![test],
                };
                if self.self_read(sub, extra, Want::Values(&tests, false), 0) {
                    let nullable = tests.iter().any(|t| self.eval(t, extra).nullable());
                    return Abs::Bool(Poss {
                        n: nullable,
                        ..Poss::TRUE
                    });
                }
            }
            return Abs::Bool(Poss::ANY);
        }
        if t == SubLinkType::ExprSublink as i64
            && !present(sel, "from_clause")
            && !present(sel, "where_clause")
        {
            // `(SELECT true)`: a constant when it reads nothing.
            let outs = sel.get("target_list").and_then(Value::as_array);
            if let Some([out]) = outs.map(Vec::as_slice) {
                if let Some(val) = res_target(out).and_then(|rt| rt.get("val")) {
                    return self.eval(val, extra);
                }
            }
        }
        Abs::Value { nullable: true }
    }

    /// A SELECT without FROM whose one output is `unnest` of an array of a read of the
    /// table that gives `test`.
    fn unnest_of_read(&self, sel: &Map, test: &Value, outer: &[String]) -> bool {
        let outs = sel.get("target_list").and_then(Value::as_array);
        let Some([out]) = outs.map(Vec::as_slice) else {
            return false;
        };
        res_target(out)
            .and_then(|rt| rt.get("val"))
            .and_then(|v| call_arg(v, "unnest"))
            .is_some_and(|arg| self.any_array(test, arg, outer))
    }

    /// `FROM unnest(ARRAY(SELECT id FROM t)) u`, its one column given (no ORDINALITY,
    /// no ROWS FROM of several): the values of the read inside.
    fn unnest_from(&self, rf: &Map, sel: &Map, test: &Value, outer: &[String]) -> bool {
        let flag = |k: &str| rf.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("ordinality") || flag("is_rowsfrom") {
            return false;
        }
        let functions = rf.get("functions").and_then(Value::as_array);
        let Some([f]) = functions.map(Vec::as_slice) else {
            return false;
        };
        let call = match node(f) {
            Some((NodeKind::List, l)) => l
                .get("items")
                .and_then(Value::as_array)
                .and_then(|i| i.first()),
            _ => None,
        };
        let outs = sel.get("target_list").and_then(Value::as_array);
        let one_column = matches!(outs.map(Vec::as_slice), Some([out])
            if matches!(res_target(out).and_then(|rt| rt.get("val")).and_then(node),
                Some((NodeKind::ColumnRef, _))));
        one_column
            && call
                .and_then(|c| call_arg(c, "unnest"))
                .is_some_and(|arg| self.any_array(test, arg, outer))
    }

    /// `x = ANY (ARRAY(SELECT ...))`, `x = ANY ((SELECT array_agg(...) ...))`: an IN.
    pub(in crate::classify) fn any_array(&self, l: &Value, r: &Value, extra: &[String]) -> bool {
        let mut r = r;
        while let Some((NodeKind::TypeCast, c)) = node(r) {
            match c.get("arg") {
                Some(a) => r = a,
                None => return false,
            }
        }
        let Some((NodeKind::SubLink, s)) = node(r) else {
            return false;
        };
        let t = s.get("sub_link_type").and_then(Value::as_i64).unwrap_or(0);
        let array = if t == SubLinkType::ArraySublink as i64 {
            false
        } else if t == SubLinkType::ExprSublink as i64 {
            true
        } else {
            return false;
        };
        s.get("subselect")
            .is_some_and(|q| self.self_read(q, extra, Want::Values(&[l], array), 0))
    }
}

/// Whether a SELECT drops rows by anything but its WHERE (and its FROM).
pub(in crate::classify) fn narrows(sel: &Map) -> bool {
    if present(sel, "having_clause") || present(sel, "values_lists") {
        return true;
    }
    // LIMIT ALL (a NULL) keeps every row; a count, or a parameter, bounds by count.
    if let Some(l) = sel.get("limit_count").filter(|v| !v.is_null()) {
        let all = matches!(node(l), Some((NodeKind::AConst, c))
            if c.get("isnull").and_then(Value::as_bool).unwrap_or(false));
        if !all {
            return true;
        }
    }
    // DISTINCT ON keeps one row of each group; plain DISTINCT every value.
    sel.get("distinct_clause")
        .and_then(Value::as_array)
        .is_some_and(|d| d.iter().any(|e| node(e).is_some()))
}

/// Built-in aggregates: a SELECT of them without GROUP BY gives one row, always.
const AGGREGATES: [&str; 16] = [
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "bit_and",
    "bit_or",
];

/// A SELECT that gives exactly one row whatever its FROM and WHERE: an aggregate
/// without GROUP BY or HAVING (and nothing else that drops rows).
fn one_row(sel: &Map) -> bool {
    let op = sel.get("op").and_then(Value::as_i64).unwrap_or(0);
    if narrows(sel)
        || present(sel, "group_clause")
        || present(sel, "limit_offset")
        || (op != 0 && op != SetOperation::SetopNone as i64)
    {
        return false;
    }
    let outs = sel.get("target_list").and_then(Value::as_array);
    outs.into_iter().flatten().any(|t| {
        let val = res_target(t).and_then(|rt| rt.get("val"));
        let Some((NodeKind::FuncCall, f)) = val.and_then(node) else {
            return false;
        };
        let names = name_list(f.get("funcname"));
        let builtin = match names.as_slice() {
            [n] => AGGREGATES.contains(&n.as_str()),
            [s, n] => s == "pg_catalog" && AGGREGATES.contains(&n.as_str()),
            _ => false,
        };
        builtin && !present(f, "over")
    })
}

/// The CTEs a query defines for itself.
pub(in crate::classify) fn ctes_of(m: &Map) -> Vec<&Map> {
    m.get("with_clause")
        .and_then(|w| w.get("ctes"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| match node(c) {
            Some((NodeKind::CommonTableExpr, m)) => Some(m),
            _ => None,
        })
        .collect()
}

fn renamed(names: Option<&Value>) -> bool {
    names
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

/// The one argument of a plain call of `name` (`array_agg(x)`, not with FILTER or OVER).
fn call_arg<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    let Some((NodeKind::FuncCall, f)) = node(v) else {
        return None;
    };
    let fname = name_list(f.get("funcname"));
    let builtin = match fname.as_slice() {
        [n] => n == name,
        [s, n] => s == "pg_catalog" && n == name,
        _ => false,
    };
    if !builtin || present(f, "agg_filter") || present(f, "over") {
        return None;
    }
    match f.get("args").and_then(Value::as_array).map(Vec::as_slice) {
        Some([a]) => Some(a),
        _ => None,
    }
}

/// An output read as the values it gives: `unnest(array_agg(x))` gives those of `x`.
fn elements(v: &Value) -> &Value {
    call_arg(v, "unnest")
        .and_then(|a| call_arg(a, "array_agg"))
        .unwrap_or(v)
}
