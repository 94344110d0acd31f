//! The client's address and its text forms, made once per client connection: every
//! request's record (`client`) and forwarded fields (`X-Forwarded-For`, `Forwarded`)
//! use them, and formatting an address through `fmt` on every request showed in the
//! gateway's profile.

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) struct Peer {
    pub addr: SocketAddr,
    /// `addr.ip()` as text (`192.0.2.7`, `::1`).
    pub ip: String,
    /// `addr` as text (`192.0.2.7:5555`, `[::1]:5555`), shared by the records.
    pub text: Arc<str>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            ip: addr.ip().to_string(),
            text: addr.to_string().into(),
        }
    }
}
