//! Bad input ends only the session that sent it; limits and shutdown behave.

use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Read until EOF; return the messages seen.
async fn drain(raw: &mut Raw) -> Vec<Msg> {
    let mut out = Vec::new();
    while let Some(m) = raw.read().await {
        out.push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_one_client_does_not_disturb_another() {
    let (_pg, gw) = start().await;
    let good = gw.connect().await;
    let worker = tokio::spawn(async move {
        for i in 0..300i32 {
            let row = good.query_one("SELECT $1::int * 2", &[&i]).await.unwrap();
            assert_eq!(row.get::<_, i32>(0), i * 2);
        }
    });
    // Garbage after login: an unknown message type, then a nonsense length.
    for junk in [
        &b"\x01\x02\x03\x04\x05\x06\x07\x08garbage"[..],
        &b"Q\xff\xff\xff\xfe"[..],
        &b"Q\x00\x00\x00\x02"[..],
    ] {
        let mut bad = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
        bad.send(junk).await;
        let msgs = drain(&mut bad).await;
        let fatal = msgs
            .iter()
            .find(|m| m.tag == b'E')
            .expect("FATAL before close");
        assert_eq!(fatal.field(b'C'), "08P01", "{junk:?}");
    }
    // Garbage instead of a startup packet.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0u8, 0, 0, 2][..],
        &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0][..],
    ] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(buf.is_empty() || buf[0] == b'E', "{junk:?} -> {buf:?}");
    }
    worker.await.unwrap();
    // Still serving.
    gw.connect().await.simple_query("SELECT 1").await.unwrap();
    assert!(
        gw.metrics
            .protocol_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused_before_buffering() {
    let (_pg, gw) =
        start_with("limits:\n  max_message_bytes: 4096\n  max_statement_bytes: 4096\n").await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    // Claims 512 MiB and sends only the header: refused at once, not after 512 MiB.
    raw.send(&[b'Q', 0x20, 0, 0, 0]).await;
    let msgs = drain(&mut raw).await;
    let fatal = msgs.iter().find(|m| m.tag == b'E').expect("FATAL");
    assert_eq!(fatal.field(b'C'), "08P01");
    assert!(
        fatal.field(b'M').contains("too long"),
        "{}",
        fatal.field(b'M')
    );
    // Over the configured cap.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut out = BytesMut::new();
    frontend::query(&format!("SELECT '{}'", "x".repeat(10_000)), &mut out).unwrap();
    raw.send(&out).await;
    let msgs = drain(&mut raw).await;
    assert_eq!(
        msgs.iter().find(|m| m.tag == b'E').unwrap().field(b'C'),
        "08P01"
    );
    // Large data messages stream: a 1 MiB value still arrives under a 4 KiB cap on queries.
    let c = gw.connect().await;
    let row = c
        .query_one("SELECT repeat('y', 1048576)", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0).len(), 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_call_is_refused_in_protocol_order() {
    let (_pg, gw) = start().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    // FunctionCall for OID 1242 (boolin) with one text argument.
    let mut body = Vec::new();
    body.extend_from_slice(&1242i32.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.push(b't');
    body.extend_from_slice(&0i16.to_be_bytes());
    let call = message(b'F', &body);
    // Pipelined behind a slow query and in front of another: the refusal must come
    // after the first result and before the second. (The pg_sleep is part of what is
    // tested: a refusal answered at once would overtake the slow first result.)
    let mut batch = BytesMut::new();
    frontend::query("SELECT 'first', pg_sleep(0.2)", &mut batch).unwrap();
    batch.extend_from_slice(&call);
    frontend::query("SELECT 'second'", &mut batch).unwrap();
    raw.send(&batch).await;
    let first = raw.until_ready().await;
    assert_eq!(tags(&first), "TDCZ");
    let refused = raw.until_ready().await;
    assert_eq!(tags(&refused), "EZ");
    assert_eq!(refused[0].field(b'C'), "42501");
    assert!(refused[0].field(b'M').contains("FunctionCall"));
    let second = raw.until_ready().await;
    assert_eq!(tags(&second), "TDCZ");
    assert!(String::from_utf8_lossy(&second[1].body).contains("second"));
    // Inside a transaction the status stays true to the server.
    assert_eq!(status(&raw.query("BEGIN").await), b'T');
    raw.send(&call).await;
    let refused = raw.until_ready().await;
    assert_eq!(status(&refused), b'T');
    assert_eq!(status(&raw.query("COMMIT").await), b'I');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_requests_and_newer_protocol_versions() {
    let (_pg, gw) = start().await;
    // GSSENCRequest: 'N', then a normal login on the same socket.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
    // SSLRequest without TLS configured: 'N'.
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"N");
    // Bytes pushed behind an SSLRequest are refused (CVE-2021-23222).
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut out = BytesMut::new();
    frontend::ssl_request(&mut out);
    frontend::startup_message(
        [("user", AGENT), ("database", "demo")].into_iter(),
        &mut out,
    )
    .unwrap();
    s.write_all(&out).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert_eq!(buf.first(), Some(&b'E'), "{buf:?}");
    // Protocol 3.2 with a _pq_ option: NegotiateProtocolVersion, then a working session.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(&((3 << 16) | 2i32).to_be_bytes());
    for kv in ["user", AGENT, "database", "demo", "_pq_.test_option", "1"] {
        body.extend_from_slice(kv.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    s.write_all(&pkt).await.unwrap();
    let mut head = [0u8; 5];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'v', "NegotiateProtocolVersion first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_refuses_with_53300() {
    let (_pg, gw) = start_with("limits:\n  max_connections: 2\n").await;
    let a = gw.connect().await;
    let b = gw.connect().await;
    let e = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap_err();
    assert_eq!(sqlstate(&e), "53300");
    drop(a);
    // The slot comes back once the session ends. (The gateway counts a session out
    // just before it gives back its slot, so a connect in between may still meet
    // 53300: only that is retried.)
    gw.wait_sessions(1).await;
    let gw = &gw;
    let c = wait_for("a freed slot to be reusable", WAIT_LIMIT, || async move {
        match gw.connect_as(AGENT, AGENT_PW, "demo").await {
            Ok(c) => Ok(c),
            Err(e) if sqlstate(&e) == "53300" => Err(format!("{e:?}")),
            Err(e) => panic!("connect: {e:?}"),
        }
    })
    .await;
    c.simple_query("SELECT 1").await.unwrap();
    b.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_statements_finish() {
    let (pg, mut gw) = start_with("limits:\n  shutdown_grace: 20s\n").await;
    let busy = gw.connect().await;
    let mut idle = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    // Idle after some traffic: its relay loop has been round several times (the
    // shutdown signal is polled once and then only when it changed).
    for _ in 0..3 {
        let msgs = idle.query("SELECT 1").await;
        assert!(msgs.iter().any(|m| m.tag == b'Z'));
    }
    // It must still be running while the shutdown is checked below: 1.5 s is the
    // statement's length, not a wait for something.
    const SLOW: &str = "SELECT 'done', pg_sleep(1.5) -- graceful shutdown";
    let running = tokio::spawn(async move { busy.simple_query(SLOW).await });
    wait_running(pg, SLOW).await;
    let addr = gw.addr;
    let done = gw.begin_shutdown();
    // The idle session is told why it is closed.
    let msgs = drain(&mut idle).await;
    let fatal = msgs
        .iter()
        .find(|m| m.tag == b'E')
        .expect("idle session gets a FATAL");
    assert_eq!(fatal.field(b'C'), "57P01");
    // New connections are refused once shutdown has begun: the listener is closed
    // before sessions hear of the shutdown, so by the FATAL above it is gone.
    let e = TcpStream::connect(addr).await.expect_err("listener closed");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    // The running statement completes with its result.
    let result = running.await.unwrap().expect("statement finished");
    assert!(result.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("done"))
    ));
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_health_and_metrics() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    c.simple_query("SELECT 1").await.unwrap();
    c.query("SELECT $1::int", &[&1i32]).await.unwrap();
    let admin = gw.admin.expect("admin listener");
    let (code, body) = http_get(admin, "/healthz").await;
    assert_eq!(code, 200);
    assert_eq!(body.trim(), "ok");
    let (code, body) = http_get(admin, "/metrics").await;
    assert_eq!(code, 200);
    for name in [
        "pgmoat_connections_total 1",
        "pgmoat_connections_active 1",
        "pgmoat_statements_total{protocol=\"simple\"} 1",
        "pgmoat_statements_total{protocol=\"extended\"} 1",
        "pgmoat_bytes_total{direction=\"client_to_server\"}",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    let (code, _) = http_get(admin, "/api/v1/approvals").await;
    assert_eq!(code, 401, "the API needs the bearer token");
}

fn pgbench(pg: &crate::common::pg::TestPg, port: u16, args: &[&str]) -> String {
    let out = Command::new(pg.bindir().join("pgbench"))
        .env("PGPASSWORD", AGENT_PW)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", AGENT])
        .args(args)
        .arg("demo")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pgbench {args:?} failed:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_gateway() {
    let (pg, gw) = start().await;
    let port = gw.addr.port();
    pgbench(pg, port, &["-i", "-s", "1", "-q"]);
    for mode in ["simple", "extended", "prepared"] {
        let text = pgbench(
            pg,
            port,
            &["-n", "-S", "-c", "4", "-j", "2", "-t", "200", "-M", mode],
        );
        assert!(
            text.contains("number of transactions actually processed: 800/800"),
            "{mode}: {text}"
        );
        assert!(
            text.contains("number of failed transactions: 0"),
            "{mode}: {text}"
        );
    }
    let text = pgbench(pg, port, &["-n", "-c", "2", "-t", "50"]);
    assert!(text.contains("actually processed: 100/100"), "{text}");
}
