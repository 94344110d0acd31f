//! OIDC bearer tokens (JWT) sent as the Postgres password.
//!
//! Only asymmetric algorithms are accepted: pgmoat never holds a secret shared with
//! the IdP, so `HS*` could only ever be verified with a public key used as an HMAC
//! secret (the classic confusion attack); `none` is refused outright. The key a token
//! names must be of the type its `alg` needs (and, when the JWK states an `alg`, that
//! very one), so an RSA key cannot be borrowed for ES256 or the like.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::clock::Clock;
use super::failure::AuthFailure;
use super::jwks::{JwksError, Key, KeyKind, KeyStore};
use super::Identity;
use crate::config::OidcConfig;

type Claims = serde_json::Map<String, serde_json::Value>;

/// Verifies tokens for one issuer.
pub struct OidcVerifier {
    config: OidcConfig,
    keys: KeyStore,
}

impl OidcVerifier {
    pub fn new(config: &OidcConfig) -> Result<OidcVerifier, JwksError> {
        // Name the backend: with more than one compiled in, jsonwebtoken would panic.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let keys = match &config.jwks_file {
            Some(path) => KeyStore::from_file(path.clone(), config.jwks_refresh)?,
            None => KeyStore::discovered(&config.issuer, config.jwks_refresh)?,
        };
        Ok(OidcVerifier {
            config: config.clone(),
            keys,
        })
    }

    /// The issuer tokens must name (`iss`).
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The audience tokens must include (`aud`).
    pub fn audience(&self) -> &str {
        &self.config.audience
    }

    /// Load the keys ahead of the first login; a failure is logged, and retried then.
    pub async fn warm(&self) {
        if let Err(e) = self.keys.keys_for(None).await {
            tracing::warn!(issuer = %self.config.issuer, "could not load the OIDC signing keys yet: {e}");
        }
    }

    pub fn session_may_outlive_token(&self) -> bool {
        self.config.session_may_outlive_token
    }

    /// The clock tokens are judged by, here and in the sessions they open.
    pub fn clock(&self) -> &Clock {
        &self.config.clock
    }

    /// Check `token` for the Postgres user `user`; the identity it proves, or why not.
    pub async fn verify(&self, token: &str, user: &str) -> Result<Identity, AuthFailure> {
        self.verify_for(token, Some(user)).await
    }

    /// Check a bearer token that names its user itself (the HTTP-based front doors):
    /// the identity is the username claim's, with everything else checked as on the wire.
    pub async fn verify_bearer(&self, token: &str) -> Result<Identity, AuthFailure> {
        self.verify_for(token, None).await
    }

    async fn verify_for(&self, token: &str, user: Option<&str>) -> Result<Identity, AuthFailure> {
        let token = token.trim();
        let alg = accepted_alg(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| failure(e.kind()))?;
        let set = self
            .keys
            .keys_for(header.kid.as_deref())
            .await
            .map_err(|e| AuthFailure::KeysUnavailable(e.to_string()))?;
        let named: Vec<&Key> = set
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if named.is_empty() {
            return Err(AuthFailure::UnknownKey);
        }
        let fitting: Vec<&Key> = named.into_iter().filter(|k| key_fits(k, alg)).collect();
        if fitting.is_empty() {
            return Err(AuthFailure::KeyMismatch);
        }
        let validation = self.validation(alg);
        for key in fitting {
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => return self.identity(&data.claims, user),
                // Without a kid several keys may fit: a bad signature means "try the next".
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => {}
                Err(e) => return Err(failure(e.kind())),
            }
        }
        Err(AuthFailure::Signature)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.config.leeway.as_secs();
        // jsonwebtoken reads the system clock itself. A clock `a` seconds ahead of it
        // (tests) is put in its terms: a token counts as expired when
        // `exp - reject < now - leeway` and as not yet valid when `nbf > now + leeway`;
        // with leeway + a and reject = 2a those read `exp < now + a - leeway` and
        // `nbf > now + a + leeway`. On the system clock (a = 0) nothing changes.
        let ahead = self.config.clock.ahead().as_secs();
        if ahead > 0 {
            v.leeway += ahead;
            v.reject_tokens_expiring_in_less_than = 2 * ahead;
        }
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v
    }

    /// The claims of a verified token -> the identity, if the user name (when one
    /// was given) is theirs.
    fn identity(&self, claims: &Claims, user: Option<&str>) -> Result<Identity, AuthFailure> {
        let c = &self.config;
        let name = claims
            .get(&c.username_claim)
            .and_then(|v| v.as_str())
            .ok_or_else(|| AuthFailure::MissingClaim(c.username_claim.clone()))?;
        if user.is_some_and(|u| u != name) {
            return Err(AuthFailure::UserMismatch {
                claim: c.username_claim.clone(),
                found: name.chars().take(64).collect(),
            });
        }
        let groups = match claims.get(&c.groups_claim) {
            Some(serde_json::Value::String(g)) => vec![g.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_f64())
            .filter(|e| e.is_finite() && *e >= 0.0)
            .ok_or_else(|| AuthFailure::MissingClaim("exp".into()))?;
        // The session lapses where a login would start to be refused: exp plus leeway.
        // A far-future exp (a provider's choice) must not overflow the clock: capped.
        let expires_at = Duration::try_from_secs_f64(exp)
            .ok()
            .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
            .and_then(|t| t.checked_add(c.leeway))
            .unwrap_or_else(|| c.clock.now() + crate::config::MAX_DURATION);
        Ok(Identity {
            name: name.to_owned(),
            groups,
            expires_at: Some(expires_at),
        })
    }
}

/// Read the header's `alg` ourselves, so `none` and `HS*` are refused by name before
/// any key is looked at.
fn accepted_alg(token: &str) -> Result<Algorithm, AuthFailure> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::MalformedToken(
            "not three dot-separated parts".into(),
        ));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthFailure::MalformedToken("header is not base64url".into()))?;
    let header: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| AuthFailure::MalformedToken("header is not JSON".into()))?;
    let alg = header
        .get("alg")
        .and_then(|a| a.as_str())
        .ok_or_else(|| AuthFailure::MalformedToken("header has no alg".into()))?;
    let accepted = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(AuthFailure::Algorithm(other.chars().take(16).collect())),
    };
    Ok(accepted)
}

/// Whether `key` may verify a signature made with `alg`.
pub fn key_fits(key: &Key, alg: Algorithm) -> bool {
    let kind_fits = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => key.kind == KeyKind::Rsa,
        Algorithm::ES256 => key.kind == KeyKind::P256,
        Algorithm::ES384 => key.kind == KeyKind::P384,
        Algorithm::EdDSA => key.kind == KeyKind::Ed25519,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => false,
    };
    let alg_fits = key
        .alg
        .is_none_or(|k| format!("{k:?}") == format!("{alg:?}"));
    kind_fits && alg_fits
}

fn failure(kind: &ErrorKind) -> AuthFailure {
    match kind {
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
        ErrorKind::InvalidIssuer => AuthFailure::Issuer,
        ErrorKind::InvalidAudience => AuthFailure::Audience,
        ErrorKind::InvalidSignature => AuthFailure::Signature,
        ErrorKind::MissingRequiredClaim(c) => AuthFailure::MissingClaim(c.clone()),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthFailure::KeyMismatch,
        // Fixed words: the library's own messages may quote parts of the token.
        ErrorKind::Base64(_) => AuthFailure::MalformedToken("bad base64".into()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthFailure::MalformedToken("bad JSON".into()),
        ErrorKind::InvalidClaimFormat(c) => AuthFailure::MalformedToken(format!("bad {c} claim")),
        _ => AuthFailure::MalformedToken("unreadable token".into()),
    }
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
