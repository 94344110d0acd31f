//! An exec request's command line, split into the simple commands the rules judge
//! (SPEC section 8), with brush-parser (a maintained POSIX/bash parser).
//!
//! Conservative by design: a command line is judged by what it says, so anything whose
//! meaning depends on run time (command or process substitution, variables, arithmetic,
//! `eval`, assignments before a command, loops and functions, a glob as the command
//! name) makes the whole line one `Unanalysable` ask, and a line that does not parse
//! is unanalysable too.

use brush_parser::ast::{
    AndOr, Command, CommandPrefixOrSuffixItem, CompoundCommand, CompoundList, IoFileRedirectKind,
    IoFileRedirectTarget, IoRedirect, Pipeline, SimpleCommand,
};
use brush_parser::word::{self, WordPiece, WordPieceWithSource};
use brush_parser::{Parser, ParserOptions};

use super::runners;
use crate::policy::ssh::SshAsk;

/// Longer command lines are not parsed (and so not run): no real exec line is this long.
pub const MAX_COMMAND_LINE: usize = 64 * 1024;
/// `sh -c "..."` inside `sh -c "..."`: this deep and no deeper.
const MAX_NESTING: usize = 4;

/// Shells whose `-c` argument is a command line of its own, judged like the outer one.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "csh", "tcsh", "fish", "rbash",
];
/// Commands that evaluate their arguments as shell code.
const EVALUATORS: &[&str] = &["eval", "source", ".", "trap"];
/// Long options of the shells that take an argument.
const SHELL_LONG_ARGS: &[&str] = &["rcfile", "init-file"];
/// Long options of the shells that take none.
const SHELL_LONG_FLAGS: &[&str] = &[
    "norc",
    "noprofile",
    "login",
    "posix",
    "restricted",
    "verbose",
    "noediting",
    "debugger",
    "dump-strings",
    "dump-po-strings",
    "pretty-print",
    "help",
    "version",
];

/// Where a simple command's standard input comes from, as far as a shell on it cares.
#[derive(Clone, Copy)]
enum Stdin<'a> {
    /// The channel: what the client sends (an interactive shell, as rules see it).
    Channel,
    /// A here-document or here-string: this text.
    Text(&'a str),
    /// Another command's output (`... | sh`): not readable statically.
    Pipe,
    /// A file on the target (`sh < script`): judged as written, like `sh script`.
    File,
}

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
        for (i, c) in p.seq.iter().enumerate() {
            self.command(c, i > 0)?;
        }
        Ok(())
    }

    fn command(&mut self, c: &Command, piped: bool) -> Result<(), Why> {
        match c {
            Command::Simple(s) => self.simple(s, piped),
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

    fn simple(&mut self, s: &SimpleCommand, piped: bool) -> Result<(), Why> {
        let mut redirs = Vec::new();
        let mut stdin = if piped { Stdin::Pipe } else { Stdin::Channel };
        let mut here = String::new();
        let note_stdin = |r: &IoRedirect, here: &mut String| match r {
            IoRedirect::HereDocument(fd, doc) if fd.is_none_or(|f| f == 0) => {
                *here = doc.doc.value.clone();
                true
            }
            IoRedirect::HereString(fd, w) if fd.is_none_or(|f| f == 0) => {
                *here = static_word(&w.value).map(|t| t.0).unwrap_or_default();
                true
            }
            _ => false,
        };
        let mut from_file = false;
        let mut from_text = false;
        let mut items: Vec<&IoRedirect> = Vec::new();
        if let Some(prefix) = &s.prefix {
            for item in &prefix.0 {
                match item {
                    CommandPrefixOrSuffixItem::IoRedirect(r) => items.push(r),
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
                    CommandPrefixOrSuffixItem::IoRedirect(r) => items.push(r),
                    CommandPrefixOrSuffixItem::AssignmentWord(_, w) => {
                        words.push(static_word(&w.value)?.0)
                    }
                    CommandPrefixOrSuffixItem::ProcessSubstitution(..) => {
                        return Err("a process substitution".into())
                    }
                }
            }
        }
        for r in items {
            redirs.push(redirect(r)?);
            if note_stdin(r, &mut here) {
                from_text = true;
            } else if let IoRedirect::File(fd, IoFileRedirectKind::Read, _) = r {
                if fd.is_none_or(|f| f == 0) {
                    from_file = true;
                }
            }
        }
        if from_text {
            stdin = Stdin::Text(&here);
        } else if from_file {
            stdin = Stdin::File;
        }
        if words.is_empty() && redirs.is_empty() {
            return Err("an empty command".into());
        }
        let mut whole = words.clone();
        whole.extend(redirs);
        self.asks.push(SshAsk::Command(whole.join(" ")));
        if words.is_empty() {
            return Ok(());
        }
        self.runs(&words, stdin)
    }

    /// What `words` runs besides itself, judged as well: the command under a
    /// wrapper, a shell's script, `find -exec`'s command; and a path-qualified
    /// command also by its plain name (`/bin/rm -rf x` is `rm -rf x` to the rules).
    fn runs(&mut self, words: &[String], stdin: Stdin<'_>) -> Result<(), Why> {
        let name = words[0].as_str();
        let base = name.rsplit('/').next().unwrap_or(name);
        if base.is_empty() {
            return Err("a command name ending in /".into());
        }
        if base != name {
            let mut plain = vec![base.to_owned()];
            plain.extend_from_slice(&words[1..]);
            self.asks.push(SshAsk::Command(plain.join(" ")));
        }
        if EVALUATORS.contains(&base) {
            return Err(format!("`{base}`, which runs its arguments as code"));
        }
        if runners::OPAQUE_RUNNERS.contains(&base) {
            return Err(format!("`{base}`, which runs commands pgmoat cannot read"));
        }
        if SHELLS.contains(&base) {
            return self.shell(words, stdin);
        }
        if runners::INTERPRETERS.contains(&base) {
            if words[1..].iter().any(|w| runners::inline_code(w)) {
                return Err(format!("`{base}` with code on the command line"));
            }
            let script = words[1..].iter().any(|w| !w.starts_with('-'));
            return match stdin {
                Stdin::Channel if !script => self.push_shell(),
                Stdin::Pipe | Stdin::Text(_) if !script => {
                    Err(format!("`{base}` reading code from its input"))
                }
                _ => Ok(()),
            };
        }
        if runners::AWKS.contains(&base)
            && words[1..]
                .iter()
                .any(|w| w.contains("system") || w.contains('|') || w.contains("getline"))
        {
            return Err(format!("an `{base}` program that starts commands"));
        }
        if base == "find" {
            for exec in runners::find_execs(words) {
                self.asks.push(SshAsk::Command(exec.join(" ")));
                self.nested(|s| s.runs(exec, Stdin::File))?;
            }
            return Ok(());
        }
        let Some(w) = runners::wrapper(base) else {
            return Ok(());
        };
        match runners::read(base, &w, words)? {
            runners::Runs::Command(inner) => {
                self.asks.push(SshAsk::Command(inner.join(" ")));
                self.nested(|s| s.runs(inner, stdin))
            }
            runners::Runs::Line(line) => {
                let line = line.to_owned();
                self.nested(|s| s.line(&line))
            }
            runners::Runs::Shell => self.shell_on(stdin),
            runners::Runs::Nothing => Ok(()),
        }
    }

    /// One level deeper, bounded like `sh -c` inside `sh -c`.
    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<(), Why>) -> Result<(), Why> {
        self.depth += 1;
        let r = if self.depth > MAX_NESTING {
            Err("commands nested too deeply".into())
        } else {
            f(self)
        };
        self.depth -= 1;
        r
    }

    /// An interactive shell on the channel: the rules see it as `ssh_shell`.
    fn push_shell(&mut self) -> Result<(), Why> {
        if !self.asks.contains(&SshAsk::Shell) {
            self.asks.push(SshAsk::Shell);
        }
        Ok(())
    }

    /// A shell that reads its commands from standard input.
    fn shell_on(&mut self, stdin: Stdin<'_>) -> Result<(), Why> {
        match stdin {
            Stdin::Channel => self.push_shell(),
            Stdin::Text(script) => {
                let script = script.to_owned();
                self.nested(|s| s.line(&script))
            }
            Stdin::Pipe => Err("a shell reading commands from a pipe".into()),
            Stdin::File => Ok(()),
        }
    }

    /// `sh -c 'a; b'`: the argument is a command line of its own. A shell reading
    /// commands from standard input is an interactive shell (the channel's), or the
    /// here-document's text; one running a script file on the target is judged as
    /// written (`bash deploy.sh`). Options are read as the shells read them: an
    /// option's argument is never taken for the script.
    fn shell(&mut self, words: &[String], stdin: Stdin<'_>) -> Result<(), Why> {
        let mut i = 1;
        let (mut command_mode, mut stdin_mode) = (false, false);
        while i < words.len() {
            let w = words[i].as_str();
            if w == "--" || w == "-" {
                i += 1;
                break;
            }
            if let Some(long) = w.strip_prefix("--") {
                let key = long.split_once('=').map_or(long, |(k, _)| k);
                if SHELL_LONG_ARGS.contains(&key) {
                    i += if long.contains('=') { 1 } else { 2 };
                } else if SHELL_LONG_FLAGS.contains(&key) {
                    i += 1;
                } else {
                    return Err(format!("a shell option pgmoat does not read ({w})"));
                }
                continue;
            }
            let Some(cluster) = w.strip_prefix('-').or_else(|| w.strip_prefix('+')) else {
                break;
            };
            let mut takes = 0;
            for c in cluster.chars() {
                match c {
                    'c' => command_mode = true,
                    's' | 'i' => stdin_mode = true,
                    // `-o errexit`, `-O extglob`: the next word is the option's name.
                    'o' | 'O' => takes += 1,
                    c if c.is_ascii_alphabetic() => {}
                    _ => return Err(format!("a shell option pgmoat does not read ({w})")),
                }
            }
            i += 1 + takes;
        }
        let operand = words.get(i);
        if command_mode {
            let Some(script) = operand else {
                return Err("a shell -c without a command".into());
            };
            let script = script.clone();
            return self.nested(|s| s.line(&script));
        }
        if stdin_mode || operand.is_none() {
            return self.shell_on(stdin);
        }
        Ok(())
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
                    // `{a,b}` and `{1..9}` expand (even with quoted parts); `{}`
                    // (find's) never does. Any other brace is read as an expansion.
                    if t.replace("{}", "").contains(['{', '}']) {
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

    /// Whether some ask of `line` is exactly `want` (what an `ssh_commands` glob
    /// anchored on `want` would see).
    fn asks_for(line: &str, want: &str) -> bool {
        split(line).contains(&SshAsk::Command(want.to_owned()))
    }

    #[test]
    fn wrapper_options_never_hide_the_command() {
        for (line, inner) in [
            ("sudo -u root rm -rf /var/www", "rm -rf /var/www"),
            ("sudo -uroot -g wheel rm -rf /var/www", "rm -rf /var/www"),
            ("sudo --user=root -- rm -rf /var/www", "rm -rf /var/www"),
            ("sudo --user root rm -rf /var/www", "rm -rf /var/www"),
            ("doas -u root rm -rf /var/www", "rm -rf /var/www"),
            ("nice -n 5 rm -rf /var/www", "rm -rf /var/www"),
            ("nice -5 rm -rf /var/www", "rm -rf /var/www"),
            ("ionice -c 3 rm -rf /var/www", "rm -rf /var/www"),
            ("env -u HOME A=1 rm -rf /var/www", "rm -rf /var/www"),
            ("env -i - rm -rf /var/www", "rm -rf /var/www"),
            ("timeout -s KILL 5 rm -rf /var/www", "rm -rf /var/www"),
            (
                "timeout 5 sudo -u x nice rm -rf /var/www",
                "rm -rf /var/www",
            ),
            ("flock /tmp/l rm -rf /var/www", "rm -rf /var/www"),
            ("flock -w 3 /tmp/l -c 'rm -rf /var/www'", "rm -rf /var/www"),
            ("chroot / rm -rf /var/www", "rm -rf /var/www"),
            ("stdbuf -oL rm -rf /var/www", "rm -rf /var/www"),
            ("busybox rm -rf /var/www", "rm -rf /var/www"),
            ("/bin/rm -rf /var/www", "rm -rf /var/www"),
            ("sudo /usr/bin/rm -rf /var/www", "rm -rf /var/www"),
            ("find /var/www -exec rm -rf '{}' +", "rm -rf {}"),
            ("find /var/www -execdir /bin/rm -rf {} \\;", "rm -rf {}"),
        ] {
            assert!(asks_for(line, inner), "{line:?} gave {:?}", split(line));
        }
        // Options after which nothing more runs.
        assert_eq!(cmds("sudo -l"), ["sudo -l"]);
        assert_eq!(cmds("command -v rm"), ["command -v rm"]);
    }

    #[test]
    fn shell_options_never_hide_the_script() {
        for line in [
            "sh -c -e 'rm -rf /var/www'",
            "bash --norc -c 'rm -rf /var/www'",
            "sh -c -- 'rm -rf /var/www'",
            "bash --rcfile /dev/null -c 'rm -rf /var/www'",
            "bash -o errexit -c 'rm -rf /var/www'",
            "bash -ec 'rm -rf /var/www'",
            "sudo -u root sh -c 'rm -rf /var/www'",
            "bash <<'EOF'\nrm -rf /var/www\nEOF",
            "bash <<< 'rm -rf /var/www'",
            "sh -s <<< 'rm -rf /var/www'",
        ] {
            assert!(
                asks_for(line, "rm -rf /var/www"),
                "{line:?} gave {:?}",
                split(line)
            );
        }
    }

    #[test]
    fn a_shell_on_the_channel_is_a_shell() {
        for line in [
            "bash",
            "bash -i",
            "sh -s",
            "sudo -i",
            "sudo -s",
            "doas -s",
            "chroot /srv",
            "python3",
        ] {
            assert!(
                split(line).contains(&SshAsk::Shell),
                "{line:?} gave {:?}",
                split(line)
            );
        }
        // A script file on the target is judged as written.
        assert_eq!(cmds("bash deploy.sh"), ["bash deploy.sh"]);
        assert_eq!(cmds("sh < deploy.sh"), ["sh <deploy.sh"]);
        assert_eq!(cmds("python3 job.py --fast"), ["python3 job.py --fast"]);
    }

    #[test]
    fn runners_that_hide_what_they_run_are_unanalysable() {
        for line in [
            "echo 'rm -rf /' | sh",
            "cat x | bash -s",
            "ls | xargs rm",
            "ssh other rm -rf /",
            "su -c 'rm -rf /'",
            "runuser -u x -- rm -rf /",
            "script -qc 'rm -rf /' /dev/null",
            "python3 -c 'import os'",
            "perl -ne 'print'",
            "node -e 'x'",
            "php -r 'x'",
            "awk 'BEGIN{system(\"rm -rf /\")}'",
            "awk '{print | \"sh\"}' f",
            "sudo --frobnicate rm -rf /",
            "sudo -Z rm -rf /",
            "env -S 'rm -rf /'",
            "bash --weird -c 'ls'",
            "echo 'print(1)' | python3",
        ] {
            let got = split(line);
            assert!(
                got.iter().any(|a| matches!(a, SshAsk::Unanalysable { .. })),
                "{line:?} gave {got:?}"
            );
        }
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
