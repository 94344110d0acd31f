//! One allowed request on the lean path: its head written to an upstream connection
//! this client connection keeps, its body streamed by its framing, and the target's
//! answer relayed (head filtered as the hyper path filters it, body streamed and
//! re-framed), counted into the request's record. An answer masks apply to is read
//! whole (bounded by `max_masked_body`) and masked as the hyper path masks it
//! (`gateway::masked`), then written with its own Content-Length.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::framing::{self, BodyLen, Chunked, FramingError, Piece, MAX_HEAD, MAX_HEADERS};
use super::{After, Lean};
use crate::gateway::body_mask::{self, BodyKind, BodyMasks};
use crate::gateway::handler::{finish, Go, REQUEST_ID};
use crate::gateway::record::Trail;
use crate::gateway::{headers, masked, reply};

mod masked_answer;

/// Idle upstream connections one client connection keeps (as `own_upstream`).
const MAX_KEPT: usize = 4;
/// Reads from a target or client take at least this much room.
const READ_ROOM: usize = 64 * 1024;

/// An upstream connection kept by a client connection.
pub(in crate::gateway) struct UpConn {
    route: usize,
    io: TcpStream,
    /// Bytes read from the target and not yet relayed.
    buf: BytesMut,
}

/// A response head from the target, still at the start of the upstream buffer: its
/// fields are read and written from there, without a `HeaderMap` (building one per
/// response was a visible part of the lean path's cost).
struct RespHead {
    status: StatusCode,
    /// HTTP/1.1 (1) or HTTP/1.0 (0).
    version: u8,
    /// The head's length (taken out of the buffer once relayed).
    len: usize,
    /// Each field's name and value, as places in the head.
    fields: Vec<(Range<usize>, Range<usize>)>,
}

impl RespHead {
    /// The fields as (name, value) bytes of `head` (the buffer it was parsed from).
    fn fields<'h>(&'h self, head: &'h [u8]) -> impl Iterator<Item = (&'h [u8], &'h [u8])> + 'h {
        self.fields
            .iter()
            .map(move |(n, v)| (&head[n.clone()], &head[v.clone()]))
    }
}

/// Why an exchange with the target failed before its answer's head was whole.
#[derive(Debug, thiserror::Error)]
enum ExchangeError {
    /// Nothing of an answer came on a kept connection and the whole request was in
    /// one write: it is safe to send again on a new connection.
    #[error("{0}")]
    Stale(io::Error),
    #[error("{0}")]
    Upstream(String),
    /// The target's answer is malformed or ambiguously framed.
    #[error("{0}")]
    Response(FramingError),
    /// The client's body is invalidly framed.
    #[error("{0}")]
    ClientFraming(FramingError),
    #[error("the client went away")]
    ClientGone,
}

/// Why a response body did not end.
enum BodyBreak {
    Upstream(String),
    Client,
    Terminated,
}

impl Lean<'_> {
    /// Forward an admitted request and relay the answer.
    pub(super) async fn forward(
        &mut self,
        go: Go<'_>,
        raw: &[u8],
        fields: &[super::Span],
        body: BodyLen,
        close: bool,
    ) -> After {
        let Go {
            trail,
            target,
            method,
            np,
            query,
            judged,
            ..
        } = go;
        let masks = judged.masks.clone();
        let door = self.door;
        // A request body not wholly read leaves the connection unusable.
        let close_on_error = close || body != BodyLen::Empty;
        let route = door.route(&target.tenant, &target.name);
        let Some((route, addr)) = route.and_then(|r| Some((r, r.plain_addr.as_deref()?))) else {
            let r = reply::error(StatusCode::BAD_GATEWAY, "pgmoat: target unavailable");
            return self.answer_recorded(r, trail, None, close_on_error).await;
        };
        let masking = masks.is_some();
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        route.write_origin(&np.encoded, query.as_deref(), out);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        field(out, "host", route.host.as_bytes());
        // The target's fields straight from the client's head (names lower-cased,
        // as a `HeaderMap` wrote them); the framing is written below, from what was
        // checked.
        let fields = fields
            .iter()
            .map(|(n, v)| (&raw[n.clone()], &raw[v.clone()]));
        let (held, peer) = (&route.held, &self.peer);
        headers::upstream_fields(fields, held, peer, door.tls, masking, |n, v| {
            if !n.eq_ignore_ascii_case(b"content-length") {
                lower_field(out, n, v);
            }
        });
        match body {
            BodyLen::Length(n) => field(
                out,
                "content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            ),
            BodyLen::Chunked => field(out, "transfer-encoding", b"chunked"),
            BodyLen::Empty | BodyLen::UntilClose => {}
        }
        out.extend_from_slice(b"\r\n");

        let wait = door.config.upstream_timeout;
        let connect_timeout = route.connect_timeout;
        // Only safe methods are sent again (RFC 9110 9.2.1): a PUT or DELETE the
        // target ran before closing must not run twice while the trail shows one.
        let idempotent = method.is_safe();
        // The connection's clock, not a timer per request (see `clock`); taken out
        // of `self` for the exchange, which borrows the rest.
        let mut clock = self.clock.take();
        let deadline = tokio::time::Instant::now() + wait;
        let exchange = async {
            let mut retried = false;
            loop {
                let (mut up, kept) = match self.kept(route.id) {
                    Some(up) => (up, true),
                    None => (connect(route.id, addr, connect_timeout).await?, false),
                };
                match self.exchange(&mut up, body, &trail).await {
                    Ok(head) => return Ok((up, head)),
                    // The target closed a kept connection as the request went out.
                    // Sent again only when running it twice is harmless (RFC 9110
                    // 9.2.2): the target may have run it before closing.
                    Err(ExchangeError::Stale(_)) if kept && !retried && idempotent => {
                        retried = true
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let exchanged = tokio::select! {
            r = exchange => Ok(r),
            _ = clock.passed(deadline) => Err(()),
        };
        self.clock = clock;
        let (up, head) = match exchanged {
            Ok(Ok(x)) => x,
            Err(()) => {
                tracing::warn!(target = %target.name, "http target did not answer within {wait:?}");
                let r = reply::error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "pgmoat: the target did not answer in time",
                );
                let e = Some(format!("upstream: no answer within {wait:?}"));
                return self.answer_recorded(r, trail, e, close_on_error).await;
            }
            Ok(Err(ExchangeError::ClientGone)) => {
                trail.finish(499, 0, Some("the client went away".into()));
                return After::Close;
            }
            Ok(Err(ExchangeError::ClientFraming(e))) => {
                door.shared.metrics.http.refused_framing();
                let r = reply::error(StatusCode::BAD_REQUEST, &format!("pgmoat: refused: {e}"));
                let e = Some(format!("request body: {e}"));
                return self.answer_recorded(r, trail, e, true).await;
            }
            Ok(Err(e)) => {
                if matches!(e, ExchangeError::Response(_)) {
                    door.shared.metrics.http.refused_framing();
                }
                tracing::warn!(target = %target.name, "http target did not answer: {e}");
                let r = reply::error(StatusCode::BAD_GATEWAY, "pgmoat: the target did not answer");
                let e = Some(format!("upstream: {e}"));
                return self.answer_recorded(r, trail, e, close_on_error).await;
            }
        };
        let head_request = method == http::Method::HEAD;
        self.relay(up, head, head_request, masks, trail, close)
            .await
    }

    /// Send the head in `self.out` and the request's body, then read the answer's
    /// head (interim 1xx answers skipped).
    async fn exchange(
        &mut self,
        up: &mut UpConn,
        body: BodyLen,
        trail: &Trail,
    ) -> Result<RespHead, ExchangeError> {
        let sent_whole = body == BodyLen::Empty;
        let upstream = |e: io::Error| ExchangeError::Upstream(e.to_string());
        match body {
            BodyLen::Empty | BodyLen::UntilClose => {
                up.io
                    .write_all(&self.out)
                    .await
                    .map_err(ExchangeError::Stale)?;
            }
            BodyLen::Length(n) => {
                let mut left = n;
                let now = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                self.out.extend_from_slice(&self.buf[..now]);
                self.buf.advance(now);
                left -= now as u64;
                count(trail, now);
                up.io.write_all(&self.out).await.map_err(upstream)?;
                while left > 0 {
                    self.read_client().await?;
                    let now = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.buf.len());
                    up.io.write_all(&self.buf[..now]).await.map_err(upstream)?;
                    self.buf.advance(now);
                    left -= now as u64;
                    count(trail, now);
                }
            }
            BodyLen::Chunked => {
                let mut chunks = Chunked::default();
                loop {
                    match chunks
                        .next(&mut self.buf)
                        .map_err(ExchangeError::ClientFraming)?
                    {
                        Some(Piece::Data(d)) => {
                            count(trail, d.len());
                            chunk(&mut self.out, &d);
                        }
                        Some(Piece::End) => {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                            break;
                        }
                        None => {
                            up.io.write_all(&self.out).await.map_err(upstream)?;
                            self.out.clear();
                            self.read_client().await?;
                        }
                    }
                }
                up.io.write_all(&self.out).await.map_err(upstream)?;
            }
        }
        loop {
            match parse_response(&up.buf).map_err(ExchangeError::Response)? {
                Some(head) if head.status.is_informational() => {
                    // 101 only answers an upgrade, which this path never sends.
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Err(ExchangeError::Upstream("an unasked 101".into()));
                    }
                    up.buf.advance(head.len);
                }
                Some(head) => return Ok(head),
                None => {
                    if up.buf.len() > MAX_HEAD {
                        return Err(ExchangeError::Response(FramingError::HeadTooLarge));
                    }
                    let nothing_yet = up.buf.is_empty();
                    up.buf.reserve(READ_ROOM);
                    match up.io.read_buf(&mut up.buf).await {
                        Ok(0) if nothing_yet && sent_whole => {
                            let e = io::Error::from(io::ErrorKind::UnexpectedEof);
                            return Err(ExchangeError::Stale(e));
                        }
                        Err(e) if nothing_yet && sent_whole => return Err(ExchangeError::Stale(e)),
                        Ok(0) => {
                            return Err(ExchangeError::Upstream("closed before answering".into()))
                        }
                        Err(e) => return Err(upstream(e)),
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// More bytes of the client's request body.
    async fn read_client(&mut self) -> Result<(), ExchangeError> {
        self.buf.reserve(READ_ROOM);
        match self.io.read_buf(&mut self.buf).await {
            Ok(0) | Err(_) => Err(ExchangeError::ClientGone),
            Ok(_) => Ok(()),
        }
    }

    /// Relay the target's answer: its head filtered, its body streamed in the
    /// framing checked here; the record written when it ends.
    async fn relay(
        &mut self,
        mut up: UpConn,
        head: RespHead,
        head_request: bool,
        masks: Option<Arc<BodyMasks>>,
        trail: Trail,
        close: bool,
    ) -> After {
        let status = head.status;
        let bodiless =
            head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let raw = &up.buf[..head.len];
        let body = if bodiless {
            Ok(BodyLen::Empty)
        } else {
            framing::declared_in(head.fields(raw)).map(|b| b.unwrap_or(BodyLen::UntilClose))
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                self.door.shared.metrics.http.refused_framing();
                tracing::warn!("http target's answer refused: {e}");
                let r = reply::error(StatusCode::BAD_GATEWAY, "pgmoat: the target did not answer");
                let e = Some(format!("upstream: {e}"));
                return self.answer_recorded(r, trail, e, close).await;
            }
        };
        let is = |n: &[u8], name: &HeaderName| n.eq_ignore_ascii_case(name.as_str().as_bytes());
        let connection = || {
            head.fields(raw)
                .filter(|(n, _)| is(n, &header::CONNECTION))
                .map(|(_, v)| v)
        };
        let keep_up = head.version == 1 && body != BodyLen::UntilClose && !has_close(connection());
        let listed = headers::connection_names(connection());
        // The fields the client gets (`headers::downstream_response`'s policy), but
        // the target's own request id: pgmoat's replaces it.
        let kept = || {
            head.fields(raw).filter(|(n, v)| {
                headers::downstream_keeps(n, v, &listed)
                    && !n.eq_ignore_ascii_case(REQUEST_ID.as_bytes())
            })
        };
        // Re-framed below; a 204 has none; a HEAD's or 304's is relayed only when it
        // is one well-formed length (review L2).
        let drop_length =
            !bodiless || status == StatusCode::NO_CONTENT || framing::declared_in(kept()).is_err();
        let sent_fields =
            || kept().filter(move |(n, _)| !(drop_length && is(n, &header::CONTENT_LENGTH)));
        if let Some(m) = masks.filter(|_| !bodiless) {
            // The masked path works on a map of the same fields.
            let mut headers = HeaderMap::with_capacity(head.fields.len() + 1);
            for (n, v) in sent_fields() {
                // Both were checked by `parse_response`; a field that still fails is
                // refused, never passed unread.
                let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) else {
                    let r =
                        reply::error(StatusCode::BAD_GATEWAY, "pgmoat: the target did not answer");
                    let e = Some("upstream: a field of the answer's head".to_owned());
                    return self.answer_recorded(r, trail, e, close).await;
                };
                headers.append(n, v);
            }
            if let Ok(v) = HeaderValue::from_str(trail.id()) {
                headers.insert(REQUEST_ID, v);
            }
            let ct = headers.get(header::CONTENT_TYPE);
            let kind = body_mask::kind_of(ct.and_then(|v| v.to_str().ok()));
            if let Some((r, e)) = masked::unmaskable(status, &headers, kind, &m) {
                return self.answer_recorded(r, trail, Some(e), close).await;
            }
            // Binary bodies under detectors alone stream as the others do.
            if kind != BodyKind::Opaque {
                let answer = Answer {
                    status,
                    headers,
                    body,
                    keep_up,
                };
                up.buf.advance(head.len);
                return self.relay_masked(up, answer, kind, m, trail, close).await;
            }
        }
        let out = &mut self.out;
        out.clear();
        status_line(out, status);
        for (name, value) in sent_fields() {
            // Names go out in lower case, as the `HeaderMap`s of the other paths
            // write them.
            out.extend(name.iter().map(u8::to_ascii_lowercase));
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        field(out, REQUEST_ID, trail.id().as_bytes());
        match body {
            BodyLen::Length(n) => field(
                out,
                "content-length",
                itoa::Buffer::new().format(n).as_bytes(),
            ),
            BodyLen::Chunked | BodyLen::UntilClose => field(out, "transfer-encoding", b"chunked"),
            BodyLen::Empty => {}
        }
        if close {
            field(out, "connection", b"close");
        }
        out.extend_from_slice(b"\r\n");
        up.buf.advance(head.len);
        let mut sent = 0u64;
        let relayed = self.relay_body(&mut up, body, &trail, &mut sent).await;
        let code = status.as_u16();
        match relayed {
            Ok(()) => {
                trail.finish(code, sent, None);
                self.answered(up, keep_up, close)
            }
            Err(BodyBreak::Upstream(e)) => {
                trail.finish(
                    code,
                    sent,
                    Some(format!("the target's body broke off: {e}")),
                );
                After::Close
            }
            Err(BodyBreak::Client) => {
                let e = "the client went away before the body ended";
                trail.finish(code, sent, Some(e.into()));
                After::Close
            }
            Err(BodyBreak::Terminated) => {
                trail.finish(code, sent, Some("terminated by an operator".into()));
                After::Close
            }
        }
    }

    /// The body after the head in `self.out`, written as it comes.
    async fn relay_body(
        &mut self,
        up: &mut UpConn,
        body: BodyLen,
        trail: &Trail,
        sent: &mut u64,
    ) -> Result<(), BodyBreak> {
        let stop = || trail.is_terminated();
        let client = |_: io::Error| BodyBreak::Client;
        match body {
            BodyLen::Empty => self.io.write_all(&self.out).await.map_err(client),
            BodyLen::Length(n) => {
                let mut left = n;
                let now = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(up.buf.len());
                self.out.extend_from_slice(&up.buf[..now]);
                up.buf.advance(now);
                left -= now as u64;
                *sent += now as u64;
                self.io.write_all(&self.out).await.map_err(client)?;
                while left > 0 {
                    if stop() {
                        return Err(BodyBreak::Terminated);
                    }
                    read_up(up).await?;
                    let now = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(up.buf.len());
                    self.io.write_all(&up.buf[..now]).await.map_err(client)?;
                    up.buf.advance(now);
                    left -= now as u64;
                    *sent += now as u64;
                }
                Ok(())
            }
            BodyLen::Chunked => {
                let mut chunks = Chunked::default();
                loop {
                    let piece = match chunks.next(&mut up.buf) {
                        Ok(p) => p,
                        Err(e) => {
                            // What was good goes out; the cut body (no last chunk)
                            // and the closed connection tell the client it broke.
                            let _ = self.io.write_all(&self.out).await;
                            return Err(BodyBreak::Upstream(e.to_string()));
                        }
                    };
                    match piece {
                        Some(Piece::Data(d)) => {
                            *sent += d.len() as u64;
                            chunk(&mut self.out, &d);
                        }
                        Some(Piece::End) => {
                            self.out.extend_from_slice(b"0\r\n\r\n");
                            return self.io.write_all(&self.out).await.map_err(client);
                        }
                        None => {
                            if !self.out.is_empty() {
                                self.io.write_all(&self.out).await.map_err(client)?;
                                self.out.clear();
                            }
                            if stop() {
                                return Err(BodyBreak::Terminated);
                            }
                            read_up(up).await?;
                        }
                    }
                }
            }
            BodyLen::UntilClose => loop {
                if !up.buf.is_empty() {
                    *sent += up.buf.len() as u64;
                    chunk(&mut self.out, &up.buf);
                    up.buf.clear();
                }
                if !self.out.is_empty() {
                    self.io.write_all(&self.out).await.map_err(client)?;
                    self.out.clear();
                }
                if stop() {
                    return Err(BodyBreak::Terminated);
                }
                up.buf.reserve(READ_ROOM);
                match up.io.read_buf(&mut up.buf).await {
                    Ok(0) => {
                        return self.io.write_all(b"0\r\n\r\n").await.map_err(client);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(BodyBreak::Upstream(e.to_string())),
                }
            },
        }
    }

    /// Answer with a response pgmoat made, recording it.
    async fn answer_recorded(
        &mut self,
        r: http::Response<axum::body::Body>,
        trail: Trail,
        error: Option<String>,
        close: bool,
    ) -> After {
        let r = finish(r, trail, error);
        match self.answer(r, close).await {
            Ok(()) if !close => After::Keep,
            _ => After::Close,
        }
    }

    /// A kept connection to `route` that the target has not closed.
    fn kept(&mut self, route: usize) -> Option<UpConn> {
        while let Some(i) = self.ups.iter().position(|u| u.route == route) {
            let up = self.ups.swap_remove(i);
            let mut probe = [0u8; 1];
            // Idle, it must have nothing to read: not an end (closed), not bytes
            // nobody asked for.
            if matches!(up.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            {
                return Some(up);
            }
        }
        None
    }

    /// An answer relayed whole: the upstream connection is kept for the next request
    /// if it may serve one (bytes past the framed body are never relayed, nor is the
    /// connection that sent them used again), and the client's stays open unless
    /// `close`.
    fn answered(&mut self, up: UpConn, keep_up: bool, close: bool) -> After {
        if keep_up && up.buf.is_empty() {
            self.put_back(up);
        }
        if close {
            After::Close
        } else {
            After::Keep
        }
    }

    fn put_back(&mut self, up: UpConn) {
        if self.ups.len() >= MAX_KEPT {
            self.ups.remove(0);
        }
        self.ups.push(up);
    }
}

/// A response head's parts, checked, on the way to the client.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: BodyLen,
    /// The upstream connection may serve another request once the body is read.
    keep_up: bool,
}

async fn read_up(up: &mut UpConn) -> Result<(), BodyBreak> {
    up.buf.reserve(READ_ROOM);
    match up.io.read_buf(&mut up.buf).await {
        Ok(0) => Err(BodyBreak::Upstream("closed before the body ended".into())),
        Ok(_) => Ok(()),
        Err(e) => Err(BodyBreak::Upstream(e.to_string())),
    }
}

async fn connect(route: usize, addr: &str, timeout: Duration) -> Result<UpConn, ExchangeError> {
    let io = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => return Err(ExchangeError::Upstream(format!("connect to {addr}: {e}"))),
        Err(_) => {
            return Err(ExchangeError::Upstream(format!(
                "connect to {addr}: timed out"
            )))
        }
    };
    let _ = io.set_nodelay(true);
    Ok(UpConn {
        route,
        io,
        buf: BytesMut::with_capacity(READ_ROOM),
    })
}

fn count(trail: &Trail, n: usize) {
    trail
        .bytes_in
        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// `HTTP/1.1 <code> <reason>` and its CRLF.
pub(super) fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// One field line (names and values were validated as `http` types).
pub(super) fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// One field line, its name lower-cased.
fn lower_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend(name.iter().map(u8::to_ascii_lowercase));
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// One chunk of a chunked body.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Whether `Connection` values carry `close` (any case); values that are not text
/// are not read (as `HeaderValue::to_str` would not).
fn has_close<'a>(connection: impl Iterator<Item = &'a [u8]>) -> bool {
    connection
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.bytes().all(|b| b == b'\t' || (32..127).contains(&b)))
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// Parse a response head at the start of `buf`; the buffer is left as it is (the
/// head is taken out once relayed).
fn parse_response(buf: &[u8]) -> Result<Option<RespHead>, FramingError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(FramingError::HeadTooLarge),
        Err(e) => return Err(FramingError::Head(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(FramingError::HeadTooLarge);
    }
    framing::check_line_ends(&buf[..len])?;
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| FramingError::Head(format!("status {code}")))?;
    let version = resp.version.unwrap_or(1);
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| -> Range<usize> {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    // The checks building a `HeaderMap` made (names and values `http` takes), so a
    // head refused before is refused still.
    let mut spans = Vec::with_capacity(resp.headers.len());
    for f in resp.headers.iter() {
        if !super::fields::name_ok(f.name.as_bytes()) {
            return Err(FramingError::Head(format!("field name {:?}", f.name)));
        }
        if !super::fields::value_ok(f.value) {
            return Err(FramingError::Head(format!("field value of {}", f.name)));
        }
        spans.push((at(f.name.as_bytes()), at(f.value)));
    }
    Ok(Some(RespHead {
        status,
        version,
        len,
        fields: spans,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_parse_strictly() {
        let b = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        let h = parse_response(b).unwrap().unwrap();
        assert_eq!(h.status, 200);
        let fields: Vec<_> = h.fields(b).collect();
        assert_eq!(fields, [(&b"Content-Length"[..], &b"2"[..])]);
        assert_eq!(&b[h.len..], b"hi");
        for bad in [
            &b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : a\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(parse_response(bad).is_err(), "{bad:?}");
        }
    }
}
