//! Three `pgmoat serve` processes sharing one state database (SPEC section 11), with
//! a real upstream and a real state Postgres of their own: a statement held on one
//! node is approved through another and runs where it was held; a grant made there is
//! honoured on the third; a node killed with -9 while holding a statement has its
//! request withdrawn when its heartbeat lapses while the others keep serving; with
//! the state database stopped new approvals fail closed and everything else works,
//! and after its restart the nodes recover by themselves; failed logins are counted
//! across nodes.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::audit::{free_port, wait_listening};
use crate::common::pg::{PgOptions, TestPg};
use crate::harness::*;

const PGMOAT: &str = env!("CARGO_BIN_EXE_pgmoat");
const TOKEN: &str = "admin-token";

struct Node {
    name: &'static str,
    port: u16,
    admin: SocketAddr,
    child: Child,
}

impl Node {
    fn start(
        name: &'static str,
        dir: &std::path::Path,
        rules: &std::path::Path,
        state_url: &str,
        hook: SocketAddr,
    ) -> Node {
        let pg = crate::common::pg::shared();
        let port = free_port();
        let admin_port = free_port();
        let yaml = config_yaml(
            pg,
            &format!(
                "    - {{ name: alice, password_env: AGENT_PW, groups: [dba] }}
rules: {rules}
approvals:
  timeout: 60s
  webhook_url_env: HOOK_URL
limits:
  auth_failures: 3
  auth_failure_window: 60s
cluster:
  node: {name}
  state_url_env: STATE_URL
  heartbeat: 200ms
  lapse: 1s
audit:
  dir: {store}
  durability: batch
",
                rules = rules.display(),
                store = dir.join(format!("{name}-audit")).display(),
            ),
        )
        .replacen(
            "listen: 127.0.0.1:0",
            &format!("listen: 127.0.0.1:{port}"),
            1,
        )
        .replacen(
            "  listen: 127.0.0.1:0",
            &format!("  listen: 127.0.0.1:{admin_port}"),
            1,
        );
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = std::process::Command::new(PGMOAT)
            .args(["serve", "-c", cfg.to_str().unwrap()])
            .envs(test_env())
            .env("STATE_URL", state_url)
            .env("HOOK_URL", format!("http://{hook}/hook"))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start pgmoat serve");
        Node {
            name,
            port,
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            child,
        }
    }

    fn url(&self, user: &str, password: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname=demo sslmode=disable",
            self.port
        )
    }

    async fn agent(&self) -> tokio_postgres::Client {
        connect_url(&self.url(AGENT, AGENT_PW))
            .await
            .unwrap_or_else(|e| panic!("agent on {}: {e}", self.name))
    }

    /// A GET of the admin API with the token: the JSON list it answers.
    async fn list(&self, path: &str) -> Vec<Value> {
        let (code, body) = http(
            self.admin,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(code, 200, "{}: {body}", self.name);
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }

    async fn pending(&self) -> Vec<Value> {
        self.list("/api/v1/approvals").await
    }

    async fn grants(&self) -> Vec<Value> {
        self.list("/api/v1/approvals/grants").await
    }

    async fn decide(&self, id: &str, verb: &str, body: &str) -> (u16, String) {
        http_post(
            self.admin,
            &format!("/api/v1/approvals/{id}/{verb}"),
            Some(TOKEN),
            body,
        )
        .await
    }

    /// The one pending request, once it is listed (through this node).
    async fn wait_pending(&self) -> String {
        wait_for(
            &format!("a pending request listed by {}", self.name),
            WAIT_LIMIT,
            || async {
                let p = self.pending().await;
                if p.len() == 1 {
                    Ok(p[0]["id"].as_str().unwrap().to_string())
                } else {
                    Err(format!("{} pending", p.len()))
                }
            },
        )
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Receives the nodes' approval webhook posts.
async fn start_hooks() -> (std::sync::Arc<std::sync::Mutex<Vec<Value>>>, SocketAddr) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let s = std::sync::Arc::clone(&s);
            async move {
                if let Ok(v) = serde_json::from_str::<Value>(&body) {
                    s.lock().unwrap().push(v);
                }
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (seen, addr)
}

/// A statement that must wait for approval, run in the background.
fn held(
    client: tokio_postgres::Client,
    sql: String,
) -> tokio::task::JoinHandle<Result<u64, tokio_postgres::Error>> {
    tokio::spawn(async move { client.execute(sql.as_str(), &[]).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_approvals_grants_failures_and_survive_failures() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let mut state = TestPg::start(PgOptions::default());
    let state_url = state.conn_str(&state.superuser, &state.password, "postgres");
    let table = unique("cluster_orders");
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, status text);
             INSERT INTO {table} SELECT i, 'open' FROM generate_series(1, 10) i"
        ))
        .await
        .unwrap();
    let dir = TempDir::new("pgmoat-cluster");
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("rules.yaml"),
        format!(
            "rules:
  - id: agent-writes-need-approval
    when: {{ groups: [agents], tables_written: [{table}] }}
    action: approve
    approvers: [dba]
"
        ),
    )
    .unwrap();
    let (hooks, hook) = start_hooks().await;
    let mut a = Node::start("gw-a", dir.path(), &rules, &state_url, hook);
    let b = Node::start("gw-b", dir.path(), &rules, &state_url, hook);
    let mut c = Node::start("gw-c", dir.path(), &rules, &state_url, hook);
    for n in [&a, &b, &c] {
        wait_listening(n.port).await;
    }
    let status = |id: i32| {
        let direct = &direct;
        let table = &table;
        async move {
            direct
                .query_one(&format!("SELECT status FROM {table} WHERE id = $1"), &[&id])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };

    // Held on A, approved through B's API (with a grant), run on A.
    let run = held(
        a.agent().await,
        format!("UPDATE {table} SET status = 'approved' WHERE id = 1"),
    );
    let id = b.wait_pending().await;
    assert_eq!(status(1).await, "open", "nothing runs before the decision");
    let started = Instant::now();
    let (code, body) = b
        .decide(&id, "approve", r#"{"by": "alice", "for": "30m"}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    let n = tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .expect("the holder runs the statement within 1 s of the decision")
        .unwrap()
        .expect("approved statement runs");
    assert_eq!(n, 1);
    eprintln!(
        "cross-node approval round trip (decide on B -> done on A): {:?}",
        started.elapsed()
    );
    assert_eq!(status(1).await, "approved");
    let (code, _) = a.decide(&id, "deny", r#"{"by": "alice"}"#).await;
    assert_eq!(code, 404, "a decided request cannot be decided again");

    // The grant is honoured on C: the same shape runs there without asking.
    wait_until("C to know the grant", WAIT_LIMIT, || async {
        c.grants().await.len() == 1
    })
    .await;
    let on_c = c.agent().await;
    tokio::time::timeout(
        Duration::from_secs(5),
        on_c.execute(
            &format!("UPDATE {table} SET status = 'granted' WHERE id = 2"),
            &[],
        ),
    )
    .await
    .expect("a granted statement is not held")
    .unwrap();
    assert_eq!(status(2).await, "granted");

    // (Each statement below has a shape of its own: the grant covers only the one above.)
    // kill -9 A while it holds a statement: its request is withdrawn once its
    // heartbeat lapses; B and C keep serving.
    let _run = held(
        a.agent().await,
        format!("UPDATE {table} SET status = 'orphan' WHERE id = 3 AND status <> 'x'"),
    );
    let orphan = c.wait_pending().await;
    let killed = Instant::now();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    wait_until(
        "A's request to be withdrawn",
        Duration::from_secs(5),
        || async { b.pending().await.is_empty() },
    )
    .await;
    eprintln!(
        "request of a killed node withdrawn after {:?}",
        killed.elapsed()
    );
    let sc = state
        .connect(&state.superuser, &state.password, "postgres")
        .await
        .unwrap();
    let row = sc
        .query_one(
            "SELECT state, reason FROM pgmoat.approvals WHERE id = $1",
            &[&orphan],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "withdrawn");
    assert_eq!(row.get::<_, String>(1), "node gw-a stopped");
    assert_eq!(status(3).await, "open");
    // The node that noticed tells the approval webhook (Slack likewise), since the
    // holder cannot.
    wait_until("the withdrawal announced", WAIT_LIMIT, || async {
        hooks.lock().unwrap().iter().any(|v| {
            v["event"] == "withdrawn"
                && v["request"]["id"] == orphan.as_str()
                && v["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("node holding it stopped")
        })
    })
    .await;
    let (code, _) = c.decide(&orphan, "approve", r#"{"by": "alice"}"#).await;
    assert_eq!(code, 404, "a withdrawn request cannot be approved");
    for n in [&b, &c] {
        let x: i64 = n
            .agent()
            .await
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(x, 10, "{} keeps serving", n.name);
    }

    // The state database away: new approvals fail closed, everything else works.
    drop(sc);
    state.stop();
    let on_b = b.agent().await;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        on_b.execute(
            &format!("UPDATE {table} SET status = 'unseen' WHERE id = 4 AND status <> 'y'"),
            &[],
        ),
    )
    .await
    .expect("refused promptly, not left waiting")
    .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("approvals unavailable"),
        "{err:?}"
    );
    assert_eq!(status(4).await, "open");
    let x: i64 = on_b
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x, 10, "reads work without the state database");
    let (code, _) = b
        .decide("ap-whatever", "approve", r#"{"by": "alice"}"#)
        .await;
    assert_eq!(code, 503, "deciding needs the state database");

    // Back: the nodes recover by themselves. Held on B, denied through C.
    state.restart();
    let run = held(
        b.agent().await,
        format!("UPDATE {table} SET status = 'denied' WHERE id = 5 AND id > 0"),
    );
    let id = wait_for(
        "a hold once the state database is back",
        WAIT_LIMIT,
        || async {
            let p = c.pending().await;
            if p.len() == 1 {
                Ok(p[0]["id"].as_str().unwrap().to_string())
            } else {
                Err(format!("{} pending", p.len()))
            }
        },
    )
    .await;
    let (code, body) = c
        .decide(&id, "deny", r#"{"by": "alice", "reason": "no"}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    let err = tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501");
    assert_eq!(status(5).await, "open");

    // Failed logins count across nodes: two on B and one on C use up the three
    // allowed, so even the right password is then refused on C.
    for n in [&b, &b, &c] {
        assert!(connect_url(&n.url(AGENT, "wrong")).await.is_err());
    }
    let sc = state
        .connect(&state.superuser, &state.password, "postgres")
        .await
        .unwrap();
    wait_until(
        "three failures in the state database",
        WAIT_LIMIT,
        || async {
            sc.query_opt("SELECT failures FROM pgmoat.login_failures", &[])
                .await
                .unwrap()
                .is_some_and(|r| r.get::<_, i32>(0) == 3)
        },
    )
    .await;
    let err = connect_url(&c.url(AGENT, AGENT_PW)).await.unwrap_err();
    assert_eq!(sqlstate(&err), "28000", "{err:?}");
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("too many failed"),
        "{err:?}"
    );

    // Audit heads: C's store checks out against the head C recorded in the state
    // database; cut short, or deleted, it does not.
    wait_until(
        "C's audit head in the state database",
        WAIT_LIMIT,
        || async {
            sc.query_opt(
                "SELECT seq FROM pgmoat.audit_heads WHERE node = 'gw-c'",
                &[],
            )
            .await
            .unwrap()
            .is_some_and(|r| r.get::<_, i64>(0) >= 3)
        },
    )
    .await;
    let store = dir.path().join("gw-c-audit");
    let verify = || {
        crate::audit::cli(&[
            "audit",
            "verify",
            store.to_str().unwrap(),
            "--state-url",
            &state_url,
            "--node",
            "gw-c",
        ])
    };
    // A clean stop (SIGTERM), so the store ends on a whole record.
    crate::audit::sigterm(c.child.id());
    c.child.wait().unwrap();
    let (code, out, err) = verify();
    assert_eq!(code, 0, "{out}{err}");
    let segment = std::fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let first = text.split_inclusive('\n').next().unwrap().to_string();
    std::fs::write(&segment, first).unwrap();
    let (code, out, _) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cut off the end"), "{out}");
    std::fs::remove_dir_all(&store).unwrap();
    let (code, out, _) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the store was deleted"), "{out}");
}
