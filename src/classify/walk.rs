//! The tree walk. libpg_query's protobuf tree is turned into JSON (its types derive
//! Serialize) and walked generically, so every node kind is visited wherever it sits:
//! nothing depends on a hand-written list of which fields may hold sub-statements.
//! Node-wrapped children look like `{"node": {"SelectStmt": {...}}}`; messages
//! embedded directly (a `relation` RangeVar, a CALL's FuncCall) are recognised by
//! their fields.

use std::collections::BTreeSet;

use super::tree::{Map, Value};

use super::node::{bool_field as b, int_field as i, node, nonempty, str_field as s};
pub use super::node::{list_items, name_list};
use super::node_kind::NodeKind;

use super::facts::{CopyEnd, Facts, Kind};
use super::plpgsql::Code;

mod bodies;
mod ddl;
mod names;
mod reach;
mod settings;
mod sql_json;
pub use settings::{computed_setting, rereads_sql_setting};
pub(super) mod strings;

use super::tautology_schema::{both, judge_write, merge_condition, upsert_unbounded};
use ddl::{alter_drops, kind_of, rewrites_every_row, two_phase};

/// Walk state for one statement.
pub struct Walker<'a> {
    pub facts: Facts,
    /// RangeVars seen: (schema, name, written?).
    relations: Vec<(Option<String>, String, bool)>,
    /// Aliases to table names, for resolving `u.ssn`.
    aliases: Vec<(String, String)>,
    ctes: BTreeSet<String>,
    raw_columns: Vec<Vec<String>>,
    /// Bodies of DO blocks and functions, parsed by the caller (which owns libpg_query).
    pub bodies: Vec<Body>,
    text: &'a str,
    /// Inside a `COPY ... FROM`: its relation is written.
    copy_from_pending: bool,
    /// The facts depend on a literal's value (a tautology test, set_config's name, code
    /// held in a string): not to be reused for the same shape with other literals.
    pub literal_sensitive: bool,
    /// The CTEs of the statements around the node being visited, outermost first: a
    /// write nested in a CTE can read its siblings and its enclosing statements' CTEs
    /// (`WITH c AS (SELECT id FROM t), d AS (DELETE FROM t WHERE id IN (SELECT id FROM
    /// c))`), and its WHERE is judged with them.
    enclosing_ctes: Vec<Map>,
}

/// Code held as a string that must be parsed to be judged.
#[derive(Debug, Clone)]
pub enum Body {
    /// A DO block or `CREATE FUNCTION ... LANGUAGE plpgsql`.
    Plpgsql(Code),
    /// A `LANGUAGE sql` function body.
    Sql(String),
}

fn list_items_of(v: Option<&Value>) -> Option<&Value> {
    v.and_then(list_items)
}

/// The `DefElem`s of an option list, as (defname, body).
fn def_elems(list: Option<&Value>) -> impl Iterator<Item = (&str, &Map)> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| match node(o) {
            Some((NodeKind::DefElem, d)) => Some((s(d, "defname"), d)),
            _ => None,
        })
}

/// A `DefElem`'s string argument, lower-cased (`LANGUAGE plpgsql`).
fn string_arg(d: &Map) -> Option<String> {
    match d.get("arg").and_then(node) {
        Some((NodeKind::String, st)) => Some(s(st, "sval").to_ascii_lowercase()),
        _ => None,
    }
}

/// The target of a MERGE: its schema, name and the qualifier its columns go by.
struct Target {
    schema: String,
    name: String,
    qual: String,
}

impl Target {
    fn of(rel: &Map) -> Target {
        let name = s(rel, "relname").to_owned();
        let alias = rel
            .get("alias")
            .and_then(Value::as_object)
            .map(|a| s(a, "aliasname").to_owned())
            .filter(|a| !a.is_empty());
        Target {
            schema: s(rel, "schemaname").to_owned(),
            qual: alias.unwrap_or_else(|| name.clone()),
            name,
        }
    }

    /// Whether a column of the target may appear in the expression (an unqualified
    /// column may be the target's).
    fn mentioned(&self, v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                if let Some((NodeKind::ColumnRef, c)) = node(v) {
                    let f = name_list(c.get("fields"));
                    let hit = match f.as_slice() {
                        [_] => true,
                        [q, _] => *q == self.qual,
                        [.., t, _] => *t == self.name,
                        [] => false,
                    };
                    if hit {
                        return true;
                    }
                }
                m.iter().any(|(_, child)| self.mentioned(child))
            }
            Value::Array(items) => items.iter().any(|i| self.mentioned(i)),
            _ => false,
        }
    }
}

/// Whether any column reference appears in the expression.
fn any_column(v: &Value) -> bool {
    match v {
        Value::Object(m) => {
            matches!(node(v), Some((NodeKind::ColumnRef, _)))
                || m.iter().any(|(_, child)| any_column(child))
        }
        Value::Array(items) => items.iter().any(any_column),
        _ => false,
    }
}

/// A MERGE source that is the target table itself (`USING t AS s`, or a plain
/// `(SELECT cols FROM t)` that keeps the column names), joined only on equalities of
/// the same column on both sides: every target row matches (itself).
fn joins_itself(target: &Target, source: &Value, on: &Value) -> bool {
    let same_table = |r: &Map| {
        s(r, "relname") == target.name
            && (s(r, "schemaname") == target.schema
                || s(r, "schemaname").is_empty()
                || target.schema.is_empty())
    };
    let alias_of = |m: &Map| {
        m.get("alias")
            .and_then(Value::as_object)
            .map(|a| s(a, "aliasname").to_owned())
            .filter(|a| !a.is_empty())
    };
    let (qual, keeps): (String, Option<Vec<String>>) = match node(source) {
        Some((NodeKind::RangeVar, r)) if same_table(r) => (
            alias_of(r).unwrap_or_else(|| s(r, "relname").to_owned()),
            None,
        ),
        Some((NodeKind::RangeSubselect, sub)) => {
            let Some(q) = alias_of(sub) else { return false };
            let Some((NodeKind::SelectStmt, sel)) = sub.get("subquery").and_then(node) else {
                return false;
            };
            let narrowed = [
                "where_clause",
                "having_clause",
                "limit_count",
                "limit_offset",
                "with_clause",
            ]
            .iter()
            .any(|k| sel.get(k).is_some_and(|v| !v.is_null()))
                || nonempty(sel, "group_clause")
                || nonempty(sel, "distinct_clause")
                || nonempty(sel, "values_lists")
                || i(sel, "op") > 1;
            let from = sel.get("from_clause").and_then(Value::as_array);
            let from_self = matches!(from.map(Vec::as_slice),
                Some([f]) if matches!(node(f), Some((NodeKind::RangeVar, r)) if same_table(r)));
            if narrowed || !from_self {
                return false;
            }
            // Output names that are the table's own column of that name (or `*`).
            let mut kept = Vec::new();
            for t in sel
                .get("target_list")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some((NodeKind::ResTarget, rt)) = node(t) else {
                    return false;
                };
                let Some((NodeKind::ColumnRef, c)) = rt.get("val").and_then(node) else {
                    return false;
                };
                let Some(col) = name_list(c.get("fields")).pop() else {
                    return false;
                };
                let out = match s(rt, "name") {
                    "" => col.clone(),
                    n => n.to_owned(),
                };
                if col == "*" {
                    kept.push("*".to_owned());
                } else if out == col {
                    kept.push(col);
                }
            }
            (q, Some(kept))
        }
        _ => return false,
    };
    let kept = |c: &str| {
        keeps
            .as_ref()
            .is_none_or(|k| k.iter().any(|x| x == c || x == "*"))
    };
    // Every conjunct: `t.c = s.c` (either way round), or IS NOT DISTINCT FROM.
    let mut conjuncts = vec![on];
    let mut equalities = 0;
    while let Some(c) = conjuncts.pop() {
        match node(c) {
            Some((NodeKind::BoolExpr, b))
                if b.get("boolop").and_then(Value::as_i64)
                    == Some(pg_query::protobuf::BoolExprType::AndExpr as i64) =>
            {
                conjuncts.extend(
                    b.get("args")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
            }
            Some((NodeKind::AExpr, a)) => {
                use pg_query::protobuf::AExprKind;
                let kind = i(a, "kind");
                let eq = name_list(a.get("name")).last().map(String::as_str) == Some("=")
                    && (kind == AExprKind::AexprOp as i64
                        || kind == AExprKind::AexprNotDistinct as i64);
                let col = |v: Option<&Value>| match v.and_then(node) {
                    Some((NodeKind::ColumnRef, c)) => match name_list(c.get("fields")).as_slice() {
                        [q, n] => Some((q.clone(), n.clone())),
                        _ => None,
                    },
                    _ => None,
                };
                let (Some(l), Some(r)) = (col(a.get("lexpr")), col(a.get("rexpr"))) else {
                    return false;
                };
                let pair =
                    (l.0 == target.qual && r.0 == qual) || (r.0 == target.qual && l.0 == qual);
                if !eq || !pair || l.1 != r.1 || qual == target.qual || !kept(&l.1) {
                    return false;
                }
                equalities += 1;
            }
            _ => return false,
        }
    }
    equalities > 0
}

/// Relations named in these (parent, field) places are written.
fn written_place(parent: NodeKind, field: &str) -> bool {
    matches!(
        (parent, field),
        (NodeKind::InsertStmt, "relation")
            | (NodeKind::UpdateStmt, "relation")
            | (NodeKind::DeleteStmt, "relation")
            | (NodeKind::MergeStmt, "relation")
            | (NodeKind::TruncateStmt, "relations")
            | (NodeKind::CreateStmt, "relation")
            | (NodeKind::AlterTableStmt, "relation")
            | (NodeKind::IndexStmt, "relation")
            | (NodeKind::IntoClause, "rel")
            | (NodeKind::RefreshMatViewStmt, "relation")
            | (NodeKind::ClusterStmt, "relation")
            | (NodeKind::ViewStmt, "view")
            | (NodeKind::RuleStmt, "relation")
            | (NodeKind::CreateTrigStmt, "relation")
            | (NodeKind::CreatePolicyStmt, "table")
            | (NodeKind::AlterPolicyStmt, "table")
            | (NodeKind::RenameStmt, "relation")
            | (NodeKind::AlterObjectSchemaStmt, "relation")
            // ATTACH / DETACH PARTITION's partition, INHERIT / NO INHERIT's parent.
            | (NodeKind::PartitionCmd, "name")
            | (NodeKind::AlterTableCmd, "def")
    )
}

impl<'a> Walker<'a> {
    pub fn new(text: &'a str) -> Walker<'a> {
        Walker {
            facts: Facts::default(),
            relations: Vec::new(),
            aliases: Vec::new(),
            ctes: BTreeSet::new(),
            raw_columns: Vec::new(),
            bodies: Vec::new(),
            text,
            copy_from_pending: false,
            literal_sensitive: false,
            enclosing_ctes: Vec::new(),
        }
    }

    /// Walk any JSON value; `parent` is the nearest enclosing node type and `field` the
    /// field of it we are in.
    pub fn walk(&mut self, v: &Value, parent: NodeKind, field: &str) {
        match v {
            Value::Object(map) => {
                if let Some((ty, body)) = node(v) {
                    self.visit(ty, body, parent, field);
                } else if map.contains_key("relname") && map.contains_key("inh") {
                    self.visit(NodeKind::RangeVar, map, parent, field);
                } else if map.contains_key("funcname") && map.contains_key("agg_star") {
                    self.visit(NodeKind::FuncCall, map, parent, field);
                } else if map.contains_key("objname") && map.contains_key("objargs") {
                    self.visit(NodeKind::ObjectWithArgs, map, parent, field);
                } else if map.contains_key("ctes") && map.contains_key("recursive") {
                    self.visit(NodeKind::WithClause, map, parent, field);
                } else if map.contains_key("rel") && map.contains_key("on_commit") {
                    self.visit(NodeKind::IntoClause, map, parent, field);
                } else if map.contains_key("kind")
                    && map.contains_key("is_local")
                    && map.contains_key("args")
                {
                    self.visit(NodeKind::VariableSetStmt, map, parent, field);
                } else if map.contains_key("is_grant") && map.contains_key("privileges") {
                    // ALTER DEFAULT PRIVILEGES' GRANT or REVOKE.
                    self.visit(NodeKind::GrantStmt, map, parent, field);
                } else {
                    for (k, child) in map {
                        self.walk(child, parent, k);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, parent, field);
                }
            }
            _ => {}
        }
    }

    fn visit(&mut self, ty: NodeKind, body: &Map, parent: NodeKind, field: &str) {
        if let Some(kind) = kind_of(ty, body, parent) {
            self.facts.kinds.insert(kind);
        }
        if alter_drops(ty, body) {
            self.facts.kinds.insert(Kind::Drop);
        }
        self.facts.defines_code |= names::defines_code(ty);
        if rewrites_every_row(ty, body) {
            self.facts.kinds.insert(Kind::Update);
            self.facts.where_.missing = true;
        }
        self.facts.two_phase |= two_phase(ty, body);
        match ty {
            NodeKind::RangeVar => {
                let schema = Some(s(body, "schemaname"))
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned);
                let name = s(body, "relname").to_owned();
                let written = written_place(parent, field)
                    || (parent == NodeKind::CopyStmt && self.copy_from_pending);
                self.facts
                    .created
                    .extend(ddl::created(parent, field, body, schema.as_deref()));
                if let Some(alias) = body.get("alias").and_then(Value::as_object) {
                    let a = s(alias, "aliasname");
                    if !a.is_empty() {
                        self.aliases.push((a.to_owned(), name.clone()));
                    }
                    // `people AS t(a, b, c)`: its columns under other names.
                    if super::node::nonempty(alias, "colnames") {
                        self.raw_columns.push(vec![name.clone(), "*".into()]);
                    }
                }
                // UPDATE pg_settings is judged at the UpdateStmt, which sees the WHERE
                // that names the setting; an INSERT or DELETE of it changes nothing the
                // server allows, but what it would change cannot be named.
                if name.eq_ignore_ascii_case("pg_settings")
                    && field == "relation"
                    && matches!(parent, NodeKind::InsertStmt | NodeKind::DeleteStmt)
                {
                    // UPDATE pg_settings SET setting = ... changes a setting the rules
                    // cannot name statically.
                    self.facts.settings.insert("*".into());
                    self.facts.kinds.insert(Kind::SetRole);
                    self.rereads("settings through pg_settings");
                }
                if written && reach::catalog_relation(schema.as_deref(), &name, parent) {
                    self.catalog_write();
                }
                self.relations.push((schema, name, written));
            }
            NodeKind::FuncCall => {
                let name = name_list(body.get("funcname"));
                let bare = name
                    .last()
                    .map(|n| n.to_ascii_lowercase())
                    .unwrap_or_default();
                if bare == "set_config" {
                    self.setting_from_set_config(body);
                }
                if strings::runs_sql_in_string(&bare) && self.facts.unanalysable.is_none() {
                    self.facts.unanalysable = Some(format!(
                        "{bare}() runs SQL or reads relations named in a string"
                    ));
                }
                self.add_function(&name);
            }
            NodeKind::JsonFuncExpr
            | NodeKind::JsonScalarExpr
            | NodeKind::JsonSerializeExpr
            | NodeKind::JsonParseExpr
            | NodeKind::JsonTable
            | NodeKind::MergeSupportFunc
            | NodeKind::JsonArrayConstructor
            | NodeKind::JsonArrayQueryConstructor
            | NodeKind::JsonArrayAgg
            | NodeKind::JsonObjectAgg
            | NodeKind::JsonObjectConstructor => {
                // SQL/JSON syntax of Postgres 16 and 17 (pgmoat parses with 17's
                // grammar): to an older server the same text calls a function of that
                // name, maybe a user's, whose body must be judged (review s37 W5, V5).
                // Counted as a call of the bare name either way.
                if let Some(f) = sql_json::function_name(ty, body) {
                    self.add_function(&[f.to_owned()]);
                }
            }
            // Dropping, commenting on or granting a function does not call it.
            NodeKind::ObjectWithArgs
                if !matches!(
                    parent,
                    NodeKind::DropStmt | NodeKind::CommentStmt | NodeKind::GrantStmt
                ) =>
            {
                self.add_function(&name_list(body.get("objname")));
            }
            NodeKind::CreateTrigStmt | NodeKind::CreateEventTrigStmt => {
                self.add_function(&name_list(body.get("funcname")));
            }
            NodeKind::DefElem => {
                // CREATE OPERATOR ... (FUNCTION = f), CREATE AGGREGATE (SFUNC = f), ...
                if names::names_functions(parent) {
                    self.function_option(body);
                }
                self.fdw_file_option(body);
            }
            NodeKind::RenameStmt => {
                self.schema_rename(body);
                self.column_rename(body);
                self.relation_rename(body);
            }
            NodeKind::AlterObjectSchemaStmt => self.relation_moved(body),
            NodeKind::AlterDomainStmt => {
                self.facts.domains_changed.extend(ddl::domain_changed(body));
            }
            NodeKind::AlterTableStmt => {
                self.altered_columns(body);
                self.partitions(body);
            }
            NodeKind::CreateForeignTableStmt => {
                self.fdw_source(body.get("options"));
                self.fdw_columns(body);
            }
            NodeKind::AlterTableCmd => self.fdw_altered(body),
            NodeKind::ImportForeignSchemaStmt => self.fdw_import(body),
            NodeKind::AExpr => {
                let op = name_list(body.get("name")).join(".");
                if !op.is_empty() {
                    self.facts.operators.insert(op);
                }
            }
            // `x ### ANY (SELECT ...)` runs the operator too.
            NodeKind::SubLink => {
                let op = name_list(body.get("oper_name")).join(".");
                if !op.is_empty() {
                    self.facts.operators.insert(op);
                }
            }
            NodeKind::TypeCast => {
                if let Some(tn) = body.get("type_name").and_then(Value::as_object) {
                    if let Some(last) = name_list(tn.get("names")).last() {
                        let literal = match body.get("arg").and_then(node) {
                            Some((NodeKind::AConst, c)) => {
                                crate::classify::node::const_string(c).is_some()
                                    || c.get("isnull").and_then(Value::as_bool) == Some(true)
                            }
                            _ => false,
                        };
                        let into = if literal {
                            &mut self.facts.literal_types
                        } else {
                            &mut self.facts.type_casts
                        };
                        into.insert(last.to_ascii_lowercase());
                    }
                }
            }
            NodeKind::ColumnRef => {
                let fields = name_list(body.get("fields"));
                if !fields.is_empty() {
                    self.raw_columns.push(fields);
                }
            }
            NodeKind::CommonTableExpr => {
                let name = s(body, "ctename");
                if !name.is_empty() {
                    self.ctes.insert(name.to_owned());
                }
            }
            NodeKind::VariableSetStmt => {
                let name = s(body, "name").to_ascii_lowercase();
                let kind = i(body, "kind");
                self.parser_setting(&name, kind, body);
                if parent == NodeKind::AlterSystemStmt {
                    self.system_setting(&name, kind);
                }
                if kind == pg_query::protobuf::VariableSetKind::VarResetAll as i64 {
                    self.facts.settings.insert("all".into());
                } else if name.is_empty() {
                    self.facts.settings.insert("*".into());
                } else {
                    if name == "role" || name == "session_authorization" {
                        self.facts.kinds.insert(Kind::SetRole);
                    }
                    self.facts.settings.insert(name);
                }
            }
            NodeKind::CopyStmt => {
                if b(body, "is_program") {
                    self.facts.copy.insert(CopyEnd::Program);
                } else if !s(body, "filename").is_empty() {
                    self.facts.copy.insert(CopyEnd::File);
                } else {
                    self.facts.copy.insert(CopyEnd::Stdio);
                }
                self.copy_from_pending = b(body, "is_from");
                self.copy_columns(body);
            }
            NodeKind::UpdateStmt | NodeKind::DeleteStmt => {
                if ty == NodeKind::UpdateStmt {
                    self.pg_settings_update(body);
                }
                self.facts.where_.applies = true;
                match body.get("where_clause") {
                    None | Some(Value::Null) => self.facts.where_.missing = true,
                    Some(w) => {
                        let v = judge_write(body, w, &self.enclosing_ctes);
                        self.literal_sensitive |= v.looked;
                        if v.always {
                            self.facts.where_.tautology = true;
                        }
                        self.facts.where_.if_not_null.extend(v.if_not_null);
                    }
                }
            }
            // ON CONFLICT DO UPDATE updates: the rows its source conflicts with.
            NodeKind::InsertStmt => {
                if let Some((unbounded, looked)) = upsert_unbounded(body) {
                    self.facts.kinds.insert(Kind::Update);
                    self.facts.where_.applies = true;
                    self.facts.where_.tautology |= unbounded;
                    self.literal_sensitive |= looked;
                }
            }
            NodeKind::MergeStmt => self.merge_bounds(body),
            NodeKind::MergeWhenClause => {
                use pg_query::protobuf::CmdType;
                let cmd = i(body, "command_type");
                if cmd == CmdType::CmdUpdate as i64 {
                    self.facts.kinds.insert(Kind::Update);
                } else if cmd == CmdType::CmdDelete as i64 {
                    self.facts.kinds.insert(Kind::Delete);
                } else if cmd == CmdType::CmdInsert as i64 {
                    self.facts.kinds.insert(Kind::Insert);
                }
            }
            NodeKind::DropStmt => {
                use pg_query::protobuf::ObjectType as O;
                let t = i(body, "remove_type");
                let tableish = [
                    O::ObjectTable,
                    O::ObjectView,
                    O::ObjectMatview,
                    O::ObjectForeignTable,
                    O::ObjectSequence,
                    O::ObjectIndex,
                ];
                if tableish.iter().any(|o| *o as i64 == t) {
                    if let Some(Value::Array(objects)) = body.get("objects") {
                        for obj in objects {
                            if let Some((NodeKind::List, l)) = node(obj) {
                                let parts = name_list(l.get("items"));
                                let (schema, name) = match parts.as_slice() {
                                    [n] => (None, n.clone()),
                                    [.., sch, n] => (Some(sch.clone()), n.clone()),
                                    [] => continue,
                                };
                                self.relations.push((schema, name, true));
                            }
                        }
                    }
                }
            }
            NodeKind::ViewStmt => self.view_over_catalog(body),
            NodeKind::RuleStmt => self.select_rule(body),
            NodeKind::DoStmt => self.do_body(body),
            NodeKind::CreateFunctionStmt => self.function_body(body),
            NodeKind::PrepareStmt => {
                self.facts.prepares.insert(s(body, "name").to_owned());
            }
            NodeKind::ExecuteStmt => {
                self.facts.executes.insert(s(body, "name").to_owned());
            }
            NodeKind::SelectStmt if body.get("into_clause").is_some_and(|v| !v.is_null()) => {
                self.facts.kinds.insert(Kind::Create);
            }
            _ => {}
        }
        let before = self.enclosing_ctes.len();
        if let Some(ctes) = body
            .get("with_clause")
            .and_then(|w| w.get("ctes"))
            .and_then(Value::as_array)
        {
            for c in ctes {
                if let Some((NodeKind::CommonTableExpr, m)) = node(c) {
                    self.enclosing_ctes.push(m.clone());
                }
            }
        }
        for (k, child) in body {
            self.walk(child, ty, k);
        }
        self.enclosing_ctes.truncate(before);
        if ty == NodeKind::CopyStmt {
            self.copy_from_pending = false;
        }
    }

    /// Record a called function by its (possibly qualified) name.
    fn add_function(&mut self, name: &[String]) {
        if !name.is_empty() {
            self.facts.functions.insert(name.join("."));
        }
    }

    /// MERGE's UPDATE and DELETE actions are bounded by the join condition (WHEN
    /// MATCHED) and by their own `AND` condition; `WHEN NOT MATCHED BY SOURCE` only by
    /// the latter. An action nothing bounds is `where: missing` when no condition
    /// names a column of the target (`ON true`, `ON s.x = 1`), and `where: tautology`
    /// when the conditions are true for every target row (`ON t.id = t.id`, a join of
    /// the target with itself on its own columns: `USING t AS s ON t.id = s.id`).
    fn merge_bounds(&mut self, body: &Map) {
        use pg_query::protobuf::{CmdType, MergeMatchKind};
        let Some(rel) = body.get("relation").and_then(Value::as_object) else {
            return;
        };
        let target = Target::of(rel);
        let on = body.get("join_condition").filter(|v| !v.is_null());
        let self_join = on.is_some_and(|c| {
            body.get("source_relation")
                .is_some_and(|src| joins_itself(&target, src, c))
        });
        let mut looked = false;
        let on_names = on.is_some_and(|c| target.mentioned(c));
        let on_verdict = on.map(|c| merge_condition(body, c)).unwrap_or_default();
        looked |= on_verdict.looked;
        // `ON false` (no column at all, never true) matches nothing.
        let on_bounds = on.is_some_and(|c| {
            let taut = on_verdict.always;
            (on_names && !taut && !self_join) || (!taut && !any_column(c))
        });
        // `ON t.id IS NOT NULL`: every target row if the schema says so.
        let on_if = on_verdict.if_not_null.filter(|_| on_bounds && on_names);
        for clause in body
            .get("merge_when_clauses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some((NodeKind::MergeWhenClause, w)) = node(clause) else {
                continue;
            };
            let cmd = i(w, "command_type");
            if cmd != CmdType::CmdUpdate as i64 && cmd != CmdType::CmdDelete as i64 {
                continue;
            }
            self.facts.where_.applies = true;
            let matched = i(w, "match_kind") == MergeMatchKind::MergeWhenMatched as i64;
            let cond = w.get("condition").filter(|v| !v.is_null());
            let cond_names = cond.is_some_and(|c| target.mentioned(c));
            let cond_verdict = cond.map(|c| merge_condition(body, c)).unwrap_or_default();
            looked |= cond_verdict.looked;
            let cond_bounds = cond_names && !cond_verdict.always;
            let cond_if = cond_verdict.if_not_null.filter(|_| cond_bounds);
            if (cond_bounds && cond_if.is_none()) || (matched && on_bounds && on_if.is_none()) {
                continue;
            }
            if cond_bounds || (matched && on_bounds) {
                let on_if = on_if.clone().filter(|_| matched);
                self.facts.where_.if_not_null.extend(both(cond_if, on_if));
                continue;
            }
            if cond_names || (matched && on_names) {
                self.facts.where_.tautology = true;
            } else {
                self.facts.where_.missing = true;
            }
        }
        self.literal_sensitive |= looked;
    }

    /// Resolve relations and columns into the facts.
    pub fn finish(mut self) -> (Facts, Vec<Body>, bool) {
        if !self.bodies.is_empty() {
            self.literal_sensitive = true; // the code is a string literal
        }
        let qualify = |schema: &Option<String>, name: &str| match schema {
            Some(sch) => format!("{sch}.{name}"),
            None => format!("public.{name}"),
        };
        let mut read_tables = Vec::new();
        for (schema, name, written) in &self.relations {
            if schema.is_none() && self.ctes.contains(name) {
                continue;
            }
            if schema.is_none() {
                self.facts.unqualified_tables.insert(name.clone());
            }
            let q = qualify(schema, name);
            if *written {
                self.facts.tables_written.insert(q);
            } else {
                read_tables.push(q.clone());
                self.facts.tables_read.insert(q);
            }
        }
        let single = if self.facts.tables_read.len() + self.facts.tables_written.len() == 1 {
            self.facts
                .tables_read
                .iter()
                .chain(self.facts.tables_written.iter())
                .next()
                .cloned()
        } else {
            None
        };
        for fields in &self.raw_columns {
            // A whole-row reference (`SELECT p FROM people p`, `row_to_json(people)`):
            // every column of the relation, as `*` is.
            if let [r] = fields.as_slice() {
                if let Some(table) = self.whole_row(r) {
                    self.facts.columns.insert(format!("{table}.*"));
                }
            }
            let col = match fields.as_slice() {
                [c] => match &single {
                    Some(t) => format!("{}.{c}", t.rsplit('.').next().unwrap_or(t)),
                    None => format!("?.{c}"),
                },
                [.., t, c] => {
                    let table = self
                        .aliases
                        .iter()
                        .find(|(a, _)| a == t)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_else(|| t.clone());
                    format!("{table}.{c}")
                }
                [] => continue,
            };
            self.facts.columns.insert(col);
        }
        if self.facts.kinds.is_empty() {
            self.facts.kinds.insert(Kind::Other);
        }
        (self.facts, self.bodies, self.literal_sensitive)
    }
}
