//! Everything that ends a session, and the one place such an end becomes an
//! ErrorResponse for the client.

use std::io;

use thiserror::Error;

use crate::protocol::sqlstate;
use crate::protocol::FrameError;

#[derive(Debug, Error)]
pub enum SessionError {
    /// The client closed its side, or its socket failed: nobody to tell.
    #[error("client connection closed: {0}")]
    ClientIo(io::Error),
    #[error("client closed the connection")]
    ClientGone,
    /// The client sent something the protocol does not allow.
    #[error("protocol violation from client: {0}")]
    Protocol(String),
    /// The first bytes' length word is out of range for a startup packet: closed
    /// without a reply, as Postgres does.
    #[error("invalid length of startup packet")]
    NotAStartupPacket,
    /// pgmoat refuses the session (auth, target, settings, limits).
    #[error("{message}")]
    Refused {
        code: &'static str,
        message: String,
        detail: Option<String>,
    },
    /// The server refused or failed during startup; code and message as it said them
    /// (or, for authentication, pgmoat's own words: the held credentials stay private).
    #[error("server refused the session: {code} {message}")]
    Upstream { code: String, message: String },
    #[error("server connection failed: {0}")]
    UpstreamIo(io::Error),
    #[error("server closed the connection")]
    UpstreamClosed,
    #[error("server sent a malformed message: {0}")]
    UpstreamProtocol(String),
}

impl SessionError {
    pub fn refused(code: &'static str, message: impl Into<String>) -> SessionError {
        SessionError::Refused {
            code,
            message: message.into(),
            detail: None,
        }
    }

    /// The FATAL the client should see before the socket closes, if any.
    pub fn client_fatal(&self) -> Option<(String, String, Option<String>)> {
        match self {
            // No reply to bytes that are not a startup packet: Postgres sends none.
            SessionError::ClientIo(_)
            | SessionError::ClientGone
            | SessionError::NotAStartupPacket => None,
            SessionError::Protocol(m) => Some((
                sqlstate::PROTOCOL_VIOLATION.into(),
                format!("pgmoat: {m}"),
                None,
            )),
            SessionError::Refused {
                code,
                message,
                detail,
            } => Some(((*code).into(), message.clone(), detail.clone())),
            SessionError::Upstream { code, message } => Some((code.clone(), message.clone(), None)),
            SessionError::UpstreamIo(e) => Some((
                sqlstate::CONNECTION_FAILURE.into(),
                format!("pgmoat: could not reach the database server: {e}"),
                None,
            )),
            // The server's own FATAL, if it sent one, has already been relayed.
            SessionError::UpstreamClosed => None,
            SessionError::UpstreamProtocol(m) => Some((
                sqlstate::CONNECTION_FAILURE.into(),
                format!("pgmoat: the database server sent a malformed message: {m}"),
                None,
            )),
        }
    }

    /// Whether this ended the session because of bytes the client sent.
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            SessionError::Protocol(_) | SessionError::NotAStartupPacket
        )
    }
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Protocol(e.to_string())
    }
}
