//! THREATS.md class H, unbounded writes with a WHERE that looks selective (issue 18,
//! class 6): predicates true for every row given the schema, self-joins in DELETE
//! USING / UPDATE FROM / MERGE, and INSERT ... ON CONFLICT DO UPDATE over the whole
//! table. Each blocked case is refused with 42501, is absent from the server's log and
//! changed no row; each selective case runs through pgmoat with exactly the effect it
//! has directly (run in a transaction that is rolled back, the table read back inside).

use tokio_postgres::Client;

use crate::harness::*;
use crate::masking::{fixture, rows, Fixture, Rows};

/// The baseline's unbounded-writes rule, on top of the fixture's masks.
const RULES: &str = "rules:
  - id: no-unbounded-writes
    description: UPDATE and DELETE need a WHERE that narrows them.
    when: { statement: [update, delete], where: [missing, tautology] }
    action: block
";

/// `{w}`: the written table (id primary key, code and tag NOT NULL, name and flag
/// nullable, one row with NULLs in them); `{o}`: another table.
async fn tables(f: &Fixture) -> (String, String) {
    let (w, o) = (format!("{}_w", f.t), format!("{}_o", f.t));
    f.direct
        .batch_execute(&format!(
            "CREATE TABLE {w} (id int PRIMARY KEY, code int NOT NULL, name text, flag bool,
                qty int NOT NULL DEFAULT 0, tag text NOT NULL DEFAULT 'x');
             INSERT INTO {w} VALUES (1, 10, 'a', true, 1), (2, 10, 'b', false, 2),
                (3, 30, NULL, NULL, 3);
             CREATE TABLE {o} (id int PRIMARY KEY, w_id int);
             INSERT INTO {o} VALUES (1, 2), (2, NULL);
             CREATE VIEW {w}_v AS SELECT * FROM {w};
             CREATE FUNCTION {w}_wipe() RETURNS void LANGUAGE sql
               AS 'DELETE FROM {w} WHERE id IS NOT NULL';
             CREATE FUNCTION {w}_del(b bool) RETURNS void LANGUAGE sql
               AS 'DELETE FROM {w} WHERE b';
             CREATE FUNCTION {w}_del_pos(bool) RETURNS void LANGUAGE sql
               AS 'DELETE FROM {w} WHERE $1';
             CREATE FUNCTION {w}_del_one(k int) RETURNS void LANGUAGE sql
               AS 'DELETE FROM {w} WHERE id = k';
             CREATE FUNCTION {w}_del_pl(b bool) RETURNS void LANGUAGE plpgsql
               AS $$BEGIN DELETE FROM {w} WHERE b; END$$;
             CREATE FUNCTION {w}_del_pl_one(k int) RETURNS void LANGUAGE plpgsql
               AS $$BEGIN DELETE FROM {w} WHERE id = k; END$$;"
        ))
        .await
        .unwrap();
    (w, o)
}

fn fill(sql: &str, w: &str, o: &str) -> String {
    sql.replace("{w}", w).replace("{o}", o)
}

async fn all_rows(c: &Client, w: &str) -> Rows {
    rows(c, &format!("SELECT * FROM {w} ORDER BY id"))
        .await
        .unwrap()
}

/// Refused by the rule, and the server never saw it: a marker sent after it through
/// the same session reaches the log (statements are logged in order), the text does not.
async fn refused_unseen(f: &Fixture, c: &Client, sql: &str) -> Result<(), String> {
    // Only what the server logged from here on (setup SQL may hold the same text).
    let from = f.pg.log_contents().len();
    let e = match c.simple_query(sql).await {
        Ok(_) => return Err(format!("ran: {sql}")),
        Err(e) => e,
    };
    let Some(db) = e.as_db_error() else {
        return Err(format!("{sql}: {e:?}"));
    };
    if db.code().code() != "42501"
        || !db
            .message()
            .starts_with("pgmoat: blocked by rule \"no-unbounded-writes\"")
    {
        return Err(format!("{sql}: {} {}", db.code().code(), db.message()));
    }
    let marker = unique("marker");
    c.simple_query(&format!("SELECT '{marker}'")).await.unwrap();
    let log = wait_log_contains(f.pg, &marker).await;
    if log.get(from..).unwrap_or(&log).contains(sql) {
        return Err(format!("the server saw a refused statement: {sql}"));
    }
    Ok(())
}

/// Every row written, each with a WHERE (or ON) that looks selective.
const UNBOUNDED: &[&str] = &[
    // NOT NULL by the schema: a primary key, a NOT NULL column, a system column.
    "DELETE FROM {w} WHERE id IS NOT NULL",
    "UPDATE {w} SET qty = 5 WHERE code IS NOT NULL",
    "DELETE FROM {w} WHERE {w}.code IS NOT NULL AND id IS NOT NULL",
    "DELETE FROM {w} x WHERE x.id IS NOT NULL OR x.name = 'a'",
    "DELETE FROM {w} WHERE NOT (id IS NULL)",
    "DELETE FROM {w} WHERE ctid IS NOT NULL",
    "DELETE FROM {w} WHERE id IS NOT NULL IS NOT FALSE",
    // Logic alone.
    "DELETE FROM {w} WHERE flag OR NOT flag",
    "DELETE FROM {w} WHERE name IS NULL OR name IS NOT NULL",
    "DELETE FROM {w} WHERE coalesce(true, flag)",
    "DELETE FROM {w} WHERE coalesce(flag, true) OR NOT coalesce(flag, true)",
    "DELETE FROM {w} WHERE NOT (flag AND NOT flag)",
    "UPDATE {w} SET qty = 5 WHERE qty = qty",
    "UPDATE {w} SET qty = 5 WHERE qty + 1 >= qty + 1",
    "DELETE FROM {w} WHERE (SELECT true)",
    "DELETE FROM {w} WHERE EXISTS (SELECT FROM {w})",
    "DELETE FROM {w} WHERE name = 'a' OR name <> 'a' OR name IS NULL",
    // The table itself as the bound.
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w})",
    "UPDATE {w} SET qty = 5 WHERE {w}.id IN (SELECT w2.id FROM {w} AS w2)",
    "DELETE FROM {w} WHERE EXISTS (SELECT 1 FROM {w} w2 WHERE w2.id = {w}.id)",
    "DELETE FROM {w} t WHERE EXISTS (SELECT 1 FROM {w} WHERE {w}.code = t.code)",
    "DELETE FROM {w} USING {w} w2 WHERE {w}.id = w2.id",
    "UPDATE {w} SET qty = 5 FROM {w} w2 WHERE {w}.id = w2.id",
    "DELETE FROM {w} USING (SELECT * FROM {w}) s WHERE {w}.id = s.id",
    "WITH s AS (SELECT id FROM {w}) UPDATE {w} SET qty = 5 FROM s WHERE s.id = {w}.id",
    "UPDATE {w} t SET qty = 5 FROM {w} w2 WHERE w2.code = t.code AND w2.id = t.id",
    "MERGE INTO {w} USING {w} AS s ON {w}.id = s.id WHEN MATCHED THEN DELETE",
    "WITH s AS (SELECT * FROM {w}) MERGE INTO {w} t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "MERGE INTO {w} t USING (SELECT 1 AS x) s ON true WHEN MATCHED THEN UPDATE SET qty = 5",
    "MERGE INTO {w} t USING (SELECT 1 AS x) s ON t.id IS NOT NULL WHEN MATCHED THEN DELETE",
    "MERGE INTO {w} t USING {w} s ON t.id = s.id WHEN MATCHED AND t.code IS NOT NULL THEN DELETE",
    "UPDATE {w} SET qty = {o}.id FROM {o}, {w} w2 WHERE {w}.id = w2.id",
    "UPDATE {w} SET qty = 5 WHERE (id IS NULL) = false",
    // An upsert of the table into itself updates every row.
    "INSERT INTO {w} SELECT * FROM {w} ON CONFLICT (id) DO UPDATE SET qty = 5",
    "INSERT INTO {w} AS t SELECT id, code, name, flag, qty FROM {w} ON CONFLICT (id) DO UPDATE SET qty = t.qty + 1",
    "WITH s AS (SELECT * FROM {w}) INSERT INTO {w} SELECT * FROM s ON CONFLICT (id) DO UPDATE SET qty = 5",
    // Through a CTE, and in a multi-statement message.
    "WITH x AS (DELETE FROM {w} WHERE id IS NOT NULL RETURNING 1) SELECT count(*) FROM x",
    "SELECT 1; UPDATE {w} SET qty = 5 WHERE code IS NOT NULL",
    // Through a writable view, and in a function's body.
    "DELETE FROM {w}_v WHERE flag OR NOT flag",
    "DELETE FROM {w}_v WHERE id IS NOT NULL",
    "UPDATE {w}_v SET qty = 5 WHERE id IN (SELECT id FROM {w}_v)",
    "SELECT {w}_wipe()",
    // A join whose condition does not name the target: every row or none.
    "DELETE FROM {w} USING {o} WHERE {o}.id = 1",
    "UPDATE {w} SET qty = 5 FROM {o} WHERE {o}.w_id IS NULL",
    // The table read again through wrappers that keep every row of it (review of
    // issue 18: each of these reached the server).
    "DELETE FROM {w} WHERE id = ANY(ARRAY(SELECT id FROM {w}))",
    "DELETE FROM {w} WHERE (id, code) IN (SELECT id, code FROM {w})",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} UNION SELECT w_id FROM {o})",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} INTERSECT SELECT id FROM {w})",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} OFFSET 0)",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} LIMIT ALL)",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} WHERE true)",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} TABLESAMPLE SYSTEM (100))",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} GROUP BY id)",
    "DELETE FROM {w} WHERE id IN (SELECT unnest(array_agg(id)) FROM {w})",
    "DELETE FROM {w} WHERE id IN (SELECT unnest(ARRAY(SELECT id FROM {w})))",
    "DELETE FROM {w} WHERE id IN (SELECT u FROM unnest(ARRAY(SELECT id FROM {w})) u)",
    "DELETE FROM {w} WHERE id IN (SELECT s.id FROM (SELECT id FROM {w}) s)",
    "WITH c AS (SELECT id FROM {w}) DELETE FROM {w} WHERE id IN (SELECT id FROM c)",
    "WITH c AS (SELECT id FROM {w}), d AS (DELETE FROM {w} WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT count(*) FROM d",
    "DELETE FROM {w} WHERE EXISTS (SELECT FROM {w} w2 WHERE w2.id = {w}.id + 0)",
    "DELETE FROM {w} WHERE EXISTS (SELECT FROM (SELECT * FROM {w}) s WHERE s.id = {w}.id)",
    // An aggregate without GROUP BY gives one row whatever it reads.
    "DELETE FROM {w} WHERE EXISTS (SELECT count(*) FROM {o} WHERE {o}.w_id = {w}.id)",
    // True for every non-NULL value of the column.
    "DELETE FROM {w} WHERE id = id + 0",
    "UPDATE {w} SET qty = 5 WHERE qty * 1 = qty",
    "DELETE FROM {w} WHERE CASE WHEN id > 1 THEN true ELSE true END",
    "DELETE FROM {w} WHERE tag LIKE '%'",
    // NULL, not false, where name is NULL: as `name = name`, whatever the schema.
    "DELETE FROM {w} WHERE name LIKE '%'",
    "DELETE FROM {w} WHERE ctid >= '(0,0)'",
    "DELETE FROM {w} WHERE tableoid = '{w}'::regclass",
    "DELETE FROM {w} WHERE num_nonnulls(id) = 1",
    // A MERGE source or upsert source that is the whole table after all.
    "MERGE INTO {w} t USING (SELECT * FROM {w} OFFSET 0) s ON t.id = s.id WHEN MATCHED THEN DELETE",
    "INSERT INTO {w} SELECT * FROM {w} WHERE true ON CONFLICT (id) DO UPDATE SET qty = 5",
    "INSERT INTO {w} SELECT * FROM {w} WHERE id = 1 UNION SELECT * FROM {w} ON CONFLICT (id) DO UPDATE SET qty = 5",
    // A function whose WHERE is its boolean parameter.
    "SELECT {w}_del(true)",
    "SELECT {w}_del_pos(true)",
    "SELECT {w}_del_pl(true)",
    "DO $$DECLARE b bool := true; BEGIN DELETE FROM {w} WHERE b; END$$",
];

/// Selective: must run through pgmoat, with the same effect as directly.
const SELECTIVE: &[&str] = &[
    "DELETE FROM {w} WHERE id = 1",
    "DELETE FROM {w} WHERE id IN (1, 2)",
    "WITH c AS (SELECT id FROM {w} WHERE id = 1), d AS (DELETE FROM {w} WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT count(*) FROM d",
    "DELETE FROM {w} WHERE id IN (SELECT w_id FROM {o} WHERE {o}.id = 1)",
    "DELETE FROM {w} WHERE id IN (SELECT w_id FROM {o})",
    "DELETE FROM {w} WHERE name IS NOT NULL",
    "DELETE FROM {w} WHERE flag IS NOT NULL",
    "UPDATE {w} SET qty = 5 WHERE true AND id > 1",
    "UPDATE {w} SET qty = 5 WHERE flag",
    "DELETE FROM {w} WHERE coalesce(flag, false)",
    "DELETE FROM {w} WHERE name IS NULL OR id = 2",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} WHERE qty > 1)",
    "DELETE FROM {w} WHERE EXISTS (SELECT 1 FROM {o} WHERE {o}.w_id = {w}.id)",
    "DELETE FROM {w} WHERE EXISTS (SELECT 1 FROM {w} w2 WHERE w2.id = {w}.id AND w2.qty > 1)",
    "DELETE FROM {w} WHERE EXISTS (SELECT 1 FROM {w} w2 WHERE w2.id = {w}.id + 1)",
    // The usual de-duplication: a self-join that keeps one row of each group.
    "DELETE FROM {w} USING {w} w2 WHERE {w}.code = w2.code AND {w}.id < w2.id",
    "UPDATE {w} SET qty = w2.qty FROM {w} w2 WHERE w2.id = {w}.id + 1",
    "DELETE FROM {w} USING (SELECT * FROM {w} WHERE qty > 2) s WHERE {w}.id = s.id",
    "UPDATE {w} SET qty = {o}.id FROM {o} WHERE {o}.w_id = {w}.id",
    "MERGE INTO {w} t USING {o} s ON t.id = s.w_id WHEN MATCHED THEN UPDATE SET qty = 7",
    "MERGE INTO {w} t USING (SELECT 1 AS x) s ON t.name IS NOT NULL WHEN MATCHED THEN UPDATE SET qty = 7",
    "MERGE INTO {w} t USING {w} s ON t.id = s.id WHEN MATCHED AND t.flag IS NOT NULL THEN DELETE",
    "INSERT INTO {w} VALUES (10, 1, 'x', true, 0) ON CONFLICT (id) DO UPDATE SET qty = 9",
    "INSERT INTO {w} VALUES (1, 1, 'x', true, 0) ON CONFLICT (id) DO UPDATE SET qty = 9",
    "INSERT INTO {w} SELECT * FROM {w} WHERE id = 1 ON CONFLICT (id) DO UPDATE SET qty = 9",
    "INSERT INTO {w} SELECT * FROM {w} ON CONFLICT (id) DO NOTHING",
    "INSERT INTO {w} SELECT id + 100, code, name, flag, qty FROM {w} ON CONFLICT (id) DO UPDATE SET qty = 9",
    "WITH x AS (DELETE FROM {w} WHERE id = 3 RETURNING id) SELECT * FROM x",
    "DELETE FROM {w}_v WHERE flag",
    "DELETE FROM {w}_v WHERE name IS NOT NULL",
    // Reads of the table itself that narrow.
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} WHERE code = 30)",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} ORDER BY id LIMIT 2)",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} EXCEPT SELECT w_id FROM {o})",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} INTERSECT SELECT w_id FROM {o})",
    "DELETE FROM {w} WHERE id IN (SELECT max(id) FROM {w})",
    "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} GROUP BY id HAVING count(*) > 1)",
    "DELETE FROM {w} WHERE (id, code) IN (SELECT id, qty FROM {w})",
    "DELETE FROM {w} WHERE id = ANY(ARRAY(SELECT id FROM {w} WHERE qty > 1))",
    "DELETE FROM {w} WHERE EXISTS (SELECT 1 FROM {o} o WHERE o.w_id = {w}.id)",
    "DELETE FROM {w} WHERE EXISTS (SELECT count(*) FROM {o} WHERE {o}.w_id = {w}.id HAVING count(*) > 0)",
    "MERGE INTO {w} t USING (SELECT * FROM {w} WHERE qty > 1 OFFSET 0) s ON t.id = s.id WHEN MATCHED THEN DELETE",
    // Close to a constant truth, but not one.
    "DELETE FROM {w} WHERE id = id + 1",
    "DELETE FROM {w} WHERE CASE WHEN id > 1 THEN true ELSE false END",
    "DELETE FROM {w} WHERE name LIKE 'a%'",
    "DELETE FROM {w} WHERE ctid > '(0,1)'",
    "DELETE FROM {w} WHERE num_nonnulls(name) = 1",
    "SELECT {w}_del_one(2)",
    "SELECT {w}_del_pl_one(2)",
    "INSERT INTO {w} SELECT * FROM {w} WHERE id = 1 UNION SELECT * FROM {w} WHERE id = 2 ON CONFLICT (id) DO UPDATE SET qty = 9",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_touch_every_row_are_unbounded() {
    let f = fixture(RULES).await;
    let (w, o) = tables(&f).await;
    let before = all_rows(&f.direct, &w).await;
    assert_eq!(before.len(), 3);
    let mut failures = Vec::new();
    for c in [f.agent().await, f.dba().await] {
        for sql in UNBOUNDED {
            let sql = fill(sql, &w, &o);
            if let Err(e) = refused_unseen(&f, &c, &sql).await {
                failures.push(e);
            }
            // Put back what a write let through changed, so later cases see the rows.
            let now = all_rows(&f.direct, &w).await;
            if now != before {
                failures.push(format!("changed the rows: {sql}"));
                f.direct
                    .batch_execute(&format!(
                        "DELETE FROM {w}; INSERT INTO {w} VALUES (1, 10, 'a', true, 1),
                         (2, 10, 'b', false, 2), (3, 30, NULL, NULL, 3)"
                    ))
                    .await
                    .unwrap();
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(all_rows(&f.direct, &w).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selective_writes_run_as_they_do_directly() {
    let f = fixture(RULES).await;
    let (w, o) = tables(&f).await;
    let before = all_rows(&f.direct, &w).await;
    let mut failures = Vec::new();
    for c in [f.agent().await, f.dba().await] {
        for sql in SELECTIVE {
            let sql = fill(sql, &w, &o);
            // The write and the table as it leaves it, then undone.
            let probe = format!("BEGIN; {sql}; SELECT * FROM {w} ORDER BY id; ROLLBACK");
            let direct = rows(&f.direct, &probe)
                .await
                .unwrap_or_else(|e| panic!("{sql} directly: {e:?}"));
            match rows(&c, &probe).await {
                Ok(got) if got == direct => {}
                Ok(got) => failures.push(format!("{sql}: {got:?} != {direct:?}")),
                Err(e) => {
                    failures.push(format!("{sql}: {e}"));
                    // A refused message leaves no transaction open; a failed one might.
                    let _ = c.simple_query("ROLLBACK").await;
                }
            }
            assert_eq!(all_rows(&f.direct, &w).await, before, "{sql}: rolled back");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Verdicts that rest on literals are not reused for the same shape with others: the
/// selective one runs, the tautology after it (same shape) is still refused; a table
/// made through pgmoat is judged by its NOT NULL columns once the catalog is re-read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_shape_other_literals_and_new_tables() {
    let f = fixture(RULES).await;
    let (w, o) = tables(&f).await;
    let c = f.agent().await;
    let selective = fill("DELETE FROM {w} WHERE name = 'a' OR name <> 'b'", &w, &o);
    let probe = format!("BEGIN; {selective}; SELECT * FROM {w} ORDER BY id; ROLLBACK");
    assert_eq!(
        rows(&c, &probe).await.unwrap(),
        rows(&f.direct, &probe).await.unwrap()
    );
    let unbounded = fill("DELETE FROM {w} WHERE name = 'a' OR name <> 'a'", &w, &o);
    refused_unseen(&f, &c, &unbounded).await.unwrap();

    let n = format!("{}_new", f.t);
    c.batch_execute(&format!(
        "CREATE TABLE {n} (k int NOT NULL, v text); INSERT INTO {n} VALUES (1, NULL), (2, 'x')"
    ))
    .await
    .unwrap();
    refused_unseen(
        &f,
        &c,
        &format!("UPDATE {n} SET v = 'y' WHERE k IS NOT NULL"),
    )
    .await
    .unwrap();
    c.batch_execute(&format!("DELETE FROM {n} WHERE v IS NOT NULL"))
        .await
        .unwrap();
    let left = rows(&f.direct, &format!("SELECT k, v FROM {n}"))
        .await
        .unwrap();
    assert_eq!(left, vec![vec![Some("1".to_owned()), None]]);
}

/// Bound at Bind, judged at Parse: a WHERE that some parameter values make true for
/// every row is refused whatever the values (drivers send the Parse before the values);
/// `WHERE id = $1` and its kin bound by every value run, with the same effect as
/// directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_that_can_unbound_a_write() {
    use tokio_postgres::types::ToSql;
    let f = fixture(RULES).await;
    let (w, o) = tables(&f).await;
    let before = all_rows(&f.direct, &w).await;
    let none: Option<i32> = None;
    let (one, two) = (1i32, 2i32);
    let (all, a_prefix) = ("%", "a%");
    let unbounded: &[(&str, &[&(dyn ToSql + Sync)])] = &[
        ("DELETE FROM {w} WHERE $1::int IS NULL OR id = $1", &[&none]),
        ("DELETE FROM {w} WHERE id = coalesce($1, id)", &[&none]),
        ("DELETE FROM {w} WHERE tag LIKE $1", &[&all]),
        ("DELETE FROM {w} WHERE name LIKE $1", &[&all]),
        ("UPDATE {w} SET qty = 5 WHERE id = id + $1", &[&0i32]),
        ("DELETE FROM {w} WHERE $1::bool OR id = 1", &[&true]),
    ];
    let selective: &[(&str, &[&(dyn ToSql + Sync)])] = &[
        ("DELETE FROM {w} WHERE id = $1", &[&one]),
        ("DELETE FROM {w} WHERE id = $1", &[&none]),
        ("UPDATE {w} SET qty = $1 WHERE id = $2", &[&one, &two]),
        ("DELETE FROM {w} WHERE id IN ($1, $2)", &[&one, &two]),
        (
            "DELETE FROM {w} WHERE id = $1 AND ($2::text IS NULL OR name = $2)",
            &[&one, &None::<String>],
        ),
        ("DELETE FROM {w} WHERE name > $1", &[&a_prefix]),
        (
            "DELETE FROM {w} WHERE id IN (SELECT id FROM {w} WHERE code = $1)",
            &[&30i32],
        ),
    ];
    let mut failures = Vec::new();
    for c in [f.agent().await, f.dba().await] {
        for (sql, params) in unbounded {
            let sql = fill(sql, &w, &o);
            match c.execute(sql.as_str(), params).await {
                Ok(n) => failures.push(format!("ran ({n} rows): {sql}")),
                Err(e) => match e.as_db_error() {
                    Some(db) if db.code().code() == "42501" => {}
                    _ => failures.push(format!("{sql}: {e:?}")),
                },
            }
            if all_rows(&f.direct, &w).await != before {
                failures.push(format!("changed the rows: {sql}"));
                f.direct
                    .batch_execute(&format!(
                        "DELETE FROM {w}; INSERT INTO {w} VALUES (1, 10, 'a', true, 1),
                         (2, 10, 'b', false, 2), (3, 30, NULL, NULL, 3)"
                    ))
                    .await
                    .unwrap();
            }
        }
        for (sql, params) in selective {
            let sql = fill(sql, &w, &o);
            let mut outcome = Vec::new();
            for client in [&f.direct, &c] {
                client.batch_execute("BEGIN").await.unwrap();
                let n = client.execute(sql.as_str(), params).await;
                let now = match n {
                    Ok(_) => all_rows(client, &w).await,
                    Err(_) => Vec::new(),
                };
                client.batch_execute("ROLLBACK").await.unwrap();
                outcome.push(n.map(|n| (n, now)).map_err(|e| format!("{e:?}")));
            }
            if outcome[0] != outcome[1] {
                failures.push(format!("{sql}: {:?} != {:?}", outcome[1], outcome[0]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(all_rows(&f.direct, &w).await, before);
}
