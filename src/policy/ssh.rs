//! SSH conditions (SPEC section 8): `ssh_commands`, `ssh_shell`, `ssh_subsystems`, and
//! how a channel's request is judged with them.
//!
//! A SQL statement has no SSH facts, so a rule with an `ssh_*` condition never matches
//! SQL; an SSH request has no SQL facts, so a rule with `statement:`, `tables:` and the
//! like never matches SSH. `users`, `groups` and `targets` apply to both.

use regex::Regex;

use super::raw::RawCond;
use super::{Action, Compiler, Cond, Decision, Rule, RuleSet, Subject};

/// The `ssh_*` part of a condition.
#[derive(Debug, Clone, Default)]
pub(super) struct SshCond {
    commands: Option<Vec<CommandGlob>>,
    shell: Option<bool>,
    subsystems: Option<Vec<CommandGlob>>,
}

impl SshCond {
    pub(super) fn is_set(&self) -> bool {
        self.commands.is_some() || self.shell.is_some() || self.subsystems.is_some()
    }
}

/// A glob over a whole command line: `*` matches any run of characters, spaces and
/// slashes included; `?` one character. Matches the whole text, never a part.
#[derive(Debug, Clone)]
pub struct CommandGlob {
    pattern: String,
    re: Regex,
}

impl CommandGlob {
    pub fn new(pattern: &str) -> Result<CommandGlob, String> {
        if pattern.trim().is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        let mut re = String::with_capacity(pattern.len() + 8);
        re.push_str("(?s)^");
        for c in pattern.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        re.push('$');
        let re = Regex::new(&re).map_err(|e| format!("pattern {pattern:?}: {e}"))?;
        Ok(CommandGlob {
            pattern: pattern.to_owned(),
            re,
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        self.re.is_match(text)
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

/// One thing an SSH channel asks for, as the rules see it. An exec request is one
/// `Command` per simple command of its line (or one `Unanalysable` for the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshAsk {
    /// A simple command, its words unquoted and joined by single spaces.
    Command(String),
    /// A command line pgmoat cannot read statically (`$(...)`, backticks, `eval`,
    /// variables, ...): refused unless a rule that names no command allows it.
    Unanalysable { text: String, why: String },
    /// An interactive shell.
    Shell,
    /// A subsystem such as `sftp`.
    Subsystem(String),
}

impl SshAsk {
    /// The text an `ssh_commands` pattern is matched against; None when no pattern can
    /// match (an unanalysable line: a pattern written for readable commands must not
    /// let `ls $(rm -rf /)` through as `ls *`).
    fn command(&self) -> Option<&str> {
        match self {
            SshAsk::Command(c) => Some(c),
            _ => None,
        }
    }
}

impl Cond {
    /// Whether this condition holds for an SSH request.
    fn matches_ssh(&self, ask: &SshAsk, who: &Subject<'_>) -> bool {
        // Neither SQL nor `http_*` conditions are ever about an SSH channel.
        if self.has_sql_conditions() || self.has_http_conditions() {
            return false;
        }
        let s = &self.ssh;
        if let Some(globs) = &s.commands {
            match ask.command() {
                Some(c) if globs.iter().any(|g| g.matches(c)) => {}
                _ => return false,
            }
        }
        if let Some(shell) = s.shell {
            if matches!(ask, SshAsk::Shell) != shell {
                return false;
            }
        }
        if let Some(globs) = &s.subsystems {
            match ask {
                SshAsk::Subsystem(n) if globs.iter().any(|g| g.matches(n)) => {}
                _ => return false,
            }
        }
        self.matches_who(who)
    }
}

impl Rule {
    fn applies_ssh(&self, ask: &SshAsk, who: &Subject<'_>) -> bool {
        self.when.matches_ssh(ask, who)
            && !self
                .unless
                .as_ref()
                .is_some_and(|u| u.matches_ssh(ask, who))
    }
}

impl RuleSet {
    /// Judge an SSH channel's request: every part is judged and the strictest action
    /// over all parts applies to the whole (a pipeline with one blocked command is
    /// blocked whole). `Decision::statement` is the index of the deciding part.
    pub fn decide_ssh(&self, asks: &[SshAsk], who: &Subject<'_>) -> Decision {
        let mut best = Decision {
            action: Action::Block,
            rules: Vec::new(),
            deciding_rule: "unanalysable".into(),
            description: "an empty request".into(),
            statement: None,
        };
        let mut first = true;
        for (i, ask) in asks.iter().enumerate() {
            let matched: Vec<&Rule> = self
                .rules
                .iter()
                .filter(|r| r.applies_ssh(ask, who))
                .collect();
            for r in &matched {
                if !best.rules.contains(&r.id) {
                    best.rules.push(r.id.clone());
                }
            }
            let strictest = super::strictest(&matched);
            let (action, rule, description) = match (strictest, ask) {
                (Some(r), _) => (r.action, r.id.clone(), r.description.clone()),
                (None, SshAsk::Unanalysable { why, .. }) => (
                    Action::Block,
                    "unanalysable".to_string(),
                    format!("pgmoat cannot judge {why} statically; a rule must allow it"),
                ),
                (None, _) => self.by_default("request"),
            };
            if first || action > best.action {
                best.action = action;
                best.deciding_rule = rule;
                best.description = description;
                best.statement = Some(i);
                first = false;
            }
        }
        best
    }
}

impl Compiler<'_> {
    pub(super) fn ssh_cond(&mut self, id: &str, c: &RawCond) -> SshCond {
        SshCond {
            commands: self.patterns(id, "ssh_commands", &c.ssh_commands, CommandGlob::new),
            shell: c.ssh_shell,
            subsystems: self.patterns(id, "ssh_subsystems", &c.ssh_subsystems, CommandGlob::new),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Facts;

    const RULES: &str = r#"
rules:
  - id: no-rm-rf
    description: Deleting trees goes through a ticket.
    when: { ssh_commands: ["rm -rf *", "rm -fr *"] }
    action: block
  - id: restarts-need-approval
    when: { ssh_commands: ["systemctl restart *"], groups: [agents] }
    action: approve
    approvers: [ops]
  - id: no-shell-for-agents
    when: { ssh_shell: true, groups: [agents] }
    action: block
  - id: sftp-ok
    when: { ssh_subsystems: [sftp] }
    action: allow
  - id: ops-anything
    when: { groups: [ops] }
    action: allow
  - id: no-drop
    when: { statement: [drop] }
    action: block
"#;

    fn rules() -> RuleSet {
        RuleSet::from_sources(&[("r.yaml".into(), RULES.into())]).expect("valid rules")
    }

    fn who<'a>(groups: &'a [String]) -> Subject<'a> {
        Subject {
            user: "agent-1",
            groups,
            target: "web-1",
            search_path_changed: false,
        }
    }

    fn cmd(s: &str) -> SshAsk {
        SshAsk::Command(s.into())
    }

    #[test]
    fn table() {
        let agents = vec!["agents".to_string()];
        let ops = vec!["ops".to_string()];
        let unanalysable = SshAsk::Unanalysable {
            text: "ls $(x)".into(),
            why: "a command substitution".into(),
        };
        let cases: Vec<(Vec<SshAsk>, &[String], Action, &str)> = vec![
            (vec![cmd("ls -l /tmp")], &agents, Action::Allow, "default"),
            (
                vec![cmd("rm -rf /var/www")],
                &agents,
                Action::Block,
                "no-rm-rf",
            ),
            // The strictest part decides the whole line.
            (
                vec![cmd("ls"), cmd("rm -rf /")],
                &agents,
                Action::Block,
                "no-rm-rf",
            ),
            (
                vec![cmd("systemctl restart nginx")],
                &agents,
                Action::Approve,
                "restarts-need-approval",
            ),
            (
                vec![SshAsk::Shell],
                &agents,
                Action::Block,
                "no-shell-for-agents",
            ),
            (vec![SshAsk::Shell], &ops, Action::Allow, "ops-anything"),
            (
                vec![SshAsk::Subsystem("sftp".into())],
                &agents,
                Action::Allow,
                "sftp-ok",
            ),
            (
                vec![unanalysable.clone()],
                &agents,
                Action::Block,
                "unanalysable",
            ),
            // A rule naming no command (ops may run anything) allows it.
            (vec![unanalysable], &ops, Action::Allow, "ops-anything"),
            // An ssh_commands glob crosses spaces and slashes.
            (vec![cmd("rm -rf a/b c")], &ops, Action::Block, "no-rm-rf"),
            (vec![], &ops, Action::Block, "unanalysable"),
        ];
        let set = rules();
        for (asks, groups, action, rule) in cases {
            let d = set.decide_ssh(&asks, &who(groups));
            assert_eq!(
                (d.action, d.deciding_rule.as_str()),
                (action, rule),
                "{asks:?}"
            );
        }
    }

    #[test]
    fn sql_and_ssh_conditions_stay_apart() {
        let set = rules();
        let agents = vec!["agents".to_string()];
        // `no-drop` (statement:) never matches an SSH request ...
        let d = set.decide_ssh(&[cmd("drop")], &who(&agents));
        assert!(!d.rules.contains(&"no-drop".to_string()));
        // ... and an ssh_* rule never matches SQL, even with no SQL conditions.
        let d = set.decide(&[Facts::default()], &who(&agents));
        assert!(d.rules.is_empty(), "{d:?}");
    }

    #[test]
    fn bad_patterns_and_types_are_reported() {
        let bad = "rules:\n  - id: x\n    when: { ssh_commands: [\"\"], ssh_shell: maybe }\n    action: block\n";
        let errs = RuleSet::from_sources(&[("b.yaml".into(), bad.into())]).unwrap_err();
        assert!(
            errs.iter().any(|e| e.contains("expected a boolean")),
            "{errs:?}"
        );
        let bad = "rules:\n  - id: x\n    when: { ssh_commands: [\"\"] }\n    action: block\n";
        let errs = RuleSet::from_sources(&[("b.yaml".into(), bad.into())]).unwrap_err();
        assert!(errs[0].contains("rule \"x\": ssh_commands"), "{errs:?}");
    }
}
