//! Judging a Query or Parse: the judge's verdict, and what SQL `EXECUTE` of a name
//! the session prepared through the protocol brings with it (its hold; a setting its
//! parameters name).

use super::prepared::setting_refusal;
use super::Relay;
use crate::protocol::sqlstate;
use crate::session::judge::Judged;
use crate::session::verdict::{Hold, OwnCause, Refusal, Verdict};

impl Relay {
    /// Classify and decide a Query or Parse (`well_formed`: its SQL text could be
    /// read; `text`: that text, when it is valid UTF-8); a refusal when it must not
    /// run.
    pub(super) async fn judge_message(&self, well_formed: bool, text: Option<&str>) -> Judged {
        let Some(judge) = self.judge.as_ref() else {
            let mut judged = Judged::allowed(None, 1);
            judged.facts = crate::audit::StatementFacts::unjudged();
            return judged;
        };
        if !well_formed {
            // A Query or Parse that is not what its tag says: refuse rather than guess.
            return Judged::refused(Refusal::own(
                OwnCause::Malformed,
                sqlstate::PROTOCOL_VIOLATION,
                "pgmoat: malformed message",
            ));
        }
        let mut judged = judge.judge_text(text).await;
        if let Some(r) = self.executes_setting_params(&judged.executes) {
            return Judged::refused(r);
        }
        if matches!(judged.verdict, Verdict::Allow(_)) {
            // SQL's EXECUTE and Parse share the server's namespace: an EXECUTE of a
            // held Parse's name runs that statement, and asks (from a Query or a
            // Parse: a Parse's hold waits at its Execute).
            let hold = judged
                .executes
                .iter()
                .find_map(|n| self.core.names.statement(n.as_bytes())?.hold().cloned())
                .map(|held| Hold {
                    // Allowed, so the text was valid UTF-8.
                    sql: format!("{}\n-- runs: {}", text.unwrap_or_default(), held.sql),
                    ..(*held).clone()
                });
            if let Some(hold) = hold {
                judged.facts.action = crate::policy::Action::Approve;
                judged.facts.rules.insert(0, hold.rule.clone());
                judged.verdict.hold(hold);
            }
        }
        judged
    }

    /// An allowed statement that SQL-`EXECUTE`s a protocol statement naming a setting
    /// by a parameter: the EXECUTE's arguments are that parameter, and nothing reads
    /// them the way a Bind is read (review s37 V3). Refused.
    pub(super) fn executes_setting_params(&self, executes: &[String]) -> Option<Refusal> {
        let name = executes.iter().find(|n| {
            self.core
                .names
                .statement(n.as_bytes())
                .is_some_and(|s| !s.setting_params.is_empty())
        })?;
        Some(setting_refusal(&format!(
            "EXECUTE {name} runs a statement whose set_config takes the setting's name \
             from a parameter: bind it through the protocol, where pgmoat checks the name"
        )))
    }
}
