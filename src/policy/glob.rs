//! Name globs: `*` is any run of characters but `.`, `?` one character. Names and
//! patterns are compared segment by segment from the right, so a pattern with fewer
//! segments (`pg_read_file`, `users.ssn`) matches that name in any schema, and a name
//! the SQL left unqualified matches a qualified pattern (it could resolve there). A `?`
//! or `*` segment in a name (a table pgmoat could not tell, a setting it could not
//! name) matches anything. Case is ignored.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    segments: Vec<String>,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let text = pattern.trim();
        if text.is_empty() {
            return Err("empty pattern".into());
        }
        let segments: Vec<String> = text.split('.').map(|s| s.to_ascii_lowercase()).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("bad pattern {text:?}: empty name part"));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| matches!(c, '[' | ']' | '{' | '}' | '\\'))
        {
            return Err(format!(
                "bad pattern {text:?}: {bad:?} is not supported (use * and ?)"
            ));
        }
        Ok(Glob {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Like [`Glob::matches`], but the name must have as many dotted parts as the
    /// pattern (settings: `debug_*` must not match the custom `app.debug_mode`).
    pub fn matches_whole(&self, name: &str) -> bool {
        name == "*" || (name.split('.').count() == self.segments.len() && self.matches(name))
    }

    pub fn matches(&self, name: &str) -> bool {
        if name == "*" {
            return true;
        }
        let parts: Vec<&str> = name.split('.').collect();
        let n = parts.len().min(self.segments.len());
        self.segments[self.segments.len() - n..]
            .iter()
            .zip(&parts[parts.len() - n..])
            .all(|(p, v)| {
                *v == "?"
                    || *v == "*"
                    || segment_matches(p.as_bytes(), v.to_ascii_lowercase().as_bytes())
            })
    }
}

fn segment_matches(p: &[u8], v: &[u8]) -> bool {
    // Iterative wildcard match with backtracking on the last star.
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, v: &str) -> bool {
        Glob::new(p).unwrap().matches(v)
    }

    #[test]
    fn schema_rules() {
        assert!(m("pg_read_file", "pg_catalog.pg_read_file"));
        assert!(m("pg_read_file", "pg_read_file"));
        assert!(
            m("pg_catalog.pg_read_file", "pg_read_file"),
            "unqualified could resolve there"
        );
        assert!(!m("pg_catalog.pg_read_file", "other.pg_read_file"));
        assert!(m("hr.*", "hr.salaries"));
        assert!(!m("hr.*", "public.salaries"));
        assert!(m("users", "public.users"));
        assert!(m("*.card_number", "orders.card_number"));
        assert!(m("users.ssn", "?.ssn"), "unknown table matches");
        assert!(m("role", "*"), "unknown setting matches everything");
        assert!(m("PG_READ_*", "pg_read_binary_file"));
        assert!(m("lo_?mport", "lo_import"));
        assert!(!m("lo_?mport", "lo_imports"));
        assert!(!m("user", "public.users"));
    }

    #[test]
    fn setting_names_are_whole() {
        let w = |p: &str, v: &str| Glob::new(p).unwrap().matches_whole(v);
        assert!(w("debug_*", "debug_print_plan"));
        assert!(!w("debug_*", "app.debug_mode"));
        assert!(w("app.*", "app.debug_mode"));
        assert!(w("log_*", "*"), "an unknown setting matches everything");
    }

    #[test]
    fn bad_patterns() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a..b").is_err());
        assert!(Glob::new("a[bc]").is_err());
    }
}
