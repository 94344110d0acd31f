//! The content detectors over every value token of a JSON document as the target
//! wrote it, and a look for duplicated keys. serde_json keeps only the last value of
//! a key written twice in one object (`{"n":"4111 1111 1111 1111","n":"ok"}`), so
//! scanning its `Value` never sees the first one, which a first-wins client reads.
//! Reading the raw tokens instead sees every occurrence, wherever it sits.
//!
//! The input has already been parsed by serde_json (valid JSON); should a token
//! still not decode, the caller is told and fails closed.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::mask::detect::Detectors;

/// A masked document and the ids of the detectors that fired in it.
pub type Detected = (Vec<u8>, Vec<usize>);

/// The detectors over every string value and every number (a card number written
/// as a bare JSON number is still a card number); keys are names, not values. A
/// value a detector fires on is written as the masked JSON string. None when
/// nothing fired; otherwise the masked document and the detectors' ids, in the
/// order they fired.
pub fn detect(src: &[u8], detectors: &Detectors) -> Result<Option<Detected>, String> {
    let mut out = Vec::new();
    let mut copied = 0;
    let mut ids = Vec::new();
    let mut scratch = Vec::new();
    let mut pos = 0;
    while let Some(&b) = src.get(pos) {
        let start = pos;
        let text: Cow<str> = match b {
            b'"' => {
                pos = string_end(src, pos)?;
                if next_is_colon(src, pos) {
                    continue;
                }
                decoded(&src[start..pos])?
            }
            b'-' | b'0'..=b'9' => {
                while src
                    .get(pos)
                    .is_some_and(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                {
                    pos += 1;
                }
                Cow::Borrowed(std::str::from_utf8(&src[start..pos]).map_err(|e| e.to_string())?)
            }
            _ => {
                pos += 1;
                continue;
            }
        };
        // A number written with a fraction or an exponent (`4111111111111111e0`,
        // `4.111111111111111e15`) is the integer a client reads: scanned as that too.
        let hit = detectors.scan(text.as_bytes(), &mut scratch).or_else(|| {
            let int = integer_part(&text)?;
            detectors.scan(int.as_bytes(), &mut scratch)
        });
        if let Some(hit) = hit {
            ids.extend(hit);
            out.extend_from_slice(&src[copied..start]);
            serde_json::to_writer(&mut out, &*String::from_utf8_lossy(&scratch))
                .map_err(|e| e.to_string())?;
            copied = pos;
        }
    }
    if ids.is_empty() {
        return Ok(None);
    }
    out.extend_from_slice(&src[copied..]);
    Ok(Some((out, ids)))
}

/// Keys written more than once in one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    None,
    /// Every occurrence of every duplicated key holds a string, number, bool or null:
    /// the JSON Pointers of the document are the same whichever occurrence a reader
    /// keeps, so a pointer masked is masked at every place (`json_splice`).
    Scalars,
    /// An occurrence holds an object or array: a JSONPath query over serde_json's
    /// last-wins reading cannot see what is inside the others.
    Containers,
}

/// Whether (and how) `src` has a key twice in one object.
pub fn duplicates(src: &[u8]) -> Result<Duplicates, String> {
    // One entry per open object (None: an array): its keys, and whether an
    // occurrence of each held an object or array.
    let mut open: Vec<Option<HashMap<Cow<str>, bool>>> = Vec::new();
    let mut found = Duplicates::None;
    let mut pos = 0;
    while let Some(&b) = src.get(pos) {
        match b {
            b'{' => open.push(Some(HashMap::new())),
            b'[' => open.push(None),
            b'}' | b']' => {
                open.pop();
            }
            b'"' => {
                let start = pos;
                pos = string_end(src, pos)?;
                if !next_is_colon(src, pos) {
                    continue;
                }
                let key = decoded(&src[start..pos])?;
                // The value after the colon.
                let value = skip_ws(src, skip_ws(src, pos) + 1);
                let container = matches!(src.get(value), Some(b'{' | b'['));
                if let Some(Some(keys)) = open.last_mut() {
                    if let Some(held) = keys.get_mut(&key) {
                        if *held || container {
                            return Ok(Duplicates::Containers);
                        }
                        found = Duplicates::Scalars;
                    } else {
                        keys.insert(key, container);
                    }
                }
                continue;
            }
            _ => {}
        }
        pos += 1;
    }
    Ok(found)
}

/// The position just past the string token starting at `start` (a quote).
fn string_end(src: &[u8], start: usize) -> Result<usize, String> {
    let mut pos = start + 1;
    loop {
        match src.get(pos) {
            Some(b'\\') => pos += 2,
            Some(b'"') => return Ok(pos + 1),
            Some(_) => pos += 1,
            None => return Err("a string did not end".into()),
        }
    }
}

/// The text of a whole string token (quotes included), escapes decoded.
fn decoded(token: &[u8]) -> Result<Cow<'_, str>, String> {
    let raw = &token[1..token.len() - 1];
    if raw.contains(&b'\\') {
        let s: String = serde_json::from_slice(token).map_err(|e| format!("a string: {e}"))?;
        Ok(Cow::Owned(s))
    } else {
        std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|e| e.to_string())
    }
}

/// The first position from `pos` that is not JSON whitespace.
fn skip_ws(src: &[u8], mut pos: usize) -> usize {
    while src
        .get(pos)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        pos += 1;
    }
    pos
}

/// Whether the string token ending at `pos` is a key (a colon follows).
fn next_is_colon(src: &[u8], pos: usize) -> bool {
    src.get(skip_ws(src, pos)) == Some(&b':')
}

/// The integer part of a JSON number written with a fraction or an exponent, as
/// decimal digits (with its sign): what a client that reads the number sees of it.
/// None for a plain integer (scanned as written), and where the integer part would
/// be longer than any number a detector looks for.
pub(super) fn integer_part(token: &str) -> Option<String> {
    /// Digits past which no detector's number (cards: 19) can be.
    const MAX_DIGITS: usize = 40;
    if !token.contains(['.', 'e', 'E']) {
        return None;
    }
    let (sign, rest) = match token.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", token),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = int.chars().chain(frac.chars()).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Where the decimal point falls in `digits`.
    let point = (int.len() as i64).checked_add(exp)?;
    if point <= 0 || point > MAX_DIGITS as i64 {
        return None;
    }
    let point = point as usize;
    let mut out = String::with_capacity(sign.len() + point);
    out.push_str(sign);
    out.push_str(&digits[..point.min(digits.len())]);
    out.extend(std::iter::repeat_n('0', point.saturating_sub(digits.len())));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RuleSet, Subject};

    fn cards() -> Detectors {
        let yaml = "detect:\n  - id: cards\n    kind: credit_card\n    method: redact\n";
        let rules = RuleSet::from_sources(&[("r.yaml".into(), yaml.into())]).expect("compiles");
        let groups: Vec<String> = Vec::new();
        let who = Subject {
            user: "a",
            groups: &groups,
            target: "t",
            search_path_changed: false,
        };
        Detectors::new(
            rules
                .detectors_for(&who)
                .into_iter()
                .map(|d| d.detector())
                .collect(),
        )
    }

    #[test]
    fn duplicated_keys_are_found_and_told_apart() {
        let d = |s: &str| duplicates(s.as_bytes()).unwrap();
        assert_eq!(
            d(r#"{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}"#),
            Duplicates::None
        );
        assert_eq!(d(r#"{"a":1,"b":"x","a" : "y"}"#), Duplicates::Scalars);
        assert_eq!(d(r#"[{"x":[{"k":"a","k":null}]}]"#), Duplicates::Scalars);
        assert_eq!(d(r#"{"a":{"s":"1"},"a":{}}"#), Duplicates::Containers);
        assert_eq!(
            d(r#"{"a":"1","b":{"c":2},"\u0061":[1]}"#),
            Duplicates::Containers
        );
        // A key-like string value is not a key.
        assert_eq!(d(r#"{"a":"a","b":["a","a"]}"#), Duplicates::None);
    }

    #[test]
    fn every_string_and_number_is_scanned() {
        let cards = cards();
        let (out, ids) = detect(
            br#"{"n":"4111 1111 1111 1111","n":"ok","m":[4111111111111111,1.5e3],"4111111111111111":"k"}"#,
            &cards,
        )
        .unwrap()
        .expect("fired");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"n":"****","n":"ok","m":["****",1.5e3],"4111111111111111":"k"}"#
        );
        assert_eq!(ids, vec![0, 0]);
        assert_eq!(detect(br#"{"a":"x\"y","b":12}"#, &cards).unwrap(), None);
    }

    /// A client reads `4111111111111111e0` as 4111111111111111: so does the scan.
    #[test]
    fn numbers_with_a_fraction_or_an_exponent_are_scanned_as_read() {
        let cards = cards();
        for n in [
            "4111111111111111e0",
            "4111111111111111E0",
            "4111111111111111e+0",
            "4.111111111111111e15",
            "41111111111111.11e2",
            "411111111111111100e-2",
            "4111111111111111.0",
            "-4111111111111111e0",
        ] {
            let doc = format!(r#"{{"card":{n},"n":1.5e3}}"#);
            let (out, ids) = detect(doc.as_bytes(), &cards)
                .unwrap()
                .unwrap_or_else(|| panic!("{n} not caught"));
            let out = String::from_utf8(out).unwrap();
            assert!(!out.contains("4111"), "{n}: {out}");
            assert!(out.ends_with(r#","n":1.5e3}"#), "{n}: {out}");
            assert_eq!(ids, vec![0], "{n}");
        }
        assert_eq!(integer_part("1.5e3").as_deref(), Some("1500"));
        assert_eq!(integer_part("-2.5").as_deref(), Some("-2"));
        assert_eq!(integer_part("12"), None);
        assert_eq!(integer_part("1e400"), None);
        assert_eq!(integer_part("1e-400"), None);
        assert_eq!(integer_part("9e99999999999999999999"), None);
        assert_eq!(
            detect(br#"{"a":1e400,"b":0.5,"c":-0.0}"#, &cards).unwrap(),
            None
        );
    }
}
