//! Masking that follows the data.
//!
//! A [`Masking`] is compiled for one identity's masks and detectors over one target's
//! catalog: every user relation's columns get a taint (which mask, if any, covers
//! them; for views, traced through the view's definition). Per result, the
//! RowDescription's (table OID, attribute number) of each column and the statement's
//! lineage (see `classify::lineage`) give a [`rewrite::ResultPlan`]; an empty plan
//! forwards rows untouched, a non-empty one rewrites DataRows column by column.

pub mod detect;
pub mod method;
pub mod rewrite;
pub mod wire;

mod changes;
mod family;
mod policies;
mod system_views;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use crate::catalog::{Catalog, RelInfo};
use crate::classify::lineage::{self, Lineage, Relation, Relations, Runs, Taint};
use crate::classify::{Facts, Kind};
use crate::policy::glob::Glob;
use crate::policy::{RuleSet, Subject};
use detect::Detectors;
use method::Method;
use system_views::{PG_STATS, PG_STATS_17, PG_STATS_EXT, PG_STATS_EXT_EXPRS, STATISTICS};

/// Built-in functions whose results hold whatever anybody put there: large objects.
/// (Those that run SQL held in a string, or read a table or cursor named by a value,
/// are `classify::runs_sql_in_string`'s.) What they return cannot be traced, so it is
/// masked when masks apply.
///
/// The activity functions return other sessions' SQL text: every identity shares the
/// target's login, so a masked identity would read the literals another (unmasked)
/// one sent, masked columns' values included (review s37 W4).
const OPAQUE_FUNCTIONS: &[&str] = &[
    "lo_get",
    "loread",
    "pg_stat_get_activity",
    "pg_stat_get_backend_activity",
];

/// A function's catalog key (`schema.name`, lowercase; `db.schema.f` names the same
/// function as `schema.f`) and its bare name.
fn function_key(name: &str) -> (String, String) {
    let lname = name.to_ascii_lowercase();
    let parts: Vec<&str> = lname.split('.').collect();
    let bare = parts.last().copied().unwrap_or_default().to_owned();
    let key = match parts.as_slice() {
        [.., schema, f] => format!("{schema}.{f}"),
        _ => bare.clone(),
    };
    (key, bare)
}

/// A relation of the server's own (the catalogs), never in the user catalog pgmoat reads.
fn is_system(schema: &str, name: &str) -> bool {
    name.starts_with("pg_") || schema == "pg_catalog" || schema == "information_schema"
}

const LINEAGE_CACHE_MAX: usize = 10_000;
/// Views defined on views defined on views...: deeper than this is not followed.
const MAX_VIEW_DEPTH: usize = 16;

type LineageCache = crate::cache::Bounded<Box<str>, Arc<Vec<Lineage>>>;

thread_local! {
    static VIEW_DEPTH: Cell<usize> = const { Cell::new(0) };
}

enum UserFunction {
    Native,
    Known(Box<Facts>),
    Unknown,
}

/// One identity's masks over one target's catalog.
pub struct Masking {
    /// Active masks: id and method, indexed by `Taint::mask`.
    ids: Vec<Arc<str>>,
    methods: Vec<Method>,
    globs: Vec<Vec<Glob>>,
    catalog: Arc<Catalog>,
    by_qual: HashMap<(String, String), usize>,
    by_name: HashMap<String, Vec<usize>>,
    by_oid: HashMap<u32, usize>,
    taints: Vec<OnceLock<Vec<Taint>>>,
    /// What the tables with row-level security policies run (see `policies.rs`).
    policy_runs: policies::PolicyRuns,
    pub detectors: Option<Arc<Detectors>>,
    /// Traced statements by text: trusting what a message makes itself, and not
    /// (after the session changed search_path).
    lineage: [LineageCache; 2],
}

impl std::fmt::Debug for Masking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masking")
            .field("masks", &self.ids)
            .field(
                "detectors",
                &self.detectors.as_ref().map(|d| d.ids().count()),
            )
            .finish()
    }
}

impl Masking {
    /// The masks and detectors `who` is subject to, or None when there are none (the
    /// session then never looks at a result).
    pub fn build(rules: &RuleSet, who: &Subject<'_>, catalog: Arc<Catalog>) -> Option<Masking> {
        let masks = rules.masks_for(who);
        let dets = rules.detectors_for(who);
        if masks.is_empty() && dets.is_empty() {
            return None;
        }
        let ids = masks.iter().map(|m| Arc::from(m.id.as_str())).collect();
        // The policy compiled every method and detector: nothing is parsed again here.
        let methods = masks.iter().map(|m| m.method.clone()).collect();
        let globs = masks.iter().map(|m| m.columns.clone()).collect();
        let detectors = (!dets.is_empty())
            .then(|| Arc::new(Detectors::new(dets.iter().map(|d| d.detector()).collect())));
        let mut by_qual = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_oid = HashMap::new();
        for (i, r) in catalog.relations.iter().enumerate() {
            by_qual.insert((r.schema.clone(), r.name.clone()), i);
            by_name.entry(r.name.clone()).or_default().push(i);
            by_oid.insert(r.oid, i);
        }
        let taints = (0..catalog.relations.len())
            .map(|_| OnceLock::new())
            .collect();
        let policy_runs = policies::cells(&catalog);
        Some(Masking {
            ids,
            methods,
            globs,
            catalog,
            by_qual,
            by_name,
            by_oid,
            taints,
            policy_runs,
            detectors,
            lineage: [
                LineageCache::new(LINEAGE_CACHE_MAX),
                LineageCache::new(LINEAGE_CACHE_MAX),
            ],
        })
    }

    pub fn has_column_masks(&self) -> bool {
        !self.ids.is_empty()
    }

    pub fn mask_id(&self, t: Taint) -> Arc<str> {
        match t.mask {
            Some(i) => Arc::clone(&self.ids[i as usize]),
            None => Arc::from("unknown-origin"),
        }
    }

    /// The method for a tainted value (None when clean).
    pub fn method(&self, t: Taint) -> Option<Method> {
        if t.is_clean() {
            return None;
        }
        let m = match t.mask {
            Some(i) => self.methods[i as usize].clone(),
            // Tainted by no mask the policy names (a value pgmoat cannot trace): the
            // strongest method that keeps the row's shape, not a policy default.
            None => Method::Redact,
        };
        Some(if t.derived || t.unknown {
            m.for_derived()
        } else {
            m
        })
    }

    fn glob_taint(&self, r: &RelInfo, column: &str) -> Taint {
        let name = format!("{}.{}.{}", r.schema, r.name, column);
        for (i, globs) in self.globs.iter().enumerate() {
            if globs.iter().any(|g| g.matches(&name)) {
                return Taint::direct(i as u16);
            }
        }
        Taint::CLEAN
    }

    /// Each column's taint, in attnum order.
    fn rel_taints(&self, i: usize) -> &[Taint] {
        self.taints[i].get_or_init(|| {
            let r = &self.catalog.relations[i];
            let own = self.family_taints(i);
            if r.definition_unread || r.being_changed {
                // A view being changed right now: what it reads cannot be told (a
                // read that waits on the change's lock runs over the new definition).
                return vec![Taint::UNKNOWN; own.len()];
            }
            if r.kind == b'f' {
                // A foreign table reads whatever its options name (a table of this
                // database through postgres_fdw, a server file, a program's output),
                // under a name no mask names: masked whole.
                return vec![Taint::UNKNOWN; own.len()];
            }
            if r.schema.starts_with("pg_temp_") && r.view_definition.is_none() {
                // A session's temporary table: code pgmoat does not follow (a DO
                // block, a function, a default) may have filled it with anything.
                // (A temporary view is what its definition reads, traced below.)
                return vec![Taint::UNKNOWN; own.len()];
            }
            let Some(def) = &r.view_definition else {
                return own;
            };
            let depth = VIEW_DEPTH.with(|d| {
                d.set(d.get() + 1);
                d.get()
            });
            let traced = if depth > MAX_VIEW_DEPTH {
                None
            } else {
                lineage::analyze(def, self)
                    .ok()
                    .and_then(|mut l| l.pop())
                    .and_then(|l| l.outputs)
                    .filter(|o| o.len() == own.len())
            };
            VIEW_DEPTH.with(|d| d.set(d.get() - 1));
            match traced {
                Some(t) => own.iter().zip(t).map(|(a, b)| a.join(b)).collect(),
                None => vec![Taint::UNKNOWN; own.len()],
            }
        })
    }

    fn known(&self, i: usize) -> Relation {
        let r = &self.catalog.relations[i];
        Relation::Known(
            r.columns
                .iter()
                .zip(self.rel_taints(i))
                .map(|((_, n, _), t)| (n.clone(), *t))
                .collect(),
        )
    }

    fn rel_is_clean(&self, i: usize) -> bool {
        self.rel_taints(i).iter().all(Taint::is_clean)
    }

    /// The taint of column `attnum` of relation `oid`, as RowDescription names it.
    pub fn column_taint(&self, oid: u32, attnum: i16) -> Taint {
        if oid == 0 {
            return Taint::CLEAN;
        }
        match self.by_oid.get(&oid) {
            Some(&i) => {
                let r = &self.catalog.relations[i];
                match r.columns.iter().position(|(a, _, _)| *a == attnum) {
                    Some(p) => self.rel_taints(i)[p],
                    // A system column (ctid, xmin...) or one added since the load.
                    None if attnum < 0 => Taint::CLEAN,
                    // The whole row (`SELECT t FROM t`): every column of it.
                    None if attnum == 0 => self
                        .rel_taints(i)
                        .iter()
                        .fold(Taint::CLEAN, |a, t| a.join(*t))
                        .derive(),
                    None => Taint::UNKNOWN,
                }
            }
            // System relations; anything newer than the catalog load is unknown.
            None if oid < 16384 => Taint::CLEAN,
            None => Taint::UNKNOWN,
        }
    }

    /// Whether RowDescription's attribution of a column is a plain table column that
    /// nothing masks (the server says the value is exactly that column's).
    pub fn plain_clean_column(&self, oid: u32, attnum: i16) -> bool {
        self.by_oid.get(&oid).is_some_and(|&i| {
            let r = &self.catalog.relations[i];
            r.view_definition.is_none()
                && matches!(r.kind, b'r' | b'p' | b'f')
                && self.column_taint(oid, attnum).is_clean()
        })
    }

    pub fn is_text_like(&self, type_oid: u32) -> bool {
        if self.catalog.text_types.is_empty() {
            // Not loaded: the built-in string types.
            matches!(type_oid, 25 | 1042 | 1043 | 19)
        } else {
            self.catalog.text_types.contains(&type_oid)
        }
    }

    /// Whether a statement with these facts could return or move masked values; when
    /// not, its results need no lineage (the common case, decided without parsing).
    pub fn may_touch(&self, f: &Facts, search_path_changed: bool) -> bool {
        if !self.has_column_masks() {
            return false;
        }
        // A domain's new CHECK runs over its columns' values (`changes.rs` judges it).
        if f.unanalysable.is_some()
            || f.kinds.contains(&Kind::Execute)
            || f.kinds.contains(&Kind::Other)
            || !f.domains_changed.is_empty()
        {
            return true;
        }
        for t in f.tables_read.iter().chain(&f.tables_written) {
            let (schema, name) = t.split_once('.').unwrap_or(("public", t));
            let unqualified =
                f.unqualified_tables.contains(t) || f.unqualified_tables.contains(name);
            if STATISTICS.contains(&name) {
                return true;
            }
            let candidates: Vec<usize> = if unqualified || search_path_changed {
                self.by_name.get(name).cloned().unwrap_or_default()
            } else {
                self.by_qual
                    .get(&(schema.to_owned(), name.to_owned()))
                    .map(|i| vec![*i])
                    .unwrap_or_default()
            };
            if candidates.is_empty() {
                if !is_system(schema, name) {
                    return true; // not in the catalog: cannot tell
                }
                continue;
            }
            if candidates.iter().any(|&i| !self.rel_is_clean(i)) {
                return true;
            }
        }
        f.functions.iter().any(|n| !self.function(n).is_clean())
    }

    /// The masked columns a statement refers to by name, as `table.column` (for the
    /// audit record; the rows themselves are masked by lineage, names or not).
    pub fn masked_names(&self, statements: &[Facts]) -> Vec<String> {
        let mut out: Vec<String> = statements
            .iter()
            .flat_map(|f| f.columns.iter())
            .filter(|c| self.globs.iter().any(|g| g.iter().any(|g| g.matches(c))))
            .cloned()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Lineage of `sql`, from the cache or traced now (call on a parse thread).
    /// `trust_local`: the session's search_path is the default, so what earlier
    /// statements of the message made is what later ones name.
    pub fn lineage_now(&self, sql: &str, trust_local: bool) -> Arc<Vec<Lineage>> {
        if let Some(hit) = self.lineage_cached(sql, trust_local) {
            return hit;
        }
        let traced = match lineage::analyze_in(sql, self, trust_local) {
            Ok(l) => l,
            // The rules already refused what does not parse; be safe anyway.
            Err(_) => vec![Lineage {
                touched: Taint::UNKNOWN,
                ..Lineage::default()
            }],
        };
        let traced = Arc::new(traced);
        self.lineage[usize::from(trust_local)].insert(sql.into(), Arc::clone(&traced));
        traced
    }

    /// The cached lineage, without parsing.
    pub fn lineage_cached(&self, sql: &str, trust_local: bool) -> Option<Arc<Vec<Lineage>>> {
        self.lineage[usize::from(trust_local)].get(sql)
    }

    /// The catalog's relations a name may be: `schema.name`'s, or every schema's of a
    /// bare name (the server's path decides which).
    fn relations_named(&self, schema: Option<&str>, name: &str) -> Vec<usize> {
        match schema {
            Some(s) => self
                .by_qual
                .get(&(s.to_owned(), name.to_owned()))
                .into_iter()
                .copied()
                .collect(),
            None => self.by_name.get(name).cloned().unwrap_or_default(),
        }
    }

    /// Whether RowDescription's table OID is one the catalog knows (a user relation
    /// it read, or a system one): else a relation made since it was read.
    pub fn knows_relation_oid(&self, oid: u32) -> bool {
        oid < 16384 || self.by_oid.contains_key(&oid)
    }
}

impl Masking {
    /// A statistics view or catalog: its value-carrying columns are unknown (they hold
    /// samples of any column, masked ones included), the rest clean. The raw catalogs
    /// (`pg_statistic`) are sensitive as a whole.
    fn statistics(&self, name: &str) -> Relation {
        if !self.has_column_masks() {
            return Relation::System;
        }
        let cols = match name {
            "pg_stats" => {
                // The server's version decides which columns there are: 17 brought
                // pg_basetype() with the range statistics.
                let pg17 = self.catalog.is_native_function("pg_catalog.pg_basetype");
                &PG_STATS[..PG_STATS.len() - if pg17 { 0 } else { PG_STATS_17 }]
            }
            "pg_stats_ext" => PG_STATS_EXT,
            "pg_stats_ext_exprs" => PG_STATS_EXT_EXPRS,
            _ => return Relation::Sensitive,
        };
        Relation::Known(
            cols.iter()
                .map(|(n, values)| {
                    let t = if *values {
                        Taint::UNKNOWN
                    } else {
                        Taint::CLEAN
                    };
                    ((*n).to_owned(), t)
                })
                .collect(),
        )
    }

    /// What a called name is: a built-in, a user function the catalog knows (its
    /// facts with what it calls folded in), or one it does not.
    fn user_function(&self, name: &str) -> UserFunction {
        let (key, bare) = function_key(name);
        // `pg_temp.f`: every temporary function of that name stands in (see `function`).
        let key = if key.starts_with("pg_temp.") {
            bare
        } else {
            key
        };
        if self.catalog.is_native_function(&key) {
            return UserFunction::Native;
        }
        match self.catalog.function_resolved(&key) {
            Some(f) => UserFunction::Known(Box::new(f)),
            None => UserFunction::Unknown,
        }
    }

    /// The taint of what code reads, from its (resolved) facts.
    fn facts_taint(&self, f: &Facts) -> Taint {
        if f.unanalysable.is_some() {
            return Taint::UNKNOWN;
        }
        // Its own `SET search_path`: the names in its body are not the ones pgmoat
        // resolved (`public.cc` may be `s1.cc`, a view over a masked column).
        let own_path = f.settings.iter().any(|s| s == "search_path" || s == "*");
        if own_path
            && (!f.tables_read.is_empty()
                || f.functions
                    .iter()
                    .any(|g| !self.catalog.is_native_function(g)))
        {
            return Taint::UNKNOWN;
        }
        let mut t = Taint::CLEAN;
        for table in &f.tables_read {
            let (schema, rel) = table.split_once('.').unwrap_or(("public", table));
            // A name the body leaves unqualified is resolved when it runs, on the
            // caller's path: a temporary relation of the caller's (pg_temp comes
            // first) may be the one read, so each such relation of that name counts
            // with public's.
            let on_path: Vec<usize> = self
                .by_name
                .get(rel)
                .map(|v| {
                    v.iter()
                        .copied()
                        .filter(|&i| {
                            let s = &self.catalog.relations[i].schema;
                            s == "public" || s.starts_with("pg_temp")
                        })
                        .collect()
                })
                .unwrap_or_default();
            let found: Vec<usize> = if f.unqualified_tables.contains(rel) && !on_path.is_empty() {
                on_path
            } else {
                self.by_qual
                    .get(&(schema.to_owned(), rel.to_owned()))
                    .copied()
                    .or_else(|| self.by_name.get(rel).and_then(|v| v.first()).copied())
                    .into_iter()
                    .collect()
            };
            match found.as_slice() {
                [_, ..] => {
                    for &i in &found {
                        for c in self.rel_taints(i) {
                            t = t.join(*c);
                        }
                    }
                }
                // A relation the body reads that the catalog does not know (a
                // temporary table): cannot tell.
                [] if !is_system(schema, rel) => t = t.join(Taint::UNKNOWN),
                [] => {}
            }
        }
        if f.tables_read
            .iter()
            .any(|r| STATISTICS.contains(&r.rsplit('.').next().unwrap_or(r)))
        {
            t = t.join(Taint::UNKNOWN);
        }
        t.derive()
    }
}

impl Relations for Masking {
    fn relation(&self, schema: Option<&str>, name: &str) -> Relation {
        match schema {
            Some(s @ ("pg_catalog" | "information_schema")) => {
                if s == "pg_catalog" && STATISTICS.contains(&name) {
                    self.statistics(name)
                } else {
                    Relation::System
                }
            }
            Some(s) => match self.by_qual.get(&(s.to_owned(), name.to_owned())) {
                Some(&i) => self.known(i),
                None => Relation::Unknown,
            },
            None => {
                let candidates = self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
                // pg_catalog comes first on the default search path, but a session's
                // temporary relations come before it, and a changed search_path may
                // put any schema first: a same-named relation that is not clean may
                // be the one read.
                if STATISTICS.contains(&name) {
                    if candidates.iter().all(|&i| self.rel_is_clean(i)) {
                        return self.statistics(name);
                    }
                    return Relation::Unknown;
                }
                match candidates {
                    [] if name.starts_with("pg_") => Relation::System,
                    [] => Relation::Unknown,
                    [one] => self.known(*one),
                    many => {
                        // Which one the search path picks is the server's business;
                        // when they differ in what is masked, assume the worst.
                        if many.iter().all(|&i| self.rel_is_clean(i)) {
                            let public = many
                                .iter()
                                .copied()
                                .find(|&i| self.catalog.relations[i].schema == "public");
                            self.known(public.unwrap_or(many[0]))
                        } else {
                            Relation::Unknown
                        }
                    }
                }
            }
        }
    }

    fn function(&self, name: &str) -> Taint {
        if !self.has_column_masks() {
            return Taint::CLEAN;
        }
        let (key, bare) = function_key(name);
        if OPAQUE_FUNCTIONS.contains(&bare.as_str()) || crate::classify::runs_sql_in_string(&bare) {
            return Taint::UNKNOWN;
        }
        // `pg_temp.f` is the session's own temporary schema (`pg_temp_N`, which the
        // catalog lists by number): every function of that name, merged, stands in.
        let key = if key.starts_with("pg_temp.") {
            bare
        } else {
            key
        };
        let Some(f) = self.catalog.function_resolved(&key) else {
            // Not a function users made that the catalog knows: a built-in or compiled
            // one is what it is; anything else (a temporary function, one created since
            // the catalog was read) could return anything.
            // An extension's C function may read what a string names (crosstab,
            // get_raw_page): only the server's own are trusted.
            return if self.catalog.is_built_in_function(&key) {
                Taint::CLEAN
            } else {
                Taint::UNKNOWN
            };
        };
        self.facts_taint(&f)
    }

    fn write_taint(&self, schema: Option<&str>, name: &str) -> Taint {
        if !self.has_column_masks() {
            return Taint::CLEAN;
        }
        // A bare name may be any schema's relation of that name (the server's path
        // decides): what writing each runs, joined.
        let found = self.relations_named(schema, name);
        // Not in the catalog (made since it was read, or not committed yet): what
        // writing it runs is judged where the message made it.
        found.iter().fold(Taint::CLEAN, |t, &i| {
            let r = &self.catalog.relations[i];
            let table = format!("{}.{}", r.schema, r.name);
            // Its triggers and rules see the written row whole (NEW, OLD): code of
            // theirs that keeps values (notifies, sets a setting, writes another
            // table, cannot be read) takes the table's masked columns with it, whoever
            // made it (review s37 W3, V4). Only a table with masked columns has
            // anything to take: the others' code is not resolved again here.
            let masked = self
                .rel_taints(i)
                .iter()
                .fold(Taint::CLEAN, |a, c| a.join(*c));
            let keeps = !masked.is_clean()
                && self
                    .catalog
                    .row_code_facts(&table)
                    .is_some_and(|f| changes::keeps_row(&f, &table));
            let own = if keeps { masked } else { Taint::CLEAN };
            match self.catalog.write_facts(&table) {
                Some(f) => t.join(self.facts_taint(&f)).join(own),
                None => t.join(own),
            }
        })
    }

    fn policies(&self, schema: Option<&str>, name: &str, write: bool) -> Runs {
        if !self.has_column_masks() {
            return Runs::default();
        }
        self.policies_named(schema, name, usize::from(write))
    }

    fn dormant_policies(&self, schema: Option<&str>, name: &str) -> Runs {
        if !self.has_column_masks() {
            return Runs::default();
        }
        self.policies_named(schema, name, policies::DORMANT)
    }

    fn runs_user_code(&self, name: &str) -> bool {
        !self.catalog.is_native_function(&function_key(name).0)
    }

    fn may_store(&self, name: &str) -> bool {
        match self.user_function(name) {
            UserFunction::Native => false,
            UserFunction::Known(f) => {
                // What it calls (CALL, nested functions) is folded into its facts, so
                // only statements that can hold a value count, not every write kind.
                f.unanalysable.is_some()
                    || f.rereads_sql.is_some()
                    || !f.tables_written.is_empty()
                    || f.kinds.iter().any(|k| {
                        matches!(
                            k,
                            Kind::Insert
                                | Kind::Update
                                | Kind::Merge
                                | Kind::CopyFrom
                                | Kind::Create
                                | Kind::Alter
                                | Kind::Refresh
                                | Kind::Do
                                | Kind::Execute
                                | Kind::Other
                        )
                    })
                    || f.functions.iter().any(|g| {
                        let bare = g.rsplit('.').next().unwrap_or(g);
                        lineage::SINK_FUNCTIONS.contains(&bare)
                    })
            }
            // A function the catalog does not know (made since it was read).
            UserFunction::Unknown => true,
        }
    }

    fn may_make_relations(&self, name: &str) -> bool {
        match self.user_function(name) {
            UserFunction::Native => false,
            UserFunction::Known(f) => {
                f.unanalysable.is_some()
                    || f.rereads_sql.is_some()
                    || f.kinds.iter().any(|k| {
                        matches!(
                            k,
                            Kind::Create
                                | Kind::Alter
                                | Kind::Do
                                | Kind::Call
                                | Kind::Execute
                                | Kind::Other
                        )
                    })
            }
            // A function the catalog does not know (made since it was read).
            UserFunction::Unknown => true,
        }
    }

    fn operator_runs_code(&self, name: &str) -> bool {
        !self.catalog.operator_functions(name).is_empty()
    }

    fn cast_runs_code(&self, ty: &str) -> bool {
        !self.catalog.cast_functions(ty).is_empty()
    }

    fn function_named(&self, bare: &str) -> Option<Taint> {
        if self.catalog.function_facts(bare).is_some() {
            // The facts of every function of that name, merged.
            Some(self.function(bare))
        } else if self.catalog.is_native_function(bare) {
            Some(self.function(bare))
        } else {
            None
        }
    }

    fn operator(&self, name: &str) -> Taint {
        self.catalog
            .operator_functions(name)
            .iter()
            .fold(Taint::CLEAN, |t, f| t.join(self.function(f)))
    }

    fn cast(&self, ty: &str) -> Taint {
        self.catalog
            .cast_functions(ty)
            .iter()
            .fold(Taint::CLEAN, |t, f| t.join(self.function(f)))
    }
}
