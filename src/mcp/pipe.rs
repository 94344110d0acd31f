//! Loopback socket pairs: how an MCP session reaches the Postgres front door's own
//! session code. One end is served by [`crate::session::serve_proven`] exactly as a
//! wire client's socket is; the other is driven by tokio-postgres. A real socket
//! (rather than an in-memory stream) keeps the wire session's I/O path unchanged.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

/// How long making one pair may take before it is given up.
const PAIR_TIMEOUT: Duration = Duration::from_secs(5);

/// A private loopback listener that only ever accepts the connections this process
/// makes to it. Anything else that connects is closed unread.
pub struct Pipe {
    listener: Mutex<TcpListener>,
    addr: SocketAddr,
}

impl Pipe {
    pub async fn bind() -> io::Result<Pipe> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        Ok(Pipe {
            listener: Mutex::new(listener),
            addr,
        })
    }

    /// A connected pair: (the driver's end, the session's end). The accepted socket
    /// is matched to ours by its address, so a stranger's connection to the port
    /// (another local process) can never be taken for ours.
    pub async fn pair(&self) -> io::Result<(TcpStream, TcpStream)> {
        let listener = self.listener.lock().await;
        let made = async {
            let ours = TcpStream::connect(self.addr).await?;
            let want = ours.local_addr()?;
            loop {
                let (theirs, from) = listener.accept().await?;
                if from == want {
                    return Ok::<_, io::Error>((ours, theirs));
                }
                tracing::warn!(%from, "mcp: a connection to the internal loopback port that pgmoat did not make was closed");
            }
        };
        let (a, b) = tokio::time::timeout(PAIR_TIMEOUT, made)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "loopback pair timed out"))??;
        a.set_nodelay(true)?;
        b.set_nodelay(true)?;
        Ok((a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn pairs_are_connected_and_strangers_skipped() {
        let pipe = Pipe::bind().await.unwrap();
        // A stranger connects first: it must not be handed out as our peer.
        let _stranger = TcpStream::connect(pipe.addr).await.unwrap();
        let (mut a, mut b) = pipe.pair().await.unwrap();
        a.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(a.local_addr().unwrap(), b.peer_addr().unwrap());
    }
}
