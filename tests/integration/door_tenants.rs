//! Tenants on the SSH and HTTP doors (SPEC section 10): a tenant's SSH and HTTP targets
//! exist only for its own identities. Two tenants each declare a target of the same
//! name on each door; every caller reaches its own tenant's, and another tenant's
//! target is as unknown as one that does not exist.

use std::sync::Arc;

use crate::common::sshd;
use crate::harness::*;
use crate::http_gateway_upstream::upstream;

const ACME_PW: &str = "acme-agent-secret-1";
const GLOBEX_PW: &str = "globex-agent-secret-1";
const ACME_TOKEN: &str = "acme-agent-bearer-0123456789";
const GLOBEX_TOKEN: &str = "globex-agent-bearer-0123456789";

struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Log in as `user` with `password`; Some(handle) when pgmoat let it in.
async fn ssh_login(
    gw: &TestGateway,
    user: &str,
    password: &str,
) -> Option<russh::client::Handle<AnyHost>> {
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, gw.ssh.expect("ssh listener"), AnyHost)
        .await
        .expect("connect");
    let auth = handle
        .authenticate_password(user, password)
        .await
        .expect("auth exchange");
    auth.success().then_some(handle)
}

/// Exec `command`: stdout and the exit status.
async fn exec(handle: &russh::client::Handle<AnyHost>, command: &str) -> (String, Option<u32>) {
    let mut ch = handle.channel_open_session().await.expect("channel");
    ch.exec(true, command).await.expect("exec");
    let (mut out, mut status) = (Vec::new(), None);
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), status)
}

/// Whether `user` gets in and a command runs on the target it names.
async fn reaches(gw: &TestGateway, user: &str, password: &str) -> bool {
    let Some(handle) = ssh_login(gw, user, password).await else {
        return false;
    };
    let mark = unique("reached");
    matches!(exec(&handle, &format!("echo {mark}")).await, (out, Some(0)) if out == format!("{mark}\n"))
}

fn ssh_target(port: u16, key: &str, known_hosts: &str) -> String {
    format!(
        "{{ host: 127.0.0.1, port: {port}, user: {}, key_file: {key}, known_hosts: {known_hosts} }}",
        sshd::USER
    )
}

async fn start(dir: &TempDir) -> TestGateway {
    start_limited(dir, "").await
}

/// [`start`], with `acme_more` under tenant acme (a `limits:` line, four spaces in).
async fn start_limited(dir: &TempDir, acme_more: &str) -> TestGateway {
    let pg = crate::common::pg::shared();
    prepare(pg).await;
    let up = sshd::shared();
    let (key, good, wrong) = (
        up.deploy_key.display().to_string(),
        up.known_hosts.display().to_string(),
        up.wrong_known_hosts.display().to_string(),
    );
    let http_up = upstream().addr;
    let pg_target = format!(
        "{{ host: 127.0.0.1, port: {}, database: demo, user: {APP_ROLE}, password_env: APP_PW, tls: disable }}",
        pg.port
    );
    // Both tenants name their targets `web` and `api`. acme's `web` is the real
    // sshd; globex's `web` lists another host key, so reaching it fails visibly.
    // Each `api` sends requests under its own base path.
    let yaml = format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_env: ADMIN_TOKEN
ssh:
  listen: 127.0.0.1:0
  host_key: {host_key}
http:
  listen: 127.0.0.1:0
mcp:
  listen: 127.0.0.1:0
tenants:
  acme:
    targets:
      demo: {pg_target}
    identities:
      users:
        - {{ name: acme-agent, password_env: ACME_PW, token_env: ACME_TOKEN, groups: [agents] }}
    audit: {{ dir: {acme_audit} }}
{acme_more}    ssh:
      targets:
        web: {acme_web}
        acme-only: {acme_web}
    http:
      targets:
        api: {{ url: http://{http_up}/acme-base }}
        acme-only: {{ url: http://{http_up}/acme-only-base }}
  globex:
    targets:
      demo: {pg_target}
    identities:
      users:
        - {{ name: globex-agent, password_env: GLOBEX_PW, token_env: GLOBEX_TOKEN, groups: [agents] }}
    audit: {{ dir: {globex_audit} }}
    ssh:
      targets:
        web: {globex_web}
    http:
      targets:
        api: {{ url: http://{http_up}/globex-base }}
",
        host_key = dir.path().join("host_ed25519").display(),
        acme_audit = dir.path().join("acme-audit").display(),
        globex_audit = dir.path().join("globex-audit").display(),
        acme_web = ssh_target(up.port, &key, &good),
        globex_web = ssh_target(up.port, &key, &wrong),
    );
    let mut env = test_env();
    for (k, v) in [
        ("ACME_PW", ACME_PW),
        ("GLOBEX_PW", GLOBEX_PW),
        ("ACME_TOKEN", ACME_TOKEN),
        ("GLOBEX_TOKEN", GLOBEX_TOKEN),
    ] {
        env.insert(k.into(), v.into());
    }
    start_yaml(&yaml, env).await
}

fn records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    settle_audit(dir);
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).unwrap_or_default().lines() {
            if let Ok(v) = serde_json::from_str(line) {
                out.push(v);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_targets_are_per_tenant() {
    let dir = TempDir::new("pgmoat-door-tenants-ssh");
    let gw = start(&dir).await;

    // acme's `web` is acme's: the real sshd.
    assert!(reaches(&gw, "acme-agent+web", ACME_PW).await);
    // globex's `web` is globex's (its known_hosts lists another key): refused on the
    // upstream's host key, never served by acme's target of the same name.
    assert!(
        !reaches(&gw, "globex-agent+web", GLOBEX_PW).await,
        "globex's web must be globex's own target (wrong host key), not acme's"
    );
    // A target only acme has does not exist for globex, with the right password too.
    assert!(!reaches(&gw, "globex-agent+acme-only", GLOBEX_PW).await);
    assert!(reaches(&gw, "acme-agent+acme-only", ACME_PW).await);
    let acme_dir = dir.path().join("acme-audit");
    let globex_dir = dir.path().join("globex-audit");
    wait_until("globex's refusal in globex's own trail", WAIT_LIMIT, || {
        let dir = globex_dir.clone();
        async move {
            records(&dir).iter().any(|r| {
                r["type"] == "auth_failure"
                    && r["reason"]
                        .as_str()
                        .is_some_and(|s| s.contains("unknown ssh target \"acme-only\""))
            })
        }
    })
    .await;
    // Nothing of globex's attempts reached acme's trail.
    assert!(
        !records(&acme_dir)
            .iter()
            .any(|r| r.to_string().contains("globex-agent")),
        "acme's trail holds nothing of globex"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_targets_are_per_tenant() {
    let dir = TempDir::new("pgmoat-door-tenants-http");
    let gw = start(&dir).await;
    let base = format!("http://{}", gw.http.expect("http listener"));
    let web = reqwest::Client::new();
    let get = |token: &'static str, path: String| {
        let req = web.get(format!("{base}{path}")).bearer_auth(token);
        async move {
            let r = req.send().await.expect("request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let mark = unique("tenant_http");

    // Each tenant's `api` goes to its own base path.
    let (status, _) = get(ACME_TOKEN, format!("/api/{mark}-a")).await;
    assert_ne!(status, 404, "acme's api exists for acme");
    let (status, _) = get(GLOBEX_TOKEN, format!("/api/{mark}-g")).await;
    assert_ne!(status, 404, "globex's api exists for globex");
    let up = upstream();
    assert_eq!(up.seen_with(&format!("/acme-base/{mark}-a")).len(), 1);
    assert_eq!(up.seen_with(&format!("/globex-base/{mark}-g")).len(), 1);
    assert!(up.seen_with(&format!("/globex-base/{mark}-a")).is_empty());
    assert!(up.seen_with(&format!("/acme-base/{mark}-g")).is_empty());

    // A target only acme has is 404 for globex, as one nobody has is, and never
    // reaches the upstream.
    let (status, body) = get(GLOBEX_TOKEN, format!("/acme-only/{mark}-x")).await;
    assert_eq!(status, 404, "{body}");
    let (nobody, nobody_body) = get(GLOBEX_TOKEN, format!("/no-such-target/{mark}-y")).await;
    assert_eq!((status, body), (nobody, nobody_body));
    assert!(up.seen_with(&format!("{mark}-x")).is_empty());
    let (status, _) = get(ACME_TOKEN, format!("/acme-only/{mark}-z")).await;
    assert_ne!(status, 404);
    assert_eq!(up.seen_with(&format!("/acme-only-base/{mark}-z")).len(), 1);
    gw.shutdown().await;
}

#[test]
fn door_targets_sit_with_the_tenants() {
    let env = |name: &str| Some(format!("secret-value-for-{name}"));
    let tenant = "tenants:
  acme:
    targets:
      demo: { host: 127.0.0.1, database: demo, user: app, password_env: P, tls: disable }
    identities:
      users:
        - { name: a, password_env: P }
";
    let top_ssh = format!(
        "ssh:\n  listen: 127.0.0.1:0\n  host_key: /tmp/hk\n  targets:\n    web: {{ host: h, user: u, key_file: /k, known_hosts: /kh }}\n{tenant}"
    );
    let e = pgmoat::Config::from_yaml(&top_ssh, "t.yaml", std::path::Path::new("/"), &env)
        .expect_err("top-level ssh targets with tenants");
    assert!(e.to_string().contains("belong to a tenant"), "{e}");
    let no_listener =
        format!("{tenant}    http:\n      targets:\n        api: {{ url: http://127.0.0.1:9 }}\n");
    let e = pgmoat::Config::from_yaml(&no_listener, "t.yaml", std::path::Path::new("/"), &env)
        .expect_err("tenant http targets without http:");
    assert!(e.to_string().contains("no top-level `http:`"), "{e}");
}

/// A tenant's `limits.max_connections` counts its SSH sessions as it counts its wire
/// sessions (review L1): past it a login is turned away, and another tenant is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_take_seats_among_their_tenants_connections() {
    let dir = TempDir::new("pgmoat-door-tenants-seats");
    let gw = start_limited(&dir, "    limits: { max_connections: 1 }\n").await;
    let first = ssh_login(&gw, "acme-agent+web", ACME_PW)
        .await
        .expect("the first session gets the seat");
    let mark = unique("seated");
    assert_eq!(
        exec(&first, &format!("echo {mark}")).await,
        (format!("{mark}\n"), Some(0))
    );
    assert!(
        ssh_login(&gw, "acme-agent+web", ACME_PW).await.is_none(),
        "a second session past acme's max_connections"
    );
    // globex has seats of its own.
    assert!(ssh_login(&gw, "globex-agent+web", GLOBEX_PW)
        .await
        .is_some());
    // The seat comes back when the session ends.
    drop(first);
    wait_until("acme's seat given back", WAIT_LIMIT, || {
        let gw = &gw;
        async move { ssh_login(gw, "acme-agent+web", ACME_PW).await.is_some() }
    })
    .await;
    gw.shutdown().await;
}

/// POST an MCP `initialize` with `token`: the status and the new session's id.
async fn mcp_initialize(gw: &TestGateway, token: &str) -> (u16, Option<String>) {
    let url = format!("http://{}/mcp", gw.mcp.expect("mcp listener"));
    let r = reqwest::Client::new()
        .post(&url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2025-06-18")
        .json(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}))
        .send()
        .await
        .expect("mcp post");
    let sid = r
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (r.status().as_u16(), sid)
}

/// A tenant's `limits.max_connections` bounds its MCP sessions (review L1): one
/// tenant's agents cannot take every MCP session, and a closed one frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_sessions_are_counted_per_tenant() {
    let dir = TempDir::new("pgmoat-door-tenants-mcp");
    let gw = start_limited(&dir, "    limits: { max_connections: 2 }\n").await;
    let (a, first) = mcp_initialize(&gw, ACME_TOKEN).await;
    let (b, _) = mcp_initialize(&gw, ACME_TOKEN).await;
    assert_eq!((a, b), (200, 200));
    assert_eq!(mcp_initialize(&gw, ACME_TOKEN).await.0, 503, "acme's third");
    assert_eq!(
        mcp_initialize(&gw, GLOBEX_TOKEN).await.0,
        200,
        "globex's own"
    );
    let url = format!("http://{}/mcp", gw.mcp.unwrap());
    let closed = reqwest::Client::new()
        .delete(&url)
        .bearer_auth(ACME_TOKEN)
        .header("Mcp-Session-Id", first.expect("a session id"))
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .expect("delete");
    assert!(closed.status().is_success(), "{closed:?}");
    wait_until(
        "acme's closed MCP session frees its place",
        WAIT_LIMIT,
        || {
            let gw = &gw;
            async move { mcp_initialize(gw, ACME_TOKEN).await.0 == 200 }
        },
    )
    .await;
    gw.shutdown().await;
}
