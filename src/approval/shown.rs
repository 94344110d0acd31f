//! What an approver is shown of a held statement, command or request (review L8).
//!
//! The text comes from the requester, who may want `rm -rf /var/www` to look harmless:
//! a right-to-left override (U+202E) reorders what follows, zero-width characters and
//! other invisibles hide words, terminal escapes repaint a CLI approver's screen, and a
//! long run of blanks pushes the dangerous part off the screen or past a message's
//! length limit (Slack cuts at 3,000 characters). So every place that shows the text
//! to a person (Slack, the console, the CLI) shows it through [`shown`]: invisible and
//! control characters become visible `\u{...}` escapes, long blank runs are counted
//! instead of printed, and [`Shown::suspicious`] says when either happened, so the
//! approver is warned. The text that is matched and run is never changed.

use std::fmt::Write;

/// Blank runs longer than this are shown as a count.
const MAX_BLANK_RUN: usize = 8;

/// The text as an approver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    /// Something was escaped or collapsed: worth a warning beside the text.
    pub suspicious: bool,
}

/// The warning shown beside a suspicious text.
pub const WARNING: &str =
    "this text contained invisible, control or direction-changing characters or long blank runs; they are shown escaped";

/// Characters that change how the rest of a line is displayed, or are not displayed at
/// all: bidirectional controls, zero-width characters, and other format characters.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Whether `c` is escaped when shown: controls (but newline and tab) and invisibles.
pub fn escaped(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || invisible(c)
}

/// Whether any of a request's texts (its statement and its parameters) needs the
/// [`WARNING`] beside it.
pub fn any_suspicious<'a>(texts: impl IntoIterator<Item = &'a str>) -> bool {
    texts.into_iter().any(|t| shown(t).suspicious)
}

/// `text` made safe to show a person; see the module documentation.
pub fn shown(text: &str) -> Shown {
    let mut out = String::with_capacity(text.len());
    let mut suspicious = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' || c == '\n' || c == '\t' {
            let mut run = vec![c];
            while let Some(&n) = chars.peek() {
                if n != ' ' && n != '\n' && n != '\t' {
                    break;
                }
                run.push(n);
                chars.next();
            }
            if run.len() > MAX_BLANK_RUN {
                suspicious = true;
                let lines = run.iter().filter(|&&b| b == '\n').count();
                let _ = write!(
                    out,
                    " [{} blank characters, {lines} line breaks] ",
                    run.len()
                );
                if lines > 0 {
                    out.push('\n');
                }
            } else {
                out.extend(run);
            }
        } else if escaped(c) {
            suspicious = true;
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Shown {
        text: out,
        suspicious,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_statements_are_shown_as_they_are() {
        for s in [
            "SELECT * FROM t WHERE id = 1",
            "UPDATE t SET a = $1\nWHERE id = $2",
            "rm -rf /tmp/x\tand ünïcödé 名前",
            "",
        ] {
            assert_eq!(
                shown(s),
                Shown {
                    text: s.into(),
                    suspicious: false
                }
            );
        }
    }

    #[test]
    fn direction_overrides_and_invisibles_are_escaped() {
        let s = shown("ls \u{202E}www/rav/ fr- mr\u{202C}");
        assert!(s.suspicious);
        assert_eq!(s.text, "ls \\u{202e}www/rav/ fr- mr\\u{202c}");
        let s = shown("DELETE\u{200B} FROM t\u{FEFF}");
        assert_eq!(s.text, "DELETE\\u{200b} FROM t\\u{feff}");
        assert!(s.suspicious);
    }

    #[test]
    fn terminal_escapes_and_carriage_returns_are_escaped() {
        let s = shown("echo ok\r\u{1b}[2Krm -rf /");
        assert!(s.suspicious);
        assert_eq!(s.text, "echo ok\\u{d}\\u{1b}[2Krm -rf /");
        assert!(!s.text.contains('\u{1b}'));
    }

    #[test]
    fn long_blank_runs_are_counted_so_the_end_stays_on_screen() {
        let text = format!("ls{}; rm -rf /", " ".repeat(3000));
        let s = shown(&text);
        assert!(s.suspicious);
        assert_eq!(
            s.text,
            "ls [3000 blank characters, 0 line breaks] ; rm -rf /"
        );
        let s = shown(&format!("SELECT 1;{}DROP TABLE t", "\n".repeat(40)));
        assert_eq!(
            s.text,
            "SELECT 1; [40 blank characters, 40 line breaks] \nDROP TABLE t"
        );
        // Ordinary indentation is left alone.
        assert!(!shown("SELECT a\n     , b\nFROM t").suspicious);
    }
}
