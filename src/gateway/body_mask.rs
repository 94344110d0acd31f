//! Masking response bodies: `json:` masks (JSONPath, RFC 9535) by target, then the
//! content detectors on every JSON string value, or over a whole text body. The
//! methods and detectors are the ones the wire uses (`crate::mask`); only the
//! container differs. Compressed bodies are decoded first (bounded), and the client
//! gets the masked body uncompressed with its own Content-Length. A masked JSON body
//! keeps the target's key order and layout (`json_splice`).

use std::collections::HashSet;
use std::io::Read;

use serde_json::Value;
use serde_json_path::JsonPath;

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
    if essence == "application/json" || essence.ends_with("+json") {
        BodyKind::Json
    } else if essence.starts_with("text/")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/xml"
                | "application/javascript"
                | "application/x-ndjson"
                | "application/x-www-form-urlencoded"
                | "application/graphql-response+json"
                | ""
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
        (!json.is_empty() || !detectors.is_empty()).then_some(BodyMasks {
            json,
            simple,
            detectors,
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
                    let mut at = HashSet::new();
                    self.mask_json(&mut v, &mut fired, &mut at);
                    if fired.is_empty() {
                        return Ok((body, fired));
                    }
                    // The target's bytes with the masked values spliced in: key order
                    // and layout stay as the target wrote them.
                    let out =
                        super::json_splice::splice(&body, &v, &at).map_err(MaskError::Corrupt)?;
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

    /// Mask `v` in place; `at` gets the JSON Pointer of every value changed.
    fn mask_json(&self, v: &mut Value, fired: &mut Vec<String>, at: &mut HashSet<String>) {
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
        if !self.detectors.is_empty() {
            let mut ids = Vec::new();
            let mut scratch = Vec::new();
            let mut ptr = String::new();
            self.scan_strings(v, &mut ids, &mut scratch, &mut ptr, at);
            self.note(&ids, fired);
        }
    }

    /// The detectors over every string value; `ptr` is the JSON Pointer of `v`.
    fn scan_strings(
        &self,
        v: &mut Value,
        ids: &mut Vec<usize>,
        scratch: &mut Vec<u8>,
        ptr: &mut String,
        at: &mut HashSet<String>,
    ) {
        let len = ptr.len();
        match v {
            Value::String(s) => {
                if let Some(hit) = self.detectors.scan(s.as_bytes(), scratch) {
                    *s = String::from_utf8_lossy(scratch).into_owned();
                    ids.extend(hit);
                    at.insert(ptr.clone());
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter_mut().enumerate() {
                    ptr.push('/');
                    ptr.push_str(itoa::Buffer::new().format(i));
                    self.scan_strings(x, ids, scratch, ptr, at);
                    ptr.truncate(len);
                }
            }
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    ptr.push('/');
                    if k.contains(['~', '/']) {
                        ptr.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    } else {
                        ptr.push_str(k);
                    }
                    self.scan_strings(x, ids, scratch, ptr, at);
                    ptr.truncate(len);
                }
            }
            _ => {}
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
