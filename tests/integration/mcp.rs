//! The MCP endpoint (SPEC section 7), driven by the official MCP Python SDK
//! (tests/python/mcp_check.py) against a real Postgres through pgmoat; then what only
//! the server and the audit store can show: blocked statements never arrived, an
//! approved retry ran once, and the store verifies with the MCP sessions in it. Also
//! the wire's own return mode, with psql.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::common::jwt::{claims, TestKey};
use crate::common::pg::TestPg;
use crate::harness::*;

const ISSUER: &str = "https://idp.mcp.test";
const MCP_TOKEN: &str = "mcp-agent-token-7f3a";

struct McpGateway {
    addr: SocketAddr,
    admin: SocketAddr,
    mcp: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl McpGateway {
    /// Start a gateway from YAML (harness::start_yaml, plus the MCP address).
    async fn start(yaml: &str, env: HashMap<String, String>) -> McpGateway {
        let lookup = move |name: &str| env.get(name).cloned();
        let config = pgmoat::Config::from_yaml(yaml, "test.yaml", Path::new("/"), &lookup)
            .expect("valid test config");
        let gateway = pgmoat::Gateway::bind(config).await.expect("bind gateway");
        let (addr, admin) = (gateway.local_addr(), gateway.admin_addr().expect("admin"));
        let mcp = gateway.mcp_addr().expect("mcp listener");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(async move {
            let _ = rx.await;
        }));
        McpGateway {
            addr,
            admin,
            mcp,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("gateway shut down in time")
                .expect("gateway task");
        }
    }
}

impl Drop for McpGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A people table with a masked column and an orders table whose agent writes wait
/// for a DBA; rules, masks, audit, approvals, OIDC and an agent with an MCP token.
async fn fixture(
    pg: &'static TestPg,
    rules: &TempDir,
    store: &TempDir,
    idp: &TempDir,
    key: &TestKey,
) -> (McpGateway, String, String) {
    prepare(pg).await;
    let (people, orders) = (unique("mcp_people"), unique("mcp_orders"));
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE {people} (id int PRIMARY KEY, name text NOT NULL, ssn text, score numeric(6,2));
             INSERT INTO {people} VALUES (1, 'Ann', '123-45-6789', 12.5), (2, 'Bo', '987-65-4321', 3);
             CREATE TABLE {orders} (id int PRIMARY KEY, status text);
             INSERT INTO {orders} SELECT i, 'open' FROM generate_series(1, 6) i"
        ))
        .await
        .unwrap();
    std::fs::write(
        rules.path().join("rules.yaml"),
        format!(
            "rules:
  - id: no-file-reads
    description: Server files are not read through the gateway.
    when: {{ functions: [pg_read_file, pg_read_binary_file] }}
    action: block
  - id: agent-writes-need-approval
    description: Agents' writes to orders wait for a DBA.
    when: {{ groups: [agents], tables_written: [{orders}] }}
    action: approve
    approvers: [dba]
masks:
  - id: pii
    columns: [{people}.ssn]
    method: partial
    keep_last: 4
"
        ),
    )
    .unwrap();
    std::fs::write(
        idp.path().join("jwks.json"),
        crate::common::jwt::jwks(&[key]),
    )
    .unwrap();
    let yaml = config_yaml(
        pg,
        &format!(
            "  oidc:
    issuer: {ISSUER}
    audience: {aud}
    jwks_file: {jwks}
    username_claim: email
    groups_claim: groups
rules: {rules}
audit:
  dir: {store}
  durability: batch
approvals:
  timeout: 2m
mcp:
  listen: 127.0.0.1:0
  max_rows: 50
",
            aud = crate::common::jwt::AUDIENCE,
            jwks = idp.path().join("jwks.json").display(),
            rules = rules.path().display(),
            store = store.path().display(),
        ),
    )
    .replace(
        "      groups: [agents]\n",
        "      groups: [agents]\n      token_env: AGENT1_TOKEN\n    - { name: alice, password_env: AGENT_PW, groups: [dba] }\n",
    );
    let mut env = test_env();
    env.insert("AGENT1_TOKEN".into(), MCP_TOKEN.into());
    (McpGateway::start(&yaml, env).await, people, orders)
}

fn records(store: &Path) -> Vec<Value> {
    settle_audit(store);
    let mut files: Vec<_> = std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sdk_client_gets_the_wires_rules_masks_approvals_and_audit() {
    let pg = crate::common::pg::shared();
    let (rules, store, idp) = (
        TempDir::new("pgmoat-mcp-rules"),
        TempDir::new("pgmoat-mcp-audit"),
        TempDir::new("pgmoat-mcp-idp"),
    );
    let key = TestKey::rsa("mcp-rsa");
    let (gw, people, orders) = fixture(pg, &rules, &store, &idp, &key).await;
    let marks: Vec<String> = ["blocked", "first", "retry", "again"]
        .iter()
        .map(|m| unique(&format!("mcpmark_{m}")))
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_check.py");
    let env: Vec<(String, String)> = vec![
        ("MCP_URL".into(), format!("http://{}/mcp", gw.mcp)),
        ("MCP_TOKEN".into(), MCP_TOKEN.into()),
        (
            "MCP_OIDC_TOKEN".into(),
            key.sign(&claims(ISSUER, "ann@example.com", &["agents"], 300)),
        ),
        (
            "MCP_OIDC_EXPIRED".into(),
            key.sign(&claims(ISSUER, "ann@example.com", &["agents"], -3600)),
        ),
        ("ADMIN_URL".into(), format!("http://{}", gw.admin)),
        ("ADMIN_TOKEN".into(), "admin-token".into()),
        ("PEOPLE".into(), people.clone()),
        ("ORDERS".into(), orders.clone()),
        ("MARK_BLOCKED".into(), marks[0].clone()),
        ("MARK_FIRST".into(), marks[1].clone()),
        ("MARK_RETRY".into(), marks[2].clone()),
        ("MARK_AGAIN".into(), marks[3].clone()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        pgmoat::setup::ensure_python_module("mcp", "mcp>=2.3").unwrap_or_else(|e| panic!("{e}"));
        Command::new("python3")
            .arg(script)
            .envs(env)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "MCP SDK check failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");

    // The server saw the approved retry run once, and nothing blocked or unapproved.
    let log = pg.log_contents();
    assert!(
        !log.contains(&marks[0]),
        "a blocked statement reached the server"
    );
    assert_eq!(
        log.matches(&marks[2]).count(),
        1,
        "the approved retry ran once"
    );
    for m in [&marks[1], &marks[3]] {
        assert!(
            !log.lines()
                .any(|l| l.contains(m.as_str()) && l.contains("execute")),
            "{m} was executed though never approved"
        );
    }
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let statuses: Vec<(i32, String)> = direct
        .query(&format!("SELECT id, status FROM {orders} ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        statuses[..4],
        [
            (1, "shipped".to_string()),
            (2, "packed".to_string()),
            (3, "open".to_string()),
            (4, "waited".to_string())
        ]
    );

    // The wire's own return mode, from psql.
    let conn = format!(
        "host=127.0.0.1 port={} user={AGENT} dbname=demo sslmode=disable options='-c pgmoat.approval_mode=return'",
        gw.addr.port()
    );
    let update = format!("UPDATE {orders} SET status = 'psql' WHERE id = 5");
    let first = pg.psql_c(&conn, Some(AGENT_PW), &update);
    let err = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(!first.status.success(), "held, not run: {err}");
    let id = err
        .split("waiting for approval ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no request id in: {err}"))
        .to_owned();
    assert!(id.starts_with("ap-"), "{err}");
    let (code, body) = http_post(
        gw.admin,
        &format!("/api/v1/approvals/{id}/approve"),
        Some("admin-token"),
        r#"{"by":"alice"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let reformatted = format!("update {orders}   set status='psql'  where id=5; -- again");
    let ran = pg.psql_c(&conn, Some(AGENT_PW), &reformatted);
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let again = pg.psql_c(&conn, Some(AGENT_PW), &update);
    let err = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(
        err.contains("waiting for approval ap-") && !err.contains(&id),
        "{err}"
    );

    gw.shutdown().await;

    // The store verifies, with the MCP sessions in it.
    let report = pgmoat::audit::verify::verify(store.path(), None, None)
        .expect("store readable")
        .expect("chain intact");
    assert!(report.records > 10);
    let recs = records(store.path());
    let mcp_starts: Vec<&Value> = recs
        .iter()
        .filter(|r| r["type"] == "session_start" && r["protocol"] == "mcp")
        .collect();
    assert!(
        mcp_starts.iter().any(|r| r["user"] == AGENT),
        "{mcp_starts:?}"
    );
    assert!(mcp_starts.iter().any(|r| r["user"] == "ann@example.com"));
    let mcp_sessions: Vec<&Value> = mcp_starts.iter().map(|r| &r["session"]).collect();
    let blocked = recs.iter().find(|r| {
        r["type"] == "statement"
            && mcp_sessions.contains(&&r["session"])
            && r["sql"].as_str().is_some_and(|s| s.contains(&marks[0]))
    });
    let blocked = blocked.expect("the blocked MCP statement is in the trail");
    assert_eq!(blocked["action"], "block", "{blocked}");
    assert!(recs
        .iter()
        .any(|r| r["type"] == "approval" && mcp_sessions.contains(&&r["session"])));
}

/// POST one JSON-RPC message to `/mcp` (Streamable HTTP): status, session id header
/// and body.
async fn mcp_post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, String) {
    mcp_post_as(http, url, MCP_TOKEN, session, body).await
}

/// [`mcp_post`] with another bearer token.
async fn mcp_post_as(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Option<String>, String) {
    let mut req = http
        .post(url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .json(&body);
    if let Some(s) = session {
        req = req.header("Mcp-Session-Id", s);
    }
    let r = req.send().await.expect("mcp post");
    let status = r.status().as_u16();
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, sid, r.text().await.unwrap_or_default())
}

/// Open an MCP session over raw HTTP and run one query in it; its session id.
async fn open_and_query(http: &reqwest::Client, url: &str) -> String {
    let (status, sid, body) = mcp_post(
        http,
        url,
        None,
        serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let sid = sid.expect("a session id");
    mcp_post(
        http,
        url,
        Some(&sid),
        serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
    )
    .await;
    let (status, _, body) = mcp_post(http, url, Some(&sid), query_call()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("row_count"), "{body}");
    sid
}

fn query_call() -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"query","arguments":{"target":"demo","sql":"SELECT 1"}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_are_listed_terminated_and_expire_when_idle() {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let store = TempDir::new("pgmoat-mcp-idle-audit");
    let yaml = config_yaml(
        pg,
        &format!(
            "audit:\n  dir: {}\n  durability: batch\nmcp:\n  listen: 127.0.0.1:0\n  idle_timeout: 2s\n",
            store.path().display()
        ),
    )
    .replace(
        "      groups: [agents]\n",
        "      groups: [agents]\n      token_env: AGENT1_TOKEN\n",
    );
    let mut env = test_env();
    env.insert("AGENT1_TOKEN".into(), MCP_TOKEN.into());
    let gw = McpGateway::start(&yaml, env).await;
    let (web, url) = (reqwest::Client::new(), format!("http://{}/mcp", gw.mcp));

    // Listed among the live sessions as an MCP session; an operator can end it, and
    // the MCP session does not quietly open another.
    let first = open_and_query(&web, &url).await;
    let (code, body) = http(
        gw.admin,
        "GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer admin-token\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let list: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["protocol"], "mcp");
    assert_eq!(list[0]["identity"], AGENT);
    let path = format!(
        "/api/v1/sessions/{}/terminate",
        list[0]["id"].as_str().unwrap()
    );
    let (code, body) = http_post(gw.admin, &path, Some("admin-token"), "").await;
    assert_eq!(code, 200, "{body}");
    let ended = wait_for("the terminated MCP session to say so", WAIT_LIMIT, || {
        let (web, url, first) = (&web, &url, &first);
        async move {
            let (_, _, body) = mcp_post(web, url, Some(first), query_call()).await;
            if body.contains("an operator ended") {
                Ok(body)
            } else {
                Err(body)
            }
        }
    })
    .await;
    assert!(ended.contains("\"isError\":true"), "{ended}");

    // Idle past idle_timeout: the MCP session ends, its database session with it.
    let second = open_and_query(&web, &url).await;
    let dir = store.path().to_path_buf();
    wait_for("every MCP session's session_end", WAIT_LIMIT, || {
        let dir = dir.clone();
        async move {
            let recs = records(&dir);
            let started: Vec<&Value> = recs
                .iter()
                .filter(|r| r["type"] == "session_start" && r["protocol"] == "mcp")
                .map(|r| &r["session"])
                .collect();
            let ended = recs
                .iter()
                .filter(|r| r["type"] == "session_end" && started.contains(&&r["session"]))
                .count();
            if started.len() == 2 && ended == 2 {
                Ok(())
            } else {
                Err(format!(
                    "{} mcp sessions started, {ended} ended",
                    started.len()
                ))
            }
        }
    })
    .await;
    let (status, _, body) = mcp_post(&web, &url, Some(&second), query_call()).await;
    assert_eq!(status, 404, "an expired session is unknown: {body}");
    gw.shutdown().await;
}

const OTHER_TOKEN: &str = "mcp-other-agent-token-91c2";

/// A gateway whose MCP door knows two agents, each with a bearer token.
async fn two_agent_gateway(pg: &'static TestPg, extra_mcp: &str) -> McpGateway {
    prepare(pg).await;
    let yaml = config_yaml(
        pg,
        &format!("mcp:\n  listen: 127.0.0.1:0\n{extra_mcp}"),
    )
    .replace(
        "      groups: [agents]\n",
        "      groups: [agents]\n      token_env: AGENT1_TOKEN\n    - { name: agent-2, token_env: AGENT2_TOKEN, groups: [agents] }\n",
    );
    let mut env = test_env();
    env.insert("AGENT1_TOKEN".into(), MCP_TOKEN.into());
    env.insert("AGENT2_TOKEN".into(), OTHER_TOKEN.into());
    McpGateway::start(&yaml, env).await
}

/// Review finding M7: another identity's valid token cannot resume (replay), call
/// into or close an MCP session; it gets what an unknown session gets (404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_session_ids_belong_to_the_identity_that_opened_them() {
    let pg = crate::common::pg::shared();
    let gw = two_agent_gateway(pg, "").await;
    let (web, url) = (reqwest::Client::new(), format!("http://{}/mcp", gw.mcp));
    let victim = open_and_query(&web, &url).await;

    // What an unknown session gets, for comparison.
    let (unknown_status, _, unknown_body) = mcp_post_as(
        &web,
        &url,
        MCP_TOKEN,
        Some("00000000-0000-0000-0000-000000000000"),
        query_call(),
    )
    .await;
    assert_eq!(unknown_status, 404, "{unknown_body}");

    // POST (a tool call) into the victim's session.
    let (status, _, body) = mcp_post_as(&web, &url, OTHER_TOKEN, Some(&victim), query_call()).await;
    assert_eq!((status, &body), (404, &unknown_body), "a foreign POST");

    // GET with Last-Event-ID: the replay of the victim's cached query result.
    let r = web
        .get(&url)
        .bearer_auth(OTHER_TOKEN)
        .header("Accept", "text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Mcp-Session-Id", &victim)
        .header("Last-Event-ID", "0/0")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!((status, &body), (404, &unknown_body), "a foreign GET");
    assert!(!body.contains("row_count"), "{body}");

    // DELETE: refused, and the victim's session lives on.
    let r = web
        .delete(&url)
        .bearer_auth(OTHER_TOKEN)
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Mcp-Session-Id", &victim)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!((status, &body), (404, &unknown_body), "a foreign DELETE");
    let (status, _, body) = mcp_post(&web, &url, Some(&victim), query_call()).await;
    assert_eq!(status, 200, "the owner's session survived: {body}");
    assert!(body.contains("row_count"), "{body}");

    // The owner can still close it; afterwards it is unknown to the owner too.
    let r = web
        .delete(&url)
        .bearer_auth(MCP_TOKEN)
        .header("MCP-Protocol-Version", "2025-06-18")
        .header("Mcp-Session-Id", &victim)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let (status, _, _) = mcp_post(&web, &url, Some(&victim), query_call()).await;
    assert_eq!(status, 404);
    gw.shutdown().await;
}

/// The JSON-RPC message in a `/mcp` answer (plain JSON or one SSE `data:` event).
fn rpc_message(body: &str) -> Value {
    let json = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(body);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn query_of(sql: &str) -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":3,"method":"tools/call",
        "params":{"name":"query","arguments":{"target":"demo","sql":sql}}})
}

/// Review finding M2: a result past `mcp.max_result_bytes` is answered with the rows
/// that fit and `"truncated": true`; a single value past it is cut and said so; the
/// session goes on working; a budget out of range is a config error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_query_results_are_cut_at_the_byte_budget() {
    let pg = crate::common::pg::shared();
    let gw = two_agent_gateway(pg, "  max_result_bytes: 64KiB\n").await;
    let (web, url) = (reqwest::Client::new(), format!("http://{}/mcp", gw.mcp));
    let sid = open_and_query(&web, &url).await;

    // 100 rows of 10,000 bytes (~1 MB) against a 64 KiB budget: the rows that fit.
    let sql = "SELECT i, repeat('x', 10000) AS pad FROM generate_series(1, 100) i";
    let (status, _, body) = mcp_post(&web, &url, Some(&sid), query_of(sql)).await;
    assert_eq!(status, 200, "{body}");
    let result = &rpc_message(&body)["result"]["structuredContent"];
    assert_eq!(result["truncated"], true, "{result}");
    let rows = result["rows"].as_array().expect("rows");
    assert!((1..=6).contains(&rows.len()), "{} rows", rows.len());
    assert_eq!(result["row_count"], rows.len());
    assert_eq!(
        rows[0][1].as_str().unwrap().len(),
        10_000,
        "whole values are whole"
    );
    assert!(result.get("cut_values").is_none(), "{result}");
    let sent: usize = rows.iter().map(|r| r.to_string().len()).sum();
    assert!(sent <= 64 << 10, "{sent} bytes of rows");

    // One value of 1 MB: cut to the budget, and the result says which.
    let sql = "SELECT repeat('y', 1000000) AS big FROM generate_series(1, 3)";
    let (status, _, body) = mcp_post(&web, &url, Some(&sid), query_of(sql)).await;
    assert_eq!(status, 200, "{body}");
    let result = &rpc_message(&body)["result"]["structuredContent"];
    assert_eq!(result["truncated"], true);
    let rows = result["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "only the cut first row");
    let cut = rows[0][0].as_str().unwrap();
    assert!(cut.len() < 64 << 10 && cut.len() > 60_000, "{}", cut.len());
    assert!(cut.bytes().all(|b| b == b'y'));
    assert_eq!(
        result["cut_values"],
        serde_json::json!([{"row": 0, "column": "big", "bytes": 1_000_000}])
    );
    assert_eq!(result["max_result_bytes"], 64 << 10);

    // Under the budget nothing changes, and the session is still usable.
    let (_, _, body) = mcp_post(&web, &url, Some(&sid), query_of("SELECT 'ok' AS v")).await;
    let result = &rpc_message(&body)["result"]["structuredContent"];
    assert_eq!(result["truncated"], false, "{result}");
    assert_eq!(result["rows"], serde_json::json!([["ok"]]));
    gw.shutdown().await;

    for bad in ["100", "2GiB", "lots"] {
        let yaml = config_yaml(
            pg,
            &format!("mcp:\n  listen: 127.0.0.1:0\n  max_result_bytes: {bad}\n"),
        );
        let lookup = |name: &str| test_env().get(name).cloned();
        let err = pgmoat::Config::from_yaml(&yaml, "test.yaml", Path::new("/"), &lookup)
            .expect_err(bad)
            .to_string();
        assert!(err.contains("mcp.max_result_bytes"), "{bad}: {err}");
    }
}

fn initialize_call() -> Value {
    serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}})
}

/// Review finding M6: every local agent reaches the MCP door from loopback, so one
/// client guessing bearer tokens must not lock out the agents whose tokens are
/// right. Its own guesses past the limit are refused as rate-limited, and passwords
/// from that address stay locked out (passwords can be guessed; tokens cannot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bearer_tokens_lock_out_guessing_not_the_agents_with_right_tokens() {
    let pg = crate::common::pg::shared();
    let gw = two_agent_gateway(pg, "").await;
    let (web, url) = (reqwest::Client::new(), format!("http://{}/mcp", gw.mcp));
    let limit = 10; // limits.auth_failures' default
    for i in 0..limit + 3 {
        let guess = format!("guessed-token-{i:04}-0123456789");
        let (status, _, body) = mcp_post_as(&web, &url, &guess, None, initialize_call()).await;
        assert_eq!(status, 401, "guess {i}: {body}");
    }
    // The lockout the guesses earned holds for passwords from this address, even
    // the right one ...
    let wire = format!(
        "postgres://{AGENT}:{AGENT_PW}@127.0.0.1:{}/demo",
        gw.addr.port()
    );
    let err = connect_url(&wire).await.expect_err("locked out");
    let message = err.as_db_error().map(|d| d.message()).unwrap_or_default();
    assert!(message.contains("too many failed"), "{err:?}");
    // ... and for more guessed tokens; but both agents' right tokens still open
    // sessions and run queries.
    let (status, _, _) = mcp_post_as(
        &web,
        &url,
        "one-more-guess-0123456789",
        None,
        initialize_call(),
    )
    .await;
    assert_eq!(status, 401);
    open_and_query(&web, &url).await;
    let (status, sid, body) = mcp_post_as(&web, &url, OTHER_TOKEN, None, initialize_call()).await;
    assert_eq!(status, 200, "{body}");
    assert!(sid.is_some());
    gw.shutdown().await;
}
