//! Is a WHERE clause always true? Constant folding over the few shapes people (and
//! agents) use to defeat "no UPDATE/DELETE without WHERE": `true`, `1=1`, `'a'='a'`,
//! `id = id`, `x OR true`, `NOT false`, `'t'::bool`, `1 IS NOT NULL`. Anything it does
//! not understand is not a tautology (the rules decide on the rest).

use super::tree::{Map, Value};
use pg_query::protobuf::{AExprKind, BoolExprType, NullTestType};

use super::walk::{list_items, name_list, unwrap_node};

#[derive(Debug, Clone, PartialEq)]
enum Const {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Null,
}

/// Whether the clause is always true, and whether the answer looked at a literal's
/// value (then it must not be reused for the same statement with other literals).
pub fn is_tautology(where_clause: &Value) -> (bool, bool) {
    let mut looked = false;
    let value = eval(where_clause, &mut looked);
    // No column in it at all (`1 BETWEEN 0 AND 2`, `EXISTS (SELECT)`, `(SELECT true)`):
    // it is the same for every row, so it bounds nothing unless it is plainly false.
    if !mentions_a_row(where_clause) {
        return (value != Some(Const::Bool(false)), looked);
    }
    (value == Some(Const::Bool(true)), looked)
}

/// Whether a column (or `WHERE CURRENT OF`) appears anywhere in the clause.
fn mentions_a_row(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, child)| matches!(k, "ColumnRef" | "CurrentOfExpr") || mentions_a_row(child)),
        Value::Array(items) => items.iter().any(mentions_a_row),
        _ => false,
    }
}

fn eval(v: &Value, looked: &mut bool) -> Option<Const> {
    let (ty, body) = unwrap_node(v)?;
    match ty {
        "AConst" => {
            *looked = true;
            constant(body)
        }
        "TypeCast" => {
            let inner = eval(body.get("arg")?, looked)?;
            let ty_names = body
                .get("type_name")
                .and_then(|t| t.as_object())
                .map(|t| name_list(t.get("names")))
                .unwrap_or_default();
            let target = ty_names
                .last()
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or_default();
            match (target.as_str(), inner) {
                ("bool" | "boolean", Const::Str(s)) => bool_text(&s).map(Const::Bool),
                ("bool" | "boolean", Const::Int(n)) => Some(Const::Bool(n != 0)),
                ("int2" | "int4" | "int8" | "integer" | "bigint" | "smallint", Const::Str(s)) => {
                    s.trim().parse().ok().map(Const::Int)
                }
                (_, other) => Some(other),
            }
        }
        "BoolExpr" => {
            let op = body.get("boolop")?.as_i64()?;
            let args: Vec<Option<Const>> = body
                .get("args")?
                .as_array()?
                .iter()
                .map(|a| eval(a, looked))
                .collect();
            if op == BoolExprType::OrExpr as i64 {
                Some(Const::Bool(
                    args.iter().any(|a| matches!(a, Some(Const::Bool(true)))),
                ))
                .filter(|b| *b == Const::Bool(true))
            } else if op == BoolExprType::AndExpr as i64 {
                args.iter()
                    .all(|a| matches!(a, Some(Const::Bool(true))))
                    .then_some(Const::Bool(true))
            } else if op == BoolExprType::NotExpr as i64 {
                match args.first()? {
                    Some(Const::Bool(b)) => Some(Const::Bool(!b)),
                    _ => None,
                }
            } else {
                None
            }
        }
        "NullTest" => {
            let arg = eval(body.get("arg")?, looked)?;
            let is_null = arg == Const::Null;
            let t = body.get("nulltesttype")?.as_i64()?;
            if t == NullTestType::IsNull as i64 {
                Some(Const::Bool(is_null))
            } else if t == NullTestType::IsNotNull as i64 {
                Some(Const::Bool(!is_null))
            } else {
                None
            }
        }
        "AExpr" => a_expr(body, looked),
        _ => None,
    }
}

fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn constant(body: &Map) -> Option<Const> {
    if body.get("isnull").and_then(Value::as_bool).unwrap_or(false) {
        return Some(Const::Null);
    }
    let val = body.get("val")?.as_object()?;
    let (k, v) = val.iter().next()?;
    Some(match k {
        "Ival" => Const::Int(v.get("ival").and_then(Value::as_i64).unwrap_or(0)),
        "Fval" => Const::Num(v.get("fval").and_then(Value::as_str)?.parse().ok()?),
        "Boolval" => Const::Bool(v.get("boolval").and_then(Value::as_bool).unwrap_or(false)),
        "Sval" => Const::Str(
            v.get("sval")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        ),
        _ => return None,
    })
}

/// Two subtrees equal apart from source positions (`id = id`); with `any_literal`,
/// literals of any value count as equal (the statement's shape).
fn same_tree_as(a: &Value, b: &Value, any_literal: bool) -> bool {
    if any_literal
        && matches!(unwrap_node(a), Some(("AConst", _)))
        && matches!(unwrap_node(b), Some(("AConst", _)))
    {
        return true;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &Map| m.keys().filter(|k| *k != "location").count();
            keys(x) == keys(y)
                && x.iter()
                    .filter(|(k, _)| *k != "location")
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_tree_as(v, w, any_literal)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(v, w)| same_tree_as(v, w, any_literal))
        }
        _ => a == b,
    }
}

fn same_tree(a: &Value, b: &Value) -> bool {
    same_tree_as(a, b, false)
}

fn a_expr(body: &Map, looked: &mut bool) -> Option<Const> {
    let kind = body.get("kind")?.as_i64()?;
    let op = name_list(body.get("name"));
    let op = op.last()?.as_str();
    let (l, r) = (body.get("lexpr")?, body.get("rexpr")?);
    let reflexive = matches!(op, "=" | "<=" | ">=")
        && (kind == AExprKind::AexprOp as i64 || kind == AExprKind::AexprNotDistinct as i64);
    if reflexive && unwrap_node(l).is_some() && same_tree_as(l, r, true) {
        // `id * 1 = id * 2` shares its shape with `id * 1 = id * 1`: whether the sides
        // are the same rests on the literals, so no answer holds for the shape.
        *looked = true;
    }
    if kind == AExprKind::AexprNotDistinct as i64 && same_tree(l, r) && unwrap_node(l).is_some() {
        return Some(Const::Bool(true));
    }
    if kind == AExprKind::AexprOp as i64 {
        if same_tree(l, r) && matches!(op, "=" | "<=" | ">=") && unwrap_node(l).is_some() {
            // `1 = 1` and `id = id` alike: the answer rests on the sides being the same,
            // literals included, so it only holds for this exact text.
            *looked = true;
            return Some(Const::Bool(true));
        }
        let (a, b) = (eval(l, looked)?, eval(r, looked)?);
        let ord = compare(&a, &b)?;
        let result = match op {
            "=" => ord == std::cmp::Ordering::Equal,
            "<>" | "!=" => ord != std::cmp::Ordering::Equal,
            "<" => ord == std::cmp::Ordering::Less,
            ">" => ord == std::cmp::Ordering::Greater,
            "<=" => ord != std::cmp::Ordering::Greater,
            ">=" => ord != std::cmp::Ordering::Less,
            _ => return None,
        };
        return Some(Const::Bool(result));
    }
    if kind == AExprKind::AexprIn as i64 {
        // 1 IN (1, 2)
        let a = eval(l, looked)?;
        let items = list_items(r)?.as_array()?;
        let hit = items.iter().any(|i| {
            eval(i, looked).and_then(|b| compare(&a, &b)) == Some(std::cmp::Ordering::Equal)
        });
        return (hit && op == "=").then_some(Const::Bool(true));
    }
    None
}

fn compare(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Const::Int(x), Const::Int(y)) => Some(x.cmp(y)),
        (Const::Int(x), Const::Num(y)) => (*x as f64).partial_cmp(y),
        (Const::Num(x), Const::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Const::Num(x), Const::Num(y)) => x.partial_cmp(y),
        (Const::Str(x), Const::Str(y)) => Some(x.cmp(y)),
        // An untyped literal compared with a number is read as that number.
        (Const::Str(x), Const::Int(y)) => x.trim().parse::<i64>().ok().map(|x| x.cmp(y)),
        (Const::Int(x), Const::Str(y)) => y.trim().parse::<i64>().ok().map(|y| x.cmp(&y)),
        (Const::Bool(x), Const::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}
