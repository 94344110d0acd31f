//! Towards the targets: one pooled hyper client per target (keep-alive, HTTP/1.1 or
//! HTTP/2 by ALPN over rustls), verifying `https` targets against the system roots or
//! the target's `ca:`, for HTTP/2 clients and `https` targets; and what an HTTP/1
//! client connection needs to open its own connection to a plain `http` target
//! (`own_upstream`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::config::HttpTarget;

pub type Upstream = Client<HttpsConnector<HttpConnector>, Body>;

/// Everything about a target that a request needs, prepared once: its pooled client,
/// its held credentials as header values, and its URL split for building each
/// request's URI without parsing the scheme and authority again.
pub struct Route {
    /// The target's name as records and the session list show it (shared by them).
    pub name: std::sync::Arc<str>,
    pub client: Upstream,
    pub held: Vec<(HeaderName, HeaderValue)>,
    /// This route's number among the door's routes (keys a client connection's
    /// own upstream connections).
    pub id: usize,
    /// `host:port` of a plain `http` target, reached on connections of the client
    /// connection's own (`own_upstream`); None for `https` targets.
    pub plain_addr: Option<String>,
    /// The `Host` header a request on an own connection carries.
    pub host: HeaderValue,
    pub connect_timeout: Duration,
    scheme: Scheme,
    authority: Authority,
    /// The URL's base path, never ending in `/` ("" for none).
    base: String,
}

impl Route {
    /// `<url><path>?<query>`, in origin-form when `own` (the request goes on a
    /// connection of the client's own, `Host` set apart) or absolute-form for the
    /// pooled client; None when the result is not a valid URI.
    pub fn uri(&self, path: &str, query: Option<&str>, own: bool) -> Option<Uri> {
        let mut pq =
            String::with_capacity(self.base.len() + path.len() + 1 + query.map_or(0, str::len));
        pq.push_str(&self.base);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::from_maybe_shared(bytes::Bytes::from(pq)).ok()?;
        if own {
            return Some(Uri::from(pq));
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    }

    /// `<base><path>?<query>` written to `out`, what `uri(path, query, true)` gives,
    /// without making a `Uri` (the lean path writes it straight into the head). That
    /// `uri` never refuses these parts: `path` is a `NormalPath::encoded` (pchars and
    /// escapes only), the base was parsed at load, and `query` is the query of a
    /// request target `http` parsed, so the same bytes in the same place parse again.
    /// A unit test holds the two alike.
    pub fn write_origin(&self, path: &str, query: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(self.base.as_bytes());
        out.extend_from_slice(path.as_bytes());
        if let Some(q) = query {
            out.push(b'?');
            out.extend_from_slice(q.as_bytes());
        }
    }
}

/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("http.targets.{target}: {message}")]
    Tls { target: String, message: String },
    #[error("http.targets.{target}.url: {message}")]
    Url { target: String, message: String },
}

/// A route per target name.
pub fn routes(
    targets: &std::collections::BTreeMap<String, HttpTarget>,
    connect_timeout: Duration,
) -> Result<HashMap<String, Route>, UpstreamSetupError> {
    let mut out = HashMap::new();
    for (name, t) in targets {
        let bad = |m: &str| UpstreamSetupError::Url {
            target: name.clone(),
            message: m.to_owned(),
        };
        // Validated at load (`http://host[:port][/base]`); checked again, not trusted.
        let parts = t
            .url
            .parse::<Uri>()
            .map_err(|e| bad(&e.to_string()))?
            .into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(bad("needs a scheme and a host"));
        };
        let base = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        // `host()` keeps an IPv6 address's brackets: both forms below parse.
        let plain_addr = (scheme == Scheme::HTTP).then(|| {
            format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            )
        });
        // As hyper's client writes it: the host and an explicit port, no userinfo.
        let host = match authority.port() {
            Some(p) => format!("{}:{p}", authority.host()),
            None => authority.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| bad(&e.to_string()))?;
        out.insert(
            name.clone(),
            Route {
                name: t.name.as_str().into(),
                client: client(t, connect_timeout)?,
                held: super::headers::held(t),
                id: out.len(),
                plain_addr,
                host,
                connect_timeout,
                scheme,
                authority,
                base,
            },
        );
    }
    Ok(out)
}

fn client(t: &HttpTarget, connect_timeout: Duration) -> Result<Upstream, UpstreamSetupError> {
    let err = |message: String| UpstreamSetupError::Tls {
        target: t.name.clone(),
        message,
    };
    let provider = crate::net::tls::provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = match &t.ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| err(format!("{}: {e}", ca.display())))?;
            for c in certs {
                let c = c.map_err(|e| err(format!("{}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| err(format!("{}: {e}", ca.display())))?;
            }
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| err(e.to_string()))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            builder.with_tls_config(config)
        }
        // No system roots (a bare machine): an `https` target then fails to verify,
        // which is the closed way to fail; plain `http` targets still work.
        None => match hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(Arc::clone(&provider))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target = %t.name, "no system root certificates: {e}");
                builder.with_tls_config(
                    ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .map_err(|e| err(e.to_string()))?
                        .with_root_certificates(RootCertStore::empty())
                        .with_no_client_auth(),
                )
            }
        },
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = builder
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::normalize_path;

    #[test]
    fn the_written_origin_is_what_uri_gives() {
        let mut targets = std::collections::BTreeMap::new();
        for (name, url) in [
            ("plain", "http://127.0.0.1:9"),
            ("based", "http://127.0.0.1:9/api/v2/"),
            ("v6", "http://[::1]:8080/x"),
        ] {
            let t = HttpTarget {
                name: name.into(),
                tenant: String::new(),
                url: url.into(),
                ca: None,
                headers: vec![],
            };
            targets.insert(name.to_owned(), t);
        }
        let routes = routes(&targets, Duration::from_secs(1)).unwrap();
        // Request targets as a client sends them: the query as `http` parsed it.
        let requests = [
            "/a/b",
            "/",
            "/caf%C3%A9/%2e%2e/x%3Fy?q=1&r=%20",
            "/x?a=b?c=d/e",
            "/x?{\"j\":[1,2]}",
            "/x?",
            "/x?a=1#frag",
            "/%7Euser/(1)/*;x",
        ];
        for route in routes.values() {
            for r in requests {
                let Ok(uri) = r.parse::<Uri>() else { continue };
                let Ok(np) = normalize_path(uri.path()) else {
                    continue;
                };
                let want = route
                    .uri(&np.encoded, uri.query(), true)
                    .expect("a valid uri");
                let mut got = Vec::new();
                route.write_origin(&np.encoded, uri.query(), &mut got);
                let want = want.path_and_query().map_or("/", |p| p.as_str());
                assert_eq!(String::from_utf8(got).unwrap(), want, "{r}");
            }
        }
    }
}
