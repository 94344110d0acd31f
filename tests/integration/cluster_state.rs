//! The shared control plane's state database (SPEC section 11), against a real Postgres:
//! migrations when several nodes start at once, approvals decided exactly once and
//! announced by NOTIFY, lapsed nodes' requests withdrawn, login failures counted across
//! nodes, audit heads that only move forward.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use pgmoat::approval::{Approvals, Request, Resolution, ResolveError};
use pgmoat::cluster::approvals::Standing;
use pgmoat::cluster::{Shared, StateError, Timing};

use crate::common::pg;

/// A fresh state database of its own, so each test sees only its own rows.
async fn state_url(name: &str) -> String {
    let pg = pg::shared();
    pg.create_database(name).await;
    let admin = pg.connect(&pg.superuser, &pg.password, name).await.unwrap();
    admin
        .batch_execute("DROP SCHEMA IF EXISTS pgmoat CASCADE")
        .await
        .unwrap();
    pg.conn_str(&pg.superuser, &pg.password, name)
}

fn fast() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(100),
        lapse: Duration::from_millis(500),
        deadline: Duration::from_secs(2),
    }
}

fn request(id: &str, secs: u64) -> Request {
    let now = SystemTime::now();
    Request {
        id: id.into(),
        // Not the default, so the round trip through the state database shows.
        front_door: pgmoat::approval::FrontDoor::Mcp,
        identity: "agent-1".into(),
        groups: vec!["agents".into()],
        target: "demo".into(),
        sql: "DELETE FROM orders WHERE id = 1".into(),
        params: vec!["42".into()],
        rule: "agent-deletes".into(),
        approvers: vec!["dba".into()],
        requested_at: now,
        expires_at: now + Duration::from_secs(secs),
        fingerprint: "delete-orders".into(),
    }
}

#[tokio::test]
async fn nodes_starting_at_once_migrate_once() {
    let url = state_url("pgmoat_state_migrate").await;
    let opens = (0..4).map(|i| {
        let url = url.clone();
        tokio::spawn(async move { Shared::open(&format!("n{i}"), &url, fast()).await })
    });
    for o in opens {
        o.await.unwrap().expect("every node starts");
    }
    let pg = pg::shared();
    let c = pg
        .connect(&pg.superuser, &pg.password, "pgmoat_state_migrate")
        .await
        .unwrap();
    let versions: Vec<i32> = c
        .query("SELECT version FROM pgmoat.migrations ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let all: Vec<i32> = (1..=pgmoat::cluster::schema::VERSION).collect();
    assert_eq!(versions, all, "each migration applied exactly once");
    let nodes: i64 = c
        .query_one("SELECT count(*) FROM pgmoat.nodes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nodes, 4);
    // A database a newer pgmoat migrated is refused, not written to.
    c.execute("INSERT INTO pgmoat.migrations (version) VALUES (99)", &[])
        .await
        .unwrap();
    let err = Shared::open("n9", &url, fast()).await.err().unwrap();
    assert!(
        matches!(&err, StateError::Schema(m) if m.contains("version 99")),
        "{err}"
    );
}

#[tokio::test]
async fn a_decision_lands_once_and_is_announced() {
    let url = state_url("pgmoat_state_decide").await;
    let a = Shared::open("node-a", &url, fast()).await.unwrap();
    let b = Shared::open("node-b", &url, fast()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    a.spawn_listener(tx);
    assert_eq!(
        rx.recv().await.unwrap(),
        None,
        "the listener says it (re)connected"
    );

    a.publish("", &request("ap-one", 60)).await.unwrap();
    let seen = b.pending(None).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].node, "node-a");
    assert_eq!(seen[0].request.params, vec!["42".to_string()]);
    assert_eq!(seen[0].request.front_door, pgmoat::approval::FrontDoor::Mcp);
    assert!(b.pending(Some("other-tenant")).await.unwrap().is_empty());

    let decided = b
        .decide(
            "ap-one",
            "alice",
            true,
            "ok",
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap()
        .expect("pending, so decided");
    assert!(matches!(
        decided.standing,
        Standing::Decided(Resolution::Approved { ref by, grant_until: Some(_), .. }) if by == "alice"
    ));
    let note = tokio::time::timeout(Duration::from_secs(1), rx.recv())
        .await
        .expect("the decision is announced within 1 s");
    assert_eq!(note.unwrap(), Some("ap-one".to_string()));
    assert!(
        a.decide("ap-one", "bob", false, "no", None)
            .await
            .unwrap()
            .is_none(),
        "a second decision does not land"
    );
    let now = a.fetch("ap-one").await.unwrap().unwrap();
    assert!(matches!(
        now.standing,
        Standing::Decided(Resolution::Approved { .. })
    ));
    let grants = a.grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].1.approval, "ap-one");
    assert_eq!(grants[0].1.fingerprint, "delete-orders");

    // Expired requests cannot be decided; withdrawn ones neither.
    a.publish("", &request("ap-old", 0)).await.unwrap();
    assert!(b
        .decide("ap-old", "alice", true, "", None)
        .await
        .unwrap()
        .is_none());
    a.publish("", &request("ap-gone", 60)).await.unwrap();
    a.finish("ap-gone", &Resolution::Withdrawn).await.unwrap();
    assert!(b
        .decide("ap-gone", "alice", true, "", None)
        .await
        .unwrap()
        .is_none());
    let gone = b.fetch("ap-gone").await.unwrap().unwrap();
    assert_eq!(gone.standing, Standing::Decided(Resolution::Withdrawn));
    assert!(b.fetch("ap-nothing").await.unwrap().is_none());
}

#[tokio::test]
async fn a_silent_node_loses_its_holds() {
    let url = state_url("pgmoat_state_lapse").await;
    let a = Shared::open("node-a", &url, fast()).await.unwrap();
    let b = Shared::open("node-b", &url, fast()).await.unwrap();
    a.publish("", &request("ap-held", 60)).await.unwrap();
    // b keeps beating; a says nothing more.
    b.spawn_heartbeat(|| 0, |_| {});
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let r = b.fetch("ap-held").await.unwrap().unwrap();
        if r.standing == Standing::Decided(Resolution::Withdrawn) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a's request is withdrawn once its heartbeat lapses"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let nodes = b.nodes().await.unwrap();
    let a_row = nodes.iter().find(|n| n.node == "node-a").unwrap();
    assert!(a_row.lapsed);
    assert!(!nodes.iter().find(|n| n.node == "node-b").unwrap().lapsed);
    assert!(b
        .decide("ap-held", "alice", true, "", None)
        .await
        .unwrap()
        .is_none());
    b.publish("", &request("ap-b", 60)).await.unwrap();
    b.record_audit_head("", 5, "abc").await.unwrap();
    let report = pgmoat::cluster::status::report(&b).await.unwrap();
    assert!(report.contains("nodes (2):"), "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.contains("node-a") && l.contains("LAPSED")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.contains("node-b") && l.contains("alive")),
        "{report}"
    );
    assert!(report.contains("node-b: 5:abc"), "{report}");
    assert!(
        report.contains("ap-b on node-b: agent-1 on demo (rule \"agent-deletes\"): DELETE FROM orders WHERE id = 1"),
        "{report}"
    );
    assert!(
        !report.contains("ap-held"),
        "withdrawn requests are not pending: {report}"
    );
}

#[tokio::test]
async fn login_failures_and_audit_heads_are_shared() {
    let url = state_url("pgmoat_state_misc").await;
    let a = Shared::open("node-a", &url, fast()).await.unwrap();
    let b = Shared::open("node-b", &url, fast()).await.unwrap();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let window = Duration::from_secs(60);
    assert_eq!(a.record_login_failure("", ip, window).await.unwrap(), 1);
    assert_eq!(b.record_login_failure("", ip, window).await.unwrap(), 2);
    assert_eq!(a.login_failures("", ip, window).await.unwrap(), 2);
    assert_eq!(
        a.login_failures("acme", ip, window).await.unwrap(),
        0,
        "per tenant"
    );
    b.clear_login_failures("", ip).await.unwrap();
    assert_eq!(a.login_failures("", ip, window).await.unwrap(), 0);
    // A window that has passed starts again from one.
    let short = Duration::from_millis(200);
    a.record_login_failure("", ip, short).await.unwrap();
    a.record_login_failure("", ip, short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.login_failures("", ip, short).await.unwrap(), 0);
    assert_eq!(a.record_login_failure("", ip, short).await.unwrap(), 1);

    a.record_audit_head("", 10, "h10").await.unwrap();
    a.record_audit_head("", 7, "h7").await.unwrap();
    b.record_audit_head("", 3, "h3").await.unwrap();
    let heads = b.audit_heads().await.unwrap();
    assert_eq!(heads.len(), 2);
    assert_eq!(
        (heads[0].node.as_str(), heads[0].seq, heads[0].hash.as_str()),
        ("node-a", 10, "h10"),
        "heads only move forward"
    );
    assert_eq!(heads[1].seq, 3);
}

#[tokio::test]
async fn an_unreachable_state_database_fails_within_the_deadline() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("host=127.0.0.1 port={port} user=x password=y dbname=z");
    let started = std::time::Instant::now();
    let err = Shared::open("n", &url, fast()).await.err().unwrap();
    assert!(matches!(err, StateError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn directory() -> std::collections::HashMap<String, Vec<String>> {
    [
        ("alice".to_string(), vec!["dba".to_string()]),
        ("agent-1".to_string(), vec!["agents".to_string()]),
    ]
    .into_iter()
    .collect()
}

fn hold(a: &std::sync::Arc<Approvals>) -> pgmoat::approval::Ticket {
    a.request(
        "agent-1",
        &["agents".into()],
        "demo",
        "DELETE FROM orders WHERE id = 1",
        vec![],
        "agent-deletes",
        &["dba".into()],
        pgmoat::approval::FrontDoor::Postgres,
        false,
    )
}

#[tokio::test]
async fn a_hold_on_one_node_is_decided_through_another() {
    let url = state_url("pgmoat_state_hold").await;
    let a_db = Shared::open("node-a", &url, fast()).await.unwrap();
    let b_db = Shared::open("node-b", &url, fast()).await.unwrap();
    let a = Approvals::new(Duration::from_secs(60), directory());
    let b = Approvals::new(Duration::from_secs(60), directory());
    a.attach(a_db, "");
    b.attach(b_db, "");
    let mut ticket = hold(&a);
    a.publish(&ticket)
        .await
        .expect("listed in the state database");
    let id = ticket.request.id.clone();
    let listed = b.list().await.unwrap();
    assert_eq!(listed.len(), 1, "node b sees what node a holds");
    assert_eq!(listed[0].id, id);
    assert!(matches!(
        b.decide(&id, "agent-1", true, "", None).await,
        Err(ResolveError::SelfApproval(_))
    ));
    let started = std::time::Instant::now();
    b.decide(&id, "alice", true, "ok", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(1), ticket.wait())
        .await
        .expect("the holder hears the decision within 1 s");
    assert!(matches!(got, Resolution::Approved { ref by, .. } if by == "alice"));
    eprintln!(
        "cross-node approval reached the holder in {:?}",
        started.elapsed()
    );
    // The grant is honoured on the node that decided, and on the holder.
    let fp = pgmoat::classify::shape_key("DELETE FROM orders WHERE id = 2").unwrap();
    assert!(b.granted("agent-1", "demo", &fp).is_some());
    assert!(a.granted("agent-1", "demo", &fp).is_some());
    assert!(matches!(
        b.decide(&id, "alice", false, "", None).await,
        Err(ResolveError::NotFound(_))
    ));

    // Dropping the ticket withdraws the request for every node.
    let ticket = hold(&a);
    a.publish(&ticket).await.unwrap();
    let id = ticket.request.id.clone();
    drop(ticket);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !b.list().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "withdrawn for node b too"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        b.decide(&id, "alice", true, "", None).await,
        Err(ResolveError::NotFound(_))
    ));
}

#[tokio::test]
async fn approvals_fail_closed_while_the_state_database_is_away_and_recover() {
    let name = "pgmoat_state_away";
    let url = state_url(name).await;
    let a_db = Shared::open("node-a", &url, fast()).await.unwrap();
    let a = Approvals::new(Duration::from_secs(60), directory());
    a.attach(a_db, "");
    let pg = pg::shared();
    let admin = pg.admin_client().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    let ticket = hold(&a);
    let err = a.publish(&ticket).await.unwrap_err();
    assert!(matches!(err, ResolveError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().starts_with("approvals unavailable"),
        "{err}"
    );
    drop(ticket);
    assert!(matches!(a.list().await, Err(ResolveError::Unavailable(_))));
    admin
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    let ticket = hold(&a);
    a.publish(&ticket)
        .await
        .expect("the node recovers by itself once the database is back");
    assert_eq!(a.list().await.unwrap().len(), 1);
}
