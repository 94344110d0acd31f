//! The SSH front door (SPEC section 8): stock `ssh`, `scp` and `sftp` reach upstream
//! servers through pgmoat as `IDENTITY+TARGET@gateway`, authenticated by pgmoat, judged
//! by the same rules, held for the same approvals, recorded in the same audit chain.
//!
//! - [`command`]: an exec line -> the simple commands the rules judge.
//! - [`conn`]: one client connection: authentication, channel opens, refusals of
//!   forwarding.
//! - [`channel`]: one session channel: its request judged, held or refused, then
//!   relayed to the upstream channel and recorded.
//! - [`upstream`]: the client side, with the held key and the `known_hosts` check.
//! - [`recording`]: asciicast v2 files, written as they happen, hashed as written.
//!
//! Both sides run on russh. Memory per channel is bounded by russh's channel windows
//! and message queues: nothing is read from one side faster than the other side takes.

pub mod channel;
pub mod command;
pub mod conn;
pub mod explain;
pub mod metrics;
pub mod recording;
mod runners;
pub mod upstream;

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::SshConfig;
use crate::session::Shared;

#[derive(Debug, Error)]
pub enum SshError {
    #[error("ssh host key {path}: {message}")]
    HostKey { path: String, message: String },
    #[error("ssh.listen {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("ssh.targets.{target}: {message}")]
    Target { target: String, message: String },
}

/// The bound SSH listener, ready to serve.
pub struct SshDoor {
    listener: TcpListener,
    server: Arc<russh::server::Config>,
    config: Arc<SshConfig>,
    held: Arc<upstream::HeldKeys>,
}

/// Modern algorithms only: no SHA-1, no CBC, no plain DH groups below 2048 bits.
fn preferred() -> russh::Preferred {
    use russh::{cipher, mac};
    russh::Preferred {
        cipher: Cow::Borrowed(&[
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
            cipher::AES_256_CTR,
            cipher::AES_128_CTR,
        ]),
        mac: Cow::Borrowed(&[
            mac::HMAC_SHA512_ETM,
            mac::HMAC_SHA256_ETM,
            mac::HMAC_SHA512,
            mac::HMAC_SHA256,
        ]),
        ..russh::Preferred::DEFAULT
    }
}

/// For pgmoat's own connections upstream (the side where pgmoat's order decides):
/// AES-GCM first, which aws-lc runs on the CPU's AES instructions at several times
/// ChaCha20-Poly1305's speed; both are modern AEADs. Clients choose for their side
/// (OpenSSH's default is ChaCha20-Poly1305).
fn preferred_upstream() -> russh::Preferred {
    use russh::cipher;
    russh::Preferred {
        cipher: Cow::Borrowed(&[
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_CTR,
            cipher::AES_128_CTR,
        ]),
        ..preferred()
    }
}

impl SshDoor {
    /// Load (or create) the host key, read the held upstream keys and bind the port;
    /// nothing is accepted until [`SshDoor::run`].
    pub async fn bind(config: &SshConfig) -> Result<SshDoor, SshError> {
        let key = host_key(&config.host_key)?;
        let held = upstream::HeldKeys::load(config)?;
        let server = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-pgmoat".into()),
            keys: vec![key],
            preferred: preferred(),
            // Every refusal takes as long as the slowest, so timing tells nothing.
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            max_auth_attempts: 6,
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(60)),
            nodelay: true,
            methods: russh::MethodSet::from(
                &[russh::MethodKind::PublicKey, russh::MethodKind::Password][..],
            ),
            ..Default::default()
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| SshError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(SshDoor {
            listener,
            server: Arc::new(server),
            config: Arc::new(config.clone()),
            held: Arc::new(held),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Accept clients until the gateway shuts down; then stop accepting (sessions
    /// already open end with the process, or when their clients leave).
    pub async fn run(self, shared: Arc<Shared>) {
        let mut shutdown = shared.shutdown.clone();
        let door = Arc::new(conn::Door {
            keys: conn::key_directory(&shared),
            shared,
            config: self.config,
            held: self.held,
        });
        tracing::info!(addr = %self.listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "pgmoat ssh is accepting connections");
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => break,
                r = self.listener.accept() => r,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    backoff = Duration::from_millis(5);
                    let _ = tcp.set_nodelay(true);
                    let handler = conn::Conn::new(Arc::clone(&door), peer);
                    let server = Arc::clone(&self.server);
                    tokio::spawn(async move {
                        match russh::server::run_stream(server, tcp, handler).await {
                            Ok(session) => {
                                if let Err(e) = session.await {
                                    tracing::debug!(%peer, "ssh session ended: {e}");
                                }
                            }
                            Err(e) => tracing::debug!(%peer, "ssh handshake failed: {e}"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("ssh accept failed: {e}; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The gateway's host key: read when the file exists, else created (ed25519, 0600) and
/// kept, so clients see the same key after a restart.
fn host_key(path: &Path) -> Result<PrivateKey, SshError> {
    let err = |message: String| SshError::HostKey {
        path: path.display().to_string(),
        message,
    };
    if path.exists() {
        return russh::keys::load_secret_key(path, None).map_err(|e| err(e.to_string()));
    }
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ));
    debug_assert_eq!(key.algorithm(), Algorithm::Ed25519);
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(format!("cannot create: {e}")))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| err(e.to_string()))?;
    tracing::info!(path = %path.display(), "created the ssh host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgmoat-hostkey-{}", rand::random::<u64>()));
        let path = dir.join("ssh/host_ed25519");
        let first = host_key(&path).expect("created");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(first.algorithm(), Algorithm::Ed25519);
        let again = host_key(&path).expect("reused");
        assert_eq!(first.public_key(), again.public_key());
        std::fs::write(&path, "not a key").unwrap();
        assert!(
            host_key(&path).is_err(),
            "a broken key file is an error, not replaced"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
