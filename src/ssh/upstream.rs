//! The client side: pgmoat's own SSH connection to a target, authenticated with the
//! credentials it holds, and only to a server whose host key `known_hosts` lists.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};

use super::SshError;
use crate::config::{SshConfig, SshTarget, SshUpstreamAuth};

/// The private keys pgmoat holds for its targets, read once at start.
pub struct HeldKeys(HashMap<String, Arc<PrivateKey>>);

impl HeldKeys {
    pub fn load(config: &SshConfig) -> Result<HeldKeys, SshError> {
        let mut keys = HashMap::new();
        for (name, t) in &config.targets {
            if let SshUpstreamAuth::KeyFile(path) = &t.auth {
                let key =
                    russh::keys::load_secret_key(path, None).map_err(|e| SshError::Target {
                        target: name.clone(),
                        message: format!("key_file {}: {e}", path.display()),
                    })?;
                keys.insert(name.clone(), Arc::new(key));
            }
        }
        Ok(HeldKeys(keys))
    }
}

/// Checks the upstream's host key against the target's `known_hosts`.
pub struct Checker {
    host: String,
    port: u16,
    known_hosts: std::path::PathBuf,
    /// Why the key was refused, for the message the client gets.
    refused: Arc<std::sync::Mutex<Option<String>>>,
    closed: Arc<AtomicBool>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            self.refuse("the server offered a certificate; pgmoat checks plain host keys".into());
            return Ok(false);
        };
        match russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.refuse(format!(
                    "the upstream host key of {}:{} is not in {}",
                    self.host,
                    self.port,
                    self.known_hosts.display()
                ));
                Ok(false)
            }
            Err(russh::keys::Error::KeyChanged { line }) => {
                self.refuse(format!(
                    "the upstream host key of {}:{} CHANGED (known_hosts line {line} differs)",
                    self.host, self.port
                ));
                Ok(false)
            }
            Err(e) => {
                self.refuse(format!("known_hosts {}: {e}", self.known_hosts.display()));
                Ok(false)
            }
        }
    }
}

impl Checker {
    fn refuse(&self, why: String) {
        tracing::warn!("ssh upstream refused: {why}");
        if let Ok(mut r) = self.refused.lock() {
            *r = Some(why);
        }
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        // The handler lives as long as the connection's task.
        self.closed.store(true, Relaxed);
    }
}

/// An authenticated upstream connection; channels are opened on it as clients ask.
pub struct Upstream {
    pub handle: client::Handle<Checker>,
    closed: Arc<AtomicBool>,
}

impl Upstream {
    pub async fn connect(
        target: &SshTarget,
        held: &HeldKeys,
        timeout: Duration,
    ) -> Result<Upstream, String> {
        let refused = Arc::new(std::sync::Mutex::new(None));
        let closed = Arc::new(AtomicBool::new(false));
        let checker = Checker {
            host: target.host.clone(),
            port: target.port,
            known_hosts: target.known_hosts.clone(),
            refused: Arc::clone(&refused),
            closed: Arc::clone(&closed),
        };
        let config = Arc::new(client::Config {
            preferred: super::preferred_upstream(),
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(60)),
            nodelay: true,
            ..Default::default()
        });
        let addr = (target.host.as_str(), target.port);
        let connected = tokio::time::timeout(timeout, client::connect(config, addr, checker)).await;
        let mut handle = match connected {
            Err(_) => {
                return Err(format!(
                    "upstream {}:{} did not answer in time",
                    target.host, target.port
                ))
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                let why = refused.lock().ok().and_then(|mut r| r.take());
                return Err(why.unwrap_or_else(|| {
                    format!("cannot reach upstream {}:{}: {e}", target.host, target.port)
                }));
            }
        };
        let result = match &target.auth {
            SshUpstreamAuth::KeyFile(_) => {
                let held_as = crate::config::Config::door_key(&target.tenant, &target.name);
                let Some(key) = held.0.get(&held_as) else {
                    return Err("the held key was not loaded".into());
                };
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .ok()
                        .flatten()
                        .flatten()
                } else {
                    None
                };
                handle
                    .authenticate_publickey(
                        target.user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::clone(key), hash),
                    )
                    .await
            }
            SshUpstreamAuth::Password(p) => {
                handle
                    .authenticate_password(target.user.clone(), p.expose())
                    .await
            }
        };
        match result {
            Ok(r) if r.success() => Ok(Upstream { handle, closed }),
            Ok(_) => Err(format!(
                "the upstream refused pgmoat's held credentials for {}",
                target.name
            )),
            Err(e) => Err(format!("upstream authentication failed: {e}")),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed) || self.handle.is_closed()
    }
}
