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
//!
//! [`LOCKED`]: queries::LOCKED

use std::collections::{BTreeSet, HashMap};

mod cache;
mod load;
mod not_null;
mod path;
mod peers;
mod policies;
mod queries;

pub use cache::CatalogCache;
pub use peers::{Announcement, Peers};
pub use policies::{Policies, PolicyCode};

use crate::classify::{merge, Facts, Kind};

/// A user relation (table, view, materialized view, foreign table).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    ///
    /// [`LOCKED`]: queries::LOCKED
    pub definition_unread: bool,
    /// A view that was locked when read, whose definition is the previous load's: a
    /// transaction is changing it, and a read that waits on that lock runs over the
    /// new definition once it commits. The rules keep judging the old one (a
    /// migration must not make every read of it unanalysable); the masks take its
    /// columns as unknown (masked whole) until the catalog is read without the lock.
    pub being_changed: bool,
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
    ///
    /// [`WRITES`]: queries::WRITES
    writes: HashMap<String, Facts>,
    /// Table name (`schema.name`) -> what its triggers run (see [`TRIGGERS`]).
    ///
    /// [`TRIGGERS`]: queries::TRIGGERS
    triggers: HashMap<String, Facts>,
    /// Table name (`schema.name`) -> what its INSERT/UPDATE/DELETE rules' actions do
    /// (see [`RULES`]), with the table itself read (NEW and OLD).
    ///
    /// [`RULES`]: queries::RULES
    rules: HashMap<String, Facts>,
    /// Table name (`schema.name`) -> its row-level security policies, for tables
    /// with RLS enabled (see [`POLICIES`] and `policies.rs`).
    ///
    /// [`POLICIES`]: queries::POLICIES
    policies: HashMap<String, Policies>,
    /// Table name -> what its policies would run on a write once RLS is enabled on
    /// it (it is not): an ALTER TABLE of it installs them (see `policies.rs`).
    dormant: HashMap<String, PolicyCode>,
    /// What event triggers run (see [`EVENT_TRIGGERS`]).
    ///
    /// [`EVENT_TRIGGERS`]: queries::EVENT_TRIGGERS
    event_triggers: Option<Facts>,
    /// Function name (bare and `schema.name`) -> facts of its body.
    functions: HashMap<String, Facts>,
    /// Built-in and compiled functions (bare and `schema.name`), see [`NATIVE`].
    ///
    /// [`NATIVE`]: queries::NATIVE
    native: std::collections::HashSet<String>,
    /// The server's own functions (OID < 16384, by `schema.name` and bare name): the
    /// only ones masks trust to return what they are given. An extension's C function
    /// may read a relation named by a string (`crosstab`, `get_raw_page`).
    built_in: std::collections::HashSet<String>,
    /// pg_inherits, both ways: a relation's parents and its children (partitions and
    /// inheritance children), by OID.
    pub parents: HashMap<u32, Vec<u32>>,
    pub children: HashMap<u32, Vec<u32>>,
    /// Users' domains by bare name (lowercase) -> their type OIDs.
    domain_oids: HashMap<String, Vec<u32>>,
    /// User tables' NOT NULL columns, for WHEREs true only given the schema.
    not_null: not_null::NotNull,
    /// The server's default search_path (None: no catalog was read, so no relation
    /// could be told apart anyway).
    default_path: Option<path::DefaultPath>,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Everything a catalog says of one name a statement uses (a relation by
/// `schema.name` or bare, in every schema; a function, operator or type): two
/// catalogs whose entries are equal for every name a prepared statement reaches
/// judge and mask it alike (see `session::stale`).
#[derive(PartialEq)]
pub struct Entry<'a> {
    relations: Vec<(&'a RelInfo, [Option<&'a Facts>; 4])>,
    function: Option<&'a Facts>,
    native: bool,
    operator: Option<&'a Vec<String>>,
    cast: Option<&'a Vec<String>>,
    domain: Option<&'a Facts>,
    domain_base: Option<&'a String>,
}

impl Entry<'_> {
    /// The facts behind it (view definitions, what writing a table runs, function
    /// bodies, domain checks): what they name is reached too.
    pub fn facts(&self) -> impl Iterator<Item = &Facts> {
        let rel = self.relations.iter().flat_map(|(_, f)| f.iter().flatten());
        rel.copied().chain(self.function).chain(self.domain)
    }

    /// Function and type names it points at directly.
    pub fn names(&self) -> impl Iterator<Item = &String> {
        let lists = self.operator.into_iter().chain(self.cast).flatten();
        lists.chain(self.domain_base)
    }
}

impl Catalog {
    /// What this catalog says of `name` (see [`Entry`]).
    pub fn entry(&self, name: &str) -> Entry<'_> {
        let lowered = lower(name);
        let (schema, bare) = match lowered.split_once('.') {
            Some((s, n)) => (Some(s), n),
            None => (None, lowered.as_str()),
        };
        let relations = self
            .relations
            .iter()
            .filter(|r| {
                // Any case: matching too much only compares more.
                r.name.eq_ignore_ascii_case(bare)
                    && schema.is_none_or(|s| r.schema.eq_ignore_ascii_case(s))
            })
            .map(|r| {
                let q = format!("{}.{}", r.schema, r.name);
                let [v, w, t] = [&self.views, &self.writes, &self.triggers].map(|m| m.get(&q));
                let p = self.policies.get(&q).and_then(|p| p.write.as_ref());
                (r, [v, w, t, p.map(|c| &c.facts)])
            })
            .collect();
        Entry {
            relations,
            function: self.functions.get(lowered.as_str()),
            native: self.native.contains(lowered.as_str()),
            operator: self.operators.get(name),
            cast: self.casts.get(lowered.as_str()),
            domain: self.domains.get(lowered.as_str()),
            domain_base: self.domain_bases.get(lowered.as_str()),
        }
    }

    /// Whether a table named without a schema can only be `public.name` (or a system
    /// or temporary relation) on the server's default search_path, for a session with
    /// pgmoat's pinned `role` (or none). When not, sessions are judged as ones that
    /// changed search_path: a bare name matches every schema a pattern could mean.
    pub fn unqualified_is_public(&self, role: Option<&str>) -> bool {
        self.default_path.as_ref().is_none_or(|p| p.is_public(role))
    }

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

    /// What writing `schema.table` runs besides its triggers (defaults, checks, casts,
    /// domains, rules), with the functions it calls folded in. A view's are those of
    /// the relations it reads (an auto-updatable view writes its base table, firing
    /// that table's rules: review s36 Y3).
    pub fn write_facts(&self, table: &str) -> Option<Facts> {
        self.runs_on_write(table, false)
    }

    /// [`Self::write_facts`] with the table's triggers too: all the code that sees
    /// the written row (NEW, OLD).
    pub fn row_code_facts(&self, table: &str) -> Option<Facts> {
        self.runs_on_write(table, true)
    }

    fn runs_on_write(&self, table: &str, triggers: bool) -> Option<Facts> {
        let written = Facts {
            kinds: [Kind::Insert, Kind::Update, Kind::Delete]
                .into_iter()
                .collect(),
            tables_written: [table.to_owned()].into_iter().collect(),
            ..Facts::default()
        };
        let mut found: Option<Facts> = None;
        for t in self.written_relations(&written) {
            let fired = triggers.then(|| self.triggers.get(t.as_str())).flatten();
            for w in [
                self.writes.get(t.as_str()),
                fired,
                self.rules.get(t.as_str()),
            ]
            .into_iter()
            .flatten()
            {
                match &mut found {
                    Some(f) => merge(f, w.clone()),
                    None => found = Some(w.clone()),
                }
            }
        }
        let f = found?;
        Some(self.resolve(&f).unwrap_or(f))
    }

    /// The row-level security policies of a table (`schema.name`) with RLS enabled.
    pub fn policies(&self, table: &str) -> Option<&Policies> {
        self.policies.get(table)
    }

    /// The policies of a table (`schema.name`) with RLS disabled: what its writes
    /// would run once it is enabled.
    pub fn dormant_policies(&self, table: &str) -> Option<&PolicyCode> {
        self.dormant.get(table)
    }

    /// Whether any table has row-level security policies, running or dormant.
    pub fn has_policies(&self) -> bool {
        !self.policies.is_empty() || !self.dormant.is_empty()
    }

    /// What a view's definition does (by `schema.name`), as read.
    pub fn view_facts(&self, view: &str) -> Option<&Facts> {
        self.views.get(view)
    }

    pub fn function_resolved(&self, name: &str) -> Option<Facts> {
        let f = self.function_facts(name)?;
        Some(self.resolve(f).unwrap_or_else(|| f.clone()))
    }

    /// A built-in or compiled function (by `schema.name` or bare name, any case).
    pub fn is_native_function(&self, name: &str) -> bool {
        self.native.contains(lower(name).as_str())
    }

    /// A function of the server's own (by `schema.name` or bare name, any case), not
    /// an extension's or a user's.
    pub fn is_built_in_function(&self, name: &str) -> bool {
        self.built_in.contains(lower(name).as_str())
    }

    /// The type OIDs of domain `name` (bare) and of the domains defined over it:
    /// the types of the columns whose values its CHECKs and default apply to.
    pub fn domain_type_oids(&self, name: &str) -> Vec<u32> {
        let target = lower(name);
        let mut out = Vec::new();
        for (d, oids) in &self.domain_oids {
            let mut at = Some(d.as_str());
            for _ in 0..8 {
                let Some(x) = at else { break };
                if x == target {
                    out.extend(oids.iter().copied());
                    break;
                }
                at = self.domain_bases.get(x).map(String::as_str);
            }
        }
        out
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
            && self.rules.is_empty()
            && self.policies.is_empty()
            && self.dormant.is_empty()
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
            || f.literal_types.iter().chain(&f.domains_changed).any(|t| {
                self.domains.contains_key(t.as_str()) || self.domain_bases.contains_key(t.as_str())
            })
            || f.functions
                .iter()
                .any(|n| self.functions.contains_key(lower(n).as_str()))
            || f.tables_read
                .iter()
                .any(|t| self.views.contains_key(t.as_str()))
            || (fires_triggers(f)
                && self.written_relations(f).iter().any(|t| {
                    self.writes.contains_key(t.as_str())
                        || self.triggers.contains_key(t.as_str())
                        || self.rules.contains_key(t.as_str())
                        || self.policies.contains_key(t.as_str())
                }))
            || (!self.policies.is_empty() && !self.policied_reads(f).is_empty())
            || (!self.dormant.is_empty() && self.dormant_altered(f).next().is_some())
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
        let written = if fires_triggers(f) {
            self.written_relations(f)
        } else {
            BTreeSet::new()
        };
        if runs_writes(f) {
            for t in &written {
                if let Some(w) = self.writes.get(t.as_str()) {
                    merge(&mut out, w.clone());
                    changed = true;
                }
            }
        }
        if fires_triggers(f) {
            for t in &written {
                let policies = self.policies.get(t.as_str()).and_then(|p| p.write.as_ref());
                for w in [
                    self.triggers.get(t.as_str()),
                    self.rules.get(t.as_str()),
                    policies.map(|p| &p.facts),
                ]
                .into_iter()
                .flatten()
                {
                    merge(&mut out, w.clone());
                    changed = true;
                }
            }
        }
        // ALTER TABLE ... ENABLE ROW LEVEL SECURITY makes its policies run: judged as
        // installing them (any ALTER TABLE of the table counts: the facts do not say
        // which sub-command it is).
        let dormant: Vec<Facts> = self.dormant_altered(f).map(|c| c.facts.clone()).collect();
        for d in dormant {
            merge(&mut out, d);
            changed = true;
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
        // ALTER DOMAIN runs the domain's checks (and those under it) over its values.
        let literal: Vec<String> = out
            .literal_types
            .iter()
            .chain(&out.domains_changed)
            .cloned()
            .collect();
        let cast: Vec<String> = out.type_casts.iter().cloned().collect();
        for (t, is_literal) in cast
            .iter()
            .map(|t| (t, false))
            .chain(literal.iter().map(|t| (t, true)))
        {
            if let Some(funcs) = self.casts.get(t.as_str()).filter(|_| !is_literal) {
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
        let mut seen_policies = BTreeSet::new();
        for depth in 0..=MAX_BODY_DEPTH {
            let views: Vec<String> = out
                .tables_read
                .iter()
                .filter(|t| !seen_views.contains(*t) && self.views.contains_key(t.as_str()))
                .cloned()
                .collect();
            let mut folded = !views.is_empty();
            for v in views {
                if let Some(body) = self.views.get(v.as_str()) {
                    merge(&mut out, body.clone());
                    changed = true;
                }
                seen_views.insert(v);
            }
            // The policies of the tables read, by the statement, a view's definition
            // or a function's body (review s36 F9).
            for t in self.policied_reads(&out) {
                if !seen_policies.insert(t.clone()) {
                    continue;
                }
                if let Some(p) = self.policies.get(t.as_str()).and_then(|p| p.read.as_ref()) {
                    merge(&mut out, p.facts.clone());
                    changed = true;
                    folded = true;
                }
            }
            let calls: Vec<String> = out
                .functions
                .iter()
                .filter(|n| !seen.contains(*n))
                .cloned()
                .collect();
            if calls.is_empty() {
                // What was folded in may read views and tables of its own.
                if folded && depth < MAX_BODY_DEPTH {
                    continue;
                }
                break;
            }
            if depth == MAX_BODY_DEPTH {
                // Bodies nested deeper than pgmoat follows: what they do (a rule
                // created, a table written) is not in the facts. Fail closed.
                if calls
                    .iter()
                    .any(|n| self.functions.contains_key(lower(n).as_str()))
                    && out.unanalysable.is_none()
                {
                    out.unanalysable =
                        Some("functions calling functions deeper than pgmoat follows".into());
                    changed = true;
                }
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

impl Catalog {
    /// The relations whose defaults, triggers and rules a write of `f` may run
    /// (review s36 Y3): what it names, every relation of a bare name's name (the
    /// server's path decides which one it is), and the relations a written view
    /// reads (an auto-updatable view writes its base table, which fires that
    /// table's triggers and rules), views within views too.
    fn written_relations(&self, f: &Facts) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = f.tables_written.clone();
        for bare in &f.unqualified_tables {
            let suffix = format!(".{bare}");
            for map in [&self.writes, &self.triggers, &self.rules] {
                out.extend(map.keys().filter(|k| k.ends_with(&suffix)).cloned());
            }
        }
        let mut todo: Vec<String> = out.iter().cloned().collect();
        let mut depth = 0;
        while !todo.is_empty() && depth < MAX_BODY_DEPTH {
            let mut next = Vec::new();
            for t in &todo {
                if let Some(v) = self.views.get(t.as_str()) {
                    next.extend(
                        v.tables_read
                            .iter()
                            .filter(|r| out.insert((*r).clone()))
                            .cloned(),
                    );
                }
            }
            todo = next;
            depth += 1;
        }
        out
    }
}

impl Catalog {
    /// The tables with policies that `f` reads: those it names, and for a bare name
    /// every table of that name (the server's path decides which one it is).
    fn policied_reads(&self, f: &Facts) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = f
            .tables_read
            .iter()
            .filter(|t| self.policies.contains_key(t.as_str()))
            .cloned()
            .collect();
        for bare in &f.unqualified_tables {
            let suffix = format!(".{bare}");
            out.extend(
                self.policies
                    .keys()
                    .filter(|k| k.ends_with(&suffix))
                    .cloned(),
            );
        }
        out
    }

    /// The dormant policies of the tables an ALTER changes.
    fn dormant_altered<'a>(&'a self, f: &'a Facts) -> impl Iterator<Item = &'a PolicyCode> {
        let altered = f.kinds.contains(&Kind::Alter);
        f.tables_written
            .iter()
            .filter(move |_| altered)
            .filter_map(|t| self.dormant.get(t.as_str()))
    }
}

/// How many levels of user function bodies (and views) [`Catalog::resolve`] folds in.
const MAX_BODY_DEPTH: usize = 4;

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
