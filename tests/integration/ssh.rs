//! The SSH front door (SPEC section 8) end to end: the stock `ssh`, `scp` and `sftp`
//! through pgmoat to a real sshd, with rules, approvals, recordings and the audit
//! chain checked as a user sees them.

use std::time::Duration;

use crate::harness::{http, http_post, wait_for};
use crate::ssh_env::{self, keys, marker, ssh, start, Run, ADMIN_TOKEN};

const AGENT: &str = "agent-1+web-1";

const RULES: &str = r#"
rules:
  - id: no-rm-rf
    description: Deleting trees goes through a ticket.
    when: { ssh_commands: ["rm -rf *", "rm -fr *"] }
    action: block
  - id: deploys-need-approval
    when: { ssh_commands: ["echo deploy*"], groups: [agents] }
    action: approve
    approvers: [ops]
"#;

fn assert_blocked(r: &Run, rule: &str) {
    assert_eq!(r.status, 126, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("pgmoat: blocked by rule \"{rule}\"")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_allowed_output_and_exit_status_exact() {
    let gw = start(RULES).await;
    let key = &keys().agent;
    let r = ssh(
        &gw,
        key,
        AGENT,
        &[],
        Some("echo hello; printf 'a\\nb'; echo oops >&2; exit 3"),
        None,
    )
    .await;
    assert_eq!(r.out(), "hello\na\nb", "{r:?}");
    assert_eq!(r.stderr, "oops\n");
    assert_eq!(r.status, 3);
    // stdin reaches the command; its EOF too.
    let r = ssh(
        &gw,
        key,
        AGENT,
        &[],
        Some("tr a-z A-Z"),
        Some(b"piped input\n"),
    )
    .await;
    assert_eq!((r.status, r.out().as_str()), (0, "PIPED INPUT\n"), "{r:?}");

    let channels = gw.records_of("ssh_channel");
    let closed: Vec<_> = channels.iter().filter(|c| c["phase"] == "closed").collect();
    assert_eq!(closed[0]["exit_status"], 3, "{channels:?}");
    assert_eq!(closed[0]["action"], "allow");
    let starts = gw.records_of("ssh_session_start");
    assert_eq!(starts[0]["user"], "agent-1");
    assert_eq!(starts[0]["target"], "web-1");
    assert_eq!(starts[0]["auth"], "publickey");
    // The recording is in the audit folder, the chain holds its hash, verify agrees.
    let name = closed[0]["recording"].as_str().expect("recording named");
    let cast = std::fs::read_to_string(gw.audit_dir().join(name)).expect("recording");
    let header: serde_json::Value = serde_json::from_str(cast.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["version"].as_u64(), header["width"].as_u64()),
        (Some(2), Some(80))
    );
    assert!(cast.contains("\"o\",\"hello\\n"), "{cast}");
    let report = pgmoat::audit::verify::verify(&gw.audit_dir(), None, None).expect("readable");
    assert!(report.is_ok(), "{report:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_exec_never_reaches_the_upstream() {
    let gw = start(RULES).await;
    let key = &keys().agent;
    let mark = marker("blocked");
    let m = mark.display();
    // A list and a pipeline with one blocked part are blocked whole.
    for line in [
        format!("touch {m}; rm -rf /tmp/nothing-here"),
        format!("touch {m} && echo ok | rm -fr /tmp/x"),
        format!("sh -c 'touch {m}; rm -rf /tmp/y'"),
    ] {
        let r = ssh(&gw, key, AGENT, &[], Some(&line), None).await;
        assert_blocked(&r, "no-rm-rf");
        assert!(r.stdout.is_empty(), "{r:?}");
    }
    // Not statically readable: unanalysable, refused without a rule that allows it.
    for line in [
        format!("echo $(touch {m})"),
        format!("echo `touch {m}`"),
        "eval \"$X\"".into(),
    ] {
        let r = ssh(&gw, key, AGENT, &[], Some(&line), None).await;
        assert_blocked(&r, "unanalysable");
    }
    assert!(!mark.exists(), "a refused command ran on the upstream");
    let decided: Vec<_> = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["phase"] == "decided")
        .collect();
    assert_eq!(decided.len(), 6);
    assert!(
        decided.iter().all(|c| c["action"] == "block"),
        "{decided:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_key_is_refused_and_audited() {
    let gw = start(RULES).await;
    let r = ssh(&gw, &keys().stranger, AGENT, &[], Some("true"), None).await;
    assert_eq!(r.status, 255, "{r:?}");
    assert!(r.stderr.contains("Permission denied"), "{r:?}");
    // Unknown target and a name without a target: refused too.
    let r = ssh(
        &gw,
        &keys().agent,
        "agent-1+nowhere",
        &[],
        Some("true"),
        None,
    )
    .await;
    assert_eq!(r.status, 255, "{r:?}");
    let failures = gw.records_of("auth_failure");
    assert!(
        failures.iter().any(|f| f["user"] == AGENT
            && f["reason"]
                .as_str()
                .unwrap()
                .contains("public key not accepted")),
        "{failures:?}"
    );
    assert!(failures
        .iter()
        .any(|f| f["reason"].as_str().unwrap().contains("unknown ssh target")));
    assert!(gw.records_of("ssh_session_start").is_empty());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_host_key_mismatch_is_refused() {
    let gw = start(RULES).await;
    let mark = marker("hostkey");
    let line = format!("touch {}", mark.display());
    let r = ssh(
        &gw,
        &keys().agent,
        "agent-1+web-bad",
        &[],
        Some(&line),
        None,
    )
    .await;
    assert_eq!(r.status, 255, "{r:?}");
    assert!(r.stderr.contains("CHANGED"), "{r:?}");
    assert!(!mark.exists());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_is_refused() {
    let gw = start(RULES).await;
    let key = &keys().agent;
    let port = gw.upstream.port.to_string();
    // Local forwarding (a direct-tcpip channel, as -L opens for each connection).
    let w = format!("127.0.0.1:{port}");
    let r = ssh(&gw, key, AGENT, &["-W", &w], None, None).await;
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("stdio forwarding failed"), "{r:?}");
    // Remote forwarding.
    let r = ssh(
        &gw,
        key,
        AGENT,
        &["-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9"],
        Some("true"),
        None,
    )
    .await;
    assert_ne!(r.status, 0, "{r:?}");
    assert!(r.stderr.contains("forwarding failed"), "{r:?}");
    let (_, metrics) = crate::harness::http_get(gw.admin, "/metrics").await;
    assert!(
        !metrics.contains("pgmoat_ssh_forwarding_refused_total 0\n"),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_exec_runs_once_approved_through_the_admin_api() {
    let gw = start(RULES).await;
    let key = keys().agent.clone();
    let port = gw.ssh.port();
    let task = tokio::spawn(async move {
        let mut args = vec!["-p".to_string(), port.to_string()];
        args.extend(ssh_env::client_opts(&key));
        args.push(format!("{AGENT}@127.0.0.1"));
        args.push("echo deploy-ran".into());
        ssh_env::client("ssh", &args, None).await
    });
    let admin = gw.admin;
    let pending = wait_for("a pending ssh approval", Duration::from_secs(20), || async move {
        let (code, body) = http(
            admin,
            &format!("GET /api/v1/approvals HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"),
        )
        .await;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{code} {e}"))?;
        let list = v.as_array().cloned().or_else(|| v["approvals"].as_array().cloned()).unwrap_or_default();
        list.into_iter().next().ok_or_else(|| "none yet".to_string())
    })
    .await;
    assert_eq!(pending["sql"], "echo deploy-ran");
    assert_eq!(pending["identity"], "agent-1");
    assert_eq!(pending["target"], "web-1");
    let id = pending["id"].as_str().unwrap().to_string();
    let (code, body) = http_post(
        gw.admin,
        &format!("/api/v1/approvals/{id}/approve"),
        Some(ADMIN_TOKEN),
        r#"{"by":"alice","reason":"release window"}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let r = task.await.unwrap();
    assert_eq!((r.status, r.out().as_str()), (0, "deploy-ran\n"), "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("pgmoat: waiting for approval {id}")),
        "{r:?}"
    );
    let approvals = gw.records_of("approval");
    let states: Vec<_> = approvals
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["requested", "approved"], "{approvals:?}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_session_is_recorded_and_replayable() {
    let gw = start(RULES).await;
    // -tt: a pty even though stdin is a pipe; the shell reads what we type.
    let r = ssh(
        &gw,
        &keys().agent,
        AGENT,
        &["-tt"],
        None,
        Some(b"echo shell-$((6*7))-marker\nexit 0\n"),
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("shell-42-marker"), "{r:?}");
    let closed: Vec<_> = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["phase"] == "closed" && c["request"] == "shell")
        .collect();
    let name = closed[0]["recording"]
        .as_str()
        .expect("recording")
        .to_string();
    let cast = std::fs::read_to_string(gw.audit_dir().join(&name)).unwrap();
    let mut lines = cast.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let events: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let input: String = events
        .iter()
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert!(input.contains("echo shell-$((6*7))-marker"), "{input:?}");
    assert!(events
        .iter()
        .any(|e| e[1] == "o" && e[2].as_str().unwrap().contains("shell-42-marker")));
    // Replay prints the session with what the shell showed.
    let session = closed[0]["session"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    let found = pgmoat::audit::replay::replay(&gw.audit_dir(), &session, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(found);
    assert!(text.contains("-- ssh session"), "{text}");
    assert!(text.contains("channel 0 shell: allow"), "{text}");
    assert!(text.contains("shell-42-marker"), "{text}");
    // The stock player reads the file (`asciinema cat` prints its output events).
    let path = gw.audit_dir().join(&name);
    let played = ssh_env::asciinema_cat(&path).await;
    assert_eq!(played.status, 0, "{played:?}");
    assert!(played.out().contains("shell-42-marker"), "{played:?}");
    // An edited recording fails verify; so does a missing one.
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    std::fs::write(&path, cast.replace("shell-42-marker", "shell-41-marker")).unwrap();
    let bad = pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .unwrap_err();
    assert!(bad.reason.contains("was changed"), "{bad:?}");
    std::fs::remove_file(&path).unwrap();
    let bad = pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .unwrap_err();
    assert!(bad.reason.contains(&name), "{bad:?}");
    gw.shutdown().await;
}

/// Binary output (not UTF-8) is not escaped into the recording byte by byte: the cast
/// gets one readable marker for the run, and the `ssh_channel` record the count and
/// SHA-256 of the raw bytes sshd sent, so the output can be proven; the file still
/// plays and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_output_is_recorded_as_a_marker_with_its_count_and_hash() {
    let gw = start(RULES).await;
    let r = ssh(
        &gw,
        &keys().agent,
        AGENT,
        &[],
        Some("head -c 3000000 /dev/urandom"),
        None,
    )
    .await;
    assert_eq!((r.status, r.stdout.len()), (0, 3_000_000), "{}", r.stderr);
    let closed: Vec<_> = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["phase"] == "closed")
        .collect();
    assert_eq!(closed[0]["bytes_out"], 3_000_000);
    assert_eq!(closed[0]["output_bytes"], 3_000_000);
    let want = pgmoat::audit::record::hex(&<sha2::Sha256 as sha2::Digest>::digest(&r.stdout));
    assert_eq!(closed[0]["output_sha256"], want.as_str());
    assert_eq!(closed[0]["input_bytes"], 0);
    let name = closed[0]["recording"].as_str().expect("recording");
    let path = gw.audit_dir().join(name);
    let cast = std::fs::read_to_string(&path).expect("a UTF-8 file");
    let output: Vec<String> = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().expect("text").to_owned())
        .collect();
    // Every packet of random bytes is binary (none is valid UTF-8 at these sizes):
    // one run, one marker.
    assert_eq!(
        output,
        ["[pgmoat: 3000000 bytes of binary output]\r\n"],
        "{cast:.2000}"
    );
    assert!(cast.len() < 1000, "{} bytes of cast", cast.len());
    assert_eq!(
        sha256(&path),
        closed[0]["recording_sha256"].as_str().unwrap()
    );
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    let played = ssh_env::asciinema_cat(&path).await;
    assert_eq!(played.status, 0, "{}", played.stderr);
    assert!(
        played.out().contains("3000000 bytes of binary output"),
        "{played:?}"
    );
    gw.shutdown().await;
}

fn sha256(path: &std::path::Path) -> String {
    pgmoat::audit::ssh::sha256_file(path).expect("hash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scp_and_sftp_move_100_mib_both_ways_byte_exact() {
    let gw = start(RULES).await;
    let local = crate::harness::TempDir::new("pgmoat-ssh-scp");
    let src = local.path().join("src.bin");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&src).unwrap();
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..100 {
            rand::Rng::fill(&mut rand::thread_rng(), &mut block[..]);
            f.write_all(&block).unwrap();
        }
    }
    let remote = format!("up-{:08x}.bin", rand::random::<u32>());
    let back = local.path().join("back.bin");
    ssh_env::scp_up_and_down(&gw, AGENT, &src, &remote, &back).await;
    assert_eq!(sha256(&src), sha256(&gw.upstream.home.join(&remote)));
    assert_eq!(sha256(&src), sha256(&back));
    // The audit records prove which file passed: the data written up, then read down.
    let scps: Vec<_> = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["request"] == "subsystem" && c["phase"] == "closed")
        .collect();
    assert_eq!(scps[0]["input_sha256"], sha256(&src).as_str(), "{scps:?}");
    assert_eq!(scps[0]["input_bytes"], 100 << 20);
    assert_eq!(scps[1]["output_sha256"], sha256(&src).as_str(), "{scps:?}");
    assert_eq!(scps[1]["output_bytes"], 100 << 20);
    // sftp, batch mode.
    let mut args = vec![
        "-P".to_string(),
        gw.ssh.port().to_string(),
        "-b".into(),
        "-".into(),
    ];
    args.extend(ssh_env::client_opts(&keys().agent));
    args.push(format!("{AGENT}@127.0.0.1"));
    let r = ssh_env::client(
        "sftp",
        &args,
        Some(format!("ls {remote}\nrm {remote}\n").as_bytes()),
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains(&remote), "{r:?}");
    assert!(!gw.upstream.home.join(&remote).exists());
    let subsystems = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["request"] == "subsystem" && c["phase"] == "closed")
        .count();
    assert_eq!(subsystems, 3);
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_show_in_metrics() {
    let gw = start(RULES).await;
    let r = ssh(&gw, &keys().agent, AGENT, &[], Some("true"), None).await;
    assert_eq!(r.status, 0, "{r:?}");
    let r = ssh(&gw, &keys().agent, AGENT, &[], Some("rm -rf /"), None).await;
    assert_blocked(&r, "no-rm-rf");
    let (_, metrics) = crate::harness::http_get(gw.admin, "/metrics").await;
    assert!(
        metrics.contains("pgmoat_ssh_sessions_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgmoat_ssh_channels_total{action=\"block\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pgmoat_ssh_channels_total{action=\"allow\"} 1\n"),
        "{metrics}"
    );
    gw.shutdown().await;
}

/// A russh client: accepts any gateway host key (the tests do not pin it).
pub struct AnyHost;

impl russh::client::Handler for AnyHost {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Run `command` on a new channel of `handle`: (stdout, stderr, exit status).
pub async fn exec_on(
    handle: &russh::client::Handle<AnyHost>,
    command: &str,
) -> (String, String, Option<u32>) {
    let mut ch = handle.channel_open_session().await.expect("channel");
    ch.exec(true, command).await.expect("exec");
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = ch.wait().await {
        match msg {
            russh::ChannelMsg::Data { data } => out.extend_from_slice(&data),
            russh::ChannelMsg::ExtendedData { data, .. } => err.extend_from_slice(&data),
            russh::ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            russh::ChannelMsg::Close => break,
            _ => {}
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_channel_leaves_the_connection_usable() {
    let gw = start(RULES).await;
    let key = russh::keys::load_secret_key(&keys().agent, None).expect("agent key");
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, gw.ssh, AnyHost)
        .await
        .expect("connect");
    let auth = handle
        .authenticate_publickey(
            AGENT,
            russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None),
        )
        .await
        .expect("auth");
    assert!(auth.success());
    let (out, err, status) = exec_on(&handle, "rm -rf /tmp/never").await;
    assert_eq!((out.as_str(), status), ("", Some(126)));
    assert_eq!(
        err,
        "pgmoat: blocked by rule \"no-rm-rf\": Deleting trees goes through a ticket.\n"
    );
    let (out, _, status) = exec_on(&handle, "echo still-here").await;
    assert_eq!((out.as_str(), status), ("still-here\n", Some(0)));
    // Two channels at once on the one upstream connection.
    let (a, b) = tokio::join!(exec_on(&handle, "echo one"), exec_on(&handle, "echo two"));
    assert_eq!((a.0.as_str(), b.0.as_str()), ("one\n", "two\n"));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_users_password_logs_in_and_a_wrong_one_is_audited() {
    let gw = start(RULES).await;
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config.clone(), gw.ssh, AnyHost)
        .await
        .expect("connect");
    let auth = handle
        .authenticate_password(AGENT, "wrong-password")
        .await
        .expect("auth exchange");
    assert!(!auth.success());
    let auth = handle
        .authenticate_password(AGENT, "agent-secret-1")
        .await
        .expect("auth exchange");
    assert!(auth.success());
    let (out, _, status) = exec_on(&handle, "echo by-password").await;
    assert_eq!((out.as_str(), status), ("by-password\n", Some(0)));
    let starts = gw.records_of("ssh_session_start");
    assert_eq!(starts[0]["auth"], "password");
    let failures = gw.records_of("auth_failure");
    assert!(
        failures.iter().any(|f| f["user"] == "agent-1"),
        "{failures:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_sessions_are_listed_and_an_operator_can_terminate_one() {
    let gw = start(RULES).await;
    let key = keys().agent.clone();
    let port = gw.ssh.port();
    let task = tokio::spawn(async move {
        let mut args = vec!["-p".to_string(), port.to_string()];
        args.extend(ssh_env::client_opts(&key));
        args.push(format!("{AGENT}@127.0.0.1"));
        args.push("sleep 120".into());
        ssh_env::client("ssh", &args, None).await
    });
    let admin = gw.admin;
    let session = wait_for("the ssh session running its command", Duration::from_secs(20), || async move {
        let (_, body) = http(
            admin,
            &format!("GET /api/v1/sessions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n"),
        )
        .await;
        let list: Vec<serde_json::Value> = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        list.into_iter()
            .find(|s| s["protocol"] == "ssh" && s["running"] == "sleep 120")
            .ok_or_else(|| body.clone())
    })
    .await;
    assert_eq!(session["identity"], "agent-1");
    assert_eq!(session["target"], "web-1");
    assert_eq!(session["statements"], 1);
    let path = format!(
        "/api/v1/sessions/{}/terminate",
        session["id"].as_str().unwrap()
    );
    let (code, body) = http_post(gw.admin, &path, Some(ADMIN_TOKEN), "").await;
    assert_eq!(code, 200, "{body}");
    let r = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the terminated session ends at once")
        .unwrap();
    assert_eq!(r.status, 255, "{r:?}");
    let ends = wait_for("ssh_session_end", Duration::from_secs(20), || async {
        let ends = gw.records_of("ssh_session_end");
        if ends.is_empty() {
            Err("none yet".to_string())
        } else {
            Ok(ends)
        }
    })
    .await;
    assert_eq!(ends[0]["end"], "terminated by an operator", "{ends:?}");
    gw.shutdown().await;
}

/// Review H6/H7: wrapper options, shell options and a shell started by an exec line
/// do not dodge the rules, and a shell an exec starts has its input recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapped_commands_and_exec_shells_are_judged_as_what_they_run() {
    let rules = format!(
        "{RULES}  - id: shells-need-a-person
    when: {{ ssh_shell: true, users: [agent-1] }}
    action: block
"
    );
    let gw = start(&rules).await;
    let mark = marker("wrapped");
    for line in [
        format!("sudo -u root rm -rf {}", mark.display()),
        format!("/bin/rm -rf {}", mark.display()),
        format!("timeout 5 rm -rf {}", mark.display()),
        format!("bash --norc -c 'rm -rf {}'", mark.display()),
        format!("sh -c -e 'rm -rf {}'", mark.display()),
    ] {
        // Owned by the upstream's login user: had the command run, it would be gone.
        std::fs::create_dir_all(&mark).unwrap();
        let owned = std::process::Command::new("chown")
            .arg(crate::common::sshd::USER)
            .arg(&mark)
            .status()
            .unwrap();
        assert!(owned.success());
        let r = ssh(&gw, &keys().agent, AGENT, &[], Some(&line), None).await;
        assert_blocked(&r, "no-rm-rf");
        assert!(mark.exists(), "{line:?} reached the upstream");
    }
    let r = ssh(
        &gw,
        &keys().agent,
        AGENT,
        &[],
        Some(&format!("rmdir {}", mark.display())),
        None,
    )
    .await;
    assert_eq!(
        r.status, 0,
        "the marker is removable by the login user: {r:?}"
    );
    assert!(!mark.exists());
    // A shell the exec line starts is a shell to the rules.
    for line in ["bash -i", "sh", "sudo -s"] {
        let r = ssh(&gw, &keys().agent, AGENT, &[], Some(line), Some(b"id\n")).await;
        assert_blocked(&r, "shells-need-a-person");
    }
    // Piped code into a shell cannot be read: unanalysable, refused.
    let r = ssh(&gw, &keys().agent, AGENT, &[], Some("echo id | sh"), None).await;
    assert_eq!(r.status, 126, "{r:?}");
    assert_blocked(&r, "unanalysable");
    gw.shutdown().await;

    // Where shells are allowed, the input of an exec'd shell is in the recording.
    let gw = start(RULES).await;
    let r = ssh(
        &gw,
        &keys().agent,
        AGENT,
        &[],
        Some("bash -s"),
        Some(b"echo typed-$((6*7))-input\n"),
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.out().contains("typed-42-input"), "{r:?}");
    let closed: Vec<_> = gw
        .records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["phase"] == "closed")
        .collect();
    let name = closed[0]["recording"]
        .as_str()
        .expect("recording")
        .to_string();
    let cast = std::fs::read_to_string(gw.audit_dir().join(&name)).unwrap();
    let input: String = cast
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e[1] == "i")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect();
    assert!(input.contains("echo typed-$((6*7))-input"), "{input:?}");
    gw.shutdown().await;
}

/// Review M1: a channel that streams input and never says what it wants is closed
/// once it passes the bound; the connection and the gateway go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_before_any_request_is_bounded() {
    let gw = start(RULES).await;
    let config = std::sync::Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, gw.ssh, AnyHost)
        .await
        .expect("connect");
    let auth = handle
        .authenticate_password(AGENT, "agent-secret-1")
        .await
        .expect("auth exchange");
    assert!(auth.success());
    let mut ch = handle.channel_open_session().await.expect("channel");
    let chunk = vec![b'x'; 32 * 1024];
    let ended = tokio::time::timeout(crate::harness::WAIT_LIMIT, async {
        // 1.5 MiB (inside the 2 MiB window) and no exec: pgmoat ends the channel
        // past 1 MiB.
        for _ in 0..48 {
            if ch.data(&chunk[..]).await.is_err() {
                return true;
            }
        }
        while let Some(msg) = ch.wait().await {
            if matches!(msg, russh::ChannelMsg::Close | russh::ChannelMsg::Eof) {
                return true;
            }
        }
        true
    })
    .await;
    assert_eq!(ended, Ok(true), "the channel was not ended");
    let (out, _, status) = exec_on(&handle, "echo still-serving").await;
    assert_eq!((out.as_str(), status), ("still-serving\n", Some(0)));
    gw.shutdown().await;
}
