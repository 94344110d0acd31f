//! PL/pgSQL bodies (DO blocks, functions created in the session or read from the
//! catalog): libpg_query's PL/pgSQL parser gives each embedded SQL expression as text,
//! which is classified like any statement. SQL built from strings at run time
//! (`EXECUTE 'DELETE ...' || x`) cannot be judged statically: the statement is marked
//! unanalysable.
//!
//! libpg_query's output is not complete, and what it leaves out is read here:
//! - the default of a record or row-type declaration (`DECLARE r record := (...)`) is
//!   not in its JSON at all: every declaration's default is read from the body's own
//!   tokens ([`declared_defaults`]) and classified as the expression it is. The
//!   defaults its JSON does give must each be among those read, and every record it
//!   declares must be a declaration read (or a FOR loop's own variable): otherwise
//!   this reading and the server's differ, and the body is unanalysable.
//! - a trigger function's trigger variables (`TG_OP`, ...) make its JSON malformed:
//!   the body is compiled instead as an ordinary function whose outer block declares
//!   those variables ([`as_plain_function`]), which holds the same expressions.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::ClassifyError;
use super::facts::{merge, Facts};

/// The caller's reading of embedded SQL (text, depth, parser options): it owns the
/// statement walk, which calls back here for PL/pgSQL bodies. Passed in rather than
/// imported, so the two do not depend on each other.
pub type SqlFacts<'a> =
    &'a dyn Fn(&str, usize, pg_query::ParserOptions) -> Result<Vec<Facts>, ClassifyError>;

/// A PL/pgSQL body to classify.
#[derive(Debug, Clone)]
pub struct Code {
    /// The statement that holds it (`DO ...`, `CREATE FUNCTION ...`), as written.
    pub statement: String,
    /// The body itself (the DO block's or function's string).
    pub source: String,
    /// A trigger or event trigger function (`RETURNS trigger`, as libpg_query tells).
    pub trigger: Trigger,
}

/// What kind of trigger function a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    No,
    /// `RETURNS trigger`: returns NEW, OLD or NULL.
    Dml,
    /// `RETURNS event_trigger`: returns nothing.
    Event,
}

pub fn facts(code: &Code, depth: usize, sql: SqlFacts<'_>) -> Result<Vec<Facts>, ClassifyError> {
    let plain;
    let (statement, source) = match code.trigger {
        Trigger::No => (code.statement.as_str(), code.source.as_str()),
        Trigger::Dml | Trigger::Event => {
            plain = as_plain_function(&code.source, code.trigger);
            (plain.0.as_str(), plain.1.as_str())
        }
    };
    let tree =
        pg_query::parse_plpgsql(statement).map_err(|e| ClassifyError::Parse(e.to_string()))?;
    let mut out = Facts::default();
    let mut read = Read::default();
    collect(&tree, &mut read);
    if read.dynamic {
        out.unanalysable = Some("dynamic SQL (EXECUTE of a string built at run time)".into());
    }
    if read.incomplete {
        out.unanalysable = Some("PL/pgSQL code pgmoat could not read completely".into());
    }
    // A FETCH of a portal the body did not open reads rows no mask saw (see
    // `plpgsql_cursors`).
    if super::plpgsql_cursors::may_read_outside_portal(&tree) {
        out.unanalysable =
            Some("a FETCH from a cursor the PL/pgSQL code does not open itself".into());
    }
    let declared = match declared_defaults(source) {
        Some(d) => d,
        None => {
            out.unanalysable = Some("PL/pgSQL declarations pgmoat could not read".into());
            Declared::default()
        }
    };
    // What libpg_query gives must be what the tokens say: a default it read that the
    // tokens do not show, or a record declared where the tokens show none, means the
    // two readings differ.
    let defaults: BTreeSet<&str> = declared.defaults.iter().map(String::as_str).collect();
    let unmatched_default = read
        .var_defaults
        .iter()
        .any(|d| !defaults.contains(d.as_str()));
    let unmatched_record = read
        .records
        .iter()
        .any(|r| !declared.names.contains(r) && !read.loop_records.contains(r));
    if unmatched_default || unmatched_record {
        out.unanalysable = Some("PL/pgSQL declarations pgmoat could not read completely".into());
    }
    let expressions = declared.defaults.into_iter().map(|d| (d, 2));
    for (query, mode) in read.queries.into_iter().chain(expressions) {
        match classify_expression(&query, mode, depth, sql) {
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

/// What the JSON holds.
#[derive(Default)]
struct Read {
    /// Every embedded SQL text and its parse mode.
    queries: Vec<(String, i64)>,
    /// The defaults of scalar declarations (the only ones the JSON gives).
    var_defaults: Vec<String>,
    /// Names of the records declared in the body (a line number: not the implicit
    /// NEW/OLD).
    records: BTreeSet<String>,
    /// Records a `FOR r IN cursor` loop declares itself.
    loop_records: BTreeSet<String>,
    dynamic: bool,
    /// An expression without its text.
    incomplete: bool,
}

fn collect(v: &Value, read: &mut Read) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match k.as_str() {
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" => read.dynamic = true,
                    // OPEN ... FOR EXECUTE, RETURN QUERY EXECUTE: a query from a string.
                    "PLpgSQL_stmt_open" | "PLpgSQL_stmt_return_query"
                        if child.get("dynquery").is_some_and(|d| !d.is_null()) =>
                    {
                        read.dynamic = true;
                    }
                    "PLpgSQL_stmt_forc" => {
                        if let Some(name) = child
                            .get("var")
                            .and_then(|v| v.get("PLpgSQL_rec"))
                            .and_then(|r| r.get("refname"))
                            .and_then(Value::as_str)
                        {
                            read.loop_records.insert(name.to_owned());
                        }
                    }
                    "PLpgSQL_var" => {
                        if let Some(q) = child
                            .get("default_val")
                            .and_then(|d| d.get("PLpgSQL_expr"))
                            .and_then(|e| e.get("query"))
                            .and_then(Value::as_str)
                        {
                            read.var_defaults.push(q.to_owned());
                        }
                    }
                    "PLpgSQL_rec" if child.get("lineno").is_some() => {
                        if let Some(name) = child.get("refname").and_then(Value::as_str) {
                            read.records.insert(name.to_owned());
                        }
                    }
                    "PLpgSQL_expr" => match child.get("query").and_then(Value::as_str) {
                        Some(q) => {
                            let mode = child.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
                            read.queries.push((q.to_owned(), mode));
                        }
                        None => read.incomplete = true,
                    },
                    _ => {}
                }
                collect(child, read);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect(i, read)),
        _ => {}
    }
}

/// The variables PostgreSQL gives trigger and event trigger functions.
const TRIGGER_VARIABLES: &str = "new record; old record; tg_op text; tg_name name; \
     tg_when text; tg_level text; tg_relid oid; tg_relname name; tg_table_name name; \
     tg_table_schema name; tg_nargs int; tg_argv text[]; tg_event text; tg_tag text;";

/// A trigger function's body as an ordinary function: an outer block declares the
/// trigger variables, the body is its only statement. The prefix holds no line break,
/// so the body keeps its line numbers. The statement, and its body.
fn as_plain_function(source: &str, trigger: Trigger) -> (String, String) {
    let mut tag = String::from("pgmoat_trigger");
    while source.contains(&format!("${tag}$")) {
        tag.push('x');
    }
    // The body ends with its END, with or without a semicolon (which a nested block
    // needs); the line break keeps a trailing `--` comment from eating it.
    let ends_with_semicolon = tokens(source)
        .and_then(|t| t.last().map(|l| l.text == ";"))
        .unwrap_or(false);
    let semicolon = if ends_with_semicolon { "" } else { "\n;" };
    let body = format!("DECLARE {TRIGGER_VARIABLES} BEGIN {source}{semicolon}\nEND");
    // What the body may return: a row (NEW, OLD, NULL) or, for an event trigger,
    // nothing.
    let returns = if trigger == Trigger::Event {
        "void"
    } else {
        "record"
    };
    let statement = format!(
        "CREATE FUNCTION pgmoat_trigger() RETURNS {returns} LANGUAGE plpgsql AS ${tag}${body}${tag}$"
    );
    (statement, body)
}

/// A token of a body: its text as written.
struct Token<'a> {
    text: &'a str,
    start: usize,
    end: usize,
}

/// The body's tokens, comments left out, by the server's own scanner (the one
/// PL/pgSQL reads with).
fn tokens(source: &str) -> Option<Vec<Token<'_>>> {
    use pg_query::protobuf::Token as T;
    let scanned = pg_query::scan(source).ok()?;
    let mut out = Vec::with_capacity(scanned.tokens.len());
    for t in &scanned.tokens {
        if t.token == T::SqlComment as i32 || t.token == T::CComment as i32 {
            continue;
        }
        let (start, end) = (usize::try_from(t.start).ok()?, usize::try_from(t.end).ok()?);
        out.push(Token {
            text: source.get(start..end)?,
            start,
            end,
        });
    }
    Some(out)
}

/// What the body's DECLARE sections declare.
#[derive(Default)]
struct Declared {
    /// Every declared name, as PL/pgSQL folds it.
    names: BTreeSet<String>,
    /// The text of every declaration's default (`:=`, `=` or DEFAULT), as PL/pgSQL
    /// reads it: from its first token to its last, before the `;` that ends it.
    defaults: Vec<String>,
}

/// Read the DECLARE sections of a body: `DECLARE decl; decl; ... BEGIN`, where a
/// declaration is `name [CONSTANT] type [COLLATE c] [NOT NULL] [{:= | = | DEFAULT}
/// expr];`, `name ALIAS FOR x;` or `name [[NO] SCROLL] CURSOR [(args)] {FOR | IS}
/// query;` (its query is in libpg_query's JSON). None when the tokens cannot be read.
fn declared_defaults(source: &str) -> Option<Declared> {
    let toks = tokens(source)?;
    let mut out = Declared::default();
    let word = |i: usize, w: &str| toks.get(i).is_some_and(|t| t.text.eq_ignore_ascii_case(w));
    let mut i = 0;
    while i < toks.len() {
        if !word(i, "declare") {
            i += 1;
            continue;
        }
        i += 1;
        // One section, up to its BEGIN.
        while i < toks.len() && !word(i, "begin") {
            if word(i, "declare") {
                i += 1; // PL/pgSQL allows DECLARE again inside a section
                continue;
            }
            let name = i;
            let mut depth = 0i32;
            let mut assign = None;
            let mut j = i + 1;
            while j < toks.len() {
                match toks[j].text {
                    "(" | "[" => depth += 1,
                    ")" | "]" => depth -= 1,
                    ";" if depth <= 0 => break,
                    ":=" | "=" if depth == 0 && assign.is_none() => assign = Some(j),
                    t if depth == 0 && assign.is_none() && t.eq_ignore_ascii_case("default") => {
                        assign = Some(j)
                    }
                    _ => {}
                }
                j += 1;
            }
            let cursor = (name + 1..(name + 4).min(j)).any(|k| word(k, "cursor"));
            out.names.insert(fold(toks[name].text));
            if let (Some(a), false) = (assign, cursor) {
                // No expression after `:=` is a body the server refuses anyway.
                let first = toks.get(a + 1).filter(|_| a + 1 < j)?;
                let last = toks.get(j - 1)?;
                out.defaults
                    .push(source.get(first.start..last.end)?.to_owned());
            }
            i = j + 1;
        }
    }
    Some(out)
}

/// An identifier as PL/pgSQL names it: unquoted ones folded to lower case.
fn fold(ident: &str) -> String {
    match ident.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => ident.to_lowercase(),
    }
}

/// An embedded expression: a whole statement, an expression, or an assignment.
fn classify_expression(
    query: &str,
    mode: i64,
    depth: usize,
    sql: SqlFacts<'_>,
) -> Result<Vec<Facts>, ClassifyError> {
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
        match sql(query, depth, options) {
            Ok(f) => return Ok(f),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ClassifyError::Parse("empty".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_read_as_plpgsql_reads_them() {
        let d = declared_defaults(
            "<<outer>> DECLARE
               a int := (SELECT count(*) FROM t);   -- a comment; with a semicolon
               \"B\" text DEFAULT ';' || f(1, (2));
               c CONSTANT int NOT NULL = 3 /* ; */ ;
               k CURSOR (x int) FOR SELECT * FROM t WHERE id = x;
               s NO SCROLL CURSOR FOR SELECT 1;
               al ALIAS FOR $1;
               r record;
               DECLARE q t%ROWTYPE := (SELECT t FROM t LIMIT 1);
             BEGIN
               DECLARE_ME := 1;
             END",
        )
        .unwrap();
        assert_eq!(
            d.defaults,
            [
                "(SELECT count(*) FROM t)",
                "';' || f(1, (2))",
                "3",
                "(SELECT t FROM t LIMIT 1)"
            ]
        );
        for n in ["a", "B", "c", "k", "s", "al", "r", "q"] {
            assert!(d.names.contains(n), "{n}: {:?}", d.names);
        }
    }

    #[test]
    fn trigger_bodies_keep_their_line_numbers() {
        let (statement, body) = as_plain_function("\nBEGIN\n RETURN NEW;\nEND -- x", Trigger::Dml);
        assert!(body.starts_with("DECLARE") && !body.lines().next().unwrap().contains("RETURN"));
        assert_eq!(body.lines().nth(2), Some(" RETURN NEW;"));
        assert!(pg_query::parse_plpgsql(&statement).is_ok(), "{statement}");
    }
}
