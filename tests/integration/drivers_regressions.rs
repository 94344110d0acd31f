//! What drivers' own test suites found when run through pgmoat
//! (`benches/driver_suites.sh`): each test here is one of their findings, asserting on
//! what the client sees, next to what Postgres itself does in the same case.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::*;

/// Send `bytes`, close our sending side, and return everything the other end sends
/// back until it closes.
async fn send_then_read_all(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("the connection is closed")
        .ok();
    got
}

/// node-postgres's quick-disconnect test: `client.connect(); client.end()` in one tick.
/// `end()` queues a Terminate before the socket has connected, so it goes out ahead of
/// the StartupMessage: the first four bytes read as a length of 0x58000000. Postgres
/// closes such a connection without a word (it only logs "invalid length of startup
/// packet"), and node-postgres counts on that: a FATAL arriving at a client that has
/// ended is an unhandled `error` event, which kills the process. pgmoat answered
/// FATAL 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_before_startup_closes_silently_like_postgres() {
    let (pg, gw) = start().await;
    let mut bytes = vec![b'X', 0, 0, 0, 4];
    let mut startup = BytesMut::new();
    frontend::startup_message([("user", AGENT), ("database", "demo")], &mut startup).unwrap();
    bytes.extend_from_slice(&startup);

    let direct: SocketAddr = ([127, 0, 0, 1], pg.port).into();
    let from_postgres = send_then_read_all(direct, &bytes).await;
    assert_eq!(from_postgres, b"", "Postgres itself answers nothing");
    let from_pgmoat = send_then_read_all(gw.addr, &bytes).await;
    assert_eq!(
        String::from_utf8_lossy(&from_pgmoat),
        "",
        "pgmoat answers what Postgres answers: nothing"
    );

    // The same for a length too short to be a startup packet.
    let short = [0u8, 0, 0, 4];
    assert_eq!(send_then_read_all(direct, &short).await, b"");
    assert_eq!(send_then_read_all(gw.addr, &short).await, b"");

    // A startup packet of a valid length that Postgres refuses still gets its FATAL,
    // as from Postgres (protocol 2.0: unsupported frontend protocol).
    let mut v2 = startup.to_vec();
    v2[4..8].copy_from_slice(&0x0002_0000i32.to_be_bytes());
    let from_postgres = send_then_read_all(direct, &v2).await;
    let from_pgmoat = send_then_read_all(gw.addr, &v2).await;
    assert_eq!(from_postgres.first(), Some(&b'E'), "{from_postgres:?}");
    assert_eq!(from_pgmoat.first(), Some(&b'E'), "{from_pgmoat:?}");

    // Still serving.
    gw.connect().await.simple_query("SELECT 1").await.unwrap();
}
