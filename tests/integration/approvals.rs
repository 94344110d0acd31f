//! Statements held for approval inside live sessions: approved from Slack (signed
//! callbacks to a local fake), denied through the API, refused callbacks, timeouts,
//! withdrawal by disconnect and by cancel, the extended protocol, grants, many held
//! statements at once, and the CLI.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::Client;

use crate::common::pg::TestPg;
use crate::harness::*;

const TOKEN: &str = "admin-token";

/// Receives webhook posts (Slack's and the generic one) and keeps them.
#[derive(Clone, Default)]
struct Hooks {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Hooks {
    async fn start() -> (Hooks, SocketAddr) {
        let hooks = Hooks::default();
        let h = hooks.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(
                move |axum::extract::Path(path): axum::extract::Path<String>, body: String| {
                    let h = h.clone();
                    async move {
                        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                        h.seen.lock().unwrap().push((path, v));
                        h.notify.notify_waiters();
                        "ok"
                    }
                },
            ),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (hooks, addr)
    }

    /// Posts to `path` so far.
    fn posts(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

struct Fx {
    pg: &'static TestPg,
    gw: TestGateway,
    hooks: Hooks,
    hook_addr: SocketAddr,
    table: String,
    direct: Client,
    _rules: TempDir,
    store: TempDir,
}

async fn fixture(timeout: &str) -> Fx {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let table = format!(
        "orders_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, status text);
             INSERT INTO {table} SELECT i, 'open' FROM generate_series(1, 200) i"
        ))
        .await
        .unwrap();
    let (hooks, hook_addr) = Hooks::start().await;
    let rules = TempDir::new("pgmoat-approval-rules");
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: agent-writes-need-approval
    description: Agents' writes to orders wait for a DBA.
    when: {{ groups: [agents], tables_written: [{table}] }}
    action: approve
    approvers: [dba]
"
        ),
    )
    .unwrap();
    let store = TempDir::new("pgmoat-approval-audit");
    let yaml = config_yaml(
        pg,
        &format!(
            "rules: {}
audit:
  dir: {}
  durability: batch
approvals:
  timeout: {timeout}
  slack:
    webhook_url_env: SLACK_URL
    signing_secret_env: SLACK_SECRET
    approvers: {{ U_ALICE: alice, U_BOB: bob }}
  webhook_url_env: HOOK_URL
",
            rules.path().display(),
            store.path().display()
        ),
    )
    .replace(
        "      groups: [agents]\n",
        "      groups: [agents]\n    - { name: alice, password_env: AGENT_PW, groups: [dba] }\n    - { name: bob, password_env: AGENT_PW, groups: [dev] }\n",
    );
    let mut env = test_env();
    env.insert("SLACK_URL".into(), format!("http://{hook_addr}/slack"));
    env.insert("SLACK_SECRET".into(), "slack-signing-secret".into());
    env.insert("HOOK_URL".into(), format!("http://{hook_addr}/generic"));
    let gw = start_yaml(&yaml, env).await;
    Fx {
        pg,
        gw,
        hooks,
        hook_addr,
        table,
        direct,
        _rules: rules,
        store,
    }
}

impl Fx {
    fn admin(&self) -> SocketAddr {
        self.gw.admin.expect("admin listener")
    }

    async fn pending(&self) -> Vec<Value> {
        let (code, body) = http_get_auth(self.admin(), "/api/v1/approvals").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<Vec<Value>>(&body).unwrap()
    }

    /// A new agent session sends `sql` (simple protocol); once it is held: the call,
    /// still waiting, and the request's id.
    async fn hold_query(
        &self,
        sql: String,
    ) -> (
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
        String,
    ) {
        let c = self.gw.connect().await;
        let held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
        (held, self.wait_pending(1).await.remove(0))
    }

    /// Wait until `n` requests are pending; their ids.
    async fn wait_pending(&self, n: usize) -> Vec<String> {
        wait_for(
            &format!("{n} pending requests"),
            WAIT_LIMIT,
            || async move {
                let p = self.pending().await;
                if p.len() >= n {
                    Ok(p.iter()
                        .map(|r| r["id"].as_str().unwrap().to_owned())
                        .collect())
                } else {
                    Err(format!("{} pending", p.len()))
                }
            },
        )
        .await
    }

    async fn decide(&self, id: &str, verb: &str, body: &str) -> (u16, String) {
        http_post(
            self.admin(),
            &format!("/api/v1/approvals/{id}/{verb}"),
            Some(TOKEN),
            body,
        )
        .await
    }

    async fn status(&self, id: i32) -> String {
        self.direct
            .query_one(
                &format!("SELECT status FROM {} WHERE id = $1", self.table),
                &[&id],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn slack(&self, body: &str, signature: Option<String>, ts: i64) -> (u16, String) {
        let sig = signature.unwrap_or_else(|| {
            pgmoat::approval::slack::sign(b"slack-signing-secret", &ts.to_string(), body.as_bytes())
        });
        let req = format!(
            "POST /slack/interactions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slack-Request-Timestamp: {ts}\r\nX-Slack-Signature: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        raw_http(self.admin(), &req).await
    }
}

async fn http_get_auth(addr: SocketAddr, path: &str) -> (u16, String) {
    raw_http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"),
    )
    .await
}

async fn raw_http(addr: SocketAddr, request: &str) -> (u16, String) {
    http(addr, request).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn callback(user: &str, action: &str, id: &str, response_url: &str) -> String {
    let json = serde_json::json!({
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": action, "value": id}],
        "response_url": response_url,
    });
    format!(
        "payload={}",
        pgmoat::approval::slack::percent_encode(&json.to_string())
    )
}

/// An agent connection whose notices are collected.
async fn agent_with_notices(
    gw: &TestGateway,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (client, mut conn) =
        tokio_postgres::connect(&gw.url(AGENT, AGENT_PW, "demo"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notice(n) = m {
                let _ = tx.send(n.message().to_owned());
            }
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_from_slack_the_statement_runs() {
    let f = fixture("1m").await;
    let (c, mut notices) = agent_with_notices(&f.gw).await;
    let sql = format!("UPDATE {} SET status = 'shipped' WHERE id = 1", f.table);
    let held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    let notice = notices.recv().await.unwrap();
    assert!(
        notice.starts_with("pgmoat: waiting for approval ap-"),
        "{notice}"
    );
    assert!(
        notice.ends_with("(rule \"agent-writes-need-approval\")"),
        "{notice}"
    );
    let id = f.wait_pending(1).await.remove(0);
    assert!(notice.contains(&id));
    assert_eq!(f.status(1).await, "open", "nothing ran yet");
    // The Slack message and the generic webhook were sent.
    let hooks = &f.hooks;
    wait_until(
        "the Slack message and the generic webhook",
        WAIT_LIMIT,
        || async move { !hooks.posts("slack").is_empty() && !hooks.posts("generic").is_empty() },
    )
    .await;
    let msg = f.hooks.posts("slack").remove(0);
    let text = msg.to_string();
    assert!(
        text.contains(AGENT)
            && text.contains("agent-writes-need-approval")
            && text.contains("shipped")
    );
    let buttons = &msg["blocks"][3]["elements"];
    assert_eq!(buttons[0]["action_id"], "approve");
    assert_eq!(buttons[1]["action_id"], "deny");
    assert_eq!(buttons[0]["value"], id.as_str());
    assert_eq!(f.hooks.posts("generic")[0]["event"], "requested");
    // Alice presses Approve.
    let hook = format!("http://{}/respond", f.hook_addr);
    let (code, _) = f
        .slack(&callback("U_ALICE", "approve", &id, &hook), None, now())
        .await;
    assert_eq!(code, 200);
    held.await.unwrap().expect("the statement ran");
    assert_eq!(f.status(1).await, "shipped");
    assert!(f.pending().await.is_empty());
    wait_until(
        "the answer to Slack's response_url",
        WAIT_LIMIT,
        || async move { !hooks.posts("respond").is_empty() },
    )
    .await;
    assert!(f.hooks.posts("respond")[0]
        .to_string()
        .contains("approved by alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_through_the_api_with_a_reason() {
    let f = fixture("1m").await;
    let (held, id) = f
        .hold_query(format!("DELETE FROM {} WHERE id = 2", f.table))
        .await;
    let (code, body) = f
        .decide(
            &id,
            "deny",
            r#"{"by":"alice","reason":"not during the freeze"}"#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let e = held.await.unwrap().unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert_eq!(
        db.message(),
        format!("pgmoat: approval {id} denied by alice: not during the freeze")
    );
    assert_eq!(f.status(2).await, "open", "the row is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callbacks_and_wrong_approvers_change_nothing() {
    let f = fixture("1m").await;
    let (held, id) = f
        .hold_query(format!("UPDATE {} SET status = 'x' WHERE id = 3", f.table))
        .await;
    let body = callback("U_ALICE", "approve", &id, "");
    // Bad signature, stale timestamp: 401.
    let (code, _) = f.slack(&body, Some("v0=deadbeef".into()), now()).await;
    assert_eq!(code, 401);
    let (code, _) = f.slack(&body, None, now() - 600).await;
    assert_eq!(code, 401, "stale timestamp");
    // Unknown Slack user, or one outside the approvers: an ephemeral refusal.
    let (code, text) = f
        .slack(&callback("U_EVE", "approve", &id, ""), None, now())
        .await;
    assert_eq!(code, 200);
    assert!(
        text.contains("ephemeral") && text.contains("not one of the configured approvers"),
        "{text}"
    );
    let (code, text) = f
        .slack(&callback("U_BOB", "approve", &id, ""), None, now())
        .await;
    assert_eq!(code, 200);
    assert!(text.contains("not in the approvers"), "{text}");
    // Through the API: the requester cannot approve itself; bob is not a dba.
    let (code, body) = f
        .decide(&id, "approve", &format!(r#"{{"by":"{AGENT}"}}"#))
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot approve"), "{body}");
    let (code, _) = f.decide(&id, "approve", r#"{"by":"bob"}"#).await;
    assert_eq!(code, 403);
    let (code, _) = http_post(
        f.admin(),
        &format!("/api/v1/approvals/{id}/approve"),
        None,
        r#"{"by":"alice"}"#,
    )
    .await;
    assert_eq!(code, 401, "the API needs the token");
    assert_eq!(f.pending().await.len(), 1, "still pending");
    assert_eq!(f.status(3).await, "open");
    // A real approver's decision still works.
    let (code, _) = f
        .slack(&callback("U_ALICE", "deny", &id, ""), None, now())
        .await;
    assert_eq!(code, 200);
    let e = held.await.unwrap().unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert_eq!(
        db.message(),
        format!("pgmoat: approval {id} denied by alice: via Slack"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_requests_time_out() {
    let f = fixture("1s").await;
    let c = f.gw.connect().await;
    let e = c
        .simple_query(&format!("UPDATE {} SET status = 'x' WHERE id = 4", f.table))
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "42501");
    assert!(db.message().contains("timed out"), "{}", db.message());
    assert!(f.pending().await.is_empty());
    // The session is still usable, outside any transaction.
    let rows = c.simple_query("SELECT 1").await.unwrap();
    assert!(rows
        .iter()
        .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_or_cancelling_withdraws_the_request() {
    let f = fixture("1m").await;
    // Disconnect.
    let (client, conn) =
        tokio_postgres::connect(&f.gw.url(AGENT, AGENT_PW, "demo"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let conn_task = tokio::spawn(conn);
    let sql = format!("UPDATE {} SET status = 'x' WHERE id = 5", f.table);
    let q = tokio::spawn(async move { client.simple_query(&sql).await.map(|_| ()) });
    f.wait_pending(1).await;
    q.abort();
    conn_task.abort();
    let f = &f;
    wait_until(
        "a client that left to withdraw its request",
        WAIT_LIMIT,
        || async move { f.pending().await.is_empty() },
    )
    .await;
    // Cancel.
    let c = f.gw.connect().await;
    let token = c.cancel_token();
    let sql = format!("UPDATE {} SET status = 'x' WHERE id = 6", f.table);
    let held = tokio::spawn(async move {
        let r = c.simple_query(&sql).await.map(|_| ());
        (r, c)
    });
    f.wait_pending(1).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, c) = held.await.unwrap();
    assert_eq!(r.unwrap_err().code().unwrap().code(), "57014");
    assert!(f.pending().await.is_empty());
    assert_eq!(f.status(6).await, "open");
    c.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_and_grants() {
    let f = fixture("1m").await;
    let c = Arc::new(f.gw.connect().await);
    let sql = format!("UPDATE {} SET status = $1 WHERE id = $2", f.table);
    let c2 = Arc::clone(&c);
    let held = tokio::spawn(async move { c2.execute(sql.as_str(), &[&"held", &7i32]).await });
    let id = f.wait_pending(1).await.remove(0);
    // Held at Execute: the approver sees the bound parameters (tokio-postgres sends
    // them in binary; their types come from the server's ParameterDescription).
    let pending = f.pending().await;
    assert_eq!(
        pending[0]["params"],
        serde_json::json!(["$1 = 'held'", "$2 = 7"]),
        "{pending:?}"
    );
    assert_eq!(f.status(7).await, "open", "nothing ran while held");
    let slack = f.hooks.posts("slack");
    assert!(
        slack.iter().any(|m| m.to_string().contains("$1 = 'held'")),
        "{slack:?}"
    );
    // Durations out of range are a clear 400 and change nothing (this one made the
    // handler panic on `Instant + duration`).
    for bad in [
        "5000000000000000h",
        "99999999999999999999ms",
        "87601h",
        "-1h",
        "1d",
    ] {
        let (code, body) = f
            .decide(
                &id,
                "approve",
                &format!(r#"{{"by":"alice","reason":"ok","for":"{bad}"}}"#),
            )
            .await;
        assert_eq!(code, 400, "for: {bad}: {body}");
        assert!(body.contains("for:"), "{body}");
    }
    assert_eq!(f.wait_pending(1).await, vec![id.clone()], "still pending");
    let (code, body) = f
        .decide(
            &id,
            "approve",
            r#"{"by":"alice","reason":"ok","for":"30m"}"#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(held.await.unwrap().unwrap(), 1);
    assert_eq!(f.status(7).await, "held");
    // The grant: the same statement with other parameters runs without asking.
    let sql = format!("UPDATE {} SET status = $1 WHERE id = $2", f.table);
    assert_eq!(
        c.execute(sql.as_str(), &[&"granted", &8i32]).await.unwrap(),
        1
    );
    assert_eq!(f.status(8).await, "granted");
    assert!(f.pending().await.is_empty(), "nothing was asked");
    let (code, body) = http_get_auth(f.admin(), "/api/v1/approvals/grants").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("alice") && body.contains("agent-writes-need-approval"),
        "{body}"
    );
    assert!(body.contains(&id), "the grant names its approval: {body}");
    // Audited: the approval with its grant, and the run the grant covered.
    drop(c);
    f.gw.shutdown().await;
    let recs = crate::audit::records(f.store.path());
    let approvals: Vec<&Value> = recs.iter().filter(|r| r["type"] == "approval").collect();
    let states: Vec<&str> = approvals
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["requested", "approved", "approved"],
        "{approvals:?}"
    );
    assert!(
        approvals[1]["grant_until"].is_string(),
        "{:?}",
        approvals[1]
    );
    let run = approvals[2];
    assert_eq!(run["id"], id.as_str());
    assert_eq!(run["by"], "alice");
    assert!(
        run["reason"].as_str().unwrap().contains("under the grant"),
        "{run:?}"
    );
    assert_ne!(
        run["statement"], approvals[0]["statement"],
        "another statement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_asks_at_every_execute_and_a_denial_leaves_the_session_healthy() {
    let f = fixture("1m").await;
    let c = Arc::new(f.gw.connect().await);
    let st = c
        .prepare(&format!("UPDATE {} SET status = $1 WHERE id = $2", f.table))
        .await
        .unwrap();
    assert!(
        f.pending().await.is_empty(),
        "preparing runs nothing and asks nothing"
    );
    // First execution: denied with a reason.
    let (c2, st2) = (Arc::clone(&c), st.clone());
    let held = tokio::spawn(async move { c2.execute(&st2, &[&"denied", &9i32]).await });
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(
        f.pending().await[0]["params"],
        serde_json::json!(["$1 = 'denied'", "$2 = 9"])
    );
    let (code, body) = f
        .decide(&id, "deny", r#"{"by":"alice","reason":"not today"}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    let e = held.await.unwrap().unwrap_err();
    let db = e.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "42501");
    assert!(
        db.message().contains("denied by alice: not today"),
        "{}",
        db.message()
    );
    assert_eq!(f.status(9).await, "open");
    // The session is healthy, and the same prepared statement asks again.
    let r = c.query_one("SELECT 41 + 1", &[]).await.unwrap();
    assert_eq!(r.get::<_, i32>(0), 42);
    let (c2, st2) = (Arc::clone(&c), st.clone());
    let held = tokio::spawn(async move { c2.execute(&st2, &[&"approved", &10i32]).await });
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(
        f.pending().await[0]["params"],
        serde_json::json!(["$1 = 'approved'", "$2 = 10"])
    );
    let (code, _) = f.decide(&id, "approve", r#"{"by":"alice"}"#).await;
    assert_eq!(code, 200);
    assert_eq!(held.await.unwrap().unwrap(), 1);
    assert_eq!(f.status(10).await, "approved");
    // Parse, Bind, Execute and Sync pipelined in one write, the types in the Parse.
    let c2 = Arc::clone(&c);
    let sql = format!(
        "UPDATE {} SET status = $1 WHERE id = $2 RETURNING status",
        f.table
    );
    let held = tokio::spawn(async move {
        use tokio_postgres::types::Type;
        c2.query_typed(&sql, &[(&"typed", Type::TEXT), (&12i32, Type::INT4)])
            .await
    });
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(
        f.pending().await[0]["params"],
        serde_json::json!(["$1 = 'typed'", "$2 = 12"])
    );
    f.decide(&id, "approve", r#"{"by":"alice"}"#).await;
    let rows = held.await.unwrap().unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "typed");
    // The next pipelined statement replaces the unnamed one: it asks nothing.
    let plain = tokio::time::timeout(
        Duration::from_secs(10),
        c.query_typed(
            "SELECT $1::text",
            &[(&"plain", tokio_postgres::types::Type::TEXT)],
        ),
    )
    .await
    .expect("not held")
    .unwrap();
    assert_eq!(plain[0].get::<_, String>(0), "plain");
    // Inside a transaction, a denial aborts it like any error.
    c.batch_execute("BEGIN").await.unwrap();
    let (c2, st2) = (Arc::clone(&c), st.clone());
    let held = tokio::spawn(async move { c2.execute(&st2, &[&"tx", &11i32]).await });
    let id = f.wait_pending(1).await.remove(0);
    f.decide(&id, "deny", r#"{"by":"alice"}"#).await;
    assert_eq!(
        held.await.unwrap().unwrap_err().code().unwrap().code(),
        "42501"
    );
    let e = c.query_one("SELECT 1", &[]).await.unwrap_err();
    assert_eq!(
        e.code().unwrap().code(),
        "25P02",
        "the transaction is aborted"
    );
    c.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(f.status(11).await, "open");
    // The trail: each approval names the prepared statement's record; the approved
    // executions completed (one row each), the denied ones have no completion.
    drop(c);
    f.gw.shutdown().await;
    let recs = crate::audit::records(f.store.path());
    let decided: Vec<&Value> = recs
        .iter()
        .filter(|r| {
            // Batch mode: a statement that finished before the flush is one `whole` record.
            (r["phase"] == "decided" || r["phase"] == "whole")
                && r["sql"].as_str().unwrap_or("").contains("SET status = $1")
        })
        .collect();
    assert!(!decided.is_empty());
    assert!(
        decided.iter().all(|d| d["action"] == "approve"),
        "{decided:?}"
    );
    let approvals: Vec<&Value> = recs.iter().filter(|r| r["type"] == "approval").collect();
    let states: Vec<&str> = approvals
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "requested",
            "denied",
            "requested",
            "approved",
            "requested",
            "approved",
            "requested",
            "denied"
        ],
        "{approvals:?}"
    );
    let statement = |a: &Value| a["statement"].as_u64().unwrap();
    assert_eq!(
        statement(approvals[0]),
        decided[0]["statement"].as_u64().unwrap()
    );
    assert_eq!(approvals[1]["reason"], "not today");
    let completed_rows: Vec<u64> = recs
        .iter()
        .filter(|r| {
            (r["phase"] == "completed" || r["phase"] == "whole")
                && approvals.iter().any(|a| a["statement"] == r["statement"])
        })
        .filter_map(|r| r["rows"].as_u64())
        .collect();
    assert_eq!(completed_rows, [1, 1], "{recs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_prepared_statements_and_portals_are_bounded_not_forgotten() {
    let f = fixture("1m").await;
    let mut c = f.gw.connect().await;
    let sql = format!("UPDATE {} SET status = $1 WHERE id = $2", f.table);
    let st = c.prepare(&sql).await.unwrap();
    // Portals bound to it inside one transaction: 64, then refusal.
    let tx = c.transaction().await.unwrap();
    let mut portals = Vec::new();
    for i in 0..64 {
        portals.push(tx.bind(&st, &[&"p", &(20 + i)]).await.unwrap());
    }
    let Err(e) = tx.bind(&st, &[&"p", &99i32]).await else {
        panic!("the 65th portal was bound");
    };
    assert_eq!(e.code().unwrap().code(), "54000", "{e}");
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("need approval"), "{message}");
    drop(portals);
    tx.rollback().await.unwrap();
    // The transaction is over, so are its portals: binding works again.
    let tx = c.transaction().await.unwrap();
    tx.bind(&st, &[&"p", &1i32]).await.unwrap();
    tx.rollback().await.unwrap();
    // Held statements: 64 in all, then refusal; the session stays usable.
    let mut kept = vec![st];
    for _ in 1..64 {
        kept.push(c.prepare(&sql).await.unwrap());
    }
    let e = c.prepare(&sql).await.unwrap_err();
    assert_eq!(e.code().unwrap().code(), "54000", "{e}");
    assert_eq!(
        c.query_one("SELECT 2 * 21", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
    // Closing one makes room.
    kept.pop();
    c.simple_query("SELECT 1").await.unwrap(); // lets the Close go out
    c.prepare(&sql).await.unwrap();
    assert!(f.pending().await.is_empty(), "nothing ran, nothing asked");
}

/// SQL-level PREPARE runs nothing, so it does not ask; each EXECUTE of it does, in
/// any disguise, through either protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_execute_of_a_held_sql_prepared_statement_asks() {
    let f = fixture("1m").await;
    let c = Arc::new(f.gw.connect().await);
    c.simple_query(&format!(
        "PREPARE pu AS UPDATE {} SET status = $1 WHERE id = $2",
        f.table
    ))
    .await
    .unwrap();
    assert!(f.pending().await.is_empty(), "PREPARE runs nothing");
    for (i, (sql, approve)) in [
        ("EXECUTE pu('sql-1', 40)", true),
        ("EXECUTE pu('sql-2', 41)", false),
        ("EXPLAIN ANALYZE EXECUTE pu('sql-3', 42)", false),
    ]
    .into_iter()
    .enumerate()
    {
        let c2 = Arc::clone(&c);
        let held = tokio::spawn(async move { c2.simple_query(sql).await.map(|_| ()) });
        let id = f.wait_pending(1).await.remove(0);
        let pending = f.pending().await;
        let shown = pending[0]["sql"].as_str().unwrap();
        assert!(
            shown.contains(sql) && shown.contains("PREPARE pu AS UPDATE"),
            "{shown}"
        );
        let id_row = 40 + i as i32;
        assert_eq!(f.status(id_row).await, "open", "{sql}: nothing ran yet");
        let verb = if approve { "approve" } else { "deny" };
        f.decide(&id, verb, r#"{"by":"alice"}"#).await;
        let r = held.await.unwrap();
        if approve {
            r.unwrap();
            assert_eq!(f.status(id_row).await, "sql-1");
        } else {
            assert_eq!(r.unwrap_err().code().unwrap().code(), "42501", "{sql}");
            assert_eq!(f.status(id_row).await, "open");
        }
    }
    // Through the extended protocol: an EXECUTE statement Parsed and Executed.
    let c2 = Arc::clone(&c);
    let held = tokio::spawn(async move { c2.execute("EXECUTE pu('ext', 43)", &[]).await });
    let id = f.wait_pending(1).await.remove(0);
    f.decide(&id, "approve", r#"{"by":"alice"}"#).await;
    assert_eq!(held.await.unwrap().unwrap(), 1);
    assert_eq!(f.status(43).await, "ext");
    // A protocol Bind of the SQL-level name: the same statement, so it asks too.
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let pu = format!(
        "PREPARE pu AS UPDATE {} SET status = $1 WHERE id = $2",
        f.table
    );
    raw.query_ok(&pu).await;
    let mut bind = b"\0pu\0\0\0\0\x02".to_vec();
    for p in [&b"bound"[..], b"44"] {
        bind.extend((p.len() as i32).to_be_bytes());
        bind.extend(p);
    }
    bind.extend([0, 0]);
    let mut m = message(b'B', &bind);
    m.extend(message(b'E', b"\0\0\0\0\0"));
    m.extend(message(b'S', b""));
    raw.send(&m).await;
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(f.status(44).await, "open", "nothing ran yet");
    f.decide(&id, "deny", r#"{"by":"alice"}"#).await;
    let r = raw.until_ready().await;
    let e = r.iter().find(|m| m.tag == b'E').expect("denied");
    assert_eq!(e.field(b'C'), "42501", "{r:?}");
    assert_eq!(f.status(44).await, "open");
    // And the other way: a SQL EXECUTE of a held Parse's name asks as well.
    let upd = format!("UPDATE {} SET status = $1 WHERE id = $2", f.table);
    let mut m = parse_msg("ph", &upd);
    m.extend(message(b'S', b""));
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    let mut q = BytesMut::new();
    postgres_protocol::message::frontend::query("EXECUTE ph('via-sql', 45)", &mut q).unwrap();
    raw.send(&q).await;
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(f.status(45).await, "open", "nothing ran yet");
    f.decide(&id, "deny", r#"{"by":"alice"}"#).await;
    let r = raw.until_ready().await;
    let e = r.iter().find(|m| m.tag == b'E').expect("denied");
    assert_eq!(e.field(b'C'), "42501", "{r:?}");
    assert_eq!(f.status(45).await, "open");
    // Other statements still run at once.
    assert_eq!(
        c.query_one("SELECT 6 * 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        42
    );
}

/// Raw protocol: a held statement's name cannot be taken over by a Parse the server
/// refuses, nor dropped by a Close the server skipped after an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_name_stays_held_until_the_server_lets_go_of_it() {
    let f = fixture("1m").await;
    let mut raw = Raw::login(f.gw.addr, AGENT, AGENT_PW, "demo")
        .await
        .unwrap();
    let parse = parse_msg;
    let sync = message(b'S', b"");
    let delete = format!("UPDATE {} SET status = 'gone' WHERE id = 30", f.table);
    let mut m = parse("s1", &delete);
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "1Z");
    // The name is taken: the server refuses this Parse, s1 is still the UPDATE.
    let mut m = parse("s1", "SELECT 1");
    m.extend(&sync);
    raw.send(&m).await;
    let r = raw.until_ready().await;
    assert_eq!(r[0].field(b'C'), "42P05", "{r:?}");
    // A Close after an error in the same pipeline is skipped by the server.
    let mut m = parse("bad", "SELEC 1");
    m.extend(message(b'C', b"Ss1\0"));
    m.extend(&sync);
    raw.send(&m).await;
    let r = raw.until_ready().await;
    assert_eq!(tags(&r), "EZ", "the Close was skipped: {r:?}");
    // So running s1 still asks.
    raw.send(&bind_execute_sync("s1")).await;
    let id = f.wait_pending(1).await.remove(0);
    assert_eq!(f.status(30).await, "open");
    f.decide(&id, "deny", r#"{"by":"alice"}"#).await;
    let r = raw.until_ready().await;
    let err = r.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(err.field(b'C'), "42501", "{r:?}");
    // A Close the server confirms does let go of it: then s1 can be a new statement.
    let mut m = message(b'C', b"Ss1\0");
    m.extend(parse("s1", "SELECT 1"));
    m.extend(&sync);
    raw.send(&m).await;
    assert_eq!(tags(&raw.until_ready().await), "31Z");
    raw.send(&bind_execute_sync("s1")).await;
    let r = raw.until_ready().await;
    assert!(tags(&r).contains('D'), "ran without asking: {r:?}");
    assert!(f.pending().await.is_empty());
    assert_eq!(f.status(30).await, "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_held_statements_do_not_slow_other_sessions() {
    let f = fixture("1m").await;
    let mut held = Vec::new();
    for i in 0..100 {
        let c = f.gw.connect().await;
        let sql = format!("UPDATE {} SET status = 'x' WHERE id = {}", f.table, 100 + i);
        held.push(tokio::spawn(async move {
            c.simple_query(&sql).await.map(|_| ())
        }));
    }
    let ids = f.wait_pending(100).await;
    assert_eq!(ids.len(), 100);
    // Meanwhile other sessions work normally.
    let other = f.gw.connect().await;
    for i in 0..200 {
        let r = other.query_one("SELECT $1::int + 1", &[&i]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i + 1);
    }
    for id in &ids {
        let (code, _) = f
            .decide(id, "deny", r#"{"by":"alice","reason":"batch"}"#)
            .await;
        assert_eq!(code, 200);
    }
    for h in held {
        assert_eq!(
            h.await.unwrap().unwrap_err().code().unwrap().code(),
            "42501"
        );
    }
    let untouched = f
        .direct
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE status = 'x'", f.table),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(untouched.get::<_, i64>(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_approves() {
    let f = fixture("1m").await;
    let (held, id) = f
        .hold_query(format!(
            "UPDATE {} SET status = 'cli' WHERE id = 9",
            f.table
        ))
        .await;
    let admin = format!("http://{}", f.admin());
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pgmoat"))
            .env("PGMOAT_ADMIN_TOKEN", TOKEN)
            .args(["approvals", "--admin", &admin])
            .args(args)
            .output()
            .unwrap()
    };
    let out = tokio::task::block_in_place(|| cli(&["list"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&id) && text.contains("status = 'cli'"),
        "{text}"
    );
    let out = tokio::task::block_in_place(|| cli(&["approve", &id, "--by", "bob"]));
    assert!(!out.status.success(), "bob is not an approver");
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let out =
        tokio::task::block_in_place(|| cli(&["approve", &id, "--by", "alice", "--reason", "go"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    held.await.unwrap().unwrap();
    assert_eq!(f.status(9).await, "cli");
    let _ = f.pg;
}

/// Review L8: a requester cannot make a held statement look like something else to
/// the approver. A right-to-left override, a terminal escape and a long blank run are
/// shown escaped with a warning, and Slack markup in the SQL (`<!channel>`, links)
/// stays text; the statement itself runs unchanged once approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_cannot_disguise_itself_to_the_approver() {
    let f = fixture("1m").await;
    let (c, _notices) = agent_with_notices(&f.gw).await;
    let sql = format!(
        "UPDATE {} SET status = 'shipped' /* \u{202E}<!channel> <https://x.test|ok> \u{1b}[2K */{}WHERE id = 1",
        f.table,
        " ".repeat(3000)
    );
    let held = tokio::spawn(async move { c.simple_query(&sql).await.map(|_| ()) });
    let id = f.wait_pending(1).await.remove(0);
    let hooks = &f.hooks;
    wait_until("the Slack message", WAIT_LIMIT, || async move {
        !hooks.posts("slack").is_empty()
    })
    .await;
    let text = f.hooks.posts("slack").remove(0).to_string();
    for hidden in ['\u{202E}', '\u{1b}'] {
        assert!(!text.contains(hidden), "{hidden:?} reached Slack: {text}");
    }
    assert!(
        text.contains("\\\\u{202e}") && text.contains("\\\\u{1b}"),
        "{text}"
    );
    assert!(
        !text.contains("<!channel>") && text.contains("&lt;!channel&gt;"),
        "{text}"
    );
    assert!(
        text.contains("[3000 blank characters, 0 line breaks]"),
        "{text}"
    );
    assert!(
        text.contains("WHERE id = 1"),
        "the end of the statement is shown: {text}"
    );
    assert!(text.contains("Look closely"), "{text}");
    let hook = format!("http://{}/respond", f.hook_addr);
    let (code, _) = f
        .slack(&callback("U_ALICE", "approve", &id, &hook), None, now())
        .await;
    assert_eq!(code, 200);
    held.await.unwrap().expect("the statement ran as sent");
    assert_eq!(f.status(1).await, "shipped");
}

/// A grant covers the same statement with other literals, unless a literal's value
/// decides what the statement does: a DO block's body is a string, so a grant for one
/// DO block must not run another (a review emptied a table this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_for_code_in_a_literal_covers_that_text_only() {
    let f = fixture("1m").await;
    let c = Arc::new(f.gw.connect().await);
    let t = f.table.clone();
    let first = format!("DO $$BEGIN UPDATE {t} SET status = 'first' WHERE id = 21; END$$");
    let c2 = Arc::clone(&c);
    let held = tokio::spawn(async move { c2.batch_execute(&first).await });
    let id = f.wait_pending(1).await.remove(0);
    let (code, body) = f
        .decide(
            &id,
            "approve",
            r#"{"by":"alice","reason":"ok","for":"30m"}"#,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    held.await.unwrap().unwrap();
    assert_eq!(f.status(21).await, "first");
    // Another body in the same shape: asked again, nothing runs meanwhile.
    let second = format!("DO $$BEGIN UPDATE {t} SET status = 'second' WHERE id = 22; END$$");
    let c3 = Arc::clone(&c);
    let held = tokio::spawn(async move { c3.batch_execute(&second).await });
    let again = f.wait_pending(1).await.remove(0);
    assert_ne!(again, id, "a new request");
    assert_eq!(f.status(22).await, "open", "not run under the grant");
    let (code, body) = f
        .decide(&again, "deny", r#"{"by":"alice","reason":"no"}"#)
        .await;
    assert_eq!(code, 200, "{body}");
    let e = held.await.unwrap().unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    assert_eq!(f.status(22).await, "open");
}
