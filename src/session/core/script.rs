//! Byte scripts for the session's tests: protocol messages built and split as the
//! relay frames them.

use crate::protocol::frame::{self, Direction, LARGE_MESSAGE_LIMIT};

/// One protocol message: its tag, length and body.
pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend(((body.len() + 4) as u32).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// `bytes` split into (tag, body) messages; every message must be whole and valid.
pub fn frames(bytes: &[u8], direction: Direction) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = frame::check(&bytes[pos..], direction, LARGE_MESSAGE_LIMIT)
            .expect("valid")
            .expect("whole");
        out.push((h.tag, &bytes[pos + 5..pos + h.total]));
        pos += h.total;
    }
    out
}
