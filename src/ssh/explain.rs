//! `pgmoat explain --ssh "COMMAND LINE"`: what the SSH door would do with an exec
//! request for an identity, and the simple commands the rules saw.

use serde::Serialize;

use crate::policy::ssh::SshAsk;
use crate::policy::{RuleSet, Subject};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SshReport {
    pub action: &'static str,
    pub rules: Vec<String>,
    pub rule: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub commands: Vec<CommandReport>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CommandReport {
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanalysable: Option<String>,
}

pub fn explain(rules: &RuleSet, line: &str, who: &Subject<'_>) -> SshReport {
    let asks = super::command::split(line);
    let d = rules.decide_ssh(&asks, who);
    SshReport {
        action: d.action.as_str(),
        rules: d.rules,
        rule: d.deciding_rule,
        description: d.description,
        commands: asks
            .into_iter()
            .map(|a| match a {
                SshAsk::Command(c) => CommandReport {
                    command: c,
                    unanalysable: None,
                },
                SshAsk::Unanalysable { text, why } => CommandReport {
                    command: text,
                    unanalysable: Some(why),
                },
                SshAsk::Shell => CommandReport {
                    command: "(shell)".into(),
                    unanalysable: None,
                },
                SshAsk::Subsystem(n) => CommandReport {
                    command: format!("(subsystem {n})"),
                    unanalysable: None,
                },
            })
            .collect(),
    }
}

impl SshReport {
    pub fn render(&self) -> String {
        let why = if self.description.is_empty() {
            format!("rule \"{}\"", self.rule)
        } else {
            format!("rule \"{}\": {}", self.rule, self.description)
        };
        let mut out = format!("action: {} ({why})\n", self.action);
        out.push_str(&format!(
            "matched rules: {}\n",
            if self.rules.is_empty() {
                "none".to_string()
            } else {
                self.rules.join(", ")
            }
        ));
        for (i, c) in self.commands.iter().enumerate() {
            match &c.unanalysable {
                Some(why) => out.push_str(&format!(
                    "command {}: {:?} is unanalysable: {why}\n",
                    i + 1,
                    c.command
                )),
                None => out.push_str(&format!("command {}: {}\n", i + 1, c.command)),
            }
        }
        out
    }
}
