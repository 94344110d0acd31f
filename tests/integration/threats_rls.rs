//! Review s36 F9: row-level security policies. A policy's USING expression runs on
//! every read of its table (and WITH CHECK on writes) when RLS applies to the
//! target's role, so a policy made on the server behind pgmoat's back can call a
//! function a `functions:` rule blocks, or code that copies masked values. The
//! target role here (`app_rw`) owns the tables and is no superuser: `FORCE ROW LEVEL
//! SECURITY` makes the policies apply to it, which each test checks (a policy that
//! filters rows filters them) so that a role bypassing RLS cannot pass it vacuously.

use tokio_postgres::Client;

use crate::harness::*;
use crate::masking::{fixture, rows};

/// A `functions:` rule on a built-in the target role may call (a statement that got
/// past pgmoat would run, not fail on the server).
const RULES: &str = "rules:
  - id: no-pid
    when: { functions: [pg_backend_pid] }
    action: block
";

/// Refused with 42501 by `rule` (its id in the message).
async fn refused_by(c: &Client, sql: &str, rule: &str) {
    let e = c.simple_query(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
    let msg = e.as_db_error().unwrap().message().to_owned();
    assert!(msg.contains(rule), "{sql}: {msg}");
}

async fn count(c: &Client, sql: &str) -> i64 {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .get(0)
}

/// Turn RLS on for `table`, for its owner too.
fn force(table: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;"
    )
}

/// (1) rules: a policy made on the server calling a blocked function (directly, or
/// in a function's body) makes reads of its table refused, through a view or a
/// function's body too, and writes; a WITH CHECK policy makes inserts refused. A
/// table whose only policy has no USING (FOR INSERT) stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f9_rules_see_functions_policies_call() {
    let f = fixture(RULES).await;
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE TABLE {{t}}_r1 (id int, owner text);
             INSERT INTO {{t}}_r1 VALUES (1, 'x');
             CREATE FUNCTION {{t}}_pid() RETURNS boolean LANGUAGE sql
               AS 'SELECT pg_backend_pid() > 0';
             CREATE POLICY {{t}}_p1 ON {{t}}_r1 USING ({{t}}_pid());
             {}
             CREATE VIEW {{t}}_r1v AS SELECT id FROM {{t}}_r1;
             CREATE FUNCTION {{t}}_r1n() RETURNS bigint LANGUAGE sql
               AS 'SELECT count(*) FROM {{t}}_r1';
             CREATE TABLE {{t}}_r2 (id int);
             CREATE POLICY {{t}}_p2 ON {{t}}_r2 FOR INSERT WITH CHECK (pg_backend_pid() > 0);
             {}",
            force("{t}_r1"),
            force("{t}_r2")
        )))
        .await
        .unwrap();
    // RLS applies to the target role: the policy runs directly.
    assert_eq!(
        count(&f.direct, &f.sql("SELECT count(*) FROM {t}_r1")).await,
        1
    );
    for c in [f.agent().await, f.dba().await] {
        for sql in [
            "SELECT * FROM {t}_r1",
            "SELECT id FROM {t}_r1v",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM {t}_r1)",
            "SELECT {t}_r1n()",
            "UPDATE {t}_r1 SET owner = 'y' WHERE id = 1",
            "DELETE FROM {t}_r1 WHERE id = 1",
            "INSERT INTO {t}_r2 VALUES (1)",
        ] {
            refused_by(&c, &f.sql(sql), "no-pid").await;
        }
        // No USING expression on r2: reading it runs no policy code (and RLS with
        // no SELECT policy shows no rows).
        let got = rows(&c, &f.sql("SELECT * FROM {t}_r2")).await.unwrap();
        assert!(got.is_empty(), "{got:?}");
    }
    let n = count(
        &f.direct,
        &f.sql("SELECT count(*) FROM {t}_r1 WHERE owner = 'x'"),
    )
    .await;
    assert_eq!(n, 1, "nothing was written");
}

/// (2) masks: a policy made on the server that copies masked values (a function
/// reading the masked table, or one given a masked column) makes the masked
/// identity's reads and writes of its table refused, through a view or a function's
/// body too, as a trigger or rule doing so makes writes refused; one that only
/// refers to a masked column makes the errors of reads withheld (a failing cast
/// would quote it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f9_masks_see_what_policies_read_and_keep() {
    let f = fixture("").await;
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE TABLE {{t}}_loot (a text);
             CREATE TABLE {{t}}_m1 (id int);
             INSERT INTO {{t}}_m1 VALUES (1);
             CREATE FUNCTION {{t}}_grab() RETURNS boolean LANGUAGE plpgsql AS
               $b$BEGIN INSERT INTO {{t}}_loot SELECT ssn FROM {{t}}; RETURN true; END$b$;
             CREATE POLICY {{t}}_pm1 ON {{t}}_m1 USING ({{t}}_grab());
             {}
             CREATE VIEW {{t}}_m1v AS SELECT id FROM {{t}}_m1;
             CREATE FUNCTION {{t}}_m1n() RETURNS bigint LANGUAGE sql
               AS 'SELECT count(*) FROM {{t}}_m1';
             CREATE FUNCTION {{t}}_keep(x text) RETURNS boolean LANGUAGE plpgsql AS
               $b$BEGIN INSERT INTO {{t}}_loot VALUES (x); RETURN true; END$b$;
             CREATE POLICY {{t}}_pm2 ON {{t}} USING ({{t}}_keep(ssn));
             {}
             CREATE TABLE {{t}}_c (id int, card_number text);
             INSERT INTO {{t}}_c VALUES (1, '4111 1111 1111 1111');
             CREATE POLICY {{t}}_pc ON {{t}}_c USING (card_number::int > 0);
             {}",
            force("{t}_m1"),
            force("{t}"),
            force("{t}_c"),
        )))
        .await
        .unwrap();
    let c = f.agent().await;
    for sql in [
        "SELECT id FROM {t}_m1",
        "SELECT id FROM {t}_m1v",
        "SELECT count(*) FROM {t}_m1",
        "SELECT {t}_m1n()",
        "UPDATE {t}_m1 SET id = 2 WHERE id = 1",
        "SELECT id, name FROM {t}",
        "SELECT name FROM {t}_v",
        "DELETE FROM {t} WHERE id = 99",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    assert_eq!(
        count(&f.direct, &f.sql("SELECT count(*) FROM {t}_loot")).await,
        0,
        "no policy code ran"
    );
    // The policy's cast fails on the masked value: the error is withheld.
    let sql = f.sql("SELECT id FROM {t}_c");
    let e = c.simple_query(&sql).await.expect_err(&sql);
    f.assert_clean(&sql, &format!("{e:?}"));
    // Directly, the server quotes the value (what would have come back).
    let raw = f.direct.simple_query(&sql).await.expect_err(&sql);
    assert!(format!("{raw:?}").contains("4111"), "{raw:?}");
}

/// (3) through pgmoat: CREATE POLICY and ALTER POLICY with a blocked function are
/// refused by the rule; a masked identity's policy that copies masked values (over
/// the masked table, or a function reading it) is refused by the mask. No policy
/// was made. Enabling RLS on a table whose (dormant) policies made on the server
/// would do either is refused alike; while disabled, they do not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f9_policies_made_through_pgmoat_are_judged() {
    let f = fixture(RULES).await;
    f.direct
        .batch_execute(&f.sql(
            "CREATE TABLE {t}_r3 (id int);
             CREATE POLICY {t}_ok3 ON {t}_r3 USING (true);
             CREATE FUNCTION {t}_pid() RETURNS boolean LANGUAGE sql
               AS 'SELECT pg_backend_pid() > 0';
             CREATE TABLE {t}_loot (a text);
             CREATE FUNCTION {t}_grab() RETURNS boolean LANGUAGE plpgsql AS
               $b$BEGIN INSERT INTO {t}_loot SELECT ssn FROM {t}; RETURN true; END$b$;
             CREATE FUNCTION {t}_keep(x text) RETURNS boolean LANGUAGE plpgsql AS
               $b$BEGIN INSERT INTO {t}_loot VALUES (x); RETURN true; END$b$;
             CREATE TABLE {t}_r5 (id int);
             CREATE POLICY {t}_p5 ON {t}_r5 USING ({t}_pid());
             CREATE TABLE {t}_r6 (id int);
             CREATE POLICY {t}_p6 ON {t}_r6 FOR UPDATE USING (true) WITH CHECK ({t}_grab());",
        ))
        .await
        .unwrap();
    let c = f.agent().await;
    for sql in ["SELECT * FROM {t}_r5", "SELECT * FROM {t}_r6"] {
        rows(&c, &f.sql(sql)).await.unwrap();
    }
    refused_by(
        &c,
        &f.sql("ALTER TABLE {t}_r5 ENABLE ROW LEVEL SECURITY"),
        "no-pid",
    )
    .await;
    f.blocked_by_mask(&c, "ALTER TABLE {t}_r6 ENABLE ROW LEVEL SECURITY")
        .await;
    let enabled = count(
        &f.direct,
        &f.sql(
            "SELECT count(*) FROM pg_class WHERE relname IN ('{t}_r5', '{t}_r6') \
             AND relrowsecurity",
        ),
    )
    .await;
    assert_eq!(enabled, 0, "RLS was not enabled");
    for sql in [
        "CREATE POLICY {t}_p3 ON {t}_r3 USING (pg_backend_pid() > 0)",
        "CREATE POLICY {t}_p3 ON {t}_r3 USING ({t}_pid())",
        "CREATE POLICY {t}_p3 ON {t}_r3 FOR INSERT WITH CHECK ({t}_pid())",
        "ALTER POLICY {t}_ok3 ON {t}_r3 USING ({t}_pid())",
    ] {
        refused_by(&c, &f.sql(sql), "no-pid").await;
    }
    for sql in [
        "CREATE POLICY {t}_p4 ON {t} USING ({t}_keep(ssn))",
        "CREATE POLICY {t}_p4 ON {t}_r3 USING ({t}_grab())",
        "ALTER POLICY {t}_ok3 ON {t}_r3 USING ({t}_grab())",
        "CREATE POLICY {t}_p4 ON {t}_r3 FOR UPDATE WITH CHECK ({t}_grab())",
    ] {
        f.blocked_by_mask(&c, sql).await;
    }
    let made = count(
        &f.direct,
        &f.sql("SELECT count(*) FROM pg_policy WHERE polname IN ('{t}_p3', '{t}_p4')"),
    )
    .await;
    assert_eq!(made, 0, "no policy was made");
    let qual = count(
        &f.direct,
        &f.sql(
            "SELECT count(*) FROM pg_policy WHERE polname = '{t}_ok3' \
             AND pg_get_expr(polqual, polrelid) = 'true'",
        ),
    )
    .await;
    assert_eq!(qual, 1, "the policy was not altered");
}

/// (4) no over-blocking: an ordinary policy (built-in comparisons only) keeps reads
/// and writes allowed, clean columns raw and masked ones masked, and it does filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f9_ordinary_policies_keep_reads_allowed() {
    let f = fixture(RULES).await;
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE TABLE {{t}}_ok (id int, owner text, card_number text);
             INSERT INTO {{t}}_ok VALUES (1, 'app_rw', '4111 1111 1111 1111'),
               (2, 'someone', '5500 0000 0000 0004');
             CREATE POLICY {{t}}_own ON {{t}}_ok USING (owner = current_user)
               WITH CHECK (owner = current_user);
             {}
             CREATE VIEW {{t}}_okv AS SELECT id, owner FROM {{t}}_ok;",
            force("{t}_ok")
        )))
        .await
        .unwrap();
    let one = |id: &str, owner: &str| vec![vec![Some(id.to_owned()), Some(owner.to_owned())]];
    for c in [f.agent().await, f.dba().await] {
        for sql in [
            "SELECT id, owner FROM {t}_ok ORDER BY id",
            "SELECT id, owner FROM {t}_okv ORDER BY id",
        ] {
            let got = rows(&c, &f.sql(sql)).await.unwrap();
            assert_eq!(
                got,
                one("1", "app_rw"),
                "{sql}: filtered by the policy, raw"
            );
        }
    }
    let c = f.agent().await;
    let got = f.check(&c, "SELECT card_number FROM {t}_ok").await;
    assert_eq!(got, vec![vec![Some("**** **** **** 1111".to_owned())]]);
    c.batch_execute(&f.sql(
        "INSERT INTO {t}_ok VALUES (3, 'app_rw', NULL); UPDATE {t}_ok SET owner = owner WHERE id = 3",
    ))
    .await
    .unwrap();
    let n = count(
        &f.direct,
        &f.sql("SELECT count(*) FROM {t}_ok WHERE id = 3"),
    )
    .await;
    assert_eq!(n, 1);
}
