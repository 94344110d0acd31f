//! The HTTP gateway's lean HTTP/1.1 path (src/gateway/h1/) end to end: plain
//! requests to targets without masks are served without hyper, with the same
//! answers, header policy and records; every ambiguous framing is refused (400 or
//! 502, connection closed) and nothing past a refused request reaches a target.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{test_env, AGENT, AGENT_PW};
use crate::http_gateway_fixture::{basic, client, request_id, Fixture};
use crate::http_gateway_upstream::{upstream, PLAIN_JSON};

const HELD: &str = "held-api-token-31";

const RULES: &str = "
rules:
  - id: admin-off-limits
    when: { http_paths: ['/admin/**'] }
    action: block
";

const CONFIG: &str = "listen: 127.0.0.1:0
targets:
  demo: { host: 127.0.0.1, port: 1, database: demo, user: app, password_env: APP_PW, tls: disable }
identities:
  users:
    - { name: agent-1, password_env: AGENT_PW, groups: [agents] }
rules: @RULES@
audit: { dir: @AUDIT@ }
http:
  listen: 127.0.0.1:0
  upstream_timeout: 20s
  targets:
    api:
      url: http://@UP@
      headers:
        Authorization: { env: API_TOKEN, prefix: 'Bearer ' }
    odd: { url: 'http://@ODD@' }
";

/// A gateway whose `odd` target is `odd` (a raw server answering as told).
async fn start(odd: SocketAddr) -> Fixture {
    assert_eq!(AGENT, "agent-1");
    let mut env = test_env();
    env.insert("API_TOKEN".into(), HELD.into());
    let config = CONFIG.replace("@ODD@", &odd.to_string());
    Fixture::start("pgmoat-http-lean", RULES, &config, env).await
}

/// Everything the gateway answers on one connection to `request` (written whole),
/// until it closes the connection.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    // A refused request's rest may find the connection closed.
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .expect("the gateway closes the connection")
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn auth() -> String {
    format!("Authorization: {}\r\n", basic(AGENT, AGENT_PW))
}

/// A raw target answering each request with the response its path names (the
/// request head is read whole; no body is expected).
async fn odd_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                        let answer: &[u8] = match path.as_str() {
                            "/both" => b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                            "/two-lengths" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                            "/bad-coding" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx",
                            "/bare-lf" => b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nhi",
                            "/folded" => b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nhi",
                            // Two bytes of body, then a response nobody asked for.
                            "/extra" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil",
                            "/bad-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\nzz\r\n",
                            "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n",
                            "/no-content-length" => b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
                            "/nameless-cookie" => b"HTTP/1.1 200 OK\r\nSet-Cookie: =pgmoat_console=planted; Path=/ui\r\nSet-Cookie: theme=dark\r\nContent-Length: 2\r\n\r\nok",
                            // Answers, then closes without saying so.
                            "/then-close" => b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye",
                            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine",
                        };
                        if s.write_all(answer).await.is_err() || path == "/then-close" {
                            return;
                        }
                    }
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_plain_request_takes_the_lean_path_with_the_same_answers_and_header_policy() {
    let f = start(odd_target().await).await;
    let lean = || f.gw.metrics.http.lean_requests.load(Relaxed);
    let hyper = || f.gw.metrics.http.hyper_requests.load(Relaxed);
    let (lean0, hyper0) = (lean(), hyper());
    let tag = crate::harness::unique("lean");
    let c = client();
    let r = c
        .get(f.url(&format!("/api/plain?tag={tag}")))
        .header("authorization", basic(AGENT, AGENT_PW))
        .header("cookie", "a=1; pgmoat_console=secret")
        .header("x-forwarded-user", "admin")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], PLAIN_JSON.len().to_string());
    let id = request_id(&r);
    assert_eq!(r.text().await.unwrap(), PLAIN_JSON);
    assert_eq!(lean(), lean0 + 1, "served by the lean path");
    assert_eq!(hyper(), hyper0, "not by hyper");
    let seen = upstream().seen_with(&tag);
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_eq!(h["authorization"], format!("Bearer {HELD}").as_str());
    assert_eq!(h["host"], upstream().addr.to_string().as_str());
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert!(h["forwarded"]
        .to_str()
        .unwrap()
        .starts_with("for=127.0.0.1;proto=http"));
    assert_eq!(h["cookie"], "a=1");
    assert!(h.get("x-forwarded-user").is_none() && h.get("x-hop").is_none());
    assert_eq!(seen[0].uri, format!("/plain?tag={tag}"));
    let rec = f.record_of(&id).await;
    assert_eq!(rec["status"], 200);
    assert_eq!(rec["bytes_out"], PLAIN_JSON.len());
    assert_eq!(rec["path"], "/plain");

    // A chunked answer streams (re-chunked), HEAD has no body, a blocked path is
    // the same 403 JSON: all on the same keep-alive connection.
    let r = c
        .get(f.url("/api/chunked"))
        .header("authorization", basic(AGENT, AGENT_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    assert_eq!(
        r.text().await.unwrap(),
        "part 0;part 1;part 2;part 3;part 4;"
    );
    let r = c
        .head(f.url("/api/plain"))
        .header("authorization", basic(AGENT, AGENT_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    let r = c
        .get(f.url("/api/admin/x"))
        .header("authorization", basic(AGENT, AGENT_PW))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["rule"], "admin-off-limits");
    let r = c.get(f.url("/api/plain")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(lean(), lean0 + 5);
    assert_eq!(hyper(), hyper0);

    // Bodies by length and chunked, pipelined in one write: each request gets
    // exactly its own body, in order.
    let t2 = crate::harness::unique("pipe");
    let req = format!(
        "POST /api/echo?tag={t2}-a HTTP/1.1\r\nHost: gw\r\n{a}Content-Length: 5\r\n\r\nhello\
         POST /api/echo?tag={t2}-b HTTP/1.1\r\nHost: gw\r\n{a}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
         GET /api/plain?tag={t2}-c HTTP/1.1\r\nHost: gw\r\n{a}Connection: close\r\n\r\n",
        a = auth()
    );
    let out = exchange(f.addr(), req.as_bytes()).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
    assert!(out.ends_with(PLAIN_JSON), "{out}");
    let body_of = |suffix: &str| {
        upstream().seen_with(&format!("{t2}-{suffix}"))[0]
            .body
            .clone()
    };
    assert_eq!(body_of("a"), b"hello");
    assert_eq!(body_of("b"), b"abcde");
    assert_eq!(body_of("c"), b"");
}

#[tokio::test]
async fn ambiguous_request_framing_is_refused_and_nothing_is_smuggled_past_it() {
    let f = start(odd_target().await).await;
    let refused0 = f.gw.metrics.http.framing_refused.load(Relaxed);
    let tag = crate::harness::unique("smuggled");
    let smuggled = format!(
        "GET /api/echo?tag={tag} HTTP/1.1\r\nHost: gw\r\n{}\r\n",
        auth()
    );
    let head = |fields: &str| {
        format!(
            "POST /api/echo?tag={tag}-first HTTP/1.1\r\nHost: gw\r\n{}{fields}\r\n",
            auth()
        )
    };
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "both lengths and chunked",
            head("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
            400,
        ),
        (
            "two lengths",
            head("Content-Length: 0\r\nContent-Length: 5\r\n") + "xxxxx",
            400,
        ),
        (
            "a list of lengths",
            head("Content-Length: 5, 5\r\n") + "xxxxx",
            400,
        ),
        (
            "a signed length",
            head("Content-Length: +5\r\n") + "xxxxx",
            400,
        ),
        (
            "a coding before chunked",
            head("Transfer-Encoding: gzip, chunked\r\n") + "0\r\n\r\n",
            400,
        ),
        (
            "chunked twice",
            head("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
            400,
        ),
        (
            "an obs-fold",
            head("Content-Length: 0\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n"),
            400,
        ),
        ("a bare LF", head("X-A: 1\nContent-Length: 0\r\n"), 400),
        ("a bare CR", head("X-A: 1\rContent-Length: 0\r\n"), 400),
        ("a control byte in a value", head("X-A: a\x01b\r\n"), 400),
        (
            "a space before the colon",
            head("Content-Length : 0\r\n"),
            400,
        ),
        (
            "an invalid chunk size",
            head("Transfer-Encoding: chunked\r\n") + "zz\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "a chunk size with a sign",
            head("Transfer-Encoding: chunked\r\n") + "-5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            "an over-long head",
            head(&format!("X-Long: {}\r\n", "a".repeat(420 * 1024))),
            431,
        ),
    ];
    let n = cases.len() as u64;
    for (what, request, want) in cases {
        let out = exchange(f.addr(), (request + &smuggled).as_bytes()).await;
        assert_eq!(status_of(&out), want, "{what}: {out}");
        assert_eq!(
            out.matches("HTTP/1.1").count(),
            1,
            "{what}: one answer, then closed: {out}"
        );
    }
    assert!(
        upstream().seen_with(&tag).is_empty(),
        "nothing reached the target"
    );
    assert_eq!(
        f.gw.metrics.http.framing_refused.load(Relaxed),
        refused0 + n
    );
}

#[tokio::test]
async fn a_targets_ambiguous_answer_is_502_and_nothing_past_its_body_is_relayed() {
    let f = start(odd_target().await).await;
    let get = |path: &str| {
        format!(
            "GET /odd{path} HTTP/1.1\r\nHost: gw\r\n{}Connection: close\r\n\r\n",
            auth()
        )
    };
    for path in [
        "/both",
        "/two-lengths",
        "/bad-coding",
        "/bare-lf",
        "/folded",
    ] {
        let out = exchange(f.addr(), get(path).as_bytes()).await;
        assert_eq!(status_of(&out), 502, "{path}: {out}");
        assert!(out.contains("the target did not answer"), "{path}: {out}");
    }
    // A chunked body that goes bad: the head went out, the body is cut (no last
    // chunk), the connection closed.
    let out = exchange(f.addr(), get("/bad-chunk").as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    assert!(
        out.contains("2\r\nhi\r\n") && !out.ends_with("0\r\n\r\n"),
        "{out}"
    );

    // Bytes past a framed body are dropped with their connection: the next request
    // on the same client connection gets its own answer, not them. A 204 has no
    // body whatever follows.
    let keep = |path: &str| format!("GET /odd{path} HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth());
    let req = keep("/extra") + &keep("/no-content") + &get("/ok");
    let out = exchange(f.addr(), req.as_bytes()).await;
    assert!(!out.contains("evil"), "{out}");
    assert!(
        out.contains("\r\n\r\nhiHTTP/1.1 204 No Content\r\n"),
        "{out}"
    );
    assert!(out.ends_with("\r\n\r\nfine"), "{out}");

    // A kept upstream connection the target closed is not used again: the next
    // request on the client connection goes on a new one.
    let c = client();
    for (path, want) in [
        ("/then-close", "bye"),
        ("/ok", "fine"),
        ("/then-close", "bye"),
        ("/ok", "fine"),
    ] {
        let r = c
            .get(f.url(&format!("/odd{path}")))
            .header("authorization", basic(AGENT, AGENT_PW))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), want);
    }
}

/// Connections the lean path does not serve go to hyper whole, bytes read so far
/// included: HTTP/1.0, upgrades, `Expect: 100-continue`.
#[tokio::test]
async fn what_the_lean_path_does_not_serve_goes_to_hyper_unharmed() {
    let f = start(odd_target().await).await;
    let hyper0 = f.gw.metrics.http.hyper_requests.load(Relaxed);
    let tag = crate::harness::unique("tohyper");
    let out = exchange(
        f.addr(),
        format!(
            "GET /api/plain?tag={tag}-a HTTP/1.0\r\nHost: gw\r\n{}\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert!(
        out.contains(" 200 OK\r\n") && out.ends_with(PLAIN_JSON),
        "{out}"
    );
    let req = format!(
        "POST /api/echo?tag={tag}-b HTTP/1.1\r\nHost: gw\r\n{}Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        auth()
    );
    let out = exchange(f.addr(), req.as_bytes()).await;
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    assert_eq!(upstream().seen_with(&format!("{tag}-b"))[0].body, b"ok");
    assert_eq!(upstream().seen_with(&tag).len(), 2);
    assert_eq!(f.gw.metrics.http.hyper_requests.load(Relaxed), hyper0 + 2);
    assert!(f.gw.metrics.http.lean_fallbacks.load(Relaxed) >= 2);
}

/// Review of the lean path: pgmoat's own answers to HEAD carry no body (else it is
/// read as the next response); `head` in lower case is left to hyper; a 204's length and a
/// cookie planted under the console's name never reach the client; identity fields
/// spelled with `_` are dropped like those with `-`; held fields cannot frame.
#[tokio::test]
async fn answers_stay_in_step_and_nothing_is_planted_or_claimed() {
    let f = start(odd_target().await).await;
    for first in [
        "HEAD /nosuch/x HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
        "HEAD /api/plain HTTP/1.1\r\nHost: gw\r\n\r\n".to_string(),
        format!("HEAD /api/admin/x HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth()),
    ] {
        let req = format!(
            "{first}GET /api/plain HTTP/1.1\r\nHost: gw\r\n{}Connection: close\r\n\r\n",
            auth()
        );
        let out = exchange(f.addr(), req.as_bytes()).await;
        let (head, rest) = out.split_once("\r\n\r\n").expect("a first answer");
        assert!(matches!(status_of(head), 401 | 403 | 404), "{out}");
        assert!(
            rest.starts_with("HTTP/1.1 200 OK\r\n"),
            "no body after a HEAD answer: {out}"
        );
        assert!(rest.ends_with(PLAIN_JSON), "{out}");
    }
    // `head` in lower case goes to hyper's path, which closes the connection after it.
    let hyper0 = f.gw.metrics.http.hyper_requests.load(Relaxed);
    let out = exchange(
        f.addr(),
        format!("head /api/plain HTTP/1.1\r\nHost: gw\r\n{}\r\n", auth()).as_bytes(),
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    assert_eq!(f.gw.metrics.http.hyper_requests.load(Relaxed), hyper0 + 1);

    let out = exchange(
        f.addr(),
        format!(
            "GET /odd/no-content-length HTTP/1.1\r\nHost: gw\r\n{}Connection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&out), 204, "{out}");
    assert!(
        !out.to_ascii_lowercase().contains("content-length"),
        "{out}"
    );

    let out = exchange(
        f.addr(),
        format!(
            "GET /odd/nameless-cookie HTTP/1.1\r\nHost: gw\r\n{}Connection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert!(out.ends_with("ok") && out.contains("theme=dark"), "{out}");
    assert!(
        !out.contains("pgmoat_console"),
        "a console cookie planted: {out}"
    );

    let tag = crate::harness::unique("underscore");
    let out = exchange(
        f.addr(),
        format!(
            "GET /api/plain?tag={tag} HTTP/1.1\r\nHost: gw\r\n{}X_Forwarded_User: admin\r\nX-Remote_User: admin\r\nConnection: close\r\n\r\n",
            auth()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&out), 200, "{out}");
    let seen = &upstream().seen_with(&tag)[0];
    for name in seen.headers.keys() {
        let n = name.as_str().replace('_', "-");
        assert!(
            n != "x-forwarded-user" && n != "x-remote-user",
            "{name} reached the target"
        );
    }

    for held in ["Host", "Transfer-Encoding", "Proxy-Authorization"] {
        let yaml = CONFIG
            .replace(
                "Authorization: { env: API_TOKEN",
                &format!("{held}: {{ env: API_TOKEN"),
            )
            .replace("@ODD@", "127.0.0.1:9")
            .replace("@UP@", "127.0.0.1:9")
            .replace("@RULES@", "/dev/null")
            .replace("@AUDIT@", "/tmp/pgmoat-never");
        let mut env = test_env();
        env.insert("API_TOKEN".into(), HELD.into());
        let lookup = move |n: &str| env.get(n).cloned();
        let e = pgmoat::Config::from_yaml(&yaml, "t.yaml", std::path::Path::new("/"), &lookup)
            .expect_err(held)
            .to_string();
        assert!(e.contains("pgmoat sets it"), "{held}: {e}");
    }
}
