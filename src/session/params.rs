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
///
/// Only a space or a tab may separate: the server splits on C's `isspace`, which also
/// takes a vertical tab, and in some locales other bytes, so a string pgmoat read as
/// one setting could reach the server as two (review s37 W1). Any other control or
/// white-space character is refused, and the server is sent the settings as read
/// here ([`encode_options`]), never the client's text.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, Refusal> {
    // Nor a byte above 0x7f: in a single-byte locale some (0x85, 0xA0) are white
    // space to the server's splitter, and the UTF-8 of `à` ends in 0xA0 (review s37 V7).
    if let Some(c) = options
        .chars()
        .find(|&c| c != ' ' && c != '\t' && (c.is_control() || c.is_whitespace() || !c.is_ascii()))
    {
        return Err(format!(
            "pgmoat: options may not contain the character U+{:04X} (ASCII only; separate switches with spaces)",
            c as u32
        ));
    }
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c == ' ' || c == '\t' {
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

/// `options` for the server, from settings [`parse_options`] read: `-c name=value`,
/// escaped as the server's splitter reads it, so it sees exactly those settings.
pub fn encode_options(settings: &[(String, String)]) -> String {
    settings
        .iter()
        .map(|(n, v)| format!("-c {}={}", escape_option(n), escape_option(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A backslash before white space and before a backslash.
fn escape_option(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' || c.is_ascii_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The server's limit on a name (NAMEDATALEN - 1 bytes): application_name is cut there.
const NAME_MAX: usize = 63;

/// The application_name sent upstream: the identity first, then as much of the
/// client's as fits, so the database's own logs and `pg_stat_activity` show who was
/// behind the request. First, because the server cuts the name at 63 bytes: a client
/// name of that length would cut an identity written after it away, and could end in
/// a made-up one (review s37 W6). A later `SET application_name` still replaces it:
/// pgmoat's audit trail, not the server's view, is the record of who ran what.
pub fn upstream_application_name(client: Option<&str>, identity: &str) -> String {
    let mut out = format!("[pgmoat:{identity}]");
    if let Some(app) = client.filter(|a| !a.is_empty()) {
        if out.len() + 1 < NAME_MAX {
            out.push(' ');
            let room = NAME_MAX - out.len();
            let mut cut = app.len().min(room);
            while !app.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push_str(&app[..cut]);
        }
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
        // The server's splitter also takes a vertical tab (and other white space):
        // refused rather than read as one setting (review s37 W1).
        for bad in [
            "-c search_path=public\u{b}-crole=postgres",
            "-c a=b\n-c role=x",
            "-c a=b\r-c role=x",
            "-c a=b\u{c}-c role=x",
            "-c a=b\u{85}-c role=x",
            "-c a=b\u{a0}-c role=x",
            "-c search_path=publicà-crole=postgres",
        ] {
            assert!(parse_options(bad).is_err(), "{bad:?} parsed");
            assert!(check_startup(&p(&[("options", bad)])).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_options("-c a=b\t-c c=d").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );
        // What goes upstream is what was read, escaped for the server's splitter.
        let read = parse_options(r"-c search_path=a\ b --DateStyle=iso -cx=\\y").unwrap();
        assert_eq!(
            encode_options(&read),
            r"-c search_path=a\ b -c datestyle=iso -c x=\\y"
        );
        assert_eq!(parse_options(&encode_options(&read)).unwrap(), read);
        // Hidden in options, role is still refused.
        assert!(check_startup(&p(&[("options", "-c search_path=x -c ROLE=postgres")])).is_err());
        assert!(check_startup(&p(&[("options", "--session-authorization=postgres")])).is_err());
    }

    #[test]
    fn application_name_carries_the_identity() {
        assert_eq!(
            upstream_application_name(Some("psql"), "agent-1"),
            "[pgmoat:agent-1] psql"
        );
        // The server keeps 63 bytes: the identity comes first and the client's name is
        // cut to fit (on a character boundary), so a long name cannot push it out.
        let long = format!("{} [pgmoat:dba-alice]", "A".repeat(40));
        let name = upstream_application_name(Some(&long), "agent-1");
        assert!(name.starts_with("[pgmoat:agent-1] AAAA"), "{name}");
        assert_eq!(name.len(), 63);
        let name = upstream_application_name(Some(&"é".repeat(40)), "agent-1");
        assert!(
            name.len() <= 63 && name.starts_with("[pgmoat:agent-1] é"),
            "{name}"
        );
        assert_eq!(
            upstream_application_name(None, "agent-1"),
            "[pgmoat:agent-1]"
        );
    }
}
