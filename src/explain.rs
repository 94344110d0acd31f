//! `pgmoat explain`: what the gateway would do with some SQL for an identity. Shared by
//! the CLI and `POST /api/v1/explain`.

use serde::Serialize;

use crate::classify::{classify_now, Classified, ClassifyError, Facts};
use crate::policy::{Action, RuleSet, Subject};

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    pub action: &'static str,
    pub rules: Vec<String>,
    pub statements: Vec<StatementReport>,
    pub masked_columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip)]
    pub deciding: String,
    #[serde(skip)]
    pub description: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct StatementReport {
    pub kinds: Vec<&'static str>,
    pub tables_read: Vec<String>,
    pub tables_written: Vec<String>,
    pub functions: Vec<String>,
    #[serde(rename = "where")]
    pub where_: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanalysable: Option<String>,
}

fn statement(f: &Facts) -> StatementReport {
    StatementReport {
        kinds: f.kinds.iter().map(|k| k.as_str()).collect(),
        tables_read: f.tables_read.iter().cloned().collect(),
        tables_written: f.tables_written.iter().cloned().collect(),
        functions: f.functions.iter().cloned().collect(),
        where_: f.where_.describe(),
        settings: f.settings.iter().cloned().collect(),
        columns: f.columns.iter().cloned().collect(),
        unanalysable: f.unanalysable.clone(),
    }
}

/// Classify on a thread with a large stack (deep trees), then decide.
pub fn explain(rules: &RuleSet, sql: &str, who: &Subject<'_>) -> Report {
    let owned = sql.to_owned();
    let classified: Result<Classified, ClassifyError> = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || classify_now(&owned))
        .map_err(|e| ClassifyError::Parse(e.to_string()))
        .and_then(|h| h.join().unwrap_or(Err(ClassifyError::Unavailable)));
    let classified = match classified {
        Ok(c) => c,
        Err(e) => {
            return Report {
                action: Action::Block.as_str(),
                rules: vec!["unparseable".into()],
                statements: Vec::new(),
                masked_columns: Vec::new(),
                error: Some(e.to_string()),
                deciding: "unparseable".into(),
                description: e.to_string(),
            }
        }
    };
    let d = rules.decide(&classified.statements, who);
    // The gateway refuses these before the rules (see `Facts::rereads_sql`).
    if let Some(why) = classified
        .statements
        .iter()
        .find_map(|f| f.rereads_sql.clone())
    {
        return Report {
            action: Action::Block.as_str(),
            rules: vec!["parser-settings".into()],
            statements: classified.statements.iter().map(statement).collect(),
            masked_columns: Vec::new(),
            error: None,
            deciding: "parser-settings".into(),
            description: why,
        };
    }
    let masks = rules.masks_for(who);
    let mut masked: Vec<String> = classified
        .statements
        .iter()
        .flat_map(|f| f.columns.iter())
        .filter(|c| masks.iter().any(|m| m.columns.iter().any(|g| g.matches(c))))
        .cloned()
        .collect();
    masked.sort();
    masked.dedup();
    Report {
        action: d.action.as_str(),
        rules: d.rules,
        statements: classified.statements.iter().map(statement).collect(),
        masked_columns: masked,
        error: None,
        deciding: d.deciding_rule,
        description: d.description,
    }
}

impl Report {
    /// The human form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let why = if self.description.is_empty() {
            format!("rule \"{}\"", self.deciding)
        } else {
            format!("rule \"{}\": {}", self.deciding, self.description)
        };
        out.push_str(&format!("action: {} ({why})\n", self.action));
        out.push_str(&format!(
            "matched rules: {}\n",
            if self.rules.is_empty() {
                "none".to_string()
            } else {
                self.rules.join(", ")
            }
        ));
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        for (i, s) in self.statements.iter().enumerate() {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            out.push_str(&format!(
                "statement {}: kinds: {}; tables read: {}; tables written: {}; functions: {}; where: {}",
                i + 1,
                s.kinds.join(", "),
                list(&s.tables_read),
                list(&s.tables_written),
                list(&s.functions),
                s.where_
            ));
            if !s.settings.is_empty() {
                out.push_str(&format!("; settings: {}", s.settings.join(", ")));
            }
            if let Some(u) = &s.unanalysable {
                out.push_str(&format!("; unanalysable: {u}"));
            }
            out.push('\n');
        }
        out.push_str(&format!(
            "masked columns: {}\n",
            if self.masked_columns.is_empty() {
                "none".to_string()
            } else {
                self.masked_columns.join(", ")
            }
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_spec_shape() {
        let set = RuleSet::from_sources(&[(
            "r.yaml".into(),
            "rules:\n  - id: no-drop\n    when: { statement: [drop] }\n    action: block\n".into(),
        )])
        .unwrap();
        let who = Subject {
            user: "u",
            groups: &[],
            target: "t",
            search_path_changed: false,
        };
        let r = explain(&set, "DROP TABLE users", &who);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"action":"block","rules":["no-drop"],"statements":[{"kinds":["drop"],"tables_read":[],"tables_written":["public.users"],"functions":[],"where":"n/a"}],"masked_columns":[]}"#
        );
        let r = explain(&set, "SELEC 1", &who);
        assert_eq!(r.action, "block");
        assert!(r.error.is_some());
    }
}
