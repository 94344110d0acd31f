//! The record framing and the chain.
//!
//! A record is one line: `{"seq":N,"ts":"...","session":...,<event>,"prev":"...","hash":"..."}`.
//! `hash` covers the exact bytes of the line without the trailing `,"hash":"..."`
//! (that is, the line with `hash` removed and `}` put back): checking it needs no JSON
//! canonicalisation, so any changed byte shows. `prev` is the SHA-256 of the previous
//! record's whole line, which chains every line, hash included, to the one before.
//! With a key, `hash` is HMAC-SHA-256: someone who can rewrite the whole store still
//! cannot forge it.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// `,"hash":"` + 64 hex + `"}`
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// The newest record of the chain: what head export sends and `verify --head` checks against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// Lowercase hex of `bytes` into `out` (two digits per byte, as far as `out` goes).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[(b >> 4) as usize];
        pair[1] = DIGITS[(b & 15) as usize];
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut s);
    // Only ASCII digits went in.
    String::from_utf8(s).unwrap_or_default()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The record hash of `content`: SHA-256, or HMAC-SHA-256 under `key`.
pub fn content_hash(content: &[u8], key: Option<&[u8]>) -> String {
    match key {
        Some(k) => match Hmac::<Sha256>::new_from_slice(k) {
            Ok(mut mac) => {
                mac.update(content);
                hex(&mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; unreachable, but never panic on it.
            Err(_) => sha256_hex(content),
        },
        None => sha256_hex(content),
    }
}

/// A SHA-256 in lowercase hex, as records carry it.
pub type HexHash = [u8; 64];

fn hex_hash(digest: &[u8]) -> HexHash {
    let mut out = [b'0'; 64];
    hex_into(digest, &mut out);
    out
}

/// The text of a [`HexHash`] (ASCII hex digits only).
pub fn hex_str(h: &HexHash) -> &str {
    std::str::from_utf8(h).unwrap_or(ZERO_HASH)
}

/// A framed record: the line (without the newline), its `hash`, and the SHA-256 of
/// the whole line (the next record's `prev`).
pub struct Sealed {
    pub line: String,
    pub hash: String,
    pub digest: String,
}

/// Frame an event body (`{"type":...}` as serialised) into a complete line.
pub fn seal(
    seq: u64,
    ts: &str,
    session: Option<&str>,
    body: &str,
    prev: &str,
    key: Option<&[u8]>,
) -> Sealed {
    let mut line = Vec::new();
    let (hash, digest) = seal_into(&mut line, seq, ts, session, body.as_bytes(), prev, key);
    Sealed {
        // Only whole UTF-8 strings went in.
        line: String::from_utf8(line).unwrap_or_default(),
        hash: hex_str(&hash).to_owned(),
        digest: hex_str(&digest).to_owned(),
    }
}

/// [`seal`], appending the line (without a newline) to `out`: the writer frames its
/// records straight into the bytes it writes, with no allocation per record. Returns
/// the record's `hash` and the SHA-256 of its whole line (the next record's `prev`).
/// `body` is an encoded event (UTF-8 JSON, as serde_json or the audit encoder wrote it).
pub fn seal_into(
    out: &mut Vec<u8>,
    seq: u64,
    ts: &str,
    session: Option<&str>,
    body: &[u8],
    prev: &str,
    key: Option<&[u8]>,
) -> (HexHash, HexHash) {
    let inner = body
        .strip_prefix(b"{")
        .and_then(|b| b.strip_suffix(b"}"))
        .unwrap_or(b"");
    let start = out.len();
    out.reserve(body.len() + 120 + HASH_SUFFIX_LEN);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    out.extend_from_slice(b",\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",\"session\":");
    match session {
        // Session ids are ours (hex): no escaping needed; anything else is quoted
        // properly all the same.
        Some(s) if s.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
        }
        Some(s) => out.extend_from_slice(
            serde_json::to_string(s)
                .unwrap_or_else(|_| "null".into())
                .as_bytes(),
        ),
        None => out.extend_from_slice(b"null"),
    }
    if !inner.is_empty() {
        out.push(b',');
        out.extend_from_slice(inner);
    }
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.push(b'"');
    // `out[start..]` is now the hashed content without its closing brace.
    let mut whole = Sha256::new();
    whole.update(&out[start..]);
    let hash = match key {
        None => {
            // The content and the whole line share everything up to that brace:
            // hash it once and finish the two digests from a copy of the state.
            let mut content = whole.clone();
            content.update(b"}");
            hex_hash(&content.finalize())
        }
        Some(_) => {
            out.push(b'}');
            let hash = content_hash(&out[start..], key);
            out.pop();
            let mut h = [b'0'; 64];
            h.copy_from_slice(&hash.as_bytes()[..64]);
            h
        }
    };
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(&hash);
    out.extend_from_slice(b"\"}");
    whole.update(b",\"hash\":\"");
    whole.update(hash);
    whole.update(b"\"}");
    (hash, hex_hash(&whole.finalize()))
}

/// A record as the journal holds it: its checked fields and its line (no newline).
/// Here, with the line format, because both the journal (which writes and loads
/// them) and the segments (which are repaired from them) read it.
pub struct JournalLine {
    pub checked: Checked,
    pub bytes: Vec<u8>,
}

/// What a line says about its place in the chain, once its own hash checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
    /// SHA-256 of the whole line: the next record's `prev`.
    pub digest: String,
    /// The record's `type`.
    pub kind: String,
}

#[derive(Deserialize)]
struct LineHead {
    seq: u64,
    prev: String,
    hash: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// Check one line (without its newline) on its own: well-formed, and `hash` matches.
pub fn check_line(line: &[u8], key: Option<&[u8]>) -> Result<Checked, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let head: LineHead =
        serde_json::from_str(text).map_err(|e| format!("not a JSON record ({e})"))?;
    if text.len() < HASH_SUFFIX_LEN || !text.ends_with("\"}") {
        return Err("no hash at the end of the record".into());
    }
    let cut = text.len() - HASH_SUFFIX_LEN;
    if &text[cut..cut + 9] != ",\"hash\":\"" || text[cut + 9..text.len() - 2] != head.hash {
        return Err("no hash at the end of the record".into());
    }
    let mut content = Vec::with_capacity(cut + 1);
    content.extend_from_slice(&line[..cut]);
    content.push(b'}');
    if content_hash(&content, key) != head.hash {
        return Err(if key.is_some() {
            "hash does not match the record (edited, or another key)".into()
        } else {
            "hash does not match the record (edited; or the store is keyed: pass --hmac-key-env)"
                .into()
        });
    }
    if head.prev.len() != 64 {
        return Err("prev is not a SHA-256".into());
    }
    Ok(Checked {
        seq: head.seq,
        prev: head.prev,
        hash: head.hash,
        digest: sha256_hex(line),
        kind: head.kind,
    })
}

/// The chain as read so far: what the next record must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub next_seq: u64,
    pub prev: String,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            next_seq: 1,
            prev: ZERO_HASH.into(),
        }
    }
}

impl Chain {
    /// Accept the next record or say why it does not belong here.
    pub fn accept(&mut self, c: &Checked) -> Result<(), String> {
        if c.seq != self.next_seq {
            return Err(format!(
                "expected seq {}, found seq {} (a record was deleted, inserted or moved)",
                self.next_seq, c.seq
            ));
        }
        if c.prev != self.prev {
            return Err(
                "prev does not match the record before it (a record was changed, inserted or moved)"
                    .into(),
            );
        }
        self.next_seq += 1;
        self.prev.clone_from(&c.digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_lines_check_and_chain() {
        let s1 = seal(1, "t", Some("s1"), r#"{"type":"x","a":1}"#, ZERO_HASH, None);
        let l1 = s1.line.clone();
        assert!(l1.starts_with(r#"{"seq":1,"ts":"t","session":"s1","type":"x","a":1,"prev":"000"#));
        let c1 = check_line(l1.as_bytes(), None).unwrap();
        assert_eq!(c1.hash, s1.hash);
        assert_eq!(
            c1.digest, s1.digest,
            "the shortcut digest is the line's SHA-256"
        );
        let l2 = seal(2, "t", Some("a\"b"), r#"{"type":"y"}"#, &c1.digest, None).line;
        assert!(l2.contains(r#""session":"a\"b""#), "{l2}");
        let c2 = check_line(l2.as_bytes(), None).unwrap();
        let mut chain = Chain::default();
        chain.accept(&c1).unwrap();
        chain.accept(&c2).unwrap();
        assert_eq!(chain.next_seq, 3);
        // One changed byte anywhere fails the line's own check.
        let edited = l1.replace("\"a\":1", "\"a\":2");
        assert!(check_line(edited.as_bytes(), None).is_err());
    }

    #[test]
    fn sealing_into_a_buffer_appends_the_same_line() {
        for key in [None, Some(&b"k1"[..])] {
            let alone = seal(7, "t", Some("s1"), r#"{"type":"x"}"#, ZERO_HASH, key);
            let mut out = b"earlier line\n".to_vec();
            let (hash, digest) = seal_into(
                &mut out,
                7,
                "t",
                Some("s1"),
                br#"{"type":"x"}"#,
                ZERO_HASH,
                key,
            );
            assert_eq!(&out[..13], b"earlier line\n");
            assert_eq!(&out[13..], alone.line.as_bytes());
            assert_eq!(hex_str(&hash), alone.hash);
            assert_eq!(hex_str(&digest), sha256_hex(alone.line.as_bytes()));
        }
    }

    #[test]
    fn hmac_needs_the_key() {
        let sealed = seal(1, "t", None, r#"{"type":"x"}"#, ZERO_HASH, Some(b"k1"));
        let l = sealed.line;
        let c = check_line(l.as_bytes(), Some(b"k1")).unwrap();
        assert_eq!(c.digest, sealed.digest);
        assert!(check_line(l.as_bytes(), Some(b"k2")).is_err());
        assert!(check_line(l.as_bytes(), None).is_err());
    }
}
