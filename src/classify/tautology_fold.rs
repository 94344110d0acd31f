//! Constant folding and the shapes of a clause: literals, two subtrees alike, a
//! condition and its negation.

use pg_query::protobuf::{AExprKind, BoolExprType};

use super::node::node;
use super::node_kind::NodeKind;
use super::tree::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Const {
    Bool(bool),
    Int(i64),
    Num(f64),
    Str(String),
    Null,
}

/// The last name of a list of `String` nodes (an operator's), without copying.
pub(super) fn last_name(v: Option<&Value>) -> Option<&str> {
    let last = v?.as_array()?.last()?;
    match node(last) {
        Some((NodeKind::String, m)) => m.get("sval").and_then(Value::as_str),
        _ => None,
    }
}

/// The `ResTarget` a target list's item is (a SELECT's output column), if it is one.
pub(super) fn res_target(item: &Value) -> Option<&Map> {
    match node(item)? {
        (NodeKind::ResTarget, rt) => Some(rt),
        _ => None,
    }
}

/// A ColumnRef's fields (`*` for a star), without copying; None past four (no name
/// has more: database, schema, table, column).
pub(super) fn column_fields(c: &Map) -> Option<([&str; 4], usize)> {
    let items = c.get("fields")?.as_array()?;
    if items.len() > 4 {
        return None;
    }
    let mut out = [""; 4];
    for (slot, item) in out.iter_mut().zip(items) {
        *slot = match node(item) {
            Some((NodeKind::String, m)) => m.get("sval").and_then(Value::as_str).unwrap_or(""),
            Some((NodeKind::AStar, _)) => "*",
            _ => return None,
        };
    }
    Some((out, items.len()))
}

/// Two arguments of an AND/OR of which one is the other's negation: `x` and `NOT x`,
/// `x IS NULL` and `x IS NOT NULL`, `a = b` and `a <> b` (or `<` and `>=`, ...).
/// With `any_literal`, literals of any value count as alike (the statement's shape).
fn complementary(a: &Value, b: &Value, any_literal: bool) -> bool {
    let negation = |x: &Value, y: &Value| match node(x) {
        Some((NodeKind::BoolExpr, e))
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
    match (node(a), node(b)) {
        (Some((NodeKind::NullTest, x)), Some((NodeKind::NullTest, y))) => {
            let t = |m: &Map| m.get("nulltesttype").and_then(Value::as_i64);
            t(x) != t(y)
                && matches!((x.get("arg"), y.get("arg")), (Some(p), Some(q)) if same_tree_as(p, q, any_literal))
        }
        (Some((NodeKind::AExpr, x)), Some((NodeKind::AExpr, y))) => {
            let plain =
                |m: &Map| m.get("kind").and_then(Value::as_i64) == Some(AExprKind::AexprOp as i64);
            let opposite = matches!(
                (
                    last_name(x.get("name")).unwrap_or(""),
                    last_name(y.get("name")).unwrap_or("")
                ),
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
        && matches!(node(a), Some((NodeKind::AConst, _)))
        && matches!(node(b), Some((NodeKind::AConst, _)))
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

/// The pairs of AND/OR arguments where one is the other's negation (each argument in
/// at most one pair), found through hashes of their shapes rather than by comparing
/// every two: an OR of thousands of arguments must not cost their square. The flag
/// says some two are alike in shape with literals of any value (then the verdict
/// rests on the literals).
pub(super) fn complementary_pairs(args: &[Value]) -> (Vec<(usize, usize)>, bool) {
    use std::collections::HashMap;
    // Most ANDs and ORs have no negated half at all (`a = 1 OR a = 2`): no hashing.
    if args.len() < 2 || !args.iter().any(negated) {
        return (Vec::new(), false);
    }
    // (class, negated, hash of the shape with literals, and without).
    let mut entries: Vec<(usize, u8, bool, u64, u64)> = Vec::with_capacity(args.len() * 2);
    for (i, a) in args.iter().enumerate() {
        for (class, negated, parts) in polarities(a) {
            let (exact, shape) = (hash_parts(&parts, false), hash_parts(&parts, true));
            entries.push((i, class, negated, exact, shape));
        }
    }
    let mut shapes: HashMap<(u8, u64), (bool, bool)> = HashMap::new();
    let mut positives: HashMap<(u8, u64), Vec<usize>> = HashMap::new();
    for &(i, class, negated, exact, shape) in &entries {
        let seen = shapes.entry((class, shape)).or_default();
        if negated {
            seen.1 = true;
        } else {
            seen.0 = true;
            positives.entry((class, exact)).or_default().push(i);
        }
    }
    let looked = shapes.values().any(|(p, n)| *p && *n);
    let mut used = vec![false; args.len()];
    let mut pairs = Vec::new();
    for &(j, class, negated, exact, _) in &entries {
        if !negated || used[j] {
            continue;
        }
        let Some(candidates) = positives.get(&(class, exact)) else {
            continue;
        };
        if let Some(&i) = candidates
            .iter()
            .find(|&&i| i != j && !used[i] && complementary(&args[i], &args[j], false))
        {
            used[i] = true;
            used[j] = true;
            pairs.push((i.min(j), i.max(j)));
        }
    }
    (pairs, looked)
}

/// Whether an argument is a negated half (`NOT x`, `IS NOT NULL`, `<>`, `>=`, `<=`).
fn negated(a: &Value) -> bool {
    match node(a) {
        Some((NodeKind::BoolExpr, e)) => {
            e.get("boolop").and_then(Value::as_i64) == Some(BoolExprType::NotExpr as i64)
        }
        Some((NodeKind::NullTest, n)) => {
            n.get("nulltesttype").and_then(Value::as_i64)
                != Some(pg_query::protobuf::NullTestType::IsNull as i64)
        }
        Some((NodeKind::AExpr, x)) => {
            matches!(last_name(x.get("name")), Some("<>" | "!=" | ">=" | "<="))
        }
        _ => false,
    }
}

/// The ways an argument can be half of a complementary pair: (class, negated, the
/// parts the other half must share). Class 0: `x` / `NOT x`; 1: `=` / `<>`; 2: `<` /
/// `>=`; 3: `>` / `<=`; 4: `IS NULL` / `IS NOT NULL`.
fn polarities(a: &Value) -> Vec<(u8, bool, Vec<&Value>)> {
    let mut out = Vec::with_capacity(2);
    match node(a) {
        Some((NodeKind::BoolExpr, e))
            if e.get("boolop").and_then(Value::as_i64) == Some(BoolExprType::NotExpr as i64) =>
        {
            if let Some(inner) = e
                .get("args")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            {
                out.push((0, true, vec![inner]));
            }
            return out;
        }
        Some((NodeKind::NullTest, n)) => {
            if let Some(arg) = n.get("arg") {
                let not = n.get("nulltesttype").and_then(Value::as_i64)
                    != Some(pg_query::protobuf::NullTestType::IsNull as i64);
                out.push((4, not, vec![arg]));
            }
        }
        Some((NodeKind::AExpr, x))
            if x.get("kind").and_then(Value::as_i64) == Some(AExprKind::AexprOp as i64) =>
        {
            let class = match last_name(x.get("name")).unwrap_or("") {
                "=" => Some((1, false)),
                "<>" | "!=" => Some((1, true)),
                "<" => Some((2, false)),
                ">=" => Some((2, true)),
                ">" => Some((3, false)),
                "<=" => Some((3, true)),
                _ => None,
            };
            if let (Some((c, neg)), Some(l), Some(r)) = (class, x.get("lexpr"), x.get("rexpr")) {
                out.push((c, neg, vec![l, r]));
            }
        }
        _ => {}
    }
    out.push((0, false, vec![a]));
    out
}

fn hash_parts(parts: &[&Value], any_literal: bool) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        hash_tree(p, any_literal, &mut h);
    }
    h.finish()
}

/// A hash that agrees with [`same_tree_as`]: source positions left out, and with
/// `any_literal` every literal alike.
fn hash_tree(v: &Value, any_literal: bool, h: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    match v {
        Value::Object(m) => {
            if any_literal && matches!(node(v), Some((NodeKind::AConst, _))) {
                h.write_u8(1);
                return;
            }
            h.write_u8(2);
            for (k, child) in m.iter().filter(|(k, _)| *k != "location") {
                k.hash(h);
                hash_tree(child, any_literal, h);
            }
        }
        Value::Array(items) => {
            h.write_u8(3);
            h.write_usize(items.len());
            for i in items {
                hash_tree(i, any_literal, h);
            }
        }
        Value::Null => h.write_u8(4),
        Value::Bool(b) => {
            h.write_u8(5);
            b.hash(h);
        }
        Value::Int(n) => {
            h.write_u8(6);
            n.hash(h);
        }
        Value::Float(f) => {
            h.write_u8(7);
            f.to_bits().hash(h);
        }
        Value::String(s) => {
            h.write_u8(8);
            s.hash(h);
        }
    }
}
