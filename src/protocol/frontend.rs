//! Typed views of the messages a client sends, borrowed over the read buffer and
//! parsed once. Each `parse` takes the body (after the length word) and accepts what
//! Postgres itself accepts: every field whole, counts read unsigned, no bytes after
//! the last field; anything else is a [`MessageError`], never a panic or a guess.

use super::reader::{Int16s, MessageError, Oids, Reader, Values};

/// Query ('Q').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Query<'a>, MessageError> {
        let mut r = Reader::new(body, "Query");
        let sql = r.cstr()?;
        r.finish()?;
        Ok(Query { sql })
    }
}

/// Parse ('P').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub sql: &'a [u8],
    pub param_types: Oids<'a>,
}

impl<'a> Parse<'a> {
    // Every view is made by `parse`; this one's message happens to be named Parse.
    #[allow(clippy::self_named_constructors)]
    pub fn parse(body: &'a [u8]) -> Result<Parse<'a>, MessageError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr()?;
        let sql = r.cstr()?;
        let param_types = Oids::read(&mut r)?;
        r.finish()?;
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }
}

impl<'a> Parse<'a> {
    /// Only the statement name, from a body that may be malformed after it (the
    /// name a refused Parse's stand-in takes).
    pub fn name(prefix: &'a [u8]) -> Result<&'a [u8], MessageError> {
        Reader::new(prefix, "Parse").cstr()
    }
}

/// A Query's or Parse's name and text as a record shows them, even when the message
/// is malformed (it is refused then, and the record says what came): the Parse's name
/// when readable, and the text up to its NUL, or all that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatementText<'a> {
    /// Some for a Parse whose name is readable.
    pub name: Option<&'a [u8]>,
    pub sql: &'a [u8],
}

impl<'a> StatementText<'a> {
    pub fn read(tag: u8, body: &'a [u8]) -> StatementText<'a> {
        let mut r = Reader::new(body, "statement");
        let name = if tag == b'P' { r.cstr().ok() } else { None };
        let mut text = r;
        let sql = text.cstr().unwrap_or_else(|_| r.rest());
        StatementText { name, sql }
    }
}

/// The SQL text of a Query or Parse message, by tag: what the judge reads.
pub fn sql_of(tag: u8, body: &[u8]) -> Result<&[u8], MessageError> {
    match tag {
        b'Q' => Query::parse(body).map(|q| q.sql),
        b'P' => Parse::parse(body).map(|p| p.sql),
        kind => Err(MessageError::BadKind {
            what: "statement message",
            kind,
        }),
    }
}

/// Bind ('B').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// None: all text; one: that for all; else one per parameter.
    pub param_formats: Int16s<'a>,
    pub params: Values<'a>,
    /// None: all text; one: that for all; else one per column.
    pub result_formats: Int16s<'a>,
}

/// The two names at the front of a Bind: readable before the rest of a large Bind
/// (its parameters) has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindNames<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Bind<'a>, MessageError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let param_formats = Int16s::read(&mut r)?;
        let params = Values::read(&mut r)?;
        let result_formats = Int16s::read(&mut r)?;
        r.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// Only the names, from a body that may be cut short after them.
    pub fn names(prefix: &'a [u8]) -> Result<BindNames<'a>, MessageError> {
        let mut r = Reader::new(prefix, "Bind");
        Ok(BindNames {
            portal: r.cstr()?,
            statement: r.cstr()?,
        })
    }

    /// The format code of parameter `i` (0 text, 1 binary).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats.get(0).unwrap_or(0),
            _ => self.param_formats.get(i).unwrap_or(0),
        }
    }
}

/// Execute ('E').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    pub portal: &'a [u8],
    /// 0: no limit.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Execute<'a>, MessageError> {
        let mut r = Reader::new(body, "Execute");
        let portal = r.cstr()?;
        let max_rows = r.i32()?;
        r.finish()?;
        Ok(Execute { portal, max_rows })
    }

    /// Only the portal name, from a body that may be cut short after it.
    pub fn portal(prefix: &'a [u8]) -> Result<&'a [u8], MessageError> {
        Reader::new(prefix, "Execute").cstr()
    }
}

/// What a Close or Describe names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Statement,
    Portal,
}

fn target_and_name<'a>(
    body: &'a [u8],
    what: &'static str,
) -> Result<(Target, &'a [u8]), MessageError> {
    let mut r = Reader::new(body, what);
    let target = match r.u8()? {
        b'S' => Target::Statement,
        b'P' => Target::Portal,
        kind => return Err(MessageError::BadKind { what, kind }),
    };
    let name = r.cstr()?;
    r.finish()?;
    Ok((target, name))
}

/// Close ('C').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub target: Target,
    pub name: &'a [u8],
}

impl<'a> Close<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Close<'a>, MessageError> {
        let (target, name) = target_and_name(body, "Close")?;
        Ok(Close { target, name })
    }
}

/// Describe ('D').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    pub target: Target,
    pub name: &'a [u8],
}

impl<'a> Describe<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Describe<'a>, MessageError> {
        let (target, name) = target_and_name(body, "Describe")?;
        Ok(Describe { target, name })
    }
}

/// CopyData ('d'): the payload is the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyData<'a> {
    pub data: &'a [u8],
}

impl<'a> CopyData<'a> {
    pub fn parse(body: &'a [u8]) -> CopyData<'a> {
        CopyData { data: body }
    }
}

/// PasswordMessage ('p') carrying a cleartext password (or a bearer token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordMessage<'a> {
    pub password: &'a [u8],
}

impl<'a> PasswordMessage<'a> {
    pub fn parse(body: &'a [u8]) -> Result<PasswordMessage<'a>, MessageError> {
        let mut r = Reader::new(body, "PasswordMessage");
        let password = r.cstr()?;
        r.finish()?;
        Ok(PasswordMessage { password })
    }
}

/// SASLInitialResponse ('p' during a SASL exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    /// None when the client sent length -1 (no initial response).
    pub data: Option<&'a [u8]>,
}

impl<'a> SaslInitialResponse<'a> {
    pub fn parse(body: &'a [u8]) -> Result<SaslInitialResponse<'a>, MessageError> {
        let mut r = Reader::new(body, "SASLInitialResponse");
        let mechanism = r.cstr()?;
        let data = r.value()?;
        r.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_body() -> Vec<u8> {
        let mut b = b"portal\0stmt\0".to_vec();
        b.extend_from_slice(&[0, 1, 0, 1]); // one param format: binary
        b.extend_from_slice(&[0, 2]); // two params
        b.extend_from_slice(&[0, 0, 0, 2, b'h', b'i']);
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&[0, 2, 0, 0, 0, 1]); // result formats text, binary
        b
    }

    #[test]
    fn bind_reads_every_part() {
        let body = bind_body();
        let b = Bind::parse(&body).unwrap();
        assert_eq!((b.portal, b.statement), (&b"portal"[..], &b"stmt"[..]));
        assert_eq!(b.param_format(1), 1);
        assert_eq!(
            b.params.iter().collect::<Vec<_>>(),
            vec![Some(&b"hi"[..]), None]
        );
        assert_eq!(b.result_formats.to_vec(), vec![0, 1]);
    }

    #[test]
    fn bind_truncated_anywhere_is_an_error_and_names_survive_a_cut() {
        let body = bind_body();
        for cut in 0..body.len() {
            assert!(Bind::parse(&body[..cut]).is_err(), "cut at {cut}");
        }
        let names = Bind::names(&body[..14]).unwrap();
        assert_eq!(names.statement, b"stmt");
    }

    #[test]
    fn bind_with_a_lying_length_or_trailing_bytes_is_an_error() {
        let mut body = bind_body();
        body[17] = 9; // first parameter claims 9 bytes
        assert!(Bind::parse(&body).is_err());
        let mut body = bind_body();
        body.push(0);
        assert!(matches!(
            Bind::parse(&body),
            Err(MessageError::Trailing { .. })
        ));
    }

    #[test]
    fn parse_and_query() {
        let body = b"s1\0select $1\0\0\x01\0\0\0\x17";
        let p = Parse::parse(body).unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.param_types.to_vec(), vec![23]);
        assert!(Parse::parse(&body[..body.len() - 1]).is_err());
        assert!(Parse::parse(b"s1\0select").is_err());
        assert_eq!(sql_of(b'Q', b"select 1\0").unwrap(), b"select 1");
        assert!(sql_of(b'Q', b"select 1").is_err());
        assert_eq!(sql_of(b'P', body).unwrap(), b"select $1");
    }

    #[test]
    fn statement_text_shows_what_came() {
        let t = StatementText::read(b'P', b"s\0select");
        assert_eq!((t.name, t.sql), (Some(&b"s"[..]), &b"select"[..]));
        let t = StatementText::read(b'P', b"s");
        assert_eq!((t.name, t.sql), (None, &b"s"[..]));
        let t = StatementText::read(b'Q', b"select 1\0");
        assert_eq!((t.name, t.sql), (None, &b"select 1"[..]));
        assert_eq!(Parse::name(b"s\0sel").unwrap(), b"s");
    }

    #[test]
    fn execute_close_describe() {
        let e = Execute::parse(b"p\0\0\0\0\x05").unwrap();
        assert_eq!((e.portal, e.max_rows), (&b"p"[..], 5));
        assert!(Execute::parse(b"p\0\0\0").is_err());
        assert_eq!(Execute::portal(b"p\0\0").unwrap(), b"p");
        let c = Close::parse(b"Sx\0").unwrap();
        assert_eq!((c.target, c.name), (Target::Statement, &b"x"[..]));
        assert!(Close::parse(b"Qx\0").is_err());
        assert!(Close::parse(b"").is_err());
        let d = Describe::parse(b"P\0").unwrap();
        assert_eq!((d.target, d.name), (Target::Portal, &b""[..]));
        assert!(Describe::parse(b"Px").is_err());
    }

    #[test]
    fn authentication_messages() {
        assert_eq!(PasswordMessage::parse(b"tok\0").unwrap().password, b"tok");
        assert!(PasswordMessage::parse(b"tok").is_err());
        let s = SaslInitialResponse::parse(b"SCRAM-SHA-256\0\0\0\0\x02hi").unwrap();
        assert_eq!(
            (s.mechanism, s.data),
            (&b"SCRAM-SHA-256"[..], Some(&b"hi"[..]))
        );
        assert!(SaslInitialResponse::parse(b"SCRAM-SHA-256\0\0\0\0\x09hi").is_err());
    }
}
