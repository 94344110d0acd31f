//! Commands that run other commands: what each one runs, read from its words.
//!
//! A rule on `rm *` must also hold for `sudo -u root rm -rf /`, `timeout 5 rm ...`,
//! `/bin/rm ...` and `find / -exec rm {} +`. So a wrapper's own options are read by a
//! table of what each option takes (an option's argument is never taken for the
//! command), and what follows is judged as a command of its own. An option pgmoat does
//! not know might take an argument, so it makes the line unanalysable rather than
//! guessed at. Commands that run code pgmoat cannot read from their words (`ssh host
//! ...`, `xargs`, `python -c`, an `awk` program that calls out) are unanalysable too.

/// How one wrapper reads its words.
pub(super) struct Wrapper {
    /// Short options that take an argument (`-u root`, or attached: `-uroot`).
    pub args: &'static str,
    /// Short options that take none.
    pub flags: &'static str,
    /// Long options that take an argument when given without `=`.
    pub long_args: &'static [&'static str],
    /// Long options that take none.
    pub long_flags: &'static [&'static str],
    /// Operands before the command (`timeout DURATION cmd`, `flock FILE cmd`).
    pub operands: usize,
    /// Options after which the wrapper runs no command (`sudo -l`, `command -v`).
    pub no_command: &'static str,
    /// An option whose argument is a shell command line (`flock -c 'cmd'`).
    pub script: Option<char>,
    /// Options that make it start a shell (`sudo -s`, `sudo -i`, `doas -s`).
    pub shell: &'static str,
    /// `NAME=VALUE` words before the command are settings (`env`).
    pub assignments: bool,
    /// With no command, it starts an interactive shell (`chroot /srv`).
    pub bare_is_shell: bool,
}

const W: Wrapper = Wrapper {
    args: "",
    flags: "",
    long_args: &[],
    long_flags: &[],
    operands: 0,
    no_command: "",
    script: None,
    shell: "",
    assignments: false,
    bare_is_shell: false,
};

/// The wrappers pgmoat reads.
pub(super) fn wrapper(name: &str) -> Option<Wrapper> {
    Some(match name {
        "sudo" => Wrapper {
            args: "CDghpRrtUu",
            flags: "AbEeHiKklnPSsVv",
            long_args: &[
                "user",
                "group",
                "chdir",
                "host",
                "prompt",
                "role",
                "type",
                "other-user",
                "close-from",
                "command-timeout",
                "chroot",
            ],
            long_flags: &[
                "askpass",
                "background",
                "preserve-env",
                "edit",
                "set-home",
                "login",
                "remove-timestamp",
                "reset-timestamp",
                "list",
                "non-interactive",
                "preserve-groups",
                "stdin",
                "shell",
                "validate",
                "bell",
            ],
            no_command: "elVvK",
            shell: "si",
            ..W
        },
        "doas" => Wrapper {
            args: "uC",
            flags: "nsL",
            no_command: "CL",
            shell: "s",
            ..W
        },
        "env" => Wrapper {
            args: "uC",
            flags: "i0v",
            long_args: &["unset", "chdir"],
            long_flags: &["ignore-environment", "null", "debug"],
            assignments: true,
            ..W
        },
        "nice" => Wrapper {
            args: "n",
            long_args: &["adjustment"],
            ..W
        },
        "ionice" => Wrapper {
            args: "cnpPu",
            flags: "t",
            long_args: &["class", "classdata", "pid", "pgid", "uid"],
            long_flags: &["ignore"],
            no_command: "pPu",
            ..W
        },
        "time" => Wrapper {
            args: "fo",
            flags: "apqv",
            long_args: &["format", "output"],
            long_flags: &["append", "portability", "verbose", "quiet"],
            ..W
        },
        "nohup" | "builtin" | "busybox" => W,
        "setsid" => Wrapper {
            flags: "cfw",
            long_flags: &["ctty", "fork", "wait"],
            ..W
        },
        "exec" => Wrapper {
            args: "a",
            flags: "cl",
            ..W
        },
        "command" => Wrapper {
            flags: "pvV",
            no_command: "vV",
            ..W
        },
        "stdbuf" => Wrapper {
            args: "ioe",
            long_args: &["input", "output", "error"],
            ..W
        },
        "timeout" => Wrapper {
            args: "ks",
            flags: "v",
            long_args: &["kill-after", "signal"],
            long_flags: &["preserve-status", "foreground", "verbose"],
            operands: 1,
            ..W
        },
        "flock" => Wrapper {
            args: "wEc",
            flags: "sxeunoFv",
            long_args: &["timeout", "conflict-exit-code", "command"],
            long_flags: &[
                "shared",
                "exclusive",
                "unlock",
                "nonblock",
                "close",
                "no-fork",
                "verbose",
            ],
            operands: 1,
            script: Some('c'),
            ..W
        },
        "chroot" => Wrapper {
            long_args: &["userspec", "groups"],
            long_flags: &["skip-chdir"],
            operands: 1,
            bare_is_shell: true,
            ..W
        },
        _ => return None,
    })
}

/// Commands that run something pgmoat cannot read from the line: always unanalysable.
pub(super) const OPAQUE_RUNNERS: &[&str] = &[
    "xargs",
    "parallel",
    "ssh",
    "sshpass",
    "su",
    "runuser",
    "sg",
    "newgrp",
    "script",
    "setpriv",
    "unshare",
    "nsenter",
    "systemd-run",
    "strace",
    "ltrace",
    "gdb",
    "valgrind",
    "taskset",
    "numactl",
    "chrt",
    "cgexec",
    "firejail",
    "fakeroot",
    "eatmydata",
    "torsocks",
    "proxychains",
    "proxychains4",
    "catchsegv",
    "chpst",
    "at",
    "batch",
    "crontab",
    "expect",
];

/// Interpreters of other languages: with code on the line (`-c`, `-e`) it is
/// unanalysable; without a script operand they read code from standard input, which
/// is an interactive shell as far as rules go.
pub(super) const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "perl", "ruby", "irb", "node", "nodejs", "php", "lua", "tclsh",
    "wish", "Rscript", "julia", "pwsh", "jshell", "psql", "mysql", "sqlite3",
];

/// Whether an interpreter's option puts code on the command line: a short-option
/// cluster with `c`, `e`, `E` or `r` (`python -c`, `perl -ne`, `ruby -e`, `php -r`,
/// `psql -c`), node's `-p`, or a long `--eval`/`--exec`/`--command`/`--print`.
pub(super) fn inline_code(word: &str) -> bool {
    if let Some(long) = word.strip_prefix("--") {
        let key = long.split_once('=').map_or(long, |(k, _)| k);
        return ["eval", "exec", "command", "print"].contains(&key);
    }
    match word.strip_prefix('-') {
        Some(cluster) if !cluster.is_empty() => {
            cluster == "p" || cluster.contains(['c', 'e', 'E', 'r'])
        }
        _ => false,
    }
}

/// awk and friends: a program that starts commands (`system`, a pipe, `getline` from
/// a command) runs what pgmoat does not read.
pub(super) const AWKS: &[&str] = &["awk", "gawk", "mawk", "nawk", "busybox-awk"];

/// The words after a wrapper's options and operands: the command it runs, if any.
pub(super) enum Runs<'a> {
    /// It runs this command (its words).
    Command(&'a [String]),
    /// It runs this shell command line.
    Line(&'a str),
    /// It starts an interactive shell.
    Shell,
    /// It runs nothing more than the line shows (`sudo -l`, `nice` alone).
    Nothing,
}

/// Read `words` (the wrapper's name first) by `w`'s table.
pub(super) fn read<'a>(name: &str, w: &Wrapper, words: &'a [String]) -> Result<Runs<'a>, String> {
    let unknown = |o: &str| {
        Err(format!(
            "`{name}` with an option pgmoat does not read ({o})"
        ))
    };
    let mut i = 1;
    let mut shell = false;
    let mut nothing = false;
    while i < words.len() {
        let word = &words[i];
        if word == "--" {
            i += 1;
            break;
        }
        if let Some(long) = word.strip_prefix("--") {
            let (key, has_value) = match long.split_once('=') {
                Some((k, _)) => (k, true),
                None => (long, false),
            };
            if w.script.is_some() && key == "command" {
                let line = if has_value {
                    long.split_once('=').map(|(_, v)| v).unwrap_or("")
                } else {
                    words.get(i + 1).map(String::as_str).unwrap_or("")
                };
                return Ok(Runs::Line(line));
            }
            if w.long_args.contains(&key) {
                i += if has_value { 1 } else { 2 };
            } else if w.long_flags.contains(&key) {
                if key == "shell" || key == "login" {
                    shell = true;
                }
                if ["edit", "list", "validate", "remove-timestamp"].contains(&key) {
                    nothing = true;
                }
                i += 1;
            } else {
                return unknown(word);
            }
            continue;
        }
        if word.len() > 1 && word.starts_with('-') {
            // `nice -5`: the old form of `-n 5`.
            if name == "nice" && word[1..].bytes().all(|b| b.is_ascii_digit()) {
                i += 1;
                continue;
            }
            let cluster = &word[1..];
            let mut consumed_next = false;
            for (at, c) in cluster.char_indices() {
                if Some(c) == w.script {
                    let rest = &cluster[at + c.len_utf8()..];
                    let line = if rest.is_empty() {
                        words.get(i + 1).map(String::as_str)
                    } else {
                        Some(rest)
                    };
                    return match line {
                        Some(l) => Ok(Runs::Line(l)),
                        None => Err(format!("`{name} -{c}` without a command")),
                    };
                }
                if w.args.contains(c) {
                    // The rest of the cluster is its argument, or else the next word.
                    if at + c.len_utf8() == cluster.len() {
                        consumed_next = true;
                    }
                    if w.no_command.contains(c) {
                        nothing = true;
                    }
                    break;
                }
                if !w.flags.contains(c) {
                    return unknown(word);
                }
                if w.shell.contains(c) {
                    shell = true;
                }
                if w.no_command.contains(c) {
                    nothing = true;
                }
            }
            i += if consumed_next { 2 } else { 1 };
            continue;
        }
        if name == "env" && word == "-" {
            i += 1;
            continue;
        }
        if w.assignments && word.contains('=') && !word.starts_with('=') {
            i += 1;
            continue;
        }
        break;
    }
    if nothing {
        return Ok(Runs::Nothing);
    }
    let rest = words.get(i..).unwrap_or(&[]);
    if rest.len() < w.operands {
        return Ok(Runs::Nothing);
    }
    let command = &rest[w.operands..];
    // `flock FILE -c 'cmd'`: the script option may follow the operands.
    if let (Some(c), Some(first)) = (w.script, command.first()) {
        if *first == format!("-{c}") || first == "--command" {
            return match command.get(1) {
                Some(line) => Ok(Runs::Line(line)),
                None => Err(format!("`{name} -{c}` without a command")),
            };
        }
    }
    if command.is_empty() {
        return Ok(if shell || w.bare_is_shell {
            Runs::Shell
        } else {
            Runs::Nothing
        });
    }
    Ok(Runs::Command(command))
}

/// `find ... -exec cmd {} ;` (and `-execdir`, `-ok`, `-okdir`): the commands it runs.
pub(super) fn find_execs(words: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < words.len() {
        if matches!(words[i].as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
            let start = i + 1;
            let mut end = start;
            while end < words.len() && words[end] != ";" && words[end] != "+" {
                end += 1;
            }
            if start < end {
                out.push(&words[start..end]);
            }
            i = end + 1;
        } else {
            i += 1;
        }
    }
    out
}
