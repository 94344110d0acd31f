//! Row-level security policies, the masks' side (review s36 F9): a policy's
//! expressions run over its table's rows on every read (USING) and write (USING and
//! WITH CHECK), so they are traced like a query over the table. What they refer to
//! joins what the statement refers to (an error a policy raises may quote a masked
//! value: it is withheld), and code they run that keeps masked values (a function
//! given a masked column that writes a table, one reading a masked table and writing
//! it elsewhere) makes the read or write refused, as such a trigger makes a write.
//! A policy pgmoat could not read is code it cannot trace: refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use super::{Masking, MAX_VIEW_DEPTH};
use crate::catalog::Catalog;
use crate::classify::lineage::{self, Runs, Taint};

thread_local! {
    /// The relations whose policies are being traced on this thread: a policy's own
    /// table, read in its trace, does not run the policy again.
    static TRACING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Per relation with policies (by index), what reading and writing it runs, and what
/// its dormant policies would run (see [`DORMANT`]), traced once per engine.
pub(super) type PolicyRuns = HashMap<usize, [OnceLock<Runs>; 3]>;

/// Which code of a table's: its policies on a read (0) or a write (1), or its
/// dormant policies (a table with RLS disabled) on a write.
pub(super) const DORMANT: usize = 2;

/// The cells for the tables of `catalog` that have policies.
pub(super) fn cells(catalog: &Catalog) -> PolicyRuns {
    if !catalog.has_policies() {
        return HashMap::new();
    }
    catalog
        .relations
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let q = format!("{}.{}", r.schema, r.name);
            catalog.policies(&q).is_some() || catalog.dormant_policies(&q).is_some()
        })
        .map(|(i, _)| (i, [OnceLock::new(), OnceLock::new(), OnceLock::new()]))
        .collect()
}

impl Masking {
    /// What reading or writing (`code`: 0 or 1, or [`DORMANT`]) the relations a name
    /// may be runs of their policies: `schema.name`, or every relation of a bare name.
    pub(super) fn policies_named(&self, schema: Option<&str>, name: &str, code: usize) -> Runs {
        if self.policy_runs.is_empty() {
            return Runs::default();
        }
        let found = self.relations_named(schema, name);
        found
            .into_iter()
            .fold(Runs::default(), |r, i| r.join(self.policy_runs(i, code, 0)))
    }

    /// Relation `i`'s: a table's own policies; a view's are those of the relations
    /// its definition reads (reading or writing a view reads or writes them).
    fn policy_runs(&self, i: usize, code: usize, depth: usize) -> Runs {
        let r = &self.catalog.relations[i];
        if r.view_definition.is_some() || r.definition_unread {
            if code == DORMANT {
                return Runs::default();
            }
            if depth > MAX_VIEW_DEPTH {
                return Runs::UNKNOWN;
            }
            let Some(f) = self.catalog.view_facts(&format!("{}.{}", r.schema, r.name)) else {
                return Runs::default();
            };
            let mut out = Runs::default();
            for t in &f.tables_read {
                let (schema, rel) = t.split_once('.').unwrap_or(("public", t));
                let named: Vec<usize> = match self.by_qual.get(&(schema.to_owned(), rel.to_owned()))
                {
                    Some(&j) if !f.unqualified_tables.contains(rel) => vec![j],
                    _ => self.by_name.get(rel).cloned().unwrap_or_default(),
                };
                for j in named.into_iter().filter(|&j| j != i) {
                    out = out.join(self.policy_runs(j, code, depth + 1));
                }
            }
            return out;
        }
        let Some(cell) = self.policy_runs.get(&i) else {
            return Runs::default();
        };
        if TRACING.with(|t| t.borrow().contains(&i)) {
            return Runs::default();
        }
        let cell = &cell[code];
        if let Some(runs) = cell.get() {
            return *runs;
        }
        // Not `get_or_init`: two threads tracing tables whose policies read each
        // other would wait on each other. Both may trace; the first one kept wins.
        TRACING.with(|t| t.borrow_mut().push(i));
        let runs = self.trace_policies(i, code);
        TRACING.with(|t| t.borrow_mut().pop());
        *cell.get_or_init(|| runs)
    }

    /// Trace table `i`'s policy code (its SQL reads the table itself, whose columns
    /// the expressions name).
    fn trace_policies(&self, i: usize, code: usize) -> Runs {
        let r = &self.catalog.relations[i];
        let q = format!("{}.{}", r.schema, r.name);
        let code = match code {
            DORMANT => self.catalog.dormant_policies(&q),
            0 => self.catalog.policies(&q).and_then(|p| p.read.as_ref()),
            _ => self.catalog.policies(&q).and_then(|p| p.write.as_ref()),
        };
        let Some(code) = code else {
            return Runs::default();
        };
        let Some(sql) = &code.sql else {
            return Runs::UNKNOWN;
        };
        let Ok(traced) = lineage::analyze(sql, self) else {
            return Runs::UNKNOWN;
        };
        traced.iter().fold(Runs::default(), |runs, l| {
            let refers = l
                .outputs
                .iter()
                .flatten()
                .fold(l.touched, |t, o| t.join(*o));
            let keeps = match &l.launders {
                // Keeping values derived from what it refers to (or from what its
                // functions read, which may not be in `touched`).
                Some(_) if refers.is_clean() => Taint::UNKNOWN,
                Some(_) => refers,
                None => Taint::CLEAN,
            };
            runs.join(Runs { refers, keeps })
        })
    }
}
