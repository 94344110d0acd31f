//! Through pgmoat, drivers see what they would see talking to Postgres directly.

use std::time::Duration;

use futures_util::{SinkExt, TryStreamExt};
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

use crate::harness::*;

/// A direct connection to the shared server as the held role, for comparison.
async fn direct() -> tokio_postgres::Client {
    let pg = crate::common::pg::shared();
    connect_url(&pg.conn_str(APP_ROLE, APP_PW, "demo"))
        .await
        .expect("direct connect")
}

const WIDE_QUERY: &str = "SELECT g AS id, md5(g::text) AS h, g * 1.5 AS f, (g % 7 = 0) AS b,
        now()::date - g AS d, repeat('x', g % 50) AS t, CASE WHEN g % 3 = 0 THEN NULL ELSE g END AS n,
        ARRAY[g, g + 1] AS a, '{\"k\": 1}'::jsonb AS j
     FROM generate_series(1, 50000) g ORDER BY g";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_match_direct_for_50k_rows() {
    let (_pg, gw) = start().await;
    let proxied = gw.connect().await;
    let direct = direct().await;
    // tokio-postgres' extended protocol asks for binary results.
    let a = proxied.query(WIDE_QUERY, &[]).await.unwrap();
    let b = direct.query(WIDE_QUERY, &[]).await.unwrap();
    assert_eq!(a.len(), 50_000);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        assert_eq!(x.get::<_, i32>(0), y.get::<_, i32>(0));
        assert_eq!(x.get::<_, String>(1), y.get::<_, String>(1));
        assert_eq!(x.get::<_, Option<i32>>(6), y.get::<_, Option<i32>>(6));
        assert_eq!(x.get::<_, Vec<i32>>(7), y.get::<_, Vec<i32>>(7));
    }
    let cols: Vec<(&str, &Type)> = a[0]
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_()))
        .collect();
    let cols_direct: Vec<(&str, &Type)> = b[0]
        .columns()
        .iter()
        .map(|c| (c.name(), c.type_()))
        .collect();
    assert_eq!(cols, cols_direct);
}

fn simple_rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_results_match_direct_for_50k_rows() {
    let (_pg, gw) = start().await;
    let proxied = gw.connect().await;
    let direct = direct().await;
    let sql = WIDE_QUERY.replace("now()::date", "'2026-01-01'::date");
    let a = simple_rows(&proxied.simple_query(&sql).await.unwrap());
    let b = simple_rows(&direct.simple_query(&sql).await.unwrap());
    assert_eq!(a.len(), 50_000);
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_parameters_and_reused_statements() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    let stmt = c
        .prepare("SELECT $1::int + $2::int, $3::text || '!'")
        .await
        .unwrap();
    for i in 0..200 {
        let row = c.query_one(&stmt, &[&i, &1i32, &"hi"]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
        assert_eq!(row.get::<_, String>(1), "hi!");
    }
    let nul: Option<i32> = None;
    let row = c
        .query_one("SELECT $1::int IS NULL", &[&nul])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_queries_come_back_in_order() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    let stmt = c
        .prepare("SELECT $1::int, pg_sleep(0.001)::text")
        .await
        .unwrap();
    // tokio-postgres pipelines concurrent queries on one connection.
    let futures: Vec<_> = (0..100)
        .map(|i| {
            let c = &c;
            let stmt = &stmt;
            async move { c.query_one(stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let results = futures_util::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statement_query_returns_every_result() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    let msgs = c
        .simple_query("CREATE TEMP TABLE m(x int); INSERT INTO m VALUES (1),(2),(3); SELECT sum(x) FROM m; SELECT 'two'")
        .await
        .unwrap();
    assert_eq!(
        simple_rows(&msgs),
        vec![vec![Some("6".to_string())], vec![Some("two".to_string())]]
    );
    let completes = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .count();
    assert_eq!(completes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_cycles_keep_order_and_transaction_status() {
    let (_pg, gw) = start().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    check_prepared_cycles(&mut raw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_keep_sqlstate_and_transaction_status() {
    let (_pg, gw) = start().await;
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    assert_eq!(status(&raw.query("BEGIN").await), b'T');
    let msgs = raw.query("SELECT 1/0").await;
    let err = msgs.iter().find(|m| m.tag == b'E').expect("an error");
    assert_eq!(err.field(b'C'), "22012");
    assert_eq!(status(&msgs), b'E', "failed transaction");
    let msgs = raw.query("SELECT 1").await;
    assert_eq!(
        msgs.iter().find(|m| m.tag == b'E').unwrap().field(b'C'),
        "25P02"
    );
    assert_eq!(status(&raw.query("ROLLBACK").await), b'I');
    assert_eq!(tags(&raw.query("SELECT 1").await), "TDCZ");

    // And through a driver: SQLSTATEs arrive intact.
    let c = gw.connect().await;
    let e = c
        .simple_query("SELECT * FROM no_such_table")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e), "42P01");
    let e = c.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(sqlstate(&e), "42601");
    let e = c.query("SELECT 'x'::int", &[]).await.unwrap_err();
    assert_eq!(sqlstate(&e), "22P02");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    c.batch_execute("CREATE TEMP TABLE c(id int, name text)")
        .await
        .unwrap();
    let sink = c.copy_in("COPY c FROM STDIN").await.unwrap();
    futures_util::pin_mut!(sink);
    let mut data = String::new();
    for i in 0..20_000 {
        data.push_str(&format!("{i}\tname {i}\n"));
    }
    sink.send(bytes::Bytes::from(data.clone())).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 20_000);
    let stream = c
        .copy_out("COPY (SELECT * FROM c ORDER BY id) TO STDOUT")
        .await
        .unwrap();
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.unwrap();
    let out: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8(out).unwrap(), data);
}

/// COPY FROM STDIN over the extended protocol (tokio-postgres, libpq): the server
/// ignores the Sync sent behind the COPY's Execute. pgmoat counts replies as the
/// server does, so what follows is matched to the right statements, and an idle
/// session ends at once on shutdown (it used to wait out the grace period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_keeps_replies_matched_to_statements() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    c.batch_execute("CREATE TEMP TABLE ci(id int)")
        .await
        .unwrap();
    for round in 0..3 {
        let sink = c.copy_in("COPY ci FROM STDIN").await.unwrap();
        futures_util::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\n2\n"))
            .await
            .unwrap();
        assert_eq!(sink.finish().await.unwrap(), 2);
        let (a, b) = futures_util::join!(
            c.query_one("SELECT count(*) FROM ci", &[]),
            c.query_one("SELECT 'second'::text", &[])
        );
        assert_eq!(a.unwrap().get::<_, i64>(0), 2 * (round + 1));
        assert_eq!(b.unwrap().get::<_, String>(0), "second");
    }
    let started = std::time::Instant::now();
    gw.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an idle session held shutdown for {:?}",
        started.elapsed()
    );
}

/// A Query inside an unsynced extended batch (pgjdbc's autosave sends `P B E` BEGIN,
/// then `Q` SAVEPOINT): pgmoat puts a Sync of its own in front and keeps that answer
/// from the client, so replies stay matched even when the batch fails (the server
/// would otherwise discard the Query unanswered). Messages pipelined behind a COPY
/// FROM STDIN cannot be matched and end the session with 08P01.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_inside_batches_and_pipelines_behind_copy() {
    let (_pg, gw) = start().await;
    let query = |sql: &str| {
        let mut q = bytes::BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut q).unwrap();
        q.to_vec()
    };
    let unsynced = |sql: &str| {
        let mut m = parse_msg("", sql);
        let mut b = b"\0\0".to_vec();
        b.extend([0, 0, 0, 0, 0, 0]);
        m.extend(message(b'B', &b));
        m.extend(message(b'E', b"\0\0\0\0\0"));
        m
    };
    // pgjdbc's autosave shape.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut m = unsynced("BEGIN");
    m.extend(query("SAVEPOINT pgjdbc_autosave"));
    m.extend(parse_msg("", "SELECT 41 + 1"));
    m.extend(bind_execute_sync(""));
    raw.send(&m).await;
    let mut got = raw.until_ready().await;
    got.extend(raw.until_ready().await);
    assert_eq!(tags(&got), "12CCZ12DCZ", "{got:?}");
    assert_eq!(data_rows(&got).len(), 1);
    assert_eq!(status(&got), b'T');
    raw.query_ok("ROLLBACK").await;
    // A failing batch: the Query still gets its answer, then the Sync its own.
    let mut bind = b"\0nosuch\0".to_vec();
    bind.extend([0, 0, 0, 0, 0, 0]);
    let mut m = message(b'B', &bind);
    m.extend(query("SELECT 'after'"));
    m.extend(message(b'S', b""));
    raw.send(&m).await;
    let mut got = raw.until_ready().await;
    got.extend(raw.until_ready().await);
    assert_eq!(tags(&got), "ETDCZZ", "{got:?}");
    // Nothing is off by one afterwards.
    let r = raw.query_ok("SELECT 'next'").await;
    assert!(data_rows(&r)[0].ends_with("next"), "{r:?}");
    // Pipelined behind a COPY FROM STDIN: refused.
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let mut m = query("CREATE TEMP TABLE t_behind(i int)");
    m.extend(parse_msg("", "COPY t_behind FROM STDIN"));
    m.extend(bind_execute_sync(""));
    m.extend(parse_msg("", "SELECT 1"));
    m.extend(bind_execute_sync(""));
    raw.send(&m).await;
    let mut fatal = None;
    while let Some(m) = raw.read().await {
        if m.tag == b'E' && m.field(b'S') == "FATAL" {
            fatal = Some(m);
        }
    }
    let fatal = fatal.expect("a FATAL");
    assert_eq!(fatal.field(b'C'), "08P01");
    assert!(fatal.field(b'M').contains("not supported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_between_sessions() {
    let (_pg, gw) = start().await;
    let mut listener = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    listener.query("LISTEN pgmoat_test").await;
    let c = gw.connect().await;
    c.batch_execute("NOTIFY pgmoat_test, 'hello'")
        .await
        .unwrap();
    let m = listener.read().await.expect("a notification");
    assert_eq!(m.tag, b'A');
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("pgmoat_test") && text.contains("hello"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_server() {
    let (_pg, gw) = start().await;
    let c = gw.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let started = std::time::Instant::now();
    let e = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
    assert_eq!(sqlstate(&e), "57014", "query_canceled");
    assert!(started.elapsed() < Duration::from_secs(10));
    canceller.await.unwrap().unwrap();
    // The session is still usable.
    assert_eq!(
        simple_rows(&c.simple_query("SELECT 1").await.unwrap()),
        vec![vec![Some("1".into())]]
    );
}

/// Waits until the server shows `pid` running a statement that mentions `what`.
async fn wait_running(direct: &tokio_postgres::Client, pid: i32, what: &str) {
    for _ in 0..500 {
        let n = direct
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND position($2 in query) > 0",
                &[&pid, &what],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if n == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pid {pid} never ran {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cancel_key_cancels_nothing() {
    let (pg, gw) = start().await;
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let other = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let (pid, secret) = raw.backend_key;
    raw.send(&message(b'Q', b"SELECT 'slept', pg_sleep(1)\0"))
        .await;
    wait_running(&direct, pid, "pg_sleep(1)").await;
    // Guessed keys for the session that is running the query: its (real) pid with a
    // wrong secret, with the secret of another live session, and with the server's
    // own secret space's zero.
    for (p, s) in [
        (pid, secret.wrapping_add(1)),
        (pid, other.backend_key.1),
        (pid, 0),
        (pid.wrapping_add(7), secret),
    ] {
        let mut out = bytes::BytesMut::new();
        postgres_protocol::message::frontend::cancel_request(p, s, &mut out);
        let mut t = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut t, &out)
            .await
            .unwrap();
        // The gateway closes a cancel connection once it has acted on it.
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut t, &mut rest).await;
    }
    let msgs = raw.until_ready().await;
    assert!(
        msgs.iter().all(|m| m.tag != b'E'),
        "the sleeping query was not cancelled: {msgs:?}"
    );
    let rows = data_rows(&msgs);
    assert!(rows.len() == 1 && rows[0].contains("slept"), "{msgs:?}");
}

/// The pid a client gets is the server's own: `pg_backend_pid()`, pg_stat_activity
/// and `pg_terminate_backend(conn.info.backend_pid)` mean the same session as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_pid_is_the_servers() {
    let (pg, gw) = start().await;
    let direct = pg.connect(APP_ROLE, APP_PW, "demo").await.unwrap();
    let mut raw = Raw::login(gw.addr, AGENT, AGENT_PW, "demo").await.unwrap();
    let (pid, _) = raw.backend_key;
    let r = raw.query_ok("SELECT pg_backend_pid()").await;
    let rows = data_rows(&r);
    assert!(
        rows.len() == 1 && rows[0].ends_with(&pid.to_string()),
        "{rows:?} vs {pid}"
    );
    let app: String = direct
        .query_one(
            "SELECT application_name FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0);
    assert!(app.contains("[pgmoat:agent-1]"), "{app}");
    // Another session through pgmoat ends it by that pid.
    let c = gw.connect().await;
    let ended: bool = c
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(ended);
    let mut fatal = None;
    while let Some(m) = raw.read().await {
        if m.tag == b'E' {
            fatal = Some(m);
        }
    }
    assert_eq!(fatal.expect("the session was ended").field(b'C'), "57P01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    let (_pg, gw) = start().await;
    let gw = std::sync::Arc::new(gw);
    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let gw = std::sync::Arc::clone(&gw);
        tasks.push(tokio::spawn(async move {
            let c = gw.connect().await;
            let mut sum = 0i64;
            for j in 0..5i32 {
                let row = c
                    .query_one("SELECT $1::int + $2::int", &[&i, &j])
                    .await
                    .unwrap();
                sum += i64::from(row.get::<_, i32>(0));
            }
            sum
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let i = i as i64;
        assert_eq!(t.await.unwrap(), 5 * i + 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_credentials_and_identity_reach_the_server() {
    let (_pg, gw) = start().await;
    let c = gw.connect_as(AGENT, AGENT_PW, "demo").await.unwrap();
    let row = c
        .query_one(
            "SELECT current_user::text, application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), APP_ROLE);
    let app: String = row.get(1);
    assert!(app.contains("[pgmoat:agent-1]"), "{app}");
}
