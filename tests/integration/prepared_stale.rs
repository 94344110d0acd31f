//! A prepared statement is judged and traced when it is prepared, but the server plans
//! it again after DDL on what it uses or a search_path change (review s36 F1, F5).
//! pgmoat refuses a Bind or EXECUTE of such a statement with 0A000 and routine
//! `RevalidateCachedQuery` (what Postgres sends when a cached plan changed, on which
//! drivers re-prepare), while DDL on other objects and a catalog read again with no
//! change leave it running.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::*;

const SSN: &str = "123-45-6789";

struct Setup {
    /// The table with the SSN; `{t}_v` is a clean view over it, `{t}_staff` is in
    /// `public` and in schema `{t}_hide`, which a rule blocks.
    t: String,
    _rules: TempDir,
    gw: TestGateway,
    direct: Client,
}

async fn setup(extra: &str) -> Setup {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let t = unique("stale");
    direct
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, ssn text);
             INSERT INTO {t} VALUES (1, 'Ada', '{SSN}');
             CREATE VIEW {t}_v AS SELECT id, name FROM {t};
             CREATE TABLE {t}_staff (name text);
             INSERT INTO {t}_staff VALUES ('public-row');
             CREATE SCHEMA {t}_hide;
             CREATE TABLE {t}_hide.{t}_staff (name text);
             INSERT INTO {t}_hide.{t}_staff VALUES ('HIDDEN');"
        ))
        .await
        .unwrap();
    let rules = TempDir::new("pgmoat-stale-rules");
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "masks:
  - {{ id: pii, columns: [{t}.ssn], method: redact, unless: {{ groups: [dba] }} }}
rules:
  - {{ id: no-hide, action: block, when: {{ tables: [\"{t}_hide.*\"] }} }}
"
        ),
    )
    .unwrap();
    let yaml = config_yaml(
        pg,
        &format!(
            "    - {{ name: dba-1, password_env: AGENT_PW, groups: [dba] }}
rules: {}
{extra}",
            rules.path().display()
        ),
    );
    let gw = start_yaml(&yaml, test_env()).await;
    Setup {
        t,
        _rules: rules,
        gw,
        direct,
    }
}

async fn dba(s: &Setup) -> Client {
    s.gw.connect_as("dba-1", AGENT_PW, "demo").await.unwrap()
}

async fn replace_view(by: &Client, t: &str) {
    by.batch_execute(&format!(
        "CREATE OR REPLACE VIEW {t}_v AS SELECT id, ssn AS name FROM {t}"
    ))
    .await
    .expect("the view is replaced");
}

/// What one row's first column reads, or the error's SQLSTATE and routine.
fn outcome(r: Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>) -> String {
    match r {
        Ok(rows) => rows
            .first()
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default(),
        Err(e) => {
            let routine = e.as_db_error().and_then(|d| d.routine()).unwrap_or("");
            format!("ERROR {} {routine}", sqlstate(&e))
        }
    }
}

async fn simple(c: &Client, sql: &str) -> String {
    match c.simple_query(sql).await {
        Ok(msgs) => msgs
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default(),
        Err(e) => {
            let routine = e.as_db_error().and_then(|d| d.routine()).unwrap_or("");
            format!("ERROR {} {routine}", sqlstate(&e))
        }
    }
}

const REFUSED: &str = "ERROR 0A000 RevalidateCachedQuery";

/// A protocol-level statement (tokio-postgres `prepare`) and SQL `PREPARE p`, both
/// reading the view; returns the statement and the PREPARE's text (to send again).
async fn prepare_both(agent: &Client, t: &str) -> (tokio_postgres::Statement, String) {
    let stmt = agent
        .prepare(&format!("SELECT 'X:' || name FROM {t}_v WHERE id = 1"))
        .await
        .unwrap();
    let prep = format!("PREPARE p AS SELECT 'P:' || name FROM {t}_v WHERE id = 1");
    assert_eq!(simple(agent, &prep).await, "");
    (stmt, prep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_statement_over_a_view_replaced_by_another_session_is_refused() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    let agent = s.gw.connect().await;
    let q = format!("SELECT 'X:' || name FROM {t}_v WHERE id = 1");
    let stmt = agent.prepare(&q).await.unwrap();
    assert_eq!(outcome(agent.query(&stmt, &[]).await), "X:Ada");
    replace_view(&dba(&s).await, t).await;
    let read = outcome(agent.query(&stmt, &[]).await);
    assert_eq!(read, REFUSED, "the old statement ran over the new view");
    // Prepared again, it is judged over the new view: masked.
    let again = agent.prepare(&q).await.unwrap();
    let read = outcome(agent.query(&again, &[]).await);
    assert_eq!(read, "****", "masked whole (a redacted output)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_over_a_view_replaced_by_this_session_are_refused() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    let agent = s.gw.connect().await;
    let (stmt, prep) = prepare_both(&agent, t).await;
    assert_eq!(simple(&agent, "EXECUTE p").await, "P:Ada");
    assert_eq!(outcome(agent.query(&stmt, &[]).await), "X:Ada");
    // In one message, the EXECUTE would run after the DDL: the message is refused.
    let both =
        format!("CREATE OR REPLACE VIEW {t}_v AS SELECT id, ssn AS name FROM {t}; EXECUTE p");
    assert_eq!(simple(&agent, &both).await, REFUSED);
    // Pipelined behind the DDL (sent before its answer): never the raw value.
    let replace = format!("CREATE OR REPLACE VIEW {t}_v AS SELECT id, ssn AS name FROM {t}");
    let (done, read) = tokio::join!(agent.batch_execute(&replace), agent.query(&stmt, &[]));
    done.expect("the view is replaced");
    let read = outcome(read);
    assert!(read == "****" || read == REFUSED, "{read}");
    assert_eq!(simple(&agent, "EXECUTE p").await, REFUSED);
    assert_eq!(outcome(agent.query(&stmt, &[]).await), REFUSED);
    // Prepared again after DEALLOCATE: judged anew, masked.
    assert_eq!(simple(&agent, "DEALLOCATE p").await, "");
    assert_eq!(simple(&agent, &prep).await, "");
    let read = simple(&agent, "EXECUTE p").await;
    assert_eq!(read, "****", "masked whole (a redacted output)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_over_a_view_replaced_by_a_dba_are_refused_in_both_forms() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    let agent = s.gw.connect().await;
    let (stmt, _) = prepare_both(&agent, t).await;
    assert_eq!(simple(&agent, "EXECUTE p").await, "P:Ada");
    replace_view(&dba(&s).await, t).await;
    assert_eq!(outcome(agent.query(&stmt, &[]).await), REFUSED);
    assert_eq!(simple(&agent, "EXECUTE p").await, REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_statement_after_set_search_path_is_refused_without_masks() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    // Not masked: a rules-only session, whose Binds the synchronous pass takes.
    let c = dba(&s).await;
    let stmt = c
        .prepare(&format!("SELECT 'X:' || name FROM {t}_staff"))
        .await
        .unwrap();
    assert_eq!(outcome(c.query(&stmt, &[]).await), "X:public-row");
    assert_eq!(outcome(c.query(&stmt, &[]).await), "X:public-row");
    c.batch_execute(&format!("SET search_path = {t}_hide, public"))
        .await
        .unwrap();
    assert_eq!(outcome(c.query(&stmt, &[]).await), REFUSED);
    // A fresh statement is judged in every schema: the rule.
    let fresh = c.prepare(&format!("SELECT name FROM {t}_staff")).await;
    assert_eq!(sqlstate(&fresh.unwrap_err()), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sql_prepare_after_set_search_path_is_refused() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    for c in [dba(&s).await, s.gw.connect().await] {
        let prep = format!("PREPARE p AS SELECT 'P:' || name FROM {t}_staff");
        assert_eq!(simple(&c, &prep).await, "");
        assert_eq!(simple(&c, "EXECUTE p").await, "P:public-row");
        assert_eq!(
            simple(&c, &format!("SET search_path = {t}_hide, public")).await,
            ""
        );
        assert_eq!(simple(&c, "EXECUTE p").await, REFUSED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_on_other_objects_and_refreshes_leave_prepared_statements_running() {
    let s = setup("limits: { catalog_refresh: 1s }\n").await;
    let t = &s.t;
    let agent = s.gw.connect().await;
    let (stmt, _) = prepare_both(&agent, t).await;
    // DDL through pgmoat on another table: the catalog is read again.
    dba(&s)
        .await
        .batch_execute(&format!(
            "CREATE TABLE {t}_other (x int); ALTER TABLE {t}_other ADD COLUMN y text"
        ))
        .await
        .unwrap();
    assert_eq!(outcome(agent.query(&stmt, &[]).await), "X:Ada");
    assert_eq!(simple(&agent, "EXECUTE p").await, "P:Ada");
    // Periodic reads with nothing changed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(outcome(agent.query(&stmt, &[]).await), "X:Ada");
    assert_eq!(simple(&agent, "EXECUTE p").await, "P:Ada");
    // The same reads do see DDL made on the server directly.
    replace_view(&s.direct, t).await;
    let started = Instant::now();
    loop {
        // (Until the next read the old catalog is all pgmoat knows: that window is
        // `limits.catalog_refresh`'s.)
        let read = outcome(agent.query(&stmt, &[]).await);
        if read == REFUSED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not refused within 10 s (catalog_refresh: 1s): {read}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(simple(&agent, "EXECUTE p").await, REFUSED);
}

/// What the statement reaches counts, not only what it names: a function whose body
/// is replaced, a view over a view that is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_function_body_or_inner_view_makes_the_statement_stale() {
    let s = setup("limits: { catalog_refresh: 0s }\n").await;
    let t = &s.t;
    s.direct
        .batch_execute(&format!(
            "CREATE FUNCTION {t}_f() RETURNS SETOF text LANGUAGE sql AS 'SELECT name FROM {t}';
             CREATE VIEW {t}_w AS SELECT id, name FROM {t}_v;"
        ))
        .await
        .unwrap();
    let agent = s.gw.connect().await;
    let by_f = agent
        .prepare(&format!("SELECT 'F:' || x FROM {t}_f() x"))
        .await
        .unwrap();
    let by_w = agent
        .prepare(&format!("SELECT 'W:' || name FROM {t}_w WHERE id = 1"))
        .await
        .unwrap();
    // (A function's output over a table with masked columns is masked whole.)
    assert_eq!(outcome(agent.query(&by_f, &[]).await), "****");
    assert_eq!(outcome(agent.query(&by_w, &[]).await), "W:Ada");
    let dba = dba(&s).await;
    dba.batch_execute(&format!(
        "CREATE OR REPLACE FUNCTION {t}_f() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM {t}'"
    ))
    .await
    .unwrap();
    assert_eq!(outcome(agent.query(&by_f, &[]).await), REFUSED);
    // The function is no part of the view: that statement runs on.
    assert_eq!(outcome(agent.query(&by_w, &[]).await), "W:Ada");
    replace_view(&dba, t).await;
    assert_eq!(outcome(agent.query(&by_w, &[]).await), REFUSED);
}
