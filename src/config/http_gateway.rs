//! `http:` (SPEC section 9): the HTTP gateway's listener and its targets, raw and
//! validated. Held header values are read from the environment here, once, and kept as
//! secrets; nothing else in pgmoat sees the raw form.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::raw::RawTls;
use super::validate::Validator;
use super::validated::TlsConfig;
use super::{ConfigError, Secret};

/// A response that must be masked but is larger than this gets 502 by default.
pub const DEFAULT_MAX_MASKED_BODY: u64 = 16 << 20;
/// The target has this long to answer (status and headers) by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Client connections the HTTP gateway holds open at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The HTTP gateway's default port.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<SocketAddr>,
    pub tls: Option<RawTls>,
    pub max_masked_body: Option<String>,
    pub upstream_timeout: Option<String>,
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawHttpTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpTarget {
    pub url: String,
    pub ca: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, RawHeldHeader>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeldHeader {
    pub env: String,
    pub prefix: Option<String>,
}

/// `tenants.<name>.http`: a tenant's own HTTP targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantHttp {
    #[serde(default)]
    pub targets: BTreeMap<String, RawHttpTarget>,
}

/// The validated `http:` section.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Client-facing TLS (HTTP/2 is offered through ALPN); None: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Bytes: a response that needs masking and is longer (decoded) gets 502.
    pub max_masked_body: u64,
    /// How long the target has to answer (status and headers; a body then streams
    /// at its own pace); longer gets 504.
    pub upstream_timeout: std::time::Duration,
    /// Client connections open at once; past it new ones are closed on accept.
    pub max_connections: usize,
    pub targets: BTreeMap<String, HttpTarget>,
}

#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub name: String,
    /// Whose target it is ("" without `tenants:`).
    pub tenant: String,
    /// `scheme://host[:port]` plus an optional base path, never ending in `/`.
    pub url: String,
    /// CA bundle the upstream's certificate is verified against (else system roots).
    pub ca: Option<PathBuf>,
    /// Held credentials: header name (lower case) and the full value to send.
    pub headers: Vec<(String, Secret)>,
}

/// `16MiB`, `512KiB`, `1GiB`, `1000B` or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} must start with a whole number"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "kB" | "KB" => 1 << 10,
        "MiB" | "MB" => 1 << 20,
        "GiB" | "GB" => 1 << 30,
        u => {
            return Err(format!(
                "size {s:?}: unknown unit {u:?} (use B, KiB, MiB or GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

impl Validator<'_> {
    pub(super) fn http(&self, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
        let max_masked_body = match &raw.max_masked_body {
            Some(s) => parse_bytes(s).map_err(|e| self.err("http.max_masked_body", e))?,
            None => DEFAULT_MAX_MASKED_BODY,
        };
        let upstream_timeout = match &raw.upstream_timeout {
            Some(s) => {
                super::raw::parse_duration(s).map_err(|e| self.err("http.upstream_timeout", e))?
            }
            None => DEFAULT_UPSTREAM_TIMEOUT,
        };
        if upstream_timeout.is_zero() {
            return Err(self.err("http.upstream_timeout", "must be more than 0"));
        }
        let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(self.err("http.max_connections", "must be more than 0"));
        }
        let targets = self.http_targets(raw.targets)?;
        let tls = raw.tls.map(|t| TlsConfig {
            cert: self.path(&t.cert),
            key: self.path(&t.key),
            require: true,
            client_ca: None,
            require_client_cert: false,
        });
        Ok(HttpConfig {
            listen: raw
                .listen
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address")),
            tls,
            max_masked_body,
            upstream_timeout,
            max_connections,
            targets,
        })
    }

    /// The top level's `http.targets`, or a tenant's.
    pub(super) fn http_targets(
        &self,
        raw: BTreeMap<String, RawHttpTarget>,
    ) -> Result<BTreeMap<String, HttpTarget>, ConfigError> {
        let mut targets = BTreeMap::new();
        for (name, t) in raw {
            let field = format!("http.targets.{name}");
            if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                return Err(self.err(field, "a target name is one path segment"));
            }
            let url = t.url.trim_end_matches('/').to_owned();
            let Some((scheme, rest)) = url.split_once("://") else {
                return Err(self.err(format!("{field}.url"), "must be http://... or https://..."));
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.starts_with('/') {
                return Err(self.err(
                    format!("{field}.url"),
                    "must be http://host[:port][/base] or https://...",
                ));
            }
            if url.contains(['?', '#']) {
                return Err(self.err(format!("{field}.url"), "must not carry a query or fragment"));
            }
            if url.parse::<http::Uri>().is_err() {
                return Err(self.err(format!("{field}.url"), "is not a valid URL"));
            }
            let mut headers = Vec::new();
            for (h, v) in t.headers {
                let hf = format!("{field}.headers.{h}");
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(self.err(hf, "not a valid header name"));
                }
                // Fields that frame or route the request are pgmoat's to write: a held
                // `host` or `transfer-encoding` would sit beside pgmoat's own.
                let lower = h.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "host"
                        | "content-length"
                        | "transfer-encoding"
                        | "connection"
                        | "keep-alive"
                        | "te"
                        | "trailer"
                        | "upgrade"
                        | "expect"
                ) || lower.starts_with("proxy-")
                {
                    return Err(self.err(hf, "frames or routes the request: pgmoat sets it"));
                }
                let secret = self.secret(&hf, &v.env)?;
                let value = format!("{}{}", v.prefix.unwrap_or_default(), secret.expose());
                if http::HeaderValue::from_str(&value).is_err() {
                    return Err(self.err(hf, "the value is not a valid header value"));
                }
                headers.push((h.to_ascii_lowercase(), Secret::new(value)));
            }
            targets.insert(
                name.clone(),
                HttpTarget {
                    name,
                    tenant: String::new(),
                    url,
                    ca: t.ca.as_deref().map(|p| self.path(p)),
                    headers,
                },
            );
        }
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }
}
