//! Where each output column's values come from (for masking).
//!
//! RowDescription names the source column of plain references; everything else
//! (expressions, whole-row references, aggregates, set operations, functions in FROM,
//! RETURNING) is traced here on the parse tree, scope by scope: CTEs, derived tables
//! with renamed columns, joins, LATERAL, sub-selects. Each output column gets a
//! [`Taint`]: clean, straight from a masked column, computed from one, or unknown.
//! When the analysis cannot tell, the taint is unknown and the caller masks.
//!
//! What a relation's columns are, and which are masked, comes from the caller through
//! [`Relations`] (the target's catalog and the identity's masks). Names resolve as the
//! server resolves them: output column names in `lineage_names.rs`, scopes, joins and
//! column references in `lineage_scope.rs`, what earlier statements of the message
//! made (or may have made) in `lineage_locals.rs`. FROM items are traced in
//! `lineage_from.rs`, expressions and target lists in `lineage_expr.rs`, writes (DML
//! and COPY) in `lineage_dml.rs`.

use super::tree::{Map, Value};

use super::error::ClassifyError;
use super::node::{list_items, name_list, node};
use super::node_kind::NodeKind;

#[path = "lineage_locals.rs"]
mod locals;
use locals::{remember, Locals};
#[path = "lineage_names.rs"]
mod lineage_names;
use lineage_names::output_name;
#[path = "lineage_scope.rs"]
mod lineage_scope;
use lineage_scope::is_row;
#[path = "lineage_dml.rs"]
mod lineage_dml;
#[path = "lineage_expr.rs"]
mod lineage_expr;
#[path = "lineage_from.rs"]
mod lineage_from;
#[path = "lineage_install.rs"]
mod lineage_install;
pub(crate) use lineage_expr::SINK_FUNCTIONS;

/// Where a value may come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Taint {
    /// The first mask (by index) of a masked column it comes from.
    pub mask: Option<u16>,
    /// Computed from masked data rather than being it.
    pub derived: bool,
    /// The analysis could not tell.
    pub unknown: bool,
    /// Clean because it is a column of a table created earlier in the same message
    /// that provably holds nothing masked: the catalog does not know its OID yet.
    pub fresh: bool,
}

impl Taint {
    pub const CLEAN: Taint = Taint {
        mask: None,
        derived: false,
        unknown: false,
        fresh: false,
    };
    pub const UNKNOWN: Taint = Taint {
        mask: None,
        derived: true,
        unknown: true,
        fresh: false,
    };
    /// A column of a table made earlier in the message (see [`Taint::fresh`]).
    pub const FRESH: Taint = Taint {
        mask: None,
        derived: false,
        unknown: false,
        fresh: true,
    };

    pub fn direct(mask: u16) -> Taint {
        Taint {
            mask: Some(mask),
            derived: false,
            unknown: false,
            fresh: false,
        }
    }

    pub fn is_clean(&self) -> bool {
        self.mask.is_none() && !self.unknown
    }

    #[must_use]
    pub fn join(self, o: Taint) -> Taint {
        let mask = match (self.mask, o.mask) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Taint {
            mask,
            derived: (self.derived && !self.is_clean()) || (o.derived && !o.is_clean()),
            unknown: self.unknown || o.unknown,
            fresh: self.fresh && o.fresh,
        }
    }

    /// The taint of a value computed from this one.
    #[must_use]
    pub fn derive(self) -> Taint {
        if self.is_clean() {
            self
        } else {
            Taint {
                derived: true,
                fresh: false,
                ..self
            }
        }
    }
}

/// What the catalog knows of a relation named in SQL.
#[derive(Debug, Clone)]
pub enum Relation {
    /// Its columns in order (dropped ones left out), each with its taint.
    Known(Vec<(String, Taint)>),
    /// A system relation with nothing masked.
    System,
    /// Something that may expose masked values wholesale (planner statistics).
    Sensitive,
    /// Not in the catalog.
    Unknown,
}

pub trait Relations {
    fn relation(&self, schema: Option<&str>, name: &str) -> Relation;
    /// The taint of calling a function (a user function whose body reads masked
    /// columns, or whose body cannot be analysed).
    fn function(&self, name: &str) -> Taint;
    /// The taint of a user-defined operator's functions (bare or `schema.name`).
    fn operator(&self, _name: &str) -> Taint {
        Taint::CLEAN
    }
    /// The taint of user-defined casts to a type (its bare name).
    fn cast(&self, _ty: &str) -> Taint {
        Taint::CLEAN
    }
    /// Whether calling it runs code of a user's (which may open or close cursors).
    fn runs_user_code(&self, _name: &str) -> bool {
        false
    }
    /// Whether a user-defined operator of that name exists (its function runs).
    fn operator_runs_code(&self, _name: &str) -> bool {
        false
    }
    /// Whether a user-defined cast to that type exists (its function runs).
    fn cast_runs_code(&self, _ty: &str) -> bool {
        false
    }
    /// What calling a function of this bare name the catalog knows gives (any of
    /// them, in any schema, temporary ones of any session included), or None when
    /// there is none: a call of a function the message made may reach one of those
    /// instead (an overload, an earlier one on the search path).
    fn function_named(&self, _bare: &str) -> Option<Taint> {
        None
    }
    /// Whether calling it may create, replace or rename relations (DDL in its body, or
    /// a body that cannot be read): a later statement's names may then reach them.
    fn may_make_relations(&self, name: &str) -> bool {
        self.runs_user_code(name)
    }
    /// Whether calling it may keep values where masking never sees them again: a table
    /// its body writes, a notification, a setting, a sequence, a lock key (or a body
    /// that cannot be read). Such a call given masked data launders it.
    fn may_store(&self, name: &str) -> bool {
        self.runs_user_code(name)
    }
    /// The taint of what writing a relation runs (its defaults, generated columns,
    /// checks and triggers): values it reads end up in the rows written.
    fn write_taint(&self, _schema: Option<&str>, _name: &str) -> Taint {
        Taint::CLEAN
    }
}

/// Columns every table has that the catalog's column lists leave out (`t.xmin`).
const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// A name a statement gives to something later statements use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Named {
    Prepared(String),
    Cursor(String),
}

/// One statement's lineage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// Per output column; None when the shape cannot be told.
    pub outputs: Option<Vec<Taint>>,
    /// Everything masked the statement refers to anywhere.
    pub touched: Taint,
    /// It would write masked values somewhere readable (CTAS, INSERT ... SELECT,
    /// UPDATE ... SET, COPY TO a file or program): why.
    pub launders: Option<String>,
    /// PREPARE / DECLARE: `outputs` are those of the named statement.
    pub defines: Option<Named>,
    /// EXECUTE / FETCH: the rows are those of this name.
    pub uses: Option<Named>,
    /// It names a relation the catalog does not know (created since it was read?).
    pub unknown_relation: bool,
    /// COPY ... TO STDOUT (masked data in it is refused, not rewritten); `true` when
    /// in binary format.
    pub copy_out: Option<bool>,
    /// It may close or open cursors pgmoat does not see (CLOSE, DISCARD, DO, CALL, a
    /// user function): names known so far may no longer be what they were.
    pub forgets_cursors: bool,
}

/// Trace every statement in `sql`. May run libpg_query (the parse is shared with
/// classification, see `parse.rs`): call it on a parse thread.
pub fn analyze(sql: &str, rels: &dyn Relations) -> Result<Vec<Lineage>, ClassifyError> {
    analyze_in(sql, rels, false)
}

/// [`analyze`], trusting what earlier statements of the message made provably clean
/// (see [`Locals`]) when `trust_local`: the session's search_path is the default.
pub fn analyze_in(
    sql: &str,
    rels: &dyn Relations,
    trust_local: bool,
) -> Result<Vec<Lineage>, ClassifyError> {
    // The tree the rules' facts came from, when they were just classified.
    let parsed = super::parse::parse(sql)?;
    let mut out = Vec::with_capacity(parsed.statements.len());
    let mut locals = Locals {
        trust: trust_local,
        ..Locals::default()
    };
    for tree in parsed.trees() {
        let mut t = trace(tree, rels, &locals);
        if t.runs && locals.any_clean() {
            // Code pgmoat does not follow runs in it: it may fill the message's
            // tables before they are read, even within the statement.
            locals.forget();
            t = trace(tree, rels, &locals);
        }
        if t.runs {
            locals.forget();
        }
        locals.code_ran |= t.makes_relations;
        if t.changes_path {
            // pg_temp may no longer come first: what the message makes is not
            // necessarily what its later statements name.
            locals.forget();
            locals.trust = false;
        }
        let l = t.lineage;
        remember(tree, rels, &mut locals);
        out.push(l);
    }
    Ok(out)
}

/// One statement's lineage, and what it does to the names of the statements after it.
struct Traced {
    lineage: Lineage,
    /// It runs code pgmoat does not follow.
    runs: bool,
    /// That code may make relations (of any name: later statements may reach them).
    makes_relations: bool,
    /// It may change search_path (`set_config`, `UPDATE pg_settings`).
    changes_path: bool,
}

fn trace(tree: &Value, rels: &dyn Relations, locals: &Locals) -> Traced {
    trace_in(tree, rels, locals, None)
}

/// [`trace`] with names outside the statement (a function body's parameters).
fn trace_in(tree: &Value, rels: &dyn Relations, locals: &Locals, outer: Option<Rel>) -> Traced {
    let mut a = Analyzer::new(rels, locals);
    a.outer = outer;
    let mut l = a.statement(tree);
    l.touched = l.touched.join(a.touched);
    l.launders = l.launders.or(a.launders);
    l.unknown_relation = a.unknown_relation;
    l.forgets_cursors = a.forgets_cursors;
    Traced {
        lineage: l,
        runs: a.runs_code,
        makes_relations: a.makes_relations,
        changes_path: a.changes_path,
    }
}

type Cols = Vec<(String, Taint)>;

/// What a query yields: its columns when known, and everything it refers to.
struct Out {
    cols: Option<Cols>,
}

#[derive(Default)]
struct Rel {
    /// The name it is reached by (`t.c`, `t.*`, `t`); empty for none.
    name: String,
    cols: Option<Cols>,
    /// A reference to the whole row, or to a column of a relation whose columns are
    /// not known.
    whole: Taint,
    /// Its columns are not reached by unqualified names: a table inside a join, whose
    /// columns are reached through the join's (USING merges them).
    cols_hidden: bool,
    /// Not reached by its name: a table inside a join that has an alias.
    name_hidden: bool,
}

#[derive(Default)]
struct Scope<'p> {
    rels: Vec<Rel>,
    ctes: Vec<(String, Option<Cols>, Taint)>,
    parent: Option<&'p Scope<'p>>,
}

impl Scope<'_> {
    fn cte(&self, name: &str) -> Option<(Option<Cols>, Taint)> {
        let mut s = Some(self);
        while let Some(sc) = s {
            if let Some((_, c, t)) = sc.ctes.iter().rev().find(|(n, _, _)| n == name) {
                return Some((c.clone(), *t));
            }
            s = sc.parent;
        }
        None
    }
}

fn whole_of(cols: &[(String, Taint)]) -> Taint {
    cols.iter()
        .fold(Taint::CLEAN, |acc, (_, t)| acc.join(*t))
        .derive()
}

fn join_all(cols: &Option<Cols>, fallback: Taint) -> Taint {
    match cols {
        Some(c) => c.iter().fold(Taint::CLEAN, |acc, (_, t)| acc.join(*t)),
        None => fallback,
    }
}

fn str_field<'v>(m: &'v Map, k: &str) -> &'v str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

fn arr<'v>(m: &'v Map, k: &str) -> &'v [Value] {
    m.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn alias_of(m: &Map) -> (Option<String>, Vec<String>) {
    match m.get("alias").and_then(Value::as_object) {
        Some(a) => (
            Some(str_field(a, "aliasname").to_owned()).filter(|s| !s.is_empty()),
            name_list(a.get("colnames")),
        ),
        None => (None, Vec::new()),
    }
}

fn rename(cols: Option<Cols>, names: &[String]) -> Option<Cols> {
    let mut cols = cols?;
    for (c, n) in cols.iter_mut().zip(names) {
        c.0 = n.clone();
    }
    Some(cols)
}

struct Analyzer<'r> {
    rels: &'r dyn Relations,
    locals: &'r Locals,
    touched: Taint,
    launders: Option<String>,
    unknown_relation: bool,
    forgets_cursors: bool,
    /// It runs code pgmoat does not follow (user functions, operators, casts, writes
    /// that may fire triggers): what the message made may not be what pgmoat saw.
    runs_code: bool,
    /// The output columns of the SELECT whose ORDER BY, GROUP BY or DISTINCT ON is
    /// being read: a bare name no relation has may be one of them.
    output_names: Option<Cols>,
    /// What the statement sees around it (a function body's parameters), as the
    /// outermost scope: its own columns come first.
    outer: Option<Rel>,
    /// It calls code that may create or rename relations (see
    /// [`Relations::may_make_relations`]).
    makes_relations: bool,
    /// It may change search_path (see [`Traced::changes_path`]).
    changes_path: bool,
    /// The relation being resolved is the target of DDL (see `statement`).
    ddl_target: bool,
}

impl<'r> Analyzer<'r> {
    fn new(rels: &'r dyn Relations, locals: &'r Locals) -> Analyzer<'r> {
        Analyzer {
            rels,
            locals,
            touched: Taint::CLEAN,
            launders: None,
            unknown_relation: false,
            forgets_cursors: false,
            runs_code: false,
            output_names: None,
            outer: None,
            makes_relations: false,
            changes_path: false,
            ddl_target: false,
        }
    }

    fn note(&mut self, t: Taint) -> Taint {
        self.touched = self.touched.join(t);
        t
    }

    fn launder(&mut self, t: Taint, what: &str) {
        if !t.is_clean() && self.launders.is_none() {
            self.launders = Some(what.to_owned());
        }
    }

    fn statement(&mut self, v: &Value) -> Lineage {
        let top = Scope {
            rels: self.outer.take().into_iter().collect(),
            ..Scope::default()
        };
        let Some((ty, m)) = node(v) else {
            return Lineage::default();
        };
        let mut l = Lineage::default();
        match ty {
            NodeKind::SelectStmt => {
                let out = self.select(m, &top);
                if m.get("into_clause").is_some_and(|i| !i.is_null()) {
                    let t = join_all(&out.cols, self.touched);
                    self.launder(t, "SELECT INTO a table");
                }
                l.outputs = out.cols.map(|c| c.into_iter().map(|(_, t)| t).collect());
            }
            NodeKind::InsertStmt
            | NodeKind::UpdateStmt
            | NodeKind::DeleteStmt
            | NodeKind::MergeStmt => {
                l.outputs = self
                    .dml(ty, m, &top)
                    .map(|c| c.into_iter().map(|(_, t)| t).collect());
            }
            NodeKind::CreateTableAsStmt => {
                if let Some(q) = m.get("query") {
                    let before = self.touched;
                    let out = self.query(q, &top);
                    let t = join_all(&out.cols, self.touched).join(before);
                    self.launder(t, "CREATE TABLE AS / CREATE MATERIALIZED VIEW");
                }
            }
            NodeKind::CopyStmt => self.copy(m, &top, &mut l),
            NodeKind::PrepareStmt => {
                if let Some(q) = m.get("query") {
                    let inner = self.statement(q);
                    l.outputs = inner.outputs;
                    l.copy_out = inner.copy_out;
                }
                l.defines = Some(Named::Prepared(str_field(m, "name").to_owned()));
            }
            NodeKind::DeclareCursorStmt => {
                if let Some(q) = m.get("query") {
                    l.outputs = self.statement(q).outputs;
                }
                l.defines = Some(Named::Cursor(str_field(m, "portalname").to_owned()));
            }
            NodeKind::ExecuteStmt => {
                for p in arr(m, "params") {
                    self.expr(p, &top);
                }
                l.uses = Some(Named::Prepared(str_field(m, "name").to_owned()));
            }
            NodeKind::FetchStmt => {
                l.uses = Some(Named::Cursor(str_field(m, "portalname").to_owned()));
            }
            NodeKind::ExplainStmt => {
                // The plan is text about the query, not its data; but EXPLAIN ANALYZE
                // runs it, so whatever it would launder still counts.
                if let Some(q) = m.get("query") {
                    self.statement(q);
                }
                l.outputs = Some(vec![Taint::CLEAN]);
            }
            NodeKind::AlterTableStmt
            | NodeKind::RenameStmt
            | NodeKind::RuleStmt
            | NodeKind::CreateTrigStmt => {
                // A generated column, a rule or a trigger can copy a masked column
                // somewhere unmasked, and a rename takes it out of its mask's name.
                if let Some(r) = m.get("relation").and_then(Value::as_object) {
                    // What matters is whether the catalog's relation has masked
                    // columns: a shadow the message made is unknown wherever it is
                    // read, changed or not.
                    self.ddl_target = true;
                    let rel = self.range_var(r, &top);
                    self.ddl_target = false;
                    self.launder(
                        rel.whole,
                        "changing a table with masked columns (columns, rules, triggers, names)",
                    );
                    self.installs(ty, m, Some(rel));
                }
                if ty == NodeKind::CreateTrigStmt {
                    self.installs(ty, m, None);
                }
                // A rule's actions run whenever it fires: one that reads masked
                // columns copies them wherever it writes.
                for action in arr(m, "actions") {
                    let before = self.touched;
                    self.touched = Taint::CLEAN;
                    self.statement(action);
                    let read = self.touched;
                    self.touched = before.join(read);
                    self.launder(read, "a rule whose actions read masked columns");
                }
            }
            NodeKind::ClosePortalStmt
            | NodeKind::DiscardStmt
            | NodeKind::DoStmt
            | NodeKind::CallStmt => {
                self.forgets_cursors = true;
                self.generic(m, &top);
            }
            NodeKind::CreateStmt | NodeKind::CreateDomainStmt | NodeKind::AlterDomainStmt => {
                self.installs(ty, m, None);
                self.generic(m, &top);
            }
            NodeKind::ViewStmt | NodeKind::CreateFunctionStmt => {
                // Views are traced when read (from the catalog); bodies are judged by
                // the rules' facts.
            }
            _ => {
                // Anything else: note what it refers to; its rows (SHOW, CALL's OUT
                // parameters) are traced by what it touches.
                self.generic(m, &top);
            }
        }
        l
    }

    /// A query in a sub-position (a CTE, a derived table, a sub-select, a COPY).
    fn query(&mut self, v: &Value, parent: &Scope<'_>) -> Out {
        match node(v) {
            Some((NodeKind::SelectStmt, m)) => self.select(m, parent),
            Some((
                ty @ (NodeKind::InsertStmt
                | NodeKind::UpdateStmt
                | NodeKind::DeleteStmt
                | NodeKind::MergeStmt),
                m,
            )) => Out {
                cols: self.dml(ty, m, parent),
            },
            _ => {
                self.note(Taint::UNKNOWN);
                Out { cols: None }
            }
        }
    }

    fn with(&mut self, m: &Map, scope: &mut Scope<'_>) {
        let Some(w) = m.get("with_clause").and_then(Value::as_object) else {
            return;
        };
        let recursive = w.get("recursive").and_then(Value::as_bool).unwrap_or(false);
        for c in arr(w, "ctes") {
            let Some((NodeKind::CommonTableExpr, cte)) = node(c) else {
                continue;
            };
            let name = str_field(cte, "ctename").to_owned();
            let names = name_list(cte.get("aliascolnames"));
            let Some(q) = cte.get("ctequery") else {
                continue;
            };
            // A recursive CTE refers to itself: trace it twice, the second time with
            // what the first found (taints only grow, so this settles).
            let rounds = if recursive { 3 } else { 1 };
            if recursive {
                scope.ctes.push((name.clone(), None, Taint::CLEAN));
            }
            for _ in 0..rounds {
                let before = self.touched;
                let out = self.query(q, scope);
                let cols = rename(out.cols, &names);
                let all = join_all(&cols, self.touched.join(before));
                let entry = (name.clone(), cols, all.derive());
                if recursive {
                    if let Some(last) = scope.ctes.last_mut() {
                        *last = entry;
                    }
                } else {
                    scope.ctes.push(entry);
                }
            }
        }
    }

    fn select(&mut self, m: &Map, parent: &Scope<'_>) -> Out {
        // An outer query's output names are not this one's (a sub-select in ORDER BY
        // cannot name them).
        let outer = self.output_names.take();
        let out = self.select_body(m, parent);
        self.output_names = outer;
        out
    }

    fn select_body(&mut self, m: &Map, parent: &Scope<'_>) -> Out {
        let mut scope = Scope {
            parent: Some(parent),
            ..Scope::default()
        };
        self.with(m, &mut scope);
        let op = m.get("op").and_then(Value::as_i64).unwrap_or(1);
        if op > 1 {
            let l = m
                .get("larg")
                .and_then(Value::as_object)
                .map(|a| self.select(a, &scope));
            let r = m
                .get("rarg")
                .and_then(Value::as_object)
                .map(|a| self.select(a, &scope));
            let cols = match (l.and_then(|o| o.cols), r.and_then(|o| o.cols)) {
                (Some(a), Some(b)) if a.len() == b.len() => Some(
                    a.into_iter()
                        .zip(b)
                        .map(|((n, x), (_, y))| (n, x.join(y)))
                        .collect(),
                ),
                _ => None,
            };
            return Out { cols };
        }
        let values = arr(m, "values_lists");
        if !values.is_empty() {
            let mut cols: Option<Cols> = None;
            for row in values {
                let items = list_items(row)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let taints: Vec<Taint> = items.iter().map(|e| self.expr(e, &scope)).collect();
                cols = Some(match cols {
                    None => taints
                        .iter()
                        .enumerate()
                        .map(|(i, t)| (format!("column{}", i + 1), *t))
                        .collect(),
                    Some(c) if c.len() == taints.len() => c
                        .into_iter()
                        .zip(taints)
                        .map(|((n, a), b)| (n, a.join(b)))
                        .collect(),
                    Some(_) => return Out { cols: None },
                });
            }
            return Out { cols };
        }
        for item in arr(m, "from_clause") {
            self.range_item(item, &mut scope);
        }
        for key in [
            "where_clause",
            "having_clause",
            "window_clause",
            "limit_count",
            "limit_offset",
        ] {
            if let Some(v) = m.get(key) {
                self.expr(v, &scope);
            }
        }
        let cols = self.targets(arr(m, "target_list"), &scope);
        // These may name an output column (`ORDER BY alias`) where no input has it.
        let outer = std::mem::replace(&mut self.output_names, cols);
        for key in ["group_clause", "sort_clause", "distinct_clause"] {
            if let Some(v) = m.get(key) {
                self.expr(v, &scope);
            }
        }
        let cols = std::mem::replace(&mut self.output_names, outer);
        Out { cols }
    }
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
