//! A masked JSON body written as the target wrote it: same key order, same spacing,
//! only the masked values replaced. serde_json's `Value` sorts object keys, so
//! re-encoding the masked document would reorder every object a client (or a
//! signature over it) may rely on. Instead the original bytes are copied while a
//! small scanner follows the JSON Pointer of each value, and a value whose pointer
//! was masked is written from the masked document instead.
//!
//! The input has already been parsed by serde_json, so it is valid JSON; should the
//! scanner still meet something it does not expect, it says so and the caller fails
//! closed. A key that appears twice in an object is masked at both places (serde_json
//! kept the last; the client may read either).

use std::collections::HashSet;

use serde_json::Value;

/// `src` with the value at every pointer in `masked_at` replaced by the one at the
/// same pointer in `masked`.
pub fn splice(src: &[u8], masked: &Value, masked_at: &HashSet<String>) -> Result<Vec<u8>, String> {
    // Every pointer on the way to a masked value: a value whose pointer is none of
    // these holds nothing masked and is copied as it is, without following the
    // pointers inside it.
    let mut on_the_way: HashSet<&str> = HashSet::new();
    for p in masked_at {
        let mut rest = p.as_str();
        while let Some(i) = rest.rfind('/') {
            rest = &rest[..i];
            if !on_the_way.insert(rest) {
                break;
            }
        }
    }
    let mut s = Splicer {
        src,
        pos: 0,
        out: Vec::with_capacity(src.len() + 64),
        masked,
        masked_at,
        on_the_way,
    };
    let mut ptr = String::new();
    s.value(&mut ptr, true)?;
    s.ws(true);
    if s.pos != src.len() {
        return Err("trailing bytes after the JSON document".into());
    }
    Ok(s.out)
}

struct Splicer<'a> {
    src: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    masked: &'a Value,
    masked_at: &'a HashSet<String>,
    on_the_way: HashSet<&'a str>,
}

impl Splicer<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// Copy (or skip) one byte that must be `b`.
    fn expect(&mut self, b: u8, emit: bool) -> Result<(), String> {
        if self.peek() != Some(b) {
            return Err(format!("expected {:?} at byte {}", b as char, self.pos));
        }
        if emit {
            self.out.push(b);
        }
        self.pos += 1;
        Ok(())
    }

    fn ws(&mut self, emit: bool) {
        while let Some(b) = self.peek() {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            if emit {
                self.out.push(b);
            }
            self.pos += 1;
        }
    }

    /// One value at `ptr`: copied, replaced (when masked) or skipped (`emit` false).
    fn value(&mut self, ptr: &mut String, emit: bool) -> Result<(), String> {
        self.ws(emit);
        if emit && self.masked_at.contains(ptr.as_str()) {
            self.value(ptr, false)?;
            let v = self.masked.pointer(ptr).unwrap_or(&Value::Null);
            serde_json::to_writer(&mut self.out, v).map_err(|e| e.to_string())?;
            return Ok(());
        }
        if emit && !self.on_the_way.contains(ptr.as_str()) {
            // Nothing masked inside: skipped over, then copied in one piece.
            let start = self.pos;
            self.value(ptr, false)?;
            self.out.extend_from_slice(&self.src[start..self.pos]);
            return Ok(());
        }
        match self.peek() {
            Some(b'{') => self.object(ptr, emit),
            Some(b'[') => self.array(ptr, emit),
            Some(b'"') => self.string(emit).map(|_| ()),
            Some(_) => {
                // A number, true, false or null: up to the next delimiter.
                let start = self.pos;
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if start == self.pos {
                    return Err(format!("expected a value at byte {start}"));
                }
                if emit {
                    self.out.extend_from_slice(&self.src[start..self.pos]);
                }
                Ok(())
            }
            None => Err("the document ended early".into()),
        }
    }

    /// A string token; returns its raw bytes' range.
    fn string(&mut self, emit: bool) -> Result<std::ops::Range<usize>, String> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek() {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
                None => return Err("a string did not end".into()),
            }
        }
        if emit {
            self.out.extend_from_slice(&self.src[start..self.pos]);
        }
        Ok(start..self.pos)
    }

    fn object(&mut self, ptr: &mut String, emit: bool) -> Result<(), String> {
        self.expect(b'{', emit)?;
        self.ws(emit);
        if self.peek() == Some(b'}') {
            return self.expect(b'}', emit);
        }
        loop {
            self.ws(emit);
            let raw = self.string(emit)?;
            let len = ptr.len();
            if emit {
                // Pointers are only followed where they are written out.
                ptr.push('/');
                push_key(ptr, &self.src[raw])?;
            }
            self.ws(emit);
            self.expect(b':', emit)?;
            self.value(ptr, emit)?;
            ptr.truncate(len);
            self.ws(emit);
            match self.peek() {
                Some(b',') => self.expect(b',', emit)?,
                _ => return self.expect(b'}', emit),
            }
        }
    }

    fn array(&mut self, ptr: &mut String, emit: bool) -> Result<(), String> {
        self.expect(b'[', emit)?;
        self.ws(emit);
        if self.peek() == Some(b']') {
            return self.expect(b']', emit);
        }
        let mut i = 0usize;
        loop {
            let len = ptr.len();
            if emit {
                ptr.push('/');
                ptr.push_str(itoa::Buffer::new().format(i));
            }
            self.value(ptr, emit)?;
            ptr.truncate(len);
            i += 1;
            self.ws(emit);
            match self.peek() {
                Some(b',') => self.expect(b',', emit)?,
                _ => return self.expect(b']', emit),
            }
        }
    }
}

/// A key (its quoted JSON token) added to a JSON Pointer, `~` and `/` escaped (RFC
/// 6901). A key without escapes is its own bytes (the document is valid JSON).
fn push_key(ptr: &mut String, token: &[u8]) -> Result<(), String> {
    let inner = &token[1..token.len().saturating_sub(1).max(1)];
    let decoded;
    let key = if inner.contains(&b'\\') {
        decoded = serde_json::from_slice::<String>(token).map_err(|e| format!("a key: {e}"))?;
        decoded.as_str()
    } else {
        std::str::from_utf8(inner).map_err(|e| format!("a key: {e}"))?
    };
    if key.contains(['~', '/']) {
        ptr.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        ptr.push_str(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, edits: &[(&str, Value)]) -> String {
        let mut masked: Value = serde_json::from_str(src).unwrap();
        let mut at = HashSet::new();
        for (p, v) in edits {
            *masked.pointer_mut(p).unwrap() = v.clone();
            at.insert((*p).to_owned());
        }
        String::from_utf8(splice(src.as_bytes(), &masked, &at).unwrap()).unwrap()
    }

    #[test]
    fn keeps_order_and_spacing_and_replaces_only_the_masked_values() {
        let src = "{ \"z\": 1,\n \"users\": [ {\"ssn\": \"123-45-6789\", \"a\": [1, 2]}, {\"ssn\":\"x\"} ], \"a\": null }";
        let out = run(
            src,
            &[
                ("/users/0/ssn", Value::from("***-**-6789")),
                ("/users/1/ssn", Value::Null),
            ],
        );
        assert_eq!(
            out,
            "{ \"z\": 1,\n \"users\": [ {\"ssn\": \"***-**-6789\", \"a\": [1, 2]}, {\"ssn\":null} ], \"a\": null }"
        );
    }

    #[test]
    fn escaped_keys_nested_values_and_the_whole_document() {
        let src = r#"{"a/b": {"deep": [true, {"x": "y"}]}, "t~": "s\"q"}"#;
        let out = run(src, &[("/a~1b", Value::Null), ("/t~0", Value::from("***"))]);
        assert_eq!(out, r#"{"a/b": null, "t~": "***"}"#);
        assert_eq!(run("\"secret\"", &[("", Value::from("***"))]), "\"***\"");
        assert_eq!(run("[]", &[]), "[]");
    }

    #[test]
    fn subtrees_without_masks_are_copied_whole_and_escaped_keys_still_found() {
        let src = "{\"skip\": {\"deep\": [1, {\"k\\\"q\": \"v\\u00e9\"}], \"s\": \"x/y\"},\n \"k\\\"q\": [ {\"a\\/b\": \"secret\", \"b\": 2} ] }";
        let out = run(src, &[("/k\"q/0/a~1b", Value::from("***"))]);
        assert_eq!(
            out,
            "{\"skip\": {\"deep\": [1, {\"k\\\"q\": \"v\\u00e9\"}], \"s\": \"x/y\"},\n \"k\\\"q\": [ {\"a\\/b\": \"***\", \"b\": 2} ] }"
        );
    }

    #[test]
    fn a_duplicated_key_is_masked_at_both_places() {
        let src = r#"{"ssn": "1", "ssn": "2"}"#;
        assert_eq!(
            run(src, &[("/ssn", Value::Null)]),
            r#"{"ssn": null, "ssn": null}"#
        );
    }
}
