//! Review s35-fixes, the rules side (X6, X7, X8, X9, X11): forms that dodged a
//! `tables:`, `columns:` or `functions:` rule. Each is refused (42501, naming the
//! rule) before it reaches the server; the Postgres the tests run is not a
//! superuser's, so a statement that got through would fail there with another
//! SQLSTATE or message, never with the rule's id.

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::*;
use crate::masking::fixture;

/// A gateway with these rules (YAML), for the standard agent (no masks).
async fn with_rules(text: &str) -> (TestGateway, TempDir) {
    let dir = TempDir::new("pgmoat-rules2");
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

async fn direct() -> Client {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap()
}

/// The first column of the first row a message returns.
async fn first(c: &Client, sql: &str) -> Option<String> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
            _ => None,
        })
        .flatten()
}

/// X11 and X6 (rules-only): a `columns:` rule on `people.ssn` is not dodged by
/// renaming the table or moving it to another schema, by COPY (either way, with or
/// without a column list), by a foreign table whose column reads `ssn` under
/// another name, or by attaching the table as a partition of (or a child of) a
/// table of another name, or detaching it; a `tables_written:` rule sees the
/// partition attached. Other columns stay readable, and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x11_x6_columns_rules_see_renames_copy_foreign_tables_and_partitions() {
    let p = unique("people");
    let secret = unique("secret");
    let (gw, _dir) = with_rules(&format!(
        "rules:
  - id: no-ssn-col
    when: {{ columns: [{p}.ssn] }}
    action: block
  - id: no-secret-writes
    when: {{ tables_written: [{secret}] }}
    action: block
"
    ))
    .await;
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE TABLE {p} (id int, name text, ssn text);
             INSERT INTO {p} VALUES (1, 'ann', '123-45-6789');
             CREATE TABLE {secret} (id int, name text, ssn text);
             CREATE TABLE {p}_pp (id int, name text, ssn text) PARTITION BY LIST (id);
             CREATE TABLE {p}_parent (id int, name text, ssn text);
             CREATE SCHEMA {p}_s;"
        ))
        .await
        .unwrap();
    let c = gw.connect().await;
    for sql in [
        format!("ALTER TABLE {p} RENAME TO {p}_folks"),
        format!("ALTER TABLE IF EXISTS public.{p} RENAME TO {p}_folks"),
        format!("ALTER TABLE {p} SET SCHEMA {p}_s"),
        format!("COPY {p} TO STDOUT"),
        format!("COPY {p} (ssn) TO STDOUT"),
        format!("COPY {p} (id, name, ssn) FROM STDIN"),
        format!(
            "CREATE FOREIGN TABLE {p}_f (x text OPTIONS (column_name 'ssn')) SERVER nosuch \
             OPTIONS (table_name '{p}')"
        ),
        format!("CREATE FOREIGN TABLE {p}_f (ssn text) SERVER nosuch OPTIONS (table_name '{p}')"),
        format!("ALTER FOREIGN TABLE {p}_f ALTER COLUMN x OPTIONS (SET column_name 'ssn')"),
        format!("ALTER FOREIGN TABLE {p}_f OPTIONS (SET table_name '{p}')"),
        format!("ALTER TABLE {p}_pp ATTACH PARTITION {p} DEFAULT"),
        format!("ALTER TABLE {p}_pp DETACH PARTITION {p}"),
        format!("ALTER TABLE {p} INHERIT {p}_parent"),
        format!("ALTER TABLE {p} NO INHERIT {p}_parent"),
    ] {
        refused_by(&c, &sql, "no-ssn-col").await;
    }
    refused_by(
        &c,
        &format!("ALTER TABLE {p}_pp ATTACH PARTITION {secret} DEFAULT"),
        "no-secret-writes",
    )
    .await;
    // Nothing changed: the table has its name, its schema and no parent.
    let n: i64 = direct
        .query_one(
            &format!(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = 'public' AND c.relname = '{p}' \
                 AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid)"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "{p} is where it was");
    // Other columns, and a foreign table over another column, are not refused (the
    // server refuses the latter: there is no server `nosuch`).
    assert_eq!(
        first(&c, &format!("SELECT name FROM {p}")).await.as_deref(),
        Some("ann")
    );
    let e = c
        .simple_query(&format!(
            "CREATE FOREIGN TABLE {p}_g (x text OPTIONS (column_name 'name')) SERVER nosuch \
             OPTIONS (table_name '{p}')"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42704", "{e:?}");
    direct
        .batch_execute(&format!(
            "DROP TABLE {p}, {secret}, {p}_pp, {p}_parent; DROP SCHEMA {p}_s"
        ))
        .await
        .unwrap();
    // X6 for an identity with masks: the partition attached (or the child made) is
    // written, so it is refused by the mask of its columns.
    let f = fixture("").await;
    f.direct
        .batch_execute(&f.sql(
            "CREATE TABLE {t}_pp (id int, name text, ssn text, email text, card_number varchar(25),
               salary int, note text) PARTITION BY LIST (id);
             CREATE TABLE {t}_parent (id int)",
        ))
        .await
        .unwrap();
    let agent = f.agent().await;
    for sql in [
        "ALTER TABLE {t}_pp ATTACH PARTITION {t} DEFAULT",
        "ALTER TABLE {t} INHERIT {t}_parent",
    ] {
        f.blocked_by_mask(&agent, sql).await;
    }
}

/// X8: INSERT/UPDATE/DELETE/MERGE/COPY FROM on a system catalog renames (or
/// removes) what rules name when the upstream is a superuser: it matches every
/// `tables:`, `columns:` and `functions:` rule, the baseline's catalog-write rule
/// refuses it, and it is refused for an identity with masks. `UPDATE pg_settings`
/// (a setting, judged as one) is not such a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x8_catalog_writes_match_every_rule() {
    let secret = unique("secret");
    let (gw, _dir) = with_rules(&format!(
        "rules:
  - id: no-secret
    when: {{ tables: [public.{secret}] }}
    action: block
  - id: no-ssn-col
    when: {{ columns: [{secret}.ssn] }}
    action: block
  - id: no-file-read
    when: {{ functions: [pg_read_file] }}
    action: block
"
    ))
    .await;
    let c = gw.connect().await;
    for sql in [
        format!("UPDATE pg_catalog.pg_class SET relname = 'notsecret' WHERE relname = '{secret}'"),
        format!("UPDATE pg_class SET relname = 'notsecret' WHERE relname = '{secret}'"),
        "UPDATE pg_catalog.pg_attribute SET attname = 'zz' WHERE attname = 'ssn'".to_string(),
        "DELETE FROM pg_catalog.pg_namespace WHERE nspname = 'nothing'".to_string(),
        "INSERT INTO pg_catalog.pg_description VALUES (0, 0, 0, 'x')".to_string(),
        "COPY pg_catalog.pg_class FROM STDIN".to_string(),
        "WITH x AS (UPDATE pg_catalog.pg_proc SET proname = 'p' WHERE false RETURNING 1) \
         SELECT * FROM x"
            .to_string(),
        "DO $b$ BEGIN UPDATE pg_catalog.pg_namespace SET nspname = 'x' WHERE false; END $b$"
            .to_string(),
        // A simple view over a catalog table is updatable: a write to it writes that.
        format!("CREATE VIEW {secret}_v AS SELECT oid, relname FROM pg_class"),
    ] {
        refused_by(&c, &sql, "no-secret").await;
    }
    // A rule that names only columns, or only functions, matches too.
    for (rule, cond, sql) in [
        (
            "no-ssn-col",
            format!("columns: [{secret}.ssn]"),
            "UPDATE pg_catalog.pg_attribute SET attname = 'zz' WHERE attname = 'ssn'",
        ),
        (
            "no-file-read",
            "functions: [pg_read_file]".to_string(),
            "UPDATE pg_catalog.pg_proc SET proname = 'harmless' WHERE proname = 'pg_read_file'",
        ),
    ] {
        let (gw2, _dir2) = with_rules(&format!(
            "rules:\n  - id: {rule}\n    when: {{ {cond} }}\n    action: block\n"
        ))
        .await;
        refused_by(&gw2.connect().await, sql, rule).await;
    }
    // A setting through pg_settings is still a setting.
    c.batch_execute("UPDATE pg_settings SET setting = '8MB' WHERE name = 'work_mem'")
        .await
        .unwrap();
    // The shipped baseline refuses catalog writes by itself.
    let baseline = include_str!("../../rules/baseline.yaml");
    let (gw3, _dir3) = with_rules(baseline).await;
    let c3 = gw3.connect().await;
    for sql in [
        "UPDATE pg_catalog.pg_class SET relname = relname WHERE false",
        "DELETE FROM pg_attribute WHERE false",
    ] {
        refused_by(&c3, sql, "no-catalog-writes").await;
    }
    // For an identity with masks: refused by the mask.
    let f = fixture("").await;
    let agent = f.agent().await;
    f.blocked_by_mask(
        &agent,
        "UPDATE pg_catalog.pg_attribute SET attname = 'zz' \
         WHERE attrelid = '{t}'::regclass AND attname = 'ssn'",
    )
    .await;
}

/// X9: extension functions that read a relation named in a string (tablefunc,
/// dblink's SQL builders, pageinspect, pg_walinspect's block data, xml2) cannot be
/// judged: refused unless a rule allows them, for identities with masks too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x9_extension_functions_reading_named_relations_fail_closed() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let su = pg
        .connect(&pg.superuser, &pg.password, "demo")
        .await
        .unwrap();
    // Where the server has them, so a call that got through would run.
    for ext in ["tablefunc", "pageinspect"] {
        let _ = su
            .batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {ext}"))
            .await;
    }
    let secret = unique("secret");
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: no-secret\n    when: {{ tables: [{secret}] }}\n    action: block\n"
    ))
    .await;
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE TABLE {secret} (id int, v text); INSERT INTO {secret} VALUES (1, 'TOPSECRET')"
        ))
        .await
        .unwrap();
    let c = gw.connect().await;
    let calls = [
        format!(
            "SELECT n, x FROM crosstab('SELECT v, ''x'', v FROM {secret}') AS ct(n text, x text)"
        ),
        format!("SELECT * FROM public.crosstab2('SELECT v, ''x'', v FROM {secret}')"),
        format!(
            "SELECT * FROM connectby('{secret}', 'v', 'id', '1', 0) AS t(a text, b text, l int)"
        ),
        format!("SELECT dblink_build_sql_insert('{secret}', '1', 1, '{{1}}', '{{1}}')"),
        format!("SELECT dblink_build_sql_update('{secret}', '1', 1, '{{1}}', '{{1}}')"),
        format!(
            "SELECT encode(t_data, 'escape') FROM heap_page_items(get_raw_page('{secret}', 0))"
        ),
        format!("SELECT * FROM bt_page_items('{secret}_pkey', 1)"),
        "SELECT * FROM gin_leafpage_items('\\x00'::bytea)".to_string(),
        "SELECT * FROM pg_get_wal_block_info('0/0', '0/1')".to_string(),
        format!(
            "SELECT * FROM xpath_table('id', 'v', '{secret}', '/a', 'true') AS t(id int, a text)"
        ),
    ];
    for sql in &calls {
        refused_by(&c, sql, "unanalysable").await;
    }
    let f = fixture("").await;
    let agent = f.agent().await;
    for sql in [
        "SELECT * FROM connectby('{t}', 'ssn', 'name', 'Ada', 1) AS t(a text, b text, l int)",
        "SELECT * FROM crosstab('SELECT name, ''x'', ssn FROM {t}') AS ct(n text, x text)",
        "SELECT encode(t_data, 'escape') FROM heap_page_items(get_raw_page('{t}', 0))",
    ] {
        let sql = f.sql(sql);
        let e = agent.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        f.assert_clean(&sql, &format!("{e:?}"));
    }
    direct
        .batch_execute(&format!("DROP TABLE {secret}"))
        .await
        .unwrap();
}

/// X7, defence in depth: in the message or the transaction that makes an aggregate
/// or an operator, a statement using one the catalog does not know yet is refused
/// when the rules name functions (whatever spelling the DDL used to name the
/// function behind it, pgmoat's catalog cannot show it yet). After the transaction
/// ends it runs; without `functions:` rules it runs at once; a function a message
/// makes (its body judged there) can be called at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x7_unknown_code_behind_ddl_is_refused_when_rules_name_functions() {
    let s = unique("x7s");
    let direct = direct().await;
    direct
        .batch_execute(&format!("CREATE SCHEMA {s}"))
        .await
        .unwrap();
    let (gw, _dir) = with_rules(
        "rules:\n  - id: no-file-read\n    when: { functions: [pg_read_file] }\n    action: block\n",
    )
    .await;
    let c = gw.connect().await;
    let mk = |n: &str| {
        format!(
            "CREATE FUNCTION {s}.{n}(a int8, b int8) RETURNS int8 LANGUAGE sql AS 'SELECT a + b';
             CREATE AGGREGATE {s}.{n}_agg(int8) (SFUNC = {s}.{n}, STYPE = int8, INITCOND = '0')"
        )
    };
    let agg = |n: &str| format!("SELECT {s}.{n}_agg(x) FROM generate_series(1, 3) x");
    let behind = |e: tokio_postgres::Error| {
        assert_eq!(sqlstate(&e), "55000", "{e:?}");
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(msg.contains("cannot see yet"), "{msg}");
    };
    // Same message: the aggregate, and the operator.
    behind(
        c.simple_query(&format!("{}; {}", mk("f1"), agg("f1")))
            .await
            .unwrap_err(),
    );
    behind(
        c.simple_query(&format!(
            "{}; CREATE OPERATOR {s}.#@# (FUNCTION = {s}.f1, LEFTARG = int8, RIGHTARG = int8);
             SELECT 1::int8 OPERATOR({s}.#@#) 2::int8",
            mk("f1")
        ))
        .await
        .unwrap_err(),
    );
    // Same transaction, separate messages.
    c.batch_execute(&format!("BEGIN; {}", mk("f2")))
        .await
        .unwrap();
    behind(c.simple_query(&agg("f2")).await.unwrap_err());
    c.batch_execute("ROLLBACK").await.unwrap();
    // Committed: the catalog shows it, and the call runs.
    c.batch_execute(&mk("f3")).await.unwrap();
    assert_eq!(first(&c, &agg("f3")).await.as_deref(), Some("6"));
    // A plain function the message makes runs at once.
    assert_eq!(
        first(
            &c,
            &format!(
                "CREATE FUNCTION {s}.g(a int8) RETURNS int8 LANGUAGE sql AS 'SELECT a * 2'; \
                 SELECT {s}.g(2)"
            )
        )
        .await
        .as_deref(),
        Some("4")
    );
    // Rules without `functions:` conditions: the same message runs.
    let (gw2, _dir2) =
        with_rules("rules:\n  - id: no-drop\n    when: { statement: [drop] }\n    action: block\n")
            .await;
    let c2 = gw2.connect().await;
    assert_eq!(
        first(&c2, &format!("{}; {}", mk("f4"), agg("f4")))
            .await
            .as_deref(),
        Some("6")
    );
    direct
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
}

/// Review s36-fixes Y2, Y4, Y6: a table turned into (or a view re-pointed as) a view
/// over the catalog by a `_RETURN` rule, a view over an updatable system view, and
/// `ALTER INDEX <table> RENAME`, each past what CREATE VIEW and ALTER TABLE are
/// checked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn y2_y4_y6_catalog_writes_and_renames_by_other_spellings() {
    let secret = unique("secret");
    direct()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {secret} (id int, ssn text); CREATE VIEW {secret}_pv AS SELECT id FROM {secret}"
        ))
        .await
        .unwrap();
    let (gw, _dir) = with_rules(&format!(
        "rules:
  - id: no-secret
    when: {{ tables: [public.{secret}] }}
    action: block
  - id: no-ssn-col
    when: {{ columns: [{secret}.ssn] }}
    action: block
"
    ))
    .await;
    let c = gw.connect().await;
    for sql in [
        format!(
            "CREATE RULE \"_RETURN\" AS ON SELECT TO {secret}_pv DO INSTEAD \
             SELECT oid::int AS id FROM pg_class"
        ),
        format!(
            "CREATE OR REPLACE RULE \"_RETURN\" AS ON SELECT TO {secret}_pv DO INSTEAD \
             SELECT oid::int AS id FROM pg_class"
        ),
        format!("CREATE VIEW {secret}_v2 AS SELECT datid, datname FROM pg_stat_database_conflicts"),
        format!("CREATE VIEW {secret}_v3 AS SELECT groname FROM pg_catalog.pg_group"),
    ] {
        refused_by(&c, &sql, "no-secret").await;
    }
    // A rule naming only the column sees the table renamed by ALTER INDEX.
    let (gw2, _dir2) = with_rules(&format!(
        "rules:\n  - id: no-ssn-col\n    when: {{ columns: [{secret}.ssn] }}\n    action: block\n"
    ))
    .await;
    refused_by(
        &gw2.connect().await,
        &format!("ALTER INDEX {secret} RENAME TO {secret}_folks"),
        "no-ssn-col",
    )
    .await;
    let still: i64 = direct()
        .await
        .query_one(
            &format!("SELECT count(*) FROM pg_class WHERE relname = '{secret}'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, 1, "the table was not renamed");
}
