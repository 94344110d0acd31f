//! SQL text -> one [`Facts`] per statement: the (shared) parse, the walk, and the code
//! a statement holds (function bodies, DO blocks), followed and folded in.

use super::error::ClassifyError;
use super::facts::{merge, Facts, Kind};
use super::node_kind::NodeKind;
use super::parse;
use super::plpgsql;
use super::walk::{Body, Walker};

/// Statements nested in bodies (DO inside a function inside a DO...) deeper than this
/// are refused rather than followed.
const MAX_BODY_DEPTH: usize = 8;

/// The statements of a `LANGUAGE sql` body.
fn body_statements(sql: &str, depth: usize) -> Result<Vec<Facts>, ClassifyError> {
    statements_with(sql, depth, pg_query::ParserOptions::DEFAULT)
}

/// SQL embedded in PL/pgSQL (an expression or an assignment, by `options`).
fn statements_with(
    sql: &str,
    depth: usize,
    options: pg_query::ParserOptions,
) -> Result<Vec<Facts>, ClassifyError> {
    let mut ignored = false;
    let parsed = parse::parse_with(sql, options)?;
    statements(&parsed, sql, depth, &mut ignored)
}

/// How many times `$n` appears in `text` (inside literals and comments too, which
/// only errs towards refusing).
fn param_uses(text: &str, n: u16) -> usize {
    let token = format!("${n}");
    text.match_indices(&token)
        .filter(|(i, _)| !text[i + token.len()..].starts_with(|c: char| c.is_ascii_digit()))
        .count()
}

const PARAM_NAME_IN_CODE: &str = "set_config with a setting name given by a parameter \
     inside code or a PREPARE, or used again in the statement, could change how the server reads the SQL after it \
     (standard_conforming_strings, client_encoding) before pgmoat can tell";

/// The facts of each statement of `sql`, parsed as `parsed`; `sensitive` is set when
/// some fact depends on a literal's value (see `Classified::literal_sensitive`).
pub(super) fn statements(
    parsed: &parse::Parsed,
    sql: &str,
    depth: usize,
    sensitive: &mut bool,
) -> Result<Vec<Facts>, ClassifyError> {
    let mut out = Vec::with_capacity(parsed.statements.len());
    for statement in &parsed.statements {
        let mut walker = Walker::new(statement.text(sql));
        walker.walk(&statement.tree, NodeKind::Other, "stmt");
        let (mut facts, bodies, literal_sensitive) = walker.finish();
        *sensitive |= literal_sensitive;
        // `$n` names a Bind parameter only in a client's own Parse: in code (a body,
        // a DO block) or a SQL PREPARE (EXECUTE gives the values) nothing reads it at
        // Bind, so the name is as good as computed.
        // Nor when `$n` is used again (`WITH c AS (SELECT $1::bpchar)` makes the
        // server type it bpchar, which drops trailing blanks before set_config reads
        // it; review s37-vfix U6): the Bind's bytes must be what set_config gets.
        let text = statement.text(sql);
        if !facts.setting_params.is_empty()
            && (depth > 0
                || facts.kinds.contains(&Kind::Prepare)
                || facts
                    .setting_params
                    .iter()
                    .any(|&n| param_uses(text, n) != 1))
        {
            facts.setting_params.clear();
            if facts.rereads_sql.is_none() {
                facts.rereads_sql = Some(PARAM_NAME_IN_CODE.into());
            }
        }
        for body in bodies {
            if depth >= MAX_BODY_DEPTH {
                facts.unanalysable = Some("code nested too deeply to follow".into());
                break;
            }
            let inner = match body {
                Body::Sql(code) => body_statements(&code, depth + 1),
                Body::Plpgsql(stmt) => plpgsql::facts(&stmt, depth + 1, &statements_with),
            };
            match inner {
                Ok(list) => {
                    for f in list {
                        merge(&mut facts, f);
                    }
                }
                Err(e) => {
                    facts.unanalysable = Some(format!("a body that cannot be parsed ({e})"));
                }
            }
        }
        out.push(facts);
    }
    Ok(out)
}

/// Whether the code the statements of `sql` hold (function bodies, DO blocks) creates
/// something itself, apart from the statements' own kinds: a function whose body runs
/// `CREATE OPERATOR` is followed like DDL when called, one that only reads is not. Code
/// that cannot be parsed counts as creating (fail closed).
pub fn bodies_create(sql: &str) -> bool {
    let Ok(parsed) = parse::parse_with(sql, pg_query::ParserOptions::DEFAULT) else {
        return true;
    };
    for statement in &parsed.statements {
        let mut walker = Walker::new(statement.text(sql));
        walker.walk(&statement.tree, NodeKind::Other, "stmt");
        let (_, bodies, _) = walker.finish();
        for body in bodies {
            let inner = match body {
                Body::Sql(code) => body_statements(&code, 1),
                Body::Plpgsql(stmt) => plpgsql::facts(&stmt, 1, &statements_with),
            };
            match inner {
                Ok(list) if !list.iter().any(|f| f.kinds.contains(&Kind::Create)) => {}
                _ => return true,
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::bodies_create;

    #[test]
    fn a_body_that_creates_is_told_from_the_create_function_around_it() {
        let def = |body: &str| {
            format!(
                "CREATE OR REPLACE FUNCTION public.f() RETURNS void LANGUAGE plpgsql \
                 AS $function$ BEGIN {body} END $function$"
            )
        };
        assert!(bodies_create(&def(
            "CREATE OPERATOR !#! (FUNCTION = 'pg_read_file', RIGHTARG = text);"
        )));
        assert!(bodies_create(&def("CREATE TABLE t (a int);")));
        assert!(!bodies_create(&def("PERFORM 1; INSERT INTO t VALUES (1);")));
        assert!(bodies_create(
            "CREATE FUNCTION g() RETURNS void LANGUAGE sql AS 'CREATE VIEW v AS SELECT 1'"
        ));
        assert!(!bodies_create(
            "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        ));
        assert!(bodies_create("not sql at all ("));
    }
}
