//! The SSH door's test environment: a gateway with `ssh:` in front of the shared test
//! sshd, client keys, the stock OpenSSH clients run against it, and the audit store
//! read back.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use pgmoat::auth::clock::Clock;
use tokio::sync::oneshot;

use crate::common::sshd::{self, TestSshd};
use crate::harness::TempDir;

pub const ADMIN_TOKEN: &str = "admin-token";

/// Client keys, made once per test binary: one the gateway knows, one it does not.
pub struct Keys {
    _dir: TempDir,
    pub agent: PathBuf,
    pub agent_pub: String,
    pub stranger: PathBuf,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = TempDir::new("pgmoat-ssh-keys");
        let agent = dir.path().join("agent");
        let stranger = dir.path().join("stranger");
        let agent_pub = sshd::keygen(&agent);
        sshd::keygen(&stranger);
        Keys {
            agent,
            agent_pub,
            stranger,
            _dir: dir,
        }
    })
}

pub struct SshGateway {
    pub ssh: SocketAddr,
    pub admin: SocketAddr,
    pub dir: TempDir,
    pub upstream: &'static TestSshd,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SshGateway {
    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// Every audit record so far, parsed.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let dir = self.audit_dir();
        crate::harness::settle_audit(&dir);
        let mut out = Vec::new();
        for (_, path) in pgmoat::audit::segment::list(&dir).expect("segments") {
            let text = std::fs::read_to_string(path).expect("segment");
            out.extend(
                text.lines()
                    .map(|l| serde_json::from_str(l).expect("json line")),
            );
        }
        out
    }

    pub fn records_of(&self, kind: &str) -> Vec<serde_json::Value> {
        self.records()
            .into_iter()
            .filter(|r| r["type"] == kind)
            .collect()
    }

    /// Stop and wait for the gateway.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }
}

impl Drop for SshGateway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A gateway with `rules` (a rule file's text) and two SSH targets on the test sshd:
/// `web-1` (its true host key) and `web-bad` (a known_hosts that lists another key).
pub async fn start(rules: &str) -> SshGateway {
    start_with(rules, "").await.0
}

/// [`start`] with more under `identities:` (an `oidc:` block, say); also the clock the
/// gateway judges token lifetimes by, which the test may move ahead.
pub async fn start_with(rules: &str, identities_more: &str) -> (SshGateway, Clock) {
    start_opts(rules, identities_more, "").await
}

/// [`start_with`], with more under `ssh:` (`max_recording_bytes: ...`, two spaces in).
pub async fn start_opts(rules: &str, identities_more: &str, ssh_more: &str) -> (SshGateway, Clock) {
    let upstream = sshd::shared();
    let keys = keys();
    let dir = TempDir::new("pgmoat-ssh-gw");
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules).unwrap();
    let p = |x: &Path| x.display().to_string();
    let yaml = format!(
        "listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_env: ADMIN_TOKEN
targets:
  demo: {{ host: 127.0.0.1, port: 1, user: nobody, password_env: AGENT_PW, tls: disable }}
identities:
  users:
    - name: agent-1
      password_env: AGENT_PW
      groups: [agents]
      ssh_keys: [\"{agent_pub}\"]
    - name: alice
      password_env: ALICE_PW
      groups: [ops]
{identities_more}rules: {rules}
approvals:
  timeout: 60s
audit:
  dir: {audit}
ssh:
  listen: 127.0.0.1:0
  host_key: {host_key}
{ssh_more}  targets:
    web-1:
      host: 127.0.0.1
      port: {port}
      user: {user}
      key_file: {deploy}
      known_hosts: {kh}
    web-bad:
      host: 127.0.0.1
      port: {port}
      user: {user}
      key_file: {deploy}
      known_hosts: {wrong}
",
        agent_pub = keys.agent_pub,
        rules = p(&rules_path),
        audit = p(&dir.path().join("audit")),
        host_key = p(&dir.path().join("ssh/host_ed25519")),
        port = upstream.port,
        user = sshd::USER,
        deploy = p(&upstream.deploy_key),
        kh = p(&upstream.known_hosts),
        wrong = p(&upstream.wrong_known_hosts),
    );
    let env: HashMap<String, String> = [
        ("AGENT_PW", "agent-secret-1"),
        ("ALICE_PW", "alice-secret-1"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let mut config = pgmoat::Config::from_yaml(&yaml, "ssh-test.yaml", Path::new("/"), &lookup)
        .expect("valid ssh test config");
    let clock = Clock::adjustable();
    if let Some(oidc) = &mut config.oidc {
        oidc.clock = clock.clone();
    }
    let gateway = pgmoat::Gateway::bind(config).await.expect("bind gateway");
    let ssh = gateway.ssh_addr().expect("ssh listener");
    let admin = gateway.admin_addr().expect("admin listener");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run(async move {
        let _ = rx.await;
    }));
    let gw = SshGateway {
        ssh,
        admin,
        dir,
        upstream,
        stop: Some(tx),
        task: Some(task),
    };
    (gw, clock)
}

/// What a client run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// The options every stock client gets: no prompts, no host key memory, our key only.
pub fn client_opts(key: &Path) -> Vec<String> {
    [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=20",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([key.display().to_string()])
    .collect()
}

/// Run a stock client (`ssh`, `scp`, `sftp`) with `args`, feeding `stdin`.
pub async fn client(program: &str, args: &[String], stdin: Option<&[u8]>) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{program}: {e}"));
    if let Some(input) = stdin {
        use tokio::io::AsyncWriteExt;
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input).await.expect("write stdin");
        drop(w);
    }
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish"))
        .expect("client output");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ssh -p PORT [extra] USER@127.0.0.1 [command]` with a key.
pub async fn ssh(
    gw: &SshGateway,
    key: &Path,
    user: &str,
    extra: &[&str],
    command: Option<&str>,
    stdin: Option<&[u8]>,
) -> Run {
    let mut args = vec!["-p".to_string(), gw.ssh.port().to_string()];
    args.extend(client_opts(key));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("{user}@127.0.0.1"));
    if let Some(c) = command {
        args.push(c.to_string());
    }
    client("ssh", &args, stdin).await
}

/// A path on the upstream no test has used.
pub fn marker(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("pgmoat-ssh-{name}-{:08x}", rand::random::<u32>()))
}

/// `asciinema cat FILE` (the stock player printing a recording's output), installed
/// when missing. It reads the terminal, so it runs under `script` for a pty of its own.
pub async fn asciinema_cat(path: &Path) -> Run {
    pgmoat::setup::ensure_tool("asciinema", "asciinema").expect("asciinema");
    let command = format!("asciinema cat '{}'", path.display());
    client(
        "script",
        &[
            "-q".into(),
            "-e".into(),
            "-c".into(),
            command,
            "/dev/null".into(),
        ],
        None,
    )
    .await
}

/// `scp` of `src` up to `remote` (in the home of `login`'s account on the upstream)
/// and back down to `back`, through the gateway with the agent's key; both must
/// succeed.
pub async fn scp_up_and_down(gw: &SshGateway, login: &str, src: &Path, remote: &str, back: &Path) {
    let mut args = vec!["-P".to_string(), gw.ssh.port().to_string()];
    args.extend(client_opts(&keys().agent));
    let up = [
        args.clone(),
        vec![
            src.display().to_string(),
            format!("{login}@127.0.0.1:{remote}"),
        ],
    ]
    .concat();
    let r = client("scp", &up, None).await;
    assert_eq!(r.status, 0, "scp up: {r:?}");
    let down = [
        args,
        vec![
            format!("{login}@127.0.0.1:{remote}"),
            back.display().to_string(),
        ],
    ]
    .concat();
    let r = client("scp", &down, None).await;
    assert_eq!(r.status, 0, "scp down: {r:?}");
}
