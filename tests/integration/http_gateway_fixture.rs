//! What the HTTP gateway's test files share: a gateway in this process in front of
//! the test upstream (`http_gateway_upstream`), its audit store read back, and the
//! clients' credentials.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use crate::harness::{start_yaml, wait_for, TempDir, TestGateway, WAIT_LIMIT};
use crate::http_gateway_upstream::upstream;

pub struct Fixture {
    pub gw: TestGateway,
    pub dir: TempDir,
}

/// The part of a gateway's config every HTTP test shares (a Postgres target nobody
/// dials, the `agent-1` user, the rules and the audit store); `http` is what follows
/// `http:\n  listen: 127.0.0.1:0\n`.
pub fn gateway_yaml(http: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
targets:
  demo: {{ host: 127.0.0.1, port: 1, database: demo, user: app, password_env: APP_PW, tls: disable }}
identities:
  users:
    - {{ name: agent-1, password_env: AGENT_PW, groups: [agents] }}
rules: @RULES@
audit: {{ dir: @AUDIT@ }}
http:
  listen: 127.0.0.1:0
{http}"
    )
}

impl Fixture {
    /// A gateway configured by `yaml`, in which `@RULES@` is the rules file holding
    /// `rules`, `@AUDIT@` the audit store's directory and `@UP@` the upstream's
    /// address.
    pub async fn start(
        prefix: &str,
        rules: &str,
        yaml: &str,
        env: HashMap<String, String>,
    ) -> Fixture {
        let dir = TempDir::new(prefix);
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let yaml = yaml
            .replace(
                "@RULES@",
                &dir.path().join("rules.yaml").display().to_string(),
            )
            .replace("@AUDIT@", &dir.path().join("audit").display().to_string())
            .replace("@UP@", &upstream().addr.to_string());
        let gw = start_yaml(&yaml, env).await;
        Fixture { gw, dir }
    }

    pub fn addr(&self) -> SocketAddr {
        self.gw.http.expect("http gateway listening")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub fn audit(&self) -> std::path::PathBuf {
        self.dir.path().join("audit")
    }

    /// The records of the given types in the store so far.
    pub fn records(&self, kinds: &[&str]) -> Vec<Value> {
        crate::harness::settle_audit(&self.audit());
        let mut out = Vec::new();
        let Ok(dir) = std::fs::read_dir(self.audit()) else {
            return out;
        };
        for e in dir {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap_or_default();
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if kinds.iter().any(|k| v["type"] == *k) {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// The `http_request` and `auth_failure` records so far.
    pub fn http_records(&self) -> Vec<Value> {
        self.records(&["http_request", "auth_failure"])
    }

    /// The record of request `id`'s outcome (not its `decided` record).
    pub async fn record_of(&self, id: &str) -> Value {
        wait_for("the http_request record", WAIT_LIMIT, || async move {
            self.records(&["http_request"])
                .into_iter()
                .find(|r| r["session"] == id && r.get("phase").is_none())
                .ok_or_else(|| "not yet".to_string())
        })
        .await
    }
}

pub fn basic(user: &str, pw: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Basic {b}")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The id of the request's audit record, as the gateway tells the client.
pub fn request_id(r: &reqwest::Response) -> String {
    r.headers()["pgmoat-request"].to_str().unwrap().to_owned()
}
