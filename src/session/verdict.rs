//! What the session decided about a client message, as a type that cannot say two
//! things at once: a message runs (with its masking plan), waits for an approver, or
//! is refused for a cause. The judge makes verdicts, the relay carries them through
//! audit, holds and grants, and the refusal's ErrorResponse is encoded once, when it
//! is sent ([`Refusal::encode`]).

use std::fmt;
use std::sync::Arc;

use bytes::BytesMut;

use crate::classify::lineage::Lineage;
use crate::protocol::backend::{self, ErrorFields, Severity};

/// pgmoat's own reasons to refuse, apart from anything a user named: a rule or mask
/// id can never be mistaken for one of these, whatever it is spelt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnCause {
    /// The SQL could not be read (not UTF-8, too large, a syntax error).
    Unparseable,
    /// The Query or Parse message is not what its tag says.
    Malformed,
    /// The target's catalog could not be read to judge the statement.
    Catalog,
    /// The statement changes how the server reads SQL.
    ParserSettings,
    /// The statement would change the role pinned for the identity's group.
    PinnedRole,
    /// Masked values could not be traced through the statement.
    Lineage,
    /// The audit trail could not record it.
    Audit,
    /// Too many statements or portals held for approval at once.
    Approval,
    /// A FunctionCall message: no SQL for any rule to judge.
    FunctionCall,
    /// The cluster's state database could not list a hold (`cluster:`).
    ApprovalsUnavailable,
}

impl OwnCause {
    /// The name the audit trail and the log give it (the audit format's `rules`).
    pub fn as_str(self) -> &'static str {
        match self {
            OwnCause::Unparseable => "unparseable",
            OwnCause::Malformed => "malformed",
            OwnCause::Catalog => "catalog",
            OwnCause::ParserSettings => "parser-settings",
            OwnCause::PinnedRole => "pinned-role",
            OwnCause::Lineage => "lineage",
            OwnCause::Audit => "audit",
            OwnCause::Approval => "approval",
            OwnCause::FunctionCall => "function-call",
            OwnCause::ApprovalsUnavailable => "approvals-unavailable",
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A user's rule or mask, by id.
    Rule(String),
    Own(OwnCause),
}

impl Cause {
    pub fn as_str(&self) -> &str {
        match self {
            Cause::Rule(id) => id,
            Cause::Own(c) => c.as_str(),
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: its cause, and what the client is told (an ERROR with this SQLSTATE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub cause: Cause,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    /// The ErrorResponse's routine field, for drivers that act on it.
    pub routine: Option<&'static str>,
}

impl Refusal {
    pub fn new(cause: Cause, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            cause,
            code,
            message: message.into(),
            detail: None,
            routine: None,
        }
    }

    /// A refusal for one of pgmoat's own causes.
    pub fn own(cause: OwnCause, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::new(Cause::Own(cause), code, message)
    }

    /// A refusal by a user's rule or mask.
    pub fn rule(id: impl Into<String>, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal::new(Cause::Rule(id.into()), code, message)
    }

    pub fn with_detail(mut self, detail: Option<String>) -> Refusal {
        self.detail = detail;
        self
    }

    pub fn with_routine(mut self, routine: &'static str) -> Refusal {
        self.routine = Some(routine);
        self
    }

    /// The ErrorResponse the client gets: the one place a refusal becomes bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut f = ErrorFields::new(Severity::Error, self.code, &self.message);
        if let Some(d) = &self.detail {
            f = f.detail(d);
        }
        f.routine = self.routine;
        backend::error_response(out, &f);
    }
}

/// An `approve` rule matched: what to ask.
#[derive(Clone)]
pub struct Hold {
    pub approvals: Arc<crate::approval::Approvals>,
    pub rule: String,
    pub approvers: Vec<String>,
    pub sql: String,
    /// A grant must be for this exact text: a literal's value decides what it does.
    pub exact: bool,
}

/// How an allowed message's results are masked: the lineage of its statements
/// (None when nothing masked can be involved) and which of them write a relation
/// with masked columns (bit i for statement i; see
/// [`crate::session::masker::writes_masked`]).
#[derive(Clone, Default)]
pub struct Plan {
    pub lineage: Option<Arc<Vec<Lineage>>>,
    pub writes_masked: u64,
}

/// What happens to a judged message.
pub enum Verdict {
    /// It runs, its results masked by the plan.
    Allow(Plan),
    /// It runs once an approver says yes (then by the plan).
    Hold(Box<Hold>, Plan),
    /// It does not run; the client gets the refusal.
    Refuse(Refusal),
}

impl Verdict {
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Verdict::Refuse(r) => Some(r),
            _ => None,
        }
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, Verdict::Refuse(_))
    }

    /// The plan of a message that runs (now or once approved); None when refused.
    pub fn plan(&self) -> Option<&Plan> {
        match self {
            Verdict::Allow(p) | Verdict::Hold(_, p) => Some(p),
            Verdict::Refuse(_) => None,
        }
    }

    /// Take a hold away, leaving the message allowed: its hold moves elsewhere (a
    /// Parse's waits at its Execute) or was settled (a grant, an approval).
    pub fn take_hold(&mut self) -> Option<Hold> {
        let Verdict::Hold(_, plan) = self else {
            return None;
        };
        let plan = std::mem::take(plan);
        match std::mem::replace(self, Verdict::Allow(plan)) {
            Verdict::Hold(hold, _) => Some(*hold),
            _ => None,
        }
    }

    /// Hold it for `hold`, unless it is refused.
    pub fn hold(&mut self, hold: Hold) {
        if let Verdict::Allow(plan) | Verdict::Hold(_, plan) = self {
            let plan = std::mem::take(plan);
            *self = Verdict::Hold(Box::new(hold), plan);
        }
    }

    /// Refuse it, whatever it was.
    pub fn refuse(&mut self, refusal: Refusal) {
        *self = Verdict::Refuse(refusal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::backend::{field, parse_fields};

    #[test]
    fn own_causes_keep_their_audit_names_and_never_equal_a_rule() {
        assert_eq!(Cause::Own(OwnCause::Unparseable).as_str(), "unparseable");
        assert_eq!(
            Cause::Own(OwnCause::ParserSettings).as_str(),
            "parser-settings"
        );
        // A user may call a rule "audit": it is still a rule.
        assert_ne!(Cause::Rule("audit".into()), Cause::Own(OwnCause::Audit));
    }

    #[test]
    fn a_refusal_is_encoded_when_sent() {
        let r = Refusal::rule("no-drop", "42501", "pgmoat: blocked")
            .with_detail(Some("statement 2".into()));
        let mut out = BytesMut::new();
        r.encode(&mut out);
        let fields = parse_fields(&out[5..]);
        assert_eq!(field(&fields, b'C'), "42501");
        assert_eq!(field(&fields, b'M'), "pgmoat: blocked");
        assert_eq!(field(&fields, b'D'), "statement 2");
    }

    #[test]
    fn taking_a_hold_leaves_the_plan_allowed() {
        let mut v = Verdict::Allow(Plan {
            lineage: None,
            writes_masked: 3,
        });
        assert!(v.take_hold().is_none());
        assert_eq!(v.plan().map(|p| p.writes_masked), Some(3));
        v.refuse(Refusal::own(OwnCause::Audit, "58030", "no"));
        assert!(v.is_refused() && v.plan().is_none());
    }
}
