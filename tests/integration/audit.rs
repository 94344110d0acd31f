//! The audit trail through the real gateway: what is recorded, `pgmoat audit
//! verify|sessions|replay` on the result, a SIGKILL under load losing nothing that was
//! acknowledged, refusal when the store cannot be written, and a dead sink not
//! holding anything up.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

const PGMOAT: &str = env!("CARGO_BIN_EXE_pgmoat");

pub(crate) fn records(dir: &Path) -> Vec<Value> {
    settle_audit(dir);
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            // Segments are JSON lines only (no zeros written ahead of the records).
            let text = std::fs::read_to_string(p).unwrap();
            assert!(!text.contains('\0'), "NUL bytes in {}", p.display());
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON record"))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(crate) fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(PGMOAT)
        .args(args)
        .output()
        .expect("run pgmoat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn audit_yaml(dir: &Path, extra: &str) -> String {
    format!(
        "audit:\n  dir: {}\n  durability: fsync\n{extra}",
        dir.display()
    )
}

fn rules_dir() -> TempDir {
    let d = TempDir::new("pgmoat-audit-rules");
    std::fs::write(
        d.path().join("rules.yaml"),
        "rules:\n  - id: no-drop\n    description: Schema changes go through migrations.\n    when: { statement: [drop] }\n    action: block\n",
    )
    .unwrap();
    d
}

fn of_type<'a>(recs: &'a [Value], t: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_recorded_verified_and_replayed() {
    let store = TempDir::new("pgmoat-audit-store");
    let rules = rules_dir();
    let (_pg, gw) = start_with(&format!(
        "rules: {}\n{}",
        rules.path().display(),
        audit_yaml(store.path(), "")
    ))
    .await;
    let c = connect_url(&format!(
        "{} application_name=auditor-test",
        gw.url(AGENT, AGENT_PW, "demo")
    ))
    .await
    .unwrap();
    c.simple_query("SELECT 1 AS one; SELECT 2 AS two")
        .await
        .unwrap();
    let e = c.simple_query("DROP TABLE nothing_here").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    let row = c.query_one("SELECT $1::int + 1", &[&41i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let e = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    drop(c);
    // A wrong password is recorded for the auditor (the client learns nothing new).
    let e = gw.connect_as(AGENT, "wrong", "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "28P01");
    // Both sessions over on the gateway's side (session_end and auth_failure are
    // recorded by then), so the shutdown is not what ends them.
    gw.wait_idle().await;
    gw.shutdown().await;

    let recs = records(store.path());
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "gap-free seq");
    }
    let start = of_type(&recs, "session_start")[0];
    assert_eq!(start["user"], AGENT);
    assert_eq!(start["groups"], serde_json::json!(["agents"]));
    assert_eq!(start["target"], "demo");
    assert_eq!(start["tls"], false);
    assert_eq!(start["application_name"], "auditor-test");
    assert!(start["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let session = start["session"].as_str().unwrap().to_owned();

    let stmts = of_type(&recs, "statement");
    let decided: Vec<_> = stmts.iter().filter(|r| r["phase"] == "decided").collect();
    assert_eq!(decided[0]["sql"], "SELECT 1 AS one; SELECT 2 AS two");
    assert_eq!(decided[0]["action"], "allow");
    assert_eq!(decided[0]["kinds"], serde_json::json!(["select"]));
    let drop = decided
        .iter()
        .find(|r| r["sql"] == "DROP TABLE nothing_here")
        .unwrap();
    assert_eq!(drop["action"], "block");
    assert_eq!(drop["rules"], serde_json::json!(["no-drop"]));
    assert_eq!(drop["tables"], serde_json::json!(["public.nothing_here"]));
    let prepared = decided
        .iter()
        .find(|r| r["protocol"] == "extended" && r["sql"] == "SELECT $1::int + 1")
        .unwrap();
    let completed: Vec<_> = stmts.iter().filter(|r| r["phase"] == "completed").collect();
    let first = completed
        .iter()
        .find(|r| r["statement"] == decided[0]["statement"])
        .unwrap();
    assert_eq!(first["rows"], 2, "two SELECTs of one row each");
    assert!(
        completed
            .iter()
            .all(|r| r["statement"] != drop["statement"]),
        "a blocked statement has no result"
    );
    let exec = completed
        .iter()
        .find(|r| r["statement"] == prepared["statement"])
        .unwrap();
    assert_eq!(exec["command"], "SELECT 1");
    let failed = completed.iter().find(|r| r["error"].is_object()).unwrap();
    assert_eq!(failed["error"]["code"], "22012");
    let end = of_type(&recs, "session_end")[0];
    assert_eq!(end["session"], session.as_str());
    assert_eq!(end["end"], "terminated");
    let fail = of_type(&recs, "auth_failure")[0];
    assert_eq!(fail["user"], AGENT);
    assert_eq!(fail["reason"], "scram: wrong SCRAM password");
    assert!(
        !std::fs::read_to_string(
            std::fs::read_dir(store.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path()
        )
        .unwrap()
        .contains(AGENT_PW),
        "no secrets in the store"
    );

    let dir = store.path().to_str().unwrap();
    let (code, out, err) = cli(&["audit", "verify", dir]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": intact: "), "{out}");
    let last = recs.last().unwrap();
    let head = format!("{}:{}", last["seq"], last["hash"].as_str().unwrap());
    let (code, out, _) = cli(&["audit", "verify", dir, "--head", &head]);
    assert_eq!(code, 0, "{out}");

    let (code, out, _) = cli(&["audit", "sessions", dir, "--user", AGENT]);
    assert_eq!(code, 0);
    assert!(out.lines().nth(1).unwrap().starts_with(&session), "{out}");
    assert!(out.contains("terminated"), "{out}");
    let (_, out, _) = cli(&["audit", "sessions", dir, "--user", "nobody"]);
    assert_eq!(out.lines().count(), 1, "header only: {out}");
    let (_, out, _) = cli(&["audit", "sessions", dir, "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (code, _, err) = cli(&["audit", "sessions", dir, "--since", "yesterday"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "one clear line: {err}");

    let (code, out, err) = cli(&["audit", "replay", dir, &session]);
    assert_eq!(code, 0, "{err}");
    let normal = normalise(&out, &session);
    let golden = "\
-- session SESSION: agent-1 (agents) -> demo from 127.0.0.1:PORT, TLS no, application_name \"auditor-test\"
-- started TS
[HH:MM:SS.mmm] #1 simple allow
    -- kinds: select; tables: -
    SELECT 1 AS one; SELECT 2 AS two
[HH:MM:SS.mmm] #1 => SELECT 1, 2 rows in N ms
      two
      ---
      1
      2
[HH:MM:SS.mmm] #2 simple BLOCKED by rule \"no-drop\"
    -- kinds: drop; tables: public.nothing_here
    DROP TABLE nothing_here
[HH:MM:SS.mmm] #3 extended allow
    -- kinds: select; tables: -
    SELECT $1::int + 1
[HH:MM:SS.mmm] #3 => SELECT 1, 1 row in N ms
      ?column?
      ----------
      \\x0000002a
[HH:MM:SS.mmm] #4 simple allow
    -- kinds: select; tables: -
    SELECT 1/0
[HH:MM:SS.mmm] #4 => ERROR 22012: division by zero in N ms
-- ended TS: terminated, 4 statements
";
    assert_eq!(normal, golden, "\n{normal}");
    let (code, _, err) = cli(&["audit", "replay", dir, "no-such-session"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("pgmoat: no session"), "{err}");
}

/// Batch mode, where nothing waits for the disk, writes a statement that completes
/// before the next flush as one `whole` record; replay reads it exactly like the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_writes_a_finished_statement_as_one_record() {
    let store = TempDir::new("pgmoat-audit-batch");
    let (_pg, gw) = start_with(&format!(
        "audit:\n  dir: {}\n  durability: batch\n  flush_interval: 1s\n",
        store.path().display()
    ))
    .await;
    let c = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap();
    c.simple_query("SELECT 1 AS one; SELECT 2 AS two")
        .await
        .unwrap();
    let e = c.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(sqlstate(&e), "22012");
    drop(c);
    gw.wait_idle().await;
    gw.shutdown().await;

    let recs = records(store.path());
    let stmts = of_type(&recs, "statement");
    // Each statement is one record or two, never more, whatever the flush timing.
    let whole: Vec<_> = stmts.iter().filter(|r| r["phase"] == "whole").collect();
    let halves = stmts.iter().filter(|r| r["phase"] != "whole").count();
    assert_eq!(whole.len() * 2 + halves, 4, "{stmts:?}");
    assert!(!whole.is_empty(), "within one 1 s flush: {stmts:?}");
    // The first statement's fields, from its `whole` record or from its two halves
    // (whichever the flush timing made): checked either way.
    let first: Vec<_> = stmts.iter().filter(|r| r["statement"] == 1).collect();
    let field = |name: &str| {
        first
            .iter()
            .map(|r| &r[name])
            .find(|v| !v.is_null())
            .unwrap_or_else(|| panic!("no {name} for statement 1: {first:?}"))
            .clone()
    };
    assert_eq!(field("sql"), "SELECT 1 AS one; SELECT 2 AS two");
    assert_eq!(field("action"), "allow");
    assert_eq!(field("rows"), 2);
    assert_eq!(field("recorded_rows"), serde_json::json!([["1"], ["2"]]));
    let dir = store.path().to_str().unwrap();
    let (code, out, _) = cli(&["audit", "verify", dir]);
    assert_eq!(code, 0, "{out}");
    let session = of_type(&recs, "session_start")[0]["session"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out, _) = cli(&["audit", "sessions", dir]);
    assert_eq!(code, 0);
    assert!(out.contains(&session), "{out}");
    let (code, out, err) = cli(&["audit", "replay", dir, &session]);
    assert_eq!(code, 0, "{err}");
    let normal = normalise(&out, &session);
    let body: String = normal.lines().skip(2).map(|l| format!("{l}\n")).collect();
    let golden = "\
[HH:MM:SS.mmm] #1 simple allow
    SELECT 1 AS one; SELECT 2 AS two
[HH:MM:SS.mmm] #1 => SELECT 1, 2 rows in N ms
      two
      ---
      1
      2
[HH:MM:SS.mmm] #2 simple allow
    SELECT 1/0
[HH:MM:SS.mmm] #2 => ERROR 22012: division by zero in N ms
-- ended TS: terminated, 2 statements
";
    assert_eq!(body, golden, "\n{normal}");
}

/// Times, durations, ports and the session id vary run to run.
fn normalise(text: &str, session: &str) -> String {
    let ts = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z").unwrap();
    let clock = regex::Regex::new(r"\[\d\d:\d\d:\d\d\.\d{3}\]").unwrap();
    let dur = regex::Regex::new(r"in \d+\.\d+ ms").unwrap();
    let port = regex::Regex::new(r"127\.0\.0\.1:\d+").unwrap();
    let t = text.replace(session, "SESSION");
    let t = ts.replace_all(&t, "TS");
    let t = clock.replace_all(&t, "[HH:MM:SS.mmm]");
    let t = dur.replace_all(&t, "in N ms");
    port.replace_all(&t, "127.0.0.1:PORT").into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_rows_are_the_masked_ones() {
    let store = TempDir::new("pgmoat-audit-masked");
    let rules = TempDir::new("pgmoat-audit-mask-rules");
    let table = format!("audit_people_{}", std::process::id());
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!("masks:\n  - id: pii\n    columns: [{table}.ssn]\n    method: partial\n    keep_last: 4\n"),
    )
    .unwrap();
    let (_pg, gw) = start_with(&format!(
        "rules: {}\n{}",
        rules.path().display(),
        audit_yaml(store.path(), "  record_rows: 1\n")
    ))
    .await;
    let c = gw.connect().await;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (name text, ssn text);
         INSERT INTO {table} VALUES ('ann', '123-45-6789'), ('bob', '987-65-4321')"
    ))
    .await
    .unwrap();
    let rows = c
        .simple_query(&format!("SELECT name, ssn FROM {table} ORDER BY name"))
        .await
        .unwrap();
    let seen: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(1).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        ["***-**-6789", "***-**-4321"],
        "the client sees masks"
    );
    drop(c);
    gw.wait_idle().await;
    gw.shutdown().await;
    let recs = records(store.path());
    let done = recs
        .iter()
        .find(|r| r["phase"] == "completed" && r["columns"] == serde_json::json!(["name", "ssn"]))
        .expect("a completed record with the kept row");
    assert_eq!(
        done["recorded_rows"],
        serde_json::json!([["ann", "***-**-6789"]])
    );
    assert_eq!(done["rows_truncated"], true, "record_rows: 1 of 2");
    let decided = recs
        .iter()
        .find(|r| r["phase"] == "decided" && r["statement"] == done["statement"])
        .expect("its decided record");
    assert_eq!(
        decided["masked_columns"],
        serde_json::json!([format!("{table}.ssn")]),
        "the record names the masked column"
    );
    let text: String = recs.iter().map(|r| r.to_string()).collect();
    // (The INSERT's own SQL holds the values: SQL is recorded as sent.)
    assert!(
        !text.contains("987-65-4321\"]"),
        "no unmasked value among recorded rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_the_first_bad_record() {
    let store = TempDir::new("pgmoat-audit-tamper");
    let (_pg, gw) = start_with(&audit_yaml(store.path(), "")).await;
    let c = gw.connect().await;
    for i in 0..5 {
        c.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    drop(c);
    gw.wait_idle().await;
    gw.shutdown().await;
    let seg = std::fs::read_dir(store.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a segment");
    let text = std::fs::read_to_string(&seg).unwrap();
    std::fs::write(&seg, text.replacen("SELECT 3", "SELECT 7", 1)).unwrap();
    let (code, out, _) = cli(&["audit", "verify", store.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let bad = records_lenient(&text)
        .into_iter()
        .find(|r| r["sql"] == "SELECT 3")
        .unwrap()["seq"]
        .clone();
    assert!(
        out.contains(&format!("first bad record: seq {bad} ")),
        "{out}"
    );
    let (code, _, err) = cli(&["audit", "verify", "/nonexistent/store"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
}

fn records_lenient(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_record_cannot_be_written_is_not_run() {
    let store = TempDir::new("pgmoat-audit-full");
    let (pg, gw) = start_with(&audit_yaml(store.path(), "  segment_age: 1s\n")).await;
    let c = gw.connect().await;
    let table = format!("audit_full_{}", std::process::id());
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (x int)"
    ))
    .await
    .unwrap();
    // Let the segment age past `segment_age`, so the next record opens a new one ...
    c.simple_query("SELECT 'before the disk fills'")
        .await
        .unwrap();
    // Rotation by age is what puts the next record in a new segment, so this waits
    // out `segment_age` itself (from after a record the segment already holds, so the
    // segment is at least this old; too short a wait fails the test, never passes it).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let next = records(store.path()).len() + 1;
    let seg2 = store.path().join(format!("audit-{next:020}.jsonl"));
    // ... which is the full device.
    std::os::unix::fs::symlink("/dev/full", &seg2).unwrap();
    let e = c
        .simple_query(&format!("INSERT INTO {table} VALUES (1)"))
        .await
        .unwrap_err();
    let db = e.as_db_error().expect("an ErrorResponse");
    assert_eq!(db.code().code(), "58030");
    assert!(db.message().starts_with("pgmoat: "), "{}", db.message());
    let e = c.query("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "58030", "extended protocol too");
    // Not run: the server never saw the INSERT.
    let admin = pg
        .connect(&pg.superuser, &pg.password, "demo")
        .await
        .unwrap();
    let n: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    assert!(
        gw.metrics
            .audit_write_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(c);
    gw.shutdown().await;
    std::fs::remove_file(&seg2).unwrap();
    let (code, out, _) = cli(&["audit", "verify", store.path().to_str().unwrap()]);
    assert_eq!(code, 0, "what was acknowledged is intact: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_sink_does_not_hold_up_statements() {
    let store = TempDir::new("pgmoat-audit-sink");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let mut env = test_env();
    env.insert(
        "AUDIT_HOOK".into(),
        format!("http://127.0.0.1:{port}/audit"),
    );
    let yaml = config_yaml(
        pg,
        &audit_yaml(
            store.path(),
            "  sinks:\n    - webhook: { url_env: AUDIT_HOOK }\n    - syslog: { address: \"tcp://127.0.0.1:1\" }\n",
        ),
    );
    let gw = start_yaml(&yaml, env).await;
    let c = gw.connect().await;
    let t0 = Instant::now();
    for i in 0..300 {
        c.simple_query(&format!("SELECT {i}")).await.unwrap();
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    drop(c);
    gw.wait_idle().await;
    let shutdown = Instant::now();
    gw.shutdown().await;
    assert!(
        shutdown.elapsed() < Duration::from_secs(10),
        "shutdown waits on sinks only briefly"
    );
    let recs = records(store.path());
    let decided = recs.iter().filter(|r| r["phase"] == "decided").count();
    assert_eq!(decided, 300, "the local store has everything");
}

/// Pick a free port (bind 0, release).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn serve(config: &Path) -> std::process::Child {
    let mut cmd = Command::new(PGMOAT);
    cmd.args(["serve", "-c", config.to_str().unwrap()])
        .envs(test_env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().expect("start pgmoat serve")
}

/// A config for `pgmoat serve` on a free port with its audit store in `store` (which
/// also holds the config: segment names are all the store reads); `extra` goes under
/// `audit:`. Returns the port and the config's path.
pub(crate) async fn serve_config(store: &Path, extra: &str) -> (u16, std::path::PathBuf) {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let port = free_port();
    let yaml = config_yaml(pg, &audit_yaml(store, extra)).replacen(
        "listen: 127.0.0.1:0",
        &format!("listen: 127.0.0.1:{port}"),
        1,
    );
    let cfg = store.join("pgmoat.yaml");
    std::fs::write(&cfg, yaml).unwrap();
    (port, cfg)
}

pub(crate) async fn wait_listening(port: u16) {
    wait_until(
        &format!("pgmoat serve to listen on port {port}"),
        WAIT_LIMIT,
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    let store = TempDir::new("pgmoat-audit-crash");
    let (port, cfg) = serve_config(store.path(), "").await;
    let mut child = serve(&cfg);
    wait_listening(port).await;
    let url = format!(
        "host=127.0.0.1 port={port} user={AGENT} password={AGENT_PW} dbname=demo sslmode=disable"
    );
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..6 {
        let url = url.clone();
        let acked = std::sync::Arc::clone(&acked);
        workers.push(tokio::spawn(async move {
            let Ok(c) = connect_url(&url).await else {
                return;
            };
            for i in 0.. {
                let marker = format!("crash-{w}-{i}");
                let sql = format!("SELECT '{marker}'");
                let ok = if i % 2 == 0 {
                    c.simple_query(&sql).await.is_ok()
                } else {
                    c.query(&sql, &[]).await.is_ok()
                };
                if !ok {
                    return;
                }
                acked.lock().unwrap().push(marker);
            }
        }));
    }
    // Killed under load: once the workers have had a good number of statements
    // acknowledged (and are still sending).
    {
        let acked = &acked;
        wait_until("200 statements acknowledged", WAIT_LIMIT, || async move {
            acked.lock().unwrap().len() >= 200
        })
        .await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200, "load ran: {} statements", acked.len());

    // Restart: the tail is checked (and repaired if torn); then stop gracefully.
    let mut child = serve(&cfg);
    wait_listening(port).await;
    sigterm(child.id());
    let _ = child.wait();

    let dir = store.path().to_str().unwrap();
    let (code, out, err) = cli(&["audit", "verify", dir]);
    assert_eq!(code, 0, "{out}{err}");
    let mut recorded = std::collections::HashSet::new();
    for r in records(store.path()) {
        if let Some(sql) = r["sql"].as_str() {
            recorded.insert(sql.to_owned());
        }
    }
    let missing: Vec<_> = acked
        .iter()
        .filter(|m| !recorded.contains(&format!("SELECT '{m}'")))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not recorded: {missing:?}"
    );
}

pub(crate) fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// A Parse the server refused (the name is taken) leaves the old statement under the
/// name: its later executions are recorded against the statement that really ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_recorded_against_the_statement_the_server_ran() {
    let store = TempDir::new("pgmoat-audit-store");
    let (_pg, gw) = start_with(&audit_yaml(store.path(), "")).await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let sync = message(b'S', b"");
    let mut m = parse_msg("s1", "SELECT 'first'::text");
    m.extend(&sync);
    m.extend(parse_msg("s1", "SELECT 'second'::text"));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    assert_eq!(raw.until_ready().await[0].field(b'C'), "42P05");
    raw.send(&bind_execute_sync("s1")).await;
    let r = raw.until_ready().await;
    assert!(
        r.iter()
            .any(|m| m.tag == b'D' && String::from_utf8_lossy(&m.body).contains("first")),
        "{r:?}"
    );
    drop(raw);
    gw.wait_idle().await;
    gw.shutdown().await;
    let recs = records(store.path());
    let number = |sql: &str| {
        recs.iter()
            .find(|r| r["phase"] == "decided" && r["sql"] == sql)
            .map(|r| r["statement"].clone())
            .unwrap()
    };
    let first = number("SELECT 'first'::text");
    let completed: Vec<&Value> = recs
        .iter()
        .filter(|r| r["phase"] == "completed" && r["rows"] == 1)
        .collect();
    assert_eq!(completed.len(), 1, "{recs:?}");
    assert_eq!(completed[0]["statement"], first, "{recs:?}");
    assert_eq!(
        completed[0]["recorded_rows"],
        serde_json::json!([["first"]])
    );
}

/// A SQL PREPARE names statements in Parse's namespace: a Bind of that name runs the
/// PREPARE's SQL, so its executions are recorded against the PREPARE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_of_a_sql_prepared_name_are_recorded_against_the_prepare() {
    let store = TempDir::new("pgmoat-audit-store");
    let rules = rules_dir();
    let extra = format!("rules: {}\n", rules.path().display());
    let (_pg, gw) = start_with(&audit_yaml(store.path(), &extra)).await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut m = parse_msg("s2", "SELECT 'first'::text");
    m.extend(message(b'S', b""));
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    raw.query_ok("DEALLOCATE s2").await;
    raw.query_ok("PREPARE s2 AS SELECT 'second'::text").await;
    raw.send(&bind_execute_sync("s2")).await;
    let r = raw.until_ready().await;
    assert!(
        r.iter()
            .any(|m| m.tag == b'D' && String::from_utf8_lossy(&m.body).contains("second")),
        "{r:?}"
    );
    drop(raw);
    gw.wait_idle().await;
    gw.shutdown().await;
    let recs = records(store.path());
    let prepare = recs
        .iter()
        .find(|r| r["phase"] == "decided" && r["sql"] == "PREPARE s2 AS SELECT 'second'::text")
        .map(|r| r["statement"].clone())
        .unwrap();
    let executed: Vec<&Value> = recs
        .iter()
        .filter(|r| r["phase"] == "completed" && r["command"] == "SELECT 1")
        .collect();
    assert_eq!(executed.len(), 1, "{recs:?}");
    assert_eq!(executed[0]["statement"], prepare, "{recs:?}");
    assert_eq!(
        executed[0]["recorded_rows"],
        serde_json::json!([["second"]])
    );
}
