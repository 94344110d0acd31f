//! THREATS.md class H, issue 18 classes 4 and 5, differentially: each statement runs
//! directly against Postgres and through pgmoat against the same database.
//!
//! Class 4: errors and notices. For an identity with masks, a statement that reads a
//! masked column anywhere (or whose lineage is unknown, or that writes or changes a
//! table with masked columns) gets its ErrorResponse/NoticeResponse text withheld, with
//! the server's SQLSTATE kept; no byte the client receives carries a masked value, even
//! one the server prints bare (no quotes). An identity without masks gets the server's
//! error exactly, and statements that read no masked data keep their error text.
//!
//! Class 5: laundering through large objects and through names shared by SQL and the
//! protocol (prepared statements and portals/cursors), and `EXECUTE p(args)` whose
//! arguments read masked data.

use crate::harness::*;
use crate::masking::{fixture, fixture_with, rows, Fixture, Rows};

/// Every byte of every message, as text (tag, then body).
fn all_text(msgs: &[Msg]) -> String {
    let mut s = String::new();
    for m in msgs {
        s.push(m.tag as char);
        s.push_str(&String::from_utf8_lossy(&m.body));
        s.push('\n');
    }
    s
}

/// The masked salaries: numbers a bare error message would print as they are.
const SALARIES: [&str; 2] = ["91000", "52000"];

fn assert_no_secret(f: &Fixture, what: &str, text: &str) {
    f.assert_clean(what, text);
    for s in SALARIES {
        assert!(
            !text.contains(s),
            "{what}: a salary ({s}) came back in {text}"
        );
    }
}

fn db_code(e: &tokio_postgres::Error) -> String {
    sqlstate(e)
}

/// Tables made directly (before the gateway reads its catalog): duplicates of masked
/// values for unique indexes, a trigger on a clean table that raises masked values,
/// and a function that raises masked values in every field.
async fn setup(f: &Fixture) {
    f.direct
        .batch_execute(&f.sql(
            "CREATE TABLE {t}_dup (id int PRIMARY KEY, card_number text);
             INSERT INTO {t}_dup VALUES (1, '4111 1111 1111 1111'), (2, '4111 1111 1111 1111');
             CREATE TABLE {t}_uc (id int PRIMARY KEY, grp int, card_number text,
               UNIQUE (grp, card_number));
             INSERT INTO {t}_uc VALUES (1, 1, '4111 1111 1111 1111'), (2, 2, '4111 1111 1111 1111');
             CREATE TABLE {t}_ud (id int PRIMARY KEY, grp int, card_number text,
               UNIQUE (grp, card_number) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO {t}_ud VALUES (1, 1, '5500 0000 0000 0004'), (2, 2, '5500 0000 0000 0004');
             CREATE TABLE {t}_clean (a int);
             CREATE FUNCTION {t}_trg() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
               IF NEW.a = 1 THEN
                 RAISE EXCEPTION '%', (SELECT ssn FROM {t} WHERE id = 1);
               END IF;
               RAISE NOTICE '%', (SELECT email FROM {t} WHERE id = 2);
               RETURN NEW;
             END $$;
             CREATE TRIGGER {t}_t BEFORE INSERT ON {t}_clean
               FOR EACH ROW EXECUTE FUNCTION {t}_trg();
             CREATE FUNCTION {t}_warn() RETURNS int LANGUAGE plpgsql AS $$
             DECLARE s text;
             BEGIN
               SELECT ssn INTO s FROM {t} WHERE id = 1;
               RAISE WARNING USING MESSAGE = s, DETAIL = s, HINT = s, COLUMN = s,
                 TABLE = s, SCHEMA = s, DATATYPE = s, CONSTRAINT = s;
               RETURN 1;
             END $$;",
        ))
        .await
        .unwrap();
}

/// Run `sql` directly and as the agent (raw protocol, every byte kept) and as the
/// identity without masks. The agent gets the server's SQLSTATE (or pgmoat's refusal,
/// when `refusal_ok`) and no secret in any byte; the identity without masks gets the
/// server's message exactly. Returns the agent's ErrorResponse/NoticeResponse messages.
async fn run_case(f: &Fixture, sql: &str, refusal_ok: bool) -> Vec<Msg> {
    let sql = f.sql(sql);
    let direct = f.pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let server = direct.simple_query(&sql).await;
    let dba = f.dba().await;
    let unmasked = dba.simple_query(&sql).await;
    match (&server, &unmasked) {
        (Err(s), Err(u)) => {
            let (s, u) = (s.as_db_error().unwrap(), u.as_db_error().unwrap());
            assert_eq!(s.code(), u.code(), "{sql}: without masks");
            assert_eq!(s.message(), u.message(), "{sql}: without masks");
            assert_eq!(s.detail(), u.detail(), "{sql}: without masks");
        }
        (Ok(_), Ok(_)) => {}
        _ => panic!("{sql}: direct {server:?} vs without masks {unmasked:?}"),
    }
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let got = raw.query(&sql).await;
    assert_no_secret(f, &sql, &all_text(&got));
    let err = got.iter().find(|m| m.tag == b'E');
    match (&server, err) {
        (Err(e), Some(m)) => {
            let want = db_code(e);
            let code = m.field(b'C');
            let refused = refusal_ok && code == "42501" && m.field(b'M').starts_with("pgmoat:");
            assert!(
                code == want || refused,
                "{sql}: SQLSTATE {code}, server's {want}"
            );
        }
        (Ok(_), None) => {}
        (s, a) => panic!("{sql}: direct {s:?} vs through pgmoat {a:?}"),
    }
    got.into_iter()
        .filter(|m| m.tag == b'E' || m.tag == b'N')
        .collect()
}

const WITHHELD: &str = "pgmoat: the error's text is withheld";

/// Class 4: errors that print masked values bare, in every field, for every way a
/// statement can read a masked column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_notices_of_statements_reading_masked_data_are_withheld() {
    let f = fixture("").await;
    setup(&f).await;
    for sql in [
        // Printed bare: date constructors, bit and character functions.
        "SELECT make_date(2000, salary, 1) FROM {t} WHERE id = 1",
        "SELECT make_date(2000, translate(ssn, '-', '')::int, 1) FROM {t} WHERE id = 1",
        "SELECT to_date(ssn, 'YYYY-MM-DD') FROM {t} WHERE id = 1",
        "SELECT get_bit(B'1', salary) FROM {t} WHERE id = 1",
        "SELECT B'1'::bit(3) | translate(ssn, '-', '')::varbit FROM {t} WHERE id = 1",
        "SELECT chr(salary * 100000) FROM {t} WHERE id = 1",
        "SELECT ssn::int FROM {t}",
        "SELECT ssn::date FROM {t}",
        // JSON errors' CONTEXT line.
        "SELECT ssn::json FROM {t} WHERE id = 1",
        "SELECT email::jsonb FROM {t} WHERE id = 2",
        "SELECT jsonb_path_query('{}', ('strict $.a' || translate(ssn, '-', ''))::jsonpath) FROM {t} WHERE id = 1",
        // Statistics hold samples of masked columns.
        "SELECT histogram_bounds::text::int[] FROM pg_stats WHERE tablename = '{t}' AND attname = 'email'",
        "SELECT histogram_bounds::text::date[] FROM pg_stats WHERE tablename = '{t}' AND attname = 'ssn'",
        // Only in WHERE.
        "SELECT id FROM {t} WHERE make_date(2000, salary, 1) IS NOT NULL",
        "SELECT id FROM {t} WHERE ssn::json IS NOT NULL",
        // DDL evaluating expressions over masked columns.
        "CREATE INDEX ON {t} ((chr(salary * 100000)))",
        "ALTER TABLE {t} ADD CONSTRAINT {t}_c CHECK (chr(salary * 100000) <> '')",
        "ALTER TABLE {t} ADD COLUMN g text GENERATED ALWAYS AS (chr(salary * 100000)) STORED",
        "ALTER TABLE {t} ALTER COLUMN salary TYPE text USING chr(salary * 100000)",
        "ALTER TABLE {t} ALTER COLUMN ssn TYPE int USING ssn::int",
        // A duplicate key's DETAIL prints the value, whether the statement reads it or not.
        "CREATE UNIQUE INDEX ON {t}_dup (card_number)",
        "UPDATE {t}_uc SET grp = 1 WHERE id = 2",
        "INSERT INTO {t}_uc VALUES (2, 2, 'zz') ON CONFLICT (id) DO UPDATE SET grp = 1",
        // Code that raises what it read, in any field and with any SQLSTATE.
        "DO $$ BEGIN RAISE EXCEPTION '%', (SELECT ssn FROM {t} WHERE id = 1) USING ERRCODE = '22012'; END $$",
        "DO $$ BEGIN RAISE EXCEPTION 'x' USING COLUMN = (SELECT ssn FROM {t} WHERE id = 1); END $$",
        "DO $$ BEGIN RAISE NOTICE 'n' USING DETAIL = (SELECT email FROM {t} WHERE id = 1); END $$",
        "SELECT {t}_warn()",
        // A trigger on a table without masked columns (triggers are not in the
        // catalog pgmoat reads): its error, its notice.
        "INSERT INTO {t}_clean VALUES (1)",
        "INSERT INTO {t}_clean VALUES (2)",
    ] {
        let notes = run_case(&f, sql, true).await;
        assert!(!notes.is_empty(), "{sql}: an error or a notice");
    }
    // The extended protocol: the error comes from the portal's Execute.
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let mut m = parse_msg("", &f.sql("SELECT make_date(2000, salary, 1) FROM {t}"));
    m.extend(bind_execute_sync(""));
    raw.send(&m).await;
    let got = raw.until_ready().await;
    assert_no_secret(&f, "extended protocol", &all_text(&got));
    let e = got.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(e.field(b'C'), "22008");
    assert!(e.field(b'M').starts_with(WITHHELD), "{e:?}");
    // A prepared statement run by name (SQL and protocol) withholds as its query does.
    raw.query_ok(&f.sql("PREPARE pe AS SELECT make_date(2000, salary, 1) FROM {t} WHERE id = 1"))
        .await;
    let mut m = parse_msg("pe2", &f.sql("SELECT make_date(2000, salary, 1) FROM {t}"));
    m.extend(sync());
    raw.send(&m).await;
    raw.until_ready().await;
    for sql in ["EXECUTE pe", "EXECUTE pe2"] {
        let got = raw.query(sql).await;
        assert_no_secret(&f, sql, &all_text(&got));
        let e = got.iter().find(|m| m.tag == b'E').expect("an error");
        assert_eq!(e.field(b'C'), "22008", "{sql}");
        assert!(e.field(b'M').starts_with(WITHHELD), "{e:?}");
    }
    raw.send(&bind_execute_sync("pe")).await;
    let got = raw.until_ready().await;
    assert_no_secret(&f, "Bind of pe", &all_text(&got));
    // COPY FROM into a table with masked columns: the duplicate key's DETAIL.
    let mut m = Vec::new();
    let mut q = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query(
        &f.sql("COPY {t}_uc (id, grp, card_number) FROM STDIN"),
        &mut q,
    )
    .unwrap();
    m.extend_from_slice(&q);
    m.extend(message(b'd', b"7\t2\t4111 1111 1111 1111\n"));
    m.extend(message(b'c', b""));
    raw.send(&m).await;
    let got = raw.until_ready().await;
    assert_no_secret(&f, "COPY FROM", &all_text(&got));
    let e = got.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(e.field(b'C'), "23505", "{got:?}");
    // Its CONTEXT quotes the line: all withheld.
    assert!(e.field(b'M').starts_with(WITHHELD), "{e:?}");
    // A constraint's own message names it (no value): it stays, the key in DETAIL goes.
    let got = raw
        .query(&f.sql("UPDATE {t}_uc SET grp = 1 WHERE id = 2"))
        .await;
    let e = got.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(e.field(b'C'), "23505", "{got:?}");
    assert!(e.field(b'M').starts_with("duplicate key value"), "{e:?}");
    assert_eq!(e.field(b'D'), "", "{e:?}");
    // A deferred unique check fails at COMMIT, whose own text reads nothing.
    raw.query_ok(&f.sql("BEGIN; UPDATE {t}_ud SET grp = 1 WHERE id = 2"))
        .await;
    let got = raw.query("COMMIT").await;
    assert_no_secret(&f, "deferred unique check", &all_text(&got));
    let e = got.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(e.field(b'C'), "23505");
}

/// Class 4, the other side: statements that read no masked data keep the server's
/// text, as do identities without masks (checked in every case above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_statements_reading_no_masked_data_keep_their_text() {
    let f = fixture("").await;
    for sql in [
        "SELECT name::int FROM {t} WHERE id = 1",
        "SELECT 1 / (id - 1) FROM {t}",
        "SELECT make_date(2000, id * 100, 1) FROM {t} WHERE id = 1",
    ] {
        let sql = f.sql(sql);
        let want = f.direct.simple_query(&sql).await.expect_err(&sql);
        let c = f.agent().await;
        let got = c.simple_query(&sql).await.expect_err(&sql);
        let (w, g) = (want.as_db_error().unwrap(), got.as_db_error().unwrap());
        assert_eq!(
            (w.code(), w.message(), w.detail()),
            (g.code(), g.message(), g.detail()),
            "{sql}"
        );
    }
}

/// Class 5: large objects. Writing masked values into one is refused like writing them
/// into a table; reading one is masked (its contents may come from anywhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_cannot_launder_masked_values() {
    let f = fixture("").await;
    let made = rows(
        &f.direct,
        &f.sql(
            "SELECT lo_from_bytea(0, convert_to(ssn || ' ' || email, 'UTF8'))::text,
                    lo_from_bytea(0, 'plain'::bytea)::text
             FROM {t} WHERE id = 1",
        ),
    )
    .await
    .unwrap();
    let (secret_lo, plain_lo) = (made[0][0].clone().unwrap(), made[0][1].clone().unwrap());
    let c = f.agent().await;
    for sql in [
        "SELECT lo_from_bytea(0, ssn::bytea) FROM {t} WHERE id = 1",
        "SELECT lo_from_bytea(0, convert_to(reverse(email), 'UTF8')) FROM {t} WHERE id = 2",
        "SELECT lo_put(PLAIN, 0, convert_to(ssn, 'UTF8')) FROM {t} WHERE id = 1",
        "SELECT lowrite(lo_open(PLAIN, 131072), convert_to(ssn, 'UTF8')) FROM {t} WHERE id = 1",
        "WITH s AS (SELECT ssn FROM {t}) SELECT lo_from_bytea(0, string_agg(ssn, ',')::bytea) FROM s",
        "SELECT lo_from_bytea(0, convert_to({t}_ssn(2), 'UTF8'))",
        "DO $$ BEGIN PERFORM lo_from_bytea(0, convert_to((SELECT ssn FROM {t} WHERE id = 1), 'UTF8')); END $$",
    ] {
        f.blocked_by_mask(&c, &sql.replace("PLAIN", &plain_lo)).await;
    }
    let got = rows(
        &f.direct,
        &format!("SELECT convert_from(lo_get({plain_lo}), 'UTF8')"),
    )
    .await
    .unwrap();
    assert_eq!(
        got[0][0].as_deref(),
        Some("plain"),
        "the large object is unchanged"
    );
    for sql in [
        "SELECT convert_from(lo_get(LO), 'UTF8')",
        "SELECT encode(lo_get(LO), 'escape')",
        "SELECT encode(lo_get(LO, 0, 11), 'escape')",
        "SELECT lo_get(LO)",
        "SELECT convert_from(loread(lo_open(LO, 262144), 100), 'UTF8')",
        "SELECT x FROM (SELECT convert_from(lo_get(LO), 'UTF8') AS x) s",
        "SELECT * FROM convert_from(lo_get(LO), 'UTF8') x",
        "SELECT * FROM lo_get(LO) x",
    ] {
        let sql = sql.replace("LO", &secret_lo);
        let server = rows(&f.direct, &sql).await.unwrap();
        let masked = rows(&c, &sql).await.unwrap();
        f.assert_rows_clean(&sql, &masked);
        assert_eq!(masked.len(), server.len(), "{sql}");
        assert_ne!(masked, server, "{sql}: masked");
    }
    // What a large object holds is not copied into a table either.
    c.batch_execute(&f.sql("CREATE TABLE {t}_lo_sink (v bytea)"))
        .await
        .unwrap();
    for sql in [
        "INSERT INTO {t}_lo_sink SELECT lo_get(LO)",
        "CREATE TABLE {t}_lo_copy AS SELECT lo_get(LO) AS v",
    ] {
        f.blocked_by_mask(&c, &sql.replace("LO", &secret_lo)).await;
    }
    // Clean data may still go into a large object (reading it back is masked).
    let got = rows(
        &c,
        &f.sql("SELECT lo_from_bytea(0, convert_to(name, 'UTF8')) > 0 FROM {t} WHERE id = 1"),
    )
    .await
    .unwrap();
    assert_eq!(got[0][0].as_deref(), Some("t"));
}

fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    let mut b = format!("{portal}\0{stmt}\0").into_bytes();
    b.extend([0, 0, 0, 0, 0, 0]);
    message(b'B', &b)
}

fn execute(portal: &str) -> Vec<u8> {
    let mut b = format!("{portal}\0").into_bytes();
    b.extend([0, 0, 0, 0]);
    message(b'E', &b)
}

fn sync() -> Vec<u8> {
    message(b'S', b"")
}

/// The data rows of `msgs`, checked: `n` of them and no secret anywhere.
fn clean_rows(f: &Fixture, what: &str, msgs: &[Msg], n: usize) -> Vec<String> {
    assert!(msgs.iter().all(|m| m.tag != b'E'), "{what}: {msgs:?}");
    assert_no_secret(f, what, &all_text(msgs));
    let got = data_rows(msgs);
    assert_eq!(got.len(), n, "{what}: {msgs:?}");
    got
}

/// Class 5: prepared statements and portals/cursors share one namespace between SQL
/// and the protocol; whatever side defines a name, the other side's use of it is masked
/// by what the name really is, and `EXECUTE p(args)` carries its arguments' masks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_shared_by_sql_and_the_protocol_are_masked_by_what_they_are() {
    let f = fixture("").await;
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let derived = f.sql("SELECT ssn || '', email FROM {t} ORDER BY id");
    let clean = f.sql("SELECT name, upper(name) FROM {t} ORDER BY id");
    // EXECUTE's arguments read masked data (Postgres refuses subqueries there, not
    // functions): the statement echoes them.
    // No casts: another test's user cast to text would make `::text` unknown.
    raw.query_ok("PREPARE echo(text) AS SELECT $1").await;
    raw.query_ok("PREPARE echo2(text, int) AS SELECT upper($1), $2 + 1")
        .await;
    raw.query_ok(&f.sql("PREPARE echo4(text) AS SELECT $1, name FROM {t} WHERE id = 1"))
        .await;
    for sql in [
        "EXECUTE echo({t}_ssn(1))",
        "EXECUTE echo(reverse({t}_ssn(2)) || 'x')",
        "EXECUTE echo2({t}_ssn(3), 1)",
        "EXECUTE echo4({t}_ssn(1))",
    ] {
        let r = raw.query(&f.sql(sql)).await;
        clean_rows(&f, sql, &r, 1);
    }
    // A custom plan shows EXECUTE's arguments as constants.
    raw.query_ok("PREPARE px(text) AS SELECT 1 WHERE $1 = 'a'")
        .await;
    for sql in [
        "EXPLAIN EXECUTE px({t}_ssn(1))",
        "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE px({t}_ssn(2))",
    ] {
        let r = raw.query(&f.sql(sql)).await;
        assert!(r.iter().all(|m| m.tag != b'E'), "{sql}: {r:?}");
        assert_no_secret(&f, sql, &all_text(&r));
    }
    // ... and through a Parse'd statement.
    let mut m = parse_msg("echo3", "SELECT $1");
    m.extend(sync());
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let sql = f.sql("EXECUTE echo3({t}_ssn(3))");
    clean_rows(&f, &sql, &raw.query(&sql).await, 1);
    // A clean argument is the server's value.
    let r = raw.query("EXECUTE echo('plain')").await;
    assert!(data_rows(&r)[0].contains("plain"), "{r:?}");
    // Parse then SQL EXECUTE; PREPARE then Bind/Execute.
    let mut m = parse_msg("pp", &derived);
    m.extend(sync());
    raw.send(&m).await;
    raw.until_ready().await;
    clean_rows(&f, "Parse then EXECUTE", &raw.query("EXECUTE pp").await, 3);
    raw.query_ok(&format!("PREPARE sp AS {derived}")).await;
    raw.send(&bind_execute_sync("sp")).await;
    clean_rows(&f, "PREPARE then Bind", &raw.until_ready().await, 3);
    // Cursors: DECLARE then protocol Execute; Bind then FETCH and MOVE.
    raw.query_ok("BEGIN").await;
    raw.query_ok(&format!("DECLARE dc CURSOR FOR {derived}"))
        .await;
    let mut m = execute("dc");
    m.extend(sync());
    raw.send(&m).await;
    clean_rows(&f, "DECLARE then Execute", &raw.until_ready().await, 3);
    let mut m = parse_msg("bp", &derived);
    m.extend(bind("bk", "bp"));
    m.extend(sync());
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "12Z");
    clean_rows(
        &f,
        "Bind then FETCH",
        &raw.query("FETCH 1 FROM bk").await,
        1,
    );
    raw.query_ok("MOVE FORWARD 1 IN bk").await;
    clean_rows(
        &f,
        "Bind, MOVE, FETCH",
        &raw.query("FETCH ALL FROM bk").await,
        1,
    );
    // CLOSE by SQL, the name re-bound by the protocol (and the reverse).
    raw.query_ok("CLOSE bk").await;
    let mut m = bind("bk", "pp");
    m.extend(execute("bk"));
    m.extend(sync());
    raw.send(&m).await;
    clean_rows(&f, "CLOSE then Bind", &raw.until_ready().await, 3);
    let mut m = message(b'C', b"Pdc\0");
    m.extend(sync());
    raw.send(&m).await;
    raw.until_ready().await;
    raw.query_ok(&format!("DECLARE dc CURSOR FOR {derived}"))
        .await;
    clean_rows(
        &f,
        "Close then DECLARE",
        &raw.query("FETCH ALL FROM dc").await,
        3,
    );
    raw.query_ok("COMMIT").await;
    // DEALLOCATE by SQL, the name re-made by Parse, run by SQL.
    raw.query_ok(&format!("PREPARE dd AS {clean}")).await;
    raw.query_ok("DEALLOCATE dd").await;
    let mut m = parse_msg("dd", &derived);
    m.extend(sync());
    raw.send(&m).await;
    raw.until_ready().await;
    clean_rows(
        &f,
        "DEALLOCATE then Parse",
        &raw.query("EXECUTE dd").await,
        3,
    );
    // DEALLOCATE ALL, then PREPARE of a protocol name.
    raw.query_ok("DEALLOCATE ALL").await;
    raw.query_ok(&format!("PREPARE pp AS {derived}")).await;
    raw.send(&bind_execute_sync("pp")).await;
    clean_rows(
        &f,
        "DEALLOCATE ALL then PREPARE",
        &raw.until_ready().await,
        3,
    );
    // Laundering through a prepared statement.
    raw.query_ok(&format!("PREPARE ctas AS {derived}")).await;
    let r = raw
        .query(&f.sql("CREATE TEMP TABLE {t}_ctas AS EXECUTE ctas"))
        .await;
    let e = r.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(e.field(b'C'), "42501", "{r:?}");
}

/// Class 5, the other side: clean named statements read back as the server has them,
/// whichever side named them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_names_shared_by_sql_and_the_protocol_are_not_masked() {
    let f = fixture("").await;
    let clean = f.sql("SELECT name, upper(name), id FROM {t} ORDER BY id");
    let want: Rows = rows(&f.direct, &clean).await.unwrap();
    let texts: Vec<String> = want
        .iter()
        .map(|r| r.iter().flatten().cloned().collect::<Vec<_>>().join("|"))
        .collect();
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let check = |what: &str, msgs: &[Msg]| {
        let got = data_rows(msgs);
        assert_eq!(got.len(), texts.len(), "{what}: {msgs:?}");
        for (g, w) in got.iter().zip(&texts) {
            for part in w.split('|') {
                assert!(g.contains(part), "{what}: {part} missing from {g:?}");
            }
        }
    };
    let mut m = parse_msg("cp", &clean);
    m.extend(sync());
    raw.send(&m).await;
    raw.until_ready().await;
    check("Parse then EXECUTE", &raw.query("EXECUTE cp").await);
    raw.query_ok(&format!("PREPARE cs AS {clean}")).await;
    raw.send(&bind_execute_sync("cs")).await;
    check("PREPARE then Bind", &raw.until_ready().await);
    raw.query_ok("BEGIN").await;
    let mut m = bind("ck", "cp");
    m.extend(sync());
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "2Z");
    check("Bind then FETCH", &raw.query("FETCH ALL FROM ck").await);
    raw.query_ok(&format!("DECLARE cd CURSOR FOR {clean}"))
        .await;
    let mut m = execute("cd");
    m.extend(sync());
    raw.send(&m).await;
    check("DECLARE then Execute", &raw.until_ready().await);
    raw.query_ok("COMMIT").await;
}

/// Console review H1: the audit trail keeps an error as the client saw it. A cast
/// error quotes the masked value it failed on; the client gets it withheld, and so
/// must the statement's `completed` record (which the console's replay, `pgmoat audit
/// replay` and every sink show), while the SQLSTATE stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_keeps_errors_as_the_client_saw_them() {
    let store = TempDir::new("pgmoat-withheld-audit");
    let f = fixture_with(
        "",
        &format!(
            "audit:\n  dir: {}\n  durability: fsync\n",
            store.path().display()
        ),
    )
    .await;
    let c = f.agent().await;
    for sql in [
        "SELECT ssn::int FROM {t}",
        "SELECT make_date(2000, salary, 1) FROM {t} WHERE id = 1",
    ] {
        let e = c.simple_query(&f.sql(sql)).await.unwrap_err();
        assert!(
            e.as_db_error().unwrap().message().starts_with(WITHHELD),
            "{e:?}"
        );
    }
    // The extended protocol too.
    let e = c
        .query(&f.sql("SELECT ssn::date FROM {t} WHERE id = $1"), &[&1i32])
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().starts_with(WITHHELD));
    drop(c);
    let text = wait_for("the statements' completed records", WAIT_LIMIT, || async {
        let mut all = String::new();
        for e in std::fs::read_dir(store.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "jsonl") {
                all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        if all.matches(WITHHELD).count() >= 3 {
            Ok(all)
        } else {
            Err(all)
        }
    })
    .await;
    assert_no_secret(&f, "the audit trail", &text);
    assert!(text.contains("22P02") && text.contains("22008"), "{text}");
}
