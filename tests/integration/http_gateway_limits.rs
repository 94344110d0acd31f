//! The HTTP gateway's limits and shortcuts, end to end: a target that does not answer
//! in time gets 504; a masked JSON body keeps the target's key order; verified credentials are remembered only as what they are (a
//! wrong password after a right one is still refused, and every request is still
//! judged and audited).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::harness::{
    start_yaml, test_env, wait_for, TempDir, TestGateway, AGENT, AGENT_PW, WAIT_LIMIT,
};
use crate::http_gateway_upstream::{upstream, PLAIN_JSON, USERS_JSON};

const RULES: &str = "
rules:
  - id: admin-off-limits
    when: { http_paths: ['/admin/**'] }
    action: block
masks:
  - id: ssn
    json: ['$.users[*].ssn']
    targets: [billing]
    method: partial
    keep_last: 4
";

struct Fixture {
    gw: TestGateway,
    dir: TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = TempDir::new("pgmoat-http-limits");
        std::fs::write(dir.path().join("rules.yaml"), RULES).unwrap();
        let yaml = format!(
            "listen: 127.0.0.1:0
targets:
  demo: {{ host: 127.0.0.1, port: 1, database: demo, user: app, password_env: APP_PW, tls: disable }}
identities:
  users:
    - {{ name: {AGENT}, password_env: AGENT_PW, groups: [agents] }}
rules: {rules}
audit: {{ dir: {audit} }}
http:
  listen: 127.0.0.1:0
  upstream_timeout: 1s
  targets:
    billing: {{ url: 'http://{up}' }}
",
            rules = dir.path().join("rules.yaml").display(),
            audit = dir.path().join("audit").display(),
            up = upstream().addr,
        );
        let gw = start_yaml(&yaml, test_env()).await;
        Fixture { gw, dir }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.http.expect("http gateway listening")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// The records of `type` in the store so far.
    fn records(&self, kind: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.dir.path().join("audit")) else {
            return out;
        };
        for e in dir {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if v["type"] == kind {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    async fn record_of(&self, id: &str) -> Value {
        wait_for("the http_request record", WAIT_LIMIT, || async move {
            self.records("http_request")
                .into_iter()
                .find(|r| r["session"] == id && r.get("phase").is_none())
                .ok_or_else(|| "not yet".to_string())
        })
        .await
    }
}

fn basic(user: &str, pw: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Basic {b}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn request_id(r: &reqwest::Response) -> String {
    r.headers()["pgmoat-request"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_target_that_does_not_answer_in_time_gets_504_json_and_a_record() {
    let f = Fixture::start().await;
    let r = client()
        .get(f.url("/billing/slow"))
        .header("authorization", basic(AGENT, AGENT_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["content-type"], "application/json");
    let id = request_id(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "pgmoat: the target did not answer in time");
    let rec = f.record_of(&id).await;
    assert_eq!(rec["status"], 504);
    assert_eq!(rec["path"], "/slow");
    assert!(
        rec["error"].as_str().unwrap().contains("no answer within"),
        "{rec}"
    );
    // The gateway is fine for the next request.
    let r = client()
        .get(f.url("/billing/plain"))
        .header("authorization", basic(AGENT, AGENT_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
}

#[tokio::test]
async fn remembered_credentials_are_only_what_they_proved_and_every_request_is_judged_and_audited()
{
    let f = Fixture::start().await;
    let c = client();
    let good = basic(AGENT, AGENT_PW);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = c
            .get(f.url("/billing/plain"))
            .header("authorization", &good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ids.push(request_id(&r));
        assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
    }
    // Right after a success, a wrong password for the same user is still refused.
    let r = c
        .get(f.url("/billing/plain"))
        .header("authorization", basic(AGENT, "not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A remembered credential is still judged per request.
    let r = c
        .get(f.url("/billing/admin/users"))
        .header("authorization", &good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    ids.push(request_id(&r));
    for id in &ids {
        let rec = f.record_of(id).await;
        assert_eq!(rec["user"], AGENT);
    }
    assert_eq!(f.record_of(&ids[3]).await["rule"], "admin-off-limits");
    let failures = wait_for("the auth_failure record", WAIT_LIMIT, || async {
        let v = f.records("auth_failure");
        if v.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(v)
        }
    })
    .await;
    // A record may be read twice (a segment and the journal can both hold it while
    // the writer works): distinct records count.
    let distinct: std::collections::HashSet<String> =
        failures.iter().map(|v| v.to_string()).collect();
    assert_eq!(distinct.len(), 1, "{failures:?}");
}

#[tokio::test]
async fn a_masked_json_body_keeps_the_targets_key_order_and_bytes() {
    let f = Fixture::start().await;
    for path in ["/billing/users", "/billing/users.gz"] {
        let r = client()
            .get(f.url(path))
            .header("authorization", basic(AGENT, AGENT_PW))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("content-encoding").is_none(), "{path}");
        let id = request_id(&r);
        let body = r.text().await.unwrap();
        // Exactly the target's document ("users" before "count", "name" before
        // "ssn"), with only the two numbers masked.
        let expected = USERS_JSON
            .replace("123-45-6789", "***-**-6789")
            .replace("987-65-4321", "***-**-4321");
        assert_eq!(body, expected, "{path}");
        assert_eq!(
            f.record_of(&id).await["masked_fields"],
            serde_json::json!(["ssn"])
        );
    }
}

/// One keep-alive client connection: every request on one upstream connection of its
/// own (its requests and the target's answers stay in its task), `Host` naming the
/// target; a second client connection gets an upstream connection of its own.
#[tokio::test]
async fn each_client_connection_keeps_its_own_upstream_connection() {
    let f = Fixture::start().await;
    let tag = crate::harness::unique("own");
    let (a, b) = (client(), client());
    let get = |c: &reqwest::Client, n: usize| {
        c.get(f.url(&format!("/billing/plain?tag={tag}&n={n}")))
            .header("authorization", basic(AGENT, AGENT_PW))
            .send()
    };
    for n in 0..4 {
        let r = get(&a, n).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
    }
    let r = get(&b, 4).await.unwrap();
    assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
    let r = get(&a, 5).await.unwrap();
    assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
    let seen = upstream().seen_with(&tag);
    assert_eq!(seen.len(), 6, "{seen:?}");
    let peers: Vec<_> = seen.iter().map(|s| s.peer.expect("peer")).collect();
    let up = upstream().addr.to_string();
    for s in &seen {
        assert_eq!(s.headers["host"], up.as_str());
        // Origin-form request targets, as a server expects from a client.
        assert!(s.uri.starts_with("/plain?tag="), "{}", s.uri);
    }
    let (a_peer, b_peer) = (peers[0], peers[4]);
    assert!(
        [0, 1, 2, 3, 5].iter().all(|&i| peers[i] == a_peer),
        "{peers:?}"
    );
    assert_ne!(a_peer, b_peer, "{peers:?}");
}

/// An HTTP/2 client (cleartext, prior knowledge: curl) multiplexes requests that
/// run as tasks of their own; they go through the pooled client and get the same
/// bytes, masked where masks apply.
#[tokio::test]
async fn an_http2_client_gets_the_same_answers_through_the_pooled_client() {
    let f = Fixture::start().await;
    pgmoat::setup::ensure_tool("curl", "curl").expect("curl for the tests");
    let tag = crate::harness::unique("h2");
    let curl = |path: String| {
        let mut c = tokio::process::Command::new("curl");
        c.args(["-sS", "--http2-prior-knowledge", "-u"])
            .arg(format!("{AGENT}:{AGENT_PW}"))
            .args(["-w", "\n%{http_version} %{http_code}\n"])
            .arg(f.url(&path));
        c
    };
    let out = curl(format!("/billing/plain?tag={tag}"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, format!("{PLAIN_JSON}\n2 200\n"), "{:?}", out.stderr);
    let out = curl("/billing/users".into()).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let masked = USERS_JSON
        .replace("123-45-6789", "***-**-6789")
        .replace("987-65-4321", "***-**-4321");
    assert_eq!(
        text,
        format!("{masked}\n2 200\n"),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = upstream().seen_with(&tag);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].headers.get("authorization").is_none());
}
