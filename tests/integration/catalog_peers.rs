//! A catalog read before DDL made elsewhere must not go on judging masks: a view
//! replaced through another replica (cluster: the DDL is announced before its client
//! sees it done), through another target of the same database on the same node, or
//! behind pgmoat's back (read again every `limits.catalog_refresh`). In each case a
//! masked identity reads the replaced view through a gateway whose catalog had the
//! clean view, and gets the mask, not the SSN.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::harness::*;

const SSN: &str = "123-45-6789";

/// A table with an SSN, masked for everyone but `dba`, and a clean view over it.
async fn people(direct: &Client) -> String {
    let t = unique("peer_people");
    direct
        .batch_execute(&format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, ssn text);
             INSERT INTO {t} VALUES (1, 'Ada', '{SSN}');
             CREATE VIEW {t}_v AS SELECT id, name FROM {t};"
        ))
        .await
        .unwrap();
    t
}

fn rules(t: &str) -> TempDir {
    let dir = TempDir::new("pgmoat-peer-rules");
    std::fs::write(
        dir.path().join("rules.yaml"),
        format!(
            "masks:\n  - id: pii\n    columns: [{t}.ssn]\n    method: redact\n    unless: {{ groups: [dba] }}\n"
        ),
    )
    .unwrap();
    dir
}

/// A gateway for the shared test Postgres: the agent (masked) and `dba-1` (not),
/// targets `demo` and `demo2` (the same database), `extra` config, and the state
/// database's URL as `STATE_URL`.
async fn gateway(rules: &TempDir, extra: &str, state_url: Option<&str>) -> TestGateway {
    let pg = crate::common::pg::shared();
    let yaml = config_yaml(
        pg,
        &format!(
            "    - {{ name: dba-1, password_env: AGENT_PW, groups: [dba] }}
  # (the same database under a second name)
rules: {rules}
{extra}",
            rules = rules.path().display()
        ),
    )
    .replacen(
        "targets:\n",
        &format!(
            "targets:\n  demo2: {{ host: 127.0.0.1, port: {}, database: demo, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}\n",
            pg.port
        ),
        1,
    );
    let mut env = test_env();
    if let Some(url) = state_url {
        env.insert("STATE_URL".into(), url.to_owned());
    }
    start_yaml(&yaml, env).await
}

/// The common start: the shared Postgres prepared, a table with a clean view, one
/// gateway (`catalog_refresh` as given) and the masked agent, who has read the view
/// once (so the gateway's catalog holds its clean definition).
struct One {
    direct: Client,
    t: String,
    gw: TestGateway,
    agent: Client,
    _rules: TempDir,
}

async fn one_gateway(catalog_refresh: &str) -> One {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let t = people(&direct).await;
    let r = rules(&t);
    let gw = gateway(
        &r,
        &format!("limits: {{ catalog_refresh: {catalog_refresh} }}\n"),
        None,
    )
    .await;
    let agent = gw.connect().await;
    assert_eq!(name_of(&agent, &format!("{t}_v")).await, "Ada");
    One {
        direct,
        t,
        gw,
        agent,
        _rules: r,
    }
}

async fn name_of(c: &Client, view: &str) -> String {
    c.query_one(&format!("SELECT name FROM {view} WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Who replaces the view does not matter (a DBA): what the agent reads after does.
async fn replace_view(replace: &Client, t: &str) {
    replace
        .batch_execute(&format!(
            "CREATE OR REPLACE VIEW {t}_v AS SELECT id, ssn AS name FROM {t}"
        ))
        .await
        .expect("the DBA replaces the view");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_through_another_replica_reaches_this_ones_catalog() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let state_db = unique("pgmoat_state_peers");
    pg.create_database(&state_db).await;
    let state_url = pg.conn_str(&pg.superuser, &pg.password, &state_db);
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let t = people(&direct).await;
    let r = rules(&t);
    // No periodic read: only the announcement can tell B.
    let cluster = |node: &str| {
        format!(
            "cluster: {{ node: {node}, state_url_env: STATE_URL, heartbeat: 200ms, lapse: 1s }}\nlimits: {{ catalog_refresh: 0s }}\n"
        )
    };
    let a = gateway(&r, &cluster("peer-a"), Some(&state_url)).await;
    let b = gateway(&r, &cluster("peer-b"), Some(&state_url)).await;
    let agent_b = b.connect().await;
    assert_eq!(name_of(&agent_b, &format!("{t}_v")).await, "Ada");
    let agent_ssn: String = agent_b
        .query_one(&format!("SELECT ssn FROM {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        !agent_ssn.contains("6789"),
        "the mask holds on B: {agent_ssn}"
    );
    // Both nodes listen before anything is announced (a listener that joins late
    // marks everything stale anyway, which would pass this test for the wrong reason).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = name_of(&agent_b, &format!("{t}_v")).await;

    let dba_a = a.connect_as("dba-1", AGENT_PW, "demo").await.unwrap();
    replace_view(&dba_a, &t).await;
    // At once, with nothing in between: B heard of it before A answered.
    let read = name_of(&agent_b, &format!("{t}_v")).await;
    assert!(
        !read.contains("6789"),
        "B traced the view it read before the DDL on A: {read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_through_another_target_of_the_database_reaches_this_ones_catalog() {
    let One {
        direct: _direct,
        t,
        gw,
        agent,
        _rules,
    } = one_gateway("0s").await;
    let dba = gw.connect_as("dba-1", AGENT_PW, "demo2").await.unwrap();
    replace_view(&dba, &t).await;
    let read = name_of(&agent, &format!("{t}_v")).await;
    assert!(
        !read.contains("6789"),
        "target demo kept the view it read before the DDL on demo2: {read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_behind_pgmoats_back_is_seen_at_the_next_refresh() {
    let One {
        direct,
        t,
        gw: _gw,
        agent,
        _rules,
    } = one_gateway("1s").await;
    // Run on the server directly: pgmoat sees no DDL.
    replace_view(&direct, &t).await;
    let started = Instant::now();
    let q = format!("SELECT name FROM {t}_v WHERE id = 1");
    loop {
        match agent.query_one(&q, &[]).await {
            Ok(r) if !r.get::<_, String>(0).contains("6789") => break,
            Ok(_) => {}
            // The driver's Parse judged just before the read and its Bind after it:
            // refused (prepared statements, review s36 F1); parsed again next time.
            Err(e) if sqlstate(&e) == "0A000" => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the catalog was not read again within 10 s (catalog_refresh: 1s)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Review s36-catalog F3: DDL in a transaction that is prepared (PREPARE TRANSACTION)
/// becomes visible at COMMIT PREPARED, which runs no DDL itself: it is followed like
/// DDL of unknown extent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_committed_by_commit_prepared_reaches_the_catalog() {
    let One {
        direct: _direct,
        t,
        gw,
        agent,
        _rules,
    } = one_gateway("0s").await;
    let dba = gw.connect_as("dba-1", AGENT_PW, "demo").await.unwrap();
    let gid = unique("gid");
    dba.batch_execute("BEGIN").await.unwrap();
    replace_view(&dba, &t).await;
    dba.batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
        .await
        .unwrap();
    // The catalog is read again now (the view is locked by the prepared transaction:
    // its old definition is kept); the agent does not touch the locked view.
    agent.batch_execute("SELECT 1").await.unwrap();
    dba.batch_execute(&format!("COMMIT PREPARED '{gid}'"))
        .await
        .unwrap();
    let read = name_of(&agent, &format!("{t}_v")).await;
    assert!(
        !read.contains("6789"),
        "the view committed by COMMIT PREPARED was traced as the old one: {read}"
    );
}

/// Review s36-catalog F4: a client that sends DDL and leaves before its answer (here
/// while the server sleeps before the DDL) does not take the catalog's update with it:
/// the server still commits the DDL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_whose_client_left_before_the_answer_reaches_the_catalog() {
    let One {
        direct,
        t,
        gw,
        agent,
        _rules,
    } = one_gateway("0s").await;
    let (dba, connection) =
        tokio_postgres::connect(&gw.url("dba-1", AGENT_PW, "demo"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let sql = format!(
        "SELECT pg_sleep(1); CREATE OR REPLACE VIEW {t}_v AS SELECT id, ssn AS name FROM {t}"
    );
    let query = tokio::spawn(async move { dba.simple_query(&sql).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The client goes away while the server sleeps; meanwhile another statement has
    // the catalog read again, before the DDL ran.
    connection.abort();
    query.abort();
    agent.batch_execute("SELECT 1").await.unwrap();
    let started = Instant::now();
    loop {
        let defined: String = direct
            .query_one(&format!("SELECT pg_get_viewdef('{t}_v')"), &[])
            .await
            .unwrap()
            .get(0);
        if defined.contains("ssn") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the DDL never ran: {defined}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gateway's side of the session may still be finishing: give it the moment it
    // takes to see the server close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read = name_of(&agent, &format!("{t}_v")).await;
    assert!(
        !read.contains("6789"),
        "the DDL of a client that left was never followed: {read}"
    );
}

/// Review s36-catalog F2 (a): a read of a view that another session's open transaction
/// is replacing waits on that transaction's lock, and runs over the new definition
/// once it commits: judged while the view is locked, it is masked whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_waiting_on_a_view_being_replaced_is_masked_whole() {
    let One {
        direct: _direct,
        t,
        gw,
        agent,
        _rules,
    } = one_gateway("0s").await;
    let dba = gw.connect_as("dba-1", AGENT_PW, "demo").await.unwrap();
    dba.batch_execute("BEGIN").await.unwrap();
    replace_view(&dba, &t).await;
    // One simple Query, judged once while the view is locked (a driver's Parse and
    // Bind in two round trips would meet the prepared-statement check instead: the
    // catalog changes between them, and the Bind is refused with 0A000).
    let sql = format!("SELECT name FROM {t}_v WHERE id = 1");
    let read = tokio::spawn(async move {
        let rows = agent.simple_query(&sql).await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap_or_default()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!read.is_finished(), "the read waits on the DDL's lock");
    dba.batch_execute("COMMIT").await.unwrap();
    let read = read.await.unwrap();
    assert!(
        !read.contains("6789"),
        "judged over the old view, run over the new one: {read}"
    );
}
