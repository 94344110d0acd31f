//! What a reading of a clause works with: the values an expression can take
//! ([`Poss`], [`Abs`]), which columns it takes to be NOT NULL ([`Assume`]), and the
//! written table as the clause names it ([`Scope`]). Kept apart so the reading
//! (`tautology.rs`) does not import from `tautology_schema.rs`, which builds on the
//! reading: the dependency runs one way.

use std::collections::BTreeSet;

use crate::classify::node::str_field;
use crate::classify::tautology_fold::{bool_text, column_fields, Const};
use crate::classify::tree::Map;

/// The values a boolean expression can take over the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::classify) struct Poss {
    pub t: bool,
    pub f: bool,
    pub n: bool,
}

impl Poss {
    pub(in crate::classify) const ANY: Poss = Poss {
        t: true,
        f: true,
        n: true,
    };
    pub(in crate::classify) const TRUE: Poss = Poss {
        t: true,
        f: false,
        n: false,
    };
    pub(super) const FALSE: Poss = Poss {
        t: false,
        f: true,
        n: false,
    };

    pub(super) fn one(b: bool) -> Poss {
        if b {
            Poss::TRUE
        } else {
            Poss::FALSE
        }
    }

    /// True or false, NULL too when `nullable`.
    pub(in crate::classify) fn unknown(nullable: bool) -> Poss {
        Poss {
            n: nullable,
            ..Poss::ANY
        }
    }

    /// Kleene AND (`or == false`) or OR over every pair of possible values.
    pub(super) fn combine(self, o: Poss, or: bool) -> Poss {
        let vals = |p: Poss| {
            [(p.t, Some(true)), (p.f, Some(false)), (p.n, None)]
                .into_iter()
                .filter(|(on, _)| *on)
                .map(|(_, v)| v)
        };
        let mut out = Poss::default();
        for a in vals(self) {
            for b in vals(o) {
                let r = match (a, b, or) {
                    (Some(x), Some(y), false) => Some(x && y),
                    (Some(x), Some(y), true) => Some(x || y),
                    (Some(false), None, false) | (None, Some(false), false) => Some(false),
                    (Some(true), None, true) | (None, Some(true), true) => Some(true),
                    _ => None,
                };
                match r {
                    Some(true) => out.t = true,
                    Some(false) => out.f = true,
                    None => out.n = true,
                }
            }
        }
        out
    }

    pub(super) fn not(self) -> Poss {
        Poss {
            t: self.f,
            f: self.t,
            n: self.n,
        }
    }
}

/// What an expression is known to be.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::classify) enum Abs {
    /// A constant, and whether it came from a literal the statement's shape leaves
    /// out (`1`, `'t'`; not the keywords `true`, `NULL`): then answers resting on its
    /// value are for this text only.
    Const(Const, bool),
    Bool(Poss),
    /// Some value of the row (or of something else), NULL or not.
    Value {
        nullable: bool,
    },
}

impl Abs {
    pub(in crate::classify) fn poss(&self) -> Poss {
        match self {
            Abs::Const(Const::Bool(b), _) => Poss::one(*b),
            Abs::Const(Const::Null, _) => Poss {
                n: true,
                ..Poss::default()
            },
            Abs::Const(Const::Str(s), _) => bool_text(s).map_or(Poss::ANY, Poss::one),
            Abs::Const(..) => Poss::unknown(false),
            Abs::Bool(p) => *p,
            Abs::Value { nullable } => Poss::unknown(*nullable),
        }
    }

    pub(in crate::classify) fn nullable(&self) -> bool {
        match self {
            Abs::Const(c, _) => *c == Const::Null,
            Abs::Bool(p) => p.n,
            Abs::Value { nullable } => *nullable,
        }
    }
}

/// Which columns a reading takes to be NOT NULL.
#[derive(Debug, Clone, Copy)]
pub(in crate::classify) enum Assume<'a> {
    /// Every column (the clause's value where nothing is NULL).
    All,
    /// Only these columns of the written row (and its system columns).
    Only(&'a BTreeSet<String>),
}

/// The written table, as its WHERE names it.
pub struct Scope<'v> {
    pub(in crate::classify) schema: String,
    pub(in crate::classify) name: String,
    /// Qualifiers naming the written row: its alias (or name), and those of a join
    /// partner that is the same table (read at the same row, see [`Scope::of_write`]).
    pub(in crate::classify) selves: Vec<String>,
    /// Without a written table (an upsert's DO UPDATE WHERE): every column is the row's.
    pub(in crate::classify) any: bool,
    /// The statement's own CTEs: a name in a FROM is one of them before any table.
    pub(in crate::classify) ctes: Vec<&'v Map>,
    /// In a SQL function's body, the names of its parameters: `b` in `WHERE b` is the
    /// value the caller passes, not a column (`$1` is one either way).
    pub(in crate::classify) params: &'v [String],
}

impl<'v> Scope<'v> {
    /// No table known: every column counts as the written row's.
    pub fn anything() -> Scope<'v> {
        Scope {
            schema: String::new(),
            name: String::new(),
            selves: Vec::new(),
            any: true,
            ctes: Vec::new(),
            params: &[],
        }
    }

    /// Whether this is [`Scope::anything`].
    pub(in crate::classify) fn knows_nothing(&self) -> bool {
        self.any
    }

    /// The parameter a bare name is in a function's body (`b` for the first: 1).
    pub(in crate::classify) fn param_number(&self, c: &Map) -> Option<i64> {
        if self.params.is_empty() {
            return None;
        }
        let (f, n) = column_fields(c)?;
        let at = self.params.iter().position(|p| n == 1 && *p == f[0])?;
        i64::try_from(at + 1).ok()
    }

    /// Whether a regclass literal (`'t'`, `'s.t'`, `'"T"'`) names the written table.
    pub(in crate::classify) fn names_table(&self, lit: &str) -> bool {
        if self.any {
            return false;
        }
        let part = |p: &str| match p.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => p.trim().to_ascii_lowercase(),
        };
        let parts: Vec<String> = lit.split('.').map(part).collect();
        match parts.as_slice() {
            [t] => *t == self.name,
            [s, t] => *t == self.name && (self.schema.is_empty() || *s == self.schema),
            _ => false,
        }
    }

    pub(in crate::classify) fn same_table(&self, r: &Map) -> bool {
        let (schema, name) = (str_field(r, "schemaname"), str_field(r, "relname"));
        name == self.name && (schema == self.schema || schema.is_empty() || self.schema.is_empty())
    }

    /// The written row's column a reference names (`id`, `t.id`, `s.t.id`, a system
    /// column), reading `extra` qualifiers as the row too.
    pub(in crate::classify) fn row_column<'c>(
        &self,
        c: &'c Map,
        extra: &[String],
    ) -> Option<&'c str> {
        let (f, n) = column_fields(c)?;
        let is_self = |q: &str| self.selves.iter().chain(extra).any(|s| s == q);
        match &f[..n] {
            [c] => Some(c),
            [.., c] if self.any => Some(c),
            [q, c] => is_self(q).then_some(*c),
            // `s.t.id`, `db.s.t.id`: the table itself, when not under an alias.
            [.., s, t, c] => {
                let schema = s.is_empty() || self.schema.is_empty() || *s == self.schema;
                (*t == self.name && schema && self.selves.first() == Some(&self.name)).then_some(*c)
            }
            [] => None,
        }
    }
}
