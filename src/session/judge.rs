//! The rule engine's seat in the session: Query and Parse texts are classified and
//! decided here; a refusal becomes the ErrorResponse the client will see.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::BytesMut;

use crate::auth::Identity;
use crate::classify::{Classifier, ClassifyError};
use crate::policy::reload::RulesHandle;
use crate::policy::{Action, Subject};
use crate::protocol::backend::{self, ErrorFields, Severity};
use crate::protocol::sqlstate;

pub struct Judge {
    pub classifier: Arc<Classifier>,
    pub rules: Arc<RulesHandle>,
    pub identity: Identity,
    pub target: String,
    /// Set once the session changes search_path (at startup or by any statement the
    /// rules let through); from then on unqualified tables could be in any schema.
    pub search_path_changed: std::sync::atomic::AtomicBool,
    pub catalog: Arc<super::catalog::CatalogCache>,
}

/// A refusal: the ErrorResponse to send, and a line for the log.
pub struct Refusal {
    pub response: BytesMut,
    pub rule: String,
}

/// What the judge decided, and the facts the audit record holds.
pub struct Judged {
    /// None: let it run.
    pub refusal: Option<Refusal>,
    pub facts: crate::audit::StatementFacts,
}

impl Judged {
    /// Refused before any rule could look (not UTF-8, unparseable, no catalog).
    fn early(refusal: Refusal) -> Judged {
        let facts = crate::audit::StatementFacts {
            action: "block",
            rules: vec![refusal.rule.clone()],
            ..Default::default()
        };
        Judged {
            refusal: Some(refusal),
            facts,
        }
    }
}

/// An ErrorResponse (severity ERROR) for the client.
pub fn error(code: &str, message: &str, detail: Option<&str>) -> BytesMut {
    let mut out = BytesMut::new();
    let mut f = ErrorFields::new(Severity::Error, code, message);
    if let Some(d) = detail {
        f = f.detail(d);
    }
    backend::error_response(&mut out, &f);
    out
}

impl Judge {
    /// Decide on one message's SQL.
    pub async fn judge(&self, sql: &[u8]) -> Judged {
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Judged::early(Refusal {
                response: error(
                    sqlstate::SYNTAX_ERROR,
                    "pgmoat: the statement is not valid UTF-8",
                    None,
                ),
                rule: "unparseable".into(),
            });
        };
        let classified = match self.classifier.classify(sql).await {
            Ok(c) => c,
            Err(e) => {
                let code = match e {
                    ClassifyError::TooLarge(..) => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                    ClassifyError::Parse(_) => sqlstate::SYNTAX_ERROR,
                    ClassifyError::Unavailable => sqlstate::INTERNAL_ERROR,
                };
                return Judged::early(Refusal {
                    response: error(code, &format!("pgmoat: {e}"), None),
                    rule: "unparseable".into(),
                });
            }
        };
        // Fold in what the catalog knows (user operators, casts, domains, function bodies).
        let catalog = match self.catalog.get().await {
            Ok(c) => c,
            Err(e) => {
                return Judged::early(Refusal {
                    response: error(
                        sqlstate::INTERNAL_ERROR,
                        &format!(
                        "pgmoat: cannot read target \"{}\"'s catalog to judge the statement: {e}",
                        self.target
                    ),
                        None,
                    ),
                    rule: "catalog".into(),
                })
            }
        };
        let resolved: Option<Vec<crate::classify::Facts>> = {
            let r: Vec<Option<crate::classify::Facts>> = classified
                .statements
                .iter()
                .map(|f| catalog.resolve(f))
                .collect();
            r.iter().any(Option::is_some).then(|| {
                r.into_iter()
                    .zip(classified.statements.iter())
                    .map(|(r, f)| r.unwrap_or_else(|| f.clone()))
                    .collect()
            })
        };
        let statements = resolved.as_deref().unwrap_or(&classified.statements);
        let rules = self.rules.current();
        let decision = rules.decide(
            statements,
            &Subject {
                user: &self.identity.name,
                groups: &self.identity.groups,
                target: &self.target,
                search_path_changed: self.search_path_changed.load(Relaxed),
            },
        );
        if decision.action == Action::Allow {
            use crate::classify::Kind;
            let ddl = statements.iter().any(|f| {
                f.kinds
                    .iter()
                    .any(|k| matches!(k, Kind::Create | Kind::Alter | Kind::Drop | Kind::Extension))
            });
            if ddl {
                // It may define an operator, cast, domain or function: look again next time.
                self.catalog.mark_stale();
            }
            let changes_path = statements.iter().any(|f| {
                f.settings
                    .iter()
                    .any(|s| matches!(s.as_str(), "search_path" | "*" | "all"))
            });
            if changes_path {
                self.search_path_changed.store(true, Relaxed);
            }
        }
        let facts = decision
            .statement
            .and_then(|i| statements.get(i).map(|f| (i, f)));
        let detail = facts.map(|(i, f)| {
            if statements.len() > 1 {
                format!("statement {}: {}", i + 1, f.summary())
            } else {
                f.summary()
            }
        });
        let facts = audit_facts(statements, &decision);
        let message = match decision.action {
            Action::Allow => {
                return Judged {
                    refusal: None,
                    facts,
                }
            }
            Action::Block if decision.description.is_empty() => {
                format!("pgmoat: blocked by rule \"{}\"", decision.deciding_rule)
            }
            Action::Block => format!(
                "pgmoat: blocked by rule \"{}\": {}",
                decision.deciding_rule, decision.description
            ),
            // Holding for approval arrives with the approvals work; until then such a
            // statement does not run (fail closed).
            Action::Approve => format!(
                "pgmoat: blocked by rule \"{}\": it requires approval, and this gateway cannot hold statements for approval yet",
                decision.deciding_rule
            ),
        };
        Judged {
            refusal: Some(Refusal {
                response: error(
                    sqlstate::INSUFFICIENT_PRIVILEGE,
                    &message,
                    detail.as_deref(),
                ),
                rule: decision.deciding_rule,
            }),
            facts,
        }
    }
}

/// The audit record's view of a decision: kinds and tables over all statements, and
/// the rule ids with the deciding one first.
fn audit_facts(
    statements: &[crate::classify::Facts],
    decision: &crate::policy::Decision,
) -> crate::audit::StatementFacts {
    let mut kinds = std::collections::BTreeSet::new();
    let mut tables = std::collections::BTreeSet::new();
    for f in statements {
        kinds.extend(f.kinds.iter().map(|k| k.as_str().to_owned()));
        tables.extend(f.tables_read.iter().cloned());
        tables.extend(f.tables_written.iter().cloned());
    }
    let mut rules = Vec::new();
    if decision.action != Action::Allow || decision.deciding_rule != "default" {
        rules.push(decision.deciding_rule.clone());
    }
    for r in &decision.rules {
        if !rules.contains(r) {
            rules.push(r.clone());
        }
    }
    crate::audit::StatementFacts {
        kinds: kinds.into_iter().collect(),
        tables: tables.into_iter().collect(),
        action: decision.action.as_str(),
        rules,
        masked_columns: Vec::new(),
    }
}
