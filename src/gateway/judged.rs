//! The rules' judgement of a request, remembered. An HTTP decision depends only on
//! the rule set, the caller (user, groups), the target, the method and the normalised
//! path (no HTTP condition looks at anything else), so the same request from the same
//! caller is judged once per rule set; the response masks that apply (which depend on
//! the caller and target only) are compiled with it.
//!
//! The key names the rule set by address and the entry holds that rule set, so the
//! address cannot be reused by a newer rule set while the entry lives: a reload
//! simply starts missing, and the old entries age out of the bounded cache.

use std::fmt::Write as _;
use std::sync::Arc;

use super::body_mask::BodyMasks;
use crate::cache::Bounded;
use crate::policy::{Action, HttpFacts, RuleSet, Subject};

/// Judgements kept at most (a tenth goes when full; see `crate::cache`).
const MAX_ENTRIES: usize = 16 * 1024;

/// What the rules say about one request.
pub struct Judged {
    /// Keeps the key's rule-set address from being reused (see the module comment).
    _rules: Arc<RuleSet>,
    pub action: Action,
    pub deciding_rule: String,
    pub description: String,
    /// Who may approve it, for a held request.
    pub approvers: Vec<String>,
    /// The masks for the response; None: it streams through untouched.
    pub masks: Option<Arc<BodyMasks>>,
}

pub struct Judgements {
    cache: Bounded<Box<str>, Arc<Judged>>,
    /// Masks by rule set and caller only: every path of a caller shares one compiled
    /// set, so many distinct paths cannot multiply them.
    masks: Bounded<Box<str>, Option<Arc<BodyMasks>>>,
}

impl Default for Judgements {
    fn default() -> Self {
        Judgements {
            cache: Bounded::new(MAX_ENTRIES),
            masks: Bounded::new(MAX_ENTRIES),
        }
    }
}

impl Judgements {
    /// The judgement of `method path` for `who` under `rules`, from the cache or fresh.
    pub fn judge(
        &self,
        rules: &Arc<RuleSet>,
        who: &Subject<'_>,
        method: &str,
        path: &str,
    ) -> Arc<Judged> {
        let request_key = key(rules, who, method, path);
        if let Some(j) = self.cache.get(&*request_key) {
            return j;
        }
        // The caller alone (no method or path): its own cache, so no clash.
        let who_key = key(rules, who, "", "");
        let masks = match self.masks.get(&*who_key) {
            Some(m) => m,
            None => {
                let m = BodyMasks::build(rules, who).map(Arc::new);
                self.masks.insert(who_key.into_boxed_str(), m.clone());
                m
            }
        };
        let j = Arc::new(judge(rules, who, method, path, masks));
        self.cache
            .insert(request_key.into_boxed_str(), Arc::clone(&j));
        j
    }
}

fn judge(
    rules: &Arc<RuleSet>,
    who: &Subject<'_>,
    method: &str,
    path: &str,
    masks: Option<Arc<BodyMasks>>,
) -> Judged {
    let d = rules.decide_http(&HttpFacts { method, path }, who);
    let approvers = match d.action {
        Action::Approve => rules.approvers_of(&d.deciding_rule),
        _ => Vec::new(),
    };
    Judged {
        _rules: Arc::clone(rules),
        action: d.action,
        deciding_rule: d.deciding_rule,
        description: d.description,
        approvers,
        masks,
    }
}

/// Every part length-prefixed, so no two different requests share a key whatever
/// their names and paths contain.
fn key(rules: &Arc<RuleSet>, who: &Subject<'_>, method: &str, path: &str) -> String {
    let mut k = String::with_capacity(64 + path.len() + who.user.len());
    let _ = write!(k, "{:x}", Arc::as_ptr(rules) as usize);
    let mut part = |s: &str| {
        let _ = write!(k, "|{}:", s.len());
        k.push_str(s);
    };
    part(who.user);
    part(who.target);
    part(method);
    part(path);
    for g in who.groups {
        part(g);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Arc<RuleSet> {
        Arc::new(RuleSet::from_sources(&[("r.yaml".into(), yaml.into())]).expect("compiles"))
    }

    fn who<'a>(user: &'a str, groups: &'a [String], target: &'a str) -> Subject<'a> {
        Subject {
            user,
            groups,
            target,
            search_path_changed: false,
        }
    }

    const RULES: &str = r#"
rules:
  - id: no-admin
    when: { http_paths: ["/admin/**"] }
    action: block
  - id: ops-delete
    when: { http_methods: [delete] }
    unless: { groups: [ops] }
    action: block
"#;

    #[test]
    fn same_answer_as_the_rules_and_per_caller() {
        let (r, j) = (rules(RULES), Judgements::default());
        let ops = vec!["ops".to_owned()];
        let none: Vec<String> = vec![];
        for _ in 0..2 {
            assert_eq!(
                j.judge(&r, &who("a", &none, "t"), "GET", "/admin/x").action,
                Action::Block
            );
            assert_eq!(
                j.judge(&r, &who("a", &none, "t"), "GET", "/x").action,
                Action::Allow
            );
            assert_eq!(
                j.judge(&r, &who("a", &none, "t"), "DELETE", "/x").action,
                Action::Block
            );
            assert_eq!(
                j.judge(&r, &who("a", &ops, "t"), "DELETE", "/x").action,
                Action::Allow
            );
        }
        assert_eq!(j.cache.len(), 4);
        assert_eq!(j.masks.len(), 2, "one mask set per caller, not per request");
    }

    #[test]
    fn keys_cannot_run_together() {
        let r = rules(RULES);
        let g: Vec<String> = vec![];
        assert_ne!(
            key(&r, &who("a|1:b", &g, "t"), "GET", "/"),
            key(&r, &who("a", &g, "b|1:t"), "GET", "/")
        );
    }

    #[test]
    fn a_new_rule_set_is_judged_afresh() {
        let j = Judgements::default();
        let g: Vec<String> = vec![];
        let old = rules(RULES);
        assert_eq!(
            j.judge(&old, &who("a", &g, "t"), "GET", "/admin/x").action,
            Action::Block
        );
        let new = rules("rules: []\n");
        assert_eq!(
            j.judge(&new, &who("a", &g, "t"), "GET", "/admin/x").action,
            Action::Allow
        );
    }
}
