//! Enforcement through the wire: blocked statements get 42501 naming the rule, never
//! reach the server, leave the session usable with the server's true status; rules
//! reload without a restart.

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use crate::harness::*;

fn rules_dir(text: &str) -> TempDir {
    let dir = TempDir::new("pgmoat-rules");
    std::fs::write(dir.path().join("rules.yaml"), text).unwrap();
    dir
}

const BASELINE: &str = include_str!("../../rules/baseline.yaml");

async fn with_baseline() -> (&'static crate::common::pg::TestPg, TestGateway) {
    let dir = rules_dir(BASELINE);
    // The rules are loaded at start; the folder may go once the gateway runs.
    start_with(&format!("rules: {}\n", dir.path().display())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_cycles_around_refusals() {
    let (_pg, gw) = with_baseline().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    check_prepared_cycles(&mut raw).await;
    // A refused Parse pipelined between two cycles: its error comes in its place and
    // the cycles around it are answered as usual.
    let mut setup = parse_msg("ok", "SELECT 7");
    setup.extend(message(b'S', b""));
    raw.send(&setup).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let mut pipe = bind_execute_sync("ok");
    pipe.extend(parse_msg("drop", "DROP TABLE IF EXISTS nothing_here"));
    pipe.extend(message(b'S', b""));
    pipe.extend(bind_execute_sync("ok"));
    raw.send(&pipe).await;
    assert_eq!(tags(&raw.until_ready().await), "2DCZ");
    let refused = raw.until_ready().await;
    assert_eq!(tags(&refused), "EZ");
    assert_eq!(refused[0].field(b'C'), "42501");
    assert_eq!(tags(&raw.until_ready().await), "2DCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_statements_never_reach_the_server() {
    let (pg, gw) = with_baseline().await;
    let c = gw.connect().await;
    let table = unique("victim");
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2)"
    ))
    .await
    .unwrap();
    for sql in [
        format!("DROP TABLE {table}"),
        format!("DELETE FROM {table}"),
        format!("DELETE FROM {table} WHERE 1=1"),
        format!("WITH d AS (DELETE FROM {table} RETURNING *) SELECT * FROM d"),
        format!("SELECT 1; TRUNCATE {table}"),
        format!("EXPLAIN ANALYZE DELETE FROM {table}"),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}");
        assert!(
            db.message().starts_with("pgmoat: blocked by rule \""),
            "{sql}: {}",
            db.message()
        );
        assert!(
            db.detail().is_some_and(|d| d.contains("kinds:")),
            "{sql}: {:?}",
            db.detail()
        );
    }
    // Nothing happened, and the server never saw the refused text.
    let count = format!("SELECT count(*) AS after_refusals FROM {table}");
    let n: i64 = c.query_one(&count, &[]).await.unwrap().get(0);
    assert_eq!(n, 2);
    // The server logs each statement as it starts it, one backend in order: once the
    // statement sent after the refused ones is in the log, so would they be.
    let log = wait_log_contains(pg, &count).await;
    assert!(
        !log.contains(&format!("DROP TABLE {table}")),
        "the server saw a blocked statement"
    );
    assert!(
        !log.contains(&format!("DELETE FROM {table}")),
        "the server saw a blocked statement"
    );
    assert!(
        log.contains(&format!("INSERT INTO {table}")),
        "allowed statements are logged (the check can fail)"
    );
    // Allowed statements still run, narrow writes included.
    c.simple_query(&format!("DELETE FROM {table} WHERE id = 1"))
        .await
        .unwrap();
    assert!(
        gw.metrics
            .messages_blocked
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_statement_stops_the_whole_message() {
    let (_pg, gw) = with_baseline().await;
    let c = gw.connect().await;
    let table = unique("whole");
    c.batch_execute(&format!("CREATE TABLE {table} (id int)"))
        .await
        .unwrap();
    let e = c
        .simple_query(&format!(
            "INSERT INTO {table} VALUES (1); DELETE FROM {table}; INSERT INTO {table} VALUES (2)"
        ))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(
        e.as_db_error()
            .unwrap()
            .detail()
            .unwrap()
            .starts_with("statement 2:"),
        "{e:?}"
    );
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "nothing of the message ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_inside_a_transaction_reports_the_servers_status() {
    let (_pg, gw) = with_baseline().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    assert_eq!(status(&raw.query("BEGIN").await), b'T');
    let msgs = raw.query("DROP TABLE anything").await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(msgs[0].field(b'C'), "42501");
    assert!(msgs[0].field(b'M').contains("no-drop"));
    assert_eq!(
        status(&msgs),
        b'E',
        "the transaction is failed, as after any error"
    );
    let msgs = raw.query("SELECT 1").await;
    assert_eq!(msgs[0].field(b'C'), "25P02");
    assert_eq!(status(&raw.query("ROLLBACK").await), b'I');
    // Outside a transaction the session is simply idle and usable.
    let msgs = raw.query("TRUNCATE x");
    assert_eq!(status(&msgs.await), b'I');
    assert_eq!(tags(&raw.query("SELECT 2").await), "TDCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_is_judged_at_parse() {
    let (_pg, gw) = with_baseline().await;
    let c = gw.connect().await;
    let e = c.prepare("DELETE FROM users").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let e = c
        .query("SELECT pg_read_file($1)", &[&"/etc/passwd"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("no-server-files"));
    // Allowed statements with parameters still work, reused.
    let s = c.prepare("SELECT $1::int * 2").await.unwrap();
    for i in 0..20i32 {
        assert_eq!(
            c.query_one(&s, &[&i]).await.unwrap().get::<_, i32>(0),
            i * 2
        );
    }
    // Raw: a refused named Parse, then Bind/Execute of it before Sync are discarded.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut out = BytesMut::new();
    frontend::parse("ok1", "SELECT 1", std::iter::empty(), &mut out).unwrap();
    frontend::parse("bad", "DROP TABLE users", std::iter::empty(), &mut out).unwrap();
    // Bind: portal "", statement "bad", no formats, no parameters, no result formats.
    out.extend_from_slice(&message(b'B', b"\0bad\0\0\0\0\0\0\0"));
    frontend::execute("", 0, &mut out).unwrap();
    frontend::sync(&mut out);
    raw.send(&out).await;
    let msgs = raw.until_ready().await;
    assert_eq!(
        tags(&msgs),
        "1EZ",
        "ParseComplete, then one error, discard to Sync"
    );
    assert_eq!(msgs[1].field(b'C'), "42501");
    assert_eq!(status(&msgs), b'I');
    // The session goes on.
    assert_eq!(tags(&raw.query("SELECT 3").await), "TDCZ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_and_unanalysable_sql_is_refused() {
    let (_pg, gw) = with_baseline().await;
    let c = gw.connect().await;
    let e = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .starts_with("pgmoat: cannot parse"));
    let e = c
        .simple_query("DO $$ BEGIN RAISE NOTICE 'x'; END $$")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(e
        .as_db_error()
        .unwrap()
        .message()
        .contains("no-do-for-agents"));
    for sql in [
        "SET ROLE postgres",
        "SELECT set_config('role', 'postgres', false)",
        "COPY users TO PROGRAM 'id'",
    ] {
        let e = c.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}");
    }
    // Benign SQL passes untouched, keyword look-alikes included.
    let rows = c
        .simple_query("SELECT 'DROP TABLE users' AS drop_date")
        .await
        .unwrap();
    assert!(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_without_a_restart() {
    let secret = unique("secret");
    let block = format!(
        "rules:\n  - id: no-secret\n    description: not this table\n    when: {{ tables: [{secret}] }}\n    action: block\n"
    );
    let dir = rules_dir(&block);
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    let sql = format!("SELECT * FROM {secret}");
    let e = c.simple_query(&sql).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert!(e.as_db_error().unwrap().message().contains("no-secret"));
    // A new rule set: the statement is now judged by it (the table does not exist).
    std::fs::write(dir.path().join("rules.yaml"), "rules: []\n").unwrap();
    let (c, sql) = (&c, &sql);
    wait_for("the new rules to take effect", WAIT_LIMIT, || async move {
        let e = c.simple_query(sql).await.unwrap_err();
        match sqlstate(&e).as_str() {
            "42P01" => Ok(()),
            "42501" => Err(format!("still blocked: {e}")),
            other => panic!("neither rule set answers {other}: {e}"),
        }
    })
    .await;
    // A broken file is refused; the rules in force stay.
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules:\n  - id: x\n    action: explode\n",
    )
    .unwrap();
    // Wait for the watcher to have looked at the broken file and refused it.
    let admin = gw.admin.unwrap();
    let metrics = wait_for(
        "the broken rules to be refused",
        WAIT_LIMIT,
        || async move {
            let (_, metrics) = http_get(admin, "/metrics").await;
            if metrics.contains("pgmoat_rules_reloads_total{outcome=\"refused\"} 1") {
                Ok(metrics)
            } else {
                Err(metrics)
            }
        },
    )
    .await;
    assert!(
        metrics.contains("pgmoat_rules_reloads_total{outcome=\"applied\"} 1"),
        "{metrics}"
    );
    let e = c.simple_query(sql).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01", "old rules still in force: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_validate_and_explain() {
    let (_pg, gw) = with_baseline().await;
    let admin = gw.admin.unwrap();
    let (code, _) = http_post(admin, "/api/v1/rules/validate", None, "rules: []").await;
    assert_eq!(code, 401, "no token");
    let (code, _) = http_post(admin, "/api/v1/rules/validate", Some("wrong"), "rules: []").await;
    assert_eq!(code, 401, "wrong token");
    let (code, body) = http_post(
        admin,
        "/api/v1/rules/validate",
        Some("admin-token"),
        "rules: []\n",
    )
    .await;
    assert_eq!((code, body.as_str()), (200, r#"{"ok":true}"#));
    let bad = "rules:\n  - id: x\n    when: { statement: [dorp] }\n    action: block\n";
    let (code, body) = http_post(admin, "/api/v1/rules/validate", Some("admin-token"), bad).await;
    assert_eq!(code, 422);
    assert!(
        body.contains(r#"request:2: rule \"x\": unknown statement kind \"dorp\""#),
        "{body}"
    );
    let req = r#"{"sql":"DROP TABLE users","user":"agent-1","groups":["agents"],"target":"demo"}"#;
    let (code, body) = http_post(admin, "/api/v1/explain", Some("admin-token"), req).await;
    assert_eq!(code, 200);
    assert_eq!(
        body,
        r#"{"action":"block","rules":["no-drop"],"statements":[{"kinds":["drop"],"tables_read":[],"tables_written":["public.users"],"functions":[],"where":"n/a"}],"masked_columns":[]}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unqualified_names_follow_search_path_changes() {
    let dir = rules_dir("rules:\n  - id: hr-only\n    description: HR tables\n    when: { tables: [\"hr.*\"] }\n    action: block\n");
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let c = gw.connect().await;
    // Before: `salaries` is public.salaries (which does not exist): the server answers.
    let e = c.simple_query("SELECT * FROM salaries").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    c.simple_query("SET search_path = hr, public")
        .await
        .unwrap();
    let e = c.simple_query("SELECT * FROM salaries").await.unwrap_err();
    assert_eq!(
        sqlstate(&e),
        "42501",
        "after SET search_path it could be hr.salaries"
    );
    // A session that starts with a search_path option is treated the same from the start.
    let url = format!(
        "{} options='-c search_path=hr'",
        gw.url(AGENT, AGENT_PW, "demo")
    );
    let c2 = connect_url(&url).await.unwrap();
    let e = c2.simple_query("SELECT * FROM salaries").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_writing_a_table_runs_is_judged() {
    let (pg, gw) = with_baseline().await;
    let su = connect_url(&pg.conn_str(&pg.superuser, &pg.password, "demo"))
        .await
        .unwrap();
    let n = &unique("w")[2..];
    // Set up by a DBA, behind the gateway: defaults, checks, assignment casts and
    // column domains all run on INSERT without the statement naming them.
    su.batch_execute(&format!(
        "CREATE TABLE public.filed_{n} (id int, note text DEFAULT pg_catalog.pg_read_file('/etc/hostname'));
         CREATE TABLE public.checked_{n} (id int CHECK (pg_catalog.pg_stat_file('.') IS NOT NULL));
         CREATE TYPE public.castty_{n} AS (v text);
         CREATE FUNCTION public.to_castty_{n}(text) RETURNS public.castty_{n} LANGUAGE sql
           AS 'SELECT ROW(pg_catalog.pg_read_file($1))::public.castty_{n}';
         CREATE CAST (text AS public.castty_{n}) WITH FUNCTION public.to_castty_{n}(text) AS ASSIGNMENT;
         CREATE TABLE public.casted_{n} (c public.castty_{n});
         CREATE DOMAIN public.filedom_{n} AS text CHECK (pg_catalog.pg_read_file(VALUE) IS NOT NULL);
         CREATE TABLE public.domained_{n} (p public.filedom_{n});
         CREATE TABLE public.plain_{n} (id int CHECK (id > 0), at timestamptz DEFAULT now());
         GRANT ALL ON public.filed_{n}, public.checked_{n}, public.casted_{n},
           public.domained_{n}, public.plain_{n} TO app_rw;"
    ))
    .await
    .unwrap();
    let c = gw.connect().await;
    for (sql, rule) in [
        (
            format!("INSERT INTO filed_{n} (id) VALUES (1)"),
            "no-server-files",
        ),
        (
            format!("INSERT INTO checked_{n} VALUES (1)"),
            "no-server-files",
        ),
        (
            format!("INSERT INTO casted_{n} VALUES ('/etc/hostname'::text)"),
            "no-server-files",
        ),
        (
            format!("INSERT INTO domained_{n} VALUES ('/etc/hostname')"),
            "no-server-files",
        ),
        (
            format!("UPDATE filed_{n} SET note = DEFAULT WHERE id = 1"),
            "no-server-files",
        ),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}");
        assert!(db.message().contains(rule), "{sql}: {}", db.message());
    }
    let rows = su
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM public.filed_{n}) + (SELECT count(*) FROM public.checked_{n})
                      + (SELECT count(*) FROM public.casted_{n}) + (SELECT count(*) FROM public.domained_{n})"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.get::<_, i64>(0), 0, "nothing was written");
    // Reading or deleting from those tables runs none of it; ordinary defaults and
    // checks pass.
    c.simple_query(&format!("SELECT id, note FROM filed_{n}"))
        .await
        .unwrap();
    c.simple_query(&format!("DELETE FROM filed_{n} WHERE id = 1"))
        .await
        .unwrap();
    c.simple_query(&format!("INSERT INTO plain_{n} (id) VALUES (1)"))
        .await
        .unwrap();
    let e = c
        .simple_query(&format!("INSERT INTO plain_{n} (id) VALUES (0)"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "23514", "the server's own check still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_hidden_behind_catalog_objects_are_found() {
    let (pg, gw) = with_baseline().await;
    let su = connect_url(&pg.conn_str(&pg.superuser, &pg.password, "demo"))
        .await
        .unwrap();
    let t = unique("wiped");
    let n = &t[6..]; // a unique suffix
    su.batch_execute(&format!(
        "CREATE TABLE public.{t} (id int);
         GRANT ALL ON public.{t} TO app_rw;
         CREATE DOMAIN public.sneaky_{n} AS text CHECK (pg_catalog.pg_read_file(VALUE) IS NOT NULL);
         CREATE FUNCTION public.wipe_{n}() RETURNS void LANGUAGE sql AS 'DELETE FROM public.{t}';
         CREATE FUNCTION public.outer_{n}() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM public.wipe_{n}(); END $$;"
    ))
    .await
    .unwrap();
    let c = gw.connect().await;
    for (sql, rule) in [
        (format!("SELECT 'x'::sneaky_{n}"), "no-server-files"),
        (format!("SELECT wipe_{n}()"), "no-unbounded-writes"),
        (format!("SELECT public.outer_{n}()"), "no-unbounded-writes"),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}");
        assert!(db.message().contains(rule), "{sql}: {}", db.message());
    }
    // DDL through the gateway makes it look at the catalog again: an operator created
    // behind its back afterwards is still resolved to its function.
    c.simple_query(&format!("CREATE TABLE marker_{n} (a int)"))
        .await
        .unwrap();
    su.batch_execute(
        "CREATE OPERATOR public.<~<~ (RIGHTARG = text, FUNCTION = pg_catalog.pg_read_file)",
    )
    .await
    .unwrap();
    let e = c
        .simple_query("SELECT <~<~ '/etc/hostname'")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let msg = e.as_db_error().unwrap().message().to_string();
    assert!(msg.contains("no-server-files"), "{msg}");
    // An operator in a subquery comparison, an aggregate's state function, and a
    // function set to read its body with other string rules (pgmoat could not read it
    // as the server does) are followed too.
    su.batch_execute(&format!(
        "CREATE FUNCTION public.wipe_op_{n}(int, int) RETURNS bool LANGUAGE sql AS
           'DELETE FROM public.{t} RETURNING true';
         CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = public.wipe_op_{n});
         CREATE FUNCTION public.wipe_sf_{n}(int, int) RETURNS int LANGUAGE sql AS
           'DELETE FROM public.{t} RETURNING 1';
         CREATE AGGREGATE public.wipe_agg_{n}(int) (SFUNC = public.wipe_sf_{n}, STYPE = int);
         CREATE FUNCTION public.sneaky_scs_{n}() RETURNS text LANGUAGE sql
           SET standard_conforming_strings = off AS $f$ SELECT 'x\\' -- '; DELETE FROM public.{t}; SELECT 'y' $f$;"
    ))
    .await
    .unwrap();
    c.simple_query(&format!("CREATE TABLE marker2_{n} (a int)"))
        .await
        .unwrap();
    su.batch_execute(&format!("INSERT INTO public.{t} VALUES (1)"))
        .await
        .unwrap();
    for sql in [
        "SELECT 1 ### ANY (SELECT 1)".to_string(),
        format!("SELECT wipe_agg_{n}(x) FROM (VALUES (1)) v(x)"),
        format!("SELECT sneaky_scs_{n}()"),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
    let left: i64 = su
        .query_one(&format!("SELECT count(*) FROM public.{t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1, "nothing was deleted");
    // A view, a domain over the domain, and an internal-language alias of a built-in
    // run what they hide.
    su.batch_execute(&format!(
        "CREATE VIEW public.peek_{n} AS SELECT pg_catalog.pg_read_file('/etc/hostname') AS f;
         GRANT SELECT ON public.peek_{n} TO app_rw;
         CREATE DOMAIN public.sneakiest_{n} AS public.sneaky_{n};
         CREATE FUNCTION public.readit_{n}(text) RETURNS text LANGUAGE internal STRICT
           AS 'pg_read_file_all';"
    ))
    .await
    .unwrap();
    c.simple_query(&format!("CREATE TABLE marker3_{n} (a int)"))
        .await
        .unwrap();
    for sql in [
        format!("SELECT * FROM peek_{n}"),
        format!("SELECT 'x'::sneakiest_{n}"),
        format!("SELECT readit_{n}('/etc/hostname')"),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        let msg = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_default();
        assert!(msg.contains("no-server-files"), "{sql}: {e}");
    }
    // Renaming a domain makes pgmoat read the catalog again: the check still counts.
    su.batch_execute(&format!("ALTER DOMAIN public.sneaky_{n} OWNER TO app_rw"))
        .await
        .unwrap();
    c.simple_query(&format!("ALTER DOMAIN sneaky_{n} RENAME TO sneakier_{n}"))
        .await
        .unwrap();
    let e = c
        .simple_query(&format!("SELECT 'x'::sneakier_{n}"))
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("no-server-files"),
        "{e}"
    );
    // Ordinary operators and functions are untouched.
    c.simple_query("SELECT 1 + 1, lower('X'), now() > '2000-01-01'")
        .await
        .unwrap();
}

/// Evasions found in review: each of these ran before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_evasions_are_refused() {
    let (pg, gw) = with_baseline().await;
    let c = gw.connect().await;
    let table = unique("kept");
    c.batch_execute(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1), (2), (3)"
    ))
    .await
    .unwrap();
    for sql in [
        // Settings that make the server read SQL differently from pgmoat's parser.
        "SET standard_conforming_strings = off".to_string(),
        "SET client_encoding = 'SJIS'".to_string(),
        "SELECT set_config('standard_conforming_strings', 'off', false)".to_string(),
        format!(
            "CREATE FUNCTION {table}_f() RETURNS text LANGUAGE sql \
             SET standard_conforming_strings = off AS $$ SELECT 1 $$"
        ),
        // SQL held in strings.
        "SELECT word FROM ts_stat($$SELECT to_tsvector('simple', 'x')$$)".to_string(),
        format!(
            "CREATE FUNCTION {table}_g() RETURNS SETOF int LANGUAGE plpgsql AS \
             $$ BEGIN RETURN QUERY EXECUTE 'DELETE FROM {table} RETURNING id'; END $$"
        ),
        // Always-true WHEREs that name no column.
        format!("DELETE FROM {table} WHERE 1 BETWEEN 0 AND 2"),
        format!("DELETE FROM {table} WHERE EXISTS (SELECT)"),
        format!("DELETE FROM {table} WHERE (SELECT true)"),
        format!("UPDATE {table} SET id = 0 WHERE 'a' LIKE 'a'"),
        format!("DELETE FROM {table} WHERE id IS NOT DISTINCT FROM id"),
        // Large objects, all of them.
        "SELECT lo_creat(-1)".to_string(),
        "SELECT lo_unlink(1)".to_string(),
    ] {
        let e = c.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
    }
    // The shape cache cannot be poisoned: the same shape with other literals is judged
    // again (`id * 1 = id * 2` is no tautology; `id * 1 = id * 1` is).
    c.simple_query(&format!("DELETE FROM {table} WHERE id * 1 = id * 2"))
        .await
        .unwrap();
    let e = c
        .simple_query(&format!("DELETE FROM {table} WHERE id * 1 = id * 1"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e}");
    // A pipelined statement behind a refused SET is read with the settings unchanged.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut out = BytesMut::new();
    frontend::query("SET standard_conforming_strings = off", &mut out).unwrap();
    frontend::query(
        &format!("SELECT 'a\\', ' ; DROP TABLE {table}; -- '"),
        &mut out,
    )
    .unwrap();
    raw.send(&out).await;
    let first = raw.until_ready().await;
    assert!(first
        .iter()
        .any(|m| m.tag == b'E' && m.field(b'C') == "42501"));
    let second = raw.until_ready().await;
    assert!(second.iter().all(|m| m.tag != b'E'), "{second:?}");
    // Everything is still there; benign variants pass.
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    for sql in [
        "SET standard_conforming_strings = on".to_string(),
        "SET client_encoding = 'UTF8'".to_string(),
        format!("DELETE FROM {table} WHERE id = 2"),
        format!("DELETE FROM {table} WHERE id IN (SELECT 3)"),
    ] {
        c.simple_query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Revoking a function is not calling it: pgmoat lets it through (the server may
    // still say no to this role).
    // app_rw holds no privilege on pg_read_file, so the server refuses it: its answer,
    // not pgmoat's, and the statement is in the server's log.
    let sql = "REVOKE EXECUTE ON FUNCTION pg_read_file(text) FROM PUBLIC";
    let e = c.simple_query(sql).await.expect_err(sql);
    let db = e.as_db_error().expect("a server error");
    assert_eq!(
        (db.code().code(), db.message()),
        ("42501", "permission denied for function pg_read_file"),
        "{sql}"
    );
    wait_log_contains(pg, sql).await;
}

/// A setting a rule blocks in the session is blocked in the startup packet too; the
/// settings drivers send on their own still come in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_settings_follow_the_rules() {
    let (_pg, gw) = with_baseline().await;
    for options in [
        "-c debug_print_plan=on",
        "-c trace_notify=on -c debug_pretty_print=off",
    ] {
        let params = [("user", AGENT), ("database", "demo"), ("options", options)];
        let e = match Raw::login_with(gw.addr, &params, AGENT_PW).await {
            Ok(_) => panic!("{options}: accepted"),
            Err(e) => e,
        };
        assert_eq!(e.field(b'C'), "42501", "{options}");
        assert!(
            e.field(b'M').contains("no-logging-changes"),
            "{options}: {}",
            e.field(b'M')
        );
    }
    let params = [
        ("user", AGENT),
        ("database", "demo"),
        ("options", "-c extra_float_digits=3 -c DateStyle=ISO"),
        ("client_encoding", "UTF8"),
    ];
    let mut raw = Raw::login_with(gw.addr, &params, AGENT_PW)
        .await
        .expect("ordinary startup settings");
    raw.query_ok("SELECT 1").await;
    // A custom setting is not caught by a pattern for built-in ones.
    let c = gw.connect().await;
    c.simple_query("SET app.debug_mode = on").await.unwrap();
}

/// `U&"..." UESCAPE 'c'`: the escape character decides what the name is, so two texts
/// that differ only there never share a judgment (a review found that a first text
/// with `UESCAPE '#'`, naming a table that does not exist, let the same text with
/// `UESCAPE '!'` read the blocked table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_uescape_character_is_part_of_the_name() {
    let table = unique("secret");
    let rest = table.strip_prefix('s').unwrap();
    let dir = rules_dir(&format!(
        "rules:\n  - id: no-secret\n    when: {{ tables: [\"{table}\"] }}\n    action: block\n"
    ));
    let (pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    let su = connect_url(&pg.conn_str(&pg.superuser, &pg.password, "demo"))
        .await
        .unwrap();
    su.batch_execute(&format!(
        "CREATE TABLE public.{table} (v text); INSERT INTO public.{table} VALUES ('hidden');
         GRANT SELECT ON public.{table} TO {APP_ROLE}"
    ))
    .await
    .unwrap();
    let c = gw.connect().await;
    // Another name (`!0073...` with `#` as the escape): the server says it is missing.
    let e = c
        .simple_query(&format!("SELECT v FROM U&\"!0073{rest}\" UESCAPE '#'"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    for sql in [
        format!("SELECT v FROM U&\"!0073{rest}\" UESCAPE '!'"),
        format!("SELECT v FROM U&\"!0073{rest}\" UESCAPE '#'"),
        format!("SELECT v FROM U&\"#0073{rest}\" UESCAPE '#'"),
    ] {
        let got = c.simple_query(&sql).await;
        let blocked = sql.contains("'!'") || sql.contains("\"#0073");
        match (blocked, got) {
            (true, Err(e)) => assert_eq!(sqlstate(&e), "42501", "{sql}"),
            (true, Ok(_)) => panic!("{sql}: read the blocked table"),
            (false, Err(e)) => assert_eq!(sqlstate(&e), "42P01", "{sql}"),
            (false, Ok(_)) => panic!("{sql}: answered"),
        }
    }
}
