//! Rules over HTTP requests (SPEC section 9): `http_methods` and `http_paths`
//! conditions, path normalisation, and the decision for one request.
//!
//! The two worlds stay apart: a condition on SQL facts (statement, tables, where, ...)
//! never matches an HTTP request, and an `http_*` condition never matches SQL (see
//! `Cond::matches`). Conditions only about who and where (`users`, `groups`,
//! `targets`) apply to both, as does `default`.

use std::borrow::Cow;

use regex::Regex;

use super::raw::OneOrMany;
#[cfg(test)]
use super::Action;
use super::{Compiler, Cond, Decision, Rule, RuleSet, Subject};

/// An HTTP request as the rules see it: the method upper-cased, the path normalised
/// and percent-decoded (see [`normalize_path`]).
#[derive(Debug, Clone, Copy)]
pub struct HttpFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

/// A path glob: `*` and `?` stay inside one `/` segment, `**` crosses them; a pattern
/// ending in `/**` also matches the folder itself (`/admin/**` covers `/admin`).
/// Matching ignores case and a trailing `/` (`/admin/users` covers `/ADMIN/users/`):
/// many targets route that way (Express, IIS, Spring before 6), and a rule must hold
/// for what the target runs, not for one spelling of it.
#[derive(Debug, Clone)]
pub struct PathGlob {
    text: String,
    re: Regex,
}

impl PathGlob {
    pub fn new(pattern: &str) -> Result<PathGlob, String> {
        let text = pattern.trim();
        if !text.starts_with('/') {
            return Err(format!("bad path pattern {text:?}: must start with /"));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
        {
            return Err(format!(
                "bad path pattern {text:?}: {bad:?} is not supported (use *, ** and ?)"
            ));
        }
        let mut re = String::from("(?i)^");
        let (body, tail) = match text.strip_suffix("/**") {
            Some(b) => (b, "(?:/.*)?"),
            None if text.len() > 1 => (text.trim_end_matches('/'), "/?"),
            None => (text, ""),
        };
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    re.push_str(".*");
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push_str(tail);
        re.push('$');
        let re = Regex::new(&re).map_err(|e| format!("bad path pattern {text:?}: {e}"))?;
        Ok(PathGlob {
            text: text.to_owned(),
            re,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, path: &str) -> bool {
        self.re.is_match(path)
    }
}

/// Why a request path cannot be judged (the gateway answers 400: fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with /")]
    NotAbsolute,
    #[error("the path has a bad percent-escape")]
    BadEscape,
    #[error("the path encodes a separator or control character (%2f, %5c, %00, ...)")]
    EncodedSeparator,
    #[error("the path is not UTF-8 once decoded")]
    NotUtf8,
    #[error("the path has a ; parameter (targets such as Tomcat and Spring read it away)")]
    PathParameter,
    #[error("a path segment ends in a dot or a space (Windows targets trim those)")]
    TrailingDot,
    #[error("the path has a compatibility character that normalises to / \\ . ; or % (fullwidth dots, slashes)")]
    CompatibilitySeparator,
}

/// A path as judged and as forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// Decoded segments joined by `/`: what `http_paths` globs match.
    pub decoded: String,
    /// The same path re-encoded: what the target receives.
    pub encoded: String,
}

/// Normalise a request path before judging it: each segment percent-decoded once
/// (`%2e` is a dot), empty segments (`//`) and `.` dropped, `..` removes the segment
/// before it (never above the root). Fails closed on what a target could read as
/// something else than what was judged: an encoded `/` or `\`, control characters, and
/// a `%` left after decoding (double encoding).
pub fn normalize_path(raw: &str) -> Result<NormalPath, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    // Both forms are built as the segments come; `..` cuts the last kept segment
    // off both (no segment holds a `/`: that is refused below). A segment without an
    // escape is never copied on its own.
    let mut decoded = String::with_capacity(raw.len());
    let mut encoded = String::with_capacity(raw.len());
    let mut kept = 0usize;
    let trailing = rest.ends_with('/') || rest.is_empty();
    let mut last_was_dir = trailing;
    for seg in rest.split('/') {
        let seg = percent_decode(seg)?;
        if seg.contains(['/', '\\', '%']) || seg.chars().any(char::is_control) {
            return Err(PathError::EncodedSeparator);
        }
        if !seg.is_ascii() && compatibility_separator(&seg) {
            return Err(PathError::CompatibilitySeparator);
        }
        // `/admin;x=1/users` and `/public/..;/admin` are `/admin/users` to some
        // targets: what they would run is not what would be judged.
        if seg.contains(';') {
            return Err(PathError::PathParameter);
        }
        if seg != "." && seg != ".." && seg.ends_with(['.', ' ']) {
            return Err(PathError::TrailingDot);
        }
        match &*seg {
            "" | "." => {}
            ".." => {
                // Never above the root.
                if kept > 0 {
                    kept -= 1;
                    decoded.truncate(decoded.rfind('/').unwrap_or(0));
                    encoded.truncate(encoded.rfind('/').unwrap_or(0));
                }
            }
            s => {
                kept += 1;
                decoded.push('/');
                decoded.push_str(s);
                encoded.push('/');
                percent_encode_segment(s, &mut encoded);
            }
        }
    }
    // `/a/b/..` and `/a/.` name a folder: keep the slash the target would see.
    if let Some(last) = rest.rsplit('/').next() {
        if let Ok(d) = percent_decode(last) {
            if d == "." || d == ".." {
                last_was_dir = true;
            }
        }
    }
    if kept == 0 || last_was_dir {
        decoded.push('/');
        encoded.push('/');
    }
    Ok(NormalPath { decoded, encoded })
}

/// Whether a segment holds a character whose compatibility form (NFKC, which some
/// targets and IIS's best-fit mapping apply) is or holds `/ \ . ; %`: `．．` (U+FF0E),
/// `／` (U+FF0F), `﹨` (U+FE68) would be `..`, `/`, `\` to such a target while judged
/// as a literal name here (review L7). Checked per character: composition never
/// yields ASCII, so a character's own decomposition is what NFKC could add.
fn compatibility_separator(segment: &str) -> bool {
    segment.chars().filter(|c| !c.is_ascii()).any(|c| {
        let mut hit = false;
        unicode_normalization::char::decompose_compatible(c, |d| {
            hit |= matches!(d, '/' | '\\' | '.' | ';' | '%');
        });
        hit
    })
}

fn percent_decode(seg: &str) -> Result<Cow<'_, str>, PathError> {
    if !seg.contains('%') {
        return Ok(Cow::Borrowed(seg));
    }
    let b = seg.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::NotUtf8)
}

/// RFC 3986 `pchar`s stay as they are; every other byte is escaped.
fn percent_encode_segment(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

impl Cond {
    /// Whether a SQL-only condition is present (then the condition is never about an
    /// HTTP request or an SSH channel).
    pub(super) fn has_sql_conditions(&self) -> bool {
        self.statement.is_some()
            || self.where_.is_some()
            || self.writes.is_some()
            || self.tables.is_some()
            || self.tables_written.is_some()
            || self.columns.is_some()
            || self.functions.is_some()
            || self.settings.is_some()
            || self.copy.is_some()
    }

    /// Whether an `http_*` condition is present (then it never matches SQL).
    pub(super) fn has_http_conditions(&self) -> bool {
        self.http_methods.is_some() || self.http_paths.is_some()
    }

    pub(super) fn matches_http(&self, r: &HttpFacts<'_>, who: &Subject<'_>) -> bool {
        // Neither SQL nor SSH conditions are ever about an HTTP request.
        if self.has_sql_conditions() || self.ssh.is_set() {
            return false;
        }
        if let Some(m) = &self.http_methods {
            // Most frameworks run a GET handler for HEAD: a rule on GET holds for it.
            if !m
                .iter()
                .any(|m| m == r.method || (r.method == "HEAD" && m == "GET"))
            {
                return false;
            }
        }
        if let Some(p) = &self.http_paths {
            if !p.iter().any(|p| p.matches(r.path)) {
                return false;
            }
        }
        self.matches_who(who)
    }
}

impl RuleSet {
    /// The decision for one HTTP request: the strictest matching rule (the first in
    /// file order among equals), else `default`.
    pub fn decide_http(&self, r: &HttpFacts<'_>, who: &Subject<'_>) -> Decision {
        let matched: Vec<&Rule> = self
            .rules
            .iter()
            .filter(|rule| {
                rule.when.matches_http(r, who)
                    && !rule.unless.as_ref().is_some_and(|u| u.matches_http(r, who))
            })
            .collect();
        let (action, deciding_rule, description) = match super::strictest(&matched) {
            Some(x) => (x.action, x.id.clone(), x.description.clone()),
            None => self.by_default("request"),
        };
        Decision {
            action,
            rules: matched.iter().map(|x| x.id.clone()).collect(),
            deciding_rule,
            description,
            statement: None,
        }
    }

    /// The rule's approvers, by id (for a held request).
    pub fn approvers_of(&self, id: &str) -> Vec<String> {
        self.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.approvers.clone())
            .unwrap_or_default()
    }

    /// `json:` masks that apply to this subject (its target included).
    pub fn json_masks_for(&self, who: &Subject<'_>) -> Vec<&super::MaskRule> {
        self.masks_for(who)
            .into_iter()
            .filter(|m| !m.json.is_empty())
            .collect()
    }
}

/// Methods as written: case-insensitive tokens, stored upper-case.
const MAX_METHOD_LEN: usize = 32;

impl Compiler<'_> {
    pub(super) fn http_methods(
        &mut self,
        id: &str,
        v: &Option<OneOrMany<String>>,
    ) -> Option<Vec<String>> {
        let v = v.as_ref()?;
        let mut out = Vec::new();
        for m in v.to_vec() {
            let ok = !m.is_empty()
                && m.len() <= MAX_METHOD_LEN
                && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
            if ok {
                out.push(m.to_ascii_uppercase());
            } else {
                self.err(id, &format!("http_methods: bad method {m:?}"));
            }
        }
        Some(out)
    }

    pub(super) fn http_paths(
        &mut self,
        id: &str,
        v: &Option<OneOrMany<String>>,
    ) -> Option<Vec<PathGlob>> {
        self.patterns(id, "http_paths", v, PathGlob::new)
    }

    /// `json:` paths of a mask, compiled (RFC 9535).
    pub(super) fn json_paths(&mut self, id: &str, v: &[String]) -> Vec<serde_json_path::JsonPath> {
        let mut out = Vec::new();
        for p in v {
            match serde_json_path::JsonPath::parse(p) {
                Ok(j) => out.push(j),
                Err(e) => self.err(id, &format!("json: bad JSONPath {p:?}: {e}")),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|n| n.decoded)
    }

    #[test]
    fn normalisation_closes_the_evasions() {
        for (raw, want) in [
            ("/billing/invoices/7", "/billing/invoices/7"),
            ("/billing/%2e%2e/admin", "/admin"),
            ("/billing/%2E%2E/admin/users", "/admin/users"),
            ("/billing/../admin", "/admin"),
            ("//admin//users", "/admin/users"),
            ("/./admin/./x", "/admin/x"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/", "/"),
            ("", "/"),
            ("/users/", "/users/"),
            ("/caf%C3%A9", "/café"),
        ] {
            let got = if raw.is_empty() {
                Err(PathError::NotAbsolute)
            } else {
                norm(raw)
            };
            if raw.is_empty() {
                assert_eq!(got, Err(PathError::NotAbsolute));
            } else {
                assert_eq!(got.as_deref(), Ok(want), "{raw}");
            }
        }
        for raw in [
            "/admin%2fusers",
            "/admin%2Fusers",
            "/a%5c..%5cadmin",
            "/a%00b",
            "/a%252e%252e/admin",
            "/a%zz",
            "/a%e",
            "/a%ff",
            // Review H1: path parameters and trailing dots/spaces read differently.
            "/public/..;/admin/users",
            "/admin;x=1/users",
            "/admin%3bx=1/users",
            "/admin./users",
            "/admin%20/users",
            "/admin.%20/users",
        ] {
            assert!(norm(raw).is_err(), "{raw} must be refused");
        }
    }

    #[test]
    fn compatibility_characters_that_become_separators_are_refused() {
        // Review L7: fullwidth full stop (U+FF0E), fullwidth solidus (U+FF0F), small
        // reverse solidus (U+FE68), fullwidth semicolon and percent, one-dot leader
        // (U+2024), raw or percent-encoded.
        for raw in [
            "/public/%EF%BC%8E%EF%BC%8E/admin",
            "/public/\u{FF0E}\u{FF0E}/admin",
            "/public%EF%BC%8Fadmin",
            "/a/x\u{FF0F}y",
            "/a/x%EF%B9%A8y",
            "/a/x\u{FF1B}y",
            "/a/x\u{FF05}2e",
            "/a/x\u{2024}y",
        ] {
            assert_eq!(
                norm(raw),
                Err(PathError::CompatibilitySeparator),
                "{raw} must be refused"
            );
        }
        // Other letters, compatibility ones included, are names as before.
        for (raw, want) in [
            ("/caf%C3%A9/ﬁle", "/café/ﬁle"),
            ("/\u{FF21}\u{FF22}", "/\u{FF21}\u{FF22}"),
            ("/日本/データ", "/日本/データ"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    /// The segment-list form `normalize_path` had before it built both paths in place
    /// (kept as the reference the in-place form must equal).
    fn reference(raw: &str) -> Result<NormalPath, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        let mut segments: Vec<String> = Vec::new();
        let mut last_was_dir = rest.ends_with('/') || rest.is_empty();
        for seg in rest.split('/') {
            let d = percent_decode(seg)?.into_owned();
            if d.contains(['/', '\\', '%']) || d.chars().any(char::is_control) {
                return Err(PathError::EncodedSeparator);
            }
            if !d.is_ascii() && compatibility_separator(&d) {
                return Err(PathError::CompatibilitySeparator);
            }
            if d.contains(';') {
                return Err(PathError::PathParameter);
            }
            if d != "." && d != ".." && d.ends_with(['.', ' ']) {
                return Err(PathError::TrailingDot);
            }
            match d.as_str() {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                _ => segments.push(d),
            }
        }
        if let Some(last) = rest.rsplit('/').next() {
            if let Ok(d) = percent_decode(last) {
                if d == "." || d == ".." {
                    last_was_dir = true;
                }
            }
        }
        let (mut decoded, mut encoded) = (String::new(), String::new());
        for s in &segments {
            decoded.push('/');
            decoded.push_str(s);
            encoded.push('/');
            // Each byte kept or escaped as `fmt` writes it (the escape table's check).
            for &b in s.as_bytes() {
                let mut one = String::new();
                if b.is_ascii() {
                    percent_encode_segment(&char::from(b).to_string(), &mut one);
                }
                if one.len() == 1 {
                    encoded.push_str(&one);
                } else {
                    encoded.push_str(&format!("%{b:02X}"));
                }
            }
        }
        if segments.is_empty() || last_was_dir {
            decoded.push('/');
            encoded.push('/');
        }
        Ok(NormalPath { decoded, encoded })
    }

    #[test]
    fn the_in_place_form_equals_the_segment_list_form() {
        // Every path of up to four pieces from a set that covers the cases: dots,
        // escapes of dots and separators, empty segments, trailing dots and spaces,
        // non-ASCII, bad escapes, `;`.
        let pieces = [
            "a",
            "",
            ".",
            "..",
            "%2e",
            "%2E%2e",
            "b.",
            "c ",
            "%2F",
            "%5c",
            "caf%C3%A9",
            "日本",
            "x%3Fy",
            "%zz",
            "%",
            "a;b",
            "%00",
            "v1",
            "~u",
            "%25",
        ];
        let mut paths = vec!["/".to_owned(), String::new(), "x".to_owned()];
        for a in pieces {
            for b in pieces {
                paths.push(format!("/{a}/{b}"));
                paths.push(format!("/{a}/{b}/"));
                for c in ["..", "z", "", "%2e%2e"] {
                    paths.push(format!("/{a}/{b}/{c}"));
                    paths.push(format!("/{c}/{a}/{c}/{b}"));
                }
            }
        }
        for p in &paths {
            assert_eq!(normalize_path(p), reference(p), "{p:?}");
        }
    }

    #[test]
    fn the_target_gets_the_normalised_path_encoded() {
        let n = normalize_path("/a%20b/%2e%2e/c%3Fd/caf%C3%A9").unwrap();
        assert_eq!(n.decoded, "/c?d/café");
        assert_eq!(n.encoded, "/c%3Fd/caf%C3%A9");
    }

    #[test]
    fn path_globs() {
        let g = |p: &str| PathGlob::new(p).unwrap();
        assert!(g("/admin/**").matches("/admin"));
        assert!(g("/admin/**").matches("/admin/users/7"));
        assert!(!g("/admin/**").matches("/administrator"));
        assert!(g("/invoices/*").matches("/invoices/7"));
        assert!(!g("/invoices/*").matches("/invoices/7/lines"));
        assert!(g("/invoices/**/lines").matches("/invoices/7/x/lines"));
        assert!(g("/v?/x").matches("/v1/x"));
        assert!(!g("/v?/x").matches("/v10/x"));
        assert!(g("/a.b/*").matches("/a.b/c"));
        assert!(!g("/a.b/*").matches("/axb/c"));
        // Case and a trailing slash do not dodge a rule (review H1).
        assert!(g("/admin/**").matches("/ADMIN/users"));
        assert!(g("/admin/users").matches("/Admin/Users/"));
        assert!(g("/admin/users/").matches("/admin/users"));
        assert!(!g("/admin/users").matches("/admin/users/x"));
        assert!(g("/").matches("/"));
        assert!(!g("/").matches("/x"));
        assert!(PathGlob::new("admin").is_err());
        assert!(PathGlob::new("/[a]").is_err());
    }

    fn rules(yaml: &str) -> RuleSet {
        RuleSet::from_sources(&[("r.yaml".into(), yaml.into())]).expect("compiles")
    }

    fn who<'a>(user: &'a str, groups: &'a [String], target: &'a str) -> Subject<'a> {
        Subject {
            user,
            groups,
            target,
            search_path_changed: false,
        }
    }

    #[test]
    fn http_rules_and_sql_rules_stay_apart() {
        let rs = rules(
            "rules:
  - id: no-deletes
    when: { http_methods: [delete], http_paths: ['/invoices/**'] }
    action: block
  - id: no-drop
    when: { statement: [drop] }
    action: block
  - id: interns
    when: { groups: [interns] }
    action: block
  - id: admin-held
    when: { http_paths: ['/admin/**'], targets: [billing] }
    action: approve
    approvers: [dba]
",
        );
        let g: Vec<String> = vec!["agents".into()];
        let d = rs.decide_http(
            &HttpFacts {
                method: "DELETE",
                path: "/invoices/7",
            },
            &who("a", &g, "billing"),
        );
        assert_eq!(
            (d.action, d.deciding_rule.as_str()),
            (Action::Block, "no-deletes")
        );
        let d = rs.decide_http(
            &HttpFacts {
                method: "GET",
                path: "/invoices/7",
            },
            &who("a", &g, "billing"),
        );
        assert_eq!(
            (d.action, d.deciding_rule.as_str()),
            (Action::Allow, "default")
        );
        let d = rs.decide_http(
            &HttpFacts {
                method: "POST",
                path: "/admin",
            },
            &who("a", &g, "billing"),
        );
        assert_eq!(
            (d.action, d.deciding_rule.as_str()),
            (Action::Approve, "admin-held")
        );
        assert_eq!(rs.approvers_of("admin-held"), vec!["dba".to_string()]);
        // A rule on GET holds for HEAD (review H2).
        let reads = rules(
            "rules:
  - id: no-exports
    when: { http_methods: [GET], http_paths: ['/exports/**'] }
    action: block
",
        );
        let d = reads.decide_http(
            &HttpFacts {
                method: "HEAD",
                path: "/exports/users.json",
            },
            &who("a", &g, "billing"),
        );
        assert_eq!(
            (d.action, d.deciding_rule.as_str()),
            (Action::Block, "no-exports")
        );
        let d = rs.decide_http(
            &HttpFacts {
                method: "POST",
                path: "/admin",
            },
            &who("a", &g, "crm"),
        );
        assert_eq!(d.action, Action::Allow);
        // Subject-only rules apply to both doors.
        let interns: Vec<String> = vec!["interns".into()];
        let d = rs.decide_http(
            &HttpFacts {
                method: "GET",
                path: "/",
            },
            &who("i", &interns, "billing"),
        );
        assert_eq!(d.deciding_rule, "interns");
        // An http_* rule never matches SQL.
        let facts = crate::classify::Facts::default();
        let d = rs.decide(&[facts], &who("a", &g, "billing"));
        assert_eq!(d.action, Action::Allow);
    }

    #[test]
    fn http_and_ssh_rules_stay_apart() {
        let rs = rules(
            "rules:
  - id: no-rm
    when: { ssh_commands: ['rm *'] }
    action: block
  - id: no-admin
    when: { http_paths: ['/**'] }
    action: approve
    approvers: [dba]
",
        );
        let g: Vec<String> = vec![];
        let d = rs.decide_http(
            &HttpFacts {
                method: "GET",
                path: "/x",
            },
            &who("a", &g, "t"),
        );
        assert_eq!(
            d.rules,
            vec!["no-admin".to_string()],
            "the ssh rule is not about HTTP"
        );
        let d = rs.decide_ssh(
            &[crate::policy::ssh::SshAsk::Command("ls".into())],
            &who("a", &g, "t"),
        );
        assert!(!d.rules.contains(&"no-admin".to_string()), "{d:?}");
    }

    #[test]
    fn bad_http_conditions_are_errors() {
        let errs = RuleSet::from_sources(&[(
            "r.yaml".into(),
            "rules:\n  - id: x\n    when: { http_methods: ['GE T'], http_paths: [nope] }\n    action: block\n"
                .into(),
        )])
        .expect_err("must not compile")
        .join("\n");
        assert!(
            errs.contains("r.yaml:2: rule \"x\": http_methods: bad method"),
            "{errs}"
        );
        assert!(
            errs.contains("http_paths: bad path pattern \"nope\""),
            "{errs}"
        );
        // A file read item by item (another mistake in it) knows the http keys too.
        let errs = RuleSet::from_sources(&[(
            "r.yaml".into(),
            "rules:\n  - id: x\n    when: { http_methods: [GET], http_paths: ['/a/**'] }\n    action: block\n  - id: y\n    bogus: 1\n    action: block\nmasks:\n  - id: m\n    json: ['$..ssn']\n    targets: [billing]\n    method: redact\n"
                .into(),
        )])
        .expect_err("must not compile")
        .join("\n");
        assert_eq!(errs.lines().count(), 1, "{errs}");
        assert!(errs.contains("bogus"), "{errs}");
    }
}
