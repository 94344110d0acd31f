//! Masked responses on the lean HTTP/1.1 path: the same bytes the hyper path sends
//! (an HTTP/1.0 request is served by hyper, an HTTP/1.1 one by the lean path), for
//! JSONPath masks, detectors, nested arrays, escapes in strings, gzip and chunked
//! bodies; a body over `max_masked_body` is 502 on both.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{test_env, AGENT, AGENT_PW};
use crate::http_gateway_fixture::{basic, gateway_yaml, Fixture};
use crate::http_gateway_upstream::{DUP_KEYS_JSON, NESTED_JSON};

const RULES: &str = "
masks:
  - id: ssn
    json: ['$.users[*].ssn']
    targets: [billing]
    method: partial
    keep_last: 4
  - id: cards
    json: ['$.rows[*][*].card']
    targets: [billing]
    method: redact
detect:
  - id: emails
    kind: email
    method: email
";

const HTTP: &str = "  max_masked_body: 64KiB
  targets:
    billing: { url: 'http://@UP@' }
";

async fn start() -> Fixture {
    assert_eq!(AGENT, "agent-1");
    let config = gateway_yaml(HTTP);
    Fixture::start("pgmoat-http-masked", RULES, &config, test_env()).await
}

/// A response read off the wire.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// One GET with `version` ("1.1": the lean path; "1.0": hyper), the connection
/// closed after it, the answer read to its end.
async fn get(addr: SocketAddr, path: &str, version: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/{version}\r\nHost: gw\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        basic(AGENT, AGENT_PW)
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("the gateway answers and closes")
        .unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

fn count(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

#[tokio::test]
async fn masked_json_on_the_lean_path_is_byte_identical_to_hypers() {
    let f = start().await;
    let m = &f.gw.metrics.http;
    for path in [
        "/billing/users",
        "/billing/users.gz",
        "/billing/nested",
        "/billing/nested.chunked",
    ] {
        let (lean0, hyper0) = (count(&m.lean_requests), count(&m.hyper_requests));
        let lean = get(f.addr(), path, "1.1").await;
        assert_eq!(
            (count(&m.lean_requests), count(&m.hyper_requests)),
            (lean0 + 1, hyper0),
            "{path}: served by the lean path"
        );
        let hyper = get(f.addr(), path, "1.0").await;
        assert_eq!(count(&m.hyper_requests), hyper0 + 1, "{path}: by hyper");
        assert_eq!((lean.status, hyper.status), (200, 200), "{path}");
        assert_eq!(
            String::from_utf8_lossy(&lean.body),
            String::from_utf8_lossy(&hyper.body),
            "{path}: the same masked bytes"
        );
        assert_eq!(
            lean.headers["content-length"],
            lean.body.len().to_string(),
            "{path}"
        );
        assert!(!lean.headers.contains_key("content-encoding"), "{path}");
        assert!(!lean.headers.contains_key("transfer-encoding"), "{path}");
        let text = String::from_utf8_lossy(&lean.body);
        for secret in ["123-45-6789", "ann.lee@example.com", "4111 1111 1111 1111"] {
            assert!(!text.contains(secret), "{path}: {secret} in {text}");
        }
        // One record each, with the masks that fired.
        let id = &lean.headers["pgmoat-request"];
        let r = f.record_of(id).await;
        assert_eq!(r["status"], 200, "{path}");
        assert!(
            r["masked_fields"].as_array().is_some_and(|a| !a.is_empty()),
            "{path}: {r}"
        );
    }
    // The nested document, pinned: masked values replaced in place, everything else
    // (key order, spacing, escapes in strings left alone) as the target wrote it.
    let lean = get(f.addr(), "/billing/nested", "1.1").await;
    let want = NESTED_JSON
        .replace("123-45-6789", "***-**-6789")
        .replace("\"4111 1111 1111 1111\"", "\"****\"")
        .replace("\"5500 0000 0000 0004\"", "\"****\"");
    let got = String::from_utf8(lean.body).unwrap();
    let mail = got
        .split("mail: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("");
    assert!(
        mail.ends_with("@example.com") && mail != "ann.lee@example.com",
        "{got}"
    );
    assert_eq!(got.replace(mail, "ann.lee@example.com"), want);
}

#[tokio::test]
async fn a_masked_body_over_max_masked_body_is_502_on_the_lean_path() {
    let f = start().await;
    let m = &f.gw.metrics.http;
    for path in ["/billing/bigjson", "/billing/bigjson.len"] {
        let lean0 = count(&m.lean_requests);
        let a = get(f.addr(), path, "1.1").await;
        assert_eq!(count(&m.lean_requests), lean0 + 1, "{path}: lean");
        assert_eq!(a.status, 502, "{path}");
        let text = String::from_utf8_lossy(&a.body);
        assert!(text.contains("too large to be masked"), "{path}: {text}");
        assert!(!text.contains("123-45-6789"));
        let r = f.record_of(&a.headers["pgmoat-request"]).await;
        assert_eq!(r["status"], 502, "{path}");
        let hyper = get(f.addr(), path, "1.0").await;
        assert_eq!(hyper.status, 502, "{path}: hyper too");
    }
    // The connection stays usable after a refused masked body (kept alive).
    let mut s = TcpStream::connect(f.addr()).await.unwrap();
    let auth = basic(AGENT, AGENT_PW);
    let req = format!(
        "GET /billing/bigjson.len HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\n\r\n\
         GET /billing/users HTTP/1.1\r\nHost: gw\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("both answered")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 1, "{text}");
    assert!(
        text.contains("***-**-6789") && !text.contains("123-45-6789"),
        "{text}"
    );
}

/// Issue 23: serde_json keeps only the last value of a duplicated key, so the
/// detectors never saw the first (a first-wins client reads it). Every occurrence is
/// scanned now, and so are bare numbers; a `json:` mask whose values a duplicated
/// object or array could hide refuses the body (502) rather than pass it.
#[tokio::test]
async fn duplicated_keys_and_bare_numbers_never_carry_a_card_number_out() {
    let rules = "
masks:
  - id: ssn
    json: ['$.users[*].ssn']
    targets: [billing]
    method: partial
    keep_last: 4
detect:
  - id: cards
    kind: credit_card
    method: redact
";
    let http = "  max_masked_body: 64KiB
  targets:
    billing: { url: 'http://@UP@' }
    open: { url: 'http://@UP@' }
";
    let f = Fixture::start("pgmoat-http-dup", rules, &gateway_yaml(http), test_env()).await;
    let want = DUP_KEYS_JSON
        .replace("\"4111 1111 1111 1111\"", "\"****\"")
        .replace("\"5500 0000 0000 0004\"", "\"****\"")
        .replace("4111111111111111", "\"****\"");
    for path in [
        "/open/dupkeys",
        "/open/dupkeys.gz",
        "/billing/dupkeys",
        "/billing/dupkeys.gz",
    ] {
        for version in ["1.1", "1.0"] {
            let a = get(f.addr(), path, version).await;
            assert_eq!(a.status, 200, "{path} {version}");
            let text = String::from_utf8_lossy(&a.body);
            assert_eq!(text, want, "{path} {version}");
            let r = f.record_of(&a.headers["pgmoat-request"]).await;
            assert_eq!(
                r["masked_fields"],
                serde_json::json!(["cards"]),
                "{path}: {r}"
            );
        }
    }
    // The ssn sits in a `users` written twice: the json: mask could not see it.
    for version in ["1.1", "1.0"] {
        let a = get(f.addr(), "/billing/dupusers", version).await;
        assert_eq!(a.status, 502, "{version}");
        let text = String::from_utf8_lossy(&a.body);
        assert!(!text.contains("123-45-6789"), "{text}");
        let r = f.record_of(&a.headers["pgmoat-request"]).await;
        assert_eq!(r["status"], 502, "{r}");
        assert!(
            r["error"]
                .as_str()
                .is_some_and(|e| e.contains("written twice")),
            "{r}"
        );
        // Without json: masks (another target) only the detectors apply: it passes.
        let a = get(f.addr(), "/open/dupusers", version).await;
        assert_eq!(a.status, 200, "{version}");
    }
}
