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

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
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

/// Frame an event body (`{"type":...}` as serialised) into a complete line, without
/// the newline. Returns the line and its `hash`.
pub fn seal(
    seq: u64,
    ts: &str,
    session: Option<&str>,
    body: &str,
    prev: &str,
    key: Option<&[u8]>,
) -> (String, String) {
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("");
    let session = match session {
        // A session id is ours (hex), but quote it properly all the same.
        Some(s) => serde_json::to_string(s).unwrap_or_else(|_| "null".into()),
        None => "null".into(),
    };
    let sep = if inner.is_empty() { "" } else { "," };
    let mut line = format!(
        "{{\"seq\":{seq},\"ts\":\"{ts}\",\"session\":{session}{sep}{inner},\"prev\":\"{prev}\"}}"
    );
    let hash = content_hash(line.as_bytes(), key);
    line.pop();
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}");
    (line, hash)
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
struct Head {
    seq: u64,
    prev: String,
    hash: String,
    #[serde(rename = "type", default)]
    kind: String,
}

/// Check one line (without its newline) on its own: well-formed, and `hash` matches.
pub fn check_line(line: &[u8], key: Option<&[u8]>) -> Result<Checked, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not valid UTF-8".to_string())?;
    let head: Head = serde_json::from_str(text).map_err(|e| format!("not a JSON record ({e})"))?;
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
        let (l1, h1) = seal(1, "t", Some("s1"), r#"{"type":"x","a":1}"#, ZERO_HASH, None);
        assert!(l1.starts_with(r#"{"seq":1,"ts":"t","session":"s1","type":"x","a":1,"prev":"000"#));
        let c1 = check_line(l1.as_bytes(), None).unwrap();
        assert_eq!(c1.hash, h1);
        let (l2, _) = seal(2, "t", None, r#"{"type":"y"}"#, &c1.digest, None);
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
    fn hmac_needs_the_key() {
        let (l, _) = seal(1, "t", None, r#"{"type":"x"}"#, ZERO_HASH, Some(b"k1"));
        assert!(check_line(l.as_bytes(), Some(b"k1")).is_ok());
        assert!(check_line(l.as_bytes(), Some(b"k2")).is_err());
        assert!(check_line(l.as_bytes(), None).is_err());
    }
}
