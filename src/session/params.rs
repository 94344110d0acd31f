//! Which client startup parameters may reach the server.
//!
//! Startup parameters, and each `-c name=value` / `--name=value` inside `options`, are
//! settings like any other. The ones that change privileges, auditing or how the server
//! reads SQL are refused: the parser pgmoat judges statements with must see SQL exactly
//! as the server does.

/// Why a parameter was refused: one line for the client's FATAL.
pub type Refusal = String;

/// Normalise a setting name as the server does for `-c` and `--` options.
fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

/// Check all startup parameters. `user`, `database` and protocol options (`_pq_.*`)
/// are the caller's business.
pub fn check_startup(params: &[(String, String)]) -> Result<(), Refusal> {
    for (name, value) in params {
        match name.as_str() {
            "user" | "database" => {}
            "options" => {
                for (n, v) in parse_options(value)? {
                    check_setting(&n, &v)?;
                }
            }
            "replication" => {
                if !is_false(value) {
                    return Err("pgmoat: replication connections are not allowed".into());
                }
            }
            n if n.starts_with("_pq_.") => {}
            _ => check_setting(name, value)?,
        }
    }
    Ok(())
}

/// The settings a startup packet asks for (names as the server normalises them), for
/// the rules' `settings` conditions: a rule that blocks `SET debug_print_plan` blocks
/// `options=-c debug_print_plan=on` too.
pub fn startup_settings(params: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "user" | "database" | "replication" => {}
            "options" => {
                for (n, _) in parse_options(value).unwrap_or_default() {
                    out.push(normalise(&n));
                }
            }
            n if n.starts_with("_pq_.") => {}
            n => out.push(normalise(n)),
        }
    }
    out
}

fn is_false(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "false" | "off" | "no" | "0"
    )
}

fn is_on(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "on" | "true" | "yes" | "1"
    )
}

/// Check one setting a client asks for at startup.
pub fn check_setting(name: &str, value: &str) -> Result<(), Refusal> {
    let n = normalise(name);
    let refuse = |why: &str| {
        Err(format!(
            "pgmoat: setting {n} at connection start is not allowed: {why}"
        ))
    };
    match n.as_str() {
        "role" | "session_authorization" => refuse("it changes privileges"),
        "session_replication_role" => refuse("it disables triggers and rules"),
        "local_preload_libraries" | "session_preload_libraries" => {
            refuse("it loads code into the server")
        }
        "backslash_quote" => refuse("it changes how the server reads SQL"),
        "standard_conforming_strings" if !is_on(value) => {
            refuse("it changes how the server reads SQL")
        }
        "client_encoding" if !encoding_is_safe(value) => {
            refuse("that encoding lets the server read SQL differently from pgmoat's parser")
        }
        _ if n.starts_with("log_") || n == "debug_print_parse" => {
            refuse("it changes what the server logs")
        }
        "" => Err("pgmoat: empty setting name in startup packet".into()),
        _ => Ok(()),
    }
}

/// Whether an encoding is ASCII-safe: every byte below 0x80 means what it means in
/// ASCII, so quotes and backslashes are where the parser thinks they are. Client-only
/// encodings such as SJIS, BIG5, GBK, UHC, GB18030 and JOHAB are not.
pub fn encoding_is_safe(name: &str) -> bool {
    // The server ignores case and punctuation in encoding names.
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    const SAFE: &[&str] = &[
        "utf8",
        "unicode",
        "sqlascii",
        "latin1",
        "latin2",
        "latin3",
        "latin4",
        "latin5",
        "latin6",
        "latin7",
        "latin8",
        "latin9",
        "latin10",
        "iso88591",
        "iso88592",
        "iso88593",
        "iso88594",
        "iso88595",
        "iso88596",
        "iso88597",
        "iso88598",
        "iso88599",
        "iso885910",
        "iso885913",
        "iso885914",
        "iso885915",
        "iso885916",
        "win1250",
        "win1251",
        "win1252",
        "win1253",
        "win1254",
        "win1255",
        "win1256",
        "win1257",
        "win1258",
        "windows1250",
        "windows1251",
        "windows1252",
        "windows1253",
        "windows1254",
        "windows1255",
        "windows1256",
        "windows1257",
        "windows1258",
        "win866",
        "windows866",
        "win874",
        "windows874",
        "koi8",
        "koi8r",
        "koi8u",
        "eucjp",
        "euccn",
        "euckr",
        "euctw",
        "eucjis2004",
        "muleinternal",
        "alt",
        "cp866",
        "tcvn",
        "tcvn5712",
        "vscii",
        "abc",
        "win",
    ];
    SAFE.contains(&clean.as_str())
}

/// Split `options` as the server does (`pg_split_opts`: whitespace separates, backslash
/// escapes the next character), then read each `-c name=value`, `-cname=value` or
/// `--name=value`. Anything else is refused rather than guessed at.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, Refusal> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if in_arg {
                args.push(std::mem::take(&mut cur));
                in_arg = false;
            }
            continue;
        }
        in_arg = true;
        if c == '\\' {
            match chars.next() {
                Some(next) => cur.push(next),
                None => return Err("pgmoat: options ends in a lone backslash".into()),
            }
        } else {
            cur.push(c);
        }
    }
    if in_arg {
        args.push(cur);
    }
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let setting = if arg == "-c" {
            it.next()
                .ok_or_else(|| "pgmoat: options: -c needs name=value".to_string())?
        } else if let Some(rest) = arg.strip_prefix("--") {
            rest.to_owned()
        } else if let Some(rest) = arg.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(format!(
                "pgmoat: options: unsupported switch {arg:?} (only -c name=value and --name=value are passed on)"
            ));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| format!("pgmoat: options: {setting:?} is not name=value"))?;
        if name.is_empty() {
            return Err("pgmoat: options: empty setting name".into());
        }
        out.push((normalise(name), value.to_owned()));
    }
    Ok(out)
}

/// The application_name sent upstream: the client's, with the identity appended, so
/// the database's own logs and `pg_stat_activity` show who was behind the request.
pub fn upstream_application_name(client: Option<&str>, identity: &str) -> String {
    match client {
        Some(app) if !app.is_empty() => format!("{app} [pgmoat:{identity}]"),
        _ => format!("[pgmoat:{identity}]"),
    }
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
    fn ordinary_parameters_pass() {
        check_startup(&p(&[
            ("user", "a"),
            ("database", "d"),
            ("application_name", "psql"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            (
                "options",
                "-c search_path=app,public --statement-timeout=5s",
            ),
            ("extra_float_digits", "3"),
            ("replication", "false"),
        ]))
        .unwrap();
    }

    #[test]
    fn privilege_and_parser_settings_are_refused() {
        for (k, v) in [
            ("role", "postgres"),
            ("session_authorization", "postgres"),
            ("standard_conforming_strings", "off"),
            ("backslash_quote", "on"),
            ("client_encoding", "SJIS"),
            ("client_encoding", "gb-18030"),
            ("replication", "database"),
            ("replication", "true"),
            ("log_statement", "none"),
            ("session_replication_role", "replica"),
        ] {
            assert!(check_startup(&p(&[(k, v)])).is_err(), "{k}={v} passed");
        }
        assert!(check_startup(&p(&[("standard_conforming_strings", "on")])).is_ok());
    }

    #[test]
    fn options_are_split_like_the_server() {
        assert_eq!(
            parse_options(r"-c role=admin").unwrap(),
            vec![("role".into(), "admin".into())]
        );
        assert_eq!(
            parse_options(r"-crole=admin --Session-Authorization=x").unwrap(),
            vec![
                ("role".into(), "admin".into()),
                ("session_authorization".into(), "x".into())
            ]
        );
        assert_eq!(
            parse_options(r"-c search_path=a\ b").unwrap(),
            vec![("search_path".into(), "a b".into())]
        );
        for bad in ["-d 5", "-c", "-c role", "--=x", "x\\"] {
            assert!(parse_options(bad).is_err(), "{bad} parsed");
        }
        // Hidden in options, role is still refused.
        assert!(check_startup(&p(&[("options", "-c search_path=x -c ROLE=postgres")])).is_err());
        assert!(check_startup(&p(&[("options", "--session-authorization=postgres")])).is_err());
    }

    #[test]
    fn application_name_carries_the_identity() {
        assert_eq!(
            upstream_application_name(Some("psql"), "agent-1"),
            "psql [pgmoat:agent-1]"
        );
        assert_eq!(
            upstream_application_name(None, "agent-1"),
            "[pgmoat:agent-1]"
        );
    }
}
