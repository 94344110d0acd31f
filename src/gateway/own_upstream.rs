//! Upstream HTTP/1.1 connections owned by one client connection and driven in that
//! client connection's own task.
//!
//! hyper-util's pooled client runs every upstream connection as a task of its own,
//! so a request and its response each cross tasks through channels (two wake-ups
//! and two context switches between tasks per request). For an HTTP/1.1 client, one
//! request is served at a time, so one upstream connection per client connection
//! and target is enough; its `Connection` future is polled by `Driver`, which the
//! client connection's task polls beside hyper's server connection (`mod.rs`). The
//! request, the target's answer and its body then all move within one task.
//!
//! Used for plain `http` targets and HTTP/1 clients only: an HTTP/2 client's
//! requests run as tasks of their own, many at once, and `https` targets need the
//! TLS connector; both keep the pooled client (`upstream::Route::client`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use futures_util::stream::{FuturesUnordered, StreamExt};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Idle upstream connections one client connection keeps (a client that switches
/// between a few targets keeps one to each).
const MAX_IDLE: usize = 4;

/// How many times a request gives the driver a turn to finish the previous
/// response on a kept connection before it opens another one.
const READY_TURNS: usize = 4;

type Driven = http1::Connection<TokioIo<TcpStream>, Body>;

/// Why a request could not be sent on an own connection.
#[derive(Debug, thiserror::Error)]
pub enum OwnError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connect to {0}: timed out")]
    ConnectTimeout(String),
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

/// The client connection's side: idle senders, and the way new connections reach
/// the driver.
pub struct OwnUpstreams {
    /// `(route id, sender)`; a sender is put back as soon as its response's head
    /// came, and is ready again once the body was read to its end.
    idle: Mutex<Vec<(usize, SendRequest<Body>)>>,
    new: mpsc::UnboundedSender<Driven>,
}

/// Polls the client connection's upstream connections; never completes (it is
/// dropped with the client connection, closing them).
pub struct Driver {
    new: mpsc::UnboundedReceiver<Driven>,
    running: FuturesUnordered<Driven>,
}

/// A client connection's upstream connections and their driver.
pub fn pair() -> (OwnUpstreams, Driver) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        OwnUpstreams {
            idle: Mutex::new(Vec::new()),
            new: tx,
        },
        Driver {
            new: rx,
            running: FuturesUnordered::new(),
        },
    )
}

impl Future for Driver {
    type Output = Infallible;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Infallible> {
        while let Poll::Ready(Some(c)) = self.new.poll_recv(cx) {
            self.running.push(c);
        }
        // A finished connection leaves the set; its sender reports it closed.
        while let Poll::Ready(Some(r)) = self.running.poll_next_unpin(cx) {
            if let Err(e) = r {
                tracing::debug!("http gateway: upstream connection ended: {e}");
            }
        }
        Poll::Pending
    }
}

impl OwnUpstreams {
    /// Send `req` (origin-form URI, `Host` set) to `addr` on a connection of this
    /// client connection's, opening one when none is ready.
    pub async fn send(
        &self,
        route: usize,
        addr: &str,
        connect_timeout: Duration,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, OwnError> {
        let mut sender = match self.ready(route).await {
            Some(s) => s,
            None => self.connect(addr, connect_timeout).await?,
        };
        let req = match sender.try_send_request(req).await {
            Ok(resp) => {
                self.put_back(route, sender);
                return Ok(resp);
            }
            // The kept connection closed before the request went out (the target
            // closed it while idle): the request is whole, so it goes on a new one.
            Err(mut e) => match e.take_message() {
                Some(req) => req,
                None => return Err(e.into_error().into()),
            },
        };
        let mut sender = self.connect(addr, connect_timeout).await?;
        let resp = sender.send_request(req).await?;
        self.put_back(route, sender);
        Ok(resp)
    }

    /// A kept sender to `route` that is ready for a request. One whose last response
    /// is still being read gets a few turns of the driver (which runs in this task)
    /// to finish it: usually the end of the body was already read.
    async fn ready(&self, route: usize) -> Option<SendRequest<Body>> {
        for _ in 0..READY_TURNS {
            {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.retain(|(_, s)| !s.is_closed());
                if let Some(i) = idle.iter().position(|(r, s)| *r == route && s.is_ready()) {
                    return Some(idle.swap_remove(i).1);
                }
                if !idle.iter().any(|(r, _)| *r == route) {
                    return None;
                }
            }
            tokio::task::yield_now().await;
        }
        None
    }

    fn put_back(&self, route: usize, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() >= MAX_IDLE {
            // The oldest goes; its connection closes once its response is read.
            idle.remove(0);
        }
        idle.push((route, sender));
    }

    async fn connect(
        &self,
        addr: &str,
        connect_timeout: Duration,
    ) -> Result<SendRequest<Body>, OwnError> {
        let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(t)) => t,
            Ok(Err(source)) => {
                return Err(OwnError::Connect {
                    addr: addr.to_owned(),
                    source,
                })
            }
            Err(_) => return Err(OwnError::ConnectTimeout(addr.to_owned())),
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        // The driver lives as long as this value (both belong to the client
        // connection), so the send cannot fail while a request needs it.
        let _ = self.new.send(conn);
        Ok(sender)
    }
}
