//! The MCP endpoint's cost over the wire (issue 21): a 1-row `query` through MCP
//! against the same statement from tokio-postgres through pgmoat's wire, in the same
//! run against the same throwaway Postgres and in-process gateway. Prints p50/p99
//! latency of each (one client, sequential calls) and calls per second with 8
//! concurrent clients (each its own MCP session or connection).
//!
//!     cargo bench --bench mcp            # CALLS=3000 SECONDS=5 to change the run
//!
//! The MCP client is plain HTTP (reqwest) speaking the Streamable HTTP transport, so
//! the figures are the gateway's and not a Python SDK's.

#[path = "../tests/common/certs.rs"]
mod certs;
#[path = "../tests/common/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-mcp-token-0001";
const SQL: &str = "SELECT 1 AS one";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Mcp {
    http: reqwest::Client,
    url: String,
    session: String,
}

impl Mcp {
    async fn open(url: &str) -> Mcp {
        let http = reqwest::Client::new();
        let init = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}});
        let r = http
            .post(url)
            .bearer_auth(TOKEN)
            .header("Accept", "application/json, text/event-stream")
            .json(&init)
            .send()
            .await
            .expect("initialize");
        assert!(r.status().is_success(), "initialize: {}", r.status());
        let session = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
        let _ = r.text().await;
        let mcp = Mcp {
            http,
            url: url.to_owned(),
            session,
        };
        mcp.post(&serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        mcp
    }

    async fn post(&self, body: &serde_json::Value) -> String {
        self.http
            .post(&self.url)
            .bearer_auth(TOKEN)
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", &self.session)
            .header("MCP-Protocol-Version", "2025-06-18")
            .json(body)
            .send()
            .await
            .expect("post")
            .text()
            .await
            .expect("body")
    }

    async fn query(&self, id: u64) {
        let body = serde_json::json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
            "params":{"name":"query","arguments":{"target":"demo","sql":SQL}}});
        let text = self.post(&body).await;
        assert!(
            text.contains("\\\"row_count\\\":1") || text.contains("\"row_count\":1"),
            "{text}"
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut lat: Vec<Duration>) -> (Duration, Duration) {
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "{name:<6} 1 client, {} calls: p50 {:>7.1} µs  p99 {:>7.1} µs",
        lat.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    (p50, p99)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls = env_num("CALLS", 3000);
    let seconds = env_num("SECONDS", 5);
    let server = pg::TestPg::start(pg::PgOptions::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let rules = std::env::temp_dir().join(format!("pgmoat-bench-mcp-{}", std::process::id()));
        std::fs::create_dir_all(&rules).unwrap();
        std::fs::write(rules.join("baseline.yaml"), include_str!("../rules/baseline.yaml")).unwrap();
        let yaml = format!(
            "listen: 127.0.0.1:0
rules: {}
targets:
  demo: {{ host: 127.0.0.1, port: {}, database: postgres, user: {}, password_env: PG_PW, tls: disable }}
identities:
  users:
    - {{ name: agent-1, password_env: AGENT_PW, token_env: AGENT_TOKEN, groups: [agents] }}
mcp:
  listen: 127.0.0.1:0
  max_sessions: 64
",
            rules.display(),
            server.port,
            server.superuser
        );
        let env: HashMap<&str, String> = [
            ("PG_PW", server.password.clone()),
            ("AGENT_PW", "agent-pw".to_string()),
            ("AGENT_TOKEN", TOKEN.to_string()),
        ]
        .into_iter()
        .collect();
        let lookup = move |n: &str| env.get(n).cloned();
        let config = pgmoat::Config::from_yaml(&yaml, "bench.yaml", Path::new("/"), &lookup)
            .expect("config");
        let gw = pgmoat::Gateway::bind(config).await.expect("bind");
        let (wire, mcp) = (gw.local_addr(), gw.mcp_addr().unwrap());
        tokio::spawn(gw.run(std::future::pending()));
        let url = format!("http://{mcp}/mcp");
        let dsn = format!(
            "host=127.0.0.1 port={} user=agent-1 password=agent-pw dbname=demo sslmode=disable",
            wire.port()
        );
        let connect = || async {
            let (c, conn) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
                .await
                .expect("wire connect");
            tokio::spawn(conn);
            c
        };

        // Warm both paths, then one client each, interleaved in blocks.
        let wire_client = connect().await;
        let mcp_client = Mcp::open(&url).await;
        for i in 0..200 {
            wire_client.query(SQL, &[]).await.unwrap();
            mcp_client.query(i).await;
        }
        let (mut wire_lat, mut mcp_lat) = (Vec::new(), Vec::new());
        for block in 0..calls / 100 {
            for i in 0..100 {
                let t = Instant::now();
                wire_client.query(SQL, &[]).await.unwrap();
                wire_lat.push(t.elapsed());
                let t = Instant::now();
                mcp_client.query(block * 100 + i).await;
                mcp_lat.push(t.elapsed());
            }
        }
        let (w50, w99) = report("wire", wire_lat);
        let (m50, m99) = report("mcp", mcp_lat);
        println!(
            "added by MCP: p50 {:.1} µs, p99 {:.1} µs",
            (m50.as_secs_f64() - w50.as_secs_f64()) * 1e6,
            (m99.as_secs_f64() - w99.as_secs_f64()) * 1e6
        );

        // Throughput: 8 concurrent clients for `seconds` each way.
        let window = Duration::from_secs(seconds);
        let done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let c = connect().await;
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(async move {
                let end = Instant::now() + window;
                while Instant::now() < end {
                    c.query(SQL, &[]).await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks.drain(..) {
            t.await.unwrap();
        }
        let wire_rate = done.swap(0, Ordering::Relaxed) as f64 / window.as_secs_f64();
        for _ in 0..8 {
            let c = Mcp::open(&url).await;
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(async move {
                let end = Instant::now() + window;
                let mut id = 0;
                while Instant::now() < end {
                    id += 1;
                    c.query(id).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mcp_rate = done.load(Ordering::Relaxed) as f64 / window.as_secs_f64();
        println!("8 clients, {seconds}s: wire {wire_rate:.0} calls/s, mcp {mcp_rate:.0} calls/s");
        let _ = std::fs::remove_dir_all(&rules);
    });
}
