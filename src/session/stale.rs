//! Prepared statements judged under a catalog the server no longer plans them under.
//!
//! A prepared statement (protocol Parse, SQL PREPARE) is judged by the rules and traced
//! for masking once, when it is defined. The server, though, plans it again whenever
//! a relation or function it uses changes (DDL from any session, replica or the
//! server directly) and whenever search_path changes: after `CREATE OR REPLACE VIEW`
//! an old `EXECUTE p` reads the new view with the old, clean tracing, and after
//! `SET search_path = hideout, public` it reads `hideout.staff` past a `hideout.*`
//! rule (review s36 F1, F5).
//!
//! So each statement slot keeps what it was judged under ([`Judgment`]): the catalog,
//! the session's search-path state, and its classification. The session keeps the
//! catalog and path state every judged statement is known good under
//! ([`Freshness`]); a Bind or EXECUTE compares that by pointer (the common case: no
//! change) and only when it moved are the statements checked again, once per change:
//! one whose entries (relations it names and the views, functions, operators and
//! types they reach) differ between the two catalogs, or whose bare table names could
//! now be in another schema, is stale, and each Bind or EXECUTE of it is refused
//! until it is prepared again. A catalog read again with nothing changed, or DDL on
//! other objects, leaves it running.

use std::collections::HashSet;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::classify::{Classified, Facts};
use crate::protocol::sqlstate;
use crate::session::core::names::Names;
use crate::session::judge::Judge;
use crate::session::verdict::{OwnCause, Refusal};

/// Names followed through views and function bodies before giving up (as stale).
const REACH_MAX: usize = 4096;

/// What a prepared statement was judged under.
#[derive(Clone)]
pub struct Judgment {
    catalog: Arc<Catalog>,
    /// The session's search-path state then (see `Judge::path_changed`).
    path_changed: bool,
    /// Its classification; several when a SQL name was prepared again (the server
    /// keeps the old statement if the new PREPARE fails).
    classified: Vec<Arc<Classified>>,
    /// What it uses changed since it was judged: a Bind or EXECUTE of it is refused.
    pub stale: bool,
    /// A DEALLOCATE or DISCARD may have freed the name: a PREPARE of it replaces
    /// this judgment instead of adding to it.
    freed: bool,
}

impl Judgment {
    /// The judgment of a statement `judge` has just judged (None: nothing judged it).
    pub fn of(judge: &Judge, classified: Arc<Classified>) -> Option<Judgment> {
        let catalog = crate::session::core::slots::lock(&judge.judged_under).clone()?;
        Some(Judgment {
            path_changed: judge.path_changed(&catalog),
            catalog,
            classified: vec![classified],
            stale: false,
            freed: false,
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The facts of the statements it was judged as.
    pub fn statements(&self) -> impl Iterator<Item = &Facts> {
        self.classified.iter().flat_map(|c| c.statements.iter())
    }

    /// A SQL PREPARE of a name that already has `old`: the server runs either
    /// afterwards (the new one only if the PREPARE succeeded), so both are checked,
    /// against the older state.
    pub fn merged(self, old: Option<Judgment>) -> Judgment {
        match old {
            Some(mut o) if !o.freed => {
                o.path_changed &= self.path_changed;
                o.classified.extend(self.classified);
                o
            }
            _ => self,
        }
    }
}

/// The refusal of a Bind or EXECUTE of a stale statement. SQLSTATE 0A000 with routine
/// `RevalidateCachedQuery` is what Postgres itself sends for "cached plan must not
/// change result type": drivers that re-prepare on exactly that (pgjdbc) recover by
/// themselves.
pub fn refusal(name: &[u8]) -> Refusal {
    Refusal::own(
        OwnCause::Catalog,
        sqlstate::FEATURE_NOT_SUPPORTED,
        format!(
            "pgmoat: prepared statement \"{}\" must be prepared again: what it reads changed since it was judged",
            String::from_utf8_lossy(name)
        ),
    )
    .with_routine("RevalidateCachedQuery")
}

/// The catalog and path state every judged statement of the session is good under.
#[derive(Default)]
pub struct Freshness {
    /// None until a prepared statement is judged.
    under: Option<(Arc<Catalog>, bool)>,
    /// Some statement is stale: Binds are read (and refused) by the scanner.
    pub any_stale: bool,
}

impl Freshness {
    /// Nothing moved since the statements were checked: pointer compare and atomics.
    pub fn in_step(&self, judge: &Judge) -> bool {
        match &self.under {
            None => true,
            Some((c, path)) => {
                judge.catalog.is_current(c)
                    && (*path
                        || !judge
                            .search_path_changed
                            .load(std::sync::atomic::Ordering::Relaxed))
            }
        }
    }

    /// Whether statements judged under `catalog` may skip [`Self::check`].
    pub fn judged_in_step(&self, judge: &Judge, catalog: &Arc<Catalog>) -> bool {
        self.under
            .as_ref()
            .is_some_and(|(c, p)| Arc::ptr_eq(c, catalog) && *p == judge.path_changed(c))
    }

    /// Check every judged statement against `now` (the catalog current now): those
    /// whose uses changed become stale; the others count as judged under it.
    pub fn check(&mut self, judge: &Judge, names: &mut Names, now: &Arc<Catalog>) {
        let path = judge.path_changed(now);
        let mut any = false;
        let mut proven = Proven::default();
        for j in names
            .statement_slots_mut()
            .filter_map(|s| s.judged.as_mut())
        {
            let judged_so = Arc::ptr_eq(&j.catalog, now) && j.path_changed == path;
            if !j.stale && !judged_so {
                j.stale = changed(j, now, path, &mut proven);
                // A stale one keeps no old catalog alive.
                j.catalog = Arc::clone(now);
                j.path_changed |= path;
            }
            any |= j.stale;
        }
        self.under = Some((Arc::clone(now), path));
        self.any_stale = any;
    }

    /// The catalog cannot be read: nothing judged can be told good (fail closed).
    pub fn all_stale(&mut self, names: &mut Names) {
        for j in names
            .statement_slots_mut()
            .filter_map(|s| s.judged.as_mut())
        {
            j.stale = true;
            self.any_stale = true;
        }
    }

    /// A DEALLOCATE or DISCARD was sent: any SQL name may be free for a new PREPARE.
    pub fn freed(names: &mut Names) {
        for j in names
            .statement_slots_mut()
            .filter_map(|s| s.judged.as_mut())
        {
            j.freed = true;
        }
    }
}

/// Names whose entries (and all they reach) were found the same in one check, by
/// (old catalog, whether the path went to "any schema"): a session's statements share
/// most names, and each look-up scans the relations.
type Proven = Vec<(Arc<Catalog>, bool, HashSet<String>)>;

/// Whether what `j` was judged under differs, for it, from `now` with path state `path`.
fn changed(j: &Judgment, now: &Catalog, path: bool, proven: &mut Proven) -> bool {
    // Path state only goes from "public" to "any schema": a statement judged broadly
    // stays good.
    let path_went = path && !j.path_changed;
    let moved = !std::ptr::eq(Arc::as_ptr(&j.catalog), now);
    let at = match proven
        .iter()
        .position(|(c, p, _)| Arc::ptr_eq(c, &j.catalog) && *p == path_went)
    {
        Some(i) => i,
        None => {
            proven.push((Arc::clone(&j.catalog), path_went, HashSet::new()));
            proven.len() - 1
        }
    };
    let done = &mut proven[at].2;
    let mut seen: HashSet<String> = HashSet::new();
    let mut todo: Vec<String> = Vec::new();
    for f in j.classified.iter().flat_map(|c| c.statements.iter()) {
        if path_went && !f.unqualified_tables.is_empty() {
            return true;
        }
        names_of(f, &mut todo);
    }
    if !moved && !path_went {
        return false;
    }
    while let Some(n) = todo.pop() {
        if done.contains(&n) || !seen.insert(n.clone()) {
            continue;
        }
        if seen.len() > REACH_MAX {
            return true;
        }
        let (a, b) = (j.catalog.entry(&n), now.entry(&n));
        if moved && a != b {
            return true;
        }
        for f in a.facts().chain(b.facts()) {
            // A function body is planned under the session's path when it runs.
            if path_went && !f.unqualified_tables.is_empty() {
                return true;
            }
            names_of(f, &mut todo);
        }
        todo.extend(a.names().chain(b.names()).cloned());
    }
    // Everything reached is the same: so for the next statement.
    done.extend(seen);
    false
}

/// Every name a statement's facts use that a catalog has an entry for.
fn names_of(f: &Facts, out: &mut Vec<String>) {
    let sets = [
        &f.tables_read,
        &f.tables_written,
        &f.unqualified_tables,
        &f.functions,
        &f.operators,
        &f.type_casts,
        &f.literal_types,
    ];
    out.extend(sets.into_iter().flatten().cloned());
}
