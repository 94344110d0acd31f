//! Where the server finds a table named without a schema, by default.
//!
//! pgmoat judged such a name as `public.name` (SPEC section 4) while the session had
//! not changed `search_path`. That holds only if the server's default path finds the
//! name in `public`. Often it does not: the default is `"$user", public`, so a schema
//! named after the role (the layout Postgres's manual recommends) comes first, and
//! `ALTER DATABASE ... SET search_path` or `ALTER ROLE` can put any schema anywhere.
//! Then `SELECT * FROM secrets` reads `app.secrets` while a rule on `app.secrets`
//! never saw it. So each catalog load reads the path, and a bare name is judged as the
//! relation the server would read: the first schema on the path holding one of that
//! name, or, for a name no schema holds yet (a `CREATE TABLE`), the first schema on
//! the path that exists, which is where the server would create it.

use std::collections::{HashMap, HashSet};

/// The catalog connection's `search_path`, role and schemas, read at each catalog
/// load. The catalog connection starts as sessions do (the target's user, no
/// options), so its path is the sessions' until one changes it.
#[derive(Debug, Clone)]
pub struct DefaultPath {
    /// The path's entries, unquoted (`$user` for `"$user"`); lower-cased unless quoted.
    entries: Vec<String>,
    /// The role the catalog connection (the target's user) is: what `$user` means
    /// for a session without a pinned role.
    login: String,
    /// Every schema of the database.
    existing: HashSet<String>,
    /// User relation name -> the schemas holding one of that name.
    by_name: HashMap<String, Vec<String>>,
    /// False when the setting could not be read: then nothing is vouched for.
    read: bool,
}

impl DefaultPath {
    /// From `current_setting('search_path')`, `current_user`, the database's schemas
    /// and the catalog's relations (`(schema, name)`).
    pub fn new<'a>(
        setting: &str,
        login: &str,
        existing: HashSet<String>,
        relations: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> DefaultPath {
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        for (schema, name) in relations {
            let schemas = by_name.entry(name.to_owned()).or_default();
            if !schemas.iter().any(|s| s == schema) {
                schemas.push(schema.to_owned());
            }
        }
        DefaultPath {
            entries: split(setting),
            login: login.to_owned(),
            existing,
            by_name,
            read: true,
        }
    }

    /// A path that could not be read: sessions are judged as if they had changed
    /// search_path (a bare name could be in any schema).
    pub fn unread() -> DefaultPath {
        DefaultPath {
            entries: Vec::new(),
            login: String::new(),
            existing: HashSet::new(),
            by_name: HashMap::new(),
            read: false,
        }
    }

    pub fn is_read(&self) -> bool {
        self.read
    }

    /// The schema the server's default path gives the bare relation name `name`,
    /// for a session whose role is `role` (pgmoat's pinned role; the login role when
    /// None), when that schema is not `public`. None: `public` (or a system or
    /// temporary relation: `pg_catalog` and the session's temporary schema are
    /// searched first unless the path names them, and a name starting with `pg_` is
    /// left as it is judged today).
    pub fn schema_of<'a>(&'a self, name: &str, role: Option<&'a str>) -> Option<&'a str> {
        if name.starts_with("pg_") {
            return None;
        }
        let holders = self.by_name.get(name);
        let mut first_existing = None;
        for e in &self.entries {
            let s = match e.as_str() {
                "$user" => role.unwrap_or(&self.login),
                s => s,
            };
            if matches!(s, "pg_catalog" | "pg_temp") || !self.existing.contains(s) {
                continue;
            }
            first_existing.get_or_insert(s);
            if holders.is_some_and(|h| h.iter().any(|x| x == s)) {
                return (s != "public").then_some(s);
            }
        }
        // Held by no schema on the path: a read fails on the server; a CREATE puts
        // it in the first schema that exists.
        first_existing.filter(|s| *s != "public")
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
            c => cur.extend(c.to_lowercase()),
        }
    }
    out.push(cur);
    out.retain(|e| !e.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(setting: &str, existing: &[&str], relations: &[(&str, &str)]) -> DefaultPath {
        DefaultPath::new(
            setting,
            "app",
            existing.iter().map(|s| s.to_string()).collect(),
            relations.iter().copied(),
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
    fn bare_names_resolve_as_the_server_resolves_them() {
        let user = r#""$user", public"#;
        let rels = [("public", "t"), ("app", "t"), ("app", "s"), ("hr", "p")];
        // No schema named after the role: public, for reads and creates alike.
        let p = path(user, &["public", "hr"], &[("public", "t"), ("hr", "p")]);
        assert_eq!(p.schema_of("t", None), None);
        assert_eq!(p.schema_of("new", None), None);
        // A schema named after the login role comes first, even over public's `t`.
        let p = path(user, &["public", "app", "hr"], &rels);
        assert_eq!(p.schema_of("t", None), Some("app"));
        assert_eq!(p.schema_of("s", None), Some("app"));
        assert_eq!(p.schema_of("p", None), Some("app"), "created in app");
        // ... or after the pinned role, when it has a schema.
        assert_eq!(p.schema_of("p", Some("hr")), Some("hr"));
        assert_eq!(p.schema_of("t", Some("hr")), None, "public's, hr has none");
        assert_eq!(p.schema_of("t", Some("nobody")), None);
        // A later schema holds what public does not.
        let p = path("public, hr", &["public", "hr"], &rels);
        assert_eq!(p.schema_of("t", None), None);
        assert_eq!(p.schema_of("p", None), Some("hr"));
        assert_eq!(p.schema_of("new", None), None);
        // Quoted names keep their case; system names are left alone.
        let p = path(r#""HR", public"#, &["HR", "public"], &[("HR", "x")]);
        assert_eq!(p.schema_of("x", None), Some("HR"));
        assert_eq!(p.schema_of("pg_class", None), None);
        assert!(!DefaultPath::unread().is_read());
    }
}
