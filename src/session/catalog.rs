//! What the target's catalog knows that the SQL text does not. An operator, a cast or
//! a domain can run any function (`CREATE OPERATOR ... FUNCTION = pg_read_file`), and
//! a user function's body can delete anything: before the rules see a statement, the
//! functions behind its operators, casts and domains, and the bodies of the user
//! functions it calls, are folded into its facts.
//!
//! Only objects users created (OID >= 16384) are looked up; built-ins are what they are.
//! The lookup runs on pgmoat's own side connection with the target's credentials, once,
//! and again after any DDL a session sent through the gateway.
//!
//! The lookup never waits on a user's locks. `pg_get_expr` and `pg_get_viewdef` take
//! an AccessShareLock on their relation, which waits behind a migration's uncommitted
//! `DROP TABLE` or `ALTER TABLE` (and the session running the migration would then wait
//! on the lookup: the whole gateway froze). So the queries skip every relation with an
//! AccessExclusiveLock held or queued ([`LOCKED`]), the connection runs with a short
//! `lock_timeout` for the race between that check and the read (a load that hits it is
//! tried again), and a skipped relation keeps what the previous load knew of it (the
//! lock holder's own DDL through pgmoat was judged when it was sent; pgmoat trusts
//! changes made behind its back no more and no less than without a lock). A locked
//! relation the previous load did not know is one pgmoat cannot read: writing it or
//! reading it as a view is unanalysable, and its view columns are masked whole.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

mod not_null;

use super::error::SessionError;
use super::upstream;
use crate::classify::{classify_now, merge, Facts, Kind};
use crate::config::Target;

const OPERATORS: &str = "SELECT o.oprname, n.nspname, pn.nspname || '.' || p.proname \
     FROM pg_catalog.pg_operator o \
     JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
     JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE o.oid >= 16384";
const CASTS: &str = "SELECT t.typname, pn.nspname || '.' || p.proname \
     FROM pg_catalog.pg_cast c \
     JOIN pg_catalog.pg_type t ON t.oid = c.casttarget \
     JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE c.oid >= 16384";
const DOMAINS: &str = "SELECT t.typname, pg_catalog.pg_get_constraintdef(c.oid) \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid \
     WHERE t.typtype = 'd' AND t.oid >= 16384";
/// A body whose function sets how SQL is read (`SET standard_conforming_strings = off`)
/// is not parsed as pgmoat would read it: it is left out, so the function counts as
/// one pgmoat cannot analyse.
const FUNCTIONS: &str = "SELECT n.nspname, p.proname, l.lanname, \
     CASE WHEN l.lanname IN ('sql', 'plpgsql') AND NOT EXISTS (SELECT 1 FROM \
     pg_catalog.unnest(p.proconfig) c WHERE c ILIKE 'standard_conforming_strings=%' \
     OR c ILIKE 'client_encoding=%' OR c ILIKE 'backslash_quote=%') \
     THEN pg_catalog.pg_get_functiondef(p.oid) END, \
     CASE WHEN l.lanname = 'internal' THEN (SELECT pg_catalog.string_agg(DISTINCT b.proname, ',') \
     FROM pg_catalog.pg_proc b WHERE b.prosrc = p.prosrc AND b.oid < 16384) END \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.oid >= 16384 AND p.prokind IN ('f', 'p')";

/// Domains over domains: a value cast to the outer one passes the inner one's checks.
const DOMAIN_BASES: &str = "SELECT t.typname, b.typname \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype \
     WHERE t.typtype = 'd' AND t.oid >= 16384 AND b.typtype = 'd'";

/// Aggregates users created run their support functions: a call of one is a call of those.
const AGGREGATES: &str = "SELECT n.nspname, p.proname, tn.nspname || '.' || t.proname, \
     fn.nspname || '.' || f.proname \
     FROM pg_catalog.pg_aggregate a \
     JOIN pg_catalog.pg_proc p ON p.oid = a.aggfnoid \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_proc t ON t.oid = a.aggtransfn \
     JOIN pg_catalog.pg_namespace tn ON tn.oid = t.pronamespace \
     LEFT JOIN pg_catalog.pg_proc f ON f.oid = a.aggfinalfn \
     LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace \
     WHERE p.oid >= 16384";
/// What writing a table runs besides the statement itself: column defaults and
/// generated columns, CHECK constraints, user-defined assignment casts to its columns'
/// types, and the checks of the domains its columns are. `INSERT INTO t DEFAULT
/// VALUES` calls whatever `t`'s defaults call. Each row: the table, and SQL whose facts
/// are those of the write.
///
/// Triggers are in [`TRIGGERS`].
///
/// A table another transaction has locked exclusively comes back with NULL SQL (see
/// [`LOCKED`]): writing it is then unanalysable until the catalog is read again.
const WRITES: &str = "WITH locked AS (LOCKED_RELATIONS) \
     SELECT n.nspname || '.' || c.relname, \
     CASE WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN 'SELECT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) END \
     FROM pg_catalog.pg_attrdef d \
     JOIN pg_catalog.pg_class c ON c.oid = d.adrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid >= 16384 \
     UNION ALL SELECT n.nspname || '.' || c.relname, \
     CASE WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN 'SELECT ' || pg_catalog.pg_get_expr(k.conbin, k.conrelid) END \
     FROM pg_catalog.pg_constraint k \
     JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE k.contype = 'c' AND c.oid >= 16384 \
     UNION ALL SELECT DISTINCT n.nspname || '.' || c.relname, 'SELECT ' || \
     pg_catalog.quote_ident(pn.nspname) || '.' || pg_catalog.quote_ident(p.proname) || '()' \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     JOIN pg_catalog.pg_cast k ON k.casttarget = a.atttypid AND k.castcontext IN ('a', 'i') \
     JOIN pg_catalog.pg_proc p ON p.oid = k.castfunc \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE k.oid >= 16384 AND c.oid >= 16384 AND c.relkind IN ('r', 'p', 'f') \
     UNION ALL SELECT DISTINCT n.nspname || '.' || c.relname, \
     'SELECT NULL::' || pg_catalog.quote_ident(t.typname) \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     JOIN pg_catalog.pg_type t ON t.oid = a.atttypid AND t.typtype = 'd' \
     WHERE t.oid >= 16384 AND c.oid >= 16384 AND c.relkind IN ('r', 'p', 'f')";
/// What writing a table (deleting and truncating included) runs through its triggers
/// (not the internal ones of foreign keys): a call of the trigger function, and its
/// WHEN condition, cut from the trigger's definition (one that cannot be cut, or whose
/// table is locked, leaves NULL SQL: writing the table is then unanalysable).
const TRIGGERS: &str = "WITH locked AS (LOCKED_RELATIONS) \
     SELECT n.nspname || '.' || c.relname, 'SELECT ' || pg_catalog.quote_ident(pn.nspname) \
     || '.' || pg_catalog.quote_ident(p.proname) || '()' \
     || CASE WHEN g.tgqual IS NULL THEN '' WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN ', (' || pg_catalog.substring(pg_catalog.pg_get_triggerdef(g.oid), \
     ' WHEN \\((.*)\\) EXECUTE ') || ')' END \
     FROM pg_catalog.pg_trigger g \
     JOIN pg_catalog.pg_class c ON c.oid = g.tgrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_proc p ON p.oid = g.tgfoid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE NOT g.tgisinternal AND c.oid >= 16384";
/// The functions of enabled event triggers: DDL a session sends may run any of them
/// (which commands each fires on is not read: every DDL statement gets them all).
const EVENT_TRIGGERS: &str = "SELECT 'SELECT ' || pg_catalog.quote_ident(pn.nspname) || '.' \
     || pg_catalog.quote_ident(p.proname) || '()' FROM pg_catalog.pg_event_trigger e \
     JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace WHERE e.evtenabled <> 'D'";
/// Functions whose result depends on their arguments only as far as masking can tell:
/// the built-ins, and compiled functions extensions installed. Any other name (a
/// temporary function, one created since the catalog was read) cannot be traced.
const NATIVE: &str = "SELECT n.nspname, p.proname \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.oid < 16384 OR l.lanname IN ('c', 'internal')";

/// Every user relation's columns, for masking (views with their definitions; the last
/// column says a view's definition was skipped because its view is locked).
const RELATIONS: &str = "WITH locked AS (LOCKED_RELATIONS) \
     SELECT c.oid, n.nspname, c.relname, c.relkind, a.attnum, a.attname, a.atttypid, \
     CASE WHEN c.relkind IN ('v', 'm') AND a.attnum = 1 \
     AND c.oid NOT IN (SELECT relation FROM locked) THEN pg_catalog.pg_get_viewdef(c.oid) END, \
     c.relkind IN ('v', 'm') AND c.oid IN (SELECT relation FROM locked) \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped \
     AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' \
     ORDER BY c.oid, a.attnum";
/// Relations of this database with an AccessExclusiveLock held or waited for (a queued
/// one blocks new AccessShareLocks too): the functions that read a relation's
/// expressions would wait on them. Substituted for `LOCKED_RELATIONS` in the queries.
const LOCKED: &str = "SELECT l.relation FROM pg_catalog.pg_locks l \
     WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
     AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d \
     WHERE d.datname = pg_catalog.current_database()) AND l.relation IS NOT NULL";

/// How long one catalog read may wait for a lock taken between the [`LOCKED`] check
/// and the read itself (then the whole load is tried again), and for anything at all.
const CATALOG_SETTINGS: &str =
    "SET lock_timeout = '200ms'; SET statement_timeout = '30s'; SET idle_in_transaction_session_timeout = 0";

/// How often a load that ran into a lock is tried before the caller is told.
const LOAD_TRIES: u32 = 3;

/// Types whose values a masked string can stand in for.
const TEXT_TYPES: &str =
    "SELECT oid FROM pg_catalog.pg_type WHERE typcategory = 'S' AND typname <> 'char'";

/// A user relation (table, view, materialized view, foreign table).
#[derive(Debug, Clone)]
pub struct RelInfo {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `r`, `p`, `v`, `m` or `f`.
    pub kind: u8,
    /// (attnum, name, type oid), in attnum order.
    pub columns: Vec<(i16, String, u32)>,
    pub view_definition: Option<String>,
    /// A view whose definition was not read (it was locked, see [`LOCKED`]): what its
    /// columns carry cannot be told.
    pub definition_unread: bool,
}

/// One target's user-defined objects.
#[derive(Debug, Default)]
pub struct Catalog {
    /// User relations and their columns.
    pub relations: Vec<RelInfo>,
    /// Type OIDs of string types (text, varchar, bpchar, name, citext, ...).
    pub text_types: std::collections::HashSet<u32>,
    /// Operator name (bare and `schema.name`) -> functions behind it.
    operators: HashMap<String, Vec<String>>,
    /// Target type name -> cast functions.
    casts: HashMap<String, Vec<String>>,
    /// Domain name -> facts of its CHECK constraints.
    domains: HashMap<String, Facts>,
    /// Domain name -> the domain it is defined over.
    domain_bases: HashMap<String, String>,
    /// View name (`schema.name`) -> facts of its definition: reading a view runs it.
    views: HashMap<String, Facts>,
    /// Table name (`schema.name`) -> what writing it runs (see [`WRITES`]).
    writes: HashMap<String, Facts>,
    /// Table name (`schema.name`) -> what its triggers run (see [`TRIGGERS`]).
    triggers: HashMap<String, Facts>,
    /// What event triggers run (see [`EVENT_TRIGGERS`]).
    event_triggers: Option<Facts>,
    /// Function name (bare and `schema.name`) -> facts of its body.
    functions: HashMap<String, Facts>,
    /// Built-in and compiled functions (bare and `schema.name`), see [`NATIVE`].
    native: std::collections::HashSet<String>,
    /// User tables' NOT NULL columns, for WHEREs true only given the schema.
    not_null: not_null::NotNull,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Catalog {
    /// Whether a user relation (`schema.name`) was in this catalog.
    fn knows_relation(&self, qualified: &str) -> bool {
        self.relations
            .iter()
            .any(|r| qualified.split_once('.') == Some((r.schema.as_str(), r.name.as_str())))
    }

    /// What a user function's body does (by `schema.name` or bare name, any case).
    pub fn function_facts(&self, name: &str) -> Option<&Facts> {
        self.functions.get(lower(name).as_str())
    }

    /// A user function's facts under `schema.name` and its bare name. Same-named
    /// functions in several schemas share the bare entry: a call by that name could
    /// be any of them, so it gets what they all do.
    fn add_function(&mut self, qualified: &str, facts: Facts) {
        let qualified = lower(qualified);
        let bare = qualified
            .rsplit('.')
            .next()
            .unwrap_or(&qualified)
            .to_owned();
        self.functions.insert(qualified, facts.clone());
        self.functions
            .entry(bare)
            .and_modify(|f| merge(f, facts.clone()))
            .or_insert(facts);
    }

    /// A user function's facts with what it calls (operators, casts, other user
    /// functions) folded in.
    pub fn function_resolved(&self, name: &str) -> Option<Facts> {
        let f = self.function_facts(name)?;
        Some(self.resolve(f).unwrap_or_else(|| f.clone()))
    }

    /// A built-in or compiled function (by `schema.name` or bare name, any case).
    pub fn is_native_function(&self, name: &str) -> bool {
        self.native.contains(lower(name).as_str())
    }

    /// The functions behind a user-defined operator (bare or `schema.name`).
    pub fn operator_functions(&self, op: &str) -> &[String] {
        self.operators.get(op).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The functions behind user-defined casts to a type (bare name, any case).
    pub fn cast_functions(&self, ty: &str) -> &[String] {
        self.casts
            .get(lower(ty).as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.operators.is_empty()
            && self.casts.is_empty()
            && self.domains.is_empty()
            && self.functions.is_empty()
            && self.views.is_empty()
            && self.writes.is_empty()
            && self.triggers.is_empty()
            && self.event_triggers.is_none()
    }

    /// Whether any user-defined object the statement names is one the catalog knows
    /// (checked without copying the facts: most statements name none).
    fn involved(&self, f: &Facts) -> bool {
        f.operators
            .iter()
            .any(|o| self.operators.contains_key(o.as_str()))
            || f.type_casts.iter().any(|t| {
                self.casts.contains_key(t.as_str())
                    || self.domains.contains_key(t.as_str())
                    || self.domain_bases.contains_key(t.as_str())
            })
            || f.functions
                .iter()
                .any(|n| self.functions.contains_key(lower(n).as_str()))
            || f.tables_read
                .iter()
                .any(|t| self.views.contains_key(t.as_str()))
            || (runs_writes(f)
                && f.tables_written
                    .iter()
                    .any(|t| self.writes.contains_key(t.as_str())))
            || (fires_triggers(f)
                && f.tables_written
                    .iter()
                    .any(|t| self.triggers.contains_key(t.as_str())))
            || (self.event_triggers.is_some() && fires_event_triggers(f))
    }

    /// The statement's facts with the catalog's knowledge folded in, or None when it
    /// adds nothing (the common case: no user-defined objects involved).
    pub fn resolve(&self, f: &Facts) -> Option<Facts> {
        let schema_tautology = self.not_null.makes_tautology(f);
        if !schema_tautology && (self.is_empty() || !self.involved(f)) {
            return None;
        }
        let mut out = f.clone();
        let mut changed = false;
        if runs_writes(f) {
            for t in &f.tables_written {
                if let Some(w) = self.writes.get(t.as_str()) {
                    merge(&mut out, w.clone());
                    changed = true;
                }
            }
        }
        if fires_triggers(f) {
            for t in &f.tables_written {
                if let Some(w) = self.triggers.get(t.as_str()) {
                    merge(&mut out, w.clone());
                    changed = true;
                }
            }
        }
        if let Some(e) = self
            .event_triggers
            .as_ref()
            .filter(|_| fires_event_triggers(f))
        {
            merge(&mut out, e.clone());
            changed = true;
        }
        for op in &out.operators.clone() {
            if let Some(funcs) = self.operators.get(op.as_str()) {
                for x in funcs {
                    changed |= out.functions.insert(x.clone());
                }
            }
        }
        for t in &out.type_casts.clone() {
            if let Some(funcs) = self.casts.get(t.as_str()) {
                for x in funcs {
                    changed |= out.functions.insert(x.clone());
                }
            }
            // The domain's checks, and those of the domains under it.
            let mut domain = Some(t.as_str());
            for _ in 0..8 {
                let Some(d) = domain else { break };
                if let Some(facts) = self.domains.get(d) {
                    merge(&mut out, facts.clone());
                    changed = true;
                }
                domain = self.domain_bases.get(d).map(String::as_str);
            }
        }
        // User functions' bodies and views' definitions, a few levels deep.
        let mut seen = BTreeSet::new();
        let mut seen_views = BTreeSet::new();
        for _ in 0..4 {
            let views: Vec<String> = out
                .tables_read
                .iter()
                .filter(|t| !seen_views.contains(*t) && self.views.contains_key(t.as_str()))
                .cloned()
                .collect();
            for v in views {
                if let Some(body) = self.views.get(v.as_str()) {
                    merge(&mut out, body.clone());
                    changed = true;
                }
                seen_views.insert(v);
            }
            let calls: Vec<String> = out
                .functions
                .iter()
                .filter(|n| !seen.contains(*n))
                .cloned()
                .collect();
            if calls.is_empty() {
                break;
            }
            for name in calls {
                let key = lower(&name);
                if let Some(body) = self.functions.get(key.as_str()) {
                    merge(&mut out, body.clone());
                    changed = true;
                }
                seen.insert(name);
            }
        }
        // `WHERE id IS NOT NULL` and the like, where the schema says id is NOT NULL
        // (in the statement or in a body folded in above).
        if self.not_null.makes_tautology(&out) {
            out.where_.tautology = true;
            changed = true;
        }
        changed.then_some(out)
    }
}

/// Whether the statement adds or changes rows, which is when defaults, checks and
/// assignment casts run (a DELETE or TRUNCATE runs none of them).
fn runs_writes(f: &Facts) -> bool {
    [Kind::Insert, Kind::Update, Kind::Merge, Kind::CopyFrom]
        .iter()
        .any(|k| f.kinds.contains(k))
}

/// Whether the statement writes rows in a way triggers fire on (DELETE and TRUNCATE
/// too).
fn fires_triggers(f: &Facts) -> bool {
    runs_writes(f) || f.kinds.contains(&Kind::Delete) || f.kinds.contains(&Kind::Truncate)
}

/// Whether the statement is DDL event triggers fire on (an over-approximation: every
/// CREATE, ALTER, DROP, COMMENT, GRANT, REVOKE and REFRESH).
fn fires_event_triggers(f: &Facts) -> bool {
    [
        Kind::Create,
        Kind::Alter,
        Kind::Drop,
        Kind::Comment,
        Kind::Grant,
        Kind::Revoke,
        Kind::Extension,
        Kind::Refresh,
    ]
    .iter()
    .any(|k| f.kinds.contains(k))
}

/// The facts of catalog text; None when there is none to read (a locked table's
/// defaults) or it does not parse.
fn facts_of(sql: &str) -> Option<Facts> {
    if sql.trim().is_empty() {
        return None;
    }
    let mut merged = Facts::default();
    for f in classify_now(sql).ok()?.statements {
        merge(&mut merged, f);
    }
    Some(merged)
}

/// Classify catalog text on a thread with a large stack (bodies can nest deeply).
fn classify_bodies(items: Vec<(String, String)>) -> Vec<(String, Option<Facts>)> {
    std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            items
                .into_iter()
                .map(|(k, sql)| (k, facts_of(&sql)))
                .collect()
        })
        .ok()
        .and_then(|h| h.join().ok())
        .unwrap_or_default()
}

fn relations_of(rows: Vec<Vec<Option<String>>>) -> Vec<RelInfo> {
    let mut out: Vec<RelInfo> = Vec::new();
    for r in rows {
        let [Some(oid), Some(schema), Some(name), Some(kind), Some(attnum), Some(att), Some(ty), def, locked] =
            r.as_slice()
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum), Ok(ty)) = (oid.parse(), attnum.parse(), ty.parse()) else {
            continue;
        };
        if out.last().is_none_or(|l| l.oid != oid) {
            out.push(RelInfo {
                oid,
                schema: schema.clone(),
                name: name.clone(),
                kind: kind.bytes().next().unwrap_or(b'r'),
                columns: Vec::new(),
                view_definition: None,
                definition_unread: locked.as_deref() == Some("t"),
            });
        }
        if let Some(l) = out.last_mut() {
            l.columns.push((attnum, att.clone(), ty));
            if def.is_some() {
                l.view_definition = def.clone();
            }
        }
    }
    out
}

/// Reads the catalog, trying again when a read ran into a lock taken after the
/// [`LOCKED`] check (a migration starting at that very moment) or a relation dropped
/// while it was read.
async fn load(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    previous: Option<&Catalog>,
) -> Result<Catalog, String> {
    let mut tries = 0;
    loop {
        tries += 1;
        match load_once(target, tls, timeout, previous).await {
            // 55P03: a lock; XX000: a relation dropped while being read (a session's
            // temporary view at its end: "could not open relation with OID").
            Err(SessionError::Upstream { code, .. })
                if matches!(code.as_str(), "55P03" | "XX000") && tries < LOAD_TRIES =>
            {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(tries))).await;
            }
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

async fn load_once(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
    previous: Option<&Catalog>,
) -> Result<Catalog, SessionError> {
    let stream = upstream::connect(target, tls, timeout).await?;
    let params = [("application_name".to_string(), "pgmoat catalog".to_string())];
    let ready = upstream::start(stream, target, &params).await?;
    let (mut stream, mut buf) = (ready.stream, ready.leftover);
    upstream::simple_query(&mut stream, &mut buf, CATALOG_SETTINGS).await?;
    let mut results = Vec::with_capacity(11);
    for sql in [
        OPERATORS,
        CASTS,
        DOMAINS,
        FUNCTIONS,
        RELATIONS,
        TEXT_TYPES,
        AGGREGATES,
        NATIVE,
        DOMAIN_BASES,
        WRITES,
        TRIGGERS,
        EVENT_TRIGGERS,
        not_null::NOT_NULL,
    ] {
        let sql = sql.replace("LOCKED_RELATIONS", LOCKED);
        results.push(upstream::simple_query(&mut stream, &mut buf, &sql).await?);
    }
    let mut results = results.into_iter();
    let (ops, casts, domains, funcs) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let (rels, text_types) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let (aggregates, native, domain_bases, writes, triggers, events) = (
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
        results.next().unwrap_or_default(),
    );
    let not_null = not_null::NotNull::from_rows(results.next().unwrap_or_default());
    let _ = upstream::terminate(&mut stream).await;
    let mut relations = relations_of(rels);
    // A locked view keeps the definition the previous load read.
    for rel in relations.iter_mut().filter(|r| r.definition_unread) {
        let before = previous.and_then(|p| p.relations.iter().find(|o| o.oid == rel.oid));
        if let Some(def) = before.and_then(|o| o.view_definition.clone()) {
            rel.view_definition = Some(def);
            rel.definition_unread = false;
        }
    }
    let mut cat = Catalog {
        relations,
        text_types: text_types
            .into_iter()
            .filter_map(|r| r.first().cloned().flatten()?.parse().ok())
            .collect(),
        not_null,
        ..Catalog::default()
    };
    for r in ops {
        if let [Some(op), Some(schema), Some(func)] = r.as_slice() {
            cat.operators
                .entry(op.clone())
                .or_default()
                .push(func.clone());
            cat.operators
                .entry(format!("{schema}.{op}"))
                .or_default()
                .push(func.clone());
        }
    }
    for r in casts {
        if let [Some(ty), Some(func)] = r.as_slice() {
            cat.casts.entry(lower(ty)).or_default().push(func.clone());
        }
    }
    for r in domain_bases {
        if let [Some(ty), Some(base)] = r.as_slice() {
            cat.domain_bases.insert(lower(ty), lower(base));
        }
    }
    let mut texts = Vec::new();
    for rel in &cat.relations {
        if let Some(def) = &rel.view_definition {
            texts.push((
                format!("v:{}.{}", rel.schema, rel.name),
                def.trim_end().trim_end_matches(';').to_owned(),
            ));
        }
    }
    let mut kept = std::collections::HashSet::new();
    for (i, r) in writes.iter().enumerate() {
        match r.as_slice() {
            [Some(table), Some(sql)] => texts.push((format!("w:{i}:{table}"), sql.clone())),
            // Locked by a transaction: not read now. What the previous load knew of the
            // table stands; a table it did not know gets an empty text, which does not
            // classify, so writing it becomes unanalysable below.
            [Some(table), None] => match previous.filter(|p| p.knows_relation(table)) {
                Some(p) => {
                    if kept.insert(table.clone()) {
                        if let Some(f) = p.writes.get(table.as_str()) {
                            cat.writes.insert(table.clone(), f.clone());
                        }
                    }
                }
                None => texts.push((format!("w:{i}:{table}"), String::new())),
            },
            _ => {}
        }
    }
    for (i, r) in triggers.iter().enumerate() {
        if let [Some(table), sql] = r.as_slice() {
            // NULL SQL (a WHEN condition not read) gets an empty text: unanalysable.
            texts.push((format!("g:{i}:{table}"), sql.clone().unwrap_or_default()));
        }
    }
    for (i, r) in events.iter().enumerate() {
        if let [Some(sql)] = r.as_slice() {
            texts.push((format!("e:{i}"), sql.clone()));
        }
    }
    for rel in cat.relations.iter().filter(|r| r.definition_unread) {
        cat.views.insert(
            format!("{}.{}", rel.schema, rel.name),
            Facts {
                unanalysable: Some(format!(
                    "a read of view {}.{} (it is being changed: its definition could not be read)",
                    rel.schema, rel.name
                )),
                ..Facts::default()
            },
        );
    }
    for r in domains {
        if let [Some(ty), Some(def)] = r.as_slice() {
            let expr = def.strip_prefix("CHECK ").unwrap_or(def);
            texts.push((format!("d:{}", lower(ty)), format!("SELECT {expr}")));
        }
    }
    let mut opaque = Vec::new();
    for r in funcs {
        match r.as_slice() {
            [Some(schema), Some(name), Some(_), Some(def), _] => {
                texts.push((
                    format!("f:{}", lower(&format!("{schema}.{name}"))),
                    def.clone(),
                ));
            }
            // `LANGUAGE internal AS 'pg_read_file_all'`: another name for a built-in.
            [Some(schema), Some(name), Some(_), None, Some(builtins)] => {
                let mut facts = Facts::default();
                for b in builtins.split(',') {
                    facts.functions.insert(format!("pg_catalog.{b}"));
                }
                cat.add_function(&format!("{schema}.{name}"), facts);
            }
            [Some(schema), Some(name), Some(lang), None, None]
                if !matches!(lang.as_str(), "c" | "internal") =>
            {
                opaque.push((
                    lower(&format!("{schema}.{name}")),
                    lower(name),
                    lang.clone(),
                ));
            }
            _ => {}
        }
    }
    // Views' NOT NULL columns, from their tables'.
    let views: Vec<(String, String, String)> = cat
        .relations
        .iter()
        .filter(|r| r.kind == b'v')
        .filter_map(|r| Some((r.schema.clone(), r.name.clone(), r.view_definition.clone()?)))
        .collect();
    let tables = std::mem::take(&mut cat.not_null);
    cat.not_null = tokio::task::spawn_blocking(move || tables.with_views(views))
        .await
        .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?;
    for (key, facts) in tokio::task::spawn_blocking(move || classify_bodies(texts))
        .await
        .map_err(|e| SessionError::UpstreamProtocol(e.to_string()))?
    {
        if key.starts_with("e:") {
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some("DDL (an event trigger could not be read)".into()),
                ..Facts::default()
            });
            facts.kinds.retain(|k| *k != Kind::Select);
            match &mut cat.event_triggers {
                Some(all) => merge(all, facts),
                None => cat.event_triggers = Some(facts),
            }
            continue;
        }
        if let Some(fired) = key.strip_prefix("g:") {
            let table = fired.split_once(':').map_or(fired, |(_, t)| t);
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!(
                    "a write to {table} (a trigger's condition could not be read)"
                )),
                ..Facts::default()
            });
            facts.kinds.retain(|k| *k != Kind::Select);
            match cat.triggers.get_mut(table) {
                Some(all) => merge(all, facts),
                None => {
                    cat.triggers.insert(table.to_owned(), facts);
                }
            }
            continue;
        }
        if let Some(write) = key.strip_prefix("w:") {
            // `w:<row>:<table>`: a table has several rows, each merged in. One pgmoat
            // cannot read makes writing the table something it cannot judge.
            let table = write.split_once(':').map_or(write, |(_, t)| t);
            if kept.contains(table) {
                continue; // the previous load's facts stand for all of it
            }
            let mut facts = facts.unwrap_or_else(|| Facts {
                unanalysable: Some(format!(
                    "a write to {table} (its defaults or checks could not be read)"
                )),
                ..Facts::default()
            });
            // The SELECT around an expression is not something the write does.
            facts.kinds.retain(|k| *k != Kind::Select);
            match cat.writes.get_mut(table) {
                Some(all) => merge(all, facts),
                None => {
                    cat.writes.insert(table.to_owned(), facts);
                }
            }
            continue;
        }
        let Some(mut facts) = facts else { continue };
        if let Some(view) = key.strip_prefix("v:") {
            cat.views.insert(view.to_owned(), facts);
        } else if let Some(domain) = key.strip_prefix("d:") {
            facts.kinds.retain(|k| *k != Kind::Select);
            cat.domains.insert(domain.to_owned(), facts);
        } else if let Some(func) = key.strip_prefix("f:") {
            // The CREATE FUNCTION around the body is not something a call does.
            facts.kinds.remove(&Kind::Create);
            cat.add_function(func, facts);
        }
    }
    for (qualified, bare, lang) in opaque {
        let facts = Facts {
            unanalysable: Some(format!("a call of a function in language {lang}")),
            ..Facts::default()
        };
        cat.functions.insert(qualified, facts.clone());
        cat.functions.entry(bare).or_insert(facts);
    }
    for r in aggregates {
        if let [Some(schema), Some(name), Some(trans), last] = r.as_slice() {
            let mut facts = Facts::default();
            facts.functions.insert(trans.clone());
            if let Some(f) = last {
                facts.functions.insert(f.clone());
            }
            cat.add_function(&format!("{schema}.{name}"), facts);
        }
    }
    for r in native {
        if let [Some(schema), Some(name)] = r.as_slice() {
            cat.native.insert(lower(&format!("{schema}.{name}")));
            cat.native.insert(lower(name));
        }
    }
    Ok(cat)
}

/// A target's catalog, loaded on first use and after DDL seen through the gateway.
///
/// Reading the current catalog takes no async lock (a statement's hot path). One
/// refresh runs at a time; a session that needs a fresh catalog waits for it, and the
/// refresh itself never waits on users' locks (see the module comment), so it is
/// bounded: nothing one session does can hold up another's statements.
pub struct CatalogCache {
    target: Arc<Target>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    current: std::sync::RwLock<Option<Arc<Catalog>>>,
    /// Held while a load runs: later callers wait for that load instead of starting
    /// another.
    loading: tokio::sync::Mutex<()>,
    stale: AtomicBool,
    last_miss: std::sync::Mutex<Option<std::time::Instant>>,
}

impl CatalogCache {
    pub fn new(
        target: Arc<Target>,
        tls: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> CatalogCache {
        CatalogCache {
            target,
            tls,
            timeout,
            current: std::sync::RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            stale: AtomicBool::new(false),
            last_miss: std::sync::Mutex::new(None),
        }
    }

    pub fn mark_stale(&self) {
        self.stale.store(true, Relaxed);
    }

    /// A statement named a relation the catalog does not know: read it again, but
    /// not more often than every few seconds (a typo must not reload it per query).
    pub fn mark_stale_soon(&self) {
        let now = std::time::Instant::now();
        let mut last = self.last_miss.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5)) {
            *last = Some(now);
            self.stale.store(true, Relaxed);
        }
    }

    fn loaded(&self) -> Option<Arc<Catalog>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    pub async fn get(&self) -> Result<Arc<Catalog>, String> {
        if !self.stale.load(Relaxed) {
            if let Some(c) = self.loaded() {
                return Ok(c);
            }
        }
        let _loading = self.loading.lock().await;
        // A load that finished while this caller waited cleared `stale` when it began;
        // had anything made the catalog stale since, `stale` would be set again.
        if !self.stale.load(Relaxed) {
            if let Some(c) = self.loaded() {
                return Ok(c);
            }
        }
        self.stale.store(false, Relaxed);
        // Bounded whatever the server does: a catalog that cannot be read in time
        // fails this statement (closed), never the gateway.
        let limit = self.timeout.saturating_mul(2) + Duration::from_secs(30);
        let result = match tokio::time::timeout(
            limit,
            load(
                &self.target,
                self.tls.as_ref(),
                self.timeout,
                self.loaded().as_deref(),
            ),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(format!("reading it took over {}s", limit.as_secs())),
        };
        match result {
            Ok(c) => {
                let c = Arc::new(c);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&c));
                Ok(c)
            }
            Err(e) => {
                self.stale.store(true, Relaxed);
                Err(e)
            }
        }
    }
}
