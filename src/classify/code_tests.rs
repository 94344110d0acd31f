//! Issue 18, classes 2 and 3: code libpg_query's PL/pgSQL output leaves out, and ALTER
//! sub-commands that drop.

use super::*;

fn one(sql: &str) -> Facts {
    let c = classify_now(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(c.statements.len(), 1, "{sql}");
    c.statements.into_iter().next().unwrap()
}

/// Every place of a PL/pgSQL body that holds an expression: `{E}` is one.
const PLACES: &[&str] = &[
    "DECLARE v text := ({E})::text; BEGIN RAISE NOTICE '%', v; END",
    "DECLARE v text DEFAULT ({E})::text; BEGIN NULL; END",
    "DECLARE v CONSTANT text NOT NULL = ({E})::text; BEGIN NULL; END",
    "DECLARE r record := row(({E})::text); BEGIN RAISE NOTICE '%', r; END",
    "DECLARE r users := (SELECT u FROM users u WHERE ({E}) IS NULL); BEGIN NULL; END",
    "DECLARE r users%ROWTYPE; q record DEFAULT (SELECT x FROM t WHERE ({E}) IS NULL); BEGIN NULL; END",
    "DECLARE c CURSOR FOR SELECT ({E}); BEGIN OPEN c; END",
    "DECLARE c CURSOR (a text) FOR SELECT a; BEGIN OPEN c(({E})::text); END",
    "DECLARE c CURSOR (a text) FOR SELECT a; BEGIN FOR r IN c(({E})::text) LOOP END LOOP; END",
    "DECLARE c refcursor; BEGIN OPEN c FOR SELECT ({E}); END",
    "DECLARE r record; BEGIN FOR r IN SELECT ({E}) AS x LOOP NULL; END LOOP; END",
    "DECLARE x text; BEGIN FOREACH x IN ARRAY ARRAY[({E})::text] LOOP NULL; END LOOP; END",
    "BEGIN FOR i IN 1..length(({E})::text) LOOP EXIT WHEN i > 1; END LOOP; END",
    "BEGIN WHILE ({E}) IS NULL LOOP EXIT; END LOOP; END",
    "BEGIN IF ({E}) IS NULL THEN NULL; ELSIF ({E}) IS NULL THEN NULL; END IF; END",
    "BEGIN CASE ({E})::text WHEN '-' THEN NULL; ELSE NULL; END CASE; END",
    "BEGIN CASE WHEN ({E}) IS NULL THEN NULL; END CASE; END",
    "BEGIN RAISE NOTICE 'x' USING DETAIL = ({E})::text; END",
    "BEGIN RAISE NOTICE '%', ({E})::text; END",
    "BEGIN ASSERT ({E}) IS NOT NULL, ({E})::text; END",
    "BEGIN PERFORM ({E}); END",
    "BEGIN CALL p(({E})::text); END",
    "DECLARE n int; BEGIN PERFORM 1; GET DIAGNOSTICS n = ROW_COUNT; n := length(({E})::text); END",
    "BEGIN PERFORM 1/0; EXCEPTION WHEN others THEN PERFORM ({E}); END",
    "<<a>> DECLARE x int := 1; BEGIN <<b>> DECLARE v text := ({E})::text; BEGIN NULL; END b; END a",
    "DECLARE /* ; */ x text := ';' || ({E})::text -- ;\n; BEGIN NULL; END",
    "DECLARE DECLARE x text := ({E})::text; BEGIN NULL; END",
];

fn hidden(body: &str) -> Vec<String> {
    let dollar = |b: &str| format!("$body$ {b} $body$");
    vec![
        format!("DO {}", dollar(body)),
        format!(
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS {}",
            dollar(body)
        ),
        format!("CREATE PROCEDURE pr() LANGUAGE plpgsql AS {}", dollar(body)),
    ]
}

#[test]
fn every_place_of_a_plpgsql_body_is_read() {
    for place in PLACES {
        let body = place.replace("{E}", "pg_read_file('x')");
        for sql in hidden(&body) {
            let f = one(&sql);
            assert!(f.unanalysable.is_none(), "{sql}: {:?}", f.unanalysable);
            assert!(f.functions.contains("pg_read_file"), "{sql}: {f:?}");
        }
        // A trigger function reads the same.
        let trigger = format!(
            "CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS $b$ {} $b$",
            place.replace("{E}", "pg_read_file('x')")
        );
        let f = one(&trigger);
        assert!(f.unanalysable.is_none(), "{trigger}: {:?}", f.unanalysable);
        assert!(f.functions.contains("pg_read_file"), "{trigger}: {f:?}");
    }
}

#[test]
fn record_defaults_carry_their_statement_facts() {
    let f = one("DO $$ DECLARE r record := (SELECT ssn FROM users LIMIT 1); BEGIN END $$");
    assert!(f.tables_read.contains("public.users"), "{f:?}");
    assert!(f.columns.contains("users.ssn"), "{f:?}");
    let f = one("DO $$ DECLARE r record := row(set_config('role', 'x', false)); BEGIN END $$");
    assert!(f.kinds.contains(&Kind::SetRole), "{f:?}");
    let f = one("DO $$ DECLARE r t := (SELECT t FROM t WHERE wipe() > 0); BEGIN END $$");
    assert!(f.functions.contains("wipe"), "{f:?}");
}

#[test]
fn trigger_functions_are_read_like_any_other() {
    for sql in [
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN NEW.updated_at := now(); IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
         RETURN NEW; END $$",
        "CREATE OR REPLACE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $function$
         DECLARE n int := TG_NARGS; BEGIN NEW.n := TG_ARGV[0]; RETURN NEW; END; -- done
         $function$",
        "CREATE FUNCTION ddl_log() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE NOTICE '% %', TG_EVENT, TG_TAG; END $$",
        "CREATE FUNCTION ddl_stop() RETURNS event_trigger LANGUAGE plpgsql AS $$
         BEGIN IF TG_TAG = 'DROP TABLE' THEN RETURN; END IF; RAISE NOTICE 'ok'; END $$",
        "CREATE FUNCTION t3() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF TG_LEVEL = 'STATEMENT' THEN RETURN NULL; END IF; RETURN NEW; END $$",
        "CREATE FUNCTION t2() RETURNS pg_catalog.trigger LANGUAGE plpgsql AS
         'BEGIN RETURN NULL; END;'",
    ] {
        let f = one(sql);
        assert!(f.unanalysable.is_none(), "{sql}: {:?}", f.unanalysable);
        assert!(
            f.functions.is_empty() || f.functions.contains("now"),
            "{sql}: {f:?}"
        );
    }
    let f = one("CREATE FUNCTION tg() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN DELETE FROM audit; RETURN NEW; END $$");
    assert!(f.kinds.contains(&Kind::Delete) && f.where_.missing, "{f:?}");
}

#[test]
fn dynamic_sql_in_every_form_is_unanalysable() {
    for body in [
        "BEGIN RETURN QUERY EXECUTE 'SELECT 1'; END",
        "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; END",
        "DECLARE r record; BEGIN FOR r IN EXECUTE format('SELECT %s', 1) LOOP END LOOP; END",
        "DECLARE x int; BEGIN EXECUTE 'SELECT 1' INTO x; END",
    ] {
        let sql = format!("CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$ {body} $$");
        assert!(one(&sql).unanalysable.is_some(), "{sql}");
    }
}

/// A FETCH reads whatever portal its cursor variable names when it runs: only a
/// cursor the body opens itself (and never sets otherwise) reads a query read here.
#[test]
fn a_fetch_from_a_cursor_the_body_did_not_open_is_unanalysable() {
    let fn_of = |args: &str, body: &str| {
        format!("CREATE FUNCTION f({args}) RETURNS text LANGUAGE plpgsql AS $$ {body} $$")
    };
    for (args, body) in [
        // The caller's cursor, by parameter or by a name in the body.
        (
            "c refcursor",
            "DECLARE v text; BEGIN FETCH c INTO v; RETURN v; END",
        ),
        (
            "",
            "DECLARE c refcursor := 'cc'; v text; BEGIN FETCH c INTO v; RETURN v; END",
        ),
        ("c refcursor", "BEGIN MOVE c; RETURN NULL; END"),
        // Opened, then pointed elsewhere.
        (
            "",
            "DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT 1; c := 'cc'; \
             FETCH c INTO v; RETURN v; END",
        ),
        (
            "",
            "DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT 1; SELECT 'cc' INTO c; \
             FETCH c INTO v; RETURN v; END",
        ),
        // An OPEN that may not run first (review s35-fixes X1): in a branch, after a
        // RETURN, or closed again; a bound cursor names the portal of its own name until
        // it is opened.
        (
            "c refcursor",
            "DECLARE v text; BEGIN IF false THEN OPEN c FOR SELECT 1; END IF; \
             FETCH c INTO v; RETURN v; END",
        ),
        (
            "c refcursor",
            "DECLARE v text; BEGIN FETCH c INTO v; RETURN v; OPEN c FOR SELECT 1; END",
        ),
        (
            "",
            "DECLARE c CURSOR FOR SELECT 1; v text; BEGIN FETCH c INTO v; RETURN v; END",
        ),
        (
            "",
            "DECLARE c CURSOR FOR SELECT 1; v text; BEGIN OPEN c; CLOSE c; FETCH c INTO v; \
             RETURN v; END",
        ),
        (
            "",
            "DECLARE c CURSOR FOR SELECT 1; v text; BEGIN LOOP OPEN c; EXIT; END LOOP; \
             FETCH c INTO v; RETURN v; END",
        ),
        // Another cursor opened, this one not.
        (
            "x refcursor",
            "DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT 1; FETCH x INTO v; RETURN v; END",
        ),
    ] {
        let sql = fn_of(args, body);
        assert!(one(&sql).unanalysable.is_some(), "{sql}");
    }
    for (args, body) in [
        (
            "",
            "DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT 1; FETCH c INTO v; RETURN v; END",
        ),
        (
            "",
            "DECLARE c CURSOR FOR SELECT 1; v text; BEGIN OPEN c; FETCH c INTO v; RETURN v; END",
        ),
        (
            "c refcursor",
            "DECLARE v text; BEGIN OPEN c FOR SELECT 2; MOVE c; FETCH c INTO v; RETURN v; END",
        ),
        // The usual loop over a bound cursor; a local refcursor without a default is
        // NULL until opened, so a FETCH before any OPEN fails rather than reads; a handler
        // after an OPEN that ran.
        (
            "",
            "DECLARE c CURSOR FOR SELECT 1; v text; BEGIN OPEN c; LOOP FETCH c INTO v; \
             EXIT WHEN NOT FOUND; END LOOP; CLOSE c; RETURN v; END",
        ),
        (
            "x bool",
            "DECLARE c refcursor; v text; BEGIN IF x THEN OPEN c FOR SELECT 1; END IF; \
             FETCH c INTO v; RETURN v; END",
        ),
        (
            "",
            "DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT 1; BEGIN FETCH c INTO v; \
             EXCEPTION WHEN others THEN FETCH c INTO v; END; RETURN v; END",
        ),
    ] {
        let sql = fn_of(args, body);
        let f = one(&sql);
        assert!(f.unanalysable.is_none(), "{sql}: {:?}", f.unanalysable);
    }
}

#[test]
fn alter_subcommands_that_drop_are_drop() {
    for sql in [
        "ALTER TABLE t DROP COLUMN c",
        "ALTER TABLE t ADD COLUMN z int, DROP CONSTRAINT k",
        "ALTER TABLE t ALTER COLUMN c DROP DEFAULT",
        "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
        "ALTER TABLE t ALTER COLUMN c DROP EXPRESSION",
        "ALTER TABLE t ALTER COLUMN c DROP IDENTITY IF EXISTS",
        "ALTER TABLE t NO INHERIT p",
        "ALTER TABLE t NOT OF",
        "ALTER TABLE t SET WITHOUT CLUSTER",
        "ALTER TABLE p DETACH PARTITION c",
        "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
        "ALTER TABLE p DETACH PARTITION c FINALIZE",
        "ALTER VIEW v ALTER COLUMN c DROP DEFAULT",
        "ALTER MATERIALIZED VIEW m SET WITHOUT CLUSTER",
        "ALTER FOREIGN TABLE f DROP COLUMN c",
        "ALTER FOREIGN TABLE f ALTER COLUMN c DROP NOT NULL",
        "ALTER FOREIGN TABLE f OPTIONS (DROP schema_name)",
        "ALTER FOREIGN TABLE f ALTER COLUMN c OPTIONS (DROP column_name)",
        "ALTER TYPE ty DROP ATTRIBUTE a",
        "ALTER DOMAIN d DROP CONSTRAINT k",
        "ALTER DOMAIN d DROP DEFAULT",
        "ALTER DOMAIN d DROP NOT NULL",
        "ALTER EXTENSION e DROP FUNCTION f()",
        "ALTER OPERATOR FAMILY f USING btree DROP OPERATOR 1 (int, int)",
        "ALTER TEXT SEARCH CONFIGURATION c DROP MAPPING FOR word",
        "ALTER PUBLICATION p DROP TABLE t",
        "ALTER PUBLICATION p SET TABLE t",
        "ALTER SUBSCRIPTION s DROP PUBLICATION p",
        "ALTER SUBSCRIPTION s SET PUBLICATION p",
        "ALTER GROUP g DROP USER u",
        "ALTER SERVER s OPTIONS (DROP host)",
        "ALTER FOREIGN DATA WRAPPER w OPTIONS (DROP x)",
        "ALTER USER MAPPING FOR u SERVER s OPTIONS (DROP password)",
    ] {
        let f = one(sql);
        assert!(f.kinds.contains(&Kind::Drop), "{sql}: {:?}", f.kinds);
    }
    for sql in [
        "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
        "ALTER TABLE t ADD COLUMN z int",
        "ALTER TABLE t RESET (fillfactor)",
        "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN (1)",
        "ALTER DOMAIN d SET DEFAULT 1",
        "ALTER DOMAIN d SET NOT NULL",
        "ALTER DOMAIN d ADD CONSTRAINT k CHECK (VALUE > 0)",
        "ALTER SEQUENCE s OWNED BY NONE",
        "ALTER SEQUENCE s NO MAXVALUE",
        "ALTER EXTENSION e ADD FUNCTION f()",
        "ALTER PUBLICATION p ADD TABLE t",
        "ALTER SUBSCRIPTION s ADD PUBLICATION p",
        "ALTER GROUP g ADD USER u",
        "ALTER ROLE r NOLOGIN",
        "ALTER ROLE r RESET work_mem",
        "ALTER FUNCTION f() RESET ALL",
        "ALTER SERVER s OPTIONS (ADD host 'h', SET port '5')",
        "ALTER POLICY p ON t USING (true)",
        "ALTER FUNCTION f() NO DEPENDS ON EXTENSION e",
    ] {
        let f = one(sql);
        assert!(!f.kinds.contains(&Kind::Drop), "{sql}: {:?}", f.kinds);
    }
    // Revoking is revoke, not drop.
    let f = one("ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM PUBLIC");
    assert!(
        f.kinds.contains(&Kind::Revoke) && !f.kinds.contains(&Kind::Drop),
        "{f:?}"
    );
}

#[test]
fn ordinary_functions_stay_analysable() {
    for sql in [
        "CREATE FUNCTION f(u users) RETURNS int LANGUAGE plpgsql AS $$
         DECLARE r users%ROWTYPE; n users.id%TYPE := u.id; BEGIN
           FOR r IN SELECT * FROM users LOOP n := n + r.id; END LOOP; RETURN n; END $$",
        "CREATE FUNCTION f(OUT a int, INOUT b text) LANGUAGE plpgsql AS $$
         BEGIN a := 1; b := b || 'x'; END $$",
        "CREATE FUNCTION f() RETURNS TABLE (id int, name text) LANGUAGE plpgsql AS $$
         BEGIN RETURN QUERY SELECT u.id, u.name FROM users u; END $$",
        "CREATE FUNCTION f() RETURNS SETOF users LANGUAGE plpgsql AS $$
         DECLARE r record; BEGIN FOR r IN SELECT * FROM users LOOP RETURN NEXT r; END LOOP; END $$",
        "CREATE FUNCTION f(int) RETURNS int LANGUAGE plpgsql AS $$
         DECLARE k ALIAS FOR $1; total int DEFAULT 0; BEGIN
           SELECT count(*) INTO STRICT total FROM users WHERE id > k; RETURN total;
         EXCEPTION WHEN no_data_found THEN RETURN 0; END $$",
        "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$
         DECLARE \"Mixed\" record; BEGIN SELECT 1 AS x INTO \"Mixed\"; COMMIT; END $$",
        "DO $$ DECLARE c CURSOR FOR SELECT id FROM users; BEGIN
           FOR r IN c LOOP RAISE NOTICE '%', r.id; END LOOP; END $$",
        "DO $$ #variable_conflict use_column
         DECLARE declared_at timestamptz := now(); BEGIN NULL; END $$",
    ] {
        let f = one(sql);
        assert!(f.unanalysable.is_none(), "{sql}: {:?}", f.unanalysable);
    }
}
