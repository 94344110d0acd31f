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
    /// Decide on one message's SQL: None to let it run.
    pub async fn judge(&self, sql: &[u8]) -> Option<Refusal> {
        let Ok(sql) = std::str::from_utf8(sql) else {
            return Some(Refusal {
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
                return Some(Refusal {
                    response: error(code, &format!("pgmoat: {e}"), None),
                    rule: "unparseable".into(),
                });
            }
        };
        // Fold in what the catalog knows (user operators, casts, domains, function bodies).
        let catalog = match self.catalog.get().await {
            Ok(c) => c,
            Err(e) => {
                return Some(Refusal {
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
        let message = match decision.action {
            Action::Allow => return None,
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
        Some(Refusal {
            response: error(
                sqlstate::INSUFFICIENT_PRIVILEGE,
                &message,
                detail.as_deref(),
            ),
            rule: decision.deciding_rule,
        })
    }
}
