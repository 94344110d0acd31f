//! Code that writes with a WHERE its caller decides: a function's parameters (and a
//! PL/pgSQL block's variables) are values, not columns, and are read as any value
//! (see `tautology_params`): `CREATE FUNCTION f(b bool) ... 'DELETE FROM t WHERE b'`
//! deletes every row for `f(true)`.

use super::{verdict, Scope};
use crate::classify::node::node;
use crate::classify::node_kind::NodeKind;
use crate::classify::tree::Value;

/// Whether a SQL function's body has an UPDATE or DELETE whose WHERE some values of
/// the function's parameters (`params`, by name) make true for every row: `DELETE
/// FROM t WHERE b` with `b` a boolean parameter. The body's other facts come from
/// classifying it as any statement; only the names of parameters are known here.
pub fn body_unbounded(code: &str, params: &[String]) -> bool {
    let Ok(parsed) = pg_query::parse(code, pg_query::ParserOptions::DEFAULT) else {
        return false; // the body's own classification reports it
    };
    parsed.protobuf.stmts.iter().any(|raw| {
        crate::classify::tree::to_tree(&raw.stmt).is_ok_and(|tree| writes_unbounded(&tree, params))
    })
}

fn writes_unbounded(v: &Value, params: &[String]) -> bool {
    match v {
        Value::Object(m) => {
            if let Some((NodeKind::UpdateStmt | NodeKind::DeleteStmt, body)) = node(v) {
                if let (Some(w), Some(mut scope)) = (
                    body.get("where_clause").filter(|w| !w.is_null()),
                    Scope::of_write(body, &[]),
                ) {
                    scope.params = params;
                    if verdict(&scope, w).always {
                        return true;
                    }
                }
            }
            m.iter().any(|(_, c)| writes_unbounded(c, params))
        }
        Value::Array(items) => items.iter().any(|i| writes_unbounded(i, params)),
        _ => false,
    }
}

/// Whether a PL/pgSQL function or DO block (the whole statement) has an UPDATE or
/// DELETE whose WHERE its parameters or variables can make true for every row: they
/// are values the code is given or computes (`DECLARE b bool := true; ... WHERE b`),
/// read as any value. A name that is also a column of the table is read as the
/// variable (PL/pgSQL refuses the ambiguity by default): fail closed.
pub fn plpgsql_unbounded(statement: &str) -> bool {
    let Ok(tree) = pg_query::parse_plpgsql(statement) else {
        return false; // the body's own classification reports it
    };
    let (mut names, mut queries) = (Vec::new(), Vec::new());
    read_plpgsql(&tree, &mut names, &mut queries);
    !names.is_empty() && queries.iter().any(|q| body_unbounded(q, &names))
}

/// The variables (parameters among them) and the embedded SQL of PL/pgSQL JSON.
fn read_plpgsql(v: &serde_json::Value, names: &mut Vec<String>, queries: &mut Vec<String>) {
    use serde_json::Value as J;
    match v {
        J::Object(map) => {
            for (k, child) in map {
                let text = |key: &str| child.get(key).and_then(J::as_str).map(str::to_owned);
                match k.as_str() {
                    "PLpgSQL_var" => names.extend(text("refname")),
                    "PLpgSQL_expr" => queries.extend(text("query")),
                    _ => {}
                }
                read_plpgsql(child, names, queries);
            }
        }
        J::Array(items) => items.iter().for_each(|i| read_plpgsql(i, names, queries)),
        _ => {}
    }
}
