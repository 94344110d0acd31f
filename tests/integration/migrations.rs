//! A migration's open transaction never holds up the gateway: pgmoat's catalog reads
//! take no lock a user's DDL holds (issue: one open `DROP TABLE; CREATE TABLE` froze
//! every session, its own COMMIT included).

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::masking::{fixture, rows};

/// Every statement here must finish well within this: none waits on a lock it did not
/// ask for itself.
const PROMPT: Duration = Duration::from_secs(10);
/// How long the other sessions keep working while the migration stays open.
const HOLD: Duration = Duration::from_secs(5);

async fn prompt(c: &Client, what: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    match tokio::time::timeout(PROMPT, rows(c, sql)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => panic!("{what}: {sql}: {:?}", e.as_db_error()),
        Err(_) => panic!("{what}: {sql} waited over {PROMPT:?}: the gateway is stuck"),
    }
}

/// Sessions with and without masks keep working (reads, masked reads, their own DDL
/// that makes the catalog be read again) for `HOLD`.
async fn others_keep_working(f: &crate::masking::Fixture, agent: &Client, dba: &Client) {
    let until = Instant::now() + HOLD;
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        for (who, c) in [("agent (masked)", agent), ("dba (unmasked)", dba)] {
            assert_eq!(
                prompt(c, who, "SELECT 1").await,
                vec![vec![Some("1".into())]]
            );
            let ssn = prompt(c, who, &f.sql("SELECT ssn FROM {t} WHERE id = 1")).await;
            let ssn = ssn[0][0].clone().unwrap();
            if who.starts_with("agent") {
                assert_ne!(ssn, "123-45-6789", "masked for the agent");
            } else {
                assert_eq!(ssn, "123-45-6789", "clear for the dba");
            }
            // DDL of their own: the next statement reads the catalog again.
            let name = format!("mig_tmp_{round}");
            prompt(
                c,
                who,
                &format!("CREATE TEMP TABLE {name} (y int DEFAULT 7)"),
            )
            .await;
            prompt(c, who, &format!("INSERT INTO {name} DEFAULT VALUES")).await;
            prompt(c, who, &format!("DROP TABLE {name}")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_migration_never_freezes_the_gateway() {
    let f = fixture("").await;
    let m = format!("{}_mig", f.t);
    // Known to the catalog, with a default: what the migration drops and recreates.
    f.direct
        .batch_execute(&f.sql(&format!(
            "CREATE TABLE {m} (x serial PRIMARY KEY, note text DEFAULT 'old');
             CREATE VIEW {m}_v AS SELECT x, note FROM {m};"
        )))
        .await
        .unwrap();
    let agent = f.agent().await;
    let dba = f.dba().await;
    prompt(&agent, "first load", "SELECT 1").await;

    // 1. A migration through pgmoat, left open.
    let mig = f.dba().await;
    prompt(
        &mig,
        "migration",
        &format!(
            "BEGIN; DROP VIEW {m}_v; DROP TABLE IF EXISTS {m};
             CREATE TABLE {m} (x serial PRIMARY KEY, note text DEFAULT 'new')"
        ),
    )
    .await;
    // Its own next statement reads the catalog while it holds the locks.
    prompt(
        &mig,
        "migration",
        &format!("INSERT INTO {m} DEFAULT VALUES"),
    )
    .await;
    others_keep_working(&f, &agent, &dba).await;
    prompt(&mig, "migration", "COMMIT").await;
    let after = prompt(&dba, "dba", &format!("SELECT x, note FROM {m}")).await;
    assert_eq!(after, vec![vec![Some("1".into()), Some("new".into())]]);

    // 2. The same with the lock held by a session that bypasses pgmoat.
    f.direct
        .batch_execute(&format!(
            "CREATE VIEW {m}_v AS SELECT x, note FROM {m}; BEGIN;
             ALTER TABLE {m} ALTER COLUMN note SET DEFAULT 'direct';
             CREATE OR REPLACE VIEW {m}_v AS SELECT x, note, 1 AS one FROM {m};"
        ))
        .await
        .unwrap();
    // Something through the gateway makes the catalog be read again while locked.
    prompt(&dba, "dba", "CREATE TEMP TABLE mig_mark (y int)").await;
    others_keep_working(&f, &agent, &dba).await;
    f.direct.batch_execute("COMMIT").await.unwrap();
    let after = prompt(&dba, "dba", &format!("SELECT one FROM {m}_v")).await;
    assert_eq!(after, vec![vec![Some("1".into())]]);
    f.gw.shutdown().await;
}
