//! The issuer's signing keys: read from a JWKS file, or discovered from the issuer
//! (`/.well-known/openid-configuration` -> `jwks_uri`) and cached. The cache is
//! refreshed when a token names a `kid` it does not hold (at most once per
//! [`UNKNOWN_KID_REFETCH`], so junk tokens cannot make pgmoat hammer the IdP) and
//! periodically, so rotated-out keys stop being accepted.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, KeyAlgorithm};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use thiserror::Error;

/// An unknown `kid` makes pgmoat fetch the keys again at most this often.
pub const UNKNOWN_KID_REFETCH: Duration = Duration::from_secs(30);
/// JWKS and discovery documents larger than this are refused.
const MAX_DOCUMENT: usize = 1 << 20;
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum JwksError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Http(String),
    #[error("{0}")]
    Format(String),
}

/// What kind of public key a JWK holds: it decides which `alg` may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it states one: then only that algorithm may use it.
    pub alg: Option<KeyAlgorithm>,
    pub kind: KeyKind,
    pub decoding: DecodingKey,
}

/// The keys of one fetch.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parse a JWKS document. Keys pgmoat cannot or must not use are skipped, not
    /// fatal: symmetric (`oct`) keys, encryption keys, unknown curves and types.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(bytes)
            .map_err(|e| JwksError::Format(format!("not a JWKS document: {e}")))?;
        let mut keys = Vec::new();
        for value in doc.keys {
            let get = |k: &str| value.get(k).and_then(|v| v.as_str());
            if get("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let kind = match (get("kty"), get("crv")) {
                (Some("RSA"), _) => KeyKind::Rsa,
                (Some("EC"), Some("P-256")) => KeyKind::P256,
                (Some("EC"), Some("P-384")) => KeyKind::P384,
                (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
                _ => continue,
            };
            let Ok(jwk) = serde_json::from_value::<Jwk>(value.clone()) else {
                continue;
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                alg: jwk.common.key_algorithm,
                kind,
                decoding,
            });
        }
        Ok(KeySet { keys })
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

enum Source {
    File(PathBuf),
    Discovery {
        issuer: String,
        http: reqwest::Client,
    },
}

/// The cached keys and when they were fetched; read on every login without waiting.
struct Cached {
    set: Arc<KeySet>,
    /// When these keys are due to be fetched again (None: never fetched).
    due: Option<Instant>,
}

/// Bookkeeping for fetches, held while one runs.
struct Fetches {
    /// The last fetch an unknown `kid` caused: such fetches are rate-limited, while
    /// the first one after a quiet spell (a key rotation) happens at once.
    last_kid_fetch: Option<Instant>,
}

/// The cached keys of one issuer.
pub struct KeyStore {
    source: Source,
    cached: RwLock<Cached>,
    /// Held while fetching, so concurrent logins that need new keys wait for one
    /// fetch instead of each starting their own.
    fetch: tokio::sync::Mutex<Fetches>,
    refresh: Duration,
}

impl KeyStore {
    /// Keys from a file: read now, so a bad file stops the gateway at start.
    pub fn from_file(path: PathBuf, refresh: Duration) -> Result<KeyStore, JwksError> {
        let set = read_file(&path)?;
        if set.keys.is_empty() {
            return Err(JwksError::Format(format!(
                "{}: no usable signing keys (RSA, EC P-256/P-384 or Ed25519)",
                path.display()
            )));
        }
        Ok(KeyStore {
            source: Source::File(path),
            cached: RwLock::new(Cached {
                set: Arc::new(set),
                due: Some(Instant::now() + refresh),
            }),
            fetch: tokio::sync::Mutex::new(Fetches {
                last_kid_fetch: None,
            }),
            refresh,
        })
    }

    /// Keys discovered from the issuer on first use. Plain http is only accepted for
    /// loopback issuers (config validation enforces that); https certificates are
    /// verified against the platform's roots.
    pub fn discovered(issuer: &str, refresh: Duration) -> Result<KeyStore, JwksError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| JwksError::Http(format!("cannot build an HTTP client: {e}")))?;
        Ok(KeyStore {
            source: Source::Discovery {
                issuer: issuer.trim_end_matches('/').to_owned(),
                http,
            },
            cached: RwLock::new(Cached {
                set: Arc::new(KeySet::default()),
                due: None,
            }),
            fetch: tokio::sync::Mutex::new(Fetches {
                last_kid_fetch: None,
            }),
            refresh,
        })
    }

    /// The cached keys, and whether they are due for a refresh.
    fn current(&self) -> (Arc<KeySet>, bool) {
        let c = self.cached.read().unwrap_or_else(|p| p.into_inner());
        (
            Arc::clone(&c.set),
            c.due.is_none_or(|d| Instant::now() >= d),
        )
    }

    /// The key set to verify a token with `kid` against, refreshed as needed.
    pub async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<KeySet>, JwksError> {
        let (set, stale) = self.current();
        if !stale && kid.is_none_or(|k| set.has_kid(k)) {
            return Ok(set);
        }
        let mut f = self.fetch.lock().await;
        // Someone else may have fetched while we waited for the lock.
        let (set, stale) = self.current();
        let missing = kid.is_some_and(|k| !set.has_kid(k));
        let kid_fetch = missing
            && f.last_kid_fetch
                .is_none_or(|t| t.elapsed() >= UNKNOWN_KID_REFETCH);
        if !stale && !kid_fetch {
            return Ok(set);
        }
        if !stale {
            f.last_kid_fetch = Some(Instant::now());
        }
        let result = self.load().await;
        let mut c = self.cached.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(new) => {
                tracing::info!(keys = new.keys.len(), "OIDC signing keys loaded");
                c.set = Arc::new(new);
                c.due = Some(Instant::now() + self.refresh);
                Ok(Arc::clone(&c.set))
            }
            Err(e) => {
                // Try again soon, not on every login: a down IdP must not be hammered.
                c.due = Some(Instant::now() + UNKNOWN_KID_REFETCH);
                if c.set.keys.is_empty() {
                    Err(e)
                } else {
                    // Keep serving the keys we have.
                    tracing::warn!(
                        "could not refresh the OIDC signing keys (keeping the cached ones): {e}"
                    );
                    Ok(Arc::clone(&c.set))
                }
            }
        }
    }

    async fn load(&self) -> Result<KeySet, JwksError> {
        match &self.source {
            Source::File(path) => read_file(path),
            Source::Discovery { issuer, http } => {
                #[derive(Deserialize)]
                struct Discovery {
                    issuer: String,
                    jwks_uri: String,
                }
                let url = format!("{issuer}/.well-known/openid-configuration");
                let body = get(http, &url).await?;
                let d: Discovery = serde_json::from_slice(&body).map_err(|e| {
                    JwksError::Format(format!("{url}: not an OpenID configuration: {e}"))
                })?;
                // OpenID Connect Discovery 1.0 §4.3: the document must name the issuer
                // it was fetched for, or it is not that issuer's.
                if d.issuer.trim_end_matches('/') != issuer {
                    return Err(JwksError::Format(format!(
                        "{url}: names issuer {:?}, not the configured one",
                        d.issuer
                    )));
                }
                if !url_allowed(&d.jwks_uri) {
                    return Err(JwksError::Format(format!(
                        "{url}: jwks_uri {:?} is not https (plain http only on loopback)",
                        d.jwks_uri
                    )));
                }
                KeySet::parse(&get(http, &d.jwks_uri).await?)
            }
        }
    }
}

/// https anywhere, plain http only to a loopback host (tests, local IdPs).
pub fn url_allowed(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

fn read_file(path: &PathBuf) -> Result<KeySet, JwksError> {
    let bytes =
        std::fs::read(path).map_err(|e| JwksError::Io(format!("{}: {e}", path.display())))?;
    KeySet::parse(&bytes).map_err(|e| JwksError::Format(format!("{}: {e}", path.display())))
}

/// GET a small JSON document, refusing redirects, errors and oversized bodies.
pub async fn get(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, JwksError> {
    let mut resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| JwksError::Http(format!("{url}: {e}")))?;
    if !resp.status().is_success() {
        return Err(JwksError::Http(format!("{url}: HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| JwksError::Http(format!("{url}: {e}")))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(JwksError::Http(format!(
                "{url}: document larger than 1 MiB"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"RSA","use":"enc","n":"sXch","e":"AQAB","kid":"enc"},
            {"kty":"EC","crv":"P-521","x":"AA","y":"AA","kid":"p521"},
            {"kty":"RSA","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB","kid":"rsa"}
        ]}"#;
        let set = KeySet::parse(doc).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("rsa")]);
        assert!(KeySet::parse(b"[]").is_err());
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(url_allowed("https://idp.example.com/keys"));
        assert!(url_allowed("http://127.0.0.1:8080/keys"));
        assert!(url_allowed("http://localhost/keys"));
        assert!(!url_allowed("http://idp.example.com/keys"));
        assert!(!url_allowed("http://127.0.0.1.evil.example/keys"));
        assert!(!url_allowed("ftp://127.0.0.1/keys"));
    }
}
