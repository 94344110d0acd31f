//! The names Postgres gives output columns nobody named (`FigureColname` in
//! src/backend/parser/parse_target.c), followed rule by rule: an outer query that
//! selects a derived table's column by name must reach the column the server reaches.
//! Where the name cannot be told from the tree (the first column of a `*`), the column
//! gets [`UNKNOWN_NAME`], which any otherwise unmatched reference may mean.

use crate::classify::node::{name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// The name of a column whose name pgmoat cannot tell. No identifier can hold a NUL,
/// so it never equals a name in SQL.
pub(super) const UNKNOWN_NAME: &str = "\0?";

/// The name Postgres gives an output column written without `AS`.
pub(super) fn output_name(v: &Value) -> String {
    match figure(v) {
        (Some(n), s) if s > 0 => n,
        (None, s) if s > 0 => UNKNOWN_NAME.to_owned(),
        _ => "?column?".to_owned(),
    }
}

/// `FigureColnameInternal`: the name (None when it cannot be told) and its strength
/// (0: none, "?column?"; 1: a fallback a stronger name inside a cast or CASE beats;
/// 2: a real name).
fn figure(v: &Value) -> (Option<String>, u8) {
    let Some((ty, m)) = node(v) else {
        return (None, 0);
    };
    let named = |n: &str| (Some(n.to_owned()), 2);
    match ty {
        NodeKind::ColumnRef => {
            // The last field name, ignoring `*`.
            match name_list(m.get("fields"))
                .into_iter()
                .rev()
                .find(|f| f != "*")
            {
                Some(n) => (Some(n), 2),
                None => (None, 0),
            }
        }
        NodeKind::AIndirection => {
            // The last field selected (`(t).ssn`, `(x).f[1]`), else the base's name.
            let last = arr(m, "indirection")
                .iter()
                .filter_map(|i| match node(i) {
                    Some((NodeKind::String, s)) => s.get("sval").and_then(Value::as_str),
                    _ => None,
                })
                .next_back();
            match last {
                Some(n) => named(n),
                None => m.get("arg").map_or((None, 0), figure),
            }
        }
        NodeKind::FuncCall => match name_list(m.get("funcname")).pop() {
            Some(n) => (Some(n), 2),
            None => (None, 0),
        },
        // AEXPR_NULLIF: other operators have no name.
        NodeKind::AExpr if int(m, "kind") == 6 => named("nullif"),
        NodeKind::TypeCast => {
            let (n, s) = m.get("arg").map_or((None, 0), figure);
            if s <= 1 {
                let ty = m
                    .get("type_name")
                    .and_then(Value::as_object)
                    .and_then(|t| name_list(t.get("names")).pop());
                if let Some(ty) = ty {
                    return (Some(ty), 1);
                }
            }
            (n, s)
        }
        NodeKind::CollateClause => m.get("arg").map_or((None, 0), figure),
        NodeKind::GroupingFunc => named("grouping"),
        NodeKind::SubLink => match int(m, "sub_link_type") {
            1 => named("exists"),
            7 => named("array"),
            // The sub-select's single column's name, however it got it.
            5 => (m.get("subselect").and_then(first_column_name), 2),
            _ => (None, 0),
        },
        NodeKind::CaseExpr => {
            let (n, s) = m.get("defresult").map_or((None, 0), figure);
            if s <= 1 {
                (Some("case".to_owned()), 1)
            } else {
                (n, s)
            }
        }
        NodeKind::AArrayExpr => named("array"),
        NodeKind::RowExpr => named("row"),
        NodeKind::CoalesceExpr => named("coalesce"),
        NodeKind::MinMaxExpr => match int(m, "op") {
            1 => named("greatest"),
            2 => named("least"),
            _ => (None, 0),
        },
        NodeKind::SqlvalueFunction => match int(m, "op") {
            1 => named("current_date"),
            2 | 3 => named("current_time"),
            4 | 5 => named("current_timestamp"),
            6 | 7 => named("localtime"),
            8 | 9 => named("localtimestamp"),
            10 => named("current_role"),
            11 => named("current_user"),
            12 => named("user"),
            13 => named("session_user"),
            14 => named("current_catalog"),
            15 => named("current_schema"),
            _ => (None, 0),
        },
        NodeKind::XmlExpr => match int(m, "op") {
            1 => named("xmlconcat"),
            2 => named("xmlelement"),
            3 => named("xmlforest"),
            4 => named("xmlparse"),
            5 => named("xmlpi"),
            6 => named("xmlroot"),
            7 => named("xmlserialize"),
            _ => (None, 0),
        },
        NodeKind::XmlSerialize => named("xmlserialize"),
        NodeKind::JsonParseExpr => named("json"),
        NodeKind::JsonScalarExpr => named("json_scalar"),
        NodeKind::JsonSerializeExpr => named("json_serialize"),
        NodeKind::JsonObjectConstructor => named("json_object"),
        NodeKind::JsonArrayConstructor | NodeKind::JsonArrayQueryConstructor => named("json_array"),
        NodeKind::JsonObjectAgg => named("json_objectagg"),
        NodeKind::JsonArrayAgg => named("json_arrayagg"),
        NodeKind::JsonFuncExpr => match int(m, "op") {
            1 => named("json_exists"),
            2 => named("json_query"),
            3 => named("json_value"),
            _ => (None, 0),
        },
        NodeKind::MergeSupportFunc => named("merge_action"),
        _ => (None, 0),
    }
}

/// The name of a query's first output column (a scalar sub-select's), None when it
/// cannot be told from the tree (`SELECT *`).
fn first_column_name(q: &Value) -> Option<String> {
    match node(q) {
        Some((NodeKind::SelectStmt, m)) => first_of_select(m),
        _ => None,
    }
}

fn first_of_select(m: &Map) -> Option<String> {
    if int(m, "op") > 1 {
        // A set operation's columns are named by its leftmost arm (a bare body).
        return first_of_select(m.get("larg")?.as_object()?);
    }
    if !arr(m, "values_lists").is_empty() {
        return Some("column1".to_owned());
    }
    let first = arr(m, "target_list").first()?;
    let Some((NodeKind::ResTarget, rt)) = node(first) else {
        return None;
    };
    match rt.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => Some(n.to_owned()),
        _ => {
            let val = rt.get("val")?;
            if let Some((NodeKind::ColumnRef, c)) = node(val) {
                if name_list(c.get("fields")).last().map(String::as_str) == Some("*") {
                    return None;
                }
            }
            match output_name(val) {
                n if n == UNKNOWN_NAME => None,
                n => Some(n),
            }
        }
    }
}

fn int(m: &Map, k: &str) -> i64 {
    m.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'v>(m: &'v Map, k: &str) -> &'v [Value] {
    m.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}
