//! Encoders for the messages pgmoat itself sends to clients, and the few readers it
//! needs for server messages (ErrorResponse fields, ParameterStatus), over the views
//! in [`super::backend_view`].
//!
//! Encoders append to a caller's buffer and back-fill the length word.

use bytes::{BufMut, BytesMut};

use super::backend_view::{ParameterStatus, ResponseFields};

/// Start a message: tag and a placeholder length. Returns the length word's offset.
fn begin(buf: &mut BytesMut, tag: u8) -> usize {
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    // A NUL inside would end the field early and desynchronise the client.
    buf.extend(s.iter().map(|&b| if b == 0 { b' ' } else { b }));
    buf.put_u8(0);
}

/// ErrorResponse severities pgmoat uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
        }
    }
}

/// An error or notice as pgmoat composes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub message: &'a str,
    pub detail: Option<&'a str>,
    pub hint: Option<&'a str>,
    pub routine: Option<&'a str>,
}

impl<'a> ErrorFields<'a> {
    pub fn new(severity: Severity, code: &'a str, message: &'a str) -> Self {
        ErrorFields {
            severity,
            code,
            message,
            detail: None,
            hint: None,
            routine: None,
        }
    }

    pub fn detail(mut self, detail: &'a str) -> Self {
        self.detail = Some(detail);
        self
    }

    pub fn hint(mut self, hint: &'a str) -> Self {
        self.hint = Some(hint);
        self
    }
}

fn put_fields(buf: &mut BytesMut, tag: u8, f: &ErrorFields<'_>) {
    let at = begin(buf, tag);
    for (field, value) in [
        (b'S', Some(f.severity.as_str())),
        (b'V', Some(f.severity.as_str())),
        (b'C', Some(f.code)),
        (b'M', Some(f.message)),
        (b'D', f.detail),
        (b'H', f.hint),
        (b'R', f.routine),
    ] {
        if let Some(v) = value {
            buf.put_u8(field);
            put_cstr(buf, v.as_bytes());
        }
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// ErrorResponse ('E').
pub fn error_response(buf: &mut BytesMut, f: &ErrorFields<'_>) {
    put_fields(buf, b'E', f);
}

/// NoticeResponse ('N') with severity NOTICE.
pub fn notice_response(buf: &mut BytesMut, code: &str, message: &str) {
    let at = begin(buf, b'N');
    for (field, value) in [
        (b'S', "NOTICE"),
        (b'V', "NOTICE"),
        (b'C', code),
        (b'M', message),
    ] {
        buf.put_u8(field);
        put_cstr(buf, value.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// ReadyForQuery ('Z') with a transaction status byte (`I`, `T` or `E`).
pub fn ready_for_query(buf: &mut BytesMut, status: u8) {
    buf.put_u8(b'Z');
    buf.put_i32(5);
    buf.put_u8(status);
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    buf.put_u8(b'R');
    buf.put_i32(8);
    buf.put_i32(0);
}

/// AuthenticationSASL listing the mechanisms offered.
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    let at = begin(buf, b'R');
    buf.put_i32(10);
    for m in mechanisms {
        put_cstr(buf, m.as_bytes());
    }
    buf.put_u8(0);
    finish(buf, at);
}

/// AuthenticationSASLContinue (11) or AuthenticationSASLFinal (12).
pub fn auth_sasl_data(buf: &mut BytesMut, code: i32, data: &[u8]) {
    let at = begin(buf, b'R');
    buf.put_i32(code);
    buf.put_slice(data);
    finish(buf, at);
}

/// AuthenticationCleartextPassword: used for bearer tokens sent as the password.
pub fn auth_cleartext(buf: &mut BytesMut) {
    buf.put_u8(b'R');
    buf.put_i32(8);
    buf.put_i32(3);
}

/// BackendKeyData: the process id and secret the client will quote in a CancelRequest.
pub fn backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    buf.put_u8(b'K');
    buf.put_i32(12);
    buf.put_i32(pid);
    buf.put_i32(secret);
}

/// ParameterStatus.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    let at = begin(buf, b'S');
    put_cstr(buf, name.as_bytes());
    put_cstr(buf, value.as_bytes());
    finish(buf, at);
}

/// NegotiateProtocolVersion: the newest minor version we speak and the `_pq_.` options
/// we did not recognise.
pub fn negotiate_protocol_version(buf: &mut BytesMut, minor: i32, unrecognised: &[String]) {
    let at = begin(buf, b'v');
    buf.put_i32(minor);
    buf.put_i32(unrecognised.len() as i32);
    for o in unrecognised {
        put_cstr(buf, o.as_bytes());
    }
    finish(buf, at);
}

/// The fields of an ErrorResponse or NoticeResponse body, as (field type, value) pairs.
/// Malformed input yields the fields read so far.
pub fn parse_fields(body: &[u8]) -> Vec<(u8, String)> {
    ResponseFields::new(body)
        .map_while(Result::ok)
        .map(|(kind, value)| (kind, String::from_utf8_lossy(value).into_owned()))
        .collect()
}

/// One field of a parsed error, or "".
pub fn field(fields: &[(u8, String)], kind: u8) -> &str {
    fields
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Name and value of a ParameterStatus body.
pub fn parse_parameter_status(body: &[u8]) -> Option<(&[u8], &[u8])> {
    ParameterStatus::parse(body).ok().map(|p| (p.name, p.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_round_trips() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            &ErrorFields::new(Severity::Error, "42501", "no\0pe").detail("why"),
        );
        assert_eq!(buf[0], b'E');
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        assert_eq!(len + 1, buf.len());
        let fields = parse_fields(&buf[5..]);
        assert_eq!(field(&fields, b'C'), "42501");
        assert_eq!(field(&fields, b'M'), "no pe");
        assert_eq!(field(&fields, b'D'), "why");
        assert_eq!(field(&fields, b'S'), "ERROR");
    }

    #[test]
    fn parameter_status_parses() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "TimeZone", "UTC");
        let (n, v) = parse_parameter_status(&buf[5..]).unwrap();
        assert_eq!((n, v), (&b"TimeZone"[..], &b"UTC"[..]));
    }

    #[test]
    fn truncated_fields_do_not_panic() {
        assert!(parse_fields(b"Cabc").is_empty());
        assert_eq!(parse_fields(b"C42\0Mx").len(), 1);
    }
}
