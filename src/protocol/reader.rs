//! A cursor over a message body that reads the protocol's field types and says what
//! was wrong when a field is not there: every typed view in this module is built on
//! it, so no reader outside `protocol` counts bytes or looks for a NUL.

use thiserror::Error;

/// Why a message body could not be read as the message its tag says it is. The
/// session treats every one the same way (fail closed: the message is malformed);
/// the variants say which part lied, for the log and for tests.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum MessageError {
    #[error("{what}: message ends inside a field")]
    Truncated { what: &'static str },
    #[error("{what}: string without its terminating NUL")]
    Unterminated { what: &'static str },
    #[error("{what}: invalid value length {len}")]
    BadLength { what: &'static str, len: i32 },
    #[error("{what}: {extra} bytes after the end of the message")]
    Trailing { what: &'static str, extra: usize },
    #[error("{what}: invalid kind byte {kind}")]
    BadKind { what: &'static str, kind: u8 },
}

/// Reads fields front to back; every read either returns the field or an error
/// naming the message (`what`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { buf, what }
    }

    fn truncated(&self) -> MessageError {
        MessageError::Truncated { what: self.what }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.buf.len() < n {
            return Err(self.truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        let b = self.bytes(N)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, MessageError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, MessageError> {
        self.array().map(i16::from_be_bytes)
    }

    /// A count: Postgres reads the 16-bit counts as unsigned (`pq_getmsgint(.., 2)`).
    pub(crate) fn count(&mut self) -> Result<usize, MessageError> {
        self.array().map(|b| u16::from_be_bytes(b) as usize)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, MessageError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, MessageError> {
        self.array().map(u32::from_be_bytes)
    }

    /// A NUL-terminated string, without its NUL.
    pub(crate) fn cstr(&mut self) -> Result<&'a [u8], MessageError> {
        let nul =
            memchr::memchr(0, self.buf).ok_or(MessageError::Unterminated { what: self.what })?;
        let s = &self.buf[..nul];
        self.buf = &self.buf[nul + 1..];
        Ok(s)
    }

    /// A length-prefixed value: None for length -1 (NULL); any other negative length
    /// is malformed, as Postgres has it.
    pub(crate) fn value(&mut self) -> Result<Option<&'a [u8]>, MessageError> {
        match self.i32()? {
            -1 => Ok(None),
            len if len < 0 => Err(MessageError::BadLength {
                what: self.what,
                len,
            }),
            len => self.bytes(len as usize).map(Some),
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The message must end here (Postgres' `pq_getmsgend`).
    pub(crate) fn finish(&self) -> Result<(), MessageError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(MessageError::Trailing {
                what: self.what,
                extra: self.buf.len(),
            })
        }
    }
}

/// A run of big-endian `i16`s already checked to be whole (format codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Int16s<'a>(pub(crate) &'a [u8]);

impl<'a> Int16s<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Int16s<'a>, MessageError> {
        let n = r.count()?;
        r.bytes(2 * n).map(Int16s)
    }

    pub fn len(&self) -> usize {
        self.0.len() / 2
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<i16> {
        let b = self.0.get(2 * i..2 * i + 2)?;
        Some(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = i16> + 'a {
        self.0
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn to_vec(&self) -> Vec<i16> {
        self.iter().collect()
    }
}

/// A run of big-endian type OIDs already checked to be whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Oids<'a>(pub(crate) &'a [u8]);

impl<'a> Oids<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Oids<'a>, MessageError> {
        let n = r.count()?;
        r.bytes(4 * n).map(Oids)
    }

    pub fn len(&self) -> usize {
        self.0.len() / 4
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

/// `count` length-prefixed values (Bind parameters, DataRow columns) already checked
/// to be whole: iterating cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Values<'a> {
    count: usize,
    bytes: &'a [u8],
}

impl<'a> Values<'a> {
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Values<'a>, MessageError> {
        let count = r.count()?;
        let start = r.rest();
        let mut check = Reader::new(start, r.what);
        for _ in 0..count {
            check.value()?;
        }
        let used = start.len() - check.buf.len();
        *r = Reader::new(&start[used..], r.what);
        Ok(Values {
            count,
            bytes: &start[..used],
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Each value, None for NULL.
    pub fn iter(&self) -> ValuesIter<'a> {
        ValuesIter {
            left: self.count,
            r: Reader::new(self.bytes, "values"),
        }
    }
}

pub struct ValuesIter<'a> {
    left: usize,
    r: Reader<'a>,
}

impl<'a> Iterator for ValuesIter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when the view was made; a failure here cannot happen, and ends.
        self.r.value().ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

/// NUL-terminated strings to the end of a body (ParameterStatus, NotificationResponse
/// after its process id); an error once one has no NUL.
pub struct CStrings<'a>(Reader<'a>);

impl<'a> CStrings<'a> {
    pub fn new(body: &'a [u8], what: &'static str) -> CStrings<'a> {
        CStrings(Reader::new(body, what))
    }
}

impl<'a> Iterator for CStrings<'a> {
    type Item = Result<&'a [u8], MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let r = self.0.cstr();
        if r.is_err() {
            self.0.rest();
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fail_with_the_message_name_instead_of_panicking() {
        let mut r = Reader::new(b"\x00\x01ab", "Test");
        assert_eq!(r.i16(), Ok(1));
        assert_eq!(r.i32(), Err(MessageError::Truncated { what: "Test" }));
        assert_eq!(r.cstr(), Err(MessageError::Unterminated { what: "Test" }));
        assert_eq!(
            r.finish(),
            Err(MessageError::Trailing {
                what: "Test",
                extra: 2
            })
        );
    }

    #[test]
    fn values_reject_lying_lengths() {
        let mut ok = Reader::new(b"\x00\x02\x00\x00\x00\x01x\xff\xff\xff\xffrest", "V");
        let v = Values::read(&mut ok).unwrap();
        assert_eq!(v.iter().collect::<Vec<_>>(), vec![Some(&b"x"[..]), None]);
        assert_eq!(ok.rest(), b"rest");
        let mut long = Reader::new(b"\x00\x01\x00\x00\x00\x09x", "V");
        assert_eq!(
            Values::read(&mut long),
            Err(MessageError::Truncated { what: "V" })
        );
        let mut neg = Reader::new(b"\x00\x01\xff\xff\xff\xfe", "V");
        assert_eq!(
            Values::read(&mut neg),
            Err(MessageError::BadLength { what: "V", len: -2 })
        );
    }

    #[test]
    fn counts_are_unsigned_and_runs_must_be_whole() {
        let mut r = Reader::new(b"\xff\xff", "C");
        assert_eq!(r.count(), Ok(65535));
        let mut short = Reader::new(b"\x00\x02\x00\x01", "F");
        assert!(Int16s::read(&mut short).is_err());
        let mut oids = Reader::new(b"\x00\x01\x00\x00\x00\x17", "P");
        assert_eq!(Oids::read(&mut oids).unwrap().to_vec(), vec![23]);
    }

    #[test]
    fn cstrings_stop_at_the_first_unterminated_one() {
        let got: Vec<_> = CStrings::new(b"a\0b\0c", "S").collect();
        assert_eq!(got.len(), 3);
        assert!(got[2].is_err());
    }
}
