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
//! made (or may have made) in `lineage_locals.rs`.

use super::tree::{Map, Value};

use super::walk::{name_list, unwrap_node};
use super::ClassifyError;

#[path = "lineage_locals.rs"]
mod locals;
use locals::{remember, Locals};
#[path = "lineage_names.rs"]
mod lineage_names;
use lineage_names::output_name;
#[path = "lineage_scope.rs"]
mod lineage_scope;
use lineage_scope::is_row;

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
}

/// Columns every table has that the catalog's column lists leave out (`t.xmin`).
const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"];

/// Functions that carry a value out of the result, where masking never sees it: a
/// notification's payload, a setting anyone can read back.
const SINK_FUNCTIONS: &[&str] = &["pg_notify", "set_config"];

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

/// Trace every statement in `sql`. Runs libpg_query: call it on a parse thread.
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
    let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT)
        .map_err(|e| ClassifyError::Parse(e.to_string()))?;
    let mut out = Vec::with_capacity(parsed.protobuf.stmts.len());
    let mut locals = Locals {
        trust: trust_local,
        ..Locals::default()
    };
    for raw in &parsed.protobuf.stmts {
        let tree =
            super::tree::to_tree(&raw.stmt).map_err(|e| ClassifyError::Parse(e.to_string()))?;
        let mut t = trace(&tree, rels, &locals);
        if t.runs && locals.any_clean() {
            // Code pgmoat does not follow runs in it: it may fill the message's
            // tables before they are read, even within the statement.
            locals.forget();
            t = trace(&tree, rels, &locals);
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
        remember(&tree, rels, &mut locals);
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

const TEXT_TYPES: &[&str] = &[
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "citext",
    "character varying",
];

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
        let Some((ty, m)) = unwrap_node(v) else {
            return Lineage::default();
        };
        let mut l = Lineage::default();
        match ty {
            "SelectStmt" => {
                let out = self.select(m, &top);
                if m.get("into_clause").is_some_and(|i| !i.is_null()) {
                    let t = join_all(&out.cols, self.touched);
                    self.launder(t, "SELECT INTO a table");
                }
                l.outputs = out.cols.map(|c| c.into_iter().map(|(_, t)| t).collect());
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                l.outputs = self
                    .dml(ty, m, &top)
                    .map(|c| c.into_iter().map(|(_, t)| t).collect());
            }
            "CreateTableAsStmt" => {
                if let Some(q) = m.get("query") {
                    let before = self.touched;
                    let out = self.query(q, &top);
                    let t = join_all(&out.cols, self.touched).join(before);
                    self.launder(t, "CREATE TABLE AS / CREATE MATERIALIZED VIEW");
                }
            }
            "CopyStmt" => self.copy(m, &top, &mut l),
            "PrepareStmt" => {
                if let Some(q) = m.get("query") {
                    let inner = self.statement(q);
                    l.outputs = inner.outputs;
                    l.copy_out = inner.copy_out;
                }
                l.defines = Some(Named::Prepared(str_field(m, "name").to_owned()));
            }
            "DeclareCursorStmt" => {
                if let Some(q) = m.get("query") {
                    l.outputs = self.statement(q).outputs;
                }
                l.defines = Some(Named::Cursor(str_field(m, "portalname").to_owned()));
            }
            "ExecuteStmt" => {
                for p in arr(m, "params") {
                    self.expr(p, &top);
                }
                l.uses = Some(Named::Prepared(str_field(m, "name").to_owned()));
            }
            "FetchStmt" => {
                l.uses = Some(Named::Cursor(str_field(m, "portalname").to_owned()));
            }
            "ExplainStmt" => {
                // The plan is text about the query, not its data; but EXPLAIN ANALYZE
                // runs it, so whatever it would launder still counts.
                if let Some(q) = m.get("query") {
                    self.statement(q);
                }
                l.outputs = Some(vec![Taint::CLEAN]);
            }
            "AlterTableStmt" | "RenameStmt" | "RuleStmt" | "CreateTrigStmt" => {
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
            "ClosePortalStmt" | "DiscardStmt" | "DoStmt" | "CallStmt" => {
                self.forgets_cursors = true;
                self.generic(m, &top);
            }
            "ViewStmt" | "CreateFunctionStmt" => {
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
        match unwrap_node(v) {
            Some(("SelectStmt", m)) => self.select(m, parent),
            Some((ty @ ("InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt"), m)) => Out {
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
            let Some(("CommonTableExpr", cte)) = unwrap_node(c) else {
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
                let items = super::walk::list_items(row)
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

    /// A target list (SELECT's or RETURNING's): per output column, name and taint.
    fn targets(&mut self, list: &[Value], scope: &Scope<'_>) -> Option<Cols> {
        let mut cols: Cols = Vec::new();
        let mut shape_known = true;
        for t in list {
            let Some(("ResTarget", rt)) = unwrap_node(t) else {
                shape_known = false;
                continue;
            };
            let Some(val) = rt.get("val") else { continue };
            if let Some(("ColumnRef", cr)) = unwrap_node(val) {
                let fields = name_list(cr.get("fields"));
                if fields.last().map(String::as_str) == Some("*") {
                    match self.star(&fields[..fields.len() - 1], scope) {
                        Some(expanded) => cols.extend(expanded),
                        None => shape_known = false,
                    }
                    continue;
                }
            }
            let taint = self.expr(val, scope);
            let name = match str_field(rt, "name") {
                "" => output_name(val),
                n => n.to_owned(),
            };
            cols.push((name, taint));
        }
        shape_known.then_some(cols)
    }

    fn range_item(&mut self, item: &Value, scope: &mut Scope<'_>) {
        let Some((ty, m)) = unwrap_node(item) else {
            return;
        };
        match ty {
            "RangeVar" => {
                let rel = self.range_var(m, scope);
                scope.rels.push(rel);
            }
            "RangeSubselect" => {
                let (alias, names) = alias_of(m);
                let before = self.touched;
                let out = match m.get("subquery") {
                    Some(q) => self.query(q, scope),
                    None => Out { cols: None },
                };
                let cols = rename(out.cols, &names);
                let whole = match &cols {
                    Some(c) => whole_of(c),
                    None => self.touched.join(before).derive(),
                };
                scope.rels.push(Rel {
                    name: alias.unwrap_or_default(),
                    cols,
                    whole,
                    ..Rel::default()
                });
            }
            "JoinExpr" => self.join(m, scope),
            "RangeTableSample" => {
                // `t TABLESAMPLE ...`: t itself (with its alias), sampled.
                if let Some(r) = m.get("relation") {
                    self.range_item(r, scope);
                }
                for k in ["args", "repeatable"] {
                    if let Some(v) = m.get(k) {
                        self.expr(v, scope);
                    }
                }
            }
            "RangeFunction" => {
                let (alias, names) = alias_of(m);
                let mut t = Taint::CLEAN;
                let mut fname = String::new();
                for f in arr(m, "functions") {
                    if let Some(items) = super::walk::list_items(f).and_then(Value::as_array) {
                        for it in items {
                            if fname.is_empty() {
                                if let Some(("FuncCall", fc)) = unwrap_node(it) {
                                    fname = name_list(fc.get("funcname"))
                                        .last()
                                        .cloned()
                                        .unwrap_or_default();
                                }
                            }
                            t = t.join(self.expr(it, scope));
                        }
                    }
                }
                let t = self.note(t.derive());
                // `json_each(row_to_json(u))`: the keys are u's column names, only the
                // values carry its data.
                if let Some(mut cols) = self.names_and_values(m, t, scope) {
                    if m.get("ordinality").and_then(Value::as_bool) == Some(true) {
                        cols.push(("ordinality".to_owned(), Taint::CLEAN));
                    }
                    scope.rels.push(Rel {
                        name: alias.unwrap_or(fname),
                        cols: rename(Some(cols), &names),
                        whole: t,
                        ..Rel::default()
                    });
                    return;
                }
                // A column definition list names every column; an alias list may
                // name fewer than the function returns (the rest keep names pgmoat
                // does not know), so then the columns are not known.
                let defs = coldef_names(arr(m, "coldeflist"));
                let cols = (!defs.is_empty())
                    .then(|| rename(Some(defs.into_iter().map(|n| (n, t)).collect()), &names))
                    .flatten();
                scope.rels.push(Rel {
                    name: alias.unwrap_or(fname),
                    cols,
                    whole: t,
                    ..Rel::default()
                });
            }
            _ => {
                // XMLTABLE, JSON_TABLE, TABLESAMPLE...: whatever they read, any column.
                let t = self.generic(m, scope).derive();
                let (alias, _) = alias_of(m);
                scope.rels.push(Rel {
                    name: alias.unwrap_or_default(),
                    cols: None,
                    whole: t,
                    ..Rel::default()
                });
            }
        }
    }

    /// The columns of a set-returning function in FROM that splits an object whose
    /// keys are names (a row's columns, literal keys) into keys and values: the keys
    /// are clean, the values carry `t`. None for anything else.
    fn names_and_values(&mut self, m: &Map, t: Taint, scope: &Scope<'_>) -> Option<Cols> {
        let [f] = arr(m, "functions") else {
            return None;
        };
        let items = super::walk::list_items(f)?.as_array()?;
        let Some(("FuncCall", fc)) = items.first().and_then(unwrap_node) else {
            return None;
        };
        if items.iter().skip(1).any(|i| unwrap_node(i).is_some()) {
            return None; // a column definition list
        }
        let full = name_list(fc.get("funcname"));
        if full.len() > 2 || self.rels.runs_user_code(&full.join(".")) {
            return None;
        }
        let name = full.last()?.to_ascii_lowercase();
        let keys_only = KEY_FUNCTIONS.contains(&name.as_str());
        if !keys_only && !KEY_VALUE_FUNCTIONS.contains(&name.as_str()) {
            return None;
        }
        let [arg] = arr(fc, "args") else {
            return None;
        };
        if !self.keys_are_names(arg, scope) {
            return None;
        }
        Some(if keys_only {
            vec![(name, Taint::CLEAN)]
        } else {
            vec![("key".to_owned(), Taint::CLEAN), ("value".to_owned(), t)]
        })
    }

    /// Whether the keys of this JSON or hstore value are names rather than data:
    /// `row_to_json(u)`, `to_jsonb(u)`, `hstore(u)` of a whole row or a ROW(...), or a
    /// `json_build_object` whose keys are literals.
    fn keys_are_names(&self, v: &Value, scope: &Scope<'_>) -> bool {
        let Some(("FuncCall", fc)) = unwrap_node(v) else {
            return false;
        };
        if fc.get("agg_star").and_then(Value::as_bool) == Some(true)
            || fc.get("over").is_some_and(|o| !o.is_null())
            || name_list(fc.get("funcname")).len() > 2
        {
            return false;
        }
        let names = name_list(fc.get("funcname"));
        if self.rels.runs_user_code(&names.join(".")) {
            return false;
        }
        let name = names
            .last()
            .map(|n| n.to_ascii_lowercase())
            .unwrap_or_default();
        let args = arr(fc, "args");
        match name.as_str() {
            "row_to_json" | "to_json" | "to_jsonb" | "hstore" => {
                let pretty = name == "row_to_json" && args.len() == 2;
                (args.len() == 1 || pretty) && args.first().is_some_and(|a| is_row(a, scope))
            }
            "json_build_object" | "jsonb_build_object" => args
                .iter()
                .step_by(2)
                .all(|k| matches!(unwrap_node(k), Some(("AConst", _)))),
            _ => false,
        }
    }

    fn range_var(&mut self, m: &Map, scope: &Scope<'_>) -> Rel {
        let schema = str_field(m, "schemaname");
        let name = str_field(m, "relname");
        let (alias, names) = alias_of(m);
        let shown = alias.unwrap_or_else(|| name.to_owned());
        if schema.is_empty() {
            if let Some((cols, whole)) = scope.cte(name) {
                return Rel {
                    name: shown,
                    cols: rename(cols, &names),
                    whole,
                    ..Rel::default()
                };
            }
        }
        if self.locals.trust && matches!(schema, "" | "pg_temp") {
            if let Some(cols) = self.locals.tables.get(name) {
                let cols = cols.iter().map(|c| (c.clone(), Taint::FRESH)).collect();
                return Rel {
                    name: shown,
                    cols: rename(Some(cols), &names),
                    // RowDescription names the table for a whole row too.
                    whole: Taint::FRESH,
                    ..Rel::default()
                };
            }
            if let Some((query, aliases)) = self.locals.views.get(name) {
                // A view the message made: what its query reads, traced as when it
                // was made (names made since resolve at least as strictly now).
                let before = self.touched;
                let out = self.query(query, &Scope::default());
                let cols = rename(out.cols, aliases).map(|c| {
                    c.into_iter()
                        .map(|(n, t)| (n, if t.is_clean() { Taint::FRESH } else { t }))
                        .collect::<Cols>()
                });
                let whole = match &cols {
                    Some(c) => whole_of(c),
                    None => self.touched.join(before).derive(),
                };
                return Rel {
                    name: shown,
                    cols: rename(cols, &names),
                    whole,
                    ..Rel::default()
                };
            }
        }
        // A relation an earlier statement of the message made or changed is not the
        // one the catalog describes (a temporary one shadows any table, system ones
        // included): pgmoat cannot tell what it holds.
        let shadowed = !self.ddl_target
            && !matches!(schema, "pg_catalog" | "information_schema")
            && (self.locals.made.contains(name)
                || (self.locals.code_ran && matches!(schema, "" | "pg_temp")));
        if shadowed {
            self.unknown_relation = true;
            self.note(Taint::UNKNOWN);
            return Rel {
                name: shown,
                whole: Taint::UNKNOWN,
                ..Rel::default()
            };
        }
        let schema = (!schema.is_empty()).then_some(schema);
        match self.rels.relation(schema, name) {
            Relation::Known(cols) => {
                let whole = whole_of(&cols);
                Rel {
                    name: shown,
                    cols: rename(Some(cols), &names),
                    whole,
                    ..Rel::default()
                }
            }
            Relation::System => Rel {
                name: shown,
                cols: None,
                whole: Taint::CLEAN,
                ..Rel::default()
            },
            r @ (Relation::Sensitive | Relation::Unknown) => {
                // Fail closed: anything read from it could be anything.
                if matches!(r, Relation::Unknown) {
                    self.unknown_relation = true;
                }
                self.note(Taint::UNKNOWN);
                Rel {
                    name: shown,
                    cols: None,
                    whole: Taint::UNKNOWN,
                    ..Rel::default()
                }
            }
        }
    }

    /// INSERT / UPDATE / DELETE / MERGE: what they write, and what RETURNING yields.
    fn dml(&mut self, ty: &str, m: &Map, parent: &Scope<'_>) -> Option<Cols> {
        let mut scope = Scope {
            parent: Some(parent),
            ..Scope::default()
        };
        self.with(m, &mut scope);
        let mut target = Taint::CLEAN;
        if let Some(r) = m.get("relation").and_then(Value::as_object) {
            let local = self.locals.trust
                && matches!(str_field(r, "schemaname"), "" | "pg_temp")
                && self.locals.tables.contains_key(str_field(r, "relname"));
            // Writing any other table may fire its triggers and rules.
            self.runs_code |= !local;
            self.changes_path |= str_field(r, "relname") == "pg_settings";
            let rel = self.range_var(r, &scope);
            target = rel.whole;
            scope.rels.push(rel);
        }
        match ty {
            "InsertStmt" => {
                // `DEFAULT VALUES` has no source (null in the tree): the row is the
                // table's defaults, which read nothing the statement names.
                let mut inserted = Taint::CLEAN;
                if let Some(src) = m.get("select_stmt").filter(|v| !v.is_null()) {
                    let before = self.touched;
                    let out = self.query(src, &scope);
                    let t = join_all(&out.cols, self.touched).join(before);
                    let t = if out.cols.is_some() {
                        join_all(&out.cols, Taint::CLEAN)
                    } else {
                        t
                    };
                    self.launder(t, "INSERT of masked values");
                    inserted = t;
                }
                if let Some(oc) = m.get("on_conflict_clause").and_then(Value::as_object) {
                    // `EXCLUDED.c` is the row proposed for insertion (named only so).
                    scope.rels.push(Rel {
                        name: "excluded".to_owned(),
                        whole: inserted,
                        cols_hidden: true,
                        ..Rel::default()
                    });
                    let t = self.generic(oc, &scope);
                    self.launder(t, "INSERT ... ON CONFLICT DO UPDATE with masked values");
                }
            }
            "UpdateStmt" => {
                for f in arr(m, "from_clause") {
                    self.range_item(f, &mut scope);
                }
                let mut t = Taint::CLEAN;
                for target in arr(m, "target_list") {
                    t = t.join(self.expr(target, &scope));
                }
                self.launder(t, "UPDATE ... SET from masked values");
                if let Some(w) = m.get("where_clause") {
                    self.expr(w, &scope);
                }
            }
            "DeleteStmt" => {
                for f in arr(m, "using_clause") {
                    self.range_item(f, &mut scope);
                }
                if let Some(w) = m.get("where_clause") {
                    self.expr(w, &scope);
                }
            }
            _ => {
                // MERGE: the source joins the target; any value its actions write.
                if let Some(src) = m.get("source_relation") {
                    self.range_item(src, &mut scope);
                }
                if let Some(j) = m.get("join_condition") {
                    self.expr(j, &scope);
                }
                let mut t = Taint::CLEAN;
                for w in arr(m, "merge_when_clauses") {
                    t = t.join(self.expr(w, &scope));
                }
                self.launder(t, "MERGE of masked values");
            }
        }
        // Writing a table with masked columns touches them: the server's errors
        // quote its rows (`Failing row contains (...)`, a duplicate key's value).
        self.note(target);
        let returning = m
            .get("returning_clause")
            .and_then(Value::as_object)
            .map(|r| arr(r, "exprs"))
            .unwrap_or(&[]);
        if returning.is_empty() {
            return Some(Vec::new());
        }
        self.targets(returning, &scope)
    }

    fn copy(&mut self, m: &Map, scope: &Scope<'_>, l: &mut Lineage) {
        if m.get("is_from").and_then(Value::as_bool).unwrap_or(false) {
            return;
        }
        let t = if let Some(q) = m.get("query") {
            let before = self.touched;
            let out = self.query(q, scope);
            join_all(&out.cols, self.touched.join(before))
        } else if let Some(r) = m.get("relation").and_then(Value::as_object) {
            let rel = self.range_var(r, scope);
            let wanted = name_list(Some(&Value::Array(arr(m, "attlist").to_vec())));
            match &rel.cols {
                Some(c) if !wanted.is_empty() => c
                    .iter()
                    .filter(|(n, _)| wanted.contains(n))
                    .fold(Taint::CLEAN, |a, (_, t)| a.join(*t)),
                Some(c) => c.iter().fold(Taint::CLEAN, |a, (_, t)| a.join(*t)),
                None => rel.whole,
            }
        } else {
            Taint::UNKNOWN
        };
        let t = self.note(t);
        let to_file = !str_field(m, "filename").is_empty()
            || m.get("is_program")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        if to_file {
            self.launder(t, "COPY of masked columns to a file or program");
        } else {
            let binary = arr(m, "options").iter().any(|o| {
                matches!(unwrap_node(o), Some(("DefElem", d))
                if str_field(d, "defname") == "format"
                    && d.get("arg").and_then(unwrap_node).is_some_and(|(_, s)| {
                        str_field(s, "sval").eq_ignore_ascii_case("binary")
                    }))
            });
            l.copy_out = Some(binary);
        }
    }

    /// Any expression: its taint, noting every masked reference on the way.
    fn expr(&mut self, v: &Value, scope: &Scope<'_>) -> Taint {
        match v {
            Value::Array(items) => items
                .iter()
                .fold(Taint::CLEAN, |acc, i| acc.join(self.expr(i, scope))),
            Value::Object(obj) => match unwrap_node(v) {
                Some((ty, m)) => self.node(ty, m, scope),
                None => self.generic(obj, scope).derive(),
            },
            _ => Taint::CLEAN,
        }
    }

    fn node(&mut self, ty: &str, m: &Map, scope: &Scope<'_>) -> Taint {
        match ty {
            "ColumnRef" => {
                let fields = name_list(m.get("fields"));
                let t = self.column(&fields, scope);
                self.note(t)
            }
            "TypeCast" => {
                let inner = m.get("arg").map_or(Taint::CLEAN, |a| self.expr(a, scope));
                let tn = m.get("type_name").and_then(Value::as_object);
                let to = tn
                    .map(|tn| name_list(tn.get("names")))
                    .and_then(|n| n.last().cloned())
                    .unwrap_or_default();
                // A length (`::char(5)`) cuts the value: no longer the column itself.
                let sized = tn.is_some_and(|tn| !arr(tn, "typmods").is_empty());
                // A user-defined cast runs a function, which may read anything.
                let via = self.note(self.rels.cast(&to));
                self.runs_code |= self.rels.cast_runs_code(&to);
                if !sized
                    && via.is_clean()
                    && TEXT_TYPES.contains(&to.to_ascii_lowercase().as_str())
                {
                    inner
                } else {
                    inner.join(via).derive()
                }
            }
            "ResTarget" => m.get("val").map_or(Taint::CLEAN, |v| self.expr(v, scope)),
            "SubLink" => {
                if let Some(t) = m.get("testexpr") {
                    self.expr(t, scope);
                }
                let before = self.touched;
                self.touched = Taint::CLEAN;
                let out = match m.get("subselect") {
                    Some(q) => self.query(q, scope),
                    None => Out { cols: None },
                };
                let inside = self.touched;
                self.touched = before.join(inside);
                let scalar = m.get("sub_link_type").and_then(Value::as_i64) == Some(5);
                match &out.cols {
                    // `(SELECT ssn FROM users LIMIT 1)` is the column's value itself.
                    Some(c) if scalar && c.len() == 1 => c[0].1,
                    Some(c) => join_all(&Some(c.clone()), inside).derive(),
                    None => inside.derive(),
                }
            }
            "SelectStmt" => {
                let out = self.select(m, scope);
                join_all(&out.cols, self.touched).derive()
            }
            "FuncCall" => {
                let names = name_list(m.get("funcname"));
                let name = names.join(".");
                let bare = names.last().map(|n| n.to_ascii_lowercase());
                if bare.as_deref().is_some_and(|b| KEY_FUNCTIONS.contains(&b))
                    && names.len() <= 2
                    && !self.rels.runs_user_code(&name)
                    && matches!(arr(m, "args"), [a] if self.keys_are_names(a, scope))
                {
                    // `jsonb_object_keys(to_jsonb(u))`: u's column names.
                    self.generic(m, scope);
                    return Taint::CLEAN;
                }
                // `pg_temp.f()` of a function the message made without parameters is
                // that function: no overload or other schema can be called instead.
                let nullary = names.len() == 2
                    && arr(m, "args").is_empty()
                    && m.get("agg_star").and_then(Value::as_bool) != Some(true)
                    && self.locals.nullary.contains(&name.to_ascii_lowercase());
                let f = match self.locals.function(&name) {
                    Some(true)
                        if self.locals.trust
                            && (nullary
                                || self
                                    .rels
                                    .function_named(bare.as_deref().unwrap_or_default())
                                    .is_none_or(|t| t.is_clean())) =>
                    {
                        Taint::CLEAN
                    }
                    Some(_) => {
                        self.runs_code = true;
                        self.makes_relations = true;
                        Taint::UNKNOWN
                    }
                    None => {
                        let f = self.rels.function(&name);
                        self.runs_code |= !f.is_clean() || self.rels.runs_user_code(&name);
                        self.makes_relations |= self.rels.may_make_relations(&name);
                        f
                    }
                };
                self.forgets_cursors |= self.rels.runs_user_code(&name);
                let args = self.generic(m, scope);
                self.changes_path |= bare.as_deref() == Some("set_config");
                if bare.is_some_and(|b| SINK_FUNCTIONS.contains(&b.as_str())) {
                    self.launder(args, "passing masked values to pg_notify or set_config");
                }
                self.note(f).join(args).derive()
            }
            "AExpr" => {
                // A user-defined operator runs its function.
                let op = name_list(m.get("name")).join(".");
                let f = self.rels.operator(&op);
                self.runs_code |= self.rels.operator_runs_code(&op);
                let args = self.generic(m, scope);
                self.note(f).join(args).derive()
            }
            "AIndirection" => {
                // `(s).a`, s a row in scope: that row's column a, as `s.a` is.
                let ind = arr(m, "indirection");
                if let (Some(arg), [field]) = (m.get("arg"), ind) {
                    if let (Some(("ColumnRef", c)), Some(("String", f))) =
                        (unwrap_node(arg), unwrap_node(field))
                    {
                        let row = name_list(c.get("fields"));
                        if row.len() == 1 && is_row(arg, scope) {
                            let path = [row[0].clone(), str_field(f, "sval").to_owned()];
                            let t = self.column(&path, scope);
                            return self.note(t);
                        }
                    }
                }
                self.generic(m, scope).derive()
            }
            "AConst" | "ParamRef" | "SqlvalueFunction" => Taint::CLEAN,
            _ => self.generic(m, scope).derive(),
        }
    }

    /// Every value inside a message, joined.
    fn generic(&mut self, m: &Map, scope: &Scope<'_>) -> Taint {
        let mut t = Taint::CLEAN;
        for (k, v) in m {
            if matches!(v, Value::Object(_) | Value::Array(_)) && k != "type_name" {
                t = t.join(self.expr(v, scope));
            }
        }
        t
    }
}

/// Set-returning functions that split a JSON object or hstore into (key, value) rows.
const KEY_VALUE_FUNCTIONS: &[&str] = &[
    "json_each",
    "json_each_text",
    "jsonb_each",
    "jsonb_each_text",
    "each",
];

/// Functions that return the keys of a JSON object or hstore.
const KEY_FUNCTIONS: &[&str] = &["json_object_keys", "jsonb_object_keys", "skeys", "akeys"];

fn coldef_names(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|c| match unwrap_node(c) {
            Some(("ColumnDef", d)) => Some(str_field(d, "colname").to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
