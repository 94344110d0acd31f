//! The SQL text of the catalog reads, and of the settings their connection runs with.
//! Kept apart from the code that runs them and reads their rows (`load.rs`): these
//! strings are what must match the server's catalog tables, and are reviewed as SQL.

pub(super) const OPERATORS: &str = "SELECT o.oprname, n.nspname, pn.nspname || '.' || p.proname \
     FROM pg_catalog.pg_operator o \
     JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
     JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE o.oid >= 16384";
pub(super) const CASTS: &str = "SELECT t.typname, pn.nspname || '.' || p.proname \
     FROM pg_catalog.pg_cast c \
     JOIN pg_catalog.pg_type t ON t.oid = c.casttarget \
     JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace \
     WHERE c.oid >= 16384";
pub(super) const DOMAINS: &str = "SELECT t.typname, pg_catalog.pg_get_constraintdef(c.oid) \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_constraint c ON c.contypid = t.oid \
     WHERE t.typtype = 'd' AND t.oid >= 16384";
/// A body whose function sets how SQL is read (`SET standard_conforming_strings = off`)
/// is not parsed as pgmoat would read it: it is left out, so the function counts as
/// one pgmoat cannot analyse.
pub(super) const FUNCTIONS: &str = "SELECT n.nspname, p.proname, l.lanname, \
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
pub(super) const DOMAIN_BASES: &str = "SELECT t.typname, b.typname \
     FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype \
     WHERE t.typtype = 'd' AND t.oid >= 16384 AND b.typtype = 'd'";

/// Aggregates users created run their support functions: a call of one is a call of those.
pub(super) const AGGREGATES: &str = "SELECT n.nspname, p.proname, tn.nspname || '.' || t.proname, \
     fn.nspname || '.' || f.proname, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_proc s WHERE s.oid IN (a.aggtransfn, a.aggfinalfn, \
       a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn, a.aggcombinefn) \
       AND s.prolang = 12 AND s.prosrc = 'set_config_by_name') \
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
pub(super) const WRITES: &str = "WITH locked AS (LOCKED_RELATIONS) \
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
pub(super) const TRIGGERS: &str = "WITH locked AS (LOCKED_RELATIONS) \
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
pub(super) const EVENT_TRIGGERS: &str =
    "SELECT 'SELECT ' || pg_catalog.quote_ident(pn.nspname) || '.' \
     || pg_catalog.quote_ident(p.proname) || '()' FROM pg_catalog.pg_event_trigger e \
     JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid \
     JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace WHERE e.evtenabled <> 'D'";
/// Functions whose result depends on their arguments only as far as masking can tell:
/// the built-ins, and compiled functions extensions installed. Any other name (a
/// temporary function, one created since the catalog was read) cannot be traced.
pub(super) const NATIVE: &str = "SELECT n.nspname, p.proname, p.oid < 16384 \
     FROM pg_catalog.pg_proc p \
     JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE p.oid < 16384 OR l.lanname IN ('c', 'internal')";

/// Every user relation's columns, for masking (views with their definitions; the last
/// column says a view's definition was skipped because its view is locked).
pub(super) const RELATIONS: &str = "WITH locked AS (LOCKED_RELATIONS) \
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
pub(super) const LOCKED: &str = "SELECT l.relation FROM pg_catalog.pg_locks l \
     WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
     AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d \
     WHERE d.datname = pg_catalog.current_database()) AND l.relation IS NOT NULL";

/// How long one catalog read may wait for a lock taken between the [`LOCKED`] check
/// and the read itself (then the whole load is tried again), and for anything at all.
pub(super) const CATALOG_SETTINGS: &str =
    "SET lock_timeout = '200ms'; SET statement_timeout = '30s'; SET idle_in_transaction_session_timeout = 0";

/// Where the server looks for unqualified names by default, and for whom (`$user`):
/// see `path.rs`. Read before anything else on the catalog's own connection, which
/// starts with the target's user and no options, as sessions do. (`current_user` is
/// SQL syntax, not a function a schema could shadow.)
pub(super) const SEARCH_PATH: &str =
    "SELECT pg_catalog.current_setting('search_path'), current_user::pg_catalog.text";
/// Every schema: where a bare name could resolve, or be created.
pub(super) const SCHEMAS: &str = "SELECT nspname FROM pg_catalog.pg_namespace";

/// Types whose values a masked string can stand in for.
pub(super) const TEXT_TYPES: &str =
    "SELECT oid FROM pg_catalog.pg_type WHERE typcategory = 'S' AND typname <> 'char'";

/// Inheritance and partitions: a parent's rows include its children's (`SELECT ssn
/// FROM parent` reads a partition a mask names), and a child is read through its
/// parent's name.
pub(super) const INHERITS: &str = "SELECT i.inhparent, i.inhrelid FROM pg_catalog.pg_inherits i \
     WHERE i.inhrelid >= 16384";
/// Users' domains by name, with their type OIDs: the columns of a domain are the
/// values an ALTER DOMAIN's new CHECK or default runs over.
pub(super) const DOMAIN_OIDS: &str = "SELECT t.typname, t.oid FROM pg_catalog.pg_type t \
     WHERE t.typtype = 'd' AND t.oid >= 16384";
/// Rules on INSERT, UPDATE and DELETE (not views' SELECT rules): a write to their
/// table runs their actions, which may read anything and write anywhere. NULL for a
/// locked table (see [`LOCKED`]): writing it is then unanalysable.
pub(super) const RULES: &str = "WITH locked AS (LOCKED_RELATIONS) \
     SELECT n.nspname || '.' || c.relname, \
     CASE WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN pg_catalog.pg_get_ruledef(r.oid) END \
     FROM pg_catalog.pg_rewrite r \
     JOIN pg_catalog.pg_class c ON c.oid = r.ev_class \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE r.ev_type <> '1' AND c.oid >= 16384";
/// Row-level security policies (see `policies.rs`): the table, its name quoted for
/// SQL, whether it is locked (see [`LOCKED`]: its expressions are then not read,
/// NULL), whether RLS is enabled on it, and each policy's USING and WITH CHECK.
pub(super) const POLICIES: &str = "WITH locked AS (LOCKED_RELATIONS) \
     SELECT n.nspname || '.' || c.relname, \
     pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname), \
     c.oid IN (SELECT relation FROM locked), c.relrowsecurity, \
     CASE WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN pg_catalog.pg_get_expr(p.polqual, p.polrelid) END, \
     CASE WHEN c.oid NOT IN (SELECT relation FROM locked) \
     THEN pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) END \
     FROM pg_catalog.pg_policy p \
     JOIN pg_catalog.pg_class c ON c.oid = p.polrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

/// The catalog's reads run in one transaction, so they see one snapshot: a DDL
/// committing between two of them would otherwise leave a catalog half old, half
/// new (review s36 F10). (`pg_get_viewdef`, `pg_get_expr` and the like read the
/// system caches, which follow the latest commits rather than the snapshot; the
/// [`LOCKED`] check keeps the relations being changed out of them.)
pub(super) const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
pub(super) const END_SNAPSHOT: &str = "COMMIT";
