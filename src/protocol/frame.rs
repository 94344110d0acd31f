//! Message framing: a one-byte tag, then a big-endian `i32` length that counts itself
//! but not the tag.
//!
//! The same tag byte means different things in each direction ('D' is Describe from a
//! client and DataRow from a server), so every check names its [`Direction`].

use thiserror::Error;

/// Tag plus length word.
pub const HEADER_LEN: usize = 5;

/// Postgres' own ceiling for the large client messages (`PQ_LARGE_MESSAGE_LIMIT`,
/// one byte under 1 GiB).
pub const LARGE_MESSAGE_LIMIT: usize = 0x3fff_ffff - 1;
/// Postgres' ceiling for client messages that never carry data (`PQ_SMALL_MESSAGE_LIMIT`).
pub const SMALL_MESSAGE_LIMIT: usize = 10_000;

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (frontend) to server.
    Frontend,
    /// Server (backend) to client.
    Backend,
}

/// A message header read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub tag: u8,
    /// Whole message length in bytes, tag included.
    pub total: usize,
}

impl Header {
    /// Length of the body (after the length word).
    pub fn body_len(&self) -> usize {
        self.total - HEADER_LEN
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type '{}'", printable(*tag))]
    BadLength { tag: u8, len: i64 },
    #[error("message of type '{}' is too long ({len} bytes, at most {max})", printable(*tag))]
    TooLong { tag: u8, len: usize, max: usize },
    #[error("unknown message type '{}'", printable(*tag))]
    UnknownTag { tag: u8 },
}

fn printable(tag: u8) -> char {
    if tag.is_ascii_graphic() {
        tag as char
    } else {
        '?'
    }
}

/// Frontend message tags that may be large, as Postgres decides in `SocketBackend`.
fn frontend_limit(tag: u8) -> Option<usize> {
    match tag {
        b'Q' | b'F' | b'B' | b'P' | b'd' | b'p' => Some(LARGE_MESSAGE_LIMIT),
        b'X' | b'C' | b'D' | b'E' | b'H' | b'S' | b'c' | b'f' => Some(SMALL_MESSAGE_LIMIT),
        _ => None,
    }
}

/// Backend tags: servers are trusted not to be hostile, but a broken or spoofed one must
/// not make us buffer without bound either.
fn backend_known(tag: u8) -> bool {
    matches!(
        tag,
        b'R' | b'K'
            | b'S'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'E'
            | b'N'
            | b'A'
            | b'1'
            | b'2'
            | b'3'
            | b'n'
            | b's'
            | b't'
            | b'I'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'V'
            | b'v'
    )
}

/// Look at the front of `buf`: `Ok(None)` when not even a header is there yet,
/// `Ok(Some(header))` once the header is readable (the body may still be arriving),
/// and an error when the header can never be valid. Nothing is consumed.
///
/// `max` caps the message length on top of the protocol's own limits.
pub fn check(buf: &[u8], direction: Direction, max: usize) -> Result<Option<Header>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag,
            len: len.into(),
        });
    }
    let len = len as usize;
    let limit = match direction {
        Direction::Frontend => frontend_limit(tag).ok_or(FrameError::UnknownTag { tag })?,
        Direction::Backend => {
            if !backend_known(tag) {
                return Err(FrameError::UnknownTag { tag });
            }
            LARGE_MESSAGE_LIMIT
        }
    };
    let max = limit.min(max);
    if len > max {
        return Err(FrameError::TooLong { tag, len, max });
    }
    Ok(Some(Header {
        tag,
        total: len + 1,
    }))
}

/// The whole length (tag included) of the message whose header starts `buf`; None
/// without a whole header. For buffers already [`check`]ed.
pub fn total_len(buf: &[u8]) -> Option<usize> {
    let len = buf.get(1..HEADER_LEN)?;
    Some(1 + u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn partial_header_is_incomplete() {
        assert_eq!(check(b"Q\0\0", Direction::Frontend, usize::MAX), Ok(None));
    }

    #[test]
    fn whole_query_is_recognised() {
        let m = msg(b'Q', b"select 1\0");
        let h = check(&m, Direction::Frontend, usize::MAX).unwrap().unwrap();
        assert_eq!(h.tag, b'Q');
        assert_eq!(h.total, m.len());
        assert_eq!(h.body_len(), 9);
    }

    #[test]
    fn negative_and_tiny_lengths_are_refused() {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            check(&m, Direction::Frontend, usize::MAX),
            Err(FrameError::BadLength { .. })
        ));
        let mut m = vec![b'S'];
        m.extend_from_slice(&3i32.to_be_bytes());
        assert!(check(&m, Direction::Frontend, usize::MAX).is_err());
    }

    #[test]
    fn small_messages_have_a_small_limit() {
        let mut m = vec![b'S'];
        m.extend_from_slice(&20_000i32.to_be_bytes());
        assert!(matches!(
            check(&m, Direction::Frontend, usize::MAX),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn configured_cap_applies_before_any_allocation() {
        let mut m = vec![b'Q'];
        m.extend_from_slice(&(500_000_000i32).to_be_bytes());
        assert!(matches!(
            check(&m, Direction::Frontend, 1 << 20),
            Err(FrameError::TooLong { max, .. }) if max == 1 << 20
        ));
    }

    #[test]
    fn unknown_tags_are_refused_per_direction() {
        let m = msg(b'Z', b"I");
        assert!(check(&m, Direction::Frontend, usize::MAX).is_err());
        assert!(check(&m, Direction::Backend, usize::MAX).is_ok());
        let m = msg(0, b"");
        assert!(check(&m, Direction::Backend, usize::MAX).is_err());
    }

    #[test]
    fn total_len_reads_a_checked_header() {
        assert_eq!(total_len(&msg(b'Q', b"x\0")), Some(7));
        assert_eq!(total_len(b"Q\0\0"), None);
    }
}
