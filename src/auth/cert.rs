//! The identity a client certificate carries: its subject's common name (CN).
//!
//! rustls has already checked the chain against `tls.client_ca` by the time this runs;
//! all that is left is to read one name out of the DER. That is a few lines of TLV
//! walking, so it is done here rather than with a full X.509 parser (which would
//! bring a dozen crates for one field). Anything unexpected yields None: fail closed.

/// DER encoding of the id-at-commonName OID (2.5.4.3).
const CN_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One DER element: (tag, contents, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in the fields we walk
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | b as usize;
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The subject CN of a DER certificate, if it has exactly one readable CN.
pub fn subject_cn(der: &[u8]) -> Option<String> {
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // [0] version
    }
    // serialNumber, signature, issuer, validity; then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.2;
    }
    let (SEQUENCE, mut name, _) = tlv(rest)? else {
        return None;
    };
    let mut found: Option<String> = None;
    while !name.is_empty() {
        let (SET, mut rdn, next) = tlv(name)? else {
            return None;
        };
        name = next;
        while !rdn.is_empty() {
            let (SEQUENCE, atv, next) = tlv(rdn)? else {
                return None;
            };
            rdn = next;
            let (0x06, oid, value) = tlv(atv)? else {
                return None;
            };
            if oid != CN_OID {
                continue;
            }
            let (vtag, v, _) = tlv(value)?;
            // UTF8String, PrintableString, IA5String.
            if !matches!(vtag, 0x0c | 0x13 | 0x16) {
                return None;
            }
            let s = std::str::from_utf8(v).ok()?;
            if found.is_some() || s.is_empty() || s.contains('\0') {
                return None; // two CNs: which one is meant is anybody's guess
            }
            found = Some(s.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "pgmoat tests");
        if let Some(cn) = cn {
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_subject_cn() {
        assert_eq!(
            subject_cn(&cert(Some("svc-reporting"))).as_deref(),
            Some("svc-reporting")
        );
        assert_eq!(subject_cn(&cert(None)), None);
    }

    #[test]
    fn garbage_and_truncation_yield_none() {
        let der = cert(Some("svc-reporting"));
        for cut in [0, 1, 2, 10, der.len() / 2, der.len() - 1] {
            // Truncated input must not panic; the outer length no longer fits.
            assert_eq!(subject_cn(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(subject_cn(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_cn(b"not a certificate"), None);
    }
}
