//! Constant folding and the shapes of a clause: literals, two subtrees alike, a
//! condition and its negation.

use pg_query::protobuf::{AExprKind, BoolExprType};

use super::tree::{Map, Value};
use super::walk::{name_list, unwrap_node};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Const {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Null,
}

/// Two arguments of an AND/OR of which one is the other's negation: `x` and `NOT x`,
/// `x IS NULL` and `x IS NOT NULL`, `a = b` and `a <> b` (or `<` and `>=`, ...).
/// With `any_literal`, literals of any value count as alike (the statement's shape).
pub(super) fn complementary(a: &Value, b: &Value, any_literal: bool) -> bool {
    let negation = |x: &Value, y: &Value| match unwrap_node(x) {
        Some(("BoolExpr", e))
            if e.get("boolop").and_then(Value::as_i64) == Some(BoolExprType::NotExpr as i64) =>
        {
            e.get("args")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .is_some_and(|inner| same_tree_as(inner, y, any_literal))
        }
        _ => false,
    };
    if negation(a, b) || negation(b, a) {
        return true;
    }
    match (unwrap_node(a), unwrap_node(b)) {
        (Some(("NullTest", x)), Some(("NullTest", y))) => {
            let t = |m: &Map| m.get("nulltesttype").and_then(Value::as_i64);
            t(x) != t(y)
                && matches!((x.get("arg"), y.get("arg")), (Some(p), Some(q)) if same_tree_as(p, q, any_literal))
        }
        (Some(("AExpr", x)), Some(("AExpr", y))) => {
            let plain =
                |m: &Map| m.get("kind").and_then(Value::as_i64) == Some(AExprKind::AexprOp as i64);
            let op = |m: &Map| name_list(m.get("name")).pop().unwrap_or_default();
            let opposite = matches!(
                (op(x).as_str(), op(y).as_str()),
                ("=", "<>" | "!=")
                    | ("<>" | "!=", "=")
                    | ("<", ">=")
                    | (">=", "<")
                    | (">", "<=")
                    | ("<=", ">")
            );
            let same = |key: &str| match (x.get(key), y.get(key)) {
                (Some(a), Some(b)) => same_tree_as(a, b, any_literal),
                _ => false,
            };
            plain(x) && plain(y) && opposite && same("lexpr") && same("rexpr")
        }
        _ => false,
    }
}

pub(super) fn bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

pub(super) fn constant(body: &Map) -> Option<Const> {
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
pub(super) fn same_tree_as(a: &Value, b: &Value, any_literal: bool) -> bool {
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

pub(super) fn compare(a: &Const, b: &Const) -> Option<std::cmp::Ordering> {
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
