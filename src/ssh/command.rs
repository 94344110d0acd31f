//! An exec request's command line, split into the simple commands the rules judge
//! (SPEC section 8), with brush-parser (a maintained POSIX/bash parser).
//!
//! Conservative by design: a command line is judged by what it says, so anything whose
//! meaning depends on run time (command or process substitution, variables, arithmetic,
//! `eval`, assignments before a command, loops and functions, a glob as the command
//! name) makes the whole line one `Unanalysable` ask, and a line that does not parse
//! is unanalysable too.

use brush_parser::ast::{
    AndOr, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectTarget,
    IoRedirect, Pipeline, SimpleCommand,
};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use crate::policy::ssh::SshAsk;

/// Longer command lines are not parsed (and so not run): no real exec line is this long.
pub const MAX_COMMAND_LINE: usize = 64 * 1024;
/// `sh -c "..."` inside `sh -c "..."`: this deep and no deeper.
const MAX_NESTING: usize = 4;

/// Shells whose `-c` argument is a command line of its own, judged like the outer one.
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"];
/// Commands that evaluate their arguments as shell code.
const EVALUATORS: &[&str] = &["eval", "source", ".", "trap"];
/// Commands that run the rest of their words as another command: that command is
/// judged as well as the whole (`sudo rm -rf /` is also `rm -rf /`).
const WRAPPERS: &[&str] = &[
    "exec", "command", "builtin", "nohup", "sudo", "env", "nice", "time", "xargs", "doas",
    "setsid", "stdbuf", "ionice",
];

/// The asks of one command line: one `Command` per simple command, or one
/// `Unanalysable` for the whole line.
pub fn split(line: &str) -> Vec<SshAsk> {
    let mut s = Splitter {
        asks: Vec::new(),
        depth: 0,
    };
    match s.line(line) {
        Ok(()) if !s.asks.is_empty() => s.asks,
        Ok(()) => vec![unanalysable(line, "an empty command line")],
        Err(why) => vec![unanalysable(line, &why)],
    }
}

fn unanalysable(line: &str, why: &str) -> SshAsk {
    SshAsk::Unanalysable {
        text: line.to_owned(),
        why: why.to_owned(),
    }
}

type Why = String;

struct Splitter {
    asks: Vec<SshAsk>,
    depth: usize,
}

fn options() -> ParserOptions {
    ParserOptions {
        // `!(x)` and friends are patterns, not commands; without extglob they do not
        // parse, which is unanalysable: the safe side.
        enable_extended_globbing: false,
        ..ParserOptions::default()
    }
}

impl Splitter {
    fn line(&mut self, line: &str) -> Result<(), Why> {
        if line.len() > MAX_COMMAND_LINE {
            return Err(format!("a command line over {MAX_COMMAND_LINE} bytes"));
        }
        if line.contains('\0') {
            return Err("a command line with a NUL byte".into());
        }
        if self.depth > MAX_NESTING {
            return Err("shells nested too deeply".into());
        }
        let program = Parser::new(std::io::BufReader::new(line.as_bytes()), &options())
            .parse_program()
            .map_err(|_| "a command line that does not parse".to_string())?;
        for c in &program.complete_commands {
            self.list(c)?;
        }
        Ok(())
    }

    fn list(&mut self, l: &CompoundList) -> Result<(), Why> {
        for item in &l.0 {
            let and_or = &item.0;
            self.pipeline(&and_or.first)?;
            for next in &and_or.additional {
                match next {
                    AndOr::And(p) | AndOr::Or(p) => self.pipeline(p)?,
                }
            }
        }
        Ok(())
    }

    fn pipeline(&mut self, p: &Pipeline) -> Result<(), Why> {
        for c in &p.seq {
            self.command(c)?;
        }
        Ok(())
    }

    fn command(&mut self, c: &Command) -> Result<(), Why> {
        match c {
            Command::Simple(s) => self.simple(s),
            Command::Compound(CompoundCommand::BraceGroup(b), redirects) => {
                self.redirects_only(redirects.as_ref().map(|r| &r.0[..]))?;
                self.list(&b.list)
            }
            Command::Compound(CompoundCommand::Subshell(s), redirects) => {
                self.redirects_only(redirects.as_ref().map(|r| &r.0[..]))?;
                self.list(&s.list)
            }
            Command::Compound(..) => Err("a loop, condition or arithmetic command".into()),
            Command::Function(_) => Err("a function definition".into()),
            Command::ExtendedTest(..) => Err("a [[ ]] test".into()),
        }
    }

    /// Redirections on a group are judged as a command of their own (`> /etc/x`).
    fn redirects_only(&mut self, r: Option<&[IoRedirect]>) -> Result<(), Why> {
        let Some(r) = r.filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        let mut words = Vec::new();
        for x in r {
            words.push(redirect(x)?);
        }
        self.asks.push(SshAsk::Command(words.join(" ")));
        Ok(())
    }

    fn simple(&mut self, s: &SimpleCommand) -> Result<(), Why> {
        let mut redirs = Vec::new();
        if let Some(prefix) = &s.prefix {
            for item in &prefix.0 {
                match item {
                    CommandPrefixOrSuffixItem::IoRedirect(r) => redirs.push(redirect(r)?),
                    CommandPrefixOrSuffixItem::AssignmentWord(..) => {
                        return Err("a variable assignment".into())
                    }
                    _ => return Err("a process substitution".into()),
                }
            }
        }
        let mut words: Vec<String> = Vec::new();
        if let Some(name) = &s.word_or_name {
            let (text, globbed) = static_word(&name.value)?;
            if globbed {
                return Err("a pattern as the command name".into());
            }
            words.push(text);
        }
        if let Some(suffix) = &s.suffix {
            for item in &suffix.0 {
                match item {
                    CommandPrefixOrSuffixItem::Word(w) => words.push(static_word(&w.value)?.0),
                    CommandPrefixOrSuffixItem::IoRedirect(r) => redirs.push(redirect(r)?),
                    CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                        words.push(static_word(&w.value)?.0)
                    }
                    CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                        return Err("a process substitution".into())
                    }
                }
            }
        }
        if words.is_empty() && redirs.is_empty() {
            return Err("an empty command".into());
        }
        let name = words.first().map(String::as_str).unwrap_or("");
        let base = name.rsplit('/').next().unwrap_or(name);
        if EVALUATORS.contains(&base) {
            return Err(format!("`{base}`, which runs its arguments as code"));
        }
        let mut whole = words.clone();
        whole.extend(redirs);
        self.asks.push(SshAsk::Command(whole.join(" ")));
        if SHELLS.contains(&base) {
            return self.shell_c(&words);
        }
        if WRAPPERS.contains(&base) {
            // The wrapped command: past the wrapper's options (and env's NAME=VALUE).
            let rest: Vec<&String> = words[1..]
                .iter()
                .skip_while(|w| w.starts_with('-') || (base == "env" && w.contains('=')))
                .collect();
            if !rest.is_empty() {
                let inner = rest
                    .iter()
                    .map(|w| w.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                self.asks.push(SshAsk::Command(inner));
            }
        }
        Ok(())
    }

    /// `sh -c 'a; b'`: the argument is a command line of its own. A shell reading
    /// commands from anywhere else (stdin, a script file) runs what the line does not
    /// show: that is judged as the shell command itself, as written.
    fn shell_c(&mut self, words: &[String]) -> Result<(), Why> {
        let Some(i) = words
            .iter()
            .position(|w| w.starts_with('-') && w.contains('c'))
        else {
            return Ok(());
        };
        let Some(script) = words.get(i + 1) else {
            return Err("a shell -c without a command".into());
        };
        self.depth += 1;
        let r = self.line(script);
        self.depth -= 1;
        r
    }
}

fn redirect(r: &IoRedirect) -> Result<String, Why> {
    Ok(match r {
        IoRedirect::File(fd, kind, target) => {
            let fd = fd.map(|f| f.to_string()).unwrap_or_default();
            let target = match target {
                IoFileRedirectTarget::Filename(w) | IoFileRedirectTarget::Duplicate(w) => {
                    static_word(&w.value)?.0
                }
                IoFileRedirectTarget::Fd(n) => n.to_string(),
                IoFileRedirectTarget::ProcessSubstitution(..) => {
                    return Err("a process substitution".into())
                }
            };
            format!("{fd}{kind}{target}")
        }
        IoRedirect::HereDocument(_, doc) => {
            if doc.requires_expansion
                && (doc.doc.value.contains('$') || doc.doc.value.contains('`'))
            {
                return Err("a here-document with expansions".into());
            }
            "<<".to_string()
        }
        IoRedirect::HereString(_, w) => format!("<<<{}", static_word(&w.value)?.0),
        IoRedirect::OutputAndError(w, append) => {
            format!(
                "{}{}",
                if *append { "&>>" } else { "&>" },
                static_word(&w.value)?.0
            )
        }
    })
}

/// A word's text after quote removal, and whether it has unquoted pattern characters
/// (`*`, `?`, `[`), when it can be read without running anything.
fn static_word(raw: &str) -> Result<(String, bool), Why> {
    let pieces =
        word::parse(raw, &options()).map_err(|_| "a word that does not parse".to_string())?;
    let mut out = String::new();
    let mut globbed = false;
    pieces_text(&pieces, &mut out, &mut globbed, false)?;
    Ok((out, globbed))
}

fn pieces_text(
    pieces: &[WordPieceWithSource],
    out: &mut String,
    globbed: &mut bool,
    quoted: bool,
) -> Result<(), Why> {
    for p in pieces {
        match &p.piece {
            WordPiece::Text(t) => {
                if !quoted {
                    if t.contains(['{', '}']) {
                        return Err("a brace expansion".into());
                    }
                    *globbed |= t.contains(['*', '?', '[']);
                }
                out.push_str(t);
            }
            WordPiece::SingleQuotedText(t) => out.push_str(t),
            WordPiece::EscapeSequence(e) => out.push_str(e.strip_prefix('\\').unwrap_or(e)),
            WordPiece::TildeExpansion(_) => {
                // `~` and `~user` name a home folder; judged as written.
                out.push_str(&raw_tilde(p));
            }
            WordPiece::DoubleQuotedSequence(inner)
            | WordPiece::GettextDoubleQuotedSequence(inner) => {
                pieces_text(inner, out, globbed, true)?
            }
            WordPiece::AnsiCQuotedText(_) => return Err("a $'...' string".into()),
            WordPiece::ParameterExpansion(_) => return Err("a variable".into()),
            WordPiece::CommandSubstitution(_) => return Err("a command substitution $(...)".into()),
            WordPiece::BackquotedCommandSubstitution(_) => {
                return Err("a command substitution `...`".into())
            }
            WordPiece::ArithmeticExpression(_) => return Err("an arithmetic expansion".into()),
        }
    }
    Ok(())
}

fn raw_tilde(p: &WordPieceWithSource) -> String {
    match &p.piece {
        WordPiece::TildeExpansion(word::TildeExpr::UserHome(u)) => format!("~{u}"),
        WordPiece::TildeExpansion(word::TildeExpr::WorkingDir) => "~+".into(),
        WordPiece::TildeExpansion(word::TildeExpr::OldWorkingDir) => "~-".into(),
        _ => "~".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(line: &str) -> Vec<String> {
        split(line)
            .into_iter()
            .map(|a| match a {
                SshAsk::Command(c) => c,
                SshAsk::Unanalysable { why, .. } => format!("UNANALYSABLE: {why}"),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn splits_lists_and_pipelines() {
        assert_eq!(cmds("a; b && c | d"), ["a", "b", "c", "d"]);
        assert_eq!(
            cmds("ls -l /tmp || echo 'no such' \"dir\""),
            ["ls -l /tmp", "echo no such dir"]
        );
        assert_eq!(cmds("a\nb &"), ["a", "b"]);
        assert_eq!(
            cmds("(cd /tmp; rm -rf x) > /dev/null"),
            [">/dev/null", "cd /tmp", "rm -rf x"]
        );
        assert_eq!(cmds("'r'm -rf /var/www"), ["rm -rf /var/www"]);
        assert_eq!(cmds("r\\m -rf /"), ["rm -rf /"]);
        assert_eq!(
            cmds("echo hi >> /etc/motd 2>&1"),
            ["echo hi >>/etc/motd 2>&1"]
        );
        assert_eq!(cmds("ls *.log"), ["ls *.log"]);
    }

    #[test]
    fn shells_and_wrappers_are_looked_into() {
        assert_eq!(
            cmds("sh -c 'rm -rf /; ls'"),
            ["sh -c rm -rf /; ls", "rm -rf /", "ls"]
        );
        assert_eq!(cmds("sudo -n rm -rf /"), ["sudo -n rm -rf /", "rm -rf /"]);
        assert_eq!(cmds("env A=1 rm x"), ["env A=1 rm x", "rm x"]);
    }

    #[test]
    fn what_cannot_be_read_statically_is_unanalysable() {
        for line in [
            "echo $(rm -rf /)",
            "echo `id`",
            "eval \"$X\"",
            "sh -c \"$X\"",
            "$CMD -rf /",
            "echo ${HOME}",
            "A=1 ls",
            "for f in *; do rm $f; done",
            "f() { rm -rf /; }; f",
            "echo $((1+2))",
            "cat <(ls)",
            "/bin/r? -rf /",
            "rm -rf /{etc,var}",
            "echo $'\\x41'",
            "ls 'unterminated",
            "",
            "   ",
            ". ./script",
        ] {
            let got = split(line);
            assert!(
                matches!(got.as_slice(), [SshAsk::Unanalysable { .. }]),
                "{line:?} gave {got:?}"
            );
        }
    }
}
