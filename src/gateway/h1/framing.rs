//! Where an HTTP/1.1 message's body ends, decided strictly: the lean path is a
//! request-smuggling surface (pgmoat and the target must never disagree on where one
//! request ends), so every ambiguous framing is refused rather than interpreted
//! (RFC 9112 sections 6 and 7).

use bytes::{Buf, Bytes, BytesMut};

/// Header fields a head may carry (hyper's default, which the hyper path applies).
pub const MAX_HEADERS: usize = 100;
/// The longest head read (hyper's default read buffer bound, as the hyper path).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// The longest chunk-size line or trailer line.
const MAX_LINE: usize = 4096;
/// The most trailer bytes a chunked body may end with (read, then dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a message's framing is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndChunked,
    #[error("several Content-Length fields")]
    SeveralLengths,
    #[error("a Content-Length that is not a number")]
    BadLength,
    #[error("a Transfer-Encoding other than chunked")]
    BadTransferEncoding,
    #[error("a bare CR or LF in the head")]
    BareLineEnd,
    #[error("a malformed head: {0}")]
    Head(String),
    #[error("a head over {MAX_HEAD} bytes or {MAX_HEADERS} fields")]
    HeadTooLarge,
    #[error("an invalid chunk")]
    BadChunk,
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLen {
    /// No body (a request with neither field; HEAD, 204, 304 responses).
    Empty,
    Length(u64),
    Chunked,
    /// A response with neither field: its body ends when the target closes.
    UntilClose,
}

/// The body framing the fields declare: `None` when they declare none. Refuses both
/// fields, several or non-numeric lengths, and any coding but exactly `chunked`.
#[cfg(test)]
pub fn declared(h: &http::HeaderMap) -> Result<Option<BodyLen>, FramingError> {
    declared_in(h.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())))
}

/// [`declared`] over a head's fields as (name, value) bytes, names in any case (the
/// lean path's response heads, read without a `HeaderMap`).
pub fn declared_in<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Option<BodyLen>, FramingError> {
    let (mut length, mut lengths) = (None, 0);
    let (mut coding, mut codings) = (None, 0);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"content-length") {
            length = length.or(Some(value));
            lengths += 1;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            coding = coding.or(Some(value));
            codings += 1;
        }
    }
    if lengths > 1 {
        return Err(FramingError::SeveralLengths);
    }
    if codings > 1 {
        return Err(FramingError::BadTransferEncoding);
    }
    match (length, coding) {
        (Some(_), Some(_)) => Err(FramingError::LengthAndChunked),
        (None, Some(te)) => {
            if te.eq_ignore_ascii_case(b"chunked") {
                Ok(Some(BodyLen::Chunked))
            } else {
                Err(FramingError::BadTransferEncoding)
            }
        }
        (Some(v), None) => {
            // Digits only: no sign, no list ("5, 5"), no spaces inside; at most 18
            // digits so it cannot overflow.
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(FramingError::BadLength);
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(FramingError::BadLength)?;
            Ok(Some(BodyLen::Length(n)))
        }
        (None, None) => Ok(None),
    }
}

/// Every LF in a head must end a CRLF and every CR begin one: parsers that accept a
/// bare LF (httparse does) and ones that do not would otherwise split a head
/// differently.
pub fn check_line_ends(head: &[u8]) -> Result<(), FramingError> {
    for i in memchr::memchr2_iter(b'\r', b'\n', head) {
        let ok = if head[i] == b'\n' {
            i > 0 && head[i - 1] == b'\r'
        } else {
            head.get(i + 1) == Some(&b'\n')
        };
        if !ok {
            return Err(FramingError::BareLineEnd);
        }
    }
    Ok(())
}

/// A piece of a chunked body.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Bytes),
    /// The last chunk and the trailers (dropped) were read.
    End,
}

/// Reads a chunked body out of a buffer as it fills.
#[derive(Debug, Default)]
pub struct Chunked {
    state: State,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl Chunked {
    /// The next piece from `buf` (consumed from it), or `None` when more bytes are
    /// needed. Never reads past the body's end: what follows stays in `buf`.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, FramingError> {
        loop {
            match self.state {
                State::Done => return Ok(Some(Piece::End)),
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Piece::Data(data)));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(FramingError::BadChunk);
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Some(Piece::End));
                    }
                    self.trailer_bytes += line.len();
                    // A trailer is a field line; anything else is no chunked body.
                    if self.trailer_bytes > MAX_TRAILERS
                        || !line.contains(&b':')
                        || line[0] == b' '
                        || line[0] == b'\t'
                    {
                        return Err(FramingError::BadChunk);
                    }
                }
            }
        }
    }
}

/// One CRLF-ended line without its CRLF, or `None` when it has not all come.
fn take_line(buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
    let Some(lf) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_LINE {
            return Err(FramingError::BadChunk);
        }
        return Ok(None);
    };
    if lf == 0 || buf[lf - 1] != b'\r' || lf > MAX_LINE {
        return Err(FramingError::BadChunk);
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    if line
        .iter()
        .any(|&b| b == b'\r' || (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(FramingError::BadChunk);
    }
    Ok(Some(line.freeze()))
}

/// `1*HEXDIG [ BWS ";" ext ]`: at most 15 hex digits (no overflow, no sign, no
/// `0x`); extensions are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(FramingError::BadChunk);
    }
    let rest = &line[digits..];
    let rest = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .map_or(&[][..], |i| &rest[i..]);
    if !rest.is_empty() && rest[0] != b';' {
        return Err(FramingError::BadChunk);
    }
    let text = std::str::from_utf8(&line[..digits]).map_err(|_| FramingError::BadChunk)?;
    u64::from_str_radix(text, 16).map_err(|_| FramingError::BadChunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn map(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in fields {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn framing_fields_are_read_strictly() {
        assert_eq!(declared(&map(&[])), Ok(None));
        assert_eq!(
            declared(&map(&[("content-length", "12")])),
            Ok(Some(BodyLen::Length(12)))
        );
        assert_eq!(
            declared(&map(&[("transfer-encoding", "Chunked")])),
            Ok(Some(BodyLen::Chunked))
        );
        let refused = [
            (
                vec![("content-length", "3"), ("transfer-encoding", "chunked")],
                FramingError::LengthAndChunked,
            ),
            (
                vec![("content-length", "3"), ("content-length", "3")],
                FramingError::SeveralLengths,
            ),
            (vec![("content-length", "3, 3")], FramingError::BadLength),
            (vec![("content-length", "+3")], FramingError::BadLength),
            (vec![("content-length", "0x10")], FramingError::BadLength),
            (vec![("content-length", "")], FramingError::BadLength),
            (
                vec![("content-length", "99999999999999999999")],
                FramingError::BadLength,
            ),
            (
                vec![("transfer-encoding", "gzip, chunked")],
                FramingError::BadTransferEncoding,
            ),
            (
                vec![
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                FramingError::BadTransferEncoding,
            ),
            (
                vec![("transfer-encoding", "identity")],
                FramingError::BadTransferEncoding,
            ),
        ];
        for (fields, want) in refused {
            assert_eq!(declared(&map(&fields)), Err(want), "{fields:?}");
        }
    }

    #[test]
    fn bare_line_ends_are_refused() {
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
        assert!(check_line_ends(b"GET / HTTP/1.1\nHost: a\r\n\r\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n").is_err());
        assert!(check_line_ends(b"GET / HTTP/1.1\r\nHost: a\r\n\n").is_err());
    }

    fn decode(input: &[u8]) -> Result<(Vec<u8>, Vec<u8>), FramingError> {
        // Fed a byte at a time: every split point must give the same answer.
        let mut c = Chunked::default();
        let (mut buf, mut out) = (BytesMut::new(), Vec::new());
        for &b in input {
            buf.extend_from_slice(&[b]);
            while let Some(p) = c.next(&mut buf)? {
                match p {
                    Piece::Data(d) => out.extend_from_slice(&d),
                    Piece::End => return Ok((out, buf.to_vec())),
                }
            }
        }
        Err(FramingError::BadChunk)
    }

    #[test]
    fn chunked_bodies_end_where_they_say_and_nothing_past_them_is_taken() {
        let (body, rest) =
            decode(b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\nX-T: 1\r\n\r\nGET /").unwrap();
        assert_eq!(body, b"hello!");
        assert_eq!(rest, b"");
        let mut c = Chunked::default();
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        assert_eq!(
            c.next(&mut buf),
            Ok(Some(Piece::Data(Bytes::from_static(b"abc"))))
        );
        assert_eq!(c.next(&mut buf), Ok(Some(Piece::End)));
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn invalid_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"1234567890abcdef0\r\n",
            b"5 junk\r\n",
            b"\r\n",
            b"0\r\n folded\r\n\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
