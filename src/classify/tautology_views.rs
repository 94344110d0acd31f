//! Which columns of a simple view are plain columns of its one table: writing the view
//! writes them, so `DELETE FROM v WHERE id IS NOT NULL` is unbounded when the table's
//! id is NOT NULL (views themselves have no NOT NULL columns in the catalog).

use super::node::node;
use super::node_kind::NodeKind;
use super::tree::{self, Value};

/// A view column and the table column it is: (view column, table schema, empty when
/// the definition leaves it out, table, table column).
pub type ViewColumn = (String, String, String, String);

/// The columns of a view over one table (`SELECT a, b AS c FROM t [WHERE ...]`) that
/// are plain columns of it. Empty for any other definition (joins, aggregates, set
/// operations, expressions: not simply writable, or not one column of the table).
pub fn view_columns(definition: &str) -> Vec<ViewColumn> {
    let Ok(parsed) = pg_query::parse(definition, pg_query::ParserOptions::DEFAULT) else {
        return Vec::new();
    };
    let [raw] = parsed.protobuf.stmts.as_slice() else {
        return Vec::new();
    };
    let Ok(tree) = tree::to_tree(&raw.stmt) else {
        return Vec::new();
    };
    columns_of(&tree).unwrap_or_default()
}

fn columns_of(tree: &Value) -> Option<Vec<ViewColumn>> {
    let (_, sel) = node(tree).filter(|(k, _)| *k == NodeKind::SelectStmt)?;
    let set = |k: &str| match sel.get(k) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    let simple = [
        "distinct_clause",
        "group_clause",
        "having_clause",
        "limit_count",
        "limit_offset",
        "with_clause",
        "values_lists",
        "larg",
    ];
    if simple.iter().any(|k| set(k)) {
        return None;
    }
    let [item] = sel.get("from_clause")?.as_array()?.as_slice() else {
        return None;
    };
    let (_, rel) = node(item).filter(|(k, _)| *k == NodeKind::RangeVar)?;
    let text =
        |m: &super::tree::Map, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let (schema, table) = (text(rel, "schemaname"), text(rel, "relname"));
    let qual = rel
        .get("alias")
        .and_then(Value::as_object)
        .map(|a| text(a, "aliasname"))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| table.clone());
    let mut out = Vec::new();
    for t in sel.get("target_list")?.as_array()? {
        let Some(rt) = super::tautology_fold::res_target(t) else {
            continue;
        };
        let Some((NodeKind::ColumnRef, c)) = rt.get("val").and_then(node) else {
            continue;
        };
        let Some((f, n)) = super::tautology_fold::column_fields(c) else {
            continue;
        };
        let col = match &f[..n] {
            [c] => *c,
            [q, c] if *q == qual => *c,
            _ => continue,
        };
        if col == "*" {
            continue;
        }
        let name = rt.get("name").and_then(Value::as_str).unwrap_or("");
        let name = if name.is_empty() { col } else { name };
        out.push((
            name.to_owned(),
            schema.clone(),
            table.clone(),
            col.to_owned(),
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::view_columns;

    #[test]
    fn simple_views_name_their_table_columns() {
        let cols = |sql: &str| {
            view_columns(sql)
                .into_iter()
                .map(|(v, s, t, c)| format!("{v}={s}.{t}.{c}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cols(" SELECT t.id, t.code AS k, lower(t.name) AS n\n   FROM t\n  WHERE t.flag;"),
            ["id=.t.id", "k=.t.code"]
        );
        assert_eq!(cols("SELECT x.id FROM s.t x"), ["id=s.t.id"]);
        assert!(cols("SELECT a.id FROM t a JOIN u ON true").is_empty());
        assert!(cols("SELECT DISTINCT id FROM t").is_empty());
        assert!(cols("SELECT id FROM t UNION SELECT id FROM u").is_empty());
        assert!(cols("not sql").is_empty());
    }
}
