//! The SQL admin console's language (SPEC 12), read from what a client sends as a
//! simple query. A tiny grammar of keywords and single-quoted strings, so its own
//! tokenizer: the Postgres parser would reject `APPROVE 'ap-1' REASON 'ok'`.

use std::time::Duration;

/// One console command, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ShowSessions,
    ShowApprovals,
    ShowRules,
    ShowStats,
    Approve {
        id: String,
        reason: String,
        grant: Option<Duration>,
    },
    Deny {
        id: String,
        reason: String,
    },
    Reload,
    Explain {
        identity: Option<String>,
        sql: String,
    },
}

/// What the console answers to a command it cannot read (SQLSTATE 42601).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

/// Every command, for the message that answers an unknown one.
pub const KNOWN: &str = "SHOW SESSIONS, SHOW APPROVALS, SHOW RULES, SHOW STATS, \
APPROVE 'id' [REASON '...'] [FOR '30m'], DENY 'id' REASON '...', RELOAD, \
EXPLAIN [AS 'identity'] 'sql'";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, upper-cased.
    Word(String),
    /// A single-quoted string, `''` read as one quote.
    Str(String),
    Semicolon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            ';' => out.push(Token::Semicolon),
            '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => {
                            return Err(SyntaxError(
                                "unterminated quoted string in console command".into(),
                            ))
                        }
                        Some((_, '\'')) => {
                            if matches!(chars.peek(), Some((_, '\''))) {
                                chars.next();
                                s.push('\'');
                            } else {
                                break;
                            }
                        }
                        Some((_, ch)) => s.push(ch),
                    }
                }
                out.push(Token::Str(s));
            }
            '-' if matches!(chars.peek(), Some((_, '-'))) => {
                // A comment to the end of the line, as psql scripts carry.
                for (_, ch) in chars.by_ref() {
                    if ch == '\n' {
                        break;
                    }
                }
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, ch)) = chars.peek() {
                    if ch.is_alphanumeric() || ch == '_' {
                        end = i + ch.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(text[start..end].to_uppercase()));
            }
            other => {
                return Err(SyntaxError(format!(
                    "syntax error at or near \"{other}\" in console command"
                )))
            }
        }
    }
    Ok(out)
}

/// Read every command of a simple query (separated by `;`). Empty statements are
/// skipped; an unreadable one fails the whole query, as Postgres does.
pub fn parse(text: &str) -> Result<Vec<Command>, SyntaxError> {
    let tokens = tokenize(text)?;
    tokens
        .split(|t| *t == Token::Semicolon)
        .filter(|s| !s.is_empty())
        .map(parse_one)
        .collect()
}

/// A cursor over one command's tokens.
struct Words<'a> {
    rest: &'a [Token],
}

impl Words<'_> {
    fn next(&mut self) -> Option<&Token> {
        let (first, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(first)
    }

    fn string(&mut self, what: &str) -> Result<String, SyntaxError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(s.clone()),
            _ => Err(SyntaxError(format!("expected {what} as a quoted string"))),
        }
    }

    fn end(&self, command: &str) -> Result<(), SyntaxError> {
        match self.rest.first() {
            None => Ok(()),
            Some(t) => Err(SyntaxError(format!(
                "unexpected {} after {command}",
                describe(t)
            ))),
        }
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Word(w) => format!("\"{w}\""),
        Token::Str(s) => format!("'{s}'"),
        Token::Semicolon => "\";\"".into(),
    }
}

fn parse_one(tokens: &[Token]) -> Result<Command, SyntaxError> {
    let mut w = Words { rest: tokens };
    let first = match w.next() {
        Some(Token::Word(first)) => first.clone(),
        Some(t) => return Err(unknown(&describe(t))),
        None => return Err(unknown("")),
    };
    match first.as_str() {
        "SHOW" => {
            let what = match w.next() {
                Some(Token::Word(what)) => what.clone(),
                _ => return Err(SyntaxError(format!("SHOW what? The console knows {KNOWN}"))),
            };
            let cmd = match what.as_str() {
                "SESSIONS" => Command::ShowSessions,
                "APPROVALS" => Command::ShowApprovals,
                "RULES" => Command::ShowRules,
                "STATS" => Command::ShowStats,
                other => return Err(unknown(&format!("SHOW {other}"))),
            };
            w.end(&format!("SHOW {what}"))?;
            Ok(cmd)
        }
        "RELOAD" => {
            w.end("RELOAD")?;
            Ok(Command::Reload)
        }
        "APPROVE" => {
            let id = w.string("the request id")?;
            let (mut reason, mut grant) = (None, None);
            while let Some(t) = w.next() {
                match t {
                    Token::Word(k) if k == "REASON" && reason.is_none() => {
                        reason = Some(w.string("the reason")?)
                    }
                    Token::Word(k) if k == "FOR" && grant.is_none() => {
                        let d = w.string("the grant duration (e.g. '30m')")?;
                        grant = Some(
                            crate::config::parse_duration(&d)
                                .map_err(|e| SyntaxError(format!("FOR '{d}': {e}")))?,
                        );
                    }
                    t => {
                        return Err(SyntaxError(format!(
                            "unexpected {} in APPROVE (APPROVE 'id' [REASON '...'] [FOR '30m'])",
                            describe(t)
                        )))
                    }
                }
            }
            Ok(Command::Approve {
                id,
                reason: reason.unwrap_or_default(),
                grant,
            })
        }
        "DENY" => {
            let id = w.string("the request id")?;
            match w.next() {
                Some(Token::Word(k)) if k == "REASON" => {}
                _ => {
                    return Err(SyntaxError(
                        "DENY needs a reason: DENY 'id' REASON '...'".into(),
                    ))
                }
            }
            let reason = w.string("the reason")?;
            w.end("DENY")?;
            Ok(Command::Deny { id, reason })
        }
        "EXPLAIN" => {
            let identity = match w.rest.first() {
                Some(Token::Word(k)) if k == "AS" => {
                    w.next();
                    Some(w.string("the identity")?)
                }
                _ => None,
            };
            let sql = w.string("the SQL to explain")?;
            w.end("EXPLAIN")?;
            Ok(Command::Explain { identity, sql })
        }
        other => Err(unknown(other)),
    }
}

fn unknown(what: &str) -> SyntaxError {
    SyntaxError(format!(
        "unknown pgmoat console command \"{what}\"; the console knows {KNOWN}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_reads() {
        assert_eq!(
            parse("show sessions;").unwrap(),
            vec![Command::ShowSessions]
        );
        assert_eq!(
            parse("SHOW APPROVALS; SHOW RULES;;SHOW stats").unwrap(),
            vec![
                Command::ShowApprovals,
                Command::ShowRules,
                Command::ShowStats
            ]
        );
        assert_eq!(parse("RELOAD").unwrap(), vec![Command::Reload]);
        assert_eq!(
            parse("APPROVE 'ap-1' REASON 'it''s fine' FOR '30m'").unwrap(),
            vec![Command::Approve {
                id: "ap-1".into(),
                reason: "it's fine".into(),
                grant: Some(Duration::from_secs(1800)),
            }]
        );
        assert_eq!(
            parse("approve 'ap-2'").unwrap(),
            vec![Command::Approve {
                id: "ap-2".into(),
                reason: String::new(),
                grant: None,
            }]
        );
        assert_eq!(
            parse("DENY 'ap-3' REASON 'no'").unwrap(),
            vec![Command::Deny {
                id: "ap-3".into(),
                reason: "no".into()
            }]
        );
        assert_eq!(
            parse("EXPLAIN AS 'agent-1' 'DELETE FROM users WHERE name = ''x'';'").unwrap(),
            vec![Command::Explain {
                identity: Some("agent-1".into()),
                sql: "DELETE FROM users WHERE name = 'x';".into()
            }]
        );
        assert_eq!(
            parse("-- a comment\nEXPLAIN 'SELECT 1'").unwrap(),
            vec![Command::Explain {
                identity: None,
                sql: "SELECT 1".into()
            }]
        );
        assert_eq!(parse(" ; ").unwrap(), vec![]);
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let e = parse("SELECT 1").unwrap_err();
        assert!(
            e.0.contains("unknown pgmoat console command \"SELECT\""),
            "{e}"
        );
        assert!(parse("SHOW POOLS").unwrap_err().0.contains("SHOW POOLS"));
        assert!(parse("DENY 'ap-1'")
            .unwrap_err()
            .0
            .contains("needs a reason"));
        assert!(parse("APPROVE ap").is_err());
        assert!(parse("APPROVE 'a' FOR 'forever'").is_err());
        assert!(parse("APPROVE 'a' REASON 'x' REASON 'y'").is_err());
        assert!(parse("RELOAD now").is_err());
        assert!(parse("EXPLAIN 'unterminated").is_err());
        assert!(parse("SHOW SESSIONS; BOGUS").is_err());
        assert!(parse("'just a string'").is_err());
        assert!(parse("SHOW $1").is_err());
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let alphabet: Vec<char> = "SHOWAPRVEDNYXL '';-\n\té30m".chars().collect();
        for _ in 0..5000 {
            let n = rng.gen_range(0..40);
            let s: String = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = parse(&s);
        }
    }
}
