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
    let mut s = Splicer {
        src,
        pos: 0,
        out: Vec::with_capacity(src.len() + 64),
        masked,
        masked_at,
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
            let key: String =
                serde_json::from_slice(&self.src[raw]).map_err(|e| format!("a key: {e}"))?;
            self.ws(emit);
            self.expect(b':', emit)?;
            let len = ptr.len();
            ptr.push('/');
            // RFC 6901: `~` and `/` in a key are escaped.
            ptr.push_str(&key.replace('~', "~0").replace('/', "~1"));
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
            ptr.push('/');
            ptr.push_str(itoa::Buffer::new().format(i));
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
    fn a_duplicated_key_is_masked_at_both_places() {
        let src = r#"{"ssn": "1", "ssn": "2"}"#;
        assert_eq!(
            run(src, &[("/ssn", Value::Null)]),
            r#"{"ssn": null, "ssn": null}"#
        );
    }
}
