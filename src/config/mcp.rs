//! `mcp:` (SPEC section 7): where the MCP endpoint listens and how much it returns.
//! Its raw and validated forms live here so the shared config files only name them.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::raw::HumanDuration;
use super::validate::Validator;
use super::ConfigError;

/// Rows one `query` returns at most unless `mcp.max_rows` says otherwise.
pub const DEFAULT_MAX_ROWS: usize = 500;
/// An MCP session (and its upstream connection) unused this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// MCP sessions open at once: each holds one upstream connection.
pub const DEFAULT_MAX_SESSIONS: usize = 256;
/// The most rows a caller may ask for in one call, whatever the config says.
pub const MAX_ROWS_LIMIT: usize = 100_000;
/// Bytes of values one result holds at most unless `mcp.max_result_bytes` says
/// otherwise: rows past it are not read, so one agent's huge result cannot exhaust
/// the gateway's memory (review finding M2).
pub const DEFAULT_MAX_RESULT_BYTES: u64 = 16 << 20;
/// The range `mcp.max_result_bytes` may take.
pub const MIN_RESULT_BYTES: u64 = 1 << 10;
pub const MAX_RESULT_BYTES_LIMIT: u64 = 1 << 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    pub listen: SocketAddr,
    pub max_rows: Option<usize>,
    pub idle_timeout: Option<HumanDuration>,
    pub max_sessions: Option<usize>,
    /// `16MiB`, `512KiB`, ... (see [`super::parse_bytes`]).
    pub max_result_bytes: Option<String>,
    /// `Host` header values accepted besides the loopback names (DNS-rebinding guard).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// The validated `mcp:` section.
#[derive(Debug, Clone)]
pub struct McpConfig {
    pub listen: SocketAddr,
    pub max_rows: usize,
    pub idle_timeout: Duration,
    pub max_sessions: usize,
    pub allowed_hosts: Vec<String>,
    /// Bytes of values one tool result holds at most (then `"truncated": true`).
    pub max_result_bytes: usize,
}

impl Validator<'_> {
    pub(super) fn mcp(&self, raw: RawMcp) -> Result<McpConfig, ConfigError> {
        let max_rows = raw.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows == 0 || max_rows > MAX_ROWS_LIMIT {
            return Err(self.err(
                "mcp.max_rows",
                format!("must be between 1 and {MAX_ROWS_LIMIT}"),
            ));
        }
        let idle_timeout = raw
            .idle_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT);
        if idle_timeout.is_zero() {
            return Err(self.err("mcp.idle_timeout", "must be longer than 0s"));
        }
        let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
        if max_sessions == 0 {
            return Err(self.err("mcp.max_sessions", "must be at least 1"));
        }
        let max_result_bytes = match &raw.max_result_bytes {
            Some(s) => super::parse_bytes(s).map_err(|e| self.err("mcp.max_result_bytes", e))?,
            None => DEFAULT_MAX_RESULT_BYTES,
        };
        if !(MIN_RESULT_BYTES..=MAX_RESULT_BYTES_LIMIT).contains(&max_result_bytes) {
            return Err(self.err("mcp.max_result_bytes", "must be between 1KiB and 1GiB"));
        }
        Ok(McpConfig {
            max_result_bytes: usize::try_from(max_result_bytes).unwrap_or(usize::MAX),
            listen: raw.listen,
            max_rows,
            idle_timeout,
            max_sessions,
            allowed_hosts: raw.allowed_hosts,
        })
    }
}
