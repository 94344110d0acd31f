//! The HTTP gateway's record (SPEC section 6): one `http_request` per request, in the
//! same hash chain as every other record, and how `pgmoat audit replay` prints it.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One HTTP request through the gateway. A request that is to reach its target is
/// first recorded `decided` (durably, before it is forwarded or held: no target sees
/// a request the trail does not hold); every request is recorded once its outcome is
/// known (blocked, refused, or answered by the target with the body fully relayed or
/// broken off), without a phase.
///
/// What every request of a caller or target repeats is shared (`Arc`) or static
/// (`Cow`), not copied: a request's two records cost no allocation for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct HttpRequest {
    pub user: Arc<str>,
    pub groups: Arc<[String]>,
    pub target: Arc<str>,
    pub client: Arc<str>,
    pub method: Cow<'static, str>,
    /// The normalised path the rules judged (and the target received), without query.
    pub path: String,
    /// The query string as the target receives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<Arc<str>>,
    /// `decided` for the record written before the request goes on; none for the
    /// record of its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Cow<'static, str>>,
    /// The status the client got.
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    /// `allow`, `block` or `approve`.
    pub action: Cow<'static, str>,
    /// The deciding rule (`default` when none matched).
    pub rule: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// Ids of the masks and detectors that changed the response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked_fields: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The transcript line of one request.
pub fn replay_line(ts: &str, r: &HttpRequest) -> String {
    let path = match &r.query {
        Some(q) => format!("{}?{q}", r.path),
        None => r.path.clone(),
    };
    if r.phase.is_some() {
        return format!(
            "[{ts}] HTTP {} {} {} {} decided: {} (rule \"{}\")\n",
            r.user, r.target, r.method, path, r.action, r.rule
        );
    }
    let mut s = format!(
        "[{ts}] HTTP {} {} {} {} -> {} ({} rule \"{}\") {} B in, {} B out, {:.1} ms",
        r.user,
        r.target,
        r.method,
        path,
        r.status,
        r.action,
        r.rule,
        r.bytes_in,
        r.bytes_out,
        r.duration_ms
    );
    if let Some(a) = &r.approval {
        s.push_str(&format!(", approval {a}"));
    }
    if !r.masked_fields.is_empty() {
        s.push_str(&format!(", masked: {}", r.masked_fields.join(", ")));
    }
    if let Some(e) = &r.error {
        s.push_str(&format!(", error: {e}"));
    }
    s.push('\n');
    s
}
