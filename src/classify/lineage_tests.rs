//! Tests for `lineage.rs`: tracing, key/value functions, what a message makes,
//! laundering.

use super::*;

/// `users(id, name, ssn)` with ssn under mask 0; `orders(id, total)` clean.
struct Fake;

impl Relations for Fake {
    fn relation(&self, _schema: Option<&str>, name: &str) -> Relation {
        let c = |n: &str, t: Taint| (n.to_owned(), t);
        match name {
            "users" => Relation::Known(vec![
                c("id", Taint::CLEAN),
                c("name", Taint::CLEAN),
                c("ssn", Taint::direct(0)),
            ]),
            "orders" => Relation::Known(vec![c("id", Taint::CLEAN), c("total", Taint::CLEAN)]),
            n if n.starts_with("pg_") => Relation::System,
            _ => Relation::Unknown,
        }
    }
    fn function(&self, name: &str) -> Taint {
        if name == "leaky" {
            Taint::UNKNOWN
        } else {
            Taint::CLEAN
        }
    }
}

fn outputs(sql: &str) -> Option<Vec<Taint>> {
    analyze(sql, &Fake).unwrap().remove(0).outputs
}

const D: Taint = Taint {
    mask: Some(0),
    derived: false,
    unknown: false,
    fresh: false,
};
const X: Taint = Taint {
    mask: Some(0),
    derived: true,
    unknown: false,
    fresh: false,
};
const C: Taint = Taint::CLEAN;

#[test]
fn traces_columns_through_scopes() {
    let cases: &[(&str, &[Taint])] = &[
        ("SELECT id, ssn FROM users", &[C, D]),
        ("SELECT * FROM users", &[C, C, D]),
        (
            "SELECT u.ssn AS x, o.total FROM users u JOIN orders o ON o.id = u.id",
            &[D, C],
        ),
        ("SELECT x FROM (SELECT ssn AS x FROM users) s", &[D]),
        ("SELECT a FROM (SELECT ssn FROM users) s(a)", &[D]),
        (
            "WITH c(z) AS (SELECT ssn FROM users) SELECT z, 1 FROM c",
            &[D, C],
        ),
        ("SELECT name FROM users UNION SELECT ssn FROM users", &[D]),
        (
            "SELECT upper(ssn), ssn::text, ssn::char(3) FROM users",
            &[X, D, X],
        ),
        ("SELECT u FROM users u", &[X]),
        ("SELECT (SELECT ssn FROM users LIMIT 1)", &[D]),
        ("SELECT count(*) FROM users WHERE ssn LIKE '1%'", &[C]),
        ("SELECT v.x FROM users, LATERAL (VALUES (ssn)) v(x)", &[D]),
        ("SELECT g FROM users u, generate_series(1, 2) g", &[C]),
        ("SELECT u, g FROM users u, generate_series(1, 2) g", &[X, C]),
        ("SELECT total FROM orders", &[C]),
    ];
    for (sql, want) in cases {
        assert_eq!(outputs(sql).as_deref(), Some(*want), "{sql}");
    }
}

#[test]
fn keys_of_a_row_are_names_values_are_data() {
    let cases: &[(&str, &[Taint])] = &[
        (
            "SELECT key, value FROM users u, jsonb_each_text(to_jsonb(u))",
            &[C, X],
        ),
        (
            "SELECT e.k, e.v FROM users u, LATERAL json_each(row_to_json(u)) AS e(k, v)",
            &[C, X],
        ),
        (
            "SELECT * FROM users u, jsonb_each(to_jsonb(u.*)) WITH ORDINALITY",
            &[C, C, D, C, X, C],
        ),
        ("SELECT jsonb_object_keys(to_jsonb(u)) FROM users u", &[C]),
        (
            "SELECT k FROM users u, json_object_keys(row_to_json(u)) k",
            &[C],
        ),
        (
            "SELECT key, value FROM users u, jsonb_each_text(jsonb_build_object('a', ssn))",
            &[C, X],
        ),
        // Keys that are data: a JSON value made of a column, not of a row.
        (
            "SELECT key FROM users u, jsonb_each_text(to_jsonb(ssn))",
            &[X],
        ),
        ("SELECT key FROM users u, jsonb_each_text(ssn::jsonb)", &[X]),
        (
            "SELECT key FROM users u, jsonb_each_text(jsonb_build_object(ssn, 1))",
            &[X],
        ),
        ("SELECT jsonb_object_keys(ssn::jsonb) FROM users", &[X]),
    ];
    for (sql, want) in cases {
        assert_eq!(outputs(sql).as_deref(), Some(*want), "{sql}");
    }
    // A column named like the row is the column.
    let l = analyze(
        "SELECT key FROM (SELECT ssn AS u FROM users) u, jsonb_each_text(to_jsonb(u))",
        &Fake,
    )
    .unwrap();
    assert!(!l[0].outputs.as_ref().unwrap()[0].is_clean());
}

/// The last statement's outputs, trusting what the message made.
fn last(sql: &str, trust: bool) -> Option<Vec<Taint>> {
    analyze_in(sql, &Fake, trust)
        .unwrap()
        .pop()
        .unwrap()
        .outputs
}

#[test]
fn what_a_message_makes_clean_stays_clean() {
    const F: Taint = Taint::FRESH;
    let clean: &[(&str, &[Taint])] = &[
        (
            "CREATE TEMP TABLE x (a int, b text); INSERT INTO x VALUES (1, 'a'); SELECT * FROM x",
            &[F, F],
        ),
        (
            "CREATE TABLE pg_temp.x (a int DEFAULT now(), b varchar(3) CHECK (b <> ''), \
             PRIMARY KEY (a)); INSERT INTO x (b) SELECT name FROM users; \
             UPDATE x SET b = upper(b) WHERE a = 1; SELECT x.b, length(b) FROM pg_temp.x",
            &[F, C],
        ),
        (
            "CREATE TEMP TABLE x (a serial, b text); SELECT s.b FROM (SELECT * FROM x) s",
            &[F],
        ),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT pg_temp.f()",
            &[C],
        ),
        (
            "CREATE TEMP TABLE x (b) AS SELECT name AS a FROM users; SELECT b FROM x",
            &[F],
        ),
        ("SELECT name AS a, id INTO TEMP x FROM users; SELECT a, id FROM x", &[F, F]),
        (
            "CREATE FUNCTION leaky() RETURNS int LANGUAGE sql IMMUTABLE AS $$SELECT id FROM orders$$; \
             SELECT leaky()",
            &[C],
        ),
        (
            "CREATE FUNCTION pg_temp.g(i int) RETURNS int RETURN i + 1; SELECT pg_temp.g(2)",
            &[C],
        ),
    ];
    for (sql, want) in clean {
        assert_eq!(last(sql, true).as_deref(), Some(*want), "{sql}");
    }
    // After the session changed search_path, names may resolve elsewhere.
    assert!(last("CREATE TEMP TABLE x (a int); SELECT * FROM x", false).is_none());
    assert!(!last(
        "CREATE FUNCTION leaky() RETURNS int LANGUAGE sql AS 'SELECT 1'; SELECT leaky()",
        false
    )
    .unwrap()[0]
        .is_clean());
    // Not provably clean: defaults or code pgmoat does not follow, CTAS, a body
    // that reads masked data, and whatever ran in between.
    for sql in [
        "CREATE TEMP TABLE x (a text DEFAULT leaky()); INSERT INTO x DEFAULT VALUES; SELECT a FROM x",
        "CREATE TEMP TABLE x (a text GENERATED ALWAYS AS (leaky()) STORED); SELECT a FROM x",
        "CREATE TEMP TABLE x (a mytype); SELECT a FROM x",
        "CREATE TEMP TABLE x (LIKE users INCLUDING DEFAULTS); SELECT a FROM x",
        "CREATE TEMP TABLE IF NOT EXISTS x (a text); SELECT a FROM x",
        "CREATE TABLE x (a text); SELECT a FROM x",
        "CREATE TEMP TABLE x AS SELECT leaky() AS a; SELECT a FROM x",
        "CREATE TABLE x AS SELECT name AS a FROM users; SELECT a FROM x",
        "SELECT name AS a INTO x FROM users; SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); SELECT leaky(); SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); DO $$BEGIN NULL; END$$; SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); CALL p(); SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); INSERT INTO orders VALUES (1, 2); SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); ALTER TABLE x ALTER a SET DEFAULT leaky(); SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW EXECUTE FUNCTION g(); SELECT a FROM x",
        "SAVEPOINT s; CREATE TEMP TABLE x (a text); ROLLBACK TO s; SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); SET search_path = public, pg_temp; SELECT a FROM x",
        "CREATE TEMP TABLE x (a text); DROP TABLE x; SELECT a FROM x",
    ] {
        let out = last(sql, true);
        assert!(
            out.as_ref().is_none_or(|o| o.iter().all(|t| !t.fresh)),
            "{sql}: {out:?}"
        );
    }
    // Code running in the same statement may fill the table before it is read.
    let o = last(
        "CREATE TEMP TABLE x (a text); SELECT leaky(), (SELECT a FROM x LIMIT 1)",
        true,
    )
    .unwrap();
    assert!(!o[1].fresh, "{o:?}");
    for sql in [
        "CREATE FUNCTION pg_temp.f() RETURNS text LANGUAGE sql AS 'SELECT ssn FROM users'; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM users WHERE ssn = ''1'''; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT length(leaky())'; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql SET search_path = x AS 'SELECT 1'; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE plpgsql AS 'BEGIN RETURN 1; END'; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'DELETE FROM orders RETURNING 1'; SELECT pg_temp.f()",
        "CREATE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql AS 'SELECT 1'; \
         CREATE FUNCTION pg_temp.f(text) RETURNS text LANGUAGE sql AS 'SELECT ssn FROM users'; SELECT pg_temp.f(1)",
        "CREATE FUNCTION pg_temp.f() RETURNS int RETURN (SELECT count(*) FROM users WHERE ssn > ''); SELECT pg_temp.f()",
    ] {
        assert!(!last(sql, true).unwrap()[0].is_clean(), "{sql}");
    }
    // Laundering into the message's table is still refused.
    let l = analyze_in(
        "CREATE TEMP TABLE x (a text); INSERT INTO x SELECT ssn FROM users",
        &Fake,
        true,
    )
    .unwrap();
    assert!(l[1].launders.is_some());
}

#[test]
fn unknown_and_laundering() {
    let l = &analyze("SELECT * FROM nowhere", &Fake).unwrap()[0];
    assert!(l.touched.unknown, "an unknown relation is not trusted");
    assert!(outputs("SELECT leaky()").unwrap()[0].unknown);
    for sql in [
        "CREATE TABLE t AS SELECT ssn FROM users",
        "INSERT INTO orders (id) SELECT length(ssn) FROM users",
        "UPDATE orders SET total = (SELECT length(ssn) FROM users LIMIT 1)",
        "COPY users TO '/tmp/x'",
        "SELECT ssn INTO t2 FROM users",
    ] {
        assert!(analyze(sql, &Fake).unwrap()[0].launders.is_some(), "{sql}");
    }
    for sql in [
        "CREATE TABLE t AS SELECT name FROM users",
        "INSERT INTO orders SELECT id, 1 FROM users",
        "UPDATE users SET name = 'x' WHERE ssn = '1'",
        // The row is the table's defaults: nothing the statement reads.
        "INSERT INTO users DEFAULT VALUES",
        "INSERT INTO nowhere DEFAULT VALUES",
    ] {
        assert!(analyze(sql, &Fake).unwrap()[0].launders.is_none(), "{sql}");
    }
    let p = &analyze("PREPARE p AS SELECT ssn FROM users", &Fake).unwrap()[0];
    assert_eq!(p.defines, Some(Named::Prepared("p".into())));
    assert_eq!(p.outputs.as_deref(), Some(&[D][..]));
    let e = &analyze("EXECUTE p", &Fake).unwrap()[0];
    assert_eq!(e.uses, Some(Named::Prepared("p".into())));
    let c = &analyze("COPY (SELECT ssn FROM users) TO STDOUT", &Fake).unwrap()[0];
    assert_eq!(c.copy_out, Some(false));
    assert!(!c.touched.is_clean());
}

const U: Taint = Taint::UNKNOWN;

/// Output names as Postgres gives them (FigureColname), read by an outer query; what
/// cannot be resolved is unknown, never clean.
#[test]
fn derived_names_follow_the_server() {
    let cases: &[(&str, &[Taint])] = &[
        (
            "SELECT coalesce FROM (SELECT coalesce(ssn, 'x') FROM users) s",
            &[X],
        ),
        (
            "SELECT \"case\" FROM (SELECT CASE WHEN id > 0 THEN ssn END FROM users) s",
            &[X],
        ),
        (
            "SELECT ssn FROM (SELECT CASE WHEN id > 0 THEN 'a' ELSE ssn END FROM users) s",
            &[X],
        ),
        (
            "SELECT text FROM (SELECT (ssn || '')::text FROM users) s",
            &[X],
        ),
        (
            "SELECT int4 FROM (SELECT (id + 1)::int4 FROM users) s",
            &[C],
        ),
        ("SELECT ssn FROM (SELECT ssn::text FROM users) s", &[D]),
        (
            "SELECT ssn FROM (SELECT ssn COLLATE \"C\" FROM users) s",
            &[X],
        ),
        (
            "SELECT ssn FROM (SELECT (SELECT ssn FROM users LIMIT 1)) s",
            &[D],
        ),
        (
            "SELECT x FROM (SELECT (SELECT ssn AS x FROM users LIMIT 1)) s",
            &[D],
        ),
        (
            "SELECT nullif FROM (SELECT nullif(ssn, '') FROM users) s",
            &[X],
        ),
        (
            "SELECT greatest FROM (SELECT greatest(ssn, name) FROM users) s",
            &[X],
        ),
        ("SELECT \"row\" FROM (SELECT ROW(ssn) FROM users) s", &[X]),
        (
            "SELECT \"array\" FROM (SELECT ARRAY[ssn] FROM users) s",
            &[X],
        ),
        ("SELECT ssn FROM (SELECT (u).ssn FROM users u) s", &[D]),
        ("SELECT (u).name, (u).ssn FROM users u", &[C, D]),
        (
            "SELECT x FROM (SELECT ssn AS \"X\", name AS x FROM users) s",
            &[C],
        ),
        (
            "SELECT coalesce FROM (SELECT coalesce(name, ''), id AS \"?column?\" FROM users) s",
            &[C],
        ),
        // Duplicate names: the server refuses the reference; every one counts.
        (
            "SELECT a FROM (SELECT name AS a, ssn AS a FROM users) s",
            &[D],
        ),
        // A name nothing in scope has: the server resolves it to something.
        ("SELECT nothing FROM (SELECT ssn FROM users) s", &[U]),
        // An output column in ORDER BY is not an unknown input.
        ("SELECT name AS n FROM users ORDER BY n", &[C]),
    ];
    for (sql, want) in cases {
        assert_eq!(outputs(sql).as_deref(), Some(*want), "{sql}");
    }
}

/// Joins' columns (merged USING / NATURAL ones first), alias lists, TABLESAMPLE.
#[test]
fn joins_and_aliases_follow_the_server() {
    let cases: &[(&str, &[Taint])] = &[
        (
            "SELECT z FROM (users a JOIN users b USING (id)) AS j(k, x, z)",
            &[D],
        ),
        (
            "SELECT * FROM users a JOIN orders b USING (id)",
            &[C, C, D, C],
        ),
        ("SELECT * FROM users NATURAL JOIN orders", &[C, C, D, C]),
        (
            "SELECT ssn FROM (SELECT id, name AS ssn FROM users) a RIGHT JOIN users b USING (ssn)",
            &[D],
        ),
        (
            "SELECT x.ssn FROM (SELECT name AS ssn FROM users) a JOIN users b USING (ssn) AS x",
            &[D],
        ),
        (
            "SELECT j.total FROM (users u JOIN orders o ON o.id = u.id) j",
            &[C],
        ),
        // Inside an aliased join, its tables are hidden.
        (
            "SELECT u.name FROM (users u JOIN orders o ON o.id = u.id) j",
            &[U],
        ),
        ("SELECT ssn FROM users TABLESAMPLE SYSTEM (10)", &[D]),
        // A side whose columns are not known: the other's stay exact...
        (
            "SELECT u.name, name FROM users u JOIN LATERAL unnest(ARRAY[ssn]) x ON true",
            &[C, C],
        ),
        // ...unless an alias list renames the join's columns.
        (
            "SELECT a FROM (users u JOIN generate_series(1, 2) g ON true) AS j(a)",
            &[X],
        ),
        (
            "SELECT s.name FROM users s TABLESAMPLE BERNOULLI (50) REPEATABLE (1)",
            &[C],
        ),
        // An alias list may name fewer columns than a function returns.
        (
            "SELECT unnest FROM unnest(ARRAY['a'], (SELECT array_agg(ssn) FROM users)) AS f(a)",
            &[X],
        ),
        (
            "SELECT email FROM (SELECT name, ssn AS email FROM users) s(x)",
            &[D],
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(outputs(sql).as_deref(), Some(*want), "{sql}");
    }
}

/// Relations the message made shadow the catalog's (system ones included); views it
/// made are traced; code that may make relations leaves names uncertain.
#[test]
fn relations_the_message_made_shadow_the_catalog() {
    for trust in [true, false] {
        for sql in [
            "CREATE TEMP VIEW orders AS SELECT ssn AS total FROM users; SELECT total FROM orders",
            "CREATE TEMP VIEW pg_x AS SELECT ssn FROM users; SELECT ssn FROM pg_x",
            "CREATE TEMP TABLE pg_y AS SELECT ssn AS a FROM users; SELECT a FROM pg_y",
            "ALTER TABLE users RENAME TO orders; SELECT total FROM orders",
            "DO $$BEGIN NULL; END$$; SELECT total FROM orders",
            "CREATE FUNCTION pg_temp.mk() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1; END$$; \
             SELECT pg_temp.mk(); SELECT total FROM orders",
        ] {
            let out = last(sql, trust).unwrap_or_default();
            assert!(out.iter().all(|t| !t.is_clean()), "{sql} ({trust}): {out:?}");
        }
    }
    let f = Taint::FRESH;
    for (sql, want) in [
        ("CREATE TEMP VIEW v AS SELECT name FROM users; SELECT name FROM v", vec![f]),
        ("CREATE TEMP VIEW v AS SELECT ssn FROM users; SELECT ssn FROM v", vec![D]),
        ("CREATE TEMP VIEW v (a, b) AS SELECT name, ssn FROM users; SELECT * FROM v", vec![f, D]),
        (
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT pg_temp.f()",
            vec![C],
        ),
        (
            "CREATE FUNCTION pg_temp.f(a int) RETURNS int LANGUAGE sql AS 'SELECT a + 1'; SELECT pg_temp.f(1)",
            vec![C],
        ),
        (
            "CREATE TEMP TABLE x (a int CHECK (a > 0), b int GENERATED ALWAYS AS (a * 2) STORED); SELECT x FROM x",
            vec![f],
        ),
    ] {
        assert_eq!(last(sql, true), Some(want), "{sql}");
    }
}

/// `INSERT ... ON CONFLICT DO UPDATE SET c = EXCLUDED.c` writes what the INSERT
/// proposed: clean values are no laundering.
#[test]
fn upserts_write_what_they_insert() {
    let clean = "INSERT INTO orders (id, total) VALUES (1, 2) \
                 ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total";
    assert!(analyze(clean, &Fake).unwrap()[0].launders.is_none());
    let masked = "INSERT INTO orders (id, total) SELECT id, ssn FROM users \
                  ON CONFLICT (id) DO UPDATE SET total = EXCLUDED.total";
    assert!(analyze(masked, &Fake).unwrap()[0].launders.is_some());
}

/// Review s36 F9: `orders`' row-level security policies keep masked values; those
/// of `users` refer to its masked column on reads.
struct Policied;

impl Relations for Policied {
    fn relation(&self, schema: Option<&str>, name: &str) -> Relation {
        Fake.relation(schema, name)
    }
    fn function(&self, name: &str) -> Taint {
        Fake.function(name)
    }
    fn policies(&self, _schema: Option<&str>, name: &str, write: bool) -> Runs {
        match name {
            "orders" => Runs {
                refers: X,
                keeps: X,
            },
            "users" if !write => Runs {
                refers: D,
                keeps: C,
            },
            _ => Runs::default(),
        }
    }
}

#[test]
fn policies_run_on_reads_and_writes() {
    for sql in [
        "SELECT id FROM orders",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM orders)",
        "INSERT INTO orders VALUES (1, 2)",
        "DELETE FROM orders",
    ] {
        assert!(
            analyze(sql, &Policied).unwrap()[0].launders.is_some(),
            "{sql}"
        );
    }
    // Referring is not keeping: the read is allowed, its errors withheld.
    let l = analyze("SELECT id FROM users", &Policied)
        .unwrap()
        .remove(0);
    assert!(l.launders.is_none() && !l.touched.is_clean(), "{l:?}");
    assert_eq!(l.outputs.as_deref(), Some(&[C][..]));
    // DDL on the table runs none of them.
    let l = analyze("ALTER TABLE orders ADD COLUMN x int", &Policied).unwrap();
    assert!(l[0].launders.is_none(), "{l:?}");
}

#[test]
fn policies_made_are_judged_like_triggers() {
    for sql in [
        "CREATE POLICY p ON users USING (true)",
        "CREATE POLICY p ON orders USING (leaky())",
        "CREATE POLICY p ON orders FOR INSERT WITH CHECK (leaky() IS NOT NULL)",
        "ALTER POLICY p ON orders USING (total::text = (SELECT ssn FROM users LIMIT 1))",
    ] {
        assert!(analyze(sql, &Fake).unwrap()[0].launders.is_some(), "{sql}");
    }
    for sql in [
        "CREATE POLICY p ON orders USING (total > 0)",
        "ALTER POLICY p ON orders USING (id = 1) WITH CHECK (total > 0)",
    ] {
        assert!(analyze(sql, &Fake).unwrap()[0].launders.is_none(), "{sql}");
    }
}
