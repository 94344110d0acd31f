//! Typed views of the messages a server sends, borrowed over the read buffer. The
//! encoders for what pgmoat itself sends are in [`super::backend`].

use super::reader::{CStrings, MessageError, Oids, Reader, Values};

/// One column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    pub name: &'a [u8],
    pub table_oid: u32,
    pub attnum: i16,
    pub type_oid: u32,
    pub type_size: i16,
    pub type_modifier: i32,
    /// 0 text, 1 binary.
    pub format: i16,
}

/// RowDescription ('T'), checked whole when made: iterating its fields cannot fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowDescription<'a> {
    count: usize,
    fields: &'a [u8],
}

fn read_field<'a>(r: &mut Reader<'a>) -> Result<FieldDescription<'a>, MessageError> {
    Ok(FieldDescription {
        name: r.cstr()?,
        table_oid: r.u32()?,
        attnum: r.i16()?,
        type_oid: r.u32()?,
        type_size: r.i16()?,
        type_modifier: r.i32()?,
        format: r.i16()?,
    })
}

impl<'a> RowDescription<'a> {
    pub fn parse(body: &'a [u8]) -> Result<RowDescription<'a>, MessageError> {
        let mut r = Reader::new(body, "RowDescription");
        let count = r.count()?;
        let fields = r.rest();
        let mut check = Reader::new(fields, "RowDescription");
        for _ in 0..count {
            read_field(&mut check)?;
        }
        check.finish()?;
        Ok(RowDescription { count, fields })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn fields(&self) -> impl Iterator<Item = FieldDescription<'a>> + 'a {
        let mut r = Reader::new(self.fields, "RowDescription");
        // Checked in `parse`: `ok()` only ends an iteration that cannot fail.
        (0..self.count).map_while(move |_| read_field(&mut r).ok())
    }
}

/// DataRow ('D'), checked whole when made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRow<'a> {
    pub values: Values<'a>,
}

impl<'a> DataRow<'a> {
    pub fn parse(body: &'a [u8]) -> Result<DataRow<'a>, MessageError> {
        let mut r = Reader::new(body, "DataRow");
        let values = Values::read(&mut r)?;
        r.finish()?;
        Ok(DataRow { values })
    }
}

/// The column count at the front of a RowDescription or DataRow body, without
/// reading the rest (0 when there is none).
pub fn column_count(body: &[u8]) -> usize {
    Reader::new(body, "row").count().unwrap_or(0)
}

/// The fields of an ErrorResponse ('E') or NoticeResponse ('N') body, as (field
/// type, value) pairs, read lazily: an item is an error once a value has no NUL;
/// iteration ends at the terminating zero byte.
pub struct ResponseFields<'a> {
    r: Reader<'a>,
    done: bool,
}

impl<'a> ResponseFields<'a> {
    pub fn new(body: &'a [u8]) -> ResponseFields<'a> {
        ResponseFields {
            r: Reader::new(body, "ErrorResponse"),
            done: false,
        }
    }
}

impl<'a> Iterator for ResponseFields<'a> {
    type Item = Result<(u8, &'a [u8]), MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let kind = match self.r.u8() {
            Ok(0) | Err(_) => {
                // A body without its terminator ends here too: what came was read.
                self.done = true;
                return None;
            }
            Ok(k) => k,
        };
        let value = self.r.cstr();
        self.done = value.is_err();
        Some(value.map(|v| (kind, v)))
    }
}

/// CommandComplete ('C').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    pub tag: &'a [u8],
}

impl<'a> CommandComplete<'a> {
    pub fn parse(body: &'a [u8]) -> Result<CommandComplete<'a>, MessageError> {
        let mut r = Reader::new(body, "CommandComplete");
        // What follows the tag is ignored, as it always was: a server is not hostile.
        let tag = r.cstr()?;
        Ok(CommandComplete { tag })
    }
}

/// ParameterDescription ('t').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterDescription<'a> {
    pub types: Oids<'a>,
}

impl<'a> ParameterDescription<'a> {
    pub fn parse(body: &'a [u8]) -> Result<ParameterDescription<'a>, MessageError> {
        let mut r = Reader::new(body, "ParameterDescription");
        let types = Oids::read(&mut r)?;
        r.finish()?;
        Ok(ParameterDescription { types })
    }
}

/// ParameterStatus ('S').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> ParameterStatus<'a> {
    pub fn parse(body: &'a [u8]) -> Result<ParameterStatus<'a>, MessageError> {
        let mut r = Reader::new(body, "ParameterStatus");
        let name = r.cstr()?;
        let value = r.cstr()?;
        Ok(ParameterStatus { name, value })
    }
}

/// NotificationResponse ('A').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification<'a> {
    pub pid: i32,
    pub channel: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Notification<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Notification<'a>, MessageError> {
        let mut r = Reader::new(body, "NotificationResponse");
        let pid = r.i32()?;
        let channel = r.cstr()?;
        let payload = r.cstr()?;
        r.finish()?;
        Ok(Notification {
            pid,
            channel,
            payload,
        })
    }
}

/// The strings of a message made of `skip` fixed bytes and then NUL-terminated
/// strings (NotificationResponse after its process id, ParameterStatus).
pub fn strings_after(body: &[u8], skip: usize) -> Result<CStrings<'_>, MessageError> {
    let mut r = Reader::new(body, "strings");
    r.bytes(skip)?;
    Ok(CStrings::new(r.rest(), "strings"))
}

/// An Authentication request ('R'): its code, and what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentication<'a> {
    pub code: i32,
    pub data: &'a [u8],
}

impl<'a> Authentication<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Authentication<'a>, MessageError> {
        let mut r = Reader::new(body, "Authentication");
        let code = r.i32()?;
        Ok(Authentication {
            code,
            data: r.rest(),
        })
    }
}

/// BackendKeyData ('K').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendKeyData {
    pub pid: i32,
    pub secret: i32,
}

impl BackendKeyData {
    pub fn parse(body: &[u8]) -> Result<BackendKeyData, MessageError> {
        let mut r = Reader::new(body, "BackendKeyData");
        let pid = r.i32()?;
        let secret = r.i32()?;
        Ok(BackendKeyData { pid, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row_description() -> Vec<u8> {
        let mut b = vec![0, 2];
        for (name, attnum) in [(&b"id"[..], 1i16), (b"email", 2)] {
            b.extend_from_slice(name);
            b.push(0);
            b.extend_from_slice(&16384u32.to_be_bytes());
            b.extend_from_slice(&attnum.to_be_bytes());
            b.extend_from_slice(&25u32.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
        }
        b
    }

    #[test]
    fn row_description_fields() {
        let body = row_description();
        let t = RowDescription::parse(&body).unwrap();
        let f: Vec<_> = t.fields().collect();
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[1].name, f[1].attnum, f[1].type_oid),
            (&b"email"[..], 2, 25)
        );
        for cut in 0..body.len() {
            assert!(RowDescription::parse(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut lying = body.clone();
        lying[1] = 3;
        assert!(RowDescription::parse(&lying).is_err());
        assert_eq!(column_count(&body), 2);
        assert_eq!(column_count(b""), 0);
    }

    #[test]
    fn data_row_values() {
        let body = b"\0\x02\0\0\0\x01a\xff\xff\xff\xff";
        let d = DataRow::parse(body).unwrap();
        assert_eq!(
            d.values.iter().collect::<Vec<_>>(),
            vec![Some(&b"a"[..]), None]
        );
        assert!(DataRow::parse(&body[..body.len() - 1]).is_err());
        assert!(DataRow::parse(b"\0\x01\0\0\0\x05ab").is_err());
    }

    #[test]
    fn response_fields_read_what_is_whole() {
        let all: Vec<_> = ResponseFields::new(b"C42\0Mx\0\0").collect();
        assert_eq!(all, vec![Ok((b'C', &b"42"[..])), Ok((b'M', &b"x"[..]))]);
        let cut: Vec<_> = ResponseFields::new(b"C42\0Mx").collect();
        assert_eq!(cut.len(), 2);
        assert!(cut[1].is_err());
        assert_eq!(ResponseFields::new(b"").count(), 0);
    }

    #[test]
    fn small_server_messages() {
        assert_eq!(
            CommandComplete::parse(b"SELECT 1\0").unwrap().tag,
            b"SELECT 1"
        );
        assert!(CommandComplete::parse(b"SELECT 1").is_err());
        let p = ParameterStatus::parse(b"TimeZone\0UTC\0").unwrap();
        assert_eq!((p.name, p.value), (&b"TimeZone"[..], &b"UTC"[..]));
        assert!(ParameterStatus::parse(b"TimeZone\0UTC").is_err());
        let t = ParameterDescription::parse(b"\0\x01\0\0\0\x17").unwrap();
        assert_eq!(t.types.to_vec(), vec![23]);
        assert!(ParameterDescription::parse(b"\0\x02\0\0\0\x17").is_err());
        let n = Notification::parse(b"\0\0\0\x07ch\0hi\0").unwrap();
        assert_eq!((n.pid, n.channel, n.payload), (7, &b"ch"[..], &b"hi"[..]));
        let s: Vec<_> = strings_after(b"\0\0\0\x07ch\0hi\0", 4).unwrap().collect();
        assert_eq!(s, vec![Ok(&b"ch"[..]), Ok(&b"hi"[..])]);
        assert!(strings_after(b"\0\0", 4).is_err());
        assert_eq!(Authentication::parse(b"\0\0\0\x03").unwrap().code, 3);
        assert!(Authentication::parse(b"\0\0").is_err());
        assert_eq!(
            BackendKeyData::parse(b"\0\0\0\x01\0\0\0\x02").unwrap(),
            BackendKeyData { pid: 1, secret: 2 }
        );
        assert!(BackendKeyData::parse(b"\0\0\0\x01").is_err());
    }

    /// Every view, client and server, over pseudo-random bodies made of the bytes
    /// that matter (NULs, small counts, -1, kind letters): errors, never a panic, and
    /// a view that parses iterates to its end.
    #[test]
    fn no_view_panics_on_arbitrary_bytes() {
        use crate::protocol::frontend::*;
        const ALPHABET: [u8; 8] = [0, 0, 1, 2, 0xff, b'S', b'P', b'a'];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % 8) as usize]
        };
        for len in 0..64 {
            for _ in 0..200 {
                let body: Vec<u8> = (0..len).map(|_| next()).collect();
                let b = &body[..];
                let _ = Query::parse(b);
                let _ = Parse::parse(b).map(|p| p.param_types.iter().count());
                let _ = StatementText::read(b'P', b);
                if let Ok(bind) = Bind::parse(b) {
                    assert_eq!(bind.params.iter().count(), bind.params.len());
                    let _ = bind.param_format(3);
                    let _ = bind.result_formats.to_vec();
                }
                let _ = Bind::names(b);
                let _ = Execute::parse(b);
                let _ = Close::parse(b);
                let _ = Describe::parse(b);
                let _ = PasswordMessage::parse(b);
                let _ = SaslInitialResponse::parse(b);
                if let Ok(t) = RowDescription::parse(b) {
                    assert_eq!(t.fields().count(), t.len());
                }
                if let Ok(d) = DataRow::parse(b) {
                    assert_eq!(d.values.iter().count(), d.values.len());
                }
                let _ = ResponseFields::new(b).count();
                let _ = CommandComplete::parse(b);
                let _ = ParameterDescription::parse(b);
                let _ = ParameterStatus::parse(b);
                let _ = Notification::parse(b);
                let _ = strings_after(b, 4).map(|s| s.count());
                let _ = Authentication::parse(b);
                let _ = BackendKeyData::parse(b);
                let _ = column_count(b);
            }
        }
    }
}
