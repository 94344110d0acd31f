//! Cases from an adversarial review of the class H fixes (issue 18): code that keeps
//! masked values where masking never sees them again, and a function's own
//! search_path. Each is refused (or masked) for the identity with masks.

use crate::harness::*;
use crate::masking::{fixture, Fixture};

/// Rows of `table` as the server has them (read directly).
async fn count(f: &Fixture, table: &str) -> i64 {
    f.direct
        .query_one(&f.sql(&format!("SELECT count(*) FROM {table}")), &[])
        .await
        .unwrap()
        .get(0)
}

/// A function made in an earlier message (so the catalog, not the message, knows it)
/// that reads masked data, or is given it, and keeps it: a table, a notification, a
/// setting. And values kept by built-ins: a sequence, an advisory lock's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_that_keeps_masked_values_is_refused() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql(
        "CREATE TABLE {t}_kept (g text);
         CREATE FUNCTION {t}_keep() RETURNS void LANGUAGE sql
           AS 'INSERT INTO {t}_kept SELECT email FROM {t} WHERE id = 1';
         CREATE FUNCTION {t}_keep_arg(x text) RETURNS void LANGUAGE sql
           AS 'INSERT INTO {t}_kept VALUES (x)';
         CREATE FUNCTION {t}_notify() RETURNS void LANGUAGE plpgsql
           AS $$BEGIN PERFORM pg_notify('c', (SELECT email FROM {t} WHERE id = 1)); END$$;
         CREATE FUNCTION {t}_setting() RETURNS void LANGUAGE plpgsql AS $$
           DECLARE e text; BEGIN
             SELECT email INTO e FROM {t} WHERE id = 1; PERFORM set_config('x.y', e, false);
           END$$;
         CREATE TEMP SEQUENCE {t}_sq MAXVALUE 9999999999999",
    ))
    .await
    .unwrap();
    for sql in [
        "SELECT {t}_keep()",
        "SELECT {t}_keep_arg(ssn) FROM {t} WHERE id = 1",
        "SELECT {t}_notify()",
        "SELECT {t}_setting()",
        "SELECT setval('{t}_sq', translate(ssn, '-', '')::bigint) FROM {t} WHERE id = 1",
        "SELECT pg_advisory_lock(salary) FROM {t} WHERE id = 1",
        "SELECT pg_try_advisory_xact_lock(id, salary) FROM {t} WHERE id = 1",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    // Nothing was kept, and the setting holds nothing.
    let kept = count(&f, "{t}_kept").await;
    assert_eq!(kept, 0);
    let e = c.simple_query("SHOW x.y").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    // Clean values are kept as before.
    c.batch_execute(&f.sql("SELECT {t}_keep_arg('plain'); SELECT setval('{t}_sq', 7)"))
        .await
        .unwrap();
    let kept = count(&f, "{t}_kept").await;
    assert_eq!(kept, 1);
}

/// A function with its own `SET search_path` reads the names of its body from there,
/// not from where pgmoat would resolve them: what it returns is masked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_with_its_own_search_path_is_masked() {
    let f = fixture("").await;
    f.direct
        .batch_execute(&f.sql(
            "CREATE SCHEMA {t}_s;
             CREATE TABLE {t}_cc (note text); INSERT INTO {t}_cc VALUES ('clean');
             CREATE VIEW {t}_s.{t}_cc AS SELECT email AS note FROM {t};",
        ))
        .await
        .unwrap();
    let c = f.agent().await;
    c.batch_execute(&f.sql(
        "CREATE FUNCTION {t}_path() RETURNS SETOF text LANGUAGE sql
           SET search_path = {t}_s, public AS 'SELECT note FROM {t}_cc';
         CREATE FUNCTION {t}_path2() RETURNS SETOF text LANGUAGE plpgsql
           AS $$BEGIN RETURN QUERY SELECT note FROM {t}_cc; END$$;
         ALTER FUNCTION {t}_path2() SET search_path = {t}_s, public",
    ))
    .await
    .unwrap();
    for sql in [
        "SELECT * FROM {t}_path()",
        "SELECT {t}_path2()",
        "SELECT upper(x) FROM {t}_path() x",
    ] {
        let got = f.check(&c, sql).await;
        assert_eq!(got.len(), 3, "{sql}: every row of the view");
    }
    // Without a search_path of its own, the clean table is read, and not masked.
    c.batch_execute(&f.sql(
        "CREATE FUNCTION {t}_plain() RETURNS SETOF text LANGUAGE sql AS 'SELECT note FROM {t}_cc'",
    ))
    .await
    .unwrap();
    let got = f.check(&c, "SELECT * FROM {t}_plain()").await;
    assert_eq!(got, vec![vec![Some("clean".to_string())]]);
}

/// Code a table runs when it is written (defaults, generated columns, a domain's
/// default, triggers) that reads masked values launders them into its rows: refused
/// where it is installed, and a write to a table whose code installed behind pgmoat's
/// back reads them is refused. Clean defaults, checks and domains stay usable (no text
/// here: another test's user cast to text makes every cast to text uncertain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_a_write_runs_cannot_launder() {
    let f = fixture("").await;
    let c = f.agent().await;
    c.batch_execute(&f.sql(
        "CREATE TABLE {t}_w (id int, g text);
         CREATE FUNCTION {t}_def() RETURNS text LANGUAGE sql AS 'SELECT email FROM {t} WHERE id = 1';
         CREATE FUNCTION {t}_gen(i int) RETURNS text LANGUAGE sql IMMUTABLE
           AS 'SELECT email FROM {t} WHERE id = i';
         CREATE FUNCTION {t}_trg() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN NEW.g := (SELECT email FROM {t} WHERE id = NEW.id); RETURN NEW; END$$;",
    ))
    .await
    .unwrap();
    for sql in [
        "CREATE TABLE {t}_w2 (id int, g text DEFAULT {t}_def())",
        "ALTER TABLE {t}_w ALTER COLUMN g SET DEFAULT {t}_def()",
        "ALTER TABLE {t}_w ADD COLUMN h text DEFAULT {t}_def()",
        "CREATE DOMAIN {t}_d AS text DEFAULT {t}_def()",
        "CREATE TABLE {t}_w3 (id int, g text GENERATED ALWAYS AS ({t}_gen(id)) STORED)",
        "CREATE TRIGGER {t}_tr BEFORE INSERT ON {t}_w FOR EACH ROW EXECUTE FUNCTION {t}_trg()",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    // Installed behind pgmoat's back; DDL through pgmoat has the catalog read again.
    f.direct
        .batch_execute(&f.sql("ALTER TABLE {t}_w ALTER COLUMN g SET DEFAULT {t}_def()"))
        .await
        .unwrap();
    c.batch_execute(&f.sql("CREATE TABLE {t}_nudge (x int)"))
        .await
        .unwrap();
    f.blocked_by_mask(&c, "INSERT INTO {t}_w (id) VALUES (1)")
        .await;
    let n = count(&f, "{t}_w").await;
    assert_eq!(n, 0, "nothing was written");
    c.batch_execute(&f.sql(
        "CREATE TABLE {t}_ok (id int, g int DEFAULT 7,
           n int GENERATED ALWAYS AS (id * 2) STORED, CHECK (id > 0));
         INSERT INTO {t}_ok (id) VALUES (1);
         CREATE DOMAIN {t}_pos AS int DEFAULT 1 CHECK (VALUE > 0)",
    ))
    .await
    .unwrap();
    c.batch_execute(&f.sql(
        "ALTER TABLE {t}_ok ALTER COLUMN g SET DEFAULT abs(-8);
         INSERT INTO {t}_ok (id) VALUES (2)",
    ))
    .await
    .unwrap();
}
