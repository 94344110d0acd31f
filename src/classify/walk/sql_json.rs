//! SQL/JSON syntax that older servers read as function calls.
//!
//! pgmoat parses with Postgres 17's grammar, where `JSON_QUERY(...)`, `JSON_VALUE`,
//! `JSON_EXISTS`, `JSON_SCALAR`, `JSON_SERIALIZE`, `JSON(...)`, `JSON_TABLE` and
//! `MERGE_ACTION()` (17), and `JSON_ARRAY`, `JSON_ARRAYAGG`, `JSON_OBJECT`,
//! `JSON_OBJECTAGG` (16) are syntax. Older servers read the same text as a call of a
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
        // Postgres 16's constructors (review s37 V5).
        NodeKind::JsonArrayConstructor | NodeKind::JsonArrayQueryConstructor => "json_array",
        NodeKind::JsonArrayAgg => "json_arrayagg",
        NodeKind::JsonObjectAgg => "json_objectagg",
        NodeKind::JsonObjectConstructor => "json_object",
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
            ("SELECT json_array(1, 'x')", "json_array"),
            ("SELECT json_arrayagg(1)", "json_arrayagg"),
            ("SELECT json_objectagg('k' : 1)", "json_objectagg"),
            ("SELECT json_object('k' : 1)", "json_object"),
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

    /// ALTER SYSTEM of search_path (or RESET ALL) moves every session's unqualified
    /// names before the catalog shows it (review s37 V6): refused like a parser
    /// setting; other settings are the rules' business.
    #[test]
    fn alter_system_of_the_path_is_refused() {
        for sql in [
            "ALTER SYSTEM SET search_path = hr, public",
            "ALTER SYSTEM RESET search_path",
            "ALTER SYSTEM RESET ALL",
        ] {
            let c = classify_now(sql).unwrap();
            assert!(c.statements[0].rereads_sql.is_some(), "{sql}");
        }
        let c = classify_now("ALTER SYSTEM SET work_mem = '8MB'").unwrap();
        assert!(c.statements[0].rereads_sql.is_none());
        // An aggregate over set_config sets the setting its state names.
        let c = classify_now(
            "CREATE AGGREGATE a(text, bool) (sfunc = set_config, stype = text, initcond = 'role')",
        )
        .unwrap();
        assert!(c.statements[0].rereads_sql.is_some());
    }
}
