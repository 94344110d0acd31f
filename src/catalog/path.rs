//! Where the server looks for a table named without a schema, by default.
//!
//! pgmoat judges such a name as `public.name` (SPEC section 4) while the session has
//! not changed `search_path`. That holds only if the server's default path can find
//! nothing but `public` (and system and temporary relations). Often it can: the
//! default is `"$user", public`, so a schema named after the role (the layout
//! Postgres's manual recommends) comes first, and `ALTER DATABASE ... SET search_path`
//! or `ALTER ROLE` can put any schema anywhere. Then `SELECT * FROM secrets` reads
//! `app.secrets` while a rule on `app.secrets` never saw it.
//!
//! So each catalog load reads the path, and when it names a schema that exists other
//! than `public`, sessions are judged as ones that changed search_path: a bare name
//! matches every schema a rule's pattern could mean. That is closed without having to
//! know which schema the server picks (it skips schemas the role may not use, a role's
//! own default applies from its next login, a view's body was printed for the login
//! role's path); it is exact in the common layout. The entries of every load are kept
//! (the union): a session opened under an earlier path keeps that path.

use std::collections::HashSet;

/// The catalog connection's `search_path` and role, and the database's schemas.
#[derive(Debug, Clone)]
pub struct DefaultPath {
    /// The entries of this load's path and of every earlier one, unquoted (`$user` for
    /// `"$user"`); lower-cased unless quoted.
    entries: Vec<String>,
    /// The role the catalog connection (the target's user) is: what `$user` means for
    /// a session without a pinned role.
    login: String,
    /// Every schema of the database.
    existing: HashSet<String>,
    /// False when the setting could not be read: then nothing is vouched for.
    read: bool,
}

impl DefaultPath {
    /// From `current_setting('search_path')`, `current_user` and the database's
    /// schemas, with the entries of the previous load's path added.
    pub fn new(
        setting: &str,
        login: &str,
        existing: HashSet<String>,
        previous: Option<&DefaultPath>,
    ) -> DefaultPath {
        let mut entries = split(setting);
        for e in previous.map(|p| p.entries.as_slice()).unwrap_or(&[]) {
            if !entries.contains(e) {
                entries.push(e.clone());
            }
        }
        DefaultPath {
            entries,
            login: login.to_owned(),
            existing,
            read: previous.is_none_or(|p| p.read),
        }
    }

    /// A path that could not be read: never taken for `public`.
    pub fn unread() -> DefaultPath {
        DefaultPath {
            entries: Vec::new(),
            login: String::new(),
            existing: HashSet::new(),
            read: false,
        }
    }

    /// Whether a bare table name can only be `public.name` (or a system or temporary
    /// relation) for a session whose role is `role` (pgmoat's pinned role; the login
    /// role when None): no other schema on the path exists.
    pub fn is_public(&self, role: Option<&str>) -> bool {
        self.read
            && self.entries.iter().all(|e| {
                let s = match e.as_str() {
                    "$user" => role.unwrap_or(&self.login),
                    s => s,
                };
                matches!(s, "public" | "pg_catalog" | "pg_temp") || !self.existing.contains(s)
            })
    }
}

/// A `search_path` setting's entries: comma-separated identifiers, double-quoted ones
/// kept as written (`""` is a quote), others lower-cased, as the server reads them.
fn split(setting: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = setting.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c if !quoted && c.is_whitespace() => {}
            c if quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    out.push(cur);
    out.retain(|e| !e.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(setting: &str, existing: &[&str]) -> DefaultPath {
        DefaultPath::new(
            setting,
            "app",
            existing.iter().map(|s| s.to_string()).collect(),
            None,
        )
    }

    #[test]
    fn settings_split_as_the_server_reads_them() {
        assert_eq!(split(r#""$user", public"#), ["$user", "public"]);
        assert_eq!(
            split(r#"App, "My ""S"", x",PUBLIC"#),
            ["app", "My \"S\", x", "public"]
        );
        assert_eq!(split(""), Vec::<String>::new());
    }

    #[test]
    fn only_a_path_with_nothing_but_public_is_public() {
        let user = r#""$user", public"#;
        // The default, without a schema named after the role.
        assert!(path(user, &["public", "hr"]).is_public(None));
        assert!(path("pg_catalog, public, pg_temp", &["public"]).is_public(None));
        // A schema named after the login role, or after the pinned role.
        let p = path(user, &["public", "app", "analyst"]);
        assert!(!p.is_public(None));
        assert!(!p.is_public(Some("analyst")));
        assert!(p.is_public(Some("reporting")));
        // Another schema anywhere on the path, before or after public.
        assert!(!path("hr, public", &["public", "hr"]).is_public(None));
        assert!(!path("public, hr", &["public", "hr"]).is_public(None));
        assert!(path("public, hr", &["public"]).is_public(None));
        assert!(!path(r#""HR", public"#, &["HR"]).is_public(None));
        assert!(!path("information_schema, public", &["information_schema"]).is_public(None));
        assert!(!DefaultPath::unread().is_public(None));
        // An earlier load's path stays: a session opened under it still has it.
        let before = path("hr, public", &["public", "hr"]);
        let now = DefaultPath::new(
            user,
            "app",
            ["public", "hr"].iter().map(|s| s.to_string()).collect(),
            Some(&before),
        );
        assert!(!now.is_public(None));
        assert!(
            !DefaultPath::new(user, "app", HashSet::new(), Some(&DefaultPath::unread()))
                .is_public(None)
        );
    }
}
