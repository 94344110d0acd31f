//! The rules' judgement of a request, remembered. An HTTP decision depends only on
//! the rule set, the caller (user, groups), the target, the method and the normalised
//! path (no HTTP condition looks at anything else), so the same request from the same
//! caller is judged once per rule set; the response masks that apply (which depend on
//! the caller and target only) are compiled with it.
//!
//! The key names the rule set by address and the entry holds that rule set, so the
//! address cannot be reused by a newer rule set while the entry lives: a reload
//! simply starts missing, and the old entries age out of the bounded cache.

use std::cell::RefCell;
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
    /// Shared with every record of a request it decided.
    pub deciding_rule: Arc<str>,
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
        // The key is built in this thread's buffer: a hit allocates nothing.
        let found = KEY.with_borrow_mut(|k| {
            key(k, rules, who, method, path);
            self.cache.get(k.as_str()).ok_or_else(|| k.clone())
        });
        let request_key = match found {
            Ok(j) => return j,
            Err(k) => k,
        };
        // The caller alone (no method or path): its own cache, so no clash.
        let mut who_key = String::new();
        key(&mut who_key, rules, who, "", "");
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
        deciding_rule: d.deciding_rule.into(),
        description: d.description,
        approvers,
        masks,
    }
}

thread_local! {
    /// The look-up key's buffer (one per thread, reused: no allocation per request).
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The key, into `k` (cleared first). Every part length-prefixed, so no two different
/// requests share a key whatever their names and paths contain.
fn key(k: &mut String, rules: &Arc<RuleSet>, who: &Subject<'_>, method: &str, path: &str) {
    k.clear();
    k.push_str(itoa::Buffer::new().format(Arc::as_ptr(rules) as usize));
    let mut part = |s: &str| {
        k.push('|');
        k.push_str(itoa::Buffer::new().format(s.len()));
        k.push(':');
        k.push_str(s);
    };
    part(who.user);
    part(who.target);
    part(method);
    part(path);
    for g in who.groups {
        part(g);
    }
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
        let (mut a, mut b) = (String::new(), String::new());
        key(&mut a, &r, &who("a|1:b", &g, "t"), "GET", "/");
        key(&mut b, &r, &who("a", &g, "b|1:t"), "GET", "/");
        assert_ne!(a, b);
        // The buffer is cleared before each key.
        key(&mut a, &r, &who("a", &g, "b|1:t"), "GET", "/");
        assert_eq!(a, b);
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
