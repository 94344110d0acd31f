//! Review s37 (session state and the wire protocol), W1–W5: a setting smuggled past
//! pgmoat's reading of `options`, a setting named by a computed value that changed how
//! the server read the next statement of a pipeline, notification payloads, other
//! sessions' SQL text, and SQL/JSON syntax an older server reads as a function call.

use tokio_postgres::Client;

use crate::harness::*;
use crate::masking::{fixture, rows, DBA, DBA_PW};

/// A gateway with these rules (YAML) for the standard agent (no masks).
async fn with_rules(text: &str) -> (TestGateway, TempDir) {
    let dir = TempDir::new("pgmoat-wire");
    std::fs::write(dir.path().join("rules.yaml"), text).unwrap();
    let (_pg, gw) = start_with(&format!("rules: {}\n", dir.path().display())).await;
    (gw, dir)
}

async fn direct() -> Client {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap()
}

/// A Bind of the unnamed statement to the unnamed portal with text parameters.
fn bind_text(params: &[&str]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0];
    b.extend((params.len() as i16).to_be_bytes());
    for p in params {
        b.extend((p.len() as i32).to_be_bytes());
        b.extend(p.as_bytes());
    }
    b.extend([0, 0]);
    message(b'B', &b)
}

fn execute() -> Vec<u8> {
    message(b'E', b"\0\0\0\0\0")
}

fn describe_portal() -> Vec<u8> {
    message(b'D', b"P\0")
}

/// `head` (a statement that tries to turn standard_conforming_strings off), then in
/// the same write, before Sync, a statement pgmoat reads as one string literal and a
/// server with the setting off as a read of `secret`: refused by pgmoat (42501), and
/// no row of the secret comes back.
async fn then_leak(raw: &mut Raw, mut batch: Vec<u8>, secret: &str) -> Vec<Msg> {
    batch.extend(parse_msg(
        "",
        &format!("SELECT 'a\\'' , (SELECT string_agg(v, ',') FROM {secret}) --'"),
    ));
    batch.extend(bind_text(&[]));
    batch.extend(describe_portal());
    batch.extend(execute());
    batch.extend(message(b'S', b""));
    raw.send(&batch).await;
    let got = raw.until_ready().await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(err.field(b'C'), "42501", "{got:?}");
    assert!(
        !data_rows(&got).iter().any(|r| r.contains("TOPSECRET")),
        "{got:?}"
    );
    got
}

/// W1: the server splits `options` on any C white space, a vertical tab included;
/// pgmoat read `-c datestyle=iso\v-csearch_path=hr,public` as one setting and the
/// server as two, so a bare name read a table a `tables:` rule blocks. Such options
/// are refused at login; with a tab (which both split on) the path is seen and the
/// rule holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w1_options_hide_no_setting_behind_unusual_white_space() {
    let s = unique("w1s");
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.salaries (v text);
             INSERT INTO {s}.salaries VALUES ('SALARY-100k');"
        ))
        .await
        .unwrap();
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: w1-block\n    when: {{ tables: [\"{s}.*\"] }}\n    action: block\n"
    ))
    .await;
    for sep in ["\u{b}", "\n", "\r", "\u{c}", "\u{85}", "\u{a0}"] {
        let options = format!("-c datestyle=iso{sep}-csearch_path={s},public");
        let params = [("user", AGENT), ("database", "demo"), ("options", &options)];
        match Raw::login_with(gw.addr, &params, AGENT_PW).await {
            Ok(mut raw) => {
                let got = raw.query("SELECT v FROM salaries").await;
                panic!("{sep:?}: logged in; SELECT gave {:?}", data_rows(&got));
            }
            Err(e) => {
                assert_eq!(e.field(b'C'), "42501", "{sep:?}");
                assert!(
                    e.field(b'M').contains("options may not contain"),
                    "{sep:?}: {}",
                    e.field(b'M')
                );
            }
        }
    }
    // A tab separates for both: the path is seen, and the rule holds.
    let options = format!("-c datestyle=iso\t-csearch_path={s},public");
    let params = [("user", AGENT), ("database", "demo"), ("options", &options)];
    let mut raw = Raw::login_with(gw.addr, &params, AGENT_PW).await.unwrap();
    let got = raw.query("SELECT v FROM salaries").await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(err.field(b'C'), "42501");
    assert!(err.field(b'M').contains("w1-block"), "{}", err.field(b'M'));
    assert!(!data_rows(&got).iter().any(|r| r.contains("SALARY")));
    // And what reached the server is the settings pgmoat read.
    let got = raw
        .query_ok("SELECT current_setting('search_path'), current_setting('DateStyle')")
        .await;
    assert!(
        data_rows(&got)[0].contains(&format!("{s},public")),
        "{:?}",
        data_rows(&got)
    );
}

/// W2: a set_config whose setting's name is computed could turn
/// standard_conforming_strings off for the rest of an unsynced pipeline (the server
/// reports it only at ReadyForQuery): the next statement, read by pgmoat as one string
/// literal, read a blocked table. Refused now; a name given by a parameter is checked
/// at each Bind (PostgREST's form), and a harmless one still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w2_a_setting_named_by_a_computed_value_cannot_change_how_sql_is_read() {
    let secret = unique("w2secret");
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE TABLE {secret} (v text); INSERT INTO {secret} VALUES ('TOPSECRET');"
        ))
        .await
        .unwrap();
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: no-secret\n    when: {{ tables: [{secret}] }}\n    action: block\n"
    ))
    .await;

    // The reviewer's pipeline, in one write, no Sync between the two statements.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut head = parse_msg(
        "",
        "SELECT set_config(x, 'off', false) FROM (SELECT 'standard_conforming_strings' x) s",
    );
    head.extend(bind_text(&[]));
    head.extend(execute());
    let got = then_leak(&mut raw, head, &secret).await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert!(err.field(b'M').contains("computed"), "{}", err.field(b'M'));
    let got = raw.query_ok("SHOW standard_conforming_strings").await;
    assert!(data_rows(&got)[0].ends_with("on"), "{got:?}");

    // A parameter naming the setting: checked at Bind, text or binary (tokio-postgres
    // binds text parameters in binary).
    let c = gw.connect().await;
    for name in [
        "standard_conforming_strings",
        "Client_Encoding",
        "backslash_quote",
    ] {
        let e = c
            .query("SELECT set_config($1, $2, false)", &[&name, &"off"])
            .await
            .expect_err(name);
        assert_eq!(sqlstate(&e), "42501", "{name}: {e:?}");
        assert!(format!("{e:?}").contains("may not change"), "{name}: {e:?}");
    }
    let row = c
        .query_one(
            "SELECT set_config($1, $2, false)",
            &[&"application_name", &"w2-app"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "w2-app");
    let row = c
        .query_one("SHOW standard_conforming_strings", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");
    // The same with text parameters through the raw protocol, pipelined behind it.
    let mut head = parse_msg("", "SELECT set_config($1, $2, false)");
    head.extend(bind_text(&["standard_conforming_strings", "off"]));
    head.extend(execute());
    then_leak(&mut raw, head, &secret).await;
    // SQL PREPARE gives the name at EXECUTE, where nothing reads it: refused.
    let e = c
        .simple_query("PREPARE w2p AS SELECT set_config($1, $2, false)")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
}

/// W3: a DBA's trigger that `pg_notify`s a masked column sent its value raw to a
/// masked identity's LISTEN; its payloads are withheld now (the channel still comes
/// through), and an identity without masks still gets them whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3_notification_payloads_are_withheld_from_masked_identities() {
    let f = fixture("").await;
    let ch = unique("w3ch");
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE FUNCTION {{t}}_ntf() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN PERFORM pg_notify('{ch}', NEW.ssn); RETURN NEW; END$$;
             CREATE TRIGGER {{t}}_ntf AFTER UPDATE ON {{t}} FOR EACH ROW EXECUTE FUNCTION {{t}}_ntf();"
        )))
        .await
        .unwrap();
    let mut agent = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let mut dba = Raw::login(f.gw.addr, DBA, DBA_PW, "demo").await.unwrap();
    agent.query_ok(&format!("LISTEN {ch}")).await;
    dba.query_ok(&format!("LISTEN {ch}")).await;
    f.direct
        .batch_execute(&f.sql("UPDATE {t} SET id = id WHERE id = 1"))
        .await
        .unwrap();
    for (who, raw, raw_ssn) in [("agent", &mut agent, false), ("dba", &mut dba, true)] {
        let note = loop {
            let m = raw
                .read()
                .await
                .unwrap_or_else(|| panic!("{who}: no notification"));
            if m.tag == b'A' {
                break m;
            }
        };
        let parts: Vec<&[u8]> = note.body[4..].split(|&b| b == 0).collect();
        assert_eq!(parts[0], ch.as_bytes(), "{who}");
        let payload = String::from_utf8_lossy(parts[1]).into_owned();
        if raw_ssn {
            assert_eq!(payload, "123-45-6789", "{who}");
        } else {
            assert_eq!(payload, "****", "{who}");
        }
    }
}

/// W4: every identity shares the target's login, so pg_stat_activity showed a masked
/// identity the SQL text (literals and all) other identities sent. Its SQL text is
/// masked for identities with masks; an identity without masks reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w4_other_sessions_sql_text_is_masked() {
    let f = fixture("").await;
    let mark = unique("w4mark");
    let dba = f.dba().await;
    dba.simple_query(&format!("SELECT '{mark}-111-00-2222'"))
        .await
        .unwrap();
    let agent = f.agent().await;
    for sql in [
        format!("SELECT query FROM pg_stat_activity WHERE query LIKE '%{mark}%' AND pid <> pg_backend_pid()"),
        format!("SELECT a.query FROM pg_catalog.pg_stat_activity a WHERE a.query LIKE '%{mark}%' AND a.pid <> pg_backend_pid()"),
        format!("SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b WHERE pg_stat_get_backend_activity(b) LIKE '%{mark}%' AND pg_stat_get_backend_pid(b) <> pg_backend_pid()"),
    ] {
        match rows(&agent, &sql).await {
            Ok(r) => {
                assert!(!r.is_empty(), "{sql}: the DBA's session is listed");
                for row in r {
                    let v = row[0].clone().unwrap_or_default();
                    assert!(!v.contains(&mark), "{sql}: {v}");
                }
            }
            Err(e) => assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}"),
        }
    }
    let seen = rows(
        &f.dba().await,
        &format!("SELECT query FROM pg_stat_activity WHERE query LIKE '%{mark}-111%' AND pid <> pg_backend_pid()"),
    )
    .await
    .unwrap();
    assert!(
        seen.iter()
            .any(|r| r[0].as_deref().unwrap_or("").contains(&mark)),
        "{seen:?}"
    );
}

/// W5: pgmoat parses with Postgres 17's grammar, where `json_query(...)` is syntax; the
/// test server (15) calls a function of that name, here a DBA's that reads a blocked
/// table. The call counts as one of `json_query` and its body is judged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w5_sql_json_syntax_is_judged_as_the_call_an_older_server_makes() {
    let secret = unique("w5secret");
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE TABLE {secret} (v text); INSERT INTO {secret} VALUES ('TOPSECRET');
             CREATE OR REPLACE FUNCTION public.json_query(int, text) RETURNS text
               LANGUAGE sql AS 'SELECT v FROM {secret} LIMIT 1';"
        ))
        .await
        .unwrap();
    let (gw, _dir) = with_rules(&format!(
        "rules:\n  - id: no-secret\n    when: {{ tables: [{secret}] }}\n    action: block\n"
    ))
    .await;
    let c = gw.connect().await;
    let e = c
        .simple_query("SELECT json_query(1, 'x')")
        .await
        .expect_err("json_query reads the blocked table");
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    assert!(format!("{e:?}").contains("no-secret"), "{e:?}");
    let e = c
        .simple_query("SELECT public.json_query(1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    direct
        .batch_execute("DROP FUNCTION public.json_query(int, text)")
        .await
        .unwrap();
}

/// A Parse with declared parameter types (OIDs).
fn parse_typed(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut b = format!("{name}\0{sql}\0").into_bytes();
    b.extend((types.len() as i16).to_be_bytes());
    for t in types {
        b.extend(t.to_be_bytes());
    }
    message(b'P', &b)
}

/// The first ErrorResponse of a batch ended by Sync: refused by pgmoat (42501, its
/// prefix), and no row of the statements behind it.
async fn batch_refused(raw: &mut Raw, batch: Vec<u8>, what: &str) {
    raw.send(&batch).await;
    let got = raw.until_ready().await;
    let err = got
        .iter()
        .find(|m| m.tag == b'E')
        .unwrap_or_else(|| panic!("{what}: not refused: {got:?}"));
    assert_eq!(err.field(b'C'), "42501", "{what}: {got:?}");
    assert!(
        err.field(b'M').starts_with("pgmoat"),
        "{what}: {}",
        err.field(b'M')
    );
    assert!(data_rows(&got).is_empty(), "{what}: {got:?}");
}

/// Review s37-wfix V1–V4: around the W2/W3 fixes. An aggregate whose state function
/// is set_config (made through pgmoat, or by a DBA), a parameter whose declared type
/// or cast changes the name the server sees, SQL EXECUTE of a protocol statement that
/// names a setting by a parameter, and a DBA trigger that copies a masked column into
/// a setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_v4_setting_names_reach_set_config_only_where_pgmoat_reads_them() {
    let agg = unique("v1agg");
    let direct = direct().await;
    direct
        .batch_execute(&format!(
            "CREATE AGGREGATE {agg}(text, bool) (sfunc = set_config, stype = text,
               initcond = 'standard_conforming_strings')"
        ))
        .await
        .unwrap();
    let (gw, _dir) = with_rules("rules: []\n").await;
    let c = gw.connect().await;
    // V1: made through pgmoat (a temporary one needs no privilege), or by a DBA.
    for sql in [
        "CREATE AGGREGATE pg_temp.v1sc(text, bool) (sfunc = set_config, stype = text, initcond = 'standard_conforming_strings')".to_string(),
        "CREATE AGGREGATE pg_temp.v1sc(text, bool) (sfunc = pg_catalog.set_config, stype = text, initcond = 'role')".to_string(),
        format!("SELECT {agg}('off', false)"),
    ] {
        let e = c.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        assert!(format!("{e:?}").contains("pgmoat"), "{sql}: {e:?}");
    }
    let row = c
        .query_one("SHOW standard_conforming_strings", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "on");

    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    // V2: `$1` declared bpchar (the server drops trailing blanks before set_config).
    let mut b = parse_typed("", "SELECT set_config($1, $2, false)", &[1042, 25]);
    b.extend(bind_text(&["standard_conforming_strings   ", "off"]));
    b.extend(execute());
    b.extend(message(b'S', b""));
    batch_refused(&mut raw, b, "bpchar").await;
    // V2: a cast that changes the value (char(27) cuts, regclass maps an OID).
    for sql in [
        "SELECT set_config($1::char(27), $2, false)",
        "SELECT set_config($1::regclass::text, $2, false)",
    ] {
        let mut b = parse_msg("", sql);
        b.extend(bind_text(&["standard_conforming_stringsXYZ", "off"]));
        b.extend(execute());
        b.extend(message(b'S', b""));
        batch_refused(&mut raw, b, sql).await;
    }
    // `$1::text` passes the value unchanged: checked at Bind, a harmless name runs.
    let row = c
        .query_one(
            "SELECT set_config($1::text, $2, false)",
            &[&"application_name", &"v2-app"],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "v2-app");
    // V3: SQL EXECUTE (in a Parse or a Query) of a protocol statement naming a setting
    // by a parameter: its arguments are not read as a Bind is.
    let mut b = parse_msg("v3s", "SELECT set_config($1, $2, false)");
    b.extend(message(b'S', b""));
    raw.send(&b).await;
    let got = raw.until_ready().await;
    assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
    let mut b = parse_msg("", "EXECUTE v3s('standard_conforming_strings', 'off')");
    b.extend(bind_text(&[]));
    b.extend(execute());
    b.extend(message(b'S', b""));
    batch_refused(&mut raw, b, "EXECUTE in a Parse").await;
    let got = raw
        .query("EXECUTE v3s('standard_conforming_strings', 'off')")
        .await;
    let err = got.iter().find(|m| m.tag == b'E').expect("refused");
    assert_eq!(err.field(b'C'), "42501", "{got:?}");
    let got = raw.query_ok("SHOW standard_conforming_strings").await;
    assert!(data_rows(&got)[0].ends_with("on"), "{got:?}");
}

/// V4 (and W3's root): a DBA's trigger that puts the written row's masked column into
/// a setting (or a notification) makes a masked identity's write of that table
/// refused; the DBA, whom the masks do not cover, still writes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v4_a_trigger_that_keeps_the_written_row_refuses_masked_writes() {
    let f = fixture("").await;
    // Made through pgmoat by the DBA, so the catalog follows it at once (made on the
    // server directly it would be seen at the next refresh).
    f.dba()
        .await
        .batch_execute(&f.sql(
            "CREATE FUNCTION {t}_keep() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN PERFORM set_config('application_name', NEW.ssn, false); RETURN NEW; END$$;
             CREATE TRIGGER {t}_keep AFTER UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_keep();",
        ))
        .await
        .unwrap();
    let agent = f.agent().await;
    let e = agent
        .simple_query(&f.sql("UPDATE {t} SET id = id WHERE id = 1"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42501", "{e:?}");
    let app: String = agent
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!app.contains("123-45"), "{app}");
    let dba = f.dba().await;
    dba.simple_query(&f.sql("UPDATE {t} SET id = id WHERE id = 2"))
        .await
        .unwrap();
}

/// Review s37-vfix U1, U2, U6, U7: a cast on a literal name (`'x '::bpchar` loses the
/// blank), the same in a pg_settings WHERE, a parameter used again where the server
/// types it, and `EXECUTE s1(...)` parsed before `s1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u1_u7_setting_names_the_server_reads_differently() {
    let (gw, _dir) = with_rules("rules: []\n").await;
    let c = gw.connect().await;
    for sql in [
        "SELECT set_config('standard_conforming_strings '::bpchar, 'off', false)",
        "SELECT set_config('role '::char(5), 'x', false)",
        "UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings '::bpchar",
    ] {
        let e = c.simple_query(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        assert!(format!("{e:?}").contains("pgmoat"), "{sql}: {e:?}");
    }
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut b = parse_msg(
        "",
        "WITH c AS (SELECT $1::bpchar AS x) SELECT set_config($1, $2, false) FROM c",
    );
    b.extend(bind_text(&["standard_conforming_strings   ", "off"]));
    b.extend(execute());
    b.extend(message(b'S', b""));
    batch_refused(&mut raw, b, "U6").await;
    // U7: the EXECUTE first, the statement it runs after.
    let mut b = parse_msg("u7e", "EXECUTE u7s('standard_conforming_strings', 'off')");
    b.extend(parse_msg("u7s", "SELECT set_config($1, $2, false)"));
    b.extend(message(b'S', b""));
    raw.send(&b).await;
    let got = raw.until_ready().await;
    assert!(got.iter().all(|m| m.tag != b'E'), "{got:?}");
    let mut b = Vec::new();
    let mut body = b"\0u7e\0".to_vec();
    body.extend([0, 0, 0, 0, 0, 0]);
    b.extend(message(b'B', &body));
    b.extend(execute());
    b.extend(message(b'S', b""));
    batch_refused(&mut raw, b, "U7").await;
    let got = raw.query_ok("SHOW standard_conforming_strings").await;
    assert!(data_rows(&got)[0].ends_with("on"), "{got:?}");
}

/// U4: a masked value put into a name the server keeps and shows to anyone (a
/// replication origin, a slot) is refused like any other sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u4_names_the_server_keeps_are_sinks() {
    let f = fixture("").await;
    let agent = f.agent().await;
    for sql in [
        "SELECT pg_replication_origin_create('x_' || salary) FROM {t} WHERE id = 1",
        "SELECT pg_create_physical_replication_slot('s_' || salary) FROM {t} WHERE id = 1",
        "SELECT pg_create_restore_point(salary::text) FROM {t} WHERE id = 1",
    ] {
        let sql = f.sql(sql);
        let e = agent.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(sqlstate(&e), "42501", "{sql}: {e:?}");
        // Refused by the mask before the server runs it (the test's login may not
        // create origins, so the server's own refusal would also be 42501).
        let msg = e.as_db_error().unwrap().message().to_owned();
        assert!(msg.starts_with("pgmoat: blocked by mask"), "{sql}: {msg}");
    }
}
