//! The `http_request` record of one request, and the body wrapper that counts what
//! the client received and writes the record once the body is done (or broken off).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::audit::http_request::HttpRequest;
use crate::audit::{Audit, AuditError, Event};
use crate::session::registry::Registration;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's record in the making.
pub struct Trail {
    audit: Audit,
    session: Arc<str>,
    started: Instant,
    /// Request body bytes read so far (the counting wrapper adds to it).
    pub bytes_in: Arc<AtomicU64>,
    pub rec: HttpRequest,
    /// The request's place in `GET /api/v1/sessions`, for as long as it runs.
    registration: Option<Registration>,
    done: bool,
}

/// A request whose handler was dropped (the client went away, say while its request
/// waited for approval) is still recorded: status 499, as nginx logs it.
impl Drop for Trail {
    fn drop(&mut self) {
        if !self.done {
            self.write(499, 0, Some("the client went away".into()));
        }
    }
}

impl Trail {
    pub fn new(audit: Audit, started: Instant, rec: HttpRequest) -> Trail {
        Trail {
            audit,
            session: request_id(),
            started,
            bytes_in: Arc::new(AtomicU64::new(0)),
            rec,
            registration: None,
            done: false,
        }
    }

    /// Listed among the live sessions until the record is written.
    pub fn register(&mut self, r: Registration) {
        self.registration = Some(r);
    }

    /// Turns true when an operator terminates the request.
    pub fn terminated(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.registration.as_ref().map(Registration::terminated)
    }

    /// Whether an operator has terminated the request (no receiver is made).
    pub fn is_terminated(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(Registration::is_terminated)
    }

    /// The id the record is filed under (`pgmoat audit replay DIR ID`).
    pub fn id(&self) -> &str {
        &self.session
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    pub fn session(&self) -> &Arc<str> {
        &self.session
    }

    /// Append the `decided` record (durably as `audit.durability` promises): the
    /// record in the making with its phase. It is lent to the event, not copied, and
    /// put back afterwards, also when the caller's future is dropped during the wait
    /// (then the 499 record written on drop still has every field).
    pub async fn append_decided(&mut self) -> Result<(), AuditError> {
        let mut rec = std::mem::take(&mut self.rec);
        rec.phase = Some("decided".into());
        let lent = Lent {
            event: Some(Event::HttpRequest(rec)),
            trail: self,
        };
        let Some(event) = &lent.event else {
            return Ok(());
        };
        lent.trail
            .audit
            .append_ref(Some(&lent.trail.session), event)
            .await
    }

    /// Write the record (queued; never lost, never blocking the response).
    pub fn finish(mut self, status: u16, bytes_out: u64, error: Option<String>) {
        self.write(status, bytes_out, error);
    }

    fn write(&mut self, status: u16, bytes_out: u64, error: Option<String>) {
        self.done = true;
        drop(self.registration.take());
        self.rec.status = status;
        self.rec.bytes_out = bytes_out;
        self.rec.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        self.rec.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        self.rec.error = error;
        if !self.audit.is_enabled() {
            return;
        }
        let event = Event::HttpRequest(std::mem::take(&mut self.rec));
        // Queued here when there is room; a task waits for room only when the writer
        // is behind.
        match self.audit.try_record(Some(&self.session), &event) {
            Some(Ok(())) => return,
            Some(Err(e)) => {
                tracing::error!("audit: http_request not recorded: {e}");
                return;
            }
            None => {}
        }
        let (audit, session) = (self.audit.clone(), Arc::clone(&self.session));
        // Dropped outside the runtime (at process exit): nothing can be queued.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("audit: http_request not recorded: no runtime");
            return;
        };
        rt.spawn(async move {
            if let Err(e) = audit.record(Some(&session), event).await {
                tracing::error!("audit: http_request not recorded: {e}");
            }
        });
    }
}

/// A request's record id: what `Audit::new_session_id` makes (16 hex digits of a
/// random number), written without `fmt` (one per request).
fn request_id() -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n: u64 = rand::random();
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
    }
    match std::str::from_utf8(&digits) {
        Ok(id) => Arc::from(id),
        Err(_) => Audit::new_session_id(),
    }
}

/// The `decided` event, made of a trail's record and given back to it on drop.
struct Lent<'a> {
    event: Option<Event>,
    trail: &'a mut Trail,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(Event::HttpRequest(mut rec)) = self.event.take() {
            rec.phase = None;
            self.trail.rec = rec;
        }
    }
}

/// Counts the bytes of a body as they pass.
pub struct Counted<B> {
    inner: B,
    count: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>) -> Counted<B> {
        Counted { inner, count }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p {
            if let Some(d) = f.data_ref() {
                self.count.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body streamed to the client; the record is written when it ends, fails
/// or the client goes away (then with an `error`).
pub struct Metered<B> {
    inner: B,
    sent: u64,
    status: u16,
    terminated: Option<tokio::sync::watch::Receiver<bool>>,
    trail: Option<Trail>,
}

impl<B> Metered<B> {
    pub fn new(inner: B, status: u16, trail: Trail) -> Metered<B> {
        Metered {
            inner,
            sent: 0,
            status,
            terminated: trail.terminated(),
            trail: Some(trail),
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError> + std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        // An operator terminated the request: the transfer is broken off.
        if self.terminated.as_ref().is_some_and(|t| *t.borrow()) {
            let (status, sent) = (self.status, self.sent);
            if let Some(t) = self.trail.take() {
                t.finish(status, sent, Some("terminated by an operator".into()));
            }
            return Poll::Ready(Some(Err("terminated by an operator".into())));
        }
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        match &p {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.sent += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = format!("the target's body broke off: {e}");
                let (status, sent) = (self.status, self.sent);
                if let Some(t) = self.trail.take() {
                    t.finish(status, sent, Some(msg));
                }
            }
            Poll::Ready(None) => {
                let (status, sent) = (self.status, self.sent);
                if let Some(t) = self.trail.take() {
                    t.finish(status, sent, None);
                }
            }
            Poll::Pending => {}
        }
        p.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if let Some(t) = self.trail.take() {
            // Ended without the body's end: the client left, or an empty body was
            // never polled (is_end_stream said so up front).
            let err = if self.sent == 0 {
                None
            } else {
                Some("the client went away before the body ended".into())
            };
            t.finish(self.status, self.sent, err);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_16_hex_digits_as_session_ids_are() {
        let a = super::request_id();
        let b = super::request_id();
        assert_eq!(a.len(), 16);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert_eq!(crate::audit::Audit::new_session_id().len(), a.len());
    }
}
