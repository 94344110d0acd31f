//! Claim and algorithm checks, against a JWKS file holding a fresh P-256 key.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::*;
use crate::auth::failure::AuthFailure;

const ISS: &str = "https://idp.test";
const AUD: &str = "pgmoat";

struct Fixture {
    verifier: OidcVerifier,
    key: EncodingKey,
    dir: std::path::PathBuf,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn fixture() -> Fixture {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap()).unwrap();
    jwk["kid"] = json!("ec1");
    let (verifier, dir) = verifier_with(vec![jwk]);
    Fixture { verifier, key, dir }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": ISS, "aud": AUD, "exp": now() + 300, "iat": now(),
        "email": "ann@example.com", "groups": ["analysts", "staff"],
    })
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    fn sign(&self, claims: &serde_json::Value, kid: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &self.key).unwrap()
    }

    async fn check(&self, token: &str) -> Result<Identity, AuthFailure> {
        self.verifier.verify(token, "ann@example.com").await
    }
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_good_token_proves_the_user_and_groups() {
    let f = fixture();
    let id = f.check(&f.sign(&claims(), Some("ec1"))).await.unwrap();
    assert_eq!(id.name, "ann@example.com");
    assert_eq!(id.groups, ["analysts", "staff"]);
    assert!(id.expires_at.unwrap() > SystemTime::now());
    // A single group as a string; audience as an array; no kid (the one key fits).
    let mut c = claims();
    c["groups"] = json!("analysts");
    c["aud"] = json!(["other", AUD]);
    let id = f.check(&f.sign(&c, None)).await.unwrap();
    assert_eq!(id.groups, ["analysts"]);
}

#[tokio::test]
async fn claim_refusals() {
    let f = fixture();
    let cases: Vec<(&str, serde_json::Value, AuthFailure)> = vec![
        ("expired", json!({"exp": now() - 300}), AuthFailure::Expired),
        (
            "nbf ahead",
            json!({"nbf": now() + 300}),
            AuthFailure::NotYetValid,
        ),
        (
            "issuer",
            json!({"iss": "https://evil.test"}),
            AuthFailure::Issuer,
        ),
        (
            "audience",
            json!({"aud": "someone-else"}),
            AuthFailure::Audience,
        ),
        (
            "user",
            json!({"email": "bob@example.com"}),
            AuthFailure::UserMismatch {
                claim: "email".into(),
                found: "bob@example.com".into(),
            },
        ),
        (
            "no user claim",
            json!({"email": null}),
            AuthFailure::MissingClaim("email".into()),
        ),
    ];
    for (name, patch, want) in cases {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        let got = f.check(&f.sign(&c, Some("ec1"))).await.unwrap_err();
        assert_eq!(got, want, "{name}");
    }
    // exp within the leeway is still fine.
    let mut c = claims();
    c["exp"] = json!(now() - 5);
    assert!(f.check(&f.sign(&c, Some("ec1"))).await.is_ok());
}

#[tokio::test]
async fn tokens_are_judged_by_the_verifiers_clock() {
    let f = fixture(); // 30 s of leeway
    let mut c = claims();
    c["nbf"] = json!(now() + 100);
    c["exp"] = json!(now() + 100);
    let t = f.sign(&c, Some("ec1"));
    assert_eq!(f.check(&t).await.unwrap_err(), AuthFailure::NotYetValid);
    let clock = f.verifier.clock();
    clock.advance(Duration::from_secs(75));
    let id = f.check(&t).await.expect("within the leeway of nbf");
    let exp = UNIX_EPOCH + Duration::from_secs(now() as u64 + 100);
    let lapses = id.expires_at.unwrap();
    assert!(lapses >= exp && lapses <= exp + Duration::from_secs(31));
    clock.advance(Duration::from_secs(50));
    assert!(f.check(&t).await.is_ok(), "within the leeway of exp");
    clock.advance(Duration::from_secs(10));
    assert_eq!(f.check(&t).await.unwrap_err(), AuthFailure::Expired);
}

#[tokio::test]
async fn algorithm_and_key_refusals() {
    let f = fixture();
    let good = f.sign(&claims(), Some("ec1"));
    let (_, rest) = good.split_once('.').unwrap();
    let body = rest.split_once('.').unwrap().0;
    // alg none, with and without a signature.
    let none = format!("{}.{body}.", b64(&json!({"alg": "none", "kid": "ec1"})));
    assert_eq!(
        f.check(&none).await.unwrap_err(),
        AuthFailure::Algorithm("none".into())
    );
    // HS256 "signed" with the public key as the secret: refused by name, never tried.
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("ec1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(),
        &EncodingKey::from_secret(b"the public key bytes"),
    )
    .unwrap();
    assert_eq!(
        f.check(&hs).await.unwrap_err(),
        AuthFailure::Algorithm("HS256".into())
    );
    // RS256 header naming the EC key: algorithm confusion.
    let confused = format!(
        "{}.{body}.{}",
        b64(&json!({"alg": "RS256", "kid": "ec1"})),
        rest.rsplit_once('.').unwrap().1
    );
    assert_eq!(
        f.check(&confused).await.unwrap_err(),
        AuthFailure::KeyMismatch
    );
    // An unknown kid (the file is re-read at most every 30 s, and still lacks it).
    let unknown = f.sign(&claims(), Some("nope"));
    assert_eq!(
        f.check(&unknown).await.unwrap_err(),
        AuthFailure::UnknownKey
    );
    // A tampered body fails the signature.
    let mut c = claims();
    c["groups"] = json!(["dba"]);
    let forged = format!(
        "{}.{}.{}",
        good.split('.').next().unwrap(),
        b64(&c),
        good.rsplit('.').next().unwrap()
    );
    assert_eq!(f.check(&forged).await.unwrap_err(), AuthFailure::Signature);
    for junk in ["", "abc", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert!(
            matches!(
                f.check(junk).await.unwrap_err(),
                AuthFailure::MalformedToken(_)
            ),
            "{junk:?}"
        );
    }
}

fn verifier_with(keys: Vec<serde_json::Value>) -> (OidcVerifier, std::path::PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("pgmoat-oidc-keys-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    std::fs::write(&file, json!({ "keys": keys }).to_string()).unwrap();
    let config = OidcConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks_file: Some(file),
        username_claim: "email".into(),
        groups_claim: "groups".into(),
        session_may_outlive_token: false,
        leeway: Duration::from_secs(30),
        jwks_refresh: Duration::from_secs(600),
        clock: crate::auth::clock::Clock::adjustable(),
    };
    (OidcVerifier::new(&config).unwrap(), dir)
}

fn signed(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims(), key).unwrap()
}

#[tokio::test]
async fn pss_and_eddsa_and_a_jwk_alg_pins_its_key() {
    let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let rsa = EncodingKey::from_rsa_pem(rsa.serialize_pem().as_bytes()).unwrap();
    let mut open =
        serde_json::to_value(Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap()).unwrap();
    let mut pinned = open.clone();
    open.as_object_mut().unwrap().remove("alg");
    open["kid"] = json!("rsa-any");
    pinned["kid"] = json!("rsa-rs256");
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "kid": "ed",
        "x": URL_SAFE_NO_PAD.encode(ed.public_key_raw()),
    });
    let ed = EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).unwrap();
    let (v, dir) = verifier_with(vec![open, pinned, ed_jwk]);
    let user = "ann@example.com";
    for alg in [
        Algorithm::RS256,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
    ] {
        let t = signed(alg, "rsa-any", &rsa);
        assert!(v.verify(&t, user).await.is_ok(), "{alg:?}");
    }
    assert!(v
        .verify(&signed(Algorithm::RS256, "rsa-rs256", &rsa), user)
        .await
        .is_ok());
    assert_eq!(
        v.verify(&signed(Algorithm::PS256, "rsa-rs256", &rsa), user)
            .await
            .unwrap_err(),
        AuthFailure::KeyMismatch,
        "a JWK that states alg RS256 is used for nothing else"
    );
    assert!(v
        .verify(&signed(Algorithm::EdDSA, "ed", &ed), user)
        .await
        .is_ok());
    assert_eq!(
        v.verify(&signed(Algorithm::EdDSA, "rsa-any", &ed), user)
            .await
            .unwrap_err(),
        AuthFailure::KeyMismatch
    );
    let _ = std::fs::remove_dir_all(dir);
}
