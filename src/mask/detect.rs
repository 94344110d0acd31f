//! Content detectors: secrets recognised by what they look like, wherever they appear
//! in a returned value or a server message.
//!
//! One pass finds candidates cheaply (an aho-corasick automaton over the literal
//! triggers `@`, `eyJ`, `AKIA`...; a scan for digit runs when a digit-shaped detector
//! is on); validators (Luhn, IBAN mod 97, shape checks) run only on candidates. Found
//! spans are masked in place with the detector's method, so the rest of the value
//! stays readable.

use aho_corasick::AhoCorasick;

use super::method::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CreditCard,
    Email,
    UsSsn,
    Iban,
    Jwt,
    AwsAccessKey,
    Regex,
}

impl Kind {
    /// The kind a rule file names; None for a name it does not know (the policy
    /// compiler reports it, see `policy::masks`).
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "credit_card" => Kind::CreditCard,
            "email" => Kind::Email,
            "us_ssn" => Kind::UsSsn,
            "iban" => Kind::Iban,
            "jwt" => Kind::Jwt,
            "aws_access_key" => Kind::AwsAccessKey,
            "regex" => Kind::Regex,
            _ => return None,
        })
    }
}

/// One detector as configured.
#[derive(Debug, Clone)]
pub struct Detector {
    pub id: String,
    pub kind: Kind,
    pub method: Method,
    pub regex: Option<regex::bytes::Regex>,
}

/// A found secret: bytes `start..end` of the value, found by detector `det`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
    det: usize,
}

const AWS_PREFIXES: [&str; 8] = [
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
];

/// A compiled set of detectors.
#[derive(Debug, Clone)]
pub struct Detectors {
    list: Vec<Detector>,
    /// The AWS access key prefixes, when that detector is on (and the automaton
    /// could be built; `find` falls back to searching each prefix).
    triggers: Option<AhoCorasick>,
    digits: bool,
}

impl Detectors {
    pub fn new(list: Vec<Detector>) -> Detectors {
        let has = |k: Kind| list.iter().any(|d| d.kind == k);
        let triggers = has(Kind::AwsAccessKey)
            .then(|| AhoCorasick::new(AWS_PREFIXES).ok())
            .flatten();
        let digits = has(Kind::CreditCard) || has(Kind::UsSsn) || has(Kind::Iban);
        Detectors {
            list,
            triggers,
            digits,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|d| d.id.as_str())
    }

    /// Mask every secret in `value` into `out` (cleared first). None when nothing was
    /// found (the value stays as it is); otherwise the ids of the detectors that fired.
    pub fn scan(&self, value: &[u8], out: &mut Vec<u8>) -> Option<Vec<usize>> {
        let mut spans = Vec::new();
        self.find(value, &mut spans);
        if spans.is_empty() {
            return None;
        }
        spans.sort_by_key(|s| (s.start, std::cmp::Reverse(s.end)));
        out.clear();
        let mut fired = Vec::new();
        let mut pos = 0;
        let mut scratch = Vec::new();
        for s in spans {
            if s.start < pos {
                continue; // overlaps one already masked
            }
            out.extend_from_slice(&value[pos..s.start]);
            let d = &self.list[s.det];
            if d.method.apply(&value[s.start..s.end], &mut scratch) {
                out.extend_from_slice(&scratch);
            } else {
                // `null` cannot null part of a value: the part goes.
                out.extend_from_slice(super::method::REDACTED);
            }
            if !fired.contains(&s.det) {
                fired.push(s.det);
            }
            pos = s.end;
        }
        out.extend_from_slice(&value[pos..]);
        Some(fired)
    }

    fn det(&self, k: Kind) -> Option<usize> {
        self.list.iter().position(|d| d.kind == k)
    }

    fn find(&self, v: &[u8], spans: &mut Vec<Span>) {
        // Each literal trigger by the fastest search for it: memchr for `@`, memmem
        // for `eyJ` (an aho-corasick start-byte prefilter would fire on every `e`),
        // aho-corasick (Teddy) for the AWS key prefixes.
        if let Some(det) = self.det(Kind::Email) {
            for at in memchr::memchr_iter(b'@', v) {
                if let Some((start, end)) = email_at(v, at) {
                    spans.push(Span { start, end, det });
                }
            }
        }
        if let Some(det) = self.det(Kind::Jwt) {
            for at in memchr::memmem::find_iter(v, b"eyJ") {
                if let Some((start, end)) = jwt_at(v, at) {
                    spans.push(Span { start, end, det });
                }
            }
        }
        if let Some(det) = self.det(Kind::AwsAccessKey) {
            let mut found = |at: usize| {
                if let Some((start, end)) = aws_at(v, at) {
                    spans.push(Span { start, end, det });
                }
            };
            match &self.triggers {
                Some(ac) => ac.find_iter(v).for_each(|m| found(m.start())),
                // No automaton (it could not be built): the detector still runs, one
                // prefix at a time, rather than silently finding nothing.
                None => AWS_PREFIXES
                    .iter()
                    .for_each(|p| memchr::memmem::find_iter(v, p.as_bytes()).for_each(&mut found)),
            }
        }
        if self.digits {
            self.digit_runs(v, spans);
        }
        for (det, d) in self.list.iter().enumerate() {
            if let Some(re) = &d.regex {
                for m in re.find_iter(v) {
                    if m.end() > m.start() {
                        spans.push(Span {
                            start: m.start(),
                            end: m.end(),
                            det,
                        });
                    }
                }
            }
        }
    }

    /// Runs of digits, allowing single spaces or dashes between digits.
    fn digit_runs(&self, v: &[u8], spans: &mut Vec<Span>) {
        let cc = self.det(Kind::CreditCard);
        let ssn = self.det(Kind::UsSsn);
        let iban = self.det(Kind::Iban);
        let mut i = 0;
        let n = v.len();
        while i < n {
            // The hot loop: skip to the next digit.
            match next_digit(v, i) {
                Some(at) => i = at,
                None => break,
            }
            let start = i;
            let mut end = i;
            let mut digits = 0usize;
            while i < n {
                if v[i].is_ascii_digit() {
                    digits += 1;
                    i += 1;
                    end = i;
                } else if (v[i] == b' ' || v[i] == b'-') && i + 1 < n && v[i + 1].is_ascii_digit() {
                    i += 1;
                } else {
                    break;
                }
            }
            // A run glued to letters or digits on either side is part of something else.
            let bounded = |s: usize, e: usize| {
                (s == 0 || !v[s - 1].is_ascii_alphanumeric())
                    && (e >= n || !v[e].is_ascii_alphanumeric())
            };
            // Nothing shorter than an SSN's nine digits is a card or an SSN.
            if digits >= 9 && (cc.is_some() || ssn.is_some()) && bounded(start, end) {
                // The run's digit groups: a card or an SSN may be any stretch of
                // consecutive groups (`123-45-6789 4111 1111 1111 1111` holds both).
                let mut groups: Vec<(usize, usize)> = Vec::new();
                let mut g = start;
                for (k, b) in v[start..end]
                    .iter()
                    .enumerate()
                    .map(|(k, b)| (start + k, b))
                {
                    if !b.is_ascii_digit() {
                        if k > g {
                            groups.push((g, k));
                        }
                        g = k + 1;
                    }
                }
                if end > g {
                    groups.push((g, end));
                }
                let mut a = 0;
                while a < groups.len() {
                    let mut taken = None;
                    let mut digits = 0;
                    for b in a..groups.len() {
                        digits += groups[b].1 - groups[b].0;
                        if digits > 19 {
                            break;
                        }
                        // One kind of separator throughout.
                        if b > a + 1 && v[groups[b].0 - 1] != v[groups[a + 1].0 - 1] {
                            break;
                        }
                        let (s0, e0) = (groups[a].0, groups[b].1);
                        if let Some(det) = ssn {
                            let len = |k: usize| groups[k].1 - groups[k].0;
                            if b == a + 2
                                && (len(a), len(a + 1), len(b)) == (3, 2, 4)
                                && v[groups[a + 1].0 - 1] == b'-'
                            {
                                taken = Some(Span {
                                    start: s0,
                                    end: e0,
                                    det,
                                });
                            }
                        }
                        if let Some(det) = cc {
                            if digits >= 13 && luhn(&v[s0..e0]) {
                                taken = Some(Span {
                                    start: s0,
                                    end: e0,
                                    det,
                                });
                            }
                        }
                    }
                    match taken {
                        Some(sp) => {
                            spans.push(sp);
                            a = groups
                                .iter()
                                .position(|g| g.0 >= sp.end)
                                .unwrap_or(groups.len());
                        }
                        None => a += 1,
                    }
                }
            }
            if let Some(det) = iban {
                if start >= 2
                    && v[start - 2].is_ascii_uppercase()
                    && v[start - 1].is_ascii_uppercase()
                    && (start == 2 || !v[start - 3].is_ascii_alphanumeric())
                {
                    if let Some(e) = iban_at(v, start - 2) {
                        spans.push(Span {
                            start: start - 2,
                            end: e,
                            det,
                        });
                        i = i.max(e);
                    }
                }
            }
            i = i.max(end + 1);
        }
    }
}

/// The first ASCII digit at or after `from`, eight bytes at a time: a word holds a
/// byte in 0x30..=0x39 exactly when the "has between" bit trick says so (bytes of
/// 0x80 and up never count).
fn next_digit(v: &[u8], from: usize) -> Option<usize> {
    const L: u64 = 0x0101_0101_0101_0101;
    let has_digit = |x: u64| {
        let low = x & (L * 127);
        ((L * (127 + 58)).wrapping_sub(low) & !x & low.wrapping_add(L * (127 - 47)) & (L * 128))
            != 0
    };
    let mut i = from;
    while i + 8 <= v.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&v[i..i + 8]);
        if has_digit(u64::from_le_bytes(w)) {
            break;
        }
        i += 8;
    }
    v[i..].iter().position(u8::is_ascii_digit).map(|p| i + p)
}

fn luhn(run: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &b in run.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = (b - b'0') as u32;
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum % 10 == 0
}

/// An IBAN starting at `s` (two letters, two check digits, 11-30 letters or digits,
/// optionally grouped by single spaces), checked by ISO 7064 mod 97.
fn iban_at(v: &[u8], s: usize) -> Option<usize> {
    let mut chars: Vec<u8> = Vec::with_capacity(34);
    let mut i = s;
    let mut end = s;
    while i < v.len() && chars.len() < 34 {
        let b = v[i];
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            chars.push(b);
            i += 1;
            end = i;
        } else if b == b' ' && i + 1 < v.len() && v[i + 1].is_ascii_alphanumeric() {
            i += 1;
        } else {
            break;
        }
    }
    if chars.len() < 15 || !chars[2].is_ascii_digit() || !chars[3].is_ascii_digit() {
        return None;
    }
    if end < v.len() && v[end].is_ascii_alphanumeric() {
        return None;
    }
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(&chars[..4]) {
        if c.is_ascii_digit() {
            rem = (rem * 10 + (c - b'0') as u32) % 97;
        } else {
            let n = (c - b'A') as u32 + 10;
            rem = (rem * 100 + n) % 97;
        }
    }
    (rem == 1).then_some(end)
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn email_at(v: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut s = at;
    while s > 0 && is_local(v[s - 1]) {
        s -= 1;
    }
    let mut e = at + 1;
    while e < v.len() && (v[e].is_ascii_alphanumeric() || v[e] == b'.' || v[e] == b'-') {
        e += 1;
    }
    while e > at + 1 && v[e - 1] == b'.' {
        e -= 1;
    }
    let domain = &v[at + 1..e];
    let dot = memchr::memrchr(b'.', domain)?;
    let tld = &domain[dot + 1..];
    (s < at && dot > 0 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
        .then_some((s, e))
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn jwt_at(v: &[u8], s: usize) -> Option<(usize, usize)> {
    if s > 0 && is_b64url(v[s - 1]) {
        return None;
    }
    let mut e = s;
    let mut parts = [0usize; 3];
    let mut part = 0;
    while e < v.len() {
        if is_b64url(v[e]) {
            parts[part] += 1;
        } else if v[e] == b'.' && part < 2 && parts[part] > 0 {
            part += 1;
        } else {
            break;
        }
        e += 1;
    }
    (part == 2 && parts[0] >= 10 && parts[1] >= 2 && parts[2] >= 2).then_some((s, e))
}

fn aws_at(v: &[u8], s: usize) -> Option<(usize, usize)> {
    let e = s + 20;
    if e > v.len() || (s > 0 && v[s - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let ok = v[s + 4..e]
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let bounded = e == v.len() || !v[e].is_ascii_alphanumeric();
    (ok && bounded).then_some((s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detectors {
        let d = |kind, method| Detector {
            id: format!("{kind:?}"),
            kind,
            method,
            regex: None,
        };
        let partial = Method::Partial { keep_last: 4 };
        Detectors::new(vec![
            d(Kind::CreditCard, partial.clone()),
            d(Kind::Email, Method::Email),
            d(Kind::UsSsn, Method::Redact),
            d(Kind::Iban, partial),
            d(Kind::Jwt, Method::Redact),
            d(Kind::AwsAccessKey, Method::Redact),
            Detector {
                id: "emp".into(),
                kind: Kind::Regex,
                method: Method::Redact,
                regex: Some(regex::bytes::Regex::new("EMP-[0-9]{6}").unwrap()),
            },
        ])
    }

    fn scan(s: &str) -> String {
        let mut out = Vec::new();
        match all().scan(s.as_bytes(), &mut out) {
            Some(_) => String::from_utf8(out).unwrap(),
            None => s.to_owned(),
        }
    }

    #[test]
    fn finds_and_masks_each_kind() {
        assert_eq!(
            scan("card 4111 1111 1111 1111 ok"),
            "card **** **** **** 1111 ok"
        );
        assert_eq!(scan("card 4111-1111-1111-1111"), "card ****-****-****-1111");
        assert_eq!(scan("4111111111111111"), "************1111");
        assert_eq!(scan("mail jane.doe@example.com."), "mail j***@example.com.");
        assert_eq!(scan("ssn 123-45-6789"), "ssn ****");
        assert_eq!(
            scan("iban DE89 3704 0044 0532 0130 00 end"),
            "iban **** **** **** **** **30 00 end"
        );
        assert_eq!(scan("GB82WEST12345698765432"), "******************5432");
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        assert_eq!(scan(&format!("token={jwt};")), "token=****;");
        assert_eq!(scan("key AKIAIOSFODNN7EXAMPLE"), "key ****");
        assert_eq!(scan("id EMP-123456"), "id ****");
    }

    /// Issue 19: without its prefilter the AWS key detector still finds keys (it used
    /// to find nothing, silently).
    #[test]
    fn aws_keys_are_found_without_the_automaton() {
        let mut d = all();
        d.triggers = None;
        let mut out = Vec::new();
        let fired = d.scan(b"a ASIAIOSFODNN7EXAMPLE b AKIAIOSFODNN7EXAMPLE", &mut out);
        assert!(fired.is_some());
        assert_eq!(out, b"a **** b ****");
    }

    #[test]
    fn leaves_lookalikes_alone() {
        for s in [
            "4111 1111 1111 1112",         // fails Luhn
            "order 1234567890123",         // fails Luhn
            "123-456-7890",                // a phone number, not an SSN
            "a1234-56-7890",               // glued to letters
            "user@localhost",              // no TLD
            "DE89 3704 0044 0532 0130 01", // bad IBAN checksum
            "AKIAshort",
            "eyJ but not a token",
            "plain text with 42 numbers",
        ] {
            assert_eq!(scan(s), s, "{s}");
        }
    }

    #[test]
    fn digit_skipping_finds_every_digit() {
        let text: Vec<u8> = (0u16..600).map(|i| (i % 256) as u8).collect();
        for from in 0..text.len() {
            let want = text[from..]
                .iter()
                .position(u8::is_ascii_digit)
                .map(|p| from + p);
            assert_eq!(next_digit(&text, from), want, "from {from}");
        }
        assert_eq!(next_digit(b"abcdefghijklmnop", 0), None);
        assert_eq!(next_digit(b"abcdefghijklmno9", 0), Some(15));
    }

    #[test]
    fn unicode_and_overlaps() {
        assert_eq!(scan("é 123-45-6789 ü"), "é **** ü");
        assert_eq!(
            scan("a@b.com 123-45-6789 4111111111111111"),
            "a***@b.com **** ************1111"
        );
    }
}
