//! Per-group upstream roles: right after pgmoat's own login, `SET ROLE` to the role the
//! target names for the identity's group, before the client sees the greeting.

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::error::SessionError;
use super::io::{read_message, ReadError};
use super::upstream::Ready;
use crate::protocol::backend::{field, parse_fields};
use crate::protocol::frame::{Direction, LARGE_MESSAGE_LIMIT};
use crate::protocol::sqlstate;

/// `name` as a quoted SQL identifier: case is kept, quotes doubled, so no role name can
/// turn into more SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Run `SET ROLE` on a ready server session. ParameterStatus and notices it produces
/// go to the client after the startup ones, so the client sees the values in force.
pub async fn pin_role(ready: &mut Ready, role: &str) -> Result<(), SessionError> {
    let mut out = BytesMut::new();
    frontend::query(&format!("SET ROLE {}", quote_ident(role)), &mut out)
        .map_err(SessionError::UpstreamIo)?;
    ready
        .stream
        .write_all(&out)
        .await
        .map_err(SessionError::UpstreamIo)?;
    ready
        .stream
        .flush()
        .await
        .map_err(SessionError::UpstreamIo)?;
    let mut failure = None;
    loop {
        let msg = read_message(
            &mut ready.stream,
            &mut ready.leftover,
            Direction::Backend,
            LARGE_MESSAGE_LIMIT,
        )
        .await
        .map_err(|e| match e {
            ReadError::Io(e) => SessionError::UpstreamIo(e),
            ReadError::Eof => SessionError::UpstreamClosed,
            ReadError::Frame(f) => SessionError::UpstreamProtocol(f.to_string()),
        })?;
        match msg[0] {
            b'S' | b'N' => ready.for_client.extend_from_slice(&msg),
            b'E' => {
                let fields = parse_fields(&msg[5..]);
                tracing::warn!(%role, code = field(&fields, b'C'), message = field(&fields, b'M'),
                    "the server refused SET ROLE for the identity's group");
                failure = Some(SessionError::Refused {
                    code: sqlstate::INSUFFICIENT_PRIVILEGE,
                    message: format!(
                        "pgmoat: could not switch to role \"{role}\" for this identity's group"
                    ),
                    detail: Some(
                        "The target's `roles:` names a role pgmoat's login cannot SET ROLE to."
                            .into(),
                    ),
                });
            }
            b'Z' => {
                ready.status = msg.get(5).copied().unwrap_or(b'I');
                return match failure {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("readonly"), "\"readonly\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
    }
}
