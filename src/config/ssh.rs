//! `ssh:` in pgmoat.yaml (SPEC section 8): the SSH front door's listener, host key and
//! upstream servers, raw and validated. Kept apart from the Postgres sections so the
//! door's settings change in one file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::validate::Validator;
use super::{ConfigError, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSsh {
    pub listen: SocketAddr,
    pub host_key: String,
    #[serde(default)]
    pub targets: BTreeMap<String, RawSshTarget>,
    /// Most bytes of cast text per channel recording.
    pub max_recording_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSshTarget {
    pub host: String,
    pub port: Option<u16>,
    pub user: String,
    pub key_file: Option<String>,
    pub password_env: Option<String>,
    pub known_hosts: String,
}

/// `tenants.<name>.ssh`: a tenant's own SSH targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenantSsh {
    #[serde(default)]
    pub targets: BTreeMap<String, RawSshTarget>,
}

/// The SSH gateway.
#[derive(Debug, Clone)]
pub struct SshConfig {
    pub listen: SocketAddr,
    /// Created (ed25519, mode 0600) on first start when missing, then reused.
    pub host_key: PathBuf,
    pub targets: BTreeMap<String, SshTarget>,
    /// Per channel, most bytes of asciicast text recorded; past it the channel runs on,
    /// its bytes counted and hashed (the `ssh_channel` record), not recorded.
    pub max_recording_bytes: u64,
}

/// The default cap of a channel's recording: 64 MiB of cast text.
pub const DEFAULT_MAX_RECORDING_BYTES: u64 = 64 << 20;

/// One upstream SSH server and the credentials pgmoat holds for it.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub name: String,
    /// Whose target it is ("" without `tenants:`).
    pub tenant: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshUpstreamAuth,
    /// The upstream's host key must be listed here (OpenSSH format): fail closed.
    pub known_hosts: PathBuf,
}

#[derive(Debug, Clone)]
pub enum SshUpstreamAuth {
    /// An OpenSSH private key file (unencrypted).
    KeyFile(PathBuf),
    Password(Secret),
}

impl Validator<'_> {
    pub(super) fn ssh(&self, raw: RawSsh) -> Result<SshConfig, ConfigError> {
        Ok(SshConfig {
            listen: raw.listen,
            host_key: self.path(&raw.host_key),
            targets: self.ssh_targets(raw.targets)?,
            max_recording_bytes: match raw.max_recording_bytes {
                Some(0) => {
                    return Err(self.err(
                        "ssh.max_recording_bytes",
                        "must be more than 0 (the header and pgmoat's notes always fit)",
                    ))
                }
                Some(n) => n,
                None => DEFAULT_MAX_RECORDING_BYTES,
            },
        })
    }

    /// The top level's `ssh.targets`, or a tenant's.
    pub(super) fn ssh_targets(
        &self,
        raw: BTreeMap<String, RawSshTarget>,
    ) -> Result<BTreeMap<String, SshTarget>, ConfigError> {
        let mut targets = BTreeMap::new();
        for (name, t) in raw {
            let field = format!("ssh.targets.{name}");
            if name.is_empty() || name.contains('+') || name.contains('@') {
                return Err(self.err(field, "a target name must be non-empty, without + or @"));
            }
            let auth = match (&t.key_file, &t.password_env) {
                (Some(k), None) => SshUpstreamAuth::KeyFile(self.path(k)),
                (None, Some(var)) => {
                    SshUpstreamAuth::Password(self.secret(&format!("{field}.password_env"), var)?)
                }
                _ => return Err(self.err(field, "give exactly one of key_file or password_env")),
            };
            targets.insert(
                name.clone(),
                SshTarget {
                    name,
                    tenant: String::new(),
                    host: t.host,
                    port: t.port.unwrap_or(22),
                    user: t.user,
                    auth,
                    known_hosts: self.path(&t.known_hosts),
                },
            );
        }
        Ok(targets)
    }

    /// `identities.users[].ssh_keys`: OpenSSH public key lines, checked here so a typo
    /// fails at start, kept as `algorithm base64` (the comment dropped).
    pub(super) fn ssh_keys(
        &self,
        field: &str,
        keys: &[String],
    ) -> Result<Vec<String>, ConfigError> {
        keys.iter()
            .enumerate()
            .map(|(i, line)| {
                let mut parts = line.split_whitespace();
                let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
                    return Err(self.err(
                        format!("{field}.ssh_keys[{i}]"),
                        "expected an OpenSSH public key line (`ssh-ed25519 AAAA... comment`)",
                    ));
                };
                russh::keys::parse_public_key_base64(b64).map_err(|e| {
                    self.err(
                        format!("{field}.ssh_keys[{i}]"),
                        format!("not a public key: {e}"),
                    )
                })?;
                Ok(format!("{alg} {b64}"))
            })
            .collect()
    }
}
