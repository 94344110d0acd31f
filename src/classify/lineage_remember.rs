//! What each statement of a message leaves for the ones after it ([`remember`]): the
//! relations it makes or changes, and which of them are provably clean (see
//! [`Locals`]).

use super::analyzer::*;
use super::lineage_names::UNKNOWN_NAME;
use super::locals::Locals;
use super::model::*;
use crate::classify::node::{list_items, name_list, node};
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::{Map, Value};

/// Built-in types a provably clean table's columns may have (a domain's checks or a
/// user type's functions run code).
const BUILTIN_TYPES: &[&str] = &[
    "text",
    "varchar",
    "bpchar",
    "char",
    "name",
    "int2",
    "int4",
    "int8",
    "smallint",
    "integer",
    "int",
    "bigint",
    "float4",
    "float8",
    "real",
    "numeric",
    "decimal",
    "bool",
    "boolean",
    "date",
    "time",
    "timetz",
    "timestamp",
    "timestamptz",
    "interval",
    "uuid",
    "json",
    "jsonb",
    "bytea",
    "serial",
    "serial2",
    "serial4",
    "serial8",
    "smallserial",
    "bigserial",
    "inet",
    "cidr",
    "macaddr",
    "money",
    "bit",
    "varbit",
    "oid",
];

/// What a statement leaves for the next ones of the message (see [`Locals`]).
pub(super) fn remember(tree: &Value, rels: &dyn Relations, locals: &mut Locals) {
    let Some((ty, m)) = node(tree) else {
        locals.forget();
        locals.code_ran = true;
        return;
    };
    note_made(ty, m, locals);
    match ty {
        NodeKind::CreateStmt => match clean_table(m, rels, locals) {
            Some((name, cols)) => {
                locals.tables.insert(name, cols);
            }
            None => locals.forget(),
        },
        NodeKind::CreateFunctionStmt => {
            let name = name_list(m.get("funcname")).join(".").to_ascii_lowercase();
            let clean = clean_function(m, rels, locals);
            let fresh = clean
                && name.starts_with("pg_temp.")
                && arr(m, "parameters").is_empty()
                && m.get("replace").and_then(Value::as_bool) != Some(true);
            if fresh {
                locals.nullary.insert(name.clone());
            }
            let entry = locals.functions.entry(name).or_insert(clean);
            *entry &= clean;
        }
        NodeKind::ViewStmt => match temp_view(m) {
            Some((name, view)) => {
                locals.views.insert(name, view);
            }
            None => locals.forget(),
        },
        NodeKind::SelectStmt if m.get("into_clause").is_none_or(Value::is_null) => {}
        NodeKind::SelectStmt | NodeKind::CreateTableAsStmt => {
            let made = match ty {
                NodeKind::SelectStmt => m
                    .get("into_clause")
                    .and_then(Value::as_object)
                    .and_then(|into| clean_ctas(into, tree, rels, locals)),
                _ if m.get("objtype").and_then(Value::as_i64) == Some(OBJECT_TABLE)
                    && m.get("if_not_exists").and_then(Value::as_bool) != Some(true) =>
                {
                    match (m.get("into").and_then(Value::as_object), m.get("query")) {
                        (Some(into), Some(q)) => clean_ctas(into, q, rels, locals),
                        _ => None,
                    }
                }
                _ => None,
            };
            match made {
                Some((name, cols)) => {
                    locals.tables.insert(name, cols);
                }
                None => locals.forget(),
            }
        }
        // Writes to anything but the message's tables count as code (triggers).
        NodeKind::InsertStmt
        | NodeKind::UpdateStmt
        | NodeKind::DeleteStmt
        | NodeKind::MergeStmt
        | NodeKind::VariableShowStmt => {}
        NodeKind::VariableSetStmt => {
            let name = str_field(m, "name").to_ascii_lowercase();
            if name.is_empty() || name == "search_path" {
                // pg_temp may no longer come first.
                locals.forget();
                locals.trust = false;
            }
        }
        _ => locals.forget(),
    }
}

/// Record the relations a statement makes or changes (see [`Locals::made`]).
fn note_made(ty: NodeKind, m: &Map, locals: &mut Locals) {
    let rel_name = |v: Option<&Value>| {
        v.and_then(Value::as_object)
            .map(|r| str_field(r, "relname").to_owned())
            .filter(|n| !n.is_empty())
    };
    let into = |m: &Map| {
        m.get("into_clause")
            .and_then(Value::as_object)
            .and_then(|i| rel_name(i.get("rel")))
    };
    let names = match ty {
        NodeKind::DoStmt | NodeKind::CallStmt => {
            locals.code_ran = true;
            return;
        }
        NodeKind::SelectStmt => vec![into(m)],
        NodeKind::CreateTableAsStmt => vec![m
            .get("into")
            .and_then(Value::as_object)
            .and_then(|i| rel_name(i.get("rel")))],
        NodeKind::ViewStmt => vec![rel_name(m.get("view"))],
        NodeKind::RenameStmt => vec![
            rel_name(m.get("relation")),
            Some(str_field(m, "newname").to_owned()).filter(|n| !n.is_empty()),
        ],
        NodeKind::CreateForeignTableStmt => vec![m
            .get("base_stmt")
            .and_then(Value::as_object)
            .and_then(|b| rel_name(b.get("relation")))],
        // Anything else naming a relation it defines or changes (CREATE TABLE,
        // ALTER TABLE, CREATE RULE, ALTER ... SET SCHEMA): not a read or a write.
        // (Indexes, triggers, policies, statistics and maintenance leave what a read of
        // the relation returns where it comes from.)
        NodeKind::InsertStmt
        | NodeKind::UpdateStmt
        | NodeKind::DeleteStmt
        | NodeKind::MergeStmt
        | NodeKind::CopyStmt
        | NodeKind::LockStmt
        | NodeKind::VacuumStmt
        | NodeKind::ExplainStmt
        | NodeKind::DeclareCursorStmt
        | NodeKind::PrepareStmt
        | NodeKind::IndexStmt
        | NodeKind::CreateTrigStmt
        | NodeKind::CreatePolicyStmt
        | NodeKind::AlterPolicyStmt
        | NodeKind::ClusterStmt
        | NodeKind::ReindexStmt
        | NodeKind::RefreshMatViewStmt => vec![],
        _ => vec![rel_name(m.get("relation"))],
    };
    locals.made.extend(names.into_iter().flatten());
}

/// `ObjectType::OBJECT_TABLE`: CREATE TABLE AS (not a materialized view).
const OBJECT_TABLE: i64 = 42;

/// A temporary relation named plainly (`x` or `pg_temp.x`).
fn plain_temp(rel: &Map) -> bool {
    (str_field(rel, "relpersistence") == "t" || str_field(rel, "schemaname") == "pg_temp")
        && str_field(rel, "catalogname").is_empty()
        && matches!(str_field(rel, "schemaname"), "" | "pg_temp")
}

/// `CREATE TEMP TABLE x AS <query>` or `SELECT ... INTO TEMP x`: when every column
/// of the query is provably clean and it runs no code pgmoat does not follow, the
/// new table holds only that (its later writes are judged): its name and columns.
fn clean_ctas(
    into: &Map,
    query: &Value,
    rels: &dyn Relations,
    locals: &Locals,
) -> Option<(String, Vec<String>)> {
    let rel = into.get("rel")?.as_object()?;
    if !plain_temp(rel) || !str_field(into, "access_method").is_empty() {
        return None;
    }
    let mut a = Analyzer::new(rels, locals);
    let out = a.query(query, &Scope::default());
    let cols = rename(out.cols, &name_list(into.get("col_names")))?;
    let clean = cols.iter().all(|(n, t)| t.is_clean() && n != UNKNOWN_NAME)
        && a.touched.is_clean()
        && !a.runs_code
        && !a.unknown_relation
        && a.launders.is_none();
    clean.then(|| {
        (
            str_field(rel, "relname").to_owned(),
            cols.into_iter().map(|(n, _)| n).collect(),
        )
    })
}

/// A `CREATE TEMP VIEW` (or one in pg_temp): its name, query and column aliases.
fn temp_view(m: &Map) -> Option<(String, (Value, Vec<String>))> {
    let view = m.get("view")?.as_object()?;
    if !plain_temp(view) {
        return None;
    }
    let query = m.get("query")?.clone();
    Some((
        str_field(view, "relname").to_owned(),
        (query, name_list(m.get("aliases"))),
    ))
}

/// A `CREATE TEMP TABLE` whose rows can only come from judged writes: its name and
/// columns, or None.
fn clean_table(m: &Map, rels: &dyn Relations, locals: &Locals) -> Option<(String, Vec<String>)> {
    let rel = m.get("relation")?.as_object()?;
    let temp = str_field(rel, "relpersistence") == "t" || str_field(rel, "schemaname") == "pg_temp";
    let plain = !m
        .get("if_not_exists")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        && arr(m, "inh_relations").is_empty()
        && ["partbound", "partspec", "of_typename"]
            .iter()
            .all(|k| m.get(k).is_none_or(Value::is_null))
        && str_field(rel, "catalogname").is_empty()
        && matches!(str_field(rel, "schemaname"), "" | "pg_temp");
    if !temp || !plain {
        return None;
    }
    let mut cols = Vec::new();
    for e in arr(m, "table_elts") {
        match node(e) {
            Some((NodeKind::ColumnDef, d)) => {
                let names = d
                    .get("type_name")
                    .and_then(Value::as_object)
                    .map(|t| name_list(t.get("names")))
                    .unwrap_or_default();
                let builtin = match names.as_slice() {
                    [t] => BUILTIN_TYPES.contains(&t.as_str()),
                    [s, t] => s == "pg_catalog" && BUILTIN_TYPES.contains(&t.as_str()),
                    _ => false,
                };
                if !builtin {
                    return None;
                }
                cols.push(str_field(d, "colname").to_owned());
            }
            Some((NodeKind::Constraint, _)) => {}
            _ => return None, // LIKE other_table copies its defaults
        }
    }
    // Defaults, generated columns and checks: built-ins over the row's own values.
    // Its checks, defaults and generated columns name its own columns.
    let own = Scope {
        rels: vec![Rel {
            cols: Some(cols.iter().map(|c| (c.clone(), Taint::CLEAN)).collect()),
            ..Rel::default()
        }],
        ..Scope::default()
    };
    let mut a = Analyzer::new(rels, locals);
    let t = a.generic(m, &own);
    let clean = t.is_clean() && a.touched.is_clean() && !a.runs_code && a.launders.is_none();
    clean.then(|| (str_field(rel, "relname").to_owned(), cols))
}

/// Whether a function the message creates is provably clean: `LANGUAGE sql`, no SET
/// (its body would read names on another search_path), no parameter defaults, and a
/// body of queries (or a RETURN) that read nothing masked, write nothing and run no
/// code pgmoat does not follow.
fn clean_function(m: &Map, rels: &dyn Relations, locals: &Locals) -> bool {
    if m.get("is_procedure").and_then(Value::as_bool) == Some(true) {
        return false;
    }
    let mut language = None;
    let mut body = None;
    for o in arr(m, "options") {
        let Some((NodeKind::DefElem, d)) = node(o) else {
            return false;
        };
        match str_field(d, "defname") {
            "language" => {
                language = d
                    .get("arg")
                    .and_then(node)
                    .map(|(_, s)| str_field(s, "sval").to_ascii_lowercase())
            }
            "as" => {
                let items = d.get("arg").and_then(list_items).and_then(Value::as_array);
                // One string: the body (`AS 'obj', 'symbol'` is C).
                body = match items.map(Vec::as_slice) {
                    Some([one]) => match node(one) {
                        Some((NodeKind::String, st)) => Some(str_field(st, "sval").to_owned()),
                        _ => return false,
                    },
                    _ => return false,
                };
            }
            "volatility" | "strict" | "security" | "leakproof" | "parallel" | "cost" | "rows"
            | "support" | "window" => {}
            _ => return false, // SET, TRANSFORM, anything new
        }
    }
    if language.as_deref().is_some_and(|l| l != "sql") {
        return false;
    }
    let mut params = Vec::new();
    for p in arr(m, "parameters") {
        match node(p) {
            Some((NodeKind::FunctionParameter, fp))
                if fp.get("defexpr").is_none_or(Value::is_null) =>
            {
                params.push((str_field(fp, "name").to_owned(), Taint::CLEAN));
            }
            _ => return false,
        }
    }
    // The body names its parameters (`a`, or `f.a`); what they hold is judged where
    // the function is called. Its own columns come first, as in the server.
    let fname = name_list(m.get("funcname")).pop().unwrap_or_default();
    let params = || Rel {
        name: fname.clone(),
        cols: Some(params.clone()),
        ..Rel::default()
    };
    let clean = |l: &Lineage, runs: bool| {
        !runs
            && l.launders.is_none()
            && !l.unknown_relation
            && l.touched.is_clean()
            && l.outputs
                .as_ref()
                .is_some_and(|o| o.iter().all(Taint::is_clean))
    };
    // A `BEGIN ATOMIC` body: a list holding the list of its statements.
    fn atomic(b: &Map) -> Vec<&Value> {
        arr(b, "items")
            .iter()
            .flat_map(|i| match node(i) {
                Some((NodeKind::List, l)) => arr(l, "items").iter().collect(),
                _ => vec![i],
            })
            .collect()
    }
    let all_clean = |stmts: &[&Value]| {
        !stmts.is_empty()
            && stmts.iter().all(|tree| {
                let select = matches!(node(tree), Some((NodeKind::SelectStmt, s))
                    if s.get("into_clause").is_none_or(Value::is_null));
                let t = trace_in(tree, rels, locals, Some(params()));
                select && clean(&t.lineage, t.runs)
            })
    };
    match (m.get("sql_body").and_then(node), body) {
        (Some((NodeKind::List, b)), _) => all_clean(&atomic(b)),
        (Some((NodeKind::ReturnStmt, r)), _) => {
            let mut a = Analyzer::new(rels, locals);
            let scope = Scope {
                rels: vec![params()],
                ..Scope::default()
            };
            let t = r
                .get("returnval")
                .map_or(Taint::CLEAN, |v| a.expr(v, &scope));
            t.is_clean() && a.touched.is_clean() && !a.runs_code && a.launders.is_none()
        }
        (Some(_), _) => false,
        (None, Some(code)) => {
            let Ok(parsed) = crate::classify::parse::parse(&code) else {
                return false;
            };
            all_clean(&parsed.trees().collect::<Vec<_>>())
        }
        (None, None) => false,
    }
}
