//! Slack: the Block Kit message with Approve/Deny buttons, and the interactive
//! callback's signature check (v0: HMAC-SHA-256 of `v0:timestamp:body` with the app's
//! signing secret, timestamp within five minutes, compared in constant time).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::shown::{any_suspicious, shown, WARNING};
use super::{format_time, Request};

/// The window a callback's timestamp must fall in (replay protection).
pub const MAX_SKEW_SECS: i64 = 300;

/// Whether `signature` (`v0=<hex>`) signs `body` at `timestamp` for `secret`, and the
/// timestamp is within five minutes of `now` (Unix seconds).
pub fn verify(secret: &[u8], timestamp: &str, signature: &str, body: &[u8], now: i64) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    // Checked: a timestamp near i64's ends must neither panic nor wrap into range.
    if now
        .checked_sub(ts)
        .is_none_or(|d| d.unsigned_abs() > MAX_SKEW_SECS as u64)
    {
        return false;
    }
    let Some(hex) = signature.trim().strip_prefix("v0=") else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    let want = hex_lower(&mac.finalize().into_bytes());
    bool::from(want.as_bytes().ct_eq(hex.to_ascii_lowercase().as_bytes()))
}

pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    format!("v0={}", hex_lower(&mac.finalize().into_bytes()))
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Slack's own escaping for user text: `&`, `<` and `>` would otherwise make
/// mentions (`<!channel>`) and disguised links (`<https://...|approve>`) from a
/// requester's SQL.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The requester's text as a code block: shown safely ([`shown`]), escaped, and cut to
/// Slack's limit (3000 characters a text field) with the cut said, never silently.
fn code_block(sql: &str) -> String {
    let text = slack_escape(&shown(sql).text);
    let total = text.chars().count();
    let mut s: String = text.chars().take(2700).collect();
    if total > 2700 {
        s.push_str(&format!(
            "… [{} more characters: see the console or `pgmoat approvals list`]",
            total - 2700
        ));
    }
    format!("```{}```", s.replace("```", "`\u{200b}``"))
}

/// The message for the incoming webhook.
pub fn message(r: &Request) -> Value {
    let mut fields = vec![
        json!({"type": "mrkdwn", "text": format!("*Identity*\n{}", r.identity)}),
        json!({"type": "mrkdwn", "text": format!("*Target*\n{}", r.target)}),
        json!({"type": "mrkdwn", "text": format!("*Via*\n{}", r.front_door.as_str())}),
        json!({"type": "mrkdwn", "text": format!("*Rule*\n{}", r.rule)}),
        json!({"type": "mrkdwn", "text": format!("*Expires*\n{}", format_time(r.expires_at))}),
    ];
    if !r.params.is_empty() {
        let params = slack_escape(&shown(&r.params.join(", ")).text);
        fields.push(json!({"type": "mrkdwn", "text": format!("*Parameters*\n{params}")}));
    }
    let suspicious = any_suspicious(std::iter::once(&r.sql).chain(&r.params).map(String::as_str));
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*pgmoat approval {}*: {} wants to run {} on *{}* via {}", r.id, r.identity, r.front_door.noun(), r.target, r.front_door.as_str())}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": code_block(&r.sql)}}),
    ];
    if suspicious {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!(":warning: *Look closely*: {WARNING}.")}}));
    }
    blocks.push(json!({"type": "section", "fields": fields}));
    blocks.push(json!({"type": "actions", "elements": [
        {"type": "button", "action_id": "approve", "style": "primary", "value": r.id,
         "text": {"type": "plain_text", "text": "Approve"}},
        {"type": "button", "action_id": "deny", "style": "danger", "value": r.id,
         "text": {"type": "plain_text", "text": "Deny"}}
    ]}));
    json!({
        "text": format!("pgmoat: {} asks to run {} on {} via {} (rule {})", r.identity, r.front_door.noun(), r.target, r.front_door.as_str(), r.rule),
        "blocks": blocks
    })
}

/// The message that replaces the original once resolved.
pub fn resolved_message(r: &Request, outcome: &str) -> Value {
    json!({
        "replace_original": true,
        "text": format!("pgmoat approval {}: {outcome}", r.id),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn",
                "text": format!("*pgmoat approval {}* ({} on {}, rule {}): {outcome}", r.id, r.identity, r.target, r.rule)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": code_block(&r.sql)}}
        ]
    })
}

/// What a `block_actions` callback asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub slack_user: String,
    pub approve: bool,
    pub request_id: String,
    pub response_url: Option<String>,
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: String,
    user: User,
    #[serde(default)]
    actions: Vec<ActionItem>,
    response_url: Option<String>,
}

#[derive(Deserialize)]
struct User {
    id: String,
}

#[derive(Deserialize)]
struct ActionItem {
    action_id: String,
    #[serde(default)]
    value: String,
}

/// Parse the form-encoded body (`payload=<json>`).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, String> {
    let payload = form_value(body, "payload").ok_or("no payload field")?;
    let p: Payload = serde_json::from_str(&payload).map_err(|e| format!("bad payload: {e}"))?;
    if p.kind != "block_actions" {
        return Err(format!("unsupported interaction type {:?}", p.kind));
    }
    let a = p.actions.first().ok_or("no action")?;
    let approve = match a.action_id.as_str() {
        "approve" => true,
        "deny" => false,
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(Interaction {
        slack_user: p.user.id,
        approve,
        request_id: a.value.clone(),
        response_url: p.response_url,
    })
}

fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form-encode a value (for tests and tools that build callbacks).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let body = b"payload=%7B%7D";
        let sig = sign(b"secret", "1700000000", body);
        assert!(verify(b"secret", "1700000000", &sig, body, 1_700_000_100));
        assert!(
            !verify(b"secret", "1700000000", &sig, body, 1_700_000_400),
            "stale"
        );
        assert!(
            !verify(b"other", "1700000000", &sig, body, 1_700_000_000),
            "wrong secret"
        );
        assert!(
            !verify(b"secret", "1700000001", &sig, body, 1_700_000_000),
            "other timestamp"
        );
        assert!(
            !verify(b"secret", "1700000000", &sig, b"payload=x", 1_700_000_000),
            "other body"
        );
        assert!(!verify(b"secret", "x", &sig, body, 1_700_000_000));
        assert!(!verify(
            b"secret",
            "1700000000",
            "v1=abc",
            body,
            1_700_000_000
        ));
    }

    #[test]
    fn interactions_parse() {
        let json = r#"{"type":"block_actions","user":{"id":"U1"},"actions":[{"action_id":"deny","value":"ap-x"}],"response_url":"http://h/r"}"#;
        let body = format!("payload={}", percent_encode(json));
        let i = parse_interaction(body.as_bytes()).unwrap();
        assert_eq!(
            i,
            Interaction {
                slack_user: "U1".into(),
                approve: false,
                request_id: "ap-x".into(),
                response_url: Some("http://h/r".into())
            }
        );
        assert!(parse_interaction(b"nothing=1").is_err());
        assert!(parse_interaction(b"payload=%7Bbad").is_err());
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
