use super::*;

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pgmoat-cast-{}", rand::random::<u64>()))
}

fn opts(sftp: bool, max_bytes: u64) -> CastOptions<'static> {
    CastOptions {
        size: (80, 24),
        term: Some("xterm"),
        title: "t",
        sftp,
        max_bytes,
    }
}

fn sha(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The cast's events, as (kind, text).
fn events(dir: &Path, name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (e[1].as_str().unwrap().into(), e[2].as_str().unwrap().into())
        })
        .collect()
}

fn pairs(want: &[(&str, &str)]) -> Vec<(String, String)> {
    want.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn text_is_recorded_exactly_and_binary_as_one_marker_per_run() {
    let dir = temp_dir();
    let mut r = Recorder::create(&dir, "s1", 0, &opts(false, 1 << 20)).unwrap();
    let euro = "€".as_bytes();
    let mut out = Vec::new();
    let mut send = |r: &mut Recorder, b: &[u8]| {
        out.extend_from_slice(b);
        r.output(b).unwrap();
    };
    send(&mut r, b"hello \x1b[1m\"q\"\\ ");
    // A character split across two packets is recorded whole.
    send(&mut r, &euro[..1]);
    send(&mut r, &euro[1..]);
    r.input(b"ls\r").unwrap();
    r.resize(100, 30).unwrap();
    // Binary chunks in a row: one marker with their total.
    send(&mut r, &[0xff, b'x', 0x00]);
    send(&mut r, &[0x80; 1000]);
    send(&mut r, &[b'a', 0xc3]);
    send(&mut r, b"text again\n");
    r.input(&[0xfe, 0xff]).unwrap();
    // An unfinished character at the end is binary, not lost.
    send(&mut r, &euro[..2]);
    let done = r.finish().unwrap();
    assert_eq!(done.name, "recordings/s1-0.cast");
    assert_eq!(
        done.sha256,
        crate::audit::ssh::sha256_file(&dir.join(&done.name)).unwrap()
    );
    assert_eq!(
        done.output,
        StreamDigest {
            bytes: out.len() as u64,
            sha256: sha(&out)
        }
    );
    assert_eq!(done.input.bytes, 5);
    assert_eq!(done.input.sha256, sha(b"ls\r\xfe\xff"));
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(dir.join(&done.name))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (header["version"].as_u64(), header["env"]["TERM"].as_str()),
        (Some(2), Some("xterm"))
    );
    assert_eq!(
        events(&dir, &done.name),
        pairs(&[
            ("o", "hello \u{1b}[1m\"q\"\\ "),
            ("o", "€"),
            ("i", "ls\r"),
            ("r", "100x30"),
            ("o", "[pgmoat: 1003 bytes of binary output]\r\n"),
            ("o", "a"),
            // The carried lead byte, not continued, is binary; what follows is text.
            ("o", "[pgmoat: 1 bytes of binary output]\r\n"),
            ("o", "text again\n"),
            ("o", "[pgmoat: 2 bytes of binary output]\r\n"),
            ("i", "[pgmoat: 2 bytes of binary input]\r\n"),
        ])
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// However the packets cut a text stream, the recorded text is the stream.
#[test]
fn packet_boundaries_do_not_change_recorded_text() {
    let dir = temp_dir();
    let text: String = (0..5000)
        .map(|i| ["a", "é", "€", "😀", "\n", "\u{1b}"][i % 6])
        .collect();
    for round in 0..20u32 {
        let bytes = text.as_bytes();
        let mut r = Recorder::create(&dir, "s", round, &opts(false, 1 << 30)).unwrap();
        let mut at = 0;
        while at < bytes.len() {
            let n = (1 + rand::random::<usize>() % 40).min(bytes.len() - at);
            r.output(&bytes[at..at + n]).unwrap();
            at += n;
        }
        let done = r.finish().unwrap();
        let recorded: String = events(&dir, &done.name)
            .into_iter()
            .map(|(k, t)| {
                assert_eq!(k, "o");
                t
            })
            .collect();
        assert_eq!(recorded, text, "round {round}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn past_the_cap_output_is_counted_and_hashed_only() {
    let dir = temp_dir();
    let mut r = Recorder::create(&dir, "s", 0, &opts(false, 200)).unwrap();
    let mut all = Vec::new();
    for i in 0..50 {
        let line = format!("line {i}\n");
        all.extend_from_slice(line.as_bytes());
        r.output(line.as_bytes()).unwrap();
    }
    let done = r.finish().unwrap();
    assert_eq!(done.output.bytes, all.len() as u64);
    assert_eq!(done.output.sha256, sha(&all));
    let ev = events(&dir, &done.name);
    let texts: Vec<&str> = ev.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts[0], "line 0\n");
    let cap = texts
        .iter()
        .position(|t| t.contains("recording cap of 200 bytes reached"))
        .expect("a cap marker");
    // Nothing recorded past the cap but the closing note, which counts the rest.
    assert_eq!(texts.len(), cap + 2, "{texts:?}");
    let recorded: usize = texts[..cap].iter().map(|t| t.len()).sum();
    let after = all.len() - recorded;
    assert!(
        texts[cap + 1].contains(&format!("{after} more bytes of output")),
        "{texts:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// An sftp packet: length, type, id, then `fields`.
fn packet(kind: u8, id: u32, fields: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(&id.to_be_bytes());
    for f in fields {
        body.extend_from_slice(f);
    }
    let mut p = (body.len() as u32).to_be_bytes().to_vec();
    p.extend_from_slice(&body);
    p
}

fn s(bytes: &[u8]) -> Vec<u8> {
    let mut v = (bytes.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

fn u32b(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn status(id: u32, code: u32) -> Vec<u8> {
    packet(101, id, &[&u32b(code), &s(b""), &s(b"")])
}

/// Client and server sides of a session that uploads a file, reads it back, and
/// changes a few names, in the order they would pass.
fn session() -> (Vec<(bool, Vec<u8>)>, Vec<u8>) {
    let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let h = s(b"H1");
    let mut p: Vec<(bool, Vec<u8>)> = vec![
        (true, {
            let mut v = (5u32).to_be_bytes().to_vec();
            v.extend_from_slice(&[1, 0, 0, 0, 3]);
            v
        }),
        (false, {
            let mut v = (5u32).to_be_bytes().to_vec();
            v.extend_from_slice(&[2, 0, 0, 0, 3]);
            v
        }),
        // open ~/.ssh/authorized_keys for writing (write|create|truncate), no attrs
        (
            true,
            packet(3, 1, &[&s(b".ssh/authorized_keys"), &u32b(0x1a), &u32b(0)]),
        ),
        (false, packet(102, 1, &[&h])),
    ];
    for (i, part) in data.chunks(32_768).enumerate() {
        let id = 10 + i as u32;
        let off = (i as u64 * 32_768).to_be_bytes();
        p.push((true, packet(6, id, &[&h, &off, &s(part)])));
        p.push((false, status(id, 0)));
    }
    p.push((true, packet(4, 20, &[&h])));
    p.push((false, status(20, 0)));
    // read it back
    p.push((
        true,
        packet(3, 21, &[&s(b".ssh/authorized_keys"), &u32b(1), &u32b(0)]),
    ));
    p.push((false, packet(102, 21, &[&s(b"H2")])));
    p.push((
        true,
        packet(5, 22, &[&s(b"H2"), &0u64.to_be_bytes(), &u32b(1 << 20)]),
    ));
    p.push((false, packet(103, 22, &[&s(&data[..1000])])));
    p.push((
        true,
        packet(5, 23, &[&s(b"H2"), &1000u64.to_be_bytes(), &u32b(1 << 20)]),
    ));
    p.push((false, status(23, 1)));
    p.push((true, packet(4, 24, &[&s(b"H2")])));
    p.push((false, status(24, 0)));
    p.push((true, packet(13, 30, &[&s(b"gone.txt")])));
    p.push((
        false,
        packet(101, 30, &[&u32b(2), &s(b"No such file"), &s(b"")]),
    ));
    p.push((true, packet(18, 31, &[&s(b"a"), &s(b"b\x1b[2J")])));
    p.push((false, status(31, 0)));
    p.push((true, packet(14, 32, &[&s(b"dir"), &u32b(4), &u32b(0o700)])));
    p.push((false, status(32, 0)));
    p.push((true, packet(9, 33, &[&s(b"f"), &u32b(4), &u32b(0o100600)])));
    p.push((false, status(33, 3)));
    p.push((true, packet(20, 34, &[&s(b"/etc/passwd"), &s(b"link")])));
    p.push((false, status(34, 0)));
    // Written out of order: counted, no hash claimed for the file.
    p.push((
        true,
        packet(3, 40, &[&s(b"ooo.bin"), &u32b(0x1a), &u32b(0)]),
    ));
    p.push((false, packet(102, 40, &[&s(b"H3")])));
    p.push((
        true,
        packet(6, 41, &[&s(b"H3"), &10u64.to_be_bytes(), &s(&data[..10])]),
    ));
    p.push((
        true,
        packet(6, 42, &[&s(b"H3"), &0u64.to_be_bytes(), &s(&data[..10])]),
    ));
    p.push((false, status(41, 0)));
    p.push((false, status(42, 0)));
    p.push((true, packet(4, 43, &[&s(b"H3")])));
    p.push((false, status(43, 0)));
    (p, data)
}

fn session_lines(data: &[u8]) -> Vec<String> {
    let (all, head) = (sha(data), sha(&data[..1000]));
    [
        "sftp: open \".ssh/authorized_keys\" (write,create,truncate): ok\r\n".to_string(),
        format!("sftp: close \".ssh/authorized_keys\", 70000 bytes written (sha256 {all}): ok\r\n"),
        "sftp: open \".ssh/authorized_keys\" (read): ok\r\n".to_string(),
        format!("sftp: close \".ssh/authorized_keys\", 1000 bytes read (sha256 {head}): ok\r\n"),
        "sftp: remove \"gone.txt\": no such file (status 2)\r\n".to_string(),
        "sftp: rename \"a\" -> \"b\\u{1b}[2J\": ok\r\n".to_string(),
        "sftp: mkdir \"dir\", mode 0700: ok\r\n".to_string(),
        "sftp: setstat \"f\", mode 0600: permission denied (status 3)\r\n".to_string(),
        "sftp: symlink \"link\" -> \"/etc/passwd\": ok\r\n".to_string(),
        "sftp: open \"ooo.bin\" (write,create,truncate): ok\r\n".to_string(),
        "sftp: close \"ooo.bin\", 20 bytes written (not in order: no sha256): ok\r\n".to_string(),
    ]
    .to_vec()
}

#[test]
fn sftp_channels_record_operations_and_hash_the_file_data() {
    let (packets, data) = session();
    let dir = temp_dir();
    for round in 0..10u32 {
        // Each side's bytes cut at random places, as SSH packets may cut them.
        let mut r = Recorder::create(&dir, "s", round, &opts(true, 1 << 20)).unwrap();
        for (client, p) in &packets {
            let mut at = 0;
            while at < p.len() {
                let n = if round == 0 {
                    p.len()
                } else {
                    (1 + rand::random::<usize>() % 9000).min(p.len() - at)
                };
                if *client {
                    r.input(&p[at..at + n]).unwrap();
                } else {
                    r.output(&p[at..at + n]).unwrap();
                }
                at += n;
            }
        }
        let done = r.finish().unwrap();
        let ev = events(&dir, &done.name);
        let texts: Vec<String> = ev.into_iter().map(|(_, t)| t).collect();
        assert_eq!(texts, session_lines(&data), "round {round}");
        // The channel's hash: every byte of file data written, in the order it passed.
        let written = [&data[..], &data[..10], &data[..10]].concat();
        assert_eq!(done.input.bytes, written.len() as u64);
        assert_eq!(done.input.sha256, sha(&written));
        assert_eq!(done.output.bytes, 1000);
        assert_eq!(done.output.sha256, sha(&data[..1000]));
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_stream_that_is_not_sftp_is_noted_and_only_hashed() {
    let dir = temp_dir();
    let mut r = Recorder::create(&dir, "s", 0, &opts(true, 1 << 20)).unwrap();
    let (packets, _) = session();
    r.input(&packets[2].1).unwrap();
    r.input(b"\xff\xff\xff\xffgarbage").unwrap();
    r.output(b"more").unwrap();
    let done = r.finish().unwrap();
    let ev = events(&dir, &done.name);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(ev[0].1.contains("not understood"), "{ev:?}");
    assert_eq!(done.input.sha256, sha(b"\xff\xff\xff\xffgarbage"));
    assert_eq!(done.output.sha256, sha(b"more"));
    let _ = std::fs::remove_dir_all(dir);
}

/// Garbage, cut and mutated packets: never a panic, memory bounded.
#[test]
fn sftp_decoder_survives_garbage() {
    let (packets, _) = session();
    for round in 0..300 {
        let mut d = sftp::Decoder::default();
        for (client, p) in &packets {
            let mut p = p.clone();
            if rand::random::<u8>() < 40 {
                let i = rand::random::<usize>() % p.len();
                p[i] = rand::random();
            }
            if round % 3 == 0 {
                p.truncate(rand::random::<usize>() % (p.len() + 1));
            }
            if *client {
                d.client(&p);
            } else {
                d.server(&p);
            }
            let _ = d.take_lines();
        }
        let junk: Vec<u8> = (0..rand::random::<usize>() % 4000)
            .map(|_| rand::random())
            .collect();
        d.server(&junk);
        d.finish();
        let _ = d.take_lines();
        let _ = d.into_digests();
    }
}

/// A client pipelining opens of huge names holds a bounded amount of pgmoat's memory:
/// names are cut, and past the limit of outstanding requests the stream is only
/// hashed.
#[test]
fn sftp_requests_in_flight_are_bounded() {
    let mut d = sftp::Decoder::default();
    let long = vec![b'a'; 200_000];
    let mut size = 0;
    for id in 0..2000u32 {
        let p = packet(3, id, &[&s(&long), &u32b(1), &u32b(0)]);
        size = p.len() as u64;
        d.client(&p);
    }
    let lines = d.take_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("too many outstanding requests"),
        "{lines:?}"
    );
    // The server's answers are counted and hashed from then on, not read.
    d.server(&packet(102, 1, &[&s(b"H")]));
    assert!(!d.has_lines());
    let [written, read] = d.into_digests();
    // From the first request not followed (the 1025th) on.
    assert_eq!(written.bytes, (2000 - 1024) * size);
    assert_eq!(read.bytes, 14);
}
