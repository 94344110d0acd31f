//! Reading whole messages during startup and authentication, before the relay loop
//! takes over. Check-then-parse: the buffer grows only once a header says how much.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::frame::{self, Direction};
use crate::protocol::FrameError;

pub enum ReadError {
    Io(std::io::Error),
    Eof,
    Frame(FrameError),
}

/// Read one whole message (tag included) from `stream`, using `buf` for what has
/// arrived; bytes after the message stay in `buf`.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    direction: Direction,
    max: usize,
) -> Result<BytesMut, ReadError> {
    loop {
        if let Some(h) = frame::check(buf, direction, max).map_err(ReadError::Frame)? {
            if buf.len() >= h.total {
                return Ok(buf.split_to(h.total));
            }
            buf.reserve(h.total - buf.len());
        } else {
            buf.reserve(1024);
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err(ReadError::Eof),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}
