//! What a field of an HTTP/1.1 head must be for the lean path to relay it: exactly
//! what the `http` crate's `HeaderName` and `HeaderValue` accept (so the lean path,
//! the masked path and hyper's refuse the same heads), checked over the head's bytes
//! without building either.

/// A field name `http` would take: token characters (RFC 9110 5.6.2), at most
/// 64 KiB - 1 long (`HeaderName`'s limit).
pub(crate) fn name_ok(n: &[u8]) -> bool {
    !n.is_empty()
        && n.len() <= 65535
        && n.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value `http` would take (`HeaderValue`'s rule: no control characters
/// but tab).
pub(crate) fn value_ok(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 32 && b != 127))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_are_the_http_crates() {
        let long = |n: usize| vec![b'x'; n];
        let names: Vec<Vec<u8>> = vec![
            b"x-a".to_vec(),
            b"X-A".to_vec(),
            b"a b".to_vec(),
            b"a:b".to_vec(),
            b"".to_vec(),
            b"caf\xe9".to_vec(),
            b"a\0".to_vec(),
            long(65535),
            long(65536),
        ];
        for n in &names {
            assert_eq!(
                name_ok(n),
                http::HeaderName::from_bytes(n).is_ok(),
                "name of {} bytes",
                n.len()
            );
        }
        for v in [
            &b"ok"[..],
            b"a\tb",
            b"caf\xe9",
            b"a\rb",
            b"a\nb",
            b"a\0",
            b"\x7f",
            b"",
        ] {
            assert_eq!(
                value_ok(v),
                http::HeaderValue::from_bytes(v).is_ok(),
                "{v:?}"
            );
        }
    }
}
