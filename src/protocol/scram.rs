//! SCRAM-SHA-256 (RFC 5802, RFC 7677) from the server's side, as Postgres speaks it.
//!
//! pgmoat keeps only verifiers (salt, iteration count, StoredKey, ServerKey), the same
//! form Postgres stores in `pg_authid`, so a leaked config cannot be replayed as a
//! password. Channel binding is not offered (no `-PLUS` mechanism), so a client's `y`
//! flag is accepted and `p=` refused, as RFC 5802 requires.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

pub const MECHANISM: &str = "SCRAM-SHA-256";
const DEFAULT_ITERATIONS: u32 = 4096;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM proof does not match")]
    BadProof,
    #[error("invalid SCRAM verifier: {0}")]
    BadVerifier(&'static str),
}

/// What the server stores for one user.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(..)")
    }
}

impl Verifier {
    /// Parse Postgres' text form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Result<Verifier, ScramError> {
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or(ScramError::BadVerifier("must start with SCRAM-SHA-256$"))?;
        let (iter_salt, keys) = rest
            .split_once('$')
            .ok_or(ScramError::BadVerifier("missing '$' before the keys"))?;
        let (iterations, salt) = iter_salt.split_once(':').ok_or(ScramError::BadVerifier(
            "missing ':' after the iteration count",
        ))?;
        let (stored, server) = keys
            .split_once(':')
            .ok_or(ScramError::BadVerifier("missing ':' between the keys"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::BadVerifier("iteration count is not a number"))?;
        if iterations == 0 {
            return Err(ScramError::BadVerifier("iteration count must be positive"));
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::BadVerifier("salt is not base64"))?;
        let key = |s: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(s)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or(ScramError::BadVerifier("keys must be 32 bytes of base64"))
        };
        Ok(Verifier {
            iterations,
            salt,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }

    /// Derive a verifier from a plaintext password with a fresh random salt, applying
    /// SASLprep as Postgres does.
    pub fn from_password(password: &str) -> Verifier {
        let text = postgres_protocol::password::scram_sha_256(password.as_bytes());
        // The crate's output is the same text form, so this cannot fail.
        Verifier::parse(&text).unwrap_or_else(|_| {
            Verifier::derive(password.as_bytes(), &random_bytes(16), DEFAULT_ITERATIONS)
        })
    }

    /// Derive a verifier from raw password bytes, salt and iteration count.
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Verifier {
        let salted = hi(password, salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        Verifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Whether `password` derives this verifier (same salt and iterations), compared
    /// in constant time. For front doors that receive a password rather than run
    /// SCRAM; no SASLprep, as [`Verifier::derive`].
    pub fn matches_password(&self, password: &str) -> bool {
        let other = Verifier::derive(password.as_bytes(), &self.salt, self.iterations);
        let a = [self.stored_key, self.server_key].concat();
        let b = [other.stored_key, other.server_key].concat();
        bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]))
    }

    /// A stand-in for users that do not exist, stable per name, so that an unknown user
    /// walks through the same exchange as a known one and learns nothing from it.
    pub fn mock(user: &str, secret: &[u8]) -> Verifier {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(user.as_bytes());
        let seed = mac.finalize().into_bytes();
        Verifier {
            iterations: DEFAULT_ITERATIONS,
            salt: seed[..16].to_vec(),
            stored_key: seed.into(),
            server_key: hmac(&seed, b"mock"),
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block: RFC 5802's `Hi`.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(password).expect("HMAC takes any key length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

/// One server-side exchange.
pub struct ScramServer {
    verifier: Verifier,
    state: State,
}

enum State {
    Initial,
    SentServerFirst {
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

impl ScramServer {
    pub fn new(verifier: Verifier) -> ScramServer {
        ScramServer {
            verifier,
            state: State::Initial,
        }
    }

    /// Take the client-first-message; return the server-first-message.
    pub fn client_first(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (flag, rest) = msg
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identities are not supported",
            ));
        }
        let gs2_header = format!("{flag},{authzid},");
        let mut parts = bare.split(',');
        // Postgres takes the user from the startup packet; the n= value is ignored.
        match parts.next() {
            Some(n) if n.starts_with("n=") => {}
            Some(m) if m.starts_with("m=") => {
                return Err(ScramError::Malformed(
                    "mandatory extensions are not supported",
                ))
            }
            _ => return Err(ScramError::Malformed("expected n= attribute")),
        }
        let client_nonce = parts
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r= attribute"))?;
        if client_nonce.is_empty()
            || !client_nonce
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
        {
            return Err(ScramError::Malformed("bad client nonce"));
        }
        let nonce = format!("{client_nonce}{}", B64.encode(random_bytes(18)));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        self.state = State::SentServerFirst {
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok(server_first)
    }

    /// Take the client-final-message; return the server-final-message when the proof holds.
    pub fn client_final(&mut self, msg: &[u8]) -> Result<String, ScramError> {
        let State::SentServerFirst {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("unexpected message"));
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("expected p= attribute"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .ok_or(ScramError::Malformed("expected c= attribute"))?;
        let binding = B64
            .decode(binding)
            .map_err(|_| ScramError::Malformed("c= is not base64"))?;
        if binding != gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        let got_nonce = parts
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .ok_or(ScramError::Malformed("expected r= attribute"))?;
        if got_nonce.as_bytes().ct_eq(nonce.as_bytes()).unwrap_u8() != 1 {
            return Err(ScramError::BadProof);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("p= is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if stored.ct_eq(&self.verifier.stored_key).unwrap_u8() != 1 {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    fn exchange(server_pw: &str, client_pw: &str) -> Result<(), ScramError> {
        let mut server = ScramServer::new(Verifier::from_password(server_pw));
        let mut client = ScramSha256::new(client_pw.as_bytes(), ChannelBinding::unsupported());
        let first = server.client_first(client.message())?;
        client
            .update(first.as_bytes())
            .expect("client accepts server-first");
        let last = server.client_final(client.message())?;
        client
            .finish(last.as_bytes())
            .map_err(|_| ScramError::Malformed("client rejected server signature"))
    }

    #[test]
    fn right_password_authenticates_both_ways() {
        exchange("s3cret", "s3cret").unwrap();
    }

    #[test]
    fn wrong_password_fails() {
        assert_eq!(exchange("s3cret", "guess"), Err(ScramError::BadProof));
    }

    #[test]
    fn postgres_verifier_text_parses() {
        let text = postgres_protocol::password::scram_sha_256(b"pw");
        let v = Verifier::parse(&text).unwrap();
        assert_eq!(v.iterations, 4096);
        assert!(Verifier::parse("md5abc").is_err());
        assert!(Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB").is_err());
    }

    #[test]
    fn derive_matches_postgres_form() {
        let salt = b"0123456789abcdef";
        let v = Verifier::derive(b"pw", salt, 4096);
        let text = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            B64.encode(salt),
            B64.encode(v.stored_key),
            B64.encode(v.server_key)
        );
        assert_eq!(Verifier::parse(&text).unwrap(), v);
    }

    #[test]
    fn channel_binding_and_garbage_are_refused() {
        let mut s = ScramServer::new(Verifier::from_password("x"));
        assert_eq!(
            s.client_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBinding)
        );
        let mut s = ScramServer::new(Verifier::from_password("x"));
        assert!(s.client_first(b"\xff\xfe").is_err());
        assert!(s.client_first(b"n,,").is_err());
        let mut s = ScramServer::new(Verifier::from_password("x"));
        assert!(s.client_final(b"c=biws,r=x,p=AAAA").is_err());
    }
}
