//! Is a WHERE clause true for every row? A three-valued reading of the clause: each
//! expression gets the set of values it can take (true, false, NULL) for some row.
//! Constants fold (`true`, `1=1`, `'t'::bool`, `1 IS NOT NULL`), a column compared
//! with itself is true wherever it is not NULL (`id = id`), and a condition with its
//! own negation (`x OR NOT x`, `x IS NULL OR x IS NOT NULL`, `a = b OR a <> b`) is
//! true wherever it is not NULL. Anything it does not understand can be anything.
//!
//! What counts as always true: a clause that is true for every row whose columns are
//! all non-NULL, and never false for any row. `flag OR NOT flag` and `id = id` are
//! NULL, not false, on a row where the column is NULL: nobody bounds a write that way,
//! so they are tautologies whatever the schema. `id IS NOT NULL` is false on a NULL
//! id: it is a tautology only where the schema says id is NOT NULL, which the
//! classifier cannot know; it records the condition (see [`super::tautology_schema`])
//! and the catalog decides.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use super::tree::{Map, Value};
use pg_query::protobuf::{AExprKind, BoolExprType, BoolTestType, NullTestType};

use super::node::{list_items, name_list, node};
use super::node_kind::NodeKind;
use super::tautology_fold::{
    bool_text, compare, complementary_pairs, constant, last_name, same_tree_as, Const,
};

#[path = "tautology_forms.rs"]
mod forms;
#[path = "tautology_model.rs"]
mod model;

pub(super) use model::{Abs, Assume, Poss, Scope};

/// System columns: never NULL (no user column can take their names).
const SYSTEM_COLUMNS: [&str; 6] = ["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// One reading of a clause.
pub(super) struct Ctx<'s> {
    pub scope: &'s Scope<'s>,
    pub assume: Assume<'s>,
    /// The values parameters are read as (`$1` as NULL, ...); one not here is unknown.
    pub binding: &'s [(i64, Const)],
    /// A literal's value was looked at.
    pub looked: Cell<bool>,
    /// Columns of the written row the clause names (system columns left out).
    pub row_columns: RefCell<BTreeSet<String>>,
}

impl<'s> Ctx<'s> {
    pub fn new(scope: &'s Scope<'s>, assume: Assume<'s>) -> Ctx<'s> {
        Ctx {
            scope,
            assume,
            binding: &[],
            looked: Cell::new(false),
            row_columns: RefCell::new(BTreeSet::new()),
        }
    }

    /// The same reading with parameters read as `binding`.
    pub fn binding(self, binding: &'s [(i64, Const)]) -> Ctx<'s> {
        Ctx { binding, ..self }
    }

    /// The possible values of a clause, with `extra` qualifiers naming the written row
    /// too (a subquery over the same table, read at the written row itself).
    pub fn poss(&self, v: &Value, extra: &[String]) -> Poss {
        self.truth(&self.eval(v, extra))
    }

    /// A value read as a condition; a literal read so is looked at.
    pub(super) fn truth(&self, a: &Abs) -> Poss {
        if let Abs::Const(Const::Bool(_) | Const::Str(_), true) = a {
            self.looked.set(true);
        }
        a.poss()
    }

    /// The written row's column a reference names, if it names one.
    pub(super) fn row_column<'v>(&self, c: &'v Map, extra: &[String]) -> Option<&'v str> {
        let col = self.scope.row_column(c, extra)?;
        if !SYSTEM_COLUMNS.contains(&col) && !self.row_columns.borrow().contains(col) {
            self.row_columns.borrow_mut().insert(col.to_owned());
        }
        Some(col)
    }

    fn not_null(&self, col: &str) -> bool {
        SYSTEM_COLUMNS.contains(&col)
            || match self.assume {
                Assume::All => true,
                Assume::Only(set) => set.contains(col),
            }
    }

    pub(super) fn eval(&self, v: &Value, extra: &[String]) -> Abs {
        let Some((ty, body)) = node(v) else {
            return Abs::Value { nullable: true };
        };
        let unknown = Abs::Value { nullable: true };
        match ty {
            NodeKind::AConst => constant(body).map_or(unknown, |c| {
                let literal = !matches!(c, Const::Bool(_) | Const::Null);
                Abs::Const(c, literal)
            }),
            NodeKind::ColumnRef if self.scope.param_number(body).is_some() => {
                self.param(self.scope.param_number(body))
            }
            NodeKind::ColumnRef => match self.row_column(body, extra) {
                Some(col) => Abs::Value {
                    nullable: !self.not_null(col),
                },
                // Another table's column (a join partner): NOT NULL only when every
                // column is taken to be.
                None => Abs::Value {
                    nullable: !matches!(self.assume, Assume::All),
                },
            },
            NodeKind::TypeCast => {
                let Some(arg) = body.get("arg") else {
                    return unknown;
                };
                let inner = self.eval(arg, extra);
                let Abs::Const(c, lit) = inner else {
                    return inner;
                };
                let ty_names = body
                    .get("type_name")
                    .and_then(|t| t.as_object())
                    .map(|t| name_list(t.get("names")))
                    .unwrap_or_default();
                let target = ty_names
                    .last()
                    .map(|s| s.to_ascii_lowercase())
                    .unwrap_or_default();
                match (target.as_str(), c) {
                    ("bool" | "boolean", Const::Str(s)) => {
                        bool_text(&s).map_or(unknown, |b| Abs::Const(Const::Bool(b), lit))
                    }
                    ("bool" | "boolean", Const::Int(n)) => Abs::Const(Const::Bool(n != 0), lit),
                    (
                        "int2" | "int4" | "int8" | "integer" | "bigint" | "smallint",
                        Const::Str(s),
                    ) => s
                        .trim()
                        .parse()
                        .map_or(unknown, |n| Abs::Const(Const::Int(n), lit)),
                    (_, other) => Abs::Const(other, lit),
                }
            }
            NodeKind::BoolExpr => {
                let op = body.get("boolop").and_then(Value::as_i64).unwrap_or(0);
                let args: &[Value] = body
                    .get("args")
                    .and_then(Value::as_array)
                    .map_or(&[], Vec::as_slice);
                if op == BoolExprType::NotExpr as i64 {
                    return match args.first() {
                        Some(a) => Abs::Bool(self.poss(a, extra).not()),
                        None => unknown,
                    };
                }
                let or = op == BoolExprType::OrExpr as i64;
                if !or && op != BoolExprType::AndExpr as i64 {
                    return unknown;
                }
                Abs::Bool(self.junction(args, or, extra))
            }
            NodeKind::NullTest => {
                let Some(arg) = body.get("arg") else {
                    return unknown;
                };
                let a = self.eval(arg, extra);
                let t = body.get("nulltesttype").and_then(Value::as_i64);
                let is_null = match a {
                    Abs::Const(c, _) => Poss::one(c == Const::Null),
                    other => Poss {
                        t: other.nullable(),
                        f: true,
                        n: false,
                    },
                };
                if t == Some(NullTestType::IsNull as i64) {
                    Abs::Bool(is_null)
                } else if t == Some(NullTestType::IsNotNull as i64) {
                    Abs::Bool(is_null.not())
                } else {
                    unknown
                }
            }
            NodeKind::BooleanTest => {
                let Some(arg) = body.get("arg") else {
                    return unknown;
                };
                let p = self.poss(arg, extra);
                let t = body
                    .get("booltesttype")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                // Whether the test holds for a true, a false and a NULL value.
                let holds = [
                    (BoolTestType::IsTrue, [true, false, false]),
                    (BoolTestType::IsNotTrue, [false, true, true]),
                    (BoolTestType::IsFalse, [false, true, false]),
                    (BoolTestType::IsNotFalse, [true, false, true]),
                    (BoolTestType::IsUnknown, [false, false, true]),
                    (BoolTestType::IsNotUnknown, [true, true, false]),
                ]
                .into_iter()
                .find(|(k, _)| *k as i64 == t);
                let Some((_, h)) = holds else {
                    return unknown;
                };
                let mut out = Poss::default();
                for (on, holds) in [(p.t, h[0]), (p.f, h[1]), (p.n, h[2])] {
                    if on {
                        if holds {
                            out.t = true;
                        } else {
                            out.f = true;
                        }
                    }
                }
                Abs::Bool(out)
            }
            NodeKind::CoalesceExpr => self.coalesce(body, extra),
            NodeKind::AExpr => self.a_expr(body, extra),
            NodeKind::SubLink => self.sublink(body, extra),
            NodeKind::CaseExpr => self.case(body, extra),
            NodeKind::FuncCall => self.call(body, extra),
            // A parameter is the value it is bound to (see `tautology_params`).
            NodeKind::ParamRef => self.param(body.get("number").and_then(Value::as_i64)),
            _ => unknown,
        }
    }

    /// Parameter `n` as bound in this reading (unknown when it is not).
    fn param(&self, n: Option<i64>) -> Abs {
        match self.binding.iter().find(|(k, _)| Some(*k) == n) {
            Some((_, c)) => Abs::Const(c.clone(), true),
            None => Abs::Value { nullable: true },
        }
    }

    /// AND or OR of the arguments. A pair of arguments where one is the other's
    /// negation is read as one: its two halves are never both false (OR) or both true
    /// (AND), which the reading of each half alone cannot tell.
    fn junction(&self, args: &[Value], or: bool, extra: &[String]) -> Poss {
        // `id = 1 OR id <> 2` shares its shape with `id = 1 OR id <> 1`.
        let (pairs, looked) = complementary_pairs(args);
        if looked {
            self.looked.set(true);
        }
        let mut partner: Vec<Option<usize>> = vec![None; args.len()];
        for &(i, j) in &pairs {
            partner[i] = Some(j);
            partner[j] = Some(i);
        }
        let mut acc: Option<Poss> = None;
        for (i, arg) in args.iter().enumerate() {
            let p = match partner[i] {
                Some(j) if j < i => continue, // read with its partner
                Some(j) => {
                    // Where neither half is NULL one holds and the other does not.
                    let (a, b) = (self.poss(arg, extra), self.poss(&args[j], extra));
                    Poss {
                        t: or,
                        f: !or,
                        n: a.n || b.n,
                    }
                }
                None => self.poss(arg, extra),
            };
            acc = Some(acc.map_or(p, |a| a.combine(p, or)));
        }
        acc.unwrap_or(Poss::ANY)
    }

    /// `coalesce(a, b, ...)`: each argument's values where those before it are NULL.
    fn coalesce(&self, body: &Map, extra: &[String]) -> Abs {
        let args: &[Value] = body
            .get("args")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let mut out = Poss::default();
        let mut boolean = false;
        for a in args {
            let v = self.eval(a, extra);
            boolean |= matches!(v, Abs::Bool(_) | Abs::Const(Const::Bool(_), _));
            let p = self.truth(&v);
            out.t |= p.t;
            out.f |= p.f;
            if !v.nullable() {
                if boolean {
                    return Abs::Bool(out);
                }
                return match (args.len(), v) {
                    (1, c @ Abs::Const(..)) => c,
                    _ => Abs::Value { nullable: false },
                };
            }
        }
        if boolean {
            out.n = true;
            Abs::Bool(out)
        } else {
            Abs::Value { nullable: true }
        }
    }

    fn a_expr(&self, body: &Map, extra: &[String]) -> Abs {
        let unknown = Abs::Value { nullable: true };
        let kind = body.get("kind").and_then(Value::as_i64).unwrap_or(0);
        let Some(op) = last_name(body.get("name")) else {
            return unknown;
        };
        let (Some(l), Some(r)) = (body.get("lexpr"), body.get("rexpr")) else {
            return unknown;
        };
        let plain = kind == AExprKind::AexprOp as i64;
        let not_distinct = kind == AExprKind::AexprNotDistinct as i64;
        let reflexive_op = matches!(op, "=" | "<=" | ">=") && (plain || not_distinct);
        if reflexive_op && node(l).is_some() && same_tree_as(l, r, true) {
            // `id * 1 = id * 2` shares its shape with `id * 1 = id * 1`: whether the sides
            // are the same rests on the literals, so no answer holds for the shape.
            self.looked.set(true);
        }
        if reflexive_op && node(l).is_some() && self.same_value(l, r, extra) {
            // `1 = 1`, `id = id`, `t.id = t2.id` with t2 the written row itself: true
            // wherever the side is not NULL (IS NOT DISTINCT FROM: everywhere).
            let nullable = !not_distinct && self.eval(l, extra).nullable();
            return Abs::Bool(Poss {
                n: nullable,
                ..Poss::TRUE
            });
        }
        if let Some(like) = self.like(kind, op, l, r, extra) {
            return like;
        }
        if plain && self.system_bound(l, op, r, extra) {
            return Abs::Bool(Poss::TRUE);
        }
        if kind == AExprKind::AexprOpAny as i64 && op == "=" && self.any_array(l, r, extra) {
            // `id = ANY (ARRAY(SELECT id FROM t))`: as `id IN (SELECT id FROM t)`.
            let nullable = self.eval(l, extra).nullable();
            return Abs::Bool(Poss {
                n: nullable,
                ..Poss::TRUE
            });
        }
        let (a, b) = (self.eval(l, extra), self.eval(r, extra));
        let nullable = a.nullable() || b.nullable();
        if plain && matches!(op, "=" | "<>" | "!=") {
            // `(id IS NOT NULL) = true`: the other side itself, or its negation.
            let with_bool = match (&a, &b) {
                (Abs::Const(Const::Bool(x), lit), other @ Abs::Bool(_))
                | (other @ Abs::Bool(_), Abs::Const(Const::Bool(x), lit)) => {
                    Some((*x, *lit, other.poss()))
                }
                _ => None,
            };
            if let Some((x, lit, p)) = with_bool {
                if lit {
                    self.looked.set(true); // `'t'::bool`
                }
                return Abs::Bool(if x == (op == "=") { p } else { p.not() });
            }
        }
        if plain {
            if let (Abs::Const(x, l1), Abs::Const(y, l2)) = (&a, &b) {
                if *l1 || *l2 {
                    self.looked.set(true); // `1 = 2` shares its shape with `1 = 1`
                }
                if let Some(ord) = compare(x, y) {
                    use std::cmp::Ordering::*;
                    let result = match op {
                        "=" => ord == Equal,
                        "<>" | "!=" => ord != Equal,
                        "<" => ord == Less,
                        ">" => ord == Greater,
                        "<=" => ord != Greater,
                        ">=" => ord != Less,
                        _ => return unknown,
                    };
                    return Abs::Const(Const::Bool(result), *l1 || *l2);
                }
            }
            return match op {
                "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=" => Abs::Bool(Poss::unknown(nullable)),
                // Arithmetic and concatenation of non-NULL values are not NULL.
                "+" | "-" | "*" | "/" | "%" | "||" => Abs::Value { nullable },
                _ => unknown,
            };
        }
        if kind == AExprKind::AexprIn as i64 {
            // 1 IN (1, 2)
            let Some(items) = list_items(r).and_then(Value::as_array) else {
                return unknown;
            };
            if let Abs::Const(x, _) = &a {
                self.looked.set(true); // `1 IN (2, 3)` shares its shape with `1 IN (1, 2)`
                let hit = items.iter().any(|i| match self.eval(i, extra) {
                    Abs::Const(y, _) => compare(x, &y) == Some(std::cmp::Ordering::Equal),
                    _ => false,
                });
                if hit && op == "=" {
                    return Abs::Const(Const::Bool(true), true);
                }
            }
            return Abs::Bool(Poss::ANY);
        }
        unknown
    }

    /// Both sides are the same expression, or the same column of the written row
    /// under two of its names (`t.id` and `t2.id` where t2 is the row itself), once
    /// arithmetic that keeps a value is peeled off (`id + 0`, `id * 1`).
    pub(super) fn same_value(&self, l: &Value, r: &Value, extra: &[String]) -> bool {
        // `id = id + 1` shares its shape with `id = id + 0`: the literals decide.
        let (sl, sr) = (self.peel(l, extra, true), self.peel(r, extra, true));
        if (!std::ptr::eq(sl, l) || !std::ptr::eq(sr, r)) && same_tree_as(sl, sr, true) {
            self.looked.set(true);
        }
        let (l, r) = (self.peel(l, extra, false), self.peel(r, extra, false));
        if same_tree_as(l, r, false) {
            return true;
        }
        if self.scope.knows_nothing() {
            return false; // `t.id = s.id`: two tables, for all it knows
        }
        match (node(l), node(r)) {
            (Some((NodeKind::ColumnRef, a)), Some((NodeKind::ColumnRef, b))) => {
                match (
                    self.scope.row_column(a, extra),
                    self.scope.row_column(b, extra),
                ) {
                    (Some(x), Some(y)) => x == y && x != "*",
                    _ => false,
                }
            }
            _ => false,
        }
    }
}
