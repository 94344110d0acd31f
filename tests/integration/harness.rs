//! A gateway in front of the shared test Postgres, plus a raw protocol client for the
//! cases a driver will not produce (garbage, FunctionCall, transaction-status bytes).

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::common::pg::{self, TestPg};

pub const AGENT: &str = "agent-1";
pub const AGENT_PW: &str = "agent-secret-1";
/// The role pgmoat logs in as; clients never learn its password.
pub const APP_ROLE: &str = "app_rw";
pub const APP_PW: &str = "held-credential-9f2";

static PREPARED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Make sure the shared server has the roles the tests use (once per test binary).
pub async fn prepare(pg: &'static TestPg) {
    PREPARED.get_or_init(|| prepare_once(pg)).await;
}

async fn prepare_once(pg: &TestPg) {
    pg.create_role_with_method(APP_ROLE, APP_PW, "scram").await;
    pg.create_database("demo").await;
    let admin = pg.admin_client().await;
    admin
        .batch_execute("GRANT ALL ON DATABASE demo TO app_rw; ALTER DATABASE demo OWNER TO app_rw")
        .await
        .expect("grant demo to app_rw");
}

pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The HTTP gateway (`http:`), when configured.
    pub http: Option<SocketAddr>,
    /// The SSH gateway (`ssh:`), when configured.
    pub ssh: Option<SocketAddr>,
    /// The MCP endpoint (`mcp:`), when configured.
    pub mcp: Option<SocketAddr>,
    pub metrics: std::sync::Arc<pgmoat::metrics::Metrics>,
    /// The clock OIDC tokens are judged by (with `identities.oidc`): the system clock
    /// until a test moves it ahead, to lapse tokens without waiting for them.
    pub clock: pgmoat::auth::clock::Clock,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestGateway {
    /// Stop accepting and wait for the gateway to finish shutting down.
    pub async fn shutdown(mut self) {
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

    /// Ask the gateway to stop, without waiting.
    pub fn begin_shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.take().expect("not yet shut down")
    }

    /// Wait until exactly `n` client sessions are open (`connections_active`). A
    /// session is counted until `session::serve` returns, after its `session_end` or
    /// `auth_failure` record was handed to the audit trail.
    pub async fn wait_sessions(&self, n: i64) {
        let metrics = &self.metrics;
        wait_for(&format!("{n} open sessions"), WAIT_LIMIT, || async move {
            match metrics.connections_active.load(Relaxed) {
                got if got == n => Ok(()),
                got => Err(format!("{got} open")),
            }
        })
        .await
    }

    /// Wait until every client session has ended on the gateway's side (for example
    /// after dropping the clients, before a shutdown that must not be what ends them).
    pub async fn wait_idle(&self) {
        self.wait_sessions(0).await
    }

    pub fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db} sslmode=disable",
            self.addr.port()
        )
    }

    /// tokio-postgres through the gateway as the standard agent, target "demo".
    pub async fn connect(&self) -> tokio_postgres::Client {
        self.connect_as(AGENT, AGENT_PW, "demo")
            .await
            .expect("connect through pgmoat")
    }

    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect_url(&self.url(user, password, db)).await
    }
}

pub async fn connect_url(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The standard config: one target "demo" on the shared server, one agent user.
/// `extra` is appended verbatim (top-level keys).
pub fn config_yaml(pg: &TestPg, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_env: ADMIN_TOKEN
targets:
  demo:
    host: 127.0.0.1
    port: {port}
    database: demo
    user: {APP_ROLE}
    password_env: APP_PW
    tls: disable
identities:
  users:
    - name: {AGENT}
      password_env: AGENT_PW
      groups: [agents]
{extra}",
        port = pg.port
    )
}

pub fn test_env() -> HashMap<String, String> {
    [
        ("APP_PW", APP_PW),
        ("AGENT_PW", AGENT_PW),
        ("ADMIN_TOKEN", "admin-token"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Start a gateway from YAML in this test's runtime.
pub async fn start_yaml(yaml: &str, env: HashMap<String, String>) -> TestGateway {
    let lookup = move |name: &str| env.get(name).cloned();
    let mut config = pgmoat::Config::from_yaml(yaml, "test.yaml", Path::new("/"), &lookup)
        .expect("valid test config");
    let clock = pgmoat::auth::clock::Clock::adjustable();
    if let Some(oidc) = &mut config.oidc {
        oidc.clock = clock.clone();
    }
    let gateway = pgmoat::Gateway::bind(config).await.expect("bind gateway");
    let addr = gateway.local_addr();
    let admin = gateway.admin_addr();
    let http = gateway.http_addr();
    let ssh = gateway.ssh_addr();
    let mcp = gateway.mcp_addr();
    let metrics = gateway.metrics();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run(async move {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        admin,
        http,
        ssh,
        mcp,
        metrics,
        clock,
        stop: Some(tx),
        task: Some(task),
    }
}

/// The shared server, prepared, with a standard gateway in front.
pub async fn start() -> (&'static TestPg, TestGateway) {
    start_with("").await
}

pub async fn start_with(extra: &str) -> (&'static TestPg, TestGateway) {
    let pg = pg::shared();
    prepare(pg).await;
    let gw = start_yaml(&config_yaml(pg, extra), test_env()).await;
    (pg, gw)
}

/// How long a test waits for something that should happen at once before it fails.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Poll `probe` (every 10 ms) until it gives `Ok`, and return that; after `limit`,
/// panic naming `what` and what the last probe saw (its `Err`). For waiting on an
/// event itself instead of sleeping and hoping it happened.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            panic!("gave up after {limit:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_for`] a condition.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let cond = &mut cond;
    wait_for(what, limit, || {
        let f = cond();
        async move { f.await.then_some(()).ok_or_else(|| "not yet".to_string()) }
    })
    .await
}

/// Wait until the server log holds `needle` (log_statement = 'all' logs each
/// statement as the backend starts it); the log so far.
pub async fn wait_log_contains(pg: &TestPg, needle: &str) -> String {
    wait_for(
        &format!("the server log to contain {needle:?}"),
        WAIT_LIMIT,
        || async move {
            let log = pg.log_contents();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(format!("log tail:\n{}", pg.log_tail(5)))
            }
        },
    )
    .await
}

/// Wait until a backend on the server is running exactly `query` (pg_stat_activity,
/// read on a direct superuser connection); that backend's pid.
pub async fn wait_running(pg: &TestPg, query: &str) -> i32 {
    let admin = pg.admin_client().await;
    let admin = &admin;
    wait_for(
        &format!("the server to be running {query:?}"),
        WAIT_LIMIT,
        || async move {
            let rows = admin
                .query(
                    "SELECT pid, state FROM pg_stat_activity WHERE query = $1",
                    &[&query],
                )
                .await
                .map_err(|e| format!("pg_stat_activity: {e}"))?;
            match rows
                .iter()
                .find(|r| r.get::<_, Option<&str>>(1) == Some("active"))
            {
                Some(r) => Ok(r.get(0)),
                None => Err(format!(
                    "{} backends with that query, none active",
                    rows.len()
                )),
            }
        },
    )
    .await
}

/// A minimal protocol client over a raw socket.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub backend_key: (i32, i32),
}

/// A message as read back: tag and body.
#[derive(Debug, Clone)]
pub struct Msg {
    pub tag: u8,
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse/NoticeResponse.
    pub fn field(&self, kind: u8) -> String {
        let mut b = &self.body[..];
        while let Some((&k, rest)) = b.split_first() {
            if k == 0 {
                break;
            }
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            if k == kind {
                return String::from_utf8_lossy(&rest[..end]).into_owned();
            }
            b = &rest[(end + 1).min(rest.len())..];
        }
        String::new()
    }
}

impl Raw {
    /// Connect and authenticate with SCRAM; return after the first ReadyForQuery.
    pub async fn login(addr: SocketAddr, user: &str, password: &str, db: &str) -> Result<Raw, Msg> {
        Self::login_with(addr, &[("user", user), ("database", db)], password).await
    }

    pub async fn login_with(
        addr: SocketAddr,
        params: &[(&str, &str)],
        password: &str,
    ) -> Result<Raw, Msg> {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let mut raw = Raw {
            stream,
            buf: BytesMut::new(),
            backend_key: (0, 0),
        };
        let mut out = BytesMut::new();
        frontend::startup_message(params.iter().copied(), &mut out).unwrap();
        raw.send(&out).await;
        let mut scram = None;
        loop {
            let m = raw.read().await.expect("message during login");
            match m.tag {
                b'R' => {
                    let mut body = &m.body[..];
                    let code = body.get_i32();
                    out.clear();
                    match code {
                        0 => {}
                        10 => {
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response("SCRAM-SHA-256", s.message(), &mut out)
                                .unwrap();
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().unwrap();
                            s.update(body).unwrap();
                            frontend::sasl_response(s.message(), &mut out).unwrap();
                        }
                        12 => scram
                            .take()
                            .unwrap()
                            .finish(body)
                            .expect("server signature"),
                        other => panic!("unexpected auth code {other}"),
                    }
                    if !out.is_empty() {
                        raw.send(&out).await;
                    }
                }
                b'K' => {
                    let mut b = &m.body[..];
                    raw.backend_key = (b.get_i32(), b.get_i32());
                }
                b'Z' => return Ok(raw),
                b'E' => return Err(m),
                _ => {}
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// Read one message; None on EOF or after 20 s.
    pub async fn read(&mut self) -> Option<Msg> {
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]])
                    as usize;
                if self.buf.len() > len {
                    let msg = self.buf.split_to(len + 1);
                    return Some(Msg {
                        tag: msg[0],
                        body: msg[5..].to_vec(),
                    });
                }
            }
            match tokio::time::timeout(Duration::from_secs(20), self.stream.read_buf(&mut self.buf))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Read messages up to and including the next ReadyForQuery.
    pub async fn until_ready(&mut self) -> Vec<Msg> {
        let mut out = Vec::new();
        loop {
            let m = self
                .read()
                .await
                .expect("connection open until ReadyForQuery");
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return out;
            }
        }
    }

    pub async fn query(&mut self, sql: &str) -> Vec<Msg> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).unwrap();
        self.send(&out).await;
        self.until_ready().await
    }

    /// [`Raw::query`], which must not fail.
    pub async fn query_ok(&mut self, sql: &str) -> Vec<Msg> {
        let r = self.query(sql).await;
        assert!(r.iter().all(|m| m.tag != b'E'), "{sql}: {r:?}");
        r
    }
}

/// The DataRow bodies among `msgs`, as text.
pub fn data_rows(msgs: &[Msg]) -> Vec<String> {
    msgs.iter()
        .filter(|m| m.tag == b'D')
        .map(|m| String::from_utf8_lossy(&m.body).into_owned())
        .collect()
}

/// A message built by hand: tag, then body with the length filled in.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = BytesMut::new();
    v.put_u8(tag);
    v.put_i32(body.len() as i32 + 4);
    v.put_slice(body);
    v.to_vec()
}

/// A Parse message: statement name and SQL, no parameter types.
pub fn parse_msg(name: &str, sql: &str) -> Vec<u8> {
    let mut b = format!("{name}\0{sql}\0").into_bytes();
    b.extend([0, 0]);
    message(b'P', &b)
}

/// Bind statement `stmt` to the unnamed portal (no parameters, text results),
/// Execute it and Sync.
pub fn bind_execute_sync(stmt: &str) -> Vec<u8> {
    let mut b = format!("\0{stmt}\0").into_bytes();
    b.extend([0, 0, 0, 0, 0, 0]);
    let mut m = message(b'B', &b);
    m.extend(message(b'E', b"\0\0\0\0\0"));
    m.extend(message(b'S', b""));
    m
}

/// The transaction status byte of the last ReadyForQuery in `msgs`.
pub fn status(msgs: &[Msg]) -> u8 {
    msgs.iter()
        .rev()
        .find(|m| m.tag == b'Z')
        .map(|m| m.body[0])
        .expect("a ReadyForQuery")
}

pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|m| m.tag as char).collect()
}

/// The SQLSTATE of a tokio-postgres error.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| format!("no db error: {e:?}"))
}

/// A GET against the admin API over a raw socket: (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// A POST against the admin API: (status code, body).
pub async fn http_post(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http(addr, &req).await
}

/// One raw HTTP/1.1 exchange (the request as written): (status code, body).
pub async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("admin connect");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A name unique to this moment, for tables a test creates.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Prepared-statement cycles (Bind/Execute/Sync, the relay's fast path when nothing in
/// the session inspects them) answered in order, each with the server's true
/// transaction status: alone, pipelined four to a write with a failure among them,
/// inside a failed transaction, and after a Close.
pub async fn check_prepared_cycles(raw: &mut Raw) {
    let row_is = |m: &[Msg], v: &str| {
        let rows = data_rows(m);
        assert_eq!(rows.len(), 1, "one row: {}", tags(m));
        assert!(rows[0].ends_with(v), "row {:?} ends with {v}", rows[0]);
    };
    let mut setup = parse_msg("ok", "SELECT 7");
    // Fails when it runs (a constant 1/0 would fail at Bind, when it is planned).
    setup.extend(parse_msg("bad", "SELECT 1 / (random() * 0)::int"));
    setup.extend(message(b'S', b""));
    raw.send(&setup).await;
    assert_eq!(tags(&raw.until_ready().await), "11Z");

    assert_eq!(status(&raw.query_ok("BEGIN").await), b'T');
    raw.send(&bind_execute_sync("ok")).await;
    let m = raw.until_ready().await;
    assert_eq!((tags(&m).as_str(), status(&m)), ("2DCZ", b'T'));
    row_is(&m, "7");
    raw.send(&bind_execute_sync("bad")).await;
    let m = raw.until_ready().await;
    assert_eq!((tags(&m).as_str(), status(&m)), ("2EZ", b'E'));
    assert_eq!(m[1].field(b'C'), "22012");
    raw.send(&bind_execute_sync("ok")).await;
    let m = raw.until_ready().await;
    assert_eq!((tags(&m).as_str(), status(&m)), ("EZ", b'E'));
    assert_eq!(m[0].field(b'C'), "25P02");
    // pgmoat's own answers carry the status it tracked through those cycles.
    raw.send(&message(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]))
        .await;
    let m = raw.until_ready().await;
    assert_eq!((tags(&m).as_str(), status(&m)), ("EZ", b'E'));
    assert_eq!(m[0].field(b'C'), "42501");
    assert_eq!(status(&raw.query_ok("ROLLBACK").await), b'I');

    let mut pipe = Vec::new();
    for name in ["ok", "ok", "bad", "ok"] {
        pipe.extend(bind_execute_sync(name));
    }
    raw.send(&pipe).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let m = raw.until_ready().await;
        assert_eq!(status(&m), b'I');
        answers.push(tags(&m));
        if m.len() == 4 {
            row_is(&m, "7");
        }
    }
    assert_eq!(answers, ["2DCZ", "2DCZ", "2EZ", "2DCZ"]);

    let mut close = message(b'C', b"Sok\0");
    close.extend(message(b'S', b""));
    raw.send(&close).await;
    assert_eq!(tags(&raw.until_ready().await), "3Z");
    raw.send(&bind_execute_sync("ok")).await;
    let m = raw.until_ready().await;
    assert_eq!(tags(&m), "EZ");
    assert_eq!(m[0].field(b'C'), "26000", "the closed statement is gone");
    let m = raw.query_ok("SELECT 2").await;
    row_is(&m, "2");
}

/// Waits (up to [`WAIT_LIMIT`]) until the segments of the audit store in `dir` hold
/// every record its `fsync` journal holds. A statement goes on once its record is
/// durable in the journal; the writer appends it to the segment moments later, so a
/// test that reads the segments right after an answer calls this first. Returns at
/// once for a store without a journal (`batch` mode).
pub fn settle_audit(dir: &Path) {
    let journal = pgmoat::audit::journal::path(dir);
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let Ok(bytes) = std::fs::read(&journal) else {
            return;
        };
        let Some(newest) = journal_round_end(&bytes) else {
            return;
        };
        if newest_segment_seq(dir).is_some_and(|s| s >= newest) || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The seq of the last record of the journal's current round: its lines from the
/// start while each follows the one before (zeros, a torn line or an older round's
/// leftover end it).
fn journal_round_end(bytes: &[u8]) -> Option<u64> {
    let mut last: Option<u64> = None;
    for line in bytes.split(|&b| b == b'\n') {
        let seq = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["seq"].as_u64());
        match (seq, last) {
            (Some(s), None) => last = Some(s),
            (Some(s), Some(l)) if s == l + 1 => last = Some(s),
            _ => break,
        }
    }
    last
}

/// The seq of the last whole record in the store's newest segment.
fn newest_segment_seq(dir: &Path) -> Option<u64> {
    let (_, path) = pgmoat::audit::segment::list(dir).ok()?.pop()?;
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["seq"].as_u64())
}
