//! A throwaway identity provider for tests: fresh RSA and EC keys, their JWKS, and
//! tokens signed with them. Optionally served over HTTP on 127.0.0.1 (discovery
//! document + JWKS), with a counter of JWKS fetches and keys that can be rotated.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const AUDIENCE: &str = "pgmoat-tests";

/// One signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("RSA key");
        let encoding = EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).expect("RSA pem");
        TestKey::with(kid, Algorithm::RS256, encoding)
    }

    pub fn ec(kid: &str) -> TestKey {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
        let encoding = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).expect("EC pem");
        TestKey::with(kid, Algorithm::ES256, encoding)
    }

    fn with(kid: &str, alg: Algorithm, encoding: EncodingKey) -> TestKey {
        let mut jwk =
            serde_json::to_value(Jwk::from_encoding_key(&encoding, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        TestKey {
            kid: kid.into(),
            alg,
            encoding,
            jwk,
        }
    }

    /// A token over `claims`, with this key's kid and alg.
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Standard claims: `email` is the user name, `groups` the groups, valid for `ttl` s.
pub fn claims(issuer: &str, email: &str, groups: &[&str], ttl: i64) -> Value {
    json!({
        "iss": issuer, "aud": AUDIENCE, "sub": format!("sub-{email}"),
        "email": email, "groups": groups, "iat": now(), "exp": now() + ttl,
    })
}

/// Replace the header of `token` with `header` (signature untouched): for forgeries.
pub fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').expect("a JWT").1;
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header.to_string()))
}

pub fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// A discovery endpoint and JWKS on 127.0.0.1; the JWKS served can be changed.
pub struct TestIdpServer {
    pub addr: SocketAddr,
    pub issuer: String,
    pub jwks: Arc<Mutex<String>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TestIdpServer {
    pub async fn start(initial_jwks: String) -> TestIdpServer {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://127.0.0.1:{}", addr.port());
        let jwks = Arc::new(Mutex::new(initial_jwks));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/keys"),
        })
        .to_string();
        let (j, f) = (Arc::clone(&jwks), Arc::clone(&fetches));
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { ([("content-type", "application/json")], d) }
                }),
            )
            .route(
                "/keys",
                get(move || {
                    f.fetch_add(1, Ordering::SeqCst);
                    let body = j.lock().unwrap().clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIdpServer {
            addr,
            issuer,
            jwks,
            jwks_fetches: fetches,
            task,
        }
    }

    pub fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

impl Drop for TestIdpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
