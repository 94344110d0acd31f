//! `pgmoat.approval_mode`: how this session shows a statement held for approval.
//! `wait` (the default) holds the statement until someone decides; `return` answers
//! at once with 42501 naming the request, and the same statement sent again runs once
//! approved (SPEC section 7). It is pgmoat's own setting: read from the startup packet
//! (directly, or as `-c pgmoat.approval_mode=return` inside `options`, which is how
//! psql and libpq pass it) and never passed on to the server.

use super::params::{encode_options, parse_options, Refusal};

/// The startup setting's name.
pub const SETTING: &str = "pgmoat.approval_mode";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApprovalMode {
    #[default]
    Wait,
    Return,
}

fn is_ours(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case(SETTING)
}

/// The mode the startup parameters ask for; an unknown value is refused.
pub fn requested(params: &[(String, String)]) -> Result<ApprovalMode, Refusal> {
    let mut mode = ApprovalMode::Wait;
    let mut read = |value: &str| -> Result<(), Refusal> {
        mode = match value.trim().to_ascii_lowercase().as_str() {
            "wait" => ApprovalMode::Wait,
            "return" => ApprovalMode::Return,
            other => {
                return Err(format!(
                    "pgmoat: {SETTING} must be \"wait\" or \"return\", not {other:?}"
                ))
            }
        };
        Ok(())
    };
    for (name, value) in params {
        if name == "options" {
            // Unparseable options are refused by the startup check anyway.
            for (n, v) in parse_options(value).unwrap_or_default() {
                if is_ours(&n) {
                    read(&v)?;
                }
            }
        } else if is_ours(name) {
            read(value)?;
        }
    }
    Ok(mode)
}

/// The parameters without pgmoat's own setting, for the server; `options` is sent
/// as pgmoat read it ([`encode_options`]), never as the client wrote it (its
/// unparseable form was refused at the start already).
pub fn without_own(params: Vec<(String, String)>) -> Vec<(String, String)> {
    params
        .into_iter()
        .filter(|(n, _)| !is_ours(n))
        .filter_map(|(name, value)| {
            if name != "options" {
                return Some((name, value));
            }
            let settings = parse_options(&value).ok()?;
            let rest: Vec<(String, String)> =
                settings.into_iter().filter(|(n, _)| !is_ours(n)).collect();
            (!rest.is_empty()).then(|| (name, encode_options(&rest)))
        })
        .collect()
}
