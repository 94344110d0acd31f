//! Session tests: the relay between two loopback sockets, the test playing both the
//! client and the server with scripted bytes, asserting on the bytes each side gets.
//! (Loopback TCP, not `tokio::io::duplex`: the relay's streams are the gateway's own
//! socket type, whose plain-TCP path is what runs in production.)

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{End, Relay, RelayParts};
use crate::metrics::Metrics;
use crate::net::stream::MaybeTls;
use crate::session::core::script::msg;
use crate::session::error::SessionError;

fn parse(name: &str, sql: &str) -> Vec<u8> {
    msg(b'P', format!("{name}\0{sql}\0\0\0").as_bytes())
}
fn bind() -> Vec<u8> {
    msg(b'B', b"\0\0\0\0\0\0\0\0")
}
fn execute() -> Vec<u8> {
    msg(b'E', b"\0\0\0\0\0")
}
fn sync() -> Vec<u8> {
    msg(b'S', b"")
}
fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', format!("{sql}\0").as_bytes())
}
fn complete(tag: &str) -> Vec<u8> {
    msg(b'C', format!("{tag}\0").as_bytes())
}
fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}
fn error(code: &str) -> Vec<u8> {
    msg(b'E', format!("SERROR\0C{code}\0Mboom\0\0").as_bytes())
}

pub(super) async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = TcpStream::connect(l.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (b, _) = l.accept().await.expect("accept");
    (a, b)
}

/// A relay with no rules (a pure relay) between the test's client and server ends.
struct Session {
    client: TcpStream,
    server: TcpStream,
    relay: tokio::task::JoinHandle<Result<End, SessionError>>,
    _shutdown: watch::Sender<bool>,
}

/// A plain relay's parts between two sockets: no rules, a 1 MiB message limit.
pub(super) fn parts(
    client_side: TcpStream,
    server_side: TcpStream,
    shutdown: watch::Receiver<bool>,
    audit: Option<crate::audit::SessionAudit>,
) -> RelayParts {
    RelayParts {
        client: MaybeTls::Plain(client_side),
        upstream: MaybeTls::Plain(server_side),
        client_leftover: BytesMut::new(),
        server_leftover: BytesMut::new(),
        tx_status: b'I',
        max_message: 1 << 20,
        metrics: Arc::new(Metrics::default()),
        shutdown,
        judge: None,
        guard: Default::default(),
        cancel_signal: Default::default(),
        audit,
        registration: None,
    }
}

async fn start() -> Session {
    let (client, client_side) = pair().await;
    let (server, server_side) = pair().await;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let mut relay = Relay::new(parts(client_side, server_side, shutdown, None));
    let relay = tokio::spawn(async move { relay.run().await });
    Session {
        client,
        server,
        relay,
        _shutdown: shutdown_tx,
    }
}

/// Exactly `want.len()` bytes from `s`, which must equal `want`.
async fn expect(s: &mut TcpStream, want: &[u8], what: &str) {
    let mut got = vec![0; want.len()];
    tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got, want, "{what}");
}

#[tokio::test]
async fn a_query_behind_an_unsynced_batch_gets_a_sync_whose_answer_the_client_never_sees() {
    // pgjdbc: `P B E` BEGIN, then `Q` SAVEPOINT, with no Sync between.
    let mut s = start().await;
    let batch = [parse("", "BEGIN"), bind(), execute()].concat();
    let q = query("SAVEPOINT a");
    s.client
        .write_all(&[batch.clone(), q.clone()].concat())
        .await
        .unwrap();
    expect(&mut s.server, &[batch, sync(), q].concat(), "upstream").await;
    let ours = ready(b'T');
    let answers = [msg(b'1', b""), msg(b'2', b""), complete("BEGIN")].concat();
    let query_answer = [complete("SAVEPOINT"), ready(b'T')].concat();
    s.server
        .write_all(&[answers.clone(), ours, query_answer.clone()].concat())
        .await
        .unwrap();
    expect(&mut s.client, &[answers, query_answer].concat(), "client").await;
    s.client.write_all(&msg(b'X', b"")).await.unwrap();
    let end = s.relay.await.expect("joined").expect("clean end");
    assert_eq!(end, End::ClientTerminated);
}

#[tokio::test]
async fn an_error_inside_a_pipelined_batch_keeps_the_following_cycles_matched() {
    let mut s = start().await;
    let script = [
        parse("a", "SELECT 1"),
        sync(),
        parse("a", "SELECT 2"),
        bind(),
        execute(),
        sync(),
        query("SELECT 3"),
    ]
    .concat();
    s.client.write_all(&script).await.unwrap();
    expect(&mut s.server, &script, "upstream").await;
    // The second Parse fails (name taken): its Bind and Execute are skipped.
    let answers = [
        msg(b'1', b""),
        ready(b'I'),
        error("42P05"),
        ready(b'I'),
        complete("SELECT 1"),
        ready(b'I'),
    ]
    .concat();
    s.server.write_all(&answers).await.unwrap();
    expect(&mut s.client, &answers, "client").await;
    drop(s.client);
    let end = s.relay.await.expect("joined").expect("clean end");
    assert_eq!(end, End::ClientClosed);
    // pgmoat tells the server the client left.
    expect(&mut s.server, &msg(b'X', b""), "terminate").await;
}

#[tokio::test]
async fn copy_from_stdin_runs_and_messages_pipelined_behind_it_end_the_session() {
    // A COPY with its data after CopyInResponse, as drivers send it, runs.
    let mut s = start().await;
    s.client
        .write_all(&query("COPY t FROM STDIN"))
        .await
        .unwrap();
    expect(&mut s.server, &query("COPY t FROM STDIN"), "copy").await;
    let copy_in = msg(b'G', &[0, 0, 0]);
    s.server.write_all(&copy_in).await.unwrap();
    expect(&mut s.client, &copy_in, "CopyInResponse").await;
    let data = [msg(b'd', b"1\n"), msg(b'c', b"")].concat();
    s.client.write_all(&data).await.unwrap();
    expect(&mut s.server, &data, "data").await;
    let done = [complete("COPY 1"), ready(b'I')].concat();
    s.server.write_all(&done).await.unwrap();
    expect(&mut s.client, &done, "done").await;
    // A Query pipelined behind a COPY: its answers could not be matched.
    let pipelined = [query("COPY t FROM STDIN"), query("SELECT 1")].concat();
    s.client.write_all(&pipelined).await.unwrap();
    expect(&mut s.server, &pipelined, "pipelined").await;
    s.server.write_all(&copy_in).await.unwrap();
    match s.relay.await.expect("joined") {
        Err(SessionError::Refused { code, message, .. }) => {
            assert_eq!(code, crate::protocol::sqlstate::PROTOCOL_VIOLATION);
            assert!(message.contains("behind COPY FROM STDIN"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The synchronous pass and the scanners are one path: a pipelined prepared cycle
/// with an error in it, written whole (taken by the pass) or a byte at a time (every
/// message cut, so the scanners take it), leaves the same bytes on both sides and
/// the same cycles matched (a refused FunctionCall after it is answered in its turn).
#[tokio::test]
async fn the_synchronous_pass_and_the_scanners_agree_byte_for_byte() {
    let cycle = [
        bind(),
        execute(),
        sync(),
        bind(),
        execute(),
        sync(),
        msg(b'C', b"Sa\0"),
        sync(),
    ]
    .concat();
    let answers = [
        msg(b'2', b""),
        msg(b'D', &[0, 1, 0, 0, 0, 1, b'1']),
        complete("SELECT 1"),
        ready(b'I'),
        error("42P01"),
        ready(b'I'),
        msg(b'3', b""),
        ready(b'I'),
    ]
    .concat();
    // A FunctionCall is refused by pgmoat itself: its answer is composed, and must
    // come after the three cycles' answers.
    let call = msg(b'F', &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for bytewise in [false, true] {
        let mut s = start().await;
        let what = if bytewise {
            "a byte at a time"
        } else {
            "whole"
        };
        if bytewise {
            for b in &cycle {
                s.client.write_all(&[*b]).await.unwrap();
                s.client.flush().await.unwrap();
            }
        } else {
            s.client.write_all(&cycle).await.unwrap();
        }
        expect(&mut s.server, &cycle, what).await;
        s.client.write_all(&call).await.unwrap();
        if bytewise {
            for b in &answers {
                s.server.write_all(&[*b]).await.unwrap();
                s.server.flush().await.unwrap();
            }
        } else {
            s.server.write_all(&answers).await.unwrap();
        }
        expect(&mut s.client, &answers, what).await;
        // The refusal: an ErrorResponse then ReadyForQuery, after everything above.
        let mut head = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(30), s.client.read_exact(&mut head))
            .await
            .expect("refusal in time")
            .expect("refusal");
        assert_eq!(
            head[0], b'E',
            "{what}: the FunctionCall's refusal comes next"
        );
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut rest = vec![0; len - 4];
        s.client.read_exact(&mut rest).await.unwrap();
        assert!(
            String::from_utf8_lossy(&rest).contains("FunctionCall"),
            "{what}"
        );
        expect(&mut s.client, &ready(b'I'), what).await;
        s.client.write_all(&msg(b'X', b"")).await.unwrap();
        let end = s.relay.await.expect("joined").expect("clean end");
        assert_eq!(end, End::ClientTerminated, "{what}");
    }
}
