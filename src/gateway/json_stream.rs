//! Masking a JSON body in one pass over its bytes, for the JSONPaths most masks use
//! (`$.a.b`, `$.a[*].b`, `$..b`, `$['a']`): no `serde_json::Value` is built, no JSON
//! Pointer strings, no second pass to splice. Every value's location is matched
//! against the paths as the scanner reaches it, and a masked value is written in
//! place of the original bytes; everything else is copied as the target wrote it.
//!
//! It must give exactly the bytes, and the same masks fired, as the `Value` path
//! (`body_mask` + `json_splice`), which stays for everything this does not handle.
//! So it gives up (returns None, and the caller takes the `Value` path) on anything
//! whose outcome it does not reproduce with certainty: invalid or unusual JSON
//! (serde_json's own errors and limits decide then), escaped keys, duplicated keys
//! (serde_json keeps the last and the splice masks both places), a mask matching an
//! object or array (the `Value` path's order of masks decides which fire), and more
//! than one detector firing (the `Value` path reports them in its own order).

use std::borrow::Cow;
use std::ops::Range;

use serde_json_path::JsonPath;

use crate::mask::detect::Detectors;
use crate::mask::method::Method;

/// A JSONPath made of name and wildcard selectors, with at most one descendant
/// segment (two could select one node twice, which the `Value` path then masks twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimplePath(Vec<Seg>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Child(Sel),
    /// `..`: the selector applies at any depth below.
    Desc(Sel),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sel {
    Name(String),
    /// `*`: every member of an object, every element of an array.
    Wild,
}

impl SimplePath {
    /// The path as this matcher reads it, or None when it is not one it handles.
    /// Read from the compiled path's display form, then checked: the path written
    /// back from what was read must compile to the very same query.
    pub fn of(path: &JsonPath) -> Option<SimplePath> {
        let shown = path.to_string();
        let mut rest = shown.strip_prefix('$')?;
        let mut segs = Vec::new();
        let mut source = String::from("$");
        while !rest.is_empty() {
            let desc = rest.starts_with("..");
            if desc {
                rest = &rest[2..];
                source.push_str("..");
            }
            let sel;
            if let Some(r) = rest.strip_prefix(".*").or_else(|| {
                // `..*` is shown as `...*`; a child `.*` as `.*`.
                desc.then(|| rest.strip_prefix('*')).flatten()
            }) {
                sel = Sel::Wild;
                source.push_str(if desc { "*" } else { ".*" });
                rest = r;
            } else if let Some(r) = rest.strip_prefix("[*]") {
                sel = Sel::Wild;
                source.push_str("[*]");
                rest = r;
            } else if let Some(r) = rest.strip_prefix("['") {
                let end = r.find('\'')?;
                let name = &r[..end];
                if name.contains('\\') || name.chars().any(char::is_control) {
                    return None;
                }
                rest = r[end..].strip_prefix("']")?;
                source.push_str("['");
                source.push_str(name);
                source.push_str("']");
                sel = Sel::Name(name.to_owned());
            } else if let Some(r) = rest.strip_prefix('.') {
                let end = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                    return None;
                }
                if !desc {
                    source.push('.');
                }
                source.push_str(name);
                sel = Sel::Name(name.to_owned());
                rest = &r[end..];
            } else {
                return None;
            }
            segs.push(if desc {
                Seg::Desc(sel)
            } else {
                Seg::Child(sel)
            });
        }
        if segs.iter().filter(|s| matches!(s, Seg::Desc(_))).count() > 1 {
            return None;
        }
        (JsonPath::parse(&source).ok()? == *path).then_some(SimplePath(segs))
    }

    /// Whether the value at `steps` (the keys and indexes from the root) is selected.
    fn matches(&self, src: &[u8], steps: &[Step]) -> bool {
        fn sel_ok(sel: &Sel, src: &[u8], step: &Step) -> bool {
            match (sel, step) {
                (Sel::Wild, _) => true,
                (Sel::Name(n), Step::Key(k)) => src[k.clone()] == *n.as_bytes(),
                (Sel::Name(_), Step::Index) => false,
            }
        }
        fn go(segs: &[Seg], src: &[u8], steps: &[Step]) -> bool {
            let Some((first, more)) = segs.split_first() else {
                return steps.is_empty();
            };
            match first {
                Seg::Child(sel) => steps
                    .split_first()
                    .is_some_and(|(s, rest)| sel_ok(sel, src, s) && go(more, src, rest)),
                Seg::Desc(sel) => (0..steps.len())
                    .any(|i| sel_ok(sel, src, &steps[i]) && go(more, src, &steps[i + 1..])),
            }
        }
        go(&self.0, src, steps)
    }
}

/// One step of a value's location: an object member's key (its raw bytes, which
/// hold no escapes), or an array element.
#[derive(Debug)]
enum Step {
    Key(Range<usize>),
    Index,
}

/// What the streaming pass made of a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Streamed {
    /// Nothing fired: the body goes out as it came.
    Unchanged,
    /// The masked body and the ids that fired, as the `Value` path reports them.
    Masked(Vec<u8>, Vec<String>),
}

/// The `json:` masks (id, path, method, in the `Value` path's order) and detectors
/// over `src`, or None when the `Value` path must decide.
pub fn mask(
    src: &[u8],
    json: &[(&str, &SimplePath, &Method)],
    detectors: &Detectors,
) -> Option<Streamed> {
    // One bit per entry in `Scanner::selected`.
    if json.len() > 64 {
        return None;
    }
    // serde_json refuses invalid UTF-8 in strings; outside them it is a syntax error.
    std::str::from_utf8(src).ok()?;
    let mut s = Scanner {
        src,
        pos: 0,
        out: Vec::new(),
        copied: 0,
        steps: Vec::new(),
        keys: Vec::new(),
        json,
        detectors,
        fired_json: vec![false; json.len()],
        fired_detector: None,
        scratch: Vec::new(),
        work: Vec::new(),
    };
    s.ws();
    s.value(0)?;
    s.ws();
    if s.pos != src.len() {
        return None;
    }
    let mut fired: Vec<String> = Vec::new();
    for (i, (id, _, _)) in json.iter().enumerate() {
        if s.fired_json[i] && !fired.iter().any(|f| f == id) {
            fired.push((*id).to_owned());
        }
    }
    if let Some(d) = s.fired_detector {
        let name = detectors.ids().nth(d)?;
        if !fired.iter().any(|f| f == name) {
            fired.push(name.to_owned());
        }
    }
    if fired.is_empty() {
        return Some(Streamed::Unchanged);
    }
    s.out.extend_from_slice(&src[s.copied..]);
    Some(Streamed::Masked(s.out, fired))
}

/// serde_json's recursion limit is 128; deeper documents are left to it.
const MAX_DEPTH: usize = 100;
/// Keys one object may have here: duplicates are looked for pairwise, so a bound
/// keeps a body of many wide objects linear (a review found 256 keys cost ~16x the
/// Value path's work per key); wider objects are left to the Value path.
const MAX_KEYS: usize = 32;

struct Scanner<'a> {
    src: &'a [u8],
    pos: usize,
    /// The masked body up to `copied` in `src` (empty until something is masked).
    out: Vec<u8>,
    copied: usize,
    /// The current value's location.
    steps: Vec<Step>,
    /// The keys of the objects being read, innermost last (for duplicates).
    keys: Vec<Range<usize>>,
    json: &'a [(&'a str, &'a SimplePath, &'a Method)],
    detectors: &'a Detectors,
    fired_json: Vec<bool>,
    /// The one detector that fired (a second one sends the body to the `Value` path).
    fired_detector: Option<usize>,
    scratch: Vec<u8>,
    work: Vec<u8>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// The json entries selecting the current location, one bit each.
    fn selected(&self) -> u64 {
        let mut bits = 0;
        for (i, (_, path, _)) in self.json.iter().enumerate() {
            if path.matches(self.src, &self.steps) {
                bits |= 1 << i;
            }
        }
        bits
    }

    fn fire(&mut self, selected: u64) {
        for (i, f) in self.fired_json.iter_mut().enumerate() {
            *f |= selected & (1 << i) != 0;
        }
    }

    /// One value (whitespace before it already skipped).
    fn value(&mut self, depth: usize) -> Option<()> {
        let selected = self.selected();
        match self.peek()? {
            b'{' | b'[' if selected != 0 => None,
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string_value(selected),
            _ => {
                let start = self.pos;
                self.scalar()?;
                if selected != 0 {
                    self.fire(selected);
                    self.replace(start, None);
                } else if !self.detectors.is_empty()
                    && !matches!(self.src[start], b't' | b'f' | b'n')
                {
                    // A number is scanned too (a card number written bare), as the
                    // `Value` path's raw pass (`json_every`) scans it.
                    self.number(start)?;
                }
                Some(())
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        let first_key = self.keys.len();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return None;
            }
            let key = self.string()?;
            // Escaped keys would need decoding to be matched or compared.
            if self.src[key.clone()].contains(&b'\\') {
                return None;
            }
            let key = key.start + 1..key.end - 1;
            let seen = &self.keys[first_key..];
            if seen.len() >= MAX_KEYS
                || seen
                    .iter()
                    .any(|k| self.src[k.clone()] == self.src[key.clone()])
            {
                return None;
            }
            self.keys.push(key.clone());
            self.ws();
            if self.peek() != Some(b':') {
                return None;
            }
            self.pos += 1;
            self.ws();
            self.steps.push(Step::Key(key));
            self.value(depth)?;
            self.steps.pop();
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    self.keys.truncate(first_key);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.pos += 1;
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Some(());
        }
        loop {
            self.ws();
            self.steps.push(Step::Index);
            self.value(depth)?;
            self.steps.pop();
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string token (quotes included): its range. Escapes are checked by whoever
    /// decodes the string.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some(start..self.pos);
                }
                b'\\' => self.pos += 2,
                // serde_json refuses control characters in strings.
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// A string value: masked by the selecting masks in order (as the `Value` path
    /// applies one mask after another), then scanned by the detectors.
    fn string_value(&mut self, selected: u64) -> Option<()> {
        let token = self.string()?;
        let src = self.src;
        let raw = &src[token.start + 1..token.end - 1];
        let escaped = raw.contains(&b'\\');
        if !escaped && selected == 0 && self.detectors.is_empty() {
            return Some(());
        }
        // Decoded (and checked) by serde_json itself when escaped; borrowed when not.
        let mut now: Option<Cow<str>> = Some(if escaped {
            Cow::Owned(serde_json::from_slice(&src[token.clone()]).ok()?)
        } else {
            Cow::Borrowed(std::str::from_utf8(raw).ok()?)
        });
        self.fire(selected);
        for (_, _, method) in (0..self.json.len())
            .filter(|i| selected & (1 << i) != 0)
            .map(|i| self.json[i])
        {
            now = now.and_then(|s| {
                self.work.clear();
                method
                    .apply(s.as_bytes(), &mut self.work)
                    .then(|| Cow::Owned(String::from_utf8_lossy(&self.work).into_owned()))
            });
        }
        let mut changed = selected != 0;
        if let Some(s) = &now {
            if let Some(hit) = self.detectors.scan(s.as_bytes(), &mut self.scratch) {
                self.detector_fired(&hit)?;
                now = Some(Cow::Owned(
                    String::from_utf8_lossy(&self.scratch).into_owned(),
                ));
                changed = true;
            }
        }
        if changed {
            self.replace(token.start, now.as_deref());
        }
        Some(())
    }

    /// The detectors over the number from `start` to here; one that fires makes it
    /// the masked JSON string.
    fn number(&mut self, start: usize) -> Option<()> {
        let src = self.src;
        let token = &src[start..self.pos];
        // With a fraction, the integer a client reads is scanned too (as `json_every`).
        let hit = self.detectors.scan(token, &mut self.scratch).or_else(|| {
            let int = super::json_every::integer_part(std::str::from_utf8(token).ok()?)?;
            self.detectors.scan(int.as_bytes(), &mut self.scratch)
        });
        if let Some(hit) = hit {
            self.detector_fired(&hit)?;
            let masked = String::from_utf8_lossy(&self.scratch).into_owned();
            self.replace(start, Some(&masked));
        }
        Some(())
    }

    /// Only one detector may fire in a body here (the `Value` path orders several).
    fn detector_fired(&mut self, hit: &[usize]) -> Option<()> {
        for &d in hit {
            match self.fired_detector {
                Some(f) if f != d => return None,
                _ => self.fired_detector = Some(d),
            }
        }
        Some(())
    }

    /// A number, `true`, `false` or `null`, checked as serde_json checks them (what
    /// it might refuse, exponents and very long numbers, is left to it).
    fn scalar(&mut self) -> Option<()> {
        let rest = &self.src[self.pos..];
        for lit in [&b"true"[..], b"false", b"null"] {
            if rest.starts_with(lit) {
                self.pos += lit.len();
                return self.delimited();
            }
        }
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if self.pos - start > 64 {
            return None;
        }
        self.delimited()
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A scalar must end where a delimiter (or the document) follows.
    fn delimited(&self) -> Option<()> {
        match self.peek() {
            None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') => Some(()),
            _ => None,
        }
    }

    /// The value from `start` to the current position becomes `with` (a string), or
    /// `null`, written as serde_json writes it.
    fn replace(&mut self, start: usize, with: Option<&str>) {
        self.out.extend_from_slice(&self.src[self.copied..start]);
        match with {
            Some(s) => {
                // Writing a str into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut self.out, s);
            }
            None => self.out.extend_from_slice(b"null"),
        }
        self.copied = self.pos;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::body_mask::{BodyKind, BodyMasks};
    use crate::policy::{RuleSet, Subject};

    fn masks(yaml: &str) -> BodyMasks {
        let rules = RuleSet::from_sources(&[("r.yaml".into(), yaml.into())]).expect("compiles");
        let groups: Vec<String> = vec!["agents".into()];
        let who = Subject {
            user: "a",
            groups: &groups,
            target: "t",
            search_path_changed: false,
        };
        BodyMasks::build(&rules, &who).expect("masks apply")
    }

    fn rules(paths: &[&str], method: &str, detect: bool) -> String {
        let paths: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
        let mut y = String::new();
        if !paths.is_empty() {
            y += &format!(
                "masks:\n  - id: m1\n    json: [{}]\n    targets: [t]\n    method: {method}\n",
                paths.join(", ")
            );
            y += "  - id: m2\n    json: ['$..pin']\n    targets: [t]\n    method: redact\n";
        }
        if detect {
            y += "detect:\n  - id: cards\n    kind: credit_card\n    method: redact\n";
            y += "  - id: mails\n    kind: email\n    method: redact\n";
        }
        y
    }

    /// Both paths give the same answer; `streams` says whether the streaming one
    /// is expected to decide (rather than leave it to the `Value` path).
    fn same(m: &BodyMasks, doc: &str, streams: bool) {
        let by_value = m.mask_by_value(doc.as_bytes().to_vec(), BodyKind::Json);
        let streamed = m.mask_streaming(doc.as_bytes());
        assert_eq!(streamed.is_some(), streams, "{doc}");
        if let Some(s) = streamed {
            let (out, fired) = by_value.expect("the Value path masked it");
            match s {
                Streamed::Unchanged => {
                    assert!(fired.is_empty(), "{doc}: {fired:?}");
                    assert_eq!(out, doc.as_bytes());
                }
                Streamed::Masked(o, f) => {
                    assert_eq!(
                        String::from_utf8(o).unwrap(),
                        String::from_utf8(out).unwrap(),
                        "{doc}"
                    );
                    assert_eq!(f, fired, "{doc}");
                }
            }
        }
        // And what callers get is the Value path's answer, whichever decided.
        assert_eq!(
            m.mask(doc.as_bytes().to_vec(), BodyKind::Json),
            m.mask_by_value(doc.as_bytes().to_vec(), BodyKind::Json)
        );
    }

    #[test]
    fn simple_paths_are_recognised_and_others_are_not() {
        for p in [
            "$", "$.a", "$.a.b", "$.a[*].b", "$..b", "$.a..b", "$['a b']", "$.*", "$..*", "$[*]",
            "$..['x']", "$.a[*]",
        ] {
            let path = JsonPath::parse(p).unwrap();
            assert!(SimplePath::of(&path).is_some(), "{p}");
        }
        for p in [
            "$[0]",
            "$.a[-1]",
            "$[1:2]",
            "$[?@.a]",
            "$..a..b",
            "$['a','b']",
            "$['it\\'s']",
            "$.a[0].b",
        ] {
            let path = JsonPath::parse(p).unwrap();
            assert!(SimplePath::of(&path).is_none(), "{p}");
        }
        let p = SimplePath::of(&JsonPath::parse("$.users[*].ssn").unwrap()).unwrap();
        assert_eq!(
            p.0,
            vec![
                Seg::Child(Sel::Name("users".into())),
                Seg::Child(Sel::Wild),
                Seg::Child(Sel::Name("ssn".into()))
            ]
        );
    }

    #[test]
    fn streaming_gives_the_value_paths_bytes() {
        let docs_streamed = [
            r#"{"users":[{"id":1,"ssn":"123-45-6789","name":"Ann"},{"id":2,"ssn":"987-65-4321"}]}"#,
            "{ \"users\" : [ { \"ssn\" : \"123-45-6789\" } ,\n {\"ssn\":null}, {\"ssn\": 12345}, {\"ssn\":true} ] }  \n",
            r#"{"a":{"b":{"ssn":"111-22-3333","pin":"1234"}},"pin":5,"x":[{"pin":"9"}]}"#,
            r#"{"users":[{"ssn":"12\"3-45\\6789 \u00e9 é"}],"note":"card 4111 1111 1111 1111"}"#,
            r#"{"users":[],"other":{},"n":-0.5,"m":0,"list":[1,2.25,-3]}"#,
            r#"{"users":[{"ssn":"x"}],"note":"mail ann@example.com"}"#,
            r#"[{"users":[{"ssn":"123-45-6789"}]}]"#,
            r#""just a string 4111 1111 1111 1111""#,
            r#"{"users":[{"ssn":"123-45-6789","ssn2":"1"}],"users2":[{"ssn":"1"}]}"#,
            r#"{"pin":"1","users":[{"pin":"2","ssn":"3"}]}"#,
            "{\"k\":\"\u{1F600} 4111 1111 1111 1111\"}",
            r#"{"num":4111111111111111,"x":[-4111111111111111, 12],"users":[{"ssn":41}]}"#,
            r#"{"price":4111111111111111.0,"x":[1.25,-41111111111111.11]}"#,
        ];
        let docs_left = [
            // Duplicated keys, escaped keys, a masked object, two detectors, exponents,
            // invalid JSON, trailing bytes, control characters: the Value path decides.
            r#"{"users":[{"ssn":"1","ssn":"2"}]}"#,
            r#"{"n":"4111 1111 1111 1111","n":"ok","a":{"c":4111111111111111,"c":1}}"#,
            r#"{"us\u0065rs":[{"ssn":"1"}]}"#,
            r#"{"a":{"pin":{"x":"1"}}}"#,
            r#"{"a":"4111 1111 1111 1111","b":"ann@example.com"}"#,
            r#"{"a":1e5}"#,
            r#"{"a":4111111111111111e0,"b":4.111111111111111E15}"#,
            r#"{"a":01}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            "{\"a\":\"x\u{1}\"}",
            r#"{"a":tru}"#,
            r#"{"a":"\ud800"}"#,
        ];
        for method in ["partial\n    keep_last: 4", "redact", "null", "email"] {
            let m = masks(&rules(
                &["$.users[*].ssn", "$..ssn", "$.a.b.ssn"],
                method,
                true,
            ));
            assert!(m.mask_streaming(b"{}").is_some(), "these paths stream");
            for d in docs_streamed {
                same(&m, d, true);
            }
            for d in docs_left {
                same(&m, d, false);
            }
        }
        // Detectors alone, json masks alone.
        let m = masks(&rules(&[], "redact", true));
        for d in docs_streamed {
            same(&m, d, true);
        }
        let m = masks(&rules(&["$..ssn"], "redact", false));
        for d in docs_streamed {
            same(&m, d, true);
        }
        // A path the matcher does not read: every body takes the Value path.
        let m = masks(&rules(&["$.users[0].ssn"], "redact", true));
        same(&m, docs_streamed[0], false);
    }

    #[test]
    fn masked_values_are_spliced_into_the_original_layout() {
        let m = masks(&rules(
            &["$.users[*].ssn"],
            "partial\n    keep_last: 4",
            false,
        ));
        let doc = "{\"users\": [ {\"ssn\": \"123-45-6789\", \"z\": 1} ]}";
        let Some(Streamed::Masked(out, fired)) = m.mask_streaming(doc.as_bytes()) else {
            panic!("masked")
        };
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"users\": [ {\"ssn\": \"***-**-6789\", \"z\": 1} ]}"
        );
        assert_eq!(fired, vec!["m1".to_string()]);
        assert_eq!(
            m.mask_streaming(b"{\"users\":[]}"),
            Some(Streamed::Unchanged)
        );
    }
}
