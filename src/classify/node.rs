//! Readers of node-wrapped values (`{"node": {"SelectStmt": {...}}}`), by typed
//! kind (see `node_kind.rs`), for every walker of the tree.

use super::node_kind::NodeKind;
use super::tree::{Map, Value};

/// The node inside a `{"node": {"Type": {...}}}` wrapper, by kind.
pub fn node(v: &Value) -> Option<(NodeKind, &Map)> {
    let inner = v.as_object()?.get("node")?.as_object()?;
    let (_, body) = inner.iter().next()?;
    let body = body.as_object()?;
    Some((body.kind(), body))
}

/// The strings of a list of `String` nodes (names like `pg_catalog.pg_read_file`).
pub fn name_list(v: Option<&Value>) -> Vec<String> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|n| match node(n) {
            Some((NodeKind::String, m)) => Some(
                m.get("sval")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            ),
            Some((NodeKind::AStar, _)) => Some("*".to_owned()),
            _ => None,
        })
        .collect()
}

/// The items of a `List` node.
pub fn list_items(v: &Value) -> Option<&Value> {
    match node(v)? {
        (NodeKind::List, l) => l.get("items"),
        _ => None,
    }
}

/// The text of an `AConst` string literal (`'off'`), or None for another constant.
pub fn const_string(aconst: &Map) -> Option<&str> {
    // serde names the value's variant `Sval`, as pg_query's enum does: that the variant
    // is there (and holds a `String` node) is checked at compile time.
    const _SVAL: fn(pg_query::protobuf::String) -> pg_query::protobuf::a_const::Val =
        pg_query::protobuf::a_const::Val::Sval;
    aconst.get("val")?.get("Sval")?.get("sval")?.as_str()
}

/// A field's string (empty when absent or not a string: protobuf's default).
pub fn str_field<'v>(map: &'v Map, key: &str) -> &'v str {
    map.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A field's flag (false when absent: protobuf's default).
pub fn bool_field(map: &Map, key: &str) -> bool {
    map.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A field's number or enum value (0 when absent: protobuf's default).
pub fn int_field(map: &Map, key: &str) -> i64 {
    map.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// Whether a field holds something: a non-empty list, or any value but null.
pub fn nonempty(map: &Map, key: &str) -> bool {
    match map.get(key) {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds the tree keeps are pg_query's own, node for node.
    #[test]
    fn tree_kinds_are_pg_querys() {
        let sql = "WITH w AS (SELECT 1) SELECT a.b, count(*), $1::int FROM t a \
                   JOIN u USING (c) WHERE x IN (SELECT y FROM v) ORDER BY 1";
        let parsed = pg_query::parse(sql, pg_query::ParserOptions::DEFAULT).unwrap();
        let mut ours = Vec::new();
        let tree = super::super::tree::to_tree(&parsed.protobuf.stmts[0].stmt).unwrap();
        collect(&tree, &mut ours);
        let theirs: Vec<NodeKind> = parsed
            .protobuf
            .nodes()
            .into_iter()
            .map(|(n, ..)| NodeKind::of(&n.to_enum()))
            .collect();
        // pg_query also lists messages embedded without a wrapper (a JOIN's RangeVar),
        // but not `String` leaves; `Other` is a field named `node` (SortBy's), which
        // holds a wrapper rather than being one.
        assert!(ours.len() > 20);
        assert!(
            ours.iter()
                .filter(|k| !matches!(k, NodeKind::Other | NodeKind::String))
                .all(|k| theirs.contains(k)),
            "{ours:?} {theirs:?}"
        );
        assert!(ours.contains(&NodeKind::CommonTableExpr) && ours.contains(&NodeKind::SubLink));
    }

    fn collect(v: &Value, out: &mut Vec<NodeKind>) {
        if let Some((k, _)) = node(v) {
            out.push(k);
        }
        match v {
            Value::Object(m) => m.iter().for_each(|(_, c)| collect(c, out)),
            Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
            _ => {}
        }
    }
}
