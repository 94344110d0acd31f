//! The lean HTTP/1.1 path: a plain (non-TLS) client connection served without
//! hyper for the common case, an allowed request to a plain `http` target whose
//! response needs no masking.
//!
//! Heads are parsed with `httparse` out of one buffer per connection, judged by the
//! same `handler::admit` as the hyper path (credentials, rules, the `decided`
//! record), given the same header policy (`headers::upstream_request` and
//! `downstream_response`), and written to an upstream connection this client
//! connection keeps (`relay`); bodies stream by their framing, which `framing`
//! checks strictly both ways: this is a request-smuggling surface.
//!
//! Everything else goes to hyper, the whole connection with the bytes read so far
//! put back (`rewind`): HTTP/2 prior knowledge, HTTP/1.0, upgrades,
//! `Expect: 100-continue`, masked targets, holds, `https` targets. Nothing of such a
//! request is recorded before it is handed over, so hyper's handler records it once.

mod clock;
mod fields;
mod framing;
mod relay;
mod rewind;

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::handler::{self, Admitted};
use super::peer::Peer;
use super::{headers, reply, Door};
use clock::Clock;
use framing::{BodyLen, FramingError, MAX_HEAD, MAX_HEADERS};

/// A request head, parsed. Its fields stay in `raw`, where `Lean::fields` says
/// they lie: no `HeaderMap` is built (the target's head is written from them).
struct Head {
    method: Method,
    uri: Uri,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    version: u8,
    /// The head's bytes as received (put back when the connection goes to hyper).
    raw: Bytes,
}

/// A field's name and value, as places in its head.
type Span = (Range<usize>, Range<usize>);

/// What reading the next request gave.
// One per request, moved once: boxing the head would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Next {
    Head(Head),
    /// The client closed, or shutdown was asked for between requests.
    Closed,
    /// To hyper as it is (HTTP/2 prior knowledge).
    ToHyper,
    Refused(StatusCode, FramingError),
}

/// After one request: keep the connection, close it, or give it to hyper with this
/// request's head put back in front of what follows.
pub(super) enum After {
    Keep,
    Close,
    ToHyper(Bytes),
}

/// A client connection on the lean path.
pub(super) struct Lean<'d> {
    door: &'d Door,
    peer: Peer,
    io: TcpStream,
    /// Bytes read from the client and not yet consumed.
    buf: BytesMut,
    /// Where the current request head's fields lie in it (one list per connection,
    /// so none is allocated per request).
    fields: Vec<Span>,
    /// Upstream connections this client connection keeps.
    ups: Vec<relay::UpConn>,
    /// The next write's bytes (heads and bodies are gathered into one write).
    out: Vec<u8>,
    /// The request being answered is a HEAD: pgmoat's own answers to it carry no body
    /// either (a body there would be read as the next response).
    head_request: bool,
    /// The connection's timeouts (head, idle, the target's answer).
    clock: Clock,
}

/// How long a client may take to send a whole request head once it began one, and
/// how long a kept-alive connection may sit idle between requests (slowloris).
const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Buffers above this are given back once empty (one huge head must not keep its
/// memory for the connection's life).
const KEEP_BUF: usize = 64 * 1024;

/// Serve a plain client connection: lean while it can be, then hyper.
pub(super) async fn serve(
    door: Arc<Door>,
    io: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let mut lean = Lean {
        door: &door,
        peer: Peer::new(peer),
        io,
        buf: BytesMut::with_capacity(8 * 1024),
        fields: Vec::with_capacity(32),
        ups: Vec::new(),
        out: Vec::with_capacity(8 * 1024),
        head_request: false,
        clock: Clock::new(
            HEAD_TIMEOUT
                .min(IDLE_TIMEOUT)
                .min(door.config.upstream_timeout),
        ),
    };
    let put_back = loop {
        match lean.next_head(&mut stop).await {
            Next::Head(head) => match lean.serve_one(head).await {
                After::Keep if !*stop.borrow() => {}
                After::Keep => return,
                After::Close => return lean.linger().await,
                After::ToHyper(raw) => break raw,
            },
            Next::Closed => return,
            Next::ToHyper => break Bytes::new(),
            Next::Refused(status, e) => {
                lean.refuse(status, &e).await;
                return lean.linger().await;
            }
        }
    };
    door.shared
        .metrics
        .http
        .lean_fallbacks
        .fetch_add(1, Relaxed);
    let Lean { io, buf, .. } = lean;
    let mut read = BytesMut::with_capacity(put_back.len() + buf.len());
    read.extend_from_slice(&put_back);
    read.extend_from_slice(&buf);
    let io = rewind::Rewind::new(read.freeze(), io);
    let door = Arc::clone(&door);
    super::serve_io(door, io, peer, stop).await;
}

impl Lean<'_> {
    /// Read until a whole request head is in the buffer, and parse it.
    async fn next_head(&mut self, stop: &mut watch::Receiver<bool>) -> Next {
        self.head_request = false;
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUF {
            self.buf = BytesMut::with_capacity(8 * 1024);
        }
        if self.out.capacity() > KEEP_BUF {
            self.out = Vec::with_capacity(8 * 1024);
        }
        let mut deadline = tokio::time::Instant::now()
            + if self.buf.is_empty() {
                IDLE_TIMEOUT
            } else {
                HEAD_TIMEOUT
            };
        loop {
            if !self.buf.is_empty() {
                const PREFACE: &[u8] = b"PRI * HTTP/2.0";
                let n = self.buf.len().min(PREFACE.len());
                if self.buf[..n] == PREFACE[..n] {
                    if n == PREFACE.len() {
                        return Next::ToHyper;
                    }
                } else {
                    match parse_request(&mut self.buf, &mut self.fields) {
                        Ok(Some(head)) => return Next::Head(head),
                        Ok(None) => {}
                        Err((status, e)) => return Next::Refused(status, e),
                    }
                }
                if self.buf.len() > MAX_HEAD {
                    let e = FramingError::HeadTooLarge;
                    return Next::Refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, e);
                }
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            // Shutdown closes a connection between requests (as hyper's graceful
            // shutdown does), never one in the middle of a request.
            let idle = self.buf.is_empty();
            let read = tokio::select! {
                biased;
                r = self.io.read_buf(&mut self.buf) => r,
                _ = super::stopped(stop), if idle => return Next::Closed,
                _ = self.clock.passed(deadline) => return Next::Closed,
            };
            match read {
                Ok(0) | Err(_) => return Next::Closed,
                Ok(_) if idle => deadline = tokio::time::Instant::now() + HEAD_TIMEOUT,
                Ok(_) => {}
            }
        }
    }

    /// One request on the lean path, or the connection handed to hyper for it.
    async fn serve_one(&mut self, head: Head) -> After {
        // Lent out while the request is served, which borrows `self` throughout.
        let fields = std::mem::take(&mut self.fields);
        let after = self.serve_head(head, &fields).await;
        self.fields = fields;
        after
    }

    async fn serve_head(&mut self, head: Head, spans: &[Span]) -> After {
        let Head {
            method,
            uri,
            version,
            raw,
        } = head;
        let fields = || {
            spans
                .iter()
                .map(|(n, v)| (&raw[n.clone()], &raw[v.clone()]))
        };
        let named = |name: &'static [u8]| {
            fields()
                .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        self.head_request = method == http::Method::HEAD;
        // A method not in upper case is judged and forwarded upper-cased, so the
        // client's `head` may get HEAD's answer without the body it expects: hyper's
        // path serves such requests (it closes the connection after them; review L3).
        if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
            return After::ToHyper(raw);
        }
        // What hyper's connection handling is for: HTTP/1.0 keep-alive rules,
        // upgrades (WebSocket), interim 100 responses.
        // Values that are not text are not read (as `HeaderValue::to_str` refuses them).
        let connection = named(b"connection")
            .filter(|v| headers::visible(v))
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        let mut close = false;
        for token in connection {
            if token.eq_ignore_ascii_case("upgrade") {
                return After::ToHyper(raw);
            }
            close |= token.eq_ignore_ascii_case("close");
        }
        if version == 0 || named(b"upgrade").next().is_some() || named(b"expect").next().is_some() {
            return After::ToHyper(raw);
        }
        let body = match framing::declared_in(fields()) {
            Ok(b) => b.unwrap_or(BodyLen::Empty),
            Err(e) => {
                self.refuse(StatusCode::BAD_REQUEST, &e).await;
                return After::Close;
            }
        };
        let door = self.door;
        // The first `Authorization` field, as `HeaderMap::get` gives the hyper path.
        let authorization = named(b"authorization").next();
        let admitted = handler::admit(door, &self.peer, &method, &uri, authorization, true).await;
        match admitted {
            Admitted::Fallback => After::ToHyper(raw),
            Admitted::Answered(r) => {
                door.shared.metrics.http.lean_requests.fetch_add(1, Relaxed);
                // A body pgmoat did not read is not skipped over: the connection ends.
                let close = close || body != BodyLen::Empty;
                match self.answer(r, close).await {
                    Ok(()) if !close => After::Keep,
                    _ => After::Close,
                }
            }
            Admitted::Go(go) => {
                door.shared.metrics.http.lean_requests.fetch_add(1, Relaxed);
                self.forward(go, &raw, spans, body, close).await
            }
        }
    }

    /// Close after an answer: the write side first, then what the client still
    /// sends is read and dropped for a moment, so closing with unread bytes does not
    /// reset the connection before the client read the answer (a refused request's
    /// rest is usually still arriving).
    async fn linger(mut self) {
        const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
        const MAX_DRAINED: usize = 1 << 20;
        let _ = self.io.shutdown().await;
        let mut drained = 0;
        let mut sink = [0u8; 16 * 1024];
        let drain = async {
            while drained < MAX_DRAINED {
                match self.io.read(&mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => drained += n,
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, drain).await;
    }

    /// Refuse a request for its framing: counted, answered, and the connection is
    /// to be closed.
    async fn refuse(&mut self, status: StatusCode, e: &FramingError) {
        self.door.shared.metrics.http.refused_framing();
        tracing::debug!(peer = %self.peer.addr, "http gateway: request refused: {e}");
        let r = reply::error(status, &format!("pgmoat: refused: {e}"));
        let _ = self.answer(r, true).await;
    }

    /// Write a response pgmoat composed (a whole, small body).
    async fn answer(
        &mut self,
        r: http::Response<axum::body::Body>,
        close: bool,
    ) -> std::io::Result<()> {
        use http_body_util::BodyExt;
        let (parts, body) = r.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        self.out.clear();
        relay::status_line(&mut self.out, parts.status);
        for (name, value) in &parts.headers {
            relay::field(&mut self.out, name.as_str(), value.as_bytes());
        }
        relay::field(
            &mut self.out,
            "content-length",
            body.len().to_string().as_bytes(),
        );
        if close {
            relay::field(&mut self.out, "connection", b"close");
        }
        self.out.extend_from_slice(b"\r\n");
        if !self.head_request {
            self.out.extend_from_slice(&body);
        }
        self.io.write_all(&self.out).await
    }
}

/// Parse a request head at the start of `buf`, taking it out of `buf` when whole;
/// where its fields lie goes to `spans`.
fn parse_request(
    buf: &mut BytesMut,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, (StatusCode, FramingError)> {
    let bad = |e: FramingError| (StatusCode::BAD_REQUEST, e);
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            let e = FramingError::HeadTooLarge;
            return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, e));
        }
        Err(e) => return Err(bad(FramingError::Head(e.to_string()))),
    };
    // A read may bring in more than the bound at once: whole or not, it holds.
    if len > MAX_HEAD {
        let e = FramingError::HeadTooLarge;
        return Err((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, e));
    }
    framing::check_line_ends(&buf[..len]).map_err(bad)?;
    // Where each part lies in the head, so the values can share its bytes.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| -> Range<usize> {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let method = req.method.unwrap_or_default().as_bytes();
    let method =
        Method::from_bytes(method).map_err(|_| bad(FramingError::Head("method".into())))?;
    let target = at(req.path.unwrap_or_default().as_bytes());
    let version = req.version.unwrap_or(1);
    // The checks building a `HeaderMap` made (names and values `http` takes), so a
    // head refused before is refused still.
    spans.clear();
    for f in req.headers.iter() {
        if !fields::name_ok(f.name.as_bytes()) {
            return Err(bad(FramingError::Head("field name".into())));
        }
        if !fields::value_ok(f.value) {
            return Err(bad(FramingError::Head(format!(
                "field value of {}",
                f.name
            ))));
        }
        spans.push((at(f.name.as_bytes()), at(f.value)));
    }
    let raw = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(raw.slice(target))
        .map_err(|e| bad(FramingError::Head(format!("request target: {e}"))))?;
    Ok(Some(Head {
        method,
        uri,
        version,
        raw,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Head>, (StatusCode, FramingError)> {
        parse_request(&mut BytesMut::from(s.as_bytes()), &mut Vec::new())
    }

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        let mut spans = Vec::new();
        let mut buf =
            BytesMut::from(&b"GET /t/x?a=1 HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-A: 2\r\n\r\n"[..]);
        let h = parse_request(&mut buf, &mut spans).unwrap().unwrap();
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri.path(), "/t/x");
        assert_eq!(h.uri.query(), Some("a=1"));
        let fields: Vec<_> = spans
            .iter()
            .map(|(n, v)| (&h.raw[n.clone()], &h.raw[v.clone()]))
            .collect();
        let want: [(&[u8], &[u8]); 3] = [(b"Host", b"a"), (b"X-A", b"1"), (b"X-A", b"2")];
        assert_eq!(fields, want);
        assert!(parse("GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        for bad in [
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/9.1\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        // Over the bound, even when it all came in one read.
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let refused = parse(&long).err().map(|(status, _)| status);
        assert_eq!(refused, Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
}
