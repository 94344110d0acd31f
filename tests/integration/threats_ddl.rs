//! Review s35 (DDL and names pgmoat did not see): a function named as a string in a
//! DDL option, DDL run by a function body or a DO block, schemas renamed and tables
//! moved between schemas, foreign tables' options, and relations named as strings.
//! Each case is refused (42501, naming the rule or mask) before it reaches the
//! server, or masked, for the identity the rule or mask is for.

use tokio_postgres::Client;

use crate::harness::*;
use crate::masking::{fixture, Fixture};

/// A gateway with these rules (YAML), for the standard agent (no masks).
async fn with_rules(text: &str) -> (TestGateway, TempDir) {
    let dir = TempDir::new("pgmoat-ddl-rules");
    std::fs::write(dir.path().join("rules.yaml"), text).unwrap();
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    (gw, dir)
}

/// Refused with 42501 by `rule` (its id in the message).
async fn refused_by(c: &Client, sql: &str, rule: &str) {
    let e = c.simple_query(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains(rule), "{sql}: {msg}");
}

async fn count(direct: &Client, sql: &str) -> i64 {
    direct.query_one(sql, &[]).await.unwrap().get(0)
}

/// F1: `FUNCTION = 'pg_read_file'` names the function as a string; Postgres takes it
/// whole, so pgmoat counts it as written (and in a body, and in every DDL form that
/// takes function-valued options).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f1_a_function_named_as_a_string_is_that_function() {
    let (gw, _dir) = with_rules(
        "rules:\n  - id: no-file-read\n    when: { functions: [pg_read_file] }\n    action: block\n",
    )
    .await;
    let pg = crate::common::pg::shared();
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let s = unique("f1s");
    direct
        .batch_execute(&format!("CREATE SCHEMA {s}"))
        .await
        .unwrap();
    let c = gw.connect().await;
    for sql in [
        format!("CREATE OPERATOR {s}.#@# (FUNCTION = 'pg_read_file', RIGHTARG = text); SELECT OPERATOR({s}.#@#) 'PG_VERSION'"),
        format!("CREATE OPERATOR {s}.#@# (FUNCTION = 'pg_catalog.pg_read_file', RIGHTARG = text)"),
        format!(
            "CREATE AGGREGATE {s}.ragg(int8, int8) (SFUNC = 'pg_read_file', STYPE = text, \
             INITCOND = 'PG_VERSION')"
        ),
        format!(
            "CREATE FUNCTION {s}.mk() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN \
             CREATE OPERATOR {s}.!#! (FUNCTION = 'pg_read_file', RIGHTARG = text); END $b$"
        ),
        format!("ALTER OPERATOR {s}.=== (int4, int4) SET (RESTRICT = 'pg_read_file')"),
        format!(
            "CREATE AGGREGATE {s}.ragg1(int8, int8) (SFUNC1 = pg_read_file, STYPE1 = text, \
             INITCOND1 = 'PG_VERSION')"
        ),
        format!("CREATE TYPE {s}.rng AS RANGE (SUBTYPE = text, CANONICAL = 'pg_read_file')"),
    ] {
        refused_by(&c, &sql, "no-file-read").await;
    }
    let made = count(
        &direct,
        &format!(
            "SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace \
             WHERE n.nspname = '{s}'"
        ),
    )
    .await;
    assert_eq!(made, 0, "no operator was made");
    // A string naming another function is that function, and allowed.
    c.batch_execute(&format!(
        "CREATE OPERATOR {s}.#@# (FUNCTION = 'upper', RIGHTARG = text)"
    ))
    .await
    .unwrap();
    direct
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
}

/// An extra mask for a schema-qualified table `hr.sal` (column `v`).
fn hr_mask(hr: &str) -> String {
    format!(
        "  - id: hr-pay
    columns: [{hr}.sal.v]
    method: redact
    unless: {{ groups: [dba] }}
"
    )
}

/// Set up `hr.sal(v)` and a clean `{t}_clean(a)`, directly.
async fn hr_tables(f: &Fixture, hr: &str) {
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE SCHEMA {hr}; CREATE TABLE {hr}.sal (v text);
             INSERT INTO {hr}.sal VALUES ('123-45-6789');
             CREATE TABLE {{t}}_clean (a text); INSERT INTO {{t}}_clean VALUES ('plain');"
        )))
        .await
        .unwrap();
}

/// F3, F4, F5 for an identity with masks: DDL that renames a masked column or
/// table, renames the schema holding one, or moves it to another schema, is refused
/// wherever it runs: at the top level, in a DO block, in a function body (when the
/// function is made and when a function made behind pgmoat's back is called).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f3_f4_f5_ddl_that_unmasks_is_refused_in_bodies_and_do_blocks() {
    let hr = unique("hr");
    let f = fixture(&hr_mask(&hr)).await;
    hr_tables(&f, &hr).await;
    let s = |sql: &str| f.sql(&sql.replace("{hr}", &hr));
    // Functions made directly (a DBA's, or made before pgmoat ran): known from the
    // catalog only.
    f.direct
        .batch_execute(&s(
            "CREATE FUNCTION {t}_mk3() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN
               ALTER TABLE {t} RENAME COLUMN ssn TO zz; END $b$;
             CREATE FUNCTION {t}_mk4() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN
               ALTER SCHEMA {hr} RENAME TO {hr}9; END $b$;
             CREATE FUNCTION {t}_mk5() RETURNS void LANGUAGE sql AS
               'ALTER TABLE {hr}.sal SET SCHEMA public';",
        ))
        .await
        .unwrap();
    let c = f.agent().await;
    for sql in [
        "SELECT {t}_mk3()",
        "SELECT {t}_mk4()",
        "SELECT {t}_mk5()",
        "DO $b$ BEGIN ALTER TABLE {t} RENAME COLUMN ssn TO zz; END $b$",
        "DO $b$ BEGIN ALTER TABLE {t} RENAME TO {t}_gone; END $b$",
        "DO $b$ BEGIN ALTER SCHEMA {hr} RENAME TO {hr}9; END $b$",
        "CREATE FUNCTION {t}_mk6() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN
           ALTER TABLE {t} RENAME COLUMN ssn TO zz; END $b$",
        "ALTER SCHEMA {hr} RENAME TO {hr}3",
        "ALTER TABLE {hr}.sal SET SCHEMA public",
        "DO $b$ BEGIN ALTER TABLE {hr}.sal SET SCHEMA public; END $b$",
    ] {
        f.blocked_by_mask(&c, &s(sql)).await;
    }
    // Nothing changed on the server, and the values are still masked.
    let n = count(
        &f.direct,
        &f.sql(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = '{t}' AND column_name = 'ssn'",
        ),
    )
    .await;
    assert_eq!(n, 1, "ssn is still there");
    f.check(&c, "SELECT * FROM {t}").await;
    let got = f.check(&c, &s("SELECT v FROM {hr}.sal")).await;
    assert_ne!(got, vec![vec![Some("123-45-6789".to_string())]]);
    // DDL of a table without masked columns is not refused, in a DO block either.
    c.batch_execute(&f.sql("DO $b$ BEGIN ALTER TABLE {t}_clean RENAME COLUMN a TO b; END $b$"))
        .await
        .unwrap();
    let got = f.check(&c, "SELECT b FROM {t}_clean").await;
    assert_eq!(got, vec![vec![Some("plain".to_string())]]);
    f.direct
        .batch_execute(&s("DROP SCHEMA {hr} CASCADE"))
        .await
        .unwrap();
}

/// F2: DDL a function body runs is what a call of it does. Here the body makes an
/// operator over a function that reads a masked column: before, the call counted as
/// a plain read (the CREATE was taken for the CREATE FUNCTION around the body), the
/// catalog was not read again, and the new operator (unknown to it) returned SSNs
/// unmasked. Now the call is followed like DDL that keeps what it reads: refused for
/// the identity with masks. A body making an operator over a clean function runs,
/// and the catalog is read again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f2_ddl_in_a_called_function_is_followed_like_ddl() {
    let f = fixture("").await;
    f.direct
        .batch_execute(&f.sql(
            "CREATE SCHEMA {t}_o;
             CREATE FUNCTION {t}_mkop() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN
               CREATE OPERATOR {t}_o.### (FUNCTION = {t}_ssn, RIGHTARG = int); END $b$;
             CREATE FUNCTION {t}_mkup() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN
               CREATE OPERATOR {t}_o.#+# (FUNCTION = upper, RIGHTARG = text); END $b$;",
        ))
        .await
        .unwrap();
    let c = f.agent().await;
    f.blocked_by_mask(&c, "SELECT {t}_mkop()").await;
    let made = count(
        &f.direct,
        &f.sql(
            "SELECT count(*) FROM pg_operator o JOIN pg_namespace n ON n.oid = o.oprnamespace
             WHERE n.nspname = '{t}_o'",
        ),
    )
    .await;
    assert_eq!(made, 0, "the operator was not made");
    c.batch_execute(&f.sql("SELECT {t}_mkup()")).await.unwrap();
    let got = f.check(&c, "SELECT OPERATOR({t}_o.#+#) 'abc'").await;
    assert_eq!(got, vec![vec![Some("ABC".to_string())]]);
    f.direct
        .batch_execute(&f.sql("DROP SCHEMA {t}_o CASCADE"))
        .await
        .unwrap();
}

/// F4 (rules-only): renaming a schema changes the name of every relation in it, so
/// a rule on `schema.*` or `schema.table` matches the rename (at the top level and
/// in a function body); the schema is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f4_renaming_a_schema_matches_its_tables_rules() {
    let hr = unique("hr");
    let other = unique("sch");
    let (gw, _dir) = with_rules(&format!(
        "rules:
  - id: hr-private
    when: {{ tables: [\"{hr}.*\"] }}
    action: block
  - id: no-secret2
    when: {{ tables: [{other}.secret2] }}
    action: block
"
    ))
    .await;
    let pg = crate::common::pg::shared();
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE SCHEMA {hr}; CREATE TABLE {hr}.salaries (v text);
             CREATE SCHEMA {other}; CREATE TABLE {other}.secret2 (v text);"
        ))
        .await
        .unwrap();
    let c = gw.connect().await;
    refused_by(
        &c,
        &format!("ALTER SCHEMA {hr} RENAME TO {hr}_2"),
        "hr-private",
    )
    .await;
    refused_by(
        &c,
        &format!("ALTER SCHEMA {other} RENAME TO {other}_2"),
        "no-secret2",
    )
    .await;
    refused_by(
        &c,
        &format!(
            "CREATE FUNCTION {other}_mk() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN \
             ALTER SCHEMA {hr} RENAME TO {hr}_2; END $b$"
        ),
        "hr-private",
    )
    .await;
    refused_by(
        &c,
        &format!("DO $b$ BEGIN ALTER SCHEMA {other} RENAME TO {other}_2; END $b$"),
        "no-secret2",
    )
    .await;
    let left = count(
        &direct,
        &format!("SELECT count(*) FROM pg_namespace WHERE nspname IN ('{hr}', '{other}')"),
    )
    .await;
    assert_eq!(left, 2, "both schemas keep their names");
    direct
        .batch_execute(&format!(
            "DROP SCHEMA {hr} CASCADE; DROP SCHEMA {other} CASCADE"
        ))
        .await
        .unwrap();
}

/// F6 (rules-only): a foreign table's options name its source as strings: `program`
/// counts as COPY ... PROGRAM, `filename` as COPY from a server file, and
/// `schema_name`/`table_name` (and IMPORT FOREIGN SCHEMA) as the relation named. The
/// server `nosuch` does not exist: an allowed statement would fail on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_foreign_table_options_count_as_what_they_name() {
    let secret = unique("secret");
    let (gw, _dir) = with_rules(&format!(
        "rules:
  - id: no-copy-server
    when: {{ copy: [program, file] }}
    action: block
  - id: no-secret
    when: {{ tables: [{secret}] }}
    action: block
"
    ))
    .await;
    let c = gw.connect().await;
    let ft = unique("ft");
    for (sql, rule) in [
        (
            format!("CREATE FOREIGN TABLE {ft} (line text) SERVER nosuch OPTIONS (program 'id')"),
            "no-copy-server",
        ),
        (
            format!(
                "CREATE FOREIGN TABLE {ft} (line text) SERVER nosuch \
                 OPTIONS (filename '/etc/passwd')"
            ),
            "no-copy-server",
        ),
        (
            format!("ALTER FOREIGN TABLE {ft} OPTIONS (SET program 'id')"),
            "no-copy-server",
        ),
        (
            format!(
                "CREATE FOREIGN TABLE {ft} (v text) SERVER nosuch \
                 OPTIONS (schema_name 'public', table_name '{secret}')"
            ),
            "no-secret",
        ),
        (
            format!(
                "CREATE FOREIGN TABLE {ft} (v text) SERVER nosuch OPTIONS (table_name '{secret}')"
            ),
            "no-secret",
        ),
        (
            format!("ALTER FOREIGN TABLE {ft} OPTIONS (ADD table_name '{secret}')"),
            "no-secret",
        ),
        (
            format!("IMPORT FOREIGN SCHEMA public FROM SERVER nosuch INTO {ft}"),
            "no-secret",
        ),
    ] {
        refused_by(&c, &sql, rule).await;
    }
    // A foreign table over another table is judged by the rules as before: the
    // server refuses it (no such server), pgmoat does not.
    let e = c
        .simple_query(&format!(
            "CREATE FOREIGN TABLE {ft} (v text) SERVER nosuch OPTIONS (table_name 'other')"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
}

/// F6 for an identity with masks: a foreign table can read any relation under a name
/// no mask names, so making one (or changing its options) is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_masked_identities_cannot_make_foreign_tables() {
    let f = fixture("").await;
    let c = f.agent().await;
    for sql in [
        "CREATE FOREIGN TABLE {t}_f (id int, name text, ssn text) SERVER nosuch \
         OPTIONS (schema_name 'public', table_name '{t}')",
        "IMPORT FOREIGN SCHEMA public FROM SERVER nosuch INTO public",
        "ALTER FOREIGN TABLE {t}_f OPTIONS (SET table_name '{t}')",
        "DO $b$ BEGIN CREATE FOREIGN TABLE {t}_f (v text) SERVER nosuch \
         OPTIONS (table_name '{t}'); END $b$",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
}

/// F7 (rules-only): functions that read a table, schema or database named as a
/// string (and dblink, which runs SQL given as text) cannot be judged: refused
/// unless a rule allows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f7_relations_named_as_strings_fail_closed() {
    let secret = unique("secret");
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: no-secret\n    when: {{ tables: [{secret}] }}\n    action: block\n"
    ))
    .await;
    let pg = crate::common::pg::shared();
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {secret} (v text); INSERT INTO {secret} VALUES ('TOPSECRET')"
        ))
        .await
        .unwrap();
    let c = gw.connect().await;
    for sql in [
        format!("SELECT table_to_xml('{secret}', true, false, '')"),
        format!("SELECT table_to_xml_and_xmlschema('{secret}', true, false, '')"),
        "SELECT schema_to_xml('public', true, false, '')".to_string(),
        "SELECT database_to_xml(true, false, '')::text ~ 'TOPSECRET'".to_string(),
        format!("SELECT * FROM dblink('dbname=demo', 'select v from {secret}') AS t(v text)"),
    ] {
        refused_by(&c, &sql, "unanalysable").await;
    }
    // The table itself is refused by its rule, as before.
    refused_by(&c, &format!("SELECT * FROM {secret}"), "no-secret").await;
    direct
        .batch_execute(&format!("DROP TABLE {secret}"))
        .await
        .unwrap();
}

/// F8 (rules-only): a `columns:` rule is not dodged by renaming the column, by a
/// whole-row reference or by a column alias list; other columns stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f8_columns_rules_see_renames_whole_rows_and_alias_lists() {
    let p = unique("people");
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: no-ssn-col\n    when: {{ columns: [{p}.ssn] }}\n    action: block\n"
    ))
    .await;
    let pg = crate::common::pg::shared();
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {p} (id int, name text, ssn text);
             INSERT INTO {p} VALUES (1, 'ann', '123-45-6789')"
        ))
        .await
        .unwrap();
    let c = gw.connect().await;
    for sql in [
        format!("SELECT ssn FROM {p}"),
        format!("ALTER TABLE {p} RENAME COLUMN ssn TO zz"),
        format!("ALTER TABLE {p} ALTER COLUMN ssn TYPE varchar(20)"),
        format!("SELECT x FROM {p} x"),
        format!("SELECT row_to_json({p}) FROM {p}"),
        format!("SELECT t.c FROM {p} AS t(a, b, c)"),
    ] {
        refused_by(&c, &sql, "no-ssn-col").await;
    }
    let rows = c
        .simple_query(&format!("SELECT name FROM {p}"))
        .await
        .unwrap();
    assert!(rows.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("ann"))
    ));
    let kept = count(
        &direct,
        &format!(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = '{p}' AND column_name = 'ssn'"
        ),
    )
    .await;
    assert_eq!(kept, 1, "the column keeps its name");
    direct
        .batch_execute(&format!("DROP TABLE {p}"))
        .await
        .unwrap();
}

/// F6, reading: a foreign table made behind pgmoat's back (by a superuser) reads
/// what its options name, here a program printing an SSN: masked whole for the
/// identity with masks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f6_foreign_tables_are_masked_whole() {
    let f = fixture("").await;
    let su =
        f.pg.connect(&f.pg.superuser, &f.pg.password, "demo")
            .await
            .unwrap();
    su.batch_execute(&f.sql(&format!(
        "CREATE EXTENSION IF NOT EXISTS file_fdw;
         CREATE SERVER {{t}}_fs FOREIGN DATA WRAPPER file_fdw;
         CREATE FOREIGN TABLE {{t}}_f (line text) SERVER {{t}}_fs
           OPTIONS (program 'echo 123-45-6789');
         GRANT SELECT ON {{t}}_f TO {APP_ROLE};"
    )))
    .await
    .unwrap();
    let c = f.agent().await;
    let got = f.check(&c, "SELECT line FROM {t}_f").await;
    assert_eq!(got.len(), 1);
    su.batch_execute(&f.sql("DROP SERVER {t}_fs CASCADE"))
        .await
        .unwrap();
}

/// Review s35-shape (side finding): a PL/pgSQL function that FETCHes from a cursor it
/// did not open reads whatever portal the name it is given names: the caller's
/// `DECLARE c CURSOR FOR SELECT ssn ...`, then `SELECT f('c')`, returned the raw SSN
/// past the masks. Such a body is unanalysable: the call is refused, as is making
/// one through pgmoat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_cannot_fetch_from_the_callers_cursor() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    // Made behind pgmoat's back before it starts, so its catalog holds the body.
    let fetch = unique("fetch_from");
    direct
        .batch_execute(&format!(
            "CREATE FUNCTION {fetch}(c refcursor) RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE v text; BEGIN FETCH c INTO v; RETURN v; END $$;
             CREATE FUNCTION {fetch}_dead(c refcursor) RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE v text; BEGIN IF false THEN OPEN c FOR SELECT 1; END IF; \
             FETCH c INTO v; RETURN v; END $$"
        ))
        .await
        .unwrap();
    let f = fixture("").await;
    let c = f.agent().await;
    let sql = f.sql(&format!(
        "BEGIN; DECLARE cur CURSOR FOR SELECT ssn FROM {{t}}; SELECT {fetch}('cur'); COMMIT"
    ));
    let got = c.simple_query(&sql).await;
    let e = got.expect_err("the call is refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    f.assert_clean("the refusal", &format!("{e:?}"));
    c.batch_execute("ROLLBACK").await.unwrap();
    // An OPEN that never runs does not make it the body's own cursor (review X1).
    let sql = f.sql(&format!(
        "BEGIN; DECLARE cur CURSOR FOR SELECT ssn FROM {{t}}; SELECT {fetch}_dead('cur'); COMMIT"
    ));
    let e = c.simple_query(&sql).await.expect_err("refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    f.assert_clean("the refusal", &format!("{e:?}"));
    c.batch_execute("ROLLBACK").await.unwrap();
    // A cursor the body opens itself.
    let own = unique("fetch_own");
    direct
        .batch_execute(&f.sql(&format!(
            "CREATE FUNCTION {own}() RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE c refcursor; v text; BEGIN OPEN c FOR SELECT ssn FROM {{t}}; \
             FETCH c INTO v; RETURN v; END $$"
        )))
        .await
        .unwrap();
    // Made after pgmoat read its catalog: whatever comes back holds no secret.
    match c.simple_query(&format!("SELECT {own}()")).await {
        Ok(msgs) => f.assert_clean("a body's own cursor", &format!("{msgs:?}")),
        Err(e) => f.assert_clean("a body's own cursor", &format!("{e:?}")),
    }
    // Making the reading kind through pgmoat is refused too; nothing is made.
    let made = unique("fetch_made");
    let e = c
        .batch_execute(&format!(
            "CREATE FUNCTION {made}(c refcursor) RETURNS text LANGUAGE plpgsql AS $$ \
             DECLARE v text; BEGIN FETCH c INTO v; RETURN v; END $$"
        ))
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let n = count(
        &direct,
        &format!("SELECT count(*) FROM pg_proc WHERE proname = '{made}'"),
    )
    .await;
    assert_eq!(n, 0, "no function was made");
    direct
        .batch_execute(&format!(
            "DROP FUNCTION {fetch}(refcursor); DROP FUNCTION {fetch}_dead(refcursor); \
             DROP FUNCTION {own}()"
        ))
        .await
        .unwrap();
}
