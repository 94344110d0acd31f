//! Which portal a PL/pgSQL FETCH or MOVE reads. It reads the portal its cursor
//! variable names when it runs, and that can be one of the caller's: a `refcursor`
//! parameter (`SELECT f('c')` after `DECLARE c CURSOR FOR SELECT ssn ...`), a variable
//! set to a name, or a bound cursor (`c CURSOR FOR ...`), whose variable holds its own
//! name until OPEN runs. Its rows would then come back through the function without
//! any mask having seen them.
//!
//! A FETCH is read as reading the body's own query only when, on every path to it, an
//! OPEN of that variable ran first in the same or an enclosing statement list (not
//! inside a branch, a loop or a handler that may not have run), with no CLOSE between;
//! or when the variable is a `refcursor` the body declares with no default (NULL until
//! an OPEN, so a FETCH before one fails). In both cases the variable must never be
//! written otherwise (an assignment, an INTO, a CALL's output). Anything else is
//! unanalysable: over-blocking an unusual body is the fail-closed choice.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Whether a FETCH or MOVE of `tree` (libpg_query's PL/pgSQL JSON) may read a portal
/// the body did not open.
pub(super) fn may_read_outside_portal(tree: &Value) -> bool {
    let functions = tree.as_array().map(Vec::as_slice).unwrap_or_default();
    functions.iter().any(|f| {
        let Some(f) = f.get("PLpgSQL_function") else {
            return false;
        };
        let datums = f.get("datums").and_then(Value::as_array);
        let datums = datums.map(Vec::as_slice).unwrap_or_default();
        let mut written = BTreeSet::new();
        writes(f, &mut written);
        let mut seen = Seen::default();
        if let Some(action) = f.get("action") {
            walk(std::slice::from_ref(action), &BTreeSet::new(), &mut seen);
        }
        let mut fetched = BTreeSet::new();
        // A FETCH the walk of statement lists did not reach counts as not covered.
        let missed = seen.visited < fetches(f, &mut fetched);
        fetched.iter().any(|c| {
            written.contains(c)
                || ((missed || seen.undominated.contains(c)) && !null_until_opened(datums, *c))
        })
    })
}

/// A statement's cursor variable: libpg_query leaves a zero out, so a missing
/// `curvar` is datum 0.
fn curvar(stmt: &Value) -> i64 {
    stmt.get("curvar").and_then(Value::as_i64).unwrap_or(0)
}

/// The one statement an object holds: its kind and fields.
fn statement(v: &Value) -> Option<(&str, &Value)> {
    let map = v.as_object()?;
    let (kind, fields) = map.iter().next()?;
    (map.len() == 1 && kind.starts_with("PLpgSQL_stmt_")).then_some((kind.as_str(), fields))
}

/// What the walk found: FETCHes no OPEN before them covers, and how many it visited.
#[derive(Default)]
struct Seen {
    undominated: BTreeSet<i64>,
    visited: usize,
}

/// Walk a statement list in order: what is open after each statement, and the
/// FETCHes no OPEN before them covers. Nested lists (branches, loops, blocks, handlers)
/// start from what was open before their statement and give nothing back.
fn walk(list: &[Value], open: &BTreeSet<i64>, seen: &mut Seen) {
    let mut open = open.clone();
    for v in list {
        let Some((kind, fields)) = statement(v) else {
            continue;
        };
        match kind {
            "PLpgSQL_stmt_open" => {
                open.insert(curvar(fields));
            }
            "PLpgSQL_stmt_close" => {
                open.remove(&curvar(fields));
            }
            "PLpgSQL_stmt_fetch" => {
                seen.visited += 1;
                if !open.contains(&curvar(fields)) {
                    seen.undominated.insert(curvar(fields));
                }
            }
            _ => nested(fields, &open, seen),
        }
    }
}

/// Every statement list inside `v`, walked from `open`.
fn nested(v: &Value, open: &BTreeSet<i64>, seen: &mut Seen) {
    match v {
        Value::Array(items) if items.iter().any(|i| statement(i).is_some()) => {
            walk(items, open, seen);
        }
        Value::Array(items) => items.iter().for_each(|i| nested(i, open, seen)),
        Value::Object(map) => map.values().for_each(|c| nested(c, open, seen)),
        _ => {}
    }
}

/// Every FETCH or MOVE's cursor variable, anywhere, and how many there are.
fn fetches(v: &Value, out: &mut BTreeSet<i64>) -> usize {
    match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, c)| {
                let here = k == "PLpgSQL_stmt_fetch";
                if here {
                    out.insert(curvar(c));
                }
                usize::from(here) + fetches(c, out)
            })
            .sum(),
        Value::Array(items) => items.iter().map(|i| fetches(i, out)).sum(),
        _ => 0,
    }
}

/// Every variable a statement or target writes: `varno` (assignments, INTO and
/// CALL targets, loop variables) and numeric `target`s (GET DIAGNOSTICS).
fn writes(v: &Value, out: &mut BTreeSet<i64>) {
    match v {
        Value::Object(map) => written_in(map, out),
        Value::Array(items) => items.iter().for_each(|i| writes(i, out)),
        _ => {}
    }
}

fn written_in(map: &Map<String, Value>, out: &mut BTreeSet<i64>) {
    for (k, c) in map {
        if matches!(k.as_str(), "varno" | "target") {
            if let Some(n) = c.as_i64() {
                out.insert(n);
            }
        }
        writes(c, out);
    }
}

/// A `refcursor` the body declares without a default and without a bound query: NULL
/// until an OPEN names a portal for it.
fn null_until_opened(datums: &[Value], c: i64) -> bool {
    let Some(var) = usize::try_from(c)
        .ok()
        .and_then(|i| datums.get(i))
        .and_then(|d| d.get("PLpgSQL_var"))
    else {
        return false;
    };
    var.get("lineno").is_some()
        && var.get("default_val").is_none()
        && var.get("cursor_explicit_expr").is_none()
        && var
            .get("datatype")
            .and_then(|t| t.get("PLpgSQL_type"))
            .and_then(|t| t.get("typname"))
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("refcursor"))
}
