//! Parameters: a WHERE is judged at Parse, before its values are bound (drivers send
//! the Parse first, and a prepared statement runs with values the judge never sees).
//! A parameter is read as the literal a client could bind in its place: the WHERE is
//! unbounded when some values make it a tautology by the same rules as literals
//! (`$1 IS NULL OR id = $1` bound with NULL, `id = coalesce($1, id)` with NULL,
//! `tag LIKE $1` with '%', `$1 OR id = 1` with true, `id = id + $1` with 0).
//!
//! Only parameters whose value can matter are tried: one in a value compared directly
//! with a column (`id = $1`, `id IN ($1, $2)`, `id = ANY ($1)`, `at < now() -
//! $1::interval`) bounds the write whatever it is bound to (a NULL matches nothing),
//! as a literal there would, so the statements drivers send most stay one reading. The others are tried with the values that
//! decide the rules (NULL, true, false, 0, 1, '%', '') and the clause's own literals,
//! every combination; past [`MAX_READINGS`] (or [`MAX_WORK`] for a long clause) the
//! WHERE is taken to be unbounded (fail closed).

use super::{Scope, Verdict};
use crate::classify::facts::IfNotNull;
use crate::classify::node::node;
use crate::classify::node_kind::NodeKind;
use crate::classify::tautology_fold::{constant, last_name, Const};
use crate::classify::tree::Value;

/// Readings of one WHERE at most (candidate values to the power of live parameters).
const MAX_READINGS: usize = 512;
/// Readings times the clause's size at most: a WHERE of thousands of arms is not read
/// hundreds of times over (it is taken to be unbounded instead).
const MAX_WORK: usize = 2_000_000;
/// Candidate values at most (the fixed ones, then the clause's literals).
const MAX_CANDIDATES: usize = 12;

/// The verdict on `clause`, reading its parameters as every value that can decide it:
/// `judge` gives the verdict for one binding.
pub(super) fn verdict(
    scope: &Scope,
    clause: &Value,
    judge: impl Fn(&[(i64, Const)]) -> Verdict,
) -> Verdict {
    let first = judge(&[]);
    if first.always {
        return first;
    }
    let mut live = Vec::new();
    collect(scope, clause, &mut live);
    if live.is_empty() {
        return first; // `WHERE id = $1`: the hot path, one reading
    }
    let mut candidates = vec![
        Const::Null,
        Const::Bool(true),
        Const::Bool(false),
        Const::Int(0),
        Const::Int(1),
        Const::Str("%".into()),
        Const::Str(String::new()),
    ];
    literals(clause, &mut candidates);
    let readings = candidates
        .len()
        .checked_pow(u32::try_from(live.len()).unwrap_or(u32::MAX));
    let size = nodes(clause);
    let affordable = |r: &usize| *r <= MAX_READINGS && r.saturating_mul(size) <= MAX_WORK;
    let Some(readings) = readings.filter(affordable) else {
        // Too many to try: unbounded, unless shown otherwise (it is not).
        return Verdict {
            always: true,
            if_not_null: None,
            looked: first.looked,
        };
    };
    let mut looked = first.looked;
    let from_first = first.if_not_null.is_some();
    let mut condition: Option<IfNotNull> = first.if_not_null;
    let mut binding: Vec<(i64, Const)> = live.iter().map(|n| (*n, Const::Null)).collect();
    for reading in 0..readings {
        let mut rest = reading;
        for slot in binding.iter_mut() {
            slot.1 = candidates[rest % candidates.len()].clone();
            rest /= candidates.len();
        }
        let v = judge(&binding);
        looked |= v.looked;
        if v.always {
            return Verdict {
                always: true,
                if_not_null: None,
                looked,
            };
        }
        // A condition that holds whatever the values (the first reading's) stays;
        // else, of those some values give, the weakest (fewest NOT NULL columns).
        if let (Some(c), false) = (v.if_not_null, from_first) {
            if condition
                .as_ref()
                .is_none_or(|have| c.columns.len() < have.columns.len())
            {
                condition = Some(c);
            }
        }
    }
    Verdict {
        always: false,
        if_not_null: condition,
        looked,
    }
}

/// The parameters whose value can decide the clause (each once, in order).
fn collect(scope: &Scope, v: &Value, out: &mut Vec<i64>) {
    match v {
        Value::Object(m) => {
            let param = match node(v) {
                Some((NodeKind::ParamRef, p)) => p.get("number").and_then(Value::as_i64),
                Some((NodeKind::ColumnRef, c)) => scope.param_number(c),
                _ => None,
            };
            if let Some(n) = param {
                if !out.contains(&n) {
                    out.push(n);
                }
                return;
            }
            match node(v) {
                Some((NodeKind::AExpr, e)) if compares(e) => {
                    let (l, r) = (e.get("lexpr"), e.get("rexpr"));
                    for (side, other) in [(l, r), (r, l)] {
                        let Some(side) = side else { continue };
                        if only_values(scope, side) && other.is_some_and(|o| is_column(scope, o)) {
                            continue; // `id = $1`: bounds whatever the value
                        }
                        collect(scope, side, out);
                    }
                    return;
                }
                _ => {}
            }
            for child in m.iter().map(|(_, c)| c) {
                collect(scope, child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(scope, i, out)),
        _ => {}
    }
}

/// A comparison (`=`, `<`, ..., `IN (...)`, `= ANY (...)`).
fn compares(e: &crate::classify::tree::Map) -> bool {
    use pg_query::protobuf::AExprKind;
    let kind = e.get("kind").and_then(Value::as_i64).unwrap_or(0);
    let op = last_name(e.get("name")).unwrap_or("");
    let ordering = matches!(op, "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=");
    let per_element = kind == AExprKind::AexprOpAny as i64 || kind == AExprKind::AexprOpAll as i64;
    (ordering && (kind == AExprKind::AexprOp as i64 || per_element))
        || kind == AExprKind::AexprIn as i64
}

/// Values that name nothing of any row: parameters, literals, and expressions of them
/// (`$1::int`, `(1, $2)`, `now() - $1::interval`); no column, no subquery.
fn only_values(scope: &Scope, v: &Value) -> bool {
    match v {
        Value::Object(m) => match node(v) {
            Some((NodeKind::ColumnRef, c)) => scope.param_number(c).is_some(),
            Some((NodeKind::SubLink, _)) => false,
            _ => m.iter().all(|(_, c)| only_values(scope, c)),
        },
        Value::Array(items) => items.iter().all(|i| only_values(scope, i)),
        _ => true,
    }
}

/// A column (cast or not): never a condition of its own, so comparing it with a value
/// is true for some rows only.
fn is_column(scope: &Scope, v: &Value) -> bool {
    match node(v) {
        Some((NodeKind::ColumnRef, c)) => scope.param_number(c).is_none(),
        Some((NodeKind::TypeCast, c)) => c.get("arg").is_some_and(|a| is_column(scope, a)),
        _ => false,
    }
}

/// How many nodes a clause has (the cost of one reading).
fn nodes(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.iter().map(|(_, c)| nodes(c)).sum::<usize>(),
        Value::Array(items) => items.iter().map(nodes).sum(),
        _ => 0,
    }
}

/// The clause's literals, added to the candidates (up to [`MAX_CANDIDATES`]).
fn literals(v: &Value, out: &mut Vec<Const>) {
    if out.len() >= MAX_CANDIDATES {
        return;
    }
    match v {
        Value::Object(m) => {
            if let Some((NodeKind::AConst, c)) = node(v) {
                if let Some(c) = constant(c) {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                return;
            }
            m.iter().map(|(_, c)| c).for_each(|c| literals(c, out));
        }
        Value::Array(items) => items.iter().for_each(|i| literals(i, out)),
        _ => {}
    }
}
