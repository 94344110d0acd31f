//! Masks and detectors, compiled to what `mask` runs: a [`Method`] with its options
//! resolved, a detector [`Kind`] and a compiled regex. Every name a rule file gives is
//! checked here, once; `mask` never reads a name again, so there is nothing there that
//! could fall back to a default for a name it does not know.

use regex::bytes::{Regex, RegexBuilder};

use super::raw::{RawDetect, RawMask};
use super::{Compiler, Cond, Glob};
use crate::mask::detect::{Detector, Kind};
use crate::mask::method::Method;

/// `partial` without `keep_last`: the last four characters stay, as in the shipped
/// examples (the tail people recognise a card or an SSN by).
pub const DEFAULT_KEEP_LAST: u32 = 4;

/// The longest `pattern:` accepted: a bound on what one rule can cost per value.
const MAX_PATTERN_CHARS: usize = 10_000;
/// The most memory one compiled detector pattern may take (the regex crate's own
/// limit is 10 MiB a pattern): a rule draft sent to `validate` must not be able to
/// take gigabytes of a gateway that serves every tenant (console review M6).
pub const MAX_REGEX_BYTES: usize = 1 << 20;
/// The most detectors a rule set may have, for the same reason.
pub const MAX_DETECTORS: usize = 256;

const METHOD_NAMES: &str = "redact, partial, hash, null, email";
const KIND_NAMES: &str = "credit_card, email, us_ssn, iban, jwt, aws_access_key, regex";

/// A column mask (`masks:`).
#[derive(Debug, Clone)]
pub struct MaskRule {
    pub id: String,
    pub columns: Vec<Glob>,
    /// `json:` paths, for JSON responses of the HTTP gateway.
    pub json: Vec<serde_json_path::JsonPath>,
    pub method: Method,
    /// Where a `hash` method's key came from (the key itself is in `method`): for
    /// `pgmoat check` to say when it is not set.
    pub hash_key_env: Option<String>,
    pub(super) when: Option<Cond>,
    pub(super) unless: Option<Cond>,
}

/// A content detector (`detect:`). `regex` is set exactly when `kind` is
/// [`Kind::Regex`] (the compiler refuses a pattern on any other kind).
#[derive(Debug, Clone)]
pub struct DetectRule {
    pub id: String,
    pub kind: Kind,
    pub method: Method,
    pub regex: Option<Regex>,
    /// As for [`MaskRule::hash_key_env`].
    pub hash_key_env: Option<String>,
    pub(super) unless: Option<Cond>,
}

impl DetectRule {
    /// The detector `mask` runs for this rule.
    pub fn detector(&self) -> Detector {
        Detector {
            id: self.id.clone(),
            kind: self.kind,
            method: self.method.clone(),
            regex: self.regex.clone(),
        }
    }
}

/// A method's name as a rule file writes it, before its options are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MethodName {
    Redact,
    Partial,
    Hash,
    Null,
    Email,
}

impl MethodName {
    fn parse(s: &str) -> Option<MethodName> {
        Some(match s {
            "redact" => MethodName::Redact,
            "partial" => MethodName::Partial,
            "hash" => MethodName::Hash,
            "null" => MethodName::Null,
            "email" => MethodName::Email,
            _ => return None,
        })
    }
}

/// The HMAC key `hash` reads from `var`. Unset or empty, the method redacts instead:
/// weaker than asked never, stronger is safe (SPEC §4: the key is not in the file).
/// Not an error, as `check` runs where the key may not be; who loads the rules says
/// so (`reload::warn_unset_hash_keys`, `pgmoat check`'s notes).
fn hash_method(var: &str) -> Method {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Method::Hash {
            key: v.into_bytes().into(),
        },
        _ => Method::Redact,
    }
}

/// Whether `var`, a hash key's variable, is unset (or empty) in this process.
pub fn hash_key_unset(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.is_empty())
}

impl Compiler<'_> {
    /// A rule's method with its options, or None (and an error) when anything about
    /// it is wrong. Every mistake is reported, not just the first.
    fn method(
        &mut self,
        id: &str,
        name: &str,
        keep_last: Option<u32>,
        hash_key_env: Option<&str>,
    ) -> Option<Method> {
        let parsed = MethodName::parse(name);
        if parsed.is_none() {
            self.err(
                id,
                &format!("unknown mask method {name:?} ({METHOD_NAMES})"),
            );
        }
        let mut ok = parsed.is_some();
        if keep_last.is_some() && parsed != Some(MethodName::Partial) {
            self.err(id, "keep_last only applies to method partial");
            ok = false;
        }
        if parsed == Some(MethodName::Hash) && hash_key_env.is_none() {
            self.err(
                id,
                "method hash needs hash_key_env (the HMAC key's environment variable)",
            );
            ok = false;
        }
        if parsed != Some(MethodName::Hash) && hash_key_env.is_some() {
            self.err(id, "hash_key_env only applies to method hash");
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(match parsed? {
            MethodName::Redact => Method::Redact,
            MethodName::Partial => Method::Partial {
                keep_last: keep_last.unwrap_or(DEFAULT_KEEP_LAST) as usize,
            },
            MethodName::Hash => hash_method(hash_key_env?),
            MethodName::Null => Method::Null,
            MethodName::Email => Method::Email,
        })
    }

    pub(super) fn mask(&mut self, m: RawMask) -> Option<MaskRule> {
        let method = self.method(&m.id, &m.method, m.keep_last, m.hash_key_env.as_deref());
        if m.columns.is_empty() && m.json.is_empty() {
            self.err(&m.id, "a mask needs columns or json paths");
        }
        let json = self.json_paths(&m.id, &m.json);
        let mut columns = Vec::new();
        for c in &m.columns {
            match Glob::new(c) {
                Ok(g) => columns.push(g),
                Err(e) => self.err(&m.id, &format!("columns: {e}")),
            }
        }
        let mut when = m.when.as_ref().map(|c| self.cond(&m.id, c));
        if m.targets.is_some() {
            // `targets:` on the mask is `when: { targets: ... }`, said once.
            let w = when.get_or_insert_with(Cond::default);
            if w.targets.is_some() {
                self.err(&m.id, "targets: given both on the mask and in its when");
            }
            w.targets = self.globs(&m.id, "targets", &m.targets);
        }
        let unless = m.unless.as_ref().map(|c| self.cond(&m.id, c));
        Some(MaskRule {
            id: m.id,
            columns,
            json,
            method: method?,
            hash_key_env: m.hash_key_env,
            when,
            unless,
        })
    }

    pub(super) fn detect(&mut self, d: RawDetect) -> Option<DetectRule> {
        let kind = Kind::parse(&d.kind);
        if kind.is_none() {
            self.err(
                &d.id,
                &format!("unknown detector kind {:?} ({KIND_NAMES})", d.kind),
            );
        }
        let method = self.method(&d.id, &d.method, d.keep_last, d.hash_key_env.as_deref());
        let regex = match (kind, &d.pattern) {
            (Some(Kind::Regex), None) => {
                self.err(&d.id, "kind regex needs pattern");
                None
            }
            (Some(Kind::Regex), Some(p)) => self.regex(&d.id, p),
            (Some(_), Some(_)) => {
                self.err(&d.id, "pattern only applies to kind regex");
                None
            }
            // An unknown kind is already reported; a known one without a pattern.
            (None, _) | (Some(_), None) => None,
        };
        let unless = d.unless.as_ref().map(|u| self.cond(&d.id, u));
        let kind = kind?;
        if kind == Kind::Regex && regex.is_none() {
            return None;
        }
        Some(DetectRule {
            id: d.id,
            kind,
            method: method?,
            regex,
            hash_key_env: d.hash_key_env,
            unless,
        })
    }

    /// The detector's pattern compiled as `mask` matches it (over bytes).
    fn regex(&mut self, id: &str, p: &str) -> Option<Regex> {
        if p.is_empty() || p.len() > MAX_PATTERN_CHARS {
            self.err(
                id,
                &format!("bad regex: empty or longer than {MAX_PATTERN_CHARS} characters"),
            );
            return None;
        }
        match RegexBuilder::new(p)
            .size_limit(MAX_REGEX_BYTES)
            .dfa_size_limit(MAX_REGEX_BYTES)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                // The regex crate's message ends with the one line that says what is wrong.
                let why = e.to_string();
                let why = why.lines().last().unwrap_or("invalid").trim();
                let why = why.strip_prefix("error: ").unwrap_or(why).to_owned();
                self.err(id, &format!("bad regex: {why}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RuleSet;

    fn errors(yaml: &str) -> String {
        RuleSet::from_sources(&[("m.yaml".into(), yaml.into())])
            .expect_err("must not compile")
            .join("\n")
    }

    fn compiled(yaml: &str) -> RuleSet {
        RuleSet::from_sources(&[("m.yaml".into(), yaml.into())]).expect("compiles")
    }

    #[test]
    fn each_bad_mask_or_detector_is_a_validation_error_naming_file_line_and_rule() {
        let mask = |method: &str, extra: &str| {
            format!("masks:\n  - id: m1\n    columns: [t.c]\n    method: {method}\n{extra}")
        };
        let det = |kind: &str, extra: &str| {
            format!("detect:\n  - id: d1\n    kind: {kind}\n    method: redact\n{extra}")
        };
        for (yaml, want) in [
            (
                mask("scramble", ""),
                "m.yaml:2: rule \"m1\": unknown mask method \"scramble\" (redact, partial, hash, null, email)",
            ),
            (
                mask("redact", "    keep_last: 2\n"),
                "m.yaml:2: rule \"m1\": keep_last only applies to method partial",
            ),
            (
                mask("hash", ""),
                "m.yaml:2: rule \"m1\": method hash needs hash_key_env",
            ),
            (
                mask("partial", "    hash_key_env: K\n"),
                "m.yaml:2: rule \"m1\": hash_key_env only applies to method hash",
            ),
            (
                det("credit_cards", ""),
                "m.yaml:2: rule \"d1\": unknown detector kind \"credit_cards\" (credit_card,",
            ),
            (
                det("regex", ""),
                "m.yaml:2: rule \"d1\": kind regex needs pattern",
            ),
            (
                det("regex", "    pattern: \"(unclosed\"\n"),
                "m.yaml:2: rule \"d1\": bad regex: unclosed group",
            ),
            (
                det("regex", "    pattern: \"\"\n"),
                "m.yaml:2: rule \"d1\": bad regex: empty",
            ),
            (
                // Valid, but compiles to more than MAX_REGEX_BYTES.
                det("regex", "    pattern: '\\w{2000}'\n"),
                "m.yaml:2: rule \"d1\": bad regex: ",
            ),
            (
                (0..=MAX_DETECTORS)
                    .map(|i| format!("  - {{ id: d{i}, kind: email, method: redact }}\n"))
                    .fold("detect:\n".to_string(), |all, d| all + &d),
                &format!("rule \"d{MAX_DETECTORS}\": too many detectors (at most {MAX_DETECTORS})"),
            ),
            (
                det("email", "    pattern: \"x\"\n"),
                "m.yaml:2: rule \"d1\": pattern only applies to kind regex",
            ),
            (
                "detect:\n  - id: d1\n    kind: jwt\n    method: blur\n".to_string(),
                "m.yaml:2: rule \"d1\": unknown mask method \"blur\"",
            ),
        ] {
            let all = errors(&yaml);
            assert!(all.contains(want), "{yaml}\nwant {want:?}\ngot {all}");
        }
    }

    #[test]
    fn compiled_rules_carry_typed_methods_kinds_and_regexes() {
        let set = compiled(
            "masks:
  - id: card
    columns: [t.card]
    method: partial
  - id: ssn
    columns: [t.ssn]
    method: partial
    keep_last: 2
  - id: mail
    columns: [t.mail]
    method: email
detect:
  - id: emp
    kind: regex
    pattern: \"EMP-[0-9]{6}\"
    method: null
  - id: cards
    kind: credit_card
    method: redact
",
        );
        let methods: Vec<&Method> = set.masks.iter().map(|m| &m.method).collect();
        assert_eq!(
            methods,
            [
                &Method::Partial { keep_last: 4 },
                &Method::Partial { keep_last: 2 },
                &Method::Email
            ]
        );
        let emp = &set.detectors[0];
        assert_eq!((emp.kind, &emp.method), (Kind::Regex, &Method::Null));
        assert!(emp.regex.as_ref().unwrap().is_match(b"EMP-123456"));
        let cards = &set.detectors[1];
        assert_eq!(cards.kind, Kind::CreditCard);
        assert!(cards.regex.is_none());
        assert_eq!(cards.detector().method, Method::Redact);
    }

    #[test]
    fn hash_without_its_key_in_the_environment_redacts() {
        let set = compiled(
            "masks:\n  - id: h\n    columns: [t.c]\n    method: hash\n    hash_key_env: PGMOAT_TEST_KEY_THAT_IS_NEVER_SET\n",
        );
        assert_eq!(set.masks[0].method, Method::Redact);
    }
}
