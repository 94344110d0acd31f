//! `pgmoat explain --http "DELETE /billing/invoices/7"`: what the HTTP gateway would
//! do with a request, for an identity, without starting anything.

use serde::Serialize;

use crate::policy::{normalize_path, RuleSet, Subject};

/// The report, as text or `--json`.
#[derive(Debug, Serialize)]
pub struct HttpReport {
    pub action: &'static str,
    pub rules: Vec<String>,
    pub deciding_rule: String,
    pub method: String,
    pub target: String,
    /// The normalised path the rules judged.
    pub path: String,
    /// `json:` masks that would apply to this target's JSON responses.
    pub json_masks: Vec<String>,
    pub detectors: Vec<String>,
}

/// `request` is `METHOD /path`. Without `target`, the path's first segment names it,
/// as in the gateway's URLs.
pub fn explain_http(
    set: &RuleSet,
    request: &str,
    user: &str,
    groups: &[String],
    target: &str,
) -> Result<HttpReport, String> {
    let (method, raw) = request
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("--http wants \"METHOD /path\", not {request:?}"))?;
    let raw = raw.trim();
    let raw = raw.split_once('?').map_or(raw, |(p, _)| p);
    let (target, rest) = if target.is_empty() {
        let after = raw
            .strip_prefix('/')
            .ok_or_else(|| format!("the path must start with /: {raw:?}"))?;
        match after.split_once('/') {
            Some((t, r)) => (t.to_owned(), format!("/{r}")),
            None => (after.to_owned(), "/".to_owned()),
        }
    } else {
        (target.to_owned(), raw.to_owned())
    };
    let path =
        normalize_path(&rest).map_err(|e| format!("{rest:?}: {e} (the gateway answers 400)"))?;
    let method = method.to_ascii_uppercase();
    let who = Subject {
        user,
        groups,
        target: &target,
        search_path_changed: false,
    };
    let d = set.decide_http(
        &crate::policy::HttpFacts {
            method: &method,
            path: &path.decoded,
        },
        &who,
    );
    Ok(HttpReport {
        action: d.action.as_str(),
        rules: d.rules,
        deciding_rule: d.deciding_rule,
        method,
        target: target.clone(),
        path: path.decoded,
        json_masks: set
            .json_masks_for(&who)
            .iter()
            .map(|m| m.id.clone())
            .collect(),
        detectors: set
            .detectors_for(&who)
            .iter()
            .map(|d| d.id.clone())
            .collect(),
    })
}

impl HttpReport {
    pub fn render(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        format!(
            "action: {}\nrule: {}\nrules matched: {}\nrequest: {} {} on target {:?}\njson masks: {}\ndetectors: {}\n",
            self.action,
            self.deciding_rule,
            list(&self.rules),
            self.method,
            self.path,
            self.target,
            list(&self.json_masks),
            list(&self.detectors),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_a_request() {
        let set = RuleSet::from_sources(&[(
            "r.yaml".into(),
            "rules:\n  - id: keep\n    when: { http_methods: [DELETE], http_paths: ['/invoices/**'] }\n    action: block\n"
                .into(),
        )])
        .unwrap();
        let r = explain_http(&set, "delete /billing/x/%2e%2e/invoices/7", "a", &[], "").unwrap();
        assert_eq!((r.action, r.deciding_rule.as_str()), ("block", "keep"));
        assert_eq!(
            (r.target.as_str(), r.path.as_str()),
            ("billing", "/invoices/7")
        );
        let r = explain_http(&set, "GET /invoices/7", "a", &[], "billing").unwrap();
        assert_eq!(r.action, "allow");
        assert!(explain_http(&set, "GET", "a", &[], "").is_err());
        assert!(explain_http(&set, "GET /b/a%2fb", "a", &[], "").is_err());
    }
}
