//! Predicates true for every non-NULL value of what they test, beyond plain logic:
//! a value compared with itself once arithmetic that keeps it is peeled off (`id =
//! id + 0`), a pattern that matches every string (`LIKE '%'`, `~ ''`), a system
//! column against the floor of its type or the table's own oid (`ctid >= '(0,0)'`,
//! `tableoid = 't'::regclass`), `num_nonnulls`/`num_nulls` of the row's columns, and
//! CASE (the values of the branches it can take).
//!
//! Each rests on a literal's value (`id + 0` and `id + 1` share a shape): the reading
//! is marked as having looked at one whenever the shape alone could go either way.

use pg_query::protobuf::AExprKind;

use super::{Abs, Ctx, Poss};
use crate::classify::node::node;
use crate::classify::node_kind::NodeKind;
use crate::classify::tautology_fold::{last_name, Const};
use crate::classify::tree::{Map, Value};

/// Arithmetic peeled off one value at most this deep (`id + 0 + 0 ...`).
const MAX_PEEL: usize = 16;

impl Ctx<'_> {
    /// `v` with arithmetic that keeps a value peeled off: `x + 0`, `0 + x`, `x - 0`,
    /// `x * 1`, `1 * x`, `x / 1`, `x || ''`, `'' || x`, `+x`. With `any_value`, a
    /// literal (or parameter) of any value counts: the shape that could be peeled.
    pub(super) fn peel<'v>(&self, v: &'v Value, extra: &[String], any_value: bool) -> &'v Value {
        let mut v = v;
        for _ in 0..MAX_PEEL {
            if let Some((NodeKind::CoalesceExpr, c)) = node(v) {
                // `coalesce(NULL, x)`, `coalesce($1, x)` bound with NULL: x.
                match self.past_nulls(c, extra, any_value) {
                    Some(next) => {
                        v = next;
                        continue;
                    }
                    None => break,
                }
            }
            let Some((NodeKind::AExpr, e)) = node(v) else {
                break;
            };
            if e.get("kind").and_then(Value::as_i64) != Some(AExprKind::AexprOp as i64) {
                break;
            }
            let l = e.get("lexpr").filter(|x| node(x).is_some());
            let Some(r) = e.get("rexpr") else { break };
            let is = |side: &Value, want: &Const| {
                if !self.value_like(side) {
                    return false;
                }
                match self.eval(side, extra) {
                    Abs::Const(c, _) if any_value => c != Const::Null,
                    Abs::Const(Const::Num(x), _) => {
                        Const::Num(x) == *want || {
                            matches!(want, Const::Int(n) if x == *n as f64)
                        }
                    }
                    Abs::Const(c, _) => c == *want,
                    _ => false,
                }
            };
            let (zero, one, empty) = (Const::Int(0), Const::Int(1), Const::Str(String::new()));
            let next = match (last_name(e.get("name")), l) {
                (Some("+"), None) => Some(r),
                (Some("+"), Some(l)) if is(r, &zero) => Some(l),
                (Some("+"), Some(l)) if is(l, &zero) => Some(r),
                (Some("-"), Some(l)) if is(r, &zero) => Some(l),
                (Some("*"), Some(l)) if is(r, &one) => Some(l),
                (Some("*"), Some(l)) if is(l, &one) => Some(r),
                (Some("/"), Some(l)) if is(r, &one) => Some(l),
                (Some("||"), Some(l)) if is(r, &empty) => Some(l),
                (Some("||"), Some(l)) if is(l, &empty) => Some(r),
                _ => None,
            };
            match next {
                Some(n) => v = n,
                None => break,
            }
        }
        v
    }

    /// A literal or parameter (by number, or by name in a function's body), cast or
    /// not: worth evaluating as a constant.
    fn value_like(&self, v: &Value) -> bool {
        match node(v) {
            Some((NodeKind::AConst | NodeKind::ParamRef | NodeKind::TypeCast, _)) => true,
            Some((NodeKind::ColumnRef, c)) => self.scope.param_number(c).is_some(),
            _ => false,
        }
    }

    /// The one argument of a `coalesce` left once leading NULLs are dropped (with
    /// `any_value`, leading literals and parameters of any value).
    fn past_nulls<'v>(&self, c: &'v Map, extra: &[String], any_value: bool) -> Option<&'v Value> {
        let args = c.get("args").and_then(Value::as_array)?;
        let mut rest = args.iter().skip_while(|a| {
            self.value_like(a)
                && match self.eval(a, extra) {
                    Abs::Const(Const::Null, _) => true,
                    Abs::Const(..) => any_value,
                    _ => false,
                }
        });
        let first = rest.next()?;
        rest.next().is_none().then_some(first)
    }

    /// `CASE`: the values of the branches it can take (a WHEN never true is skipped,
    /// one always true ends it); a simple `CASE x WHEN ...` can take any.
    pub(super) fn case(&self, body: &Map, extra: &[String]) -> Abs {
        let simple = body.get("arg").is_some_and(|a| node(a).is_some());
        let mut out = Poss::default();
        let mut boolean = false;
        let mut nullable = false;
        let mut take = |v: Abs, out: &mut Poss| {
            boolean |= matches!(v, Abs::Bool(_) | Abs::Const(Const::Bool(_), _));
            nullable |= v.nullable();
            let p = self.truth(&v);
            out.t |= p.t;
            out.f |= p.f;
            out.n |= p.n;
        };
        let whens = body.get("args").and_then(Value::as_array);
        for w in whens.into_iter().flatten() {
            let Some((NodeKind::CaseWhen, cw)) = node(w) else {
                return Abs::Value { nullable: true };
            };
            let cond = match (simple, cw.get("expr")) {
                (false, Some(e)) => self.poss(e, extra),
                _ => Poss::ANY,
            };
            if !cond.t {
                continue;
            }
            let Some(result) = cw.get("result") else {
                return Abs::Value { nullable: true };
            };
            take(self.eval(result, extra), &mut out);
            if cond == Poss::TRUE {
                return finish(out, boolean, nullable);
            }
        }
        match body.get("defresult").filter(|d| node(d).is_some()) {
            Some(d) => take(self.eval(d, extra), &mut out),
            None => {
                out.n = true;
                nullable = true;
            }
        }
        finish(out, boolean, nullable)
    }

    /// `num_nonnulls(...)`, `num_nulls(...)`: a count, known when each argument is
    /// known to be NULL or not. Other calls are unknown.
    pub(super) fn call(&self, body: &Map, extra: &[String]) -> Abs {
        let unknown = Abs::Value { nullable: true };
        let names = body.get("funcname").and_then(Value::as_array);
        let builtin = match names.map(Vec::len) {
            Some(1) => true,
            Some(2) => {
                names
                    .and_then(|n| n.first())
                    .and_then(node)
                    .and_then(|(_, m)| m.get("sval"))
                    .and_then(Value::as_str)
                    == Some("pg_catalog")
            }
            _ => false,
        };
        let nonnulls = match last_name(body.get("funcname")) {
            Some("num_nonnulls") => true,
            Some("num_nulls") => false,
            _ => return unknown,
        };
        let variadic = body
            .get("func_variadic")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !builtin || variadic {
            return unknown;
        }
        let args: &[Value] = body
            .get("args")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut count = 0i64;
        for a in args {
            match self.eval(a, extra) {
                Abs::Const(Const::Null, _) => {}
                v if !v.nullable() => count += 1,
                _ => return Abs::Value { nullable: false },
            }
        }
        let n = if nonnulls {
            count
        } else {
            args.len() as i64 - count
        };
        Abs::Const(Const::Int(n), false)
    }

    /// `x LIKE '%'` (ILIKE, and NOT): true (false) wherever x is not NULL. None when
    /// the pattern does not match every string.
    pub(super) fn like(
        &self,
        kind: i64,
        op: &str,
        l: &Value,
        r: &Value,
        extra: &[String],
    ) -> Option<Abs> {
        let like = kind == AExprKind::AexprLike as i64 || kind == AExprKind::AexprIlike as i64;
        let regex = kind == AExprKind::AexprOp as i64 && matches!(op, "~" | "~*" | "!~" | "!~*");
        if !like && !regex {
            return None;
        }
        let Abs::Const(Const::Str(p), _) = self.eval(r, extra) else {
            return None;
        };
        self.looked.set(true); // `LIKE 'a%'` shares its shape with `LIKE '%'`
        let every = if like {
            !p.is_empty() && p.chars().all(|c| c == '%')
        } else {
            matches!(p.as_str(), "" | ".*" | "^" | "$" | "^.*" | ".*$" | "^.*$")
        };
        if !every {
            return None;
        }
        let holds = !op.starts_with('!');
        Some(Abs::Bool(Poss {
            t: holds,
            f: !holds,
            n: self.eval(l, extra).nullable(),
        }))
    }

    /// A system column against the least value of its type, or the table's own oid:
    /// `ctid >= '(0,0)'`, `ctid > '(0,0)'` (no tuple is at offset 0), `ctid <>
    /// '(0,0)'`, `tableoid = 't'::regclass` (every row of t's own: what `DELETE FROM
    /// ONLY t` would write).
    pub(super) fn system_bound(&self, l: &Value, op: &str, r: &Value, extra: &[String]) -> bool {
        fn column<'v>(ctx: &Ctx<'_>, v: &'v Value, extra: &[String]) -> Option<&'v str> {
            let mut v = v;
            while let Some((NodeKind::TypeCast, c)) = node(v) {
                v = c.get("arg")?;
            }
            match node(v) {
                Some((NodeKind::ColumnRef, c)) => ctx.scope.row_column(c, extra),
                _ => None,
            }
        }
        let flipped = match op {
            ">" => "<",
            "<" => ">",
            ">=" => "<=",
            "<=" => ">=",
            other => other,
        };
        for (a, b, op) in [(l, r, op), (r, l, flipped)] {
            let Some(col @ ("ctid" | "tableoid")) = column(self, a, extra) else {
                continue;
            };
            let Abs::Const(Const::Str(s), _) = self.eval(b, extra) else {
                continue;
            };
            self.looked.set(true);
            let tid: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let holds = match (col, op) {
                ("ctid", ">=" | ">" | "<>" | "!=") => tid == "(0,0)",
                ("tableoid", "=") => self.scope.names_table(&s),
                _ => false,
            };
            if holds {
                return true;
            }
        }
        false
    }
}

fn finish(out: Poss, boolean: bool, nullable: bool) -> Abs {
    if boolean {
        Abs::Bool(out)
    } else {
        Abs::Value { nullable }
    }
}
