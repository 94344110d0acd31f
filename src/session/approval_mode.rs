//! `pgmoat.approval_mode`: how this session shows a statement held for approval.
//! `wait` (the default) holds the statement until someone decides; `return` answers
//! at once with 42501 naming the request, and the same statement sent again runs once
//! approved (SPEC section 7). It is pgmoat's own setting: read from the startup packet
//! (directly, or as `-c pgmoat.approval_mode=return` inside `options`, which is how
//! psql and libpq pass it) and never passed on to the server.

use super::params::{parse_options, Refusal};

/// The startup setting's name.
pub const SETTING: &str = "pgmoat.approval_mode";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalMode {
    #[default]
    Wait,
    Return,
}

fn is_ours(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case(SETTING)
}

/// The mode the startup parameters ask for; an unknown value is refused.
pub fn requested(params: &[(String, String)]) -> Result<ApprovalMode, Refusal> {
    let mut mode = ApprovalMode::Wait;
    let mut read = |value: &str| -> Result<(), Refusal> {
        mode = match value.trim().to_ascii_lowercase().as_str() {
            "wait" => ApprovalMode::Wait,
            "return" => ApprovalMode::Return,
            other => {
                return Err(format!(
                    "pgmoat: {SETTING} must be \"wait\" or \"return\", not {other:?}"
                ))
            }
        };
        Ok(())
    };
    for (name, value) in params {
        if name == "options" {
            // Unparseable options are refused by the startup check anyway.
            for (n, v) in parse_options(value).unwrap_or_default() {
                if is_ours(&n) {
                    read(&v)?;
                }
            }
        } else if is_ours(name) {
            read(value)?;
        }
    }
    Ok(mode)
}

/// The parameters without pgmoat's own setting, for the server.
pub fn without_own(params: Vec<(String, String)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .filter(|(n, _)| !is_ours(n))
        .filter_map(|(name, value)| {
            if name != "options" {
                return Some((name, value));
            }
            let Ok(settings) = parse_options(&value) else {
                return Some((name, value));
            };
            if !settings.iter().any(|(n, _)| is_ours(n)) {
                return Some((name, value));
            }
            let rest: Vec<String> = settings
                .iter()
                .filter(|(n, _)| !is_ours(n))
                .map(|(n, v)| format!("-c {}={}", escape(n), escape(v)))
                .collect();
            (!rest.is_empty()).then(|| (name, rest.join(" ")))
        })
        .collect()
}

/// Escape as the server's option splitter reads it: a backslash before whitespace
/// and before a backslash.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c.is_ascii_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn read_directly_or_from_options() {
        assert_eq!(requested(&p(&[("user", "a")])).unwrap(), ApprovalMode::Wait);
        assert_eq!(
            requested(&p(&[(SETTING, "return")])).unwrap(),
            ApprovalMode::Return
        );
        assert_eq!(
            requested(&p(&[("options", "-c pgmoat.approval_mode=return")])).unwrap(),
            ApprovalMode::Return
        );
        assert_eq!(
            requested(&p(&[("options", "--pgmoat.approval_mode=Wait")])).unwrap(),
            ApprovalMode::Wait
        );
        assert!(requested(&p(&[(SETTING, "later")])).is_err());
    }

    #[test]
    fn never_passed_on() {
        let kept = without_own(p(&[
            ("user", "a"),
            (SETTING, "return"),
            (
                "options",
                "-c pgmoat.approval_mode=return -c search_path=a\\ b",
            ),
        ]));
        assert_eq!(
            kept,
            p(&[("user", "a"), ("options", "-c search_path=a\\ b")])
        );
        let only = without_own(p(&[("options", "-c pgmoat.approval_mode=return")]));
        assert!(only.is_empty());
        let other = p(&[("options", "-c statement_timeout=5s")]);
        assert_eq!(without_own(other.clone()), other);
    }
}
