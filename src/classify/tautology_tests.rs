//! Verdicts on WHEREs, table-driven: always true, true if columns are NOT NULL, bounded.

use crate::classify::{classify_now, Facts, IfNotNull, Kind};

fn one(sql: &str) -> Facts {
    let mut c = classify_now(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(c.statements.len(), 1, "{sql}");
    c.statements.remove(0)
}

#[test]
fn always_true_whatever_the_schema() {
    for sql in [
        "DELETE FROM t WHERE flag OR NOT flag",
        "DELETE FROM t WHERE NOT flag OR flag",
        "DELETE FROM t WHERE name IS NULL OR name IS NOT NULL",
        "DELETE FROM t WHERE coalesce(true, flag)",
        "DELETE FROM t WHERE coalesce(flag, true) OR NOT coalesce(flag, true)",
        "DELETE FROM t WHERE NOT (flag AND NOT flag)",
        "DELETE FROM t WHERE a = b OR a <> b",
        "DELETE FROM t WHERE a < 5 OR a >= 5",
        "DELETE FROM t WHERE name = 'a' OR name <> 'a' OR name IS NULL",
        "UPDATE t SET q = 1 WHERE q = q",
        "UPDATE t SET q = 1 WHERE q + 1 >= q + 1",
        "DELETE FROM t WHERE (flag OR NOT flag) AND true",
        "DELETE FROM t WHERE ctid IS NOT NULL",
        "DELETE FROM t WHERE xmin IS NOT NULL OR id = 1",
        "DELETE FROM t WHERE (SELECT true)",
        "DELETE FROM t WHERE EXISTS (SELECT FROM t)",
        "DELETE FROM t WHERE EXISTS (SELECT)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t)",
        "DELETE FROM t WHERE id = ANY (SELECT id FROM public.t)",
        "UPDATE t SET q = 1 WHERE t.id IN (SELECT t2.id FROM t AS t2)",
        "DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM o WHERE o.x = 5)",
        // The same table joined at its own row.
        "DELETE FROM t USING t t2 WHERE t.id = t2.id",
        "DELETE FROM t x USING t WHERE t.id = x.id AND t.code = x.code",
        "DELETE FROM a.t USING a.t t2 WHERE a.t.id = t2.id",
        "UPDATE t SET q = 1 FROM t t2 WHERE t.id = t2.id",
        "UPDATE t SET q = 1 FROM t t2 WHERE t2.id IS NOT DISTINCT FROM t.id",
        "UPDATE t SET q = o.q FROM o, t t2 WHERE t.id = t2.id",
        "DELETE FROM t USING (SELECT * FROM t) s WHERE t.id = s.id",
        "WITH s AS (SELECT * FROM t) DELETE FROM t USING s WHERE t.id = s.id",
        "WITH s AS MATERIALIZED (SELECT id FROM t) UPDATE t SET q = 1 FROM s x WHERE x.id = t.id",
        "UPDATE t SET q = 1 FROM (SELECT id, code AS code FROM t) s WHERE s.id = t.id",
        // Nothing about the target: every row or none.
        "DELETE FROM t USING o WHERE o.id = 1",
        "UPDATE t SET q = 1 FROM o WHERE o.w IS NULL",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM o WHERE o.id = 1)",
        // Through a CTE.
        "WITH d AS (DELETE FROM t WHERE flag OR NOT flag RETURNING 1) SELECT * FROM d",
    ] {
        let f = one(sql);
        assert!(f.where_.tautology, "{sql}: {:?}", f.where_);
        assert!(f.where_.applies && !f.where_.missing, "{sql}");
    }
}

#[test]
fn true_if_columns_are_not_null() {
    let t = |schema: &str, cols: &[&str]| IfNotNull {
        schema: schema.into(),
        table: "t".into(),
        columns: cols.iter().map(|c| c.to_string()).collect(),
    };
    for (sql, want) in [
        ("DELETE FROM t WHERE id IS NOT NULL", t("", &["id"])),
        ("DELETE FROM s.t WHERE id IS NOT NULL", t("s", &["id"])),
        ("DELETE FROM t WHERE NOT (id IS NULL)", t("", &["id"])),
        (
            "DELETE FROM t WHERE id IS NOT NULL IS NOT FALSE",
            t("", &["id"]),
        ),
        (
            "DELETE FROM t WHERE t.code IS NOT NULL AND id IS NOT NULL",
            t("", &["code", "id"]),
        ),
        // Only what the answer rests on: `name = 'a'` need not be NOT NULL.
        (
            "DELETE FROM t x WHERE x.id IS NOT NULL OR x.name = 'a'",
            t("", &["id"]),
        ),
        (
            "DELETE FROM t WHERE EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id)",
            t("", &["id"]),
        ),
        (
            "DELETE FROM t x WHERE EXISTS (SELECT 1 FROM t WHERE t.code = x.code)",
            t("", &["code"]),
        ),
        (
            "UPDATE t SET q = 1 WHERE flag IS NOT NULL",
            t("", &["flag"]),
        ),
    ] {
        let f = one(sql);
        assert!(!f.where_.tautology, "{sql}: {:?}", f.where_);
        assert_eq!(f.where_.if_not_null, vec![want], "{sql}");
    }
}

#[test]
fn nested_writes_read_enclosing_ctes_as_the_server_does() {
    // Narrowed in the enclosing CTE: bounded.
    for sql in [
        "WITH c AS (SELECT id FROM t WHERE id = 1), d AS (DELETE FROM t WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT count(*) FROM d",
        // The write's own CTE of the same name shadows the enclosing one.
        "WITH c AS (SELECT id FROM t), d AS (WITH c AS (SELECT 1 AS id) DELETE FROM t WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT 1",
    ] {
        assert!(!one(sql).where_.tautology, "{sql}");
    }
}

#[test]
fn selective_writes_stay_bounded() {
    for sql in [
        "DELETE FROM t WHERE id = 1",
        "DELETE FROM t WHERE id IN (1, 2)",
        "DELETE FROM t WHERE id IN (SELECT w FROM o WHERE o.id = 1)",
        "DELETE FROM t WHERE id IN (SELECT w FROM o)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE q > 1)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT 1)",
        "DELETE FROM t WHERE id IN (SELECT id + 1 FROM t)",
        "DELETE FROM t WHERE id IN (SELECT code FROM t)",
        "DELETE FROM t WHERE flag",
        "DELETE FROM t WHERE coalesce(flag, false)",
        "DELETE FROM t WHERE coalesce(flag, true)",
        "DELETE FROM t WHERE name IS NULL OR id = 2",
        "DELETE FROM t WHERE id = 1 OR NOT id = 2",
        "DELETE FROM t WHERE flag AND NOT flag",
        "DELETE FROM t WHERE NOT (flag OR NOT flag)",
        "UPDATE t SET q = 1 WHERE true AND id > 0",
        "DELETE FROM t WHERE id = NULL",
        "DELETE FROM t WHERE (id IS NOT NULL) = false",
        "DELETE FROM t WHERE (flag OR NOT flag) = false",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM o WHERE o.w = t.id)",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id AND t2.q > 1)",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id + 1)",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM t t2 WHERE t2.id = t.id LIMIT 0)",
        "DELETE FROM t USING t t2 WHERE t.code = t2.code AND t.id < t2.id",
        "DELETE FROM t USING t t2 WHERE t.id = t2.id AND t2.q > 1",
        "UPDATE t SET q = t2.q FROM t t2 WHERE t2.id = t.id + 1",
        "UPDATE t SET q = o.id FROM o WHERE o.w = t.id",
        "DELETE FROM t USING o WHERE o.w = t.id",
        "DELETE FROM a.t USING b.t t2 WHERE t.id = t2.id",
        "DELETE FROM a.t USING b.t WHERE a.t.id = b.t.id",
        "DELETE FROM t USING (SELECT * FROM t WHERE q > 1) s WHERE t.id = s.id",
        "DELETE FROM t USING (SELECT code AS id FROM t) s WHERE t.id = s.id",
        "DELETE FROM t USING (SELECT id + 1 AS id FROM t) s WHERE t.id = s.id",
        "DELETE FROM t USING (SELECT * FROM t) s(code, id) WHERE t.id = s.id",
        "DELETE FROM t USING (SELECT * FROM t LIMIT 1) s WHERE t.id = s.id",
        "WITH s AS (SELECT * FROM t WHERE q > 1) DELETE FROM t USING s WHERE t.id = s.id",
        "WITH s(id) AS (SELECT code FROM t) DELETE FROM t USING s WHERE t.id = s.id",
        // A CTE named as the table is the CTE, not the table.
        "WITH t AS (SELECT 1 AS id) DELETE FROM public.t USING t x WHERE t.id = x.id",
        "DELETE FROM t WHERE CURRENT OF c",
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && !f.where_.missing && f.where_.if_not_null.is_empty(),
            "{sql}: {:?}",
            f.where_
        );
    }
    // A nullable column's IS NOT NULL stays bounded once the catalog is asked: what
    // the classifier records is a condition, not a verdict.
    let f = one("DELETE FROM t WHERE name IS NOT NULL");
    assert!(!f.where_.tautology && f.where_.if_not_null.len() == 1);
}

/// An upsert updates the rows it conflicts with: every row when the table is
/// inserted into itself.
#[test]
fn upserts_are_updates() {
    for (sql, unbounded) in [
        (
            "INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET q = 1",
            true,
        ),
        (
            "INSERT INTO t AS x TABLE t ON CONFLICT (id) DO UPDATE SET q = x.q + 1",
            true,
        ),
        (
            "INSERT INTO t SELECT id, code FROM t ON CONFLICT (id) DO UPDATE SET q = 1",
            true,
        ),
        (
            "INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET q = 1 WHERE true",
            true,
        ),
        (
            "INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO UPDATE SET q = 1 WHERE t.q > 1",
            false,
        ),
        (
            "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET q = 1",
            false,
        ),
        (
            "INSERT INTO t SELECT * FROM t WHERE id = 1 ON CONFLICT (id) DO UPDATE SET q = 1",
            false,
        ),
        (
            "INSERT INTO t SELECT id + 100 FROM t ON CONFLICT (id) DO UPDATE SET q = 1",
            false,
        ),
        (
            "INSERT INTO t SELECT * FROM o ON CONFLICT (id) DO UPDATE SET q = 1",
            false,
        ),
    ] {
        let f = one(sql);
        assert!(f.kinds.contains(&Kind::Update), "{sql}");
        assert_eq!(f.where_.tautology, unbounded, "{sql}: {:?}", f.where_);
        assert!(f.where_.applies && !f.where_.missing, "{sql}");
    }
    let f = one("INSERT INTO t SELECT * FROM t ON CONFLICT (id) DO NOTHING");
    assert!(!f.kinds.contains(&Kind::Update) && !f.where_.applies);
}

/// Whether two sides are alike rests on their literals: the statement's shape gets
/// no cached answer.
#[test]
fn literal_decided_verdicts_are_not_shared_by_shape() {
    for (sql, tautology) in [
        ("DELETE FROM t WHERE name = 'a' OR name <> 'a'", true),
        ("DELETE FROM t WHERE name = 'a' OR name <> 'b'", false),
        ("DELETE FROM t WHERE NOT (id = 1) OR id = 1", true),
        ("DELETE FROM t WHERE NOT (id = 1) OR id = 2", false),
    ] {
        let c = classify_now(sql).unwrap();
        assert_eq!(c.statements[0].where_.tautology, tautology, "{sql}");
        assert!(c.literal_sensitive, "{sql}");
    }
}

/// A MERGE's ON and WHEN conditions, read for its target the same way.
#[test]
fn merge_conditions_true_if_columns_are_not_null() {
    for (sql, cols) in [
        (
            "MERGE INTO t USING s ON t.id IS NOT NULL WHEN MATCHED THEN DELETE",
            vec!["id"],
        ),
        (
            "MERGE INTO t USING s ON true WHEN MATCHED AND t.code IS NOT NULL THEN DELETE",
            vec!["code"],
        ),
        (
            "MERGE INTO t USING s ON t.id IS NOT NULL \
             WHEN MATCHED AND t.code IS NOT NULL THEN UPDATE SET q = 1",
            vec!["code", "id"],
        ),
        (
            "MERGE INTO t USING t s ON t.id = s.id AND t.code IS NOT NULL \
             WHEN MATCHED THEN DELETE",
            vec!["code"],
        ),
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && !f.where_.missing,
            "{sql}: {:?}",
            f.where_
        );
        let got: Vec<&str> = f.where_.if_not_null[0]
            .columns
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(got, cols, "{sql}");
    }
    for sql in [
        "WITH s AS (SELECT * FROM t) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING (SELECT id, code FROM t) s ON s.id = t.id AND s.code = t.code \
         WHEN MATCHED THEN UPDATE SET q = 1",
    ] {
        let f = one(sql);
        assert!(f.where_.tautology, "{sql}: {:?}", f.where_);
    }
    for sql in [
        "WITH s AS (SELECT * FROM t WHERE q > 1) MERGE INTO t USING s ON t.id = s.id \
         WHEN MATCHED THEN DELETE",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND t.code IS NOT NULL THEN DELETE",
        "MERGE INTO t USING s ON t.id IS NOT NULL WHEN MATCHED AND t.id = 1 THEN DELETE",
        "MERGE INTO t USING s ON t.id IS NOT NULL WHEN NOT MATCHED THEN INSERT VALUES (1)",
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && !f.where_.missing && f.where_.if_not_null.is_empty(),
            "{sql}: {:?}",
            f.where_
        );
    }
}

/// A long OR of alike shapes costs its length, not its square.
#[test]
fn long_or_chains_stay_linear() {
    let arms: Vec<String> = (0..20_000)
        .map(|i| {
            if i % 2 == 0 {
                format!("id = {i}")
            } else {
                format!("id <> {}", i + 1)
            }
        })
        .collect();
    let sql = format!("DELETE FROM t WHERE {}", arms.join(" OR "));
    let started = std::time::Instant::now();
    let c = classify_now(&sql).unwrap();
    let f = &c.statements[0];
    // `id = 2 OR id <> 2` among them: a tautology, and one that rests on literals.
    assert!(f.where_.tautology && c.literal_sensitive);
    let ours = started.elapsed();
    let started = std::time::Instant::now();
    classify_now(&sql.replace("DELETE FROM t", "SELECT FROM t")).unwrap();
    eprintln!("20000 arms: {ours:?}, as a SELECT: {:?}", started.elapsed());
}

/// A literal compared with a column decides nothing: the verdict holds for the shape,
/// so the statement's classification is shared by every literal (the hot path).
#[test]
fn literals_that_decide_nothing_keep_the_shape_cache() {
    for sql in [
        "UPDATE t SET a = 1 WHERE id = 5",
        "UPDATE pgbench_accounts SET abalance = abalance + -4 WHERE aid = 77",
        "DELETE FROM t WHERE id IN (1, 2, 3) AND name = 'x'",
        "DELETE FROM t WHERE id > 5 OR name <> 'x'",
        "DELETE FROM t USING o WHERE o.id = t.id AND o.x = 'y'",
    ] {
        assert!(!classify_now(sql).unwrap().literal_sensitive, "{sql}");
    }
    for sql in [
        "DELETE FROM t WHERE 1 = 2",
        "DELETE FROM t WHERE 't'::bool",
        "DELETE FROM t WHERE 1 IN (2, 3)",
        "DELETE FROM t WHERE id * 1 = id * 2",
        "DELETE FROM t WHERE (id IS NULL) = 'f'::bool",
    ] {
        assert!(classify_now(sql).unwrap().literal_sensitive, "{sql}");
    }
}

/// Reads of the written table through wrappers that keep every row of it, and the
/// forms true for every non-NULL value (review of issue 18).
#[test]
fn unnarrowed_reads_and_constant_truths() {
    for sql in [
        "DELETE FROM t WHERE id = ANY (ARRAY(SELECT id FROM t))",
        "DELETE FROM t WHERE id = ANY ((SELECT array_agg(id) FROM t)::int[])",
        "DELETE FROM t WHERE (id, code) IN (SELECT id, code FROM t)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t UNION SELECT w FROM o)",
        "DELETE FROM t WHERE id IN (SELECT w FROM o UNION ALL SELECT id FROM t)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t INTERSECT SELECT id FROM t)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t OFFSET 0)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t OFFSET 5)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT ALL)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE true)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t TABLESAMPLE SYSTEM (100))",
        "DELETE FROM t WHERE id IN (SELECT id FROM t GROUP BY id)",
        "DELETE FROM t WHERE id IN (SELECT DISTINCT id FROM t)",
        "DELETE FROM t WHERE id IN (SELECT unnest(array_agg(id)) FROM t)",
        "DELETE FROM t WHERE id IN (SELECT unnest(ARRAY(SELECT id FROM t)))",
        "DELETE FROM t WHERE EXISTS (SELECT count(*) FROM o WHERE o.w = t.id)",
        "DELETE FROM t WHERE EXISTS (SELECT max(o.x) FROM o WHERE false)",
        "DELETE FROM t WHERE id IN (SELECT u FROM unnest(ARRAY(SELECT id FROM t)) u)",
        "DELETE FROM t WHERE id = ANY (SELECT unnest((SELECT array_agg(id) FROM t)))",
        "DELETE FROM t WHERE id IN (SELECT s.id FROM (SELECT id FROM t) s)",
        "DELETE FROM t WHERE id IN (WITH c AS (SELECT * FROM t) SELECT id FROM c)",
        "WITH c AS (SELECT id FROM t) DELETE FROM t WHERE id IN (SELECT id FROM c)",
        // A write nested in a CTE reads its siblings and the enclosing statements' CTEs.
        "WITH c AS (SELECT id FROM t), d AS (DELETE FROM t WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT count(*) FROM d",
        "WITH c AS (SELECT id FROM t) SELECT * FROM (WITH d AS (DELETE FROM t WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT * FROM d) x",
        "WITH c AS (SELECT id FROM t), d AS (UPDATE t SET code = 1 WHERE id IN (SELECT id FROM c) RETURNING 1) SELECT 1",
        "DELETE FROM t WHERE id = id + 0",
        "DELETE FROM t WHERE id * 1 = id",
        "DELETE FROM t WHERE name || '' = name",
        "DELETE FROM t WHERE id = coalesce(NULL, id)",
        "DELETE FROM t WHERE CASE WHEN id > 1 THEN true ELSE true END",
        "DELETE FROM t WHERE CASE WHEN false THEN id = 1 ELSE true END",
        "DELETE FROM t WHERE name LIKE '%'",
        "DELETE FROM t WHERE name ILIKE '%%'",
        "DELETE FROM t WHERE name ~ ''",
        "DELETE FROM t WHERE ctid >= '(0,0)'",
        "DELETE FROM t WHERE '(0, 0)'::tid < ctid",
        "DELETE FROM t WHERE tableoid = 't'::regclass",
        "DELETE FROM t WHERE tableoid = 'public.t'::regclass",
        "MERGE INTO t USING (SELECT * FROM t OFFSET 0) s ON t.id = s.id WHEN MATCHED THEN DELETE",
        "INSERT INTO t SELECT * FROM t WHERE true ON CONFLICT (id) DO UPDATE SET q = 1",
        "INSERT INTO t SELECT * FROM o UNION SELECT * FROM t ON CONFLICT (id) DO UPDATE SET q = 1",
        "INSERT INTO t SELECT * FROM t OFFSET 0 ON CONFLICT (id) DO UPDATE SET q = 1",
    ] {
        let f = one(sql);
        assert!(f.where_.tautology, "{sql}: {:?}", f.where_);
    }
    // Not NULL by the schema: decided with the catalog.
    for sql in [
        "DELETE FROM t WHERE num_nonnulls(id) = 1",
        "DELETE FROM t WHERE num_nulls(id) = 0",
        "DELETE FROM t WHERE EXISTS (SELECT FROM t t2 WHERE t2.id = t.id + 0)",
        "DELETE FROM t WHERE EXISTS (SELECT FROM (SELECT * FROM t) s WHERE s.id = t.id)",
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && f.where_.if_not_null.len() == 1,
            "{sql}: {:?}",
            f.where_
        );
    }
    for sql in [
        "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE code = 'x')",
        "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY id LIMIT 3)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t LIMIT $1)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t EXCEPT SELECT w FROM o)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t INTERSECT SELECT w FROM o)",
        "DELETE FROM t WHERE id IN (SELECT DISTINCT ON (code) id FROM t ORDER BY code, id)",
        "DELETE FROM t WHERE id IN (SELECT id FROM t GROUP BY id HAVING count(*) > 1)",
        "DELETE FROM t WHERE id IN (SELECT max(id) FROM t)",
        "DELETE FROM t WHERE (id, code) IN (SELECT id, q FROM t)",
        "DELETE FROM t WHERE id = ANY (ARRAY(SELECT id FROM t WHERE q > 1))",
        "DELETE FROM t WHERE id IN (SELECT unnest(ARRAY(SELECT id FROM t LIMIT 2)))",
        "DELETE FROM t WHERE id IN (SELECT unnest(ARRAY(SELECT code FROM t)))",
        "DELETE FROM t WHERE id IN (SELECT n FROM unnest(ARRAY(SELECT id FROM t)) \
         WITH ORDINALITY u(v, n))",
        "DELETE FROM t WHERE id IN (SELECT s.id FROM (SELECT id FROM t WHERE q > 1) s)",
        "DELETE FROM t WHERE EXISTS (SELECT 1 FROM o WHERE o.wid = t.id)",
        "DELETE FROM t WHERE EXISTS (SELECT count(*) FROM o WHERE o.w = t.id GROUP BY o.x)",
        "DELETE FROM t WHERE EXISTS (SELECT count(*) FROM o WHERE o.w = t.id HAVING count(*) > 1)",
        "DELETE FROM t WHERE EXISTS (SELECT count(*) OVER () FROM o WHERE o.w = t.id)",
        "DELETE FROM t WHERE id = id + 1",
        "DELETE FROM t WHERE id * 2 = id",
        "DELETE FROM t WHERE CASE WHEN id > 1 THEN true ELSE false END",
        "DELETE FROM t WHERE CASE WHEN id > 1 THEN true END",
        "DELETE FROM t WHERE name LIKE 'a%'",
        "DELETE FROM t WHERE name NOT LIKE '%'",
        "DELETE FROM t WHERE ctid > '(0,1)'",
        "DELETE FROM t WHERE tableoid = 'u'::regclass",
        "MERGE INTO t USING (SELECT * FROM t WHERE q > 1 OFFSET 0) s ON t.id = s.id \
         WHEN MATCHED THEN DELETE",
        "INSERT INTO t SELECT * FROM t EXCEPT SELECT * FROM o ON CONFLICT (id) DO UPDATE SET q = 1",
        "INSERT INTO t SELECT * FROM t LIMIT 5 ON CONFLICT (id) DO UPDATE SET q = 1",
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && f.where_.if_not_null.is_empty(),
            "{sql}: {:?}",
            f.where_
        );
    }
    // `id = id + 0` and `id = id + 1` share a shape: neither verdict is reused.
    for sql in [
        "DELETE FROM t WHERE id = id + 1",
        "DELETE FROM t WHERE name LIKE 'a%'",
        "DELETE FROM t WHERE ctid > '(0,1)'",
    ] {
        assert!(classify_now(sql).unwrap().literal_sensitive, "{sql}");
    }
}

/// Parameters are read as any value a client could bind.
#[test]
fn parameters_read_as_any_value() {
    for sql in [
        "DELETE FROM t WHERE $1::int IS NULL OR id = $1",
        "DELETE FROM t WHERE id = coalesce($1, id)",
        "DELETE FROM t WHERE name LIKE $1",
        "DELETE FROM t WHERE id = id + $1",
        "DELETE FROM t WHERE $1::bool OR id = 1",
        "DELETE FROM t WHERE id = 1 OR $2 = 5",
        "DELETE FROM t WHERE $1",
        "CREATE FUNCTION f(b bool) RETURNS void LANGUAGE sql AS 'DELETE FROM t WHERE b'",
        "CREATE FUNCTION f(k int) RETURNS void LANGUAGE sql \
         AS 'DELETE FROM t WHERE k IS NULL OR id = k'",
        "CREATE FUNCTION f(b bool) RETURNS void LANGUAGE plpgsql \
         AS $$BEGIN DELETE FROM t WHERE b; END$$",
        "CREATE FUNCTION f(n int) RETURNS void LANGUAGE plpgsql \
         AS $$BEGIN UPDATE t SET q = 1 WHERE id = coalesce(n, id); END$$",
        "DO $$DECLARE b bool := true; BEGIN DELETE FROM t WHERE b; END$$",
    ] {
        let f = one(sql);
        assert!(f.where_.tautology, "{sql}: {:?}", f.where_);
    }
    for sql in [
        "DELETE FROM t WHERE id = $1",
        "UPDATE t SET a = $1 WHERE id = $2",
        "DELETE FROM t WHERE id IN ($1, $2, $3)",
        "DELETE FROM t WHERE id = $1::int AND name > $2",
        "DELETE FROM t WHERE id = $1 AND ($2::text IS NULL OR name = $2)",
        "DELETE FROM t WHERE lower(a) = $1 AND lower(b) = $2 AND lower(c) = $3 AND d = $4",
        "DELETE FROM t WHERE id = ANY ($1)",
        "DELETE FROM t WHERE at < now() - $1::interval",
        "DELETE FROM t WHERE id IN (SELECT id FROM t WHERE code = $1)",
        "CREATE FUNCTION f(k int) RETURNS void LANGUAGE sql AS 'DELETE FROM t WHERE id = k'",
        "CREATE FUNCTION f(k int) RETURNS void LANGUAGE plpgsql \
         AS $$DECLARE v int := k + 1; BEGIN DELETE FROM t WHERE id = v; END$$",
        "DO $$DECLARE v int := 5; BEGIN DELETE FROM t WHERE id = v; END$$",
    ] {
        let f = one(sql);
        assert!(
            !f.where_.tautology && f.where_.if_not_null.is_empty(),
            "{sql}: {:?}",
            f.where_
        );
    }
    // The hot path keeps its shape cache.
    assert!(
        !classify_now("UPDATE t SET a = $1 WHERE id = $2")
            .unwrap()
            .literal_sensitive
    );
}

/// A long WHERE with a parameter whose value matters is not read once per candidate
/// value over and over: past a budget it is unbounded (fail closed), quickly.
#[test]
fn long_clauses_with_live_parameters_stay_cheap() {
    let arms: Vec<String> = (0..20_000).map(|i| format!("id = {i}")).collect();
    let sql = format!(
        "DELETE FROM t WHERE ({}) AND ($1::int IS NULL OR code = $1)",
        arms.join(" OR ")
    );
    let started = std::time::Instant::now();
    let f = one(&sql);
    assert!(f.where_.tautology);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
