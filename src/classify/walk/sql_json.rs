//! SQL/JSON syntax that older servers read as function calls.
//!
//! pgmoat parses with Postgres 17's grammar, where `JSON_QUERY(...)`, `JSON_VALUE`,
//! `JSON_EXISTS`, `JSON_SCALAR`, `JSON_SERIALIZE`, `JSON(...)`, `JSON_TABLE` and
//! `MERGE_ACTION()` are syntax. Postgres 15 and 16 read the same text as a call of a
//! function of that name on the search path, a user's one included (compatibility
//! shims define them). So each is also counted as a call of its bare name: the rules'
//! `functions:` conditions see it and the catalog folds the user function's body in
//! (review s37 W5). On a server that knows the syntax, that only adds a name.

use super::{Map, NodeKind, Value};

/// The bare function name an older server would call for this node, if any.
pub(super) fn function_name(ty: NodeKind, body: &Map) -> Option<&'static str> {
    Some(match ty {
        NodeKind::JsonFuncExpr => match body.get("op").and_then(Value::as_i64)? {
            1 => "json_exists",
            2 => "json_query",
            3 => "json_value",
            _ => return None,
        },
        NodeKind::JsonScalarExpr => "json_scalar",
        NodeKind::JsonSerializeExpr => "json_serialize",
        NodeKind::JsonParseExpr => "json",
        NodeKind::JsonTable => "json_table",
        NodeKind::MergeSupportFunc => "merge_action",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use crate::classify::classify_now;

    #[test]
    fn sql_json_syntax_counts_as_a_call_of_its_name() {
        for (sql, f) in [
            ("SELECT json_query(1, 'x')", "json_query"),
            ("SELECT JSON_VALUE(jsonb '{}', '$.a')", "json_value"),
            ("SELECT json_exists(jsonb '{}', '$.a')", "json_exists"),
            ("SELECT json_scalar(1)", "json_scalar"),
            ("SELECT json_serialize(json '1')", "json_serialize"),
            ("SELECT json('{}')", "json"),
            (
                "SELECT * FROM json_table(jsonb '[]', '$[*]' COLUMNS (a int PATH '$.a')) t",
                "json_table",
            ),
        ] {
            let c = classify_now(sql).unwrap();
            assert!(
                c.statements[0].functions.contains(f),
                "{sql}: {:?}",
                c.statements[0].functions
            );
        }
    }
}
