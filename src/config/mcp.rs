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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    pub listen: SocketAddr,
    pub max_rows: Option<usize>,
    pub idle_timeout: Option<HumanDuration>,
    pub max_sessions: Option<usize>,
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
        Ok(McpConfig {
            listen: raw.listen,
            max_rows,
            idle_timeout,
            max_sessions,
            allowed_hosts: raw.allowed_hosts,
        })
    }
}
