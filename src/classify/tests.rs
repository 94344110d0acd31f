//! Table-driven classification tests: what the rules see for each statement.

use super::*;

fn one(sql: &str) -> Facts {
    let c = classify_now(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(c.statements.len(), 1, "{sql}");
    c.statements.into_iter().next().unwrap()
}

fn kinds(sql: &str) -> Vec<&'static str> {
    let mut k: Vec<&'static str> = one(sql).kinds.iter().map(|k| k.as_str()).collect();
    k.sort();
    k
}

fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn kinds_of_plain_statements() {
    for (sql, want) in [
        ("SELECT 1", vec!["select"]),
        ("select * from users", vec!["select"]),
        ("INSERT INTO t VALUES (1)", vec!["insert"]),
        ("INSERT INTO t SELECT * FROM u", vec!["insert", "select"]),
        ("UPDATE t SET a = 1 WHERE id = 2", vec!["update"]),
        ("DELETE FROM t WHERE id = 1", vec!["delete"]),
        ("DROP TABLE users", vec!["drop"]),
        ("TRUNCATE users", vec!["truncate"]),
        ("CREATE TABLE x (a int)", vec!["create"]),
        (
            "CREATE TABLE x AS SELECT * FROM users",
            vec!["create", "select"],
        ),
        ("ALTER TABLE users ADD COLUMN z int", vec!["alter"]),
        (
            "ALTER TABLE users ADD COLUMN z int, DROP COLUMN ssn",
            vec!["alter", "drop"],
        ),
        (
            "ALTER SYSTEM SET log_statement = 'none'",
            vec!["alter_system"],
        ),
        ("CREATE EXTENSION dblink", vec!["extension"]),
        ("DROP EXTENSION dblink", vec!["extension"]),
        ("GRANT SELECT ON users TO bob", vec!["grant"]),
        ("REVOKE SELECT ON users FROM bob", vec!["revoke"]),
        ("SET search_path = x", vec!["set"]),
        ("SET ROLE postgres", vec!["set_role"]),
        ("SET LOCAL ROLE postgres", vec!["set_role"]),
        ("SET SESSION AUTHORIZATION postgres", vec!["set_role"]),
        ("SHOW search_path", vec!["show"]),
        ("EXPLAIN ANALYZE DELETE FROM t", vec!["delete", "explain"]),
        ("PREPARE p AS DELETE FROM t", vec!["delete", "prepare"]),
        ("EXECUTE p", vec!["execute"]),
        ("DEALLOCATE p", vec!["deallocate"]),
        ("LISTEN x", vec!["listen"]),
        ("NOTIFY x", vec!["notify"]),
        ("LOCK TABLE users", vec!["lock"]),
        ("VACUUM users", vec!["vacuum"]),
        ("ANALYZE users", vec!["analyze"]),
        ("BEGIN", vec!["transaction"]),
        ("DISCARD ALL", vec!["discard"]),
        ("CHECKPOINT", vec!["checkpoint"]),
        ("LOAD 'auto_explain'", vec!["load"]),
        ("COPY users TO STDOUT", vec!["copy_to"]),
        ("COPY users FROM STDIN", vec!["copy_from"]),
        ("DROP OWNED BY bob", vec!["drop"]),
        ("COMMENT ON TABLE users IS 'x'", vec!["comment"]),
        ("REFRESH MATERIALIZED VIEW mv", vec!["refresh"]),
        ("CALL p()", vec!["call"]),
    ] {
        assert_eq!(kinds(sql), want, "{sql}");
    }
}

#[test]
fn dml_hidden_inside_other_statements_is_found() {
    for (sql, must) in [
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "delete",
        ),
        ("WITH x AS (SELECT 1) DELETE FROM t", "delete"),
        ("COPY (DELETE FROM t RETURNING *) TO STDOUT", "delete"),
        (
            "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM u",
            "delete",
        ),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "delete",
        ),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (1)",
            "insert",
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql BEGIN ATOMIC DELETE FROM t; END",
            "delete",
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM t'",
            "delete",
        ),
        ("DO $$ BEGIN DELETE FROM t; END $$", "delete"),
        (
            "SELECT * FROM (SELECT 1) s WHERE EXISTS (SELECT 1 FROM u)",
            "select",
        ),
    ] {
        assert!(kinds(sql).contains(&must), "{sql}: {:?}", kinds(sql));
    }
}

#[test]
fn lexical_tricks_do_not_hide_anything() {
    for sql in [
        "DR/**/OP TABLE users",
        "/* a /* nested */ comment */ DROP TABLE users",
        "DROP -- comment\n TABLE users",
        "dRoP\tTABLE\x0cusers",
        "DROP TABLE \"users\"",
        "DROP TABLE U&\"\\0075sers\"",
    ] {
        // An unparseable statement is blocked anyway.
        if let Ok(c) = classify_now(sql) {
            assert!(c.statements[0].kinds.contains(&Kind::Drop), "{sql}");
        }
    }
    // Keywords inside literals, comments and identifiers are not statements.
    for sql in [
        "SELECT 'DROP TABLE users'",
        "SELECT drop_date, delete_requests FROM t",
        "SELECT 1 -- DROP TABLE users",
        "SELECT $tag$ DELETE FROM t $tag$",
        "SELECT E'\\' ; DROP TABLE users; '",
    ] {
        let f = one(sql);
        assert_eq!(
            f.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["select"],
            "{sql}"
        );
    }
}

#[test]
fn tables_read_and_written() {
    let f = one("INSERT INTO audit.log SELECT * FROM users u JOIN hr.salaries s ON true");
    assert_eq!(f.tables_written, set(&["audit.log"]));
    assert_eq!(f.tables_read, set(&["public.users", "hr.salaries"]));
    let f = one("WITH x AS (SELECT 1) SELECT * FROM x");
    assert!(f.tables_read.is_empty(), "CTE names are not tables");
    let f = one("DROP TABLE a, s.b");
    assert_eq!(f.tables_written, set(&["public.a", "s.b"]));
    let f = one("COPY users FROM STDIN");
    assert_eq!(f.tables_written, set(&["public.users"]));
    let f = one("SELECT * INTO newt FROM users");
    assert!(f.kinds.contains(&Kind::Create));
    assert_eq!(f.tables_written, set(&["public.newt"]));
}

#[test]
fn functions_anywhere() {
    for (sql, func) in [
        ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
        (
            "SELECT pg_catalog.pg_read_file('/etc/passwd')",
            "pg_catalog.pg_read_file",
        ),
        ("SELECT * FROM pg_ls_dir('.')", "pg_ls_dir"),
        (
            "SELECT count(*) FILTER (WHERE pg_read_file('x') IS NULL) FROM t",
            "pg_read_file",
        ),
        (
            "SELECT CASE WHEN false THEN pg_read_file('x') END",
            "pg_read_file",
        ),
        (
            "WITH x AS (SELECT lo_import('/etc/passwd')) SELECT 1",
            "lo_import",
        ),
        ("SELECT \"PG_READ_FILE\"('x')", "PG_READ_FILE"),
        ("VALUES (pg_sleep(1))", "pg_sleep"),
        (
            "CREATE OPERATOR !!! (FUNCTION = pg_read_file, RIGHTARG = text)",
            "pg_read_file",
        ),
        (
            "CREATE CAST (text AS int8) WITH FUNCTION pg_read_file(text)",
            "pg_read_file",
        ),
        (
            "CREATE DOMAIN d AS text CHECK (pg_read_file(VALUE) IS NOT NULL)",
            "pg_read_file",
        ),
        ("CREATE VIEW v AS SELECT pg_read_file('x')", "pg_read_file"),
        (
            "CREATE TABLE t (a text DEFAULT pg_read_file('x'))",
            "pg_read_file",
        ),
        (
            "SELECT dblink_exec('host=x', 'DROP TABLE t')",
            "dblink_exec",
        ),
        ("CALL do_things()", "do_things"),
        (
            "DO $$ BEGIN PERFORM pg_read_file('x'); END $$",
            "pg_read_file",
        ),
    ] {
        let f = one(sql);
        assert!(f.functions.contains(func), "{sql}: {:?}", f.functions);
    }
}

#[test]
fn settings_by_every_route() {
    for (sql, setting) in [
        ("SET search_path = a", "search_path"),
        ("RESET statement_timeout", "statement_timeout"),
        ("SELECT set_config('role', 'postgres', false)", "role"),
        ("ALTER ROLE bob SET role = 'postgres'", "role"),
        (
            "ALTER DATABASE d SET session_authorization = 'postgres'",
            "session_authorization",
        ),
        ("ALTER SYSTEM SET log_statement = 'none'", "log_statement"),
        (
            "UPDATE pg_settings SET setting = 'postgres' WHERE name = 'role'",
            "role",
        ),
        ("SELECT set_config(current_user, 'x', false)", "*"),
    ] {
        let f = one(sql);
        assert!(f.settings.contains(setting), "{sql}: {:?}", f.settings);
    }
    for sql in [
        "SELECT set_config('role', 'postgres', false)",
        "ALTER ROLE bob SET role = 'postgres'",
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'role'",
    ] {
        assert!(one(sql).kinds.contains(&Kind::SetRole), "{sql}");
    }
}

#[test]
fn copy_ends() {
    assert_eq!(
        one("COPY t TO PROGRAM 'curl x'").copy,
        [CopyEnd::Program].into()
    );
    assert_eq!(
        one("COPY t FROM PROGRAM 'id'").copy,
        [CopyEnd::Program].into()
    );
    assert_eq!(one("COPY t TO '/tmp/x'").copy, [CopyEnd::File].into());
    assert_eq!(one("COPY t FROM STDIN").copy, [CopyEnd::Stdio].into());
}

#[test]
fn where_missing_and_tautologies() {
    for sql in [
        "DELETE FROM t",
        "UPDATE t SET a = 1",
        "DELETE FROM t USING u",
        "UPDATE t SET a = 1 FROM u",
        "WITH d AS (DELETE FROM t RETURNING 1) SELECT 1",
    ] {
        assert!(one(sql).where_.missing, "{sql}");
    }
    for sql in [
        "DELETE FROM t WHERE true",
        "DELETE FROM t WHERE 1=1",
        "DELETE FROM t WHERE 'a' = 'a'",
        "DELETE FROM t WHERE id = id",
        "DELETE FROM t WHERE id = 5 OR true",
        "DELETE FROM t WHERE NOT false",
        "DELETE FROM t WHERE 't'::bool",
        "DELETE FROM t WHERE 1 IS NOT NULL",
        "UPDATE t SET a = 1 WHERE 2 > 1",
        "DELETE FROM t WHERE 1 IN (1, 2)",
        "DELETE FROM t WHERE (1 = 1) AND (2 = 2)",
        // No column at all: the same for every row.
        "DELETE FROM t WHERE 1 BETWEEN 0 AND 2",
        "DELETE FROM t WHERE EXISTS (SELECT)",
        "DELETE FROM t WHERE (SELECT true)",
        "UPDATE t SET a = 1 WHERE 'a' LIKE 'a'",
        "DELETE FROM t WHERE id IS NOT DISTINCT FROM id",
    ] {
        let f = one(sql);
        assert!(f.where_.tautology, "{sql}");
        assert!(!f.where_.missing, "{sql}");
    }
    for sql in [
        "DELETE FROM t WHERE id = 5",
        "DELETE FROM t WHERE 1 = 2",
        "DELETE FROM t WHERE id = 5 AND true",
        "DELETE FROM t WHERE false OR id = 3",
        "DELETE FROM t WHERE CURRENT OF c",
        "DELETE FROM t WHERE id * 1 = id * 2",
    ] {
        let f = one(sql);
        assert!(!f.where_.tautology && !f.where_.missing, "{sql}");
    }
    assert_eq!(one("SELECT 1").where_.describe(), "n/a");
}

#[test]
fn dynamic_sql_is_unanalysable() {
    for sql in [
        "DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'users'; END $$",
        "DO $$ BEGIN EXECUTE format('DELETE FROM %I', 't'); END $$",
        "DO $$ DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END $$",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'x'; END $$",
        "DO LANGUAGE plpython3u $$ print(1) $$",
    ] {
        let c = classify_now(sql);
        let unanalysable = match c {
            Ok(c) => c.statements[0].unanalysable.is_some(),
            Err(_) => true,
        };
        assert!(unanalysable, "{sql}");
    }
    // Static PL/pgSQL is followed, not refused.
    let f = one("DO $$ DECLARE n int; BEGIN n := 1; SELECT count(*) INTO n FROM users; END $$");
    assert!(f.unanalysable.is_none(), "{:?}", f.unanalysable);
    assert!(f.tables_read.contains("public.users"));
}

#[test]
fn multi_statement_strings_give_one_facts_each() {
    let c = classify_now("SELECT 1; DROP TABLE t; UPDATE u SET a = 1").unwrap();
    assert_eq!(c.statements.len(), 3);
    assert!(c.statements[1].kinds.contains(&Kind::Drop));
    assert!(c.statements[2].where_.missing);
    assert!(classify_now("").unwrap().statements.is_empty());
}

#[test]
fn unparseable_sql_is_an_error() {
    assert!(classify_now("SELEC 1").is_err());
    assert!(classify_now("SELECT 'unterminated").is_err());
    assert!(classify_now("SELECT 1\0; DROP TABLE t").is_err());
}

#[test]
fn long_chains_parse_on_a_big_stack() {
    let sql = format!(
        "SELECT * FROM t WHERE {}",
        (0..5000)
            .map(|i| format!("id = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let handle = std::thread::Builder::new()
        .stack_size(PARSE_STACK)
        .spawn(move || classify_now(&sql).map(|c| c.statements.len()))
        .unwrap();
    assert_eq!(handle.join().unwrap(), Ok(1));
}

#[test]
fn columns_resolve_through_aliases() {
    let f = one("SELECT u.ssn, name FROM users u");
    assert!(f.columns.contains("users.ssn"), "{:?}", f.columns);
    let f = one("SELECT ssn FROM users");
    assert!(f.columns.contains("users.ssn"), "{:?}", f.columns);
    let f = one("SELECT ssn FROM users, orders");
    assert!(f.columns.contains("?.ssn"), "{:?}", f.columns);
}

/// Cached decisions must equal uncached ones, whatever order statements arrive in and
/// however their literals vary: literal-dependent facts are never shared by shape.
#[tokio::test]
async fn cached_classification_equals_uncached() {
    let templates: &[(&str, &[&[&str]])] = &[
        ("DELETE FROM t WHERE id = {}", &[&["1"], &["2"], &["'x'"]]),
        (
            "DELETE FROM t WHERE {} = {}",
            &[
                &["1", "1"],
                &["1", "2"],
                &["'a'", "'a'"],
                &["'a'", "'b'"],
                &["2", "1"],
            ],
        ),
        (
            "UPDATE t SET a = {} WHERE {} > {}",
            &[&["1", "2", "1"], &["1", "1", "2"], &["'x'", "3", "3"]],
        ),
        (
            "UPDATE t SET a = 1 WHERE {}::bool",
            &[&["'t'"], &["'f'"], &["'yes'"], &["'no'"]],
        ),
        (
            "DELETE FROM t WHERE {} IN ({}, {})",
            &[&["1", "1", "2"], &["3", "1", "2"]],
        ),
        (
            "SELECT set_config({}, 'x', false)",
            &[&["'role'"], &["'work_mem'"], &["'session_authorization'"]],
        ),
        (
            "DO {}",
            &[
                &["'BEGIN DELETE FROM t; END'"],
                &["'BEGIN RAISE NOTICE ''x''; END'"],
                &["'BEGIN EXECUTE ''x''; END'"],
            ],
        ),
        (
            "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS {}",
            &[
                &["'DELETE FROM t'"],
                &["'SELECT 1'"],
                &["'SELECT pg_read_file(''x'')'"],
            ],
        ),
        (
            "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
            &[&["1"], &["48213"], &["-7"]],
        ),
        (
            "SELECT {} -- {}\n, 2",
            &[&["1", "DROP TABLE t"], &["'x'", "x"]],
        ),
        (
            "SELECT $q${}$q$, {}",
            &[&["DROP TABLE t", "1"], &["x", "E'\\\\'"]],
        ),
        ("COPY (SELECT {}) TO STDOUT", &[&["1"], &["'x'"]]),
        (
            "SELECT * FROM t WHERE a = {} OR b = {}",
            &[&["1", "2"], &["'1'", "'2'"]],
        ),
        (
            "SELECT * FROM t WHERE {} = {} OR b = 2",
            &[&["1", "1"], &["1", "2"]],
        ),
    ];
    let mut corpus = Vec::new();
    for (template, fills) in templates {
        for fill in *fills {
            let mut sql = template.to_string();
            for f in *fill {
                sql = sql.replacen("{}", f, 1);
            }
            corpus.push(sql);
        }
    }
    // Generated: numbers and strings in every literal slot of a few shapes.
    for i in 0..200u32 {
        corpus.push(format!(
            "SELECT * FROM users WHERE id = {i} AND name = 'n{}'",
            i % 7
        ));
        corpus.push(format!(
            "UPDATE users SET balance = balance + {} WHERE id = {}",
            i as i64 - 100,
            i % 5
        ));
        corpus.push(format!(
            "DELETE FROM users WHERE {} = {}",
            i % 3,
            (i / 3) % 3
        ));
    }
    let classifier = Classifier::start(1, 1 << 20);
    for round in 0..2 {
        for n in 0..corpus.len() {
            let order = if round == 0 { n } else { corpus.len() - 1 - n };
            let sql = &corpus[order];
            let cached = classifier.classify(sql).await.map(|c| (*c).clone());
            let fresh = classify_now(sql);
            match (cached, fresh) {
                (Ok(a), Ok(b)) => assert_eq!(a.statements, b.statements, "{sql}"),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{sql}: cached {a:?} vs fresh {b:?}"),
            }
        }
    }
    // The shape cache is doing its job for the common case.
    assert!(classifier
        .cached("SELECT abalance FROM pgbench_accounts WHERE aid = 999999")
        .is_some());
    assert!(
        classifier.cached("DELETE FROM t WHERE 5 = 5").is_none(),
        "literal-sensitive: exact text only"
    );
    // A computed set_config name is the rules' to judge (PostgREST sends them), not a
    // hard refusal; a literal one that changes how SQL is read is.
    assert_eq!(
        classify_now("SELECT set_config($1, $2, true)")
            .unwrap()
            .statements[0]
            .rereads_sql,
        None
    );
    assert!(
        classify_now("SELECT set_config('client_encoding', 'SJIS', false)")
            .unwrap()
            .statements[0]
            .rereads_sql
            .is_some()
    );
    // Whether two sides are the same rests on their literals: no answer for the shape.
    for (sql, tautology) in [
        ("DELETE FROM t WHERE id * 1 = id * 2", false),
        ("DELETE FROM t WHERE id * 1 = id * 1", true),
        ("SET standard_conforming_strings = on", false),
        ("SET standard_conforming_strings = 'off'", false),
    ] {
        let c = classifier.classify(sql).await.unwrap();
        assert_eq!(c.statements[0].where_.tautology, tautology, "{sql}");
        assert_eq!(
            c.statements[0],
            classify_now(sql).unwrap().statements[0],
            "{sql}"
        );
    }
}

#[test]
fn shape_keys_ignore_literals_only() {
    let a = shape_key("SELECT abalance FROM pgbench_accounts WHERE aid = 1").unwrap();
    let b = shape_key("SELECT abalance FROM pgbench_accounts WHERE aid = 999999").unwrap();
    let c = shape_key("SELECT abalance FROM pgbench_accounts WHERE bid = 1").unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(
        shape_key("SELECT 'x' -- c\n").unwrap(),
        shape_key("SELECT x").unwrap()
    );
    assert_eq!(
        shape_key("SELECT 'a' /* c */").unwrap(),
        shape_key("SELECT $$b$$").unwrap()
    );
    assert!(
        !classify_now("SELECT abalance FROM pgbench_accounts WHERE aid = 1")
            .unwrap()
            .literal_sensitive
    );
    // UESCAPE's string decides what a U& identifier is: no shape is shared.
    for sql in [
        r#"SELECT v FROM U&"!0073ecret" UESCAPE '!'"#,
        r#"SELECT v FROM U&"!0073ecret" uEsCaPe '#'"#,
        "SELECT v FROM U&\"!0073ecret\"\nUESCAPE /* c */ '!'",
    ] {
        assert_eq!(shape_key(sql), None, "{sql}");
    }
    assert!(shape_key("SELECT uescaped FROM t").is_none());
    // A number and a string are different values to the walker (casts): never one shape.
    assert_ne!(
        shape_key("SELECT '(x)'::mytype"),
        shape_key("SELECT 7::mytype")
    );
    assert_ne!(
        shape_key("SELECT '(x)'::mytype /* c */"),
        shape_key("SELECT 7::mytype /* c */")
    );
    assert_ne!(
        shape_key("SELECT B'1'::t /* c */"),
        shape_key("SELECT '1'::t /* c */")
    );
    assert!(shape_key("SELECT escape FROM t").is_some());
}

#[test]
fn sql_prepared_statement_names_are_facts_and_part_of_the_shape() {
    assert_eq!(
        one("PREPARE pu AS UPDATE t SET a = $1").prepares,
        set(&["pu"])
    );
    assert_eq!(one("EXECUTE pu(1, 'x')").executes, set(&["pu"]));
    assert_eq!(
        one("EXPLAIN ANALYZE EXECUTE \"Pu\"(1)").executes,
        set(&["Pu"])
    );
    // A name is not a literal: statements naming another prepared statement never
    // share a cached decision.
    assert_ne!(shape_key("EXECUTE pu(1)"), shape_key("EXECUTE pv(1)"));
    assert_eq!(shape_key("EXECUTE pu(1)"), shape_key("EXECUTE pu(2)"));
}

#[test]
fn operators_and_casts_are_recorded() {
    let f = one(
        "SELECT <~<~ 'x', a OPERATOR(public.===) b, 'v'::sneaky, CAST(1 AS mytype), a::other, NULL::nul FROM t",
    );
    assert!(f.operators.contains("<~<~"), "{:?}", f.operators);
    assert!(f.operators.contains("public.==="), "{:?}", f.operators);
    // A value's cast may run a CREATE CAST function (a number is a typed value too);
    // a string literal's or NULL's only a domain's checks.
    assert_eq!(
        f.type_casts.iter().map(String::as_str).collect::<Vec<_>>(),
        ["mytype", "other"]
    );
    assert_eq!(
        f.literal_types
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["nul", "sneaky"]
    );
}

#[test]
fn pg_settings_updates_name_their_setting() {
    // A literal name in the WHERE is the setting; harmless ones are just settings.
    for (sql, names) in [
        (
            "UPDATE pg_settings SET setting = '64MB' WHERE name = 'work_mem'",
            &["work_mem"][..],
        ),
        (
            "UPDATE pg_catalog.pg_settings s SET setting = '1' WHERE s.name = 'work_mem' AND true",
            &["work_mem"],
        ),
        (
            "UPDATE pg_settings SET setting = '1' WHERE 'statement_timeout' = name",
            &["statement_timeout"],
        ),
        (
            "UPDATE pg_settings SET setting = '1' WHERE name IN ('work_mem', 'Extra_Float_Digits')",
            &["work_mem", "extra_float_digits"],
        ),
        (
            "UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem' OR name = 'role'",
            &["work_mem", "role"],
        ),
    ] {
        let f = one(sql);
        assert_eq!(f.settings, set(names), "{sql}");
        assert!(f.rereads_sql.is_none(), "{sql}");
    }
    assert!(
        !one("UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'")
            .kinds
            .contains(&Kind::SetRole)
    );
    // Parser settings, role, and names pgmoat cannot read stay refused or `*`.
    for sql in [
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
        "UPDATE pg_settings SET setting = 'LATIN1' WHERE name = 'client_encoding'",
        "UPDATE pg_settings SET setting = 'on' WHERE name = 'backslash_quote'",
        "UPDATE pg_settings SET setting = 'x' WHERE name = 'work_mem' OR true",
        "UPDATE pg_settings SET setting = 'x' WHERE name LIKE 'standard%'",
        "UPDATE pg_settings SET setting = 'x' WHERE name = current_user",
        "UPDATE pg_settings SET setting = 'x'",
        "UPDATE pg_settings s SET setting = 'x' FROM pg_settings o WHERE o.name = 'work_mem'",
    ] {
        assert!(one(sql).rereads_sql.is_some(), "{sql}");
    }
    assert!(
        one("UPDATE pg_settings SET setting = 'x' WHERE name = current_user")
            .kinds
            .contains(&Kind::SetRole)
    );
    // The name is a literal the facts depend on: not reused for another name.
    let c = classify_now("UPDATE pg_settings SET setting = '1' WHERE name = 'work_mem'").unwrap();
    assert!(c.literal_sensitive);
}

#[test]
fn merge_that_matches_every_row_is_unbounded() {
    for sql in [
        "MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN UPDATE SET a = 1",
        "MERGE INTO t USING (SELECT 1 AS x) s ON s.x = 1 WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON true WHEN MATCHED AND s.x = 1 THEN DELETE",
    ] {
        let f = one(sql);
        assert!(f.where_.missing, "{sql}: {:?}", f.where_);
    }
    for sql in [
        "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON s.id = t.id WHEN MATCHED THEN UPDATE SET a = s.a",
        "MERGE INTO public.t AS x USING t s ON x.id = s.id AND x.k = s.k WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON t.id IS NOT DISTINCT FROM s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT * FROM t) s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT id FROM t) s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON t.id = t.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON t.id = s.id OR true WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED AND t.id = t.id THEN DELETE",
    ] {
        let f = one(sql);
        assert!(
            f.where_.tautology || f.where_.missing,
            "{sql}: {:?}",
            f.where_
        );
        assert!(f.where_.applies, "{sql}");
    }
    // A condition that narrows the target bounds the write.
    for sql in [
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON t.id = s.id + 1 WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT id + 1 AS id FROM t) s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT id FROM t WHERE id < 3) s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON t.id = s.id AND t.id = 7 WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED AND t.id = 7 THEN DELETE",
        "MERGE INTO t USING s ON true WHEN MATCHED AND t.id = 7 THEN UPDATE SET a = 1",
        "MERGE INTO t USING s ON false WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON t.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id)",
        "MERGE INTO t USING s ON true WHEN NOT MATCHED THEN INSERT VALUES (1)",
    ] {
        let f = one(sql);
        assert!(!f.where_.tautology && !f.where_.missing, "{sql}: {:?}", f.where_);
    }
    assert!(
        classify_now("MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN DELETE")
            .unwrap()
            .literal_sensitive
    );
}

#[test]
fn two_phase_commands_are_told_apart() {
    for (sql, want) in [
        ("PREPARE TRANSACTION 'g1'", true),
        ("COMMIT PREPARED 'g1'", true),
        ("ROLLBACK PREPARED 'g1'", true),
        ("COMMIT", false),
        ("BEGIN", false),
        ("ROLLBACK", false),
        ("SAVEPOINT s", false),
    ] {
        assert_eq!(one(sql).two_phase, want, "{sql}");
    }
}

#[test]
fn foreign_tables_with_inherited_columns_reach_the_whole_remote_table() {
    // Review s36 Y5: no column is listed, so every column of the named table may be read.
    for sql in [
        "CREATE FOREIGN TABLE fpi () INHERITS (pshape) SERVER loop OPTIONS (table_name 'people')",
        "CREATE FOREIGN TABLE fpz PARTITION OF pz FOR VALUES IN (1) SERVER loop \
         OPTIONS (table_name 'people')",
    ] {
        assert!(
            one(sql).columns.contains("people.*"),
            "{sql}: {:?}",
            one(sql).columns
        );
    }
    let listed = one(
        "CREATE FOREIGN TABLE fp (x text OPTIONS (column_name 'ssn')) SERVER loop \
         OPTIONS (table_name 'people')",
    );
    assert!(
        listed.columns.contains("people.ssn"),
        "{:?}",
        listed.columns
    );
}
