//! Who is calling. Local users authenticate by SCRAM-SHA-256 against verifiers built
//! from the config; other names by an OIDC bearer token sent as the password
//! ([`oidc`]); services by a client certificate ([`cert`]). Every failure goes through
//! [`failure::AuthFailure`], and repeated failures from one address are slowed down by
//! [`failure::Limiter`].

pub mod cert;
pub mod clock;
pub mod failure;
pub mod jwks;
pub mod oidc;

use std::collections::HashMap;
use std::time::SystemTime;

use rand::RngCore;
use sha2::Digest;

use crate::config::User;
use crate::protocol::scram::Verifier;

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
    /// When the credential that proved this identity stops being valid (a token's
    /// `exp`); None for passwords and certificates, whose sessions do not lapse.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    pub fn new(name: impl Into<String>, groups: Vec<String>) -> Identity {
        Identity {
            name: name.into(),
            groups,
            expires_at: None,
        }
    }
}

/// The local users, by name.
pub struct UserDirectory {
    users: HashMap<String, LocalUser>,
    /// SHA-256 of each bearer secret (`token_env`) -> user name. Lookups hash the
    /// presented token and compare digests in constant time, so neither a secret's
    /// length nor its prefix leaks through timing.
    tokens: Vec<([u8; 32], String)>,
    /// Keys the stand-in verifiers for unknown names; random per process.
    mock_secret: [u8; 32],
}

struct LocalUser {
    /// None: a user of the HTTP-based doors only, with no password.
    verifier: Option<Verifier>,
    groups: Vec<String>,
}

fn digest(secret: &str) -> [u8; 32] {
    sha2::Sha256::digest(secret.as_bytes()).into()
}

impl UserDirectory {
    pub fn new(users: &[User]) -> UserDirectory {
        let mut mock_secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut mock_secret);
        UserDirectory {
            users: users
                .iter()
                .map(|u| {
                    let local = LocalUser {
                        verifier: u.verifier.clone(),
                        groups: u.groups.clone(),
                    };
                    (u.name.clone(), local)
                })
                .collect(),
            tokens: users
                .iter()
                .filter_map(|u| Some((digest(u.token.as_ref()?.expose()), u.name.clone())))
                .collect(),
            mock_secret,
        }
    }

    /// Whether `name` is a local user (SCRAM) rather than one for the token exchange.
    pub fn is_local(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The verifier to run SCRAM against, and the identity it proves if it succeeds.
    /// Unknown users, and users without a password, get a stand-in verifier that no
    /// password matches, so they see the same exchange as everybody else.
    pub fn lookup(&self, name: &str) -> (Verifier, Option<Identity>) {
        match self.users.get(name) {
            Some(LocalUser {
                verifier: Some(v),
                groups,
            }) => (v.clone(), Some(Identity::new(name, groups.clone()))),
            _ => (Verifier::mock(name, &self.mock_secret), None),
        }
    }

    /// The local user whose bearer secret `token` is. Every secret is compared, so
    /// the time taken does not say which one came close.
    pub fn by_token(&self, token: &str) -> Option<Identity> {
        let presented = digest(token);
        let mut found: Option<&str> = None;
        for (d, name) in &self.tokens {
            if bool::from(subtle::ConstantTimeEq::ct_eq(&presented[..], &d[..])) {
                found = Some(name);
            }
        }
        let name = found?;
        let groups = self.users.get(name)?.groups.clone();
        Some(Identity::new(name, groups))
    }

    /// A local user's password, checked against its SCRAM verifier (the HTTP
    /// gateway's Basic authentication). Unknown users cost the same derivation.
    pub fn check_password(&self, name: &str, password: &str) -> Option<Identity> {
        let (verifier, identity) = self.lookup(name);
        let ok = verifier.matches_password(password);
        identity.filter(|_| ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn user(name: &str, password: Option<&str>, token: Option<&str>) -> User {
        User {
            name: name.into(),
            verifier: password.map(Verifier::from_password),
            token: token.map(Secret::new),
            groups: vec!["g".into()],
            ssh_keys: Vec::new(),
        }
    }

    #[test]
    fn bearer_secrets_and_passwords() {
        let dir = UserDirectory::new(&[
            user("ann", Some("ann-pw"), Some("ann-token-0123456789")),
            user("bot", None, Some("bot-token-0123456789")),
        ]);
        assert_eq!(dir.by_token("ann-token-0123456789").unwrap().name, "ann");
        assert_eq!(dir.by_token("bot-token-0123456789").unwrap().groups, ["g"]);
        assert!(dir.by_token("ann-token-012345678").is_none());
        assert!(dir.by_token("").is_none());
        assert_eq!(dir.check_password("ann", "ann-pw").unwrap().name, "ann");
        assert!(dir.check_password("ann", "ann-pw ").is_none());
        // A token-only user has no password, and unknown names none either.
        assert!(dir.check_password("bot", "").is_none());
        assert!(dir.check_password("bot", "bot-token-0123456789").is_none());
        assert!(dir.check_password("nobody", "x").is_none());
        assert!(dir.lookup("bot").1.is_none());
    }
}
