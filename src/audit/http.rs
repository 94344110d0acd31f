//! The smallest HTTP/1.1 client the webhook sink needs: one POST per connection,
//! `Connection: close`, a 2xx status is success. Written here rather than pulling an
//! HTTP client stack into a proxy that otherwise has none; TLS reuses tokio-rustls
//! with the system's CA bundle.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct WebhookClient {
    host: String,
    port: u16,
    path: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl WebhookClient {
    /// Accepts `http://host[:port][/path]` and `https://...`. Errors never echo the
    /// URL, which may carry a token.
    pub fn new(url: &str) -> Result<WebhookClient, String> {
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("audit webhook URL must start with http:// or https://".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("audit webhook URL: user:password@ is not supported".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| "audit webhook URL has a bad port".to_string())?,
            ),
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err("audit webhook URL has no host".into());
        }
        let tls = if https { Some(connector()?) } else { None };
        Ok(WebhookClient {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            tls,
        })
    }

    pub async fn post_json(&self, body: &[u8]) -> Result<(), String> {
        let go = async {
            let tcp = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| format!("connect to {}:{}: {e}", self.host, self.port))?;
            match &self.tls {
                None => self.exchange(tcp, body).await,
                Some(c) => {
                    let name = rustls_pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| format!("bad TLS server name: {e}"))?;
                    let tls = c
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                    self.exchange(tls, body).await
                }
            }
        };
        tokio::time::timeout(TIMEOUT, go)
            .await
            .map_err(|_| format!("{}:{} did not answer in time", self.host, self.port))?
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        body: &[u8],
    ) -> Result<(), String> {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nUser-Agent: pgmoat\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            body.len()
        );
        s.write_all(head.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(body).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let mut resp = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !resp.windows(2).any(|w| w == b"\r\n") && resp.len() < 4096 {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            resp.extend_from_slice(&chunk[..n]);
        }
        let status_line = String::from_utf8_lossy(&resp);
        let code = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(c) if (200..300).contains(&c) => Ok(()),
            Some(c) => Err(format!("the webhook answered HTTP {c}")),
            None => Err("the webhook sent no HTTP status".into()),
        }
    }
}

fn connector() -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for path in CA_BUNDLES {
        if let Ok(iter) = rustls::pki_types::CertificateDer::pem_file_iter(path) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
        }
        if !roots.is_empty() {
            break;
        }
    }
    if roots.is_empty() {
        return Err("https audit webhook: no system CA bundle found".into());
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let c = WebhookClient::new("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("127.0.0.1", 8080, "/hook?x=1")
        );
        let c = WebhookClient::new("http://example.com").unwrap();
        assert_eq!((c.port, c.path.as_str()), (80, "/"));
        assert!(WebhookClient::new("ftp://x").is_err());
        assert!(WebhookClient::new("http://:9/").is_err());
        let e = WebhookClient::new("http://h:notaport/secret-token")
            .err()
            .unwrap();
        assert!(!e.contains("secret-token"));
    }
}
