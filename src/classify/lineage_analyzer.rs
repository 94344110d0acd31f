//! The analysis itself: one [`Analyzer`] per statement, over scopes of relations
//! ([`Scope`], [`Rel`]). Statements, queries, CTEs and SELECTs are traced here; FROM
//! items, expressions, names, writes and installed code in the other `lineage_*.rs`
//! files, which add methods to [`Analyzer`].

use super::locals::Locals;
use super::model::*;
use crate::classify::node::{list_items, name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// One statement's lineage, and what it does to the names of the statements after it.
pub(super) struct Traced {
    pub(super) lineage: Lineage,
    /// It runs code pgmoat does not follow.
    pub(super) runs: bool,
    /// That code may make relations (of any name: later statements may reach them).
    pub(super) makes_relations: bool,
    /// It may change search_path (`set_config`, `UPDATE pg_settings`).
    pub(super) changes_path: bool,
}

pub(super) fn trace(tree: &Value, rels: &dyn Relations, locals: &Locals) -> Traced {
    trace_in(tree, rels, locals, None)
}

/// [`trace`] with names outside the statement (a function body's parameters).
pub(super) fn trace_in(
    tree: &Value,
    rels: &dyn Relations,
    locals: &Locals,
    outer: Option<Rel>,
) -> Traced {
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

pub(super) type Cols = Vec<(String, Taint)>;

/// What a query yields: its columns when known, and everything it refers to.
pub(super) struct Out {
    pub(super) cols: Option<Cols>,
}

#[derive(Default)]
pub(super) struct Rel {
    /// The name it is reached by (`t.c`, `t.*`, `t`); empty for none.
    pub(super) name: String,
    pub(super) cols: Option<Cols>,
    /// A reference to the whole row, or to a column of a relation whose columns are
    /// not known.
    pub(super) whole: Taint,
    /// Its columns are not reached by unqualified names: a table inside a join, whose
    /// columns are reached through the join's (USING merges them).
    pub(super) cols_hidden: bool,
    /// Not reached by its name: a table inside a join that has an alias.
    pub(super) name_hidden: bool,
}

#[derive(Default)]
pub(super) struct Scope<'p> {
    pub(super) rels: Vec<Rel>,
    pub(super) ctes: Vec<(String, Option<Cols>, Taint)>,
    pub(super) parent: Option<&'p Scope<'p>>,
}

impl Scope<'_> {
    pub(super) fn cte(&self, name: &str) -> Option<(Option<Cols>, Taint)> {
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

pub(super) fn whole_of(cols: &[(String, Taint)]) -> Taint {
    cols.iter()
        .fold(Taint::CLEAN, |acc, (_, t)| acc.join(*t))
        .derive()
}

pub(super) fn join_all(cols: &Option<Cols>, fallback: Taint) -> Taint {
    match cols {
        Some(c) => c.iter().fold(Taint::CLEAN, |acc, (_, t)| acc.join(*t)),
        None => fallback,
    }
}

pub(super) fn str_field<'v>(m: &'v Map, k: &str) -> &'v str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn arr<'v>(m: &'v Map, k: &str) -> &'v [Value] {
    m.get(k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(super) fn alias_of(m: &Map) -> (Option<String>, Vec<String>) {
    match m.get("alias").and_then(Value::as_object) {
        Some(a) => (
            Some(str_field(a, "aliasname").to_owned()).filter(|s| !s.is_empty()),
            name_list(a.get("colnames")),
        ),
        None => (None, Vec::new()),
    }
}

pub(super) fn rename(cols: Option<Cols>, names: &[String]) -> Option<Cols> {
    let mut cols = cols?;
    for (c, n) in cols.iter_mut().zip(names) {
        c.0 = n.clone();
    }
    Some(cols)
}

pub(super) struct Analyzer<'r> {
    pub(super) rels: &'r dyn Relations,
    pub(super) locals: &'r Locals,
    pub(super) touched: Taint,
    pub(super) launders: Option<String>,
    pub(super) unknown_relation: bool,
    pub(super) forgets_cursors: bool,
    /// It runs code pgmoat does not follow (user functions, operators, casts, writes
    /// that may fire triggers): what the message made may not be what pgmoat saw.
    pub(super) runs_code: bool,
    /// The output columns of the SELECT whose ORDER BY, GROUP BY or DISTINCT ON is
    /// being read: a bare name no relation has may be one of them.
    pub(super) output_names: Option<Cols>,
    /// What the statement sees around it (a function body's parameters), as the
    /// outermost scope: its own columns come first.
    pub(super) outer: Option<Rel>,
    /// It calls code that may create or rename relations (see
    /// [`Relations::may_make_relations`]).
    pub(super) makes_relations: bool,
    /// It may change search_path (see [`Traced::changes_path`]).
    pub(super) changes_path: bool,
    /// The relation being resolved is the target of DDL (see `statement`).
    pub(super) ddl_target: bool,
}

impl<'r> Analyzer<'r> {
    pub(super) fn new(rels: &'r dyn Relations, locals: &'r Locals) -> Analyzer<'r> {
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

    pub(super) fn note(&mut self, t: Taint) -> Taint {
        self.touched = self.touched.join(t);
        t
    }

    pub(super) fn launder(&mut self, t: Taint, what: &str) {
        if !t.is_clean() && self.launders.is_none() {
            self.launders = Some(what.to_owned());
        }
    }

    /// A relation's row-level security policies run on its rows when it is read
    /// (`write`: written): what they refer to is the statement's too (its errors are
    /// withheld), and what they may keep launders it (review s36 F9).
    pub(super) fn policies_run(&mut self, schema: Option<&str>, name: &str, write: bool) {
        let runs = self.rels.policies(schema, name, write);
        self.note(runs.refers);
        self.launder(
            runs.keeps,
            "a read or write of a table whose row-level security policies run code that \
             reads masked values and keeps values (writes a table, notifies, changes a \
             setting), or code pgmoat cannot read,",
        );
    }

    /// CREATE POLICY, ALTER POLICY: its expressions run on later reads and writes of
    /// its table, over its rows. Like a trigger, a policy on a table with masked
    /// columns, or whose expressions read masked values, is refused (review s36 F9).
    fn policy(&mut self, m: &Map, top: &Scope<'_>) {
        let Some(r) = m.get("table").and_then(Value::as_object) else {
            return;
        };
        self.ddl_target = true;
        let rel = self.range_var(r, top);
        self.ddl_target = false;
        self.launder(
            rel.whole,
            "a row-level security policy on a table with masked columns",
        );
        let scope = Scope {
            rels: vec![rel],
            ..Scope::default()
        };
        for field in ["qual", "with_check"] {
            if let Some(e) = m.get(field).filter(|e| !e.is_null()) {
                let t = self.expr(e, &scope);
                self.launder(
                    t,
                    "a row-level security policy whose expressions read masked values",
                );
            }
        }
    }

    pub(super) fn statement(&mut self, v: &Value) -> Lineage {
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
            NodeKind::CreateForeignTableStmt | NodeKind::ImportForeignSchemaStmt => {
                // Its options can name any relation (postgres_fdw's table_name), read
                // under a name no mask names: fail closed for masked identities.
                self.launder(
                    Taint::UNKNOWN,
                    "a foreign table (what it reads is not traced)",
                );
            }
            NodeKind::AlterTableStmt
            | NodeKind::RenameStmt
            | NodeKind::AlterObjectSchemaStmt
            | NodeKind::RuleStmt
            | NodeKind::CreateTrigStmt => {
                if ty == NodeKind::AlterTableStmt && changes_fdw_options(m) {
                    self.launder(
                        Taint::UNKNOWN,
                        "changing a foreign table's options (what it reads is not traced)",
                    );
                }
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
                    if ty == NodeKind::AlterTableStmt {
                        // ENABLE ROW LEVEL SECURITY makes the table's policies run:
                        // judged as CREATE POLICY is (review s36 F9).
                        let schema = Some(str_field(r, "schemaname")).filter(|s| !s.is_empty());
                        let runs = self.rels.dormant_policies(schema, str_field(r, "relname"));
                        self.launder(
                            runs.refers.join(runs.keeps),
                            "enabling row-level security policies whose expressions read masked values",
                        );
                    }
                    self.installs(ty, m, Some(rel));
                }
                if ty == NodeKind::CreateTrigStmt {
                    self.installs(ty, m, None);
                }
                // ATTACH/DETACH PARTITION and [NO] INHERIT join two tables: a parent's
                // rows include its children's, read under the parent's name.
                for other in family_changed(m) {
                    self.ddl_target = true;
                    let rel = self.range_var(other, &top);
                    self.ddl_target = false;
                    self.launder(
                        rel.whole,
                        "attaching, detaching or inheriting a table with masked columns (its rows would be read under another table's name)",
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
            NodeKind::CreatePolicyStmt | NodeKind::AlterPolicyStmt => self.policy(m, &top),
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
    pub(super) fn query(&mut self, v: &Value, parent: &Scope<'_>) -> Out {
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

    pub(super) fn with(&mut self, m: &Map, scope: &mut Scope<'_>) {
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

    pub(super) fn select(&mut self, m: &Map, parent: &Scope<'_>) -> Out {
        // An outer query's output names are not this one's (a sub-select in ORDER BY
        // cannot name them).
        let outer = self.output_names.take();
        let out = self.select_body(m, parent);
        self.output_names = outer;
        out
    }

    pub(super) fn select_body(&mut self, m: &Map, parent: &Scope<'_>) -> Out {
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

/// `ALTER FOREIGN TABLE ... OPTIONS (...)`: a command that sets its generic options.
fn changes_fdw_options(m: &Map) -> bool {
    use pg_query::protobuf::AlterTableType as A;
    arr(m, "cmds").iter().any(|c| {
        matches!(node(c), Some((NodeKind::AlterTableCmd, cmd))
            if cmd.get("subtype").and_then(Value::as_i64) == Some(A::AtGenericOptions as i64))
    })
}

/// The other tables an ALTER TABLE's ATTACH/DETACH PARTITION or [NO] INHERIT names
/// (the partition, or the parent).
fn family_changed(m: &Map) -> Vec<&Map> {
    use pg_query::protobuf::AlterTableType as A;
    let mut out = Vec::new();
    for c in arr(m, "cmds") {
        let Some((NodeKind::AlterTableCmd, cmd)) = node(c) else {
            continue;
        };
        let sub = cmd.get("subtype").and_then(Value::as_i64);
        let def = cmd.get("def").and_then(node);
        let rel = match def {
            Some((NodeKind::PartitionCmd, p))
                if [
                    A::AtAttachPartition,
                    A::AtDetachPartition,
                    A::AtDetachPartitionFinalize,
                ]
                .iter()
                .any(|a| sub == Some(*a as i64)) =>
            {
                p.get("name").and_then(Value::as_object)
            }
            Some((NodeKind::RangeVar, r))
                if sub == Some(A::AtAddInherit as i64) || sub == Some(A::AtDropInherit as i64) =>
            {
                Some(r)
            }
            _ => None,
        };
        out.extend(rel);
    }
    out
}
