//! Masking methods (SPEC §4): what a masked value becomes.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A method as the policy compiled it (`policy::masks`), options resolved: `Hash`
/// holds its key (a key that could not be read was compiled to `Redact`, never to
/// something weaker).
#[derive(Clone, PartialEq, Eq)]
pub enum Method {
    Redact,
    Partial { keep_last: usize },
    Hash { key: Arc<[u8]> },
    Null,
    Email,
}

impl std::fmt::Debug for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.write_str(self.name())
    }
}

pub const REDACTED: &[u8] = b"****";

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Redact => "redact",
            Method::Partial { .. } => "partial",
            Method::Hash { .. } => "hash",
            Method::Null => "null",
            Method::Email => "email",
        }
    }

    /// The method for a value computed from a masked column rather than the column
    /// itself. Keeping "the last four" of `reverse(ssn)` or `substr(ssn, 1, 5)` would
    /// give away other characters than the column's own partial mask does, so methods
    /// that keep part of the value become `redact`; `hash` and `null` stay.
    pub fn for_derived(&self) -> Method {
        match self {
            Method::Partial { .. } | Method::Email => Method::Redact,
            m => m.clone(),
        }
    }

    /// Mask `value` into `out` (cleared first). False when the result is SQL NULL.
    pub fn apply(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        match self {
            Method::Null => return false,
            Method::Redact => out.extend_from_slice(REDACTED),
            Method::Partial { keep_last } => partial(value, *keep_last, out),
            Method::Hash { key } => hash(key, value, out),
            Method::Email => email(value, out),
        }
        true
    }
}

/// Keep the last `keep` letters and digits, replace the others with `*`, keep every
/// separator. A value with no more than `keep` of them is masked whole: partial never
/// reveals a complete value.
fn partial(value: &[u8], keep: usize, out: &mut Vec<u8>) {
    if value.is_ascii() {
        // The common case, byte by byte.
        let significant = value.iter().filter(|b| b.is_ascii_alphanumeric()).count();
        let keep = if significant <= keep { 0 } else { keep };
        let mask_upto = significant - keep;
        let mut seen = 0;
        out.reserve(value.len());
        for &b in value {
            if b.is_ascii_alphanumeric() {
                seen += 1;
                out.push(if seen > mask_upto { b } else { b'*' });
            } else {
                out.push(b);
            }
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(value) else {
        out.extend_from_slice(REDACTED);
        return;
    };
    let significant = text.chars().filter(|c| c.is_alphanumeric()).count();
    let keep = if significant <= keep { 0 } else { keep };
    let mut seen = 0;
    for c in text.chars() {
        if c.is_alphanumeric() {
            seen += 1;
            if seen > significant - keep {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            } else {
                out.push(b'*');
            }
        } else {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
    }
}

fn hash(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        out.extend_from_slice(REDACTED);
        return;
    };
    mac.update(value);
    for b in mac.finalize().into_bytes() {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// `jane.doe@example.com` -> `j***@example.com`; anything else is redacted.
fn email(value: &[u8], out: &mut Vec<u8>) {
    let at = memchr::memrchr(b'@', value);
    if let (Some(at), Some(&first)) = (at, value.first()) {
        if first.is_ascii() && at > 0 && at + 1 < value.len() {
            out.push(first);
            out.extend_from_slice(b"***");
            out.extend_from_slice(&value[at..]);
            return;
        }
    }
    match (at, std::str::from_utf8(value)) {
        (Some(at), Ok(text)) if at > 0 && at + 1 < value.len() => {
            let first = text.chars().next().unwrap_or('*');
            let mut b = [0u8; 4];
            out.extend_from_slice(first.encode_utf8(&mut b).as_bytes());
            out.extend_from_slice(b"***");
            out.extend_from_slice(&value[at..]);
        }
        _ => out.extend_from_slice(REDACTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &Method, v: &str) -> Option<String> {
        let mut out = Vec::new();
        m.apply(v.as_bytes(), &mut out)
            .then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn partial_keeps_separators_and_the_tail() {
        let m = Method::Partial { keep_last: 4 };
        assert_eq!(run(&m, "123-45-6789").unwrap(), "***-**-6789");
        assert_eq!(
            run(&m, "4111 1111 1111 1111").unwrap(),
            "**** **** **** 1111"
        );
        assert_eq!(run(&m, "1234").unwrap(), "****", "never the whole value");
        assert_eq!(run(&m, "ab").unwrap(), "**");
        assert_eq!(run(&m, "").unwrap(), "");
    }

    #[test]
    fn hash_is_keyed_and_stable() {
        let key = |k: &[u8]| Method::Hash { key: k.into() };
        let (a, b) = (key(b"k1"), key(b"k2"));
        let x = run(&a, "123-45-6789").unwrap();
        assert_eq!(x.len(), 64);
        assert_eq!(x, run(&a, "123-45-6789").unwrap());
        assert_ne!(x, run(&b, "123-45-6789").unwrap());
    }

    #[test]
    fn email_null_redact() {
        let e = Method::Email;
        assert_eq!(run(&e, "jane.doe@example.com").unwrap(), "j***@example.com");
        assert_eq!(run(&e, "not an email").unwrap(), "****");
        assert_eq!(run(&Method::Null, "x"), None);
        assert_eq!(run(&Method::Redact, "secret").unwrap(), "****");
        assert_eq!(
            Method::Partial { keep_last: 4 }.for_derived(),
            Method::Redact
        );
    }
}
