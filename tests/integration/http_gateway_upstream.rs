//! A real HTTP service for the HTTP gateway's tests: an axum app on its own thread and
//! runtime (one per test binary, so it outlives each test's runtime). It serves JSON
//! with PII (plain and gzip), chunked and very large bodies, and records every
//! request it receives so tests can check what reached it.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream;

/// The JSON the upstream holds, with PII in it.
pub const USERS_JSON: &str = r#"{"users":[{"name":"Ann Lee","ssn":"123-45-6789","email":"ann.lee@example.com","id":7},{"name":"Bo Chan","ssn":"987-65-4321","email":"bo@example.org","id":8}],"count":2}"#;
/// A small JSON document with nothing to mask, in a formatting a re-encoder would change.
pub const PLAIN_JSON: &str =
    "{ \"status\" : \"ok\",\n  \"items\": [1, 2, 3],  \"z\": 1, \"a\": 2 }\n";
/// Nested arrays, escapes in strings (left alone and masked) and a layout of its
/// own: masking must change only the masked values.
pub const NESTED_JSON: &str = r#"{ "rows": [ [ {"card": "4111 1111 1111 1111", "n": 1}, {"n": 2, "card": "5500 0000 0000 0004"} ],
  [ ["tab\there", "quote \" and \\ and \u00e9 \ud83d\ude00 \/"] ] ],
  "note": "mail: ann.lee@example.com, thanks",
  "users": [ {"z": 1, "ssn": "123-45-6789", "name": "Ann \"A\" Lee"} ] }"#;
/// Keys written twice (a client may read either occurrence) and a card number
/// written as a bare number: every one must be seen by the detectors.
pub const DUP_KEYS_JSON: &str = r#"{"n": "4111 1111 1111 1111", "n": "ok", "list": [{"c": "x", "c": "5500 0000 0000 0004"}], "num": 4111111111111111}"#;
/// A masked member written twice, the first holding the values: serde_json keeps
/// only the empty last one.
pub const DUP_USERS_JSON: &str = r#"{"users": [{"ssn": "123-45-6789"}], "users": []}"#;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The address the request came from (one per upstream connection).
    pub peer: Option<SocketAddr>,
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

pub struct Upstream {
    pub addr: SocketAddr,
    log: Log,
}

impl Upstream {
    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.log.0.lock().unwrap().clone()
    }

    /// Requests received whose path and query contain `needle`.
    pub fn seen_with(&self, needle: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.uri.contains(needle))
            .collect()
    }
}

static UPSTREAM: OnceLock<Upstream> = OnceLock::new();

/// The shared upstream (started on first use).
pub fn upstream() -> &'static Upstream {
    UPSTREAM.get_or_init(|| {
        let log = Log::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let app_log = log.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("upstream runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                let app = app(app_log).into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(l, app).await.unwrap();
            });
        });
        let addr = rx.recv().expect("upstream started");
        Upstream { addr, log }
    })
}

fn app(log: Log) -> Router {
    Router::new()
        .route("/users", get(|| async { json(USERS_JSON) }))
        .route("/users.gz", get(users_gzip))
        .route("/plain", get(|| async { json(PLAIN_JSON) }))
        .route("/chunked", get(chunked))
        .route("/big/{n}", get(big))
        .route("/bigjson", get(big_json))
        .route(
            "/bigjson.len",
            get(|| async {
                let row = r#"{"name":"x","ssn":"123-45-6789"},"#;
                let body = format!("{{\"users\":[{}{{}}]}}", row.repeat(4000));
                ([(header::CONTENT_TYPE, "application/json")], body).into_response()
            }),
        )
        .route("/nested", get(|| async { json(NESTED_JSON) }))
        .route("/dupkeys", get(|| async { json(DUP_KEYS_JSON) }))
        .route("/dupkeys.gz", get(|| async { gzip_json(DUP_KEYS_JSON) }))
        .route("/dupusers", get(|| async { json(DUP_USERS_JSON) }))
        .route("/nested.chunked", get(nested_chunked))
        .route("/slow", get(slow))
        .route(
            "/html",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body><table><tr><td>Ann Lee</td><td>123-45-6789</td></tr></table></body></html>",
                )
                    .into_response()
            }),
        )
        .fallback(echo)
        .layer(axum::middleware::from_fn_with_state(log.clone(), record))
        .with_state(log)
}

/// Records each request (its body included) before it is handled.
async fn record(State(log): State<Log>, req: Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    log.0.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.to_vec(),
        peer,
    });
    next.run(Request::from_parts(parts, Body::from(body))).await
}

fn json(s: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], s).into_response()
}

/// Compressed whatever the client accepts: the gateway must decode to mask.
async fn users_gzip() -> Response {
    gzip_json(USERS_JSON)
}

fn gzip_json(s: &str) -> Response {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(s.as_bytes()).unwrap();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_ENCODING, "gzip"),
        ],
        gz.finish().unwrap(),
    )
        .into_response()
}

async fn chunked() -> Response {
    let parts = (0..5).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("part {i};"))));
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream::iter(parts)),
    )
        .into_response()
}

/// Bytes `/big/{n}` has handed to the server so far (its only user is the streaming
/// test): with backpressure all the way, it stays near what the client has read.
pub static BIG_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `n` bytes of binary, generated in 64 KiB chunks (never held whole), each produced
/// only when the server asks for the next.
async fn big(Path(n): Path<u64>) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let chunk = Bytes::from(vec![0x5a; CHUNK as usize]);
    let s = stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK);
            BIG_SENT.fetch_add(take, std::sync::atomic::Ordering::Relaxed);
            Some((
                Ok::<_, std::io::Error>(chunk.slice(..take as usize)),
                left - take,
            ))
        }
    });
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(s),
    )
        .into_response()
}

/// A JSON document larger than the tests' `max_masked_body`, chunked (no length).
async fn big_json() -> Response {
    let row = r#"{"name":"x","ssn":"123-45-6789"},"#;
    let mut parts: Vec<Result<Bytes, std::io::Error>> =
        vec![Ok(Bytes::from_static(b"{\"users\":["))];
    for _ in 0..4000 {
        parts.push(Ok(Bytes::from_static(row.as_bytes())));
    }
    parts.push(Ok(Bytes::from_static(b"{}]}")));
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream::iter(parts)),
    )
        .into_response()
}

/// `NESTED_JSON` in three chunks (no length).
async fn nested_chunked() -> Response {
    let b = NESTED_JSON.as_bytes();
    let parts = [&b[..10], &b[10..100], &b[100..]]
        .map(|p| Ok::<_, std::io::Error>(Bytes::copy_from_slice(p)));
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Body::from_stream(stream::iter(parts)),
    )
        .into_response()
}

/// Answers only after a minute: longer than any test's `upstream_timeout`.
async fn slow() -> Response {
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    json(PLAIN_JSON)
}

/// Everything else: says what it got.
async fn echo(req: Request) -> Response {
    let body = serde_json::json!({
        "ok": true,
        "method": req.method().as_str(),
        "path": req.uri().path(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
