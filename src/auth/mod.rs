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
    users: HashMap<String, (Verifier, Vec<String>)>,
    /// Keys the stand-in verifiers for unknown names; random per process.
    mock_secret: [u8; 32],
}

impl UserDirectory {
    pub fn new(users: &[User]) -> UserDirectory {
        let mut mock_secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut mock_secret);
        UserDirectory {
            users: users
                .iter()
                .map(|u| (u.name.clone(), (u.verifier.clone(), u.groups.clone())))
                .collect(),
            mock_secret,
        }
    }

    /// Whether `name` is a local user (SCRAM) rather than one for the token exchange.
    pub fn is_local(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// The verifier to run SCRAM against, and the identity it proves if it succeeds.
    /// Unknown users get a stand-in verifier that no password matches, so they see the
    /// same exchange as everybody else.
    pub fn lookup(&self, name: &str) -> (Verifier, Option<Identity>) {
        match self.users.get(name) {
            Some((v, groups)) => (v.clone(), Some(Identity::new(name, groups.clone()))),
            None => (Verifier::mock(name, &self.mock_secret), None),
        }
    }
}
