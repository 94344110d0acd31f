//! Cases from an adversarial review of the class H fixes (issue 18): code that keeps
//! masked values where masking never sees them again, and a function's own
//! search_path. Each is refused (or masked) for the identity with masks.

use crate::harness::*;
use crate::masking::fixture;

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
    let kept: i64 = f
        .direct
        .query_one(&f.sql("SELECT count(*) FROM {t}_kept"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0);
    let e = c.simple_query("SHOW x.y").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    // Clean values are kept as before.
    c.batch_execute(&f.sql("SELECT {t}_keep_arg('plain'); SELECT setval('{t}_sq', 7)"))
        .await
        .unwrap();
    let kept: i64 = f
        .direct
        .query_one(&f.sql("SELECT count(*) FROM {t}_kept"), &[])
        .await
        .unwrap()
        .get(0);
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
