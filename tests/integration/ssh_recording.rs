//! What an SSH channel's recording and its `ssh_channel` record hold, as an auditor
//! reads them: text exactly, binary as a marker with the raw bytes' count and SHA-256,
//! exec input too, a cap on the cast, and sftp/scp as file operations with paths.

use crate::ssh_env::{self, keys, ssh, start, start_opts, SshGateway};

const AGENT: &str = "agent-1+web-1";
const RULES: &str = "rules: []\n";

fn sha_hex(bytes: &[u8]) -> String {
    pgmoat::audit::record::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes))
}

fn closed_channels(gw: &SshGateway) -> Vec<serde_json::Value> {
    gw.records_of("ssh_channel")
        .into_iter()
        .filter(|c| c["phase"] == "closed")
        .collect()
}

/// A recording's events, as (kind, text).
fn events(gw: &SshGateway, record: &serde_json::Value) -> Vec<(String, String)> {
    let name = record["recording"].as_str().expect("recording named");
    let cast = std::fs::read_to_string(gw.audit_dir().join(name)).expect("recording");
    cast.lines()
        .skip(1)
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            (
                e[1].as_str().unwrap().to_owned(),
                e[2].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn joined(events: &[(String, String)], kind: &str) -> String {
    events
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, t)| t.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_text_is_recorded_exactly_and_input_counted_hashed_and_recorded() {
    let gw = start(RULES).await;
    let key = &keys().agent;
    let r = ssh(
        &gw,
        key,
        AGENT,
        &[],
        Some(r#"printf 'caf\303\251 \342\202\254 tab\there "q" \\ \033[1mbold\033[0m\n'; tr a-z A-Z"#),
        Some(b"piped input\n"),
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");
    let want = "café € tab\there \"q\" \\ \u{1b}[1mbold\u{1b}[0m\nPIPED INPUT\n";
    assert_eq!(r.out(), want);
    // Binary input: counted, hashed, one marker.
    let blob: Vec<u8> = (0..100_000).map(|_| rand::random::<u8>() | 0x80).collect();
    let r = ssh(&gw, key, AGENT, &[], Some("cat > /dev/null"), Some(&blob)).await;
    assert_eq!(r.status, 0, "{r:?}");

    let closed = closed_channels(&gw);
    let text = events(&gw, &closed[0]);
    assert_eq!(joined(&text, "o"), want, "{text:?}");
    assert_eq!(joined(&text, "i"), "piped input\n", "{text:?}");
    assert_eq!(closed[0]["input_bytes"], 12);
    assert_eq!(
        closed[0]["input_sha256"],
        sha_hex(b"piped input\n").as_str()
    );
    assert_eq!(closed[0]["output_bytes"], want.len());
    assert_eq!(
        closed[0]["output_sha256"],
        sha_hex(want.as_bytes()).as_str()
    );

    let binary = events(&gw, &closed[1]);
    assert_eq!(
        binary,
        [(
            "i".to_string(),
            "[pgmoat: 100000 bytes of binary input]\r\n".to_string()
        )]
    );
    assert_eq!(closed[1]["input_bytes"], 100_000);
    assert_eq!(closed[1]["input_sha256"], sha_hex(&blob).as_str());
    // Replay shows an exec's input (`>`) beside its output (`|`).
    let session = closed[0]["session"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    assert!(pgmoat::audit::replay::replay(&gw.audit_dir(), &session, &mut out).unwrap());
    let replayed = String::from_utf8(out).unwrap();
    assert!(replayed.contains("  > piped input\n"), "{replayed}");
    assert!(replayed.contains("  | PIPED INPUT\n"), "{replayed}");
    assert!(replayed.contains("  | café € tab\there"), "{replayed}");
    // The escape sequence is shown, not sent to the auditor's terminal.
    assert!(replayed.contains("^[[1mbold^[[0m"), "{replayed}");
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_cap_a_recording_stops_and_the_channel_is_counted_and_hashed() {
    let (gw, _) = start_opts(RULES, "", "  max_recording_bytes: 100000\n").await;
    let r = ssh(&gw, &keys().agent, AGENT, &[], Some("seq 1 200000"), None).await;
    assert_eq!(r.status, 0, "{r:?}");
    let want: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert!(r.out() == want, "the client got {} bytes", r.stdout.len());
    let closed = closed_channels(&gw);
    assert_eq!(closed[0]["output_bytes"], want.len());
    assert_eq!(
        closed[0]["output_sha256"],
        sha_hex(want.as_bytes()).as_str()
    );
    let name = closed[0]["recording"].as_str().unwrap();
    let size = std::fs::metadata(gw.audit_dir().join(name)).unwrap().len();
    // The cap, plus pgmoat's two notes about it.
    assert!(
        size < 101_000,
        "{size} bytes of cast past a 100000-byte cap"
    );
    let ev = events(&gw, &closed[0]);
    let output = joined(&ev, "o");
    // (A packet of output is at most 32 KiB: the first ones fit under the cap.)
    assert!(output.starts_with("1\n2\n3\n"), "{output:.100}");
    assert!(
        output.contains("[pgmoat: recording cap of 100000 bytes reached;"),
        "{output}"
    );
    assert!(
        ev.last().unwrap().1.contains("more bytes of output"),
        "{ev:?}"
    );
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    gw.shutdown().await;
}

/// sftp and scp channels are recorded as the file operations they carried, with
/// paths and the server's answers; replay shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sftp_and_scp_are_recorded_as_file_operations_with_paths() {
    let gw = start(RULES).await;
    let local = crate::harness::TempDir::new("pgmoat-ssh-sftp");
    let src = local.path().join("src.bin");
    let data: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&src, &data).unwrap();
    let back = local.path().join("back.bin");
    let d = format!("ops-{:08x}", rand::random::<u32>());
    let dir = gw.upstream.home.join(&d).display().to_string();
    let batch = format!(
        "mkdir {d}\nput {src} {d}/up.bin\nchmod 600 {d}/up.bin\nrename {d}/up.bin {d}/moved.bin\n\
         get {d}/moved.bin {back}\nls {d}\nrm {d}/moved.bin\nrmdir {d}\n",
        src = src.display(),
        back = back.display()
    );
    let mut args = vec!["-P".to_string(), gw.ssh.port().to_string(), "-b".into()];
    args.push("-".into());
    args.extend(ssh_env::client_opts(&keys().agent));
    args.push(format!("{AGENT}@127.0.0.1"));
    let r = ssh_env::client("sftp", &args, Some(batch.as_bytes())).await;
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // scp both ways (the sftp protocol since OpenSSH 9).
    let remote = format!("scp-{:08x}.bin", rand::random::<u32>());
    ssh_env::scp_up_and_down(&gw, AGENT, &src, &remote, &back).await;
    let _ = std::fs::remove_file(gw.upstream.home.join(&remote));

    let closed = closed_channels(&gw);
    assert_eq!(closed.len(), 3, "{closed:?}");
    let sftp = joined(&events(&gw, &closed[0]), "o");
    let n = data.len();
    let h = sha_hex(&data);
    for line in [
        format!("sftp: mkdir \"{dir}\""),
        format!("sftp: open \"{dir}/up.bin\" (write,create,truncate): ok\r\n"),
        format!("sftp: close \"{dir}/up.bin\", {n} bytes written (sha256 {h}): ok\r\n"),
        format!("sftp: setstat \"{dir}/up.bin\", mode 0600: ok\r\n"),
        format!("sftp: rename \"{dir}/up.bin\" -> \"{dir}/moved.bin\": ok\r\n"),
        format!("sftp: open \"{dir}/moved.bin\" (read): ok\r\n"),
        format!("sftp: close \"{dir}/moved.bin\", {n} bytes read (sha256 {h}): ok\r\n"),
        // `ls` lists the folder as the client names it, `.` and `..` included.
        format!("sftp: list \"{dir}/\": 3 entries: ok\r\n"),
        format!("sftp: remove \"{dir}/moved.bin\": ok\r\n"),
        format!("sftp: rmdir \"{dir}\": ok\r\n"),
    ] {
        assert!(sftp.contains(&line), "{line:?} not in\n{sftp}");
    }
    // The file data, not the protocol bytes, is what the record hashes.
    assert_eq!(closed[0]["input_sha256"], sha_hex(&data).as_str());
    assert_eq!(closed[0]["output_sha256"], sha_hex(&data).as_str());
    // scp names the file as given (relative to the home folder).
    let up_cast = joined(&events(&gw, &closed[1]), "o");
    assert!(
        up_cast.contains(&format!(
            "sftp: close \"{remote}\", {n} bytes written (sha256 {h}): ok"
        )),
        "{up_cast}"
    );
    let down_cast = joined(&events(&gw, &closed[2]), "o");
    assert!(
        down_cast.contains(&format!(
            "sftp: close \"{remote}\", {n} bytes read (sha256 {h}): ok"
        )),
        "{down_cast}"
    );
    assert_eq!(closed[1]["input_sha256"], sha_hex(&data).as_str());
    assert_eq!(closed[2]["output_sha256"], sha_hex(&data).as_str());

    // Replay shows the operations.
    let session = closed[0]["session"].as_str().unwrap().to_string();
    let mut out = Vec::new();
    assert!(pgmoat::audit::replay::replay(&gw.audit_dir(), &session, &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains(&format!(
            "| sftp: rename \"{dir}/up.bin\" -> \"{dir}/moved.bin\": ok"
        )),
        "{text}"
    );
    assert!(pgmoat::audit::verify::verify(&gw.audit_dir(), None, None)
        .unwrap()
        .is_ok());
    gw.shutdown().await;
}
