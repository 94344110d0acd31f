//! Who is calling. Local users authenticate by SCRAM-SHA-256 against verifiers built
//! from the config; the identity issue adds OIDC bearer tokens and client certificates.

use std::collections::HashMap;

use rand::RngCore;

use crate::config::User;
use crate::protocol::scram::Verifier;

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
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

    /// The verifier to run SCRAM against, and the identity it proves if it succeeds.
    /// Unknown users get a stand-in verifier that no password matches, so they see the
    /// same exchange as everybody else.
    pub fn lookup(&self, name: &str) -> (Verifier, Option<Identity>) {
        match self.users.get(name) {
            Some((v, groups)) => (
                v.clone(),
                Some(Identity {
                    name: name.to_owned(),
                    groups: groups.clone(),
                }),
            ),
            None => (Verifier::mock(name, &self.mock_secret), None),
        }
    }
}
