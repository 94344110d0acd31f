//! What a session tells a client it refused: shared by the judge, the guard and the
//! relay, so none of them imports another for it.

use bytes::BytesMut;

use crate::protocol::backend::{self, ErrorFields, Severity};

/// A refusal: the ErrorResponse to send, and a line for the log.
pub struct Refusal {
    pub response: BytesMut,
    pub rule: String,
}

/// An ErrorResponse (severity ERROR) for the client.
pub fn error(code: &str, message: &str, detail: Option<&str>) -> BytesMut {
    let mut out = BytesMut::new();
    let mut f = ErrorFields::new(Severity::Error, code, message);
    if let Some(d) = detail {
        f = f.detail(d);
    }
    backend::error_response(&mut out, &f);
    out
}
