//! The untagged messages a connection opens with: StartupMessage, SSLRequest,
//! GSSENCRequest and CancelRequest.

use thiserror::Error;

use super::reader::Reader;

/// Postgres' own cap on a startup packet (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;

pub const PROTOCOL_3_0: i32 = 196_608;
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;
const CANCEL_REQUEST: i32 = 80_877_102;

/// A parsed opening packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initial {
    Ssl,
    GssEnc,
    Cancel { pid: i32, secret: i32 },
    Startup(Startup),
}

/// StartupMessage: the protocol version and parameters in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub major: u16,
    pub minor: u16,
    pub params: Vec<(String, String)>,
}

impl Startup {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid length of startup packet")]
    BadLength,
    #[error("unsupported frontend protocol {0}.{1}: server supports 3.0")]
    UnsupportedVersion(u16, u16),
    #[error("invalid startup packet layout: expected terminator as last byte")]
    BadLayout,
    #[error("invalid startup packet: parameter is not valid UTF-8")]
    NotUtf8,
    #[error("invalid cancel request")]
    BadCancel,
}

/// How long the packet at the front of `buf` is, once its length word is readable.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as i32).contains(&len) {
        return Err(StartupError::BadLength);
    }
    Ok(Some(len as usize))
}

/// Parse one whole opening packet (length word included).
pub fn parse(packet: &[u8]) -> Result<Initial, StartupError> {
    if packet.len() < 8 {
        return Err(StartupError::BadLength);
    }
    let code = i32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
    let body = &packet[8..];
    match code {
        SSL_REQUEST => Ok(Initial::Ssl),
        GSSENC_REQUEST => Ok(Initial::GssEnc),
        CANCEL_REQUEST => {
            if body.len() != 8 {
                return Err(StartupError::BadCancel);
            }
            let pid = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            let secret = i32::from_be_bytes([body[4], body[5], body[6], body[7]]);
            Ok(Initial::Cancel { pid, secret })
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(StartupError::UnsupportedVersion(major, minor));
            }
            Ok(Initial::Startup(Startup {
                major,
                minor,
                params: parse_params(body)?,
            }))
        }
    }
}

fn parse_params(mut body: &[u8]) -> Result<Vec<(String, String)>, StartupError> {
    let mut params = Vec::new();
    loop {
        match body {
            [0] => return Ok(params),
            [] => return Err(StartupError::BadLayout),
            _ => {}
        }
        let mut r = Reader::new(body, "StartupMessage");
        let name = r.cstr().map_err(|_| StartupError::BadLayout)?;
        let value = r.cstr().map_err(|_| StartupError::BadLayout)?;
        let rest = r.rest();
        let name = std::str::from_utf8(name).map_err(|_| StartupError::NotUtf8)?;
        let value = std::str::from_utf8(value).map_err(|_| StartupError::NotUtf8)?;
        params.push((name.to_owned(), value.to_owned()));
        body = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as i32).to_be_bytes().to_vec();
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn startup_params_parse() {
        let p = packet(PROTOCOL_3_0, b"user\0bob\0database\0demo\0\0");
        let Initial::Startup(s) = parse(&p).unwrap() else {
            panic!("not a startup")
        };
        assert_eq!(s.get("user"), Some("bob"));
        assert_eq!(s.get("database"), Some("demo"));
        assert_eq!(s.minor, 0);
    }

    #[test]
    fn ssl_gss_and_cancel() {
        assert_eq!(parse(&packet(SSL_REQUEST, b"")), Ok(Initial::Ssl));
        assert_eq!(parse(&packet(GSSENC_REQUEST, b"")), Ok(Initial::GssEnc));
        let mut body = 7i32.to_be_bytes().to_vec();
        body.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse(&packet(CANCEL_REQUEST, &body)),
            Ok(Initial::Cancel { pid: 7, secret: 9 })
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(
            parse(&packet(PROTOCOL_3_0, b"user\0bob")),
            Err(StartupError::BadLayout)
        );
        assert_eq!(
            parse(&packet(PROTOCOL_3_0, b"")),
            Err(StartupError::BadLayout)
        );
        assert_eq!(
            parse(&packet(131_072, b"\0")),
            Err(StartupError::UnsupportedVersion(2, 0))
        );
        assert_eq!(packet_len(&[0, 0, 0, 4]), Err(StartupError::BadLength));
        assert_eq!(packet_len(&[0x7f, 0, 0, 0]), Err(StartupError::BadLength));
        assert_eq!(
            parse(&packet(PROTOCOL_3_0, b"user\0\xff\0\0")),
            Err(StartupError::NotUtf8)
        );
    }
}
