//! PL/pgSQL bodies (DO blocks, functions created in the session): libpg_query's PL/pgSQL
//! parser gives each embedded SQL expression as text, which is classified like any
//! statement. SQL built from strings at run time (`EXECUTE 'DELETE ...' || x`) cannot be
//! judged statically: the statement is marked unanalysable.

use serde_json::Value;

use super::{merge, parse_statements_with, ClassifyError, Facts};

pub fn facts(statement: &str, depth: usize) -> Result<Vec<Facts>, ClassifyError> {
    let tree =
        pg_query::parse_plpgsql(statement).map_err(|e| ClassifyError::Parse(e.to_string()))?;
    let mut out = Facts::default();
    let mut queries = Vec::new();
    let mut dynamic = false;
    collect(&tree, &mut queries, &mut dynamic);
    if dynamic {
        out.unanalysable = Some("dynamic SQL (EXECUTE of a string built at run time)".into());
    }
    for (query, mode) in queries {
        match classify_expression(&query, mode, depth) {
            Ok(list) => {
                for f in list {
                    merge(&mut out, f);
                }
            }
            Err(e) => {
                out.unanalysable = Some(format!("an expression that cannot be parsed ({e})"));
            }
        }
    }
    Ok(vec![out])
}

fn collect(v: &Value, queries: &mut Vec<(String, i64)>, dynamic: &mut bool) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => *dynamic = true,
                    // OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE: a query from a string.
                    "PLpgSQL_stmt_open" | "PLpgSQL_stmt_return_query"
                        if child.get("dynquery").is_some_and(|d| !d.is_null()) =>
                    {
                        *dynamic = true;
                    }
                    "PLpgSQL_expr" => {
                        if let Some(q) = child.get("query").and_then(Value::as_str) {
                            let mode = child.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
                            queries.push((q.to_owned(), mode));
                        }
                    }
                    _ => {}
                }
                collect(child, queries, dynamic);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, queries, dynamic)),
        _ => {}
    }
}

/// An embedded expression: a whole statement, an expression, or an assignment.
fn classify_expression(query: &str, mode: i64, depth: usize) -> Result<Vec<Facts>, ClassifyError> {
    use pg_query::ParserOptions as P;
    let first = match mode {
        2 => P::PLPGSQL_EXPR,
        3 => P::PLPGSQL_ASSIGN1,
        4 => P::PLPGSQL_ASSIGN2,
        5 => P::PLPGSQL_ASSIGN3,
        _ => P::DEFAULT,
    };
    let mut last = None;
    for options in [first, P::DEFAULT, P::PLPGSQL_EXPR, P::PLPGSQL_ASSIGN1] {
        match parse_statements_with(query, depth, options) {
            Ok(f) => return Ok(f),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ClassifyError::Parse("empty".into())))
}
