//! Masking response bodies: `json:` masks (JSONPath, RFC 9535) by target, then the
//! content detectors on every JSON string value and number as the target wrote it
//! (every occurrence of a duplicated key: `json_every`), or over a whole text body. The
//! methods and detectors are the ones the wire uses (`crate::mask`); only the
//! container differs. Compressed bodies are decoded first (bounded), and the client
//! gets the masked body uncompressed with its own Content-Length. A masked JSON body
//! keeps the target's key order and layout (`json_splice`).

use std::collections::HashSet;
use std::io::Read;

use serde_json::Value;
use serde_json_path::JsonPath;

use super::json_every::{self, Duplicates};
use super::json_stream::{self, SimplePath, Streamed};
use crate::mask::detect::Detectors;
use crate::mask::method::Method;
use crate::policy::{RuleSet, Subject};

/// What pgmoat masks in a response for one identity and target.
pub struct BodyMasks {
    json: Vec<(String, JsonPath, Method)>,
    /// The same paths as the streaming matcher reads them, when it reads every one
    /// (`json_stream`); None: JSON bodies are masked through a `Value`.
    simple: Option<Vec<SimplePath>>,
    detectors: Detectors,
    /// Whether a path has a filter (`?`, or a name holding one: fail closed).
    filtered: bool,
}

/// Why a response that needed masking could not be masked (the client gets 502).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("the response body is larger than max_masked_body ({0} bytes)")]
    TooLarge(u64),
    #[error("the response's content encoding {0:?} cannot be decoded for masking")]
    Encoding(String),
    #[error("the response body could not be decoded: {0}")]
    Corrupt(String),
    #[error("the response claims JSON but is not JSON, and json masks apply")]
    NotJson,
    /// Refused as `NotJson` is (502); told apart in the record.
    #[error("the response has a key written twice where json masks could miss a value")]
    DuplicateKeys,
    #[error("the response is not JSON, and json masks apply to this target")]
    TextWithJsonMasks,
}

/// Pictures, sound, video and fonts: nothing a detector looks for.
pub fn is_media(content_type: &str) -> bool {
    ["image/", "audio/", "video/", "font/"]
        .iter()
        .any(|p| content_type.starts_with(p))
}

/// How a body is read for masking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Text,
    /// Binary: not a text pgmoat could scan; streamed as it is.
    Opaque,
}

/// From `Content-Type`. A body without one is scanned as text (fail closed).
pub fn kind_of(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Text;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let subtype = essence.split_once('/').map_or("", |(_, s)| s);
    if matches!(essence.as_str(), "application/json" | "application/x-json")
        || essence.ends_with("+json")
    {
        BodyKind::Json
    } else if essence.starts_with("text/")
        || essence.ends_with("+xml")
        || essence.ends_with("+yaml")
        // JSON lines and sequences, YAML, CSV, scripts: text a client can ask for with
        // `Accept` in place of JSON, so the detectors read it.
        || ["json", "yaml", "yml", "csv", "javascript", "ecmascript", "sql"]
            .iter()
            .any(|t| subtype.contains(t))
        || matches!(
            essence.as_str(),
            "application/xml" | "application/x-www-form-urlencoded" | ""
        )
    {
        BodyKind::Text
    } else {
        BodyKind::Opaque
    }
}

impl BodyMasks {
    /// None when nothing applies to this identity and target: the response streams.
    pub fn build(rules: &RuleSet, who: &Subject<'_>) -> Option<BodyMasks> {
        let json: Vec<(String, JsonPath, Method)> = rules
            .json_masks_for(who)
            .into_iter()
            .flat_map(|m| {
                m.json
                    .iter()
                    .map(|p| (m.id.clone(), p.clone(), m.method.clone()))
            })
            .collect();
        let detectors = Detectors::new(
            rules
                .detectors_for(who)
                .into_iter()
                .map(|d| d.detector())
                .collect(),
        );
        let simple = json.iter().map(|(_, p, _)| SimplePath::of(p)).collect();
        let filtered = json.iter().any(|(_, p, _)| p.to_string().contains('?'));
        (!json.is_empty() || !detectors.is_empty()).then_some(BodyMasks {
            json,
            simple,
            detectors,
            filtered,
        })
    }

    /// Whether `json:` masks apply (then only JSON bodies can be masked).
    pub fn has_json(&self) -> bool {
        !self.json.is_empty()
    }

    /// Mask a decoded body. Returns the new body and the ids of the masks and
    /// detectors that changed it (empty: the body is returned as it came).
    pub fn mask(&self, body: Vec<u8>, kind: BodyKind) -> Result<(Vec<u8>, Vec<String>), MaskError> {
        if kind == BodyKind::Json && !body.is_empty() {
            // The one-pass matcher when it can decide (the same bytes either way).
            if let Some(done) = self.mask_streaming(&body) {
                return Ok(match done {
                    Streamed::Unchanged => (body, Vec::new()),
                    Streamed::Masked(out, fired) => (out, fired),
                });
            }
        }
        self.mask_by_value(body, kind)
    }

    /// The streaming matcher's answer, when it can give one (see `json_stream`).
    pub(super) fn mask_streaming(&self, body: &[u8]) -> Option<Streamed> {
        let simple = self.simple.as_ref()?;
        let json: Vec<(&str, &SimplePath, &Method)> = self
            .json
            .iter()
            .zip(simple)
            .map(|((id, _, m), p)| (id.as_str(), p, m))
            .collect();
        json_stream::mask(body, &json, &self.detectors)
    }

    /// Masking through a `serde_json::Value`: any JSONPath, any valid document.
    pub(super) fn mask_by_value(
        &self,
        body: Vec<u8>,
        kind: BodyKind,
    ) -> Result<(Vec<u8>, Vec<String>), MaskError> {
        let mut fired: Vec<String> = Vec::new();
        if body.is_empty() {
            return Ok((body, fired));
        }
        match kind {
            BodyKind::Opaque => Ok((body, fired)),
            BodyKind::Json => match serde_json::from_slice::<Value>(&body) {
                Ok(mut v) => {
                    if !self.json.is_empty() && self.duplicates_hide_values(&body)? {
                        return Err(MaskError::DuplicateKeys);
                    }
                    let mut at = HashSet::new();
                    self.mask_paths(&mut v, &mut fired, &mut at);
                    // The target's bytes with the masked values spliced in: key order
                    // and layout stay as the target wrote them.
                    let mut out = if fired.is_empty() {
                        body
                    } else {
                        super::json_splice::splice(&body, &v, &at).map_err(MaskError::Corrupt)?
                    };
                    // The detectors over the raw tokens, not the Value: serde_json kept
                    // only the last of a duplicated key, a client may read the first.
                    if !self.detectors.is_empty() {
                        if let Some((masked, ids)) =
                            json_every::detect(&out, &self.detectors).map_err(MaskError::Corrupt)?
                        {
                            self.note(&ids, &mut fired);
                            out = masked;
                        }
                    }
                    Ok((out, fired))
                }
                Err(_) if self.json.is_empty() => self.mask_by_value(body, BodyKind::Text),
                Err(_) => Err(MaskError::NotJson),
            },
            // An HTML, XML or CSV rendering of data a `json:` mask covers (the client
            // chose the format): the mask cannot be applied, so it does not go out.
            BodyKind::Text if !self.json.is_empty() => Err(MaskError::TextWithJsonMasks),
            BodyKind::Text => {
                let mut out = Vec::new();
                match self.detectors.scan(&body, &mut out) {
                    None => Ok((body, fired)),
                    Some(ids) => {
                        self.note(&ids, &mut fired);
                        Ok((out, fired))
                    }
                }
            }
        }
    }

    fn note(&self, ids: &[usize], fired: &mut Vec<String>) {
        let names: Vec<&str> = self.detectors.ids().collect();
        for i in ids {
            if let Some(n) = names.get(*i) {
                if !fired.iter().any(|f| f == n) {
                    fired.push((*n).to_owned());
                }
            }
        }
    }

    /// Whether a duplicated key could hide a value from the `json:` masks: the query
    /// reads serde_json's last-wins `Value`, the splice masks a pointer at every place
    /// it occurs. That covers duplicates of plain values, unless a filter reads one
    /// (`$[?@.role=='admin'].ssn`: a first-wins client sees another role); it cannot
    /// cover an object or array written twice (what is inside the first is never
    /// queried). Those bodies are refused as unreadable JSON is (fail closed, 502).
    fn duplicates_hide_values(&self, body: &[u8]) -> Result<bool, MaskError> {
        Ok(
            match json_every::duplicates(body).map_err(MaskError::Corrupt)? {
                Duplicates::None => false,
                Duplicates::Scalars => self.filtered,
                Duplicates::Containers => true,
            },
        )
    }

    /// The `json:` masks over `v`, in place; `at` gets the JSON Pointer of every
    /// value changed.
    fn mask_paths(&self, v: &mut Value, fired: &mut Vec<String>, at: &mut HashSet<String>) {
        for (id, path, method) in &self.json {
            let pointers: Vec<String> = path
                .query_located(v)
                .locations()
                .map(|l| l.to_json_pointer())
                .collect();
            for p in pointers {
                if let Some(node) = v.pointer_mut(&p) {
                    *node = masked_value(node, method);
                    if !fired.iter().any(|f| f == id) {
                        fired.push(id.clone());
                    }
                    at.insert(p);
                }
            }
        }
    }
}

/// A masked JSON value: strings get the method's string; anything else (numbers,
/// objects, arrays) becomes null, as non-text columns do on the wire.
fn masked_value(node: &Value, method: &Method) -> Value {
    match node {
        Value::String(s) => {
            let mut out = Vec::new();
            if method.apply(s.as_bytes(), &mut out) {
                Value::String(String::from_utf8_lossy(&out).into_owned())
            } else {
                Value::Null
            }
        }
        _ => Value::Null,
    }
}

/// Undo `Content-Encoding` (outermost last in the header), reading at most `max`
/// decoded bytes.
pub fn decode(encoding: Option<&str>, body: Vec<u8>, max: u64) -> Result<Vec<u8>, MaskError> {
    let Some(enc) = encoding else {
        return Ok(body);
    };
    let codings: Vec<String> = enc
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    let mut data = body;
    for c in codings.iter().rev() {
        data = decode_one(c, &data, max)?;
    }
    Ok(data)
}

fn decode_one(coding: &str, data: &[u8], max: u64) -> Result<Vec<u8>, MaskError> {
    let reader: Box<dyn Read + '_> = match coding {
        "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(data)),
        // RFC 9110's deflate is zlib; a raw deflate stream (a common mistake) is
        // tried when the zlib header is not there.
        "deflate"
            if data.len() >= 2 && (u16::from(data[0]) << 8 | u16::from(data[1])) % 31 == 0 =>
        {
            Box::new(flate2::read::ZlibDecoder::new(data))
        }
        "deflate" => Box::new(flate2::read::DeflateDecoder::new(data)),
        "br" => Box::new(brotli_decompressor::Decompressor::new(data, 4096)),
        other => return Err(MaskError::Encoding(other.to_owned())),
    };
    let mut out = Vec::new();
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| MaskError::Corrupt(format!("{coding}: {e}")))?;
    if out.len() as u64 > max {
        return Err(MaskError::TooLarge(max));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn masks(yaml: &str, target: &str) -> BodyMasks {
        let rules = RuleSet::from_sources(&[("r.yaml".into(), yaml.into())]).expect("compiles");
        let groups: Vec<String> = vec!["agents".into()];
        let who = Subject {
            user: "a",
            groups: &groups,
            target,
            search_path_changed: false,
        };
        BodyMasks::build(&rules, &who).expect("masks apply")
    }

    const RULES: &str = "masks:
  - id: ssn
    json: ['$.users[*].ssn', '$..email']
    targets: [billing]
    method: partial
    keep_last: 4
detect:
  - id: cards
    kind: credit_card
    method: redact
";

    #[test]
    fn jsonpath_and_detectors_mask_json() {
        let m = masks(RULES, "billing");
        let body = br#"{"users":[{"name":"Ann","ssn":"123-45-6789","email":"ann@example.com","note":"card 4111 1111 1111 1111"}],"total":3}"#;
        let (out, fired) = m.mask(body.to_vec(), BodyKind::Json).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["users"][0]["ssn"], "***-**-6789");
        assert_eq!(v["users"][0]["name"], "Ann");
        assert_ne!(v["users"][0]["email"], "ann@example.com");
        assert_eq!(v["users"][0]["note"], "card ****");
        assert_eq!(v["total"], 3);
        assert_eq!(fired, vec!["ssn".to_string(), "cards".to_string()]);
    }

    #[test]
    fn json_masks_are_per_target_detectors_everywhere() {
        let m = masks(RULES, "crm");
        let body = br#"{"users":[{"ssn":"123-45-6789"}]}"#.to_vec();
        let (out, fired) = m.mask(body.clone(), BodyKind::Json).unwrap();
        assert_eq!(out, body, "untouched bytes when nothing fired");
        assert!(fired.is_empty());
    }

    #[test]
    fn text_bodies_and_bad_json() {
        // Detectors alone scan text; where json: masks apply, text is refused (an
        // HTML or CSV rendering of the data they cover).
        let (out, _) = masks(RULES, "crm")
            .mask(b"pay 4111111111111111 now".to_vec(), BodyKind::Text)
            .unwrap();
        assert_eq!(out, b"pay **** now");
        let m = masks(RULES, "billing");
        assert_eq!(
            m.mask(b"<td>123-45-6789</td>".to_vec(), BodyKind::Text),
            Err(MaskError::TextWithJsonMasks)
        );
        assert_eq!(
            m.mask(b"{not json".to_vec(), BodyKind::Json),
            Err(MaskError::NotJson)
        );
        // A JSON response without a body (201, say) is not refused.
        assert_eq!(
            m.mask(Vec::new(), BodyKind::Json),
            Ok((Vec::new(), Vec::new()))
        );
    }

    /// Issue 23: every occurrence of a duplicated key is scanned, wherever it sits,
    /// through the streaming matcher's entry point and the `Value` path alike.
    #[test]
    fn duplicated_keys_are_scanned_at_every_occurrence() {
        let card = "4111 1111 1111 1111";
        let docs = [
            (
                format!(r#"{{"n":"{card}","n":"ok"}}"#),
                r#"{"n":"****","n":"ok"}"#,
            ),
            (
                format!(r#"{{"n":"ok","n":"{card}"}}"#),
                r#"{"n":"ok","n":"****"}"#,
            ),
            (
                format!(r#"{{"a":[{{"x":{{"n":"{card}","n":2,"n":"ok"}}}}],"b":null}}"#),
                r#"{"a":[{"x":{"n":"****","n":2,"n":"ok"}}],"b":null}"#,
            ),
            (
                format!(r#"{{"users":[{{"ssn":"123-45-6789","ssn":"{card}"}}]}}"#),
                // json_splice writes the masked last value at both places.
                r#"{"users":[{"ssn":"**** **** **** 1111","ssn":"**** **** **** 1111"}]}"#,
            ),
        ];
        for target in ["crm", "billing"] {
            let m = masks(RULES, target);
            for (doc, want) in &docs {
                let (plain, fired) = m.mask(doc.clone().into_bytes(), BodyKind::Json).unwrap();
                let by_value = m.mask_by_value(doc.clone().into_bytes(), BodyKind::Json);
                assert_eq!(by_value, Ok((plain.clone(), fired.clone())), "{doc}");
                let text = String::from_utf8(plain).unwrap();
                assert!(!text.contains(card), "{target}: {text}");
                if target == "billing" {
                    assert_eq!(text, *want, "{doc}");
                } else {
                    assert_eq!(fired, vec!["cards".to_string()], "{doc}");
                }
            }
        }
        // Compressed: decoded by the existing helper, then masked the same.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(docs[0].0.as_bytes()).unwrap();
        let body = decode(Some("gzip"), gz.finish().unwrap(), 1 << 20).unwrap();
        let (out, fired) = masks(RULES, "crm").mask(body, BodyKind::Json).unwrap();
        assert_eq!(out, docs[0].1.as_bytes());
        assert_eq!(fired, vec!["cards".to_string()]);
    }

    /// A card number written as a bare JSON number is found and written as the
    /// detector's masked string, on both paths. A `json:` mask makes a number null.
    #[test]
    fn bare_numbers_are_scanned() {
        let m = masks(RULES, "billing");
        let doc =
            br#"{"card":4111111111111111,"l":[1,-4111111111111111],"users":[{"ssn":123456789}]}"#;
        let want = r#"{"card":"****","l":[1,"-****"],"users":[{"ssn":null}]}"#;
        let (out, fired) = m.mask(doc.to_vec(), BodyKind::Json).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        assert_eq!(fired, vec!["ssn".to_string(), "cards".to_string()]);
        let (out, _) = m.mask_by_value(doc.to_vec(), BodyKind::Json).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let plain = br#"{"card":4111111111111112,"n":12}"#.to_vec();
        assert_eq!(m.mask(plain.clone(), BodyKind::Json), Ok((plain, vec![])));
    }

    /// Where a duplicated key could hide a value from a `json:` mask (an object or
    /// array written twice, or a filter reading a duplicated value), the body is
    /// refused as unreadable JSON is; detectors alone still mask it.
    #[test]
    fn duplicates_a_json_mask_cannot_cover_are_refused() {
        let m = masks(RULES, "billing");
        for doc in [
            r#"{"users":[{"ssn":"123-45-6789"}],"users":[]}"#,
            r#"{"users":[],"users":[{"ssn":"123-45-6789"}]}"#,
            r#"{"x":{"a":{"email":"ann@example.com"},"a":{}}}"#,
        ] {
            assert_eq!(
                m.mask(doc.as_bytes().to_vec(), BodyKind::Json),
                Err(MaskError::DuplicateKeys),
                "{doc}"
            );
            let crm = masks(RULES, "crm");
            let (out, _) = crm.mask(doc.as_bytes().to_vec(), BodyKind::Json).unwrap();
            assert_eq!(out, doc.as_bytes());
        }
        let filtered = "masks:
  - id: admins
    json: [\"$.users[?@.role=='admin'].ssn\"]
    targets: [billing]
    method: redact
";
        let m = masks(filtered, "billing");
        let dup = br#"{"users":[{"role":"admin","role":"user","ssn":"1"}]}"#;
        assert_eq!(
            m.mask(dup.to_vec(), BodyKind::Json),
            Err(MaskError::DuplicateKeys)
        );
        let one = br#"{"users":[{"role":"admin","ssn":"1"}]}"#;
        let (out, _) = m.mask(one.to_vec(), BodyKind::Json).unwrap();
        assert_eq!(out, br#"{"users":[{"role":"admin","ssn":"****"}]}"#);
    }

    #[test]
    fn content_types() {
        assert_eq!(
            kind_of(Some("application/json; charset=utf-8")),
            BodyKind::Json
        );
        assert_eq!(kind_of(Some("application/problem+json")), BodyKind::Json);
        assert_eq!(kind_of(Some("text/plain")), BodyKind::Text);
        assert_eq!(kind_of(None), BodyKind::Text);
        assert_eq!(kind_of(Some("image/png")), BodyKind::Opaque);
        assert_eq!(kind_of(Some("application/x-json")), BodyKind::Json);
        for text in [
            "application/x-ndjson",
            "application/jsonl",
            "application/json-seq",
            "application/x-jsonlines",
            "application/yaml",
            "application/x-yaml",
            "application/csv",
            "application/x-javascript",
            "application/sql",
            "application/vnd.api+yaml",
        ] {
            assert_eq!(kind_of(Some(text)), BodyKind::Text, "{text}");
        }
        assert_eq!(kind_of(Some("application/octet-stream")), BodyKind::Opaque);
    }

    #[test]
    fn decoding_is_bounded() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'a'; 10_000]).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(
            decode(Some("gzip"), packed.clone(), 10_000).unwrap().len(),
            10_000
        );
        assert_eq!(
            decode(Some("gzip"), packed, 9_999),
            Err(MaskError::TooLarge(9_999))
        );
        assert!(matches!(
            decode(Some("zstd"), vec![1], 10),
            Err(MaskError::Encoding(_))
        ));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(b"hello").unwrap();
        assert_eq!(
            decode(Some("deflate"), z.finish().unwrap(), 100).unwrap(),
            b"hello"
        );
    }
}
