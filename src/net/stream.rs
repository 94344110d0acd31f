//! A TCP stream that may have been upgraded to TLS, for either side of a session.
//!
//! Plain TCP reads and writes go to the kernel directly (rustix) rather than through
//! libc's `recv`/`send`. Those are POSIX cancellation points: once a process has a
//! second thread (pgmoat has parse threads), glibc brackets every call with two atomic
//! updates of the thread's cancel state, which measured ~0.25 µs per pgbench
//! transaction (four calls). Readiness is kept exactly as tokio's own TcpStream keeps
//! it, including its short-read rule (see [`poll_recv`]).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustix::net::{RecvFlags, SendFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

pub type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;
pub type UpstreamStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T> MaybeTls<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Write what a plain socket takes right now, without waiting or registering for
    /// readiness; the count may be short (0 for TLS, which is never tried). The relay
    /// ends each batch this way: the socket nearly always takes it all, and skipping
    /// the write future saves its setup on every batch.
    pub fn send_now(&self, bytes: &[u8]) -> io::Result<usize> {
        let MaybeTls::Plain(s) = self else {
            return Ok(0);
        };
        if bytes.is_empty() {
            return Ok(0);
        }
        match try_send(s, bytes) {
            Err(e) if retry(&e) => Ok(0),
            sent => sent,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => poll_recv(s, cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => poll_send(s, cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Bytes one plain read takes at most: the size of the per-thread landing buffer.
const SCRATCH: usize = 64 * 1024;

thread_local! {
    /// Where a plain read lands before it is copied into the caller's buffer. The
    /// caller's buffer is usually uninitialised spare capacity, which only unsafe code
    /// could hand to the kernel; copying what arrived (tens of bytes for a query) costs
    /// less than zeroing that capacity first. Const-initialised, so a read pays no
    /// lazy set-up check.
    static LANDING: RefCell<[u8; SCRATCH]> = const { RefCell::new([0; SCRATCH]) };
}

/// Read from a plain socket into `buf`, with tokio's readiness rules: wait until the
/// socket is readable; a `WouldBlock` clears the readiness; and so does a read that
/// filled less than it asked for. The sockets are edge-triggered, and a short read
/// means the kernel had nothing more, so waiting for the next edge saves a read that
/// would only say `WouldBlock` (tokio's TcpStream does the same).
fn poll_recv(s: &TcpStream, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
    let want = buf.remaining().min(SCRATCH);
    if want == 0 {
        return Poll::Ready(Ok(()));
    }
    LANDING.with_borrow_mut(|landing| loop {
        std::task::ready!(s.poll_read_ready(cx))?;
        let mut short = None;
        let read = s.try_io(Interest::READABLE, || {
            let (n, _) = rustix::net::recv(s, &mut landing[..want], RecvFlags::empty())?;
            if n > 0 && n < want {
                // Returning WouldBlock is what makes tokio clear the readiness.
                short = Some(n);
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match (read, short) {
            (_, Some(n)) | (Ok(n), None) => n,
            (Err(e), None) if retry(&e) => continue,
            (Err(e), None) => return Poll::Ready(Err(e)),
        };
        buf.put_slice(&landing[..n]);
        return Poll::Ready(Ok(()));
    })
}

/// Write to a plain socket, with the readiness rules of [`poll_recv`] (a short write
/// means the send buffer is full).
fn poll_send(s: &TcpStream, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
    if bytes.is_empty() {
        return Poll::Ready(Ok(0));
    }
    loop {
        std::task::ready!(s.poll_write_ready(cx))?;
        match try_send(s, bytes) {
            Err(e) if retry(&e) => continue,
            sent => return Poll::Ready(sent),
        }
    }
}

/// One send if the socket is known writable (else WouldBlock, with no system call). A
/// short send clears the readiness, as a WouldBlock does, and returns what was sent.
fn try_send(s: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut short = None;
    let sent = s.try_io(Interest::WRITABLE, || {
        let n = rustix::net::send(s, bytes, SendFlags::NOSIGNAL)?;
        if n > 0 && n < bytes.len() {
            // Returning WouldBlock is what makes tokio clear the readiness.
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match short {
        Some(n) => Ok(n),
        None => sent,
    }
}

/// WouldBlock (readiness was stale; it has been cleared) and EINTR: wait or try again.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}
